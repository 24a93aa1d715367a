"""SQLite's commit mode (src/matrixgate/dbtuning.py): which connections it changes, and the
sync point the publish ledger relies on."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from matrixgate import dbtuning


@pytest.fixture(autouse=True)
def restore_mode():
    before = dict(dbtuning._state)
    yield
    dbtuning._state["mode"] = before["mode"]
    dbtuning.release_wal()


def synchronous_of(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        engine.dispose()


def test_a_file_database_gets_normal_commits(tmp_path):
    url = f"sqlite:///{tmp_path}/state.sqlite"
    assert dbtuning.configure(url, "normal") == "normal"
    assert synchronous_of(url) == 1                      # NORMAL


def test_full_keeps_sqlites_default(tmp_path):
    url = f"sqlite:///{tmp_path}/state.sqlite"
    assert dbtuning.configure(url, "full") == "full"
    assert synchronous_of(url) == 2                      # FULL


def test_other_databases_are_left_alone(tmp_path):
    assert dbtuning.configure("postgresql://gate@localhost/gate", "normal") is None
    assert dbtuning.configure("sqlite://", "normal") is None
    assert synchronous_of(f"sqlite:///{tmp_path}/other.sqlite") == 2   # nothing applied


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="GATE_SQLITE_SYNCHRONOUS='off'"):
        dbtuning.configure("sqlite:///state.sqlite", "off")


def fake_master(url: str):
    engine = sa.create_engine(url)
    return SimpleNamespace(db=SimpleNamespace(pool=SimpleNamespace(engine=engine)))


def test_sync_to_disk_fsyncs_the_wal_and_the_database(tmp_path, monkeypatch):
    path = tmp_path / "state.sqlite"
    url = f"sqlite:///{path}"
    dbtuning.configure(url, "normal")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode = wal")
        conn.exec_driver_sql("CREATE TABLE ledger (tag TEXT)")
        conn.exec_driver_sql("INSERT INTO ledger VALUES ('v1.0.0')")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    assert dbtuning.fsync_database_files(str(path)) == [f"{path}-wal", str(path)]
    assert synced == [f"{path}-wal", str(path)]
    master = fake_master(url)
    assert dbtuning.is_relaxed(master)
    dbtuning.configure(url, "full")
    assert not dbtuning.is_relaxed(master)                 # FULL already synced every commit
    assert not dbtuning.is_relaxed(fake_master("postgresql+psycopg://gate@localhost/gate"))
    engine.dispose()


def test_an_in_memory_database_needs_no_sync(tmp_path):
    dbtuning.configure(f"sqlite:///{tmp_path}/state.sqlite", "normal")
    assert not dbtuning.is_relaxed(fake_master("sqlite://"))


def buildbot_like_engine(url: str):
    """As Buildbot opens SQLite: a new connection per call (``NullPool``), WAL mode."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode = wal")
    return engine


def one_call(engine, sql: str):
    with engine.begin() as conn:
        result = conn.exec_driver_sql(sql)
        return result.fetchall() if result.returns_rows else None


def test_the_write_ahead_log_stays_open_between_calls_and_is_folded_in_at_exit(tmp_path):
    path = tmp_path / "state.sqlite"
    url = f"sqlite:///{path}"
    dbtuning.configure(url, "normal")
    engine = buildbot_like_engine(url)
    one_call(engine, "CREATE TABLE builds (id INTEGER)")
    one_call(engine, "INSERT INTO builds VALUES (1)")
    # every call's connection is closed, yet the log is still there: no checkpoint per call
    assert path.with_name("state.sqlite-wal").exists() and list(dbtuning._keepers) == [str(path)]
    # the keeper holds no transaction: others write and checkpoint as usual
    one_call(engine, "INSERT INTO builds VALUES (2)")
    [(busy, _, _)] = one_call(engine, "PRAGMA wal_checkpoint(TRUNCATE)")
    assert busy == 0
    dbtuning.release_wal()                                   # what exit does
    assert not path.with_name("state.sqlite-wal").exists()   # a stopped master leaves one file
    assert one_call(engine, "SELECT id FROM builds ORDER BY id") == [(1,), (2,)]
    engine.dispose()


def test_without_our_setting_sqlite_checkpoints_at_every_close(tmp_path):
    """The behaviour the keeper removes (and what a database it does not manage still does)."""
    path = tmp_path / "other.sqlite"
    dbtuning.configure("postgresql://gate@localhost/gate", "normal")       # not this file
    engine = buildbot_like_engine(f"sqlite:///{path}")
    one_call(engine, "CREATE TABLE t (x)")
    assert not path.with_name("other.sqlite-wal").exists() and dbtuning._keepers == {}
    engine.dispose()


def test_no_keeper_for_a_database_not_in_wal_mode(tmp_path):
    url = f"sqlite:///{tmp_path}/state.sqlite"
    dbtuning.configure(url, "normal")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    one_call(engine, "CREATE TABLE t (x)")                   # rollback journal: nothing to keep
    assert dbtuning._keepers == {}
    engine.dispose()
