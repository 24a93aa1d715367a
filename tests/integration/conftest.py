"""Fixtures that start real masters (``buildbot start``) on loopback for one test each.

Databases: every master gets SQLite unless ``MATRIXGATE_TEST_DB=postgresql``, which gives
each master a fresh database on a private PostgreSQL server (started once per session,
see ``postgres.py``).  Tests marked ``both_dbs`` run on both, whatever the variable says
(their PostgreSQL runs carry the ``postgresql`` mark: ``-m "not postgresql"`` skips them).
Without PostgreSQL installed, the PostgreSQL runs skip and say why.
"""

from __future__ import annotations

import os

import pytest

from harness import GateMaster, PlatformRepo, cleanup
from postgres import PrivatePostgres, unavailable_reason

DATABASES = ("sqlite", "postgresql")


def default_db() -> str:
    value = os.environ.get("MATRIXGATE_TEST_DB", "").strip().lower() or "sqlite"
    value = {"postgres": "postgresql", "pg": "postgresql"}.get(value, value)
    if value not in DATABASES:
        raise pytest.UsageError(f"MATRIXGATE_TEST_DB={value!r}: use sqlite or postgresql")
    return value


def pytest_configure(config):
    config.addinivalue_line("markers", "both_dbs: run on SQLite and on a private PostgreSQL")
    config.addinivalue_line("markers", "postgresql: this run uses PostgreSQL")


def _db_param(kind: str):
    return pytest.param(kind, marks=pytest.mark.postgresql) if kind == "postgresql" else kind


def pytest_generate_tests(metafunc):
    """Every test that starts a master runs on the default database (ids ``[sqlite]`` or
    ``[postgresql]``); ``both_dbs`` tests on both.  Module scope, so a module's shared master
    is started once per database."""
    if "db" not in metafunc.fixturenames:
        return
    kinds = list(DATABASES) if metafunc.definition.get_closest_marker("both_dbs") else [default_db()]
    metafunc.parametrize("db", [_db_param(k) for k in kinds], indirect=True, scope="module")


@pytest.fixture(scope="session")
def pg_server():
    """The session's private PostgreSQL server (started on first use)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = PrivatePostgres("matrixgate-tests")
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def db(request) -> str:
    """``sqlite`` or ``postgresql``: the database of the masters this test starts."""
    kind = request.param
    if kind == "postgresql":
        reason = unavailable_reason()
        if reason:
            pytest.skip(f"PostgreSQL run skipped: {reason}")
    return kind


@pytest.fixture(scope="module")
def new_db_url(request, db):
    """Factory: a database URL for one new master (None = Buildbot's default SQLite)."""
    if db == "sqlite":
        return lambda: None
    return request.getfixturevalue("pg_server").create_database


@pytest.fixture
def repo(tmp_path):
    return PlatformRepo(tmp_path)


@pytest.fixture
def make_master(tmp_path, repo, new_db_url):
    """Factory: ``make_master(workers_yaml=..., env=...)`` -> a started GateMaster."""
    started = []

    def make(**kwargs) -> GateMaster:
        if "db_url" not in kwargs:
            kwargs["db_url"] = new_db_url()
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
def shared_gate(tmp_path_factory, new_db_url):
    """One master for a whole module (starting one costs seconds): (master, repo)."""
    root = tmp_path_factory.mktemp("gate")
    repo = PlatformRepo(root)
    master = GateMaster(root, repo, db_url=new_db_url())
    master.start()
    yield master, repo
    cleanup(master)
