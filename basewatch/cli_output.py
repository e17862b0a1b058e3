"""How the CLI prints what the daemon answers, as az does: `-o json|table|tsv|none` and a
JMESPath `--query` applied first."""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from basewatch.errors import BasewatchError

FORMATS = ("json", "table", "tsv", "none")


class OutputError(BasewatchError):
    """An output option the CLI cannot apply (a --query that is not JMESPath)."""


def add_output_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    """`default` None: the command's own format option says until -o is given."""
    parser.add_argument(
        "-o", "--output", choices=FORMATS, default=default,
        help="json, table (for people), tsv (for scripts: tab-separated values, one line per "
             f"object) or none (default: {default or 'as --format says'}); e.g. -o tsv")
    parser.add_argument(
        "--query", metavar="JMESPATH",
        help="a JMESPath query applied before output, as az's: e.g. "
             "--query \"[?status=='Failed'].id\"")


def compile_query(args: argparse.Namespace) -> None:
    """--query compiled before anything is sent: a bad one is one line, and changes nothing."""
    text = getattr(args, "query", None)
    if not isinstance(text, str):
        return
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        args.query = jmespath.compile(text)
    except JMESPathError as exc:
        raise OutputError(f"--query {text!r} is not valid JMESPath: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0].removeprefix("Invalid jmespath expression: ").rstrip(": ")


def emit(args: argparse.Namespace, data: Any,
         table: Callable[[Any], None] | None = None) -> None:
    """Print `data` as `args.output` asks; `table` is the command's own view for people,
    used when no --query reshaped the data."""
    query = getattr(args, "query", None)
    if query is not None:
        from jmespath.exceptions import JMESPathError

        try:
            data = query.search(data)
        except JMESPathError as exc:  # a function given the wrong types, found only now
            raise OutputError(f"--query: {_reason(exc)}") from None
    output = args.output
    if output == "none":
        return
    if output == "json":
        print(json.dumps(data, indent=2))
    elif output == "tsv":
        for line in tsv_lines(data):
            print(line)
    elif table is not None and query is None:
        table(data)
    else:
        print_table(*generic_table(data))


def tsv_lines(data: Any) -> list[str]:
    """az's tsv: one line per object of a list (its scalar values, tab-separated, in key
    order), nested objects and lists left out; a scalar alone on its line."""
    items = data if isinstance(data, list) else [data]
    lines = []
    for item in items:
        if isinstance(item, dict):
            lines.append("\t".join(_scalar(v) for v in item.values()
                                   if not isinstance(v, (dict, list))))
        elif isinstance(item, list):
            lines.append("\t".join(_scalar(v) for v in item if not isinstance(v, (dict, list))))
        elif item is not None:
            lines.append(_scalar(item))
    return lines


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def generic_table(data: Any) -> tuple[tuple[str, ...], list[tuple]]:
    """A table of whatever a query left: the scalar keys of its objects as columns."""
    items = data if isinstance(data, list) else [data]
    if items and all(isinstance(item, dict) for item in items):
        columns: list[str] = []
        for item in items:
            columns += [k for k, v in item.items()
                        if k not in columns and not isinstance(v, (dict, list))]
        return (tuple(c.upper() for c in columns),
                [tuple(_scalar(item.get(c)) for c in columns) for item in items])
    return ("RESULT",), [(_scalar(item) if not isinstance(item, (dict, list))
                          else json.dumps(item),) for item in items if item is not None]


def print_table(columns: tuple[str, ...], rows: list[tuple]) -> None:
    widths = [max([len(c)] + [len(str(row[i])) for row in rows]) for i, c in enumerate(columns)]
    for line in (columns, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
