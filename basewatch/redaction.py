"""Secrets kept out of the daemon's own log, whatever a message or a library puts in it: the
values the daemon knows to be secret (its tokens, registry and git passwords, webhook secrets,
runs' --set-secret values), and the shapes a secret takes in text nobody foresaw (a URL's
password, an Authorization header, a token in a query string). The last line of defence: code
should not log secrets in the first place."""
from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterable

MASK = "*****"
# Shorter values are not masked: "abc" would mangle every line that happens to hold it.
MIN_SECRET_LENGTH = 6

# user:password@ in a URL (https://, git+https://, redis://...): the password goes.
_URL_PASSWORD = re.compile(r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@\"']*:)[^\s/@\"']+(?=@)")
# A token given as a URL's user name (https://ghp_...@github.com): long, unlike `git@`.
_URL_TOKEN_USER = re.compile(r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/:@\"']{20,}(?=@)")
# An Authorization header as a dict, a header line or a repr prints it, with its scheme.
_AUTH_HEADER = re.compile(
    r"(?P<keep>\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?"
    r"(?:(?:bearer|basic|token|digest|bot)\s+)?)[^\s\"',}]+", re.IGNORECASE)
# A JSON web token (registries' and git hosts' bearer tokens): three base64url parts.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
# Header names and query parameters that carry a secret as their whole value.
_SECRET_FIELD = re.compile(
    r"(?P<keep>\b(?:x-gitlab-token|x-registry-token|private-token|x-hub-signature(?:-256)?"
    r"|x-gitea-signature|x-forgejo-signature|(?:access_|private_|refresh_|id_)?token"
    r"|password|passwd|secret|client_secret|api_key|apikey|sig|signature)"
    r"[\"']?\s*(?:[:=]|%3d)\s*[\"']?)[^\s\"'&,;}]+", re.IGNORECASE)


class KnownSecrets:
    """Values to mask wherever they appear. The daemon's own (tokens, passwords, webhook
    secrets) are added for good; a run's --set-secret values are held while the run needs
    them and counted, so two runs given the same value can each let it go."""

    def __init__(self) -> None:
        self._kept: set[str] = set()
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()  # added from the loop, masked from any thread
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        """Masked for as long as the process lives."""
        with self._lock:
            new = set(_forms(values)) - self._kept
            if new:
                self._kept |= new
                self._pattern = None

    def hold(self, *values: str | None) -> None:
        """Masked until as many `release`s of it."""
        with self._lock:
            for value in _forms(values):
                self._held[value] += 1
                self._pattern = None

    def release(self, *values: str | None) -> None:
        with self._lock:
            for value in _forms(values):
                if value in self._held:
                    self._held[value] -= 1
                    if self._held[value] <= 0:
                        del self._held[value]
                    self._pattern = None

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            values = self._kept | self._held.keys()
            if self._pattern is None and values:
                # Longest first: a secret that contains another is masked whole.
                self._pattern = re.compile("|".join(
                    re.escape(v) for v in sorted(values, key=len, reverse=True)))
            return self._pattern

    def mask(self, text: str) -> str:
        pattern = self._compiled()
        return text if pattern is None else pattern.sub(MASK, text)

    def __len__(self) -> int:
        return len(self._kept | self._held.keys())


def _forms(values: Iterable[str | None]) -> Iterable[str]:
    """Each secret long enough to mask, and as a JSON line writes it when that differs (a
    quote, a backslash): the log is masked once written, in either format."""
    for value in values:
        if value and len(value) >= MIN_SECRET_LENGTH:
            yield value
            escaped = json.dumps(value, ensure_ascii=False)[1:-1]
            if escaped != value:
                yield escaped


# The daemon's own: one per process, as its log is.
KNOWN = KnownSecrets()


def redact(text: str, known: KnownSecrets = KNOWN) -> str:
    """`text` with every known secret and every secret-shaped field masked."""
    text = known.mask(text)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\g<keep>{MASK}", text)
        text = _URL_TOKEN_USER.sub(rf"\g<keep>{MASK}", text)
    text = _AUTH_HEADER.sub(rf"\g<keep>{MASK}", text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    return _SECRET_FIELD.sub(rf"\g<keep>{MASK}", text)


def secret_environment(environ: dict[str, str] | Iterable[tuple[str, str]]) -> list[str]:
    """The values of environment variables whose names say they hold a secret (…TOKEN…,
    …SECRET…, …PASSWORD…, …KEY…): the daemon's own tokens come from such variables."""
    items = environ.items() if isinstance(environ, dict) else environ
    return [value for name, value in items
            if re.search(r"TOKEN|SECRET|PASSW|PASSPHRASE|API_?KEY|PRIVATE_?KEY|CREDENTIAL",
                         name, re.IGNORECASE) and value]
