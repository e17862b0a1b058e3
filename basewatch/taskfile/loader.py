"""A task file's text into the steps of a run plan and the workspace they share.

As acr-builder does it: the text is rendered as a Go template first (run variables, values,
secrets), then read as YAML, then its `$` aliases are expanded (version v1.1.0). Every problem is
one TaskFileError naming the file's line and, inside a step, the step. This only reads: the
contract is that nothing of a file runs unless this returned, so a bad file runs nothing.
"""
from __future__ import annotations

import base64
import binascii
import difflib
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import replace

import yaml

from basewatch.errors import TaskFileError
from basewatch.run_plan import Network, TaskStep, Workspace
from basewatch.taskfile import aliases as alias_rules
from basewatch.taskfile.document import DocumentError, Located, LocatedList, parse
from basewatch.taskfile.gotemplate import Rendered, TemplateData, TemplateProblem, render
from basewatch.taskfile.steps import StepContext, StepError, checked_env, default_id, read_step
from basewatch.taskfile.values import mask, secret_texts
from basewatch.taskfile.when import Node, WhenError, check
from basewatch.tasks import is_task_file  # noqa: F401 (this package's API too)
from basewatch.templating import RunVariables

VERSIONS = ("v1.0.0", "v1.1.0", "1.0-preview-1")
ALIAS_VERSION = "v1.1.0"  # acr-builder expands `$` aliases from this version on
TOP_LEVEL = frozenset({"version", "stepTimeout", "workingDirectory", "env", "secrets",
                       "networks", "volumes", "alias", "steps"})
DEFAULT_STEP_TIMEOUT = 600
# Far beyond any real task file; bounds the work a file sent through the API can ask for (YAML
# anchors repeat a subtree without repeating its text, and alias expansion copies it).
MAX_TEXT_BYTES = 1024 * 1024
MAX_EXPANDED_VALUES = 100_000
# Far beyond any real task file too; bounds what a run runs at once, logs and records.
MAX_STEPS = 256
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_VOLUME_NAME = re.compile(r"[A-Za-z0-9_-]+")
_FILE_NAME = re.compile(r"[^/\0]+")


def _no_alias_files(path: str) -> str:
    raise OSError("alias files cannot be read for this run")


def load_task_file(text: str, *, variables: RunVariables,
                   values: Mapping[str, object] | None = None,
                   secrets: Mapping[str, str] | None = None,
                   image_aliases: Mapping[str, str] | None = None,
                   read_alias_file: Callable[[str], str] = _no_alias_files,
                   source: str = "task file") -> tuple[list[TaskStep], Workspace]:
    """The steps and workspace `text` describes. `values`: the values file's, with --set's
    over them; `secrets`: --set-secret's; `image_aliases`: the config's `aliases:`;
    `read_alias_file`: the text of an `alias: src:` file, relative to the context."""
    # Mappings as given, not copied: registration's stand-in answers every name asked for.
    return _Reader(text, variables, {} if values is None else values,
                   {} if secrets is None else secrets,
                   dict(image_aliases or {}), read_alias_file, source).read()


class _Reader:
    def __init__(self, text, variables, values, secrets, image_aliases, read_alias_file,
                 source):
        self.text, self.variables, self.source = text, variables, source
        self.data = TemplateData(variables.as_dict(), values, secrets)
        self.secrets, self.image_aliases = secrets, image_aliases
        self.read_alias_file = read_alias_file
        self.outline: Located | None = None  # the file read leniently, to name steps
        self.secret_masks = secret_texts(_with_base64(secrets.values()))
        self.expansion_budget = MAX_EXPANDED_VALUES

    def fail(self, message: str, line: int | None = None, step: str | None = None):
        where = f", line {line}" if line else ""
        inside = f": {step}" if step else ""
        # A message may quote what the file says, which a template may have filled with a
        # secret: errors are logged and shown like any line.
        return TaskFileError(mask(f"{self.source}{where}{inside}: {message}",
                                  self.secret_masks))

    def read(self) -> tuple[list[TaskStep], Workspace]:
        if len(self.text.encode()) > MAX_TEXT_BYTES:
            raise self.fail(f"the file is larger than {MAX_TEXT_BYTES // 1024} KiB")
        self.outline = self._outline()
        if isinstance(self.outline, Located):
            self._refuse_azure_secrets(self.outline)
        rendered = self._render()
        document = self._parse(rendered)
        version = self._version(document)
        if version == ALIAS_VERSION:
            directive = self._directive(document)
            if any(directive in output for output in rendered.outputs):
                rendered = self._render(escape=lambda s: s.replace(directive,
                                                                   alias_rules.WRITTEN))
                document = self._parse(rendered)
            document = self._expand(document)
        elif "alias" in document:
            raise self.fail(f"`alias` needs `version: {ALIAS_VERSION}` (acr-builder reads "
                            "aliases from that version on)", document.line_of("alias"))
        return self._plan(document)

    # -- reading ---------------------------------------------------------------------------

    def _outline(self) -> object:
        try:
            rendered = render(self.text, self.data, lenient=True)
            return parse(rendered.text, rendered.source_line)
        except (TemplateProblem, DocumentError):
            return None

    def _render(self, escape: Callable[[str], str] | None = None) -> Rendered:
        try:
            return render(self.text, self.data, escape=escape)
        except TemplateProblem as problem:
            raise self.fail(problem.message, problem.line,
                            self._step_at(problem.line)) from None

    def _parse(self, rendered: Rendered) -> Located:
        try:
            document = parse(rendered.text, rendered.source_line)
        except DocumentError as error:
            raise self.fail(error.message, error.line,
                            error.line and self._step_at(error.line)) from None
        if document is None:
            raise self.fail("the file is empty: a task file has `steps:`")
        if not isinstance(document, Located):
            raise self.fail("the top level must be a mapping with `steps:`", 1)
        return document

    def _step_at(self, line: int) -> str | None:
        """The step written at `line`, named, as the lenient reading or the text shows it."""
        steps = self.outline.get("steps") if isinstance(self.outline, Located) else None
        if isinstance(steps, LocatedList):
            index = max((i for i, start in enumerate(steps.lines) if start <= line),
                        default=None)
            if index is not None and line >= steps.line:
                step = steps[index]
                written = step.get("id") if isinstance(step, Located) else None
                return _step_name(index, written if isinstance(written, str) else None)
            return None
        return _step_in_text(self.text, line)

    def _version(self, document: Located) -> str | None:
        version = document.get("version")
        if version is None:
            return None
        if not isinstance(version, str) or version.lower() not in VERSIONS:
            raise self.fail(f"version {version!r} is not one basewatch reads (one of "
                            f"{', '.join(VERSIONS)})", document.line_of("version"))
        return version.lower()

    def _directive(self, document: Located) -> str:
        section = document.get("alias")
        written = section.get("directive") if isinstance(section, Mapping) else None
        return str(written)[:1] if written else "$"

    def _expand(self, document: Located) -> Located:
        try:
            aliases = alias_rules.define(document.get("alias"), self.data.run,
                                         self.image_aliases, self.read_alias_file,
                                         yaml.safe_load)
        except alias_rules.AliasError as error:
            section = document.get("alias")
            line = section.line_of(error.key) if isinstance(section, Located) \
                else document.line_of("alias")
            raise self.fail(f"alias: {error.message}", line) from None
        self.aliases = aliases
        expanded = Located((key, value if key == "alias" else self._expand_value(
            value, aliases, document.line_of(key), None, key == "steps"))
            for key, value in document.items())
        expanded.line, expanded.lines = document.line, document.lines
        return expanded

    def _expand_value(self, value, aliases, line, step, is_steps=False):
        self.expansion_budget -= 1
        if self.expansion_budget < 0:
            raise self.fail(f"the file holds more than {MAX_EXPANDED_VALUES} values once its "
                            "YAML anchors are repeated", line, step)
        if isinstance(value, str):
            try:
                return aliases.expand(value)
            except KeyError as missing:
                name = missing.args[0]
                raise self.fail(alias_rules_message(aliases.directive, name), line,
                                step) from None
        if isinstance(value, Located):
            out = Located((k, self._expand_value(v, aliases, value.line_of(k), step))
                          for k, v in value.items())
            out.line, out.lines = value.line, value.lines
            return out
        if isinstance(value, LocatedList):
            out = LocatedList()
            for index, item in enumerate(value):
                inner = step
                if is_steps:
                    written = item.get("id") if isinstance(item, Located) else None
                    inner = _step_name(index, written if isinstance(written, str) else None)
                out.append(self._expand_value(item, aliases, value.line_of(index), inner))
            out.line, out.lines = value.line, value.lines
            return out
        return value

    # -- the plan --------------------------------------------------------------------------

    def _plan(self, document: Located) -> tuple[list[TaskStep], Workspace]:
        for key in document:
            if key not in TOP_LEVEL:
                close = difflib.get_close_matches(str(key), sorted(TOP_LEVEL), n=1,
                                                  cutoff=0.7)
                hint = f" (did you mean `{close[0]}`?)" if close else ""
                raise self.fail(f"unknown top-level property `{key}`{hint}",
                                document.line_of(key))
        self._refuse_azure_secrets(document)
        step_timeout = document.get("stepTimeout", DEFAULT_STEP_TIMEOUT)
        if isinstance(step_timeout, bool) or not isinstance(step_timeout, int):
            raise self.fail("`stepTimeout` must be a whole number of seconds",
                            document.line_of("stepTimeout"))
        working_directory = document.get("workingDirectory", "/workspace")
        if not isinstance(working_directory, str) or not working_directory.startswith("/"):
            raise self.fail("`workingDirectory` must be an absolute path, such as /workspace",
                            document.line_of("workingDirectory"))
        working_directory = posixpath.normpath(working_directory)
        env = self._env(document)
        networks = self._networks(document)
        volumes = self._volumes(document)
        steps = self._steps(document, StepContext(
            index=0, step_timeout=float(step_timeout if step_timeout > 0
                                        else DEFAULT_STEP_TIMEOUT),
            working_directory=working_directory, env=env,
            networks=frozenset(n.name for n in networks), volumes=frozenset(volumes),
            registry=self.variables.registry,
            platform=f"{self.variables.os}/{self.variables.architecture}",
            image_aliases=self._cmd_aliases()))
        secret_files = [content.decode("utf-8", "replace")
                        for files in volumes.values() for content in files.values()]
        workspace = Workspace(working_directory=working_directory, networks=tuple(networks),
                              volumes=volumes,
                              secrets=secret_texts([*_with_base64(self.secrets.values()),
                                                    *secret_files]))
        return steps, workspace

    def _cmd_aliases(self) -> dict[str, str]:
        table = getattr(self, "aliases", None)
        return dict(table.table) if table else dict(self.image_aliases)

    def _env(self, document: Located) -> tuple[str, ...]:
        env = document.get("env") or []
        if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
            raise self.fail("`env` must be a list of NAME=VALUE", document.line_of("env"))
        try:
            return tuple(checked_env(env, "env"))
        except StepError as error:
            raise self.fail(error.message, document.line_of("env")) from None

    def _refuse_azure_secrets(self, document: Located) -> None:
        secrets = document.get("secrets")
        if secrets is None:
            return
        if not isinstance(secrets, LocatedList):
            raise self.fail("`secrets` must be a list of {id, keyvault, clientID}",
                            document.line_of("secrets"))
        seen: set[str] = set()
        for index, secret in enumerate(secrets):
            line = secrets.line_of(index)
            if not isinstance(secret, Located) or not isinstance(secret.get("id"), str) \
                    or not secret["id"] or " " in secret["id"]:
                raise self.fail("each of `secrets` needs an `id` (no spaces)", line)
            unknown = sorted(set(secret) - {"id", "keyvault", "clientID"})
            if unknown:
                raise self.fail(f"secret `{secret['id']}`: unknown property `{unknown[0]}` "
                                "(a secret has id, keyvault and clientID)",
                                secret.line_of(unknown[0]))
            name = secret["id"]
            if name in seen:
                raise self.fail(f"secret `{name}` is declared twice", line)
            seen.add(name)
            if name in self.secrets:
                continue  # given with --set-secret: nothing to fetch
            if secret.get("keyvault") or secret.get("clientID"):
                service = "Azure Key Vault" + (
                    f" through the managed identity {secret['clientID']}"
                    if secret.get("clientID") else "")
                vault = f" ({secret['keyvault']})" if secret.get("keyvault") else ""
                raise self.fail(f"secret `{name}` is read from {service}{vault}, which needs "
                                f"Azure; basewatch does not reach Azure: give its value with "
                                f"--set-secret {name}=...", secret.line_of(
                                    "keyvault" if secret.get("keyvault") else "clientID"))
            raise self.fail(f"secret `{name}` has no value: give it with --set-secret "
                            f"{name}=...", line)

    def _networks(self, document: Located) -> list[Network]:
        listed = document.get("networks")
        if listed is None:
            return list(Workspace().networks)
        if not isinstance(listed, LocatedList) or not listed:
            raise self.fail("`networks` must be a list of {name, driver, ipv6, skipCreation, "
                            "isDefault}", document.line_of("networks"))
        networks, names = [], set()
        for index, entry in enumerate(listed):
            line = listed.line_of(index)
            allowed = {"name", "driver", "ipv6", "skipCreation", "isDefault"}
            if not isinstance(entry, Located) or not isinstance(entry.get("name"), str) \
                    or not _NETWORK_NAME.fullmatch(entry["name"]):
                raise self.fail("each of `networks` needs a `name` (letters, digits, '_', "
                                "'.', '-')", line)
            unknown = sorted(set(entry) - allowed)
            if unknown:
                raise self.fail(f"network `{entry['name']}`: unknown property `{unknown[0]}`",
                                entry.line_of(unknown[0]))
            flags = {}
            for key in ("ipv6", "skipCreation", "isDefault"):
                if not isinstance(entry.get(key, False), bool):
                    raise self.fail(f"network `{entry['name']}`: `{key}` must be true or "
                                    "false", entry.line_of(key))
                flags[key] = entry.get(key, False)
            driver = entry.get("driver") or "bridge"
            if not isinstance(driver, str):
                raise self.fail(f"network `{entry['name']}`: `driver` must be text",
                                entry.line_of("driver"))
            if entry["name"] in names:
                raise self.fail(f"network `{entry['name']}` is declared twice", line)
            names.add(entry["name"])
            networks.append(Network(entry["name"], driver, flags["ipv6"],
                                    flags["skipCreation"], flags["isDefault"]))
        # As acr-builder: the last network marked default is the default; none marked: the
        # first, so that steps still find each other by id.
        chosen = next((n for n in reversed(networks) if n.is_default), networks[0])
        return [Network(n.name, n.driver, n.ipv6, n.skip_creation, n is chosen)
                for n in networks]

    def _volumes(self, document: Located) -> dict[str, dict[str, bytes]]:
        listed = document.get("volumes")
        if listed is None:
            return {}
        if not isinstance(listed, LocatedList):
            raise self.fail("`volumes` must be a list of {name, secret}",
                            document.line_of("volumes"))
        volumes: dict[str, dict[str, bytes]] = {}
        for index, entry in enumerate(listed):
            line = listed.line_of(index)
            if not isinstance(entry, Located) or set(entry) != {"name", "secret"} \
                    or not isinstance(entry["name"], str) \
                    or not _VOLUME_NAME.fullmatch(entry["name"]):
                raise self.fail("each of `volumes` is {name: NAME, secret: {FILE: BASE64}} "
                                "(a name of letters, digits, '-' and '_')", line)
            name = entry["name"]
            if name in volumes:
                raise self.fail(f"volume `{name}` is declared twice", line)
            volumes[name] = self._secret_files(name, entry["secret"],
                                               entry.line_of("secret"))
        return volumes

    def _secret_files(self, volume: str, secret: object, line: int) -> dict[str, bytes]:
        # acr-builder reads both a mapping and a list of one-entry mappings.
        if isinstance(secret, LocatedList) and all(isinstance(s, Located) and len(s) == 1
                                                   for s in secret):
            pairs = [(k, v, item.line_of(k)) for item in secret for k, v in item.items()]
        elif isinstance(secret, Located) and secret:
            pairs = [(k, v, secret.line_of(k)) for k, v in secret.items()]
        else:
            raise self.fail(f"volume `{volume}`: `secret` must map file names to base64 "
                            "text", line)
        files: dict[str, bytes] = {}
        for name, encoded, at in pairs:
            if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) \
                    or name in (".", ".."):
                raise self.fail(f"volume `{volume}`: {name!r} is not a file name", at)
            if name in files:
                raise self.fail(f"volume `{volume}`: file {name!r} is given twice", at)
            try:
                files[name] = base64.b64decode(str(encoded or ""), validate=True)
            except (binascii.Error, ValueError):
                # The value is a secret: never shown.
                raise self.fail(f"volume `{volume}`: file {name!r} is not base64 (write "
                                "{{ ... | b64enc}})", at) from None
        return files

    def _steps(self, document: Located, context: StepContext) -> list[TaskStep]:
        listed = document.get("steps")
        if not isinstance(listed, LocatedList) or not listed:
            raise self.fail("a task file needs `steps:`, a list of at least one step",
                            document.line_of("steps") if "steps" in document else 1)
        if len(listed) > MAX_STEPS:
            raise self.fail(f"the file has {len(listed)} steps: at most {MAX_STEPS}",
                            document.line_of("steps"))
        steps, first_line, nodes = [], {}, []
        for index, step in enumerate(listed):
            written = step.get("id") if isinstance(step, Located) else None
            name = _step_name(index, written if isinstance(written, str) else None)
            try:
                task_step = read_step(step, replace(context, index=index))
            except StepError as error:
                line = step.line_of(error.key) if isinstance(step, Located) and error.key \
                    else listed.line_of(index)
                raise self.fail(error.message, line, name) from None
            step_id = task_step.control.id
            if step_id in first_line:
                raise self.fail(f"id `{step_id}` is also the id of the step at line "
                                f"{first_line[step_id]}", step.line_of("id")
                                if "id" in step else listed.line_of(index), name)
            first_line[step_id] = listed.line_of(index)
            steps.append(task_step)
            nodes.append(Node(step_id, task_step.control.when,
                              step.line_of("when") if "when" in step else
                              listed.line_of(index), name))
        try:
            check(nodes)
        except WhenError as error:
            raise self.fail(error.message, error.node.line, error.node.name) from None
        return steps


def _with_base64(secrets) -> list[str]:
    """Each secret, and its base64 as `b64enc` writes it: a step may print either."""
    secrets = [s for s in secrets if s]
    return secrets + [base64.b64encode(s.encode()).decode() for s in secrets]


def alias_rules_message(directive: str, name: str) -> str:
    if name in ("Registry", "RegistryName"):
        return (f"{directive}{name} has no value: set `registry:` in the config, or add a "
                "`registries:` entry (the first one's host is the run's registry)")
    return f"{directive}{name} has no value in this run"


def _step_name(index: int, written: str | None) -> str:
    return f"step `{written}`" if written else f"step {index + 1} (`{default_id(index)}`)"


def _step_in_text(text: str, line: int) -> str | None:
    """The step at `line` as the raw text shows it, for a file too broken to read."""
    lines = text.splitlines()
    start = next((i for i, t in enumerate(lines) if re.match(r"steps\s*:", t)), None)
    if start is None or line - 1 <= start:
        return None
    indent, index, written = None, -1, None
    for number in range(start + 1, min(line, len(lines))):
        current = lines[number]
        if current.strip() and not current.startswith((" ", "-", "\t", "#")):
            return None  # another top-level key came before the line
        item = re.match(r"(\s*)-\s", current)
        if item and (indent is None or len(item.group(1)) == indent):
            indent, index, written = len(item.group(1)), index + 1, None
        found = re.match(r"\s*(?:-\s+)?id\s*:\s*['\"]?([^'\"\s#]+)", current)
        if found and index >= 0:
            written = found.group(1)
    return _step_name(index, written) if index >= 0 else None
