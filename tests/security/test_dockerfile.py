"""Hostile Dockerfiles: analysis stays within memory and time, and says why it stopped."""
from __future__ import annotations

import json

# 26 ARG lines, each twice as long as the one before: under 600 bytes that expand to 2^27
# characters (issue 8: 2.1 GB; under the child's limit, a MemoryError before the caps).
DOUBLING = "ARG A0=xx\n" + "".join(f"ARG A{i}=${{A{i - 1}}}${{A{i - 1}}}\n" for i in range(1, 27)) \
    + "FROM alpine:${A26}\n"

ANALYSE = """
import json
from basewatch.errors import DockerfileError
from basewatch.dockerfile.analysis import analyse_dockerfile
try:
    result = analyse_dockerfile({content!r})
except DockerfileError as exc:
    print(json.dumps({{"error": str(exc)}}))
else:
    print(json.dumps(result.to_json()))
"""


def test_doubling_args_stop_with_a_clear_error_within_the_memory_limit(bounded):
    assert len(DOUBLING.encode()) < 600
    done = bounded(ANALYSE.format(content=DOUBLING))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    message = json.loads(done.stdout)["error"]
    assert message.startswith("Dockerfile line ")
    assert "65536 characters" in message and "\n" not in message


def test_many_words_under_the_word_limit_stop_at_the_total_limit(bounded):
    # Each ARG stays under the word limit; together they exceed what a whole file may expand to.
    lines = ["ARG A0=" + "x" * 60_000]
    lines += [f"ARG B{i}=${{A0}}" for i in range(200)]
    lines += ["FROM alpine"]
    content = "\n".join(lines) + "\n"
    done = bounded(ANALYSE.format(content=content))
    assert done.returncode == 0, done.stderr[-2000:]
    message = json.loads(done.stdout)["error"]
    assert "in all" in message and "\n" not in message
