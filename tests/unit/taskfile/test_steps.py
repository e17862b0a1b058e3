"""Each step property read as acr-builder reads it, with its default."""
from __future__ import annotations

from textwrap import dedent

import pytest

from basewatch.run_plan import (
    BuildStep,
    CmdStep,
    Container,
    Network,
    PushStep,
    StepControl,
    VolumeMount,
)

from .support import ALIASES, load


def test_every_cmd_property():
    steps, workspace = load(dedent("""\
        version: v1.1.0
        stepTimeout: 100
        workingDirectory: /src
        env: ["A=task", "B=task"]
        networks:
          - name: front
          - name: back
            driver: bridge
            ipv6: true
            isDefault: true
          - name: existing
            skipCreation: true
        volumes:
          - name: certs
            secret:
              - ca.pem: {{"CA" | b64enc}}
        steps:
          - id: server
            cmd: bash -c "echo 'a b' && sleep 1"
            entryPoint: /bin/sh
            env: ["B=step", "C=step"]
            workingDirectory: sub
            user: "1000"
            network: front
            ports: [8080, "9090:90"]
            expose: ["80"]
            privileged: true
            pull: true
            detach: true
            keep: true
            timeout: 30
            startDelay: 1
            retries: 2
            retryDelay: 3
            repeat: 4
            ignoreErrors: true
            isolation: default
            volumeMounts:
              - name: certs
                mountPath: /certs
            when: ["-"]
          - cmd: bash pwd
            workingDirectory: /elsewhere
            disableWorkingDirectoryOverride: true
            timeout: 0
            retryDelay: 0
          - cmd: bash pwd
            disableWorkingDirectoryOverride: true
        """))
    server, second, third = steps
    assert server.control == StepControl(id="server", when=("-",), timeout=30.0,
                                         start_delay=1.0, retries=2, retry_delay=3.0, repeat=4,
                                         ignore_errors=True)
    assert server.action == CmdStep(Container(
        image=ALIASES["bash"], args=("-c", "echo 'a b' && sleep 1"), entrypoint="/bin/sh",
        env=("A=task", "B=step", "C=step"), working_directory="/src/sub", user="1000",
        network="front", ports=("8080", "9090:90"), expose=("80",), privileged=True, pull=True,
        detach=True, keep=True, mounts=(VolumeMount("certs", "/certs"),)))
    # timeout <= 0: the file's stepTimeout; retryDelay <= 0: 5 seconds, as acr-builder.
    assert (second.control.timeout, second.control.retry_delay) == (100.0, 5.0)
    assert second.action.container.working_directory == "/elsewhere"
    assert second.action.container.disable_working_directory_override
    assert third.action.container.working_directory is None
    assert workspace.working_directory == "/src"
    assert workspace.networks == (Network("front"), Network("back", ipv6=True, is_default=True),
                                  Network("existing", skip_creation=True))
    assert workspace.volumes == {"certs": {"ca.pem": b"CA"}}


def test_without_a_network_marked_default_the_first_is():
    _, workspace = load("networks: [{name: one}, {name: two}]\nsteps:\n  - cmd: bash\n")
    assert [n.is_default for n in workspace.networks] == [True, False]


@pytest.mark.parametrize("arguments, expected", [
    ("-t a .", BuildStep(platform="linux/amd64", tags=["a"], bases=[])),
    ("--tag=a --tag b:1 --file=docker/Dockerfile.prod --target runtime "
     "--platform linux/arm64/v8 --build-arg A=1 --build-arg=B=x=y --no-cache --pull "
     "--cache-from a:cache .",
     BuildStep(platform="linux/arm64/v8", tags=["a", "b:1"], bases=[],
               dockerfile="docker/Dockerfile.prod", build_args={"A": "1", "B": "x=y"},
               target="runtime", no_cache=True)),
    ("-t a -f web/Dockerfile web", BuildStep(platform="linux/amd64", tags=["a"], bases=[],
                                             context="web")),
    (". -f hello.dockerfile -t a", BuildStep(platform="linux/amd64", tags=["a"], bases=[],
                                             dockerfile="hello.dockerfile")),
    ("-t a /workspace/web", BuildStep(platform="linux/amd64", tags=["a"], bases=[],
                                      context="web")),
    ("-t 'a' \"--build-arg=MSG=hello world\" ./web/",
     BuildStep(platform="linux/amd64", tags=["a"], bases=[], context="web",
               build_args={"MSG": "hello world"})),
])
def test_build_arguments(arguments, expected):
    steps, _ = load(f"steps:\n  - build: {arguments}\n")
    assert steps[0].action == expected


def test_a_build_steps_paths_are_relative_to_its_working_directory():
    steps, _ = load("steps:\n  - build: -t a -f Dockerfile .\n    workingDirectory: web\n")
    assert (steps[0].action.context, steps[0].action.dockerfile) == ("web", "Dockerfile")


def test_cache_disabled_is_no_cache():
    steps, _ = load("steps:\n  - build: -t a .\n    cache: Disabled\n"
                    "  - build: -t a .\n    cache: enabled\n")
    assert [s.action.no_cache for s in steps] == [True, False]


def test_push_is_normalised_with_the_run_registry_and_deduplicated():
    steps, _ = load("steps:\n  - push:\n    - hello\n    - 127.0.0.1:5000/hello:latest\n"
                    "    - other.example.com/team/app:1\n    - localhost:5000/x\n")
    assert steps[0].action == (PushStep("127.0.0.1:5000/hello:latest"),
                               PushStep("other.example.com/team/app:1"),
                               PushStep("localhost:5000/x:latest"))


@pytest.mark.parametrize("version", ["v1.0.0", "v1.1.0", "1.0-preview-1", "V1.1.0"])
def test_the_versions_acr_defines(version):
    steps, _ = load(f"version: {version}\nsteps:\n  - cmd: bash\n")
    assert steps[0].control.id == "acb_step_0"


def test_a_multi_line_cmd_is_one_command():
    steps, _ = load(dedent("""\
        steps:
          - cmd: >
              bash -c
              'echo one two'
        """))
    assert steps[0].action.container.args == ("-c", "echo one two")


@pytest.mark.parametrize("file, expected", [
    ("acr-task.yaml", True), ("ci/build.YML", True), ("Dockerfile", False),
    ("docker/Dockerfile.yaml.bak", False), ("app.dockerfile", False)])
def test_a_task_file_is_told_by_its_extension(file, expected):
    from basewatch.taskfile import is_task_file
    assert is_task_file(file) is expected
