"""scripts/gc against a fake `docker` CLI on PATH: it finds the stack's server container, runs the
stack's own gc command (render.gc_spec) in a one-off container from the server's image on the stack's
network, and hands over the database URI and MinIO key by name only, never on a command line."""

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from components import render
from tests.unit.harness import REPO_ROOT

URI = "postgresql+psycopg2://mlflow:s3cr%40t@postgres:5432/mlflow"
SERVER = {
    "Name": "/mlflow-local-mlflow-server", "Image": "sha256:" + "ab" * 32, "State": {"Running": True},
    "Config": {"Cmd": ["sh", "-c", render.METRICS_DIR_RESET, "sh", render.METRICS_DIR, "mlflow", "server",
                       "--artifacts-destination", "s3://mlflow-artifacts/team", "--enable-workspaces"],
               "Env": [f"{render.BACKEND_URI_ENV}={URI}", "AWS_ACCESS_KEY_ID=mlflow-server-key",
                       "AWS_SECRET_ACCESS_KEY=minio-s3cret-value", "MLFLOW_S3_ENDPOINT_URL=http://minio:9000",
                       "AWS_DEFAULT_REGION=us-east-1", f"{render.AUTH_ADMIN_PASSWORD_ENV}=not-for-gc"]},
    "NetworkSettings": {"Networks": {"mlflow-local-net": {}}},
}
POSTGRES = {"Name": "/mlflow-local-postgres", "State": {"Running": True}, "Config": {}, "NetworkSettings": {}}

FAKE_DOCKER = """#!{python}
import json, os, sys
log = os.environ["FAKE_DOCKER_LOG"]
with open(log, "a") as handle:
    handle.write(json.dumps({{"argv": sys.argv[1:], "env": {{k: v for k, v in os.environ.items()
                                                             if k.startswith(("MLFLOW", "AWS"))}}}}) + "\\n")
if sys.argv[1] == "inspect":  # as docker answers: found ones on stdout, the others named on stderr
    print(json.dumps({containers}))
    if not {found}:
        print("Error: No such container: mlflow-local-postgres", file=sys.stderr)
    sys.exit(0 if {found} else 1)
sys.exit(0)
"""


def _gc(tmp_path: Path, *args: str, found: bool = True) -> tuple[subprocess.CompletedProcess, list[dict]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable, containers=[SERVER, POSTGRES] if found else [],
                                         found=found))
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "docker.log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DOCKER_LOG": str(log), "HOME": str(tmp_path)}
    result = subprocess.run([str(REPO_ROOT / "scripts" / "gc"), *args], env=env, capture_output=True, text=True,
                            timeout=120)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def test_gc_runs_the_rendered_command_on_the_stacks_network_with_secrets_by_name(tmp_path):
    result, calls = _gc(tmp_path, "--older-than", "7d")
    assert result.returncode == 0, result.stderr
    run = next(call for call in calls if call["argv"][0] == "run")
    argv = run["argv"]
    assert argv[argv.index("--network") + 1] == "mlflow-local-net" and argv[argv.index("--user") + 1] == "mlflow"
    image_at = argv.index(SERVER["Image"])
    assert argv[image_at + 1:] == ["python", "-c", render.GC_SCRIPT, "s3://mlflow-artifacts/team", "7d", "3600",
                                   "--all-workspaces"]
    passed = [argv[i + 1] for i, item in enumerate(argv[:image_at]) if item == "-e"]
    assert sorted(passed) == sorted([render.BACKEND_URI_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                     "MLFLOW_S3_ENDPOINT_URL", "AWS_DEFAULT_REGION", "PYTHONUNBUFFERED"])
    assert run["env"][render.BACKEND_URI_ENV] == URI, "the value reaches docker through its environment"
    joined = " ".join(argv)
    assert URI not in joined and "minio-s3cret-value" not in joined and "not-for-gc" not in joined
    assert render.AUTH_ADMIN_PASSWORD_ENV not in passed, "gc needs no MLflow user"


@pytest.mark.parametrize(("args", "found", "message"), [
    (("--older-than", "a month"), True, "must be an age like 30d"),
    ((), False, "no container mlflow-local-postgres, mlflow-local-mlflow-server"),
])
def test_gc_refuses_with_one_line(tmp_path, args, found, message):
    result, calls = _gc(tmp_path, *args, found=found)
    assert result.returncode != 0 and message in result.stderr
    assert not [call for call in calls if call["argv"][0] == "run"]
    assert "s3cr" not in result.stderr + result.stdout
