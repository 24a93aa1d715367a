"""Tags as they reach the gate from pollers and hooks (src/matrixgate/tags.py)."""

from __future__ import annotations

import pytest

from matrixgate.tags import is_valid_tag_name, parse_ls_remote, tag_of, tag_ref


@pytest.mark.parametrize("branch, category, tag", [
    ("refs/tags/v1.2.3", None, "v1.2.3"),            # GitPoller, base hook, our signed hook
    ("refs/tags/v1.2.3", "push", "v1.2.3"),          # a ref name wins over the category
    ("v1", "tag", "v1"),                             # GitHub
    ("v1.0.0", "tags", "v1.0.0"),
    ("v2.0", "tag_push", "v2.0"),                    # GitLab
    ("refs/heads/main", None, None),                 # branch pushes are no tags
    ("main", None, None),
    ("main", "push", None),
    ("refs/heads/v1", "tag", None),                  # a branch ref is never a tag
    ("refs/tags/", None, None),
    ("", "tag", None),
    (None, "tag", None),
])
def test_tag_of(branch, category, tag):
    assert tag_of(branch, category) == tag


def test_tag_ref():
    assert tag_ref("v1.2.3") == "refs/tags/v1.2.3"


A = "a" * 40
B = "b" * 40
C = "c" * 40


def test_parse_ls_remote_lightweight_tag():
    assert parse_ls_remote(f"{A}\trefs/tags/v1\n", "v1") == A


def test_parse_ls_remote_peels_annotated_tags():
    # The annotated tag object (A) comes first, the commit it names (B) under ^{}.
    output = f"{A}\trefs/tags/v1\n{B}\trefs/tags/v1^{{}}\n"
    assert parse_ls_remote(output, "v1") == B
    # Order does not matter.
    assert parse_ls_remote(f"{B}\trefs/tags/v1^{{}}\n{A}\trefs/tags/v1\n", "v1") == B


def test_parse_ls_remote_matches_the_exact_tag():
    output = f"{A}\trefs/tags/v1.0\n{B}\trefs/tags/v1\n{C}\trefs/tags/v1.0^{{}}\n"
    assert parse_ls_remote(output, "v1") == B
    assert parse_ls_remote(output, "v1.0") == C
    assert parse_ls_remote(output, "v2") is None
    assert parse_ls_remote("", "v1") is None
    assert parse_ls_remote("warning: something odd\n", "v1") is None


@pytest.mark.parametrize("tag", ["v1", "v1.2.3", "1.0", "v1.0.0-rc.1", "release_2024+build", "a" * 100])
def test_valid_tag_names(tag):
    assert is_valid_tag_name(tag)


@pytest.mark.parametrize("tag", [
    "", "-v1", ".v1", "v1..2", "v1.", "v1.lock", "v 1", "v1;rm -rf /", "v1/2", "$(id)", "v1^{}",
    "a" * 101,
])
def test_invalid_tag_names(tag):
    assert not is_valid_tag_name(tag)


def test_trailing_newline_is_not_a_valid_tag_name():
    assert not is_valid_tag_name("v1\n")
