"""Quick runs (`basewatch build`): a build spec of their own instead of a registered task, and a
context that was uploaded with the request or is fetched from git or a tarball URL."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from basewatch.config import BuildArgValue, DockerfileName, Duration, _as_list
from basewatch.errors import BasewatchError
from basewatch.models import Run
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import is_registry_host
from basewatch.tasks import Task

QUICK_TASK_NAME = "quick-build"
# A task file is refused past 1 MiB as it is read; its text in a request, a little sooner.
MAX_TASK_FILE_CHARS = 1024 * 1024
# An upload lives in contexts/upload-<id> from its request until no queued or running run
# needs it: the run ended, was canceled while queued, or the request was refused.
UPLOAD_PREFIX = "upload-"


class QuickBuildSpec(BaseModel):
    """What `basewatch build` asks for; validated at the API edge, stored with the run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: Annotated[list[str], BeforeValidator(_as_list)] = Field(default_factory=list)
    file: DockerfileName = "Dockerfile"
    build_args: dict[str, BuildArgValue] = Field(default_factory=dict)
    target: str | None = None
    platform: str = "linux/amd64"
    push: bool = True
    timeout: Duration = 3600.0
    # Exactly one of: a folder the daemon extracted an upload into, or a git / tarball URL.
    context_path: str | None = None
    context_url: str | None = None
    # A quick run (`basewatch run`): the task file's text, read on the caller's side (`file`
    # is its name, for messages), and the run's registry when --registry overrides the
    # config's. Its values go with the run; its secrets are never part of this.
    task_file: Annotated[str, Field(max_length=MAX_TASK_FILE_CHARS)] | None = None
    registry: str | None = None

    @field_validator("registry")
    @classmethod
    def _registry_host(cls, value: str | None) -> str | None:
        if value is not None and not is_registry_host(value):
            raise ValueError(f"{value!r} is not a registry host as image references write it "
                             "(host[:port])")
        return value

    @field_validator("platform")
    @classmethod
    def _platforms(cls, value: str) -> str:
        platforms = [Platform.parse(p) for p in value.split(",") if p.strip()]
        if not platforms:
            raise ValueError("give at least one platform, e.g. linux/amd64")
        for platform in platforms:
            if platform.os == "windows":
                raise ValueError(f"{platform} cannot be built on this daemon's Linux engine")
        return ",".join(str(p) for p in platforms)


class QuickRuns:
    def __init__(self, contexts_dir: Path):
        self.contexts_dir = contexts_dir

    def upload_dir(self, upload_id: str) -> Path:
        return self.contexts_dir / f"{UPLOAD_PREFIX}{upload_id}"

    def task_of(self, run: Run) -> Task:
        """The task a quick run builds: its own spec, on the uploaded folder or the URL."""
        spec = _spec_of(run)
        return Task(name=QUICK_TASK_NAME, context=spec.context_url or spec.context_path,
                    file=spec.file, images=list(spec.image), build_args=dict(spec.build_args),
                    target=spec.target,
                    platforms=[Platform.parse(p) for p in spec.platform.split(",")],
                    push=spec.push and bool(spec.image), timeout=spec.timeout)

    def task_file_of(self, run: Run) -> str | None:
        """A quick run's task file text; None for a quick build or a task's run."""
        return None if run.spec is None else _spec_of(run).task_file

    def registry_of(self, run: Run) -> str | None:
        """The registry a quick run was given with --registry; None: the config's."""
        return None if run.spec is None else _spec_of(run).registry

    def clean_up(self, run: Run) -> None:
        """A quick run's upload, once no run needs it (the run ended, or was canceled while
        queued): free the disk."""
        if (upload := _upload_of(run)) is not None:
            self.discard(upload)

    def discard(self, upload: Path) -> None:
        """Remove an upload folder; nothing outside this daemon's uploads."""
        if upload.parent == self.contexts_dir and upload.name.startswith(UPLOAD_PREFIX):
            shutil.rmtree(upload, ignore_errors=True)

    def uploads(self) -> set[str]:
        """The upload folders on this daemon's disk, as the runs that need them name them."""
        if not self.contexts_dir.is_dir():
            return set()
        return {str(p) for p in self.contexts_dir.iterdir() if p.name.startswith(UPLOAD_PREFIX)}

    def discard_orphans(self, queued: list[Run]) -> int:
        """Remove the uploads no queued run needs (left by a stopped daemon); how many. Only
        as the daemon starts, before uploads come in."""
        if not self.contexts_dir.is_dir():
            return 0
        needed = {_upload_of(run) for run in queued}
        orphans = [p for p in self.contexts_dir.iterdir()
                   if p.name.startswith(UPLOAD_PREFIX) and p not in needed]
        for orphan in orphans:
            self.discard(orphan)
        return len(orphans)


def _spec_of(run: Run) -> QuickBuildSpec:
    try:
        return QuickBuildSpec.model_validate_json(run.spec)
    except ValidationError as invalid:
        # Stored by an older version whose edge let it through: refused now, as at the edge.
        problem = invalid.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "request"
        raise BasewatchError(f"this quick build's request is no longer accepted: {where}: "
                             f"{problem['msg'].removeprefix('Value error, ')}") from None


def _upload_of(run: Run) -> Path | None:
    """The upload folder a quick run names, read without validating the rest of its spec: a
    spec refused today still has its upload to clean up."""
    try:
        path = json.loads(run.spec or "{}").get("context_path")
    except (ValueError, AttributeError):
        return None
    return Path(path) if isinstance(path, str) and path else None
