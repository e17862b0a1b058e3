"""Every bad input is one TaskFileError naming the file's line and, inside a step, the step;
nothing is returned, so nothing runs."""
from __future__ import annotations

import re
from textwrap import dedent

import pytest

from basewatch.errors import BasewatchError, TaskFileError

from .support import load


def error(text: str, **options) -> str:
    with pytest.raises(TaskFileError) as caught:
        load(dedent(text), **options)
    message = str(caught.value)
    assert isinstance(caught.value, BasewatchError)
    assert "\n" not in message, "one line"
    return message


@pytest.mark.parametrize("text, expected", [
    # unknown property, with a near miss
    ("""\
     version: v1.1.0
     steps:
       - id: web
         cmd: bash echo
         timout: 5
     """, "task file, line 5: step `web`: unknown property `timout` (did you mean `timeout`?)"),
    ("""\
     steps:
       - cmd: bash echo
         colour: red
     """, "task file, line 3: step 1 (`acb_step_0`): unknown property `colour`"),
    ("""\
     steps:
       - cmd: bash echo
       - cmd: bash false
         exitedWith: [0, 1]
     """, "task file, line 4: step 2 (`acb_step_1`): `exitedWith` (exit codes other than 0 as "
          "success) is an ACR property basewatch does not support"),
    ("""\
     stepTimout: 10
     steps:
       - cmd: bash echo
     """, "task file, line 1: unknown top-level property `stepTimout` (did you mean "
          "`stepTimeout`?)"),
    # two kinds, or none
    ("""\
     steps:
       - id: both
         build: -t a .
         cmd: bash echo
     """, "task file, line 4: step `both`: a step is exactly one of `build`, `push` or `cmd`; "
          "this one has `build` and `cmd`"),
    ("""\
     steps:
       - cmd: bash echo
       - id: nothing
         when: ["-"]
     """, "task file, line 3: step `nothing`: a step is exactly one of `build`, `push` or "
          "`cmd`; this one has none"),
    # when
    ("""\
     steps:
       - id: build-web
         build: -t web .
       - id: test
         cmd: bash echo
         when: [build-wbe]
     """, "task file, line 6: step `test`: `when` names `build-wbe`, which is no step's id "
          "(did you mean `build-web`?)"),
    ("""\
     steps:
       - id: a
         cmd: bash echo
         when: [b]
       - id: b
         cmd: bash echo
         when: [a]
     """, "task file, line 7: step `b`: `when` closes a cycle: `b` → `a` → `b` (each waits "
          "for the next)"),
    ("""\
     steps:
       - id: a
         cmd: bash echo
         when: [c]
       - id: b
         cmd: bash echo
       - id: c
         cmd: bash echo
     """, "task file, line 4: step `a`: `when` closes a cycle: `a` → `c` → `b` → `a`"),
    ("""\
     steps:
       - id: a
         cmd: bash echo
         when: [a]
     """, "task file, line 4: step `a`: `when` closes a cycle: `a` → `a`"),
    ("""\
     steps:
       - id: a
         cmd: bash echo
       - id: b
         cmd: bash echo
         when: ["-", a]
     """, 'task file, line 6: step `b`: `when: ["-"]` starts a step at once and cannot be '
          "given beside step ids"),
    ("""\
     steps:
       - id: same
         cmd: bash echo
       - id: same
         cmd: bash echo
     """, "task file, line 4: step `same`: id `same` is also the id of the step at line 2"),
    ("""\
     steps:
       - cmd: bash echo
       - id: acb_step_0
         cmd: bash echo
     """, "task file, line 3: step `acb_step_0`: id `acb_step_0` is also the id of the step "
          "at line 2"),
    ("""\
     steps:
       - id: has space
         cmd: bash echo
     """, "task file, line 2: step `has space`: id 'has space' must be letters, digits"),
    # wrong types
    ("""\
     steps:
       - cmd: bash echo
         timeout: ten
     """, "task file, line 3: step 1 (`acb_step_0`): `timeout` must be a whole number of "
          "seconds, not 'ten'"),
    ("""\
     steps:
       - cmd: bash echo
         detach: "yes"
     """, "task file, line 3: step 1 (`acb_step_0`): `detach` must be true or false, not "
          "'yes'"),
    ("""\
     steps:
       - cmd: bash echo
         when: step
     """, "task file, line 3: step 1 (`acb_step_0`): `when` must be a list of text"),
    ("""\
     steps:
       - cmd: bash echo
         retries: -1
     """, "task file, line 3: step 1 (`acb_step_0`): `retries` must be 0 or more, not -1"),
    ("""\
     steps:
       - cmd: bash echo
         env: [NOVALUE]
     """, "task file, line 3: step 1 (`acb_step_0`): env: 'NOVALUE' must be written "
          "NAME=VALUE"),
    ("""\
     steps:
       - cmd: bash echo
         isolation: hyperv
     """, "task file, line 3: step 1 (`acb_step_0`): isolation 'hyperv' is not supported"),
    ("""\
     steps:
       - build: -t a .
         cache: sometimes
     """, "task file, line 3: step 1 (`acb_step_0`): cache 'sometimes' must be enabled or "
          "disabled"),
    ("""\
     stepTimeout: soon
     steps:
       - cmd: bash echo
     """, "task file, line 1: `stepTimeout` must be a whole number of seconds"),
    ("""\
     version: v2
     steps:
       - cmd: bash echo
     """, "task file, line 1: version 'v2' is not one basewatch reads"),
    ("""\
     workingDirectory: src
     steps:
       - cmd: bash echo
     """, "task file, line 1: `workingDirectory` must be an absolute path"),
    ("""\
     steps:
       - cmd: bash echo
     steps:
       - cmd: bash echo
     """, "task file, line 3: `steps` is given twice in the same mapping (first at line 1)"),
    ("version: v1.1.0\n", "task file, line 1: a task file needs `steps:`"),
    ("", "task file: the file is empty"),
    ("- cmd: bash\n", "task file, line 1: the top level must be a mapping"),
    # build arguments
    ("""\
     steps:
       - build: -t a --squash .
     """, "task file, line 2: step 1 (`acb_step_0`): build: unknown build flag `--squash`"),
    ("""\
     steps:
       - build: -t a . other
     """, "build: a build step takes exactly one context (a folder in the working directory, "
          "such as .); found: . other"),
    ("""\
     steps:
       - build: -t a https://github.com/example/app.git
     """, "build: the context 'https://github.com/example/app.git': a build step builds from "
          "the working directory, not from a URL"),
    ("""\
     steps:
       - build: -t a ../elsewhere
     """, "build: the context '../elsewhere' is outside the working directory /workspace"),
    ("""\
     steps:
       - build: -t a -f Dockerfile web
     """, "build: the Dockerfile 'Dockerfile' must be inside the context 'web'"),
    ("""\
     steps:
       - build: -t a --build-arg TOKEN .
     """, "build: --build-arg 'TOKEN': expected NAME=VALUE"),
    ("""\
     steps:
       - build: -t Not/Lower .
     """, "build: tag 'Not/Lower': invalid image reference"),
    ("""\
     steps:
       - build: -t a --platform linux .
     """, "build: --platform 'linux'"),
    # cmd, push, networks, volumes
    ("""\
     steps:
       - cmd: Not/An/Image:tag arg
     """, "task file, line 2: step 1 (`acb_step_0`): cmd: `Not/An/Image:tag` is neither an "
          "image alias (the config's `aliases:`, the file's `alias:`) nor an image reference"),
    ("""\
     steps:
       - cmd: bash -c 'unclosed
     """, "cmd: cannot split it into words"),
    ("""\
     steps:
       - cmd: bash echo
         network: elsewhere
     """, "task file, line 3: step 1 (`acb_step_0`): network 'elsewhere' is none of the "
          "task's networks (acb_default_network) nor host, none or bridge"),
    ("""\
     steps:
       - cmd: bash cat /s/f
         volumeMounts:
           - name: nosuch
             mountPath: /s
     """, "task file, line 3: step 1 (`acb_step_0`): volumeMounts: 'nosuch' is none of the "
          "task's volumes (none declared)"),
    ("""\
     steps:
       - build: -t a .
         volumeMounts: [{name: v, mountPath: /s}]
     """, "`volumeMounts` is for cmd steps only"),
    ("""\
     volumes:
       - name: v
         secret:
           f: not base64!
     steps:
       - cmd: bash
     """, "task file, line 4: volume `v`: file 'f' is not base64"),
    ("""\
     networks:
       - name: one
       - name: one
     steps:
       - cmd: bash
     """, "task file, line 3: network `one` is declared twice"),
])
def test_bad_input(text, expected):
    message = error(text)
    assert expected in message, message


def test_a_push_without_a_registry_when_the_run_has_none():
    from basewatch.templating import RunVariables

    from .support import WHEN
    message = error("steps:\n  - push: [apps/hello:v1]\n",
                    variables=RunVariables(id="ca1", date=WHEN))
    assert message.startswith("task file, line 2: step 1 (`acb_step_0`): push: 'apps/hello:v1' "
                              "names no registry and the run has none")


def test_a_template_naming_a_value_not_given_names_the_step_and_line():
    message = error("""\
        version: v1.1.0
        steps:
          - id: build
            build: -t app:{{.Values.tag}} .
          - id: run
            cmd: bash echo {{.Values.greeting}}
        """, values={"tag": "v1"})
    assert message == ("task file, line 6: step `run`: {{.Values.greeting}} has no value: pass "
                       "it with --set greeting=... or in the values file")


def test_yaml_syntax_error_names_its_line_and_step():
    message = error("""\
        steps:
          - id: first
            cmd: bash echo
          - id: second
            cmd: bash echo [unclosed
            env: ["A=1"
        """)
    assert re.match(r"task file, line [67]: step `second`: not valid YAML: ", message), message


def test_lines_are_the_files_even_when_a_template_adds_lines():
    message = error("""\
        env: [{{.Values.many}}]
        steps:
          - cmd: bash echo
            when: [nowhere]
        """, values={"many": '"A=1",\n  "B=2",\n  "C=3"'})
    assert message.startswith("task file, line 4: step 1 (`acb_step_0`): `when` names "
                              "`nowhere`"), message


def test_the_source_name_is_the_files():
    with pytest.raises(TaskFileError, match=r"^acr-task.yaml, line 1: "):
        load("steps: 3\n", source="acr-task.yaml")


# -- what needs Azure ----------------------------------------------------------------------------

def test_a_key_vault_secret_is_refused_unless_given():
    text = """\
        version: v1.0.0
        secrets:
          - id: name
            keyvault: https://vault.example.net/secrets/SampleSecret
        steps:
          - cmd: bash -c 'echo $MY_SECRET'
            env: ["MY_SECRET={{.Secrets.name}}"]
        """
    message = error(text)
    assert message == ("task file, line 4: secret `name` is read from Azure Key Vault "
                       "(https://vault.example.net/secrets/SampleSecret), which needs Azure; "
                       "basewatch does not reach Azure: give its value with --set-secret "
                       "name=...")
    steps, workspace = load(dedent(text), secrets={"name": "given"})
    assert steps[0].action.container.env == ("MY_SECRET=given",)
    assert "given" in workspace.secrets


def test_a_managed_identity_secret_is_refused():
    message = error("""\
        secrets:
          - id: name
            clientID: c1a2b3c4-0000-0000-0000-000000000000
        steps:
          - cmd: bash echo
        """)
    assert message.startswith("task file, line 3: secret `name` is read from Azure Key Vault "
                              "through the managed identity c1a2b3c4")


@pytest.mark.parametrize("command, says", [
    ("az acr login -n example", "`az` is the Azure CLI"),
    ("acr purge --filter 'hello:.*'", "`acr` is the ACR CLI"),
    ("mcr.microsoft.com/azure-cli az login --identity", "logs in with a managed identity"),
])
def test_the_azure_tools_are_refused(command, says):
    message = error(f"steps:\n  - cmd: bash echo\n  - cmd: {command}\n")
    assert message.startswith(f"task file, line 3: step 2 (`acb_step_1`): cmd: {says}"), message


def test_an_azure_tool_with_an_alias_runs():
    steps, _ = load("steps:\n  - cmd: az version\n",
                    image_aliases={"az": "127.0.0.1:5000/tools/azure-cli:2"})
    assert steps[0].action.container.image == "127.0.0.1:5000/tools/azure-cli:2"


def test_an_error_never_shows_a_secret():
    message = error("steps:\n  - cmd: bash echo\n    env: [\"{{.Secrets.pw}}\"]\n",
                    secrets={"pw": "hunter22"})
    assert "hunter22" not in message and "*****" in message, message


def test_a_file_too_large_or_too_deep_is_refused():
    assert "larger than 1024 KiB" in error("steps: []\n" + "#" * (1024 * 1024))
    assert "nested too deeply" in error("steps: " + "[" * 100_000 + "]" * 100_000 + "\n")
    bomb = "version: v1.1.0\na: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefg":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [{', '.join(['*' + previous] * 10)}]\n"
    assert "more than 100000 values" in error(bomb + "steps:\n  - cmd: bash\n")


def test_an_alias_in_a_file_before_v1_1_0_says_why_it_was_not_expanded():
    hint = "($ aliases are expanded in files of `version: v1.1.0` only)"
    for step in ("build: -t $Registry/a:$ID .", "push: [$Registry/a]", "cmd: $Registry/a"):
        assert error(f"version: v1.0.0\nsteps:\n  - {step}\n").endswith(hint)
