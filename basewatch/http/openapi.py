"""The OpenAPI document served at /api/openapi.json. Request bodies come from the same pydantic
models that validate them, so the document cannot drift from what the API accepts."""
from __future__ import annotations

from basewatch import __version__
from basewatch.builder.quick_runs import QuickBuildSpec
from basewatch.config import TaskSettings, TimerSettings

_ERROR = {"description": "a message a person can act on",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_RUN = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}}
_THE_RUN = {"description": "the run", **_RUN}  # OpenAPI requires every response's description
_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_TIMER_NAME = {"name": "timer", "in": "path", "required": True, "schema": {"type": "string"}}
_TIMER = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Timer"}}}}

_SOURCE_WEBHOOKS = (
    ("github", "GitHub", "push, pull_request, ping", "X-Hub-Signature-256"),
    ("gitlab", "GitLab", "Push Hook, Merge Request Hook", "X-Gitlab-Token"),
    ("azure-devops", "Azure DevOps", "git.push, git.pullrequest.created and updated",
     "basic auth"),
    ("gitea", "Gitea and Forgejo", "push, pull_request",
     "X-Gitea-Signature or X-Forgejo-Signature"),
)


def _op(summary: str, ok: dict, *errors: int, body: dict | None = None,
        parameters: list | None = None, public: bool = False) -> dict:
    operation = {"summary": summary, "responses": {**ok, **{str(e): _ERROR for e in errors}}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    if parameters:
        operation["parameters"] = parameters
    if public:
        operation["security"] = []
    else:
        operation["responses"]["401"] = _ERROR
    return operation


def _json(ref: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _model_schemas(**models) -> dict:
    """The pydantic models' schemas, with the models they nest (pydantic's `$defs`) hoisted
    beside them: a `$ref` in an OpenAPI document resolves from the document's root."""
    schemas: dict = {}
    for name, model in models.items():
        schema = model.model_json_schema(mode="validation",
                                         ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    return schemas


def openapi_document() -> dict:
    runs_query = [{"name": name, "in": "query", "required": False, "schema": schema}
                  for name, schema in (("task", {"type": "string"}),
                                       ("status", {"type": "string"}),
                                       ("image", {"type": "string"}),
                                       ("top", {"type": "integer", "default": 15, "minimum": 1,
                                                "maximum": 10000}))]
    paths = {
        "/healthz": {"get": _op("daemon, engine, state disk and registry health",
                                {"200": {"description": "health report; degraded names what fails "
                                                "(unregistered_tasks: config tasks the daemon "
                                                "could not register, with why)"},
                                 "503": {"description": "the same report, status starting: the "
                                                "config's tasks are being registered "
                                                "(registration: state, registered, total, "
                                                "failed); Retry-After"}},
                                public=True)},
        "/metrics": {"get": _op("Prometheus metrics", {"200": {"description": "text format"}},
                                public=True)},
        "/webhooks/registry": {"post": _op(
            "registry push notifications (CNCF distribution, Docker Hub, Harbor, ACR, Quay); "
            "authenticated with the notification token",
            {"202": {"description": "accepted, duplicates, ignored, rechecked"}},
            400, 413, 503, public=True)},
        **{f"/webhooks/{provider}": {"post": _op(
            f"{title} webhook deliveries ({events}); authenticated by {auth} with the webhook "
            "secret of the tasks it may trigger",
            {"200": {"description": "a ping"},
             "202": {"description": "run_ids queued, or the reason none was"}},
            400, 401, 413, 503, public=True)}
           for provider, title, events, auth in _SOURCE_WEBHOOKS},
        "/api/openapi.json": {"get": _op("this document", {"200": {"description": "OpenAPI"}})},
        "/api/graph": {"get": _op("watched bases, digests, dependents and cascades",
                                  {"200": {"description": "the graph"}})},
        "/api/tasks": {
            "get": _op("list tasks", {"200": {"description": "tasks; a config task the daemon "
                                              "could not register carries its `error`"}}),
            "post": _op("create a task", {"201": {"description": "the task"}}, 400, 409,
                        body=_json("Task")),
        },
        "/api/tasks/{name}": {
            "get": _op("show a task and its bases", {"200": {"description": "the task"}}, 404,
                       parameters=[_NAME]),
            "patch": _op("update a task", {"200": {"description": "the task"}}, 400, 404, 409,
                         body={"application/json": {"schema": {"type": "object"}}},
                         parameters=[_NAME]),
            "delete": _op("delete a task", {"204": {"description": "deleted"}}, 404, 409,
                          parameters=[_NAME]),
        },
        "/api/tasks/{name}/webhook": {
            "get": _op("what to enter in the git provider's settings for the task's webhook: "
                       "url, secret (the webhook_secret_env value, or one generated and kept "
                       "on the first ask), events, instructions",
                       {"200": {"description": "the webhook to add by hand"}}, 400, 404,
                       parameters=[_NAME]),
        },
        "/api/tasks/{name}/timers": {
            "get": _op("list a task's timers, each with its next fire (UTC)",
                       {"200": {"description": "timers"}}, 404, parameters=[_NAME]),
            "post": _op("add a timer: five-field cron in UTC, Sunday as 0",
                        {"201": {"description": "the timer", **_TIMER}}, 400, 404, 409,
                        body=_json("TimerSettings"), parameters=[_NAME]),
        },
        "/api/tasks/{name}/timers/{timer}": {
            "patch": _op("change a timer's schedule or whether it is enabled",
                         {"200": {"description": "the timer", **_TIMER}}, 400, 404, 409,
                         body={"application/json": {"schema": {"type": "object", "properties": {
                             "schedule": {"type": "string"}, "enabled": {"type": "boolean"}}}}},
                         parameters=[_NAME, _TIMER_NAME]),
            "delete": _op("remove a timer", {"204": {"description": "removed"}}, 404, 409,
                          parameters=[_NAME, _TIMER_NAME]),
        },
        "/api/tasks/{name}/runs": {"post": _op(
            "run a task now", {"202": {"description": "queued", **_RUN}}, 400, 404, 429,
            body={"application/json": {"schema": {"type": "object", "properties": {
                "values": {"type": "object", "description": "--set: over values_file's"},
                "values_file": {"type": "string", "description": "a values file's YAML text"},
                "secrets": {"type": "object", "additionalProperties": {"type": "string"},
                            "description": "--set-secret (a task file's): held in the "
                                           "daemon's memory for the run, stored nowhere"},
                "registry": {"type": "string", "description": "--registry: the run's own "
                             "registry ({{.Run.Registry}}, $Registry), host[:port], over the "
                             "config's `registry`; stored with the run"}}}}},
            parameters=[_NAME])},
        "/api/builds": {"post": _op(
            "quick build, or a quick run of a task file (task_file: its text; values, "
            "values_file, secrets beside the spec, secrets never stored): a JSON spec with "
            "context_url, or a context tarball (gzip) with the spec in the X-Basewatch-Build "
            "header; a quick run's upload is multipart/form-data: a `spec` part (JSON), then "
            "a `context` part (the tarball)",
            {"202": {"description": "queued", **_RUN}}, 400, 413, 429,
            body={**_json("QuickBuild"), "application/gzip": {"schema": {
                "type": "string", "format": "binary"}},
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "spec": {"type": "object"},
                    "context": {"type": "string", "format": "binary"}}}}})},
        "/api/runs": {"get": _op("list runs, newest first", {"200": {"description": "runs"}},
                                 400, parameters=runs_query)},
        "/api/runs/{run_id}": {
            "get": _op("show a run", {"200": _THE_RUN}, 404, parameters=[_RUN_ID]),
            "patch": _op("archive a run, or not", {"200": _THE_RUN}, 400, 404, 409,
                         body={"application/json": {"schema": {
                             "type": "object", "required": ["archived"],
                             "properties": {"archived": {"type": "boolean"}}}}},
                         parameters=[_RUN_ID]),
        },
        "/api/runs/{run_id}/cancel": {"post": _op("cancel a queued or running run",
                                                  {"200": _THE_RUN}, 404, 409,
                                                  parameters=[_RUN_ID])},
        "/api/runs/{run_id}/log": {"get": _op(
            "a run's log; follow=1 streams it until the run ends",
            {"200": {"description": "text", "content": {"text/plain": {}}}}, 404,
            parameters=[_RUN_ID, {"name": "follow", "in": "query", "required": False,
                                  "schema": {"type": "boolean"}}])},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "basewatch", "version": __version__,
                 "description": "Rebuild every image built on a base image when it is patched."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "the token from api_token_env"}},
            "schemas": {
                **_model_schemas(Task=TaskSettings, QuickBuild=QuickBuildSpec,
                                 TimerSettings=TimerSettings),
                "Timer": {"type": "object", "properties": {
                    "name": {"type": "string"}, "schedule": {"type": "string"},
                    "enabled": {"type": "boolean"},
                    "next_fire": {"type": ["string", "null"], "format": "date-time",
                                  "description": "UTC; null when disabled"}}},
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}}},
                "Run": {"type": "object", "properties": {
                    "id": {"type": "string"}, "task": {"type": ["string", "null"]},
                    "type": {"enum": ["QuickBuild", "QuickRun", "AutoBuild", "AutoRun"]},
                    "trigger": {"enum": ["Manual", "Commit", "Pull Request", "Timer",
                                         "Image Update"]},
                    "status": {"enum": ["Queued", "Started", "Running", "Succeeded", "Failed",
                                        "Canceled", "Error", "Timeout"]},
                    "platform": {"type": "string"}, "outputs": {"type": "array"},
                    "base_digests": {"type": "object"},
                    "base_change": {
                        "description": "for an Image Update run: the base reference, platform "
                                       "and digest whose change fired it",
                        "type": ["object", "null"], "properties": {
                            "reference": {"type": "string"}, "platform": {"type": "string"},
                            "digest": {"type": "string"}}},
                    "source_commit": {
                        "description": "for a Commit or Pull Request run: the commit (full "
                                       "SHA) it builds, the branch pushed (a pull request's "
                                       "head branch), the pull request's number and target "
                                       "branch, the ref its head is fetched by",
                        "type": ["object", "null"], "properties": {
                            "commit": {"type": "string"},
                            "branch": {"type": ["string", "null"]},
                            "pull_request": {"type": ["integer", "null"]},
                            "target_branch": {"type": ["string", "null"]},
                            "fetch_ref": {"type": ["string", "null"]}}},
                    "git_revision": {"type": ["string", "null"]},
                    "registry": {"type": ["string", "null"],
                                 "description": "the run's own registry ({{.Run.Registry}}, "
                                                "$Registry), when it was given one"},
                    "engine": {"type": ["string", "null"],
                               "description": "the build engine of the pool (engines:) it "
                                              "went to; null: the local engine"},
                    "daemon": {"type": ["string", "null"],
                               "description": "the daemon that ran it (its cluster name and "
                                              "an id of that start); null: not started yet"},
                    "archived": {"type": "boolean"},
                    "steps": {
                        "description": "GET /api/runs/{run_id} only: a task file's steps, "
                                       "each as it ended (in the file's order), so a run "
                                       "still going or cut short shows those done",
                        "type": "array", "items": {"$ref": "#/components/schemas/RunStep"}}}},
                "RunStep": {"type": "object", "properties": {
                    "id": {"type": "string"}, "kind": {"enum": ["build", "push", "cmd"]},
                    "action": {"type": "string", "description": "its image, tags or pushes"},
                    "status": {"enum": ["Succeeded", "Failed", "Skipped", "Detached"]},
                    "started_after_seconds": {
                        "type": ["number", "null"],
                        "description": "from the run's start; null for a skipped step"},
                    "duration_seconds": {"type": "number"},
                    "attempts": {"type": "integer"},
                    "exit_code": {"type": ["integer", "null"]},
                    "error": {"type": ["string", "null"], "description": "one line"}}},
            },
        },
    }
