"""YAML reading that remembers where every key came from.

Validation errors must point at the line to fix, so we keep PyYAML's node marks as a map
from key path (``('legs', 2, 'requires', 0)``) to line number, and report duplicate keys,
which plain ``yaml.safe_load`` silently merges.

Each file is parsed once: the node tree gives the line map, then the data is constructed
from that same tree (what ``yaml.safe_load`` does, without parsing the text a second time).

The parser is PyYAML's pure-Python ``SafeLoader`` even where libyaml is there: libyaml
(``CSafeLoader``) is about 6x faster, but it accepts files ``SafeLoader`` refuses (a tab
before a comment, ``?`` inside a flow-style value), so which files load, and the messages,
would depend on how PyYAML was built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[object, ...]


def format_path(path: KeyPath) -> str:
    """``('legs', 2, 'requires', 0)`` -> ``legs[2].requires[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


@dataclass
class Problems:
    """Every problem found in one file, so all of them are reported at once."""

    source: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def add(self, path: KeyPath, message: str) -> None:
        line = self._line_of(path)
        where = f"{self.source}:{line}" if line else self.source
        self.messages.append(f"{where}: {format_path(path)}: {message}")

    def _line_of(self, path: KeyPath) -> int | None:
        # A missing key has no line of its own: point at its closest existing parent.
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line:
                return line
        return None

    def __bool__(self) -> bool:
        return bool(self.messages)


class YamlSyntaxError(ValueError):
    pass


def load(path: Path, display: str) -> tuple[Any, Problems]:
    """Parse ``path``; returns the data and a ``Problems`` holding its line map."""
    problems = Problems(display)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.messages.append(f"{display}: cannot read: {exc.strerror or exc}")
        return None, problems
    try:
        data = _parse(text, problems)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        return None, Problems(display, messages=[f"{display}{line}: YAML syntax error: {exc.problem or exc}"])
    except yaml.YAMLError as exc:
        return None, Problems(display, messages=[f"{display}: YAML error: {exc}"])
    return data, problems


def _parse(text: str, problems: Problems) -> Any:
    """``yaml.safe_load(text)``, mapping the node tree's lines into ``problems`` on the way.

    The line map is taken before construction: constructing a mapping with a merge key
    (``<<: *base``) rewrites the node's pairs in place, which would read as duplicates.
    A problem is only kept if the whole file parses (the caller starts afresh on error)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _map_lines(node, (), problems)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _map_lines(node: yaml.Node, path: KeyPath, problems: Problems) -> None:
    problems.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as a key: construction refuses it (unhashable)
            key = key_node.value
            if key in seen:
                problems.lines[path + (key,)] = key_node.start_mark.line + 1
                line = key_node.start_mark.line + 1
                problems.messages.append(
                    f"{problems.source}:{line}: {format_path(path + (key,))}: duplicate key"
                )
            seen.add(key)
            problems.lines[path + (key,)] = key_node.start_mark.line + 1
            _map_lines(value_node, path + (key,), problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_lines(item, path + (index,), problems)
