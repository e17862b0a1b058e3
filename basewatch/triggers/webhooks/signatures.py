"""How git servers prove a delivery is theirs: an HMAC of the raw body, or a shared token, each
compared in constant time."""
from __future__ import annotations

import hashlib
import hmac


def same(offered: str | None, expected: str) -> bool:
    """Constant-time equality of a value a stranger chose with the one we expect."""
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a stranger chooses these.
    # aiohttp hands over header bytes that are not UTF-8 as surrogates (and os.environ does
    # the same for a secret): encoded back as they came, they are simply wrong.
    return offered is not None and hmac.compare_digest(
        offered.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def hmac_sha256(secret: str, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of `body` keyed with `secret`, as GitHub and Gitea sign."""
    return hmac.new(secret.encode("utf-8", "surrogateescape"), body, hashlib.sha256).hexdigest()
