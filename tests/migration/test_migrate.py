"""End-to-end: MLflow-made SQLite sources into a real PostgreSQL, compared row by row."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.migration.conftest import (
    FIXTURES, OWNER_PASSWORD, REPO, assert_same_rows, child_pids, mlflow_child, pg_connect, processes_gone, run_cli,
    snapshot,
)
from tests.migration import workspace_source
from tests.migration.fill_empty import fill_empty_tables


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _alter_source(path: Path, sql: str) -> None:
    """One statement, committed, on a test's own copy of a source."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(sql)
        conn.commit()


def _upgraded_by_mlflow(source: Path, tmp_path: Path) -> Path:
    """The independent expectation for an older source: another copy, upgraded by MLflow itself."""
    expected = tmp_path / "expected.db"
    shutil.copyfile(source, expected)
    out = subprocess.run([sys.executable, "-c",
                          "import sqlalchemy; from mlflow.store.db.utils import _upgrade_db; "
                          f"_upgrade_db(sqlalchemy.create_engine('sqlite:///{expected}'))"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return expected


def test_rich_source_into_empty_target(rich_source, target, tmp_path):
    """Schema created by MLflow inside the transaction, every row equal, sequences at max+1, MLflow works."""
    uri, _ = target
    before = _digest(rich_source)
    summary = tmp_path / "result.json"
    # every table re-indexed and, above 600 rows, read in ranges by both readers
    result = run_cli(str(rich_source), uri, "--rebuild-threshold", "0", "--task-rows", "400", "--json", str(summary))
    assert result.returncode == 0, result.stderr
    assert OWNER_PASSWORD not in result.stdout + result.stderr
    assert _digest(rich_source) == before, "the source file must never change"

    data = json.loads(summary.read_text())
    assert data["created_schema"] and data["verified"] and data["probe"]["ok"], data
    assert data["rows"] > 20_000
    assert data["widened"] == [], "MLflow's own ids fit MLflow's own schema"
    # every table was read while MLflow created the schema and the prediction from the source held,
    # except spans: MLflow's trace analytics revision builds its two cost indexes differently on
    # PostgreSQL than on SQLite, so the read order chosen from the source's indexes differs there
    ahead = data["read_ahead"]
    assert ahead["read_again"] in ([], ["spans"]), ahead
    assert sorted(ahead["reused"] + ahead["read_again"]) == sorted(data["tables"]) and "metrics" in ahead["reused"]

    compared = assert_same_rows(rich_source, uri)
    assert compared == data["rows"]

    with pg_connect(uri) as conn:
        from migration.revisions import revision_graph

        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(revision_graph().head,)]
        max_id = conn.execute("SELECT max(experiment_id) FROM experiments").fetchone()[0]
        last, called = conn.execute("SELECT last_value, is_called FROM experiments_experiment_id_seq").fetchone()
        # the probe created and removed one experiment after the reset, and gave its id back
        assert (last, called) == (max_id + 1, False)
        nan_rows = conn.execute("SELECT count(*) FROM metrics WHERE is_nan").fetchone()[0]
        assert nan_rows >= 4
        inf_rows = conn.execute("SELECT count(*) FROM metrics WHERE value = 'Infinity'::float8 "
                                "OR value = '-Infinity'::float8 OR abs(value) > 1e308").fetchone()[0]
        assert inf_rows >= 8

    out = mlflow_child(uri, """
client = MlflowClient(uri, uri)
before = {e.experiment_id for e in client.search_experiments(view_type=3)}
new_id = client.create_experiment("after-migration")
exp = mlflow.set_experiment("after-migration-2")
with mlflow.start_run() as run:
    mlflow.log_metric("m", float("nan"))
run = client.get_run(run.info.run_id)
mv = client.create_model_version("model-1", source="s3://b/m", run_id=None)
alias = client.get_model_version_by_alias("model-1", "champion").version
old = client.get_experiment_by_name("alpha")
runs = client.search_runs([old.experiment_id], run_view_type=3)
odd = client.get_metric_history(runs[0].info.run_id, "odd") if runs else []
print(json.dumps({"new_id": new_id, "before": sorted(before), "exp": exp.experiment_id if exp else None,
                  "run_exp": run.info.experiment_id, "mv": mv.version, "alias": alias,
                  "nan": math.isnan(run.data.metrics["m"]), "runs": len(runs),
                  "odd": [repr(m.value) for m in odd]}))
""")
    assert out["new_id"] not in out["before"] and int(out["new_id"]) == max(int(i) for i in out["before"]) + 1
    assert out["exp"] is not None and out["run_exp"] == out["exp"], "runs must land in the new experiment"
    assert str(out["mv"]) == "4" and str(out["alias"]) == "3"
    assert out["nan"] and out["runs"] == 2
    # MLflow itself stores +/-inf as +/-max float and NaN as is_nan; the history reads back as MLflow wrote it
    assert {"nan", "1.7976931348623157e+308", "-1.7976931348623157e+308", "1e-310", "5e-324"} <= set(out["odd"])


def test_every_table_of_mlflows_schema_with_rows(source_copy, target, tmp_path):
    """The tables MLflow's client leaves empty in the rich source (gateway, jobs, webhooks, scorers, MCP
    servers, review queues, trace rollups) filled from their own schema: DATE, bytea, JSON and composite
    foreign keys arrive equal, every sequence is at max+1, and MLflow still works."""
    uri, _ = target
    filled = fill_empty_tables(source_copy)
    assert {"secrets", "sql_trace_metric_daily_rollups", "mcp_server_version_tags", "span_metrics",
            "evaluation_dataset_records", "job_locks"} <= set(filled), filled
    summary = tmp_path / "result.json"
    result = run_cli(str(source_copy), uri, "--json", str(summary))
    assert result.returncode == 0, result.stderr
    data = json.loads(summary.read_text())
    assert data["verified"] and data["probe"]["ok"] and data["widened"] == [], data
    conn = sqlite3.connect(source_copy)
    try:
        tables = ({r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                  - {"alembic_version"})
    finally:
        conn.close()
    assert set(data["tables"]) == tables, "every table of the schema had rows to copy"
    assert assert_same_rows(source_copy, uri) == data["rows"]
    with pg_connect(uri) as pgc:
        day, secret, inputs = pgc.execute(
            "SELECT (SELECT min(rollup_day) FROM sql_trace_metric_daily_rollups), "
            "(SELECT encrypted_value FROM secrets ORDER BY secret_id LIMIT 1), "
            "(SELECT inputs FROM evaluation_dataset_records ORDER BY dataset_record_id LIMIT 1)").fetchone()
        assert day.isoformat() == "2026-11-20"
        assert bytes(secret) == bytes([0, 255, 0, 10, 13, 92, 9])
        assert inputs == '{"k": [1, 2.5, "é"], "row": 0, "nested": {"none": null}}'
        for table in ("sql_assessment_daily_rollups", "sql_span_cost_daily_rollups", "sql_trace_metric_daily_rollups"):
            last, called = pgc.execute(f"SELECT last_value, is_called FROM {table}_id_seq").fetchone()
            top = pgc.execute(f"SELECT max(id) FROM {table}").fetchone()[0]
            assert (last, called) == (top + 1, False), table


def test_target_in_its_own_postgresql_schema(rich_source, target):
    """MLflow's documented way to keep its tables out of `public`: `options=-csearch_path=...` in the URI.
    The schema is created, filled and probed there, and nothing lands in `public`; a schema that does
    not exist is refused before anything is written."""
    uri, _ = target
    in_schema = uri + "?options=-csearch_path%3Dmlflow"
    missing = run_cli(str(rich_source), in_schema, "--no-probe")
    assert missing.returncode == 3 and "names no schema that exists" in missing.stderr, missing.stderr
    assert "Traceback" not in missing.stderr
    with pg_connect(uri) as conn:
        conn.execute("CREATE SCHEMA mlflow")
    result = run_cli(str(rich_source), in_schema)
    assert result.returncode == 0, result.stderr
    assert OWNER_PASSWORD not in result.stdout + result.stderr
    with pg_connect(uri) as conn:
        where = dict(conn.execute("SELECT table_schema, count(*) FROM information_schema.tables "
                                  "WHERE table_schema IN ('public', 'mlflow') GROUP BY 1").fetchall())
        assert where.get("public", 0) == 0 and where["mlflow"] > 60, where
        last, called = conn.execute("SELECT last_value, is_called FROM mlflow.experiments_experiment_id_seq").fetchone()
        top = conn.execute("SELECT max(experiment_id) FROM mlflow.experiments").fetchone()[0]
        assert (last, called) == (top + 1, False)
    assert assert_same_rows(rich_source, in_schema) > 20_000
    # a second run sees the schema it made (merge refuses user data) instead of creating another one
    again = run_cli(str(rich_source), in_schema)
    assert again.returncode == 3 and "--mode replace" in again.stderr, again.stderr


def test_filestore_converted_source_keeps_its_experiment_ids(tmp_path, target):
    """MLflow's own `mlflow migrate-filestore` keeps FileStore's random 18-digit experiment ids, which only
    SQLite's 64-bit INTEGER holds: the columns holding experiment ids become bigint and the ids survive."""
    uri, _ = target
    root = tmp_path / "old-laptop"
    root.mkdir()
    env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    made = subprocess.run([sys.executable, "-c", """
from mlflow import MlflowClient
uri = "file:./mlruns"
client = MlflowClient(uri, uri)
exp = client.create_experiment("from the file store", tags={"team": "ml"})
run = client.create_run(exp, run_name="r1")
client.log_param(run.info.run_id, "p", "tab\\there")
client.log_metric(run.info.run_id, "m", float("nan"))
client.log_metric(run.info.run_id, "m", 1.5, step=2)
client.set_terminated(run.info.run_id)
client.create_registered_model("fs-model")
client.create_model_version("fs-model", source="s3://bucket/m", run_id=run.info.run_id)
"""], cwd=root, env=env, capture_output=True, text=True, timeout=180)
    assert made.returncode == 0, made.stderr[-3000:]
    db = root / "mlflow.db"
    converted = subprocess.run([sys.executable, "-m", "mlflow", "migrate-filestore", "--source", str(root),
                                "--target", f"sqlite:///{db}", "--no-progress"], env=env, capture_output=True,
                               text=True, timeout=180)
    assert converted.returncode == 0, converted.stderr[-3000:]
    with contextlib.closing(sqlite3.connect(db)) as src:
        big_id = src.execute("SELECT max(experiment_id) FROM experiments").fetchone()[0]
    assert big_id > 2**31 - 1, "FileStore ids no longer exceed integer: this test tests nothing"

    summary = tmp_path / "result.json"
    result = run_cli(str(db), uri, "--json", str(summary))
    assert result.returncode == 0, result.stderr
    data = json.loads(summary.read_text())
    assert data["verified"] and data["probe"]["ok"], data
    assert {"experiments.experiment_id", "runs.experiment_id", "experiment_tags.experiment_id",
            "trace_info.experiment_id", "assessments.experiment_id"} <= set(data["widened"])
    assert not [c for c in data["widened"] if not c.endswith(".experiment_id")], data["widened"]
    assert "experiment_id to bigint in" in result.stdout + result.stderr
    assert_same_rows(db, uri)
    with pg_connect(uri) as conn:
        assert conn.execute("SELECT format_type(seqtypid, NULL) FROM pg_sequence "
                            "WHERE seqrelid = 'experiments_experiment_id_seq'::regclass").fetchone()[0] == "bigint"

    out = mlflow_child(uri, f"""
client = MlflowClient(uri, uri)
old = client.get_experiment("{big_id}")
runs = client.search_runs(["{big_id}"])
mlflow.set_experiment(experiment_id="{big_id}")
with mlflow.start_run() as run:
    mlflow.log_metric("after", 2.0)
new_id = client.create_experiment("after the move")
mv = client.create_model_version("fs-model", source="s3://bucket/m2")
print(json.dumps({{"name": old.name, "runs": len(runs), "param": runs[0].data.params["p"],
                  "run_exp": client.get_run(run.info.run_id).info.experiment_id, "new_id": new_id,
                  "mv": mv.version}}))
""")
    assert out["name"] == "from the file store" and out["runs"] == 1 and out["param"] == "tab\there"
    assert out["run_exp"] == str(big_id)
    assert int(out["new_id"]) > big_id and str(out["mv"]) == "2"


def test_strings_longer_than_their_postgresql_columns_are_kept(tmp_path, target):
    """MLflow on SQLite accepts a 300-character experiment, run or model name (SQLite ignores VARCHAR
    lengths; PostgreSQL's varchar(256) refuses them): the columns are widened, nothing is cut."""
    uri, _ = target
    db = tmp_path / "long.db"
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    made = subprocess.run([sys.executable, "-c", f"""
from mlflow import MlflowClient
uri = "sqlite:///{db}"
client = MlflowClient(uri, uri)
exp = client.create_experiment("e" * 299 + "✓")
run = client.create_run(exp, run_name="r" * 300)
client.create_registered_model("m" * 300)
client.create_model_version("m" * 300, source="s3://bucket/m", run_id=run.info.run_id)
client.set_registered_model_alias("m" * 300, "champion", 1)
"""], env=env, capture_output=True, text=True, timeout=180)
    assert made.returncode == 0, made.stderr[-3000:]

    summary = tmp_path / "result.json"
    result = run_cli(str(db), uri, "--json", str(summary))
    assert result.returncode == 0, result.stderr
    assert "value too long" in result.stderr and "copying again with the columns widened" in result.stderr
    data = json.loads(summary.read_text())
    assert data["verified"] and data["probe"]["ok"], data
    assert {"experiments.name", "runs.name", "registered_models.name", "model_versions.name",
            "registered_model_aliases.name"} <= set(data["widened"]), data["widened"]
    assert sum("rolled back" in n or "widened columns" in n for n in data["notes"]) == 1, data["notes"]
    assert_same_rows(db, uri)
    with pg_connect(uri) as conn:
        assert conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                            "WHERE attrelid = 'experiments'::regclass AND attname = 'name'").fetchone()[0] \
            == "character varying(300)"

    out = mlflow_child(uri, """
client = MlflowClient(uri, uri)
exp = client.get_experiment_by_name("e" * 299 + "✓")
runs = client.search_runs([exp.experiment_id])
mv = client.create_model_version("m" * 300, source="s3://bucket/m2")
print(json.dumps({"run": runs[0].info.run_name, "mv": mv.version,
                  "alias": client.get_model_version_by_alias("m" * 300, "champion").version}))
""")
    assert out == {"run": "r" * 300, "mv": 2, "alias": 1}


def test_rows_without_their_parent_row(source_copy, target, tmp_path):
    """MLflow never turns SQLite's foreign keys on: a run deleted by hand leaves its metrics, params and
    tags behind. By default that fails with each table named and the target unchanged (whether the
    foreign key is checked during COPY or re-created after it, and in a dry run); --drop-orphans leaves
    them out."""
    uri, _ = target
    with contextlib.closing(sqlite3.connect(source_copy)) as conn:
        run_uuid = conn.execute("SELECT run_uuid FROM metrics GROUP BY run_uuid ORDER BY count(*) DESC").fetchone()[0]
        conn.execute("DELETE FROM runs WHERE run_uuid = ?", (run_uuid,))
        conn.commit()
    before = _digest(source_copy)
    for extra in (["--dry-run"], [], ["--rebuild-threshold", "0"]):
        result = run_cli(str(source_copy), uri, "--no-probe", *extra)
        assert result.returncode == 1, result.stderr
        assert "parent row is missing" in result.stderr and "metrics:" in result.stderr, result.stderr
        assert "params:" in result.stderr and "--drop-orphans" in result.stderr
        with pg_connect(uri) as conn:
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0

    summary = tmp_path / "result.json"
    result = run_cli(str(source_copy), uri, "--drop-orphans", "--json", str(summary))
    assert result.returncode == 0, result.stderr
    assert _digest(source_copy) == before, "orphans are dropped from the tool's copy, never from the source"
    data = json.loads(summary.read_text())
    assert data["verified"] and data["probe"]["ok"]
    # the expectation, computed independently: every row whose declared run_uuid foreign key has no run
    expected = tmp_path / "expected.db"
    shutil.copyfile(source_copy, expected)
    with contextlib.closing(sqlite3.connect(expected)) as conn:
        gone = {}
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for fk in conn.execute(f'PRAGMA foreign_key_list("{table}")').fetchall():  # (id, seq, table, from, to, ...)
                if fk[2] == "runs" and fk[4] == "run_uuid":
                    n = conn.execute(f'DELETE FROM "{table}" WHERE "{fk[3]}" IS NOT NULL '
                                     f'AND "{fk[3]}" NOT IN (SELECT run_uuid FROM runs)').rowcount
                    if n:
                        gone[table] = gone.get(table, 0) + n
        conn.commit()
    assert data["dropped_orphans"] == gone and gone["metrics"] >= 10_000, (data["dropped_orphans"], gone)
    assert_same_rows(expected, uri)


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")  # MLflow's migration scripts, in-process
def test_mispredicted_read_ahead_is_read_again(rich_source, target, monkeypatch):
    """Reads started on a wrong guess of the target's types (BIGINT taken for integer: the readers'
    binary int4 encoding of timestamps overflows, or encodes other bytes) are thrown away and the
    tables read again with the real types; every row still arrives intact."""
    from migration import predict
    from migration.core import Options, migrate
    from migration.report import Reporter

    monkeypatch.setitem(predict._TYPES, "BIGINT", "integer")
    uri, _ = target
    result = migrate(Options(source=str(rich_source), target=uri, probe=False, rebuild_threshold=0,
                             task_rows=400), Reporter(quiet=True))
    assert result.created_schema and all(result.verified.values())
    again = set(result.read_ahead["read_again"])
    assert {"metrics", "runs", "latest_metrics"} <= again, result.read_ahead
    assert set(result.read_ahead["reused"]) and not again & set(result.read_ahead["reused"])
    assert assert_same_rows(rich_source, uri) == sum(t.copied_rows for t in result.tables)


def test_started_server_target_merges_default_rows(rich_source, started_target):
    """A target a server already started on (experiment 0, workspace 'default'): merged, not failed."""
    uri, _ = started_target
    with pg_connect(uri) as conn:
        assert conn.execute("SELECT count(*) FROM experiments").fetchone()[0] == 1
    result = run_cli(str(rich_source), uri, "--no-probe")
    assert result.returncode == 0, result.stderr
    assert "replaced by the source" in result.stdout
    assert_same_rows(rich_source, uri)  # the source's experiment 0 and workspace won


def test_second_run_refused_then_replace(rich_source, target):
    uri, _ = target
    assert run_cli(str(rich_source), uri, "--no-probe").returncode == 0
    before = snapshot(uri)
    again = run_cli(str(rich_source), uri, "--no-probe")
    assert again.returncode == 3
    assert "already holds MLflow data" in again.stderr and "--mode replace" in again.stderr
    assert snapshot(uri) == before, "a refused run must not touch the target"

    dry = run_cli(str(rich_source), uri, "--dry-run", "--mode", "replace")
    assert dry.returncode == 0 and "would empty" in dry.stdout
    assert snapshot(uri) == before

    replaced = run_cli(str(rich_source), uri, "--mode", "replace", "--no-probe")
    assert replaced.returncode == 0, replaced.stderr
    assert_same_rows(rich_source, uri)


def test_killed_run_leaves_empty_target_empty(tmp_path_factory, pg, target):
    """SIGKILL in the middle of the copy: PostgreSQL rolls the one transaction back, schema included."""
    from tests.migration.conftest import _make_source

    big = _make_source(tmp_path_factory.mktemp("big") / "big.db", 300_000)
    uri, _ = target
    before = snapshot(uri)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "migration", str(big), uri, "--no-probe", "-v"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    seen = ""
    with pg_connect(pg.uri("postgres")) as admin:
        admin.autocommit = True
        while time.time() < deadline:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'COPY%metrics%FROM STDIN%'"
                                ).fetchone()
            if row[0]:
                seen = "copy"
                break
            if proc.poll() is not None:
                break
            time.sleep(0.02)
    children = child_pids(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the migration process only: its readers must not outlive it
    proc.wait(timeout=30)
    assert seen == "copy", "the migration never reached the COPY of metrics"
    assert len(children) == 2, children
    try:
        assert processes_gone(children), "reader processes outlived the killed migration"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    assert snapshot(uri) == before == {}, "an interrupted migration must leave the target as it was"
    # its copy of the source was left behind (no cleanup runs on SIGKILL); the next run sweeps it away
    from migration.source import WORKDIR_PREFIX, remove_stale_copies

    left = list(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}{proc.pid}-*"))
    assert left and any((d / "source-copy.db").exists() for d in left)
    assert set(left) <= set(remove_stale_copies()) and not any(d.exists() for d in left)


def test_probe_child_does_not_outlive_a_killed_migration(tmp_path):
    """The MLflow probe starts importing first thing; a migration killed meanwhile takes it along (at
    once: without that it would end only after its import, seconds later, on reading the closed stdin)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = ("import time\nfrom migration.probe import Probe\np = Probe()\nprint(p.proc.pid, flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        child = int(proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert processes_gone([child], within=1.0), "the probe child outlived the killed migration"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_refused_value_rolls_back_started_target(source_copy, started_target):
    """A value PostgreSQL cannot hold (text with a NUL character, which SQLite keeps): readable error,
    exit 1, target unchanged. (Too long for its varchar is no such value: see the widening test.)"""
    uri, _ = started_target
    before = snapshot(uri)
    conn = sqlite3.connect(source_copy)
    run_uuid = conn.execute("SELECT run_uuid FROM runs LIMIT 1").fetchone()[0]
    conn.execute("INSERT INTO params (key, value, run_uuid) VALUES ('nul', ?, ?)", ("before\x00after", run_uuid))
    conn.commit()
    conn.close()
    dry = run_cli(str(source_copy), uri, "--dry-run")  # says so before a real run is tried
    assert dry.returncode == 1 and "would refuse text holding NUL characters" in dry.stderr, dry.stderr
    assert "params.value (1 row)" in dry.stderr and "--replace-nul" in dry.stderr
    result = run_cli(str(source_copy), uri, "--no-probe")
    assert result.returncode == 1, result.stderr
    assert "params" in result.stderr and "0x00" in result.stderr and "NUL character" in result.stderr
    assert f"params.value: 1 row, first key='nul', run_uuid='{run_uuid}'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(uri) == before


def _put_nul_characters(path: Path, nul: str) -> dict[str, int]:
    """A param value and a registered model's name (with every foreign key naming it) holding `nul`;
    returns the rows written per table.column."""
    conn = sqlite3.connect(path)
    try:
        run_uuid = conn.execute("SELECT run_uuid FROM runs ORDER BY run_uuid LIMIT 1").fetchone()[0]
        conn.execute("INSERT INTO params (key, value, run_uuid) VALUES ('nul', ?, ?)", (f"before{nul}after", run_uuid))
        written = {"params.value": 1}
        fks = [(t, fk[3], fk[2], fk[4]) for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
               for fk in conn.execute(f'PRAGMA foreign_key_list("{t}")')]
        named = [("registered_models", "name")]  # and, transitively, every column a foreign key links to it
        while more := [(t, c) for t, c, pt, pc in fks if (pt, pc) in named and (t, c) not in named]:
            named += more
        for table, column in named:
            n = conn.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE "{column}" = ?',
                             (f"model{nul}1", "model-1")).rowcount
            if n:
                written[f"{table}.{column}"] = n
        conn.commit()
        return written
    finally:
        conn.close()


def test_replace_nul_characters_when_asked(rich_source, target, tmp_path):
    """--replace-nul: every NUL becomes U+FFFD in the tool's copy (the source file stays as it is), keys
    and the foreign keys naming them alike; counted per column; rows equal the source with the same
    replacement made independently; MLflow works."""
    uri, _ = target
    source, expected = tmp_path / "source.db", tmp_path / "expected.db"
    shutil.copyfile(rich_source, source)
    shutil.copyfile(rich_source, expected)
    written = _put_nul_characters(source, "\x00")
    assert _put_nul_characters(expected, "\ufffd") == written
    assert len(written) >= 4, written  # the model's versions, tags and aliases name it too
    before = _digest(source)
    summary = tmp_path / "result.json"
    result = run_cli(str(source), uri, "--replace-nul", "--json", str(summary))
    assert result.returncode == 0, result.stderr
    assert _digest(source) == before
    data = json.loads(summary.read_text())
    assert data["replaced_nul"] == dict(sorted(written.items())), data["replaced_nul"]
    assert data["verified"] and data["probe"]["ok"]
    assert "U+FFFD" in result.stdout
    assert assert_same_rows(expected, uri) == data["rows"]


def test_odd_storage_classes_are_converted(source_copy, target):
    """Values SQLite stored with another storage class than the column's: converted, then verified."""
    uri, _ = target
    conn = sqlite3.connect(source_copy)
    run_uuid = conn.execute("SELECT run_uuid FROM runs LIMIT 1").fetchone()[0]
    conn.execute("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                 "VALUES ('txt', 'NaN', 1, ?, 0, 1)", (run_uuid,))
    conn.execute("INSERT INTO tags (key, value, run_uuid) VALUES ('blob', X'68c3a96c6c6f', ?)", (run_uuid,))
    conn.commit()
    conn.close()
    result = run_cli(str(source_copy), uri, "--no-probe", "--json", "-")
    assert result.returncode == 0, result.stderr
    with pg_connect(uri) as pgc:
        value = pgc.execute("SELECT value FROM metrics WHERE key = 'txt'").fetchone()[0]
        assert math.isnan(value)
        assert pgc.execute("SELECT value FROM tags WHERE key = 'blob'").fetchone()[0] == "héllo"
    assert "per-value checks" in result.stdout


def test_text_that_is_not_utf8_is_named(source_copy, target):
    """MLflow never writes it, but SQLite keeps whatever bytes it is given as TEXT: PostgreSQL cannot
    hold them, and the error names the table and column (read again carefully after the fast path)."""
    uri, _ = target
    _alter_source(source_copy,
                  "UPDATE tags SET value = CAST(x'66ff6f' AS TEXT) WHERE rowid = (SELECT min(rowid) FROM tags)")
    result = run_cli(str(source_copy), uri, "--no-probe")
    assert result.returncode == 1, result.stderr
    assert "tags" in result.stderr and "UTF-8 column 'value'" in result.stderr, result.stderr
    assert snapshot(uri) == {}


def test_older_source_is_upgraded_on_a_copy(tmp_path, target):
    """A database written by MLflow 2.9.2: upgraded on a private copy, the file itself untouched."""
    uri, _ = target
    src = tmp_path / "old.db"
    shutil.copyfile(FIXTURES / "mlflow-2.9.2.db", src)
    before = _digest(src)
    result = run_cli(str(src), uri, "--no-probe")
    assert result.returncode == 0, result.stderr
    assert "upgraded from revision acf3f17fdcc7" in result.stdout
    assert _digest(src) == before

    # independent expectation: the same upgrade done by MLflow itself on another copy
    assert_same_rows(_upgraded_by_mlflow(FIXTURES / "mlflow-2.9.2.db", tmp_path), uri)
    with pg_connect(uri) as conn:
        assert conn.execute("SELECT count(*) FROM metrics WHERE is_nan").fetchone()[0] == 3
        assert conn.execute("SELECT name FROM experiments WHERE experiment_id = 1").fetchone()[0] == "legacy ünïcödé"


@pytest.mark.parametrize("version", ["1.20.2", "2.16.2", "3.3.2"])
def test_databases_of_each_mlflow_era(version, tmp_path, target):
    """Databases written by MLflow 1.x, 2.x and an earlier 3.x (fixtures/README.md): each equals, row
    by row, MLflow's own upgrade of another copy, and MLflow works on the target."""
    uri, _ = target
    fixture = FIXTURES / f"mlflow-{version}.db"
    src = tmp_path / "source.db"
    shutil.copyfile(fixture, src)
    summary = tmp_path / "result.json"
    result = run_cli(str(src), uri, "--json", str(summary))
    assert result.returncode == 0, result.stderr
    data = json.loads(summary.read_text())
    assert data["upgraded_source"] and data["verified"] and data["probe"]["ok"], data
    assert _digest(src) == _digest(fixture)

    assert assert_same_rows(_upgraded_by_mlflow(fixture, tmp_path), uri) > 400


def test_source_with_workspaces(tmp_path, target):
    """A source from MLflow 3 with workspaces enabled, with rows in a workspace besides default: MLflow
    started without MLFLOW_ENABLE_WORKSPACES refuses such a database, so the probe runs with it, and
    the summary tells the user to run the server so."""
    uri, _ = target
    src = tmp_path / "workspaces.db"
    workspace_source.make(src)

    summary = tmp_path / "result.json"
    result = run_cli(str(src), uri, "--json", str(summary))  # the tool's environment: workspaces not enabled
    assert result.returncode == 0, result.stderr
    data = json.loads(summary.read_text())
    assert data["workspaces"] == [workspace_source.TEAM] and data["probe"]["ok"], data
    assert "MLFLOW_ENABLE_WORKSPACES=true" in result.stdout
    assert_same_rows(src, uri)
    with pg_connect(uri) as conn:
        assert sorted(conn.execute(
            "SELECT workspace, name FROM experiments WHERE name = 'shared name'").fetchall()) == [
            ("default", "shared name"), ("team-a", "shared name")]
    found = mlflow_child(uri, (
        "import os\nos.environ['MLFLOW_ENABLE_WORKSPACES'] = 'true'\n"
        "from mlflow.utils.workspace_context import WorkspaceContext\n"
        "with WorkspaceContext('team-a'):\n"
        "    c = MlflowClient(uri, uri)\n"
        "    exp = c.get_experiment_by_name('shared name')\n"
        "    runs = c.search_runs([exp.experiment_id])\n"
        "    versions = c.search_model_versions(\"name = 'shared-model'\")\n"
        "print(json.dumps({'nan': math.isnan(runs[0].data.metrics['m']), 'sources': [v.source for v in versions]}))"))
    assert found == {"nan": True, "sources": ["s3://b/team-a/model"]}


def test_workspaces_enabled_in_the_environment(rich_source, target):
    """A user who exports MLFLOW_ENABLE_WORKSPACES=true (for their server) runs the tool with it: MLflow
    then wants an active workspace, and the probe works in the default one."""
    uri, _ = target
    result = run_cli(str(rich_source), uri, env={"MLFLOW_ENABLE_WORKSPACES": "true"})
    assert result.returncode == 0, result.stderr
    assert "MLFLOW_ENABLE_WORKSPACES=true" not in result.stdout  # no workspace besides default: no advice


def test_newer_source_is_refused(source_copy, target):
    uri, _ = target
    _alter_source(source_copy, "UPDATE alembic_version SET version_num = 'ffffffffffff'")
    result = run_cli(str(source_copy), uri, "--no-probe")
    assert result.returncode == 3
    assert "newer MLflow" in result.stderr and "ffffffffffff" in result.stderr
    assert snapshot(uri) == {}


def test_rewrite_artifact_root(rich_source, target):
    uri, _ = target
    old_root = str(rich_source.parent / "artifacts")
    result = run_cli(str(rich_source), uri, "--no-probe", "--rewrite-artifact-root", f"{old_root}=s3://bucket/mlflow")
    assert result.returncode == 0, result.stderr
    with pg_connect(uri) as conn:
        locations = dict(conn.execute("SELECT name, artifact_location FROM experiments").fetchall())
        assert locations["alpha"] == "s3://bucket/mlflow/alpha"
        assert locations["beta ünïcödé 🧪"] == "s3://bucket/mlflow/beta"  # the file:// form too
        sources = {r[0] for r in conn.execute("SELECT source FROM model_versions")}
        assert all(s.startswith("s3://bucket/mlflow/alpha/") for s in sources), sources
        assert not conn.execute("SELECT count(*) FROM runs WHERE artifact_uri LIKE %s", (old_root + "%",)).fetchone()[0]
    assert "artifact locations rewritten" in result.stdout


def test_dry_run_writes_nothing(rich_source, target):
    uri, _ = target
    result = run_cli(str(rich_source), uri, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would be copied" in result.stdout and "schema would be created" in result.stdout
    assert snapshot(uri) == {}


@pytest.mark.parametrize("driver", ["postgresql", "postgresql+psycopg"])
def test_target_uri_drivers_and_masking(rich_source, pg, driver):
    name = "drv_" + driver.replace("+", "_")
    pg.create_database(name, owner="o_" + name, owner_password=OWNER_PASSWORD)
    uri = pg.uri(name, "o_" + name, OWNER_PASSWORD, driver="psycopg").replace("postgresql+psycopg", driver)
    result = run_cli(str(rich_source), uri, "--no-probe")
    assert result.returncode == 0, result.stderr
    assert OWNER_PASSWORD not in result.stdout + result.stderr
    bad = run_cli(str(rich_source), uri.replace("127.0.0.1", "127.0.0.1").replace(name, name + "_missing"))
    assert bad.returncode == 1
    assert "cannot connect" in bad.stderr and OWNER_PASSWORD not in bad.stderr
    from urllib.parse import quote

    assert quote(OWNER_PASSWORD, safe="") not in bad.stderr + bad.stdout


def test_target_role_that_cannot_create_the_schema(rich_source, pg, target):
    """An empty target whose role may not create tables (PostgreSQL 15 no longer lets every role create in
    `public`) is refused up front, in --dry-run too; a role that fails while MLflow creates the schema
    (here: read-only transactions) gets PostgreSQL's reason, not SQLAlchemy's dump. Nothing is written."""
    _, name = target
    role = "plain_" + name[2:]
    pg.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    uri = pg.uri(name, role, f"pw-{role}")
    for extra in ([], ["--dry-run"]):
        refused = run_cli(str(rich_source), uri, "--no-probe", *extra)
        assert refused.returncode == 3, refused.stderr
        assert ("may not create tables in schema 'public'" in refused.stderr
                and "GRANT CREATE ON SCHEMA" in refused.stderr)
        assert f"pw-{role}" not in refused.stdout + refused.stderr

    pg.psql(f"GRANT CREATE ON SCHEMA public TO {role}", name)
    pg.psql(f"ALTER ROLE {role} SET default_transaction_read_only = on")
    failed = run_cli(str(rich_source), uri, "--no-probe")
    assert failed.returncode == 1, failed.stderr
    assert "MLflow could not create its schema on the target: cannot execute CREATE TABLE in a read-only " \
           "transaction; nothing was committed" in failed.stderr, failed.stderr
    assert "[SQL:" not in failed.stderr and "Traceback" not in failed.stderr
    assert pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", name).strip() == "0"


def test_usage_errors(tmp_path, rich_source):
    assert run_cli(str(tmp_path / "missing.db"), "postgresql://u:p@127.0.0.1:1/x").returncode == 2
    not_pg = run_cli(str(rich_source), "mysql://u:hunter22@host/db")
    assert not_pg.returncode == 2 and "hunter22" not in not_pg.stderr
    (tmp_path / "text.db").write_text("not sqlite")
    assert run_cli(str(tmp_path / "text.db"), "postgresql://u:p@127.0.0.1:1/x").returncode == 2


@pytest.mark.parametrize("table", ["metrics", "params"])
def test_value_changed_in_flight_fails_verification(source_copy, started_target, table):
    """A value altered between the COPY and the verification (here by a trigger on the target, row counts
    unchanged; one float by a few ulps, or one text value by one character): the content check catches
    it, the careful re-run too, exit 4, nothing committed."""
    uri, _ = started_target
    src = sqlite3.connect(source_copy)
    if table == "metrics":
        key, run_uuid, step, ts = src.execute(
            "SELECT key, run_uuid, step, timestamp FROM metrics WHERE is_nan = 0 AND value != 0 "
            "ORDER BY run_uuid, key, step LIMIT 1 OFFSET 777").fetchone()
        cond = f"NEW.key = '{key}' AND NEW.run_uuid = '{run_uuid}' AND NEW.step = {step} AND NEW.timestamp = {ts}"
        change = "NEW.value := NEW.value * (1 + 1e-15)"
    else:
        key, run_uuid = src.execute(
            "SELECT key, run_uuid FROM params ORDER BY run_uuid, key LIMIT 1 OFFSET 5").fetchone()
        cond = f"NEW.key = '{key}' AND NEW.run_uuid = '{run_uuid}'"
        change = "NEW.value := left(NEW.value, -1) || chr(ascii(right(NEW.value, 1)) + 1)"
    src.close()
    with pg_connect(uri) as conn:
        conn.execute(f"""
            CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF {cond} THEN {change}; END IF; RETURN NEW; END $$""")
        conn.execute(f'CREATE TRIGGER tamper BEFORE INSERT ON "{table}" FOR EACH ROW EXECUTE FUNCTION tamper()')
    before = snapshot(uri)
    result = run_cli(str(source_copy), uri, "--no-probe")
    assert result.returncode == 4, result.stderr
    assert "verification failed" in result.stderr and table in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(uri) == before
    with pg_connect(uri) as conn:  # the trigger works: without it, the same migration succeeds
        conn.execute(f'DROP TRIGGER tamper ON "{table}"')
    result = run_cli(str(source_copy), uri, "--no-probe")
    assert result.returncode == 0, result.stderr
