"""Asking the gated repository about tags, from the master (no worker needed)."""

from __future__ import annotations

import os
import shutil

from twisted.internet import defer, utils

from .tags import parse_ls_remote, tag_ref


class GitError(RuntimeError):
    pass


@defer.inlineCallbacks
def resolve_tag(repo_url: str, tag: str, env: dict | None = None):
    """The commit ``tag`` points at in ``repo_url`` (annotated tags peeled), or None."""
    git = shutil.which("git")
    if git is None:
        raise GitError("git is not installed on the master")
    out, err, code = yield utils.getProcessOutputAndValue(
        git, ["ls-remote", "--tags", "--", repo_url, tag_ref(tag), tag_ref(tag) + "^{}"],
        env=dict(os.environ if env is None else env))
    if code != 0:
        raise GitError(f"git ls-remote {repo_url} failed (exit {code}): "
                       f"{err.decode(errors='replace').strip()}")
    return parse_ls_remote(out.decode(errors="replace"), tag)
