"""Where registry credentials come from, and the bearer tokens they are exchanged for.

Credentials for a host come from the config file (`registries[].username` with `password` or
`password_env`) first, then from Docker's `config.json`. Nothing here talks HTTP: the registry
client asks for credentials, parses challenges and keeps tokens here.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from basewatch.errors import RegistryError
from basewatch.oci.settings import RegistrySettings
from basewatch.redaction import KNOWN

# `docker login` stores Docker Hub credentials under https://index.docker.io/v1/.
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
# A token is reused until this long before it expires, so it cannot lapse in flight.
_TOKEN_MARGIN = 10.0
DEFAULT_TOKEN_LIFETIME = 60.0


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __post_init__(self) -> None:
        KNOWN.add(self.password)  # and out of the daemon's log, whatever prints it

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        return f"Credentials(username={self.username!r}, password=***)"

    @property
    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def default_docker_config() -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
    directory = os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker"
    return Path(directory) / "config.json"


class CredentialStore:
    """Credentials per registry host: config settings first, then Docker's config.json."""

    def __init__(self, registries: Sequence[RegistrySettings] = (),
                 docker_config: Path | None = None):
        # Resolved now so a missing password_env stops the daemon at start, not at first pull.
        self._configured = {r.host: _from_settings(r) for r in registries}
        path = Path(docker_config) if docker_config else default_docker_config()
        self._docker_config = path / "config.json" if path.is_dir() else path
        self._docker_auths: dict[str, Credentials | None] | None = None

    def get(self, host: str) -> Credentials | None:
        """The credentials to use for `host`, or None to go anonymous."""
        configured = self._configured.get(host)
        if configured is not None:
            return configured
        return self._load_docker_config().get(host)

    def _load_docker_config(self) -> dict[str, Credentials | None]:
        if self._docker_auths is None:
            self._docker_auths = _read_docker_config(self._docker_config)
        return self._docker_auths


def _from_settings(settings: RegistrySettings) -> Credentials | None:
    password = settings.password
    if settings.password_env is not None:
        password = os.environ.get(settings.password_env)
        if password is None:
            raise RegistryError(
                f"registry {settings.host}: environment variable {settings.password_env} "
                "(registries[].password_env) is not set; export it or use password")
    if settings.username is None and password is None:
        return None
    if settings.username is None or password is None:
        raise RegistryError(
            f"registry {settings.host}: give both username and password (or password_env), "
            "or neither")
    return Credentials(settings.username, password)


def _read_docker_config(path: Path) -> dict[str, Credentials | None]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RegistryError(f"cannot read Docker config {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise RegistryError(f"Docker config {path} is not valid JSON: {exc}") from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        # Only credHelpers/credsStore, or nothing at all: neither is supported, so anonymous.
        return {}
    found: dict[str, Credentials | None] = {}
    for key, entry in auths.items():
        host = _host_of_key(str(key))
        if found.get(host) is None:
            found[host] = _entry_credentials(entry)
    return found


def _host_of_key(key: str) -> str:
    """`https://index.docker.io/v1/` -> `docker.io`; `https://host:5000` -> `host:5000`."""
    host = re.sub(r"^[a-z]+://", "", key).partition("/")[0]
    return "docker.io" if host in _DOCKER_HUB_HOSTS else host


def _entry_credentials(entry: object) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            return None
        username, sep, password = decoded.partition(":")
        return Credentials(username, password) if sep else None
    if entry.get("username") and entry.get("password") is not None:
        return Credentials(str(entry["username"]), str(entry["password"]))
    return None


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` header: scheme (lowercase) and parameters."""

    scheme: str
    params: dict[str, str]

    @classmethod
    def parse(cls, header: str) -> "Challenge":
        scheme, _, rest = header.strip().partition(" ")
        params = {m[1].lower(): m[2] if m[2] is not None else m[3]
                  for m in _CHALLENGE_PARAM.finditer(rest)}
        return cls(scheme.lower(), params)


class TokenCache:
    """Bearer tokens per (registry, scope), dropped a little before they expire."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}

    def get(self, registry: str, scope: str) -> str | None:
        entry = self._tokens.get((registry, scope))
        if entry is None:
            return None
        token, expires_at = entry
        if self._clock() >= expires_at:
            del self._tokens[(registry, scope)]
            return None
        return token

    def put(self, registry: str, scope: str, token: str, expires_in: float | None) -> None:
        lifetime = expires_in if expires_in and expires_in > 0 else DEFAULT_TOKEN_LIFETIME
        lifetime -= min(_TOKEN_MARGIN, lifetime / 2)
        self._tokens[(registry, scope)] = (token, self._clock() + lifetime)
