"""What a context argument names: a local folder, a git repository or a remote tarball."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit


from basewatch.errors import BasewatchError
from basewatch.models import SourceCommit


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
COMMIT = re.compile(r"^[0-9a-fA-F]{7,40}$")


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
    if name is not None:  # schemes are case-insensitive: FILE:// is file://
        location = name + location[len(name):]
        text = name + text[len(name):]
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


def checked_branch(name: str) -> str:
    """A branch name as a task's trigger settings give it (`main`, `release/1.x`), refused
    when git would refuse it or read it as an option; `refs/heads/` is taken off."""
    if not isinstance(name, str):
        raise ContextError(f"{name!r} is not a git branch name")
    branch = name.strip().removeprefix("refs/heads/")
    if (not branch or branch.startswith(("-", "/", ".")) or branch.endswith(("/", ".lock", "."))
            or ".." in branch or "@{" in branch or "//" in branch
            or _BAD_REF_CHARS.search(branch)):
        raise ContextError(f"{name!r} is not a valid git branch name")
    return branch


_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # fullmatch: SHA-1 or SHA-256, in full
# A pull request's head as providers serve it: refs/pull/2/head, refs/merge-requests/1/head...
_FETCH_REF = re.compile(r"refs/[A-Za-z0-9][A-Za-z0-9._/-]{0,250}")


def checked_source(source: SourceCommit) -> SourceCommit:
    """`source` as git may be handed it: a full SHA, branches and a ref that git takes for
    what they are (never for an option), a pull request's positive number; a ContextError
    otherwise."""
    if not isinstance(source.commit, str) or not _SHA.fullmatch(source.commit):
        raise ContextError(f"{source.commit!r} is not a full commit SHA")
    ref = source.fetch_ref
    if ref is not None and (not isinstance(ref, str) or not _FETCH_REF.fullmatch(ref)
                            or ".." in ref or "//" in ref or ref.endswith(("/", ".lock"))):
        raise ContextError(f"{ref!r} is not a ref a commit can be fetched by")
    for branch in (source.branch, source.target_branch):
        if branch is not None:
            checked_branch(branch)
    number = source.pull_request
    if number is not None and (isinstance(number, bool) or not isinstance(number, int)
                               or number < 1):
        raise ContextError(f"{number!r} is not a pull request's number")
    return source


def _checked_folder(folder: str, text: str) -> str | None:
    if folder.startswith("/") or "\\" in folder or "\x00" in folder:
        raise ContextError(f"{display_url(text)}: the folder after ':' must be a relative path "
                           "inside the repository")
    parts = [part for part in folder.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ContextError(f"{display_url(text)}: the folder after ':' may not contain '..'")
    return "/".join(parts) or None


def checked_dockerfile_name(file: str) -> str:
    """`file` as a path relative to the build context, without `..`; normalised."""
    if file.startswith("/") or "\x00" in file:
        raise ContextError(f"the Dockerfile {file!r} must be a relative path inside the build "
                           "context")
    parts = [part for part in file.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ContextError(f"the Dockerfile {file!r} may not contain '..': it must be inside "
                           "the build context")
    if not parts:
        raise ContextError("the Dockerfile's name is empty")
    return "/".join(parts)


def context_host(spec: ContextSpec) -> str | None:
    """The host a remote context is fetched from (lower case); None for a folder or file://."""
    if spec.kind == "local" or spec.location.startswith("file://"):
        return None
    scp_like = _SCP_LIKE.match(spec.location)
    if scp_like and not _SCHEME.match(spec.location):
        return scp_like.group(0).rpartition("@")[2].rstrip(":").lower()
    return urlsplit(spec.location).hostname


def url_has_credentials(url: str) -> bool:
    """Whether `url` carries a secret: any user part of an http(s) URL (a token is often sent
    as the user name), or a password in any other URL (ssh://git@host is only a login)."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return False
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    return bool(at) and (scheme.group(1).lower() in ("http", "https") or ":" in userinfo)


def without_credentials(url: str) -> str:
    """`url` without the credentials url_has_credentials finds; the rest as it was."""
    if not url_has_credentials(url):
        return url
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    login = "" if parts.scheme in ("http", "https") else userinfo.partition(":")[0] + "@"
    return urlunsplit(parts._replace(netloc=login + host))


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
