"""Git repositories to poll: a bare repository (what clients reach, over file:// or served by
GitHttpServer) and a working copy that commits and pushes to it.

    remote = GitRemote.create(tmp_path / "served" / "app.git")   # main with one commit
    sha = remote.commit("main")                                   # a new commit on main, pushed
"""
from __future__ import annotations

import subprocess
from pathlib import Path


def git(*args: str, cwd: Path) -> str:
    # Identity given here: the machine's own git config is not the test's business.
    command = ["git", "-c", "user.name=basewatch tests", "-c", "user.email=tests@basewatch.invalid",
               "-c", "init.defaultBranch=main", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


class GitRemote:
    def __init__(self, bare: Path, work: Path):
        self.bare = bare
        self.work = work
        self.base = "scratch"  # what each commit's Dockerfile is built FROM
        self._commits = 0

    @classmethod
    def create(cls, bare: Path, default_branch: str = "main") -> "GitRemote":
        """A bare repository whose `default_branch` has one commit."""
        work = bare.parent / f".{bare.name}.work"
        work.mkdir(parents=True)
        git("init", "-q", "-b", default_branch, cwd=work)
        git("init", "-q", "--bare", "-b", default_branch, str(bare), cwd=work)
        git("remote", "add", "origin", str(bare), cwd=work)
        remote = cls(bare, work)
        remote.commit(default_branch)
        return remote

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, branch: str = "main") -> str:
        """A new commit on `branch` (created from the current one if new), pushed; its SHA."""
        self._commits += 1
        git("checkout", "-q", "-B", branch, cwd=self.work)
        (self.work / "Dockerfile").write_text(f"FROM {self.base}\nLABEL commit={self._commits}\n")
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "-m", f"commit {self._commits}", cwd=self.work)
        git("push", "-q", "origin", branch, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str) -> None:
        git("tag", name, cwd=self.work)
        git("push", "-q", "origin", name, cwd=self.work)

    def head(self, branch: str = "main") -> str:
        return git("rev-parse", f"refs/heads/{branch}", cwd=self.bare)
