"""Reading a file a person pointed us at, with errors that say what went wrong in one line."""
from __future__ import annotations

from pathlib import Path

from basewatch.errors import BasewatchError


def read_text_file(path: Path, what: str, error: type[BasewatchError],
                   encoding: str = "utf-8") -> str:
    """The file's text; `error` naming the path and the problem when it cannot be read."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: cannot read: is a directory, not a {what}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file: a {what} must be UTF-8") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
