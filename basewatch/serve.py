"""`basewatch serve` as a process: its port answers from the first moment, and its signals are
handled from then on too.

The daemon's modules take a second or more to import on a busy machine (the docker SDK,
SQLAlchemy, pydantic, aiohttp...) and its settings some more to read: that happens on a thread
while the port, bound at once, answers every request 503 (/healthz: `starting`). The daemon
then takes the same sockets over as it starts serving (basewatch/http/starting.py).
SIGTERM and SIGINT stop it cleanly, SIGHUP re-reads the config's tasks (one asked before the
daemon could take it is done once it can), SIGUSR1 logs what every asyncio task waits on.
"""
from __future__ import annotations

import asyncio
import io
import logging
import signal
import threading
from pathlib import Path

from basewatch.config_listen import listen_in_text
from basewatch.http.starting import StartingServer

log = logging.getLogger(__name__)


def serve(config_path: Path, log_level: str) -> None:
    """Run the daemon of this config file until SIGTERM or SIGINT."""
    asyncio.run(_serve(config_path, log_level))


def _loaded(config_path: Path, log_level: str):
    """The file's settings, its logging set up, and the daemon's class: what a start reads and
    imports before the daemon exists, done on a thread."""
    from basewatch.config import load_settings
    from basewatch.logs import configure_logging

    # The tasks are read once the daemon serves (a config of thousands takes seconds).
    config = load_settings(config_path)
    configure_logging(log_level, config.log_format)
    from basewatch.daemon import Daemon

    return config, Daemon


def _on_own_thread(function, *args) -> asyncio.Future:
    """`function(*args)` on a thread the process does not wait for as it exits (not the loop's
    executor, whose threads it joins): a stop while the daemon's modules are being imported
    ends the process at once, not seconds later once they are."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(outcome: BaseException | None, result=None) -> None:
        if not future.done():  # not given up on (a stop came first)
            if outcome is None:
                future.set_result(result)
            else:
                future.set_exception(outcome)

    def run() -> None:
        try:
            result, outcome = function(*args), None
        except BaseException as exc:
            result, outcome = None, exc
        try:
            loop.call_soon_threadsafe(settle, outcome, result)
        except RuntimeError:
            pass  # the loop is closed: nobody waits for it any more

    threading.Thread(target=run, name="loading", daemon=True).start()
    return future


async def _starting_server(config_path: Path) -> StartingServer | None:
    """The port answering at once, when the file's text says plainly where; None otherwise
    (the daemon binds its port itself then, and says why if it cannot, as it always has)."""
    try:
        listen = listen_in_text(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None  # reading the config says what is wrong with it
    if listen is None:
        return None
    try:
        return await StartingServer.open(listen)
    except OSError:
        return None


class _Signals:
    """What the process's signals ask, from its first moment (the daemon comes later)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.stop = asyncio.Event()
        self.daemon = None
        self.reloads: set[asyncio.Task] = set()
        self._reload_asked = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGUSR1, _log_task_stacks)

    def serving(self, daemon) -> None:
        """The daemon serves: SIGHUP reloads it, and one that came before does now."""
        self.daemon = daemon
        if self._reload_asked:
            self._reload()

    def _reload(self) -> None:
        if self.daemon is None:
            self._reload_asked = True
            return
        task = self._loop.create_task(self.daemon.reload())
        self.reloads.add(task)
        task.add_done_callback(self.reloads.discard)

    def stopping(self) -> None:
        """Back to the defaults: a second SIGTERM while stopping ends the process."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._loop.remove_signal_handler(signum)

    def close(self) -> None:
        self.stopping()
        self._loop.remove_signal_handler(signal.SIGUSR1)


async def _serve(config_path: Path, log_level: str) -> None:
    signals = _Signals(asyncio.get_running_loop())
    starting = await _starting_server(config_path)
    loading = _on_own_thread(_loaded, config_path, log_level)
    stop = asyncio.ensure_future(signals.stop.wait())
    try:
        await asyncio.wait({loading, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not loading.done():
            loading.cancel()  # its thread is left to the process's exit
            return
        config, daemon_class = loading.result()  # a config refused stops here, as ever
        if starting is not None and starting.listen != config.listen:
            starting.close()  # the text misled: the daemon binds where the config says
            starting = None
        daemon = daemon_class(config, config_path=config_path, tasks_from_file=True,
                              listener=starting)
        await _run(daemon, signals, stop)
    finally:
        stop.cancel()
        if starting is not None:
            starting.close()
        signals.close()


async def _run(daemon, signals: _Signals, stop: asyncio.Future) -> None:
    await daemon.start_serving()
    signals.serving(daemon)
    registered = asyncio.ensure_future(daemon.registered())
    try:
        # A registration that fails unexpectedly stops the daemon, as a failed start did.
        await asyncio.wait({stop, registered}, return_when=asyncio.FIRST_COMPLETED)
        if registered.done():
            registered.result()
        await stop
        log.info("shutting down")
    finally:
        signals.stopping()
        log.info("stopping: SIGUSR1 logs what each task is waiting on")
        if not registered.done():
            registered.cancel()
            for task in signals.reloads:  # waiting for the registration that stops now
                task.cancel()
        await asyncio.gather(*signals.reloads, return_exceptions=True)
        await daemon.stop()


def _log_task_stacks() -> None:
    """SIGUSR1: what every asyncio task is waiting on, in the log; for a daemon that seems
    stuck (a slow shutdown, a run that does not end)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"task {task.get_name()}:", file=out)
        task.print_stack(limit=8, file=out)
    log.warning("SIGUSR1: %d tasks\n%s", len(asyncio.all_tasks()), out.getvalue())
