"""Bad input through the real `basewatch` command: one-line errors, a non-zero exit, no traceback.

These run the command in a subprocess, as a user would, and need no engine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "config" / "demo.yml"
MULTI_STAGE = """\
ARG BASE
FROM golang:1.22 AS build
RUN go build -o /out/app .
FROM ${BASE} AS runtime
COPY --from=build /out/app /app
FROM runtime AS debug
COPY --from=busybox:1.36 /bin/busybox /bin/busybox
"""


def basewatch(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python -m basewatch ARGS` from this checkout, in `cwd`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "basewatch", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The lines of a failed command's stderr, each checked to be a `basewatch: error:` line."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert lines, "the command failed without a message"
    for line in lines:
        assert line.startswith("basewatch: error: "), result.stderr
    return [line.removeprefix("basewatch: error: ") for line in lines]


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `basewatch: error:` line of a failed command."""
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    return lines[0]


# ------------------------------------------------------------------ check-config


def test_check_config_on_broken_yaml(tmp_path):
    (tmp_path / "basewatch.yml").write_text("tasks:\n  - name: app\n    context: .\n   image: x\n")
    message = error_line(basewatch(tmp_path, "check-config", "basewatch.yml"))
    assert message.startswith("basewatch.yml: not valid YAML (line 4, column 4): ")


def test_check_config_on_unknown_key(tmp_path):
    (tmp_path / "basewatch.yml").write_text(
        "tasks:\n  - {name: one, context: ., image: x}\n  - {name: two, context: ., image: x,"
        " contxt: .}\n")
    message = error_line(basewatch(tmp_path, "check-config", "basewatch.yml"))
    assert message == "basewatch.yml: tasks[1].contxt: unknown key; did you mean `context`?"


def test_check_config_gives_one_line_per_problem(tmp_path):
    (tmp_path / "basewatch.yml").write_text(
        "listen: nowhere\n"
        "tasks: [{name: one, context: ., image: x, platform: windows/amd64}]\n")
    assert error_lines(basewatch(tmp_path, "check-config", "basewatch.yml")) == [
        "basewatch.yml: listen: 'nowhere' is not host:port",
        "basewatch.yml: tasks[0].platform: windows images cannot be built on a Linux engine",
    ]


def test_check_config_on_missing_file(tmp_path):
    message = error_line(basewatch(tmp_path, "check-config", "missing.yml"))
    assert message == "missing.yml: no such config file"


def test_check_config_accepts_the_demo_config(tmp_path, monkeypatch):
    # As `make demo` runs it: the variables it names are set (serve refuses to start without).
    monkeypatch.setenv("BASEWATCH_TOKEN", "t")
    monkeypatch.setenv("BASEWATCH_NOTIFY_TOKEN", "n")
    result = basewatch(tmp_path, "check-config", str(DEMO_CONFIG))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{DEMO_CONFIG}: valid (2 tasks, 1 registries)\n"
    assert result.stderr == ""


# ------------------------------------------------------------------ serve


def test_serve_on_invalid_config_exits_at_once(tmp_path):
    (tmp_path / "basewatch.yml").write_text("listen: 8080\n")
    # A short timeout: a daemon that started anyway would hang here instead of exiting.
    result = basewatch(tmp_path, "serve", "--config", "basewatch.yml", timeout=30)
    assert error_line(result) == "basewatch.yml: listen: Input should be a valid string"
    assert not (tmp_path / ".basewatch").exists(), "state was created for an invalid config"


# ------------------------------------------------------------------ bases: errors


def test_bases_on_missing_dockerfile(tmp_path):
    message = error_line(basewatch(tmp_path, "bases", "nowhere/Dockerfile"))
    assert message == "nowhere/Dockerfile: no such Dockerfile"


def test_bases_on_folder_without_dockerfile(tmp_path):
    (tmp_path / "app").mkdir()
    message = error_line(basewatch(tmp_path, "bases", "app"))
    assert message == "app/Dockerfile: no such Dockerfile"


def test_bases_on_from_arg_without_value_names_the_arg_and_suggests_build_arg(tmp_path):
    (tmp_path / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN true\n")
    message = error_line(basewatch(tmp_path, "bases", "Dockerfile"))
    assert message.startswith("Dockerfile line 2: ")
    assert "ARG BASE" in message
    assert "--build-arg BASE=" in message


def test_bases_on_unknown_target_lists_the_stages(tmp_path):
    (tmp_path / "Dockerfile").write_text(MULTI_STAGE)
    message = error_line(basewatch(tmp_path, "bases", ".", "--build-arg", "BASE=node:20",
                                   "--target", "release"))
    assert message == "Dockerfile: no build stage named 'release'; stages: build, runtime, debug"


@pytest.mark.parametrize("build_arg", ["BASE", "=node:20"])
def test_bases_on_malformed_build_arg_is_a_usage_error(tmp_path, build_arg):
    (tmp_path / "Dockerfile").write_text(MULTI_STAGE)
    result = basewatch(tmp_path, "bases", "Dockerfile", "--build-arg", build_arg)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"argument --build-arg: {build_arg!r} is not KEY=VALUE" in result.stderr


# ------------------------------------------------------------------ bases: what it prints


def test_bases_prints_runtime_and_buildtime(tmp_path):
    (tmp_path / "Dockerfile").write_text(MULTI_STAGE)
    result = basewatch(tmp_path, "bases", "Dockerfile", "--build-arg", "BASE=node:20")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "runtime:   docker.io/library/node:20",
        "buildtime: docker.io/library/busybox:1.36",
        "buildtime: docker.io/library/golang:1.22",
    ]


def test_bases_json_for_a_target_stage(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile.prod").write_text(MULTI_STAGE)
    result = basewatch(tmp_path, "bases", "app", "--file", "Dockerfile.prod",
                       "--build-arg", "BASE=127.0.0.1:5000/demo/base:1",
                       "--target", "runtime", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"runtime": "127.0.0.1:5000/demo/base:1",
                                         "buildtime": ["docker.io/library/golang:1.22"]}
