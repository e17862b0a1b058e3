#!/usr/bin/env python3
"""The local stack basewatch runs against: Docker Engine and distribution registries on loopback.

Used by `make demo`, `make test` and the test fixtures. Standard library only, because it runs
before the virtualenv exists.

    stack.py install            apt packages that are missing, cross-platform emulation (qemu,
                                binfmt_misc, arm busybox), then the virtualenv
    stack.py up   [--dir D]     reuse a working engine or start one (with the bridge network
                                basewatch-builds); start a registry on :5000; print the
                                `export` lines of DOCKER_HOST and BASEWATCH_REGISTRY
        [--notify URL]          the registry started tells the basewatch daemon at URL of every
                                push (POST URL/webhooks/registry, docs/notifications.md); also
                                prints BASEWATCH_URL, BASEWATCH_TOKEN and BASEWATCH_NOTIFY_TOKEN
    stack.py postgres [--dir D] start a PostgreSQL server (Debian's `postgresql`) as the
        [--port P]              `postgres` user on a free loopback port, data in D/postgres;
                                print `export BASEWATCH_DATABASE_URL=...` for `database:
                                {url_env: BASEWATCH_DATABASE_URL}` (docs/configuration.md)
    stack.py down [--dir D]     stop only what `up` and `postgres` started
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
APT_PACKAGES = {
    # command that proves it is there -> Debian package
    "dockerd": "docker.io",
    "docker-registry": "docker-registry",
    # docker/compose.yml's test: Compose v1 as Debian packages it, and the root file system of
    # the local Python base its image is built on (scripts/local_images.py).
    "docker-compose": "docker-compose",
    "mmdebstrap": "mmdebstrap",
    "git": "git",
    # The README's quickstart and the tutorials (docs/tutorials/) ask the daemon and the
    # registry with curl, and the tutorials make tokens with openssl.
    "curl": "curl",
    "openssl": "openssl",
    # Cross-platform `RUN` steps (linux/arm64, linux/arm/v7 images built here) run under qemu.
    "qemu-aarch64-static": "qemu-user-static",
    "update-binfmts": "binfmt-support",
    # The dashboard's browser test (tests/e2e/test_dashboard.py) and scripts/screenshot.py.
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    # The observability kit's tests: promtool checks the alert rules and a live /metrics.
    "promtool": "prometheus",
    # An ssh:// build engine (engines[].host) is tested through an sshd on loopback.
    "sshd": "openssh-server",
}
APT_FILES = {"/bin/busybox": "busybox-static"}
# PostgreSQL for the store's tests on it and the benches (`stack.py postgres`): Debian keeps its
# server's commands off PATH, under /usr/lib/postgresql/VERSION/bin.
POSTGRES_PACKAGE = "postgresql"
POSTGRES_BINARIES = Path("/usr/lib/postgresql")
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
# The static busybox of each foreign platform, downloaded from Debian into the repo's cache.
ARCH_CACHE = REPO / ".stack" / "arch"
BUSYBOX = Path("/bin/busybox")  # the native one, from busybox-static
_INSTALL = "python3 scripts/stack.py install"
# A user-defined bridge on the stack's engine, for builds that need a network (`build_network:
# basewatch-builds`); the engine's default network, which builds use otherwise, has none here.
BUILD_NETWORK = "basewatch-builds"
UNIX_SOCKET_PATH_MAX = 104  # what containerd accepts (Linux allows 107)


@dataclass(frozen=True)
class Architecture:
    debian: str  # dpkg's name: busybox-static:<debian>
    binfmt: str  # update-binfmts' name for its qemu handler, when the host is another


# Platforms as Docker writes them (os/arch[/variant]) -> what building for them needs.
ARCHITECTURES = {
    "linux/amd64": Architecture("amd64", "qemu-x86_64"),
    "linux/arm64": Architecture("arm64", "qemu-aarch64"),
    "linux/arm/v7": Architecture("armhf", "qemu-arm"),
}
_PLATFORM_ALIASES = {"linux/arm64/v8": "linux/arm64", "linux/aarch64": "linux/arm64",
                     "linux/arm": "linux/arm/v7", "linux/armhf": "linux/arm/v7",
                     "linux/x86_64": "linux/amd64"}


def log(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- install


def _has_command(command: str) -> bool:
    # update-binfmts lives in /usr/sbin, which a non-login PATH may lack.
    return bool(shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin"))


def missing_apt_packages() -> list[str]:
    missing = [pkg for cmd, pkg in APT_PACKAGES.items() if not _has_command(cmd)]
    missing += [pkg for path, pkg in APT_FILES.items() if not _is_static_busybox(path)]
    if postgres_bin() is None:
        missing.append(POSTGRES_PACKAGE)
    return missing


def _is_static_busybox(path: str) -> bool:
    # Debian's plain `busybox` package is dynamically linked: useless inside a FROM scratch image.
    if not os.path.exists(path):
        return False
    result = subprocess.run(["dpkg", "-s", "busybox-static"], capture_output=True)
    return result.returncode == 0


def install_apt() -> None:
    missing = missing_apt_packages()
    if not missing:
        return
    _apt_install(missing)


def _apt_install(packages: list[str]) -> None:
    log(f"installing {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # One index failing (a mirror mid-sync for a foreign architecture, say) makes `apt-get
    # update` exit non-zero although the packages wanted are reachable: go on, and let the
    # install say whether it could.
    _apt_update()
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


# ---------------------------------------------------------------- cross-platform builds


class EmulationError(RuntimeError):
    """This machine cannot build images for a foreign platform; the message says why."""


def normalise_platform(platform: str) -> str:
    text = platform.strip().lower()
    return _PLATFORM_ALIASES.get(text, text)


def native_platform() -> str:
    return normalise_platform(f"linux/{os.uname().machine}")


def foreign_platforms() -> list[str]:
    return [platform for platform in ARCHITECTURES if platform != native_platform()]


def busybox_for(platform: str) -> Path:
    """A static busybox for `platform` (linux/amd64, linux/arm64, linux/arm/v7), downloaded once.

    Raises EmulationError when it cannot be had. Whether qemu runs it is `setup_emulation`'s job.
    """
    name = normalise_platform(platform)
    if name == native_platform():
        if not _is_static_busybox(str(BUSYBOX)):
            raise EmulationError(f"no static busybox at {BUSYBOX}: run `{_INSTALL}` "
                                 "(it installs busybox-static)")
        return BUSYBOX
    arch = _architecture(name)
    path = ARCH_CACHE / arch.debian / "busybox"
    if not path.exists():
        _fetch_busybox(arch, path)
    return path


def _architecture(platform: str) -> Architecture:
    try:
        return ARCHITECTURES[platform]
    except KeyError:
        raise EmulationError(f"no busybox for platform {platform}: this stack knows "
                             f"{', '.join(ARCHITECTURES)}") from None


def _fetch_busybox(arch: Architecture, path: Path) -> None:
    """`apt-get download busybox-static:ARCH`, then extract its bin/busybox to `path`."""
    package = f"busybox-static:{arch.debian}"
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                             text=True, check=True).stdout.split()
    update_error = None
    if arch.debian not in foreign:
        log(f"adding the dpkg architecture {arch.debian}, to download {package}")
        subprocess.run(["dpkg", "--add-architecture", arch.debian], check=True)
        update_error = _apt_update()
    download = ARCH_CACHE / "download" / arch.debian
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    error = _apt_download(package, download)
    if error and arch.debian in foreign:  # the lists may predate the package's current version
        update_error = _apt_update()
        error = _apt_download(package, download)
    if error:
        after = f" (after apt-get update failed: {update_error})" if update_error else ""
        raise EmulationError(f"apt-get download {package} failed: {error}{after}")
    debs = sorted(download.glob("busybox-static_*.deb"))
    if not debs:
        raise EmulationError(f"apt-get download {package} left no .deb in {download}")
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(download / "root")], check=True)
    binary = download / "root" / "bin" / "busybox"
    if not binary.exists():
        raise EmulationError(f"{debs[-1].name} has no bin/busybox")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".partial")
    shutil.copy(binary, staging)
    staging.chmod(0o755)
    staging.replace(path)  # a concurrent reader never sees half a file
    shutil.rmtree(download, ignore_errors=True)
    with contextlib.suppress(OSError):
        download.parent.rmdir()  # when no other download is in progress
    log(f"{package} extracted to {path}")


def _apt_update() -> str | None:
    """`apt-get update`; the error, or None. One failing source need not stop a download."""
    log("apt-get update")
    result = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True,
                            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    # apt exits 0 even when some index files failed; it says so on stderr.
    error = _last_line(result.stderr) if result.returncode or "E: " in result.stderr else None
    if error:
        log(f"warning: apt-get update: {error}")
    return error


def _apt_download(package: str, folder: Path) -> str | None:
    """Download a .deb into `folder`; the error, or None."""
    log(f"downloading {package}")
    # As root, apt warns that its _apt user cannot write to `folder`; the download still works.
    result = subprocess.run(["apt-get", "download", "-qq", package], cwd=folder,
                            capture_output=True, text=True,
                            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return _last_line(result.stderr) if result.returncode else None


def setup_emulation(platform: str) -> None:
    """Make `RUN` steps for `platform` run here under qemu; raise EmulationError saying why not.

    Idempotent: mounts binfmt_misc only when it is not mounted, enables only a disabled handler.
    """
    name = normalise_platform(platform)
    if name == native_platform():
        return
    arch = _architecture(name)
    handler = BINFMT_MISC / arch.binfmt
    if _binfmt_enabled(handler):
        return
    if not _has_command("update-binfmts") or not os.path.exists(
            f"/usr/share/binfmts/{arch.binfmt}"):
        raise EmulationError(f"cannot build for {name}: qemu-user-static and binfmt-support "
                             f"are not installed; run `{_INSTALL}` as root")
    if not (BINFMT_MISC / "register").exists():
        result = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_MISC)],
                                capture_output=True, text=True)
        if result.returncode:
            raise EmulationError(f"cannot build for {name}: mounting binfmt_misc on "
                                 f"{BINFMT_MISC} failed ({_last_line(result.stderr)}); it needs "
                                 "root and a kernel with binfmt_misc, outside a container or in "
                                 "a privileged one")
    result = subprocess.run(["update-binfmts", "--enable", arch.binfmt], capture_output=True,
                            text=True, env=dict(os.environ, PATH=_sbin_path()))
    if result.returncode or not _binfmt_enabled(handler):
        raise EmulationError(f"cannot build for {name}: `update-binfmts --enable {arch.binfmt}` "
                             f"failed ({_last_line(result.stderr or result.stdout)})")
    flags = _binfmt_field(handler, "flags")
    if "F" not in flags:
        # Without F the kernel opens the interpreter inside the container, which has none.
        raise EmulationError(f"cannot build for {name}: the {arch.binfmt} binfmt handler lacks "
                             f"the F (fix binary) flag (flags: {flags or 'none'})")
    log(f"enabled {arch.binfmt} emulation for {name}")


def _binfmt_enabled(handler: Path) -> bool:
    try:
        return handler.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


def _binfmt_field(handler: Path, name: str) -> str:
    for line in handler.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def _sbin_path() -> str:
    return os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def install_cross_platform() -> list[str]:
    """Emulation and a busybox for every foreign platform; returns what could not be set up."""
    problems = []
    for platform in foreign_platforms():
        try:
            setup_emulation(platform)
            busybox_for(platform)
        except (EmulationError, subprocess.CalledProcessError, OSError) as exc:
            problems.append(str(exc))  # each message names its platform or package
    return problems


def install_venv(venv: Path) -> None:
    python = venv / "bin" / "python"
    if subprocess.run([sys.executable, "-c", "import ensurepip"], capture_output=True).returncode:
        # Debian splits venv support out of python3.
        _apt_install(["python3-venv"])
    if not python.exists():
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    stamp = venv / ".installed"
    pyproject = REPO / "pyproject.toml"
    if stamp.exists() and stamp.stat().st_mtime >= pyproject.stat().st_mtime:
        return
    log("installing Python dependencies")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-e", f"{REPO}[test]"], check=True
    )
    stamp.touch()


# ---------------------------------------------------------------- probes


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 2.0):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def engine_answers(docker_host: str) -> bool:
    if not docker_host.startswith("unix://"):
        return False
    conn = _UnixHTTPConnection(docker_host[len("unix://"):])
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _engine_request(docker_host: str, method: str, url: str,
                    body: dict | None = None) -> tuple[int, bytes]:
    conn = _UnixHTTPConnection(docker_host[len("unix://"):], timeout=30)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, url, body=payload,
                     headers={"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def ensure_network(docker_host: str, name: str = BUILD_NETWORK) -> None:
    """Create the bridge network `name` on the engine unless it has one already."""
    if _engine_request(docker_host, "GET", f"/networks/{name}")[0] == 200:
        return
    status, answer = _engine_request(docker_host, "POST", "/networks/create",
                                     {"Name": name, "Driver": "bridge", "CheckDuplicate": True})
    if status in (201, 409):  # 409: created meanwhile by another session
        return
    hint = ""
    if b"non-overlapping" in answer:
        hint = (": every private address pool is taken, most likely by the bridges (br-...) of "
                "engines that were killed before they could remove them; `ip -br link` lists "
                "them and `ip link delete NAME` removes one")
    raise RuntimeError(f"creating the network {name} failed: {status} {answer[:300]!r}{hint}")


def remove_network(docker_host: str, name: str = BUILD_NETWORK) -> None:
    """Remove the network `name`: a stopped engine leaves its bridge on the host otherwise, and
    after a few dozen of them no address pool is left for the next engine's."""
    try:
        _engine_request(docker_host, "DELETE", f"/networks/{name}")
    except OSError as error:
        log(f"could not remove the network {name}: {error}")


def registry_answers(address: str) -> bool:
    conn = http.client.HTTPConnection(address, timeout=2)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status in (200, 401)
    except OSError:
        return False
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daemon_health(url: str, process: subprocess.Popen | None = None,
                  timeout: float = 60) -> dict:
    """A basewatch daemon's /healthz report (`url` is its base URL), once it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the daemon exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                return json.load(response)
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the daemon at {url} did not answer /healthz within {timeout:.0f}s")


def _wait(predicate, what: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")


# ---------------------------------------------------------------- services


@dataclass
class Engine:
    """A Docker Engine: one this script started (process set) or one it found."""

    docker_host: str
    process: subprocess.Popen | None = None

    @classmethod
    def find(cls) -> "Engine | None":
        for host in (os.environ.get("DOCKER_HOST", ""), "unix:///var/run/docker.sock"):
            if host and engine_answers(host):
                return cls(host)
        return None

    @classmethod
    def start(cls, root: Path, tcp: str | None = None,
              tls: tuple[Path, Path, Path] | None = None) -> "Engine":
        """dockerd on a socket in `root`; also on `tcp` (host:port) when given, with `tls`
        (its CA, server certificate and key) checking clients' certificates (--tlsverify).
        The unix socket stays: this script's own requests go through it."""
        # containerd's sockets live under the exec root; past this length it cannot bind them,
        # and dockerd only says, after a timeout, that containerd did not start.
        longest = root / "exec" / "containerd" / "containerd-debug.sock"
        if len(str(longest)) > UNIX_SOCKET_PATH_MAX:
            raise RuntimeError(f"{root} is too deep a folder for the engine's sockets ({longest} "
                               f"is over {UNIX_SOCKET_PATH_MAX} characters): use a shorter "
                               "--dir, e.g. --dir /tmp/stack")
        root.mkdir(parents=True, exist_ok=True)
        sock = root / "docker.sock"
        host = f"unix://{sock}"
        remote = [f"--host=tcp://{tcp}"] if tcp else []
        if tls is not None:
            ca, cert, key = tls
            remote += ["--tlsverify", f"--tlscacert={ca}", f"--tlscert={cert}",
                       f"--tlskey={key}"]
        with open(root / "dockerd.log", "ab") as logfile:
            process = subprocess.Popen(
                [
                    "dockerd", "--iptables=false", "--bridge=none", "--storage-driver=vfs",
                    f"--host={host}", *remote, f"--data-root={root / 'data'}",
                    f"--exec-root={root / 'exec'}", f"--pidfile={root / 'pid'}",
                ],
                stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
            )
        engine = cls(host, process)
        try:
            _wait(lambda: engine_answers(host), f"dockerd (log: {root / 'dockerd.log'})", process)
        except Exception:
            engine.stop()
            raise
        return engine

    def stop(self, remove: Path | None = None) -> None:
        """Stop the engine if this script started it; then delete `remove`, its state folder."""
        if self.process is not None:
            remove_network(self.docker_host)
            _terminate(self.process.pid, self.process)
            self.process = None
        if remove is not None:
            # A killed dockerd leaves its network namespace mounted; rmtree would fail on it.
            _unmount_below(remove)
            shutil.rmtree(remove, ignore_errors=True)


@contextlib.contextmanager
def engine_for_session() -> Iterator[Engine]:
    """A working engine, with the BUILD_NETWORK bridge: the one DOCKER_HOST (or
    /var/run/docker.sock) names, else one started in a temporary folder, stopped and removed
    afterwards. Outside pytest's tmp_path on purpose:
    the engine's mounts must be gone before anything deletes its folder."""
    engine = Engine.find()
    if engine is not None:
        ensure_network(engine.docker_host)
        yield engine
        return
    root = Path(tempfile.mkdtemp(prefix="basewatch-engine-"))
    engine = Engine.start(root)
    try:
        ensure_network(engine.docker_host)
        yield engine
    finally:
        engine.stop(remove=root)


def _unmount_below(root: Path) -> None:
    prefix = str(root.resolve())
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


@dataclass
class Registry:
    """A CNCF distribution registry on a loopback port."""

    root: Path
    port: int
    process: subprocess.Popen | None = None
    notify_url: str | None = None
    notify_headers: dict[str, list[str]] = field(default_factory=dict)
    notify_also: list[str] = field(default_factory=list)  # more endpoints, same headers
    auth: dict | None = None
    env: dict[str, str] = field(default_factory=dict)  # e.g. GOGC for the registry process

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def config(self) -> dict:
        config: dict = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")},
                        "delete": {"enabled": True},
                        # As in the distribution's own default config: blob stats cached.
                        "cache": {"blobdescriptor": "inmemory"}},
            "http": {"addr": self.address, "secret": "basewatch-test"},
        }
        if self.notify_url:
            config["notifications"] = {"endpoints": [{
                "name": f"basewatch{n or ''}", "url": url, "headers": self.notify_headers,
                "timeout": "2s", "threshold": 5, "backoff": "1s",
                # Blob pushes and pulls are noise; 2.8 ignores `actions` without `mediatypes`.
                "ignoredmediatypes": ["application/octet-stream"],
                "ignore": {"mediatypes": ["application/octet-stream"], "actions": ["pull"]},
            } for n, url in enumerate([self.notify_url, *self.notify_also])]}
        if self.auth:
            config["auth"] = self.auth
        return config

    def start(self) -> "Registry":
        self.root.mkdir(parents=True, exist_ok=True)
        # distribution reads YAML; JSON is a subset of it.
        config_path = self.root / "config.yml"
        config_path.write_text(json.dumps(self.config(), indent=2))
        with open(self.root / "registry.log", "ab") as logfile:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(config_path)], env={**os.environ, **self.env},
                stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait(lambda: registry_answers(self.address), f"registry on {self.address}", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process.pid, self.process)
            self.process = None


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder, or None."""
    found = sorted(POSTGRES_BINARIES.glob("*/bin/initdb"),
                   key=lambda path: int(path.parent.parent.name)
                   if path.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


@dataclass
class Postgres:
    """A PostgreSQL server of its own, in `root`, on a loopback port: the store's database for
    tests and benches. Run as the `postgres` user when this runs as root (the server refuses
    root); password auth on TCP, the password only in the URL this hands out."""

    root: Path
    port: int
    durable: bool = True  # False: no fsync, for tests (a crash loses the data anyway)
    process: subprocess.Popen | None = None
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    user: str = "basewatch"

    def url(self, database: str = "basewatch") -> str:
        return (f"postgresql+asyncpg://{self.user}:{self.password}@127.0.0.1:{self.port}"
                f"/{database}")

    def _as_owner(self) -> dict:
        return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}

    def _run(self, *command: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, **self._as_owner())
        if result.returncode:
            raise RuntimeError(f"{Path(command[0]).name} failed: "
                               f"{_last_line(result.stderr or result.stdout)}")

    def start(self) -> "Postgres":
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError(f"PostgreSQL is not installed: apt-get install {POSTGRES_PACKAGE}"
                               f" (or {_INSTALL})")
        data = self.root / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        # The folder the server's socket and password file live in is its owner's alone: the
        # socket trusts whoever reaches it.
        self.root.chmod(0o700)
        password_file = self.root / "password"
        if not data.exists():
            _write_private(password_file, self.password + "\n")
            if os.geteuid() == 0:
                shutil.chown(password_file, "postgres", "postgres")
            self._run(str(bin_dir / "initdb"), "-D", str(data), "-U", self.user,
                      f"--pwfile={password_file}", "--auth-local=trust",
                      "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        else:
            self.password = password_file.read_text().strip()
        settings = ["-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
                    "-c", f"unix_socket_directories={self.root}", "-c", "max_connections=200"]
        if not self.durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                         "-c", "full_page_writes=off"]
        with open(self.root / "postgres.log", "ab") as logfile:
            if os.geteuid() == 0:
                shutil.chown(self.root / "postgres.log", "postgres", "postgres")
            self.process = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), *settings],
                stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
                **self._as_owner())
        ready = [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        try:
            _wait(lambda: subprocess.run(ready).returncode == 0,
                  f"postgres on 127.0.0.1:{self.port} (log: {self.root / 'postgres.log'})",
                  self.process)
            self.create_database("basewatch")
        except Exception:
            self.stop()
            raise
        return self

    def create_database(self, name: str) -> None:
        """An empty database (nothing if it exists already)."""
        bin_dir = postgres_bin()
        result = subprocess.run(
            [str(bin_dir / "psql"), "-h", str(self.root), "-p", str(self.port), "-U", self.user,
             "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
            capture_output=True, text=True, **self._as_owner())
        if result.stdout.strip() != "1":
            self._run(str(bin_dir / "createdb"), "-h", str(self.root), "-p", str(self.port),
                      "-U", self.user, name)

    def stop(self) -> None:
        if self.process is not None:
            _terminate(self.process.pid, self.process, first=signal.SIGINT)
            self.process = None


def _terminate(pid: int, process: subprocess.Popen | None = None, timeout: float = 20.0,
               first: signal.Signals = signal.SIGTERM) -> None:
    try:
        os.killpg(pid, first)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return
        elif _gone(pid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _gone(pid: int) -> bool:
    """Whether `pid` has exited. A child of this process (the demo starts the stack itself)
    stays a zombie, which signal 0 still finds, until it is reaped: reap it here."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass  # not this process's child: whoever started it reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # Started by an earlier `stack.py up`, whose exit left it to init: a zombie has exited,
    # whenever init gets round to reaping it.
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone between the two looks
    return stat.rpartition(")")[2].split()[0] == "Z"


# ---------------------------------------------------------------- CLI


# Where a basewatch daemon takes registry notifications (docs/notifications.md).
NOTIFY_PATH = "/webhooks/registry"
# The tokens `up --notify` hands the registry and the daemon: each from the environment when it
# is set there, else the last `up`'s (the running registry's header must keep matching), else new.
DAEMON_TOKENS = ("BASEWATCH_TOKEN", "BASEWATCH_NOTIFY_TOKEN")


def daemon_url(notify: str) -> str:
    """A daemon's base URL from `--notify`, which names it or its notification endpoint."""
    parts = urllib.parse.urlsplit(notify)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuntimeError(f"--notify {notify!r}: give the daemon's URL, as "
                           "http://127.0.0.1:8080 (its `listen` address)")
    path = parts.path.rstrip("/")
    if path.endswith(NOTIFY_PATH):
        path = path[:-len(NOTIFY_PATH)]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _read_state(state_dir: Path) -> dict:
    state_file = state_dir / "state.json"
    return json.loads(state_file.read_text()) if state_file.exists() else {}


def daemon_tokens(state_dir: Path) -> dict[str, str]:
    last = _read_state(state_dir).get("env", {})
    return {name: os.environ.get(name) or last.get(name) or secrets.token_hex(24)
            for name in DAEMON_TOKENS}


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: it may hold the daemon's tokens."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def exports(env: dict[str, str]) -> str:
    """`export NAME=value` lines, for `eval` or a copy into a shell."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def cmd_up(state_dir: Path, registry_port: int, notify_url: str | None = None,
           notify_token: str | None = None,
           daemon_env: dict[str, str] | None = None) -> dict[str, str]:
    """Reuse or start the engine and the registry. The registry this starts POSTs every push to
    `notify_url` with `notify_token`. Returns the environment for them (DOCKER_HOST,
    BASEWATCH_REGISTRY, then `daemon_env`), also written to STATE_DIR/env."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(state_dir)
    started: dict[str, int] = state.get("started", {})

    engine = Engine.find()
    if engine is None and "dockerd" in started:
        engine = Engine(f"unix://{state_dir / 'engine' / 'docker.sock'}")
        if not engine_answers(engine.docker_host):
            engine = None
    if engine is None:
        engine = Engine.start(state_dir / "engine")
        started["dockerd"] = engine.process.pid
        log(f"started Docker Engine at {engine.docker_host}")
    else:
        log(f"using Docker Engine at {engine.docker_host}")
    ensure_network(engine.docker_host)

    registry_address = f"127.0.0.1:{registry_port}"
    notify = {"url": notify_url, "token": notify_token} if notify_url else None
    if registry_answers(registry_address):
        log(f"using registry at {registry_address}")
        if notify and state.get("notify") != notify:
            # A running registry's notifications are as it was started: say so, or the daemon
            # would see its pushes only at the next poll, with nothing to tell why.
            log(f"warning: the registry at {registry_address} was running already and does not "
                f"notify {notify_url} (with this token); basewatch sees its pushes at the next "
                "poll only. `stack.py down`, then `up` again, to have it notify")
        else:
            notify = state.get("notify")
    else:
        headers = {"Authorization": [f"Bearer {notify_token}"]} if notify_token else {}
        registry = Registry(state_dir / "registry", registry_port, notify_url=notify_url,
                            notify_headers=headers).start()
        started["registry"] = registry.process.pid
        log(f"started registry at {registry_address}"
            + (f", notifying {notify_url} of pushes" if notify_url else ""))

    env = {"DOCKER_HOST": engine.docker_host, "BASEWATCH_REGISTRY": registry_address,
           **(daemon_env or {})}
    state = {"started": started, "docker_host": engine.docker_host, "registry": registry_address,
             "notify": notify, "env": env}
    _write_private(state_dir / "state.json", json.dumps(state, indent=2))
    _write_private(state_dir / "env", exports(env))
    return env


def cmd_postgres(state_dir: Path, port: int | None = None) -> dict[str, str]:
    """Reuse or start the PostgreSQL server of STATE_DIR/postgres; its URL, as
    BASEWATCH_DATABASE_URL, added to STATE_DIR/env."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = _read_state(state_dir)
    started: dict[str, int] = state.setdefault("started", {})
    env: dict[str, str] = state.setdefault("env", {})
    known = state.get("postgres")
    if known and "postgres" in started and not _gone(started["postgres"]):
        log(f"using PostgreSQL on 127.0.0.1:{known['port']}")
    else:
        server = Postgres(state_dir / "postgres", port or free_port()).start()
        started["postgres"] = server.process.pid
        state["postgres"] = {"port": server.port}
        env["BASEWATCH_DATABASE_URL"] = server.url()
        log(f"started PostgreSQL on 127.0.0.1:{server.port} (data in {server.root})")
    _write_private(state_dir / "state.json", json.dumps(state, indent=2))
    _write_private(state_dir / "env", exports(env))
    return {"BASEWATCH_DATABASE_URL": env["BASEWATCH_DATABASE_URL"]}


def cmd_down(state_dir: Path) -> None:
    state_file = state_dir / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        for name, pid in state.get("started", {}).items():
            if name == "dockerd" and engine_answers(state["docker_host"]):
                remove_network(state["docker_host"])
            log(f"stopping {name} (pid {pid})")
            # PostgreSQL's fast shutdown is SIGINT; its SIGTERM waits for every client.
            _terminate(pid, first=signal.SIGINT if name == "postgres" else signal.SIGTERM)
        state_file.unlink()
        (state_dir / "env").unlink(missing_ok=True)
    # A stopped dockerd leaves the host network's namespace mounted (exec/netns/default, once a
    # build ran with network_mode host, as the demo's base images do): `make clean` could not
    # remove .stack/ under it. Also after an earlier `down` that left it.
    engine = state_dir / "engine"
    if engine.is_dir() and not engine_answers(f"unix://{engine / 'docker.sock'}"):
        _unmount_below(engine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="install missing apt packages and the virtualenv")
    install.add_argument("--venv", type=Path, default=REPO / ".venv")
    install.add_argument("--no-venv", action="store_true")
    up = sub.add_parser("up", help="reuse or start an engine and a registry; print their "
                                   "environment as `export` lines")
    up.add_argument("--dir", type=Path, default=REPO / ".stack")
    up.add_argument("--registry-port", type=int, default=5000)
    up.add_argument("--notify", metavar="URL",
                    help="the basewatch daemon the registry tells of every push, e.g. "
                         "http://127.0.0.1:8080 (POST URL/webhooks/registry with "
                         "$BASEWATCH_NOTIFY_TOKEN); also prints BASEWATCH_URL, BASEWATCH_TOKEN "
                         "and BASEWATCH_NOTIFY_TOKEN for the daemon and the CLI")
    postgres = sub.add_parser("postgres", help="reuse or start a PostgreSQL server on "
                                               "loopback; print BASEWATCH_DATABASE_URL as an "
                                               "`export` line")
    postgres.add_argument("--dir", type=Path, default=REPO / ".stack")
    postgres.add_argument("--port", type=int, help="default: a free one")
    down = sub.add_parser("down", help="stop what `up` and `postgres` started")
    down.add_argument("--dir", type=Path, default=REPO / ".stack")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install_apt()
            for problem in install_cross_platform():
                # Only the multi-platform tests need it: they are skipped, the rest still runs.
                log(f"warning: {problem}; the multi-platform tests will be skipped")
            if not args.no_venv:
                install_venv(args.venv)
        elif args.command == "up":
            state_dir = args.dir.resolve()
            notify_url = notify_token = None
            daemon_env: dict[str, str] = {}
            if args.notify:
                url = daemon_url(args.notify)
                daemon_env = {"BASEWATCH_URL": url, **daemon_tokens(state_dir)}
                notify_url, notify_token = url + NOTIFY_PATH, daemon_env["BASEWATCH_NOTIFY_TOKEN"]
            # Logs go to stderr: stdout is only the exports, for `eval "$(stack.py up)"`.
            print(exports(cmd_up(state_dir, args.registry_port, notify_url, notify_token,
                                 daemon_env)), end="", flush=True)
        elif args.command == "postgres":
            print(exports(cmd_postgres(args.dir.resolve(), args.port)), end="", flush=True)
        else:
            cmd_down(args.dir.resolve())
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
