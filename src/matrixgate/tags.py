"""Tags as they reach Matrix Gate, whichever way a team hosts git.

The GitPoller and the base hook give ``branch='refs/tags/v1.2.3'``; GitHub gives
``branch='v1.2.3'`` with ``category='tag'``; GitLab ``category='tag_push'``.
"""

from __future__ import annotations

import re

TAG_CATEGORIES = ("tag", "tag_push", "tags")
#: What git accepts in a tag name, minus anything a shell or URL would mangle.
TAG_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
HEX_RE = re.compile(r"^[0-9a-f]{7,64}$")


def tag_of(branch: str | None, category: str | None = None) -> str | None:
    """The tag a change announces, or None for branch pushes."""
    if not branch:
        return None
    if branch.startswith("refs/tags/"):
        return branch[len("refs/tags/"):] or None
    if category in TAG_CATEGORIES and not branch.startswith("refs/"):
        return branch
    return None


def tag_ref(tag: str) -> str:
    return f"refs/tags/{tag}"


def is_valid_tag_name(tag: str) -> bool:
    return bool(TAG_NAME_RE.fullmatch(tag)) and ".." not in tag and not tag.endswith((".", ".lock"))


def parse_ls_remote(output: str, tag: str) -> str | None:
    """The commit a tag points at from ``git ls-remote`` output (annotated tags peeled)."""
    direct = peeled = None
    for line in output.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        sha, ref = parts
        if ref == f"refs/tags/{tag}^{{}}":
            peeled = sha
        elif ref == f"refs/tags/{tag}":
            direct = sha
    return peeled or direct
