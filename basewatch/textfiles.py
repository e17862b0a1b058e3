"""Reading a file a person pointed us at, with errors that say what went wrong in one line."""
from __future__ import annotations

from pathlib import Path

from basewatch.errors import BasewatchError


def read_text_file(path: Path, what: str, error: type[BasewatchError],
                   encoding: str = "utf-8", shown: str | None = None) -> str:
    """The file's text; `error` naming it (`shown`, default its path) and the problem when it
    cannot be read."""
    name = shown or path
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise error(f"{name}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{name}: cannot read: is a directory, not a {what}") from None
    except UnicodeDecodeError:
        raise error(f"{name}: not a text file: a {what} must be UTF-8") from None
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc.strerror}") from None
