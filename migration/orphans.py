"""Rows whose parent row is missing: SQLite kept them, PostgreSQL refuses them.

MLflow never turns SQLite's foreign keys on, so a source can hold, say, latest_metrics of a run that
was deleted by hand or by an old `mlflow gc`. MLflow's PostgreSQL schema enforces the same foreign
keys. By default the migration fails on them, naming each table and its count; `--drop-orphans`
deletes them from the tool's private copy of the source (never the source itself) before the copy,
repeating until none are left (dropping an orphaned run orphans its metrics), and reports the count
per table. SQLite's own `PRAGMA foreign_key_check` finds them, by the foreign keys the source
declares: the same as the target's, since the copy is at the target's Alembic revision.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from migration.catalog import qident
from migration.errors import MigrationError


def find(path: Path) -> dict[str, tuple[int, list[str]]]:
    """table -> (orphan rows, the parent tables they miss)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = conn.execute("PRAGMA foreign_key_check").fetchall()
    finally:
        conn.close()
    rows: dict[str, set] = {}
    parents: dict[str, set[str]] = {}
    for n, (table, rowid, parent, _fk) in enumerate(found):
        rows.setdefault(table, set()).add(rowid if rowid is not None else ("row", n))
        parents.setdefault(table, set()).add(parent)
    return {t: (len(ids), sorted(parents[t])) for t, ids in sorted(rows.items())}


def describe(found: dict[str, tuple[int, list[str]]]) -> str:
    return ", ".join(f"{t}: {n} row{'s' if n > 1 else ''} without their {'/'.join(p)} row"
                     for t, (n, p) in found.items())


def drop(path: Path) -> dict[str, int]:
    """Delete the orphans from the working copy at `path`, until none are left; rows deleted per table."""
    dropped: Counter[str] = Counter()
    conn = sqlite3.connect(path)
    try:
        while found := conn.execute("PRAGMA foreign_key_check").fetchall():
            ids: dict[str, set[int]] = {}
            for table, rowid, _parent, _fk in found:
                if rowid is None:
                    raise MigrationError(f"{table} holds rows without their parent row, and as a WITHOUT ROWID "
                                         "table they cannot be told apart to drop them")
                ids.setdefault(table, set()).add(rowid)
            for table, rowids in ids.items():
                conn.executemany(f"DELETE FROM {qident(table)} WHERE rowid = ?", [(r,) for r in sorted(rowids)])
                dropped[table] += len(rowids)
        conn.commit()
    finally:
        conn.close()
    return dict(sorted(dropped.items()))
