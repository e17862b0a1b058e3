"""What the GitHub, GitLab and Gitea REST API stand-ins share: a record of every request, canned
failures for the next requests, and repositories with their hooks and commit statuses."""
from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.loopback import LoopbackServer


@dataclass
class Received:
    method: str
    path: str  # as sent, still percent-encoded
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or None


@dataclass
class RepositoryState:
    hooks: dict[int, dict] = field(default_factory=dict)
    statuses: list[dict] = field(default_factory=list)


class ScmStandIn(LoopbackServer):
    """Subclasses add the provider's routes under `prefix` (`/api/v4`...)."""

    prefix = ""

    def __init__(self, tokens: dict[str, set[str]] | None = None,
                 repositories: tuple[str, ...] = ("org/repo",)):
        super().__init__()
        self.tokens = dict(tokens if tokens is not None else {"good-token": {"all"}})
        self.repositories = {path: RepositoryState() for path in repositories}
        self.received: list[Received] = []
        self._failures: list[tuple[int, dict[str, str], Any]] = []
        self._hang = 0
        self.released = asyncio.Event()  # set it to let hanging requests go
        self._ids = itertools.count(1001)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def fail_next(self, status: int, times: int = 1, headers: dict[str, str] | None = None,
                  body: Any = None) -> None:
        """Answer the next `times` requests with `status` instead of serving them."""
        self._failures += [(status, dict(headers or {}), body)] * times

    @property
    def failures_left(self) -> int:
        """Canned failures not yet served."""
        return len(self._failures)

    def hang_next(self, times: int = 1) -> None:
        """Answer nothing to the next `times` requests until `released` is set."""
        self._hang += times

    def requests(self, method: str | None = None) -> list[Received]:
        return [r for r in self.received if method is None or r.method == method]

    def new_id(self) -> int:
        return next(self._ids)

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        self.add_routes(app.router)
        return app

    def add_routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    @web.middleware
    async def _record(self, request: web.Request, handler):
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = "<not json>"
        self.received.append(Received(request.method, request.raw_path.partition("?")[0],
                                      dict(request.query), dict(request.headers), body))
        if self._hang:
            self._hang -= 1
            await self.released.wait()
            return web.json_response({"message": "too late"}, status=504)
        if self._failures:
            status, headers, failure_body = self._failures.pop(0)
            return web.json_response({"message": "canned failure"} if failure_body is None
                                     else failure_body,
                                     status=status, headers=headers)
        return await handler(request)

    def scopes(self, token: str | None) -> set[str] | None:
        return self.tokens.get(token) if token else None

    def repository(self, path: str) -> RepositoryState | None:
        return self.repositories.get(path)
