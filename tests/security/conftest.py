"""Fixtures for the hostile-input tests: the e2e fixtures, plus a way to run an input in a child
process under an address-space limit, so a blow-up is a clear failure rather than a dead suite."""
from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import base_images, docker_client  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent.parent

# What a hostile input may take: far above what the daemon needs (about 100 MiB), far below the
# gigabytes the findings of issue 8 took.
MEMORY_LIMIT = 512 * 1024 * 1024


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_bounded(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python `code` in a child under MEMORY_LIMIT and `timeout`; return what it printed."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_limit_memory)


@pytest.fixture
def bounded():
    return run_bounded
