"""Which repository a URL names, whatever form it is written in: a webhook names a repository
by its clone, SSH and web URLs, a task by its context URL, and they must meet.

`repository_key` reduces each to `host[:port]/path`: no scheme, no credentials, the host in
lower case, no default port, no `.git`, no trailing slash. `git@host:org/repo` (scp form) and
`ssh://git@host:22/org/repo` are the host's SSH side of the same repository as
`https://host/org/repo`: an SSH port says nothing of the web side, so it is dropped. Paths
are compared in lower case too: GitHub, GitLab, Gitea and Azure DevOps take a repository's
name in any case. A `file://` repository keeps its path as written (a file system's names).
"""
from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

_SCP = re.compile(r"^(?:[^@/\s]+@)?(?P<host>[A-Za-z0-9.-]+):(?!//)(?P<path>.*)$")
_DEFAULT_PORTS = {"http": 80, "https": 443, "git": 9418}
# Azure DevOps serves SSH from its own host, under v3/ and without `_git`.
_AZURE_SSH = re.compile(r"^ssh\.dev\.azure\.com/v3/(?P<org>[^/]+)/(?P<project>[^/]+)/"
                        r"(?P<repo>[^/]+)$")


def repository_key(url: str) -> str | None:
    """The repository `url` names, as a key equal for every URL of it; None when `url` is
    not a repository URL (empty, a bare path, a scheme git does not fetch)."""
    url = (url or "").strip().partition("#")[0]
    if not url:
        return None
    if "://" not in url:
        scp = _SCP.match(url)
        if scp is None:
            return None
        return _key(scp["host"], None, scp["path"])
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = unquote(parts.path).rstrip("/").removesuffix(".git").rstrip("/")
        return f"file://{path}" if path else None
    if scheme not in ("http", "https", "ssh", "git", "git+ssh", "ssh+git") or not parts.hostname:
        return None
    if scheme not in _DEFAULT_PORTS or port == _DEFAULT_PORTS[scheme]:
        port = None
    return _key(parts.hostname, port, unquote(parts.path))


def _key(host: str, port: int | None, path: str) -> str | None:
    path = "/".join(part for part in path.lower().split("/") if part)
    path = path.removesuffix(".git").rstrip("/")
    if not path:
        return None
    key = f"{host.lower().rstrip('.')}{f':{port}' if port else ''}/{path}"
    if azure := _AZURE_SSH.match(key):
        return f"dev.azure.com/{azure['org']}/{azure['project']}/_git/{azure['repo']}"
    return key


def repository_keys(urls: tuple[str, ...] | list[str]) -> set[str]:
    """The repositories a list of URLs names (an event's clone, SSH and web URLs)."""
    return {key for url in urls
            if isinstance(url, str) and (key := repository_key(url)) is not None}
