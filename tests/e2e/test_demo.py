"""`make demo`'s script, twice in a row, as a newcomer would run it again: each demo starts from a
clean state and announces only the rebuilds of its own patch (runs ca1 and ca2 on the digest it
pushed), then stops the daemon and the stack it started."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ANNOUNCED = re.compile(r"rebuilt on the patched base \((sha256:[0-9a-f]{64})\) and pushed "
                       r"\((ca\d+), (ca\d+)\)")


def test_a_second_demo_starts_clean_and_tells_the_truth(docker_host):
    patched = []
    for attempt in range(2):
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "scripts/demo.py", "--exit-after-rebuild"], cwd=REPO,
            env=dict(os.environ, DOCKER_HOST=docker_host), capture_output=True, text=True,
            timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        found = ANNOUNCED.search(output)
        assert found, output[-4000:]
        digest, *run_ids = found.groups()
        assert run_ids == ["ca1", "ca2"], "a clean state: this demo's runs, not the last one's"
        patched.append(digest)
        if attempt:
            assert "removing the last demo's state" in output
        # Printed, not asserted: how long the whole demo took, stop included.
        print(f"demo {attempt + 1}: {time.monotonic() - started:.1f} s")
    assert patched[0] != patched[1], "each demo announces the digest of its own patch"
