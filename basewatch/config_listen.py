"""The daemon's listen address (`listen: host:port`): its one rule, and the address read from a
config file's text alone, before pydantic and the rest are imported, so `basewatch serve` can
answer /healthz on it at once."""
from __future__ import annotations

import re

DEFAULT_LISTEN = "127.0.0.1:8080"

# A top-level `listen:` written on one line, its value plain or quoted (no escapes).
_LISTEN_LINE = re.compile(
    r"""^listen[ \t]*:[ \t]+(?:"([^"\\\n]*)"|'([^'\n]*)'|([^\s#"'][^\s#]*))[ \t]*(?:\#.*)?$""",
    re.MULTILINE)


def split_listen(value: str) -> tuple[str, int] | None:
    """host:port as the host (IPv6 brackets dropped) and the port; None when it is not that."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def listen_in_text(text: str) -> str | None:
    """The listen address a config file's text gives, when the text says it plainly; None when
    it might say it some other way (a flow mapping, a quoted key...), or says it wrongly: the
    config's full reading decides then, and says what is wrong."""
    lines = _LISTEN_LINE.findall(text)
    if not lines:
        return None if re.search(r"\blisten\b", text) else DEFAULT_LISTEN
    if len(lines) > 1:
        return None  # given twice: refused by the full reading
    value = "".join(lines[0])
    return value if split_listen(value) is not None else None
