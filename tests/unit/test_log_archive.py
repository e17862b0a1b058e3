"""LogArchive against the in-process fake registry: the artifact's shape, and its errors."""
from __future__ import annotations

import json

import pytest

from basewatch.builder.log_archive import (ARTIFACT_TYPE, EMPTY_CONFIG_MEDIA_TYPE,
                                           LOG_MEDIA_TYPE, RUN_ID_ANNOTATION, TITLE_ANNOTATION,
                                           LogArchive)
from basewatch.errors import RegistryError
from basewatch.oci.registry import OCI_MANIFEST, RegistryClient
from tests.support.oci import sha256_digest
from tests.unit.oci.test_registry import FakeRegistry, no_docker_login, status  # noqa: F401


@pytest.fixture
async def fake():
    registry = FakeRegistry()
    await registry.server.start_server()
    yield registry
    await registry.server.close()


async def test_the_log_is_pushed_as_an_oci_artifact_tagged_with_the_run_id(fake, tmp_path):
    log = tmp_path / "ca1.log"
    log.write_bytes("a build\nünïcode\n".encode())
    repository = f"{fake.address}/basewatch/run-logs"
    async with RegistryClient() as client:
        archived = await LogArchive(repository, client).push("ca1", log)

    media_type, body = fake.manifests[("basewatch/run-logs", "ca1")]
    assert archived == f"{repository}:ca1@{sha256_digest(body)}"
    assert media_type == OCI_MANIFEST
    manifest = json.loads(body)
    assert manifest["mediaType"] == OCI_MANIFEST and manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"] == {"mediaType": EMPTY_CONFIG_MEDIA_TYPE,
                                  "digest": sha256_digest(b"{}"), "size": 2}
    assert manifest["layers"] == [{"mediaType": LOG_MEDIA_TYPE,
                                   "digest": sha256_digest(log.read_bytes()),
                                   "size": len(log.read_bytes()),
                                   "annotations": {TITLE_ANNOTATION: "ca1.log"}}]
    assert manifest["annotations"][RUN_ID_ANNOTATION] == "ca1"
    assert fake.blobs == {("basewatch/run-logs", sha256_digest(b"{}")): b"{}",
                          ("basewatch/run-logs", sha256_digest(log.read_bytes())):
                              log.read_bytes()}


async def test_a_registry_failure_is_one_line_naming_the_run(fake, tmp_path):
    log = tmp_path / "ca1.log"
    log.write_text("a build\n")
    fake.upload_faults = [status(500)] * 2
    async with RegistryClient(attempts=2) as client:
        with pytest.raises(RegistryError) as caught:
            await LogArchive(f"{fake.address}/logs", client).push("ca1", log)
    assert str(caught.value) == (
        f"archiving the log of run ca1: {fake.address}/logs:ca1: registry {fake.address} failed "
        "(500 Internal Server Error) (tried 2 times); try again later, or check the registry's "
        "health")
    assert ("logs", "ca1") not in fake.manifests


async def test_a_missing_log_is_named(fake, tmp_path):
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match=r"^archiving the log of run ca1: cannot read "
                                                r".*gone\.log: No such file"):
            await LogArchive(f"{fake.address}/logs", client).push("ca1", tmp_path / "gone.log")
    assert fake.log == []


@pytest.mark.parametrize("repository", ["127.0.0.1:5000/logs:1", "127.0.0.1:5000/logs@sha256:"
                                        + "a" * 64])
async def test_the_repository_may_not_name_a_tag_or_digest(repository):
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match="must not have a tag or digest"):
            LogArchive(repository, client)


async def test_a_run_id_that_is_no_tag_is_refused(fake, tmp_path):
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match="cannot be a tag"):
            await LogArchive(f"{fake.address}/logs", client).push("no/tag", tmp_path / "x.log")
