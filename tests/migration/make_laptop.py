"""A laptop's MLflow, made by MLflow 3.17.2 itself with its defaults: `python -m tests.migration.make_laptop DIR`.

`python -m tests.migration.make_laptop DIR [MANY]`: MANY more files of 64 KiB, ten per folder, in the
second run. Run in a child process with DIR as its working directory and no MLFLOW_TRACKING_URI, as a user runs a
script: MLflow's default tracking URI (sqlite:///mlflow.db) and artifact root (./mlruns). What it holds:
runs with metrics, params and artifacts in nested folders, a logged model (pyfunc), a registered model
version with an alias, a run in a second experiment, a trace, a dataset input. Prints a JSON summary:
the ids the rehearsal checks.
"""

from __future__ import annotations

import json
import os
import sys


def build(directory: str, many: int = 0, model_name: str = "laptop-model", alias: str = "champion") -> dict:
    os.chdir(directory)
    for name in list(os.environ):
        if name.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_")):
            del os.environ[name]
    os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.pyfunc import PythonModel

    class Adder(PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input + 2

    mlflow.set_experiment("laptop-a")
    runs = []
    with mlflow.start_run(run_name="first") as run:
        for step in range(20):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_params({"lr": "0.01", "layers": "3"})
        mlflow.log_text("hello\n", "notes/readme.txt")
        mlflow.log_text("", "code/__init__.py")  # empty: MLflow's server lists it without a size
        mlflow.log_text("same name\n", "x/x")  # MLflow's list_artifacts answers [] for such a folder
        mlflow.log_text("deep\n" * 100, "a/b/c/deep.txt")
        mlflow.log_dict({"k": [1, 2, 3]}, "config/params.json")
        mlflow.log_artifact(_binary("weights.bin", 300_000), "blobs")
        frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
        mlflow.log_input(mlflow.data.from_pandas(frame, source="data/train.csv", name="train"), context="training")
        info = mlflow.pyfunc.log_model(name="model", python_model=Adder(), input_example=frame[["x"]],
                                       pip_requirements=["mlflow==3.17.2"])  # no requirement inference: seconds
        runs.append(run.info.run_id)
    version = mlflow.register_model(info.model_uri, model_name)
    client = MlflowClient()
    client.set_registered_model_alias(model_name, alias, version.version)
    with mlflow.start_run(run_name="second") as run:
        mlflow.log_metric("acc", 0.9)
        mlflow.log_text("x" * 2048, "out/report.md")
        for i in range(many):  # many small files in many folders (the interrupted move's subject)
            mlflow.log_artifact(_binary(f"part-{i:04d}.bin", 64 << 10), f"many/d{i // 10:03d}")
        runs.append(run.info.run_id)

    @mlflow.trace
    def answer(question: str) -> str:
        return question.upper()

    answer("what is moved?")
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.set_experiment("laptop-b")
    with mlflow.start_run(run_name="other") as run:
        mlflow.log_metric("m", 1.0)
        mlflow.log_text("b\n", "b.txt")
        runs.append(run.info.run_id)
    return {"runs": runs, "model_name": model_name, "alias": alias, "model_version": version.version,
            "model_id": info.model_id, "trace_id": trace_id, "tracking_uri": mlflow.get_tracking_uri()}


def _binary(name: str, size: int) -> str:
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="laptop-"), name)
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))
    return path


if __name__ == "__main__":
    print(json.dumps(build(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)))
