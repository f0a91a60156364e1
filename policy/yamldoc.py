"""YAML reading that remembers where each key sits and refuses duplicate keys.

PyYAML's ``safe_load`` silently keeps the last of two equal keys, which would hide a
duplicated action; and pydantic errors only know paths, not lines. Composing the node tree
ourselves gives both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(slots=True)
class YamlDoc:
    """Parsed data plus the position of every mapping key and scalar value."""

    data: Any
    keys: dict[Path, Mark] = field(default_factory=dict)
    values: dict[Path, tuple[Mark, str | None]] = field(default_factory=dict)
    duplicates: list[tuple[Path, Mark]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def indent(self, line: int) -> int:
        """Leading spaces of a 1-based line of the source."""
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return len(text) - len(text.lstrip(" "))

    def mark(self, path: Path) -> Mark | None:
        """The best position for a path: its key, else its value, else the nearest parent."""
        while path:
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path][0]
            path = path[:-1]
        return None


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, mark: Mark | None) -> None:
        super().__init__(message)
        self.mark = mark


def parse(text: str) -> YamlDoc:
    """Parse one YAML document.

    Raises:
        YamlSyntaxError: the text is not valid YAML.
    """
    try:
        # The reader checks characters as it is built, so construction can fail too.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"{getattr(exc, 'reason', None) or exc}", None) from exc
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(data=None)
        doc = YamlDoc(data=loader.construct_document(node), lines=text.splitlines())
    except yaml.MarkedYAMLError as exc:
        pm = exc.problem_mark
        mark = Mark(pm.line + 1, pm.column + 1) if pm else None
        raise YamlSyntaxError(f"{exc.problem or exc.context or 'invalid YAML'}", mark) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), None) from exc
    finally:
        loader.dispose()
    _walk(node, (), doc)
    return doc


def _walk(node: yaml.Node, path: Path, doc: YamlDoc) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*path, key)
            mark = Mark(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                doc.duplicates.append((child, mark))
            seen.add(key)
            doc.keys.setdefault(child, mark)
            _walk(value_node, child, doc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            # A list item has no key: its own start is where a problem with the whole item points.
            start = item.start_mark
            doc.keys.setdefault((*path, i), Mark(start.line + 1, start.column + 1))
            _walk(item, (*path, i), doc)
    else:
        sm = node.start_mark
        doc.values[path] = (Mark(sm.line + 1, sm.column + 1), getattr(node, "style", None))
