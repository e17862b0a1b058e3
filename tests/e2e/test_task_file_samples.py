"""Task files run with `basewatch run -f` against one daemon on the real engine and registries:
ACR's build, test and deploy scenario (tests/fixtures/scenario, as docs/task-files.md shows it)
and each file of the sample collection in tests/fixtures/taskfiles. The daemon's `aliases` map
ACR's `bash` and `curl` to busybox stand-ins (tests/support/tool_images.py)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import stack
from basewatch.builder.backends.docker.task_run import RUN_LABEL
from busybox_images import BaseImages
from tests.e2e.test_daemon import health, start_daemon, stop
from tests.e2e.test_graph import TOKEN
from tests.e2e.test_quick_build import cli, tag_exists
from tests.support.tool_images import build_tool_images

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCENARIO = FIXTURES / "scenario"
SAMPLES = FIXTURES / "taskfiles"


class Stack:
    """One daemon, its two registries and the images the files build on, for the module."""

    def __init__(self, folder: Path, url: str, registries: list[str]):
        self.folder, self.url, self.registries = folder, url, registries
        self.reg = registries[0]

    def context(self, name: str, files: dict[str, str]) -> Path:
        """A folder holding `files` (path -> text) and the sample task file of the same name."""
        folder = self.folder / "contexts" / name
        folder.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(text)
        shutil.copy(SAMPLES / name, folder / name)
        return folder

    async def run(self, folder: Path, task_file: str, *options: str) -> tuple[int, str, str]:
        """`basewatch run -f FILE [options] .` in the folder, as a user would type it."""
        return await cli("run", "-f", task_file, *options, ".", url=self.url, cwd=folder)


@pytest.fixture(scope="module")
def samples(tmp_path_factory, docker_host, docker_client):
    folder = tmp_path_factory.mktemp("samples")
    registries = [stack.Registry(folder / f"registry{n}", stack.free_port()).start()
                  for n in range(2)]
    process = None
    try:
        reg = registries[0].address
        base = f"{reg}/base/busybox:1"
        BaseImages(docker_client, folder / "images").build(base)
        aliases = build_tool_images(docker_client, base, reg, folder / "images")
        config = {"poll_interval": "1h", "api_token_env": "API_TOKEN",
                  "registries": [{"host": r.address} for r in registries],
                  "max_context_bytes": 200_000, "aliases": aliases}
        process, url = start_daemon(config, folder, docker_host, env={"API_TOKEN": TOKEN})
        health(url, process)
        yield Stack(folder, url, [r.address for r in registries])
    finally:
        if process is not None:
            stop(process)
        for registry in registries:
            registry.stop()


def left_on(docker_client, run_id: str) -> list[str]:
    """The run's containers, networks and volumes still on the engine."""
    label = {"label": f"{RUN_LABEL}={run_id}"}
    return ([c.name for c in docker_client.containers.list(all=True, filters=label)]
            + [n.name for n in docker_client.networks.list(filters=label)]
            + [v.name for v in docker_client.volumes.list(filters=label)])


def run_id_of(out: str) -> str:
    return re.match(r"Queued a run with ID: (\S+)", out).group(1)


# ------------------------------------------------------------------- the scenario


async def test_build_test_package_deploy_push_through_the_cli(samples, docker_client):
    reg = samples.reg
    code, out, err = await samples.run(SCENARIO, "acr-task.yaml", "--values", "values.yaml")
    assert code == 0, out + err
    run_id = run_id_of(out)
    for step in ("build-web", "build-tests", "web", "test", "package", "deploy", "push"):
        assert f"Step {step}: starting" in out, step
        assert re.search(rf"Step {step}: (Succeeded|Detached)", out), step
    # The two builds ran at the same time: each started before the other ended.
    assert out.index("Step build-tests: starting") < out.index("Step build-web: Succeeded")
    assert out.index("Step build-web: starting") < out.index("Step build-tests: Succeeded")
    assert "tests passed: http://web/index.html holds 'hello from web'" in out
    assert "replicas: 2" in out and "deployed to staging" in out, "deploy read the archive"
    summary = out[out.index("Steps:"):]
    for step in ("build-web", "build-tests", "web", "test", "package", "deploy", "push"):
        assert f"  {step} " in summary, step
    assert f"{reg}/scenario/web:{run_id}" in summary
    assert out.splitlines()[-1].startswith(f"Run ID: {run_id} was successful after ")
    assert tag_exists(reg, "scenario/web", run_id)
    assert tag_exists(reg, "scenario/web-tests", run_id)
    assert left_on(docker_client, run_id) == []

    # The same file, told to expect another page: the test fails, and stops what follows.
    code, out, err = await samples.run(SCENARIO, "acr-task.yaml", "--values", "values.yaml",
                                       "--set", "expect=goodbye")
    assert code == 1, out + err
    run_id = run_id_of(out)
    assert "tests failed: http://web/index.html holds 'hello from web', not 'goodbye'" in out
    for step in ("package", "deploy", "push"):
        assert f"Step {step}: Skipped" in out, step
        assert f"Step {step}: starting" not in out, step
    assert "deployed to" not in out
    assert f"Run ID: {run_id} failed after " in err
    assert "step test failed" in err
    assert not tag_exists(reg, "scenario/web", run_id)
    assert not tag_exists(reg, "scenario/web-tests", run_id)
    assert left_on(docker_client, run_id) == [], "nothing of the run is left on the engine"
    shown = json.loads((await cli("task", "show-run", "--run-id", run_id,
                                  url=samples.url))[1])
    assert shown["status"] == "Failed" and shown["outputs"] == []


# ------------------------------------------------------------- the sample collection


def web_files(base: str) -> dict[str, str]:
    """A web app served by busybox httpd, and tests that fetch it by its step id, `web`."""
    return {
        "web/index.html": "hello from web\n",
        "web/Dockerfile": f"FROM {base}\nCOPY index.html /www/index.html\n"
                          'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n',
        # The tests take a URL (http://web/ unless given one), and retry while it starts.
        "tests/test.sh": 'url=${1:-http://web/}\nfor i in $(seq 1 100); do\n'
                         '  wget -q -O - "$url" | grep -q "hello from web" && '
                         'echo "tests passed" && exit 0\n  sleep 0.1\ndone\nexit 1\n',
        "tests/Dockerfile": f"FROM {base}\nARG TARGET=web\nCOPY test.sh /test.sh\n"
                            'ENTRYPOINT ["sh", "/test.sh"]\n',
        "chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    }


def hello_files(base: str, dockerfile: str = "Dockerfile") -> dict[str, str]:
    return {"greeting": "hello from the sample\n",
            dockerfile: f'FROM {base}\nCOPY greeting /greeting\nCMD ["cat", "/greeting"]\n'}


async def run_sample(samples, name: str, files: dict[str, str], *options: str):
    code, out, err = await samples.run(samples.context(name, files), name, *options)
    assert code == 0, out + err
    run_id = run_id_of(out)
    assert out.splitlines()[-1].startswith(f"Run ID: {run_id} was successful after ")
    return run_id, out


async def test_build_and_push_several_tags(samples):
    reg = samples.reg
    run_id, _ = await run_sample(samples, "build-push.yaml", hello_files(f"{reg}/base/busybox:1"))
    assert tag_exists(reg, "apps/hello", run_id) and tag_exists(reg, "apps/hello", "latest")


async def test_build_then_run(samples):
    reg = samples.reg
    _, out = await run_sample(samples, "build-run.yaml", hello_files(f"{reg}/base/busybox:1"))
    assert "hello from the sample" in out, "the second step ran the image the first built"


async def test_build_test_package_deploy(samples):
    reg = samples.reg
    run_id, out = await run_sample(samples, "build-test-deploy.yaml",
                                   web_files(f"{reg}/base/busybox:1"), "--set", "stage=prod")
    assert "tests passed" in out and "chart/Chart.yaml" in out, "deploy listed the archive"
    assert tag_exists(reg, "apps/web", run_id)


async def test_parallel_and_dependent_when(samples):
    reg = samples.reg
    # Here the tests run alone, with no server to reach: they check the page they hold.
    files = {**web_files(f"{reg}/base/busybox:1"),
             "tests/index.html": "hello from web\n",
             "tests/test.sh": 'grep -q "hello from web" /index.html && echo "tests passed"\n',
             "tests/Dockerfile": f"FROM {reg}/base/busybox:1\nCOPY test.sh index.html /\n"
                                 'ENTRYPOINT ["sh", "/test.sh"]\n'}
    run_id, out = await run_sample(samples, "when-parallel-dependent.yaml", files)
    assert "tests passed" in out
    assert out.index("Step build-tests: starting") < out.index("Step build-web: Succeeded")
    assert tag_exists(reg, "apps/web", run_id)


async def test_a_detached_server_and_a_curl_client(samples):
    _, out = await run_sample(samples, "server-client.yaml",
                              web_files(f"{samples.reg}/base/busybox:1"))
    assert "hello from web" in out, "the client fetched the server's page"


async def test_several_registries_through_values(samples):
    first, second = samples.registries
    files = {**hello_files(f"{first}/base/busybox:1", "hello.dockerfile"),
             "multiple-registries.values.yaml": (SAMPLES / "multiple-registries.values.yaml")
             .read_text()}
    # The values file names the usual ports; this stack's registries are elsewhere.
    run_id, _ = await run_sample(samples, "multiple-registries.yaml", files,
                                 "--values", "multiple-registries.values.yaml",
                                 "--set", f"REGISTRY1={first}", "--set", f"REGISTRY2={second}")
    assert tag_exists(first, "hello", run_id) and tag_exists(second, "hello", run_id)


async def test_files_in_the_working_directory(samples):
    _, out = await run_sample(samples, "working-directory-files.yaml", {})
    assert re.search(r"read \| built on \w", out), "the second step read what the first wrote"


async def test_secret_volumes_through_b64enc(samples):
    secret = "t0ken-in-a-v0lume"
    _, out = await run_sample(samples, "secret-volumes.yaml", {},
                              "--set-secret", f"token={secret}")
    assert secret not in out
    # Both files were read; what a secret volume holds is masked, the note as the token.
    assert re.search(r"acb_step_0 \| \*{5}", out) and "kept like one" not in out, out
