"""A daemon in the test's own process, on a real port, with no engine behind it: for checks
of the HTTP edge and the run lifecycle that need to count or fake what the daemon calls."""
from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import AsyncIterator

from basewatch.config import Config
from basewatch.daemon import Daemon

TOKEN = "in-process-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def running_daemon(tmp_path: Path, monkeypatch, **settings) -> AsyncIterator[Daemon]:
    """A started daemon whose state lives in tmp_path; its URL is `daemon.url`."""
    monkeypatch.setenv("BASEWATCH_TEST_TOKEN", TOKEN)
    port = free_port()
    config = Config(state_dir=tmp_path / "state", listen=f"127.0.0.1:{port}",
                    api_token_env="BASEWATCH_TEST_TOKEN", **settings)
    daemon = Daemon(config, docker_host=f"unix://{tmp_path}/no-engine.sock")
    await daemon.start()
    daemon.url = f"http://127.0.0.1:{port}"
    try:
        yield daemon
    finally:
        await daemon.stop()
