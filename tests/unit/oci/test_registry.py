"""RegistryClient against an in-process fake registry that fails, throttles and challenges."""
from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from basewatch.config import RegistrySettings
from basewatch.errors import RegistryAddressRefused, RegistryError
from basewatch.oci import registry
from basewatch.oci.credentials import Challenge, CredentialStore, TokenCache
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.oci.registry import (
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestHead,
    PlatformDigest,
    RegistryClient,
)
from tests.support.oci import canonical_json, sha256_digest

AMD64, ARM64 = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class FakeRegistry:
    """Serves manifests; `faults` are answered first, one per request; `auth` adds a challenge."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.faults: list[Callable[[], web.Response]] = []
        self.headers: dict[str, str] = {}  # added to every manifest response
        self.send_digest = True
        self.auth: str | None = None  # None, "basic" or "bearer"
        self.users = {"alice": "secret"}
        self.anonymous_tokens = True
        self.token_field = "token"
        self.realm: str | None = None  # where the bearer challenge sends clients; default /token
        self.log: list[tuple[str, str, str | None]] = []  # method, path with query, Authorization
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.upload_faults: list[Callable[[], web.Response]] = []  # answered to upload PUTs
        self.upload_location: str | None = None  # where uploads go; default a path of ours
        self._uploads: dict[str, str] = {}  # session id -> repository
        self._issued: dict[str, str] = {}  # token -> the scope it was asked for
        app = web.Application()
        app.router.add_get("/v2/{name:.+}/manifests/{reference}", self._manifest)
        app.router.add_put("/v2/{name:.+}/manifests/{reference}", self._put_manifest)
        app.router.add_get("/v2/{name:.+}/blobs/{digest}", self._blob)
        app.router.add_post("/v2/{name:.+}/blobs/uploads/", self._start_upload)
        app.router.add_put("/v2/{name:.+}/blobs/uploads/{session}", self._finish_upload)
        app.router.add_get("/token", self._token)
        self.server = TestServer(app, host=host)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.server.port}"

    def ref(self, text: str) -> ImageReference:
        return ImageReference.parse(f"{self.address}/{text}")

    def put(self, repository: str, tag: str, manifest: dict,
            media_type: str = OCI_MANIFEST) -> str:
        body = canonical_json(manifest)
        digest = sha256_digest(body)
        self.manifests[(repository, tag)] = (media_type, body)
        self.manifests[(repository, digest)] = (media_type, body)
        return digest

    def put_index(self, repository: str, tag: str, platforms: dict[str, str],
                  media_type: str = OCI_INDEX) -> str:
        entries = []
        for platform, digest in platforms.items():
            os_name, arch, *variant = platform.split("/")
            fields = {"os": os_name, "architecture": arch}
            if variant:
                fields["variant"] = variant[0]
            entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": 1,
                            "platform": fields})
        return self.put(repository, tag, {"schemaVersion": 2, "mediaType": media_type,
                                          "manifests": entries}, media_type)

    def revoke_tokens(self) -> None:
        self._issued.clear()

    def requests(self, method: str | None = None, path: str = "") -> int:
        return sum(1 for m, p, _ in self.log if (method is None or m == method) and path in p)

    async def _manifest(self, request: web.Request) -> web.Response:
        self.log.append((request.method, request.path_qs, request.headers.get("Authorization")))
        if self.faults:
            return self.faults.pop(0)()
        name, reference = request.match_info["name"], request.match_info["reference"]
        if challenge := self._challenge(request, name):
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        if (name, reference) not in self.manifests:
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN",
                                                  "message": "manifest unknown"}]}, status=404)
        media_type, body = self.manifests[(name, reference)]
        headers = {"Content-Type": media_type, **self.headers}
        if self.send_digest:
            headers["Docker-Content-Digest"] = sha256_digest(body)
        return web.Response(body=body, headers=headers)

    def _challenge(self, request: web.Request, name: str, push: bool = False) -> str | None:
        """Like distribution: a push needs a token whose scope has `push`."""
        given = request.headers.get("Authorization")
        if self.auth == "basic" and given not in {basic(u, p) for u, p in self.users.items()}:
            return 'Basic realm="fake"'
        granted = {f"Bearer {t}" for t, scope in self._issued.items()
                   if not push or scope.endswith(",push")}
        if self.auth == "bearer" and given not in granted:
            realm = self.realm or f"http://{self.address}/token"
            actions = "pull,push" if push else "pull"
            return (f'Bearer realm="{realm}",service="fake-registry",'
                    f'scope="repository:{name}:{actions}"')
        return None

    def _refusal(self, request: web.Request, push: bool = True) -> web.Response | None:
        """A fault or a challenge for a blob or upload request, after logging it."""
        self.log.append((request.method, request.path_qs, request.headers.get("Authorization")))
        if self.faults:
            return self.faults.pop(0)()
        if challenge := self._challenge(request, request.match_info["name"], push):
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        return None

    async def _blob(self, request: web.Request) -> web.Response:
        # The client checks with a push token before it uploads.
        if refused := self._refusal(request, push=False):
            return refused
        key = (request.match_info["name"], request.match_info["digest"])
        if key not in self.blobs:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN",
                                                  "message": "blob unknown"}]}, status=404)
        return web.Response(body=self.blobs[key], content_type="application/octet-stream")

    async def _start_upload(self, request: web.Request) -> web.Response:
        if refused := self._refusal(request):
            return refused
        session = f"s{len(self._uploads)}"
        self._uploads[session] = request.match_info["name"]
        location = self.upload_location or \
            f"/v2/{request.match_info['name']}/blobs/uploads/{session}?_state=a%2Bb%3D"
        return web.Response(status=202, headers={"Location": location})

    async def _finish_upload(self, request: web.Request) -> web.Response:
        if refused := self._refusal(request):
            return refused
        if self.upload_faults:
            return self.upload_faults.pop(0)()
        name, session = request.match_info["name"], request.match_info["session"]
        data, digest = await request.read(), request.query.get("digest", "")
        if self._uploads.get(session) != name or request.query.get("_state") != "a+b=":
            return web.json_response({"errors": [{"code": "BLOB_UPLOAD_UNKNOWN",
                                                  "message": "unknown upload"}]}, status=404)
        if sha256_digest(data) != digest:
            return web.json_response({"errors": [{"code": "DIGEST_INVALID",
                                                  "message": "digest mismatch"}]}, status=400)
        del self._uploads[session]
        self.blobs[(name, digest)] = data
        return web.Response(status=201, headers={"Docker-Content-Digest": digest})

    async def _put_manifest(self, request: web.Request) -> web.Response:
        if refused := self._refusal(request):
            return refused
        name, body = request.match_info["name"], await request.read()
        digest = sha256_digest(body)
        for reference in (request.match_info["reference"], digest):
            self.manifests[(name, reference)] = (request.content_type, body)
        return web.Response(status=201, headers={"Docker-Content-Digest": digest})

    async def _token(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization")
        self.log.append(("GET", request.path_qs, given))
        if given not in {basic(u, p) for u, p in self.users.items()} | {None}:
            return web.json_response({"details": "bad credentials"}, status=401)
        if given is None and not self.anonymous_tokens:
            return web.json_response({"details": "login required"}, status=401)
        token = f"token-{self.requests(path='/token') - 1}"
        self._issued[token] = request.query.get("scope", "")
        return web.json_response({self.token_field: token, "expires_in": 300})


@pytest.fixture(autouse=True)
def no_docker_login(tmp_path, monkeypatch):
    """Keep the machine's own ~/.docker/config.json out of these tests."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


@pytest.fixture
async def fake():
    registry = FakeRegistry()
    await registry.server.start_server()
    registry.put("app", "1", {"schemaVersion": 2, "mediaType": OCI_MANIFEST})
    yield registry
    await registry.server.close()


def status(code: int, **headers: str) -> Callable[[], web.Response]:
    return lambda: web.Response(status=code, headers=headers)


# ---------------------------------------------------------------- retries


async def test_429_waits_for_retry_after_then_succeeds(fake):
    fake.faults = [status(429, **{"Retry-After": "1"})]
    async with RegistryClient(max_retry_after=0.3) as client:
        started = time.monotonic()
        head = await client.head_manifest(fake.ref("app:1"))
        waited = time.monotonic() - started
    assert head.digest == sha256_digest(fake.manifests[("app", "1")][1])
    assert 0.3 <= waited < 1.0  # Retry-After honoured, capped by max_retry_after
    assert fake.requests("HEAD") == 2 and client.requests_sent == 2


async def test_429_retry_after_in_seconds_is_honoured(fake):
    fake.faults = [status(429, **{"Retry-After": "0"}), status(429, **{"Retry-After": "0"})]
    async with RegistryClient() as client:
        started = time.monotonic()
        await client.head_manifest(fake.ref("app:1"))
    assert time.monotonic() - started < 0.5  # not the 1 s default, nor exponential back-off
    assert fake.requests("HEAD") == 3


async def test_429_retry_after_as_http_date(fake):
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    fake.faults = [status(429, **{"Retry-After": past})]
    async with RegistryClient() as client:
        started = time.monotonic()
        await client.head_manifest(fake.ref("app:1"))
    assert time.monotonic() - started < 0.5


async def test_persistent_429_is_an_error_naming_the_rate_limit(fake):
    fake.faults = [status(429, **{"Retry-After": "0", "RateLimit-Remaining": "0;w=21600"})] * 3
    async with RegistryClient(attempts=3) as client:
        with pytest.raises(RegistryError) as caught:
            await client.head_manifest(fake.ref("app:1"))
    message = str(caught.value)
    assert "429" in message and fake.address in message and "tried 3 times" in message
    assert client.rate_limit_remaining == {fake.address: 0}


async def test_503_twice_then_success(fake):
    fake.faults = [status(503), status(503)]
    async with RegistryClient() as client:
        started = time.monotonic()
        head = await client.head_manifest(fake.ref("app:1"))
    assert head.media_type == OCI_MANIFEST
    assert fake.requests("HEAD") == 3
    assert 0.5 <= time.monotonic() - started < 2.0  # exponential back-off: 0.2 s, then 0.4 s


@pytest.fixture
def retry_loops(monkeypatch) -> list[list[float]]:
    """The waits of each tenacity retry loop the client starts (each wait recorded, not slept)."""
    loops: list[list[float]] = []

    class Recorded(registry.AsyncRetrying):
        def __init__(self, **options):
            waits: list[float] = []
            loops.append(waits)

            async def sleep(seconds: float) -> None:
                waits.append(seconds)

            super().__init__(sleep=sleep, **options)

    monkeypatch.setattr(registry, "AsyncRetrying", Recorded)
    return loops


async def test_a_first_success_is_one_attempt_outside_the_retry_loop(fake, retry_loops):
    async with RegistryClient() as client:
        await client.head_manifest(fake.ref("app:1"))
    assert fake.requests("HEAD") == 1 and client.requests_sent == 1
    assert retry_loops == []  # the common case pays nothing for retrying


async def test_a_transient_failure_is_retried_with_the_same_back_off(fake, retry_loops):
    fake.faults = [status(503), status(502), status(429, **{"Retry-After": "3"})]
    async with RegistryClient(attempts=4, max_retry_after=2.5) as client:
        head = await client.head_manifest(fake.ref("app:1"))
    assert head.media_type == OCI_MANIFEST
    assert fake.requests("HEAD") == 4 and client.requests_sent == 4
    # The first failure counts as tenacity's first attempt: 0.2 s, 0.4 s, then Retry-After
    # (capped), as when every attempt ran inside the loop.
    assert retry_loops == [[0.2, 0.4, 2.5]]


async def test_attempts_count_the_first_one(fake, retry_loops):
    fake.faults = [status(500)] * 3
    async with RegistryClient(attempts=3) as client:
        with pytest.raises(RegistryError, match="tried 3 times"):
            await client.head_manifest(fake.ref("app:1"))
    assert fake.requests("HEAD") == 3 and retry_loops == [[0.2, 0.4]]


async def test_one_attempt_is_never_retried(fake, retry_loops):
    fake.faults = [status(503)]
    async with RegistryClient(attempts=1) as client:
        with pytest.raises(RegistryError, match=r"\(tried once\)"):
            await client.head_manifest(fake.ref("app:1"))
    assert fake.requests("HEAD") == 1 and retry_loops == [[]]


async def test_persistent_500_is_an_error_naming_host_and_status(fake):
    fake.faults = [status(500)] * 5
    async with RegistryClient(attempts=2) as client:
        with pytest.raises(RegistryError) as caught:
            await client.head_manifest(fake.ref("app:1"))
    message = str(caught.value)
    assert f"registry {fake.address} failed (500 Internal Server Error)" in message
    assert message.startswith(f"{fake.address}/app:1: ") and "\n" not in message
    assert fake.requests("HEAD") == 2


async def test_connection_refused_is_a_clear_error():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with RegistryClient(attempts=1) as client:
        with pytest.raises(RegistryError) as caught:
            await client.head_manifest(ImageReference.parse(f"127.0.0.1:{port}/app:1"))
    assert str(caught.value) == (f"127.0.0.1:{port}/app:1: cannot reach registry 127.0.0.1:{port} "
                                 f"at http://127.0.0.1:{port}: connection refused (tried once); "
                                 "check that it is running and that its endpoint is right")
    assert caught.value.__suppress_context__  # no aiohttp traceback behind the message


async def test_timeout_is_a_clear_error():
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response()

    app = web.Application()
    app.router.add_get("/v2/{tail:.*}", slow)
    async with TestServer(app, host="127.0.0.1") as server:
        async with RegistryClient(attempts=1, timeout=0.1) as client:
            with pytest.raises(RegistryError, match=r"did not answer within 0.1s"):
                await client.head_manifest(ImageReference.parse(f"127.0.0.1:{server.port}/a:1"))


# ---------------------------------------------------------------- errors


async def test_unknown_tag_is_manifest_unknown(fake):
    async with RegistryClient() as client:
        with pytest.raises(RegistryError) as caught:
            await client.head_manifest(fake.ref("app:2"))
    assert str(caught.value) == (f"{fake.address}/app:2: manifest unknown (the tag does not exist "
                                 f"in {fake.address})")


async def test_other_client_errors_carry_the_registry_error_code(fake):
    fake.faults = [lambda: web.json_response(
        {"errors": [{"code": "DENIED", "message": "requested access is denied"}]}, status=400)]
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match=r"refused the request \(400 Bad Request: DENIED"):
            await client.get_manifest(fake.ref("app:1"))


# ---------------------------------------------------------------- auth


async def test_bearer_challenge_gets_one_token_for_two_lookups(fake):
    fake.auth = "bearer"
    async with RegistryClient() as client:
        first = await client.head_manifest(fake.ref("app:1"))
        second = await client.head_manifest(fake.ref("app:1"))
    assert first == second
    assert fake.requests(path="/token") == 1
    method, path, authorization = next(e for e in fake.log if "/token" in e[1])
    assert "service=fake-registry" in path and "scope=repository:app:pull" in path
    assert authorization is None  # no credentials: anonymous token
    assert fake.requests("HEAD") == 3  # challenged once, then the cached token is sent up front
    assert client.requests_sent == 4


async def test_bearer_token_for_another_repository_is_fetched_before_asking(fake):
    fake.auth = "bearer"
    fake.put("other", "1", {"schemaVersion": 2})
    async with RegistryClient() as client:
        await client.head_manifest(fake.ref("app:1"))
        await client.head_manifest(fake.ref("other:1"))
    assert fake.requests(path="/token") == 2
    assert fake.requests("HEAD", "/other/") == 1  # no 401 round trip for the second repository


async def test_concurrent_lookups_share_one_token_request(fake):
    fake.auth = "bearer"
    async with RegistryClient() as client:
        heads = await asyncio.gather(*(client.head_manifest(fake.ref("app:1")) for _ in range(20)))
    assert len(set(heads)) == 1
    assert fake.requests(path="/token") == 1


async def test_a_rejected_cached_token_is_replaced_once(fake):
    fake.auth = "bearer"
    async with RegistryClient() as client:
        await client.head_manifest(fake.ref("app:1"))
        fake.revoke_tokens()  # e.g. the registry's token key was rotated
        await client.head_manifest(fake.ref("app:1"))
    assert fake.requests(path="/token") == 2
    assert [a for m, _, a in fake.log if m == "HEAD"] == [None, "Bearer token-0", "Bearer token-0",
                                                          "Bearer token-1"]


async def test_unreachable_token_server_is_named(fake):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fake.auth, fake.realm = "bearer", f"http://127.0.0.1:{port}/token"
    async with RegistryClient(attempts=1) as client:
        with pytest.raises(RegistryError) as caught:
            await client.head_manifest(fake.ref("app:1"))
    assert (f"cannot reach the token server for {fake.address} at http://127.0.0.1:{port}: "
            "connection refused") in str(caught.value)


async def test_bearer_uses_configured_credentials_and_access_token_field(fake):
    fake.auth, fake.anonymous_tokens, fake.token_field = "bearer", False, "access_token"
    settings = RegistrySettings(host=fake.address, username="alice", password="secret")
    async with RegistryClient([settings]) as client:
        await client.head_manifest(fake.ref("app:1"))
    token_request = next(e for e in fake.log if "/token" in e[1])
    assert token_request[2] == basic("alice", "secret")


async def test_bearer_with_wrong_credentials_is_unauthorized(fake):
    fake.auth = "bearer"
    settings = RegistrySettings(host=fake.address, username="alice", password="wrong")
    async with RegistryClient([settings]) as client:
        with pytest.raises(RegistryError) as caught:
            await client.head_manifest(fake.ref("app:1"))
    message = str(caught.value)
    assert f"unauthorized: the token server http://{fake.address}/token refused" in message
    assert f"check the credentials for {fake.address}" in message


async def test_basic_challenge_with_credentials_from_config(fake):
    fake.auth = "basic"
    settings = RegistrySettings(host=fake.address, username="alice", password="secret")
    async with RegistryClient([settings]) as client:
        await client.head_manifest(fake.ref("app:1"))
        await client.head_manifest(fake.ref("app:1"))
    assert [a for _, _, a in fake.log] == [None, basic("alice", "secret"), basic("alice", "secret")]


@pytest.mark.parametrize("key", ["{host}", "https://{host}", "http://{host}/v2/"])
async def test_basic_challenge_with_credentials_from_docker_config(fake, tmp_path, key):
    fake.auth = "basic"
    config = tmp_path / "config.json"
    auth = base64.b64encode(b"alice:secret").decode()
    config.write_text(json.dumps({"auths": {key.format(host=fake.address): {"auth": auth}},
                                  "credsStore": "desktop", "credHelpers": {"gcr.io": "gcr"}}))
    async with RegistryClient(docker_config=config) as client:
        await client.head_manifest(fake.ref("app:1"))
    assert fake.log[-1][2] == basic("alice", "secret")


async def test_docker_config_found_through_DOCKER_CONFIG(fake, tmp_path, monkeypatch):
    fake.auth = "basic"
    (tmp_path / "dc").mkdir()
    (tmp_path / "dc" / "config.json").write_text(json.dumps(
        {"auths": {fake.address: {"username": "alice", "password": "secret"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    async with RegistryClient() as client:
        await client.head_manifest(fake.ref("app:1"))
    assert fake.log[-1][2] == basic("alice", "secret")


async def test_basic_challenge_without_credentials_is_unauthorized(fake):
    fake.auth = "basic"
    async with RegistryClient() as client:
        with pytest.raises(RegistryError) as caught:
            await client.head_manifest(fake.ref("app:1"))
    assert str(caught.value) == (
        f"{fake.address}/app:1: unauthorized: check the credentials for {fake.address} "
        "(config registries[].username/password_env or ~/.docker/config.json)")
    assert fake.requests("HEAD") == 1


async def test_basic_challenge_with_wrong_password_is_unauthorized(fake):
    fake.auth = "basic"
    settings = RegistrySettings(host=fake.address, username="alice", password="nope")
    async with RegistryClient([settings]) as client:
        with pytest.raises(RegistryError, match="unauthorized: check the credentials"):
            await client.head_manifest(fake.ref("app:1"))
    assert fake.requests("HEAD") == 2  # anonymous, then once with the credentials


async def test_password_env(fake, monkeypatch):
    fake.auth = "basic"
    monkeypatch.setenv("BASEWATCH_TEST_PASSWORD", "secret")
    settings = RegistrySettings(host=fake.address, username="alice",
                                password_env="BASEWATCH_TEST_PASSWORD")
    async with RegistryClient([settings]) as client:
        await client.head_manifest(fake.ref("app:1"))
    assert fake.log[-1][2] == basic("alice", "secret")


def test_missing_password_env_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("BASEWATCH_TEST_PASSWORD", raising=False)
    settings = RegistrySettings(host="registry.example.com", username="alice",
                                password_env="BASEWATCH_TEST_PASSWORD")
    with pytest.raises(RegistryError) as caught:
        RegistryClient([settings])
    assert str(caught.value) == (
        "registry registry.example.com: environment variable BASEWATCH_TEST_PASSWORD "
        "(registries[].password_env) is not set; export it or use password")


def test_docker_hub_credentials_are_found_under_the_v1_index_url(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
        "ghcr.io": {}, "broken.example.com": {"auth": "not base64!"}}}))
    store = CredentialStore(docker_config=config)
    assert (store.get("docker.io").username, store.get("docker.io").password) == ("hub", "pw")
    assert store.get("ghcr.io") is None and store.get("broken.example.com") is None
    assert "pw" not in repr(store.get("docker.io"))


def test_invalid_docker_config_is_a_clear_error(tmp_path):
    config = tmp_path / "config.json"
    config.write_text("{not json")
    with pytest.raises(RegistryError, match=rf"Docker config {config} is not valid JSON"):
        CredentialStore(docker_config=config).get("ghcr.io")


def test_challenge_parsing():
    challenge = Challenge.parse('Bearer realm="https://auth.docker.io/token",'
                                'service="registry.docker.io",scope="repository:library/node:pull"')
    assert challenge.scheme == "bearer"
    assert challenge.params == {"realm": "https://auth.docker.io/token",
                                "service": "registry.docker.io",
                                "scope": "repository:library/node:pull"}
    assert Challenge.parse("Basic realm=registry").params == {"realm": "registry"}


def test_tokens_expire_a_little_early():
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.put("r", "repository:a:pull", "t1", 300)
    cache.put("r", "repository:b:pull", "t2", None)  # no expires_in: 60 s
    now[0] = 289.0
    assert cache.get("r", "repository:a:pull") == "t1"
    assert cache.get("r", "repository:b:pull") is None
    now[0] = 291.0
    assert cache.get("r", "repository:a:pull") is None


# ---------------------------------------------------------------- platforms and caching


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
async def test_index_resolves_the_platform_and_is_fetched_once(fake, media_type):
    index = fake.put_index("node", "20", {"linux/amd64": AMD64, "linux/arm64/v8": ARM64,
                                         "unknown/unknown": "sha256:" + "c" * 64}, media_type)
    async with RegistryClient() as client:
        amd64 = await client.platform_digest(fake.ref("node:20"), Platform.parse("linux/amd64"))
        arm64 = await client.platform_digest(fake.ref("node:20"), Platform.parse("linux/arm64"))
    assert amd64 == PlatformDigest(AMD64, index)
    assert arm64 == PlatformDigest(ARM64, index)
    assert fake.requests("HEAD") == 2 and fake.requests("GET") == 1
    assert fake.log[1][1] == f"/v2/node/manifests/{index}"  # the index is fetched by digest


async def test_changed_index_is_fetched_again(fake):
    fake.put_index("node", "20", {"linux/amd64": AMD64})
    async with RegistryClient() as client:
        await client.platform_digest(fake.ref("node:20"), Platform.parse("linux/amd64"))
        patched = "sha256:" + "d" * 64
        new_index = fake.put_index("node", "20", {"linux/amd64": patched})
        result = await client.platform_digest(fake.ref("node:20"), Platform.parse("linux/amd64"))
    assert result == PlatformDigest(patched, new_index)
    assert fake.requests("GET") == 2


async def test_single_platform_manifest_is_its_own_platform_digest(fake):
    async with RegistryClient() as client:
        result = await client.platform_digest(fake.ref("app:1"), Platform.parse("linux/arm64"))
    assert result == PlatformDigest(sha256_digest(fake.manifests[("app", "1")][1]), None)
    assert fake.requests("GET") == 0


async def test_no_matching_platform_lists_what_the_index_has(fake):
    fake.put_index("node", "20", {"linux/amd64": AMD64, "linux/arm/v7": ARM64})
    async with RegistryClient() as client:
        with pytest.raises(RegistryError) as caught:
            await client.platform_digest(fake.ref("node:20"), Platform.parse("linux/s390x"))
    assert str(caught.value) == (f"{fake.address}/node:20: no linux/s390x image in the index (it "
                                 "has linux/amd64, linux/arm/v7); set the task's platform to one "
                                 "of those")


async def test_get_by_digest_is_cached(fake):
    digest = sha256_digest(fake.manifests[("app", "1")][1])
    ref = fake.ref(f"app@{digest}")
    async with RegistryClient() as client:
        first = await client.get_manifest(ref)
        second = await client.get_manifest(ref)
        await client.get_manifest(fake.ref("app:1"))
        await client.get_manifest(fake.ref("app:1"))
    assert first == second == (ManifestHead(digest, OCI_MANIFEST),
                               {"schemaVersion": 2, "mediaType": OCI_MANIFEST})
    assert fake.requests("GET") == 3  # by tag is never cached: the tag may move


async def test_head_without_digest_header_falls_back_to_get(fake):
    fake.send_digest = False
    async with RegistryClient() as client:
        head = await client.head_manifest(fake.ref("app:1"))
    assert head.digest == sha256_digest(fake.manifests[("app", "1")][1])
    assert fake.requests("GET") == 1


async def test_rate_limit_header_is_recorded_per_host(fake):
    fake.headers = {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "76;w=21600"}
    async with RegistryClient() as client:
        await client.head_manifest(fake.ref("app:1"))
    assert client.rate_limit_remaining == {fake.address: 76}


async def test_a_rate_limit_header_that_is_not_a_number_is_ignored(fake):
    fake.headers = {"RateLimit-Remaining": "²"}  # isdigit() says yes, int() says no
    async with RegistryClient() as client:
        head = await client.head_manifest(fake.ref("app:1"))
    assert head.digest.startswith("sha256:")
    assert client.rate_limit_remaining == {}


async def test_manifest_requests_accept_every_manifest_type():
    accepted = []

    async def capture(request: web.Request) -> web.Response:
        accepted.append(request.headers["Accept"])
        return web.Response(headers={"Docker-Content-Digest": AMD64, "Content-Type": OCI_MANIFEST})

    app = web.Application()
    app.router.add_get("/v2/{tail:.*}", capture)
    async with TestServer(app, host="127.0.0.1") as server:
        async with RegistryClient() as client:
            await client.head_manifest(ImageReference.parse(f"127.0.0.1:{server.port}/a:1"))
    assert set(accepted[0].split(", ")) == {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json"}


# ---------------------------------------------------------------- endpoints


def test_endpoint_mapping():
    client = RegistryClient([
        RegistrySettings(host="mirror.internal", endpoint="http://10.0.0.5:5000"),
        RegistrySettings(host="docker.io", endpoint="https://hub-mirror.example")])
    assert client.endpoint("mirror.internal") == "http://10.0.0.5:5000"
    assert client.endpoint("docker.io") == "https://hub-mirror.example"
    assert RegistryClient().endpoint("docker.io") == "https://registry-1.docker.io"
    assert client.endpoint("ghcr.io") == "https://ghcr.io"
    assert client.endpoint("registry.example.com:8443") == "https://registry.example.com:8443"
    assert client.endpoint("localhost:5000") == "http://localhost:5000"
    assert client.endpoint("localhost") == "http://localhost"
    assert client.endpoint("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert client.endpoint("127.3.2.1") == "http://127.3.2.1"
    assert client.endpoint("[::1]:5000") == "http://[::1]:5000"
    assert client.endpoint("localhost.example.com") == "https://localhost.example.com"


async def test_request_rate_cap_spaces_requests_to_one_registry():
    """Twenty checks falling due at once reach a registry capped at 20/s over about a second."""
    from basewatch.oci.pacing import RequestPacer

    # The start each request is given, on a clock of the test's own: when a busy machine
    # wakes the sleepers is not the pacer's to decide.
    now, starts = 100.0, []

    async def sleep(seconds: float) -> None:
        starts.append(now + seconds)

    pacer = RequestPacer(20.0, clock=lambda: now, sleep=sleep)
    await asyncio.gather(*(pacer.wait() for _ in range(20)))
    assert starts == pytest.approx([100.0 + 0.05 * n for n in range(1, 20)])


async def test_configured_rate_cap_paces_the_client(fake):
    settings = RegistrySettings(host=fake.address, endpoint=f"http://{fake.address}",
                                max_requests_per_second=10)
    async with RegistryClient([settings]) as client:
        started = time.monotonic()
        await asyncio.gather(*(client.head_manifest(fake.ref("app:1")) for _ in range(6)))
        elapsed = time.monotonic() - started
    assert len(fake.log) == 6
    assert elapsed >= 5 * 0.1 * 0.9, "six requests at 10/s span at least half a second"


# ---------------------------------------------------------------- body limits


def oversized(chunked: bool) -> Callable[[], web.Response]:
    """A body just past the 4 MiB limit, announced by Content-Length or chunked (unannounced)."""
    body = b"{" + b" " * (4 * 1024 * 1024)

    def respond() -> web.Response:
        response = web.Response(body=body, headers={"Content-Type": OCI_INDEX,
                                                    "Docker-Content-Digest": AMD64})
        if chunked:
            response.enable_chunked_encoding()
        return response
    return respond


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_manifest_over_the_body_limit_is_refused(fake, chunked):
    fake.faults = [oversized(chunked)]
    async with RegistryClient() as client:
        with pytest.raises(RegistryError) as caught:
            await client.get_manifest(fake.ref("app:1"))
    assert str(caught.value) == (f"{fake.address}/app:1: registry {fake.address} sent a "
                                 "response larger than 4 MiB, the most basewatch reads (the "
                                 "limit distribution sets for manifests)")
    assert fake.requests("GET") == 1  # not retried: the registry would only send it again


async def test_a_head_of_a_large_manifest_is_fine(fake):
    fake.faults = [lambda: web.Response(headers={"Content-Type": OCI_MANIFEST,
                                                 "Docker-Content-Digest": AMD64,
                                                 "Content-Length": str(64 << 20)})]
    async with RegistryClient() as client:
        head = await client.head_manifest(fake.ref("app:1"))
    assert head.digest == AMD64


async def test_a_token_response_over_the_body_limit_is_refused(fake):
    fake.auth = "bearer"

    async def token(request: web.Request) -> web.Response:
        return oversized(True)()

    token_server = web.Application()
    token_server.router.add_get("/token", token)
    async with TestServer(token_server, host="127.0.0.1") as tokens:
        fake.realm = f"http://127.0.0.1:{tokens.port}/token"
        async with RegistryClient() as client:
            with pytest.raises(RegistryError, match="the token server for .* sent a response "
                                                    "larger than 4 MiB"):
                await client.head_manifest(fake.ref("app:1"))


# ---------------------------------------------------------------- addresses


@pytest.fixture
def public_looking(monkeypatch):
    """127.0.0.3 stands for a public address: a registry there is an unlisted public one."""
    import basewatch.netpolicy

    real = basewatch.netpolicy.is_internal
    monkeypatch.setattr(basewatch.netpolicy, "is_internal",
                        lambda address: str(address) != "127.0.0.3" and real(address))


@pytest.fixture
async def public_fake(public_looking):
    registry = FakeRegistry("127.0.0.3")
    await registry.server.start_server()
    registry.put("app", "1", {"schemaVersion": 2, "mediaType": OCI_MANIFEST})
    yield registry
    await registry.server.close()


async def test_an_unlisted_registry_on_loopback_is_not_contacted(fake):
    async with RegistryClient(guard_addresses=True) as client:
        with pytest.raises(RegistryAddressRefused) as caught:
            await client.head_manifest(fake.ref("app:1"))
    assert str(caught.value) == (
        f"{fake.address}/app:1: registry {fake.address} at http://{fake.address} may not be "
        "contacted: 127.0.0.1 is a loopback address, which the daemon contacts only for hosts "
        f"listed in its registries; list the registry {fake.address} under registries in the "
        "config to allow it")
    assert fake.log == []


async def test_a_listed_registry_and_the_realm_it_names_on_loopback_are_trusted(fake):
    fake.auth = "bearer"
    async with RegistryClient([RegistrySettings(host=fake.address)],
                              guard_addresses=True) as client:
        await client.head_manifest(fake.ref("app:1"))
    assert fake.requests(path="/token") == 1


async def test_an_unlisted_registry_may_not_send_the_daemon_to_a_loopback_realm(fake, public_fake):
    public_fake.auth = "bearer"
    public_fake.realm = f"http://{fake.address}/token"  # where the daemon itself is
    async with RegistryClient(guard_addresses=True) as client:
        with pytest.raises(RegistryAddressRefused, match=(
                f"the token server for {public_fake.address} at http://{fake.address} may "
                "not be contacted: 127.0.0.1 is a loopback address")):
            await client.head_manifest(public_fake.ref("app:1"))
    assert public_fake.requests("HEAD") == 1 and fake.log == []


async def test_an_unlisted_registry_may_not_redirect_the_daemon_to_loopback(fake, public_fake):
    public_fake.faults = [lambda: web.Response(status=307, headers={
        "Location": f"http://{fake.address}/v2/app/manifests/1"})]
    async with RegistryClient(guard_addresses=True) as client:
        with pytest.raises(RegistryAddressRefused, match="127.0.0.1 is a loopback address"):
            await client.get_manifest(public_fake.ref("app:1"))
    assert fake.log == []


async def test_redirects_are_followed_and_credentials_stay_with_their_origin(fake, public_fake):
    fake.auth = "basic"
    settings = RegistrySettings(host=fake.address, username="alice", password="secret")
    async with RegistryClient([settings], guard_addresses=True) as client:
        await client.head_manifest(fake.ref("app:1"))  # learns the basic challenge
        fake.faults = [lambda: web.Response(status=302, headers={
            "Location": f"http://{public_fake.address}/v2/app/manifests/1"})]
        head, _ = await client.get_manifest(fake.ref("app:1"))
    assert head.digest == sha256_digest(public_fake.manifests[("app", "1")][1])
    assert fake.log[-1][2] == basic("alice", "secret")
    assert public_fake.log[-1][2] is None, "the password did not follow the redirect"


async def test_check_registry_refuses_before_the_engine_would_push_or_pull(fake):
    async with RegistryClient([RegistrySettings(host="listed.example")],
                              guard_addresses=True) as client:
        await client.check_registry(ImageReference.parse("listed.example/app:1"))
        await client.check_registry(ImageReference.parse("1.1.1.1:5000/app:1"))
        with pytest.raises(RegistryAddressRefused, match="^localhost:5/app:1: registry "
                                                         "localhost:5 at http://localhost:5 may "
                                                         "not be contacted: localhost resolves"):
            await client.check_registry(ImageReference.parse("localhost:5/app:1"))
    async with RegistryClient() as client:  # without the rule, as library users had it
        await client.check_registry(ImageReference.parse("localhost:5/app:1"))


# ---------------------------------------------------------------- pushing artifacts


def token_scopes(fake: FakeRegistry) -> list[str]:
    return [parse_qs(urlsplit(p).query)["scope"][0] for _, p, _ in fake.log if "/token" in p]


async def test_push_blob_uploads_once_then_finds_the_blob_there(fake):
    data = b"a run's log\n" * 1000
    async with RegistryClient() as client:
        digest = await client.push_blob(fake.ref("logs:ca1"), data)
        again = await client.push_blob(fake.ref("logs:ca1"), data)
    assert digest == again == sha256_digest(data)
    assert fake.blobs == {("logs", digest): data}
    # HEAD first; a monolithic upload (POST, PUT at the Location with its query and the digest);
    # the second push stops at the HEAD.
    assert [(m, p.partition("?")[0]) for m, p, _ in fake.log] == [
        ("HEAD", f"/v2/logs/blobs/{digest}"), ("POST", "/v2/logs/blobs/uploads/"),
        ("PUT", "/v2/logs/blobs/uploads/s0"), ("HEAD", f"/v2/logs/blobs/{digest}")]


async def test_an_artifact_is_pushed_with_a_token_scoped_pull_push(fake):
    fake.auth, fake.anonymous_tokens = "bearer", False
    settings = [RegistrySettings(host=fake.address, username="alice", password="secret")]
    manifest = canonical_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "artifactType": "application/vnd.example"})
    async with RegistryClient(settings) as client:
        config = await client.push_blob(fake.ref("logs:ca1"), b"{}")
        layer = await client.push_blob(fake.ref("logs:ca1"), b"the log")
        pushed = await client.put_manifest(fake.ref("logs:ca1"), manifest, OCI_MANIFEST)
        # Only the first request went without a token; one token served every other one.
        assert token_scopes(fake) == ["repository:logs:pull,push"]
        assert [a for _, p, a in fake.log if "/token" not in p][0] is None
        assert {a for _, p, a in fake.log[2:] if "/token" not in p} == {"Bearer token-0"}
        # Reading afterwards asks for a token scoped to what it does: pull.
        head = await client.head_manifest(fake.ref("logs:ca1"))
    assert pushed == head.digest == sha256_digest(manifest)
    assert {("logs", config), ("logs", layer)} == set(fake.blobs)
    assert token_scopes(fake) == ["repository:logs:pull,push", "repository:logs:pull"]


async def test_a_pull_token_is_not_used_for_a_push(fake):
    fake.auth = "bearer"
    async with RegistryClient() as client:
        await client.head_manifest(fake.ref("app:1"))  # a pull token, cached
        await client.push_blob(fake.ref("app:1"), b"blob")
    assert token_scopes(fake) == ["repository:app:pull", "repository:app:pull,push"]


async def test_an_upload_failing_with_500_is_retried_with_back_off(fake):
    fake.upload_faults = [status(500)]
    async with RegistryClient() as client:
        started = time.monotonic()
        digest = await client.push_blob(fake.ref("logs:ca1"), b"the log")
    assert 0.2 <= time.monotonic() - started < 1.5  # the client's back-off: 0.2 s
    assert fake.blobs == {("logs", digest): b"the log"}
    assert fake.requests("PUT") == 2


async def test_an_upload_failing_every_time_names_the_registry_and_the_tries(fake):
    fake.upload_faults = [status(503)] * 2
    async with RegistryClient(attempts=2) as client:
        with pytest.raises(RegistryError) as caught:
            await client.push_blob(fake.ref("logs:ca1"), b"the log")
    assert str(caught.value) == (f"{fake.address}/logs:ca1: registry {fake.address} failed (503 "
                                 "Service Unavailable) (tried 2 times); try again later, or "
                                 "check the registry's health")


async def test_a_refused_upload_carries_the_registry_error_code(fake):
    fake.upload_faults = [lambda: web.json_response(
        {"errors": [{"code": "DENIED", "message": "requested access is denied"}]}, status=403)]
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match=r"^[^ ]+/logs:ca1: unauthorized: check the "
                                                rf"credentials for {fake.address}"):
            await client.push_blob(fake.ref("logs:ca1"), b"the log")
        fake.upload_faults = [lambda: web.json_response(
            {"errors": [{"code": "SIZE_INVALID", "message": "too big"}]}, status=400)]
        with pytest.raises(RegistryError, match=rf"registry {fake.address} refused the blob "
                                                r"upload \(400 Bad Request: SIZE_INVALID too "
                                                r"big\)"):
            await client.push_blob(fake.ref("logs:ca1"), b"the log")


async def test_an_upload_sent_to_another_origin_is_refused(fake):
    fake.upload_location = "http://elsewhere.example/v2/logs/blobs/uploads/s0"
    async with RegistryClient() as client:
        with pytest.raises(RegistryError, match="started an upload at 'http://elsewhere.example/"
                                                "v2/logs/blobs/uploads/s0', not under its "
                                                f"endpoint http://{fake.address}"):
            await client.push_blob(fake.ref("logs:ca1"), b"the log")
    assert fake.requests("PUT") == 0


async def test_an_absolute_upload_location_at_the_endpoint_is_followed(fake):
    fake.upload_location = f"http://{fake.address}/v2/logs/blobs/uploads/s0?_state=a%2Bb%3D"
    async with RegistryClient() as client:
        digest = await client.push_blob(fake.ref("logs:ca1"), b"the log")
    assert fake.blobs == {("logs", digest): b"the log"}
