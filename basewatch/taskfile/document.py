"""A rendered task file parsed as YAML (safe: no tags that build objects), each mapping and
list remembering the source line of its entries, so that every later error names the line a
person wrote."""
from __future__ import annotations

from collections.abc import Callable

import yaml


class Located(dict):
    """A YAML mapping: `line` where it starts, `lines[key]` where each key is written."""

    line: int = 0
    lines: dict

    def line_of(self, key: object) -> int:
        return self.lines.get(key, self.line)


class LocatedList(list):
    """A YAML list: `line` where it starts, `lines[i]` where each item is written."""

    line: int = 0
    lines: list

    def line_of(self, index: int) -> int:
        return self.lines[index] if 0 <= index < len(self.lines) else self.line


class DocumentError(Exception):
    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.message, self.line = message, line


class _Loader(yaml.SafeLoader):
    source_line: Callable[[int], int] = staticmethod(lambda line: line)

    def _line(self, node: yaml.Node) -> int:
        return self.source_line(node.start_mark.line + 1)

    def construct_located_mapping(self, node: yaml.MappingNode) -> Located:
        self.flatten_mapping(node)
        mapping = Located()
        mapping.line, mapping.lines = self._line(node), {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise DocumentError("a mapping key must be a single value",
                                    self._line(key_node)) from None
            if key in mapping:
                raise DocumentError(f"`{key}` is given twice in the same mapping (first at "
                                    f"line {mapping.lines[key]})", self._line(key_node))
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.lines[key] = self._line(key_node)
        return mapping

    def construct_located_sequence(self, node: yaml.SequenceNode) -> LocatedList:
        items = LocatedList(self.construct_object(child, deep=True) for child in node.value)
        items.line = self._line(node)
        items.lines = [self._line(child) for child in node.value]
        return items


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                        _Loader.construct_located_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
                        _Loader.construct_located_sequence)


def parse(text: str, source_line: Callable[[int], int]) -> object:
    """The YAML document in `text`; `source_line` maps a line of `text` to the file's line.
    A syntax error is a DocumentError with the file's line."""
    loader = _Loader(text)
    loader.source_line = source_line
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = source_line(mark.line + 1) if mark else None
        problem = exc.problem or exc.context or "not valid YAML"
        raise DocumentError(f"not valid YAML: {problem}", line) from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"not valid YAML: {exc}", None) from None
    except RecursionError:
        raise DocumentError("not read: nested too deeply", None) from None
    finally:
        loader.dispose()
