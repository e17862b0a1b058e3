"""A real registry's push notifications reach the daemon and rebuild at once, without polling."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
import stack
from prometheus_client.parser import text_string_to_metric_families

from basewatch.config import Config, NotificationSettings, RegistrySettings, TaskSettings
from basewatch.daemon import Daemon
from basewatch.models import RunStatus
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-notification-token"


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{label="v",...}': value}, labels sorted by name."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_push_notification_rebuilds_without_polling(tmp_path, start_registry, base_images,
                                                         docker_host, monkeypatch):
    monkeypatch.setenv("BASEWATCH_NOTIFY_TOKEN", TOKEN)
    port = stack.free_port()
    hook = f"http://127.0.0.1:{port}/webhooks/registry"
    registry = start_registry(notify_url=hook,
                              notify_headers={"Authorization": [f"Bearer {TOKEN}"]})
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    context = tmp_path / "app"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {reg}/base:1\n")
    config = Config(
        state_dir=tmp_path / "state", listen=f"127.0.0.1:{port}", poll_interval=3600,
        registries=[RegistrySettings(host=reg)],
        notifications=NotificationSettings(token_env="BASEWATCH_NOTIFY_TOKEN"),
        tasks=[TaskSettings(name="app", context=context, image=[f"{reg}/app:latest"])])
    daemon = Daemon(config, docker_host)
    await daemon.start()
    try:
        requests_before = daemon.registry_client.requests_sent
        await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "2\n"})

        async def rebuilt():
            runs = await daemon.store.runs.list(task="app")
            return runs if runs and runs[0].status.finished else None

        [run] = await wait_for(rebuilt, 60, "the rebuild a notification asked for")
        assert run.status is RunStatus.SUCCEEDED
        # The notification caused a HEAD of the base; polling, an hour away, caused nothing.
        assert daemon.registry_client.requests_sent > requests_before

        # A forged notification with the wrong token changes nothing.
        async with aiohttp.ClientSession() as session:
            async with session.post(hook, json={"events": []},
                                    headers={"Authorization": "Bearer wrong"}) as response:
                assert response.status == 401
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200  # no token: Prometheus scrapes it as it is
                metrics = parse_metrics(await response.text())
        assert metrics['basewatch_notifications_received_total{source="distribution"}'] >= 1
        assert metrics['basewatch_notifications_rejected_total{reason="unauthorized"}'] == 1
        assert metrics[f'basewatch_digest_checks_total{{registry="{reg}",result="changed"}}'] == 1
        assert metrics[f'basewatch_digest_changes_total{{registry="{reg}"}}'] == 1
        assert metrics['basewatch_runs_total{status="Succeeded",trigger="Image Update"}'] == 1
        assert metrics['basewatch_run_duration_seconds_count{trigger="Image Update"}'] == 1
        assert metrics["basewatch_watched_references"] == 1
        assert metrics["basewatch_queue_depth"] == 0
    finally:
        await daemon.stop()


async def test_missing_notification_token_stops_the_start_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    config = Config(state_dir=tmp_path / "state", listen="127.0.0.1:0",
                    notifications=NotificationSettings(token_env="NOT_SET_ANYWHERE"))
    with pytest.raises(Exception) as refused:
        await Daemon(config, "unix:///nowhere.sock").start()
    assert str(refused.value) == ("notifications.token_env: the environment variable "
                                  "NOT_SET_ANYWHERE is not set")
