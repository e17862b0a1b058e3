"""Arguments as az users expect them, through the real CLI against a running daemon:
`build -r`, tags the shell emptied, statuses in any case, a URL without a scheme, relative
contexts, cancel-run's answer, and errors with the subcommand's own usage."""
from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading

import pytest

from tests.e2e.test_cli_output import cli_env, run_id
from tests.e2e.test_graph import cli
from tests.e2e.test_quick_build import tag_exists
from tests.e2e.test_task_commands import daemon  # noqa: F401  (a fixture)

pytestmark = pytest.mark.e2e


def cli_in(cwd, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "basewatch", *args], cwd=cwd,
                          env=cli_env(url), capture_output=True, text=True, timeout=120)


def test_build_registry_tags_statuses_and_url(tmp_path, daemon):  # noqa: F811
    url, reg, _, _ = daemon
    context = tmp_path / "quick"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {reg}/base:1\n")

    # An unquoted $ID, emptied by the shell: refused before anything is queued.
    empty = cli("build", "-r", reg, "-t", "quick:", str(context), url=url)
    assert empty.returncode == 2 and "Quote it: -t 'app:$ID'" in empty.stderr, empty.stderr
    assert empty.stderr.count("\n") == 1
    assert json.loads(cli("task", "list-runs", "-o", "json", url=url).stdout) == []

    built = cli("build", "-r", reg, "-t", "quick:dev", str(context), url=url)
    quick = run_id(built)
    assert tag_exists(reg, "quick", "dev"), "-t is relative to -r, as az acr build's"
    assert built.stdout.count(f"Run ID: {quick} was successful") == 1, built.stdout

    row = cli("task", "list-runs", url=url).stdout.splitlines()[2].split()
    assert row[:2] == [quick, "QuickBuild"]
    for status in ("succeeded", "SUCCEEDED", "Succeeded"):
        found = cli("task", "list-runs", "--run-status", status, "--query", "[].id", "-o",
                    "tsv", url=url)
        assert found.stdout == f"{quick}\n", (status, found.stderr)
    wrong = cli("task", "list-runs", "--run-status", "done", url=url)
    assert wrong.returncode == 2 and "status 'done' is not one of" in wrong.stderr

    bare = url.removeprefix("http://")
    assert cli("task", "list", "-o", "json", url=bare).returncode == 0, "no scheme: http"
    ftp = cli("task", "list", url="ftp://" + bare)
    assert ftp.returncode == 2 and "write it as http://HOST:PORT" in ftp.stderr


def test_relative_context_and_cancel_run(tmp_path, daemon):  # noqa: F811
    url, reg, _, _ = daemon
    (tmp_path / "apps" / "rel").mkdir(parents=True)
    (tmp_path / "apps" / "rel" / "Dockerfile").write_text(
        f"FROM {reg}/base:1\nRUN echo started && sleep 120\n")
    created = cli_in(tmp_path, url, "task", "create", "rel", "--context", "apps/rel",
                     "-t", f"{reg}/rel:1", "--query", "context", "-o", "tsv")
    assert created.stdout == f"{tmp_path / 'apps' / 'rel'}\n", created.stderr

    slow = run_id(cli("task", "run", "rel", "--no-wait", url=url))
    canceled = cli("task", "cancel-run", "--run-id", slow, url=url)
    assert canceled.stdout.splitlines() == [f"Run ID: {slow}: cancel requested",
                                            f"Run ID: {slow}: Canceled"], canceled.stderr


def test_errors_show_the_subcommands_usage_and_required_flags(tmp_path):
    wrong = cli_in(tmp_path, "http://127.0.0.1:1", "task", "list", "--frob")
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("usage: basewatch task list ")
    assert "basewatch task list: error: unrecognized arguments: --frob" in wrong.stderr
    helped = cli_in(tmp_path, "http://127.0.0.1:1", "task", "create", "--help").stdout
    assert "(required) the build context" in " ".join(helped.split())


def test_a_404_from_something_else_says_so(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = cli_in(tmp_path, url, "task", "list")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "not as a basewatch daemon does: is BASEWATCH_URL" in result.stderr, result.stderr
