"""The `basewatch` command: a thin door into the same services the daemon uses."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from basewatch import __version__
from basewatch.cli_output import add_output_options, compile_query, emit
from basewatch.cli_runs import (add_build_command, add_daemon_options, add_run_command,
                                add_task_command, key_value)
from basewatch.errors import BasewatchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="basewatch",
        description="Rebuild every image built on a base image when that base is patched.")
    parser.add_argument("--version", action="version", version=f"basewatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", "-c", type=Path, required=True, help="the YAML config file")
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                       help="info (default): basewatch's own events; debug: basewatch's own "
                       "debug too; debug:all: every library's debug as well (the scheduler, "
                       "the database driver, aiohttp, urllib3, docker, asyncio); libraries' "
                       "warnings and errors are shown at every level")
    serve.set_defaults(handler=cmd_serve)

    check = commands.add_parser(
        "check-config", help="check a config file as serve would, report every problem, exit",
        description="Check a config file as `serve` does: its keys and values, the "
        "environment variables it names, each task's context folder and its Dockerfile or "
        "task file, read and analysed. Every problem is one line; the exit code is non-zero "
        "when there is any. Example: basewatch check-config basewatch.yml")
    check.add_argument("config", type=Path, help="the YAML config file")
    check.add_argument("--fetch", action="store_true",
                       help="also fetch the tasks' git and tarball contexts and check them "
                       "(not done by default)")
    check.set_defaults(handler=cmd_check_config)

    bases = commands.add_parser("bases", help="show the base images a Dockerfile is built on")
    bases.add_argument("path", type=Path, help="a Dockerfile, or a folder holding one; "
                                               "e.g. apps/web")
    bases.add_argument("--file", "-f", default="Dockerfile",
                       help="the Dockerfile's name when PATH is a folder; e.g. -f Dockerfile.prod")
    bases.add_argument("--build-arg", type=key_value, action="append", default=[],
                       metavar="KEY=VALUE", help="repeatable; e.g. --build-arg BASE=node:20")
    bases.add_argument("--target", help="the stage to build; e.g. --target runtime")
    bases.add_argument("--platform", help="the target platform, for TARGETARCH and the like "
                       "(default: this machine's); e.g. --platform linux/arm64")
    bases.add_argument("--json", action="store_true", help="print JSON")
    bases.set_defaults(handler=cmd_bases)

    graph = commands.add_parser("graph", help="show what the running daemon watches")
    add_daemon_options(graph)
    graph.add_argument("--format", choices=["text", "dot", "json"], default="text",
                       help="text (default), dot (Graphviz) or json; e.g. --format dot | dot -Tsvg")
    add_output_options(graph, None)
    graph.set_defaults(handler=cmd_graph)

    add_build_command(commands)
    add_run_command(commands)
    add_task_command(commands)

    completion = commands.add_parser(
        "completion", help="print a shell completion script: "
                           "source <(basewatch completion bash)")
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"],
                            help="the shell; e.g. bash")
    completion.set_defaults(handler=cmd_completion)
    for command in _commands(parser):
        # Each command knows its own parser, so a wrong argument is reported with its usage.
        command.set_defaults(command_parser=command)
        for action in command._actions:
            if action.required and action.option_strings:
                action.help = f"(required) {action.help or ''}".rstrip()
    return parser


def _commands(parser: argparse.ArgumentParser):
    """Every parser under `parser` that runs a command (`task list`, `build`...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from _commands(sub)


# Heavy imports (pydantic, aiohttp, the docker SDK) stay inside the commands that need them:
# every `basewatch build` pays the CLI's start-up time.


LOG_LEVELS = ["debug:all", "debug", "info", "warning", "error"]


def cmd_serve(args: argparse.Namespace) -> int:
    from basewatch.serve import serve

    serve(args.config, args.log_level)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    import asyncio

    from basewatch.config_check import check_config
    from basewatch.errors import ConfigError

    report = asyncio.run(check_config(args.config, fetch=args.fetch))
    if report.unchecked:
        print(f"{args.config}: remote contexts not fetched, so not checked (tasks "
              f"{', '.join(report.unchecked)}): --fetch checks them too")
    if report.problems:
        raise ConfigError("\n".join(report.problems))
    config = report.config
    print(f"{args.config}: valid ({len(config.tasks)} tasks, "
          f"{len(config.registries)} registries)")
    return 0


def cmd_bases(args: argparse.Namespace) -> int:
    from basewatch.dockerfile.analysis import analyse_dockerfile_path

    path = args.path / args.file if args.path.is_dir() else args.path
    bases = analyse_dockerfile_path(path, dict(args.build_arg), args.target, args.platform)
    report = bases.to_json()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"runtime:   {report['runtime']}")
        for base in report["buildtime"]:
            print(f"buildtime: {base}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from basewatch.client import DaemonClient
    from basewatch.graph_view import render_dot, render_text

    view = DaemonClient(args.url, args.token).get_json("/api/graph")
    if args.output or args.query:
        emit(args, view, table=lambda view: print(render_text(view)))
    elif args.format == "json":
        print(json.dumps(view, indent=2))
    else:
        print(render_dot(view) if args.format == "dot" else render_text(view))
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    import shtab

    # Generated from the parser itself, so it never lags behind the commands.
    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        getattr(args, "command_parser", parser).error(
            f"unrecognized arguments: {' '.join(unknown)}")
    try:
        compile_query(args)
        code = args.handler(args)
        sys.stdout.flush()  # here, not at exit, so a reader already gone is handled below
        return code
    except BasewatchError as exc:
        for line in str(exc).splitlines():
            print(f"basewatch: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _closed_stdout()


def _closed_stdout() -> int:
    """The reader went away (`| head`): as a shell tool does, stop quietly. What is still
    buffered for stdout would raise again as Python flushes it at exit, so stdout is pointed
    at /dev/null first."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, as a shell reports a pipe's writer it closed
