"""Base images without internet: `FROM scratch` plus Debian's static busybox, built on a real engine.

Shared by the demo, the end-to-end tests and the benchmarks. Needs the docker SDK (the venv).
Images for a foreign platform (linux/arm64, linux/arm/v7) are built for real: their `RUN` steps
run under qemu (stack.setup_emulation), and several platforms are joined into one index.
"""
from __future__ import annotations

import io
import json
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from stack import busybox_for, normalise_platform, setup_emulation  # scripts/, beside this file

BUSYBOX = Path("/bin/busybox")
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
# The registries are on loopback: never through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def split_tag(image: str) -> tuple[str, str]:
    repository, _, tag = image.rpartition(":")
    if "/" in tag or not repository:  # the colon was a registry port
        return image, "latest"
    return repository, tag


def split_repository(repository: str) -> tuple[str, str]:
    """`127.0.0.1:5000/multi` -> (`127.0.0.1:5000`, `multi`): the registry host and the name."""
    host, _, name = repository.partition("/")
    return host, name


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image, pushed under a tag of its own: what an index entry says about it."""

    platform: str  # os/arch[/variant]
    tag: str  # e.g. 127.0.0.1:5000/multi:1-linux-arm64
    digest: str  # its manifest's
    size: int  # its manifest's, in bytes
    media_type: str  # its manifest's

    def index_entry(self) -> dict:
        os_name, arch, *variant = self.platform.split("/")
        platform = {"architecture": arch, "os": os_name}
        if variant:
            platform["variant"] = variant[0]
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size,
                "platform": platform}


@dataclass(frozen=True)
class MultiPlatformImage:
    """An index pushed under one tag, over platform images pushed under their own tags."""

    image: str
    index_digest: str
    images: tuple[PlatformImage, ...]

    @property
    def digests(self) -> dict[str, str]:
        """Platform -> manifest digest."""
        return {i.platform: i.digest for i in self.images}


class BaseImages:
    """Builds busybox images with extra files, pushes them, and reads files back out of images."""

    def __init__(self, client: docker.DockerClient, workdir: Path):
        self.client = client
        self.workdir = workdir

    def context(self, image: str, files: dict[str, str] | None = None,
                platform: str | None = None) -> Path:
        """Write a build context for a busybox image holding `files` (path -> content).

        With a `platform`, the busybox is that platform's and a `RUN` writes `uname -m` to
        /etc/arch: under emulation, proof that qemu ran it.
        """
        context = self.workdir / image.replace("/", "_").replace(":", "_")
        if context.exists():
            shutil.rmtree(context)
        context.mkdir(parents=True)
        shutil.copy(BUSYBOX if platform is None else busybox_for(platform), context / "busybox")
        lines = ["FROM scratch", "COPY busybox /bin/busybox",
                 'RUN ["/bin/busybox", "--install", "-s", "/bin"]']
        if platform is not None:
            lines.append('RUN ["/bin/busybox", "sh", "-c", "uname -m > /etc/arch"]')
        for number, (path, content) in enumerate(sorted((files or {}).items())):
            (context / f"file{number}").write_text(content)
            lines.append(f"COPY file{number} {path}")
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        return context

    def build(self, image: str, files: dict[str, str] | None = None, push: bool = True) -> str:
        """Build (and push) a busybox image; return the pushed digest, or "" without a push."""
        self.client.images.build(path=str(self.context(image, files)), tag=image,
                                 network_mode="host", rm=True)
        return self.push(image) if push else ""

    def build_platform(self, image: str, platform: str,
                       files: dict[str, str] | None = None) -> PlatformImage:
        """Build a busybox image for `platform` and push it as `image` + `-os-arch[-variant]`.

        Raises stack.EmulationError when this machine cannot run the platform's `RUN` steps.
        """
        platform = normalise_platform(platform)
        setup_emulation(platform)
        repository, tag = split_tag(image)
        platform_image = f"{repository}:{tag}-{platform.replace('/', '-')}"
        self.client.images.build(path=str(self.context(platform_image, files, platform)),
                                 tag=platform_image, platform=platform, network_mode="host",
                                 rm=True)
        digest = self.push(platform_image)
        media_type, size = self._head(repository, digest)
        return PlatformImage(platform, platform_image, digest, size, media_type)

    def push_index(self, image: str, images: list[PlatformImage]) -> str:
        """PUT a manifest list of `images` (already in the same repository) as `image`.

        Over the registry API: `docker manifest create/push --insecure` works too, but needs the
        CLI and keeps state under ~/.docker/manifests. Returns the index digest.
        """
        repository, tag = split_tag(image)
        host, name = split_repository(repository)
        body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST,
                           "manifests": [i.index_entry() for i in images]}).encode()
        request = urllib.request.Request(
            f"http://{host}/v2/{name}/manifests/{tag}", data=body, method="PUT",
            headers={"Content-Type": DOCKER_LIST})
        with self._open(request, f"push of the index {image}") as response:
            return response.headers["Docker-Content-Digest"]

    def build_multi_platform(self, image: str, platforms: list[str],
                             files: dict[str, str] | None = None) -> MultiPlatformImage:
        """One busybox image per platform, each holding `files`, and an index over them."""
        images = tuple(self.build_platform(image, platform, files) for platform in platforms)
        return MultiPlatformImage(image, self.push_index(image, list(images)), images)

    def image_config(self, image: str) -> dict:
        """The config (architecture, os, Labels...) of a single-platform image in its registry."""
        repository, tag = split_tag(image)
        host, name = split_repository(repository)
        request = urllib.request.Request(f"http://{host}/v2/{name}/manifests/{tag}",
                                         headers={"Accept": ACCEPT})
        with self._open(request, f"reading the manifest of {image}") as response:
            manifest = json.load(response)
        if "config" not in manifest:
            raise RuntimeError(f"{image} is an index, not an image: ask for one platform's tag")
        request = urllib.request.Request(
            f"http://{host}/v2/{name}/blobs/{manifest['config']['digest']}")
        with self._open(request, f"reading the config of {image}") as response:
            return json.load(response)

    def _head(self, repository: str, reference: str) -> tuple[str, int]:
        """The media type and size of a manifest, as an index entry needs them."""
        host, name = split_repository(repository)
        request = urllib.request.Request(f"http://{host}/v2/{name}/manifests/{reference}",
                                         method="HEAD", headers={"Accept": ACCEPT})
        with self._open(request, f"HEAD of {repository}@{reference}") as response:
            media_type = response.headers["Content-Type"].partition(";")[0].strip()
            return media_type, int(response.headers["Content-Length"])

    @staticmethod
    def _open(request: urllib.request.Request, what: str):
        try:
            return _OPENER.open(request, timeout=30)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{what} failed: {exc.code} {exc.reason}: "
                               f"{exc.read()[:300].decode(errors='replace')}") from None
        except urllib.error.URLError as exc:
            raise RuntimeError(f"{what} failed: {exc.reason}") from None

    def push(self, image: str) -> str:
        repository, tag = split_tag(image)
        digest = None
        for chunk in self.client.images.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise RuntimeError(f"push of {image} failed: {chunk['error']}")
            digest = chunk.get("aux", {}).get("Digest", digest)
        if not digest:
            raise RuntimeError(f"push of {image} reported no digest")
        return digest

    def read_file(self, image: str, path: str, platform: str | None = None) -> str | None:
        """The content of `path` inside `image` (pulled first), or None if it has no such file."""
        self.client.images.pull(*split_tag(image), platform=platform)
        # Created, never started: a foreign platform's image needs no emulation for this.
        container = self.client.containers.create(image, command=["true"], network_mode="none")
        try:
            stream, _ = container.get_archive(path)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                return archive.extractfile(archive.getmembers()[0]).read().decode()
        except docker.errors.NotFound:
            return None
        finally:
            container.remove(force=True)
