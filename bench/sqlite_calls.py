#!/usr/bin/env python3
"""The cost of one Buildbot database call on SQLite, with and without the kept-open WAL.

Buildbot opens a new SQLite connection for every database call (SQLAlchemy's ``NullPool``)
and closes it afterwards.  Closing the last connection to a WAL database checkpoints the
log into the database file and deletes it.  ``matrixgate.dbtuning`` keeps one idle
connection per database file open, so that the log survives between calls.

Each call here is what most of Buildbot's are: open a connection (with Buildbot's and
Matrix Gate's connect-time pragmas), read a row, write a row, commit, close.  Figures are
per call, for ``synchronous`` FULL (SQLite's default) and NORMAL (Matrix Gate's default),
both ways in one run, taking turns.  Prints its figures; asserts nothing.

    .venv/bin/python bench/sqlite_calls.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchlib as bl  # noqa: E402

from matrixgate import dbtuning  # noqa: E402


def engine_for(path: Path, mode: str, keep: bool):
    if keep:
        dbtuning.configure(f"sqlite:///{path}", mode)
    else:
        dbtuning.configure("postgresql://not-this-file/", mode)     # leaves SQLite alone
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
    if not keep:
        @sa.event.listens_for(engine, "connect")
        def synchronous(dbapi_connection, record):
            dbapi_connection.execute(f"PRAGMA synchronous = {mode.upper()}")
    return engine


def per_call_ms(path: Path, mode: str, keep: bool, calls: int) -> float:
    engine = engine_for(path, mode, keep)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode = wal")
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS steps (id INTEGER PRIMARY KEY, state TEXT)")
    start = time.perf_counter()
    for i in range(calls):
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT state FROM steps WHERE id = ?", (i,)).fetchall()
            conn.exec_driver_sql("INSERT INTO steps (state) VALUES (?)", (f"step {i}",))
    took = time.perf_counter() - start
    dbtuning.release_wal()
    engine.dispose()
    return took / calls * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"sqlite_calls: {bl.machine()}; {args.calls} calls x {args.rounds} rounds per figure")
    root = Path(tempfile.mkdtemp(prefix="bench-sqlite-"))
    figures = {(mode, keep): [] for mode in ("full", "normal") for keep in (False, True)}
    for rnd in range(args.rounds):
        order = list(figures) if rnd % 2 == 0 else list(figures)[::-1]
        for mode, keep in order:
            path = root / f"{mode}-{keep}-{rnd}.sqlite"
            figures[(mode, keep)].append(per_call_ms(path, mode, keep, args.calls))
    rows = []
    for mode in ("full", "normal"):
        closed = statistics.median(figures[(mode, False)])
        kept = statistics.median(figures[(mode, True)])
        rows.append([mode.upper(), f"{closed:.3f} ms", f"{kept:.3f} ms", f"{closed / kept:.1f}x"])
    print("\nmedian cost of one database call (open, read, write, commit, close)")
    print(bl.table(["synchronous", "log closed with each call (Buildbot)", "log kept open (Matrix Gate)",
                    "ratio"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
