"""The CLI's output for scripts and people (`-o`, `--query`), and a reader that goes away
(`| head`, Ctrl-C) being quiet on both sides, through the real CLI against a running daemon."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.e2e.test_daemon import stop
from tests.e2e.test_graph import TOKEN, cli
from tests.e2e.test_task_commands import daemon  # noqa: F401  (a fixture)
from tests.support.log_lines import json_lines

pytestmark = pytest.mark.e2e


def cli_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASEWATCH_")}
    return {**env, "BASEWATCH_URL": url, "BASEWATCH_TOKEN": TOKEN}


def run_id(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return re.match(r"Queued a run with ID: (\S+)\n", result.stdout).group(1)


def create_task(tmp_path, url: str, name: str, dockerfile: str) -> None:
    context = tmp_path / "apps" / name
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(dockerfile)
    created = cli("task", "create", name, "--context", str(context), "-t", f"{name}:x",
                  "--push", "false", "-o", "none", url=url)
    assert (created.returncode, created.stdout) == (0, ""), created.stderr


def test_output_formats_and_queries(daemon):  # noqa: F811
    url, reg, _, _ = daemon
    first = run_id(cli("task", "run", "hello", url=url))

    tasks = json.loads(cli("task", "list", "-o", "json", url=url).stdout)
    assert [t["name"] for t in tasks] == ["hello"]
    assert cli("task", "list", url=url).stdout.startswith("NAME "), "people keep the table"

    runs = json.loads(cli("task", "list-runs", "-o", "json", url=url).stdout)
    assert [(r["id"], r["task"], r["status"]) for r in runs] == [(first, "hello", "Succeeded")]
    ids = cli("task", "list-runs", "--query", "[?status=='Succeeded'].id", "-o", "json",
              url=url)
    assert json.loads(ids.stdout) == [first]
    tsv = cli("task", "list-runs", "--query", "[].[id, task, status]", "-o", "tsv", url=url)
    assert tsv.stdout == f"{first}\thello\tSucceeded\n"
    table = cli("task", "list-runs", "--query", "[].{id: id, status: status}", url=url)
    assert table.stdout.splitlines()[0].split() == ["ID", "STATUS"]

    image = cli("task", "show", "hello", "--query", "image[0]", "-o", "tsv", url=url)
    assert image.stdout == f"{reg}/hello:latest\n"
    shown = json.loads(cli("task", "show-run", "--run-id", first, url=url).stdout)
    assert shown["id"] == first, "show-run's default stays json"
    assert cli("task", "show-run", "--run-id", first, "-o", "table",
               url=url).stdout.split()[:2] == ["RUN", "ID"]
    assert cli("task", "list", "-o", "none", url=url).stdout == ""
    graph = json.loads(cli("graph", "-o", "json", "--query", "keys(@)", url=url).stdout)
    assert isinstance(graph, list) and graph

    bad = cli("task", "list-runs", "--query", "[?status==", url=url)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("basewatch: error: --query '[?status==' is not valid JMESPath")


def test_closing_the_pipe_or_the_stream_is_quiet(tmp_path, daemon):  # noqa: F811
    url, reg, process, _ = daemon
    # A log larger than a pipe's buffer, so `head` closes the pipe while the CLI still writes.
    create_task(tmp_path, url, "chatty", f"FROM {reg}/base:1\nRUN seq 1 30000\n")
    chatty = run_id(cli("task", "run", "chatty", "--no-logs", url=url))
    for command in (f"task logs --run-id {chatty}", "task list-runs"):
        piped = subprocess.run(
            ["bash", "-c", f"{sys.executable} -m basewatch {command} | head -1"],
            env=cli_env(url), capture_output=True, text=True, timeout=60)
        assert piped.stdout.count("\n") == 1 and piped.stderr == "", (command, piped.stderr)

    # Ctrl-C on a followed log, and on a build: the run goes on, and the CLI says how to
    # follow or cancel it.
    create_task(tmp_path, url, "slow", f"FROM {reg}/base:1\nRUN echo started && sleep 120\n")
    slow = run_id(cli("task", "run", "slow", "--no-wait", url=url))
    context = tmp_path / "slow-build"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {reg}/base:1\nRUN echo started && sleep 120\n")
    for args in (["task", "logs", "--run-id", slow], ["build", "--no-push", str(context)]):
        follower = subprocess.Popen([sys.executable, "-m", "basewatch", *args],
                                    env=cli_env(url), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        output = ""
        while "started" not in output:
            line = follower.stdout.readline()
            assert line, follower.stderr.read()
            output += line
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
        assert follower.returncode == 130 and "Traceback" not in err, err
        if args[0] == "build":
            build = re.search(r"Queued a run with ID: (\S+)", output).group(1)
            assert f"Run {build} goes on" in err
            assert f"basewatch task cancel-run --run-id {build}" in err
            assert f"basewatch task logs --run-id {build}" in err
    for run in (slow, build):
        assert cli("task", "show-run", "--run-id", run, "--query", "status", "-o", "tsv",
                   url=url).stdout == "Running\n", "Ctrl-C stops watching, not the run"
        assert cli("task", "cancel-run", "--run-id", run, url=url).returncode == 0

    log = stop(process)
    assert "Traceback" not in log, log
    assert not any(line["level"] == "error" and line["logger"] == "aiohttp.server"
                   for line in json_lines(log)), log  # JSON lines: stderr is a pipe


def test_list_runs_watch_follows_runs_and_ends_quietly(daemon):  # noqa: F811
    url, *_ = daemon
    watcher = subprocess.Popen(
        [sys.executable, "-m", "basewatch", "task", "list-runs", "--watch", "--interval", "0.2"],
        env=cli_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline().startswith("RUN ID")
        run = run_id(cli("task", "run", "hello", url=url))
        seen = ""
        while not re.search(rf"^{run} +hello .*Succeeded", seen, re.MULTILINE):
            line = watcher.stdout.readline()
            assert line, watcher.stderr.read()
            seen += line
    finally:
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=30)
    assert (watcher.returncode, err) == (0, "")
