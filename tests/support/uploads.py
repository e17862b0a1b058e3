"""Posting a context to the daemon's API as `basewatch build` does, for tests that send what
the CLI never would."""
from __future__ import annotations

import json
import urllib.error
import urllib.request


def post_build(url: str, body: bytes, spec: dict, token: str,
               timeout: float = 60) -> tuple[int, dict]:
    """POST /api/builds with `body` as the context tarball and `spec` as the build; (status,
    JSON answer)."""
    request = urllib.request.Request(
        f"{url}/api/builds", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/gzip",
                 "X-Basewatch-Build": json.dumps(spec)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)
