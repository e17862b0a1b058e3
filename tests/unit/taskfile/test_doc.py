"""docs/task-files.md: its task files read as it says, and its error lines are real ones."""
from __future__ import annotations

import re
from pathlib import Path

from basewatch.run_plan import BuildStep, CmdStep

from .support import load

DOC = (Path(__file__).resolve().parents[3] / "docs" / "task-files.md").read_text()
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC, re.S)


def test_the_docs_task_files_read():
    files = [block for block in BLOCKS if "steps:" in block]
    assert len(files) == 2
    steps, _ = load(files[0])
    assert [s.control.id for s in steps] == ["build-web", "build-tests", "web", "tests",
                                             "acb_step_4"]
    assert isinstance(steps[2].action, CmdStep) and steps[2].action.container.detach
    steps, _ = load(files[1], read_alias_file={"aliases/tools.yaml": "jq: jq:1\n"}.__getitem__)
    assert steps[0].action == BuildStep(platform="linux/amd64", bases=[],
                                        tags=["127.0.0.1:5000/apps/web:ca1"])
