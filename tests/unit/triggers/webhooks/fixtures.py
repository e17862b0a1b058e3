"""The providers' published example bodies (tests/fixtures/webhooks, see its README) and
helpers to build bodies the fixtures lack."""
from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "webhooks"


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def payload(name: str) -> dict:
    return json.loads(body(name))


def encoded(value: dict) -> bytes:
    return json.dumps(value).encode()
