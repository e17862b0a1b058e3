"""docker/compose.yml on the real engine: the daemon's own image, built from docker/Dockerfile on
local bases, beside a registry whose push notifications rebuild a dependent; `down` keeps the
state volume and the next `up` goes on. Debian's docker-compose (v1) runs the scenario below,
with every check; Compose v2 runs docs/tutorials/sidecar-compose.md, which shows the same."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import stack
from local_images import build_env  # scripts/, put on sys.path by tests/conftest.py

from tests.e2e.test_notifications import parse_metrics
from tests.support.compose import ComposeProject, compose_v1, compose_v2, copy_project
from tests.support.tutorials import TUTORIALS, Session, parse, perform
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

# Loopback only: never through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def project(docker_host, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of the repository with wheels in docker/wheels, and the local bases on the
    engine: compose's variables for them."""
    copy = copy_project(tmp_path_factory.mktemp("project"))
    return copy, build_env(docker_host, copy / "docker" / "wheels", sys.executable)


def _compose(flavour: str) -> list[str]:
    if flavour == "v1":
        command = compose_v1()
        if command is None:
            pytest.skip("Debian's docker-compose is not installed (stack.py install adds it)")
        return command
    command, why = compose_v2()
    if command is None:
        pytest.skip(why)
    return command


class Daemon:
    """The containerised daemon's HTTP side, as seen from this host."""

    def __init__(self, port: int, token: str):
        self.url = f"http://127.0.0.1:{port}"
        self.token = token

    def get(self, path: str) -> bytes:
        request = urllib.request.Request(f"{self.url}{path}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with _OPENER.open(request, timeout=10) as response:
            return response.read()

    def answers(self) -> bool:
        try:
            return json.loads(self.get("/healthz"))["engine"] == "ok"
        except OSError:
            return False

    def runs(self) -> list[dict]:
        return json.loads(self.get("/api/runs?task=hello"))

    def metric(self, sample: str) -> float:
        return parse_metrics(self.get("/metrics").decode()).get(sample, 0)


def _write_config(folder: Path, registry: str) -> None:
    """A config folder as docker/config is, with a task built on a base in the compose registry.
    Readable by the container's basewatch user: pytest's folders are root's alone."""
    context = folder / "apps" / "hello"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {registry}/base/busybox:1\n"
                                        "RUN cat /etc/release > /release\n")
    (folder / "basewatch.yml").write_text(f"""\
state_dir: /var/lib/basewatch
listen: 0.0.0.0:8080
api_token_env: BASEWATCH_TOKEN
notifications: {{token_env: BASEWATCH_NOTIFY_TOKEN}}
registries:
  - host: {registry}
    endpoint: http://registry:5000
    engine_pulls_through_endpoint: false
    poll_interval: 1h     # an hour away: every check in this test is a notification's
tasks:
  - name: hello
    context: ./apps/hello
    image: ["{registry}/apps/hello:{{{{.Run.ID}}}}"]
""")
    for path in (folder, *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _healthy(docker_client, container_id: str) -> bool:
    state = docker_client.containers.get(container_id).attrs["State"]
    assert state["Status"] == "running", f"the basewatch container is {state['Status']}"
    return state.get("Health", {}).get("Status") == "healthy"


@pytest.mark.timeout(900)  # a cold image build on the vfs driver alone takes minutes
def test_compose_stack_rebuilds_on_a_notification_and_keeps_its_state(
        project, docker_host, docker_client, base_images, tmp_path):
    flavour = "v1"
    command = _compose(flavour)
    copy, variables = project
    registry_port, basewatch_port = stack.free_port(), stack.free_port()
    registry = f"127.0.0.1:{registry_port}"
    token = secrets.token_hex(16)
    _write_config(tmp_path / "config", registry)
    socket = docker_host.removeprefix("unix://")
    compose = ComposeProject(command, copy / "docker", f"bwtest{flavour}{os.getpid()}", {
        **variables, "DOCKER_HOST": docker_host, "DOCKER_SOCKET": socket,
        "DOCKER_GID": str(os.stat(socket).st_gid), "BASEWATCH_TOKEN": token,
        "BASEWATCH_NOTIFY_TOKEN": secrets.token_hex(16),
        "BASEWATCH_CONFIG": str(tmp_path / "config"), "REGISTRY_PORT": str(registry_port),
        "BASEWATCH_PORT": str(basewatch_port),
        # The engine has no default bridge (--bridge=none), which BuildKit (v2) would use.
        "BASEWATCH_BUILD_NETWORK": "none"})
    daemon = Daemon(basewatch_port, token)
    try:
        compose.run("up", "-d", "--build")
        basewatch = compose.container("basewatch")
        wait_until(daemon.answers, 60, "the containerised daemon's /healthz")
        # The daemon runs as basewatch, in the socket's group as well; nothing as root.
        uid = docker_client.containers.get(basewatch).exec_run(["id"]).output.decode()
        assert uid.startswith("uid=10001(basewatch) gid=10001(basewatch)"), uid
        assert f",{os.stat(socket).st_gid}" in uid or f"={os.stat(socket).st_gid}(" in uid, uid
        pid = docker_client.containers.get(basewatch).attrs["State"]["Pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        assert "\nUid:\t10001\t10001\t10001\t10001\n" in status, status
        wait_until(lambda: _healthy(docker_client, basewatch), 90, "HEALTHCHECK: healthy")

        # The base appears (first seen), then is patched: the notification rebuilds hello.
        base = f"{registry}/base/busybox:1"
        base_images.build(base, {"/etc/release": "1\n"})
        wait_until(lambda: daemon.metric(
            f'basewatch_digest_checks_total{{registry="{registry}",result="first"}}'),
            60, "the base's first digest, seen through a notification")
        assert daemon.runs() == []
        patched = base_images.build(base, {"/etc/release": "2\n"})
        [run] = wait_until(lambda: [r for r in daemon.runs() if r["status"] not in (
            "Queued", "Started", "Running")], 120, "the rebuild the notification asked for")
        assert run["status"] == "Succeeded", daemon.get(f"/api/runs/{run['id']}/log").decode()
        assert run["trigger"] == "Image Update"
        assert daemon.metric('basewatch_notifications_received_total{source="distribution"}')
        graph = daemon.get("/api/graph").decode()
        assert patched in graph

        # down without -v: the containers go, the state volume stays.
        compose.run("down")
        volume = docker_client.volumes.get(f"{compose.name}_basewatch-state")
        assert volume.attrs["Mountpoint"]
        compose.run("up", "-d")
        basewatch = compose.container("basewatch")
        wait_until(daemon.answers, 60, "the daemon after up again")
        # Its run history and the patched digest are still there: nothing to rebuild.
        assert [r["id"] for r in daemon.runs()] == [run["id"]]
        assert patched in daemon.get("/api/graph").decode()
        # A re-push of the same digest is checked, found the same, and rebuilds nothing.
        base_images.push(base)
        wait_until(lambda: daemon.metric(
            f'basewatch_digest_checks_total{{registry="{registry}",result="same"}}'),
            60, "the re-pushed base's check after the restart")
        assert daemon.metric(
            f'basewatch_digest_checks_total{{registry="{registry}",result="first"}}') == 0
        # The next patch rebuilds it once more: it goes on where it stopped.
        base_images.build(base, {"/etc/release": "3\n"})
        runs = wait_until(lambda: [r for r in daemon.runs() if r["status"] == "Succeeded"
                                   and r["id"] != run["id"]] and daemon.runs(), 120,
                          "the rebuild after the restart")
        assert len(runs) == 2, runs
        wait_until(lambda: _healthy(docker_client, basewatch), 90, "healthy after up again")
    finally:
        compose.run("down", "--volumes", "--remove-orphans")


# ---------------------------------------------------------------- the tutorial, command by command

TUTORIAL = TUTORIALS / "sidecar-compose.md"


@pytest.mark.timeout(900)
def test_every_command_of_the_sidecar_tutorial_runs(docker_host, tmp_path):
    """Each block of docs/tutorials/sidecar-compose.md typed as a reader would, with Compose
    v2 as `docker compose` (Debian's docker-compose where v2 cannot be had)."""
    command, _ = compose_v2()
    env = {**os.environ, "DOCKER_HOST": docker_host, "COMPOSE_PROJECT_NAME":
           f"bwtutorial{os.getpid()}", "REGISTRY_PORT": str(stack.free_port()),
           "BASEWATCH_PORT": str(stack.free_port())}
    socket = docker_host.removeprefix("unix://")
    env["DOCKER_SOCKET"] = socket  # the test's engine; compose would mount the host's default
    replacements = {"127.0.0.1:5000": f"127.0.0.1:{env['REGISTRY_PORT']}",
                    "127.0.0.1:8080": f"127.0.0.1:{env['BASEWATCH_PORT']}",
                    "/var/run/docker.sock": socket}
    if command is not None:  # `docker compose`: v2 as the docker CLI's plugin
        plugins = tmp_path / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(command[0])
        env["DOCKER_CONFIG"] = str(plugins.parent)
    else:
        if compose_v1() is None:
            pytest.skip("neither Compose v2 nor Debian's docker-compose can be had")
        replacements["docker compose"] = "docker-compose"
    cwd = copy_project(tmp_path / "clone")
    config = cwd / "docker" / "config" / "basewatch.yml"  # as it comes, beside the tutorial's
    config.write_text(config.read_text().replace(
        "127.0.0.1:5000", f"127.0.0.1:{env['REGISTRY_PORT']}"))
    session = Session(cwd, env, tmp_path / "session")
    try:
        perform(parse(TUTORIAL), session, replacements, block_timeout=600, until_timeout=180)
    finally:
        session.close()
        subprocess.run([*(command or ["docker-compose"]), "down", "--volumes",
                        "--remove-orphans"], cwd=tmp_path / "clone" / "docker", env=env,
                       capture_output=True)
