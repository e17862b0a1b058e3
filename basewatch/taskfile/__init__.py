"""Task files (acr-task.yaml) read into a run plan's steps, as acr-builder reads them: rendered
as a Go template, parsed as YAML, `$` aliases expanded, checked. Pure: no engine, no network;
alias files come through a callback."""
from basewatch.taskfile.loader import is_task_file, load_task_file
from basewatch.taskfile.values import (
    MASK,
    load_values_file,
    mask,
    merge_values,
    parse_assignments,
    secret_texts,
)

__all__ = ["MASK", "is_task_file", "load_task_file", "load_values_file", "mask", "merge_values",
           "parse_assignments", "secret_texts"]
