"""flaredb: a small table store on top of chainfire.

Each table's rows live under their own key namespace in chainfire
(``t/<table>/<primary key>``), the table catalog under ``c/<table>``. Rows
are JSON documents with a version that starts at 1 and grows by one on every
update; updates and deletes can be made conditional on the version the caller
read (optimistic concurrency), implemented with chainfire's compare-and-swap
on the key's modification revision.

Requests go to the current chainfire leader. When there is none (an election
is going on) the client waits for one, advancing simulated time, for at most
``retry_ticks`` ticks. A write whose leader was lost before a majority
acknowledged it raises ``CommitUnknown``: it may or may not survive, and only
the caller knows how to retry it safely.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import chainfire as cf


class FlareDBError(Exception):
    pass


class NoSuchTable(FlareDBError):
    pass


class TableExists(FlareDBError):
    pass


class RowExists(FlareDBError):
    pass


class RowNotFound(FlareDBError):
    pass


class VersionConflict(FlareDBError):
    def __init__(self, table, pk, expected, actual):
        super().__init__(f"{table}/{pk}: expected version {expected}, found {actual}")
        self.expected = expected
        self.actual = actual


class Unavailable(FlareDBError):
    """No chainfire leader could serve the request in time."""


class CommitUnknown(FlareDBError):
    """The write was cut off by a leader loss; it may or may not have committed."""


@dataclass(frozen=True)
class Row:
    table: str
    pk: str
    data: dict
    version: int
    revision: int  # chainfire revision of the last write


class FlareDB:
    def __init__(self, cluster: cf.Cluster, retry_ticks: int = 60):
        self.cluster = cluster
        self.retry_ticks = retry_ticks

    # -- plumbing ------------------------------------------------------------
    def _call(self, fn, *args):
        waited = 0
        while True:
            try:
                return fn(*args)
            except (cf.NoLeader, cf.NotLeader, cf.NoQuorum, cf.NodeDown) as exc:
                if waited >= self.retry_ticks:
                    raise Unavailable(f"chainfire unavailable after {waited} ticks: {exc}") from exc
                self.cluster.tick()
                waited += 1
            except cf.CommitTimeout as exc:
                raise CommitUnknown(str(exc)) from exc

    @staticmethod
    def _row_key(table, pk):
        return f"t/{table}/{pk}"

    @staticmethod
    def _to_row(table, kv: cf.KeyValue) -> Row:
        pk = kv.key[len(f"t/{table}/"):]
        return Row(table, pk, json.loads(kv.value), kv.version, kv.mod_rev)

    def _check_table(self, table):
        if self._call(self.cluster.get, f"c/{table}") is None:
            raise NoSuchTable(table)

    # -- tables --------------------------------------------------------------
    def create_table(self, table: str):
        if not table or "/" in table:
            raise ValueError(f"bad table name {table!r}")
        ok, _ = self._call(self.cluster.cas, f"c/{table}", 0, json.dumps({"name": table}))
        if not ok:
            raise TableExists(table)

    def tables(self) -> list[str]:
        return [kv.key[2:] for kv in self._call(self.cluster.range, "c/")]

    # -- rows ----------------------------------------------------------------
    def insert(self, table: str, pk: str, data: dict) -> Row:
        self._check_table(table)
        ok, rev = self._call(self.cluster.cas, self._row_key(table, pk), 0, json.dumps(data, sort_keys=True))
        if not ok:
            raise RowExists(f"{table}/{pk}")
        return Row(table, pk, data, 1, rev)

    def get(self, table: str, pk: str) -> Row | None:
        kv = self._call(self.cluster.get, self._row_key(table, pk))
        return self._to_row(table, kv) if kv else None

    def update(self, table: str, pk: str, data: dict, expected_version: int | None = None) -> Row:
        """Replace a row's data. With expected_version, fail with VersionConflict
        unless the stored row still has that version."""
        key = self._row_key(table, pk)
        encoded = json.dumps(data, sort_keys=True)
        while True:
            kv = self._call(self.cluster.get, key)
            if kv is None:
                raise RowNotFound(f"{table}/{pk}")
            if expected_version is not None and kv.version != expected_version:
                raise VersionConflict(table, pk, expected_version, kv.version)
            ok, rev = self._call(self.cluster.cas, key, kv.mod_rev, encoded)
            if ok:
                return Row(table, pk, data, kv.version + 1, rev)
            # somebody wrote in between: re-read (and re-check the version)

    def delete(self, table: str, pk: str, expected_version: int | None = None) -> None:
        key = self._row_key(table, pk)
        while True:
            kv = self._call(self.cluster.get, key)
            if kv is None:
                raise RowNotFound(f"{table}/{pk}")
            if expected_version is not None and kv.version != expected_version:
                raise VersionConflict(table, pk, expected_version, kv.version)
            ok, _ = self._call(self.cluster.cas, key, kv.mod_rev, None)
            if ok:
                return

    def scan(self, table: str, prefix: str = "") -> list[Row]:
        self._check_table(table)
        return [self._to_row(table, kv) for kv in self._call(self.cluster.range, self._row_key(table, prefix))]
