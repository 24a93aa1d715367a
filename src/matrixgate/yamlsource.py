"""YAML reading that remembers where every key came from.

Validation errors must point at the line to fix, so we keep PyYAML's node marks as a map
from key path (``('legs', 2, 'requires', 0)``) to line number, and report duplicate keys,
which plain ``yaml.safe_load`` silently merges.

Each file is parsed once: the node tree gives the line map, then the data is constructed
from that same tree (what ``yaml.safe_load`` does, without parsing the text a second time).

Which files load, and the messages, must not depend on how PyYAML was built, so PyYAML's
pure-Python ``SafeLoader`` is the reference.  libyaml (``CSafeLoader``, 8x faster: 20 ms
instead of 160 ms for a 500-leg matrix) is used only where it agrees with it:

* on text it cannot read differently: printable ASCII without ``?`` and tabs, and no
  block scalar header running into a comment.  libyaml accepts a tab inside a line, ``?``
  inside a flow collection and ``|-#``, which ``SafeLoader`` refuses; anything else
  (non-ASCII, control characters) is simply left to the reference;
* to accept a file, never to refuse one: on any libyaml error the file is parsed again by
  ``SafeLoader``, so syntax errors carry its message and line;
* on files without an empty value (an implicit null), which libyaml may place on the next
  line: such a file is parsed again by ``SafeLoader`` too.

``tests/unit/test_yamlsource_libyaml.py`` checks the two paths give the same data, lines and
messages on thousands of mutated matrix and worker files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[object, ...]

# libyaml's parser when this PyYAML was built with it (PyPI's wheels are), else None.
FAST_LOADER = getattr(yaml, "CSafeLoader", None)
# Left to the reference loader: anything but printable ASCII without "?" (and newlines),
# and a block scalar's header running into a comment ("|-#").
_NOT_FOR_LIBYAML = re.compile(r"[^\n\r\x20-\x3e\x40-\x7e]|[|>][-+0-9]*#")


def libyaml_agrees(text: str) -> bool:
    """True if libyaml reads ``text`` as ``SafeLoader`` does, as far as it accepts it."""
    return _NOT_FOR_LIBYAML.search(text) is None


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
    if FAST_LOADER is not None and libyaml_agrees(text):
        try:
            return _parse_with(FAST_LOADER, text, problems, fast=True)
        except (yaml.YAMLError, _LibyamlUnsure):
            problems.lines.clear()
            problems.messages.clear()   # the reference parser decides, and says why
    return _parse_with(yaml.SafeLoader, text, problems)


class _LibyamlUnsure(Exception):
    """An empty value (an implicit null): libyaml may place it on another line."""


def _is_empty(node: yaml.Node) -> bool:
    # plain style is None from SafeLoader, "" from libyaml
    return isinstance(node, yaml.ScalarNode) and not node.value and not node.style


def _parse_with(loader_class, text: str, problems: Problems, fast: bool = False) -> Any:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _map_lines(node, (), problems, fast)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _map_lines(node: yaml.Node, path: KeyPath, problems: Problems, fast: bool = False) -> None:
    if fast and _is_empty(node):
        raise _LibyamlUnsure
    problems.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as a key: construction refuses it (unhashable)
            if fast and _is_empty(key_node):
                raise _LibyamlUnsure
            key = key_node.value
            if key in seen:
                problems.lines[path + (key,)] = key_node.start_mark.line + 1
                line = key_node.start_mark.line + 1
                problems.messages.append(
                    f"{problems.source}:{line}: {format_path(path + (key,))}: duplicate key"
                )
            seen.add(key)
            problems.lines[path + (key,)] = key_node.start_mark.line + 1
            _map_lines(value_node, path + (key,), problems, fast)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_lines(item, path + (index,), problems, fast)
