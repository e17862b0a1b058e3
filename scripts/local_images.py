#!/usr/bin/env python3
"""Local stand-ins for docker/compose.yml's upstream images, for machines that cannot pull them.

    local_images.py env [--wheels DIR] [--python PY]

builds (or reuses) on $DOCKER_HOST a Python base (a Debian root file system made by mmdebstrap
for this host's Debian release, with python3, its venv module and git, then `docker import`ed)
and a registry image (Debian's docker-registry binary and the libraries it links, on a root of
its own), fills DIR (default docker/wheels) with wheels of basewatch's dependencies for the
base's Python (read from its dpkg status, whichever Python runs pip), and prints the lines
compose reads from docker/.env: PYTHON_IMAGE=, REGISTRY_IMAGE=, BASEWATCH_PIP_OPTIONS=--no-index.

Each piece is cached under $XDG_CACHE_HOME/basewatch (~/.cache/basewatch), keyed on what it is
made from, so only the first run pays for mmdebstrap and pip. Standard library only: it runs
before the virtualenv exists. Needs root (mmdebstrap) and the packages stack.py installs.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from stack import _UnixHTTPConnection  # scripts/, beside this file

REPO = Path(__file__).resolve().parent.parent
# Bump when what goes into an image changes in a way its inputs do not show.
RECIPE = "1"
PYTHON_PACKAGES = ("python3", "python3-venv", "git", "ca-certificates", "passwd")
# Documentation, manual pages and translations: a third of a root file system, read by no one.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*",
                 "/usr/share/info/*")
REGISTRY_BINARY = Path("/usr/bin/docker-registry")
# The registry's settings inside the image; compose adds the notifications through
# REGISTRY_* variables, which distribution reads over these.
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: /var/lib/registry}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
http:
  addr: :5000
"""


def log(message: str) -> None:
    print(f"local_images: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "basewatch"


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([RECIPE, *parts], default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- the engine, over its socket


@dataclass(frozen=True)
class EngineSocket:
    """The few Engine API calls this needs, without the docker SDK or CLI."""

    docker_host: str

    def _connection(self, timeout: float) -> _UnixHTTPConnection:
        if not self.docker_host.startswith("unix://"):
            raise RuntimeError(f"DOCKER_HOST={self.docker_host}: only unix:// sockets are "
                               "supported here")
        return _UnixHTTPConnection(self.docker_host[len("unix://"):], timeout=timeout)

    def has_image(self, name: str) -> bool:
        connection = self._connection(30)
        try:
            connection.request("GET", f"/images/{urllib.parse.quote(name, safe='')}/json")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        finally:
            connection.close()

    def import_image(self, tarball: Path, name: str, changes: list[str]) -> None:
        """`docker import --change ... TARBALL NAME`, streamed from the file."""
        repository, _, tag = name.rpartition(":")
        query = urllib.parse.urlencode([("fromSrc", "-"), ("repo", repository), ("tag", tag)]
                                       + [("changes", change) for change in changes])
        connection = self._connection(600)
        try:
            with open(tarball, "rb") as body:
                connection.request("POST", f"/images/create?{query}", body=body, headers={
                    "Content-Type": "application/x-tar",
                    "Content-Length": str(tarball.stat().st_size)})
                response = connection.getresponse()
                answer = response.read().decode(errors="replace")
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"importing {name} failed: {response.status} {answer[:300]}")
        for line in answer.splitlines():
            if line.strip() and "error" in json.loads(line):
                raise RuntimeError(f"importing {name} failed: {json.loads(line)['error']}")


# ---------------------------------------------------------------- the Python base


def debian_release() -> str:
    """This host's Debian codename: the base's python3 is then the host's, and so are the
    wheels pip picks for it."""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.partition("=")[2].strip().strip('"')
    raise RuntimeError("cannot tell this host's Debian release from /etc/os-release")


def python_rootfs(release: str) -> Path:
    """A root file system tarball with python3, made once per release by mmdebstrap."""
    mirrors = [f"deb http://deb.debian.org/debian {release} main",
               f"deb http://deb.debian.org/debian {release}-updates main",
               f"deb http://deb.debian.org/debian-security {release}-security main"]
    tarball = cache_dir() / "images" / f"python-{release}-{_key(mirrors, PYTHON_PACKAGES)}.tar"
    if tarball.exists():
        return tarball
    if not shutil.which("mmdebstrap"):
        raise RuntimeError("mmdebstrap is not installed: run `python3 scripts/stack.py install`"
                           " (or apt-get install mmdebstrap)")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # mmdebstrap tells the output format from the name's extension.
    partial = tarball.with_name(f"{tarball.stem}.{os.getpid()}.partial.tar")
    log(f"mmdebstrap: a {release} root file system with {', '.join(PYTHON_PACKAGES)}")
    started = time.monotonic()
    command = ["mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(PYTHON_PACKAGES)}",
               '--aptopt=Acquire::Languages "none"',
               *[f"--dpkgopt=path-exclude={path}" for path in DPKG_EXCLUDES],
               release, str(partial), *mirrors]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        partial.unlink(missing_ok=True)
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"mmdebstrap failed ({result.returncode}):\n{tail}")
    partial.replace(tarball)  # a concurrent reader never sees half a file
    log(f"mmdebstrap took {time.monotonic() - started:.0f}s: {tarball}")
    return tarball


def python_image(engine: EngineSocket, release: str | None = None) -> str:
    """The local Python base's name on `engine`, imported from the cached root file system."""
    release = release or debian_release()
    tarball = python_rootfs(release)
    name = f"basewatch-local/python:{release}-{tarball.stem.rsplit('-', 1)[-1]}"
    if not engine.has_image(name):
        log(f"importing {name}")
        engine.import_image(tarball, name, ['CMD ["python3"]', "ENV LANG=C.UTF-8"])
    return name


# ---------------------------------------------------------------- the registry


def _linked_libraries(binary: Path) -> list[Path]:
    """The shared libraries (and the loader) `binary` needs, as ldd names them."""
    output = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    if "not a dynamic executable" in output or "statically linked" in output:
        return []
    return [Path(path) for path in re.findall(r"(/\S+)\s+\(0x", output)]


def _add_file(archive: tarfile.TarFile, path: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.mtime = len(data), mode, 0
    archive.addfile(info, io.BytesIO(data))


def _add_dir(archive: tarfile.TarFile, path: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(path)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
    archive.addfile(info)


def registry_rootfs() -> Path:
    """A root holding only Debian's docker-registry, the libraries it links and a config."""
    if not REGISTRY_BINARY.exists():
        raise RuntimeError(f"no {REGISTRY_BINARY}: run `python3 scripts/stack.py install`")
    binary = REGISTRY_BINARY.read_bytes()
    libraries = _linked_libraries(REGISTRY_BINARY)
    key = _key(hashlib.sha256(binary).hexdigest(), REGISTRY_CONFIG,
               [(str(lib), hashlib.sha256(lib.read_bytes()).hexdigest()) for lib in libraries])
    tarball = cache_dir() / "images" / f"registry-{key}.tar"
    if tarball.exists():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_name(f"{tarball.stem}.{os.getpid()}.partial.tar")
    with tarfile.open(partial, "w") as archive:
        for folder in ("bin", "etc", "etc/docker", "etc/docker/registry", "var", "var/lib",
                       "var/lib/registry"):
            _add_dir(archive, folder)
        _add_dir(archive, "tmp", 0o1777)
        _add_file(archive, "bin/registry", binary, 0o755)
        _add_file(archive, "etc/docker/registry/config.yml", REGISTRY_CONFIG.encode())
        for library in libraries:
            parents = library.relative_to("/").parents
            for parent in reversed(parents[:-1]):
                if str(parent) not in archive.getnames():
                    _add_dir(archive, str(parent))
            _add_file(archive, str(library.relative_to("/")), library.resolve().read_bytes(),
                      0o755)
    partial.replace(tarball)
    return tarball


def registry_image(engine: EngineSocket) -> str:
    """The local registry image's name on `engine`: docker-registry serving /var/lib/registry
    on :5000, the same paths and port as the upstream `registry:2`."""
    tarball = registry_rootfs()
    name = f"basewatch-local/registry:{tarball.stem.rsplit('-', 1)[-1]}"
    if not engine.has_image(name):
        log(f"importing {name}")
        engine.import_image(tarball, name, [
            'ENTRYPOINT ["/bin/registry"]', 'CMD ["serve", "/etc/docker/registry/config.yml"]',
            "EXPOSE 5000", 'VOLUME ["/var/lib/registry"]'])
    return name


# ---------------------------------------------------------------- wheels


def requirements() -> list[str]:
    """basewatch's own dependencies, and what pip needs to build basewatch from its source."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    return [*project["project"]["dependencies"], *project["build-system"]["requires"], "wheel"]


@dataclass(frozen=True)
class Target:
    """What pip must pick wheels for: the base's Python, C library and machine."""

    python: str  # 3.11
    glibc: tuple[int, int]  # (2, 36)
    machine: str  # x86_64

    def pip_options(self) -> list[str]:
        # Every manylinux tag this glibc runs, newest first, and their legacy aliases.
        tags = [f"manylinux_{self.glibc[0]}_{minor}_{self.machine}"
                for minor in range(self.glibc[1], 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags += [f"{name}_{self.machine}" for minor, name in legacy.items()
                 if minor <= self.glibc[1]]
        return ["--python-version", self.python, "--implementation", "cp",
                *[option for tag in tags for option in ("--platform", tag)]]


def base_target(rootfs: Path) -> Target:
    """The Python and glibc versions of a root file system, from its dpkg status."""
    with tarfile.open(rootfs) as archive:
        for member in archive:
            if member.name.lstrip("./") == "var/lib/dpkg/status":
                status = archive.extractfile(member).read().decode()
                break
        else:
            raise RuntimeError(f"{rootfs} has no var/lib/dpkg/status")
    versions = {}
    for paragraph in status.split("\n\n"):
        package = re.search(r"^Package: (\S+)$", paragraph, re.M)
        version = re.search(r"^Version: (?:\d+:)?(\d+)\.(\d+)", paragraph, re.M)
        if package and version:
            versions[package[1]] = (int(version[1]), int(version[2]))
    if "python3" not in versions or "libc6" not in versions:
        raise RuntimeError(f"{rootfs} has no python3 or no libc6 in its dpkg status")
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(_dpkg_architecture(status),
                                                         os.uname().machine)
    return Target("%d.%d" % versions["python3"], versions["libc6"], machine)


def _dpkg_architecture(status: str) -> str:
    match = re.search(r"^Package: libc6\n(?:.+\n)*?Architecture: (\S+)", status, re.M)
    return match[1] if match else ""


def fill_wheelhouse(destination: Path, target: Target, python: str = sys.executable) -> Path:
    """Wheels of basewatch's dependencies for `target` (whatever Python runs pip), copied into
    `destination` from a cache keyed on the requirements and the target."""
    wanted = requirements()
    cached = cache_dir() / "wheels" / _key(wanted, target)
    if not cached.exists():
        log(f"downloading wheels of {len(wanted)} requirements for Python {target.python}")
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix="partial-", dir=cached.parent))
        result = subprocess.run([python, "-m", "pip", "download", "--quiet", "--only-binary",
                                 ":all:", *target.pip_options(), "--dest", str(partial),
                                 *wanted], capture_output=True, text=True)
        if result.returncode:
            shutil.rmtree(partial, ignore_errors=True)
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"pip download failed:\n{tail}")
        try:
            partial.rename(cached)
        except OSError:  # another run filled it meanwhile
            shutil.rmtree(partial, ignore_errors=True)
    destination.mkdir(parents=True, exist_ok=True)
    for old in destination.glob("*.whl"):
        old.unlink()
    for wheel in cached.glob("*.whl"):
        shutil.copy(wheel, destination / wheel.name)
    return destination


# ---------------------------------------------------------------- CLI


def build_env(docker_host: str, wheels: Path, python: str = sys.executable) -> dict[str, str]:
    """Both images on the engine and the wheelhouse filled: the variables compose reads."""
    engine = EngineSocket(docker_host)
    release = debian_release()
    fill_wheelhouse(wheels, base_target(python_rootfs(release)), python)
    return {"PYTHON_IMAGE": python_image(engine, release),
            "REGISTRY_IMAGE": registry_image(engine), "BASEWATCH_PIP_OPTIONS": "--no-index"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local_images.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="build or reuse both images; print compose's variables")
    env.add_argument("--wheels", type=Path, default=REPO / "docker" / "wheels")
    env.add_argument("--python", default=sys.executable,
                     help="the interpreter whose pip downloads the wheels (default: this one); "
                          "they are the base's Python's, whatever its version")
    args = parser.parse_args(argv)
    docker_host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        variables = build_env(docker_host, args.wheels, args.python)
    except (RuntimeError, OSError, subprocess.CalledProcessError, http.client.HTTPException) as exc:
        log(f"error: {exc}")
        return 1
    for name, value in variables.items():
        print(f"{name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
