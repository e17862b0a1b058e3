"""What every git server's webhook body needs read the same way: JSON or a form's `payload=`
field, fields reached by path with one-line errors naming what is missing, and the commit,
branch and URL values checked before they reach git. Pure: no HTTP."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from basewatch.errors import BasewatchError

ZERO_SHA = re.compile(r"0+")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1, or SHA-256 repositories
MAX_URL_CHARS = 2048
MAX_BRANCH_CHARS = 255
MAX_DELIVERY_CHARS = 200


class WebhookError(BasewatchError):
    """A webhook delivery basewatch cannot use."""


class MalformedPayloadError(WebhookError):
    """The body is not JSON, or lacks a field the event must have, or has one of a wrong type."""


class UnknownEventError(WebhookError):
    """An event basewatch does not build on (issues, releases...): not malformed, unwanted."""

    def __init__(self, provider: str, event: str):
        shown = event[:60] + ("..." if len(event) > 60 else "")
        super().__init__(f"{provider} event {shown!r} is not one basewatch builds on")
        self.event = event


def lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names in lower case: HTTP's are case-blind, a test's dict is not."""
    return {name.lower(): value for name, value in headers.items()}


def load(headers: Mapping[str, str], body: bytes) -> dict:
    """The JSON object a delivery carries, as JSON or as a form's `payload` field (GitHub and
    Gitea can send either)."""
    content_type = lowered(headers).get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20,
                            errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise MalformedPayloadError("the form body is not a URL-encoded form") from None
        payloads = form.get("payload", [])
        if len(payloads) != 1:
            raise MalformedPayloadError("the form body must have one payload field")
        text: str | bytes = payloads[0]
    else:
        text = body
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, an integer too long, too deep
        raise MalformedPayloadError("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise MalformedPayloadError("the body must be a JSON object")
    return payload


_MISSING = object()


def field(payload: dict, path: str, default: Any = _MISSING) -> Any:
    """The value at a dotted path; a missing or null one is an error unless `default` is given."""
    value: Any = payload
    walked = []
    for key in path.split("."):
        if not isinstance(value, dict):
            raise MalformedPayloadError(
                f"{'.'.join(walked)}: expected an object, got {_kind(value)}")
        walked.append(key)
        value = value.get(key)
        if value is None:
            if default is not _MISSING:
                return default
            raise MalformedPayloadError(f"{path}: missing")
    return value


def string(payload: dict, path: str, default: Any = _MISSING) -> Any:
    value = field(payload, path, default)
    if value is default and default is not _MISSING:
        return value
    if not isinstance(value, str):
        raise MalformedPayloadError(f"{path}: expected a string, got {_kind(value)}")
    return value


def obj(payload: dict, path: str) -> dict:
    value = field(payload, path)
    if not isinstance(value, dict):
        raise MalformedPayloadError(f"{path}: expected an object, got {_kind(value)}")
    return value


def number(payload: dict, path: str) -> int:
    value = field(payload, path)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise MalformedPayloadError(f"{path}: expected a positive whole number")
    return value


def sha(payload: dict, path: str) -> str:
    value = string(payload, path)
    if not _SHA.fullmatch(value):
        raise MalformedPayloadError(f"{path}: expected a full commit SHA (40 or 64 hex digits)")
    return value


def is_zero(commit: str) -> bool:
    """The all-zeros SHA a push names for a ref that was deleted (or created, as `before`)."""
    return ZERO_SHA.fullmatch(commit) is not None


def urls(payload: dict, *paths: str) -> tuple[str, ...]:
    """Every repository URL the payload names at `paths` (absent ones skipped), once each."""
    found: list[str] = []
    for path in paths:
        value = string(payload, path, None)
        if value is None or value == "":
            continue
        if len(value) > MAX_URL_CHARS or not value.isprintable() or " " in value:
            raise MalformedPayloadError(f"{path}: not a repository URL")
        if value not in found:
            found.append(value)
    if not found:
        raise MalformedPayloadError(f"{paths[0]}: missing (no repository URL in the event)")
    return tuple(found)


# git-check-ref-format's rules, for a name that will reach git's command line.
_BAD_BRANCH = re.compile(r"^[-/.]|[/.]$|\.\.|//|@\{|\.lock$|/\.|\.lock/|[\x00-\x20\x7f~^:?*\[\\]")


def branch(name: str, path: str) -> str:
    if not name or len(name) > MAX_BRANCH_CHARS or _BAD_BRANCH.search(name) or name == "@":
        raise MalformedPayloadError(f"{path}: not a valid branch name")
    return name


def branch_of_ref(ref: str, path: str) -> str | None:
    """The branch a full ref names (`refs/heads/main` → `main`); None for any other ref."""
    if ref.startswith("refs/heads/"):
        return branch(ref.removeprefix("refs/heads/"), path)
    return None


def delivery(value: str | None) -> str | None:
    """A delivery id as sent, kept only while it is a short printable token."""
    if value and len(value) <= MAX_DELIVERY_CHARS and value.isprintable():
        return value
    return None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")
