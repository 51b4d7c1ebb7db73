"""Fixtures for the migration tests: a private PostgreSQL cluster and MLflow-made SQLite sources.

PostgreSQL missing: a clear skip locally, a failure under CI (CI=true) so that a broken machine
never passes by running nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg
from psycopg.types.string import TextBinaryLoader, TextLoader
import pytest

from rehearsal.postgres import PostgresCluster, PostgresUnavailable

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
OWNER_PASSWORD = "s3cr3t-Pa55:w@rd/%"  # URI-hostile on purpose; must never be printed


@pytest.fixture(scope="session")
def pg():
    try:
        cluster = PostgresCluster().start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        pytest.skip(f"PostgreSQL server binaries not installed ({exc}); install Debian's postgresql package")
    yield cluster
    cluster.destroy()


@pytest.fixture
def target(pg):
    """A fresh, empty database owned by a non-superuser role; returns (uri, name)."""
    name = "t_" + uuid.uuid4().hex[:10]
    role = "r_" + uuid.uuid4().hex[:10]
    uri = pg.create_database(name, owner=role, owner_password=OWNER_PASSWORD)
    return uri, name


def _make_source(path: Path, metrics: int) -> Path:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "tests.migration.make_source", str(path), "--metrics", str(metrics)],
                            cwd=path.parent, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return path


@pytest.fixture(scope="session")
def rich_source(tmp_path_factory) -> Path:
    return _make_source(tmp_path_factory.mktemp("rich") / "mlflow.db", 20_000)


@pytest.fixture
def source_copy(rich_source, tmp_path) -> Path:
    """A private copy a test may alter (the session source stays pristine)."""
    dst = tmp_path / "source.db"
    shutil.copyfile(rich_source, dst)
    return dst


def mlflow_child(uri: str, code: str) -> dict:
    """Run MLflow client code against the target in a child process; returns its JSON output."""
    env = dict(os.environ, PYTHONPATH=str(REPO), MLFLOW_TRACKING_URI=uri)
    prog = "import json, math, mlflow\nfrom mlflow import MlflowClient\nuri = " + repr(uri) + "\n" + code
    result = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


STARTED_ROLE = "r_started"


@pytest.fixture(scope="session")
def started_template(pg) -> str:
    """A target a server already started on: MLflow's SqlAlchemyStore made its schema and its default rows
    (experiment 0, workspace 'default'), in a child process as a server would. Made once; each test gets
    a copy (`started_target`)."""
    name = "started_template"
    uri = pg.create_database(name, owner=STARTED_ROLE, owner_password=OWNER_PASSWORD)
    mlflow_child(uri, '''
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
SqlAlchemyStore(uri, "/srv/server-artifacts")
print("{}")
''')
    return name


@pytest.fixture
def started_target(pg, started_template):
    """A fresh copy of `started_template` (CREATE DATABASE ... TEMPLATE: the same tables, rows and sequences,
    owned by the same role, which MLflow's tables need), instead of starting MLflow's store on an empty
    target in every test that wants one; returns (uri, name)."""
    name = "t_" + uuid.uuid4().hex[:10]
    pg.psql(f'CREATE DATABASE "{name}" TEMPLATE "{started_template}" OWNER "{STARTED_ROLE}"')
    return pg.uri(name, STARTED_ROLE, OWNER_PASSWORD), name


def run_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m migration ARGS` from the repo root; `env`: variables set on top of this process's."""
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "migration", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


# --- processes (Linux /proc) ---------------------------------------------------------------------

def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()  # [state, ppid, ...]
    except OSError:
        return None


def child_pids(pid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and (st := _proc_stat(int(e))) and int(st[1]) == pid]


def processes_gone(pids: list[int], within: float = 10.0) -> bool:
    """Every pid ended (a zombie has: only its exit status waits to be collected)."""
    deadline = time.time() + within
    while any((st := _proc_stat(p)) and st[0] != "Z" for p in pids):
        if time.time() > deadline:
            return False
        time.sleep(0.1)
    return True


def pg_connect(uri: str) -> psycopg.Connection:
    """JSON columns come back as the text PostgreSQL stored, to compare with SQLite's text exactly."""
    conn = psycopg.connect(uri.replace("postgresql+psycopg2://", "postgresql://"))
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, TextLoader)
        conn.adapters.register_loader(name, TextBinaryLoader)
    return conn


# --- independent row-level comparison (deliberately not using the tool's own conversion code) -----

def _norm_pg(value, typ: str):
    if value is None:
        return None
    if typ == "boolean":
        return int(value)
    if isinstance(value, float):
        return "NaN" if value != value else value
    if typ == "date":
        return value.isoformat()
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def _norm_sqlite(value, typ: str):
    if value is None:
        return None
    if typ == "boolean":
        return int(value)
    if typ == "double precision":
        return float(value)
    if typ in ("json", "text", "character varying") and not isinstance(value, str):
        return str(value)
    if typ == "date":
        return str(value)[:10]
    return value


def pg_tables(conn: psycopg.Connection) -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, type)] for ordinary (non-generated) columns."""
    out: dict[str, list[tuple[str, str]]] = {}
    for table, col, typ in conn.execute(
        "SELECT c.relname, a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attgenerated = '' ORDER BY c.relname, a.attnum"
    ):
        out.setdefault(table, []).append((col, typ))
    return out


def table_rows(sqlite_path: Path, uri: str, table: str, cols: list[tuple[str, str]]):
    names = ", ".join(f'"{c}"' for c, _ in cols)
    src = sqlite3.connect(sqlite_path)
    try:
        s_rows = Counter(tuple(_norm_sqlite(v, t) for v, (_, t) in zip(row, cols))
                         for row in src.execute(f'SELECT {names} FROM "{table}"'))
    finally:
        src.close()
    with pg_connect(uri) as conn:
        p_rows = Counter(tuple(_norm_pg(v, t) for v, (_, t) in zip(row, cols))
                         for row in conn.execute(f'SELECT {names} FROM "{table}"'))
    return s_rows, p_rows


def assert_same_rows(sqlite_path: Path, uri: str, skip: set[str] = frozenset(), allow_extra: dict | None = None):
    """Every source table equals the target table row for row (as multisets)."""
    with pg_connect(uri) as conn:
        tables = pg_tables(conn)
    src = sqlite3.connect(sqlite_path)
    names = [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    src.close()
    compared = 0
    for table in names:
        if table == "alembic_version" or table in skip:
            continue
        assert table in tables, f"{table} missing in target"
        s_rows, p_rows = table_rows(sqlite_path, uri, table, tables[table])
        extra = p_rows - s_rows
        if allow_extra and table in allow_extra:
            extra -= allow_extra[table]
        assert not (s_rows - p_rows) and not extra, (
            f"{table}: only in source {list((s_rows - p_rows).items())[:3]}, only in target {list(extra.items())[:3]}"
        )
        compared += sum(s_rows.values())
    return compared


def snapshot(uri: str) -> dict[str, tuple]:
    """Row count and an order-independent digest of every public table (to prove 'unchanged')."""
    with pg_connect(uri) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        out = {}
        for name in names:
            n, digest = conn.execute(
                f'SELECT count(*), coalesce(sum((\'x\' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) '
                f'FROM "{name}" t').fetchone()
            out[name] = (n, int(digest))
        return out
