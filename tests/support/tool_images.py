"""Offline stand-ins for the images ACR's aliases name (`bash`, `curl`), made from busybox, so
task files written for ACR run here unchanged with the daemon's `aliases` pointing at them."""
from __future__ import annotations

import shutil
from pathlib import Path

import docker

# ACR's `bash` runs its arguments as a command (`bash echo hi`) or, given options, as bash's own
# (`bash -c '...'`); busybox has no bash, so its sh takes the second form.
BASH = """#!/bin/sh
case "$1" in -*) exec sh "$@" ;; esac
exec "$@"
"""
# `curl -fsS URL` as busybox wget: the options are curl's, the last other word is the URL.
# wget fails on an HTTP error as `curl -f` does. (No -T: it crashes here, see NOTES.md.)
CURL = """#!/bin/sh
for word in "$@"; do case "$word" in -*) ;; *) url=$word ;; esac; done
exec wget -q -O - "$url"
"""
TOOLS = {"bash": BASH, "curl": CURL}


def build_tool_images(client: docker.DockerClient, base: str, registry: str,
                      workdir: Path) -> dict[str, str]:
    """Build and push one image per tool on `base` (a busybox image); return the aliases."""
    aliases = {}
    for name, script in TOOLS.items():
        context = workdir / f"tool-{name}"
        shutil.rmtree(context, ignore_errors=True)
        context.mkdir(parents=True)
        (context / name).write_text(script)
        (context / "Dockerfile").write_text(
            f"FROM {base}\nCOPY {name} /usr/local/bin/{name}\n"
            f'RUN ["chmod", "755", "/usr/local/bin/{name}"]\n'
            f'ENTRYPOINT ["/usr/local/bin/{name}"]\n')
        image = f"{registry}/tools/{name}:1"
        client.images.build(path=str(context), tag=image, network_mode="host", rm=True)
        for chunk in client.images.push(image, stream=True, decode=True):
            if "error" in chunk:
                raise RuntimeError(f"cannot push {image}: {chunk['error']}")
        aliases[name] = image
    return aliases
