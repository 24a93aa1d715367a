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
