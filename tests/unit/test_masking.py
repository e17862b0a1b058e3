"""Secrets out of a run's log: whole lines, output streamed in pieces, a secret split across
two pieces, the longer of two overlapping secrets, a line with no end."""
from __future__ import annotations

from basewatch.builder.masking import MAX_PENDING, MaskedLog, Secrets


class Sink:
    def __init__(self):
        self.text = ""

    def line(self, text: str) -> None:
        self.text += f"[own] {text}\n"

    def write(self, text: str) -> None:
        self.text += text


def test_own_lines_and_streamed_output_are_masked_under_the_step_s_id():
    sink = Sink()
    log = MaskedLog(sink, Secrets(("hunter2", "")))
    log.line("pushing with hunter2")
    step = log.step("login")
    step.write("user: me, password: hun")
    assert "hun" not in sink.text, "a line is held until it ends"
    step.write("ter2\r\nnext line\npartial")
    step.flush()
    assert sink.text == ("[own] pushing with *****\nlogin | user: me, password: *****\n"
                         "login | next line\nlogin | partial\n")


def test_the_longer_of_two_overlapping_secrets_is_masked_whole():
    assert Secrets(("abc", "abcdef")).mask("x abcdef y abc") == "x ***** y *****"
    assert Secrets(()).mask("nothing to hide") == "nothing to hide"


def test_a_line_without_end_is_written_once_it_is_long():
    sink = Sink()
    step = MaskedLog(sink, Secrets(("s3cret",))).step("noisy")
    step.write("s3cret" + "x" * MAX_PENDING)
    assert sink.text.startswith("noisy | *****xxx") and len(sink.text) > MAX_PENDING
