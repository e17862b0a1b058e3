"""A pull's or push's progress in the run log, compact: replayed from a real engine's streams
(tests/fixtures/engine_streams), on the clock they were recorded on."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from basewatch.builder.backends.docker import docker_engine
from basewatch.builder.backends.docker.transfer_log import SUMMARY_SECONDS, TransferLog
from basewatch.errors import EngineError

STREAMS = Path(__file__).resolve().parents[3] / "fixtures" / "engine_streams"


def recorded(name: str) -> list[tuple[float, dict]]:
    rows = [json.loads(line) for line in (STREAMS / name).read_text().splitlines()]
    return [(row["t"], row["chunk"]) for row in rows]


def replay(name: str, kind: str) -> tuple[list[str], list[tuple[float, dict]]]:
    """The log lines of a recorded stream followed as the engine adapter follows it, with
    the time each was written."""
    stream = recorded(name)
    now = [0.0]
    lines: list[str] = []
    transfer = TransferLog(lambda text: lines.append((now[0], text)), kind,
                           clock=lambda: now[0])

    def chunks():
        for at, chunk in stream:
            now[0] = at
            yield chunk

    for _ in docker_engine._follow(chunks(), f"{kind} of x", lambda text: lines.append(
            (now[0], text)), transfer):
        pass
    transfer.finish()
    return lines, stream


def layer_ids(stream) -> set[str]:
    return {chunk["id"] for _, chunk in stream if "progressDetail" in chunk and "id" in chunk}


@pytest.mark.parametrize("name,kind", [("push.jsonl", "push"), ("pull.jsonl", "pull")])
def test_each_layer_has_at_most_a_start_and_an_end_line(name, kind):
    lines, stream = replay(name, kind)
    ticks = sum(1 for _, chunk in stream if (chunk.get("progressDetail") or {}).get("current"))
    assert ticks >= 15, "the recording has progress ticks to compact"
    for layer in layer_ids(stream):
        about = [text for _, text in lines if text.startswith(f"{layer}: ")]
        assert 1 <= len(about) <= 2, (layer, about)
    assert len(lines) < len(stream) / 2, [text for _, text in lines]


def test_a_push_reads_as_starts_ends_a_summary_and_a_total():
    lines, _ = replay("push.jsonl", "push")
    text = "".join(line for _, line in lines)
    assert text.startswith("The push refers to repository [127.0.0.1:5078/progress-app]\n")
    assert "65712d7cc9a4: pushing 24.0 MiB\n" in text
    assert "1e8403a01451: pushing 3.0 MiB\n" in text
    assert "65712d7cc9a4: Pushed\n" in text
    assert text.count(": Mounted from progress-base\n") == 3
    assert re.search(r"^pushing 2 layers: \d+\.\d/27\.0 MiB, 1 done$", text, re.M), text
    assert re.search(r"^1: digest: sha256:[0-9a-f]{64} size: 1366$", text, re.M)
    assert text.endswith("pushed 2 layers, 27.0 MiB in 3.9 s; 3 layers already there\n")
    # The engine's own progress bars are not in the log.
    assert "[=" not in text and "Preparing" not in text


def test_a_pull_reads_as_starts_ends_summaries_and_a_total():
    lines, _ = replay("pull.jsonl", "pull")
    text = "".join(line for _, line in lines)
    assert text.startswith("1 Pulling from progress-app\n")
    assert "7ab633d0d7cf: pulling 24.0 MiB\n" in text
    assert text.count(": Pull complete\n") == 5
    assert re.search(r"^pulling 5 layers: \d+\.\d/28\.0 MiB, 3 done$", text, re.M), text
    assert "Status: Downloaded newer image for 127.0.0.1:5078/progress-app:1\n" in text
    assert text.endswith("pulled 5 layers, 28.0 MiB in 4.3 s\n")
    for noise in ("Waiting", "Verifying Checksum", "Download complete", "Extracting",
                  "Pulling fs layer"):
        assert noise not in text


@pytest.mark.parametrize("name,kind", [("push.jsonl", "push"), ("pull.jsonl", "pull")])
def test_summaries_are_bounded_in_time(name, kind):
    lines, _ = replay(name, kind)
    summaries = [at for at, text in lines if text.startswith(f"{kind}ing ")
                 and not re.match(r"^\w+: ", text)]
    assert summaries, "the recording lasts long enough for one"
    assert all(b - a >= SUMMARY_SECONDS for a, b in zip(summaries, summaries[1:]))


def test_a_long_transfer_of_many_ticks_stays_a_few_lines_a_second():
    now = [0.0]
    lines: list[str] = []
    transfer = TransferLog(lines.append, "push", clock=lambda: now[0])
    total = 800 * 1024 * 1024
    for tick in range(6000):  # 60 s of ticks every 10 ms on three layers
        now[0] = tick / 100
        for layer in ("aaa", "bbb", "ccc"):
            transfer.chunk({"status": "Pushing", "id": layer, "progressDetail": {
                "current": min(total, tick * 140_000), "total": total}})
    for layer in ("aaa", "bbb", "ccc"):
        transfer.chunk({"status": "Pushed", "id": layer, "progressDetail": {}})
    transfer.finish()
    assert len(lines) <= 3 + 3 + 60 / SUMMARY_SECONDS + 1, lines
    assert lines[-1] == "pushed 3 layers, 2.3 GiB in 60.0 s\n"


def test_unknown_states_and_retries_are_logged_as_the_engine_wrote_them():
    lines: list[str] = []
    transfer = TransferLog(lines.append, "push", clock=lambda: 0.0)
    transfer.chunk({"status": "Retrying in 5 seconds", "id": "aaa", "progressDetail": {}})
    transfer.chunk({"status": "Something new", "progressDetail": {}, "id": "bbb"})
    transfer.finish()
    assert lines == ["aaa: Retrying in 5 seconds\n", "bbb: Something new\n"]


def test_an_error_chunk_is_logged_verbatim_and_fails_the_transfer():
    lines: list[str] = []
    transfer = TransferLog(lines.append, "push")
    stream = [{"status": "Pushing", "id": "aaa",
               "progressDetail": {"current": 1, "total": 2}},
              {"errorDetail": {"message": "denied: requested access to the resource is "
                                          "denied"},
               "error": "denied: requested access to the resource is denied"}]
    with pytest.raises(EngineError, match="push of x failed: denied: requested access"):
        for _ in docker_engine._follow(stream, "push of x", lines.append, transfer):
            pass
    assert lines == ["aaa: pushing 2 bytes\n",
                     "ERROR: denied: requested access to the resource is denied\n"]
