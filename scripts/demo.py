"""`make demo`: start the stack, run the daemon on config/demo.yml, patch the base once.

The daemon's log shows the patch being noticed and both applications rebuilt and pushed. The
daemon then keeps running until Ctrl-C; `--exit-after-rebuild` stops it once the rebuilds are done.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import docker

import stack
from busybox_images import BaseImages

REPO = Path(__file__).resolve().parent.parent
# The interpreter running this script, on this checkout: not a hard-coded virtual environment.
BASEWATCH = [sys.executable, "-m", "basewatch"]
CONFIG = REPO / "config" / "demo.yml"
BASE = "127.0.0.1:5000/demo/base:1"
TASKS = ("hello", "web")
URL = "http://127.0.0.1:8080"
API_TOKEN, NOTIFY_TOKEN = "demo-api-token", "demo-notify-token"


def say(message: str) -> None:
    print(f"\n==> {message}\n", flush=True)


def relay(daemon: subprocess.Popen, succeeded: set[str], done: threading.Event) -> None:
    """Echo the daemon's log and notice the rebuilds finishing."""
    for line in daemon.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        for task in TASKS:
            if f"({task}) Succeeded" in line:
                succeeded.add(task)
        if succeeded >= set(TASKS):
            done.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exit-after-rebuild", action="store_true")
    args = parser.parse_args()

    state_dir = REPO / ".stack"
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
    succeeded: set[str] = set()
    rebuilt = threading.Event()
    threading.Thread(target=relay, args=(daemon, succeeded, rebuilt), daemon=True).start()
    try:
        try:
            health = stack.daemon_health(URL, daemon)
        except RuntimeError as exc:
            raise SystemExit(f"demo: {exc}") from None
        say(f"the daemon is up: {json.dumps(health)}")
        time.sleep(2)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        say(f"patching the base: pushing {BASE} again with /etc/patch ({stamp})")
        images.build(BASE, {"/etc/base-release": "demo base 1\n",
                            "/etc/patch": f"security fix {stamp}\n"})
        if not rebuilt.wait(timeout=180):
            say("the rebuilds did not finish within 180 s: see the log above")
            return 1
        graph = subprocess.run([*BASEWATCH, "graph"], env=env,
                               capture_output=True, text=True)
        say(f"basewatch graph (BASEWATCH_TOKEN={API_TOKEN}):\n{graph.stdout or graph.stderr}")
        say("both applications were rebuilt on the patched base and pushed. "
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
