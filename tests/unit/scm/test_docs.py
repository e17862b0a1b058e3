"""docs/triggers.md's "Webhooks registered for you" and "Commit status" say what the code does:
the git_hosts example is valid, the token scopes named are those the API clients ask for in
their errors, and the state table is the mapping."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from basewatch.scm import gitea, github, gitlab
from basewatch.scm.hosts import GitHostSettings, locate

TRIGGERS = (Path(__file__).resolve().parents[3] / "docs" / "triggers.md").read_text()
DOC = TRIGGERS[TRIGGERS.index("\n## Webhooks registered for you\n"):]


def test_the_git_hosts_example_is_valid_and_locates_repositories():
    block = re.search(r"```yaml\n(git_hosts:.*?)```", DOC, re.S).group(1)
    hosts = [GitHostSettings(**entry) for entry in yaml.safe_load(block)["git_hosts"]]
    assert [h.api_url for h in hosts] == ["https://github.example.com/api/v3",
                                          "https://gitlab.example.com/gitlab/api/v4",
                                          "https://git.example.org/api/v1"]
    assert locate("https://gitlab.example.com/gitlab/team/app.git", hosts).path == "team/app"


def test_the_scopes_in_the_doc_are_those_the_errors_name():
    for needed in ("admin:repo_hook", "repo:status"):
        assert needed in DOC and needed in github.HOOK_SCOPES + github.STATUS_SCOPES
    assert "Webhooks: read and write" in github.HOOK_SCOPES
    assert "Commit statuses: read and write" in github.STATUS_SCOPES
    assert "api scope" in gitlab.HOOK_SCOPES and "Maintainer" in gitlab.HOOK_SCOPES
    assert "Developer" in gitlab.STATUS_SCOPES
    assert "write:repository" in gitea.HOOK_SCOPES and "write:repository" in gitea.STATUS_SCOPES


def test_the_state_table_is_the_mapping():
    rows = {m[1]: (m[2], m[3], m[4]) for m in re.finditer(
        r"^\| (running|succeeded|failed|error|canceled) \| (\w+) \| (\w+) \| (\w+) \|$",
        DOC, re.M)}
    ours = {"running": "running", "succeeded": "success",
            "failed": "failure", "error": "error", "canceled": "canceled"}
    assert rows == {row: (github.STATES[s], gitlab.STATES[s], gitea.STATES[s])
                    for row, s in ours.items()}


def test_the_sections_close_the_triggers_doc_in_order():
    assert TRIGGERS.index("\n## Webhooks registered for you\n") < \
        TRIGGERS.index("\n## Commit status\n")
    assert "(`GET /api/tasks/NAME/webhook` answers the same as JSON)" in DOC
