"""Templating first, then YAML, then aliases: the Go-template subset, values and secrets,
`$` aliases with `$$`, custom aliases and their directive."""
from __future__ import annotations

import base64

import pytest

from basewatch.errors import TaskFileError
from basewatch.run_plan import CmdStep, PushStep
from basewatch.taskfile import MASK, load_values_file, mask, merge_values, parse_assignments
from basewatch.taskfile.gotemplate import TemplateData, TemplateProblem, render
from basewatch.templating import RunVariables

from .support import ALIASES, RUN, WHEN, load

DATA = TemplateData(run=RUN.as_dict(), values={"a": "x", "n": 3, "yes": True,
                                               "image": {"name": "web"}},
                    secrets={"pw": "pa$$word"})


def args(text: str, **options) -> tuple[str, ...]:
    """The args of a one-step file's cmd."""
    steps, _ = load(text, **options)
    action = steps[0].action
    assert isinstance(action, CmdStep)
    return action.container.args


@pytest.mark.parametrize("text, rendered", [
    ("{{.Run.ID}}", "ca1"),
    ("{{ .Run.Registry }}/{{.Run.RegistryName}}", "127.0.0.1:5000/127.0.0.1"),
    ("{{.Run.Date}}", "20190503-043342z"),
    ("{{.Run.OS}}/{{.Run.Architecture}}", "linux/amd64"),
    ("{{.Run.TaskName}} {{.Run.SharedVolume}}", "hello /workspace"),
    ("{{.Values.a}}{{.Values.n}}{{.Values.yes}}{{.Values.image.name}}", "x3trueweb"),
    ('{{"hi" | b64enc}} {{.Values.a | b64enc}}', "aGk= eA=="),
    ('{{"aGk=" | b64dec | upper}}', "HI"),
    ("{{.Values.missing | default \"d\"}}", "d"),
    ("{{.Values.a | quote}}", '"x"'),
    ("{{/* a comment */}}left", "left"),
    ('a {{- /* a "quoted" }} comment */ -}} b', "ab"),
    ("a  {{- .Values.a -}}  b", "axb"),
    ("a\n  {{- .Values.a }}\n", "ax\n"),
    ("a {{ .Values.a -}}\n\n  b", "a xb"),
])
def test_the_go_template_subset(text, rendered):
    assert render(text, DATA).text == rendered


def test_a_trim_marker_needs_a_space_after_it():
    with pytest.raises(TemplateProblem):  # as Go, which reads `-.Values.a` as a bad number
        render("a {{-.Values.a}}", DATA)


def test_rendered_lines_know_their_source_lines():
    rendered = render("one\n{{- .Values.a }}\ntwo\n{{ \"a\\nb\" }}\nthree", DATA)
    assert rendered.text == "onex\ntwo\na\nb\nthree"
    assert rendered.source_lines == (1, 3, 4, 4, 5)


@pytest.mark.parametrize("text, message", [
    ("{{.Values.nope}}", "{{.Values.nope}} has no value: pass it with --set nope=... or in "
                         "the values file"),
    ("{{.Values.image.tag}}", "{{.Values.image.tag}} has no value: give it in the values file"),
    ("{{.Secrets.token}}", "{{.Secrets.token}} has no value: pass it with --set-secret "
                           "token=..."),
    ("{{.Run.Nope}}", "{{.Run.Nope}} is not a run variable; known: "),
    ("{{if .Values.a}}x{{end}}", "`{{if ...}}` is not supported in task files"),
    ("{{ .Values.a | nosuch }}", "`nosuch` is not a template function"),
    ("{{ $x := 1 }}", "is not supported in task files"),
    ("{{ .Values.image }}", "is a mapping, not a single value"),
    ("{{ .Values.a ", "a template action `{{` is not closed by `}}`"),
])
def test_template_errors_say_what_to_do(text, message):
    with pytest.raises(TemplateProblem) as caught:
        render(text, DATA)
    assert message in caught.value.message


def test_registry_without_a_value_points_at_the_config():
    run = RunVariables(id="ca1", date=WHEN)
    with pytest.raises(TaskFileError, match=r"line 3: step 1 \(`acb_step_0`\): "
                                            r"\{\{\.Run\.Registry\}\} has no value: add a "
                                            r"`registries:` entry .* or set `registry:`"):
        load("version: v1.0.0\nsteps:\n  - build: -t {{.Run.Registry}}/a .\n", variables=run)
    with pytest.raises(TaskFileError, match=r"line 3: step 1 \(`acb_step_0`\): \$Registry has "
                                            r"no value: set `registry:` in the config"):
        load("version: v1.1.0\nsteps:\n  - build: -t $Registry/a .\n", variables=run)


# -- values and secrets ----------------------------------------------------------------------

def test_values_file_then_set_then_template():
    from_file = load_values_file("tag: v1\nflavour: slim\n")
    values = merge_values(from_file, parse_assignments(["tag=v2", "extra=a=b"]))
    assert values == {"tag": "v2", "flavour": "slim", "extra": "a=b"}
    text = "steps:\n  - cmd: bash echo {{.Values.tag}}-{{.Values.flavour}} {{.Values.extra}}\n"
    assert args(text, values=values) == ("echo", "v2-slim", "a=b")


@pytest.mark.parametrize("pairs, flag, message", [
    (["novalue"], "--set", "--set 'novalue': expected NAME=VALUE"),
    (["=x"], "--set", "--set '=x': expected NAME=VALUE"),
    (["secretname"], "--set-secret", "--set-secret 'secretname': expected NAME=VALUE"),
])
def test_bad_assignments(pairs, flag, message):
    with pytest.raises(TaskFileError, match=message):
        parse_assignments(pairs, flag)


def test_a_values_file_must_be_a_mapping():
    with pytest.raises(TaskFileError, match="values.yaml: must be a mapping"):
        load_values_file("- a\n- b\n", "values.yaml")
    with pytest.raises(TaskFileError, match="values.yaml, line 3: not valid YAML"):
        load_values_file("a: b\nc: [\n", "values.yaml")


def test_secrets_are_kept_apart_from_values_and_masked():
    text = ("steps:\n  - cmd: bash echo {{.Secrets.pw}}\n"
            "    env: [\"PW={{.Secrets.pw}}\", \"TAG={{.Values.pw}}\"]\n")
    with pytest.raises(TaskFileError, match=r"\{\{\.Secrets\.pw\}\} has no value: pass it "
                                            r"with --set-secret pw=\.\.\."):
        load(text, values={"pw": "not-a-secret"})
    steps, workspace = load(text, values={"pw": "tag"}, secrets={"pw": "hunter22"})
    assert steps[0].action.container.env == ("PW=hunter22", "TAG=tag")
    assert set(workspace.secrets) == {"hunter22", base64.b64encode(b"hunter22").decode()}
    assert mask("login with hunter22 as hunter22", workspace.secrets) == \
        f"login with {MASK} as {MASK}"
    assert mask("printed aHVudGVyMjI=", workspace.secrets) == f"printed {MASK}"


def test_masking_covers_each_long_line_of_a_multi_line_secret():
    from basewatch.taskfile import secret_texts
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----\n"
    texts = secret_texts([key, "", "short"])
    assert mask("line: MIIEvQIBADANBgkqhkiG9w0B", texts) == f"line: {MASK}"
    assert mask("short and long", texts) == f"{MASK} and long"
    assert "" not in texts


# -- aliases -----------------------------------------------------------------------------------

def test_builtin_aliases_and_double_directive():
    text = ("version: v1.1.0\nsteps:\n"
            "  - cmd: bash echo $ID $Registry $RegistryName $Date $OS $Architecture $$ID "
            "$HOME $SharedVolume cost:$$5 $ID-x\n")
    assert args(text) == ("echo", "ca1", "127.0.0.1:5000", "127.0.0.1", "20190503-043342z",
                          "linux", "amd64", "$ID", "$HOME", "/workspace", "cost:$5", "ca1-x")


def test_commit_and_branch_aliases():
    run = RunVariables(id="ca1", date=WHEN, registry="r.io", commit="abc", branch="main")
    assert args("version: v1.1.0\nsteps:\n  - cmd: bash echo $Commit@$Branch\n",
                variables=run) == ("echo", "abc@main")


def test_before_v1_1_0_dollar_is_written_as_is():
    text = "version: v1.0.0\nsteps:\n  - cmd: bash echo $ID $$\n"
    assert args(text) == ("echo", "$ID", "$$")


def test_template_output_is_never_alias_expanded():
    text = ("version: v1.1.0\nsteps:\n  - cmd: bash echo {{.Secrets.pw}} {{.Values.v}} $$\n")
    assert args(text, values={"v": "$ID"}, secrets={"pw": "pa$$word"}) == \
        ("echo", "pa$$word", "$ID", "$")


def test_custom_aliases_values_and_files_and_precedence():
    files = {"aliases/base.yaml": "greeting: hello\nwho: base\nbash: from/file:1\n",
             "aliases/more.yaml": "who: more\n"}
    text = ("version: v1.1.0\n"
            "alias:\n"
            "  src: [aliases/base.yaml, aliases/more.yaml]\n"
            "  values:\n"
            "    tool: 127.0.0.1:5000/tools/jq:1\n"
            "    repo: \"{{.Run.Registry}}/apps\"\n"
            "steps:\n"
            "  - cmd: tool $greeting $who\n"
            "  - cmd: bash echo $tool\n"
            "  - push: [$repo/web:$ID]\n")
    steps, _ = load(text, read_alias_file=files.__getitem__)
    first, second, third = (s.action for s in steps)
    # A custom alias names a cmd's image without the directive, as acr-builder expands them.
    assert first.container.image == "127.0.0.1:5000/tools/jq:1"
    assert first.container.args == ("hello", "more")  # a later src file wins
    assert second.container.image == "from/file:1"  # src wins over the config's alias
    assert second.container.args == ("echo", "127.0.0.1:5000/tools/jq:1")
    assert third == (PushStep("127.0.0.1:5000/apps/web:ca1"),)


def test_an_alias_value_is_not_expanded_again():
    text = ("version: v1.1.0\nalias:\n  values:\n    a: $ID\n"
            "steps:\n  - cmd: bash echo $a\n")
    assert args(text) == ("echo", "$ID")


def test_alias_directive():
    text = ("version: v1.1.0\nalias:\n  directive: '#'\n  values:\n    app: web\n"
            # Quoted: YAML is read before aliases, and ` #` outside quotes starts a comment.
            "steps:\n  - cmd: 'bash echo #app-#ID ## $ID'\n")
    assert args(text) == ("echo", "web-ca1", "#", "$ID")


@pytest.mark.parametrize("section, message", [
    ("  directive: ab\n", "`directive` must be one character that is not a letter or a digit"),
    ("  directive: a\n", "`directive` must be one character that is not a letter or a digit"),
    ("  values:\n    my-alias: x\n", "alias name 'my-alias' must be letters and digits only"),
    ("  src: [https://example.com/a.yaml]\n", "alias files are read from the context"),
    ("  src: [missing.yaml]\n", "src 'missing.yaml': "),
    ("  colour: red\n", "unknown property `colour`"),
])
def test_bad_alias_sections(section, message):
    text = f"version: v1.1.0\nalias:\n{section}steps:\n  - cmd: bash echo\n"
    with pytest.raises(TaskFileError, match=r"task file, line \d+: alias: .*" +
                       message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("`", "`").replace(".", r"\.")):
        load(text, read_alias_file=lambda path: (_ for _ in ()).throw(
            FileNotFoundError(f"no such file {path}")))


def test_an_alias_section_needs_v1_1_0():
    with pytest.raises(TaskFileError, match=r"line 2: `alias` needs `version: v1.1.0`"):
        load("version: v1.0.0\nalias:\n  values: {a: b}\nsteps:\n  - cmd: bash\n")


def test_b64enc_in_a_secret_volume_round_trips():
    secret = "multi\nline $ secret"
    text = ("version: v1.1.0\nvolumes:\n  - name: v\n    secret:\n"
            "      f: {{.Secrets.s | b64enc}}\nsteps:\n  - cmd: bash\n")
    _, workspace = load(text, secrets={"s": secret})
    assert workspace.volumes == {"v": {"f": secret.encode()}}
    assert base64.b64encode(secret.encode()).decode() not in mask("x", workspace.secrets)


def test_config_alias_is_used_in_every_version_and_docker_gets_the_engine():
    steps, _ = load("steps:\n  - cmd: docker ps\n  - cmd: busybox true\n")
    assert steps[0].action.container.image == ALIASES["docker"]
    assert steps[0].action.container.engine_access
    assert steps[1].action.container.image == "busybox"
    assert not steps[1].action.container.engine_access
