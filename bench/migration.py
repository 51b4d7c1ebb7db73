"""Benchmark: this repo's `python -m migration` against the published pgloader recipe.

    venv/bin/python bench/migration.py [--metrics 1000000] [--metrics-per-run 10000] [--db PATH] [--repeat 3]

1. Generates (once; cached at --db) an MLflow SQLite database with ~1 M metric rows, written through
   MLflow's own client (`MlflowClient.log_batch`), plus params and tags. A database at --db that this
   script did not generate (no `.metrics` marker beside it) is used as it is, never replaced.
2. Starts a private PostgreSQL cluster (rehearsal/postgres.py; Debian's postgresql binaries).
3. For each repeat, two fresh databases whose schema MLflow created (`SqlAlchemyStore`, the recipe's
   first step; not in either tool's time), and a third, empty one for the tool alone:
   - pgloader (Debian package) as published: `WITH data only, truncate, reset no sequences` and
     `SET session_replication_role = 'replica'`, which needs a superuser: pgloader connects as the
     cluster superuser (the grant it needs), the tool as a plain database owner;
   - `python -m migration SOURCE TARGET` (schema present -> data only), verification and MLflow
     probe included in its wall time.
   The headline ratio is pgloader's data step against the tool into a ready schema; the tool into the
   empty database (it creates the schema itself) is also set against the whole recipe, schema step
   (timed) plus pgloader.
4. Checks each result with the same correctness probe (MLflow on the target: create an experiment,
   `set_experiment` + a run landing in it, a registered model version) and compares row counts.
Prints the wall times (median of the repeats), the ratio, and each side's correctness. Figures
measured so far, and those behind the tool's design choices: bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rehearsal.postgres import PostgresCluster  # noqa: E402

PY = sys.executable


def generate(path: Path, metrics: int, per_run: int = 10_000) -> None:
    """~`metrics` metric rows over runs of `per_run` metrics each (10 keys, per_run/10 steps), in
    log_batch calls of up to 1000 rows; 20 params and 10 tags per run."""
    steps = max(1, per_run // 10)
    code = f"""
import math, os
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
uri = "sqlite:///{path}"
client = MlflowClient(uri, uri)
exp = client.create_experiment("bench", artifact_location="/srv/mlruns/bench")
done = 0
while done < {metrics}:
    run = client.create_run(exp)
    rid = run.info.run_id
    client.log_batch(rid, params=[Param(f"p{{i}}", str(i)) for i in range(20)],
                     tags=[RunTag(f"t{{i}}", "v" * i) for i in range(10)])
    for step0 in range(0, {steps}, 100):
        batch = [Metric(f"m{{k}}", math.sin(step * k + 0.1) if (step + k) % 97 else float("nan"),
                        1_700_000_000_000 + step, step) for step in range(step0, min(step0 + 100, {steps}))
                 for k in range(10)]
        client.log_batch(rid, metrics=batch)
        done += len(batch)
        if done >= {metrics}:
            break
    client.set_terminated(rid)
"""
    tmp = path.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run([PY, "-c", code.replace(str(path), str(tmp))], check=True, env=_env(), capture_output=True)
    tmp.rename(path)
    print(f"generated {path} in {time.perf_counter() - started:.0f} s")


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), **extra)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def mlflow_schema(uri: str) -> float:
    """The recipe's first step: MLflow creates its schema. Returns the wall time."""
    code = ("from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore\n"
            f"SqlAlchemyStore({uri!r}, '/srv/mlruns')\n")
    started = time.perf_counter()
    subprocess.run([PY, "-c", code], check=True, env=_env(), capture_output=True)
    return time.perf_counter() - started


PROBE = """
import json, math, sys, uuid, mlflow
from mlflow import MlflowClient
uri = sys.argv[1]
mlflow.set_tracking_uri(uri); mlflow.set_registry_uri(uri)
client = MlflowClient(uri, uri)
checks = {}
tag = uuid.uuid4().hex[:8]
try:
    eid = client.create_experiment("probe-" + tag); checks["create_experiment"] = True
except Exception as exc:
    checks["create_experiment"] = f"{type(exc).__name__}: {str(exc)[:160]}"
try:
    exp = mlflow.set_experiment("probe2-" + tag)
    with mlflow.start_run() as run:
        mlflow.log_metric("x", float("nan"))
    got = client.get_run(run.info.run_id)
    ok = exp is not None and got.info.experiment_id == exp.experiment_id and math.isnan(got.data.metrics["x"])
    checks["set_experiment_run"] = True if ok else f"run landed in experiment {got.info.experiment_id}"
except Exception as exc:
    checks["set_experiment_run"] = f"{type(exc).__name__}: {str(exc)[:160]}"
try:
    client.create_registered_model("probe-model-" + tag)
    client.create_model_version("probe-model-" + tag, source="s3://b/m")
    checks["model_version"] = True
except Exception as exc:
    checks["model_version"] = f"{type(exc).__name__}: {str(exc)[:160]}"
print(json.dumps(checks))
"""


def probe(uri: str) -> dict:
    out = subprocess.run([PY, "-c", PROBE, uri], env=_env(), capture_output=True, text=True, timeout=300)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"probe": f"crashed: {out.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def row_counts_match(db: Path, cluster: PostgresCluster, name: str) -> bool:
    src = sqlite3.connect(db)
    tables = {t: src.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
              for (t,) in src.execute("SELECT name FROM sqlite_master WHERE type='table'") if t != "alembic_version"}
    src.close()
    for table, n in tables.items():
        if n and int(cluster.psql(f'SELECT count(*) FROM "{table}"', name).strip()) != n:
            return False
    return True


def run_pgloader(db: Path, cluster: PostgresCluster, name: str) -> float:
    load = Path(tempfile.mkdtemp(prefix="pgloader-")) / "mlflow.load"
    load.write_text(
        "LOAD DATABASE\n"
        f"  FROM sqlite://{db}\n"
        f"  INTO postgresql://{cluster.superuser}:{cluster.superuser_password}@127.0.0.1:{cluster.port}/{name}\n"
        "  WITH data only, truncate, reset no sequences\n"
        "  SET PostgreSQL PARAMETERS session_replication_role = 'replica';\n"
    )
    started = time.perf_counter()
    result = subprocess.run(["pgloader", str(load)], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    shutil.rmtree(load.parent, ignore_errors=True)
    if result.returncode != 0:
        raise SystemExit(f"pgloader failed: {result.stderr[-2000:]}")
    return elapsed


def run_tool(db: Path, uri: str, extra: list[str]) -> tuple[float, dict]:
    out = Path(tempfile.mkdtemp(prefix="migration-")) / "result.json"
    started = time.perf_counter()
    result = subprocess.run([PY, "-m", "migration", str(db), uri, "--quiet", "--json", str(out), *extra],
                            cwd=REPO, env=_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"migration failed ({result.returncode}): {result.stderr[-2000:]}")
    data = json.loads(out.read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    return elapsed, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", type=int, default=1_000_000)
    parser.add_argument("--metrics-per-run", type=int, default=10_000,
                        help="metric rows per run (default %(default)s: 100 runs; 200 gives 5,000 runs, more "
                             "params, tags and latest_metrics rows)")
    parser.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "mlflow-bench" / "bench.db",
                        help="source database: generated (and cached) when missing or when this script generated "
                             "it with other --metrics/--metrics-per-run; a database made otherwise is used as it is")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("pgloader"):
        raise SystemExit("pgloader not found: apt-get install pgloader")

    db = args.db
    db.parent.mkdir(parents=True, exist_ok=True)
    marker = db.with_suffix(".metrics")  # written next to the databases this script generates
    shape = str(args.metrics) + ("" if args.metrics_per_run == 10_000 else f"/{args.metrics_per_run}")
    if not db.exists() or (marker.exists() and marker.read_text() != shape):
        db.unlink(missing_ok=True)
        generate(db, args.metrics, args.metrics_per_run)
        marker.write_text(shape)
    conn = sqlite3.connect(db)
    rows = sum(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
               for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    metrics = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    conn.close()
    print(f"source: {db} ({db.stat().st_size / 1e6:.0f} MB, {rows:,} rows, {metrics:,} metric rows); "
          f"{os.cpu_count()} cores")

    cluster = PostgresCluster().start()
    try:
        pgl_times, tool_times, empty_times, schema_times = [], [], [], []
        pgl_ok = tool_ok = None
        for i in range(args.repeat):
            a, b, c = f"pgl_{i}", f"tool_{i}", f"empty_{i}"
            schema_times.append(mlflow_schema(cluster.create_database(a).replace("+psycopg2", "")))
            tool_uri = cluster.create_database(b, owner=f"owner_{i}", owner_password="bench-pass")
            mlflow_schema(tool_uri)
            empty_uri = cluster.create_database(c, owner=f"owner_e{i}", owner_password="bench-pass")
            # alternate the order so that neither side always runs on a warmer cache
            if i % 2 == 0:
                pgl_times.append(run_pgloader(db, cluster, a))
                t, data = run_tool(db, tool_uri, [])
            else:
                t, data = run_tool(db, tool_uri, [])
                pgl_times.append(run_pgloader(db, cluster, a))
            tool_times.append(t)
            e, _ = run_tool(db, empty_uri, [])
            empty_times.append(e)
            print(f"  run {i + 1}: pgloader {pgl_times[-1]:.2f} s, migration {t:.2f} s "
                  f"(into an empty database, schema created by the tool: {e:.2f} s)")
            if i == 0:
                counts_a, counts_b = row_counts_match(db, cluster, a), row_counts_match(db, cluster, b)
                pgl_ok = (probe(cluster.uri(a, driver="psycopg2")), counts_a)
                tool_ok = (probe(tool_uri), counts_b, data)
        pgl, tool, empty = (statistics.median(x) for x in (pgl_times, tool_times, empty_times))
        recipe = statistics.median(s + p for s, p in zip(schema_times, pgl_times))
        print()
        print(f"pgloader recipe (superuser, session_replication_role=replica): {pgl:6.2f} s "
              f"({rows / pgl:,.0f} rows/s)")
        print(f"python -m migration (database owner, verified + probed):     {tool:6.2f} s "
              f"({rows / tool:,.0f} rows/s)")
        print(f"ratio pgloader / migration: {pgl / tool:.2f}x  (median of {args.repeat})")
        print(f"migration into an empty database (schema by MLflow, in the same transaction): {empty:.2f} s; "
              f"the whole recipe (MLflow's schema step {statistics.median(schema_times):.2f} s + pgloader): "
              f"{recipe:.2f} s, ratio {recipe / empty:.2f}x")
        phases = tool_ok[2]["phases"]
        print("migration phases (run 1): " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
        print()

        def verdict(checks: dict, counts: bool) -> str:
            bad = {k: v for k, v in checks.items() if v is not True}
            return ("PASS" if not bad and counts else "FAIL") + \
                f" (row counts {'match' if counts else 'DIFFER'}; " + \
                (", ".join(f"{k}: {v}" for k, v in bad.items()) or "MLflow probe ok") + ")"

        print(f"correctness, pgloader recipe: {verdict(*pgl_ok)}")
        print(f"correctness, migration tool:  {verdict(tool_ok[0], tool_ok[1])}; "
              f"verified={tool_ok[2]['verified']}, tool's own probe ok={tool_ok[2]['probe']['ok']}")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
