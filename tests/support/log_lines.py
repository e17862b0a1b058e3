"""The daemon's log as the tests read it: with stderr a pipe, `log_format: auto` writes JSON
lines, one object a line."""
from __future__ import annotations

import json


def json_lines(output: str) -> list[dict]:
    """Every line of `output`, parsed; a line that is not a JSON object fails the test."""
    parsed = []
    for line in output.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(value, dict), line
        parsed.append(value)
    return parsed
