"""What the dashboard's browser test and scripts/screenshot.py both set up: a basewatch daemon
on the real engine, beside a registry whose push notifications reach it, with

    demo/base:1 ─► api ─► demo/api:stable ─► worker
               └─► web
    <a registry that is down>/legacy/base:2 ─► legacy   (its reference's check fails)

so that pushing a patched base cascades base → api → worker while web builds beside them. Each
build prints a line a second or so, so its log can be watched arriving.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

import stack
from busybox_images import BaseImages

TOKEN = "dashboard-demo-token"
NOTIFY_TOKEN = "dashboard-notify-token"


def notify_options(port: int) -> dict:
    """How the registry is started so that its pushes reach a daemon on `port`."""
    return {"notify_url": f"http://127.0.0.1:{port}/webhooks/registry",
            "notify_headers": {"Authorization": [f"Bearer {NOTIFY_TOKEN}"]}}


def _app(folder: Path, base: str, name: str, steps: list[str], extra: str = "") -> None:
    """A build context whose build prints one of `steps` a second, from a script (so the log
    shows the output, not a long RUN line)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "build.sh").write_text("".join(f"echo '{name}: {step}'\nsleep 1\n"
                                             for step in steps))
    (folder / "Dockerfile").write_text(f"FROM {base}\n{extra}COPY build.sh /build.sh\n"
                                       f"RUN sh /build.sh\n")


@dataclass
class Scene:
    url: str
    registry: str
    base: str
    process: subprocess.Popen
    images: BaseImages
    log: Path  # the daemon's output

    def patch_base(self, note: str) -> str:
        """Push the base again with a new file: its new digest."""
        return self.images.build(self.base, {"/etc/base-release": "1\n", "/etc/patch": note})

    def stop(self, timeout: float = 30) -> str:
        """Stop the daemon (SIGTERM); its output."""
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # where it is stuck, into its log
            self.process.kill()
            self.process.wait()
        return self.log.read_text()


def start(workdir: Path, docker_host: str, registry: str, port: int, images: BaseImages,
          hostile_line: str | None = None) -> Scene:
    """Build the bases, write the tasks and the config, and start `basewatch serve` on `port`
    (the registry at `registry` must notify it: `notify_options(port)`). `hostile_line`: a line
    api's build prints, as a log may hold anything, and (its first word) the FROM of a task
    that cannot be registered, whose error quotes it."""
    base = f"{registry}/demo/base:1"
    images.build(base, {"/etc/base-release": "1\n"})
    images.build(f"{registry}/demo/api:stable", {"/etc/api-release": "0\n"})
    down = f"127.0.0.1:{stack.free_port()}"  # nothing listens there: the check fails
    apps = workdir / "apps"
    extra = f"RUN echo '{hostile_line}'\n" if hostile_line else ""
    _app(apps / "api", base, "api", ["resolving dependencies", "compiling the server",
                                     "compiling the handlers", "linking",
                                     "running the unit tests", "312 passed"], extra)
    _app(apps / "web", base, "web", ["bundling assets", "minifying", "compressing",
                                     "writing the manifest"])
    _app(apps / "worker", f"{registry}/demo/api:stable", "worker",
         ["installing the job runner", "registering 14 jobs", "warming the cache",
          "checking the schedule", "smoke test: 3 jobs ran"])
    (apps / "legacy").mkdir(parents=True, exist_ok=True)
    (apps / "legacy" / "Dockerfile").write_text(f"FROM {down}/legacy/base:2\n")
    if hostile_line:
        # A task that cannot be registered, its error quoting its Dockerfile.
        (apps / "hostile").mkdir(parents=True, exist_ok=True)
        (apps / "hostile" / "Dockerfile").write_text(f"FROM {hostile_line.split()[0]}\n")
    images_of = {"api": [f"{registry}/demo/api:stable", f"{registry}/demo/api:{{{{.Run.ID}}}}"],
                 "web": [f"{registry}/demo/web:latest"],
                 "worker": [f"{registry}/demo/worker:latest"],
                 "legacy": [f"{registry}/demo/legacy:latest"]}
    if hostile_line:
        images_of["hostile"] = [f"{registry}/demo/hostile:latest"]
    config = {
        "state_dir": "state", "listen": f"127.0.0.1:{port}",
        # Pushes are noticed through the registry's notifications, not polls.
        "poll_interval": "1h", "max_concurrent_runs": 2,
        "api_token_env": "DASHBOARD_API_TOKEN",
        "notifications": {"token_env": "DASHBOARD_NOTIFY_TOKEN"},
        "registries": [{"host": registry}, {"host": down, "poll_interval": "2s"}],
        "tasks": [{"name": name, "context": f"apps/{name}", "image": images_of[name],
                   **({"timers": [{"name": "nightly", "schedule": "0 3 * * *"}]}
                      if name == "web" else {})}
                  for name in images_of],
    }
    (workdir / "basewatch.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    log = workdir / "daemon.log"
    with open(log, "wb") as output:  # a file, not a pipe: nobody has to keep reading it
        process = subprocess.Popen(
            [sys.executable, "-m", "basewatch", "serve", "--config", "basewatch.yml"],
            env={**os.environ, "DOCKER_HOST": docker_host, "DASHBOARD_API_TOKEN": TOKEN,
                 "DASHBOARD_NOTIFY_TOKEN": NOTIFY_TOKEN},
            stdout=output, stderr=subprocess.STDOUT, cwd=workdir)
    scene = Scene(f"http://127.0.0.1:{port}", registry, base, process, images, log)
    try:
        stack.daemon_health(scene.url, process)
    except RuntimeError as exc:
        process.kill()
        process.wait()
        raise RuntimeError(f"{exc}\n{log.read_text()[-4000:]}") from None
    return scene
