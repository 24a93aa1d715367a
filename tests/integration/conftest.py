"""Fixtures that start real masters (``buildbot start``) on loopback for one test each."""

from __future__ import annotations

import pytest

from harness import GateMaster, PlatformRepo, cleanup


@pytest.fixture
def repo(tmp_path):
    return PlatformRepo(tmp_path)


@pytest.fixture
def make_master(tmp_path, repo):
    """Factory: ``make_master(workers_yaml=..., env=...)`` -> a started GateMaster."""
    started = []

    def make(**kwargs) -> GateMaster:
        master = GateMaster(tmp_path, repo, **kwargs)
        started.append(master)
        master.start()
        return master

    yield make
    for master in started:
        cleanup(master)


@pytest.fixture
def master(make_master):
    """The embedded default: local workers from workers/workers.yaml."""
    return make_master()


@pytest.fixture(scope="module")
def shared_gate(tmp_path_factory):
    """One master for a whole module (starting one costs seconds): (master, repo)."""
    root = tmp_path_factory.mktemp("gate")
    repo = PlatformRepo(root)
    master = GateMaster(root, repo)
    master.start()
    yield master, repo
    cleanup(master)
