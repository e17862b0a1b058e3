"""Layers: every module imports only from its own layer and the layers below it.

Imports are read with `ast`, so those inside functions and under `if TYPE_CHECKING:` count too: a
type from a layer above is still a dependency on that layer. The list is the one in
docs/architecture.md ("Layers"); a test below holds the two together.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "basewatch"

# Bottom to top. Names are relative to basewatch ("basewatch" itself: the package, its version);
# a module belongs to the layer naming its longest prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("floor", ("basewatch", "errors", "textfiles", "bounded", "redaction")),
    ("netpolicy", ("netpolicy",)),
    ("oci", ("oci",)),
    ("scm", ("scm",)),
    ("dockerfile", ("dockerfile",)),
    ("core", ("models", "tasks", "context_spec", "templating", "metrics", "runqueue", "cron",
              "run_plan", "run_events", "registration_progress")),
    ("taskfile", ("taskfile",)),
    ("config", ("config", "config_listen")),
    ("graph", ("graph", "graph_view", "graph_svg")),
    ("store", ("store",)),
    ("triggers", ("triggers",)),
    ("contexts", ("builder.contexts",)),
    ("watcher", ("watcher",)),
    ("builder", ("builder",)),
    ("services", ("services", "retention", "cascades", "config_sync", "config_check", "health",
                  "membership", "queue_feed",
                  "task_webhooks", "commit_status")),
    ("http", ("http",)),
    ("edges", ("cli", "cli_runs", "cli_output", "cli_progress", "client", "daemon", "serve",
               "logs", "__main__")),
]

# (importing module, imported module) pairs that still go upward, each to be removed by a later
# step of issue 9 (reshape into seams). Empty today; an entry that no longer occurs fails the
# test, so the set only shrinks.
ALLOWED_FOR_NOW: frozenset[tuple[str, str]] = frozenset()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def relative(module: str) -> str:
    return "basewatch" if module == "basewatch" else module.removeprefix("basewatch.")


def layer_of(module: str) -> tuple[int, str]:
    name = relative(module)
    best: tuple[int, int, str] | None = None  # (prefix length, index, layer)
    for index, (layer, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index, layer)
    assert best is not None, f"basewatch module {module} is in no layer: add it to LAYERS " \
                             "here and to docs/architecture.md"
    return best[1], best[2]


def basewatch_imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every basewatch import anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from basewatch.x import y` where y is a module: y
                submodule = f"{source}.{alias.name}"
                found.append((node.lineno, submodule if submodule in MODULES else source))
    return sorted((line, name) for line, name in found
                  if name == "basewatch" or name.startswith("basewatch."))


def upward_imports() -> list[tuple[str, str, str]]:
    """(importing module, imported module, message) for each import from a layer above."""
    found = []
    for module, path in MODULES.items():
        own_index, own_layer = layer_of(module)
        for line, imported in basewatch_imports(module, path):
            index, layer = layer_of(imported)
            if index > own_index:
                found.append((module, imported,
                              f"{path.relative_to(ROOT)}:{line}: {module} (layer {own_layer}) "
                              f"imports {imported} (layer {layer}, above it)"))
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [message for module, imported, message in upward_imports()
              if (module, imported) not in ALLOWED_FOR_NOW]
    assert not upward, "imports from a layer above:\n" + "\n".join(upward)


def test_every_allowance_is_still_needed():
    still = {(module, imported) for module, imported, _ in upward_imports()}
    stale = sorted(ALLOWED_FOR_NOW - still)
    assert not stale, f"no longer imported upward, remove from ALLOWED_FOR_NOW: {stale}"


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


def test_the_layers_are_those_in_the_architecture_doc():
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.partition("\n## Layers\n")[2].partition("\n## ")[0]
    documented = [(m[1], tuple(re.findall(r"`([\w.]+)`", m[2])))
                  for m in re.finditer(r"^\d+\. \*\*(\w+)\*\*: (.*)$", section, re.M)]
    assert documented == LAYERS


def test_the_check_sees_imports_in_functions_and_type_checking_blocks(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from basewatch.daemon import Daemon\n"
                      "def later():\n    import basewatch.services\n"
                      "    from basewatch.builder import contexts\n"
                      "    from basewatch import errors\n")
    assert basewatch_imports("basewatch.oci.sample", source) == [
        (3, "basewatch.daemon"), (5, "basewatch.services"), (6, "basewatch.builder.contexts"),
        (7, "basewatch.errors")]
    assert layer_of("basewatch.builder.contexts.fetch")[1] == "contexts"
    assert layer_of("basewatch.builder.executor")[1] == "builder"
    assert layer_of("basewatch.builder.backends.docker.backend")[1] == "builder"
    assert layer_of("basewatch.run_plan")[1] == "core"
    assert layer_of("basewatch")[1] == "floor"
