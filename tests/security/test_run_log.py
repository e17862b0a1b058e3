"""A run's log is bounded (issue 8, item 4: `max_log_bytes`): a build that prints without end
fills neither the disk nor a follower's memory, and whoever follows sees where it was cut."""
from __future__ import annotations

import pytest

from tests.e2e.test_daemon import health, start_daemon, stop
from tests.e2e.test_graph import TOKEN
from tests.e2e.test_quick_build import cli

pytestmark = pytest.mark.e2e

CAP = 64 * 1024


@pytest.fixture
def daemon(tmp_path, registry, base_images, docker_host):
    base_images.build(f"{registry.address}/base:1", {"/etc/release": "1\n"})
    config = {"poll_interval": "1h", "registries": [{"host": registry.address}],
              "api_token_env": "API_TOKEN", "max_log_bytes": CAP}
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    health(url, process)
    yield url, registry.address, tmp_path / "state" / "logs"
    stop(process)


async def test_a_loud_build_is_cut_at_max_log_bytes_and_followers_see_the_cut(tmp_path, daemon):
    url, reg, logs = daemon
    app = tmp_path / "app"
    app.mkdir()
    # About 1.3 MB of output, twenty times the cap.
    (app / "Dockerfile").write_text(f"FROM {reg}/base:1\nRUN seq 1 200000\n")
    code, out, err = await cli("build", "--no-push", "-t", f"{reg}/loud:1", str(app), url=url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[-1].startswith("Run ID: ca1 was successful after ")
    cut = lines[-2]
    assert f"The log was cut at {CAP:,} bytes (max_log_bytes): " in cut
    assert int(cut.split(": ")[-1].split()[0].replace(",", "")) > 1_000_000  # bytes not kept
    assert "\n199999\n" not in out  # the end of the output was not kept

    log = logs / "ca1.log"
    assert CAP - 200 < log.stat().st_size <= CAP + len(cut) + 1
    code, shown, err = await cli("task", "logs", "--run-id", "ca1", url=url)
    assert code == 0, err
    assert shown.splitlines()[-1] == cut and shown.count("The log was cut") == 1
