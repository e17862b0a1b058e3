"""A build context on disk for one run or one registration: a local folder as it is, or a
fresh fetch of the git repository or tarball a context URL names, removed afterwards."""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import (TYPE_CHECKING, AsyncContextManager, AsyncIterator, Callable, Collection,
                    Mapping, Sequence)

from basewatch.builder.contexts import archive
from basewatch.builder.contexts.archive import human_size, tar_size
from basewatch.builder.contexts.fetch import (GitCredential, RemoteHeads, credential_host,
                                              fetch_git_context, fetch_tarball_context,
                                              list_remote_heads)
from basewatch.context_spec import (ContextError, ContextSpec, checked_dockerfile_name,
                                    context_dir, display_url, parse_context)
from basewatch.netpolicy import HostPolicy
from basewatch.dockerfile.analysis import read_dockerfile_text
from basewatch.models import SourceCommit
from basewatch.redaction import KNOWN

if TYPE_CHECKING:
    from basewatch.config import GitCredentialSettings


# Fetches go into folders named for what they serve; a run's or a registration's is of no
# use once that ends (a queued quick build's upload, `upload-*`, outlives a restart).
RUN_FOLDER = "run-{}"
REGISTRATION_FOLDER = "register-{}"
# How often, at least, a git fetch in progress is measured against max_context_bytes.
MIN_MEASURE_PAUSE = 0.1


def check_api_folder(folder: str, root: Path | None) -> None:
    """A folder on the daemon's host that a task from the API names is refused unless its real
    path lies under `root` (local_contexts_root): the daemon's disk is not the caller's, and
    its /etc would be built and pushed."""
    if root is None:
        raise ContextError(f"{folder}: the API cannot name folders on the daemon's host "
                           "(local_contexts_root is not set): give a git or tarball URL")
    if not Path(folder).is_absolute():
        raise ContextError(f"{folder} must be an absolute path under {root}, or a git or "
                           "tarball URL")
    # resolve(): neither '..' nor a symbolic link under the root may lead out of it
    if not Path(folder).resolve().is_relative_to(root.resolve()):
        raise ContextError(f"{folder} is not under the daemon's local_contexts_root ({root})")


def dockerfile_in(context: Path, file: str) -> Path:
    """The Dockerfile `file` names in the build context `context`: refused unless it is a file
    that resolves inside the context (a link in the context may point anywhere on the host).
    Messages name it as the task does, not by where it sits on the daemon's disk."""
    file = checked_dockerfile_name(file)
    root = context.resolve()
    path = (context / file).resolve()
    if not path.is_relative_to(root):
        raise ContextError(f"the Dockerfile {file!r} leads outside the build context "
                           "(a symbolic link)")
    if not path.is_file():
        raise ContextError(f"no such Dockerfile {file!r} in the build context")
    return path


def git_credentials(settings: Sequence[GitCredentialSettings]) -> dict[str, GitCredential]:
    """The config's git_credentials by host, their passwords read now: a variable that is not
    set stops the daemon as it starts, not a fetch later."""
    found = {}
    for entry in settings:
        password = entry.password
        if entry.password_env is not None:
            password = os.environ.get(entry.password_env)
            if not password:
                raise ContextError(f"git_credentials {entry.host}: the environment variable "
                                   f"{entry.password_env} is not set")
            if "\n" in password:
                raise ContextError(f"git_credentials {entry.host}: {entry.password_env} "
                                   "holds more than one line")
        KNOWN.add(password)  # never in the daemon's log
        found[entry.host] = GitCredential(entry.username, password)
    return found


def read_dockerfile(context: Path, file: str) -> str:
    """The text of the Dockerfile `file` in `context` (see dockerfile_in); errors name it
    relative to the context, as the task does, not by the daemon's own paths."""
    return read_dockerfile_text(dockerfile_in(context, file), shown=file)


def _fired_by(commit: SourceCommit) -> str:
    """` (pull request #2, refs/pull/2/head)`, ` (branch main)`: for the run's log."""
    if commit.pull_request is not None:
        via = f", {commit.fetch_ref}" if commit.fetch_ref else ""
        return f" (pull request #{commit.pull_request}{via})"
    return f" (branch {commit.branch})" if commit.branch else ""


@dataclass(frozen=True)
class Checkout:
    folder: Path                 # the build context
    revision: str | None = None  # the commit checked out, for a git context


class Checkouts:
    """Fetches remote contexts into folders of their own under `root`.

    Every fetch is held to `hosts` (each redirect, each address), except of the contexts
    `trusted` accepts: those the config file names, which its author chose.
    """

    def __init__(self, root: Path, max_context_bytes: int, hosts: HostPolicy | None = None,
                 trusted: Callable[[str], bool] = lambda context: False, *,
                 git_credentials: Mapping[str, GitCredential] | None = None,
                 local_contexts_root: Path | None = None):
        self.root = root
        self.max_context_bytes = max_context_bytes
        self.hosts = hosts
        self.trusted = trusted
        self.git_credentials = dict(git_credentials or {})  # by host[:port], lower case
        self.local_contexts_root = local_contexts_root  # for the API's tasks

    def discard_leftovers(self) -> int:
        """Remove the fetches a stopped daemon left behind; how many. Only while nothing is
        being fetched, i.e. as the daemon starts."""
        if not self.root.is_dir():
            return 0
        prefixes = (RUN_FOLDER.format(""), REGISTRATION_FOLDER.format(""))
        leftovers = [p for p in self.root.iterdir() if p.name.startswith(prefixes)]
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)
        return len(leftovers)

    def for_run(self, context: str, run_id: str, say: Callable[[str], None],
                source: SourceCommit | None = None) -> AsyncContextManager[Checkout]:
        """The run's context; with `source`, a git context at exactly that commit."""
        return self.open(context, RUN_FOLDER.format(run_id), say, source)

    def for_registration(self, context: str) -> AsyncContextManager[Checkout]:
        return self.open(context, REGISTRATION_FOLDER.format(uuid.uuid4().hex))

    def _credential_for(self, source: ContextSpec) -> GitCredential | None:
        host = credential_host(source.location)
        return self.git_credentials.get(host) if host is not None else None

    async def list_heads(self, remote: str, branches: Collection[str], tags: Collection[str],
                         contexts: Collection[str]) -> RemoteHeads:
        """`git ls-remote` of `remote`, under the rules its fetches follow: the credential for
        its host, and the host policy unless one of `contexts` (the tasks' contexts naming
        it) is trusted."""
        hosts = None if any(self.trusted(context) for context in contexts) else self.hosts
        return await list_remote_heads(remote, branches, tags=tags, hosts=hosts,
                                       credential=self._credential_for(ContextSpec("git", remote)))

    @contextlib.asynccontextmanager
    async def open(self, context: str, name: str, say: Callable[[str], None] | None = None,
                   commit: SourceCommit | None = None) -> AsyncIterator[Checkout]:
        """`context` on disk while the block runs; `name` is the folder a fetch goes into
        (one per run or registration), `say` hears what is being fetched. `commit` pins a
        git context to that commit (other contexts have none to pin)."""
        source = parse_context(context)
        if source.kind == "local":
            yield Checkout(Path(source.location))
            return
        destination = self.root / name
        say = say or (lambda line: None)
        say(f"Fetching the context from {display_url(context)}")
        hosts = None if self.trusted(context) else self.hosts
        try:
            revision = None
            if source.kind == "git":
                if commit is not None:
                    say(f"Fetching commit {commit.commit}{_fired_by(commit)}")
                revision = await self._fetch_git(source, destination, hosts, commit)
                # Left out of the build context, as BuildKit does for git contexts: COPY .
                # would push it, with the remote it names.
                await asyncio.to_thread(shutil.rmtree, destination / ".git", True)
                say(f"Checked out {revision}")
            else:
                await fetch_tarball_context(source.location, destination,
                                            self.max_context_bytes, hosts=hosts)
            yield Checkout(context_dir(source, destination), revision)
        finally:
            shutil.rmtree(destination, ignore_errors=True)

    async def _fetch_git(self, source: ContextSpec, destination: Path,
                         hosts: HostPolicy | None, commit: SourceCommit | None = None) -> str:
        """fetch_git_context, within max_context_bytes: git has no size limit of its own, so
        the folder is measured while git writes it (the repository's objects and the checkout
        may take twice the limit) and the checkout, without .git, once it is done."""
        limit, where = self.max_context_bytes, display_url(source.location)
        fetch = asyncio.ensure_future(fetch_git_context(
            source, destination, hosts=hosts, credential=self._credential_for(source),
            source=commit))
        try:
            pause = MIN_MEASURE_PAUSE
            while not (await asyncio.wait({fetch}, timeout=pause))[0]:
                started = time.monotonic()
                size, entries = await asyncio.to_thread(tar_size, destination)
                if size > 2 * limit:
                    raise ContextError(
                        f"{where} took more than {human_size(2 * limit)} of disk while it was "
                        f"fetched, twice the limit of {human_size(limit)} (max_context_bytes)")
                if entries > 2 * archive.MAX_ENTRIES:
                    raise ContextError(
                        f"{where} had more than {2 * archive.MAX_ENTRIES} files and folders "
                        f"while it was fetched, twice the limit of {archive.MAX_ENTRIES}")
                # Measuring a large tree takes a while: leave git two thirds of the time.
                pause = max(MIN_MEASURE_PAUSE, 2 * (time.monotonic() - started))
        except BaseException:
            fetch.cancel()  # git's process group is killed, and what it wrote removed
            with contextlib.suppress(BaseException):
                await fetch
            raise
        revision = fetch.result()
        size, entries = await asyncio.to_thread(tar_size, destination, (".git",))
        if entries > archive.MAX_ENTRIES:
            raise ContextError(f"{where} has more than {archive.MAX_ENTRIES:,} entries (files, "
                               "folders and links) once checked out, the limit")
        if size > limit:
            raise ContextError(f"{where} is {human_size(size)} once checked out, over the limit "
                               f"of {human_size(limit)} (max_context_bytes)")
        return revision
