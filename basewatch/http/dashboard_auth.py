"""The dashboard's sign-in: the API token, given once in a form, exchanged for a session cookie.

The cookie holds a random session id that only this process knows (a restart signs everyone
out), HttpOnly (no script reads it), SameSite=Strict (no other site's page or link sends it)
and Path=/. It is accepted by the dashboard's own read-only endpoints only, never by /api/:
the API keeps bearer tokens, so no page anywhere can make a browser change tasks or start runs
with a cookie it happens to hold. The two POSTs (sign in, sign out) also check Origin.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from basewatch.http.common import token_matches

COOKIE = "basewatch_session"
# How long a sign-in lasts; a session is not extended by use, so a stolen one ends too.
SESSION_SECONDS = 12 * 3600
# Sessions kept at once: the oldest goes first past this, so a script signing in in a loop
# cannot grow the daemon's memory.
MAX_SESSIONS = 256
# A wrong token waits this long before it is answered, and only this many sign-ins are
# checked at once: a few guesses a second at most, for a token that needs billions.
WRONG_TOKEN_DELAY = 1.0
MAX_SIGN_INS_AT_ONCE = 4


class Sessions:
    def __init__(self, token: str | None, clock=time.monotonic,
                 lifetime: float = SESSION_SECONDS, max_sessions: int = MAX_SESSIONS,
                 wrong_token_delay: float | None = None):
        self.token = token
        self._clock = clock
        self._lifetime = lifetime
        self._max = max_sessions
        self._delay = WRONG_TOKEN_DELAY if wrong_token_delay is None else wrong_token_delay
        self._expiry: dict[str, float] = {}  # session id -> when it ends (insertion order)
        self._checking = asyncio.Semaphore(MAX_SIGN_INS_AT_ONCE)
        self._waiting = 0

    async def sign_in(self, offered: str) -> str | None:
        """A new session id for the right token; None, after a delay, for a wrong one.
        Raises TooManySignIns while others are being checked."""
        if self._checking.locked():
            raise TooManySignIns()
        async with self._checking:
            if self.token is None or not token_matches(offered, self.token):
                await asyncio.sleep(self._delay)
                return None
        self._forget_expired()
        while len(self._expiry) >= self._max:
            del self._expiry[next(iter(self._expiry))]
        session = secrets.token_urlsafe(32)
        self._expiry[session] = self._clock() + self._lifetime
        return session

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        ends = self._expiry.get(session)
        if ends is None:
            return False
        if ends <= self._clock():
            del self._expiry[session]
            return False
        return True

    def sign_out(self, session: str | None) -> None:
        if session:
            self._expiry.pop(session, None)

    def _forget_expired(self) -> None:
        now = self._clock()
        for session in [s for s, ends in self._expiry.items() if ends <= now]:
            del self._expiry[session]

    # HTTP

    def signed_in(self, request: web.Request) -> bool:
        return self.valid(request.cookies.get(COOKIE))

    def set_cookie(self, response: web.StreamResponse, request: web.Request,
                   session: str) -> None:
        response.set_cookie(COOKIE, session, max_age=int(self._lifetime), path="/",
                            httponly=True, samesite="Strict", secure=request.secure)

    @staticmethod
    def clear_cookie(response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")


class TooManySignIns(Exception):
    """More sign-ins are being checked at once than the daemon allows."""


def same_origin(request: web.Request) -> bool:
    """Whether a POST comes from a page of this daemon. Browsers say where a request comes
    from in Sec-Fetch-Site (which no page can set) and Origin; a client sending neither is not a
    browser, and no other site's page can make it send our cookie."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or origin == "null":
        # "null": a browser hiding where the form was (a privacy setting); Sec-Fetch-Site
        # still says whether it was this daemon's page.
        return site == "same-origin" or (origin is None and site is None)
    parts = urlsplit(origin)
    return parts.netloc == request.host and parts.scheme in ("http", "https")
