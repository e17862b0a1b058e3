"""The daemon's own log: JSON lines for machines, the familiar text line for people.

Every module logs through the standard library (`logging.getLogger(__name__)`), and so do the
libraries; structlog's ProcessorFormatter renders those records, adding what the code around
them bound with `structlog.contextvars.bound_contextvars` (`run_id`, `task` in a run; `base`,
`platform`, `digest` in a digest check and its fan-out), which asyncio tasks and threads started
there inherit. Every line passes through `redaction.redact` last, in both formats.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import IO

import structlog
from structlog.typing import EventDict, WrappedLogger

from basewatch.redaction import KNOWN, redact, secret_environment

# Bound context shown first, in this order, in both formats.
CONTEXT_KEYS = ("run_id", "task", "base", "platform", "digest")


def wants_json(log_format: str, stream: IO[str]) -> bool:
    """json, text, or auto: JSON lines unless a person is watching (a terminal)."""
    if log_format == "auto":
        isatty = getattr(stream, "isatty", None)
        return not (isatty is not None and isatty())
    return log_format == "json"


def redact_rendered(logger: WrappedLogger, name: str, line: str) -> str:
    """Mask secrets in the finished line, whatever field, traceback or library put them
    there (KNOWN holds each secret as a JSON line escapes it too)."""
    return redact(line)


def _ordered(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """timestamp, level, logger, event, the bound context, then the rest."""
    head = {key: event.pop(key) for key in ("timestamp", "level", "logger", "event")
            if key in event}
    context = {key: event.pop(key) for key in CONTEXT_KEYS if key in event}
    return {**head, **context, **event}


class TextRenderer:
    """The line people have always read, `2026-01-02 03:04:05,678 INFO    basewatch.x: message`,
    with the bound context after it as key=value, and a traceback below."""

    _time = logging.Formatter()

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> str:
        record: logging.LogRecord | None = event.pop("_record", None)
        event.pop("_from_structlog", None)
        when = self._time.formatTime(record) if record is not None else ""
        level = record.levelname if record is not None else str(event.pop("level", "")).upper()
        source = record.name if record is not None else event.get("logger", "")
        line = f"{when} {level:<7} {source}: {event.pop('event', '')}"
        exception = event.pop("exception", None)
        extra = {key: value for key, value in event.items()
                 if key not in ("level", "logger", "timestamp")}
        context = [f"{key}={extra.pop(key)}" for key in CONTEXT_KEYS if key in extra]
        context += [f"{key}={value}" for key, value in extra.items()]
        if context:
            line += f" [{' '.join(context)}]"
        return f"{line}\n{exception}" if exception else line


def formatter(json_lines: bool) -> structlog.stdlib.ProcessorFormatter:
    """How a record becomes a line: the same facts and masking in either format."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
    ]
    if json_lines:
        processors = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.StackInfoRenderer(),
            _ordered,
            structlog.processors.JSONRenderer(ensure_ascii=False),
            redact_rendered,
        ]
    else:
        processors = [
            structlog.processors.format_exc_info,
            structlog.processors.StackInfoRenderer(),
            TextRenderer(),
            redact_rendered,
        ]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=processors)


def configure_logging(level: str = "info", log_format: str = "auto",
                      stream: IO[str] | None = None) -> None:
    """basewatch's own loggers at `level`; libraries' (apscheduler's "Job executed
    successfully", the database driver, urllib3...) at WARNING, unless `debug:all` asks for
    theirs too. JSON lines or text as `log_format` says (see `wants_json`)."""
    stream = stream if stream is not None else sys.stderr
    own, _, scope = level.partition(":")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(wants_json(log_format, stream)))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if scope == "all" else
                  max(logging.WARNING, logging.getLevelName(own.upper())))
    logging.getLogger("basewatch").setLevel(own.upper())
    # structlog's own loggers, for code that wants key=value events, go the same way.
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars,
                    structlog.stdlib.filter_by_level,
                    structlog.stdlib.add_logger_name,
                    structlog.stdlib.add_log_level,
                    structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True)
    # The daemon's tokens and passwords come from the environment: masked from the first line.
    KNOWN.add(*secret_environment(dict(os.environ)))
