"""Reading manifest digests from OCI distribution registries (Docker Hub, ACR, distribution...)."""
from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential
from yarl import URL

from basewatch import __version__
from basewatch.bounded import read_bounded
from basewatch.errors import RegistryAddressRefused, RegistryError
from basewatch.netpolicy import AddressRefused, HostPolicy
from basewatch.oci.credentials import Challenge, CredentialStore, TokenCache
from basewatch.oci.pacing import RequestPacer
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.oci.settings import RegistrySettings

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
# Without the index types a registry answers 404 for a multi-arch tag.
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

_LOOPBACK = re.compile(r"^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?$")
_DIGEST_CACHE_SIZE = 4096
_USER_AGENT = f"basewatch/{__version__}"
_EXPONENTIAL = wait_exponential(multiplier=0.2, max=5.0)  # 0.2 s, 0.4 s, 0.8 s ... 5 s
_UNAUTHORIZED_HINT = "(config registries[].username/password_env or ~/.docker/config.json)"
# The most of any response body that is read (manifests, indexes, tokens, errors): distribution
# refuses manifests over 4 MiB itself, so nothing legitimate is larger.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def default_endpoint(registry: str) -> str:
    """Where a registry's API is when the config says nothing about it."""
    if registry == "docker.io":
        return "https://registry-1.docker.io"
    scheme = "http" if _LOOPBACK.match(registry) else "https"
    return f"{scheme}://{registry}"


def endpoint_for(registry: str, settings: RegistrySettings | None) -> str:
    """The base URL for a registry host: its configured endpoint (a mirror), or the default."""
    if settings is not None and settings.endpoint:
        return settings.endpoint
    return default_endpoint(registry)


@dataclass(frozen=True)
class ManifestHead:
    digest: str  # Docker-Content-Digest
    media_type: str  # Content-Type
    size: int | None = dataclasses.field(default=None, compare=False)  # for index entries


@dataclass(frozen=True)
class PlatformDigest:
    digest: str  # the manifest for the platform; the tag's own digest when it is single-platform
    index_digest: str | None  # the index (manifest list) when the tag is multi-arch


@dataclass(frozen=True)
class _Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class _Transient(Exception):
    """A failure worth retrying: connection error, timeout, 5xx or 429."""

    def __init__(self, problem: str, advice: str, retry_after: float | None = None):
        super().__init__(problem)
        self.problem, self.advice, self.retry_after = problem, advice, retry_after


class RegistryClient:
    """An async client for the few registry API calls basewatch needs; one per daemon."""

    def __init__(self, registries: Sequence[RegistrySettings] = (), *,
                 docker_config: Path | None = None, max_connections: int = 100,
                 attempts: int = 4, max_retry_after: float = 60.0, timeout: float = 30.0,
                 guard_addresses: bool = False):
        """`guard_addresses`: a registry not in `registries`, and the realm and redirects it
        names, are contacted only at public addresses (the daemon's rule: a Dockerfile may name
        any registry, but must not make the daemon reach into its own network)."""
        self._settings = {r.host: r for r in registries}
        self._endpoints: dict[str, str] = {}
        self._unlisted = HostPolicy(setting="registries") if guard_addresses else None
        self._pacers = {r.host: RequestPacer(r.max_requests_per_second) for r in registries
                        if r.max_requests_per_second}
        self._credentials = CredentialStore(registries, docker_config)
        self._tokens = TokenCache()
        self._token_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._challenges: dict[str, Challenge] = {}  # what each host asked for last
        self._manifests: dict[tuple[str, str, str], tuple[ManifestHead, dict]] = {}
        self._max_connections = max_connections
        self._attempts = max(1, attempts)
        self._max_retry_after = max_retry_after
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._guarded_session: aiohttp.ClientSession | None = None
        self.requests_sent = 0
        self.rate_limit_remaining: dict[str, int] = {}

    async def __aenter__(self) -> "RegistryClient":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        for session in (self._session, self._guarded_session):
            if session is not None:
                await session.close()
        self._session = self._guarded_session = None

    def endpoint(self, registry: str) -> str:
        """The base URL for a registry host as written in image references."""
        endpoint = self._endpoints.get(registry)
        if endpoint is None:  # worked out once per host, not on each of 10,000 requests
            endpoint = self._endpoints[registry] = endpoint_for(registry,
                                                                self._settings.get(registry))
        return endpoint

    async def check_registry(self, ref: ImageReference) -> None:
        """Refuse `ref`'s registry now when it is one the daemon may not contact, before the
        engine (which resolves names itself and follows no rule of ours) pushes or pulls."""
        if self._unlisted is None or ref.registry in self._settings:
            return
        url = self.endpoint(ref.registry)
        parts = URL(url)
        try:
            self._unlisted.check_url(url)
            await self._unlisted.resolve(parts.host or "", parts.port or 443)
        except AddressRefused as refused:
            raise _refused(ref, f"registry {ref.registry}", url, refused) from None

    async def head_manifest(self, ref: ImageReference) -> ManifestHead:
        """The digest and media type a tag (or digest) points at, from a HEAD request."""
        response = await self._manifest_request("HEAD", ref)
        digest = response.headers.get("docker-content-digest")
        if not digest:  # some registries omit it on HEAD; the GET body tells the truth
            head, _ = await self.get_manifest(ref)
            return head
        length = response.headers.get("content-length")
        return ManifestHead(digest, _media_type(response),
                            int(length) if length and length.isdigit() else None)

    async def get_manifest(self, ref: ImageReference) -> tuple[ManifestHead, dict]:
        """The manifest itself; by-digest results are kept, since they never change."""
        key = (ref.registry, ref.repository, ref.digest or "")
        if ref.digest and key in self._manifests:
            return self._manifests[key]
        response = await self._manifest_request("GET", ref)
        computed = "sha256:" + hashlib.sha256(response.body).hexdigest()
        digest = response.headers.get("docker-content-digest") or computed
        if ref.digest and ref.digest.startswith("sha256:") and computed != ref.digest:
            raise RegistryError(f"{ref}: the registry sent a manifest whose digest is {computed};"
                                " the registry or a proxy in between is corrupting content")
        try:
            manifest = json.loads(response.body)
        except ValueError:
            raise RegistryError(f"{ref}: the registry sent a manifest that is not JSON") from None
        result = (ManifestHead(digest, _media_type(response), len(response.body)), manifest)
        if ref.digest:
            if len(self._manifests) >= _DIGEST_CACHE_SIZE:
                del self._manifests[next(iter(self._manifests))]
            self._manifests[key] = result
        return result

    async def platform_digest(self, ref: ImageReference, platform: Platform) -> PlatformDigest:
        """The manifest digest `ref` serves for `platform`; an unchanged index costs one HEAD."""
        head = await self.head_manifest(ref)
        if head.media_type not in INDEX_TYPES:
            return PlatformDigest(head.digest, None)
        _, index = await self.get_manifest(dataclasses.replace(ref, digest=head.digest))
        offered = []
        for entry in index.get("manifests") or []:
            fields = entry.get("platform") or {}
            os_name, arch = fields.get("os") or "", fields.get("architecture") or ""
            if not os_name or not arch or os_name == "unknown":  # attestations, not images
                continue
            try:
                if platform.matches(os_name, arch, fields.get("variant")):
                    return PlatformDigest(entry["digest"], head.digest)
            except ValueError:
                continue
            offered.append("/".join(p for p in (os_name, arch, fields.get("variant")) if p))
        raise RegistryError(f"{ref}: no {platform} image in the index (it has "
                            f"{', '.join(offered) or 'no platforms'}); set the task's platform "
                            "to one of those")

    # ------------------------------------------------------------------ HTTP

    async def put_manifest(self, ref: ImageReference, body: bytes, media_type: str) -> str:
        """Push a manifest (an index of platform images) under `ref`'s tag; its digest."""
        response = await self._manifest_request("PUT", ref, body, media_type)
        return response.headers.get("docker-content-digest") or \
            "sha256:" + hashlib.sha256(body).hexdigest()

    async def _manifest_request(self, method: str, ref: ImageReference, body: bytes | None = None,
                                media_type: str | None = None) -> _Response:
        path = f"/v2/{ref.repository}/manifests/{ref.digest or ref.tag or 'latest'}"
        response = await self._authorized(method, ref, path, body, media_type)
        if response.status == 404:
            what = "digest" if ref.digest else "tag"
            raise RegistryError(f"{ref}: manifest unknown (the {what} does not exist in "
                                f"{ref.registry})")
        if response.status >= 400:
            raise _request_refused(ref, "the request", response)
        return response

    async def _authorized(self, method: str, ref: ImageReference, path: str,
                          body: bytes | None = None, media_type: str | None = None, *,
                          actions: str | None = None) -> _Response:
        """Send with the auth the host asked for before; answer one new challenge, then give up.

        The token's scope is `actions`, by default `pull,push` when there is a body to send."""
        host = ref.registry
        actions = actions or ("pull" if body is None else "pull,push")
        headers = {"Accept": ACCEPT}
        if media_type is not None:
            headers["Content-Type"] = media_type
        authorization = await self._authorization(ref, actions=actions)
        if authorization:
            headers["Authorization"] = authorization
        response = await self._send(method, self.endpoint(host) + path, headers, ref, data=body)
        if response.status == 401 and "www-authenticate" in response.headers:
            challenge = Challenge.parse(response.headers["www-authenticate"])
            self._challenges[host] = challenge
            retry_authorization = await self._authorization(ref, rejected=authorization,
                                                            actions=actions)
            if retry_authorization and retry_authorization != authorization:
                headers["Authorization"] = retry_authorization
                response = await self._send(method, self.endpoint(host) + path, headers, ref,
                                            data=body)
        if response.status in (401, 403):
            raise RegistryError(f"{ref}: unauthorized: check the credentials for {host} "
                                f"{_UNAUTHORIZED_HINT}")
        return response

    async def _authorization(self, ref: ImageReference, rejected: str | None = None,
                             actions: str = "pull") -> str | None:
        """The Authorization header for `ref`, by the scheme its host last challenged with.

        `rejected` is a header the registry just refused: a cached token equal to it is replaced.
        """
        challenge = self._challenges.get(ref.registry)
        if challenge is None:
            return None
        credentials = self._credentials.get(ref.registry)
        if challenge.scheme == "basic":
            return credentials.basic_header if credentials else None
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return None
        scope = f"repository:{ref.repository}:{actions}"
        key = (ref.registry, scope)
        # One token request per scope, however many lookups are waiting for it.
        async with self._token_locks.setdefault(key, asyncio.Lock()):
            token = self._tokens.get(*key)
            if token is None or f"Bearer {token}" == rejected:
                token, expires_in = await self._fetch_token(ref, challenge, scope)
                self._tokens.put(ref.registry, scope, token, expires_in)
        return f"Bearer {token}"

    async def _fetch_token(self, ref: ImageReference, challenge: Challenge,
                           scope: str) -> tuple[str, float | None]:
        params = {"scope": scope}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        realm = challenge.params["realm"]
        url = str(URL(realm).update_query(params))
        headers = {}
        credentials = self._credentials.get(ref.registry)
        if credentials:
            headers["Authorization"] = credentials.basic_header
        response = await self._send("GET", url, headers, ref,
                                    server=f"the token server for {ref.registry}")
        if response.status in (401, 403):
            raise RegistryError(f"{ref}: unauthorized: the token server {realm} refused the "
                                f"credentials; check the credentials for {ref.registry} "
                                f"{_UNAUTHORIZED_HINT}")
        try:
            body = json.loads(response.body)
            token = body.get("token") or body["access_token"]
            expires_in = float(body["expires_in"]) if body.get("expires_in") else None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RegistryError(f"{ref}: the token server {realm} answered {response.status} "
                                "without a token; check the registry's auth setup") from None
        return token, expires_in

    async def _send(self, method: str, url: str, headers: dict[str, str], ref: ImageReference,
                    server: str | None = None, data: bytes | None = None) -> _Response:
        """One request, retried on connection errors, 5xx and 429; other statuses returned."""
        server = server or f"registry {ref.registry}"
        # The first attempt is sent outside tenacity: nearly every request succeeds at once,
        # and at 10,000 references a cycle the retry machinery alone costs a noticeable share.
        try:
            return await self._send_once(method, url, headers, ref, server, data)
        except _Transient as exc:
            failed = exc
        retrying = AsyncRetrying(stop=stop_after_attempt(self._attempts), wait=self._backoff,
                                 retry=retry_if_exception_type(_Transient), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    if failed is not None:
                        # Tenacity's first attempt is the one already made: the back-off,
                        # Retry-After and the count of tries stay what they were.
                        first, failed = failed, None
                        raise first
                    return await self._send_once(method, url, headers, ref, server, data)
        except _Transient as exc:
            tries = "once" if self._attempts == 1 else f"{self._attempts} times"
            raise RegistryError(f"{ref}: {exc.problem} (tried {tries}); {exc.advice}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_once(self, method: str, url: str, headers: dict[str, str],
                         ref: ImageReference, server: str, data: bytes | None = None
                         ) -> _Response:
        if (pacer := self._pacers.get(ref.registry)) is not None:
            await pacer.wait()
        self.requests_sent += 1
        # The realm a listed registry names, and where it redirects, are trusted with it.
        policy = self._unlisted if ref.registry not in self._settings else None
        try:
            response = await self._follow(method, url, headers, data, ref, server, policy)
        except AddressRefused as refused:
            raise _refused(ref, server, url, refused) from None
        except aiohttp.ClientSSLError as exc:  # retrying will not fix a certificate
            raise RegistryError(f"{ref}: TLS with {server} at {_origin(url)} failed: {exc}; "
                                "for a plain-HTTP registry set registries[].endpoint to "
                                f"http://{ref.registry}") from None
        except aiohttp.ClientConnectorError as exc:
            raise _Transient(f"cannot reach {server} at {_origin(url)}: {_reason(exc)}",
                             "check that it is running and that its endpoint is right") from None
        except asyncio.TimeoutError:
            raise _Transient(f"{server} at {_origin(url)} did not answer within "
                             f"{self._timeout.total:g}s", "try again later") from None
        except aiohttp.ClientError as exc:
            raise _Transient(f"lost the connection to {server} at {_origin(url)}: "
                             f"{exc.__class__.__name__}: {exc}", "try again later") from None
        self._note_rate_limit(ref.registry, response)
        if response.status == 429:
            raise _Transient(f"{server} is rate limiting us (429 Too Many Requests"
                             f"{_rate_limit_note(response)})",
                             "poll less often, or log in for a higher limit",
                             self._retry_after(response))
        if response.status >= 500:
            raise _Transient(f"{server} failed ({response.status} {response.reason})",
                             "try again later, or check the registry's health")
        return response

    async def _follow(self, method: str, url: str, headers: dict[str, str],
                      data: bytes | None, ref: ImageReference, server: str,
                      policy: HostPolicy | None) -> _Response:
        """One request and its redirects, followed by hand so each URL is checked."""
        for _ in range(MAX_REDIRECTS + 1):
            if policy is not None:
                policy.check_url(url)
            async with self._client(policy).request(method, url, headers=headers, data=data,
                                                    allow_redirects=False) as raw:
                location = raw.headers.get("Location")
                if raw.status not in _REDIRECTS or not location:
                    body = await _read_body(raw, method, ref, server)
                    return _Response(raw.status, raw.reason or "",
                                     {k.lower(): v for k, v in raw.headers.items()}, body)
                target = raw.url.join(URL(location))
            if target.origin() != URL(url).origin():  # credentials stay with their origin
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if raw.status == 303 or (raw.status in (301, 302) and method == "POST"):
                method, data = ("HEAD" if method == "HEAD" else "GET"), None
            url = str(target)
        raise RegistryError(f"{ref}: {server} redirected more than {MAX_REDIRECTS} times")

    def _client(self, policy: HostPolicy | None = None) -> aiohttp.ClientSession:
        # Created on first use so it binds to the loop that runs the daemon.
        if policy is not None:
            if self._guarded_session is None:
                self._guarded_session = self._new_session(policy.resolver())
            return self._guarded_session
        if self._session is None:
            self._session = self._new_session(None)
        return self._session

    def _new_session(self, resolver) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections, resolver=resolver)
        return aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                     headers={"User-Agent": _USER_AGENT})

    def _backoff(self, retry_state) -> float:
        exc = retry_state.outcome.exception()
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        return _EXPONENTIAL(retry_state)

    def _retry_after(self, response: _Response) -> float:
        value = response.headers.get("retry-after", "").strip()
        seconds = 1.0
        if value.isdigit():
            seconds = float(value)
        elif value:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                pass
        return min(max(seconds, 0.0), self._max_retry_after)

    def _note_rate_limit(self, host: str, response: _Response) -> None:
        # Docker Hub: `ratelimit-remaining: 100;w=21600` (pulls left in the window, in seconds).
        value = response.headers.get("ratelimit-remaining", "")
        count = value.partition(";")[0].strip()
        # isdigit() alone takes '²', which int() refuses: only ASCII digits are a count.
        if count.isascii() and count.isdigit():
            self.rate_limit_remaining[host] = int(count)

    # ------------------------------------------------------------------ pushing artifacts

    async def push_blob(self, ref: ImageReference, data: bytes) -> str:
        """Upload `data` as a blob of `ref`'s repository, unless it is there already; its digest.

        Every request of a push asks for a token scoped `pull,push` from the start: a token-auth
        registry refuses an upload made with the `pull` token its first challenge would give."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        found = await self._authorized("HEAD", ref, f"/v2/{ref.repository}/blobs/{digest}",
                                       actions="pull,push")
        if found.status == 200:
            return digest
        if found.status != 404:
            raise _request_refused(ref, "the blob check", found)
        # A monolithic upload in two requests (POST for a session, PUT of the bytes), the one
        # every distribution registry supports.
        started = await self._authorized("POST", ref, f"/v2/{ref.repository}/blobs/uploads/",
                                         actions="pull,push")
        if started.status != 202:
            raise _request_refused(ref, "the blob upload", started)
        endpoint, named = self.endpoint(ref.registry), started.headers.get("location", "")
        location = str(URL(endpoint).join(URL(named)).update_query(digest=digest))
        # The client sends only to the registry's endpoint, so the session must be under it.
        if not named or not location.startswith(endpoint + "/"):
            raise RegistryError(f"{ref}: registry {ref.registry} started an upload at "
                                f"{named!r}, not under its endpoint {endpoint}")
        finished = await self._authorized("PUT", ref, location[len(endpoint):], data,
                                          "application/octet-stream")
        if finished.status != 201:
            raise _request_refused(ref, "the blob upload", finished)
        stored = finished.headers.get("docker-content-digest")
        if stored and stored != digest:
            raise RegistryError(f"{ref}: registry {ref.registry} stored the blob {digest} as "
                                f"{stored}")
        return digest


async def _read_body(raw: aiohttp.ClientResponse, method: str, ref: ImageReference,
                     server: str) -> bytes:
    """The body, or a RegistryError once it passes MAX_BODY_BYTES: a hostile registry could
    otherwise send an endless manifest index and the daemon would hold all of it."""
    if method == "HEAD":
        return b""  # Content-Length is the manifest's size, with no body behind it
    too_large = RegistryError(f"{ref}: {server} sent a response larger than "
                              f"{MAX_BODY_BYTES // (1024 * 1024)} MiB, the most basewatch reads "
                              "(the limit distribution sets for manifests)")
    return await read_bounded(raw, MAX_BODY_BYTES, too_large)


def _refused(ref: ImageReference, server: str, url: str,
             refused: AddressRefused) -> RegistryAddressRefused:
    return RegistryAddressRefused(
        f"{ref}: {server} at {_origin(url)} may not be contacted: {refused}; list the registry "
        f"{ref.registry} under registries in the config to allow it")


def _media_type(response: _Response) -> str:
    return response.headers.get("content-type", "").partition(";")[0].strip()


def _origin(url: str) -> str:
    return str(URL(url).origin())


def _reason(exc: aiohttp.ClientConnectorError) -> str:
    # asyncio words it as "Connect call failed ('127.0.0.1', 1)"; the errno says it plainly.
    if exc.errno and exc.errno > 0:  # negative ones are getaddrinfo's, whose strerror is fine
        return os.strerror(exc.errno).lower()
    return exc.strerror or str(exc)


def _rate_limit_note(response: _Response) -> str:
    remaining = response.headers.get("ratelimit-remaining")
    return f", {remaining.partition(';')[0]} pulls left" if remaining else ""


def _error_detail(response: _Response) -> str:
    """`: CODE message` from a registry's JSON error body, when it sent one."""
    try:
        errors = json.loads(response.body)["errors"]
        return f": {errors[0]['code']} {errors[0].get('message', '')}".rstrip()
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def _request_refused(ref: ImageReference, what: str, response: _Response) -> RegistryError:
    return RegistryError(f"{ref}: registry {ref.registry} refused {what} ({response.status} "
                         f"{response.reason}{_error_detail(response)})")
