"""The task files in tests/fixtures/taskfiles, in the shapes of ACR's public samples, each read
into the plan it describes."""
from __future__ import annotations

from basewatch.run_plan import (
    BuildStep,
    CmdStep,
    Container,
    Network,
    PushStep,
    StepControl,
    TaskStep,
    VolumeMount,
    Workspace,
)
from basewatch.taskfile import load_values_file, mask, merge_values, parse_assignments

from .support import ALIASES, fixture, load

REGISTRY = "127.0.0.1:5000"
BASH = ALIASES["bash"]


def build(**fields) -> BuildStep:
    return BuildStep(**{"platform": "linux/amd64", "bases": [], **fields})


def control(step_id: str, **fields) -> StepControl:
    return StepControl(id=step_id, **{"timeout": 600.0, **fields})


def test_build_and_push_several_tags():
    steps, workspace = load(fixture("build-push.yaml"))
    assert steps == [
        TaskStep(control("build"), build(tags=[f"{REGISTRY}/apps/hello:ca1",
                                               f"{REGISTRY}/apps/hello:latest"])),
        TaskStep(control("acb_step_1"), (PushStep(f"{REGISTRY}/apps/hello:ca1"),
                                         PushStep(f"{REGISTRY}/apps/hello:latest"))),
    ]
    assert workspace == Workspace()  # /workspace, acb_default_network, no volumes or secrets


def test_build_then_run_the_image_built():
    steps, _ = load(fixture("build-run.yaml"))
    image = f"{REGISTRY}/apps/hello:ca1"
    assert steps == [TaskStep(control("acb_step_0"), build(tags=[image])),
                     TaskStep(control("acb_step_1"), CmdStep(Container(image=image)))]


def test_parallel_and_dependent_when():
    steps, _ = load(fixture("when-parallel-dependent.yaml"))
    assert [(s.control.id, s.control.when, s.control.timeout) for s in steps] == [
        ("build-web", ("-",), 300.0), ("build-tests", ("-",), 300.0),
        ("test", ("build-web", "build-tests"), 120.0), ("push", ("test",), 300.0)]
    assert steps[0].action == build(tags=[f"{REGISTRY}/apps/web:ca1"], context="web",
                                    dockerfile="Dockerfile")
    assert steps[1].action == build(tags=["apps/web-tests:ca1"], context="tests")
    assert steps[2].action == CmdStep(Container(image="apps/web-tests:ca1"))
    assert steps[3].action == (PushStep(f"{REGISTRY}/apps/web:ca1"),)


def test_a_detached_server_and_a_curl_client():
    steps, _ = load(fixture("server-client.yaml"))
    assert steps == [
        # The server's image is built first, so the file runs on its own.
        TaskStep(control("build"), build(tags=[f"{REGISTRY}/apps/web:ca1"], context="web")),
        TaskStep(control("server"), CmdStep(Container(
            image=f"{REGISTRY}/apps/web:ca1", detach=True, ports=("8000:80",),
            expose=("80",)))),
        TaskStep(control("client", start_delay=2.0, retries=3, retry_delay=1.0),
                 CmdStep(Container(image=ALIASES["curl"], args=("-fsS", "http://server/")))),
    ]


def test_several_registries_through_values():
    values = load_values_file(fixture("multiple-registries.values.yaml"))
    steps, _ = load(fixture("multiple-registries.yaml"), values=values)
    assert [s.action for s in steps] == [
        build(tags=["127.0.0.1:5000/hello:ca1"], dockerfile="hello.dockerfile"),
        (PushStep("127.0.0.1:5000/hello:ca1"),),
        build(tags=["127.0.0.1:5001/hello:ca1"], dockerfile="hello.dockerfile"),
        (PushStep("127.0.0.1:5001/hello:ca1"),),
    ]
    # --set wins over the values file.
    values = merge_values(values, parse_assignments(["REGISTRY2=registry.example.com"]))
    steps, _ = load(fixture("multiple-registries.yaml"), values=values)
    assert steps[3].action == (PushStep("registry.example.com/hello:ca1"),)


def test_files_in_the_working_directory():
    steps, workspace = load(fixture("working-directory-files.yaml"))
    assert [s.action for s in steps] == [
        CmdStep(Container(image=BASH, args=("-c", "echo built on $(date) > note.txt"))),
        CmdStep(Container(image=BASH, args=("cat", "note.txt"))),
        CmdStep(Container(image=BASH, args=("ls", "-l"), working_directory="/workspace/out")),
    ]
    assert workspace.working_directory == "/workspace"


def test_secret_volumes_through_b64enc():
    steps, workspace = load(fixture("secret-volumes.yaml"), secrets={"token": "s3cr3t-t0ken"})
    assert workspace.volumes == {"credentials": {"token": b"s3cr3t-t0ken",
                                                 "note": b"not secret, but kept like one"}}
    assert steps[0].action == CmdStep(Container(
        image=BASH, args=("cat", "/run/credentials/token", "/run/credentials/note"),
        mounts=(VolumeMount("credentials", "/run/credentials"),)))
    assert mask("token=s3cr3t-t0ken", workspace.secrets) == "token=*****"


def test_build_test_deploy_scenario():
    steps, workspace = load(fixture("build-test-deploy.yaml"), values={"stage": "qa"})
    by_id = {s.control.id: s for s in steps}
    assert list(by_id) == ["build-web", "build-tests", "web", "tests", "package", "deploy",
                           "acb_step_6"]
    assert by_id["build-tests"].action == build(tags=["apps/web-tests:ca1"], context="tests",
                                                build_args={"TARGET": "web"})
    assert by_id["web"].action.container.detach
    assert by_id["tests"].control == control("tests", when=("web", "build-tests"),
                                             timeout=60.0)
    assert by_id["tests"].action.container.args == ("http://web/",)
    assert by_id["package"].action.container.env == ("STAGE=qa",)
    assert by_id["deploy"].control.when is None  # after the step before it: package
    assert by_id["deploy"].action.container.env == ("STAGE=deploy-qa",)
    assert by_id["acb_step_6"].control.when == ("deploy",)
    assert workspace.networks == (Network("acb_default_network", is_default=True),)
