"""`task run --registry HOST`: the run's own registry for one run, through the API's body and
the CLI, checked before anything is queued, stored with the run (and with a re-run of it), and
the registry its task file is rendered and pushed with; without it, the config's."""
from __future__ import annotations

import pytest

from basewatch.cli import main
from basewatch.client import DaemonClient
from basewatch.errors import InvalidRequestError
from basewatch.http.openapi import openapi_document
from basewatch.run_plan import BuildStep
from basewatch.builder.run_secrets import RunSecrets
from tests.unit.test_task_file_runs import (
    REGISTRY,
    app_folder,
    plan_of,
    planner,
    registrar,
    services,
    store,  # noqa: F401 (a fixture)
    task_settings,
)


TASK_FILE = """\
version: v1.1.0
steps:
  - build: -t $Registry/web:$ID -f web/Dockerfile web
  - push: ["{{.Run.Registry}}/web:$ID"]
"""


async def registered(store, tmp_path):  # noqa: F811
    await registrar(store).register(task_settings(app_folder(tmp_path, TASK_FILE)).to_task(),
                                    "config")
    return services(store, registrar(store), RunSecrets())


async def test_a_task_run_s_registry_is_stored_and_renders_its_file(store, tmp_path):  # noqa: F811
    api = await registered(store, tmp_path)
    view = await api.run_task("app", {}, registry="other.example:5001")
    assert view["registry"] == "other.example:5001"
    run = await store.runs.get(view["id"])
    assert run.registry == "other.example:5001"
    plan = await plan_of(planner(store, tmp_path), run)
    web = plan.steps[0].action
    assert isinstance(web, BuildStep) and web.tags == [f"other.example:5001/web:{run.id}"]
    (push,) = plan.steps[-1].action
    assert push.tag == f"other.example:5001/web:{run.id}"

    # Without one, the config's; a re-run of an interrupted run keeps the run's own.
    plain = await store.runs.get((await api.run_task("app", {}))["id"])
    assert plain.registry is None
    assert (await plan_of(planner(store, tmp_path), plain)).steps[0].action.tags == [
        f"{REGISTRY}/web:{plain.id}"]
    await store.runs.mark_started(run.id)
    ((_, rerun),) = await store.runs.fail_unfinished("the daemon died")
    assert (await store.runs.get(rerun)).registry == "other.example:5001"


@pytest.mark.parametrize("given", ["not a host/x", "https://reg.example", 5, ""])
async def test_a_registry_that_is_not_a_host_is_refused_before_anything_is_queued(
        store, tmp_path, given):  # noqa: F811
    api = await registered(store, tmp_path)
    with pytest.raises(InvalidRequestError, match="registry must be a registry host"):
        await api.run_task("app", {}, registry=given)
    assert await store.runs.list() == []


def test_the_cli_sends_the_registry_with_the_run(monkeypatch, capsys):
    sent = {}

    def request(self, method, path, body=None, **kwargs):
        sent.update(method=method, path=path, body=body)
        return {"id": "ca9"}

    monkeypatch.setattr(DaemonClient, "request", request)
    assert main(["task", "run", "app", "--registry", "other.example:5001", "--no-wait",
                 "--url", "http://127.0.0.1:9"]) == 0
    assert sent["path"] == "/api/tasks/app/runs"
    assert sent["body"]["registry"] == "other.example:5001"
    assert "Queued a run with ID: ca9" in capsys.readouterr().out


def test_the_api_document_names_the_registry():
    paths = openapi_document()["paths"]
    body = paths["/api/tasks/{name}/runs"]["post"]["requestBody"]["content"]
    assert "registry" in body["application/json"]["schema"]["properties"]
    assert "registry" in openapi_document()["components"]["schemas"]["Run"]["properties"]
