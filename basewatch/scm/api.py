"""HTTP for the git hosts' REST APIs: the daemon's network policy on every hop, bounded
bodies, a timeout, back-off on 5xx and rate limits (Retry-After), and one-line errors.

Tokens travel in headers only, and no header reaches a message or a log line.
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from yarl import URL

from basewatch import __version__
from basewatch.bounded import read_bounded
from basewatch.netpolicy import AddressRefused, HostPolicy
from basewatch.scm.hosts import Repository, ScmError

# Hook lists and statuses are a few KiB; nothing the daemon asks for is near this.
MAX_BODY_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
MAX_PAGES = 20
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = f"basewatch/{__version__}"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class ApiResponse:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    next_page: str | None = None  # the Link header's rel="next"

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def message(self) -> str:
        """What the API said went wrong, on one short line (GitHub, GitLab and Gitea all say it
        in `message`; GitHub adds `errors`, GitLab may say `error`)."""
        body = self.json()
        parts: list[str] = []
        if isinstance(body, dict):
            for key in ("message", "error"):
                value = body.get(key)
                if isinstance(value, (str, dict, list)) and value:
                    parts.append(value if isinstance(value, str) else json.dumps(value))
            errors = body.get("errors")
            for error in errors if isinstance(errors, list) else []:
                if isinstance(error, dict) and isinstance(error.get("message"), str):
                    parts.append(error["message"])
        text = _CONTROL.sub(" ", ": ".join(parts)).strip()
        return text[:200] + ("…" if len(text) > 200 else "")


class _Transient(Exception):
    """Worth another try: a connection error, a timeout, 5xx, a rate limit."""

    def __init__(self, problem: str, retry_after: float | None = None):
        super().__init__(problem)
        self.problem, self.retry_after = problem, retry_after


class ScmApi:
    """Requests to git hosts' APIs, one aiohttp session for all; one per daemon.

    `policy`: the hosts the daemon may contact at non-public addresses (the config's
    git_hosts); others only at public ones."""

    def __init__(self, policy: HostPolicy | None = None, *, attempts: int = 4,
                 max_retry_after: float = 60.0, timeout: float = 30.0, backoff: float = 0.5):
        self._policy = policy if policy is not None else HostPolicy(setting="git_hosts")
        self._attempts = max(1, attempts)
        self._max_retry_after = max_retry_after
        self._exponential = wait_exponential(multiplier=backoff, max=10.0)  # 0.5 s, 1 s ... 10 s
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self.requests_sent = 0

    async def __aenter__(self) -> "ScmApi":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, url: str, headers: dict[str, str], repo: Repository,
                      body: Any = None) -> ApiResponse:
        """One request (JSON `body`), retried on what is transient; other statuses returned."""
        data = None if body is None else json.dumps(body).encode()
        headers = {**headers, **({"Content-Type": "application/json"} if data else {})}
        retrying = AsyncRetrying(stop=stop_after_attempt(self._attempts), wait=self._backoff,
                                 retry=retry_if_exception_type(_Transient), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._send_once(method, url, headers, data, repo)
        except _Transient as exc:
            tries = "once" if self._attempts == 1 else f"{self._attempts} times"
            raise ScmError(f"{repo}: {exc.problem} (tried {tries}); try again later") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def pages(self, url: str, headers: dict[str, str], repo: Repository,
                    refused) -> list[Any]:
        """Every item of a paginated list, following `Link: rel="next"` within the API;
        `refused(response)` makes the error for a status other than 200."""
        items: list[Any] = []
        origin = URL(url).origin()
        for _ in range(MAX_PAGES):
            response = await self.request("GET", url, headers, repo)
            if response.status != 200:
                raise refused(response)
            page = response.json()
            if not isinstance(page, list):
                raise ScmError(f"{repo}: {_origin(url)} answered a list request with no list")
            items += page
            if not response.next_page or URL(response.next_page).origin() != origin:
                return items
            url = response.next_page
        raise ScmError(f"{repo}: {_origin(url)} listed more than {MAX_PAGES} pages")

    async def _send_once(self, method: str, url: str, headers: dict[str, str],
                         data: bytes | None, repo: Repository) -> ApiResponse:
        self.requests_sent += 1
        try:
            response = await self._follow(method, url, headers, data, repo)
        except AddressRefused as refused:
            raise ScmError(f"{repo}: the API at {_origin(url)} may not be contacted: {refused}; "
                           "list the host in the config's git_hosts to allow it") from None
        except aiohttp.ClientSSLError as exc:
            raise ScmError(f"{repo}: TLS with {_origin(url)} failed: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            raise _Transient(f"cannot reach the API at {_origin(url)}: {_reason(exc)}") from None
        except asyncio.TimeoutError:
            raise _Transient(f"the API at {_origin(url)} did not answer within "
                             f"{self._timeout.total:g}s") from None
        except aiohttp.ClientError as exc:
            raise _Transient(f"lost the connection to the API at {_origin(url)}: "
                             f"{exc.__class__.__name__}") from None
        wait = self._rate_limit_wait(response)
        if wait is not None:
            if wait > self._max_retry_after:
                raise ScmError(f"{repo}: {_origin(url)} is rate limiting us "
                               f"({response.status}) for {wait:.0f}s more; try again later")
            raise _Transient(f"{_origin(url)} is rate limiting us ({response.status})", wait)
        if response.status >= 500:
            raise _Transient(f"the API at {_origin(url)} failed ({response.status} "
                             f"{response.reason})")
        return response

    async def _follow(self, method: str, url: str, headers: dict[str, str],
                      data: bytes | None, repo: Repository) -> ApiResponse:
        """A request and its redirects (a renamed repository), each checked; the token is
        never sent to another origin, so a redirect there is refused."""
        for _ in range(MAX_REDIRECTS + 1):
            self._policy.check_url(url)
            async with self._client().request(method, url, headers=headers, data=data,
                                              allow_redirects=False) as raw:
                location = raw.headers.get("Location")
                if raw.status not in _REDIRECTS or not location:
                    body = await _read_body(raw, repo)
                    link = raw.links.get("next", {}).get("url")
                    return ApiResponse(raw.status, raw.reason or "",
                                       {k.lower(): v for k, v in raw.headers.items()}, body,
                                       str(raw.url.join(URL(str(link)))) if link else None)
                target = raw.url.join(URL(location))
            if target.origin() != URL(url).origin():
                raise ScmError(f"{repo}: {_origin(url)} redirected to {target.origin()}, "
                               "where the token is not sent")
            if raw.status == 303:
                method, data = "GET", None
            url = str(target)
        raise ScmError(f"{repo}: {_origin(url)} redirected more than {MAX_REDIRECTS} times")

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, so it binds to the loop that runs the daemon.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=20, resolver=self._policy.resolver())
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  headers={"User-Agent": _USER_AGENT})
        return self._session

    def _backoff(self, retry_state) -> float:
        exc = retry_state.outcome.exception()
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        return self._exponential(retry_state)

    def _rate_limit_wait(self, response: ApiResponse) -> float | None:
        """Seconds to wait before trying again, when the response is a rate limit: 429, or
        GitHub's 403 with Retry-After or no requests left (x-ratelimit-remaining: 0)."""
        headers = response.headers
        limited = response.status == 429 or (response.status == 403 and (
            "retry-after" in headers or headers.get("x-ratelimit-remaining") == "0"))
        if not limited:
            return None
        value = headers.get("retry-after", "").strip()
        if value.isascii() and value.isdigit():
            return float(value)
        if value:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp()
                           - time.time())
            except (TypeError, ValueError):
                pass
        reset = headers.get("x-ratelimit-reset", "")  # GitHub: epoch seconds
        if reset.isascii() and reset.isdigit():
            return max(0.0, int(reset) - time.time())
        return 1.0


async def _read_body(raw: aiohttp.ClientResponse, repo: Repository) -> bytes:
    """The body, or an error once it passes MAX_BODY_BYTES: a hostile server could send an
    endless one."""
    too_large = ScmError(f"{repo}: the API at {raw.url.origin()} sent a response larger than "
                         f"{MAX_BODY_BYTES // 1024} KiB, the most basewatch reads")
    return await read_bounded(raw, MAX_BODY_BYTES, too_large)


def _reason(exc: aiohttp.ClientConnectorError) -> str:
    # asyncio words it as "Connect call failed ('127.0.0.1', 1)"; the errno says it plainly.
    if exc.errno and exc.errno > 0:  # negative ones are getaddrinfo's, whose strerror is fine
        return os.strerror(exc.errno).lower()
    return exc.strerror or str(exc)


def _origin(url: str) -> str:
    return str(URL(url).origin())
