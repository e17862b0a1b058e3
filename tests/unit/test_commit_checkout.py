"""A commit or pull-request run's context is exactly the commit that fired it: fetched by its
SHA (a pull request by its ref), never what the branch points at by the time the run starts;
a commit that is not in the repository is a clear error. Real repositories, over file://."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from basewatch.builder.contexts import fetch
from basewatch.builder.contexts.checkout import Checkouts
from basewatch.context_spec import ContextError
from basewatch.models import SourceCommit


class Repository:
    """A bare repository served over file://, and a work tree that pushes to it."""

    def __init__(self, root: Path):
        self.work, self.bare = root / "work", root / "app.git"
        self.work.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(["git", "-C", str(cwd or self.work), "-c", "user.email=t@e.x",
                               "-c", "user.name=t", *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    def commit(self, text: str, branch: str = "main") -> str:
        (self.work / "version.txt").write_text(text)
        self.git("add", ".")
        self.git("commit", "-qm", text)
        self.git("push", "-q", "-f", str(self.bare), f"HEAD:refs/heads/{branch}")
        return self.git("rev-parse", "HEAD")

    def update_ref(self, ref: str, sha: str) -> None:
        self.git("update-ref", ref, sha, cwd=self.bare)


@pytest.fixture
def repo(tmp_path) -> Repository:
    return Repository(tmp_path / "git")


@pytest.fixture
def checkouts(tmp_path) -> Checkouts:
    return Checkouts(tmp_path / "contexts", max_context_bytes=10_000_000)


async def checked_out(checkouts: Checkouts, context: str, source: SourceCommit | None
                      ) -> tuple[str, str, list[str]]:
    said: list[str] = []
    async with checkouts.for_run(context, "ca1", said.append, source) as checkout:
        return checkout.revision, (checkout.folder / "version.txt").read_text(), said


async def test_a_commit_run_builds_its_commit_though_the_branch_moved_on(repo, checkouts):
    first = repo.commit("A")
    repo.commit("B")
    revision, text, said = await checked_out(checkouts, f"{repo.url}#main",
                                             SourceCommit(first, "main"))
    assert (revision, text) == (first, "A")
    assert f"Fetching commit {first} (branch main)" in said
    assert said[-1] == f"Checked out {first}"


async def test_a_commit_on_no_branch_is_fetched_by_its_sha(repo, checkouts):
    # A webhook can name a commit before the branch shows it: only its SHA reaches it (a
    # `--depth` put after `--` once made git look for a ref named "--depth" instead).
    repo.commit("A")
    pending = repo.commit("B", branch="pending")
    repo.git("update-ref", "-d", "refs/heads/pending", cwd=repo.bare)
    repo.update_ref("refs/keep/b", pending)
    revision, text, _ = await checked_out(checkouts, f"{repo.url}#main",
                                          SourceCommit(pending, "main"))
    assert (revision, text) == (pending, "B")


async def test_without_a_commit_the_branch_head_is_built(repo, checkouts):
    repo.commit("A")
    head = repo.commit("B")
    assert (await checked_out(checkouts, f"{repo.url}#main", None))[:2] == (head, "B")


async def test_a_pull_request_is_fetched_by_its_ref(repo, checkouts):
    repo.commit("A")
    head = repo.commit("feature", branch="feature")
    repo.update_ref("refs/pull/2/head", head)
    repo.git("update-ref", "-d", "refs/heads/feature", cwd=repo.bare)  # a fork's branch
    source = SourceCommit(head, "feature", 2, "main", "refs/pull/2/head")
    revision, text, said = await checked_out(checkouts, f"{repo.url}#main", source)
    assert (revision, text) == (head, "feature")
    assert f"Fetching commit {head} (pull request #2, refs/pull/2/head)" in said


async def test_a_pull_request_updated_since_still_builds_the_commit_of_its_event(repo,
                                                                                 checkouts):
    repo.commit("A")
    first = repo.commit("one", branch="feature")
    repo.update_ref("refs/merge-requests/1/head", repo.commit("two", branch="feature"))
    source = SourceCommit(first, "feature", 1, "main", "refs/merge-requests/1/head")
    assert (await checked_out(checkouts, repo.url, source))[:2] == (first, "one")


async def test_an_azure_pull_request_is_the_second_parent_of_its_merge_ref(repo, checkouts,
                                                                           monkeypatch):
    base = repo.commit("A")
    head = repo.commit("feature", branch="feature")
    repo.git("checkout", "-q", "--detach", base)
    repo.git("merge", "-q", "--no-ff", "-m", "merge", head)
    repo.git("push", "-q", str(repo.bare), "HEAD:refs/pull/4/merge")
    repo.git("update-ref", "-d", "refs/heads/feature", cwd=repo.bare)
    fetched: list[tuple[str, ...]] = []
    real = fetch._git

    async def counted(*args, **kwargs):
        if "fetch" in args:
            fetched.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(fetch, "_git", counted)
    source = SourceCommit(head, "feature", 4, "main", "refs/pull/4/merge")
    assert (await checked_out(checkouts, repo.url, source))[:2] == (head, "feature")
    assert len(fetched) == 1, "the merge ref, two commits deep, holds the head"


async def test_a_server_that_refuses_unadvertised_commits_is_searched_on_the_branch(
        repo, checkouts, monkeypatch):
    first = repo.commit("A")
    repo.commit("B")
    # Protocol v0: the server only gives what its refs advertise.
    for key, value in (("GIT_CONFIG_COUNT", "1"), ("GIT_CONFIG_KEY_0", "protocol.version"),
                       ("GIT_CONFIG_VALUE_0", "0")):
        monkeypatch.setenv(key, value)
    assert (await checked_out(checkouts, repo.url, SourceCommit(first, "main")))[:2] == \
        (first, "A")


async def test_a_commit_not_in_the_repository_is_a_clear_error(repo, checkouts, tmp_path):
    repo.commit("A")
    missing = "0123456789abcdef" * 2 + "01234567"
    with pytest.raises(ContextError) as refused:
        await checked_out(checkouts, f"{repo.url}#main", SourceCommit(missing, "main"))
    assert str(refused.value).startswith(f"the commit {missing} is not in {repo.url} "
                                         "(nor on refs/heads/main)")
    assert not (tmp_path / "contexts" / "run-ca1").exists()


async def test_a_repository_that_does_not_exist_says_what_git_said(checkouts, tmp_path):
    with pytest.raises(ContextError, match="git could not fetch file://.*/nowhere.git: "):
        await checked_out(checkouts, f"file://{tmp_path}/nowhere.git",
                          SourceCommit("a" * 40, "main"))


@pytest.mark.parametrize("source, message", [
    (SourceCommit("abc1234", "main"), "'abc1234' is not a full commit SHA"),
    (SourceCommit("--upload-pack=touch" + "a" * 21, "main"), "is not a full commit SHA"),
    (SourceCommit("a" * 40, "main", 2, "main", "--upload-pack=x"),
     "is not a ref a commit can be fetched by"),
    (SourceCommit("a" * 40, "main", 2, "main", "refs/../../x"),
     "is not a ref a commit can be fetched by"),
    (SourceCommit("a" * 40, "-x"), "is not a valid git branch name"),
])
async def test_what_git_would_misread_is_refused_before_it_runs(repo, checkouts, source,
                                                                message):
    repo.commit("A")
    with pytest.raises(ContextError, match=message):
        await checked_out(checkouts, repo.url, source)
