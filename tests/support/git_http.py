"""Git's smart HTTP protocol, served by aiohttp in the test's event loop through `git http-backend`.

    async with GitHttpServer(root) as server:      # root holds bare repositories, e.g. app.git
        url = server.url("app.git")                # http://127.0.0.1:PORT/app.git

GitHttpServer(root, basic_auth=("user", "secret")) serves only requests that carry those
credentials (401 with a Basic challenge otherwise), as a private repository does.

Each request runs `git http-backend` as a CGI program: the request becomes its environment and
stdin, its output (CGI headers, a blank line, the body) becomes the response.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import encode_basic_auth, web

from tests.support.loopback import LoopbackServer


class GitHttpServer(LoopbackServer):
    def __init__(self, root: Path, basic_auth: tuple[str, str] | None = None):
        super().__init__()
        self.root = root
        self.basic_auth = basic_auth
        self.requests: list[str] = []  # "METHOD /path?query", in order
        self.authorized = 0  # requests that carried the right credentials

    def url(self, repository: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repository}"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path_qs}")
        if self.basic_auth is not None:
            expected = encode_basic_auth(*self.basic_auth)
            if request.headers.get("Authorization") != expected:
                return web.Response(status=401, headers={
                    "WWW-Authenticate": 'Basic realm="private"'})
            self.authorized += 1
        body = await request.read()  # aiohttp has already undone any Content-Encoding: gzip
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": request.remote or "127.0.0.1",
        }
        if "Git-Protocol" in request.headers:  # protocol v2 is negotiated through this header
            env["HTTP_GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        process = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        output, errors = await process.communicate(body)
        if process.returncode != 0 and not output:
            return web.Response(status=500, text=errors.decode(errors="replace"))
        return _cgi_response(output)


def _cgi_response(output: bytes) -> web.Response:
    """Turn CGI output (headers, blank line, body) into a response; `Status:` sets the status."""
    crlf, lf = output.find(b"\r\n\r\n"), output.find(b"\n\n")
    if crlf != -1 and (lf == -1 or crlf < lf):
        head, body = output[:crlf], output[crlf + 4:]
    elif lf != -1:
        head, body = output[:lf], output[lf + 2:]
    else:
        head, body = output, b""
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name.lower() not in ("content-length", "transfer-encoding"):
            headers[name] = value  # aiohttp sets the framing headers itself
    return web.Response(status=status, headers=headers, body=body)
