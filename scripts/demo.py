"""`make demo`: start the stack, run the daemon on config/demo.yml, patch the base once.

The daemon's log shows the patch being noticed and both applications rebuilt and pushed. The
daemon then keeps running until Ctrl-C; `--exit-after-rebuild` stops it once the rebuilds are done.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import docker

import stack
from busybox_images import BaseImages

REPO = Path(__file__).resolve().parent.parent
# The interpreter running this script, on this checkout: not a hard-coded virtual environment.
BASEWATCH = [sys.executable, "-m", "basewatch"]
CONFIG = REPO / "config" / "demo.yml"
STATE = REPO / ".basewatch"  # config/demo.yml's state_dir
BASE = "127.0.0.1:5000/demo/base:1"
TASKS = ("hello", "web")
URL = "http://127.0.0.1:8080"
API_TOKEN, NOTIFY_TOKEN = "demo-api-token", "demo-notify-token"


def say(message: str) -> None:
    print(f"\n==> {message}\n", flush=True)


def relay(daemon: subprocess.Popen) -> None:
    """Echo the daemon's log."""
    for line in daemon.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()


def runs_on(digest: str) -> dict[str, dict]:
    """The latest run of each demo task built because the base moved to `digest`, from the
    daemon's API: not a run left from an earlier demo, nor one on an older push."""
    request = urllib.request.Request(f"{URL}/api/runs?top=50",
                                     headers={"Authorization": f"Bearer {API_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        runs = json.load(response)
    found: dict[str, dict] = {}
    for run in reversed(runs):  # oldest first: the latest wins
        change = run.get("base_change") or {}
        if run["task"] in TASKS and change.get("digest") == digest:
            found[run["task"]] = run
    return found


def wait_for_rebuilds(digest: str, daemon: subprocess.Popen, timeout: float) -> dict[str, dict]:
    """Each task's run on `digest`, once every one of them has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and daemon.poll() is None:
        found = runs_on(digest)
        if set(found) == set(TASKS) and all(run["finished_at"] for run in found.values()):
            return found
        time.sleep(0.5)
    return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exit-after-rebuild", action="store_true")
    args = parser.parse_args()

    state_dir = REPO / ".stack"
    if STATE.exists():
        # A demo starts from a clean state: runs left from the last one would be built again
        # and could be taken for this demo's.
        say(f"removing the last demo's state ({STATE.name}/) to start clean")
        shutil.rmtree(STATE)
    # The registry tells the daemon about every push (docs/notifications.md).
    stack.cmd_up(state_dir, 5000, notify_url=f"{URL}/webhooks/registry",
                 notify_token=NOTIFY_TOKEN)
    env = dict(os.environ, DOCKER_HOST=json.loads((state_dir / "state.json").read_text())
               ["docker_host"], BASEWATCH_TOKEN=API_TOKEN, BASEWATCH_NOTIFY_TOKEN=NOTIFY_TOKEN,
               BASEWATCH_URL=URL)
    client = docker.DockerClient(base_url=env["DOCKER_HOST"], version="auto", timeout=300)
    images = BaseImages(client, state_dir / "demo-images")

    say(f"building the demo base image {BASE} (FROM scratch + busybox) and pushing it")
    images.build(BASE, {"/etc/base-release": "demo base 1\n"})

    say("starting: basewatch serve --config config/demo.yml")
    daemon = subprocess.Popen(
        [*BASEWATCH, "serve", "--config", str(CONFIG)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=relay, args=(daemon,), daemon=True).start()
    try:
        try:
            health = stack.daemon_health(URL, daemon)
        except RuntimeError as exc:
            raise SystemExit(f"demo: {exc}") from None
        say(f"the daemon is up: {json.dumps(health)}")
        time.sleep(2)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        say(f"patching the base: pushing {BASE} again with /etc/patch ({stamp})")
        patched = images.build(BASE, {"/etc/base-release": "demo base 1\n",
                                      "/etc/patch": f"security fix {stamp}\n"})
        rebuilt = wait_for_rebuilds(patched, daemon, timeout=180)
        if not rebuilt:
            say(f"the rebuilds on {patched} did not finish within 180 s: see the log above")
            return 1
        if failed := sorted(t for t, run in rebuilt.items() if run["status"] != "Succeeded"):
            say(f"the rebuild of {', '.join(failed)} on {patched} did not succeed: see the log "
                "above")
            return 1
        graph = subprocess.run([*BASEWATCH, "graph"], env=env,
                               capture_output=True, text=True)
        say(f"basewatch graph (BASEWATCH_TOKEN={API_TOKEN}):\n{graph.stdout or graph.stderr}")
        say(f"both applications were rebuilt on the patched base ({patched}) and pushed "
            f"({', '.join(rebuilt[t]['id'] for t in TASKS)}). "
            + ("Stopping." if args.exit_after_rebuild else
               "The daemon keeps watching: push the base again to see it again; Ctrl-C stops."))
        if not args.exit_after_rebuild:
            daemon.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
        client.close()
        stack.cmd_down(state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
