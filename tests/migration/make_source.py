"""Build an MLflow SQLite tracking database with MLflow's own client, for the migration tests (the
bulk metric rows with SQL into MLflow's tables, `_bulk_metrics`).

Run as a child process (`python -m tests.migration.make_source PATH [--metrics N]`) so that MLflow's
global state (tracking URI, active run, tracing) never leaks into the test process.

What it holds: experiments (one deleted, tags, odd names), runs in several states (one deleted),
params/tags with odd text (tabs, newlines, backslashes, quotes, `\\N`, unicode, emoji, empty),
metrics with NaN, +/-inf, -0.0, huge/tiny values and many steps, datasets + inputs + input tags,
registered models with tags, versions, version tags and aliases, logged models with params/metrics,
and traces with spans, tags, metadata and an assessment.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

ODD_TEXT = [
    "tab\there", "new\nline", "carriage\rreturn", "back\\slash", "\\N", "quote'\"", "ünïcödé ✓", "emoji 🧪🚀",
    "", " leading and trailing ", "comma,semi;colon", "null-like NULL", "x" * 500, "pipe|and\\tescaped",
]
ODD_FLOATS = [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1e-310, 5e-324, 1.7976931348623157e308,
              -1.7976931348623157e308, 0.1, 1 / 3, 123456789012345.6, 1e15, 2.5e15, 1e16, -42.0]


def build(path: str, metrics: int) -> None:
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    uri = f"sqlite:///{path}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    art = os.path.join(os.path.dirname(os.path.abspath(path)), "artifacts")

    exp_a = client.create_experiment("alpha", artifact_location=f"{art}/alpha", tags={"team": "ml", "odd": ODD_TEXT[0]})
    exp_b = client.create_experiment("beta ünïcödé 🧪", artifact_location=f"file://{art}/beta")
    exp_c = client.create_experiment("to-delete", artifact_location=f"{art}/c")
    client.delete_experiment(exp_c)
    for i, text in enumerate(ODD_TEXT):
        client.set_experiment_tag(exp_a, f"odd.{i}", text)

    runs = []
    for i in range(4):
        run = client.create_run(exp_a if i % 2 == 0 else exp_b, run_name=f"run-{i}", tags={"mlflow.user": "tester"})
        runs.append(run.info.run_id)
        params = [Param(f"p{j}", text) for j, text in enumerate(ODD_TEXT)]
        tags = [RunTag(f"t{j}", text) for j, text in enumerate(ODD_TEXT)]
        odd = [Metric("odd", v, 1_700_000_000_000 + k, k) for k, v in enumerate(ODD_FLOATS)]
        client.log_batch(run.info.run_id, metrics=odd, params=params, tags=tags)
    client.set_terminated(runs[0], "FINISHED")
    client.set_terminated(runs[1], "FAILED")
    client.set_terminated(runs[2], "KILLED")
    client.delete_run(runs[3])

    _bulk_metrics(path, runs[:2], max(1, metrics // 2))
    bulk = client.get_run(runs[0]).data.metrics
    assert len(client.get_metric_history(runs[0], "loss0")) == len(range(0, max(1, metrics // 2), 7)), "bulk rows"
    assert set(bulk) >= {"odd", "loss0"}, bulk

    # datasets and inputs
    import pandas as pd

    with mlflow.start_run(run_id=runs[0]):
        df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y\tz", "ü"]})
        dataset = mlflow.data.from_pandas(df, source="s3://bucket/data.csv", name="train ✓")
        mlflow.log_input(dataset, context="training", tags={"split": "train"})

    # model registry: models, versions, tags, aliases
    for m in range(2):
        name = f"model-{m}" if m else "model ünïcödé"
        client.create_registered_model(name, tags={"owner": "me", "odd": ODD_TEXT[1]}, description=ODD_TEXT[3])
        for v in range(3):
            mv = client.create_model_version(name, source=f"{art}/alpha/{runs[0]}/artifacts/model", run_id=runs[0],
                                             tags={"v": str(v), "odd": ODD_TEXT[v]})
        client.set_registered_model_alias(name, "champion", mv.version)
        client.set_model_version_tag(name, "1", "stage", "old")

    # logged models with params and metrics
    with mlflow.start_run(run_id=runs[1]):
        lm = mlflow.initialize_logged_model(name="lm-1", params={"alpha": "0.5", "odd": ODD_TEXT[0]},
                                            tags={"k": "v"})
        mlflow.log_metric("acc", 0.9, model_id=lm.model_id)
        mlflow.log_metric("nan_metric", float("nan"), model_id=lm.model_id)

    # traces (spans, tags, metadata) and an assessment
    mlflow.set_experiment(experiment_id=exp_a)
    for k in range(3):
        with mlflow.start_span(name=f"root-{k}") as span:
            span.set_inputs({"q": ODD_TEXT[k], "k": k})
            with mlflow.start_span(name="child") as child:
                child.set_attribute("odd", ODD_TEXT[4])
                child.set_outputs({"a": 1.5})
            span.set_outputs({"answer": ODD_TEXT[7]})
        trace_id = span.trace_id
        client.set_trace_tag(trace_id, "odd", ODD_TEXT[1])
    from mlflow.entities import AssessmentSource

    mlflow.log_feedback(trace_id=trace_id, name="quality", value=True,
                        source=AssessmentSource(source_type="HUMAN", source_id="tester"), rationale=ODD_TEXT[2])
    mlflow.log_feedback(trace_id=trace_id, name="score", value=0.75,
                        source=AssessmentSource(source_type="LLM_JUDGE", source_id="judge"))


def _bulk_metrics(path: str, run_ids: list, per_run: int) -> None:
    """Enough metric rows for multi-task, index-ordered reads and index rebuilds, written with SQL in
    MLflow's own tables (metrics, and latest_metrics as MLflow keeps it: the row of highest step,
    then timestamp, then value): through the client's log_batch, 300,000 rows took a minute of CI."""
    import sqlite3

    rows = [(f"loss{n % 7}", math.sin(n) * 10 ** (n % 9 - 4), 1_700_000_000_000 + n, run_id, n // 7, False)
            for run_id in run_ids for n in range(per_run)]
    with sqlite3.connect(path) as connection:
        connection.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                               "VALUES (?, ?, ?, ?, ?, ?)", rows)
        connection.execute(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
            "SELECT key, value, timestamp, step, is_nan, run_uuid FROM (SELECT *, row_number() OVER ("
            "PARTITION BY run_uuid, key ORDER BY step DESC, timestamp DESC, value DESC) AS latest FROM metrics "
            "WHERE key LIKE 'loss%') WHERE latest = 1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--metrics", type=int, default=20_000)
    args = parser.parse_args()
    build(args.path, args.metrics)


if __name__ == "__main__":
    sys.exit(main())
