"""scripts/stack.py's `up --notify`: the daemon's URL, its tokens, the exports it prints, and the
warning when the registry it finds running will not notify; and the quickstart's config."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import stack  # scripts/, put on sys.path by tests/conftest.py

from basewatch.config import load_config
from basewatch.dockerfile.analysis import analyse_dockerfile_path

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("given", ["http://127.0.0.1:8080", "http://127.0.0.1:8080/",
                                   "http://127.0.0.1:8080/webhooks/registry"])
def test_notify_names_the_daemon_or_its_endpoint(given):
    assert stack.daemon_url(given) == "http://127.0.0.1:8080"


@pytest.mark.parametrize("given", ["127.0.0.1:8080", "ftp://host/", "http://"])
def test_notify_without_an_http_url_says_how_to_write_it(given):
    with pytest.raises(RuntimeError, match=r"give the daemon's URL, as http://127\.0\.0\.1:8080"):
        stack.daemon_url(given)


def test_tokens_come_from_the_environment_then_the_last_up_then_new(tmp_path, monkeypatch):
    for name in stack.DAEMON_TOKENS:
        monkeypatch.delenv(name, raising=False)
    new = stack.daemon_tokens(tmp_path)
    assert len(set(new.values())) == 2 and all(len(v) == 48 for v in new.values())
    (tmp_path / "state.json").write_text('{"env": {"BASEWATCH_TOKEN": "a", '
                                         '"BASEWATCH_NOTIFY_TOKEN": "b"}}')
    monkeypatch.setenv("BASEWATCH_TOKEN", "mine")
    assert stack.daemon_tokens(tmp_path) == {"BASEWATCH_TOKEN": "mine",
                                             "BASEWATCH_NOTIFY_TOKEN": "b"}


def test_exports_are_quoted_for_the_shell():
    text = stack.exports({"A": "x y", "B": "it's"})
    assert subprocess.run(["bash", "-c", f"{text}\nprintf '%s|%s' \"$A\" \"$B\""],
                          capture_output=True, text=True).stdout == "x y|it's"


def test_a_running_registry_that_will_not_notify_is_named(tmp_path, monkeypatch, capsys):
    # An engine and a registry found running (a `make demo`'s, say): `up` reuses them.
    monkeypatch.setattr(stack.Engine, "find", classmethod(lambda cls: cls("unix:///engine")))
    monkeypatch.setattr(stack, "ensure_network", lambda host: None)
    monkeypatch.setattr(stack, "registry_answers", lambda address: True)
    env = stack.cmd_up(tmp_path, 5000, "http://127.0.0.1:8080/webhooks/registry", "t",
                       {"BASEWATCH_URL": "http://127.0.0.1:8080"})
    assert env == {"DOCKER_HOST": "unix:///engine", "BASEWATCH_REGISTRY": "127.0.0.1:5000",
                   "BASEWATCH_URL": "http://127.0.0.1:8080"}
    assert ("warning: the registry at 127.0.0.1:5000 was running already and does not notify "
            "http://127.0.0.1:8080/webhooks/registry") in capsys.readouterr().err
    assert (tmp_path / "env").read_text() == stack.exports(env)
    for name in ("env", "state.json"):  # they may hold the daemon's tokens
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600


def test_an_engine_folder_too_deep_for_its_sockets_is_refused_before_starting(tmp_path):
    deep = tmp_path / ("d" * 100) / "engine"
    with pytest.raises(RuntimeError, match="too deep a folder.*use a shorter --dir"):
        stack.Engine.start(deep)
    assert not deep.exists()


def test_the_quickstart_config_loads_and_its_apps_are_built_on_its_base():
    config = load_config(REPO / "config" / "quickstart.yml")
    assert config.state_dir == REPO / ".basewatch" / "quickstart", "what `make clean` removes"
    assert (config.api_token_env, config.notifications.token_env) == (
        "BASEWATCH_TOKEN", "BASEWATCH_NOTIFY_TOKEN")  # the names `stack.py up --notify` prints
    assert [task.name for task in config.tasks] == ["hello", "web"]
    for task in config.tasks:
        bases = analyse_dockerfile_path(Path(task.context) / task.file)
        assert str(bases.runtime) == "127.0.0.1:5000/quickstart/base:1", task.name
