"""What the API answers with each domain error: looked up by type in one place (errors.py), so
a subclass answers as its parent does."""
from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from basewatch import errors
from basewatch.context_spec import ContextError
from basewatch.http.api import api_auth


@pytest.mark.parametrize("error, status", [
    (errors.BasewatchError, 400), (errors.InvalidRequestError, 400), (ContextError, 400),
    (errors.DockerfileError, 400), (errors.NotFoundError, 404), (errors.ConflictError, 409),
    (errors.GraphError, 409), (errors.TooManyRunsError, 429), (errors.RegistryError, 502),
    (errors.RegistryAddressRefused, 400), (errors.StoreBusyError, 503),
])
def test_each_domain_error_has_its_status(error, status):
    assert error("x").http_status == status


class NoSuchTag(errors.NotFoundError):
    """A kind of not-found that the HTTP edge has never heard of by name."""


async def test_the_api_answers_a_subclass_as_its_parent():
    async def handler(request):
        raise NoSuchTag("no tag v9 in app")

    app = web.Application(middlewares=[api_auth("t0ken")])
    app.router.add_get("/api/thing", handler)
    async with TestClient(TestServer(app)) as client:
        answer = await client.get("/api/thing", headers={"Authorization": "Bearer t0ken"})
        assert (answer.status, await answer.json()) == (404, {"error": "no tag v9 in app"})
