"""Run variables in image names and task files: `{{.Run.ID}}`, `$ID`, `{{.Run.Registry}}`..."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from basewatch.errors import BasewatchError

_GO_TEMPLATE = re.compile(r"\{\{\s*\.(Run|Values)\.([A-Za-z0-9_]+)\s*\}\}")
# ACR's short aliases, usable where a task file or tag is not Go-templated.
_ALIASES = {"ID": "ID", "Registry": "Registry", "RegistryName": "RegistryName",
            "Date": "Date", "OS": "OS", "Architecture": "Architecture", "Commit": "Commit",
            "Branch": "Branch", "SharedVolume": "SharedVolume"}
_ALIAS = re.compile(r"\$(" + "|".join(sorted(_ALIASES, key=len, reverse=True)) + r")\b")


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

    def as_dict(self) -> dict[str, str]:
        values = {
            "ID": self.id,
            # ACR's format: 20190503-043342z
            "Date": self.date.strftime("%Y%m%d-%H%M%Sz"),
            "OS": self.os, "Architecture": self.architecture,
            "Commit": self.commit, "Branch": self.branch, "SharedVolume": "/workspace",
        }
        if self.registry:
            values["Registry"] = self.registry
            values["RegistryName"] = self.registry.split(".")[0].split(":")[0]
        return values


def render(text: str, run: RunVariables, values: dict[str, str] | None = None) -> str:
    """Substitute run variables and `--set` values; an unknown name is a TemplateError."""
    run_values = run.as_dict()
    values = values or {}

    def go(match: re.Match) -> str:
        scope, name = match.groups()
        table = run_values if scope == "Run" else values
        if name not in table:
            raise TemplateError(_unknown(f"{{{{.{scope}.{name}}}}}", scope, name))
        return table[name]

    def alias(match: re.Match) -> str:
        name = _ALIASES[match.group(1)]
        if name not in run_values:
            raise TemplateError(_unknown(f"${match.group(1)}", "Run", name))
        return run_values[name]

    return _ALIAS.sub(alias, _GO_TEMPLATE.sub(go, text))


def _unknown(written: str, scope: str, name: str) -> str:
    if scope == "Run" and name in ("Registry", "RegistryName"):
        return (f"{written} has no value: add a `registries:` entry to the config; the first"
                " one's host is the run's registry")
    if scope == "Values":
        return f"{written} has no value: pass it with --set {name}=..."
    return f"{written} is not a run variable"
