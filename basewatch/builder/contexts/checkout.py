"""A build context on disk for one run or one registration: a local folder as it is, or a
fresh fetch of the git repository or tarball a context URL names, removed afterwards."""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncContextManager, AsyncIterator, Callable

from basewatch.builder.contexts import archive
from basewatch.builder.contexts.archive import human_size, tar_size
from basewatch.builder.contexts.fetch import fetch_git_context, fetch_tarball_context
from basewatch.builder.contexts.spec import (ContextError, ContextSpec, context_dir, display_url,
                                             parse_context)


# Fetches go into folders named for what they serve; a run's or a registration's is of no
# use once that ends (a queued quick build's upload, `upload-*`, outlives a restart).
RUN_FOLDER = "run-{}"
REGISTRATION_FOLDER = "register-{}"
# How often, at least, a git fetch in progress is measured against max_context_bytes.
MIN_MEASURE_PAUSE = 0.1


@dataclass(frozen=True)
class Checkout:
    folder: Path                 # the build context
    revision: str | None = None  # the commit checked out, for a git context


class Checkouts:
    """Fetches remote contexts into folders of their own under `root`."""

    def __init__(self, root: Path, max_context_bytes: int):
        self.root = root
        self.max_context_bytes = max_context_bytes

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
        try:
            revision = None
            if source.kind == "git":
                revision = await self._fetch_git(source, destination)
                say(f"Checked out {revision}")
            else:
                await fetch_tarball_context(source.location, destination,
                                            self.max_context_bytes)
            yield Checkout(context_dir(source, destination), revision)
        finally:
            shutil.rmtree(destination, ignore_errors=True)

    async def _fetch_git(self, source: ContextSpec, destination: Path) -> str:
        """fetch_git_context, within max_context_bytes: git has no size limit of its own, so
        the folder is measured while git writes it (the repository's objects and the checkout
        may take twice the limit) and the checkout, without .git, once it is done."""
        limit, where = self.max_context_bytes, display_url(source.location)
        fetch = asyncio.ensure_future(fetch_git_context(source, destination))
        try:
            pause = MIN_MEASURE_PAUSE
            while not (await asyncio.wait({fetch}, timeout=pause))[0]:
                started = time.monotonic()
                size, entries = await asyncio.to_thread(tar_size, destination)
                if size > 2 * limit or entries > 2 * archive.MAX_ENTRIES:
                    raise ContextError(
                        f"{where} took more than {human_size(2 * limit)} of disk while it was "
                        f"fetched, twice the limit of {human_size(limit)} (max_context_bytes)")
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
