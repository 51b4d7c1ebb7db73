"""An MLflow SQLite database written with workspaces enabled, with rows in a workspace besides default.

Run as a child process (`python -m tests.migration.workspace_source PATH`), like make_source: MLflow
needs MLFLOW_ENABLE_WORKSPACES=true set before its stores are made, and its global state must not
leak into the test process.

`default` and `team-a` each hold an experiment named "shared name" and a registered model named
"shared-model" (names are unique per workspace); team-a's experiment has a run with a NaN metric and
its model a version.
"""

from __future__ import annotations

import os
import sys

TEAM = "team-a"
SHARED_EXPERIMENT = "shared name"
SHARED_MODEL = "shared-model"
TEAM_MODEL_SOURCE = "s3://b/team-a/model"


def build(path: str) -> None:
    os.environ["MLFLOW_ENABLE_WORKSPACES"] = "true"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import mlflow
    from mlflow import MlflowClient
    from mlflow.utils.workspace_context import WorkspaceContext

    uri = f"sqlite:///{path}"
    mlflow.set_workspace("default")
    client = MlflowClient(uri, uri)
    client.create_experiment(SHARED_EXPERIMENT)
    client.create_registered_model(SHARED_MODEL)
    client.create_workspace(TEAM, description="Team A")
    with WorkspaceContext(TEAM):
        team = MlflowClient(uri, uri)
        exp = team.create_experiment(SHARED_EXPERIMENT)
        run = team.create_run(exp)
        team.log_metric(run.info.run_id, "m", float("nan"))
        team.create_registered_model(SHARED_MODEL)
        team.create_model_version(SHARED_MODEL, source=TEAM_MODEL_SOURCE, run_id=run.info.run_id)


def make(path, timeout: float = 300) -> None:
    """Build it in a child process (the test process keeps MLflow's globals untouched)."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("MLFLOW_TRACKING_URI", None)
    made = subprocess.run([sys.executable, "-m", "tests.migration.workspace_source", str(path)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if made.returncode != 0:
        raise RuntimeError(f"building the workspace source failed: {made.stderr[-3000:]}")


if __name__ == "__main__":
    build(sys.argv[1])
