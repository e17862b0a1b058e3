"""A quick run's multipart upload under hostile use: malformed bodies, parts out of order or
missing, a spec past its bound, bad secrets: each a clear 4xx, nothing queued, nothing left on
disk; and a secret sent with a run reaches neither the database nor any file of the daemon's."""
from __future__ import annotations

import io
import json
import tarfile

import aiohttp
import pytest

from basewatch.client import json_and_file
from basewatch.http.api import MAX_SPEC_BYTES
from tests.support.inprocess_daemon import TOKEN, running_daemon
from tests.support.waiting import wait_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TASK_FILE = "version: v1.1.0\nsteps:\n  - cmd: busybox echo {{.Secrets.token}}\n"


def empty_context() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz"):
        pass
    return buffer.getvalue()


def multipart(*parts: tuple[str, bytes]) -> tuple[bytes, dict]:
    boundary = "b0undary"
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n"
                    f"\r\n".encode() + data + b"\r\n" for name, data in parts)
    return body + f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"}


def spec(value: object) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("body, status, says", [
    ((b"not multipart at all", {"Content-Type": "multipart/form-data; boundary=x"}), 400,
     "not valid multipart/form-data"),
    (multipart(("context", empty_context())), 400, "first part must be `spec`"),
    (multipart(("spec", b"{not json"), ("context", empty_context())), 400, "not valid JSON"),
    (multipart(("spec", spec(["a list"])), ("context", empty_context())), 400, "JSON object"),
    (multipart(("spec", spec({"task_file": "#" * (MAX_SPEC_BYTES + 10)}))), 413,
     "larger than"),
    (multipart(("spec", spec({"task_file": TASK_FILE}))), 400,
     "second part must be `context`"),
    (multipart(("spec", spec({"task_file": TASK_FILE, "secrets": ["x"]})),
               ("context", empty_context())), 400, "secrets must be an object"),
    (multipart(("spec", spec({"task_file": TASK_FILE, "secrets": {"bad name!": "x"}})),
               ("context", empty_context())), 400, "a name is letters"),
    (multipart(("spec", spec({"task_file": TASK_FILE, "values_file": "a: ["})),
               ("context", empty_context())), 400, "not valid YAML"),
])
async def test_hostile_quick_run_uploads_are_refused(tmp_path, monkeypatch, body, status,
                                                     says):
    data, headers = body
    async with running_daemon(tmp_path, monkeypatch) as daemon:
        async with aiohttp.ClientSession() as session:
            response = await session.post(f"{daemon.url}/api/builds", data=io.BytesIO(data),
                                          headers={**AUTH, **headers})
            text = await response.text()
        assert response.status == status, text
        assert says in json.loads(text)["error"]
        assert await daemon.store.runs.list(top=10) == []
        uploads = tmp_path / "state" / "contexts"
        assert not uploads.exists() or not any(p.name.startswith("upload-")
                                               for p in uploads.iterdir())


async def test_a_quick_runs_secret_reaches_no_file_of_the_daemons(tmp_path, monkeypatch):
    secret = "hostile-test-secret-value"
    async with running_daemon(tmp_path, monkeypatch) as daemon:
        context = empty_context()
        body, headers = json_and_file(
            "spec", {"task_file": TASK_FILE, "file": "t.yaml",
                     "secrets": {"token": secret}, "values": {"v": "1"}},
            "context", io.BytesIO(context), len(context))
        async with aiohttp.ClientSession() as session:
            response = await session.post(f"{daemon.url}/api/builds", data=io.BytesIO(body.read()),
                                          headers={**AUTH, **headers})
            run = await response.json()
        assert response.status == 202, run
        assert run["type"] == "QuickRun" and secret not in json.dumps(run)

        async def ended():
            found = await daemon.store.runs.get(run["id"])
            return found.status.finished and found

        finished = await wait_for(ended, 60, "the run to end (no engine: it fails)")
        assert secret not in (finished.error or "")
        assert len(daemon.services.secrets) == 0, "let go when the run ended"
    for written in (tmp_path / "state").rglob("*"):
        if written.is_file():
            assert secret.encode() not in written.read_bytes(), written
