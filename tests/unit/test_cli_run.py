"""`basewatch run` and `task run`: bad input is one clear line before anything is sent to the
daemon (no daemon listens here: a request would fail differently), and --cmd is a one-step
task file."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from basewatch.cli import main
from basewatch.cli_runs import cmd_task_file
from basewatch.run_plan import CmdStep
from basewatch.taskfile import load_task_file
from basewatch.templating import RunVariables

NOWHERE = ["--url", "http://127.0.0.1:9"]  # refused at once, were anything sent


def error_of(capsys, *argv: str) -> str:
    assert main([*argv, *NOWHERE]) == 2
    return capsys.readouterr().err.strip()


def test_a_yaml_syntax_error_in_the_file_names_its_line(tmp_path, capsys):
    (tmp_path / "acr-task.yaml").write_text("version: v1.1.0\nsteps:\n  - cmd: bash\n"
                                            "    when: [a\n")
    message = error_of(capsys, "run", "-f", str(tmp_path / "acr-task.yaml"), "/dev/null")
    assert message.startswith("basewatch: error: acr-task.yaml, line ")
    assert "not valid YAML" in message and "\n" not in message


def test_run_variables_the_daemon_gives_are_no_yaml_error_here():
    # Rendered empty, `app:{{.Run.ID}} .` would read `app: .`, a YAML mapping.
    from basewatch.taskfile.syntax import check_syntax

    check_syntax("version: v1.1.0\nsteps:\n"
                 "  - build: -t {{.Run.Registry}}/app:{{.Run.ID}} --build-arg A=$ID web\n"
                 "  - cmd: bash echo {{.Run.Date}} {{.Run.Commit}} {{.Run.Branch}}\n")


def test_a_template_error_names_its_line(tmp_path, capsys):
    (tmp_path / "t.yml").write_text("steps:\n  - cmd: bash {{ .Run.ID \n")
    assert error_of(capsys, "run", "-f", str(tmp_path / "t.yml"), "/dev/null").startswith(
        "basewatch: error: t.yml, line 2: ")


@pytest.mark.parametrize("flag, given, shown", [
    ("--set", "novalue", "--set 'novalue': expected NAME=VALUE"),
    ("--set", "=x", "--set '=x': expected NAME=VALUE"),
    # a secret's value is never echoed, even a malformed one's
    ("--set-secret", "hunter2", "--set-secret 'hunter2': expected NAME=VALUE"),
])
def test_an_assignment_without_equals_is_refused(capsys, flag, given, shown):
    assert error_of(capsys, "run", "--cmd", "bash echo", flag, given, "/dev/null") == \
        f"basewatch: error: {shown}"


def test_a_secret_value_is_never_echoed_in_an_error(tmp_path, capsys):
    (tmp_path / "t.yaml").write_text("steps:\n  - cmd: bash {{.Secrets.s}} {{ oops }}\n")
    message = error_of(capsys, "run", "-f", str(tmp_path / "t.yaml"), "--set-secret",
                       "s=very-secret", "/dev/null")
    assert "very-secret" not in message


def test_a_missing_file_and_a_bad_values_file_are_named(tmp_path, capsys):
    assert error_of(capsys, "run", "-f", str(tmp_path / "none.yaml"), "/dev/null") == \
        f"basewatch: error: {tmp_path / 'none.yaml'}: no such task file"
    (tmp_path / "values.yaml").write_text("a: 1\nb: [\n")
    assert "values.yaml, line" in error_of(capsys, "run", "--cmd", "bash echo", "--values",
                                           str(tmp_path / "values.yaml"), "/dev/null")


def test_a_file_or_a_command_is_needed_not_both(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", "/dev/null"])
    with pytest.raises(SystemExit):
        main(["run", "-f", "x.yaml", "--cmd", "bash", "/dev/null"])
    assert "--cmd needs an image" in error_of(capsys, "run", "--cmd", " ", "/dev/null")


def test_a_missing_context_folder_is_named(tmp_path, capsys):
    assert "does not exist" in error_of(capsys, "run", "--cmd", "bash echo",
                                        str(tmp_path / "gone"))


def test_task_run_checks_its_values_and_secrets_here(capsys):
    assert error_of(capsys, "task", "run", "app", "--set", "x") == \
        "basewatch: error: --set 'x': expected NAME=VALUE"


def test_task_create_of_a_task_file_needs_no_image(capsys):
    # Refused for want of an image only when the file is a Dockerfile; a task file's create
    # reaches the daemon (none listens here: a connection error).
    assert "at least one -t IMAGE" in error_of(capsys, "task", "create", "app", "--context",
                                               "/srv/app")
    assert "-t IMAGE" not in error_of(capsys, "task", "create", "app", "--context",
                                      "/srv/app", "-f", "acr-task.yaml")


def test_cmd_is_a_one_step_task_file():
    text = cmd_task_file('bash -c "echo $$HOME {{.Run.ID}}"')
    steps, _ = load_task_file(text, variables=RunVariables("ca7", datetime.now(timezone.utc)),
                              image_aliases={"bash": "busybox:1.36"}, source="--cmd")
    [step] = steps
    assert isinstance(step.action, CmdStep)
    assert step.action.container.image == "busybox:1.36"
    assert step.action.container.args == ("-c", "echo $HOME ca7")
