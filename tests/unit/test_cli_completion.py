"""`basewatch completion bash`: generated from the parser, it completes commands and options."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def complete(script: str, *words: str) -> list[str]:
    """What bash offers for the last of `words`, with the generated script sourced."""
    words_list = " ".join(f"'{w}'" for w in words)
    probe = (f"source {script}; COMP_WORDS=({words_list}); COMP_CWORD={len(words) - 1}; "
             f"_shtab_basewatch basewatch '{words[-1]}' '{words[-2]}'; "
             'printf "%s\\n" "${COMPREPLY[@]}"')
    return subprocess.run(["bash", "-c", probe], capture_output=True, text=True,
                          timeout=30).stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_offers_commands_and_options(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = tmp_path / "basewatch.bash"
    script.write_text(subprocess.run(
        [sys.executable, "-m", "basewatch", "completion", "bash"], env=env, check=True,
        capture_output=True, text=True, timeout=60).stdout)
    assert complete(str(script), "basewatch", "task", "li") == ["list", "list-runs"]
    options = complete(str(script), "basewatch", "task", "list-runs", "--")
    assert {"--output", "--query", "--run-status", "--watch"} <= set(options)
    assert complete(str(script), "basewatch", "task", "list", "--output", "") == [
        "json", "table", "tsv", "none"]
