"""What the CLI checks of a task file before it asks for a run: its templates' syntax and its
YAML, with the line. Names a run alone gives (run variables, aliases) are not checked here:
the daemon's reading of the file, as the run starts, is the full check."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from basewatch.errors import TaskFileError
from basewatch.taskfile.document import DocumentError, parse
from basewatch.taskfile.gotemplate import TemplateData, TemplateProblem, render
from basewatch.taskfile.values import mask, secret_texts
from basewatch.templating import RunVariables

# Stand-ins for the run variables, which only the daemon knows: each renders as a plain word,
# so `-t app:{{.Run.ID}} .` stays one YAML scalar (empty, it would read as `app: .`, a mapping).
_RUN_STAND_INS = RunVariables(id="run-id", date=datetime(2000, 1, 1, tzinfo=timezone.utc),
                              registry="registry", commit="commit", branch="branch",
                              task_name="task").as_dict()


def check_syntax(text: str, source: str = "task file",
                 values: Mapping[str, object] | None = None,
                 secrets: Mapping[str, str] | None = None) -> None:
    """Raise a TaskFileError naming the line of a template or YAML syntax error."""
    masks = secret_texts((secrets or {}).values())
    try:
        rendered = render(text, TemplateData(_RUN_STAND_INS, values or {}, secrets or {}), lenient=True)
        document = parse(rendered.text, rendered.source_line)
    except TemplateProblem as problem:
        raise TaskFileError(mask(f"{source}, line {problem.line}: {problem.message}",
                                 masks)) from None
    except DocumentError as error:
        where = f", line {error.line}" if error.line else ""
        raise TaskFileError(mask(f"{source}{where}: {error.message}", masks)) from None
    if not isinstance(document, Mapping) or "steps" not in document:
        raise TaskFileError(f"{source}: a task file is a mapping with `steps:`")
