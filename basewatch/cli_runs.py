"""`basewatch build` and `basewatch task ...`: thin commands over the daemon's API."""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from basewatch.cli_output import add_output_options, emit, print_table
from basewatch.client import DaemonClient, DaemonError

if TYPE_CHECKING:
    from basewatch.cli_progress import ContextProgress

CLI_CONTEXT_LIMIT = 4 * 1024 ** 3
CANCEL_WAIT_SECONDS = 10
RUN_COLUMNS = ("RUN ID", "TASK", "PLATFORM", "STATUS", "TRIGGER", "STARTED", "DURATION",
               "OUTPUT IMAGE", "SOURCE")


def add_run_inputs(run) -> None:
    """What a task file's run takes from the command line, for `run` and `task run` alike."""
    run.add_argument("--set", action="append", default=[], metavar="K=V",
                     help="a value for {{.Values.K}}, over the values file's; e.g. --set tag=v7")
    run.add_argument("--values", metavar="FILE", help="a task file's values file (YAML), a "
                                                      "local file; e.g. --values prod.yaml")
    run.add_argument("--set-secret", action="append", default=[], metavar="K=V",
                     help="a task file's secret ({{.Secrets.K}}): held in the daemon's memory "
                          "for the run, masked in its log, stored nowhere; e.g. "
                          "--set-secret token=\"$TOKEN\"")
    run.add_argument("--registry", help="the run's registry ({{.Run.Registry}}, $Registry; "
                                        "default: the daemon's config); e.g. "
                                        "--registry reg:5000")

def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def add_daemon_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the daemon's URL (default: $BASEWATCH_URL, else "
                                      "http://127.0.0.1:8080); e.g. --url http://build-host:8080")
    parser.add_argument("--token", help="the API token (default: $BASEWATCH_TOKEN); e.g. "
                                        "--token \"$(cat ~/.basewatch-token)\"")


def _client(args: argparse.Namespace) -> DaemonClient:
    return DaemonClient(args.url, args.token)


# ---------------------------------------------------------------------- build


def add_build_command(commands) -> None:
    build = commands.add_parser("build", help="build (and push) an image from a context now")
    build.add_argument("context", help="a local folder, a git URL (https://host/org/repo.git"
                                       "#branch:folder) or a tarball URL; e.g. .")
    build.add_argument("-t", "--image", action="append", default=[], metavar="IMAGE",
                       help="a tag to push, repeatable; run variables work, quoted: e.g. "
                            "-t 'app:{{.Run.ID}}', -t 'reg:5000/app:$ID'")
    build.add_argument("-r", "--registry", metavar="HOST",
                       help="the registry the -t tags are relative to (and $Registry); e.g. "
                            "-r reg:5000 -t app:dev pushes reg:5000/app:dev")
    build.add_argument("-f", "--file", default="Dockerfile",
                       help="the Dockerfile, in the context (default Dockerfile); "
                            "e.g. -f docker/Dockerfile.prod")
    build.add_argument("--build-arg", type=key_value, action="append", default=[],
                       metavar="KEY=VALUE", help="repeatable; e.g. --build-arg VERSION=1.2")
    build.add_argument("--target", help="the stage to build; e.g. --target runtime")
    build.add_argument("--platform", default="linux/amd64",
                       help="os/arch[/variant]; a comma list builds each and pushes an index; "
                            "e.g. --platform linux/amd64,linux/arm64")
    build.add_argument("--no-push", action="store_true", help="build only, push nothing")
    build.add_argument("--no-logs", action="store_true", help="do not stream the log")
    build.add_argument("--no-wait", action="store_true", help="return once the run is queued")
    build.add_argument("--timeout", type=int, default=3600,
                       help="the run's limit in seconds (default 3600); e.g. --timeout 600")
    add_daemon_options(build)
    add_run_output(build)
    build.set_defaults(handler=cmd_build)


def add_run_output(parser: argparse.ArgumentParser) -> None:
    """-o and --query for a command that queues a run: table is the log as it happens (and a
    context's upload progress on a terminal); the others print the run's record once it ends
    (once queued, with --no-wait), and nothing else on stdout."""
    add_output_options(parser, "table")


def _machine_output(args: argparse.Namespace) -> bool:
    return getattr(args, "output", "table") != "table" or getattr(args, "query", None) \
        is not None


def cmd_build(args: argparse.Namespace) -> int:
    from basewatch.builder.contexts.archive import pack_local_context
    from basewatch.cli_progress import ContextProgress
    from basewatch.context_spec import parse_context

    client = _client(args)
    images = [relative_to(args.registry, image) for image in args.image]
    check_tags(images)
    spec = {"image": images, "file": args.file, "build_args": dict(args.build_arg),
            "target": args.target, "platform": args.platform, "push": not args.no_push,
            "timeout": args.timeout}
    if args.registry:
        spec["registry"] = args.registry
    source = parse_context(args.context)
    if source.kind == "local":
        with ContextProgress.for_terminal(_machine_output(args)) as progress:
            # The daemon enforces its own limit (max_context_bytes); this one only stops a
            # runaway.
            archive = pack_local_context(Path(source.location), args.file,
                                         limit=CLI_CONTEXT_LIMIT, progress=progress.packed)
            try:
                with open(archive, "rb") as data:
                    size = archive.stat().st_size
                    run = client.request(
                        "POST", "/api/builds", data=progress.upload(data, size), headers={
                            "Content-Type": "application/gzip", "Content-Length": str(size),
                            "X-Basewatch-Build": json.dumps(spec)})
            finally:
                archive.unlink(missing_ok=True)
    else:
        run = client.request("POST", "/api/builds", body={**spec, "context_url": args.context})
    return _follow(client, run, args)


def relative_to(registry: str | None, image: str) -> str:
    """`-t app:dev` under `-r reg:5000` is reg:5000/app:dev, as `az acr build -r` reads it;
    a tag naming its own registry, or starting with $Registry, is left as it is."""
    first, slash, _ = image.partition("/")
    names_host = slash and ("." in first or ":" in first or first == "localhost")
    if not registry or names_host or image.startswith(("$", "{{")):
        return image
    return f"{registry}/{image}"


def check_tags(images: list[str]) -> None:
    """A tag the shell emptied (`-t app:$ID` unquoted: $ID is the shell's, and empty) is
    refused before anything is queued."""
    for image in images:
        if not image or image.endswith((":", "/", "@")) or image.startswith(("/", ":")):
            raise DaemonError(
                f"-t {image!r} has an empty part: did the shell replace an unquoted $ID or "
                "$Registry with nothing? Quote it: -t 'app:$ID'")


# ---------------------------------------------------------------------- run


def add_run_command(commands) -> None:
    run = commands.add_parser(
        "run", help="run a task file (acr-task.yaml) or one command now, as a quick run")
    run.add_argument("context", help="a local folder, a git URL, a tarball URL, or /dev/null "
                                     "for none; e.g. .")
    what = run.add_mutually_exclusive_group(required=True)
    what.add_argument("-f", "--file", help="the task file, a local file (read here and sent); "
                                           "e.g. -f acr-task.yaml (this or --cmd is required)")
    what.add_argument("--cmd", help='one command, "IMAGE ARGS", as a one-step task file; '
                                    "e.g. --cmd 'busybox echo hello'")
    add_run_inputs(run)
    run.add_argument("--platform", default="linux/amd64",
                     help="os/arch: the run's OS and Architecture, and its builds' default; "
                          "e.g. --platform linux/arm64")
    run.add_argument("--timeout", type=int, default=3600,
                     help="the run's limit in seconds (default 3600); e.g. --timeout 600")
    run.add_argument("--no-logs", action="store_true", help="do not stream the log")
    run.add_argument("--no-wait", action="store_true", help="return once the run is queued")
    add_daemon_options(run)
    add_run_output(run)
    run.set_defaults(handler=cmd_run)


def cmd_task_file(command: str) -> str:
    """The one-step task file `basewatch run --cmd` runs (as `az acr run --cmd`)."""
    return f"version: v1.1.0\nsteps:\n  - cmd: {json.dumps(command)}\n"


def run_inputs(args: argparse.Namespace) -> dict:
    """--set, --values and --set-secret, checked here: a bad one queues nothing."""
    from basewatch.taskfile import load_values_file, parse_assignments

    body: dict = {"values": parse_assignments(args.set)}
    if getattr(args, "values", None):
        text = _read_local(args.values, "values file")
        load_values_file(text, args.values)
        body["values_file"] = text
    secrets = parse_assignments(args.set_secret, "--set-secret")
    if secrets:
        body["secrets"] = secrets
    return body


def _read_local(path: str, what: str) -> str:
    from basewatch.errors import TaskFileError
    from basewatch.textfiles import read_text_file

    return read_text_file(Path(path), what, TaskFileError)


def cmd_run(args: argparse.Namespace) -> int:
    from basewatch.cli_progress import ContextProgress
    from basewatch.context_spec import parse_context
    from basewatch.taskfile import load_values_file, merge_values
    from basewatch.taskfile.syntax import check_syntax

    inputs = run_inputs(args)
    if args.cmd is not None:
        if not args.cmd.strip():
            raise DaemonError("--cmd needs an image, and its arguments: --cmd \"IMAGE ARGS\"")
        text, name = cmd_task_file(args.cmd), "--cmd"
    else:
        text, name = _read_local(args.file, "task file"), Path(args.file).name
    values = merge_values(load_values_file(inputs.get("values_file") or ""),
                          inputs["values"])
    check_syntax(text, name, values, inputs.get("secrets"))
    spec = {"task_file": text, "file": name, "platform": args.platform,
            "timeout": args.timeout, **inputs}
    if args.registry:
        spec["registry"] = args.registry
    client = _client(args)
    if args.context == "/dev/null":
        with tempfile.TemporaryDirectory(prefix="basewatch-empty-") as empty:
            run = _upload(client, Path(empty), spec, ContextProgress(shown=False))
    elif (source := parse_context(args.context)).kind == "local":
        run = _upload(client, Path(source.location), spec,
                      ContextProgress.for_terminal(_machine_output(args)))
    else:
        run = client.request("POST", "/api/builds", body={**spec, "context_url": args.context})
    return _follow(client, run, args)


def _upload(client: DaemonClient, folder: Path, spec: dict,
            progress: ContextProgress) -> dict:
    """Pack `folder` and POST it with its spec in a part of its own: the task file and values
    may be larger than a header takes, and secrets are kept out of headers."""
    from basewatch.builder.contexts.archive import pack_local_context
    from basewatch.client import json_and_file

    with progress:
        archive = pack_local_context(folder, None, limit=CLI_CONTEXT_LIMIT,
                                     progress=progress.packed)
        try:
            with open(archive, "rb") as data:
                size = archive.stat().st_size
                body, headers = json_and_file("spec", spec, "context",
                                              progress.upload(data, size), size)
                run = client.request("POST", "/api/builds", data=body, headers=headers)
        finally:
            archive.unlink(missing_ok=True)
    return run


def _follow(client: DaemonClient, run: dict, args: argparse.Namespace) -> int:
    """ACR's output: the run id, the log as it happens, the result; the exit code is the run's.
    For a program (-o json, --query): the run's record, once it ends."""
    if _machine_output(args):
        if not args.no_wait:
            run = _final(client, run["id"])
        emit(args, run)
        return 0 if args.no_wait or run["status"] == "Succeeded" else 1
    print(f"Queued a run with ID: {run['id']}", flush=True)
    if args.no_wait:
        return 0
    try:
        return _wait_for(client, run["id"], args.no_logs)
    except KeyboardInterrupt:
        # Ctrl-C stops watching, not the run: say so, and how to get back to it.
        print(f"\nRun {run['id']} goes on in the daemon. Follow it: basewatch task logs "
              f"--run-id {run['id']}; cancel it: basewatch task cancel-run --run-id "
              f"{run['id']}", file=sys.stderr)
        return 130


def _wait_for(client: DaemonClient, run_id: str, no_logs: bool) -> int:
    if not no_logs:
        print("Waiting for an agent...", flush=True)
        # The log ends with its own "Run ID: ... was successful" line, stamped; the CLI's
        # closing line below says it as az does, so the log's is left out: printed once.
        own_result = re.compile(rf"^(\S+ \S+ )?Run ID: {re.escape(run_id)} was successful "
                                .encode())
        pending = b""
        for chunk in client.stream(f"/api/runs/{run_id}/log?follow=1"):
            *lines, pending = (pending + chunk).split(b"\n")
            sys.stdout.buffer.write(b"".join(line + b"\n" for line in lines
                                             if not own_result.match(line)))
            sys.stdout.flush()
        if pending and not own_result.match(pending):
            sys.stdout.buffer.write(pending)
    run = _final(client, run_id)
    seconds = round(run["duration_seconds"] or 0)
    if run["status"] == "Succeeded":
        print(f"Run ID: {run['id']} was successful after {seconds}s")
        return 0
    print(f"Run ID: {run['id']} failed after {seconds}s. Status: {run['status']}. "
          f"Error: {run['error']}", file=sys.stderr)
    return 1


def _final(client: DaemonClient, run_id: str) -> dict:
    """The run's record once it has ended."""
    while True:
        run = client.get_json(f"/api/runs/{run_id}")
        if run["status"] not in ("Queued", "Started", "Running"):
            return run
        time.sleep(0.5)


# ---------------------------------------------------------------------- task


def add_task_command(commands) -> None:
    task = commands.add_parser("task", help="manage tasks and their runs on the daemon")
    sub = task.add_subparsers(dest="task_command", required=True, metavar="COMMAND")

    def command(name: str, handler, help: str, output: str | None = None
                ) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help)
        add_daemon_options(parser)
        if output:
            add_output_options(parser, output)
        parser.set_defaults(handler=handler)
        return parser

    for name, handler, help in (("create", cmd_task_create, "register a task"),
                                ("update", cmd_task_update, "change a task")):
        parser = command(name, handler, help, output="json")
        parser.add_argument("name", help="the task's name; e.g. web")
        parser.add_argument("--context", required=name == "create",
                            help="the build context: a folder on the daemon's host, under its "
                                 "local_contexts_root (a relative one is resolved here, "
                                 "against this shell's directory, and sent absolute: the CLI "
                                 "and the daemon must share the host), or a git URL "
                                 "(https://host/org/repo.git#branch:folder) or tarball URL, "
                                 "fetched afresh for every run; e.g. --context ./apps/web")
        parser.add_argument("-f", "--file", help="the Dockerfile in the context (default "
                            "Dockerfile), or a task file; e.g. -f acr-task.yaml")
        parser.add_argument("-t", "--image", action="append", metavar="IMAGE",
                            help="a tag each run pushes, repeatable; quote run variables, e.g. "
                                 "-t 'reg:5000/web:{{.Run.ID}}' -t reg:5000/web:latest")
        parser.add_argument("--build-arg", type=key_value, action="append", metavar="K=V",
                            help="repeatable; e.g. --build-arg VERSION=1.2")
        parser.add_argument("--target", help="the stage to build; e.g. --target runtime")
        parser.add_argument("--platform", help="os/arch[/variant]; a comma list builds each "
                            "into one index per tag, and watches each one's base digest; "
                            "e.g. --platform linux/amd64,linux/arm64")
        parser.add_argument("--timeout", type=int,
                            help="a run's limit in seconds (default 3600); e.g. --timeout 600")
        parser.add_argument("--push", type=_bool,
                            help="push the tags (default true); e.g. --push false")
        parser.add_argument("--base-image-trigger-enabled", type=_bool,
                            help="a patched base runs the task (default true); e.g. "
                                 "--base-image-trigger-enabled false")
        parser.add_argument("--base-image-trigger-type", choices=["runtime", "all"],
                            help="watch the runtime stage's base (default) or every stage's; "
                                 "e.g. --base-image-trigger-type all")
        # The source triggers, in az acr task's names where it has one.
        parser.add_argument("--commit-trigger-enabled", type=_bool,
                            help="a commit pushed to the branch runs the task (git contexts; "
                                 "default true); e.g. --commit-trigger-enabled false")
        parser.add_argument("--pull-request-trigger-enabled", type=_bool,
                            help="a pull request against the branch runs the task on its head "
                                 "(default false); e.g. --pull-request-trigger-enabled true")
        parser.add_argument("--pull-request-trigger-allow-forks", type=_bool,
                            help="pull requests from forks too (default false); e.g. "
                                 "--pull-request-trigger-allow-forks true")
        parser.add_argument("--branch", action="append", metavar="BRANCH",
                            help="a branch whose commits and pull requests run the task; "
                                 "repeat for several (default: the context's branch); e.g. "
                                 "--branch main --branch release")
        parser.add_argument("--webhook-secret-env", metavar="VARIABLE",
                            help="the variable holding the secret the repository's webhooks "
                                 "are signed with ('' removes it); e.g. --webhook-secret-env "
                                 "HOOK_SECRET")
        parser.add_argument("--git-access-token-env", metavar="VARIABLE",
                            help="the variable holding a token for the repository and its "
                                 "provider's API ('' removes it); e.g. --git-access-token-env "
                                 "GIT_TOKEN")
        parser.add_argument("--report-status", type=_bool,
                            help="post each run's state to its commit (needs the token); "
                                 "e.g. --report-status true")

    # As `az acr task create --schedule`: one timer, named t1 (`task timer` manages more).
    sub.choices["create"].add_argument("--schedule", type=_schedule,
                                       help="a timer, t1: five-field cron in UTC, Sunday as 0; "
                                            "e.g. --schedule '0 2 * * *'")
    add_timer_command(sub)
    task_name = {"help": "the task's name; e.g. web"}
    command("show", cmd_task_show, "show a task", output="json").add_argument("name", **task_name)
    command("list", cmd_task_list, "list the tasks", output="table")
    command("delete", cmd_task_delete, "delete a task").add_argument("name", **task_name)
    command("webhook", cmd_task_webhook, "print what to enter in the git provider's settings "
            "for the task's webhook: URL, secret, events", output="table").add_argument(
                "name", **task_name)
    run = command("run", cmd_task_run, "run a task now", output="table")
    run.add_argument("name", **task_name)
    add_run_inputs(run)
    run.add_argument("--no-logs", action="store_true", help="do not stream the log")
    run.add_argument("--no-wait", action="store_true", help="return once the run is queued")
    logs = command("logs", cmd_task_logs, "show a run's log (default: the latest run's, "
                                          "followed while it runs)")
    logs.add_argument("name", nargs="?", help="the task whose latest run to show; e.g. web")
    logs.add_argument("--run-id", help="this run's log instead; e.g. --run-id ca12")
    runs = command("list-runs", cmd_task_list_runs, "list runs, newest first", output="table")
    runs.add_argument("--name", help="only this task's runs; e.g. --name web")
    runs.add_argument("--run-status",
                      help="only runs in this state, in any case: Queued, Started, Running, "
                           "Succeeded, Failed, Canceled, Error, Timeout; e.g. --run-status failed")
    runs.add_argument("--image", help="only runs that pushed this image (repo or repo:tag); "
                                      "e.g. --image reg:5000/web")
    runs.add_argument("--top", type=int, default=15,
                      help="at most this many, newest first (default 15); e.g. --top 50")
    runs.add_argument("--watch", action="store_true",
                      help="keep the list up to date as runs start and end, until Ctrl-C")
    runs.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                      help="how often --watch asks the daemon (default 2); e.g. --interval 5")
    # show-run's table: the run, then a task file's steps and the pushed digests.
    for name, handler, help, output in (
            ("show-run", cmd_task_show_run, "show a run", "json"),
            ("cancel-run", cmd_task_cancel_run, "cancel a run", "table")):
        command(name, handler, help, output).add_argument(
            "--run-id", required=True, help="e.g. --run-id ca12")
    update_run = command("update-run", cmd_task_update_run, "archive a run (or not)",
                         output="json")
    update_run.add_argument("--run-id", required=True, help="e.g. --run-id ca12")
    update_run.add_argument("--no-archive", type=_bool, required=True,
                            help="false archives the run: kept past the retention, its log "
                                 "pushed to the registry; e.g. --no-archive false")


def _schedule(text: str) -> str:
    """A timer's schedule, checked before it is sent: five-field cron, UTC, Sunday as 0."""
    from basewatch.cron import CronSchedule, ScheduleError

    try:
        return CronSchedule.parse(text).expression
    except ScheduleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_timer_command(sub) -> None:
    """`task timer add|update|remove|list NAME`, in `az acr task timer`'s argument names."""
    timer = sub.add_parser("timer", help="manage a task's timers (cron schedules, UTC)")
    verbs = timer.add_subparsers(dest="timer_command", required=True, metavar="COMMAND")
    for name, handler, help in (("add", cmd_timer_add, "add a timer to a task"),
                                ("update", cmd_timer_update, "change a task's timer"),
                                ("remove", cmd_timer_remove, "remove a timer from a task"),
                                ("list", cmd_timer_list, "list a task's timers")):
        parser = verbs.add_parser(name, help=help)
        add_daemon_options(parser)
        if name != "remove":
            add_output_options(parser, "table" if name == "list" else "json")
        parser.set_defaults(handler=handler)
        parser.add_argument("name", help="the task; e.g. web")
        if name == "list":
            continue
        parser.add_argument("--timer-name", required=True, help="e.g. --timer-name nightly")
        if name == "remove":
            continue
        parser.add_argument("--schedule", type=_schedule, required=name == "add",
                            help="five-field cron in UTC, Sunday as 0; e.g. --schedule '0 2 * * *' "
                                 "is 02:00 every day")
        parser.add_argument("--enabled", type=_bool,
                            help="true (the default) or false; e.g. --enabled false")


def _timers_path(args: argparse.Namespace) -> str:
    return f"/api/tasks/{_quote(args.name)}/timers"


def cmd_timer_add(args) -> int:
    body = {"name": args.timer_name, "schedule": args.schedule}
    if args.enabled is not None:
        body["enabled"] = args.enabled
    emit(args, _client(args).request("POST", _timers_path(args), body=body))
    return 0


def cmd_timer_update(args) -> int:
    body = {k: v for k, v in (("schedule", args.schedule), ("enabled", args.enabled))
            if v is not None}
    if not body:
        raise DaemonError("task timer update needs --schedule or --enabled")
    timer = _client(args).request(
        "PATCH", f"{_timers_path(args)}/{_quote(args.timer_name)}", body=body)
    emit(args, timer)
    return 0


def cmd_timer_remove(args) -> int:
    _client(args).request("DELETE", f"{_timers_path(args)}/{_quote(args.timer_name)}")
    print(f"Removed timer {args.timer_name} from task {args.name}")
    return 0


def cmd_timer_list(args) -> int:
    emit(args, _client(args).get_json(_timers_path(args)), table=lambda timers: print_table(
        ("NAME", "SCHEDULE", "ENABLED", "NEXT FIRE"),
        [(t["name"], t["schedule"], "true" if t["enabled"] else "false",
          (t["next_fire"] or "").replace("T", " ").replace("+00:00", " UTC")) for t in timers]))
    return 0


def _context(text: str | None) -> str | None:
    """A relative folder made absolute against this shell's directory: the daemon has no
    idea where the CLI stands. URLs and absolute folders go as they are."""
    from basewatch.context_spec import parse_context

    if text is None or parse_context(text).kind != "local" or Path(text).is_absolute():
        return text
    return str(Path(text).resolve())


def _task_body(args: argparse.Namespace) -> dict:
    check_tags(args.image or [])
    body = {"context": _context(args.context), "file": args.file, "image": args.image,
            "build_args": dict(args.build_arg) if args.build_arg else None,
            "target": args.target, "platform": args.platform, "timeout": args.timeout,
            "push": args.push}
    trigger = {"enabled": args.base_image_trigger_enabled, "type": args.base_image_trigger_type}
    if any(v is not None for v in trigger.values()):
        body["base_image_trigger"] = {k: v for k, v in trigger.items() if v is not None}
    for key, settings in (
            ("commit_trigger", {"enabled": args.commit_trigger_enabled,
                                "branches": args.branch}),
            ("pull_request_trigger", {"enabled": args.pull_request_trigger_enabled,
                                      "allow_forks": args.pull_request_trigger_allow_forks})):
        if any(v is not None for v in settings.values()):
            body[key] = {k: v for k, v in settings.items() if v is not None}
    body["report_status"] = args.report_status
    body = {k: v for k, v in body.items() if v is not None}
    for key in ("webhook_secret_env", "git_access_token_env"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value or None  # '' removes it
    return body


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def cmd_task_create(args) -> int:
    from basewatch.tasks import is_task_file

    if not args.image and not is_task_file(args.file or "Dockerfile"):
        raise DaemonError("task create needs at least one -t IMAGE (or -f a task file, "
                          "acr-task.yaml, which names its own)")
    body = {"name": args.name, **_task_body(args)}
    if args.schedule is not None:
        body["timers"] = [{"name": "t1", "schedule": args.schedule}]
    emit(args, _client(args).request("POST", "/api/tasks", body=body))
    return 0


def cmd_task_update(args) -> int:
    task = _client(args).request("PATCH", f"/api/tasks/{_quote(args.name)}",
                                 body=_task_body(args))
    emit(args, task)
    return 0


def cmd_task_show(args) -> int:
    emit(args, _client(args).get_json(f"/api/tasks/{_quote(args.name)}"))
    return 0


def cmd_task_list(args) -> int:
    emit(args, _client(args).get_json("/api/tasks"), table=_task_table)
    return 0


def _task_table(listed: list[dict]) -> None:
    rows = [(t["name"], t["source"], ",".join(t["platform"]), ", ".join(t["image"]),
             str(t["context"])) for t in listed]
    columns = ("NAME", "SOURCE", "PLATFORM", "IMAGES", "CONTEXT")
    if any(t.get("error") for t in listed):  # a config task that could not be registered
        rows = [(*row, t.get("error") or "") for row, t in zip(rows, listed)]
        columns += ("ERROR",)
    print_table(columns, rows)


def cmd_task_delete(args) -> int:
    _client(args).request("DELETE", f"/api/tasks/{_quote(args.name)}")
    print(f"Deleted task {args.name}")
    return 0


def cmd_task_webhook(args) -> int:
    emit(args, _client(args).get_json(f"/api/tasks/{_quote(args.name)}/webhook"),
         table=_print_webhook)
    return 0


def _print_webhook(hook: dict) -> None:
    print(f"Task {hook['task']}: a {hook['provider']} webhook on {hook['repository']}")
    if hook.get("registered"):
        print("basewatch registered it with the task's token already; to add it by hand "
              "instead:")
    print(f"URL:    {hook['url']}")
    print(f"Secret: {hook['secret']}  ({hook['secret_source']})")
    print(f"Events: {', '.join(hook['events'])}")
    print()
    print("\n".join(hook["instructions"]))


def cmd_task_run(args) -> int:
    client = _client(args)
    body = run_inputs(args)
    if args.registry:
        body["registry"] = args.registry
    run = client.request("POST", f"/api/tasks/{_quote(args.name)}/runs", body=body)
    return _follow(client, run, args)


def cmd_task_logs(args) -> int:
    client = _client(args)
    run_id = args.run_id
    if run_id is None:
        query = f"?task={_quote(args.name)}&top=1" if args.name else "?top=1"
        runs = client.get_json(f"/api/runs{query}")
        if not runs:
            raise DaemonError("no runs yet" + (f" for task {args.name}" if args.name else ""))
        run_id = runs[0]["id"]
    for chunk in client.stream(f"/api/runs/{_quote(run_id)}/log?follow=1"):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    return 0


def cmd_task_list_runs(args) -> int:
    query = {"top": str(args.top)}
    status = args.run_status and _run_status(args.run_status)
    for key, value in (("task", args.name), ("status", status), ("image", args.image)):
        if value:
            query[key] = value
    client, path = _client(args), f"/api/runs?{urllib.parse.urlencode(query)}"
    show = lambda runs: print_table(RUN_COLUMNS, [_run_row(r) for r in runs])  # noqa: E731
    if not args.watch:
        emit(args, client.get_json(path), table=show)
        return 0
    try:
        _watch(args, client, path, show)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --watch ends
    return 0


def _watch(args, client: DaemonClient, path: str, show) -> None:
    """The list again whenever it changes; on a terminal, in place of the last one."""
    shown = None
    while True:
        runs = client.get_json(path)
        if runs != shown:
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")  # cursor home, clear screen
            elif shown is not None:
                print()
            emit(args, runs, table=show)
            sys.stdout.flush()
            shown = runs
        time.sleep(args.interval)


def _run_status(text: str) -> str:
    """A run status in any case, as the API writes it: failed -> Failed."""
    from basewatch.models import RunStatus

    for status in RunStatus:
        if status.value.lower() == text.lower():
            return status.value
    raise DaemonError(f"status {text!r} is not one of "
                      f"{', '.join(s.value for s in RunStatus)} (in any case)")


def _run_row(r: dict) -> tuple:
    return (r["id"], r["task"] or r["type"], r["platform"], r["status"], r["trigger"],
            (r["started_at"] or "")[:19].replace("T", " "),
            f"{r['duration_seconds']:.0f}s" if r["duration_seconds"] is not None else "",
            r["outputs"][0]["image"] if r["outputs"] else "", _source(r.get("source_commit")))


def _source(source: dict | None) -> str:
    """What fired a commit or pull-request run, short: `main@1a2b3c4d5e6f`, `#2@1a2b3c4d5e6f`."""
    if not source:
        return ""
    where = f"#{source['pull_request']}" if source.get("pull_request") is not None \
        else source.get("branch") or ""
    return f"{where}@{source['commit'][:12]}"


STEP_COLUMNS = ("STEP", "ACTION", "STATUS", "STARTED", "DURATION", "ATTEMPTS", "EXIT",
                "ERROR")


def cmd_task_show_run(args) -> int:
    emit(args, _client(args).get_json(f"/api/runs/{_quote(args.run_id)}"), table=_run_table)
    return 0


def _run_table(run: dict) -> None:
    print_table(RUN_COLUMNS, [_run_row(run)])
    if run.get("error"):
        print(f"Error: {run['error']}")
    if run.get("steps"):
        print()
        print_table(STEP_COLUMNS, [
            (s["id"], s["action"], s["status"],
             "" if s["started_after_seconds"] is None else f"+{s['started_after_seconds']:.1f}s",
             "" if s["status"] == "Skipped" else f"{s['duration_seconds']:.1f}s",
             s["attempts"] or "", "" if s["exit_code"] is None else s["exit_code"],
             s["error"] or "") for s in run["steps"]])
    if run.get("outputs"):
        print()
        print_table(("PUSHED", "DIGEST"), [(o["image"], o["digest"]) for o in run["outputs"]])


def cmd_task_cancel_run(args) -> int:
    client = _client(args)
    run = client.request("POST", f"/api/runs/{_quote(args.run_id)}/cancel")
    if args.output == "table" and args.query is None:
        print(f"Run ID: {run['id']}: cancel requested", flush=True)
    # A running build takes a moment to stop: wait briefly for the final state to show it.
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while run["status"] in ("Queued", "Started", "Running") and time.monotonic() < deadline:
        time.sleep(0.25)
        run = client.get_json(f"/api/runs/{_quote(args.run_id)}")
    emit(args, run, table=_print_cancel)
    return 0


def _print_cancel(run: dict) -> None:
    if run["status"] in ("Queued", "Started", "Running"):
        print(f"Run ID: {run['id']}: still {run['status']} after {CANCEL_WAIT_SECONDS}s; "
              f"see basewatch task show-run --run-id {run['id']}")
    else:
        print(f"Run ID: {run['id']}: {run['status']}")


def cmd_task_update_run(args) -> int:
    run = _client(args).request("PATCH", f"/api/runs/{_quote(args.run_id)}",
                                body={"archived": not args.no_archive})
    emit(args, run)
    return 0


