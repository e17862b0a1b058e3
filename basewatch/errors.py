"""Domain errors. Each carries a message a person can act on; the edges print it as one line.

`http_status` is what the HTTP API answers with one of them: one place, looked up by type, so a
subclass answers as its parent does unless it says otherwise.
"""


class BasewatchError(Exception):
    """An error whose message is meant for the user, not a traceback."""

    http_status = 400


class ConfigError(BasewatchError):
    """The configuration file is missing, unreadable or invalid."""


class ImageReferenceError(BasewatchError):
    """An image reference does not follow the Docker reference grammar."""


class DockerfileError(BasewatchError):
    """A Dockerfile is missing or cannot be analysed (unknown stage, unresolvable ARG...)."""


class RegistryError(BasewatchError):
    """A registry could not be reached or refused a request."""

    http_status = 502  # the daemon's upstream failed, not the request


class RegistryAddressRefused(RegistryError):
    """A registry, or a realm or redirect it names, on an address the daemon may not contact:
    not a registry that is down, so nothing tries it later."""

    http_status = 400  # what the request named is refused; no registry failed


class EngineError(BasewatchError):
    """The container engine could not be reached or a build or push failed."""


class EngineLost(EngineError):
    """The run's build engine stopped answering mid-run: no fault of the run's, which is queued
    again once (on another engine, while that one is down)."""

    def __init__(self, engine: str, message: str):
        super().__init__(message)
        self.engine = engine


class StoreBusyError(BasewatchError):
    """The store refused a read or write for now (another process holding its lock past the
    busy timeout, a full disk): nothing was changed, and the same request will do later."""

    http_status = 503


class StartingError(BasewatchError):
    """The daemon is still registering its config's tasks, this one among them: asked again
    in a moment, the same request will do."""

    http_status = 503
    retry_after = 1  # seconds


class GraphError(BasewatchError):
    """The dependency graph would become invalid (a cycle, an unknown task)."""

    http_status = 409


class RunLogError(BasewatchError):
    """A run's log could not be written (a full disk...): the run cannot be followed."""


class NotFoundError(BasewatchError):
    """No task or run by that name."""

    http_status = 404


class ConflictError(BasewatchError):
    """The request contradicts what exists (a task that exists, a config-file task...)."""

    http_status = 409


class InvalidRequestError(BasewatchError):
    """A request body that does not validate."""


class TooManyRunsError(BasewatchError):
    """As many runs are queued as the daemon takes (max_queued_runs)."""

    http_status = 429


class TaskFileError(BasewatchError):
    """A task file (acr-task.yaml) that cannot be read into a plan: its message names the line
    and the step. Nothing of the file runs."""
