"""What the target PostgreSQL schema looks like: tables, typed columns, keys, indexes, sequences.

Column types are always taken from the target (MLflow created it), and conversions follow them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

# How a PostgreSQL type is fed and checked; anything else is passed through as text.
TYPE_CATEGORY = {
    "boolean": "bool",
    "smallint": "int", "integer": "int", "bigint": "int",
    "double precision": "float", "real": "float", "numeric": "float",
    "text": "text", "character varying": "text", "character": "text", "json": "text", "jsonb": "text",
    "uuid": "text",
    "bytea": "bytea",
    "date": "date",
    "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamp",
}


def qident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Column:
    name: str
    type: str  # format_type() without modifiers, e.g. "character varying"
    full_type: str  # with modifiers, e.g. "character varying(250)"
    not_null: bool
    generated: bool

    @property
    def category(self) -> str:
        return TYPE_CATEGORY.get(self.type, "other")


@dataclass
class Constraint:
    table: str
    name: str
    kind: str  # p(rimary) u(nique) f(oreign) c(heck)
    definition: str
    columns: list[str]
    referenced_table: str | None = None
    referenced_columns: list[str] = field(default_factory=list)  # foreign keys: the columns they point at


@dataclass
class Index:
    table: str
    name: str
    definition: str
    columns: list[str] = field(default_factory=list)  # empty for expression indexes


@dataclass
class Table:
    name: str
    columns: list[Column]
    owned: bool  # the connected role may ALTER it (drop/re-create keys and indexes)
    constraints: list[Constraint] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)  # secondary indexes not backing a constraint
    sequences: list[tuple[str, str]] = field(default_factory=list)  # (column, sequence name)

    @property
    def copy_columns(self) -> list[Column]:
        return [c for c in self.columns if not c.generated]

    def primary_key(self) -> list[str]:
        return next((c.columns for c in self.constraints if c.kind == "p"), [])

    def key_sets(self) -> list[list[str]]:
        """Column lists of the primary key and every unique constraint."""
        return [c.columns for c in self.constraints if c.kind in ("p", "u")]

    def index_column_lists(self) -> list[list[str]]:
        """Column lists of every key and plain secondary index (what a bulk load re-builds)."""
        return self.key_sets() + [i.columns for i in self.indexes if i.columns]


@dataclass
class Catalog:
    schema: str
    tables: dict[str, Table]
    revision: str | None
    has_alembic: bool

    def fk_order(self, names: list[str]) -> list[str]:
        """Tables sorted so that every referenced table comes before the tables referencing it."""
        wanted = set(names)
        deps = {n: {c.referenced_table for c in self.tables[n].constraints
                    if c.kind == "f" and c.referenced_table in wanted and c.referenced_table != n}
                for n in names}
        ordered: list[str] = []
        done: set[str] = set()
        while len(ordered) < len(names):
            ready = sorted(n for n in names if n not in done and deps[n] <= done)
            if not ready:  # a cycle: append the rest alphabetically (FKs are dropped around the copy anyway)
                ready = sorted(n for n in names if n not in done)
            for n in ready:
                ordered.append(n)
                done.add(n)
        return ordered


def read_catalog(conn: psycopg.Connection) -> Catalog:
    cur = conn.cursor()
    schema = cur.execute("SELECT current_schema()").fetchone()[0]
    rows = cur.execute(
        """
        SELECT c.relname, c.oid, pg_has_role(c.relowner, 'USAGE')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
        """
    ).fetchall()
    tables: dict[str, Table] = {}
    oids = {oid: name for name, oid, _owned in rows}
    cols = cur.execute(
        """
        SELECT a.attrelid, a.attname, format_type(a.atttypid, NULL), format_type(a.atttypid, a.atttypmod),
               a.attnotnull, a.attgenerated <> ''
        FROM pg_attribute a
        WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attrelid, a.attnum
        """,
        (list(oids),),
    ).fetchall()
    for name, _oid, owned in rows:
        tables[name] = Table(name, [], bool(owned))
    for relid, attname, typ, full, notnull, generated in cols:
        tables[oids[relid]].columns.append(Column(attname, typ, full, notnull, generated))
    for relid, conname, contype, definition, colnames, reftable, refcols in cur.execute(
        """
        SELECT con.conrelid, con.conname, con.contype, pg_get_constraintdef(con.oid),
               ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, i)
                     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.i),
               ref.relname,
               ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, i)
                     JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.i)
        FROM pg_constraint con LEFT JOIN pg_class ref ON ref.oid = con.confrelid
        WHERE con.conrelid = ANY(%s) AND con.contype IN ('p', 'u', 'f')
        ORDER BY con.conrelid, con.conname
        """,
        (list(oids),),
    ):
        tables[oids[relid]].constraints.append(
            Constraint(oids[relid], conname, contype, definition, list(colnames), reftable, list(refcols or ())))
    for relid, idxname, definition, colnames in cur.execute(
        """
        SELECT i.indrelid, ic.relname, pg_get_indexdef(i.indexrelid),
               CASE WHEN i.indexprs IS NULL AND i.indpred IS NULL THEN
               ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n)
               ELSE ARRAY[]::name[] END
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid \
AND con.conrelid = i.indrelid)
        ORDER BY i.indrelid, ic.relname
        """,
        (list(oids),),
    ):
        tables[oids[relid]].indexes.append(Index(oids[relid], idxname, definition, list(colnames)))
    for relid, attname, seq in cur.execute(
        """
        SELECT a.attrelid, a.attname, \
pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
          AND (a.attidentity <> '' OR \
pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) IS NOT NULL)
        """,
        (list(oids),),
    ):
        if seq:
            tables[oids[relid]].sequences.append((attname, seq))
    revision = None
    has_alembic = "alembic_version" in tables
    if has_alembic:
        revs = cur.execute("SELECT version_num FROM alembic_version").fetchall()
        revision = revs[0][0] if len(revs) == 1 else None
    return Catalog(schema, tables, revision, has_alembic)
