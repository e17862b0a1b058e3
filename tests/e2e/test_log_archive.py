"""Archived run logs pushed to real registries (plain, token-auth, basic) through the
RegistryClient, and pulled back with oras-py, the standard client."""
from __future__ import annotations

import json
from pathlib import Path

import bcrypt
import pytest

from basewatch.builder.log_archive import (ARTIFACT_TYPE, LOG_MEDIA_TYPE, RUN_ID_ANNOTATION,
                                           LogArchive)
from basewatch.config import RegistrySettings
from basewatch.errors import RegistryError
from basewatch.oci.reference import ImageReference
from basewatch.oci.registry import RegistryClient
from tests.support.oras_pull import oras_pull
from tests.support.token_server import TokenServer

pytestmark = pytest.mark.e2e

LOG = "2025/06/01 12:00:00 Step 1/2 : FROM busybox\n" + "ünïcode and a long line " * 2000 + "\n"


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "logs" / "ca7.log"
    path.parent.mkdir()
    path.write_text(LOG, encoding="utf-8")
    return path


@pytest.fixture
def no_docker_config(tmp_path: Path) -> Path:
    """Credentials from the settings only: the machine's ~/.docker/config.json stays out."""
    return tmp_path / "no-docker-config.json"


async def head_digest(reference: str, registries: list[RegistrySettings],
                      docker_config: Path) -> str:
    async with RegistryClient(registries, docker_config=docker_config) as client:
        return (await client.head_manifest(ImageReference.parse(reference))).digest


async def push(repository: str, run_id: str, log_file: Path, docker_config: Path,
               registries: list[RegistrySettings] | None = None) -> str:
    """`LogArchive.push` through a client of its own, as the daemon's archive has."""
    async with RegistryClient(registries or [], docker_config=docker_config,
                              attempts=3) as client:
        return await LogArchive(repository, client).push(run_id, log_file)


async def test_push_returns_the_manifest_digest_and_pull_gives_the_log_back(
        registry, log_file, tmp_path, no_docker_config):
    repository = f"{registry.address}/basewatch/run-logs"

    archived = await push(repository, "ca7", log_file, no_docker_config)

    name, _, digest = archived.partition("@")
    assert name == f"{repository}:ca7" and digest.startswith("sha256:")
    assert await head_digest(name, [], no_docker_config) == digest

    async with RegistryClient(docker_config=no_docker_config) as client:
        head, manifest = await client.get_manifest(ImageReference.parse(archived))
    assert head.digest == digest
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["annotations"][RUN_ID_ANNOTATION] == "ca7"
    [layer] = manifest["layers"]
    assert layer["mediaType"] == LOG_MEDIA_TYPE
    assert layer["annotations"]["org.opencontainers.image.title"] == "ca7.log"

    # The standard client reads the artifact: by digest, and by tag, into `<run id>.log`.
    pulled = await oras_pull(archived, tmp_path / "back")
    assert pulled == [tmp_path / "back" / "ca7.log"]
    assert pulled[0].read_bytes() == log_file.read_bytes()
    [by_tag] = await oras_pull(name, tmp_path / "by-tag")
    assert by_tag.read_bytes() == log_file.read_bytes()
    assert [p.name for p in (tmp_path / "back").iterdir()] == ["ca7.log"], "no partial file left"

    # Archiving the same log again gives the same blobs; a changed log, a new digest.
    log_file.write_text(LOG + "one more line\n", encoding="utf-8")
    again = await push(repository, "ca7", log_file, no_docker_config)
    assert again != archived
    assert await head_digest(f"{repository}:ca7", [], no_docker_config) == again.partition("@")[2]


async def test_endpoint_mapping_applies(registry, log_file, tmp_path, no_docker_config):
    # Logs "go to" logs.example.com, whose endpoint is the local registry.
    settings = [RegistrySettings(host="logs.example.com", endpoint=f"http://{registry.address}")]
    archived = await push("logs.example.com/basewatch/run-logs", "ca7", log_file,
                          no_docker_config, settings)
    assert archived.startswith("logs.example.com/basewatch/run-logs:ca7@sha256:")
    local = f"{registry.address}/basewatch/run-logs:ca7"
    assert await head_digest(local, [], no_docker_config) == archived.partition("@")[2]
    [pulled] = await oras_pull(f"{local}@{archived.partition('@')[2]}", tmp_path / "back")
    assert pulled.read_text(encoding="utf-8") == LOG


async def test_token_auth_registry_with_credentials_from_settings(
        start_registry, log_file, tmp_path, monkeypatch, no_docker_config):
    async with TokenServer(tmp_path / "tokens", users={"alice": "s3cret"}) as tokens:
        registry = start_registry(auth=tokens.registry_auth())
        monkeypatch.setenv("LOGS_PASSWORD", "s3cret")
        settings = [RegistrySettings(host=registry.address, username="alice",
                                     password_env="LOGS_PASSWORD")]
        repository = f"{registry.address}/basewatch/run-logs"

        archived = await push(repository, "ca7", log_file, no_docker_config, settings)

        # Every request of the push asked for the push scope; no pull token was fetched first.
        assert tokens.requests == [("alice", ["repository:basewatch/run-logs:pull,push"])]
        name, _, digest = archived.partition("@")
        assert await head_digest(name, settings, no_docker_config) == digest
        [pulled] = await oras_pull(archived, tmp_path / "back", username="alice",
                                   password="s3cret")
        assert pulled.read_bytes() == log_file.read_bytes()
        assert tokens.requests[-1] == ("alice", ["repository:basewatch/run-logs:pull"])

        wrong = [RegistrySettings(host=registry.address, username="alice", password="guess")]
        with pytest.raises(RegistryError) as caught:
            await push(repository, "ca8", log_file, no_docker_config, wrong)
        message = str(caught.value)
        assert "\n" not in message
        assert message == (
            f"archiving the log of run ca8: {repository}:ca8: unauthorized: the token server "
            f"{tokens.realm} refused the credentials; check the credentials for "
            f"{registry.address} "
            "(config registries[].username/password_env or ~/.docker/config.json)")

        # Anonymous: the token server grants no push, so the registry refuses the upload.
        with pytest.raises(RegistryError) as caught:
            await push(repository, "ca9", log_file, no_docker_config)
        assert str(caught.value) == (
            f"archiving the log of run ca9: {repository}:ca9: unauthorized: check the "
            f"credentials for {registry.address} "
            "(config registries[].username/password_env or ~/.docker/config.json)")


async def test_credentials_from_docker_config(start_registry, log_file, tmp_path):
    async with TokenServer(tmp_path / "tokens", users={"bob": "hunter2"}) as tokens:
        registry = start_registry(auth=tokens.registry_auth())
        docker_config = tmp_path / "docker" / "config.json"
        docker_config.parent.mkdir()
        docker_config.write_text(json.dumps({"auths": {registry.address: {
            "username": "bob", "password": "hunter2"}}}))
        archived = await push(f"{registry.address}/logs", "ca7", log_file, docker_config)
        assert {user for user, _ in tokens.requests} == {"bob"}
        [pulled] = await oras_pull(archived, tmp_path / "back", username="bob",
                                   password="hunter2")
        assert pulled.read_text(encoding="utf-8") == LOG
        assert {user for user, _ in tokens.requests} == {"bob"}


async def test_basic_auth_registry(start_registry, log_file, tmp_path, no_docker_config):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"alice:{bcrypt.hashpw(b's3cret', bcrypt.gensalt(4)).decode()}\n")
    registry = start_registry(auth={"htpasswd": {"realm": "basewatch", "path": str(htpasswd)}})
    repository = f"{registry.address}/logs"
    good = [RegistrySettings(host=registry.address, username="alice", password="s3cret")]
    archived = await push(repository, "ca7", log_file, no_docker_config, good)
    [pulled] = await oras_pull(archived, tmp_path / "back", username="alice", password="s3cret",
                               auth="basic")
    assert pulled.read_text(encoding="utf-8") == LOG

    wrong = [RegistrySettings(host=registry.address, username="alice", password="guess")]
    with pytest.raises(RegistryError, match=rf"^archiving the log of run ca7: {repository}:ca7: "
                                            rf"unauthorized: check the credentials for "
                                            rf"{registry.address} \(config"):
        await push(repository, "ca7", log_file, no_docker_config, wrong)


async def test_unreachable_registry(log_file, no_docker_config):
    with pytest.raises(RegistryError) as caught:
        await push("127.0.0.1:1/basewatch/run-logs", "ca7", log_file, no_docker_config)
    assert str(caught.value) == (
        "archiving the log of run ca7: 127.0.0.1:1/basewatch/run-logs:ca7: cannot reach "
        "registry 127.0.0.1:1 at http://127.0.0.1:1: connection refused (tried 3 times); "
        "check that it is running and that its endpoint is right")


async def test_a_log_that_cannot_be_read_is_a_clear_error(registry, log_file,
                                                         no_docker_config):
    with pytest.raises(RegistryError, match=r"^archiving the log of run ca7: cannot read "
                                            r".*ca7\.missing"):
        await push(f"{registry.address}/logs", "ca7", log_file.with_suffix(".missing"),
                   no_docker_config)
