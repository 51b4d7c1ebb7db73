"""A team's SQLite database kept in MLflow workspaces, migrated into a stack rendered with
`server.workspaces`, is served workspace by workspace through Nginx to the real MLflow client."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow

from rehearsal.launcher import RehearsalStack
from tests.migration import workspace_source
from tests.rehearsal.conftest import ONE_WORKER

REPO = Path(__file__).resolve().parents[2]


def test_migrated_workspaces_are_served_by_a_workspace_enabled_stack(rehearsal_stack, client_for, tmp_path):
    # rehearsal_stack: its prerequisite check (and skip outside CI); this scenario needs its own database
    stack = RehearsalStack({"server": {**ONE_WORKER, "workspaces": True}}).start()
    try:
        source = tmp_path / "team.db"
        workspace_source.make(source)
        summary = tmp_path / "migration.json"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("MLFLOW_TRACKING_URI", None)
        migrated = subprocess.run([sys.executable, "-m", "migration", str(source), stack.backend_uri, "--json",
                                   str(summary)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        assert json.loads(summary.read_text())["workspaces"] == [workspace_source.TEAM]

        variant = stack.add_variant("workspaces")
        assert "--enable-workspaces" in variant.server.spec.command
        try:
            with client_for(variant) as client:
                mlflow.set_workspace(workspace_source.TEAM)
                team_exp = client.get_experiment_by_name(workspace_source.SHARED_EXPERIMENT)
                runs = client.search_runs([team_exp.experiment_id])
                assert len(runs) == 1 and math.isnan(runs[0].data.metrics["m"])
                versions = client.search_model_versions(f"name = '{workspace_source.SHARED_MODEL}'")
                assert [v.source for v in versions] == [workspace_source.TEAM_MODEL_SOURCE]

                mlflow.set_workspace("default")
                default_exp = client.get_experiment_by_name(workspace_source.SHARED_EXPERIMENT)
                assert default_exp.experiment_id != team_exp.experiment_id
                assert client.search_runs([default_exp.experiment_id]) == []
                assert client.search_model_versions(f"name = '{workspace_source.SHARED_MODEL}'") == []
        finally:
            mlflow.set_workspace(None)
    finally:
        stack.stop()
