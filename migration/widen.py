"""Integer columns whose source values do not fit: widened to bigint before the copy.

SQLite's INTEGER holds 64 bits; MLflow's PostgreSQL schema gives experiment ids (and a few counters)
a 32-bit `integer`. A database made by MLflow's own `mlflow migrate-filestore` keeps the FileStore's
experiment ids, which FileStore draws at random with 18-19 digits: they fit SQLite only. Renumbering
would break what points at an experiment from outside (UI links, scripts, `mlruns/<id>` artifact
paths), so the columns that must hold those values become bigint instead: the column itself, every
column a foreign key links to it, every integer column elsewhere named like a widened key column
(MLflow copies experiment_id into tables without a foreign key), and their sequences. This happens in
the migration's transaction, before any row is copied, and is reported.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import psycopg

from migration.catalog import Catalog, qident
from migration.errors import RefusedError

RANGES = {"smallint": (-(1 << 15), (1 << 15) - 1), "integer": (-(1 << 31), (1 << 31) - 1)}


@dataclass(frozen=True)
class Widening:
    columns: tuple[tuple[str, str], ...]  # (table, column), every one to become bigint
    overflow: dict[tuple[str, str], tuple[int, int]]  # the columns whose source values forced it: (min, max)

    def describe(self) -> str:
        """One line: which source values forced it, and which columns (by name) became bigint."""
        why = ", ".join(f"{t}.{c} up to {max(abs(lo), abs(hi))}" for (t, c), (lo, hi) in sorted(self.overflow.items()))
        names: dict[str, int] = {}
        for _t, c in self.columns:
            names[c] = names.get(c, 0) + 1
        cols = ", ".join(f"{c} in {n} table{'s' if n > 1 else ''}" for c, n in sorted(names.items()))
        return (f"widened to bigint, as the source's values exceed PostgreSQL's integer ({why}): {cols} "
                "(MLflow's stock schema has integer there)")


def source_ranges(src: sqlite3.Connection, catalog: Catalog, tables: list[str],
                  source_columns: dict[str, list[str]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(min, max) of the source values of every column that is smallint/integer on the target.
    Values stored as text or real count by their integer part (what the conversion would make of them)."""
    ranges: dict[tuple[str, str], tuple[int, int]] = {}
    for t in tables:
        cols = [c.name for c in catalog.tables[t].copy_columns
                if c.type in RANGES and c.name in source_columns[t]]
        if not cols:
            continue
        parts = [f"min(CAST({qident(c)} AS INTEGER)), max(CAST({qident(c)} AS INTEGER))" for c in cols]
        row = src.execute(f"SELECT {', '.join(parts)} FROM {qident(t)}").fetchone()
        for i, c in enumerate(cols):
            lo, hi = row[2 * i], row[2 * i + 1]
            if lo is not None:
                ranges[(t, c)] = (lo, hi)
    return ranges


def plan_widening(catalog: Catalog, ranges: dict[tuple[str, str], tuple[int, int]]) -> Widening | None:
    overflow = {}
    for (t, c), (lo, hi) in ranges.items():
        low, high = RANGES[_column(catalog, t, c).type]
        if lo < low or hi > high:
            overflow[(t, c)] = (lo, hi)
    if not overflow:
        return None
    links: list[tuple[tuple[str, str], tuple[str, str]]] = []
    for table in catalog.tables.values():
        for con in table.constraints:
            if con.kind == "f" and con.referenced_table in catalog.tables:
                links += [((table.name, a), (con.referenced_table, b))
                          for a, b in zip(con.columns, con.referenced_columns)]
    todo = list(overflow)
    found = set(todo)
    while todo:
        t, c = todo.pop()
        linked = [b for a, b in links if a == (t, c)] + [a for a, b in links if b == (t, c)]
        if c in catalog.tables[t].primary_key():
            linked += [(other.name, c) for other in catalog.tables.values()
                       if any(col.name == c for col in other.columns)]
        for item in linked:
            if item not in found and _column(catalog, *item).type in RANGES:
                found.add(item)
                todo.append(item)
    return Widening(tuple(sorted(found)), overflow)


def widen(cur: psycopg.Cursor, catalog: Catalog, plan: Widening) -> None:
    """ALTER the planned columns to bigint (and their sequences); the caller re-reads the catalog."""
    tables = sorted({t for t, _ in plan.columns})
    foreign = [t for t in tables if not catalog.tables[t].owned]
    if foreign:
        raise RefusedError(
            f"{plan.describe()}: but the target role does not own {', '.join(foreign)}, so it cannot widen them",
            hint="run the migration as the owner of the MLflow tables (the role MLflow created them with)")
    for t in tables:
        cols = [c for table, c in plan.columns if table == t]
        cur.execute(f"ALTER TABLE {qident(t)} " + ", ".join(f"ALTER COLUMN {qident(c)} TYPE bigint" for c in cols))
        for col, seq in catalog.tables[t].sequences:
            if col in cols:
                kind = cur.execute("SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = %s::regclass",
                                   (seq,)).fetchone()
                if kind and kind[0] != "bigint":
                    cur.execute(f"ALTER SEQUENCE {seq} AS bigint")  # pg_get_serial_sequence: already quoted


def _column(catalog: Catalog, table: str, column: str):
    return next(c for c in catalog.tables[table].columns if c.name == column)
