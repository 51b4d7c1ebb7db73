"""Text holding a NUL character: SQLite keeps it, PostgreSQL's text types cannot store it.

MLflow (1.x to 3.17) accepts a NUL in a param, a tag or a name on SQLite, and no lossless mapping
into PostgreSQL text exists. So by default the migration refuses such a source, naming table, column,
count and the first row's key. `--replace-nul` replaces every NUL with U+FFFD, the Unicode replacement
character, in the tool's private copy (never in the source itself) and reports the rows per column. The rest
of each value survives. Every column gets the same mapping, so a key and the foreign keys naming it
stay equal.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from migration.catalog import qident
from migration.errors import MigrationError
from migration.sqlite import connect_readonly, table_names

REPLACEMENT = "\ufffd"


def _holds_nul(column: str) -> str:
    # as a blob: SQLite's text functions stop at a NUL
    return f"typeof({qident(column)}) = 'text' AND instr(CAST({qident(column)} AS BLOB), X'00') > 0"


def find(path: Path, table: str, columns: list[str]) -> list[str]:
    """Per column of `table` holding a NUL: how many rows and the key of the first one."""
    conn = connect_readonly(path)
    try:
        qname = qident(table)
        key = [r[1] for r in sorted(conn.execute(f"PRAGMA table_info({qname})"), key=lambda r: r[5])
               if r[5]] or ["rowid"]
        found = []
        for column in columns:
            where = _holds_nul(column)
            n = conn.execute(f"SELECT count(*) FROM {qname} WHERE {where}").fetchone()[0]
            if n:
                first = conn.execute(f"SELECT {', '.join(qident(k) if k != 'rowid' else k for k in key)} "
                                     f"FROM {qname} WHERE {where} LIMIT 1").fetchone()
                found.append(f"{table}.{column}: {n} row{'s' if n > 1 else ''}, first "
                             + ", ".join(f"{k}={v!r}" for k, v in zip(key, first)))
        return found
    finally:
        conn.close()


def _scan(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """Rows holding a NUL per (table, column), one pass over each table."""
    found: dict[tuple[str, str], int] = {}
    for table in [t for t in table_names(conn) if t != "alembic_version"]:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({qident(table)})")]
        counts = conn.execute("SELECT " + ", ".join(f"coalesce(sum({_holds_nul(c)}), 0)" for c in columns)
                              + f" FROM {qident(table)}").fetchone()
        found.update(((table, column), n) for column, n in zip(columns, counts) if n)
    return found


def scan(path: Path) -> dict[str, int]:
    """Rows holding a NUL per `table.column` of the working copy at `path` (nothing changed)."""
    conn = connect_readonly(path)
    try:
        return {f"{t}.{c}": n for (t, c), n in _scan(conn).items()}
    finally:
        conn.close()


def describe(found: dict[str, int]) -> str:
    return ", ".join(f"{column} ({n} row{'s' if n > 1 else ''})" for column, n in found.items())


def replace(path: Path) -> dict[str, int]:
    """Replace every NUL in the text of the working copy at `path`; rows changed per `table.column`."""
    conn = sqlite3.connect(path)
    try:
        found = _scan(conn)
        for table, column in found:
            _replace_column(conn, table, column)
        conn.commit()
    finally:
        conn.close()
    return {f"{t}.{c}": n for (t, c), n in found.items()}


def _replace_column(conn: sqlite3.Connection, table: str, column: str) -> None:
    qname, qcol = qident(table), qident(column)
    try:
        rows = conn.execute(f"SELECT rowid, {qcol} FROM {qname} WHERE {_holds_nul(column)}").fetchall()
    except sqlite3.OperationalError as exc:  # a WITHOUT ROWID table: MLflow creates none
        raise MigrationError(f"cannot replace the NUL characters in {table}.{column}: {exc}") from exc
    try:
        conn.executemany(f"UPDATE {qname} SET {qcol} = ? WHERE rowid = ?",
                         [(value.replace("\x00", REPLACEMENT), rowid) for rowid, value in rows])
    except sqlite3.IntegrityError as exc:
        raise MigrationError(f"replacing the NUL characters in {table}.{column} would make two rows equal "
                             f"({exc}): change those values in a copy of the source by hand") from exc
