"""A container engine and a registry client that build and hold nothing: the Docker backend's
steps, and every way they end, without an engine."""
from __future__ import annotations

import asyncio

from basewatch.builder.backends.docker.engine import BuildResult

DIGEST = "sha256:" + "a" * 64


class FakeEngine:
    """Builds nothing; `build` waits for `release` when one is given, then fails with `fail`."""

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail
        self.building = asyncio.Event()
        self.release: asyncio.Event | None = None
        self.loop = asyncio.get_running_loop()

    def ping(self) -> None:
        pass

    def pull(self, source, name, platform, auth, log, current=None) -> str:
        log(f"pulled {source}\n")
        return DIGEST

    def build(self, request, log) -> BuildResult:
        log("Step 1/1 : FROM ...\n")
        self.loop.call_soon_threadsafe(self.building.set)
        if self.release is not None:
            asyncio.run_coroutine_threadsafe(self.release.wait(), self.loop).result(timeout=60)
        if self.fail is not None:
            raise self.fail
        return BuildResult("image")

    def push(self, tag, auth, log) -> str:
        return DIGEST

    def cancel(self) -> None:
        pass


class FakeDigests:
    """A registry client that answers with `fail` raised, as a hostile registry makes it."""

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail

    async def platform_digest(self, ref, platform):
        if self.fail is not None:
            raise self.fail
        return None

    async def check_registry(self, ref) -> None:
        pass


class FakeContainers(FakeEngine):
    """An engine whose containers do what their command says, in a thread, with nothing run:
    `true`; `exit N`; `echo WORDS...`; `sleep S` (until killed by a removal: code 137);
    `flaky N` (fails the first N times it runs for its step, then succeeds). It keeps the
    networks, volumes and containers a run made, and when each container ran, so tests can
    check what ran at the same time, and that nothing is left."""

    def __init__(self, fail: BaseException | None = None):
        super().__init__(fail)
        import threading
        self._lock = threading.Lock()
        self.images = {"busybox:latest"}
        self.pulled: list[str] = []
        self.networks: dict[str, dict] = {}
        self.volumes: dict[str, dict] = {}
        self.containers_: dict[str, dict] = {}  # id -> {spec, labels, running, killed}
        self.runs: list[tuple[str, float, float]] = []  # (step alias or name, start, end)
        self.attempts: dict[str, int] = {}
        self.built: list = []
        self.files: dict[str, bytes] = {}  # path in the holder -> last archive put there
        self._ids = 0

    def pull(self, source, name, platform, auth, log, current=None) -> str:
        self.pulled.append(source)
        self.images.add(name)
        return super().pull(source, name, platform, auth, log, current)

    def build(self, request, log):
        self.built.append(request)
        return super().build(request, log)

    def has_image(self, image: str) -> bool:
        return image in self.images

    def create_network(self, name, driver, ipv6, labels) -> None:
        self.networks[name] = labels

    def remove_network(self, name) -> None:
        self.networks.pop(name, None)

    def disconnect(self, network, container) -> None:
        pass

    def create_volume(self, name, labels) -> None:
        self.volumes[name] = labels

    def remove_volume(self, name) -> None:
        self.volumes.pop(name, None)

    def _new(self, spec_or_name, labels) -> str:
        import threading
        with self._lock:
            self._ids += 1
            container = f"c{self._ids:04d}"
            self.containers_[container] = {"spec": spec_or_name, "labels": dict(labels),
                                           "running": False, "killed": threading.Event()}
        return container

    def create_holder(self, name, mounts, labels) -> str:
        return self._new(name, labels)

    def put_files(self, container, path, archive) -> None:
        self.files[path] = archive.read()

    def get_files(self, container, path, into) -> None:
        import io
        import tarfile
        with tarfile.open(fileobj=into, mode="w") as tar:
            data = b"FROM scratch\n"
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    def run_container(self, spec, log, created) -> int:
        import time
        container = self._new(spec, spec.labels)
        created(container)
        state = self.containers_[container]
        state["running"] = True
        who = spec.aliases[0] if spec.aliases else spec.name
        started = time.monotonic()
        try:
            return self._behave(spec, who, state, log)
        finally:
            state["running"] = False
            with self._lock:
                self.runs.append((who, started, time.monotonic()))

    def _behave(self, spec, who, state, log) -> int:
        command = list(spec.command) or ["true"]
        name, args = command[0], command[1:]
        if name == "echo":
            log(" ".join(args) + "\n")
            return 0
        if name == "exit":
            return int(args[0])
        if name == "sleep":
            return 137 if state["killed"].wait(float(args[0])) else 0
        if name == "flaky":
            with self._lock:
                self.attempts[who] = self.attempts.get(who, 0) + 1
                return 1 if self.attempts[who] <= int(args[0]) else 0
        return 0

    def start_container(self, spec) -> str:
        container = self._new(spec, spec.labels)
        self.containers_[container]["running"] = True
        return container

    def container_output(self, container) -> str:
        return "detached output\n"

    def remove_container(self, container) -> None:
        state = self.containers_.pop(container, None)
        if state is not None:
            state["killed"].set()
            state["running"] = False

    def containers(self, labels):
        return [(c, dict(s["labels"])) for c, s in list(self.containers_.items())
                if all(s["labels"].get(k) == v for k, v in labels.items())]
