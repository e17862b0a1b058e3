"""A task file's networks, volumes and containers on Docker Engine, through the docker SDK.
Blocking, as the rest of DockerEngine: the backend calls it from a thread."""
from __future__ import annotations

import io
import tarfile
import time
from typing import IO, Callable

import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions
from docker.utils.ports import split_port

from basewatch.builder.backends.docker.engine import ContainerSpec, LogSink
from basewatch.errors import EngineError

# An image with one empty layer and no program: the holder containers, which never run, are
# created from it. Imported from an empty tar, so no registry is needed for it.
HOLDER_IMAGE = "basewatch/workspace-holder:1"
ENGINE_SOCKET = "/var/run/docker.sock"  # where a container given the engine finds it
_CHUNK = 1024 * 1024


class ContainerOperations:
    """Mixed into DockerEngine: its `_client`, `_release`, `_broken` and `docker_host`."""

    def _call(self, what: str, function: Callable[[docker.APIClient], object]):
        client = self._client()
        try:
            return function(client)
        except docker.errors.APIError as exc:
            raise EngineError(f"{what} failed: {_explanation(exc)}") from None
        except (docker.errors.DockerException, requests.exceptions.RequestException,
                urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._broken(what, exc) from None
        finally:
            self._release(client)

    def has_image(self, image: str) -> bool:
        def inspect(client) -> bool:
            try:
                client.inspect_image(image)
            except docker.errors.ImageNotFound:
                return False
            return True
        return self._call(f"the look for {image}", inspect)

    def create_network(self, name: str, driver: str, ipv6: bool,
                       labels: dict[str, str]) -> None:
        self._call(f"creating the network {name}", lambda c: c.create_network(
            name, driver=driver, enable_ipv6=ipv6, labels=labels, check_duplicate=True))

    def remove_network(self, name: str) -> None:
        def remove(client) -> None:
            # The engine lets go of a removed container's endpoint a moment later, at times:
            # the network is asked again for a while before that counts as a failure.
            for pause in (0.1, 0.2, 0.4, 0.8, 1.6, None):
                try:
                    return _gone_is_fine(client.remove_network, name)
                except docker.errors.APIError as exc:
                    if pause is None or "active endpoints" not in _explanation(exc):
                        raise
                    time.sleep(pause)
        self._call(f"removing the network {name}", remove)

    def disconnect(self, network: str, container: str) -> None:
        self._call(f"disconnecting {container} from {network}", lambda c: _gone_is_fine(
            c.disconnect_container_from_network, container, network, force=True))

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        self._call(f"creating the volume {name}", lambda c: c.create_volume(name,
                                                                          labels=labels))

    def remove_volume(self, name: str) -> None:
        self._call(f"removing the volume {name}", lambda c: _gone_is_fine(
            c.remove_volume, name, force=True))

    def create_holder(self, name: str, mounts: tuple[tuple[str, str], ...],
                      labels: dict[str, str]) -> str:
        def create(client) -> str:
            try:
                client.inspect_image(HOLDER_IMAGE)
            except docker.errors.ImageNotFound:
                empty = io.BytesIO()
                tarfile.open(fileobj=empty, mode="w").close()
                repository, _, tag = HOLDER_IMAGE.rpartition(":")
                client.import_image_from_data(empty.getvalue(), repository=repository,
                                              tag=tag)
            return client.create_container(
                HOLDER_IMAGE, command=["/holds-volumes-only"], name=name, labels=labels,
                network_disabled=True,
                host_config=client.create_host_config(
                    binds={volume: {"bind": path, "mode": "rw"} for volume, path in mounts},
                    network_mode="none"))["Id"]
        return self._call("creating the workspace's holder", create)

    def put_files(self, container: str, path: str, archive: IO[bytes]) -> None:
        def put(client) -> None:
            if not client.put_archive(container, path, archive):
                raise EngineError(f"copying files to {path} failed")
        self._call(f"copying files to {path}", put)

    def get_files(self, container: str, path: str, into: IO[bytes]) -> None:
        def get(client) -> None:
            stream, _ = client.get_archive(container, path.rstrip("/") + "/.",
                                           chunk_size=_CHUNK)
            for chunk in stream:
                into.write(chunk)
        self._call(f"reading {path}", get)

    def _create(self, client: docker.APIClient, spec: ContainerSpec) -> str:
        exposed = [_port(port) for port in spec.expose]
        bindings: dict = {}
        for port in spec.ports:
            try:
                inside, outside = split_port(port)
            except ValueError:
                raise EngineError(f"{port!r} is not a port mapping as docker run -p writes "
                                  "it") from None
            for index, port_inside in enumerate(inside):
                exposed.append(_port(port_inside))
                bindings.setdefault(port_inside, []).append(
                    outside[index] if outside else None)
        binds = {volume: {"bind": path, "mode": "rw"} for volume, path in spec.mounts}
        env = list(spec.env)
        if spec.engine_access:
            if self.docker_host.startswith("unix://"):
                binds[self.docker_host.removeprefix("unix://")] = {"bind": ENGINE_SOCKET,
                                                                   "mode": "rw"}
            else:
                env.append(f"DOCKER_HOST={self.docker_host}")
        network = spec.network or "none"
        networking = None
        if spec.network and spec.aliases:
            networking = client.create_networking_config(
                {spec.network: client.create_endpoint_config(aliases=list(spec.aliases))})
        return client.create_container(
            spec.image, command=list(spec.command) or None,
            entrypoint=[spec.entrypoint] if spec.entrypoint is not None else None,
            environment=env, working_dir=spec.working_dir, user=spec.user or None,
            name=spec.name, labels=spec.labels, ports=exposed or None,
            networking_config=networking,
            host_config=client.create_host_config(
                binds=binds, port_bindings=bindings or None, privileged=spec.privileged,
                network_mode=network))["Id"]

    def run_container(self, spec: ContainerSpec, log: LogSink,
                      created: Callable[[str], None]) -> int:
        def run(client) -> int:
            container = self._create(client, spec)
            created(container)
            client.start(container)
            streamed = b""  # the stream's end only: what the check below compares
            for chunk in client.logs(container, stream=True, follow=True):
                streamed = (streamed + chunk)[-_TAIL_CHECKED:]
                log(chunk.decode("utf-8", "replace"))
            code = int(client.wait(container)["StatusCode"])
            # The engine may end a follow before it has logged a last line that has no
            # newline (seen under load: a `cat` of files without one printed nothing). Once
            # the container is gone its log is whole: a last line the stream missed goes too.
            last = client.logs(container, tail=1)
            if last and len(last) <= _TAIL_CHECKED and not streamed.endswith(last):
                log(last.decode("utf-8", "replace"))
            return code
        return self._call(f"the container of {spec.image}", run)

    def start_container(self, spec: ContainerSpec) -> str:
        def start(client) -> str:
            container = self._create(client, spec)
            client.start(container)
            return container
        return self._call(f"the container of {spec.image}", start)

    def container_output(self, container: str) -> str:
        def output(client) -> str:
            try:
                return client.logs(container).decode("utf-8", "replace")
            except docker.errors.NotFound:
                return ""
        return self._call("reading a container's output", output)

    def remove_container(self, container: str) -> None:
        self._call("removing a container", lambda c: _gone_is_fine(
            c.remove_container, container, force=True))

    def containers(self, labels: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
        def find(client):
            found = client.containers(all=True, filters={
                "label": [f"{key}={value}" for key, value in labels.items()]})
            return [(c["Id"], c.get("Labels") or {}) for c in found]
        return self._call("listing the run's containers", find)


_TAIL_CHECKED = 64 * 1024


def _port(port: str) -> tuple[str, str]:
    """`80` or `80/udp` as the SDK takes an exposed port: (number, protocol)."""
    number, _, protocol = str(port).partition("/")
    return number, protocol or "tcp"


def _gone_is_fine(function, *args, **kwargs) -> None:
    try:
        function(*args, **kwargs)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        # A removal already under way (a second cleanup of the same thing) is fine too.
        if exc.status_code != 409 or "in progress" not in _explanation(exc):
            raise


def _explanation(exc: docker.errors.APIError) -> str:
    text = str(exc.explanation or exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
