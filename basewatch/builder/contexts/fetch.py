"""Daemon side: materialising a git repository or a remote tarball into the run's own folder."""
from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # the CLI imports this package: aiohttp's import time is the daemon's to pay
    import aiohttp

from basewatch.builder.contexts.archive import (claim_destination, discard_destination,
                                                extract_context, human_size)
from basewatch.context_spec import (COMMIT, ContextError, ContextSpec, checked_source,
                                    context_host, display_url, url_has_credentials,
                                    without_credentials)
from basewatch.models import SourceCommit
from basewatch.netpolicy import AddressRefused, HostPolicy, literal_address

# Redirects followed for a tarball, each checked as the first URL was.
MAX_REDIRECTS = 10
# What `git ls-remote` may print: it asks only for the branches a poll wants, so a few
# hundred bytes is usual; past this the remote is answering something else.
MAX_LS_REMOTE_BYTES = 1 << 20
# What of git's stderr is kept for its error line; the rest is read and dropped.
MAX_GIT_STDERR_BYTES = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


# --- daemon side: git --------------------------------------------------------------------

class _GitFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _OutputTooLarge(Exception):
    pass


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


@dataclass(frozen=True)
class GitCredential:
    """What git answers an http(s) server's password prompt with."""
    username: str
    password: str = field(repr=False)


# git asks this helper (a shell function, from its configuration) for the credentials of the
# one host they belong to, and the helper reads them from git's environment: never from git's
# arguments, which `ps` shows, nor from the URL, which the clone writes into .git/config.
_HELPER = ('!f() { test "$1" = get || return 0; '
           'printf "username=%s\\npassword=%s\\n" '
           '"$BASEWATCH_GIT_USERNAME" "$BASEWATCH_GIT_PASSWORD"; }; f')


def credential_host(location: str) -> str | None:
    """The host[:port], lower case, that git credentials are given for: of an http(s) URL
    only (ssh has keys of its own)."""
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https"):
        return None
    return parts.netloc.rpartition("@")[2].lower()


def _credential_env(location: str, credential: GitCredential | None) -> dict[str, str]:
    """git's environment for fetching `location` with `credential` (None: anonymously)."""
    host = credential_host(location)
    if credential is None or host is None:
        return {}
    scheme = urlsplit(location).scheme
    # The empty helper first: the daemon user's own helpers (`store`, a keychain) are not
    # asked, nor told the password to keep. Scoped to the host, a redirect elsewhere gets none.
    return {"GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": f"credential.{scheme}://{host}.helper",
            "GIT_CONFIG_VALUE_1": _HELPER,
            "BASEWATCH_GIT_USERNAME": credential.username,
            "BASEWATCH_GIT_PASSWORD": credential.password}


def _split_credential(location: str) -> tuple[str, GitCredential | None]:
    """A URL's own credentials (a task stored by an older version) taken out of it."""
    if not url_has_credentials(location):
        return location, None
    parts = urlsplit(location)
    userinfo = parts.netloc.rpartition("@")[0]
    username, _, password = userinfo.partition(":")
    return without_credentials(location), GitCredential(unquote(username), unquote(password))


async def fetch_git_context(spec: ContextSpec, destination: Path, timeout: float = 300,
                            hosts: HostPolicy | None = None,
                            credential: GitCredential | None = None,
                            source: SourceCommit | None = None) -> str:
    """Check `spec` out into `destination` (new or empty); return the commit's sha.

    With `hosts`, the repository's host must pass it, git follows no redirect, and over
    http(s) git connects to the address that was checked. `credential` is for an http(s)
    server that asks for one (a private repository). With `source`, exactly its commit is
    checked out instead of the context's #ref (a commit or pull-request run), or a
    ContextError says it is not in the repository.
    """
    if spec.kind != "git":
        raise ValueError(f"not a git context: {spec!r}")
    if source is not None:
        source = checked_source(source)
    location, own = _split_credential(spec.location)
    spec = replace(spec, location=location)
    env = _credential_env(location, own or credential)
    where = display_url(spec.location) + (f"#{spec.ref}" if spec.ref and not source else "")
    created = claim_destination(destination)
    try:
        try:
            async with asyncio.timeout(timeout):
                pinned = await _pinned(spec, hosts, where)
                if source is None:
                    await _clone(spec, destination, pinned, env)
                else:
                    await _fetch_commit(spec, destination, pinned, env, source, where)
                sha = (await _git("-C", str(destination), "rev-parse", "HEAD")).strip()
                if source is not None and sha != source.commit:
                    raise ContextError(f"{where}: checked out {sha}, not the commit "
                                       f"{source.commit} the run is for")
        except TimeoutError:
            raise ContextError(f"fetching {where} took longer than {timeout:.0f}s") from None
        except _GitFailed as failure:
            raise ContextError(f"git could not fetch {where}: {failure.reason}") from None
        _check_folder(spec, destination, where)
        return sha
    except BaseException:
        discard_destination(destination, created)
        raise


async def _pinned(spec: ContextSpec, hosts: HostPolicy | None, where: str) -> list[str]:
    """git's options that keep it on the checked host: no redirects, and for http(s) the
    checked address (curl's --resolve), so the name is not resolved again elsewhere. git://
    and ssh resolve again themselves: for those the check comes just before."""
    host = context_host(spec)
    if hosts is None or host is None:
        return []
    parts = urlsplit(spec.location) if "://" in spec.location else None
    scheme = parts.scheme.lower() if parts else "ssh"
    try:
        port = (parts.port if parts else None) or {"http": 80, "https": 443, "git": 9418}.get(
            scheme, 22)
    except ValueError:
        raise ContextError(f"{where}: the port is not a number") from None
    try:
        addresses = await hosts.resolve(host, port)
    except AddressRefused as refused:
        raise ContextError(f"git may not fetch {where}: {refused}") from None
    options = ["-c", "http.followRedirects=false"]
    if scheme in ("http", "https") and literal_address(host) is None:
        shown = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
        options += ["-c", f"http.curloptResolve={host}:{port}:{shown}"]
    return options


async def _clone(spec: ContextSpec, destination: Path, options: list[str],
                 env: dict[str, str]) -> None:
    branch = ["--branch", spec.ref] if spec.ref else []
    try:
        await _git(*options, "clone", "--quiet", "--depth", "1", *branch, "--", spec.location,
                   str(destination), env=env)
    except _GitFailed:
        if spec.ref is None or not COMMIT.match(spec.ref):
            raise
        # --branch takes branches and tags only: a commit needs the history to check out from.
        discard_destination(destination, created=False)
        destination.mkdir(exist_ok=True)  # a failed clone may have removed it
        await _git(*options, "clone", "--quiet", "--no-checkout", "--", spec.location,
                   str(destination), env=env)
        await _git("-C", str(destination), "-c", "advice.detachedHead=false", "checkout",
                   "--quiet", "--detach", spec.ref)


# What git says when the commit asked for is not there (or, over protocol v0, not advertised).
_NOT_THERE = ("not our ref", "unadvertised object", "couldn't find remote ref",
              "no such remote ref")


async def _fetch_commit(spec: ContextSpec, destination: Path, options: list[str],
                        env: dict[str, str], source: SourceCommit, where: str) -> None:
    """Fetch exactly `source.commit` and check it out. By its SHA first (or a pull request
    by its ref, whose head usually is that commit); a server that refuses a SHA it does not
    advertise (protocol v0), or a pull request updated since, gets the whole history of the
    branch (or the pull request's ref), where the commit must be."""
    sha = source.commit
    object_format = ["--object-format=sha256"] if len(sha) == 64 else []
    await _git("init", "--quiet", *object_format, "--", str(destination))
    history = source.fetch_ref or (f"refs/heads/{source.branch}" if source.branch else None)
    # (options, what to fetch): options go before `--`, where git reads them as options;
    # after it, `--depth` would be a ref to look for.
    shallow = ["--depth", "1"]
    # A merge ref (Azure Repos' refs/pull/N/merge) has the pull request's head as its second
    # parent: one commit deeper.
    by_ref = ["--depth", "2"] if (source.fetch_ref or "").endswith("/merge") else shallow
    attempts = [(by_ref, source.fetch_ref)] if source.fetch_ref else []
    attempts.append((shallow, sha))
    if history is not None:
        attempts.append(([], history))
    reached, failures = False, []
    for depth, wanted in attempts:
        try:
            await _git(*options, "-C", str(destination), "fetch", "--quiet", "--no-tags",
                       "--no-write-fetch-head", *depth, "--", spec.location, wanted, env=env)
        except _GitFailed as failure:
            failures.append(failure.reason)
            continue
        reached = True
        if await _has_commit(destination, sha):
            break
    else:
        if not reached and not any(sign in reason for reason in failures
                                   for sign in _NOT_THERE):
            raise _GitFailed(failures[0])
        on = f" (nor on {history})" if history else ""
        raise ContextError(f"the commit {sha} is not in {where}{on}: it may have been "
                           "force-pushed away, or the event named another repository")
    await _git("-C", str(destination), "-c", "advice.detachedHead=false", "checkout",
               "--quiet", "--detach", sha)


async def _has_commit(repository: Path, sha: str) -> bool:
    try:
        await _git("-C", str(repository), "cat-file", "-e", f"{sha}^{{commit}}")
    except _GitFailed:
        return False
    return True


@dataclass(frozen=True)
class RemoteHeads:
    """What `git ls-remote` says of a remote: the branches asked about that it has, with their
    full SHAs; the branch its HEAD names (its default branch), also among `heads`; and which
    of the names asked about as tags it has."""

    heads: dict[str, str]
    default_branch: str | None = None
    tags: frozenset[str] = frozenset()


# git's words for the failures a poll meets, and the one line each becomes.
_LS_REMOTE_CAUSES = (
    (("not found", "does not appear to be a git repository", "does not exist",
      "no such file or directory"), "the repository was not found"),
    (("authentication failed", "could not read username", "could not read password",
      "terminal prompts disabled", "permission denied", "returned error: 401",
      "returned error: 403"),
     "authentication failed (see git_credentials)"),
    (("could not resolve host",), "the host name does not resolve"),
    (("failed to connect", "connection refused", "couldn't connect"),
     "the server refused the connection"),
)


def _ls_remote_cause(reason: str) -> str:
    lowered = reason.lower()
    for words, cause in _LS_REMOTE_CAUSES:
        if any(word in lowered for word in words):
            return cause
    return reason


async def list_remote_heads(location: str, branches: Collection[str] | None = None, *,
                            tags: Collection[str] = (), timeout: float = 30,
                            hosts: HostPolicy | None = None,
                            credential: GitCredential | None = None,
                            limit: int = MAX_LS_REMOTE_BYTES) -> RemoteHeads:
    """`git ls-remote --symref` of the repository at `location`: its HEAD, the `branches`
    (None: every branch) and the `tags` named, without fetching anything.

    The same rules as a fetch: with `hosts`, the host must pass it, no redirect is followed
    and http(s) goes to the checked address; `credential` reaches git through its
    environment only; at most `limit` bytes of output. Failures are ContextError, one line.
    """
    location, own = _split_credential(location)
    where = display_url(location)
    patterns = ["HEAD"]
    patterns += ["refs/heads/*"] if branches is None else [f"refs/heads/{b}" for b in branches]
    patterns += [f"refs/tags/{t}" for t in tags]
    try:
        async with asyncio.timeout(timeout):
            pinned = await _pinned(ContextSpec("git", location), hosts, where)
            output = await _git(*pinned, "ls-remote", "--symref", "--", location, *patterns,
                                env=_credential_env(location, own or credential), limit=limit)
    except TimeoutError:
        raise ContextError(f"listing the branches of {where} took longer than "
                           f"{timeout:.0f}s") from None
    except _GitFailed as failure:
        raise ContextError(f"cannot list the branches of {where}: "
                           f"{_ls_remote_cause(failure.reason)}") from None
    except _OutputTooLarge:
        raise ContextError(f"{where} listed more than {human_size(limit)} of branches and "
                           "tags") from None
    return _parse_ls_remote(output, None if branches is None else set(branches), set(tags))


def _parse_ls_remote(output: str, branches: set[str] | None, tags: set[str]) -> RemoteHeads:
    # A pattern matches a ref's tail (`main` is also `refs/heads/x/main`): keep exact names.
    heads: dict[str, str] = {}
    found_tags: set[str] = set()
    default = head = None
    for line in output.splitlines():
        value, _, name = line.partition("\t")
        if value.startswith("ref: ") and name == "HEAD":
            default = value.removeprefix("ref: ").removeprefix("refs/heads/")
            continue
        if not _SHA.fullmatch(value):
            continue
        if name == "HEAD":
            head = value
        elif name.startswith("refs/heads/"):
            branch = name.removeprefix("refs/heads/")
            if branches is None or branch in branches:
                heads[branch] = value
        elif name.startswith("refs/tags/"):
            tag = name.removeprefix("refs/tags/").removesuffix("^{}")
            if tag in tags:
                found_tags.add(tag)
    if default is not None and head is not None:
        heads.setdefault(default, head)
    return RemoteHeads(heads, default, frozenset(found_tags))


_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1, or SHA-256 repositories


def _check_folder(spec: ContextSpec, checkout: Path, where: str) -> None:
    if spec.folder is None:
        return
    root, folder = checkout.resolve(), (checkout / spec.folder).resolve()
    if not folder.is_relative_to(root):  # a symbolic link in the repository
        raise ContextError(f"the folder {spec.folder!r} of {where} leads outside the repository")
    if not folder.is_dir():
        raise ContextError(f"there is no folder {spec.folder!r} in {where}")


def _git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C",
               # no ext:: or other remote helpers that run commands
               GIT_ALLOW_PROTOCOL="file:git:http:https:ssh")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")  # never wait for a password
    return {**env, **(extra or {})}


async def _git(*args: str, env: dict[str, str] | None = None, limit: int | None = None) -> str:
    """Run git (`env` added to its environment); its stdout, or _GitFailed with what git's
    stderr says went wrong. With `limit`, more stdout than that is _OutputTooLarge (git is
    killed)."""
    try:
        process = await asyncio.create_subprocess_exec(
            "git", *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=_git_env(env),
            start_new_session=True)  # its own process group: a timeout kills its helpers too
    except FileNotFoundError:
        raise ContextError("git is not installed on the daemon's host") from None
    try:
        if limit is None:
            stdout, stderr = await process.communicate()
        else:
            stdout, stderr = await _bounded_output(process, limit)
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


async def _bounded_output(process: asyncio.subprocess.Process, limit: int
                          ) -> tuple[bytes, bytes]:
    """The process's stdout (_OutputTooLarge past `limit`) and the start of its stderr, once
    it has exited."""
    async def keep_start(stream: asyncio.StreamReader) -> bytes:
        kept = bytearray()
        while chunk := await stream.read(1 << 16):
            kept += chunk[:MAX_GIT_STDERR_BYTES - len(kept)]  # the rest is drained, not kept
        return bytes(kept)

    errors = asyncio.ensure_future(keep_start(process.stderr))
    try:
        output = bytearray()
        while chunk := await process.stdout.read(1 << 16):
            output += chunk
            if len(output) > limit:
                raise _OutputTooLarge()
        stderr = await errors
        await process.wait()
        return bytes(output), stderr
    finally:
        errors.cancel()


# --- daemon side: remote tarballs --------------------------------------------------------

async def fetch_tarball_context(url: str, destination: Path, limit: int,
                                session: aiohttp.ClientSession | None = None, *,
                                timeout: float = 300, hosts: HostPolicy | None = None) -> None:
    """Download the tarball at `url` (at most `limit` bytes) and extract it into `destination`.

    The download goes to a temp file beside `destination` (in the run's folder), then away.
    With `hosts`, every URL of the redirect chain and every address a name resolves to must
    pass it; the download then uses a session of its own, which connects only to those.
    """
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ContextError(f"{destination} must be a new or empty folder")
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=destination.parent, prefix=".context-",
                                         suffix=".download", delete=False)
    try:
        with handle:
            await _download(url, handle, limit, session, timeout, hosts)
        await asyncio.to_thread(extract_context, Path(handle.name), destination, limit)
    finally:
        os.unlink(handle.name)


async def _download(url: str, handle: BinaryIO, limit: int,
                    session: aiohttp.ClientSession | None, timeout: float,
                    hosts: HostPolicy | None) -> None:
    import aiohttp

    shown = display_url(url)
    own = session is None or hosts is not None
    if hosts is not None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=hosts.resolver()))
    elif own:
        session = aiohttp.ClientSession()
    try:
        async with asyncio.timeout(timeout):
            await _save(session, url, handle, limit, hosts, timeout)
    except aiohttp.ClientError as error:
        raise ContextError(f"could not download {shown}: {error}") from None
    except AddressRefused as refused:
        raise ContextError(f"may not download {shown}: {refused}") from None
    except TimeoutError:
        raise ContextError(f"downloading {shown} took longer than {timeout:.0f}s") from None
    finally:
        if own:
            await session.close()


async def _save(session: aiohttp.ClientSession, url: str, handle: BinaryIO, limit: int,
                hosts: HostPolicy | None, timeout: float) -> None:
    """Follow redirects by hand, checking each URL: aiohttp's own following would not."""
    import aiohttp
    from yarl import URL

    shown = display_url(url)
    for _ in range(MAX_REDIRECTS + 1):
        if hosts is not None:
            hosts.check_url(url)
        async with session.get(url, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            location = response.headers.get("Location")
            if response.status in _REDIRECTS and location:
                url = str(response.url.join(URL(location)))
                continue
            if not 200 <= response.status < 300:
                raise ContextError(f"downloading {shown} failed: HTTP {response.status} "
                                   f"{response.reason or ''}".rstrip())
            over = ContextError(f"{shown} is larger than the limit of {human_size(limit)}")
            if response.content_length is not None and response.content_length > limit:
                raise over
            received = 0
            async for chunk in response.content.iter_chunked(1 << 16):
                received += len(chunk)
                if received > limit:
                    raise over
                await asyncio.to_thread(handle.write, chunk)
            return
    raise ContextError(f"downloading {shown} failed: more than {MAX_REDIRECTS} redirects")
