"""Build contexts as gzipped tarballs, and a loopback server that hands them out by name."""
from __future__ import annotations

import io
import tarfile

from aiohttp import web

from tests.support.loopback import LoopbackServer


def tarball(files: dict[str, str | bytes]) -> bytes:
    """A .tar.gz holding `files` (path -> text or bytes)."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()


class TarballServer(LoopbackServer):
    """Serves `tarballs[name]` at /name; change the dict to serve a new version."""

    def __init__(self, tarballs: dict[str, bytes]):
        super().__init__()
        self.tarballs = tarballs

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{name}", self._serve)
        return app

    async def _serve(self, request: web.Request) -> web.Response:
        body = self.tarballs.get(request.match_info["name"])
        return web.Response(body=body) if body is not None else web.Response(status=404)
