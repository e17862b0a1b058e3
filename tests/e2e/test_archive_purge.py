"""Archive and purge through the CLI: an archived run outlives the retention, and its log is in
the registry as an OCI artifact; the others are purged with their logs."""
from __future__ import annotations

import json
import time

import pytest

from tests.e2e.test_daemon import health, start_daemon, stop, write_app
from tests.e2e.test_graph import TOKEN, cli
from tests.support.oras_pull import oras_pull

pytestmark = pytest.mark.e2e


async def test_archived_run_survives_the_purge_and_its_log_is_in_the_registry(
        tmp_path, registry, base_images, docker_host):
    reg = registry.address
    base_images.build(f"{reg}/base:1")
    config = {
        "poll_interval": "1h", "registries": [{"host": reg}], "api_token_env": "API_TOKEN",
        "retention": "4s", "purge_interval": "1s",
        "log_archive": {"repository": f"{reg}/basewatch/run-logs"},
        "tasks": [{"name": "app", "image": f"{reg}/app:latest",
                   "context": write_app(tmp_path, "app", f"FROM {reg}/base:1\nRUN echo hi\n")}],
    }
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    try:
        health(url, process)
        for _ in range(2):
            assert cli("task", "run", "app", "--no-logs", url=url).returncode == 0
        archived = cli("task", "update-run", "--run-id", "ca1", "--no-archive", "false", url=url)
        assert archived.returncode == 0, archived.stderr
        reference = json.loads(archived.stdout)["archive_ref"]
        assert reference.startswith(f"{reg}/basewatch/run-logs:ca1@sha256:")

        logs = tmp_path / "state" / "logs"
        original = (logs / "ca1.log").read_text()
        [pulled] = await oras_pull(reference, tmp_path / "pulled")
        assert pulled.name == "ca1.log"
        assert pulled.read_text() == original and "Run ID: ca1 was successful" in original

        deadline = time.monotonic() + 30
        while (logs / "ca2.log").exists():
            assert time.monotonic() < deadline, "the purge never removed ca2"
            time.sleep(0.5)
        gone = cli("task", "show-run", "--run-id", "ca2", url=url)
        assert gone.returncode == 2 and "no run with ID ca2" in gone.stderr
        kept = json.loads(cli("task", "show-run", "--run-id", "ca1", url=url).stdout)
        assert kept["archived"] is True and (logs / "ca1.log").exists()

        running = cli("task", "update-run", "--run-id", "ca9", "--no-archive", "false", url=url)
        assert running.returncode == 2 and "no run with ID ca9" in running.stderr
    finally:
        stop(process)
