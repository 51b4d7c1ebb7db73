"""Day-2 operations, for real: MLflow's Prometheus metrics under its uvicorn workers, read on the
proxy's internal listener and refused on the public entry; and `mlflow gc` exactly as the stack
renders it (render.gc_spec), run against the stack's PostgreSQL and S3 stand-in."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Iterator

import pytest
import requests

from components import render
from rehearsal.launcher import RehearsalStack, Variant, run_step
from tests.rehearsal.conftest import scenario_stack


@pytest.fixture(scope="module")
def day2_stack() -> Iterator[RehearsalStack]:
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module", params=["default", "prefix"])
def variant(request, day2_stack) -> Variant:
    return day2_stack.variants[request.param]


def _client(variant: Variant):
    from mlflow import MlflowClient

    os.environ.update(variant.client_env())
    return MlflowClient(variant.tracking_uri)


def _requests_total(variant: Variant) -> float:
    """mlflow_http_request_total summed over every label set, as a scraper reads it."""
    assert variant.proxy.metrics_url is not None
    response = requests.get(f"{variant.proxy.metrics_url}/metrics", timeout=30)
    assert response.status_code == 200, response.text[:300]
    values = re.findall(r"^mlflow_http_request_total\{[^}]*\} ([0-9.e+]+)$", response.text, re.MULTILINE)
    return sum(float(value) for value in values)


# --- metrics -------------------------------------------------------------------------------------

def test_metrics_count_client_calls_across_the_workers(variant):
    assert variant.server.settings.workers >= 2, "the multiprocess case is the point"
    before = _requests_total(variant)
    client = _client(variant)
    for _ in range(12):  # spread over the uvicorn workers by the kernel
        client.search_experiments(max_results=1)
    after = _requests_total(variant)
    assert after - before >= 12, (before, after)
    files = os.listdir(variant.server.settings.metrics_dir)
    assert len({re.sub(r"\D", "", name) for name in files}) >= 2, f"one file set per worker process: {files}"


def test_metrics_are_refused_on_the_public_entry(variant):
    for auth in (None, (variant.username, variant.password)):
        for path in ("/metrics", f"{variant.config.server.static_prefix or ''}/metrics", "/nginx_status"):
            response = requests.get(f"http://127.0.0.1:{variant.proxy.port}{path}", auth=auth, timeout=30)
            assert response.status_code in (401, 403, 404), (path, auth is not None, response.status_code)
            assert "mlflow_http_request" not in response.text


def test_nginx_status_on_the_internal_listener_only(variant):
    status = requests.get(f"{variant.proxy.metrics_url}/nginx_status", timeout=30)
    assert status.status_code == 200 and status.text.startswith("Active connections:")
    assert requests.get(f"{variant.proxy.metrics_url}/api/2.0/mlflow/experiments/search", timeout=30).status_code == 404


def test_a_restarted_server_starts_counting_afresh(day2_stack):
    """The multiprocess directory is emptied at start: counts a previous start left are not added."""
    variant = day2_stack.variants["default"]
    client = _client(variant)
    for _ in range(20):
        client.search_experiments(max_results=1)
    before = _requests_total(variant)
    stale = Path(variant.server.settings.metrics_dir) / "counter_999999.db"
    stale.write_bytes((Path(variant.server.settings.metrics_dir) / sorted(
        name for name in os.listdir(variant.server.settings.metrics_dir)
        if name.startswith("counter_"))[0]).read_bytes())
    variant.server.restart()
    after = _requests_total(variant)
    assert not stale.exists()
    assert after < before, (before, after)


# --- gc ------------------------------------------------------------------------------------------

def _s3_keys(stack: RehearsalStack, prefix: str) -> list[str]:
    s3 = stack.s3.client("s3")
    found = s3.list_objects_v2(Bucket=stack.s3.bucket, Prefix=prefix).get("Contents", [])
    return [item["Key"] for item in found]


def _run_with_artifact(client, experiment_id: str, tmp_path: Path, name: str) -> str:
    run = client.create_run(experiment_id)
    artifact = tmp_path / f"{name}.bin"
    artifact.write_bytes(secrets.token_bytes(64 * 1024))
    client.log_metric(run.info.run_id, "loss", 0.5)
    client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _run_gc(stack: RehearsalStack, variant: Variant, older_than: str, workdir: Path) -> str:
    spec = render.gc_spec(variant.server.settings, older_than, timeout_seconds=300)
    return run_step(spec, stack._secret_env(variant.config), workdir)


def test_gc_removes_a_deleted_runs_rows_and_artifacts_and_nothing_else(day2_stack, tmp_path):
    from mlflow.exceptions import MlflowException

    variant = day2_stack.variants["default"]
    client = _client(variant)
    experiment_id = client.create_experiment(f"gc-{secrets.token_hex(4)}")
    live = _run_with_artifact(client, experiment_id, tmp_path, "live")
    doomed = _run_with_artifact(client, experiment_id, tmp_path, "doomed")
    recent = _run_with_artifact(client, experiment_id, tmp_path, "recent")
    keys = {run: _s3_keys(day2_stack, f"{experiment_id}/{run}/") for run in (live, doomed, recent)}
    assert all(keys.values()), keys
    client.delete_run(doomed)
    serving = variant.server.service.pid, requests.get(f"{variant.server.url}/health", timeout=10).status_code
    output = _run_gc(day2_stack, variant, "0s", tmp_path / "gc1")
    assert f"Run with ID {doomed} has been permanently deleted." in output
    # through an artifacts-only server of its own: the serving replica is left alone (same process, healthy)
    assert serving == (variant.server.service.pid, 200)
    assert requests.get(f"{variant.server.url}/health", timeout=10).status_code == 200
    # its artifacts-only server starts no job runners (seven huey consumers importing MLflow, which
    # outlived the server and took the gc task past 2 GiB)
    assert "mlflow.server.jobs" not in output, output
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
        client.get_run(doomed)
    assert _s3_keys(day2_stack, f"{experiment_id}/{doomed}/") == [], "its artifacts are gone from the bucket"
    assert _s3_keys(day2_stack, f"{experiment_id}/{live}/") == keys[live]
    assert client.get_run(live).data.metrics == {"loss": 0.5}
    # a run deleted less than --older-than ago stays, rows and artifacts
    client.delete_run(recent)
    output = _run_gc(day2_stack, variant, "1d", tmp_path / "gc2")
    assert recent not in output
    assert client.get_run(recent).info.lifecycle_stage == "deleted"
    assert _s3_keys(day2_stack, f"{experiment_id}/{recent}/") == keys[recent]
    assert "postgresql" not in " ".join(render.gc_spec(variant.server.settings, "1d").command)


def test_gc_needs_no_mlflow_credentials(day2_stack):
    """It deletes artifacts through an artifacts-only server of its own on loopback (run, and the
    serving replica left alone, in the test above): no MLflow user's password or token."""
    variant = day2_stack.variants["default"]
    spec = render.gc_spec(variant.server.settings, "30d")
    assert not {name for name in spec.secret_env_names if "PASSWORD" in name or "TOKEN" in name}
    assert set(spec.secret_env_names) == {render.BACKEND_URI_ENV, *variant.server.settings.artifact_secret_env_names}
