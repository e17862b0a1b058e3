"""Context uploads on an in-process server: at most UPLOADS_AT_ONCE are spooled and extracted
at once, so a crowd of uploads cannot take a crowd of max_context_bytes of disk."""
from __future__ import annotations

import asyncio
import io
import json
import tarfile

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from basewatch.http import uploads
from tests.support.waiting import wait_for


def context() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("Dockerfile")
        data = b"FROM scratch\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def test_uploads_beyond_the_slots_wait_before_they_touch_the_disk(tmp_path):
    received: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await uploads.receive_upload(request, tmp_path / "contexts" / name, 1 << 20)
        received.append(name)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{name}", handler)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        slots = uploads.upload_slots()
        for _ in range(uploads.UPLOADS_AT_ONCE):
            await slots.acquire()  # as many uploads in progress as there are slots
        late = asyncio.ensure_future(client.post("/late", data=io.BytesIO(context())))

        async def waiting():
            return bool(slots._waiters) or late.done()

        await wait_for(waiting, 10, "the upload to wait for a slot", interval=0.01)
        assert not late.done() and received == []
        assert not (tmp_path / "contexts").exists(), "nothing spooled while it waits"
        slots.release()
        response = await asyncio.wait_for(late, 10)
        assert response.status == 204 and received == ["late"]
        assert (tmp_path / "contexts" / "late" / "Dockerfile").exists()
    finally:
        await client.close()


async def test_a_quick_runs_spec_and_context_come_as_two_parts(tmp_path):
    # The spec holds a task file and secrets: past what a header takes, and not for headers.
    from basewatch.client import json_and_file

    received = {}

    async def handler(request: web.Request) -> web.Response:
        reader = await request.multipart()
        spec = await reader.next()
        received["spec"] = await uploads.read_part(spec, 1 << 20)
        part = await reader.next()
        await uploads.receive_upload(request, tmp_path / "contexts" / "run", 1 << 20, part)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/", handler)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        spec = {"task_file": "# " + "x" * 50_000 + "\nsteps: []\n", "secrets": {"s": "v"}}
        archive = context()
        body, headers = json_and_file("spec", spec, "context", io.BytesIO(archive),
                                      len(archive))
        response = await client.post("/", data=body.read(), headers=headers)
        assert response.status == 204
        assert json.loads(received["spec"]) == spec
        assert (tmp_path / "contexts" / "run" / "Dockerfile").read_text() == "FROM scratch\n"
    finally:
        await client.close()
