"""Build contexts for quick builds: a local folder, a git repository or a remote tarball.

The CLI packs a local folder (honouring `.dockerignore`); the daemon materialises every kind
into the run's own folder. Everything that reaches the daemon is untrusted: archives are
extracted member by member under checks of our own *and* tarfile's `data` filter, and no write
ever goes through a symbolic link, so nothing lands outside the destination.
"""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import posixpath
import re
import shutil
import signal
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal
from urllib.parse import urlsplit, urlunsplit

from docker.utils.build import create_archive, exclude_paths

if TYPE_CHECKING:  # the CLI imports this module: aiohttp's import time is the daemon's to pay
    import aiohttp

from basewatch.errors import BasewatchError


class ContextError(BasewatchError):
    """A build context is malformed, missing, too large, unsafe or could not be fetched."""


ACCEPTED = ("a local folder, a git URL (https://host/org/repo.git#ref:folder, "
            "git@host:org/repo.git, ssh://, git://, file://) or a tarball URL "
            "(https://host/context.tar.gz, .tgz, .tar)")


@dataclass(frozen=True)
class ContextSpec:
    kind: Literal["local", "git", "tarball"]
    location: str             # folder path / repository URL (no #fragment) / tarball URL
    ref: str | None = None    # git branch, tag or commit (None: the default branch)
    folder: str | None = None  # git subfolder, relative and without ".."


# --- telling the kinds apart -------------------------------------------------------------

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*@[A-Za-z0-9.-]+:(?!//)")  # git@host:org/repo
_TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20~^:?*\[\\\x7f]")
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,40}$")


def parse_context(text: str) -> ContextSpec:
    """Decide what kind of context `text` names (see ACCEPTED)."""
    text = text.strip()
    if not text:
        raise ContextError(f"the build context is empty: give {ACCEPTED}")
    scheme = _SCHEME.match(text)
    if scheme is None and not _SCP_LIKE.match(text):
        return ContextSpec("local", text)
    location, has_fragment, fragment = text.partition("#")
    name = scheme.group(1).lower() if scheme else None
    if name in ("http", "https"):
        path = urlsplit(location).path
        if path.endswith(_TARBALL_SUFFIXES):
            if has_fragment:
                raise ContextError(f"{display_url(text)}: a tarball URL takes no #ref:folder")
            return ContextSpec("tarball", text)
        if not (path.rstrip("/").endswith(".git") or has_fragment):
            raise ContextError(f"cannot tell what {display_url(text)} is: give {ACCEPTED}")
    elif name is not None and name not in ("git", "ssh", "file"):
        raise ContextError(f"{name}:// build contexts are not supported: give {ACCEPTED}")
    elif name == "file" and location.endswith(_TARBALL_SUFFIXES):
        raise ContextError(f"{display_url(text)}: tarball contexts must be http(s) URLs")
    ref, _, folder = fragment.partition(":")
    return ContextSpec("git", location, _checked_ref(ref, text), _checked_folder(folder, text))


def _checked_ref(ref: str, text: str) -> str | None:
    if not ref:
        return None
    # git passes the ref on as an argument: no leading "-", nothing git would refuse anyway
    if ref.startswith(("-", "/")) or ref.endswith("/") or ".." in ref or _BAD_REF_CHARS.search(ref):
        raise ContextError(f"{display_url(text)}: {ref!r} is not a valid git branch, tag or commit")
    return ref


def _checked_folder(folder: str, text: str) -> str | None:
    if folder.startswith("/") or "\\" in folder or "\x00" in folder:
        raise ContextError(f"{display_url(text)}: the folder after ':' must be a relative path "
                           "inside the repository")
    parts = [part for part in folder.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ContextError(f"{display_url(text)}: the folder after ':' may not contain '..'")
    return "/".join(parts) or None


def display_url(url: str) -> str:
    """`url` without a password or query string, which may hold secrets, for messages."""
    if not _SCHEME.match(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", parts.fragment))


def context_dir(spec: ContextSpec, destination: Path) -> Path:
    """Where the build context is once `spec` has been materialised into `destination`."""
    if spec.kind == "git" and spec.folder:
        return destination / spec.folder
    return destination


# --- sizes --------------------------------------------------------------------------------

def _tar_bytes(size: int) -> int:
    """What one member costs in an uncompressed tar: a header block plus padded data."""
    return 512 + -(-size // 512) * 512


def _human(size: float) -> str:
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
        # The SDK's own matcher, fed as APIClient.build feeds it: the same files `docker build`
        # would send, including the Dockerfile and .dockerignore even when they are ignored.
        files = sorted(exclude_paths(root, _dockerignore(folder), dockerfile=dockerfile))
        size = tarfile.RECORDSIZE + sum(_tar_bytes(_file_size(os.path.join(root, name)))
                                        for name in files)
    except OSError as error:
        raise ContextError(f"could not read the build context {folder}: {error}") from error
    if size > limit:
        # Checked before packing (uncompressed, as the daemon counts it): no large temp file.
        raise ContextError(f"the build context {folder} is {_human(size)}, over the limit of "
                           f"{_human(limit)}: list what the build does not need in .dockerignore")
    handle = tempfile.NamedTemporaryFile(prefix="basewatch-context-", suffix=".tar.gz",
                                         delete=False)
    try:
        with handle:
            create_archive(root=root, files=files, fileobj=handle, gzip=True)
    except BaseException as error:
        os.unlink(handle.name)
        if isinstance(error, OSError):
            raise ContextError(f"could not pack {folder}: {error}") from error
        raise
    return Path(handle.name)


def _dockerignore(folder: Path) -> list[str]:
    """The patterns of folder/.dockerignore, read the way APIClient.build reads them."""
    path = folder / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(errors="replace").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _file_size(path: str) -> int:
    status = os.lstat(path)
    return status.st_size if stat.S_ISREG(status.st_mode) else 0


# --- daemon side: extracting an archive ----------------------------------------------------

def extract_context(archive: Path | BinaryIO, destination: Path, limit: int) -> None:
    """Extract a plain or gzipped tar into `destination` (new or empty); blocking.

    At most `limit` uncompressed bytes are read. On any error `destination` is left as it was
    found (removed if it was created here, emptied otherwise).
    """
    created = _claim(destination)
    try:
        with _opened(archive) as raw, _decompressed(raw) as source:
            stream = _Limited(source, limit)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                _extract_members(tar, destination, stream)
    except BaseException as error:
        _discard(destination, created)
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
                               f"{_human(self._limit)}")


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


def _claim(destination: Path) -> bool:
    """Make `destination` ready: True when created here, False when it was an empty folder."""
    try:
        destination.mkdir(parents=True)
        return True
    except FileExistsError:
        if destination.is_dir() and not any(destination.iterdir()):
            return False
        raise ContextError(f"{destination} must be a new or empty folder") from None


def _discard(destination: Path, created: bool) -> None:
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


# --- daemon side: git --------------------------------------------------------------------

class _GitFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _git_reason(stderr: bytes) -> str:
    """What git said went wrong, on one line.

    Its last line is often boilerplate ("and the repository exists."): take the lines up to its
    first fatal/error line instead, which keeps a cause printed just before it, such as ssh's
    "Permission denied (publickey).", and drops hints and warnings.
    """
    kept = []
    for line in stderr.decode(errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith(("hint:", "warning:")):
            kept.append(line)
        if line.startswith(("fatal:", "error:")):
            break
    return " ".join(kept[-2:])


async def fetch_git_context(spec: ContextSpec, destination: Path, timeout: float = 300) -> str:
    """Check `spec` out into `destination` (new or empty); return the commit's sha."""
    if spec.kind != "git":
        raise ValueError(f"not a git context: {spec!r}")
    where = display_url(spec.location) + (f"#{spec.ref}" if spec.ref else "")
    created = _claim(destination)
    try:
        try:
            async with asyncio.timeout(timeout):
                await _clone(spec, destination)
                sha = (await _git("-C", str(destination), "rev-parse", "HEAD")).strip()
        except TimeoutError:
            raise ContextError(f"fetching {where} took longer than {timeout:.0f}s") from None
        except _GitFailed as failure:
            raise ContextError(f"git could not fetch {where}: {failure.reason}") from None
        _check_folder(spec, destination, where)
        return sha
    except BaseException:
        _discard(destination, created)
        raise


async def _clone(spec: ContextSpec, destination: Path) -> None:
    branch = ["--branch", spec.ref] if spec.ref else []
    try:
        await _git("clone", "--quiet", "--depth", "1", *branch, "--", spec.location,
                   str(destination))
    except _GitFailed:
        if spec.ref is None or not _COMMIT.match(spec.ref):
            raise
        # --branch takes branches and tags only: a commit needs the history to check out from.
        _discard(destination, created=False)
        destination.mkdir(exist_ok=True)  # a failed clone may have removed it
        await _git("clone", "--quiet", "--no-checkout", "--", spec.location, str(destination))
        await _git("-C", str(destination), "-c", "advice.detachedHead=false", "checkout",
                   "--quiet", "--detach", spec.ref)


def _check_folder(spec: ContextSpec, checkout: Path, where: str) -> None:
    if spec.folder is None:
        return
    root, folder = checkout.resolve(), (checkout / spec.folder).resolve()
    if not folder.is_relative_to(root):  # a symbolic link in the repository
        raise ContextError(f"the folder {spec.folder!r} of {where} leads outside the repository")
    if not folder.is_dir():
        raise ContextError(f"there is no folder {spec.folder!r} in {where}")


def _git_env() -> dict[str, str]:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C",
               # no ext:: or other remote helpers that run commands
               GIT_ALLOW_PROTOCOL="file:git:http:https:ssh")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")  # never wait for a password
    return env


async def _git(*args: str) -> str:
    """Run git; its stdout, or _GitFailed with what git's stderr says went wrong."""
    try:
        process = await asyncio.create_subprocess_exec(
            "git", *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=_git_env(),
            start_new_session=True)  # its own process group: a timeout kills its helpers too
    except FileNotFoundError:
        raise ContextError("git is not installed on the daemon's host") from None
    try:
        stdout, stderr = await process.communicate()
    except BaseException:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            # wait() also waits for the pipes: bounded, in case a helper left the group.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 5)
        raise
    if process.returncode != 0:
        raise _GitFailed(_git_reason(stderr) or f"git exited with {process.returncode}")
    return stdout.decode(errors="replace")


# --- daemon side: remote tarballs --------------------------------------------------------

async def fetch_tarball_context(url: str, destination: Path, limit: int,
                                session: aiohttp.ClientSession | None = None, *,
                                timeout: float = 300) -> None:
    """Download the tarball at `url` (at most `limit` bytes) and extract it into `destination`.

    The download goes to a temp file beside `destination` (in the run's folder), then away.
    """
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ContextError(f"{destination} must be a new or empty folder")
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=destination.parent, prefix=".context-",
                                         suffix=".download", delete=False)
    try:
        with handle:
            await _download(url, handle, limit, session, timeout)
        await asyncio.to_thread(extract_context, Path(handle.name), destination, limit)
    finally:
        os.unlink(handle.name)


async def _download(url: str, handle: BinaryIO, limit: int,
                    session: aiohttp.ClientSession | None, timeout: float) -> None:
    import aiohttp

    shown = display_url(url)
    own = session is None
    if own:
        session = aiohttp.ClientSession()
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if not 200 <= response.status < 300:
                raise ContextError(f"downloading {shown} failed: HTTP {response.status} "
                                   f"{response.reason or ''}".rstrip())
            over = ContextError(f"{shown} is larger than the limit of {_human(limit)}")
            if response.content_length is not None and response.content_length > limit:
                raise over
            received = 0
            async for chunk in response.content.iter_chunked(1 << 16):
                received += len(chunk)
                if received > limit:
                    raise over
                await asyncio.to_thread(handle.write, chunk)
    except aiohttp.ClientError as error:
        raise ContextError(f"could not download {shown}: {error}") from None
    except TimeoutError:
        raise ContextError(f"downloading {shown} took longer than {timeout:.0f}s") from None
    finally:
        if own:
            await session.close()
