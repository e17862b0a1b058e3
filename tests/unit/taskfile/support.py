"""What the task-file tests share: a run's variables and a loader with the fixtures' aliases."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from basewatch.taskfile import load_task_file
from basewatch.templating import RunVariables

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "taskfiles"
WHEN = datetime(2019, 5, 3, 4, 33, 42, tzinfo=timezone.utc)
RUN = RunVariables(id="ca1", date=WHEN, registry="127.0.0.1:5000", task_name="hello")
ALIASES = {"bash": "127.0.0.1:5000/tools/busybox:1", "curl": "127.0.0.1:5000/tools/curl:1",
           "docker": "127.0.0.1:5000/tools/docker-cli:1"}


def load(text: str, **options):
    options.setdefault("variables", RUN)
    options.setdefault("image_aliases", ALIASES)
    return load_task_file(text, **options)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()
