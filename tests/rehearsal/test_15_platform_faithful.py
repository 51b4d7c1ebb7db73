"""The platform-faithful rehearsal (issue 23, "Build the checks" 1): each container as aws / azure
run it, taken from the registered graph (rehearsal.platform_run), against the rehearsal's stand-ins.

This is the check that would have caught azure's outage of every signed-in request: Container Apps
runs the proxy's file-writing wrapper as root (no run-as-user), and Nginx's workers (user `nginx`)
could not read the htpasswd it wrote under umask 077, so every request with credentials got 500
while /health passed. On the tree before the fix, `test_signed_in_client_round_trip[azure]` fails
with that 500; the worker user test shows why (master root, workers nginx)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from rehearsal.launcher import ServerUnavailable
from rehearsal.platform_graph import platform_graph
from rehearsal.platform_run import PlatformRun, check_platform_prerequisites
from tests.rehearsal.conftest import sigterm_unwinds

# Who runs Nginx on each platform: Container Apps has no run-as-user (the nginx image's default,
# root, whose workers drop to the compiled-in `nginx`); the ECS task definition names `nginx`.
NGINX_USERS = {"azure": {"master": {"root"}, "worker": {"nginx"}},
               "aws": {"master": {"nginx"}, "worker": {"nginx"}}}


def _require(platform: str) -> None:
    try:
        check_platform_prerequisites(platform)
    except ServerUnavailable as error:
        if os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}:
            pytest.fail(f"the platform rehearsal needs real servers and root in CI: {error}", pytrace=False)
        pytest.skip(f"platform rehearsal skipped: {error}")


@pytest.fixture(scope="module", params=["aws", "azure"])
def platform_run(request) -> Iterator[PlatformRun]:
    _require(request.param)
    with sigterm_unwinds():
        run = PlatformRun(platform_graph(request.param))
        try:
            run.start()
            yield run
        finally:
            run.stop()


def test_signed_in_client_round_trip(platform_run, monkeypatch, tmp_path: Path):
    """With the stack's user and password, through the platform's own proxy container: an
    experiment, a run with a metric, an artifact uploaded and downloaded (proxied, into the stand-in store)."""
    graph = platform_run.graph
    status = requests.get(f"{platform_run.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1",
                          auth=(graph.username, graph.password), timeout=30).status_code
    assert status == 200, f"{graph.platform}: a signed-in request got {status} through the platform's proxy"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", graph.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", graph.password)
    client = MlflowClient(platform_run.tracking_uri)
    experiment = client.create_experiment(f"platform-{graph.platform}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "loss", 0.25)
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024))
    client.log_artifact(run.info.run_id, str(source))
    client.set_terminated(run.info.run_id)
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="weights.bin",
                                                     dst_path=str(tmp_path / "out"),
                                                     tracking_uri=platform_run.tracking_uri)
    assert Path(downloaded).read_bytes() == source.read_bytes()
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.25}


def test_wrong_or_no_password_is_refused(platform_run):
    graph = platform_run.graph
    url = f"{platform_run.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(url, auth=(graph.username, graph.password + "x"), timeout=30).status_code == 401
    assert requests.get(url, timeout=30).status_code == 401


def test_probe_paths_answer_without_credentials(platform_run):
    """Every probe the graph gives the proxy answers 200 through the ingress, as do /nginx-health
    (Nginx's own liveness location) and /health (through to MLflow)."""
    proxy = platform_run.graph.services["mlflow-proxy"].main
    paths = {probe.path for probe in proxy.probes} | {"/nginx-health", "/health"}
    for path in sorted(paths):
        assert requests.get(f"{platform_run.tracking_uri}{path}", timeout=30).status_code == 200, path


def test_nginx_runs_as_the_platform_runs_it(platform_run):
    assert platform_run.nginx_users() == NGINX_USERS[platform_run.graph.platform]


def test_scripts_rehearse_platform_prints_the_client_lines_then_ready():
    """`scripts/rehearse --platform azure` as a user runs it: export lines, `ready`, a signed-in
    request answered, SIGTERM stops everything (exit 0)."""
    import shlex
    import signal
    import subprocess

    from rehearsal.launcher import REPO_ROOT

    _require("azure")
    process = subprocess.Popen([str(REPO_ROOT / "scripts" / "rehearse"), "--platform", "azure"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        exports = {}
        assert process.stdout is not None
        for line in process.stdout:
            if line == "ready\n":
                break
            name, _, value = line.removeprefix("export ").rstrip("\n").partition("=")
            exports[name] = shlex.split(value)[0]
        else:
            raise AssertionError(f"scripts/rehearse --platform azure exited ({process.wait()}) before ready")
        url = f"{exports['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"
        auth = (exports["MLFLOW_TRACKING_USERNAME"], exports["MLFLOW_TRACKING_PASSWORD"])
        assert requests.get(url, auth=auth, timeout=30).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
