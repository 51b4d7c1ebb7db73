"""`mlflow gc` on the azure stack's artifact store: Azure Blob, with Azurite standing in for the
storage account, run exactly as the stack renders it (render.gc_spec: an artifacts-only server of
its own on loopback, the connection string as its one artifact secret).

MLflow 3.17.2's Blob repository raises on deleting a path that holds no blob (S3's does not): a
deleted run that never logged an artifact stopped gc there, on every scheduled run, before the fix
in render.GC_SCRIPT."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Iterator

import pytest

from components import render
from rehearsal.launcher import RehearsalStack, Variant, run_step
from rehearsal.processes import StartupError
from tests.rehearsal.conftest import scenario_stack


@pytest.fixture(scope="module")
def blob_stack() -> Iterator[RehearsalStack]:
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module")
def blob_variant(blob_stack: RehearsalStack) -> Variant:
    return blob_stack.variants["azure"]


def _client(variant: Variant):
    from mlflow import MlflowClient

    os.environ.update(variant.client_env())
    return MlflowClient(variant.tracking_uri)


def _blobs(stack: RehearsalStack, prefix: str) -> list[str]:
    assert stack.azurite is not None
    container = stack.azurite.client().get_container_client(stack.azurite.container)
    return sorted(container.list_blob_names(name_starts_with=prefix))


def _run(client, experiment_id: str, tmp_path: Path, artifact: bool) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "loss", 0.5)
    if artifact:
        path = tmp_path / f"{run_id}.bin"
        path.write_bytes(secrets.token_bytes(32 * 1024))
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id


def _gc(stack: RehearsalStack, variant: Variant, workdir: Path) -> str:
    spec = render.gc_spec(variant.server.settings, "0s", timeout_seconds=300)
    assert spec.command[3].startswith("wasbs://"), "the rendered gc works on the Blob container"
    return run_step(spec, stack._secret_env(variant.config), workdir)


def test_gc_deletes_runs_with_and_without_artifacts_on_blob(blob_stack, blob_variant, tmp_path):
    from mlflow.exceptions import MlflowException

    client = _client(blob_variant)
    experiment_id = client.create_experiment(f"gc-blob-{secrets.token_hex(4)}")
    live = _run(client, experiment_id, tmp_path, artifact=True)
    with_artifact = _run(client, experiment_id, tmp_path, artifact=True)
    metrics_only = [_run(client, experiment_id, tmp_path, artifact=False) for _ in range(2)]
    assert _blobs(blob_stack, f"{experiment_id}/{with_artifact}/") != []
    assert all(_blobs(blob_stack, f"{experiment_id}/{run}/") == [] for run in metrics_only)
    live_blobs = _blobs(blob_stack, f"{experiment_id}/{live}/")
    for run in (with_artifact, *metrics_only):
        client.delete_run(run)

    output = _gc(blob_stack, blob_variant, tmp_path / "gc")

    for run in (with_artifact, *metrics_only):
        assert f"Run with ID {run} has been permanently deleted." in output
        with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
            client.get_run(run)
    assert _blobs(blob_stack, f"{experiment_id}/{with_artifact}/") == [], "its blobs are gone from the container"
    assert _blobs(blob_stack, f"{experiment_id}/{live}/") == live_blobs
    assert client.get_run(live).data.metrics == {"loss": 0.5}


def test_gc_still_stops_when_the_store_refuses_a_delete(blob_stack, blob_variant, tmp_path):
    """Only "nothing stored there" is tolerated: with the artifact secret wrong, the artifacts
    server cannot delete (nor list), and gc stops with the deleted run's row kept."""
    client = _client(blob_variant)
    experiment_id = client.create_experiment(f"gc-blob-denied-{secrets.token_hex(4)}")
    doomed = _run(client, experiment_id, tmp_path, artifact=True)
    client.delete_run(doomed)
    spec = render.gc_spec(blob_variant.server.settings, "0s", timeout_seconds=300)
    secret_env = blob_stack._secret_env(blob_variant.config)
    wrong_key = secret_env[render.AZURE_CONNECTION_STRING_ENV].replace("AccountKey=", "AccountKey=AAAA", 1)
    with pytest.raises(StartupError):
        run_step(spec, {**secret_env, render.AZURE_CONNECTION_STRING_ENV: wrong_key}, tmp_path / "gc-denied")
    assert client.get_run(doomed).info.lifecycle_stage == "deleted", "the row stays while its blobs do"
    assert _blobs(blob_stack, f"{experiment_id}/{doomed}/") != []
