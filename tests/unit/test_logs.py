"""The daemon's log: JSON lines with the run and base it is about, or the text line on a
terminal; levels as --log-level says; and no secret in either, however it is logged."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import re

import pytest
import structlog
from structlog.contextvars import bound_contextvars

from basewatch.builder.run_secrets import RunSecrets
from basewatch.config import Config, secret_values
from basewatch.logs import configure_logging, wants_json
from basewatch.redaction import KNOWN, MASK, KnownSecrets, redact

log = logging.getLogger("basewatch.test")


@pytest.fixture
def capture():
    """configure_logging onto a string; the test process's logging put back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("basewatch").level
    streams: list[io.StringIO] = []

    def configure(log_format: str = "json", level: str = "info") -> io.StringIO:
        stream = io.StringIO()
        streams.append(stream)
        configure_logging(level, log_format, stream)
        return stream

    yield configure
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.getLogger("basewatch").setLevel(saved[2])
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_bound_run_and_base(capture):
    stream = capture("json")
    log.info("before any run")
    with bound_contextvars(run_id="ca7", task="web"):
        with bound_contextvars(base="127.0.0.1:5000/base:1", digest="sha256:" + "a" * 64):
            log.warning("run %s (%s) started", "ca7", "web")
    log.info("after")
    first, during, after = lines(stream)
    assert first["event"] == "before any run" and "run_id" not in first
    assert during == {**during, "level": "warning", "logger": "basewatch.test",
                      "event": "run ca7 (web) started", "run_id": "ca7", "task": "web",
                      "base": "127.0.0.1:5000/base:1", "digest": "sha256:" + "a" * 64}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", during["timestamp"])
    assert list(during)[:4] == ["timestamp", "level", "logger", "event"]
    assert "run_id" not in after


async def test_tasks_and_threads_started_in_a_run_inherit_its_context(capture):
    stream = capture("json")

    def in_a_thread() -> None:
        logging.getLogger("urllib3.connectionpool").warning("a library's line")

    async def in_a_task() -> None:
        await asyncio.sleep(0)
        log.info("in a task")

    with bound_contextvars(run_id="ca9", task="api"):
        task = asyncio.create_task(in_a_task())
        thread = asyncio.create_task(asyncio.to_thread(in_a_thread))
    await task  # both log after the `with` has ended here: they kept their own copy
    await thread
    by_logger = {line["logger"]: line for line in lines(stream)}
    assert by_logger["basewatch.test"]["run_id"] == "ca9"
    assert by_logger["urllib3.connectionpool"]["run_id"] == "ca9"
    assert by_logger["urllib3.connectionpool"]["task"] == "api"


def test_exceptions_are_one_json_line_with_their_traceback(capture):
    stream = capture("json")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    [line] = lines(stream)
    assert line["event"] == "it failed" and line["level"] == "error"
    assert "Traceback" in line["exception"] and "ValueError: boom" in line["exception"]


def test_text_is_the_familiar_line_with_the_context_after_it(capture):
    stream = capture("text")
    with bound_contextvars(run_id="ca3", task="web"):
        log.info("run %s started", "ca3")
    text = stream.getvalue()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    basewatch\.test: "
                        r"run ca3 started \[run_id=ca3 task=web\]\n", text), text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_elsewhere():
    assert wants_json("auto", io.StringIO()) is True
    assert wants_json("auto", _Terminal()) is False
    assert wants_json("json", _Terminal()) is True
    assert wants_json("text", io.StringIO()) is False


def test_config_takes_log_format_and_refuses_others():
    assert Config().log_format == "auto"
    assert Config(log_format="json").log_format == "json"
    with pytest.raises(ValueError):
        Config(log_format="xml")


@pytest.mark.parametrize("level, own_debug, libraries_info", [
    ("info", False, False), ("debug", True, False), ("debug:all", True, True)])
def test_levels_as_before(capture, level, own_debug, libraries_info):
    stream = capture("json", level)
    log.debug("own debug")
    logging.getLogger("apscheduler.scheduler").info("Adding job")
    logging.getLogger("aiosqlite").warning("a library's warning")
    events = [line["event"] for line in lines(stream)]
    assert ("own debug" in events) == own_debug
    assert ("Adding job" in events) == libraries_info
    assert "a library's warning" in events  # shown at every level


# ---------------------------------------------------------------- secrets

SECRET = "s3cr3t-Value-9f2c"
QUOTED = 'pa"ss\\word-77'  # escaped in a JSON line: found as written there too


def _log_the_secret_every_way(secret: str) -> None:
    log.info("token is %s", secret)
    log.info(f"inline {secret} in an f-string")
    log.warning("a dict %s", {"headers": {"Authorization": f"Bearer {secret}"}})
    log.info("extra field", extra={"password": secret})
    with bound_contextvars(task=f"named-{secret}"):
        log.info("bound context")
    structlog.get_logger("basewatch.native").info("native event", token=secret,
                                                  nested={"list": [secret]})
    try:
        raise RuntimeError(f"the server said {secret}")
    except RuntimeError:
        log.exception("traceback")


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("secret", [SECRET, QUOTED])
def test_a_known_secret_never_reaches_the_log(capture, log_format, secret):
    KNOWN.add(secret)
    stream = capture(log_format)
    _log_the_secret_every_way(secret)
    output = stream.getvalue()
    assert secret not in output and json.dumps(secret)[1:-1] not in output
    assert output.count(MASK) >= 7
    assert "native event" in output and "traceback" in output


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_secret_shapes_are_masked_without_being_known(capture, log_format):
    stream = capture(log_format)
    unknown = "unknown-but-shaped-1234"
    log.info("git fetch https://bot:%s@git.example.com/org/repo.git failed", unknown)
    log.info("GET https://h/api?private_token=%s&page=2", unknown)
    log.info("headers {'Authorization': 'Basic %s'}", unknown)
    log.info("X-Gitlab-Token: %s", unknown)
    log.info("clone https://%s@github.com/o/r.git", "ghp_" + unknown)
    log.info("token eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJlLWhlcmU")
    output = stream.getvalue()
    assert unknown not in output and "eyJzdWIiOiJib3QifQ" not in output
    assert "https://bot:*****@git.example.com/org/repo.git" in output
    assert "page=2" in output and "github.com/o/r.git" in output


def test_the_daemons_configured_secrets_and_environment_are_known(capture, monkeypatch):
    monkeypatch.setenv("BASEWATCH_TOKEN", "api-token-from-env")
    monkeypatch.setenv("REG_PW", "registry-password-env")
    config = Config(registries=[{"host": "r.example", "username": "u",
                                 "password": "inline-password-1"},
                                {"host": "q.example", "username": "u", "password_env": "REG_PW"}])
    KNOWN.add(*secret_values(config))
    stream = capture("json")  # and the environment's tokens, as serve does
    for value in ("api-token-from-env", "registry-password-env", "inline-password-1"):
        log.info("connecting with %s", value)
    assert stream.getvalue().count(MASK) == 3


def test_run_secrets_are_masked_while_the_run_holds_them(capture):
    stream = capture("json")
    held = RunSecrets()
    held.hold("ca1", {"db": "zq7-held-value-k9"})
    log.info("step printed zq7-held-value-k9")
    held.release("ca1")
    log.info("after: zq7-held-value-k9")
    during, after = lines(stream)
    assert during["event"] == f"step printed {MASK}"
    assert after["event"] == "after: zq7-held-value-k9"  # no longer a secret of this daemon


def test_known_secrets_longest_first_and_counted():
    known = KnownSecrets()
    known.add("abcdef", "abcdefgh", "abc")  # "abc" is too short to mask
    assert redact("abcdefgh abcdef abc", known) == f"{MASK} {MASK} abc"
    known.hold("held-value")
    known.hold("held-value")
    known.release("held-value")
    assert redact("held-value", known) == MASK
    known.release("held-value")
    assert redact("held-value", known) == "held-value"
