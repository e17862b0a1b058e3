"""docs/cli.md and docs/metrics.md are generated (scripts/gen_docs.py): each must be what the
generator writes from today's parser and registry, so a new option or metric cannot go
undocumented."""
from __future__ import annotations

import difflib

import gen_docs  # scripts/, put on sys.path by tests/conftest.py
import pytest


@pytest.mark.parametrize("page", sorted(gen_docs.PAGES), ids=lambda page: page.name)
def test_the_generated_page_is_up_to_date(page):
    expected = gen_docs.PAGES[page]()
    current = page.read_text() if page.exists() else ""
    if current != expected:
        diff = difflib.unified_diff(current.splitlines(), expected.splitlines(),
                                    "committed", "generated", lineterm="", n=1)
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/{page.name} is out of date: run `{gen_docs.REGENERATE}` and commit "
                    f"it\n{shown}", pytrace=False)


def test_every_command_and_option_of_the_parser_is_in_the_cli_reference():
    from basewatch.cli import build_parser

    text = gen_docs.cli_reference()
    for parser, _help in gen_docs._walk(build_parser()):
        assert f"## {parser.prog}\n" in text
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in text.split(f"## {parser.prog}\n")[1], (parser.prog,
                                                                                 option)


def test_a_metric_added_to_the_registry_appears_in_the_reference(monkeypatch):
    from basewatch.metrics import Metrics
    from prometheus_client import Counter

    added = Metrics.__init__

    def with_one_more(self):
        added(self)
        Counter("basewatch_tutorial_things", "Things, by kind", ["kind"], registry=self.registry)

    monkeypatch.setattr(Metrics, "__init__", with_one_more)
    assert ("| `basewatch_tutorial_things_total` | counter | `kind` | Things, by kind |"
            in gen_docs.metrics_reference())


def test_the_metrics_reference_names_what_a_live_scrape_exports():
    """The names in the table are the exposition's: each one appears in what /metrics would
    serve for the same registry once every labelled metric has a child."""
    from prometheus_client import generate_latest

    registry = gen_docs.metrics_registry()
    exposed = generate_latest(registry).decode()
    for name, kind, _help, _labels in gen_docs._families(registry):
        suffix = {"counter": "_total"}.get(kind, "")
        assert f"# TYPE {name}{suffix} " in exposed or f"# TYPE {name} " in exposed, name
