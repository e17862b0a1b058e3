"""How the CLI talks to a running daemon: its REST API, found through BASEWATCH_URL and
BASEWATCH_TOKEN (or flags)."""
from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import BinaryIO, Iterator

from basewatch.errors import BasewatchError

DEFAULT_URL = "http://127.0.0.1:8080"


class DaemonError(BasewatchError):
    """The daemon could not be reached or refused the request."""


class DaemonClient:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30):
        self.url = daemon_url(url or os.environ.get("BASEWATCH_URL") or DEFAULT_URL)
        self.token = token or os.environ.get("BASEWATCH_TOKEN")
        self.timeout = timeout

    def get_json(self, path: str) -> dict | list:
        return self.request("GET", path)

    def request(self, method: str, path: str, body: dict | None = None,
                data: BinaryIO | None = None, headers: dict[str, str] | None = None
                ) -> dict | list | None:
        """A JSON request (or `data` streamed as the body); the JSON answer, None for 204."""
        all_headers = {**self._headers(), **(headers or {})}
        if body is not None:
            data = io.BytesIO(json.dumps(body).encode())
            all_headers["Content-Type"] = "application/json"
        with self._open(method, path, data, all_headers) as response:
            if response.status == 204:
                return None
            try:
                return json.load(response)
            except json.JSONDecodeError:
                raise DaemonError(f"{self.url}{path} did not answer with JSON: is "
                                  "BASEWATCH_URL a basewatch daemon?") from None

    def stream(self, path: str) -> Iterator[bytes]:
        """The body of a GET as it arrives (a run's log, followed)."""
        with self._open("GET", path, None, self._headers(), timeout=None) as response:
            while chunk := response.read1(65536):
                yield chunk

    def _open(self, method: str, path: str, data, headers: dict[str, str],
              timeout: float | None | object = ...):
        if data is not None and hasattr(data, "seek") and "Content-Length" not in headers:
            data.seek(0, io.SEEK_END)
            headers["Content-Length"] = str(data.tell())
            data.seek(0)
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers=headers)
        try:
            return urllib.request.urlopen(
                request, timeout=self.timeout if timeout is ... else timeout)
        except urllib.error.HTTPError as exc:
            raise DaemonError(self._explain(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DaemonError(f"cannot reach the daemon at {self.url}: {reason}; is "
                              "`basewatch serve` running? set BASEWATCH_URL") from None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _explain(self, exc: urllib.error.HTTPError) -> str:
        try:
            message = json.loads(exc.read()).get("error") or exc.reason
        except (ValueError, AttributeError):
            # basewatch answers every error in JSON: this is something else at that address.
            return (f"{exc.url} answered HTTP {exc.code} {exc.reason}, not as a basewatch "
                    f"daemon does: is BASEWATCH_URL ({self.url}) the daemon's address?")
        if exc.code == 401 and not self.token:
            return f"{message} (BASEWATCH_TOKEN is not set)"
        return f"{message} (HTTP {exc.code})"


def daemon_url(text: str) -> str:
    """BASEWATCH_URL as written: `127.0.0.1:8080` is taken as http://127.0.0.1:8080."""
    text = text.strip()
    if "://" not in text:
        text = f"http://{text}"
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DaemonError(f"{text!r} is not the daemon's URL: write it as http://HOST:PORT "
                          "(e.g. BASEWATCH_URL=http://127.0.0.1:8080)")
    return text.rstrip("/")


class _Joined(io.RawIOBase):
    """Several readable files read one after the other, as one request body, streamed."""

    def __init__(self, parts: list[BinaryIO]):
        self.parts = parts

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self.parts:
            read = self.parts[0].readinto(buffer) if hasattr(self.parts[0], "readinto") \
                else _copy_into(self.parts[0], buffer)
            if read:
                return read
            self.parts.pop(0)
        return 0


def _copy_into(source: BinaryIO, buffer) -> int:
    data = source.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)


def json_and_file(name: str, value: dict, file_name: str, file: BinaryIO, size: int
                  ) -> tuple[BinaryIO, dict[str, str]]:
    """A multipart/form-data body of a JSON part and a file part (streamed), and its headers:
    what a header cannot carry (large, or secret) goes in the first part."""
    boundary = os.urandom(16).hex()
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n"
            "Content-Type: application/json\r\n\r\n").encode() + json.dumps(value).encode() + \
        (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{file_name}\"; "
         f"filename=\"{file_name}.tar.gz\"\r\nContent-Type: application/gzip\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    body = io.BufferedReader(_Joined([io.BytesIO(head), file, io.BytesIO(tail)]))
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}",
                  "Content-Length": str(len(head) + size + len(tail))}
