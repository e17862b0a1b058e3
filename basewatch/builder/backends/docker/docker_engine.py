"""Docker Engine through the docker SDK. Blocking: the Docker backend calls it from a thread."""
from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Iterator

import docker
import docker.errors
import docker.tls
import requests.exceptions
import urllib3.exceptions

from basewatch.builder.backends.docker.docker_workloads import ContainerOperations
from basewatch.builder.backends.docker.engine import (
    BuildRequest,
    BuildResult,
    EngineTLS,
    LogSink,
)
from basewatch.builder.backends.docker.transfer_log import TransferLog
from basewatch.errors import EngineError
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference

_UNREACHABLE = (requests.exceptions.ConnectionError, docker.errors.DockerException)
# What a stream cut short (by cancel() or a dying engine) raises mid-read.
_BROKEN = (*_UNREACHABLE, urllib3.exceptions.HTTPError, OSError)
# The API version each engine negotiated. Negotiating for every client costs a round trip per
# pull, build and push; ping() always negotiates afresh, so a replaced engine is picked up.
_NEGOTIATED: dict[str, str] = {}


class _CancellableAPIClient(docker.APIClient):
    """An APIClient whose streams in progress can be cut from another thread.

    Closing a requests session does not wake a thread blocked reading a socket; shutting the
    socket down does, and dockerd then cancels the build or push it was serving.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._streams: list = []
        self._cut = False

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str):
            # The engine's own CA (tls.ca): requests would let REQUESTS_CA_BUNDLE or
            # CURL_CA_BUNDLE from the environment replace it, and the engine's certificate
            # would then fail to verify.
            settings["verify"] = self.verify
        return settings

    def _stream_helper(self, response, decode=False):
        self._streams.append(response)
        if self._cut:
            self.cut()
        return super()._stream_helper(response, decode=decode)

    def _socket(self, response) -> socket.socket | None:
        try:
            raw = self._get_raw_response_socket(response)
        except (AttributeError, docker.errors.APIError):
            return None  # already closed
        # A plain-HTTP stream gives a SocketIO wrapper; the socket is behind it.
        return getattr(raw, "_sock", raw)

    def close(self) -> None:
        # A stream cut short never goes back to the pool, so the pool would not close it.
        for response in self._streams:
            if (sock := self._socket(response)) is not None:
                sock.close()
            response.close()
        super().close()

    def cut(self) -> None:
        self._cut = True
        for response in list(self._streams):
            if (sock := self._socket(response)) is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # the stream ended on its own meanwhile


def client_options(docker_host: str, tls: EngineTLS | None) -> dict:
    """The docker SDK's options for reaching `docker_host`: for tcp://, TLS with the engine's
    CA and our client certificate. An ssh:// engine needs none: the SDK reaches it through
    paramiko (docker[ssh]), with ~/.ssh/config, the agent and keys, and the system's
    known_hosts (an unknown host key is refused)."""
    options: dict = {}
    if tls is not None:
        options["tls"] = docker.tls.TLSConfig(client_cert=(str(tls.cert), str(tls.key)),
                                              ca_cert=str(tls.ca), verify=True)
    return options


def split_tag(image: str) -> tuple[str, str]:
    """`host:port/repo:tag` -> (`host:port/repo`, `tag`); no tag means `latest`."""
    repository, _, tag = image.rpartition(":")
    if "/" in tag or not repository:  # the colon was a registry port
        return image, "latest"
    return repository, tag


def engine_name(reference: str) -> str:
    """How the engine names an image: docker.io images by their familiar name."""
    return ImageReference.parse(reference).familiar


class DockerEngine(ContainerOperations):
    """One engine session per run, so cancel() can cut a build or push short."""

    def __init__(self, docker_host: str, timeout: float = 600.0, network: str = "default",
                 tls: EngineTLS | None = None):
        self.docker_host = docker_host
        self.tls = tls  # a tcp:// engine's CA and client certificate
        self.timeout = timeout
        self.network = network  # build_network: default, none, host or a network's name
        self._clients: set[_CancellableAPIClient] = set()
        self._lock = threading.Lock()
        self._canceled = False

    def _unreachable(self, reason: str) -> EngineError:
        return EngineError(f"cannot reach the Docker Engine at {self.docker_host}: {reason}")

    def _broken(self, what: str, exc: Exception) -> EngineError:
        if self._canceled:
            return EngineError(f"{what} was canceled")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return self._unreachable(_reason(exc))  # gone since the version was negotiated
        return EngineError(f"{what} failed: {_reason(exc)}")

    def _client(self, negotiate: bool = False) -> docker.APIClient:
        socket_path = self.docker_host.removeprefix("unix://")
        if self.docker_host.startswith("unix://") and not os.path.exists(socket_path):
            # Checked first: the SDK leaks its socket when connecting to a missing path.
            raise self._unreachable(f"no socket at {socket_path} (is dockerd running? "
                                    "set DOCKER_HOST)")
        version = None if negotiate else _NEGOTIATED.get(self.docker_host)
        try:
            client = _CancellableAPIClient(base_url=self.docker_host, version=version or "auto",
                                           timeout=self.timeout, **client_options(
                                               self.docker_host, self.tls))
        except Exception as exc:  # also ssh's: a name that does not resolve, a refused key
            raise self._unreachable(_reason(exc)) from None
        _NEGOTIATED[self.docker_host] = client.api_version
        with self._lock:
            self._clients.add(client)
            if self._canceled:
                client.cut()
        return client

    def _release(self, client: docker.APIClient) -> None:
        with self._lock:
            self._clients.discard(client)
        client.close()

    def ping(self) -> None:
        client = self._client(negotiate=True)
        try:
            client.ping()
        except _UNREACHABLE as exc:
            raise self._unreachable(_reason(exc)) from None
        finally:
            self._release(client)

    def cancel(self) -> None:
        """Cut every stream in progress: the build or push fails at once and the run ends."""
        with self._lock:
            self._canceled = True
            clients = list(self._clients)
        for client in clients:
            client.cut()

    def pull(self, source: str, name: str, platform: str | None, auth: dict | None,
             log: LogSink, current: str | None = None) -> str:
        """Pull `source` for `platform`, tag it `name` when they differ; return its digest.

        `current` is the digest the registry has now: when the engine already holds exactly
        that image for this platform under `name`, there is nothing to pull.
        """
        client = self._client()
        repository, tag = _split_reference(source)
        digest = source.partition("@")[2] or None
        try:
            if current is not None and self._holds(client, name, repository, current, platform):
                log(f"{source}: the engine has {current} already\n")
                return current
            chunks = client.pull(repository, tag=tag, platform=platform, auth_config=auth,
                                 stream=True, decode=True)
            transfer = TransferLog(log, "pull")
            for chunk in _follow(chunks, f"pull of {source}", log, transfer):
                status = chunk.get("status", "")
                if status.startswith("Digest: "):
                    digest = status.removeprefix("Digest: ").strip()
            transfer.finish()
            if name != source:
                client.tag(source, *_split_reference(name))
        except _BROKEN as exc:
            raise self._broken(f"pull of {source}", exc) from None
        finally:
            self._release(client)
        if digest is None:
            raise EngineError(f"pull of {source} failed: the engine reported no digest")
        return digest

    def build(self, request: BuildRequest, log: LogSink) -> BuildResult:
        client = self._client()
        try:
            image_id = self._stream_build(client, request, log)
            self._check_platform(client, image_id, request.platform)
            for tag in request.tags:
                client.tag(image_id, *split_tag(tag))
            return BuildResult(image_id)
        except _BROKEN as exc:
            raise self._broken("build", exc) from None
        finally:
            self._release(client)

    @staticmethod
    def _holds(client: docker.APIClient, name: str, repository: str, digest: str,
               platform: str) -> bool:
        try:
            image = client.inspect_image(name)
        except docker.errors.ImageNotFound:
            return False
        built = "/".join(p for p in (image.get("Os"), image.get("Architecture"),
                                     image.get("Variant")) if p)
        return f"{repository}@{digest}" in (image.get("RepoDigests") or []) and \
            Platform.parse(built) == Platform.parse(platform)

    @staticmethod
    def _check_platform(client: docker.APIClient, image_id: str, wanted: str) -> None:
        """The classic builder builds on a base of another architecture with only a warning;
        pushing that image under this platform's tags would be worse than failing."""
        image = client.inspect_image(image_id)
        built = "/".join(p for p in (image.get("Os"), image.get("Architecture"),
                                     image.get("Variant")) if p)
        if Platform.parse(built) != Platform.parse(wanted):
            raise EngineError(f"build produced a {built} image, not {wanted}: a base image has "
                              "no variant for that platform")

    def _stream_build(self, client: docker.APIClient, request: BuildRequest,
                      log: LogSink) -> str:
        image_id = None
        # pull=False: the backend has just pulled every base, from where the watcher reads it.
        # Without a network_mode the engine's default network: a Dockerfile's RUN steps must not
        # reach the daemon, the registry or anything else listening on the host's loopback.
        network = None if self.network == "default" else self.network
        where = {"fileobj": request.archive, "custom_context": True} \
            if request.archive is not None else {"path": str(request.context)}
        chunks = client.build(
            **where, dockerfile=request.dockerfile, nocache=request.no_cache,
            tag=request.tags[0] if request.tags else None, buildargs=request.build_args,
            target=request.target, platform=request.platform,
            pull=False, rm=True, forcerm=True, network_mode=network, decode=True)
        for chunk in _follow(chunks, "build", log):
            if chunk.get("stream", "").startswith("Successfully built "):
                image_id = chunk["stream"].split()[-1]
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        if image_id is None:
            raise EngineError("build failed: the engine reported no image")
        return image_id

    def push(self, tag: str, auth: dict | None, log: LogSink) -> str:
        client = self._client()
        repository, name_tag = split_tag(tag)
        digest = None
        try:
            chunks = client.push(repository, tag=name_tag, auth_config=auth, stream=True,
                                 decode=True)
            transfer = TransferLog(log, "push")
            for chunk in _follow(chunks, f"push of {tag}", log, transfer):
                if "aux" in chunk and "Digest" in chunk["aux"]:
                    digest = chunk["aux"]["Digest"]
            transfer.finish()
        except _BROKEN as exc:
            raise self._broken(f"push of {tag}", exc) from None
        finally:
            self._release(client)
        if digest is None:
            raise EngineError(f"push of {tag} failed: the engine reported no digest")
        return digest


def _split_reference(reference: str) -> tuple[str, str]:
    """A pull's (repository, tag-or-digest)."""
    if "@" in reference:
        repository, _, digest = reference.partition("@")
        return repository, digest
    return split_tag(reference)


def _follow(chunks: Iterable[dict], what: str, log: LogSink,
            transfer: TransferLog | None = None) -> Iterator[dict]:
    """Each chunk of an engine stream, once checked for an error and its text logged; a pull's
    or push's statuses through `transfer`, which tells their progress compactly.

    Failures arrive as chunks, not exceptions: every one is checked."""
    for chunk in chunks:
        _raise_on_error(chunk, what, log)
        if "stream" in chunk:
            log(chunk["stream"])
        elif "status" in chunk and transfer is not None:
            transfer.chunk(chunk)
        elif "status" in chunk and (line := _status_line(chunk)):
            log(line)
        yield chunk


def _raise_on_error(chunk: dict, what: str, log: LogSink) -> None:
    if "error" in chunk or "errorDetail" in chunk:
        message = chunk.get("error") or chunk["errorDetail"].get("message", "")
        log(f"ERROR: {message}\n")
        raise EngineError(f"{what} failed: {message.strip()}")


def _status_line(chunk: dict) -> str:
    # Progress bars repeat hundreds of times per layer; the log keeps the state changes only.
    if chunk.get("progressDetail") or chunk.get("progress"):
        return ""
    return " ".join(p for p in (chunk.get("id", ""), chunk["status"]) if p) + "\n"


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
