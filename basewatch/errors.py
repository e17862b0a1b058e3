"""Domain errors. Each carries a message a person can act on; the edges print it as one line."""


class BasewatchError(Exception):
    """An error whose message is meant for the user, not a traceback."""


class ConfigError(BasewatchError):
    """The configuration file is missing, unreadable or invalid."""


class ImageReferenceError(BasewatchError):
    """An image reference does not follow the Docker reference grammar."""


class DockerfileError(BasewatchError):
    """A Dockerfile is missing or cannot be analysed (unknown stage, unresolvable ARG...)."""


class RegistryError(BasewatchError):
    """A registry could not be reached or refused a request."""


class RegistryAddressRefused(RegistryError):
    """A registry, or a realm or redirect it names, on an address the daemon may not contact:
    not a registry that is down, so nothing tries it later."""


class EngineError(BasewatchError):
    """The container engine could not be reached or a build or push failed."""


class GraphError(BasewatchError):
    """The dependency graph would become invalid (a cycle, an unknown task)."""


class RunLogError(BasewatchError):
    """A run's log could not be written (a full disk...): the run cannot be followed."""
