"""Reading rows back from the target inside the migration transaction and checksumming them.

The checksum of a table is the sum (mod 2**64) of Python's hash of every row tuple, with values typed
as PostgreSQL returns them (bool, int, float, str, bytes, date). The reader processes compute the
same sum over the source rows converted to the target types; both sides run in one process tree
forked from the same interpreter, so they share the hash seed. Order does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.types.string import TextBinaryLoader, TextLoader

from migration.catalog import Table, qident
from migration.workers import MASK64, row_checksum

READ_ROWS = 20000


def prepare_connection(conn: psycopg.Connection) -> None:
    """JSON comes back as the exact text stored (what SQLite held), not as parsed Python objects."""
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, TextLoader)
        conn.adapters.register_loader(name, TextBinaryLoader)


def _select(table: Table, columns: list[str]) -> tuple[str, tuple[int, ...]]:
    cats = {c.name: c.category for c in table.columns}
    float_idx = tuple(i for i, c in enumerate(columns) if cats[c] == "float")
    return f"SELECT {', '.join(qident(c) for c in columns)} FROM {qident(table.name)}", float_idx


class Fetched:
    """A table's rows, already transferred into client memory (PostgreSQL is free for other work)."""

    def __init__(self, conn: psycopg.Connection, table: Table, columns: list[str]):
        sql, self.float_idx = _select(table, columns)
        self.table = table.name
        self.cursor = conn.cursor(binary=True)
        self.cursor.execute(sql)

    def checksum(self) -> tuple[int, int]:
        count = total = 0
        while True:
            rows = self.cursor.fetchmany(READ_ROWS)
            if not rows:
                break
            count += len(rows)
            total += row_checksum(rows, self.float_idx)
        return count, total & MASK64

    def close(self) -> None:
        self.cursor.close()


def table_checksum(conn: psycopg.Connection, table: Table, columns: list[str], where: str = "",
                   params: tuple = ()) -> tuple[int, int]:
    """(row count, checksum) of the target table's rows (optionally filtered), through a server-side cursor."""
    sql, float_idx = _select(table, columns)
    sql += where
    count = 0
    total = 0
    with conn.cursor(name=f"verify_{abs(hash(table.name))}", binary=True) as cur:
        cur.itersize = READ_ROWS
        cur.execute(sql, params or None)
        while True:
            rows = cur.fetchmany(READ_ROWS)
            if not rows:
                break
            count += len(rows)
            total += row_checksum(rows, float_idx)
    return count, total & MASK64


@dataclass
class TableCheck:
    table: str
    expected_rows: int
    target_rows: int
    expected_checksum: int
    target_checksum: int

    @property
    def ok(self) -> bool:
        return self.expected_rows == self.target_rows and self.expected_checksum == self.target_checksum

    def problem(self) -> str:
        """What differs, for the error message."""
        if self.expected_rows != self.target_rows:
            return f"{self.table}: source {self.expected_rows} rows, target {self.target_rows}"
        return f"{self.table}: content checksum differs"
