"""Base-image trigger: a watched base moved, and a task built on it is rebuilt."""
from __future__ import annotations

from datetime import datetime

from basewatch.models import BaseChange, RunType, Trigger
from basewatch.store.runs import RunRequest


def base_image_run(task: str, base: str, platform: str, digest: str,
                   not_before: datetime | None = None) -> RunRequest:
    """A run of `task` because `base` moved to `digest` for `platform`."""
    return RunRequest(task, Trigger.IMAGE_UPDATE, RunType.AUTO_BUILD, platform,
                      f"base {base} changed to {digest}", not_before=not_before,
                      base_change=BaseChange(base, platform, digest))
