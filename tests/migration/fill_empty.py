"""Rows for every table an MLflow-made test database left empty, written straight into its SQLite file.

MLflow's client fills experiments, runs, models and traces; tables behind the gateway, jobs, webhooks,
scorers, MCP servers, review queues and the trace rollups stay empty, and with them column types no
other table has (DATE, BLOB as bytea, JSON, composite foreign keys). The values follow each column's
declared type, foreign keys point at real parent rows, one row in three has its nullable columns NULL,
and text carries non-ASCII characters. Built from the file's own schema, so a newer MLflow's new tables
are filled too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

ROWS_PER_TABLE = 3


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _value(table: str, column: str, declared: str, i: int):
    t = declared.upper()
    if column == "workspace":
        return "default"
    if t.startswith(("INTEGER", "BIGINT", "SMALLINT")):
        return 1_000 * (i + 1) + len(column)
    if t.startswith(("FLOAT", "REAL", "DOUBLE", "NUMERIC")):
        return (0.1 + i, -2.5e-300, 1.7e300)[i % 3]
    if t.startswith("BOOLEAN"):
        return i % 2
    if t.startswith("DATE"):
        return f"2026-11-{20 + i:02d}"
    if t.startswith("JSON"):
        return '{"k": [1, 2.5, "\u00e9"], "row": ' + str(i) + ', "nested": {"none": null}}'
    if t.startswith("BLOB"):
        return bytes([0, 255, i, 10, 13, 92, 9])
    text = f"{table}.{column} #{i} \u00e9\u2713"
    if "(" in t:  # VARCHAR(n)
        text = text[-int(t.split("(")[1].rstrip(")")):]
    return text


def _foreign_keys(conn: sqlite3.Connection, table: str) -> list[tuple[str, list[str], list[str]]]:
    """(parent table, child columns, parent columns) per foreign key."""
    keys: dict[int, tuple[str, list[str], list[str]]] = {}
    for fk_id, _seq, parent, child_col, parent_col, *_ in conn.execute(f"PRAGMA foreign_key_list({_q(table)})"):
        keys.setdefault(fk_id, (parent, [], []))
        keys[fk_id][1].append(child_col)
        keys[fk_id][2].append(parent_col)
    return list(keys.values())


def fill_empty_tables(path: Path) -> dict[str, int]:
    """Insert ROWS_PER_TABLE rows into every empty table (parents before children); returns the counts."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'")]
        empty = {t for t in tables if conn.execute(f"SELECT count(*) FROM {_q(t)}").fetchone()[0] == 0}
        filled: dict[str, int] = {}
        pending = sorted(empty)
        while pending:
            ready = [t for t in pending
                     if all(p not in pending or p == t for p, _, _ in _foreign_keys(conn, t))]
            assert ready, f"foreign keys form a cycle among {pending}"
            for table in ready:
                filled[table] = _fill(conn, table)
                pending.remove(table)
        conn.commit()
        return filled
    finally:
        conn.close()


def _fill(conn: sqlite3.Connection, table: str) -> int:
    columns = [(r[1], r[2], bool(r[3]), r[5]) for r in conn.execute(f"PRAGMA table_info({_q(table)})")]
    fks = _foreign_keys(conn, table)
    parents = {}
    for parent, _child_cols, parent_cols in fks:
        cols = ", ".join(_q(c) for c in parent_cols)
        parents[parent] = conn.execute(
            f"SELECT {cols} FROM {_q(parent)} ORDER BY rowid LIMIT {ROWS_PER_TABLE}").fetchall()
        assert parents[parent], f"{table}: its parent {parent} has no rows"
    for i in range(ROWS_PER_TABLE):
        row = {}
        for name, declared, not_null, _pk in columns:
            row[name] = None if (i == 2 and not not_null) else _value(table, name, declared, i)
        for parent, child_cols, _parent_cols in fks:
            picked = parents[parent][i % len(parents[parent])]
            if all(row[c] is None for c in child_cols) and i == 2:
                continue  # a nullable reference stays NULL in the third row
            row.update(zip(child_cols, picked))
        names = ", ".join(_q(c) for c in row)
        conn.execute(f"INSERT INTO {_q(table)} ({names}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    return ROWS_PER_TABLE
