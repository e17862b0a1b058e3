"""docs/triggers-scm.md says what the code does: its git_hosts example is valid, and the token
scopes it names are those the API clients ask for in their errors."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from basewatch.scm import gitea, github, gitlab
from basewatch.scm.hosts import GitHostSettings, locate

DOC = (Path(__file__).resolve().parents[3] / "docs" / "triggers-scm.md").read_text()


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
        r"^\| (queued|running|succeeded|failed|error|canceled) \| (\w+) \| (\w+) \| (\w+) \|$",
        DOC, re.M)}
    ours = {"queued": "pending", "running": "running", "succeeded": "success",
            "failed": "failure", "error": "error", "canceled": "canceled"}
    assert rows == {row: (github.STATES[s], gitlab.STATES[s], gitea.STATES[s])
                    for row, s in ours.items()}
