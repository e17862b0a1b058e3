"""`basewatch graph` against a running daemon: what is watched, its digests, and the cascades."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.test_daemon import health, start_daemon, stop, write_app

pytestmark = pytest.mark.e2e

TOKEN = "graph-test-token"


def cli(*args: str, url: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASEWATCH_")}
    env["BASEWATCH_URL"] = url
    if token is not None:
        env["BASEWATCH_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "basewatch", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_graph_shows_bases_digests_dependents_and_cascades(tmp_path, registry, base_images,
                                                           docker_host):
    reg = registry.address
    base_digest = base_images.build(f"{reg}/base:1")
    base_images.build(f"{reg}/mid:latest")
    config = {
        "poll_interval": "1s", "registries": [{"host": reg}], "api_token_env": "API_TOKEN",
        "tasks": [
            {"name": "mid", "image": f"{reg}/mid:latest",
             "context": write_app(tmp_path, "mid", f"FROM {reg}/base:1\n")},
            {"name": "app", "image": [f"{reg}/app:{{{{.Run.ID}}}}", f"{reg}/app:latest"],
             "context": write_app(tmp_path, "app",
                                  f"FROM {reg}/base:1 AS build\nFROM {reg}/mid:latest\n"
                                  "COPY --from=build /bin/busybox /bin/copied\n")},
        ],
    }
    process, url = start_daemon(config, tmp_path, docker_host, env={"API_TOKEN": TOKEN})
    try:
        health(url, process)
        result = cli("graph", "--format", "json", url=url)
        assert result.returncode == 0, result.stderr
        view = json.loads(result.stdout)
        refs = {r["reference"]: r for r in view["references"]}
        assert set(refs) == {f"{reg}/base:1", f"{reg}/mid:latest"}
        base = refs[f"{reg}/base:1"]
        assert base["digest"] == base_digest and base["platform"] == "linux/amd64"
        assert base["checked_at"] is not None and base["last_error"] is None
        assert {(d["task"], d["kind"]) for d in base["dependents"]} == {
            ("mid", "runtime"), ("app", "buildtime")}
        assert refs[f"{reg}/mid:latest"]["published_by"] == ["mid"]
        tasks = {t["name"]: t for t in view["tasks"]}
        assert tasks["mid"]["downstream"] == ["app"] and tasks["app"]["upstream"] == ["mid"]
        assert tasks["app"]["publishes"] == [f"{reg}/app:latest"], "per-run tags are not bases"

        text = cli("graph", url=url)
        assert text.returncode == 0, text.stderr
        assert f"{reg}/mid:latest [linux/amd64]" in text.stdout
        assert "  <- app (buildtime)" in text.stdout and "  mid -> app" in text.stdout
        dot = cli("graph", "--format", "dot", url=url)
        assert dot.stdout.startswith("digraph basewatch {") and '"task:mid"' in dot.stdout

        refused = cli("graph", url=url, token=None)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith("basewatch: error: missing or wrong API token")
        wrong = cli("graph", url=url, token="nope")
        assert "missing or wrong API token" in wrong.stderr and "(HTTP 401)" in wrong.stderr
    finally:
        stop(process)
