"""SQLite commits without an fsync each (WAL, ``synchronous=NORMAL``), and a sync point for
the writes that must outlive a power cut.

Buildbot records every step, log, URL and property change as a transaction of its own.
With SQLite's default ``synchronous=FULL`` each commit waits for an fsync, a few hundred
per gate, one after another on SQLite's single database thread: 0.22 ms each on this
machine's disk (0.02 ms with NORMAL), but 1-10 ms on network block storage, where it
becomes most of a gate's bookkeeping time.  Buildbot already runs SQLite in WAL mode; with ``synchronous=NORMAL``
WAL commits are still atomic and survive a crash or kill of the master process.  Only an
OS crash or power cut may roll back the newest commits, and then always as a consistent
prefix: the master comes back as if it had stopped a moment earlier, the case the
restart fault test covers (unfinished builds are re-run, a lost leg never passes).

The one record that must survive even a power cut is the publish ledger (publish a tag
once): ``sync_to_disk`` after it flushes everything committed so far to disk.

``GATE_SQLITE_SYNCHRONOUS=full`` keeps SQLite's default.  PostgreSQL is untouched (its
``synchronous_commit`` is the server's business).

**The write-ahead log stays open.**  Buildbot opens a new SQLite connection for every
database call (SQLAlchemy's ``NullPool``) and closes it after.  When the last connection
to a WAL database closes, SQLite checkpoints the log into the database file, fsyncs, and
deletes the ``-wal`` and ``-shm`` files; the next call creates them again.  So with nothing
else holding the database open, every call paid for a checkpoint: 1.39 ms per call against
0.22 ms with the log kept open (``bench/sqlite_calls.py``, ``synchronous=NORMAL``).  One idle connection per
database file (:func:`_keep_wal`) keeps the log open for the life of the process; SQLite
then checkpoints every 1000 pages, as designed.  It never holds a transaction, so it never
blocks a writer or a checkpoint, and it is closed at exit, which checkpoints the log into
the database file: a stopped master leaves only ``state.sqlite``, as before.
"""

from __future__ import annotations

import atexit
import os
import sys

from sqlalchemy import event
from sqlalchemy.pool import Pool
from twisted.internet import defer, threads

MODES = ("normal", "full")

_state = {"mode": None, "listening": False}
#: database file -> the idle connection that keeps its write-ahead log open
_keepers: dict = {}


def _on_connect(dbapi_connection, connection_record) -> None:
    mode = _state["mode"]
    # sqlite3 is not imported here for this: a master on PostgreSQL never loads it.
    sqlite3 = sys.modules.get("sqlite3")
    if mode and sqlite3 is not None and isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute(f"PRAGMA synchronous = {mode.upper()}")
        _keep_wal(dbapi_connection, sqlite3)


def _keep_wal(connection, sqlite3) -> None:
    """Holds one idle connection open on ``connection``'s database file, once it is in WAL
    mode (Buildbot switches it when it first opens the database)."""
    path = connection.execute("PRAGMA database_list").fetchone()[2]
    if not path or path in _keepers:
        return
    if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        return
    keeper = sqlite3.connect(path, check_same_thread=False)
    # Only a connection that has read the database maps the log's index; reading ends at
    # once (no transaction stays open), so the keeper never blocks a writer or a checkpoint.
    keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()
    if not _keepers:
        atexit.register(release_wal)
    _keepers[path] = keeper


def release_wal() -> None:
    """Closes the keepers: the last close checkpoints each log into its database file."""
    while _keepers:
        _, keeper = _keepers.popitem()
        try:
            keeper.close()
        except Exception:  # noqa: BLE001 - at exit, a keeper that cannot close leaves a WAL SQLite replays
            pass


def configure(db_url: str, mode: str) -> str | None:
    """Applies ``mode`` to every SQLite connection this process opens from now on.

    Called while the config is read, i.e. before Buildbot creates its database engine.
    Returns the mode in effect, or None for a database that is not an SQLite file."""
    if mode not in MODES:
        raise ValueError(f"GATE_SQLITE_SYNCHRONOUS={mode!r}: expected one of {', '.join(MODES)}")
    if not db_url.startswith("sqlite") or ":memory:" in db_url or db_url.rstrip("/") == "sqlite:":
        _state["mode"] = None
        return None
    _state["mode"] = mode
    if not _state["listening"]:
        event.listen(Pool, "connect", _on_connect)
        _state["listening"] = True
    return mode


def is_relaxed(master) -> bool:
    """Does this master commit to an SQLite file without an fsync per commit?"""
    engine = getattr(getattr(master.db, "pool", None), "engine", None)
    return (_state["mode"] == "normal" and engine is not None and engine.dialect.name == "sqlite"
            and engine.url.database not in (None, "", ":memory:"))


def sync_to_disk(master):
    """Makes every commit so far durable against a power cut (no-op unless relaxed).

    An fsync of the WAL file (and of the database file, which a checkpoint may have moved
    commits into) is what ``synchronous=FULL`` would have done at the commit itself."""
    if not is_relaxed(master):
        return defer.succeed(None)
    return threads.deferToThread(fsync_database_files, master.db.pool.engine.url.database)


def fsync_database_files(path: str) -> list[str]:
    synced = []
    for name in (f"{path}-wal", path):
        try:
            fd = os.open(name, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
            synced.append(name)
        finally:
            os.close(fd)
    return synced
