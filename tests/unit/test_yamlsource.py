"""YAML with line numbers per key path (src/matrixgate/yamlsource.py)."""

from __future__ import annotations

import pytest

from matrixgate import yamlsource
from matrixgate.yamlsource import Problems, format_path


@pytest.mark.parametrize("path, text", [
    ((), "(top level)"),
    (("legs",), "legs"),
    (("legs", 2, "requires", 0), "legs[2].requires[0]"),
    (("legs", 0, "env", "A_B"), "legs[0].env.A_B"),
    ((3,), "[3]"),
])
def test_format_path(path, text):
    assert format_path(path) == text


def test_lines_per_key_path(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("version: 1\nlegs:\n  - name: a\n    requires:\n      - kvm\n      - qemu\n")
    data, problems = yamlsource.load(path, "m.yaml")
    assert data == {"version": 1, "legs": [{"name": "a", "requires": ["kvm", "qemu"]}]}
    assert not problems
    assert problems.lines[("version",)] == 1
    assert problems.lines[("legs", 0)] == 3
    assert problems.lines[("legs", 0, "requires", 1)] == 6


def test_missing_key_points_at_its_closest_parent():
    problems = Problems("m.yaml", lines={(): 1, ("legs",): 2, ("legs", 0): 3})
    problems.add(("legs", 0, "covers"), "missing")
    problems.add(("nothing", "here"), "at the top")
    assert problems.messages == ["m.yaml:3: legs[0].covers: missing", "m.yaml:1: nothing.here: at the top"]
    assert bool(problems)


def test_no_line_known():
    problems = Problems("m.yaml")
    problems.add(("x",), "why")
    assert problems.messages == ["m.yaml: x: why"]


def test_duplicate_keys_at_every_level(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n")
    data, problems = yamlsource.load(path, "d.yaml")
    assert problems.messages == ["d.yaml:4: b.c: duplicate key", "d.yaml:5: a: duplicate key"]


def test_syntax_error_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("a: 1\nb: [1, 2\nc: 3\n")
    data, problems = yamlsource.load(path, "s.yaml")
    assert data is None
    [message] = problems.messages
    assert message.startswith("s.yaml:3: YAML syntax error: ")


def test_unsafe_tags_are_refused(tmp_path):
    path = tmp_path / "u.yaml"
    path.write_text("a: !!python/object/apply:os.system ['echo pwned']\n")
    data, problems = yamlsource.load(path, "u.yaml")
    assert data is None
    assert problems.messages and problems.messages[0].startswith("u.yaml")


@pytest.mark.parametrize("libyaml", [False, True])
def test_each_file_is_parsed_once(tmp_path, monkeypatch, libyaml):
    """The line map and the data come from one parse (a second one doubled the load time)."""
    import yaml
    if libyaml and yamlsource.FAST_LOADER is None:
        pytest.skip("PyYAML built without libyaml")
    made = []

    def counting(base):
        class Counting(base):
            def __init__(self, stream):
                made.append(base.__name__)
                super().__init__(stream)
        return Counting

    monkeypatch.setattr(yamlsource.yaml, "SafeLoader", counting(yaml.SafeLoader))
    monkeypatch.setattr(yamlsource, "FAST_LOADER", counting(yaml.CSafeLoader) if libyaml else None)
    path = tmp_path / "m.yaml"
    path.write_text("version: 1\nlegs:\n  - name: a\n")
    data, problems = yamlsource.load(path, "m.yaml")
    assert data == {"version": 1, "legs": [{"name": "a"}]} and problems.lines[("legs", 0)] == 3
    assert made == (["CSafeLoader"] if libyaml else ["SafeLoader"])


def test_merge_keys_are_not_duplicates(tmp_path):
    """Constructing a merge (``<<: *base``) rewrites the node in place: lines are mapped first."""
    path = tmp_path / "m.yaml"
    path.write_text("base: &b {a: 1, c: 2}\nx:\n  <<: *b\n  a: 3\n")
    data, problems = yamlsource.load(path, "m.yaml")
    assert data == {"base": {"a": 1, "c": 2}, "x": {"a": 3, "c": 2}}
    assert not problems
    assert problems.lines[("x",)] == 2 and problems.lines[("x", "a")] == 4


def test_a_list_as_a_key_is_a_syntax_error(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text("a: 1\n? [x, y]\n: 2\na: 3\n")
    data, problems = yamlsource.load(path, "k.yaml")
    assert data is None
    assert problems.messages == ["k.yaml:2: YAML syntax error: found unhashable key"]   # no duplicate `a`


def test_no_problem_survives_a_syntax_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("a: 1\na: 2\nb: !!python/name:os.system ''\n")
    data, problems = yamlsource.load(path, "s.yaml")
    assert data is None and problems.lines == {}
    [message] = problems.messages
    assert message.startswith("s.yaml:3: YAML syntax error: could not determine a constructor")
