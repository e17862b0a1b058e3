"""Take docs/dashboard.png: the dashboard in the middle of a cascade, on a real daemon.

    python3 scripts/screenshot.py [--out docs/dashboard.png]

Starts the stack (the Docker Engine DOCKER_HOST names, or one of its own; a registry that
notifies the daemon), the scene of scripts/dashboard_scene.py, and headless Chromium; signs in,
pushes a patched base, and takes the picture once the cascade has reached its second task
(api rebuilt, worker building on api's new image with its log arriving). Needs root for the
engine, and Debian's chromium and chromium-driver (`python3 scripts/stack.py install`).
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import docker

import browser
import dashboard_scene
import stack
from busybox_images import BaseImages

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1440, 1140
# Log lines of the second task of the cascade on screen when the picture is taken.
WORKER_LINES = 3

RUNS_JS = """return [...document.querySelectorAll('#runs tbody tr[data-run]')]
  .map(r => ({task: r.cells[1].textContent, status: r.cells[3].textContent}));"""


def runs(driver) -> list[dict]:
    return driver.execute_script(RUNS_JS)


def mid_cascade(driver) -> bool:
    """api's rebuild done, worker's under way with a few lines of its log on the page."""
    status = {run["task"]: run["status"] for run in reversed(runs(driver))}  # newest wins
    log = driver.execute_script("return document.getElementById('log').textContent")
    return status.get("api") == "Succeeded" and status.get("worker") == "Running" and \
        len(re.findall(r"^worker: ", log, re.MULTILINE)) >= WORKER_LINES


def take(out: Path, workdir: Path) -> None:
    with stack.engine_for_session() as engine:
        port = stack.free_port()
        registry = stack.Registry(workdir / "registry", stack.free_port(),
                                  **dashboard_scene.notify_options(port)).start()
        client = docker.DockerClient(base_url=engine.docker_host, version="auto", timeout=300)
        scene = None
        try:
            images = BaseImages(client, workdir / "images")
            (workdir / "daemon").mkdir()
            scene = dashboard_scene.start(workdir / "daemon", engine.docker_host,
                                          registry.address, port, images)
            with browser.chromium(WIDTH, HEIGHT, still=True) as driver:
                browser.sign_in(driver, scene.url, dashboard_scene.TOKEN)
                browser.wait(driver, lambda d: len(d.find_elements(
                    "css selector", "#graph g.node.task")) == 4, 30, "the four tasks' nodes")
                browser.wait(driver, lambda d: d.find_elements(
                    "css selector", "#graph g.node.failing"), 30, "the failing reference")
                stack.log("pushing a patched base")
                scene.patch_base("security fix\n")
                browser.wait(driver, mid_cascade, 150, "worker building on api's new image")
                out.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(out))
                stack.log(f"wrote {out}")
        finally:
            if scene is not None:
                scene.stop()
            client.close()
            registry.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png")
    args = parser.parse_args()
    if problem := browser.available():
        print(f"screenshot: {problem}", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="basewatch-screenshot-"))
    try:
        take(args.out.resolve(), workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
