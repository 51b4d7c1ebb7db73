"""Rows a target already holds, and what to do with them.

A started MLflow server seeds two rows: the default experiment (id 0) and the `default` workspace.
Those are not user data. `merge` (the default) refuses anything else, and lets a source row win over
a seed row that has the same key; `replace` empties every MLflow table first.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import psycopg

from migration.catalog import Catalog, qident
from migration.errors import RefusedError

# table -> SQL predicate selecting the rows a fresh server creates by itself
SEED_ROWS = {
    "experiments": "experiment_id = 0",
    "workspaces": "name = 'default'",
    "scheduler_leases": "TRUE",  # runtime bookkeeping of a running server's job scheduler
}


@dataclass
class Existing:
    counts: dict[str, int] = field(default_factory=dict)  # non-empty target tables -> row count
    seed: dict[str, int] = field(default_factory=dict)  # table -> seed rows
    user: dict[str, int] = field(default_factory=dict)  # table -> rows that are not seed rows


def inspect(conn: psycopg.Connection, tables: list[str]) -> Existing:
    found = Existing()
    if not tables:
        return found
    cur = conn.cursor()
    probe = " UNION ALL ".join(
        f"SELECT {i} FROM (SELECT 1 FROM {qident(t)} LIMIT 1) s{i}" for i, t in enumerate(tables)
    )
    nonempty = [tables[r[0]] for r in cur.execute(probe).fetchall()]
    for t in nonempty:
        total = cur.execute(f"SELECT count(*) FROM {qident(t)}").fetchone()[0]
        found.counts[t] = total
        seed = 0
        if t in SEED_ROWS:
            seed = cur.execute(f"SELECT count(*) FROM {qident(t)} WHERE {SEED_ROWS[t]}").fetchone()[0]
        if seed:
            found.seed[t] = seed
        if total - seed:
            found.user[t] = total - seed
    return found


def refuse_user_data(existing: Existing, masked_target: str) -> None:
    if not existing.user:
        return
    detail = ", ".join(f"{t}: {n}" for t, n in sorted(existing.user.items()))
    raise RefusedError(
        f"target {masked_target} already holds MLflow data besides the default experiment/workspace ({detail}); "
        "nothing was changed",
        hint="use --mode replace to empty the target's MLflow tables first, or migrate into an empty database",
    )


def resolve_seed_conflicts(conn: psycopg.Connection, catalog: Catalog, existing: Existing,
                           source: sqlite3.Connection, source_tables: set[str]) -> dict[str, int]:
    """Delete seed rows that a source row replaces (same primary or unique key). Returns deletions per table."""
    deleted: dict[str, int] = {}
    cur = conn.cursor()
    for t in sorted(existing.seed):
        if t not in source_tables:
            continue
        table = catalog.tables[t]
        key_sets = table.key_sets()
        if not key_sets:
            continue
        key_cols = sorted({c for ks in key_sets for c in ks})
        rows = cur.execute(
            f"SELECT ctid::text, {', '.join(qident(c) for c in key_cols)} FROM {qident(t)} WHERE {SEED_ROWS[t]}"
        ).fetchall()
        for ctid, *vals in rows:
            values = dict(zip(key_cols, vals))
            clash = False
            for ks in key_sets:
                if any(values[c] is None for c in ks):
                    continue
                where = " AND ".join(f"{qident(c)} = ?" for c in ks)
                params = [int(values[c]) if isinstance(values[c], bool) else values[c] for c in ks]
                if source.execute(f"SELECT 1 FROM {qident(t)} WHERE {where} LIMIT 1", params).fetchone():
                    clash = True
                    break
            if clash:
                cur.execute(f"DELETE FROM {qident(t)} WHERE ctid = %s::tid", (ctid,))
                deleted[t] = deleted.get(t, 0) + 1
    return deleted
