"""What /healthz reports: the engine's reachability, the free space under state_dir, the
watched references and git remotes failing, and the run queue."""
from __future__ import annotations

import asyncio
import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from basewatch.errors import BasewatchError
from basewatch.models import WatchedDigest

# /healthz reports the engine and the disk as last seen this long ago: a flood of probes costs
# one engine ping per period, on a thread of its own, and never holds up the API.
HOST_STATE_SECONDS = 2.0
# How long /healthz waits for the engine to answer a ping before calling it unreachable.
ENGINE_PING_TIMEOUT_SECONDS = 10.0
# Below this much free space on the disk holding state_dir, /healthz says degraded: run logs,
# uploads and the database's results are about to fail to be written.
MIN_FREE_DISK_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class HostState:
    engine_error: str | None  # None: the engine answered
    disk_problem: str | None  # None: enough free space under state_dir


def disk_problem(state_dir: Path) -> str | None:
    """What is wrong with the free space under `state_dir`, if anything."""
    try:
        free = shutil.disk_usage(state_dir).free
    except OSError as exc:
        return f"cannot tell the free space on the disk of state_dir: {exc.strerror}"
    if free < MIN_FREE_DISK_BYTES:
        return (f"the disk of state_dir is (nearly) full: {free // 2 ** 20} MiB free, below "
                f"{MIN_FREE_DISK_BYTES // 2 ** 20} MiB; run logs and results cannot be written")
    return None


class HostProbe:
    """The engine's reachability and the state disk's free space, checked at most once per
    `ttl` however many ask at once, on a thread of its own."""

    def __init__(self, ping: Callable[[], None], state_dir: Path, ttl: float = HOST_STATE_SECONDS):
        self._ping = ping
        self._state_dir = state_dir
        self._ttl = ttl
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-probe")
        self._checked_at = -math.inf
        self._state: HostState | None = None
        self._checking: asyncio.Future | None = None

    async def state(self) -> HostState:
        loop = asyncio.get_running_loop()
        if self._state is not None and loop.time() - self._checked_at < self._ttl:
            return self._state
        if self._checking is None:
            self._checking = loop.run_in_executor(self._thread, self._check)
            self._checking.add_done_callback(self._checked)
        try:
            # Shielded: one caller giving up does not cancel the check the others wait on.
            return await asyncio.wait_for(asyncio.shield(self._checking),
                                          ENGINE_PING_TIMEOUT_SECONDS)
        except TimeoutError:
            return HostState(f"the Docker Engine did not answer a ping within "
                             f"{ENGINE_PING_TIMEOUT_SECONDS:.0f}s", disk_problem(self._state_dir))

    @property
    def last(self) -> HostState | None:
        """The state as last checked, however old; None before the first check."""
        return self._state

    def _check(self) -> HostState:
        try:
            self._ping()
            engine_error = None
        except BasewatchError as exc:
            engine_error = str(exc)
        except Exception as exc:  # a malformed DOCKER_HOST, an SDK surprise: reported, not 500
            engine_error = f"cannot reach the Docker Engine: {type(exc).__name__}: {exc}"
        return HostState(engine_error, disk_problem(self._state_dir))

    def _checked(self, future: asyncio.Future) -> None:
        self._checking = None
        if not future.cancelled() and future.exception() is None:
            self._state = future.result()
            self._checked_at = asyncio.get_running_loop().time()

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def health_report(host: HostState, watched: list[WatchedDigest], queued: int,
                  running: Iterable[str], failing_remotes: Mapping[str, str] | None = None,
                  failing_webhooks: Mapping[str, str] | None = None,
                  unregistered_tasks: Mapping[str, str] | None = None,
                  engines: Mapping[str, dict] | None = None,
                  registration: Mapping[str, object] | None = None,
                  starting: bool = False, cluster: Mapping[str, object] | None = None
                  ) -> dict:
    """The body of /healthz: degraded while the engine, the disk, a watched reference or a
    polled git remote (`failing_remotes`: why each fails) fails, while a config task's
    webhook could not be registered (`failing_webhooks`: task → why), or while a config
    task itself could not be (`unregistered_tasks`: task → why), or while an engine of the
    build pool is down (`engines`: name → its state and load, shown as they are).
    `starting` while the config's tasks are being registered as the daemon starts
    (`registration`: how far). `cluster`, with several daemons on one database: this one,
    whether it leads the watch, and the daemons it knows of."""
    failing = [w.base for w in watched if w.last_error]
    remotes = dict(failing_remotes or {})
    webhooks = dict(failing_webhooks or {})
    unregistered = dict(unregistered_tasks or {})
    engines_down = [name for name, state in (engines or {}).items() if state["state"] != "up"]
    healthy = (host.engine_error is None and host.disk_problem is None and not failing
               and not remotes and not webhooks and not unregistered and not engines_down)
    report = {
        "status": "starting" if starting else "ok" if healthy else "degraded",
        "engine": host.engine_error or "ok",
        "disk": host.disk_problem or "ok",
        "watched": len(watched),
        "failing_references": failing,
        "failing_remotes": remotes,
        "failing_webhooks": webhooks,
        "unregistered_tasks": unregistered,
        "queued": queued,
        "running": sorted(running),
        **({} if engines is None else {"engines": dict(engines)}),
    }
    if registration is not None:
        report["registration"] = dict(registration)
    if cluster is not None:
        report["cluster"] = dict(cluster)
    return report
