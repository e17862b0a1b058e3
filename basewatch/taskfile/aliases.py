"""`$` aliases, as acr-builder expands them in task files of version v1.1.0: `$ID`,
`$Registry`... (the run's variables), the config's image aliases (`$bash`), the file's own
(`alias: {values: ..., src: [...], directive: ...}`), and `$$` for a literal `$`.

An alias name is letters and digits and ends at the first other character; a name that is no
alias stays as written (`$HOME` reaches the container). The file's `values` win over its `src`
files (a later file over an earlier one), which win over the built-in ones.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Run variables with an alias of their own, as acr-builder's global defaults list them.
RUN_ALIASES = ("ID", "SharedVolume", "Registry", "RegistryName", "Date", "OS", "Architecture",
               "Commit", "Branch")
NAME = re.compile(r"[A-Za-z0-9]+")
# Stands for a directive character that a template wrote (a value, a secret): such text is
# never expanded, as acr-builder expands aliases before it renders templates.
WRITTEN = "\ue000"


class AliasError(Exception):
    """A bad alias definition; `key` is where in `alias:` it is."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.message, self.key = message, key


@dataclass(frozen=True)
class Aliases:
    table: Mapping[str, str]
    directive: str = "$"
    unset: frozenset[str] = frozenset()  # known names with no value in this run

    def expand(self, text: str) -> str:
        """`text` with its aliases replaced; raises KeyError(name) for a known alias that has
        no value in this run (`$Registry` without a registry)."""
        out, index, directive = [], 0, self.directive
        while index < len(text):
            char = text[index]
            if char != directive:
                out.append(char)
                index += 1
                continue
            if text.startswith(directive, index + 1):
                out.append(directive)
                index += 2
                continue
            match = NAME.match(text, index + 1)
            name = match.group() if match else ""
            if name in self.table:
                out.append(self.table[name])
            elif name in self.unset:
                raise KeyError(name)
            else:
                out.append(directive + name)
            index += 1 + len(name)
        return "".join(out).replace(WRITTEN, directive)


def define(section: object, run: Mapping[str, str], image_aliases: Mapping[str, str],
           read_file: Callable[[str], str], parse_yaml: Callable[[str], object]) -> Aliases:
    """The aliases a file's `alias:` section defines on top of the built-in ones."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise AliasError("`alias` must be a mapping of values, src and directive", "alias")
    unknown = sorted(set(section) - {"values", "src", "directive"})
    if unknown:
        raise AliasError(f"unknown property `{unknown[0]}` (alias takes values, src and "
                         "directive)", unknown[0])
    directive = _directive(section.get("directive"))
    table = {name: image for name, image in image_aliases.items()}
    table.update({name: run[name] for name in RUN_ALIASES if name in run})
    sources = section.get("src") or []
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise AliasError("`src` must be a list of files in the context", "src")
    for source in sources:  # later files win over earlier ones
        table.update(_from_file(source, read_file, parse_yaml))
    values = section.get("values") or {}
    if not isinstance(values, Mapping):
        raise AliasError("`values` must be a mapping of alias names to text", "values")
    table.update(_checked(values, "values"))
    unset = frozenset(name for name in RUN_ALIASES if name not in table)
    return Aliases({k: v.replace(WRITTEN, directive) for k, v in table.items()}, directive,
                   unset)


def _directive(value: object) -> str:
    if value is None or value == "":
        return "$"
    value = str(value).replace(WRITTEN, "$")
    if len(value) != 1 or NAME.fullmatch(value):
        raise AliasError(f"`directive` must be one character that is not a letter or a digit, "
                         f"not {value!r}", "directive")
    return value


def _from_file(source: str, read_file: Callable[[str], str],
               parse_yaml: Callable[[str], object]) -> dict[str, str]:
    if re.match(r"[a-z][a-z0-9+.-]*://", source, re.I):
        raise AliasError(f"src {source!r}: alias files are read from the context, not fetched: "
                         "copy it into the repository", "src")
    try:
        text = read_file(source)
    except Exception as exc:  # noqa: BLE001 - the callback's failure, said in one line
        raise AliasError(f"src {source!r}: {exc}", "src") from None
    try:
        values = parse_yaml(text)
    except Exception as exc:  # noqa: BLE001
        raise AliasError(f"src {source!r}: {exc}", "src") from None
    if not isinstance(values, Mapping):
        raise AliasError(f"src {source!r} must hold a mapping of alias names to text", "src")
    return _checked(values, f"src {source!r}")


def _checked(values: Mapping, where: str) -> dict[str, str]:
    table = {}
    for name, value in values.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise AliasError(f"{where}: alias name {name!r} must be letters and digits only",
                             "values" if where == "values" else "src")
        if isinstance(value, (dict, list)) or value is None:
            raise AliasError(f"{where}: alias {name!r} must be text",
                             "values" if where == "values" else "src")
        table[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return table
