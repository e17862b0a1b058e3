"""What a run gives a task file's templates: values (a values file, overridden by `--set`),
secrets (`--set-secret`, kept apart), and the masking of those secrets in log lines."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import yaml

from basewatch.errors import TaskFileError

MASK = "*****"


def parse_assignments(pairs: Iterable[str], flag: str = "--set") -> dict[str, str]:
    """`K=V` pairs, as `--set` and `--set-secret` take them; a later K wins."""
    values = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            shown = pair.partition("=")[0] if flag == "--set-secret" else pair
            raise TaskFileError(f"{flag} {shown!r}: expected NAME=VALUE")
        values[key.strip()] = value
    return values


def load_values_file(text: str, name: str = "values file") -> dict[str, object]:
    """A values file: a YAML mapping of names to values (nested mappings allowed)."""
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise TaskFileError(f"{name}{where}: not valid YAML: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise TaskFileError(f"{name}: must be a mapping of names to values")
    return values


def merge_values(from_file: Mapping[str, object], from_flags: Mapping[str, str]
                 ) -> dict[str, object]:
    """The values a template sees: the file's, each `--set` replacing the file's value."""
    return {**from_file, **from_flags}


def secret_texts(secrets: Iterable[str]) -> tuple[str, ...]:
    """The texts to mask for these secret values: each whole, and each line of a multi-line
    one (a log is written line by line); longest first, so no shorter one masks part of it."""
    texts = set()
    for secret in secrets:
        secret = secret.strip("\r\n")
        if not secret:
            continue
        texts.add(secret)
        if "\n" in secret:
            texts.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= 8)
    return tuple(sorted(texts, key=lambda text: (-len(text), text)))


def mask(line: str, secrets: Iterable[str]) -> str:
    """`line` with every secret replaced by *****. `secrets`: `secret_texts`' (or the plan's
    `Workspace.secrets`)."""
    for secret in secrets:
        if secret and secret in line:
            line = line.replace(secret, MASK)
    return line
