"""Base images without internet: `FROM scratch` plus Debian's static busybox, built on a real engine.

Shared by the demo, the end-to-end tests and the benchmarks. Needs the docker SDK (the venv).
"""
from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import docker
import docker.errors

BUSYBOX = Path("/bin/busybox")


def split_tag(image: str) -> tuple[str, str]:
    repository, _, tag = image.rpartition(":")
    if "/" in tag or not repository:  # the colon was a registry port
        return image, "latest"
    return repository, tag


class BaseImages:
    """Builds busybox images with extra files, pushes them, and reads files back out of images."""

    def __init__(self, client: docker.DockerClient, workdir: Path):
        self.client = client
        self.workdir = workdir

    def context(self, image: str, files: dict[str, str] | None = None) -> Path:
        """Write a build context for a busybox image holding `files` (path -> content)."""
        context = self.workdir / image.replace("/", "_").replace(":", "_")
        if context.exists():
            shutil.rmtree(context)
        context.mkdir(parents=True)
        shutil.copy(BUSYBOX, context / "busybox")
        lines = ["FROM scratch", "COPY busybox /bin/busybox",
                 'RUN ["/bin/busybox", "--install", "-s", "/bin"]']
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

    def read_file(self, image: str, path: str) -> str | None:
        """The content of `path` inside `image` (pulled first), or None if it has no such file."""
        self.client.images.pull(*split_tag(image))
        container = self.client.containers.create(image, command=["true"], network_mode="none")
        try:
            stream, _ = container.get_archive(path)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                return archive.extractfile(archive.getmembers()[0]).read().decode()
        except docker.errors.NotFound:
            return None
        finally:
            container.remove(force=True)
