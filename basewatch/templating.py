"""Run variables in image names and task files: `{{.Run.ID}}`, `$ID`, `{{.Run.Registry}}`..."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from basewatch.errors import BasewatchError

# `{{.Run.ID}}` / `{{.Values.x}}`, and ACR's short aliases (`$ID`, `$Registry`...), in one
# pattern so that a substituted value is never expanded again.
_ALIASES = ("ID", "Registry", "RegistryName", "Date", "OS", "Architecture", "Commit", "Branch",
            "SharedVolume")
_VARIABLE = re.compile(r"\{\{\s*\.(Run|Values)\.([A-Za-z0-9_]+)\s*\}\}|\$("
                       + "|".join(sorted(_ALIASES, key=len, reverse=True)) + r")\b")


_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$|^\[.*\]$")


class TemplateError(BasewatchError):
    """A template names a variable that has no value in this run."""


@dataclass(frozen=True)
class RunVariables:
    id: str
    date: datetime
    registry: str | None = None
    os: str = "linux"
    architecture: str = "amd64"
    commit: str = ""
    branch: str = ""
    task_name: str = ""
    # What {{.Run.SharedVolume}} names: the folder (or volume) a task file's steps share.
    shared_volume: str = "/workspace"

    def as_dict(self) -> dict[str, str]:
        values = {
            "ID": self.id,
            # ACR's format, always in UTC: 20190503-043342z
            "Date": self.date.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%Sz"),
            "OS": self.os, "Architecture": self.architecture,
            "Commit": self.commit, "Branch": self.branch, "SharedVolume": self.shared_volume,
            "TaskName": self.task_name,
        }
        if self.registry:
            values["Registry"] = self.registry
            host = self.registry.rsplit(":", 1)[0] if ":" in self.registry else self.registry
            # myregistry.azurecr.io -> myregistry; an IP address is a name of its own.
            values["RegistryName"] = host if _IP_ADDRESS.match(host) else host.split(".")[0]
        return values


def render(text: str, run: RunVariables, values: dict[str, str] | None = None) -> str:
    """Substitute run variables and `--set` values; an unknown name is a TemplateError."""
    run_values = run.as_dict()
    values = values or {}

    def substitute(match: re.Match) -> str:
        scope, name, alias = match.groups()
        if alias is not None:
            scope, name, written = "Run", alias, f"${alias}"
        else:
            written = f"{{{{.{scope}.{name}}}}}"
        table = run_values if scope == "Run" else values
        if name not in table:
            raise TemplateError(missing_variable(written, scope, name, table))
        return table[name]

    return _VARIABLE.sub(substitute, text)


def missing_variable(written: str, scope: str, name: str, known: dict[str, str]) -> str:
    """What to say of a variable with no value in this run: how to give it one."""
    if scope == "Run" and name in ("Registry", "RegistryName"):
        return (f"{written} has no value: add a `registries:` entry to the config (the first"
                " one's host is the run's registry) or set `registry:`")
    if scope == "Values":
        return f"{written} has no value: pass it with --set {name}=..."
    return f"{written} is not a run variable; known: {', '.join(sorted(known))}"
