"""The catalog MLflow is about to create on an empty target, predicted from the source copy's schema.

Creating MLflow's schema (its import, then some seventy Alembic revisions) keeps one core busy for
seconds before the first row could be copied. The source copy is already at the same Alembic
revision, written by the same migration scripts for SQLite, so its tables, columns, keys and indexes
are those PostgreSQL will get; only the type names differ, and SQLAlchemy renders them predictably.
The readers start on specs built from this prediction while the schema is created. It is only a
guess: the caller compares every table's spec with the one from the real catalog and reads again
whatever differs, so a wrong guess costs time, never correctness.
"""

from __future__ import annotations

import re
import sqlite3

from migration.catalog import Catalog, Column, Constraint, Index, Table, qident

# SQLite declared type (as SQLAlchemy renders MLflow's column types there) -> PostgreSQL format_type().
_TYPES = {
    "VARCHAR": "character varying", "NVARCHAR": "character varying", "CHAR": "character",
    "TEXT": "text", "CLOB": "text",
    "SMALLINT": "smallint", "INTEGER": "integer", "INT": "integer", "BIGINT": "bigint",
    "FLOAT": "double precision", "DOUBLE": "double precision", "DOUBLE PRECISION": "double precision",
    "REAL": "real", "NUMERIC": "numeric", "DECIMAL": "numeric",
    "BOOLEAN": "boolean",
    "JSON": "json",
    "BLOB": "bytea",
    "DATE": "date",
    "DATETIME": "timestamp without time zone", "TIMESTAMP": "timestamp without time zone",
}
_MODIFIERS = re.compile(r"\s*\(.*\)\s*$")


def postgres_type(declared: str) -> str:
    """The PostgreSQL type SQLAlchemy creates for a column SQLite declares as `declared` ('' if unknown)."""
    return _TYPES.get(_MODIFIERS.sub("", declared).strip().upper(), "")


def predict_catalog(conn: sqlite3.Connection, tables: list[str]) -> Catalog:
    """MLflow's tables as the source copy has them, typed as PostgreSQL will type them, owned by us."""
    predicted: dict[str, Table] = {}
    for name in tables:
        q = qident(name)
        info = conn.execute(f"PRAGMA table_xinfo({q})").fetchall()  # cid, name, type, notnull, default, pk, hidden
        columns = [Column(col, postgres_type(decl), decl, bool(notnull) or pk > 0, hidden in (2, 3))
                   for _cid, col, decl, notnull, _default, pk, hidden in info if hidden != 1]
        pk = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5] > 0]
        table = Table(name, columns, owned=True)
        if pk:
            table.constraints.append(Constraint(name, f"{name}_pkey", "p", "", pk))
        for _seq, index, unique, origin, _partial in conn.execute(f"PRAGMA index_list({q})"):
            if origin == "pk":
                continue
            cols = [r[2] for r in conn.execute(f"PRAGMA index_info({qident(index)})")]
            if any(c is None for c in cols):
                cols = []  # an expression index
            if origin == "u" and unique:
                table.constraints.append(Constraint(name, index, "u", "", cols))
            else:
                table.indexes.append(Index(name, index, "", cols))
        for fk in {(r[0], r[2]) for r in conn.execute(f"PRAGMA foreign_key_list({q})")}:
            table.constraints.append(Constraint(name, f"{name}_fk_{fk[0]}", "f", "", [], fk[1]))
        predicted[name] = table
    return Catalog("", predicted, None, True)
