"""Context archives: packing a local folder (CLI side, honouring `.dockerignore`) and extracting
an untrusted archive (daemon side) member by member under checks of our own, with tarfile's
`data` filter's rules for modes and owners; no write ever goes through a symbolic link and no
link leads out, so nothing lands outside the destination. Memory, names, depth and entries are
bounded, so a small hostile upload costs little."""
from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

from basewatch.builder.contexts.dockerignore import context_files
from basewatch.context_spec import ContextError


# --- sizes --------------------------------------------------------------------------------

def _tar_bytes(size: int) -> int:
    """What one member costs in an uncompressed tar: a header block plus padded data."""
    return 512 + -(-size // 512) * 512


def tar_size(folder: Path, skip: tuple[str, ...] = ()) -> tuple[int, int]:
    """(bytes as an uncompressed tar, entries) of what `folder` holds, but for its top-level
    `skip` names; what vanishes while it is counted (a fetch in progress) is left out."""
    size, entries = tarfile.RECORDSIZE, 0
    pending, top = [os.fspath(folder)], True
    while pending:
        try:
            with os.scandir(pending.pop()) as children:
                for child in children:
                    if top and child.name in skip:
                        continue
                    try:
                        if child.is_dir(follow_symlinks=False):
                            pending.append(child.path)
                            size += _tar_bytes(0)
                        else:
                            status = child.stat(follow_symlinks=False)
                            size += _tar_bytes(status.st_size if stat.S_ISREG(status.st_mode)
                                               else 0)
                    except FileNotFoundError:
                        continue
                    entries += 1
        except (FileNotFoundError, NotADirectoryError):
            pass
        top = False
    return size, entries


def human_size(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


# --- CLI side: packing a local folder ------------------------------------------------------

# gzip's fastest level: for 80 MB of mixed files 1 s instead of 4.7 s at tarfile's default (9),
# for 6% more bytes, which a loopback or LAN upload sends in less than the time saved.
PACK_COMPRESSLEVEL = 1


def pack_local_context(folder: Path, dockerfile: str | None = "Dockerfile", *, limit: int,
                       progress: Callable[[int, int], None] | None = None) -> Path:
    """A gzipped tarball (a temp file the caller deletes) of `folder`, as Docker would send it.
    `dockerfile` None: a task file's context, which need hold no Dockerfile at its top.
    `progress(done, total)` is told, as it goes, how many bytes of the uncompressed tar are
    written."""
    if not folder.exists():
        raise ContextError(f"the build context {folder} does not exist")
    if not folder.is_dir():
        raise ContextError(f"the build context {folder} is not a folder")
    if dockerfile is None:
        dockerfile = ".dockerignore"  # kept, as it always is
    else:
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
    if len(files) > MAX_ENTRIES:
        raise ContextError(f"the build context {folder} has {len(files):,} entries (files, "
                           f"folders and links), over the daemon's limit of {MAX_ENTRIES:,}: "
                           "list what the build does not need in .dockerignore")
    if size > limit:
        # Checked before packing (uncompressed, as the daemon counts it): no large temp file.
        raise ContextError(f"the build context {folder} is {human_size(size)}, over the limit of "
                           f"{human_size(limit)}: list what the build does not need in .dockerignore")
    handle = tempfile.NamedTemporaryFile(prefix="basewatch-context-", suffix=".tar.gz",
                                         delete=False)
    try:
        with handle, tarfile.open(fileobj=handle, mode="w:gz",
                                  compresslevel=PACK_COMPRESSLEVEL) as tar:
            _pack(tar, root, files, _Progress(progress, size))
    except BaseException as error:
        os.unlink(handle.name)
        if isinstance(error, OSError):
            raise ContextError(f"could not pack {folder}: {error}") from error
        raise
    return Path(handle.name)


def _pack(tar: tarfile.TarFile, root: str, files: list[str], progress: "_Progress") -> None:
    """What `tar.add(..., recursive=False)` does for each name, with the file's bytes counted
    as they are read: one large file moves the progress too."""
    for name in files:
        path = os.path.join(root, name)
        info = tar.gettarinfo(path, arcname=name)
        if info is None:  # a socket or the like: tarfile skips them too
            continue
        if info.isreg():
            with open(path, "rb") as data:
                tar.addfile(info, _Counted(data, progress))
        else:
            tar.addfile(info)
        progress.member_done(_tar_bytes(info.size if info.isreg() else 0))
    progress.finish()


class _Progress:
    """Bytes of the uncompressed tar written so far, reported to the caller's callback."""

    def __init__(self, report: Callable[[int, int], None] | None, total: int):
        self._report, self.total = report, total
        self._members = 0  # bytes of the members finished, headers and padding counted
        self.done = 0

    def read(self, count: int) -> None:
        self._tell(self.done + count)

    def member_done(self, size: int) -> None:
        self._members += size
        self._tell(self._members)

    def finish(self) -> None:
        self._tell(self.total)

    def _tell(self, done: int) -> None:
        self.done = done
        if self._report is not None:
            self._report(min(done, self.total), self.total)


class _Counted:
    """A file being packed, telling the progress what has been read of it."""

    def __init__(self, inner: BinaryIO, progress: _Progress):
        self._inner, self._progress = inner, progress

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._progress.read(len(data))
        return data


def _file_size(path: str) -> int:
    status = os.lstat(path)
    return status.st_size if stat.S_ISREG(status.st_mode) else 0


# --- daemon side: extracting an archive ----------------------------------------------------

# What one archive may hold. Names and depth: what Linux takes (PATH_MAX) and far beyond real
# trees; entries: a context that large belongs in a .dockerignore. Each costs a few syscalls.
MAX_ENTRIES = 100_000
MAX_NAME_BYTES = 4096
MAX_DEPTH = 256
# tarfile reads an extended header (pax, GNU long name) whole, as Go's archive/tar does, which
# caps it at 1 MiB; global headers last for the whole archive, so they share one such budget.
MAX_EXTENDED_HEADER = 1 << 20
# tarfile recurses once per extended header in a row; a real archive has one or two.
MAX_HEADERS_IN_A_ROW = 8
_EXTENDED_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                   tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


def extract_context(archive: Path | BinaryIO, destination: Path, limit: int) -> None:
    """Extract a plain or gzipped tar into `destination` (new or empty); blocking.

    At most `limit` uncompressed bytes are read, MAX_ENTRIES entries, names of MAX_NAME_BYTES
    and MAX_DEPTH folders. On any error `destination` is left as it was found (removed if it
    was created here, emptied otherwise).
    """
    created = claim_destination(destination)
    try:
        with _opened(archive) as raw:
            if getattr(raw, "seekable", lambda: False)():
                # Headers first, nothing written: an archive of many tiny files costs a file
                # creation per entry, so one over the caps is refused before any is made.
                start = raw.tell()
                with _decompressed(raw) as source:
                    _count_members(_Limited(source, limit))
                raw.seek(start)
            with _decompressed(raw) as source:
                stream = _Limited(source, limit)
                with _BoundedTarFile.open(fileobj=stream, mode="r|") as tar:
                    _extract_members(tar, destination, stream)
    except BaseException as error:
        discard_destination(destination, created)
        converted = _as_context_error(error, destination)
        if converted is error:
            raise
        raise converted from error


def _as_context_error(error: BaseException, destination: Path) -> BaseException:
    # UnicodeDecodeError: tarfile decodes a pax header's hdrcharset value as UTF-8 and lets the
    # error out (found by the property tests).
    if isinstance(error, (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile,
                          UnicodeDecodeError)):
        return ContextError(f"the build context is not a readable tar or tar.gz archive: {error}")
    if isinstance(error, OSError):
        # Named inside the context: the daemon's own folders are none of the caller's business.
        where = ""
        if isinstance(error.filename, str):
            path = Path(error.filename)
            where = f" {_shown(str(path.relative_to(destination)))}" \
                if path.is_relative_to(destination) else ""
        return ContextError(f"could not extract the build context{where}: "
                            f"{error.strerror or type(error).__name__}")
    return error


def _unsafe(what: str) -> ContextError:
    return ContextError(f"unsafe build context: {what}")


def _shown(name: str) -> str:
    """A member's name for a message: hostile names are long."""
    return repr(name if len(name) <= 100 else name[:100] + "...")


def _count_members(stream: "_Limited") -> None:
    """Read every header of the archive in `stream`, writing nothing: past MAX_ENTRIES or the
    byte limit, the ContextError extraction would give, before extraction starts."""
    with _BoundedTarFile.open(fileobj=stream, mode="r|") as tar:
        for count, member in enumerate(tar, start=1):
            _check_count(count)
            tar.members.clear()
            if member.isreg():
                stream.check(member.size)


def _check_count(count: int) -> None:
    if count > MAX_ENTRIES:
        raise ContextError(f"the build context has more than {MAX_ENTRIES:,} entries "
                           "(files, folders and links), the limit: list what the build "
                           "does not need in .dockerignore")


def _extract_members(tar: tarfile.TarFile, destination: Path, stream: "_Limited") -> None:
    links = _Links()
    for count, member in enumerate(tar, start=1):
        _check_count(count)
        tar.members.clear()  # a stream keeps every header it read otherwise
        name = _member_name(member)
        if not name:
            if member.isdir():
                continue  # "./": the destination itself
            raise _unsafe(f"{_shown(member.name)} would replace the context")
        if member.ischr() or member.isblk() or member.isfifo():
            raise _unsafe(f"{_shown(member.name)} is a device or a pipe")
        # tarfile opens an existing path and writes through it: never let that path be a link.
        if links.on_the_way_to(name):
            raise _unsafe(f"{_shown(member.name)} is written through a symbolic link")
        if member.issym():
            _check_symlink(member, name)
            links.add(name)
        elif member.islnk():
            _check_hard_link(member, destination, links)
        elif member.isreg():
            # Refuse a member that would cross the limit before writing any of it.
            stream.check(member.size)
        tar.extract(member, destination, filter=_safe_attributes)


def _member_name(member: tarfile.TarInfo) -> str:
    """The member's path, normalised; absolute paths and '..' are refused, not rewritten."""
    for value in (member.name, member.linkname):
        if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise _unsafe(f"{_shown(value)} is longer than {MAX_NAME_BYTES} bytes")
        if "\0" in value:  # a GNU long name may hold one; no file system name does
            raise _unsafe(f"{_shown(value)} holds a NUL character")
    if member.name.startswith("/"):
        raise _unsafe(f"{_shown(member.name)} is an absolute path")
    name = _normalised(member.name)
    if name is None:
        raise _unsafe(f"{_shown(member.name)} climbs out with '..'")
    if name.count("/") > MAX_DEPTH:
        raise _unsafe(f"{_shown(member.name)} is more than {MAX_DEPTH} folders deep")
    return name


def _check_symlink(member: tarfile.TarInfo, name: str) -> None:
    """A link's target may climb out of the link's folder only with leading '..': after a
    name, '..' leaves wherever that name leads, which may itself be a link made before or
    after this one. So the target stays inside whatever else the archive holds."""
    parts = [part for part in member.linkname.split("/") if part not in ("", ".")]
    climbs = next((i for i, part in enumerate(parts) if part != ".."), len(parts))
    if member.linkname.startswith("/") or climbs > name.count("/"):
        raise _unsafe(f"the link {_shown(member.name)} points outside the context, to "
                      f"{_shown(member.linkname)}")
    if ".." in parts[climbs:]:
        raise _unsafe(f"the link {_shown(member.name)} points to {_shown(member.linkname)}: "
                      "a link may climb with '..' only at the start of its target")


def _check_hard_link(member: tarfile.TarInfo, destination: Path, links: "_Links") -> None:
    """A hard link must name a file the archive already made (the destination started empty,
    so a regular file there reached through no link is one)."""
    target = _normalised(member.linkname)
    refused = _unsafe(f"the hard link {_shown(member.name)} does not point to a file of the "
                      f"archive ({_shown(member.linkname)})")
    if not target or links.on_the_way_to(target):
        raise refused
    try:
        if not stat.S_ISREG(os.lstat(destination / target).st_mode):
            raise refused
    except OSError:
        raise refused from None


def _safe_attributes(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """What tarfile's `data` filter keeps of a member (no set-id bits, no write for group or
    others, read-write for the owner, no ownership), without its realpath checks: those walk
    every folder of every name (minutes for a small upload of deep names), and the checks
    above are exact here: the destination starts empty and every link in it is tracked."""
    mode = None
    if member.isreg() or member.islnk():
        mode = member.mode & 0o755
        if not mode & 0o100:
            mode &= ~0o111
        mode |= 0o600
    return member.replace(mode=mode, uid=None, gid=None, uname=None, gname=None, deep=False)


def _normalised(path: str) -> str | None:
    """`path` relative to the archive's root without "." parts; None if absolute or with '..'."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return None if path.startswith("/") or ".." in parts else "/".join(parts)


class _Links:
    """The symbolic links extracted so far, to tell whether a path goes through one in time
    linear in the path's length.

    It keeps a hash of each link's path, not the path: memory stays small however long the
    names, and a collision could only refuse a path, never let one through.
    """

    def __init__(self) -> None:
        self._hashes: set[int] = set()

    def add(self, name: str) -> None:
        *_, last = self._chain(name)
        self._hashes.add(last)

    def on_the_way_to(self, name: str) -> bool:
        """Whether `name` or a folder above it is one of the links."""
        return bool(self._hashes) and any(h in self._hashes for h in self._chain(name))

    @staticmethod
    def _chain(name: str):
        """The hash of each prefix of `name`, one folder at a time."""
        value = 0
        for part in name.split("/"):
            value = hash((value, part))
            yield value


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile's header parsing, refusing what would take memory or stack without bound.

    tarfile reads an extended header whole, recurses into the next header once per extended
    header, and reads a GNU 1.0 sparse map into a buffer that grows a block at a time until a
    newline. These hooks are tarfile's own dispatch points (`_proc_member` and the sparse
    readers); a build context has no use for sparse files, so those are refused outright.
    """

    def _proc_member(self, tar: "_BoundedTarFile"):
        if self.type not in _EXTENDED_TYPES:
            return super()._proc_member(tar)
        if self.size > MAX_EXTENDED_HEADER:
            raise _unsafe(f"an extended header larger than {human_size(MAX_EXTENDED_HEADER)}")
        if self.type == tarfile.XGLTYPE:
            tar.global_header_bytes += self.size
            if tar.global_header_bytes > MAX_EXTENDED_HEADER:
                raise _unsafe(f"global extended headers larger than "
                              f"{human_size(MAX_EXTENDED_HEADER)} in all")
        if tar.headers_in_a_row >= MAX_HEADERS_IN_A_ROW:
            raise _unsafe(f"more than {MAX_HEADERS_IN_A_ROW} extended headers in a row")
        tar.headers_in_a_row += 1
        try:
            return super()._proc_member(tar)
        finally:
            tar.headers_in_a_row -= 1

    def _proc_sparse(self, tar):
        raise _unsafe("sparse files are not supported")

    def _proc_gnusparse_00(self, *args):
        raise _unsafe("sparse files are not supported")

    _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00


class _BoundedTarFile(tarfile.TarFile):
    tarinfo = _BoundedTarInfo

    def __init__(self, *args, **kwargs):
        # Set before tarfile's own __init__, which reads the first header.
        self.headers_in_a_row = 0
        self.global_header_bytes = 0
        super().__init__(*args, **kwargs)

    def _find_link_target(self, tarinfo):
        # Reached only when a hard link could not be made (EMLINK...): on a stream, tarfile
        # would read and keep every header left in the archive to look for another copy.
        raise ContextError(f"could not make the hard link {_shown(tarinfo.name)}")


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
