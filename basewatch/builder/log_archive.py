"""Archived runs' logs, pushed to a registry as OCI artifacts so they outlive the daemon's disk.

One artifact per run, tagged with the run id: an OCI image manifest with `artifactType`
`application/vnd.basewatch.run-log.v1`, the empty config, and the log as its one `text/plain`
layer (titled `<run id>.log`, so `oras pull` writes it under that name).

The pushes go through the RegistryClient, so the archive has the watcher's endpoint mapping,
credentials, token cache, back-off and error messages.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from basewatch.errors import ImageReferenceError, RegistryError
from basewatch.oci.reference import ImageReference
from basewatch.oci.registry import OCI_MANIFEST, RegistryClient

ARTIFACT_TYPE = "application/vnd.basewatch.run-log.v1"
LOG_MEDIA_TYPE = "text/plain"
EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
RUN_ID_ANNOTATION = "io.basewatch.run.id"
TITLE_ANNOTATION = "org.opencontainers.image.title"  # the file name `oras pull` writes
_EMPTY_CONFIG = b"{}"


class LogArchive:
    """Pushes a run's log to `repository` (e.g. "127.0.0.1:5000/basewatch/run-logs") as an OCI
    artifact tagged with the run id, through `client`."""

    def __init__(self, repository: str, client: RegistryClient):
        self.repository = repository.strip()
        try:
            ref = ImageReference.parse(self.repository)
        except ImageReferenceError as exc:
            raise RegistryError(f"log archive repository: {exc}") from None
        if "@" in self.repository or ":" in self.repository.rpartition("/")[2]:
            raise RegistryError(f"log archive repository {self.repository!r} must not have a "
                                "tag or digest: the run id is the tag")
        self._ref = ref
        self._client = client

    async def push(self, run_id: str, log_file: Path) -> str:
        """Push the log; returns `<repository>:<run id>@sha256:...`, the manifest's digest."""
        target = self._target(run_id)
        try:
            # Read once: the digest and the upload must be of the same bytes.
            log = await asyncio.to_thread(Path(log_file).read_bytes)
        except OSError as exc:
            raise RegistryError(f"archiving the log of run {run_id}: cannot read {log_file}: "
                                f"{exc.strerror or exc}") from None
        return await self._push(run_id, target, log)

    async def push_log(self, run_id: str, log: bytes) -> str:
        """Push a log read already (from the database: a run another daemon ran)."""
        return await self._push(run_id, self._target(run_id), log)

    def _target(self, run_id: str) -> ImageReference:
        try:
            return self._ref.with_tag(run_id)
        except ImageReferenceError:
            raise RegistryError(f"run id {run_id!r} cannot be a tag in {self.repository}") \
                from None

    async def _push(self, run_id: str, target: ImageReference, log: bytes) -> str:
        doing = f"archiving the log of run {run_id}"
        manifest = _manifest(run_id, log)
        try:
            await self._client.push_blob(target, log)
            await self._client.push_blob(target, _EMPTY_CONFIG)
            digest = await self._client.put_manifest(target, manifest, OCI_MANIFEST)
        except RegistryError as exc:
            raise RegistryError(f"{doing}: {exc}") from None
        return f"{self.repository}:{run_id}@{digest}"


def _manifest(run_id: str, log: bytes) -> bytes:
    """The artifact's OCI image manifest, as the bytes that are pushed."""
    layer = _descriptor(log, LOG_MEDIA_TYPE)
    layer["annotations"] = {TITLE_ANNOTATION: f"{run_id}.log"}
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": _descriptor(_EMPTY_CONFIG, EMPTY_CONFIG_MEDIA_TYPE),
        "layers": [layer],
        "annotations": {
            RUN_ID_ANNOTATION: run_id,
            "org.opencontainers.image.created":
                datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }).encode()


def _descriptor(data: bytes, media_type: str) -> dict:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data)}
