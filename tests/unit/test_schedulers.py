"""Change sources and schedulers (src/matrixgate/schedulers.py); the scheduler list itself is
checked with the whole config in test_config.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from buildbot.changes.gitpoller import GitPoller

from matrixgate import loader, schedulers, settings

REPO = Path(__file__).resolve().parents[2]


def test_git_poller_watches_tags_and_branches(tmp_path):
    cfg = settings.from_env(tmp_path, {"GATE_REPO_URL": "/srv/git/p.git", "GATE_POLL_INTERVAL": "30"})
    [poller] = schedulers.build_change_sources(cfg)
    assert isinstance(poller, GitPoller)
    assert poller._config_args == ("/srv/git/p.git",)
    kwargs = poller._config_kwargs
    # Without it a tag on an already-seen commit produces no change.
    assert kwargs["buildPushesWithNoCommits"] is True
    assert kwargs["pollInterval"] == 30.0 and kwargs["pollAtLaunch"] is True
    assert kwargs["workdir"] == schedulers.GITPOLLER_WORKDIR
    watched = kwargs["branches"]
    assert watched("refs/tags/v1.2.3") and watched("refs/heads/main")
    assert not watched("refs/pull/1/head") and not watched("refs/notes/commits")


def test_no_poller_without_repository_or_interval(tmp_path):
    assert schedulers.build_change_sources(settings.from_env(tmp_path, {})) == []
    no_poll = settings.from_env(tmp_path, {"GATE_REPO_URL": "/srv/git/p.git", "GATE_POLL_INTERVAL": "0"})
    assert schedulers.build_change_sources(no_poll) == []


def test_release_tag_filter_every_tag_style():
    matrix = loader.load_matrix(REPO / "matrix" / "matrix.yaml")
    accepts = schedulers.release_tag_filter(matrix).filter_fn
    change = lambda branch, category=None: SimpleNamespace(branch=branch, category=category)  # noqa: E731
    assert accepts(change("refs/tags/v1.2.3"))                   # GitPoller, base and signed hooks
    assert accepts(change("v1.2.3", "tag"))                      # GitHub
    assert accepts(change("v1.2.3", "tag_push"))                 # GitLab
    assert not accepts(change("v1.2.3"))                         # a branch called v1.2.3
    assert not accepts(change("refs/heads/v1.2.3"))
    assert not accepts(change("refs/tags/nightly"))              # not a release tag
    assert not accepts(change(None))
