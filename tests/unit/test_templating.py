"""Run variables in image names: ACR's `{{.Run.ID}}` forms, `$ID` aliases and `--set` values."""
import re
from datetime import datetime, timedelta, timezone

import pytest

from basewatch.errors import BasewatchError
from basewatch.templating import RunVariables, TemplateError, render

WHEN = datetime(2019, 5, 3, 4, 33, 42, tzinfo=timezone.utc)
RUN = RunVariables(id="ca1", date=WHEN, registry="myregistry.azurecr.io")
NO_REGISTRY = RunVariables(id="ca1", date=WHEN)


@pytest.mark.parametrize("text, rendered", [
    ("{{.Run.ID}}", "ca1"),
    ("{{ .Run.ID }}", "ca1"),
    ("{{  .Run.ID}}", "ca1"),
    ("$ID", "ca1"),
    ("app:$ID-linux", "app:ca1-linux"),
    ("app:{{.Run.ID}}-{{.Run.ID}}", "app:ca1-ca1"),
    ("app:{{.Run.Date}}", "app:20190503-043342z"),
    ("app:$Date", "app:20190503-043342z"),
    ("{{.Run.Registry}}/apps/hello:{{.Run.ID}}", "myregistry.azurecr.io/apps/hello:ca1"),
    ("$Registry/apps/hello:$ID", "myregistry.azurecr.io/apps/hello:ca1"),
    ("{{.Run.RegistryName}}", "myregistry"),
    ("$RegistryName-cache", "myregistry-cache"),
    ("{{.Run.OS}}/{{.Run.Architecture}}", "linux/amd64"),
    ("$OS-$Architecture", "linux-amd64"),
    ("{{.Run.SharedVolume}}", "/workspace"),
])
def test_run_variables(text, rendered):
    assert render(text, RUN) == rendered


def test_date_is_acr_format_yyyymmdd_hhmmss_z():
    assert re.fullmatch(r"\d{8}-\d{6}z", render("{{.Run.Date}}", RUN))
    assert render("{{.Run.Date}}", RUN) == "20190503-043342z"


def test_date_is_written_in_utc_whatever_the_zone_given():
    paris = WHEN.astimezone(timezone(timedelta(hours=2)))
    assert render("{{.Run.Date}}", RunVariables(id="ca1", date=paris)) == "20190503-043342z"


def test_os_and_architecture_come_from_the_run():
    run = RunVariables(id="ca1", date=WHEN, os="linux", architecture="arm64")
    assert render("app:{{.Run.OS}}-{{.Run.Architecture}}", run) == "app:linux-arm64"


@pytest.mark.parametrize("registry, name", [
    ("myregistry.azurecr.io", "myregistry"),
    ("registry.example.com:5000", "registry"),
    ("localhost:5000", "localhost"),
])
def test_registry_name_is_the_first_label_without_port(registry, name):
    run = RunVariables(id="ca1", date=WHEN, registry=registry)
    assert render("$RegistryName", run) == name
    assert render("{{.Run.Registry}}", run) == registry


def test_values_are_substituted():
    assert render("app:{{.Values.tag}}-{{ .Values.flavour }}", RUN,
                  {"tag": "v1", "flavour": "slim"}) == "app:v1-slim"


def test_substituted_values_are_not_expanded_again():
    assert render("{{.Values.note}}", RUN, {"note": "cost$ID"}) == "cost$ID"


@pytest.mark.parametrize("text", [
    "127.0.0.1:5000/apps/hello:latest",
    "",
    "$HOME/app",  # not a run variable: left to whoever reads it next
    "$IDENTITY",  # $ID only as a whole word
    "${ID}",
    "{{.Run.ID",
    "{{Run.ID}}",
    "{{ not a template }}",
    "{{.Other.ID}}",
])
def test_text_without_run_variables_is_unchanged(text):
    assert render(text, RUN) == text


@pytest.mark.parametrize("text", ["{{.Run.Nope}}", "app:{{ .Run.Commitish }}"])
def test_unknown_run_variable_is_an_error_naming_it(text):
    with pytest.raises(TemplateError) as caught:
        render(text, RUN)
    message = str(caught.value)
    assert isinstance(caught.value, BasewatchError)  # the CLI and API print it as one line
    assert "\n" not in message
    name = re.search(r"\.Run\.(\w+)", text)[1]
    assert message.startswith(f"{{{{.Run.{name}}}}} is not a run variable; known: ")
    assert "ID" in message.partition("known: ")[2].split(", ")


def test_value_without_a_value_says_how_to_give_one():
    with pytest.raises(TemplateError, match=re.escape(
            "{{.Values.tag}} has no value: pass it with --set tag=...")):
        render("app:{{.Values.tag}}", RUN, {"other": "x"})


@pytest.mark.parametrize("text, written", [
    ("{{.Run.Registry}}/app", "{{.Run.Registry}}"),
    ("{{ .Run.RegistryName }}", "{{.Run.RegistryName}}"),
    ("$Registry/app", "$Registry"),
    ("$RegistryName", "$RegistryName"),
])
def test_registry_without_a_configured_registry_points_at_registries(text, written):
    with pytest.raises(TemplateError) as caught:
        render(text, NO_REGISTRY)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{written} has no value: add a `registries:` entry")


def test_variables_render_the_same_without_a_registry():
    assert render("app:$ID-{{.Run.Date}}", NO_REGISTRY) == "app:ca1-20190503-043342z"
