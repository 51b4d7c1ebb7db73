"""Write tracking and registry data with an OLD MLflow straight into a database, print what it wrote.

    OLD_MLFLOW_DB_URI=postgresql+psycopg2://... python write_tracking_data.py

Run by tests/rehearsal/test_14_mlflow_upgrade.py in a side virtualenv holding the old MLflow (not
the project's venv). The URI comes from the environment (it holds the role's password). The old
MLflow creates its schema at its own Alembic head on first use. Prints one JSON object (last line):
what the current MLflow must serve back after the stack's schema-upgrade step.
"""

import json
import os
import sys

uri = os.environ["OLD_MLFLOW_DB_URI"]
for name in list(os.environ):
    if name.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_")):
        del os.environ[name]

import mlflow  # noqa: E402
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

client = MlflowClient(tracking_uri=uri, registry_uri=uri)
T0 = 1_700_000_000_000
ODD = ["tab\there", "new\nline", "quote'\"", "ünïcödé ✓", "", "x" * 300]
VALUES = [0.5, float("nan"), float("inf"), float("-inf"), -0.0, 1 / 3]

experiment_id = client.create_experiment("written by mlflow %s ✓" % mlflow.__version__,
                                         artifact_location="/srv/mlruns/old", tags={"team": "platform"})
client.set_experiment_tag(experiment_id, "odd", ODD[0])
runs = []
for i, status in enumerate(["FINISHED", "FAILED", "RUNNING"]):
    run = client.create_run(experiment_id, start_time=T0 + i, tags={"mlflow.runName": "old-%d" % i})
    run_id = run.info.run_id
    client.log_batch(run_id,
                     metrics=[Metric("loss", v, T0 + k, k) for k, v in enumerate(VALUES)]
                     + [Metric("acc", 0.1 * k + i, T0 + k, k) for k in range(5)],
                     params=[Param("p%d" % j, v) for j, v in enumerate(ODD)] + [Param("lr", str(0.01 * (i + 1)))],
                     tags=[RunTag("t%d" % j, v) for j, v in enumerate(ODD)])
    if status != "RUNNING":
        client.set_terminated(run_id, status, end_time=T0 + 1000 + i)
    runs.append(run_id)

dataset = Dataset(name="train ✓", digest="abc123", source_type="s3", source='{"uri": "s3://b/train.csv"}',
                  schema="{}", profile='{"num_rows": 3}')
client.log_inputs(runs[0], [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])])

model = "old-model ✓"
client.create_registered_model(model, tags={"owner": "old"}, description="registered by an old MLflow")
for i, run_id in enumerate(runs[:2]):
    client.create_model_version(model, source="/srv/mlruns/old/%s/artifacts/model" % run_id, run_id=run_id,
                                tags={"v": str(i + 1)})
client.set_registered_model_alias(model, "champion", "2")

written = {"mlflow_version": mlflow.__version__, "experiment": {"id": experiment_id, "name": client.get_experiment(
    experiment_id).name, "tags": {k: v for k, v in client.get_experiment(experiment_id).tags.items()}}, "runs": {}}
for run_id in runs:
    run = client.get_run(run_id)
    written["runs"][run_id] = {
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "params": run.data.params,
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") or k == "mlflow.runName"},
        "metrics": {key: [[m.step, m.timestamp, m.value] for m in client.get_metric_history(run_id, key)]
                    for key in run.data.metrics},
        "datasets": [[d.dataset.name, d.dataset.digest, [t.value for t in d.tags]] for d in run.inputs.dataset_inputs],
    }
versions = [client.get_model_version(model, str(n)) for n in (1, 2)]
written["model"] = {"name": model, "tags": client.get_registered_model(model).tags,
                    "aliases": client.get_registered_model(model).aliases,
                    "versions": {v.version: {"run_id": v.run_id, "source": v.source, "tags": v.tags} for v in versions}}
sys.stdout.write("\n" + json.dumps(written) + "\n")
