"""Context archives: packing a local folder (CLI side, honouring `.dockerignore`) and extracting
an untrusted archive (daemon side) member by member under checks of our own *and* tarfile's
`data` filter; no write ever goes through a symbolic link, so nothing lands outside the
destination."""
from __future__ import annotations

import contextlib
import gzip
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import BinaryIO

from basewatch.builder.contexts.dockerignore import context_files
from basewatch.builder.contexts.spec import ContextError


# --- sizes --------------------------------------------------------------------------------

def _tar_bytes(size: int) -> int:
    """What one member costs in an uncompressed tar: a header block plus padded data."""
    return 512 + -(-size // 512) * 512


def human_size(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


# --- CLI side: packing a local folder ------------------------------------------------------

def pack_local_context(folder: Path, dockerfile: str = "Dockerfile", *, limit: int) -> Path:
    """A gzipped tarball (a temp file the caller deletes) of `folder`, as Docker would send it."""
    if not folder.exists():
        raise ContextError(f"the build context {folder} does not exist")
    if not folder.is_dir():
        raise ContextError(f"the build context {folder} is not a folder")
    parts = [part for part in dockerfile.split("/") if part not in ("", ".")]
    if dockerfile.startswith("/") or ".." in parts or not parts:
        raise ContextError(f"the Dockerfile {dockerfile!r} must be a path inside {folder}")
    dockerfile = "/".join(parts)
    if not (folder / dockerfile).is_file():
        raise ContextError(f"there is no {dockerfile} in {folder}")
    root = os.path.abspath(folder)
    try:
        files = context_files(Path(root), dockerfile)
        size = tarfile.RECORDSIZE + sum(_tar_bytes(_file_size(os.path.join(root, name)))
                                        for name in files)
    except OSError as error:
        raise ContextError(f"could not read the build context {folder}: {error}") from error
    except ValueError as error:
        raise ContextError(f"{folder}/.dockerignore: {error}") from None
    if size > limit:
        # Checked before packing (uncompressed, as the daemon counts it): no large temp file.
        raise ContextError(f"the build context {folder} is {human_size(size)}, over the limit of "
                           f"{human_size(limit)}: list what the build does not need in .dockerignore")
    handle = tempfile.NamedTemporaryFile(prefix="basewatch-context-", suffix=".tar.gz",
                                         delete=False)
    try:
        with handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
            for name in files:
                # Not recursive: a folder's contents are in `files` only where not ignored.
                tar.add(os.path.join(root, name), arcname=name, recursive=False)
    except BaseException as error:
        os.unlink(handle.name)
        if isinstance(error, OSError):
            raise ContextError(f"could not pack {folder}: {error}") from error
        raise
    return Path(handle.name)


def _file_size(path: str) -> int:
    status = os.lstat(path)
    return status.st_size if stat.S_ISREG(status.st_mode) else 0


# --- daemon side: extracting an archive ----------------------------------------------------

def extract_context(archive: Path | BinaryIO, destination: Path, limit: int) -> None:
    """Extract a plain or gzipped tar into `destination` (new or empty); blocking.

    At most `limit` uncompressed bytes are read. On any error `destination` is left as it was
    found (removed if it was created here, emptied otherwise).
    """
    created = claim_destination(destination)
    try:
        with _opened(archive) as raw, _decompressed(raw) as source:
            stream = _Limited(source, limit)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                _extract_members(tar, destination, stream)
    except BaseException as error:
        discard_destination(destination, created)
        converted = _as_context_error(error)
        if converted is error:
            raise
        raise converted from error


def _as_context_error(error: BaseException) -> BaseException:
    if isinstance(error, tarfile.FilterError):
        return ContextError(f"unsafe build context: {error}")
    if isinstance(error, (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)):
        return ContextError(f"the build context is not a readable tar or tar.gz archive: {error}")
    if isinstance(error, OSError):
        return ContextError(f"could not extract the build context: {error}")
    return error


def _extract_members(tar: tarfile.TarFile, destination: Path, stream: "_Limited") -> None:
    symlinks: set[str] = set()
    files: set[str] = set()
    for member in tar:
        name = _member_name(member)
        if not name:
            if member.isdir():
                continue  # "./": the destination itself
            raise ContextError(f"unsafe build context: {member.name!r} would replace the context")
        if member.ischr() or member.isblk() or member.isfifo():
            raise ContextError(f"unsafe build context: {member.name!r} is a device or a pipe")
        # tarfile opens an existing path and writes through it: never let that path be a link
        # (this also closes the realpath-based bypasses of the data filter).
        if any(prefix in symlinks for prefix in _prefixes(name)):
            raise ContextError(f"unsafe build context: {member.name!r} is written through a "
                               "symbolic link")
        if member.issym():
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
            if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
                raise ContextError(f"unsafe build context: the link {member.name!r} points "
                                   f"outside the context, to {member.linkname!r}")
            symlinks.add(name)
        elif member.islnk():
            if _normalised(member.linkname) not in files:
                raise ContextError(f"unsafe build context: the hard link {member.name!r} does "
                                   f"not point to a file of the archive ({member.linkname!r})")
            files.add(name)
        elif member.isreg():
            # Refuse a member that would cross the limit before writing any of it.
            stream.check(member.size)
            files.add(name)
        tar.extract(member, destination, filter="data")


def _member_name(member: tarfile.TarInfo) -> str:
    """The member's path, normalised; absolute paths and '..' are refused, not rewritten."""
    if member.name.startswith("/"):
        raise ContextError(f"unsafe build context: {member.name!r} is an absolute path")
    name = _normalised(member.name)
    if name is None:
        raise ContextError(f"unsafe build context: {member.name!r} climbs out with '..'")
    return name


def _normalised(path: str) -> str | None:
    """`path` relative to the archive's root without "." parts; None if absolute or with '..'."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return None if path.startswith("/") or ".." in parts else "/".join(parts)


def _prefixes(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


class _Limited:
    """A read-only stream that fails once more than `limit` bytes have come through it."""

    def __init__(self, inner: BinaryIO, limit: int):
        self._inner, self._limit, self.read_so_far = inner, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self.read_so_far += len(data)
        self.check(0)
        return data

    def check(self, more: int) -> None:
        if self.read_so_far + more > self._limit:
            raise ContextError(f"the build context unpacks to more than the limit of "
                               f"{human_size(self._limit)}")


class _Rejoined:
    """`head` (bytes already read to sniff the format) followed by the rest of `rest`."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._rest.read(size)
        if size < 0:
            data, self._head = self._head + self._rest.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data


@contextlib.contextmanager
def _decompressed(raw: BinaryIO):
    head = raw.read(2)
    source = _Rejoined(head, raw)
    if head != b"\x1f\x8b":
        yield source
        return
    with gzip.GzipFile(fileobj=source, mode="rb") as unzipped:
        yield unzipped


@contextlib.contextmanager
def _opened(archive: Path | BinaryIO):
    if isinstance(archive, (str, os.PathLike)):
        with open(archive, "rb") as handle:
            yield handle
    else:
        yield archive  # the caller's stream: the caller closes it


def claim_destination(destination: Path) -> bool:
    """Make `destination` ready: True when created here, False when it was an empty folder."""
    try:
        destination.mkdir(parents=True)
        return True
    except FileExistsError:
        if destination.is_dir() and not any(destination.iterdir()):
            return False
        raise ContextError(f"{destination} must be a new or empty folder") from None


def discard_destination(destination: Path, created: bool) -> None:
    """Undo whatever was written into `destination` (rmtree does not follow links)."""
    if not destination.is_dir():
        return
    if created:
        shutil.rmtree(destination, ignore_errors=True)
        return
    for child in destination.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
