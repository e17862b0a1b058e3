"""Which provider serves a repository, and where its REST API is.

github.com, gitlab.com and codeberg.org are known; a self-hosted server (GitHub Enterprise,
GitLab self-managed, Gitea, Forgejo) is named in the config's `git_hosts`. Pure: no network.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from basewatch.errors import BasewatchError
from basewatch.netpolicy import HostPolicy

Provider = Literal["github", "gitlab", "gitea"]

# Where each provider's API lives on a server of one's own, under the server's web address.
API_PATHS: dict[str, str] = {"github": "/api/v3", "gitlab": "/api/v4", "gitea": "/api/v1"}
_HOST_PORT = r"([a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:]+\])(:\d{1,5})?"
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@([^:/]+):(?!//)(.*)$")  # git@host:org/repo.git


def checked_git_host(value: str) -> str:
    """A git server's host as its repository URLs write it (host or host:port), lower case;
    ValueError for anything else (for the config's validators)."""
    value = value.strip().lower()
    if not re.fullmatch(_HOST_PORT, value):
        raise ValueError(f"{value!r} is not a host or host:port, as in the repository URL")
    return value


def checked_base_url(value: str, example: str) -> str:
    """An http(s) URL other URLs are made under (an API's, the daemon's own public one): no
    credentials, query or fragment; its trailing slash dropped. ValueError otherwise, showing
    `example`."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{value!r} is not an http(s) URL without credentials, query or "
                         f"fragment (e.g. {example})")
    return value.strip().rstrip("/")


class ScmError(BasewatchError):
    """A git host's API refused or failed a request, or a repository is on no known host."""

    http_status = 502  # the daemon's upstream failed, not the request


class GitHostSettings(BaseModel):
    """A git server of one's own: `git_hosts: [{host, provider, api_url}]` in the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str  # as written in the repository's URLs: git.example.com or git.example.com:8443
    provider: Literal["github", "gitlab", "gitea", "forgejo"]  # Forgejo speaks Gitea's API
    api_url: str | None = None  # default: https://HOST/api/v3 (GitHub), /api/v4, /api/v1

    @field_validator("host")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        return checked_git_host(value)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        return None if value is None else checked_base_url(
            value, "https://git.example.com/api/v4")

    @model_validator(mode="after")
    def _default_api_url(self) -> "GitHostSettings":
        if self.api_url is None:
            api_path = API_PATHS[_api_family(self.provider)]
            object.__setattr__(self, "api_url", f"https://{self.host}{api_path}")
        return self


# Public servers whose API needs no configuration.
KNOWN_HOSTS: tuple[GitHostSettings, ...] = (
    GitHostSettings(host="github.com", provider="github", api_url="https://api.github.com"),
    GitHostSettings(host="gitlab.com", provider="gitlab", api_url="https://gitlab.com/api/v4"),
    GitHostSettings(host="codeberg.org", provider="forgejo",
                    api_url="https://codeberg.org/api/v1"),
)


@dataclass(frozen=True)
class Repository:
    """One repository as its provider's API names it."""

    provider: Provider  # the API family: forgejo is gitea
    api_url: str  # without a trailing slash
    path: str  # owner/repo; GitLab: group/subgroup/project
    host: str  # as in the repository's URLs, for messages

    def __str__(self) -> str:
        return f"{self.host}/{self.path}"


def api_policy(git_hosts: tuple[GitHostSettings, ...] | list[GitHostSettings] = ()
               ) -> HostPolicy:
    """Where the daemon may send API requests: the APIs of the servers the config names in
    git_hosts wherever they are (a self-hosted GitLab on the LAN), any other only at public
    addresses."""
    listed = tuple(dict.fromkeys(urlsplit(h.api_url or "").hostname or "" for h in git_hosts))
    return HostPolicy(tuple(h for h in listed if h), setting="git_hosts")


def _api_family(provider: str) -> Provider:
    return "gitea" if provider == "forgejo" else provider  # type: ignore[return-value]


def locate(repository_url: str, git_hosts: tuple[GitHostSettings, ...] | list[GitHostSettings]
           = ()) -> Repository:
    """The provider, API and repository path of a git URL (https, ssh, scp-like; a `#ref:folder`
    is ignored). A configured host wins over a known one of the same name."""
    host, path = _host_and_path(repository_url)
    settings = next((h for h in (*git_hosts, *KNOWN_HOSTS) if h.host == host), None)
    if settings is None:
        raise ScmError(f"{host} is not a git host basewatch knows the API of: add it to the "
                       "config's git_hosts as {host, provider: github|gitlab|gitea, api_url}")
    provider = _api_family(settings.provider)
    path = _strip_web_prefix(path, settings.api_url or "")
    segments = path.split("/")
    if len(segments) < 2 or any(not s or s in (".", "..") for s in segments) or \
            (provider != "gitlab" and len(segments) != 2):
        shape = "group/project" if provider == "gitlab" else "owner/repository"
        raise ScmError(f"{_display(repository_url)} does not name a repository as "
                       f"{host}/{shape}")
    return Repository(provider, settings.api_url or "", path, host)


def _host_and_path(url: str) -> tuple[str, str]:
    text = url.strip().partition("#")[0]
    scp = _SCP_LIKE.match(text)
    if scp is not None:
        host, path = scp.group(1).lower(), scp.group(2)
    else:
        parts = urlsplit(text)
        if parts.scheme.lower() not in ("http", "https", "ssh", "git") or not parts.hostname:
            raise ScmError(f"{_display(url)} is not an http(s) or ssh git URL of a git host")
        host = parts.hostname.lower()
        host = f"[{host}]" if ":" in host else host  # IPv6, written as in URLs
        # An ssh port is not the web server's: only http(s) ports name the host.
        if parts.port and parts.scheme.lower() in ("http", "https"):
            host = f"{host}:{parts.port}"
        path = parts.path
    path = path.strip("/")
    path = path[:-4] if path.endswith(".git") else path
    return host, path


def _strip_web_prefix(path: str, api_url: str) -> str:
    """GitLab served under a path (https://host/gitlab/api/v4): repository URLs carry that
    prefix (https://host/gitlab/group/project.git), the API's project path does not."""
    api_path = urlsplit(api_url).path
    prefix = api_path.rpartition("/api/")[0].strip("/") if "/api/" in api_path else ""
    if prefix and path.startswith(prefix + "/"):
        return path[len(prefix) + 1:]
    return path


def _display(url: str) -> str:
    """A URL as shown in messages: without any credentials written into it."""
    parts = urlsplit(url.strip())
    if parts.password or parts.username:
        return parts._replace(netloc=parts.hostname or "").geturl()
    return url.strip()
