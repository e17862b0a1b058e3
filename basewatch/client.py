"""How the CLI talks to a running daemon: its REST API, found through BASEWATCH_URL and
BASEWATCH_TOKEN (or flags)."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from basewatch.errors import BasewatchError

DEFAULT_URL = "http://127.0.0.1:8080"


class DaemonError(BasewatchError):
    """The daemon could not be reached or refused the request."""


class DaemonClient:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30):
        self.url = (url or os.environ.get("BASEWATCH_URL") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("BASEWATCH_TOKEN")
        self.timeout = timeout

    def get_json(self, path: str) -> dict:
        request = urllib.request.Request(self.url + path, headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise DaemonError(self._explain(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DaemonError(f"cannot reach the daemon at {self.url}: {reason}; is "
                              "`basewatch serve` running? set BASEWATCH_URL") from None
        except json.JSONDecodeError:
            raise DaemonError(f"{self.url}{path} did not answer with JSON: is BASEWATCH_URL "
                              "a basewatch daemon?") from None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _explain(self, exc: urllib.error.HTTPError) -> str:
        try:
            message = json.loads(exc.read()).get("error") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        if exc.code == 401 and not self.token:
            return f"{message} (BASEWATCH_TOKEN is not set)"
        return f"{message} (HTTP {exc.code})"
