"""What the observability kit (docs/observability/) asks of the daemon's /metrics: the metric
names in PromQL expressions, the names an exposition exports, and promtool."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

KIT = Path(__file__).resolve().parents[2] / "docs" / "observability"
# Words of PromQL that are neither metrics nor functions (those are followed by "(").
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
             "group_right", "offset", "bool", "inf", "nan", "Inf", "NaN"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                              "_created"),
             "summary": ("_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",),
             "unknown": ("",), "stateset": ("",), "gaugehistogram": ("_bucket", "_gsum",
                                                                     "_gcount")}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers,
    ranges, grouping clauses and Grafana's variables are taken out, and functions (a name
    before "(") and keywords are skipped."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    expr = re.sub(r"\{[^{}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{[^}]*\}|\$\w+", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end():].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def exported_names(exposition: str) -> set[str]:
    """Every series name an exposition offers, also for a family with no sample yet (a
    labelled counter nobody has incremented): its type says the names it will have."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
    return names


def dashboard_expressions(path: Path = KIT / "grafana-dashboard.json") -> dict[str, str]:
    """Each panel target's expression, by `panel title/refId`; and the variables' queries."""
    dashboard = json.loads(path.read_text())
    found = {f"{panel['title']}/{target['refId']}": target["expr"]
             for panel in dashboard["panels"] for target in panel.get("targets", [])}
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) \
            else variable["query"]
        # label_values(METRIC, label): the metric is an expression of its own.
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
        found[f"${variable['name']}"] = match.group(1) if match else query
    return found


def alert_expressions(path: Path = KIT / "alerts.yml") -> dict[str, str]:
    import yaml

    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """promtool (Debian's `prometheus` package; `python3 scripts/stack.py install` adds it)."""
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: python3 scripts/stack.py install (Debian's prometheus)"
    return subprocess.run([binary, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=KIT)
