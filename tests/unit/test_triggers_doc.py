"""docs/triggers.md says what the code takes: every YAML block in it is a config file
basewatch.config loads, every `basewatch` command in it parses, every endpoint it names is
one the daemon serves, and the tests it names exist."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from basewatch.cli import build_parser
from basewatch.config import load_config
from basewatch.triggers.webhooks import PROVIDERS

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "triggers.md").read_text()
YAML_BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC, re.S)
COMMANDS = [line for block in re.findall(r"```sh\n(.*?)```", DOC, re.S)
            for line in block.replace("\\\n", " ").splitlines()
            if line.startswith("basewatch ")]


def test_the_page_has_the_blocks_it_is_checked_by():
    assert len(YAML_BLOCKS) >= 3 and len(COMMANDS) >= 6


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda b: b.splitlines()[0])
def test_every_yaml_block_is_a_config_basewatch_loads(block, tmp_path):
    path = tmp_path / "basewatch.yml"
    path.write_text(block)
    config = load_config(path)
    for task in config.tasks:
        assert task.name and task.image


def test_the_commit_trigger_example_means_what_the_page_says(tmp_path):
    [block] = [b for b in YAML_BLOCKS if "pull_request_trigger" in b]
    path = tmp_path / "basewatch.yml"
    path.write_text(block)
    [app] = load_config(path).tasks
    assert (app.commit_trigger.enabled, app.commit_trigger.branches) == (True, ["main",
                                                                             "release"])
    assert (app.pull_request_trigger.enabled, app.pull_request_trigger.allow_forks) == (
        True, False)
    assert app.webhook_secret_env == "APP_HOOK_SECRET"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_parses(command):
    build_parser().parse_args(shlex.split(command)[1:])


def test_every_webhook_endpoint_named_is_served():
    named = set(re.findall(r"`POST /webhooks/([a-z-]+)`", DOC))
    assert named == set(PROVIDERS)


def test_the_tests_named_exist():
    for path, name in re.findall(r"`(tests/[\w/]+\.py)`(?:, `(test_\w+)`)?", DOC):
        text = (REPO / path).read_text()
        assert not name or f"def {name}(" in text, f"{path} has no {name}"
