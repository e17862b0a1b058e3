"""Runs spread over a pool of build engines, each a Backend of its own (a Docker Engine here).

A run goes to the least-loaded engine that answers, has a free slot and builds every platform
the run needs; it waits while none has. An engine that stops answering (its periodic ping
fails, or a run on it fails and a ping then does) is marked down: its runs in progress are cut
short and raise EngineLost naming it (the executor queues each again once), and it is pinged
again, backing off, until it answers and takes runs again.

An engine's slots are claimed through `EngineSlots` (the store's): with several daemons on one
database, a slot is a row every daemon counts, so an engine's max_concurrent_runs holds across
them all. Whether an engine answers stays each daemon's own view (each pings it). A run that
finds no slot waits, woken by this daemon's releases and asking again every WAIT_SECONDS for
other daemons'; `has_room` and `states` answer from the other daemons' loads as last read (at
most LOADS_SECONDS old when asked for) plus this daemon's own. Which engine a run went to is
handed to `on_assigned` (the store keeps it with the run).
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from basewatch.builder.backend import Backend, OutcomeHook, RunLogSink
from basewatch.errors import BasewatchError, EngineLost, StoreBusyError
from basewatch.oci.platforms import Platform
from basewatch.run_plan import BuildStep, RunPlan, TaskStep
from basewatch.store import LocalEngineSlots
from basewatch.store.protocols import EngineSlots
from basewatch.watcher.schedule import backed_off

log = logging.getLogger(__name__)

AssignedHook = Callable[[str, str], Awaitable[None]]  # (run id, engine name)
# An engine that answers is pinged this often, so one that dies while idle shows down.
CHECK_SECONDS = 5.0
# A down engine is pinged again after this, doubled while it stays down (up to 8 times it).
DOWN_RECHECK_SECONDS = 2.0
# A ping that takes longer than this counts as no answer.
PING_TIMEOUT_SECONDS = 10.0
# A run waiting for a slot asks again this often, for the slots other daemons free.
WAIT_SECONDS = 0.5
# The other daemons' loads are read again when older than this as they are asked for.
LOADS_SECONDS = 0.5
# A run's end waits this long for its slot's release; a store that refuses it for longer has
# it tried again in the background, backing off from RELEASE_RETRY_SECONDS.
RELEASE_WAIT_SECONDS = 5.0
RELEASE_RETRY_SECONDS = 1.0
# This daemon's id in the slots it claims, when no one gives it one (one daemon alone).
LOCAL_DAEMON = "local"


@dataclass
class PoolMember:
    """One engine of the pool, as the pool sees it."""

    name: str
    backend: Backend
    ping: Callable[[], None]  # blocking; raises when the engine does not answer
    max_concurrent_runs: int
    platforms: tuple[Platform, ...] | None = None  # None: any a run asks for
    up: bool = False
    error: str | None = "not checked yet"
    runs: set[str] = field(default_factory=set)  # this daemon's runs on it
    failures: int = 0  # pings failed in a row while down
    lost: set[str] = field(default_factory=set)  # runs cut short because it went down
    went_down: asyncio.Event = field(default_factory=asyncio.Event)  # wakes its watch

    def builds(self, wanted: set[Platform]) -> bool:
        return self.platforms is None or wanted <= set(self.platforms)

    def state(self, held: int) -> dict:
        """Up or down as this daemon sees it; `held` slots in use by every daemon."""
        return {"state": "up" if self.up else "down", "runs": held,
                "max_concurrent_runs": self.max_concurrent_runs,
                "platforms": None if self.platforms is None else [str(p) for p in self.platforms],
                **({} if self.up else {"error": self.error})}


def plan_platforms(plan: RunPlan) -> set[Platform]:
    """Every platform the plan builds for: a Dockerfile task's, and a task file's build steps'."""
    texts = set(plan.platforms) | {s.action.platform for s in plan.steps
                                   if isinstance(s, TaskStep) and isinstance(s.action, BuildStep)}
    return {Platform.parse(text) for text in texts}


class EnginePool:
    """A Backend over several: each run carried out whole on one member."""

    def __init__(self, members: list[PoolMember], on_assigned: AssignedHook | None = None,
                 check_seconds: float = CHECK_SECONDS,
                 down_recheck_seconds: float = DOWN_RECHECK_SECONDS,
                 slots: EngineSlots | None = None, daemon_id: str = LOCAL_DAEMON):
        self.members = members
        self.on_assigned = on_assigned
        self.check_seconds = check_seconds
        self.down_recheck_seconds = down_recheck_seconds
        self.engine_slots = slots if slots is not None else LocalEngineSlots()
        self.daemon_id = daemon_id
        # Set (and replaced) when a slot may have come free here or an engine came up.
        self._change = asyncio.Event()
        self._claiming = asyncio.Lock()  # this daemon's claims one at a time
        self._others: dict[str, int] = {}  # engine -> slots other daemons hold, as last read
        self._others_read_at = -math.inf  # time.monotonic() of that read
        self._reading: asyncio.Task | None = None
        self._stopped = False  # no more reads of the loads: the store may be closing
        self._releases: set[asyncio.Task] = set()
        self._where: dict[str, PoolMember] = {}  # run id -> its engine, while it runs
        self._pings = ThreadPoolExecutor(max_workers=max(1, len(members)),
                                         thread_name_prefix="engine-ping")
        self._watches: list[asyncio.Task] = []

    @property
    def slots(self) -> int:
        return sum(m.max_concurrent_runs for m in self.members)

    def states(self) -> dict[str, dict]:
        """Each engine's state (this daemon's view) and load (every daemon's, the others' as
        last read), for /healthz and /metrics."""
        self._read_loads_soon()
        return {m.name: m.state(self._held(m)) for m in self.members}

    def has_room(self, platforms: str) -> bool:
        """Whether a run for `platforms` (a comma list, as a run keeps them) would get an
        engine now. True too when no engine builds them (the run then fails at once, saying
        so) and when every one that does is down (it then waits for one in `run`, its log
        saying so, rather than asking again and again)."""
        self._read_loads_soon()
        try:
            wanted = {Platform.parse(p) for p in platforms.split(",") if p.strip()}
        except ValueError:
            return True  # the run's own planning says what is wrong
        able = [m for m in self.members if m.builds(wanted)]
        return not able or any(self._free(m) for m in able) or not any(m.up for m in able)

    def _held(self, member: PoolMember) -> int:
        return self._others.get(member.name, 0) + len(member.runs)

    def _free(self, member: PoolMember) -> bool:
        return member.up and self._held(member) < member.max_concurrent_runs

    async def start(self) -> None:
        """Ping every engine once (so the first /healthz is right), then keep watching them."""
        await asyncio.gather(self._read_loads(), *(self._check(m) for m in self.members))
        self._watches = [asyncio.create_task(self._watch(m), name=f"engine {m.name}")
                         for m in self.members]

    async def stop(self) -> None:
        for watch in self._watches:
            watch.cancel()
        await asyncio.gather(*self._watches, return_exceptions=True)
        self._watches = []
        self._stopped = True
        # A read of the loads and slots still being released get a moment (a run may be
        # waiting on the read); what is left of the slots, the store frees with this daemon's
        # lease.
        pending = self._releases | ({self._reading} if self._reading is not None else set())
        if pending:
            await asyncio.wait(pending, timeout=RELEASE_WAIT_SECONDS)
            for task in pending:
                task.cancel()

    def close(self) -> None:
        self._pings.shutdown(wait=False, cancel_futures=True)
        for member in self.members:
            member.backend.close()

    async def cancel(self, run_id: str) -> bool:
        member = self._where.get(run_id)
        return member is not None and await member.backend.cancel(run_id)

    async def run(self, plan: RunPlan, run_log: RunLogSink, report: OutcomeHook) -> None:
        member = await self._acquire(plan, run_log)
        try:
            self._where[plan.run_id] = member
            run_log.line(f"Engine: {member.name}")
            if self.on_assigned is not None:
                await self.on_assigned(plan.run_id, member.name)
            try:
                await member.backend.run(plan, run_log, report)
            except BasewatchError as exc:
                if plan.run_id in member.lost or not await self._answers(member):
                    raise EngineLost(member.name, f"the build engine {member.name} stopped "
                                     f"answering during the run ({member.error or exc})") from None
                raise
        finally:
            self._where.pop(plan.run_id, None)
            member.lost.discard(plan.run_id)
            await self._release(member, plan.run_id)

    async def _acquire(self, plan: RunPlan, run_log: RunLogSink) -> PoolMember:
        wanted = plan_platforms(plan)
        able = [m for m in self.members if m.builds(wanted)]
        if not able:
            offered = "; ".join(f"{m.name}: {', '.join(map(str, m.platforms or ()))}"
                                for m in self.members)
            raise BasewatchError(f"no build engine builds {', '.join(sorted(map(str, wanted)))} "
                                 f"(engines[].platforms: {offered})")
        said = refused = False
        while True:
            change = self._change  # a release or an engine coming up from here on sets it
            up = [m for m in able if m.up]
            busy = False
            try:
                member = await self._claim(plan.run_id, up)
            except StoreBusyError as exc:
                member, busy = None, True
                if not refused:
                    run_log.line(f"The store refuses the claim of a build engine's slot for "
                                 f"now ({exc}); trying again")
                    refused = True
            if member is not None:
                return member
            if not said and not busy:
                down = [m.name for m in able if not m.up]
                run_log.line(f"Waiting for a build engine ({', '.join(m.name for m in able)})"
                             " with a free slot" + (f"; down: {', '.join(down)}" if down
                                                    else ""))
                said = True
            if not up:
                await change.wait()  # only an engine coming up helps
                continue
            try:
                await asyncio.wait_for(change.wait(), WAIT_SECONDS)
            except TimeoutError:
                await self._read_loads()  # other daemons may have freed one

    async def _claim(self, run_id: str, up: list[PoolMember]) -> PoolMember | None:
        """A slot on the least-loaded of `up` with room, claimed; None when none has room."""
        async with self._claiming:
            # What this daemon knows spares a claim that cannot succeed: its own runs exactly,
            # the others' as last read.
            if not any(self._free(m) for m in up):
                return None
            try:
                engine = await self.engine_slots.claim(
                    run_id, [(m.name, m.max_concurrent_runs) for m in up], self.daemon_id)
            except asyncio.CancelledError:
                # The claim may have gone in before the cancel reached it.
                self._release_slot(run_id)
                raise
            if engine is None:
                self._others_read_at = -math.inf  # the others took them: read again
                return None
            member = next(m for m in up if m.name == engine)
            member.runs.add(run_id)
            return member

    async def _release(self, member: PoolMember, run_id: str) -> None:
        member.runs.discard(run_id)
        release = self._release_slot(run_id)
        # Not cancelled with the run: the slot is freed whatever ends the run.
        await asyncio.wait({release}, timeout=RELEASE_WAIT_SECONDS)

    def _release_slot(self, run_id: str) -> asyncio.Task:
        release = asyncio.get_running_loop().create_task(self._released(run_id),
                                                         name=f"release slot of {run_id}")
        self._releases.add(release)
        release.add_done_callback(self._releases.discard)
        return release

    async def _released(self, run_id: str) -> None:
        """Frees the run's slot, trying again while the store refuses."""
        attempt = 0
        while True:
            try:
                await self.engine_slots.release(run_id)
                break
            except Exception as exc:
                if attempt == 0:
                    log.warning("cannot free run %s's build engine slot yet (%s); trying again",
                                run_id, exc)
                await asyncio.sleep(backed_off(RELEASE_RETRY_SECONDS, attempt))
                attempt += 1
        self._changed()

    def _changed(self) -> None:
        """Wakes the runs waiting for a slot."""
        self._change.set()
        self._change = asyncio.Event()

    def _read_loads_soon(self) -> None:
        """The other daemons' loads read again in the background when they are old."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        if not self._stopped and time.monotonic() - self._others_read_at >= LOADS_SECONDS:
            self._reading_task()

    async def _read_loads(self) -> None:
        """The other daemons' loads read again when they are old."""
        if not self._stopped and time.monotonic() - self._others_read_at >= LOADS_SECONDS:
            await asyncio.shield(self._reading_task())

    def _reading_task(self) -> asyncio.Task:
        # One read at a time, however many ask.
        if self._reading is None or self._reading.done():
            self._reading = asyncio.get_running_loop().create_task(self._read_others())
        return self._reading

    async def _read_others(self) -> None:
        try:
            self._others = await self.engine_slots.loads(other_than=self.daemon_id)
        except Exception as exc:  # kept as they were: a later read may do
            log.warning("cannot read the build engines' loads for now: %s", exc)
        finally:
            self._others_read_at = time.monotonic()

    async def _ping(self, member: PoolMember) -> str | None:
        """None when it answers; why not otherwise."""
        future = asyncio.get_running_loop().run_in_executor(self._pings, member.ping)
        try:
            await asyncio.wait_for(future, PING_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"no answer to a ping within {PING_TIMEOUT_SECONDS:.0f}s"
        except BasewatchError as exc:
            return str(exc)
        except Exception as exc:  # an SDK surprise: still a down engine, not a dead watch
            return f"{type(exc).__name__}: {exc}"
        return None

    async def _answers(self, member: PoolMember) -> bool:
        """Asked after a run on it failed: is it still there? Marks it down if not."""
        if not member.up:
            return False
        error = await self._ping(member)
        if error is not None:
            await self._mark_down(member, error)
        return error is None

    async def _check(self, member: PoolMember) -> None:
        error = await self._ping(member)
        if error is None and not member.up:
            await self._mark_up(member)
        elif error is not None and member.up:
            await self._mark_down(member, error)
        elif error is not None:
            if member.failures == 0:
                log.error("build engine %s does not answer: %s", member.name, error)
            member.failures += 1
            member.error = error
        elif error is None and member.error is not None:
            member.error = None

    async def _watch(self, member: PoolMember) -> None:
        while True:
            member.went_down.clear()
            delay = self.check_seconds if member.up \
                else backed_off(self.down_recheck_seconds, member.failures)
            try:
                # A run's failure may mark it down meanwhile: then on the down schedule.
                await asyncio.wait_for(member.went_down.wait(), delay)
                continue
            except TimeoutError:
                pass
            await self._check(member)

    async def _mark_down(self, member: PoolMember, error: str) -> None:
        if not member.up and member.error is not None and member.failures:
            return
        log.error("build engine %s is down: %s; its %d run(s) in progress fail and are queued "
                  "again once", member.name, error, len(member.runs))
        member.up, member.error, member.failures = False, error, 1
        member.went_down.set()
        member.lost |= member.runs
        for run_id in list(member.runs):
            # Cut short now: an engine that hangs rather than dies would hold them for long.
            try:
                await member.backend.cancel(run_id)
            except Exception:
                log.exception("cannot cut run %s short on engine %s", run_id, member.name)

    async def _mark_up(self, member: PoolMember) -> None:
        was = member.error
        member.up, member.error, member.failures = True, None, 0
        self._changed()
        log.info("build engine %s answers%s", member.name,
                 "" if was == "not checked yet" else f" again (it was down: {was})")
