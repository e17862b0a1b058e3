"""A build context on disk for one run or one registration: a local folder as it is, or a
fresh fetch of the git repository or tarball a context URL names, removed afterwards."""
from __future__ import annotations

import contextlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncContextManager, AsyncIterator, Callable

from basewatch.builder.contexts.fetch import fetch_git_context, fetch_tarball_context
from basewatch.builder.contexts.spec import context_dir, display_url, parse_context
from basewatch.netpolicy import HostPolicy


# Fetches go into folders named for what they serve; a run's or a registration's is of no
# use once that ends (a queued quick build's upload, `upload-*`, outlives a restart).
RUN_FOLDER = "run-{}"
REGISTRATION_FOLDER = "register-{}"


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
                 trusted: Callable[[str], bool] = lambda context: False):
        self.root = root
        self.max_context_bytes = max_context_bytes
        self.hosts = hosts
        self.trusted = trusted

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

    def for_run(self, context: str, run_id: str,
                say: Callable[[str], None]) -> AsyncContextManager[Checkout]:
        return self.open(context, RUN_FOLDER.format(run_id), say)

    def for_registration(self, context: str) -> AsyncContextManager[Checkout]:
        return self.open(context, REGISTRATION_FOLDER.format(uuid.uuid4().hex))

    @contextlib.asynccontextmanager
    async def open(self, context: str, name: str,
                   say: Callable[[str], None] | None = None) -> AsyncIterator[Checkout]:
        """`context` on disk while the block runs; `name` is the folder a fetch goes into
        (one per run or registration), `say` hears what is being fetched."""
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
                revision = await fetch_git_context(source, destination, hosts=hosts)
                say(f"Checked out {revision}")
            else:
                await fetch_tarball_context(source.location, destination,
                                            self.max_context_bytes, hosts=hosts)
            yield Checkout(context_dir(source, destination), revision)
        finally:
            shutil.rmtree(destination, ignore_errors=True)
