"""ops.local_stack: finding a deployed local stack and reaching into it through the docker CLI.

A fake `docker` on PATH records every call (its argv, and the values of the variables a one-off
container is given by name) and answers `inspect` from canned JSON shaped like Docker's, so the
argv the real CLI would get is asserted, and that no secret value is ever on a command line.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ops import OpsError, RefusedError
from ops.access import StackLayout
from ops.local_stack import LocalAccess, LocalStack

SECRET_KEY = "minio-secret-@:/?#%&+"
DB_PASSWORD = "p@ss:/?#word"
IMAGE_ID = "sha256:" + "ab" * 32

FAKE_DOCKER = r'''#!{python}
"""A stand-in for the docker CLI: records its calls, answers from canned containers."""
import json, os, sys

args = sys.argv[1:]
record = {{"argv": args, "env": {{}}}}
if args and args[0] == "run":
    names = [args[i + 1] for i, arg in enumerate(args) if arg == "-e"]
    record["env"] = {{name: os.environ.get(name) for name in names}}
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")
if os.environ.get("FAKE_DOCKER_DOWN"):
    sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                     "Is the docker daemon running?\n")
    sys.exit(1)
containers = json.load(open(os.environ["FAKE_DOCKER_CONTAINERS"]))
if args[0] == "inspect":
    options = {{}}
    names = []
    rest = args[1:]
    while rest:
        if rest[0] in ("--type", "--format"):
            options[rest[0]] = rest[1]
            rest = rest[2:]
        else:
            names.append(rest.pop(0))
    found = [containers[name] for name in names if name in containers]
    missing = [name for name in names if name not in containers]
    if "--format" in options:
        if found:
            print(json.dumps(found[0]["State"]))
    else:
        print(json.dumps(found, indent=4))
    for name in missing:
        sys.stderr.write(f"Error: No such container: {{name}}\n")
    sys.exit(1 if missing else 0)
if args[0] in ("exec", "run"):
    sys.stdout.buffer.write(sys.stdin.buffer.read())  # like `cat`: stdin must reach the command
    sys.exit(0)
sys.exit(0)  # stop, start
'''


def _container(name: str, **extra: Any) -> dict[str, Any]:
    return {"Name": f"/{name}", "Image": "sha256:" + "00" * 32,
            "Config": {"Env": ["PATH=/usr/local/bin:/usr/bin"], "Cmd": [], "Entrypoint": None},
            "NetworkSettings": {"Networks": {"mlflow-local-net": {}}},
            "State": {"Running": True, "Status": "running"}, **extra}


def _server(prefix: str = "mlflow-local") -> dict[str, Any]:
    return _container(
        f"{prefix}-mlflow-server",
        Image=IMAGE_ID,
        Config={
            "Env": [f"MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://mlflow:{quote(DB_PASSWORD, safe='')}"
                    "@postgres:5432/mlflow", "AWS_ACCESS_KEY_ID=mlflow-artifacts-mlflow-server",
                    f"AWS_SECRET_ACCESS_KEY={SECRET_KEY}", "MLFLOW_S3_ENDPOINT_URL=http://minio:9000",
                    "AWS_DEFAULT_REGION=us-east-1", "EQUALS=a=b=c", "PATH=/usr/local/bin:/usr/bin"],
            "Entrypoint": None,
            "Cmd": ["sh", "-c", 'rm -rf "$1" && exec "$@"', "sh", "/tmp/metrics", "mlflow", "server",
                    "--host", "0.0.0.0", "--artifacts-destination", "s3://mlflow-artifacts/",
                    "--app-name", "basic-auth"],
        },
        NetworkSettings={"Networks": {"bridge": {}, f"{prefix}-net": {}}},
        State={"Running": True, "Status": "running", "Health": {"Status": "healthy"}},
    )


class FakeDocker:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.log = tmp_path / "docker-calls.jsonl"
        self.containers_file = tmp_path / "containers.json"
        docker = self.bin / "docker"
        docker.write_text(FAKE_DOCKER.format(python=sys.executable))
        docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{self.bin}:/usr/bin:/bin")
        monkeypatch.setenv("FAKE_DOCKER_LOG", str(self.log))
        monkeypatch.setenv("FAKE_DOCKER_CONTAINERS", str(self.containers_file))
        self.monkeypatch = monkeypatch
        self.set_containers([_server(), _container("mlflow-local-postgres"), _container("mlflow-local-minio"),
                             _container("mlflow-local-mlflow-proxy")])

    def set_containers(self, containers: list[dict[str, Any]]) -> None:
        self.containers_file.write_text(json.dumps({c["Name"].lstrip("/"): c for c in containers}))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def down(self) -> None:
        self.monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")


@pytest.fixture
def docker(tmp_path, monkeypatch) -> FakeDocker:
    return FakeDocker(tmp_path, monkeypatch)


def test_find_inspects_the_stacks_containers_and_reads_the_server(docker):
    stack = LocalStack.find()
    assert docker.calls()[0]["argv"] == ["inspect", "--type", "container", "mlflow-local-postgres", "mlflow-local-minio",
                                         "mlflow-local-mlflow-server", "mlflow-local-mlflow-proxy"]
    assert stack.container("postgres") == "mlflow-local-postgres"
    assert stack.container("mlflow-server") == "mlflow-local-mlflow-server"
    assert stack.network == "mlflow-local-net"  # the stack's own, not the default bridge it may also be on
    assert stack.server_image() == IMAGE_ID  # the exact image ID the container runs
    env = stack.server_env()
    assert env["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY and env["EQUALS"] == "a=b=c"
    assert stack.server_command()[5:8] == ["mlflow", "server", "--host"]


def test_find_under_another_prefix(docker):
    docker.set_containers([_server("mlflow-dev"), _container("mlflow-dev-postgres")])
    stack = LocalStack.find("mlflow-dev")
    assert "mlflow-dev-mlflow-server" in docker.calls()[0]["argv"]
    assert stack.network == "mlflow-dev-net"
    with pytest.raises(OpsError, match="no container mlflow-dev-minio"):
        stack.container("minio")


def test_missing_containers_are_named_with_the_prefix_option(docker):
    docker.set_containers([_container("mlflow-local-postgres")])
    with pytest.raises(OpsError) as error:
        LocalStack.find()
    message = str(error.value)
    assert message.startswith("no container mlflow-local-mlflow-server:")
    assert "mlflow-local-postgres" not in message.split(":")[0]
    assert "--prefix" in message and "\n" not in message


def test_nothing_deployed_under_the_prefix(docker):
    with pytest.raises(OpsError, match=r"no container other-postgres, other-mlflow-server: .*--prefix"):
        LocalStack.find("other")


def test_docker_missing_is_one_line(docker, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(OpsError, match=r"^docker not found on PATH: ") as error:
        LocalStack.find()
    assert "\n" not in str(error.value)


def test_docker_engine_unreachable_is_reported_as_docker_says(docker):
    docker.down()
    with pytest.raises(OpsError, match=r"^docker inspect failed: Cannot connect to the Docker daemon"):
        LocalStack.find()


def test_run_oneoff_passes_each_variable_by_name_only(docker):
    stack = LocalStack.find()
    env = {"AWS_SECRET_ACCESS_KEY": SECRET_KEY, "MLFLOW_BACKEND_STORE_URI": f"postgresql://mlflow:{DB_PASSWORD}@db/x"}
    result = stack.run_oneoff(["python", "-c", "print(1)"], env=env, stdin=b"through stdin")
    assert result.returncode == 0 and result.stdout == b"through stdin"
    call = docker.calls()[-1]
    assert call["argv"] == ["run", "--rm", "-i", "--network", "mlflow-local-net", "--user", "mlflow",
                            "--log-driver", "none", "--label", "org.mlflow-platform.ops=one-off",
                            "-e", "AWS_SECRET_ACCESS_KEY", "-e", "MLFLOW_BACKEND_STORE_URI",
                            IMAGE_ID, "python", "-c", "print(1)"]
    assert call["env"] == env  # the values reached docker through its environment
    flat = " ".join(call["argv"])
    assert SECRET_KEY not in flat and DB_PASSWORD not in flat


def test_exec_streams_stdin_and_stdout(docker, tmp_path):
    stack = LocalStack.find()
    source, target = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(bytes(range(256)) * 100)
    with open(source, "rb") as stdin, open(target, "wb") as stdout:
        result = stack.exec("postgres", ["pg_restore", "--list"], stdin=stdin, stdout=stdout, user="postgres")
    assert result.returncode == 0 and target.read_bytes() == source.read_bytes()
    assert docker.calls()[-1]["argv"] == ["exec", "-i", "--user", "postgres", "mlflow-local-postgres",
                                          "pg_restore", "--list"]


def test_local_access_reaches_postgres_as_its_superuser_and_python_in_the_server_image(docker):
    access = LocalAccess.find()
    command = access.postgres_command(["pg_dump", "--format=custom", "--dbname", "mlflow"])
    assert command.argv[1:] == ["exec", "-i", "--user", "postgres", "mlflow-local-postgres",
                                "pg_dump", "--format=custom", "--dbname", "mlflow"]
    command = access.python_command(["-c", "pass"], {"AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    assert command.argv[-4:] == [IMAGE_ID, "python", "-c", "pass"]
    assert command.env["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY and SECRET_KEY not in command.argv


def test_the_layout_comes_from_the_server_container(docker):
    access = LocalAccess.find()
    layout = StackLayout.read(access)
    assert (layout.database, layout.owner, layout.auth_database) == ("mlflow", "mlflow", "mlflow_auth")
    assert layout.artifacts_destination == "s3://mlflow-artifacts/" and layout.auth_app == "basic-auth"
    assert layout.auth_uri == f"postgresql+psycopg2://mlflow:{quote(DB_PASSWORD, safe='')}@postgres:5432/mlflow_auth"
    assert layout.s3_env(access) == {"AWS_ACCESS_KEY_ID": "mlflow-artifacts-mlflow-server",
                                     "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
                                     "MLFLOW_S3_ENDPOINT_URL": "http://minio:9000"}


def test_a_stopped_postgres_is_named(docker):
    docker.set_containers([_server(), _container("mlflow-local-postgres", State={"Running": False, "Status": "exited"})])
    with pytest.raises(OpsError, match=r"mlflow-local-postgres is not running \(docker start mlflow-local-postgres\)"):
        LocalAccess.find()


def test_stop_and_start_the_server(docker):
    stack = LocalStack.find()
    assert stack.stop("mlflow-server") is True
    stack.start("mlflow-server", timeout_seconds=5)
    argvs = [call["argv"] for call in docker.calls()]
    assert ["stop", "--time", "30", "mlflow-local-mlflow-server"] in argvs
    assert ["start", "mlflow-local-mlflow-server"] in argvs


def test_a_server_that_exits_after_start_fails_the_start(docker):
    stack = LocalStack.find()
    docker.set_containers([_server() | {"State": {"Running": False, "Status": "exited", "ExitCode": 1}}])
    with pytest.raises(OpsError, match="mlflow-local-mlflow-server exited \\(status 1\\) after starting"):
        stack.start("mlflow-server", timeout_seconds=5)


def test_backup_cli_refuses_a_non_empty_directory_before_looking_for_docker(docker, tmp_path, capsys):
    from ops import backup

    target = tmp_path / "backup"
    target.mkdir()
    (target / "old.dump").write_text("x")
    assert backup.main([str(target)]) == RefusedError.exit_code
    assert "backup: " in capsys.readouterr().err and docker.calls() == []


def test_backup_cli_without_docker_leaves_no_directory(monkeypatch, tmp_path, capsys):
    from ops import backup

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert backup.main([str(tmp_path / "new")]) == 1
    assert capsys.readouterr().err.startswith("backup: docker not found on PATH")
    assert not (tmp_path / "new").exists()


def test_restore_cli_refuses_a_directory_without_manifest(docker, tmp_path, capsys):
    from ops import restore

    assert restore.main([str(tmp_path)]) == RefusedError.exit_code
    assert "is not a complete backup" in capsys.readouterr().err and docker.calls() == []
    assert sorted(os.listdir(tmp_path)) == ["bin", "containers.json"]
