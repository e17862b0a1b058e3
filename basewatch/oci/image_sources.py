"""Where the engine pulls a base from, and with which credentials.

The watcher reads a registry through its configured `endpoint` (a mirror, or a local stand-in
for docker.io or MCR); the engine must pull the same bytes from the same place, or a rebuild
could be built on something other than what triggered it.
"""
from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from basewatch.oci.credentials import CredentialStore
from basewatch.oci.reference import ImageReference
from basewatch.oci.registry import default_endpoint, endpoint_for
from basewatch.oci.settings import RegistrySettings


class ImageSources:
    def __init__(self, registries: Sequence[RegistrySettings] = (),
                 credentials: CredentialStore | None = None):
        self._settings = {r.host: r for r in registries}
        self._credentials = credentials or CredentialStore(registries)

    def pull_source(self, reference: str) -> str:
        """The reference to pull: the same image, named through the registry's endpoint unless
        the engine cannot reach that name."""
        ref = ImageReference.parse(reference)
        settings = self._settings.get(ref.registry)
        endpoint = endpoint_for(ref.registry, settings)
        if endpoint == default_endpoint(ref.registry) or (
                settings is not None and not settings.engine_pulls_through_endpoint):
            return reference
        return str(ImageReference(urlsplit(endpoint).netloc, ref.repository, ref.tag,
                                  ref.digest))

    def auth(self, reference: str) -> dict[str, str] | None:
        """Engine auth for the registry of `reference`, when basewatch has credentials for it.

        Keyed by the registry as written in the reference, not its endpoint: a mirror of
        docker.io uses docker.io's credentials.
        """
        credentials = self._credentials.get(ImageReference.parse(reference).registry)
        if credentials is None:
            return None
        return {"username": credentials.username, "password": credentials.password}
