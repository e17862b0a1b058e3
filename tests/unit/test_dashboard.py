"""The dashboard's HTTP side on an in-process daemon: sign-in and its cookie, what is refused
without it, the event stream, and a shutdown that open streams do not hold up."""
from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from basewatch.http import dashboard_auth
from basewatch.http.dashboard import CSP
from tests.support.inprocess_daemon import TOKEN, running_daemon
from tests.support.waiting import wait_for

DATA = ("/ui/state", "/ui/graph.svg", "/ui/events", "/ui/runs/nope/log")


@pytest.fixture(autouse=True)
def quick_refusals(monkeypatch):
    monkeypatch.setattr(dashboard_auth, "WRONG_TOKEN_DELAY", 0.3)


def client() -> aiohttp.ClientSession:
    # The daemon is at 127.0.0.1: aiohttp's jar keeps cookies of IP addresses only when unsafe.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(session: aiohttp.ClientSession, url: str, token: str = TOKEN,
                  **headers) -> aiohttp.ClientResponse:
    return await session.post(f"{url}/ui/sign-in", data={"token": token},
                              allow_redirects=False, headers={"Origin": url, **headers})


async def test_nothing_is_readable_without_signing_in(tmp_path, monkeypatch):
    async with running_daemon(tmp_path, monkeypatch) as daemon, client() as s:
        async with s.get(f"{daemon.url}/") as page:
            text = await page.text()
            assert page.status == 200 and '<form method="post" action="/ui/sign-in">' in text
            assert page.headers["Content-Security-Policy"] == CSP
            assert "script" not in text, "the sign-in page needs no script"
        for path in DATA:
            async with s.get(daemon.url + path) as refused:
                assert refused.status == 401, path
                assert (await refused.json())["error"].startswith("sign in first")
        async with s.get(f"{daemon.url}/ui/static/app.js") as asset:
            assert asset.status == 200 and asset.content_type == "text/javascript"
        async with s.get(f"{daemon.url}/ui/static/..%2Fdashboard.py") as outside:
            assert outside.status == 404


async def test_sign_in_sets_a_strict_http_only_session_cookie(tmp_path, monkeypatch):
    async with running_daemon(tmp_path, monkeypatch) as daemon, client() as s:
        async with await sign_in(s, daemon.url) as signed:
            assert signed.status == 303 and signed.headers["Location"] == "/"
            cookie = signed.headers["Set-Cookie"]
        assert cookie.startswith("basewatch_session=")
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"):
            assert attribute in cookie, attribute
        assert TOKEN not in cookie, "the cookie is a session id, not the token"
        async with s.get(f"{daemon.url}/") as page:
            assert '<script src="/ui/static/app.js" defer></script>' in await page.text()
        async with s.get(f"{daemon.url}/ui/state") as state:
            answer = await state.json()
            assert state.status == 200 and answer["tasks"] == [] and answer["runs"] == []
            assert "nothing is watched yet" in answer["graph_svg"]
        async with s.get(f"{daemon.url}/ui/graph.svg") as graph:
            assert graph.content_type == "image/svg+xml"
            assert "nothing is watched yet" in await graph.text()
        # The cookie opens the dashboard's read-only endpoints, never the API.
        async with s.get(f"{daemon.url}/api/tasks") as api:
            assert api.status == 401


async def test_a_wrong_token_is_refused_clearly_and_slowly(tmp_path, monkeypatch):
    async with running_daemon(tmp_path, monkeypatch) as daemon, client() as s:
        started = time.monotonic()
        async with await sign_in(s, daemon.url, "guess") as refused:
            assert refused.status == 401 and "Set-Cookie" not in refused.headers
            assert "Wrong token: that is not the daemon's API token." in await refused.text()
        assert time.monotonic() - started >= 0.3
        # Guesses at once beyond the few being checked are turned away, not queued.
        answers = await asyncio.gather(*(sign_in(s, daemon.url, f"guess{n}") for n in range(8)))
        statuses = sorted(a.status for a in answers)
        for answer in answers:
            answer.release()
        assert statuses.count(401) == dashboard_auth.MAX_SIGN_INS_AT_ONCE
        assert statuses.count(429) == 8 - dashboard_auth.MAX_SIGN_INS_AT_ONCE
        async with s.get(f"{daemon.url}/ui/state") as state:
            assert state.status == 401


async def test_a_sign_in_from_another_origin_is_refused(tmp_path, monkeypatch):
    async with running_daemon(tmp_path, monkeypatch) as daemon, client() as s:
        async with await sign_in(s, daemon.url, Origin="http://evil.example") as refused:
            assert refused.status == 403 and "Set-Cookie" not in refused.headers
        async with await sign_in(s, daemon.url, Origin="null") as refused:
            assert refused.status == 403
        async with await sign_in(s, daemon.url, **{"Sec-Fetch-Site": "cross-site"}) as refused:
            assert refused.status == 403
        async with await sign_in(s, daemon.url, Origin="null",
                                 **{"Sec-Fetch-Site": "same-origin"}) as allowed:
            assert allowed.status == 303, "a same-origin form whose origin the browser hid"


async def test_sign_out_ends_the_session_on_the_daemon_too(tmp_path, monkeypatch):
    async with running_daemon(tmp_path, monkeypatch) as daemon, client() as s:
        async with await sign_in(s, daemon.url) as signed:
            session = signed.cookies["basewatch_session"].value
        async with s.post(f"{daemon.url}/ui/sign-out", allow_redirects=False,
                          headers={"Origin": daemon.url}) as out:
            assert out.status == 303
        async with s.get(f"{daemon.url}/ui/state",
                         headers={"Cookie": f"basewatch_session={session}"}) as replayed:
            assert replayed.status == 401, "the old cookie is dead, not only forgotten"


async def test_events_arrive_and_open_streams_do_not_hold_up_shutdown(tmp_path, monkeypatch):
    async with running_daemon(tmp_path, monkeypatch) as daemon:
        s = client()
        try:
            (await sign_in(s, daemon.url)).release()
            events = await s.get(f"{daemon.url}/ui/events")
            assert events.content_type == "text/event-stream"
            assert await events.content.readuntil(b"\n\n") == \
                b"retry: 2000\nevent: hello\ndata: {}\n\n"
            daemon.events.run_queued("abc1")
            assert await events.content.readuntil(b"\n\n") == \
                b'data: {"kind": "run", "id": "abc1", "status": "Queued"}\n\n'
            log = await s.get(f"{daemon.url}/ui/runs/nope/log")
            assert log.status == 404
            started = time.monotonic()
            await daemon.stop()
            assert time.monotonic() - started < 5, "the event stream held up the shutdown"
            assert await events.content.read() == b""
            events.release()
        finally:
            await s.close()


async def test_sessions_expire_are_bounded_and_need_a_configured_token():
    now = [0.0]
    sessions = dashboard_auth.Sessions("t", clock=lambda: now[0], lifetime=10, max_sessions=2,
                                       wrong_token_delay=0)
    first = await sessions.sign_in("t")
    now[0] = 5
    second, third = await sessions.sign_in("t"), await sessions.sign_in("t")
    assert not sessions.valid(first), "the oldest goes past max_sessions"
    assert sessions.valid(second) and sessions.valid(third)
    now[0] = 15
    assert not sessions.valid(second), "expired: a session is not extended by use"
    assert not sessions.valid(None) and not sessions.valid("made-up")
    assert await dashboard_auth.Sessions(None, wrong_token_delay=0).sign_in("") is None


async def test_hostile_sign_in_forms_get_one_clear_answer(tmp_path, monkeypatch):
    async with running_daemon(tmp_path, monkeypatch) as daemon, client() as s:
        url, origin = f"{daemon.url}/ui/sign-in", {"Origin": daemon.url}
        async with s.post(url, data={"token": "x" * 10000}, headers=origin) as large:
            assert large.status == 413 and "too large" in await large.text()
        async with s.post(url, data={"other": "1"}, headers=origin) as empty:
            assert empty.status == 400 and "Enter the API token" in await empty.text()
        async with s.post(url, data=b"\xff\xfe", headers={
                **origin, "Content-Type": "application/x-www-form-urlencoded"}) as garbage:
            assert garbage.status in (400, 401) and "Traceback" not in await garbage.text()
        async with s.post(url, data=b"token=%FF%FE%00", headers={
                **origin, "Content-Type": "application/x-www-form-urlencoded"}) as odd:
            assert odd.status in (400, 401) and "Traceback" not in await odd.text()


async def test_open_streams_are_bounded(tmp_path, monkeypatch):
    from basewatch.http import dashboard
    monkeypatch.setattr(dashboard, "MAX_STREAMS", 1)
    async with running_daemon(tmp_path, monkeypatch) as daemon, client() as s:
        (await sign_in(s, daemon.url)).release()
        async with s.get(f"{daemon.url}/ui/events") as first:
            await first.content.readuntil(b"\n\n")
            async with s.get(f"{daemon.url}/ui/events") as second:
                assert second.status == 503 and second.headers["Retry-After"] == "5"
                assert "streams are open already" in (await second.json())["error"]

        async def slot_free():
            # The first one closed: its slot is free again within a second, with no write.
            async with s.get(f"{daemon.url}/ui/events") as third:
                return third.status == 200

        await wait_for(slot_free, 5, "the closed stream's slot")


async def test_a_stream_ends_when_its_session_does(tmp_path, monkeypatch):
    async with running_daemon(tmp_path, monkeypatch) as daemon, client() as s:
        (await sign_in(s, daemon.url)).release()
        async with s.get(f"{daemon.url}/ui/events") as events:
            await events.content.readuntil(b"\n\n")
            (await s.post(f"{daemon.url}/ui/sign-out", headers={"Origin": daemon.url},
                          allow_redirects=False)).release()
            assert await asyncio.wait_for(events.content.read(), 5) == b""
