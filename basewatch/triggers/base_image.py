"""Base-image trigger: a watched base moved, and a task built on it is rebuilt."""
from __future__ import annotations

from datetime import datetime

from basewatch.models import BaseChange, RunRequest, RunType, Trigger


def base_image_run(task: str, base: str, platform: str, digest: str,
                   not_before: datetime | None = None, platforms: str | None = None
                   ) -> RunRequest:
    """A run of `task` because `base` moved to `digest` for `platform`. The run builds every
    platform the task is built for (`platforms`, a comma list; default: that one), so a change
    to any one platform's digest rebuilds the task's index."""
    return RunRequest(task, Trigger.IMAGE_UPDATE, RunType.AUTO_BUILD, platforms or platform,
                      f"base {base} ({platform}) changed to {digest}", not_before=not_before,
                      base_change=BaseChange(base, platform, digest))
