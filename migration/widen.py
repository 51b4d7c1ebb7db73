"""Columns whose source values do not fit their PostgreSQL type: widened before the copy.

SQLite keeps any value in any column: its INTEGER holds 64 bits and it ignores VARCHAR lengths.
MLflow's PostgreSQL schema gives experiment ids a 32-bit `integer` and most strings a `varchar(n)`.
Two kinds of MLflow-made sources therefore hold values PostgreSQL refuses:
- a database made by MLflow's own `mlflow migrate-filestore` keeps FileStore's experiment ids, which
  FileStore draws at random with 18-19 digits;
- MLflow does not check every length itself (an experiment name, a run name or a metric key longer
  than its column is stored as is by SQLite; older MLflow versions checked even less).
Dropping or cutting such values loses data, and renumbering experiments breaks what points at them
from outside (links, scripts, `mlruns/<id>` artifact paths). So the columns that must hold the values
are widened: integers to bigint (with every column a foreign key links to them, every integer column
named like a widened key column, since MLflow copies experiment_id into tables without a foreign key,
and their sequences); varchar(n) to the longest length needed (with the columns foreign keys link).
This happens in the migration's transaction, before any row is copied, and is reported.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

import psycopg

from migration.catalog import Catalog, Column, qident
from migration.errors import RefusedError

RANGES = {"smallint": (-(1 << 15), (1 << 15) - 1), "integer": (-(1 << 31), (1 << 31) - 1)}
_VARCHAR = re.compile(r"^character varying\((\d+)\)$")


def varchar_limit(column: Column) -> int | None:
    return _varchar_length(column.full_type)


def _varchar_length(type_name: str | None) -> int | None:
    found = _VARCHAR.match(type_name or "")
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Widening:
    columns: tuple[tuple[str, str, str], ...]  # (table, column, new type)
    overflow: dict[tuple[str, str], tuple[int, int]]  # what forced it: integers (min, max), strings (0, length)

    def describe(self) -> str:
        """One line: which source values forced it, and which columns (by name) got which type."""
        why = ", ".join(f"{t}.{c} {self._value(t, c, lo, hi)}" for (t, c), (lo, hi) in sorted(self.overflow.items()))
        groups: dict[tuple[str, str], int] = {}
        for _t, c, new in self.columns:
            groups[(c, new)] = groups.get((c, new), 0) + 1
        cols = ", ".join(f"{c} to {new} in {n} table{'s' if n > 1 else ''}" for (c, new), n in sorted(groups.items()))
        return f"widened columns the source's values exceed ({why}): {cols} (MLflow's stock schema is narrower there)"

    def _value(self, table: str, column: str, lo: int, hi: int) -> str:
        new = next(n for t, c, n in self.columns if (t, c) == (table, column))
        return f"holds {hi} characters" if new.startswith("character varying") else f"holds ids up to {max(-lo, hi)}"


def source_extents(src: sqlite3.Connection, catalog: Catalog, tables: list[str],
                   source_columns: dict[str, list[str]], strings: bool) -> dict[tuple[str, str], tuple[int, int]]:
    """(min, max) of the source values of every smallint/integer target column, and with `strings`,
    (0, longest length) of every varchar(n) target column. Text or real values in an integer column
    count by their integer part (what the conversion makes of them)."""
    extents: dict[tuple[str, str], tuple[int, int]] = {}
    for t in tables:
        ints, texts = [], []
        for c in catalog.tables[t].copy_columns:
            if c.name not in source_columns[t]:
                continue
            if c.type in RANGES:
                ints.append(c.name)
            elif strings and varchar_limit(c) is not None:
                texts.append(c.name)
        parts = [f"min(CAST({qident(c)} AS INTEGER)), max(CAST({qident(c)} AS INTEGER))" for c in ints]
        parts += [f"0, max(length({qident(c)}))" for c in texts]
        if not parts:
            continue
        row = src.execute(f"SELECT {', '.join(parts)} FROM {qident(t)}").fetchone()
        for i, c in enumerate(ints + texts):
            lo, hi = row[2 * i], row[2 * i + 1]
            if hi is not None:
                extents[(t, c)] = (lo, hi)
    return extents


def plan_widening(catalog: Catalog, extents: dict[tuple[str, str], tuple[int, int]]) -> Widening | None:
    overflow = {}
    for (t, c), (lo, hi) in extents.items():
        col = _column(catalog, t, c)
        if col.type in RANGES:
            low, high = RANGES[col.type]
            if lo < low or hi > high:
                overflow[(t, c)] = (lo, hi)
        elif (limit := varchar_limit(col)) is not None and hi > limit:
            overflow[(t, c)] = (0, hi)
    if not overflow:
        return None
    links: list[tuple[tuple[str, str], tuple[str, str]]] = []
    for table in catalog.tables.values():
        for con in table.constraints:
            if con.kind == "f" and con.referenced_table in catalog.tables:
                links += [((table.name, a), (con.referenced_table, b))
                          for a, b in zip(con.columns, con.referenced_columns)]
    new_types: dict[tuple[str, str], str] = {}
    for start, (_lo, hi) in sorted(overflow.items()):
        integer = _column(catalog, *start).type in RANGES
        group = _closure(catalog, links, start, integer)
        for item in group:
            if integer:
                new_types[item] = "bigint"
            else:
                length = max(hi, _varchar_length(new_types.get(item)) or 0, varchar_limit(_column(catalog, *item)) or 0)
                new_types[item] = f"character varying({length})"
    return Widening(tuple((t, c, new) for (t, c), new in sorted(new_types.items())), overflow)


def _closure(catalog: Catalog, links, start: tuple[str, str], integer: bool) -> set[tuple[str, str]]:
    def same_kind(item: tuple[str, str]) -> bool:
        col = _column(catalog, *item)
        return col.type in RANGES if integer else varchar_limit(col) is not None

    found = {start}
    todo = [start]
    while todo:
        t, c = todo.pop()
        linked = [b for a, b in links if a == (t, c)] + [a for a, b in links if b == (t, c)]
        if integer and c in catalog.tables[t].primary_key():
            linked += [(other.name, c) for other in catalog.tables.values()
                       if any(col.name == c for col in other.columns)]
        for item in linked:
            if item not in found and same_kind(item):
                found.add(item)
                todo.append(item)
    return found


def widen(cur: psycopg.Cursor, catalog: Catalog, plan: Widening) -> None:
    """ALTER the planned columns (and integer sequences); the caller re-reads the catalog."""
    tables = sorted({t for t, _c, _n in plan.columns})
    foreign = [t for t in tables if not catalog.tables[t].owned]
    if foreign:
        raise RefusedError(
            f"{plan.describe()}: but the target role does not own {', '.join(foreign)}, so it cannot widen them",
            hint="run the migration as the owner of the MLflow tables (the role MLflow created them with)")
    for t in tables:
        cols = [(c, new) for table, c, new in plan.columns if table == t]
        cur.execute(f"ALTER TABLE {qident(t)} " +
                    ", ".join(f"ALTER COLUMN {qident(c)} TYPE {new}" for c, new in cols))
        for col, seq in catalog.tables[t].sequences:
            if (col, "bigint") in cols:
                kind = cur.execute("SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = %s::regclass",
                                   (seq,)).fetchone()
                if kind and kind[0] != "bigint":
                    cur.execute(f"ALTER SEQUENCE {seq} AS bigint")  # pg_get_serial_sequence: already quoted


def _column(catalog: Catalog, table: str, column: str) -> Column:
    return next(c for c in catalog.tables[table].columns if c.name == column)
