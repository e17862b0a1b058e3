"""Hostile build contexts (issue 8, item 4 and the Low list): tiny uploads that used to take
gigabytes, a recursion error or a minute are refused at once with a clear 400, and a git
context is held to max_context_bytes as uploads and tarballs are."""
from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from tests.e2e.test_daemon import health, start_daemon, stop
from tests.e2e.test_graph import TOKEN
from tests.e2e.test_quick_build import cli
from tests.support.git_http import GitHttpServer
from tests.support.uploads import post_build

pytestmark = pytest.mark.e2e


def hostile_name(folders: int) -> bytes:
    """A gzipped tar of one empty file whose PAX name is `folders` times "a/"."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("a/" * folders + "f"))
    return buffer.getvalue()


def upload(url: str, body: bytes) -> tuple[int, dict]:
    return post_build(url, body, {"image": ["127.0.0.1:1/never:1"], "file": "Dockerfile",
                                  "push": False}, TOKEN)


@pytest.fixture
def daemon(tmp_path, docker_host):
    process, url = start_daemon({"api_token_env": "API_TOKEN", "max_context_bytes": 200_000},
                                tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    health(url, process)
    yield url, tmp_path, process
    stop(process)  # asserts a clean exit and no traceback in the daemon's output


def test_a_hostile_name_is_a_clear_400_and_nothing_is_left(daemon):
    url, tmp_path, process = daemon
    # 2,000 folders: a RecursionError and a 500 before; 40,000 took 2.4 GB (see below).
    body = hostile_name(2_000)
    assert len(body) < 300
    status, answer = upload(url, body)
    assert status == 400, answer
    assert answer["error"].startswith("unsafe build context: 'a/a/a/")
    assert answer["error"].endswith("is more than 256 folders deep")
    assert health(url, process)["status"] == "ok"
    contexts = tmp_path / "state" / "contexts"
    assert not contexts.exists() or not any(p for p in contexts.rglob("*") if p.is_file())


def test_extracting_a_hostile_name_stays_small(bounded):
    # Issue 8: a 240-byte upload, one PAX name of 40,000 "a/", held 2.4 GB.
    result = bounded(f"""
import io, tarfile, tempfile
from pathlib import Path
from basewatch.builder.contexts.archive import extract_context
from basewatch.context_spec import ContextError
buffer = io.BytesIO()
with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
    tar.addfile(tarfile.TarInfo("a/" * 40_000 + "f"))
assert len(buffer.getvalue()) < 300
buffer.seek(0)
try:
    extract_context(buffer, Path(tempfile.mkdtemp()) / "context", {512 << 20})
except ContextError as error:
    print("refused:", error)
""")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("refused: unsafe build context: 'a/a/a/")
    assert "is longer than 4096 bytes" in result.stdout


def test_two_hundred_thousand_empty_files_are_refused_at_the_entry_cap(bounded):
    # Issue 8 (Low): 200,000 empty files in a 1.2 MB upload took 55 s to extract.
    result = bounded(f"""
import io, tarfile, tempfile, time
from pathlib import Path
from basewatch.builder.contexts.archive import extract_context
from basewatch.context_spec import ContextError
buffer = io.BytesIO()
with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    for index in range(200_000):
        tar.addfile(tarfile.TarInfo(f"d{{index % 100}}/f{{index}}"))
assert len(buffer.getvalue()) < 2_000_000
buffer.seek(0)
destination = Path(tempfile.mkdtemp()) / "context"
started = time.monotonic()
try:
    extract_context(buffer, destination, {512 << 20})
except ContextError as error:
    print("refused:", error)
print("seconds:", time.monotonic() - started)
print("left:", destination.exists())
""", timeout=170)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == ("refused: the build context has more than 100,000 entries (files, "
                        "folders and links), the limit: list what the build does not need in "
                        ".dockerignore")
    assert lines[2] == "left: False"


@pytest.fixture
def build_daemon(tmp_path, registry, base_images, docker_host):
    base_images.build(f"{registry.address}/base:1", {"/etc/release": "1\n"})
    config = {"poll_interval": "1h", "registries": [{"host": registry.address}],
              "api_token_env": "API_TOKEN", "max_context_bytes": 200_000,
              "allowed_context_hosts": ["127.0.0.1"]}
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    health(url, process)
    yield url, registry.address, tmp_path
    stop(process)


async def test_a_git_context_over_max_context_bytes_fails_the_run_clearly(tmp_path,
                                                                          build_daemon):
    # Issue 8 (Low): max_context_bytes did not apply to git checkouts.
    url, reg, daemon_dir = build_daemon
    work = tmp_path / "work"
    work.mkdir()
    (work / "Dockerfile").write_text(f"FROM {reg}/base:1\nCOPY big.bin /big.bin\n")
    (work / "big.bin").write_bytes(os.urandom(500_000))
    for args in (["init", "-q", "-b", "main"], ["add", "."],
                 ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "c"]):
        subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(served / "big.git")],
                   check=True)
    async with GitHttpServer(served) as server:
        code, out, err = await cli("build", "--no-push", "-t", f"{reg}/big:1",
                                   server.url("big.git"), url=url)
    assert code == 1
    # Refused as git writes it (the objects and the checkout: twice the limit) or once done.
    assert "Status: Error" in err and "the limit of 195.3 KiB (max_context_bytes)" in err, err
    assert "Traceback" not in err + out
    assert not any((daemon_dir / "state" / "contexts").glob("run-*"))


def test_the_property_tests_hold_under_the_memory_limit(bounded):
    # Issue 8: any input gives a result or a clear error within a memory and time bound.
    result = bounded("import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
                     "'tests/unit/test_archive_properties.py']))", timeout=170)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
