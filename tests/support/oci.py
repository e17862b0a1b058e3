"""Push synthetic images and multi-platform indexes straight over the registry HTTP API.

No engine needed: a layer is a tiny gzipped tar made in memory, the config names the platform, and
manifests are PUT as the exact bytes whose sha256 is their digest. Fast enough for a benchmark to
create a thousand references: share one `ImagePusher` and gather the pushes, so repeated blobs are
mounted rather than uploaded (on a 2-CPU machine: 1000 single-platform repositories in about 6 s,
1000 tags of one repository in about 2 s; the registry is the bottleneck).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Descriptor:
    """What a manifest or index says about the content it points at."""

    media_type: str
    digest: str
    size: int
    platform: str | None = None  # os/arch[/variant], for index entries

    def to_json(self) -> dict:
        value: dict = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            os_name, arch, *variant = self.platform.split("/")
            value["platform"] = {"os": os_name, "architecture": arch}
            if variant:
                value["platform"]["variant"] = variant[0]
        return value


def layer_blob(content: bytes) -> tuple[bytes, str]:
    """A gzipped tar holding one file; returns (blob, diff_id). Same content, same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("basewatch-synthetic")
        info.size, info.mtime, info.mode = len(content), 0, 0o644
        tar.addfile(info, io.BytesIO(content))
    tar_bytes = buffer.getvalue()
    return gzip.compress(tar_bytes, mtime=0), sha256_digest(tar_bytes)


class PushError(Exception):
    """The registry refused a push."""


class ImagePusher:
    """Pushes to one registry at `address` ("127.0.0.1:PORT") with the given extra headers."""

    def __init__(self, session: aiohttp.ClientSession, address: str, *,
                 headers: Mapping[str, str] | None = None, scheme: str = "http"):
        self.session = session
        self.base_url = f"{scheme}://{address}"
        self.address = address
        self.headers = dict(headers or {})
        self._pushed: set[tuple[str, str]] = set()  # (repository, digest) blobs already there
        self._homes: dict[str, str] = {}  # digest -> a repository that has the blob, to mount from

    async def push_blob(self, repository: str, data: bytes) -> str:
        """Monolithic upload: POST to open an upload session, PUT the bytes with ?digest=.

        A blob this pusher already put in another repository is mounted from there instead: one
        request rather than two, which is what makes a thousand pushes quick.
        """
        digest = sha256_digest(data)
        if (repository, digest) in self._pushed:
            return digest
        url = f"{self.base_url}/v2/{repository}/blobs/uploads/"
        params = {"mount": digest, "from": self._homes[digest]} if digest in self._homes else {}
        async with self.session.post(url, params=params, headers=self.headers) as response:
            if response.status == 201:  # mounted
                self._pushed.add((repository, digest))
                return digest
            await self._expect(response, 202, f"start blob upload to {repository}")
            location = response.headers["Location"]
        if location.startswith("/"):
            location = self.base_url + location
        headers = {**self.headers, "Content-Type": "application/octet-stream"}
        async with self.session.put(location, params={"digest": digest}, data=data,
                                    headers=headers) as response:
            await self._expect(response, 201, f"upload blob {digest} to {repository}")
        self._pushed.add((repository, digest))
        self._homes.setdefault(digest, repository)
        return digest

    async def push_manifest(self, repository: str, reference: str, body: bytes,
                            media_type: str) -> str:
        """PUT a manifest under a tag or digest; returns the registry's Docker-Content-Digest."""
        url = f"{self.base_url}/v2/{repository}/manifests/{reference}"
        headers = {**self.headers, "Content-Type": media_type}
        async with self.session.put(url, data=body, headers=headers) as response:
            await self._expect(response, 201, f"put manifest {repository}:{reference}")
            return response.headers["Docker-Content-Digest"]

    async def push_image(self, repository: str, tag: str | None = None, *,
                         platform: str = "linux/amd64", content: bytes | str = b"",
                         labels: Mapping[str, str] | None = None) -> Descriptor:
        """A single-platform OCI image; pushed by digest when `tag` is None (index children)."""
        if isinstance(content, str):
            content = content.encode()
        layer, diff_id = layer_blob(content)
        os_name, arch, *variant = platform.split("/")
        config = {"architecture": arch, "os": os_name,
                  "config": {"Labels": dict(labels or {})},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
        if variant:
            config["variant"] = variant[0]
        config_bytes = canonical_json(config)
        await self.push_blob(repository, config_bytes)
        await self.push_blob(repository, layer)
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": Descriptor(OCI_CONFIG, sha256_digest(config_bytes),
                                 len(config_bytes)).to_json(),
            "layers": [Descriptor(OCI_LAYER, sha256_digest(layer), len(layer)).to_json()],
        }
        body = canonical_json(manifest)
        digest = await self.push_manifest(repository, tag or sha256_digest(body), body,
                                          OCI_MANIFEST)
        return Descriptor(OCI_MANIFEST, digest, len(body), platform)

    async def push_index(self, repository: str, tag: str, manifests: Sequence[Descriptor], *,
                         media_type: str = OCI_INDEX) -> Descriptor:
        """An index (or, with DOCKER_LIST, a manifest list) of already pushed images."""
        index = {"schemaVersion": 2, "mediaType": media_type,
                 "manifests": [m.to_json() for m in manifests]}
        body = canonical_json(index)
        digest = await self.push_manifest(repository, tag, body, media_type)
        return Descriptor(media_type, digest, len(body))

    async def push_multi_platform(
            self, repository: str, tag: str, platforms: Sequence[str], *,
            content: bytes | str = b"") -> tuple[Descriptor, list[Descriptor]]:
        """One image per platform (content differs by platform) and an index over them."""
        content = content.encode() if isinstance(content, str) else content
        images = [await self.push_image(repository, platform=p, content=content + p.encode())
                  for p in platforms]
        return await self.push_index(repository, tag, images), images

    async def _expect(self, response: aiohttp.ClientResponse, status: int, what: str) -> None:
        if response.status != status:
            raise PushError(f"{what} on {self.address}: {response.status} {response.reason}: "
                            f"{(await response.text())[:300]}")
