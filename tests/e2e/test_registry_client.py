"""RegistryClient against real CNCF distribution registries: plain, htpasswd and token auth."""
from __future__ import annotations

import base64
from pathlib import Path

import aiohttp
import bcrypt
import pytest

from basewatch.config import RegistrySettings
from basewatch.errors import RegistryError
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.oci.registry import ManifestHead, PlatformDigest, RegistryClient
from tests.support.oci import DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, ImagePusher
from tests.support.token_server import TokenServer

pytestmark = pytest.mark.e2e

AMD64, ARM64, ARM_V7 = (Platform.parse(p) for p in ("linux/amd64", "linux/arm64", "linux/arm/v7"))


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture(autouse=True)
def no_docker_login(tmp_path, monkeypatch):
    """Keep the machine's own ~/.docker/config.json out of these tests."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as session:
        yield session


async def test_head_returns_the_digest_the_push_returned(registry, session):
    pushed = await ImagePusher(session, registry.address).push_image("base/app", "1")
    async with RegistryClient() as client:
        head = await client.head_manifest(ImageReference.parse(f"{registry.address}/base/app:1"))
        _, manifest = await client.get_manifest(
            ImageReference.parse(f"{registry.address}/base/app@{pushed.digest}"))
    assert head == ManifestHead(pushed.digest, OCI_MANIFEST)
    assert manifest["mediaType"] == OCI_MANIFEST and manifest["layers"]


@pytest.mark.parametrize("index_type", [OCI_INDEX, DOCKER_LIST])
async def test_each_platform_resolves_to_its_own_manifest(registry, session, index_type):
    pusher = ImagePusher(session, registry.address)
    amd64 = await pusher.push_image("base/multi", platform="linux/amd64", content="a")
    arm64 = await pusher.push_image("base/multi", platform="linux/arm64", content="b")
    index = await pusher.push_index("base/multi", "1", [amd64, arm64], media_type=index_type)
    ref = ImageReference.parse(f"{registry.address}/base/multi:1")
    async with RegistryClient() as client:
        assert await client.head_manifest(ref) == ManifestHead(index.digest, index_type)
        assert await client.platform_digest(ref, AMD64) == PlatformDigest(amd64.digest,
                                                                          index.digest)
        assert await client.platform_digest(ref, ARM64) == PlatformDigest(arm64.digest,
                                                                          index.digest)
        with pytest.raises(RegistryError, match=r"no linux/arm/v7 image in the index \(it has "
                                                r"linux/amd64, linux/arm64\)"):
            await client.platform_digest(ref, ARM_V7)
        sent = client.requests_sent
    assert sent == 5  # HEAD, GET index, HEAD, HEAD, HEAD: the unchanged index is fetched once
    assert amd64.digest != arm64.digest


async def test_a_new_platform_changes_the_index_but_not_the_others(registry, session):
    pusher = ImagePusher(session, registry.address)
    index, images = await pusher.push_multi_platform("base/grow", "1",
                                                     ["linux/amd64", "linux/arm64"])
    ref = ImageReference.parse(f"{registry.address}/base/grow:1")
    async with RegistryClient() as client:
        before = await client.platform_digest(ref, AMD64)
        arm_v7 = await pusher.push_image("base/grow", platform="linux/arm/v7", content="v7")
        grown = await pusher.push_index("base/grow", "1", [*images, arm_v7])
        after = await client.platform_digest(ref, AMD64)
        new_platform = await client.platform_digest(ref, ARM_V7)
    assert before == PlatformDigest(images[0].digest, index.digest)
    assert after == PlatformDigest(images[0].digest, grown.digest)
    assert grown.digest != index.digest
    assert new_platform == PlatformDigest(arm_v7.digest, grown.digest)


async def test_unknown_tag(registry, session):
    await ImagePusher(session, registry.address).push_image("base/app", "1")
    async with RegistryClient() as client:
        with pytest.raises(RegistryError) as caught:
            await client.head_manifest(ImageReference.parse(f"{registry.address}/base/app:2"))
    assert str(caught.value) == (f"{registry.address}/base/app:2: manifest unknown (the tag does "
                                 f"not exist in {registry.address})")


async def test_htpasswd_registry_with_basic_auth(start_registry, session, tmp_path: Path):
    htpasswd = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"alice:{hashed}\n")
    registry = start_registry(auth={"htpasswd": {"realm": "basewatch", "path": str(htpasswd)}})
    pushed = await ImagePusher(session, registry.address,
                               headers={"Authorization": basic("alice", "s3cret")}
                               ).push_image("team/app", "1")
    ref = ImageReference.parse(f"{registry.address}/team/app:1")

    good = RegistrySettings(host=registry.address, username="alice", password="s3cret")
    async with RegistryClient([good]) as client:
        assert (await client.head_manifest(ref)).digest == pushed.digest
        assert (await client.head_manifest(ref)).digest == pushed.digest
        assert client.requests_sent == 3  # challenged once, then credentials sent up front

    wrong = RegistrySettings(host=registry.address, username="alice", password="guess")
    for settings in ([wrong], []):
        async with RegistryClient(settings) as client:
            with pytest.raises(RegistryError) as caught:
                await client.head_manifest(ref)
        assert str(caught.value) == (
            f"{ref}: unauthorized: check the credentials for {registry.address} "
            "(config registries[].username/password_env or ~/.docker/config.json)")


async def test_token_auth_registry(start_registry, session, tmp_path: Path):
    async with TokenServer(tmp_path / "tokens", users={"alice": "s3cret"}) as tokens:
        registry = start_registry(auth=tokens.registry_auth())
        pusher = ImagePusher(session, registry.address, headers={
            "Authorization": f"Bearer {tokens.push_token('public/base', 'private/base')}"})
        public = await pusher.push_image("public/base", "1", content="public")
        private = await pusher.push_image("private/base", "1", content="private")
        public_ref = ImageReference.parse(f"{registry.address}/public/base:1")
        private_ref = ImageReference.parse(f"{registry.address}/private/base:1")

        async with RegistryClient() as anonymous:
            assert (await anonymous.head_manifest(public_ref)).digest == public.digest
            assert (await anonymous.head_manifest(public_ref)).digest == public.digest
            with pytest.raises(RegistryError, match=rf"{private_ref}: unauthorized: check the "
                                                    rf"credentials for {registry.address} "):
                await anonymous.head_manifest(private_ref)
        assert tokens.requests[0] == (None, ["repository:public/base:pull"])
        assert [scopes for _, scopes in tokens.requests].count(["repository:public/base:pull"]) == 1

        alice = RegistrySettings(host=registry.address, username="alice", password="s3cret")
        async with RegistryClient([alice]) as client:
            assert (await client.head_manifest(private_ref)).digest == private.digest
            assert (await client.platform_digest(private_ref, AMD64)).digest == private.digest
        assert tokens.requests[-1] == ("alice", ["repository:private/base:pull"])

        wrong = RegistrySettings(host=registry.address, username="alice", password="guess")
        async with RegistryClient([wrong]) as client:
            with pytest.raises(RegistryError) as caught:
                await client.head_manifest(private_ref)
        assert f"{private_ref}: unauthorized: the token server {tokens.realm} refused the " \
               f"credentials; check the credentials for {registry.address}" in str(caught.value)
