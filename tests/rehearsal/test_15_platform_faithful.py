"""The platform-faithful rehearsal (issue 23, "Build the checks" 1): each container as aws / azure
run it, taken from the registered graph (rehearsal.platform_run), against the rehearsal's stand-ins.

This is the check that would have caught azure's outage of every signed-in request: Container Apps
runs the proxy's file-writing wrapper as root (no run-as-user), and Nginx's workers (user `nginx`)
could not read the htpasswd it wrote under umask 077, so every request with credentials got 500
while /health passed. On the tree before the fix, `test_signed_in_client_round_trip[azure]` fails
with that 500; the worker user test shows why (master root, workers nginx)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from rehearsal.platform_graph import platform_graph
from rehearsal.platform_run import PlatformRun, check_platform_prerequisites
from rehearsal.processes import ServerUnavailable
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


@pytest.fixture(scope="class", params=["aws", "azure"])
def platform_run(request) -> Iterator[PlatformRun]:
    """Class-scoped: gone before the tests below the class start their own runs (a run's proxy binds its
    rendered ports, which one platform run at a time can have)."""
    _require(request.param)
    with sigterm_unwinds():
        run = PlatformRun(platform_graph(request.param))
        try:
            run.start()
            yield run
        finally:
            run.stop()


class TestEachCloudPlatform:
    """aws and azure, each as its platform runs it (one run per platform, for the class)."""

    def test_signed_in_client_round_trip(self, platform_run, monkeypatch, tmp_path: Path):
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


    def test_wrong_or_no_password_is_refused(self, platform_run):
        graph = platform_run.graph
        url = f"{platform_run.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert requests.get(url, auth=(graph.username, graph.password + "x"), timeout=30).status_code == 401
        assert requests.get(url, timeout=30).status_code == 401


    def test_probe_paths_answer_without_credentials(self, platform_run):
        """Every probe the graph gives the proxy answers 200 through the ingress, as do /nginx-health
        (Nginx's own liveness location) and /health (through to MLflow)."""
        proxy = platform_run.graph.services["mlflow-proxy"].main
        paths = {probe.path for probe in proxy.probes} | {"/nginx-health", "/health"}
        for path in sorted(paths):
            assert requests.get(f"{platform_run.tracking_uri}{path}", timeout=30).status_code == 200, path


    def test_nginx_runs_as_the_platform_runs_it(self, platform_run):
        assert platform_run.nginx_users() == NGINX_USERS[platform_run.graph.platform]


@contextlib.contextmanager
def _rehearsed(platform: str, pythonpath: str = "") -> Iterator[dict[str, str]]:
    """`scripts/rehearse --platform <platform>` as a user runs it, until `ready`: its export lines. On the
    way out SIGTERM stops everything, and it must exit 0."""
    import shlex
    import signal
    import subprocess

    from rehearsal.processes import REPO_ROOT

    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    process = subprocess.Popen([str(REPO_ROOT / "scripts" / "rehearse"), "--platform", platform], env=env,
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
            raise AssertionError(f"scripts/rehearse --platform {platform} exited ({process.wait()}) before ready")
        yield exports
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


def test_scripts_rehearse_platform_prints_the_client_lines_then_ready():
    """`scripts/rehearse --platform azure` as a user runs it: export lines, `ready`, a signed-in
    request answered, SIGTERM stops everything (exit 0)."""
    _require("azure")
    with _rehearsed("azure") as exports:
        url = f"{exports['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"
        auth = (exports["MLFLOW_TRACKING_USERNAME"], exports["MLFLOW_TRACKING_PASSWORD"])
        assert requests.get(url, auth=auth, timeout=30).status_code == 200


def test_a_platform_from_one_folder_runs_as_its_runtime_says(monkeypatch, tmp_path: Path):
    """Issue 24's proof, its last part: the toy platform (tests/components/toy_platform, registered by its entry
    point, nothing of it under components/) through the platform-faithful rehearsal. Its registry entry
    names its runtime (toy/runtime.py): `scripts/rehearse --platform toy` runs its graph's containers as
    that says, its database as the toy makes it (an owner, no admin), and a signed-in client logs a run
    with a metric and an artifact and reads them back through the toy's proxy container."""
    from tests.harness.stacks import TOY

    _require("aws")  # what the toy's run needs too: root, unshare, setpriv, the S3 stand-in
    with _rehearsed("toy", os.pathsep.join([str(TOY), os.environ.get("PYTHONPATH", "")])) as exports:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", exports["MLFLOW_TRACKING_USERNAME"])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", exports["MLFLOW_TRACKING_PASSWORD"])
        uri = exports["MLFLOW_TRACKING_URI"]
        client = MlflowClient(uri)
        run = client.create_run(client.create_experiment("platform-toy"))
        client.log_metric(run.info.run_id, "loss", 0.5)
        source = tmp_path / "weights.bin"
        source.write_bytes(os.urandom(1024 * 1024))
        client.log_artifact(run.info.run_id, str(source))
        downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="weights.bin",
                                                         dst_path=str(tmp_path / "out"), tracking_uri=uri)
        assert Path(downloaded).read_bytes() == source.read_bytes()
        assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
        assert requests.get(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30).status_code == 401
