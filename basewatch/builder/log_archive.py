"""Archived runs' logs, pushed to a registry as OCI artifacts so they outlive the daemon's disk.

One artifact per run, tagged with the run id: an OCI image manifest with `artifactType`
`application/vnd.basewatch.run-log.v1`, the empty config, and the log as its one `text/plain`
layer (titled `<run id>.log`, so `oras pull` writes it under that name).

oras-py does the registry calls, in a worker thread since it is synchronous. Around it, this
module supplies what oras-py lacks or does differently from the rest of basewatch:
- the `registries[].endpoint` mapping and the credentials of the config or Docker's config.json
  (CredentialStore), rather than oras' own reading of config.json;
- a bearer token scoped `pull,push` fetched up front: oras-py would reuse the `pull` token the
  first challenge gives it for the upload, which a token-auth registry refuses;
- the manifest digest, which oras-py does not return;
- prompt, one-line errors: oras-py retries any failure five times with sleeps of up to 83 s, and
  has no request timeout.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import oras.container
import oras.defaults
import oras.provider
import oras.utils
import requests

from basewatch.config import RegistrySettings
from basewatch.errors import ImageReferenceError, RegistryError
from basewatch.oci.credentials import Challenge, CredentialStore, Credentials
from basewatch.oci.reference import ImageReference
from basewatch.oci.registry import DOCKER_MANIFEST, OCI_MANIFEST, endpoint_for

ARTIFACT_TYPE = "application/vnd.basewatch.run-log.v1"
LOG_MEDIA_TYPE = "text/plain"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
RUN_ID_ANNOTATION = "io.basewatch.run.id"
_EMPTY_CONFIG = b"{}"
_TITLE = oras.defaults.annotation_title
_CHUNK = 1 << 16
_UNAUTHORIZED_HINT = "(config registries[].username/password_env or ~/.docker/config.json)"


class _Transient(Exception):
    """A failure worth another try: no connection, a timeout, 5xx or 429."""


class _OrasRegistry(oras.provider.Registry):
    """oras' registry client with a timeout on every request and without its retry loop."""

    # oras wraps do_request in a retry decorator that sleeps 3 s, 5 s, 11 s, 29 s and 83 s; a
    # user archiving a run should hear about an unreachable registry at once.
    do_request = oras.provider.Registry.do_request.__wrapped__

    def __init__(self, netloc: str, insecure: bool, timeout: float):
        super().__init__(hostname=netloc, insecure=insecure)
        unused, self.session = self.session, _TimedSession(timeout)
        unused.close()
        self.session.cookies.set_policy(unused.cookies.get_policy())  # oras ignores cookies
        self.auth.session = self.session


class _TimedSession(requests.Session):
    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)


class LogArchive:
    """Pushes a run's log to `repository` (e.g. "127.0.0.1:5000/basewatch/run-logs") as an OCI
    artifact tagged with the run id."""

    def __init__(self, repository: str, registries: Sequence[RegistrySettings] = (),
                 credentials: CredentialStore | None = None, *, timeout: float = 60.0,
                 attempts: int = 3):
        self.repository = repository.strip()
        try:
            ref = ImageReference.parse(self.repository)
        except ImageReferenceError as exc:
            raise RegistryError(f"log archive repository: {exc}") from None
        if "@" in self.repository or ":" in self.repository.rpartition("/")[2]:
            raise RegistryError(f"log archive repository {self.repository!r} must not have a "
                                "tag or digest: the run id is the tag")
        self._ref = ref
        self._settings = {r.host: r for r in registries}
        self._credentials = credentials or CredentialStore(registries)
        self._timeout = timeout
        self._attempts = max(1, attempts)

    async def push(self, run_id: str, log_file: Path) -> str:
        """Push the log; returns `<repository>:<run id>@sha256:...`, the manifest's digest."""
        try:
            target = self._ref.with_tag(run_id)
        except ImageReferenceError:
            raise RegistryError(f"run id {run_id!r} cannot be a tag in {self.repository}") \
                from None
        return await asyncio.to_thread(self._push, target, run_id, Path(log_file))

    async def pull(self, reference: str, destination: Path) -> Path:
        """Fetch an archived log (`repo:tag`, `repo@digest` or both) into the file `destination`."""
        try:
            ref = ImageReference.parse(reference)
        except ImageReferenceError as exc:
            raise RegistryError(str(exc)) from None
        return await asyncio.to_thread(self._pull, reference, ref, Path(destination))

    # ------------------------------------------------------------------ in the worker thread

    def _push(self, target: ImageReference, run_id: str, log_file: Path) -> str:
        doing = f"archiving the log of run {run_id} to {self.repository}"
        with tempfile.TemporaryDirectory(prefix="basewatch-log-archive-") as folder:
            # A snapshot: the digest and the upload must be of the same bytes.
            snapshot = Path(folder) / f"{run_id}.log"
            try:
                shutil.copyfile(log_file, snapshot)
            except OSError as exc:
                raise RegistryError(f"{doing}: cannot read {log_file}: "
                                    f"{exc.strerror or exc}") from None
            config = Path(folder) / "config.json"
            config.write_bytes(_EMPTY_CONFIG)
            layer = _descriptor(snapshot, LOG_MEDIA_TYPE)
            layer["annotations"] = {_TITLE: snapshot.name}
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": ARTIFACT_TYPE,
                "config": _descriptor(config, EMPTY_CONFIG_MEDIA_TYPE),
                "layers": [layer],
                "annotations": {
                    RUN_ID_ANNOTATION: run_id,
                    "org.opencontainers.image.created":
                        datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            }
            blobs = [(snapshot, layer), (config, manifest["config"])]
            digest = self._with_retries(doing, target, "pull,push", lambda registry: (
                _push_artifact(registry, self._container(target), blobs, manifest)))
        return f"{self.repository}:{run_id}@{digest}"

    def _pull(self, reference: str, ref: ImageReference, destination: Path) -> Path:
        doing = f"fetching the archived log {reference}"
        return self._with_retries(doing, ref, "pull", lambda registry: _pull_log(
            registry, self._container(ref), ref, destination))

    def _with_retries(self, doing: str, ref: ImageReference, actions: str, operation):
        """Run `operation(registry)` with a fresh, authorized client; retry transient failures."""
        endpoint = endpoint_for(ref.registry, self._settings.get(ref.registry))
        parts = urlsplit(endpoint)
        for attempt in range(1, self._attempts + 1):
            registry = _OrasRegistry(parts.netloc, parts.scheme == "http", self._timeout)
            try:
                self._authorize(registry, ref, endpoint, actions)
                return operation(registry)
            except _Transient as exc:
                failure = str(exc)
            except requests.RequestException as exc:  # from a request oras made itself
                failure = _unreachable(exc, ref, endpoint, self._timeout)
                if isinstance(exc, requests.exceptions.SSLError):  # no retry fixes a certificate
                    raise RegistryError(f"{doing}: {failure}") from None
            except RegistryError as exc:
                raise RegistryError(f"{doing}: {exc}") from None
            except (ValueError, KeyError, TypeError, OSError) as exc:  # oras' own checks
                raise RegistryError(f"{doing}: {exc.__class__.__name__}: {exc}") from None
            finally:
                registry.session.close()
            if attempt == self._attempts:
                tries = "once" if attempt == 1 else f"{attempt} times"
                raise RegistryError(f"{doing}: {failure} (tried {tries})")
            time.sleep(0.2 * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _authorize(self, registry: _OrasRegistry, ref: ImageReference, endpoint: str,
                   actions: str) -> None:
        """Answer the registry's challenge up front: basic credentials, or a bearer token
        scoped to `actions` on the repository."""
        response = _request(registry.session, "GET", f"{endpoint}/v2/", ref, endpoint,
                            self._timeout)
        if response.status_code == 200:
            return
        if response.status_code != 401:
            raise RegistryError(f"registry {ref.registry} at {endpoint} answered "
                                f"{response.status_code} {response.reason} to /v2/; is the "
                                "endpoint an OCI distribution registry?")
        challenge = Challenge.parse(response.headers.get("WWW-Authenticate", ""))
        credentials = self._credentials.get(ref.registry)
        if challenge.scheme == "basic":
            if credentials is None:
                raise RegistryError(f"unauthorized: registry {ref.registry} wants credentials "
                                    f"{_UNAUTHORIZED_HINT}")
            registry.session.auth = (credentials.username, credentials.password)
            if _request(registry.session, "GET", f"{endpoint}/v2/", ref, endpoint,
                        self._timeout).status_code == 401:
                raise RegistryError(f"unauthorized: registry {ref.registry} refused the "
                                    f"credentials; check them {_UNAUTHORIZED_HINT}")
        elif challenge.scheme == "bearer" and challenge.params.get("realm"):
            token = self._token(registry.session, ref, endpoint, challenge, credentials, actions)
            registry.auth.set_token_auth(token)
        else:
            raise RegistryError(f"registry {ref.registry} asks for {challenge.scheme or 'an'} "
                                "authentication, which basewatch does not support")

    def _token(self, session: requests.Session, ref: ImageReference, endpoint: str,
               challenge: Challenge, credentials: Credentials | None, actions: str) -> str:
        realm = challenge.params["realm"]
        params = {"scope": f"repository:{ref.repository}:{actions}"}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        headers = {"Authorization": credentials.basic_header} if credentials else {}
        response = _request(session, "GET", realm, ref, endpoint, self._timeout,
                            params=params, headers=headers,
                            server=f"the token server for {ref.registry}")
        if response.status_code in (401, 403):
            raise RegistryError(f"unauthorized: the token server {realm} refused the "
                                f"credentials for {ref.registry}; check them "
                                f"{_UNAUTHORIZED_HINT}")
        try:
            body = response.json()
            token = body.get("token") or body["access_token"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RegistryError(f"the token server {realm} answered {response.status_code} "
                                "without a token; check the registry's auth setup") from None
        return token

    def _container(self, ref: ImageReference) -> oras.container.Container:
        """oras' name for `ref` at its endpoint.

        Set field by field: oras' own parser takes a first path component with a dot in it
        (`team.a/logs`) for a registry host.
        """
        netloc = urlsplit(endpoint_for(ref.registry, self._settings.get(ref.registry))).netloc
        container = oras.container.Container(f"{netloc}/basewatch", registry=netloc)
        namespace, _, name = ref.repository.rpartition("/")
        container.registry, container.namespace, container.repository = \
            netloc, namespace or None, name
        container.tag, container.digest = ref.tag or ref.digest, ref.digest
        return container


def _push_artifact(registry: _OrasRegistry, container: oras.container.Container,
                   blobs: list[tuple[Path, dict]], manifest: dict) -> str:
    for path, descriptor in blobs:
        if not registry.blob_exists(descriptor, container):
            _upload_blob(registry, container, path, descriptor)
    response = registry.upload_manifest(manifest, container)
    _check(response, "the manifest upload")
    sent = response.request.body
    sent = sent.encode() if isinstance(sent, str) else sent
    # The registry names the digest it stored; the bytes sent give the same when it does not.
    return response.headers.get("Docker-Content-Digest") or \
        "sha256:" + hashlib.sha256(sent).hexdigest()


def _upload_blob(registry: _OrasRegistry, container: oras.container.Container, path: Path,
                 descriptor: dict) -> None:
    """A monolithic upload (POST, then PUT with the digest), through oras' authorized requests."""
    started = registry.do_request(f"{registry.prefix}://{container.upload_blob_url()}", "POST",
                                  headers={"Content-Length": "0"})
    _check(started, "the blob upload")
    location = started.headers.get("Location")
    if not location:
        raise RegistryError(f"registry {container.registry} started an upload without a "
                            "Location header")
    url = oras.utils.append_url_params(urljoin(started.url, location),
                                       {"digest": descriptor["digest"]})
    finished = registry.do_request(url, "PUT", data=path.read_bytes(), headers={
        "Content-Type": "application/octet-stream", "Content-Length": str(descriptor["size"])})
    _check(finished, "the blob upload")


def _pull_log(registry: _OrasRegistry, container: oras.container.Container,
              ref: ImageReference, destination: Path) -> Path:
    url = f"{registry.prefix}://{container.manifest_url()}"
    response = registry.do_request(url, "GET", headers={
        "Accept": ", ".join((OCI_MANIFEST, DOCKER_MANIFEST))})
    if response.status_code == 404:
        raise RegistryError(f"not found in registry {ref.registry}")
    _check(response, "the manifest request")
    if ref.digest and ref.digest.startswith("sha256:"):
        got = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if got != ref.digest:
            raise RegistryError(f"registry {ref.registry} sent a manifest whose digest is {got}")
    try:
        manifest = json.loads(response.content)
        layers = [layer for layer in manifest["layers"]
                  if layer.get("mediaType") == LOG_MEDIA_TYPE]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RegistryError("the manifest is not an OCI image manifest") from None
    if len(layers) != 1:
        raise RegistryError(f"not a basewatch run log: expected one {LOG_MEDIA_TYPE} layer, "
                            f"found {len(layers)}")
    (layer,) = layers
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    digest = hashlib.sha256()
    with registry.get_blob(container, layer["digest"], stream=True) as blob:
        _check(blob, "the log download")
        with open(partial, "wb") as out:
            for chunk in blob.iter_content(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    if "sha256:" + digest.hexdigest() != layer["digest"]:
        partial.unlink(missing_ok=True)
        raise RegistryError(f"the log downloaded from {ref.registry} does not match its digest "
                            f"{layer['digest']}")
    os.replace(partial, destination)
    return destination


def _descriptor(path: Path, media_type: str) -> dict:
    data = path.read_bytes()
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data)}


def _request(session: requests.Session, method: str, url: str, ref: ImageReference,
             endpoint: str, timeout: float, *, server: str | None = None,
             **kwargs) -> requests.Response:
    try:
        response = session.request(method, url, **kwargs)
    except requests.exceptions.SSLError as exc:  # another try will not fix a certificate
        raise RegistryError(_unreachable(exc, ref, endpoint, timeout, server)) from None
    except requests.RequestException as exc:
        raise _Transient(_unreachable(exc, ref, endpoint, timeout, server)) from None
    if response.status_code == 429 or response.status_code >= 500:
        raise _Transient(f"{server or f'registry {ref.registry}'} failed "
                         f"({response.status_code} {response.reason})")
    return response


def _check(response: requests.Response, what: str) -> None:
    if response.status_code in (200, 201, 202):
        return
    if response.status_code == 429 or response.status_code >= 500:
        raise _Transient(f"{what} failed ({response.status_code} {response.reason}"
                         f"{_error_detail(response)})")
    hint = ""
    if response.status_code in (401, 403):
        hint = (f"; check that the credentials for {urlsplit(response.url).netloc} may do this "
                f"{_UNAUTHORIZED_HINT}")
    raise RegistryError(f"{what} was refused ({response.status_code} {response.reason}"
                        f"{_error_detail(response)}){hint}")


def _error_detail(response: requests.Response) -> str:
    """`: CODE message` from a registry's JSON error body, when it sent one."""
    try:
        error = response.json()["errors"][0]
        return f": {error['code']} {error.get('message', '')}".rstrip()
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def _unreachable(exc: requests.RequestException, ref: ImageReference, endpoint: str,
               timeout: float, server: str | None = None) -> str:
    server = server or f"registry {ref.registry}"
    if isinstance(exc, requests.Timeout):
        return f"{server} at {endpoint} did not answer within {timeout:g}s"
    if isinstance(exc, requests.exceptions.SSLError):
        return (f"TLS with {server} at {endpoint} failed; for a plain-HTTP registry set "
                f"registries[].endpoint to http://{ref.registry}")
    return (f"cannot reach {server} at {endpoint}: {_reason(exc)}; check that it is running "
            "and that its endpoint is right")


def _reason(exc: BaseException) -> str:
    """The errno's words (`connection refused`), found under requests' and urllib3's wrappers."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        errno = getattr(seen, "errno", None)
        if isinstance(errno, int) and errno > 0:
            return os.strerror(errno).lower()
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = seen.__cause__ or getattr(seen, "reason", None) or nested or seen.__context__
        if not isinstance(seen, BaseException):
            seen = None
    return exc.__class__.__name__
