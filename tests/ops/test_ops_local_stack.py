"""ops.local_stack: finding a deployed local stack and reaching into it through the docker CLI.

A fake `docker` on PATH records every call (its argv, the secret values it could see in its own
environment, and the tar `docker cp` gets) and answers `inspect` and `cp` from canned containers
shaped like Docker's, so the argv the real CLI would get is asserted, and that no secret value is
ever on a command line, in a container's config or in docker's own environment.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from components.platforms import local
from ops import OpsError, RefusedError, oneoff
from ops.access import StackLayout
from ops.local_stack import LocalAccess, LocalStack

SECRET_KEY = "minio-secret-@:/?#%&+"
DB_PASSWORD = "p@ss:/?#word"
IMAGE_ID = "sha256:" + "ab" * 32

"""How this process labels the one-offs it starts (host, pid namespace, pid)."""


FAKE_DOCKER = r'''#!{python}
"""A stand-in for the docker CLI: records its calls, answers from canned containers."""
import io, json, os, sys, tarfile

args = sys.argv[1:]
watched = ("AWS_SECRET_ACCESS_KEY", "MLFLOW_BACKEND_STORE_URI")
record = {{"argv": args, "env": {{name: os.environ[name] for name in watched if name in os.environ}}}}
if args[:2] == ["cp", "-"]:  # a tar into a container: keep what the daemon would unpack
    with tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read())) as tar:
        record["tar"] = [{{"name": m.name, "mode": m.mode, "uid": m.uid, "gid": m.gid, "dir": m.isdir(),
                          "content": tar.extractfile(m).read().decode() if m.isfile() else None}}
                         for m in tar.getmembers()]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")
if args[0] == os.environ.get("FAKE_DOCKER_BLOCK"):  # hang (an attached start, a slow cp) until signalled
    import time
    open(os.environ["FAKE_DOCKER_BLOCKED"], "w").close()
    time.sleep(60)
if args[0] == os.environ.get("FAKE_DOCKER_SLOW"):  # a slow daemon: this command takes a second and a half
    import time
    time.sleep(1.5)
if args[0] == "ps":
    print(os.environ.get("FAKE_DOCKER_LEFTOVERS", ""))
    sys.exit(0)
if args[0] == "rm" and os.environ.get("FAKE_DOCKER_RM_ERROR"):
    sys.stderr.write(os.environ["FAKE_DOCKER_RM_ERROR"] + "\n")
    sys.exit(1)
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
if args[0] == "cp" and args[1] != "-":  # out of a container: a tar of the directory, as docker cp writes it
    name, _, path = args[1].partition(":")
    files = containers[name].get("Files", {{}})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        base = path.rstrip("/").rsplit("/", 1)[-1]
        for file, content in files.items():
            if file.startswith(path + "/"):
                data = content.encode()
                info = tarfile.TarInfo(base + "/" + file[len(path) + 1:])
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    sys.stdout.buffer.write(buffer.getvalue())
    sys.exit(0)
if args[0] == "create":
    print("c0ffee")
    sys.exit(0)
if args[0] == "exec" or args[:2] == ["start", "--attach"]:
    sys.stdout.buffer.write(sys.stdin.buffer.read())  # like `cat`: stdin must reach the command
    sys.exit(0)
sys.exit(0)  # stop, start, rm
'''


def _container(name: str, **extra: Any) -> dict[str, Any]:
    return {"Name": f"/{name}", "Image": "sha256:" + "00" * 32,
            "Config": {"Env": ["PATH=/usr/local/bin:/usr/bin"], "Cmd": [], "Entrypoint": None},
            "NetworkSettings": {"Networks": {"mlflow-local-net": {}}},
            "State": {"Running": True, "Status": "running"}, **extra}


BACKEND_URI = f"postgresql+psycopg2://mlflow:{quote(DB_PASSWORD, safe='')}@postgres:5432/mlflow"
SERVER_SECRETS = {"MLFLOW_BACKEND_STORE_URI": BACKEND_URI, "AWS_ACCESS_KEY_ID": "mlflow-artifacts-mlflow-server",
                  "AWS_SECRET_ACCESS_KEY": SECRET_KEY}


def _server(prefix: str = "mlflow-local") -> dict[str, Any]:
    """As the local platform creates it: secrets in /run/secrets, their paths in the env."""
    return _container(
        f"{prefix}-mlflow-server",
        Image=IMAGE_ID,
        Files={f"/run/secrets/{name}": value for name, value in SERVER_SECRETS.items()},
        Config={
            "Env": [*(f"{key}={path}" for key, path in local.secret_file_env(SERVER_SECRETS).items()),
                    "MLFLOW_S3_ENDPOINT_URL=http://minio:9000",
                    "AWS_DEFAULT_REGION=us-east-1", "EQUALS=a=b=c", "PATH=/usr/local/bin:/usr/bin"],
            "Entrypoint": local.secret_env_entrypoint(sorted(SERVER_SECRETS)),
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
    assert docker.calls()[0]["argv"] == ["inspect", "--type", "container", "mlflow-local-postgres",
                                         "mlflow-local-minio", "mlflow-local-mlflow-server",
                                         "mlflow-local-mlflow-proxy"]
    assert stack.container("postgres") == "mlflow-local-postgres"
    assert stack.container("mlflow-server") == "mlflow-local-mlflow-server"
    assert stack.network == "mlflow-local-net"  # the stack's own, not the default bridge it may also be on
    assert stack.server_image() == IMAGE_ID  # the exact image ID the container runs
    env = stack.server_env()
    assert env["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY and env["EQUALS"] == "a=b=c"
    assert env["MLFLOW_BACKEND_STORE_URI"] == BACKEND_URI and "MLFLOW_BACKEND_STORE_URI_FILE" not in env
    assert docker.calls()[-1]["argv"] == ["cp", "mlflow-local-mlflow-server:/run/secrets", "-"]
    stack.server_env()
    assert len(docker.calls()) == 2, "the files are read once"
    command = stack.server_command()
    assert command[command.index("--") + 1:][5:8] == ["mlflow", "server", "--host"]


def test_a_secret_file_missing_from_the_server_is_named(docker):
    server = _server()
    server["Files"].pop("/run/secrets/AWS_SECRET_ACCESS_KEY")
    docker.set_containers([server, _container("mlflow-local-postgres")])
    with pytest.raises(OpsError, match="has AWS_SECRET_ACCESS_KEY_FILE=/run/secrets/AWS_SECRET_ACCESS_KEY but no"):
        LocalStack.find().server_env()


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


def test_run_oneoff_hands_every_variable_over_as_a_file(docker):
    stack = LocalStack.find()
    env = {"AWS_SECRET_ACCESS_KEY": SECRET_KEY, "MLFLOW_BACKEND_STORE_URI": f"postgresql://mlflow:{DB_PASSWORD}@db/x"}
    result = stack.run_oneoff(["python", "-c", "print(1)"], env=env, stdin=b"through stdin")
    assert result.returncode == 0 and result.stdout == b"through stdin"
    create, copy, start, remove = docker.calls()[-4:]
    names = ["AWS_SECRET_ACCESS_KEY", "MLFLOW_BACKEND_STORE_URI"]
    assert create["argv"] == ["create", "--rm", "-i", "--network", "mlflow-local-net", "--user", "mlflow",
                              "--log-driver", "none", "--label", "org.mlflow-platform.ops=one-off",
                              "--label", "org.mlflow-platform.ops.stack=mlflow-local",
                              "-e", "AWS_SECRET_ACCESS_KEY_FILE=/run/secrets/AWS_SECRET_ACCESS_KEY",
                              "-e", "MLFLOW_BACKEND_STORE_URI_FILE=/run/secrets/MLFLOW_BACKEND_STORE_URI",
                              IMAGE_ID, *local.secret_env_entrypoint(names), "python", "-c", "print(1)"]
    assert copy["argv"] == ["cp", "-", "c0ffee:/"]
    files = {m["name"]: m for m in copy["tar"] if not m["dir"]}
    assert {name: m["content"] for name, m in files.items()} == {f"run/secrets/{k}": v for k, v in env.items()}
    assert {(m["mode"], m["uid"], m["gid"]) for m in files.values()} == {(0o400, 10001, 10001)}
    assert start["argv"] == ["start", "--attach", "--interactive", "c0ffee"]
    assert remove["argv"] == ["rm", "--force", "c0ffee"], "removed even if --rm did not get to it"
    for call in (create, copy, start, remove):
        flat = " ".join(call["argv"])
        assert SECRET_KEY not in flat and DB_PASSWORD not in flat
        assert call["env"] == {}, "docker itself never holds a value"


def test_a_failed_create_is_one_line_and_starts_nothing(docker, monkeypatch):
    stack = LocalStack.find()
    monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")
    result = stack.run_oneoff(["true"], env={"AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    assert result.returncode == oneoff.DOCKER_FAILED
    assert result.stderr.decode().startswith("oneoff: docker create failed: Cannot connect to the Docker daemon")
    assert SECRET_KEY.encode() not in result.stderr
    assert [call["argv"][0] for call in docker.calls()][-1] == "create"


def test_the_files_the_helper_copies_in_are_what_the_wrapper_exports(tmp_path):
    """For real: the helper's tar unpacked (as `docker cp` does), then the platform's secret-env
    wrapper run by sh with the same NAME_FILE paths, in front of a command that prints its env."""
    values = {"MLFLOW_BACKEND_STORE_URI": f"postgresql://mlflow:{quote(DB_PASSWORD, safe='')}@db/x",
              "AWS_SECRET_ACCESS_KEY": SECRET_KEY + "\n$HOME `x` 'q' \\"}
    with tarfile.open(fileobj=io.BytesIO(oneoff.secrets_tar(values, os.getuid()))) as tar:
        tar.extractall(tmp_path, filter="tar")  # keeps the modes, as the daemon does
    env = {f"{name}_FILE": str(tmp_path / "run" / "secrets" / name) for name in values}
    for path in env.values():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o400
    printed = subprocess.run(
        [*local.secret_env_entrypoint(sorted(values)), sys.executable, "-c",
         "import json, os; print(json.dumps(dict(os.environ)))"],
        env={**env, "PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True)
    seen = json.loads(printed.stdout)
    assert {name: seen[name] for name in values} == values
    assert not set(env) & set(seen)


def _blocked_at(docker: FakeDocker, tmp_path: Path, command: str) -> Path:
    """The fake docker hangs in `command` (until signalled); returns the file it creates once there."""
    marker = tmp_path / f"blocked-{command}"
    docker.monkeypatch.setenv("FAKE_DOCKER_BLOCK", command)
    docker.monkeypatch.setenv("FAKE_DOCKER_BLOCKED", str(marker))
    return marker


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("command", ["start", "cp"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupted_oneoff_still_removes_its_container(docker, tmp_path, command, signum):
    """Ctrl-C, kill or a closed terminal signals the helper's whole process group (it and the
    docker CLI it waits on): before the container holding the secret files starts, or while it
    runs, the helper's `finally` must still run `docker rm --force`, and exit 128+signal. (Before:
    SIGTERM and SIGHUP ended the helper without its `finally`.)"""
    marker = _blocked_at(docker, tmp_path, command)
    helper = subprocess.Popen([sys.executable, oneoff.__file__, "docker", "10001", "AWS_SECRET_ACCESS_KEY", "--",
                               "--rm", IMAGE_ID, "true"], env={**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
    _wait_for(marker, helper)
    os.killpg(helper.pid, signum)
    _, stderr = helper.communicate(timeout=30)
    assert helper.returncode == 128 + signum, stderr
    assert docker.calls()[-1]["argv"] == ["rm", "--force", "c0ffee"]


def test_an_interrupted_caller_gives_the_oneoff_time_to_remove_its_container(docker, tmp_path):
    """Ctrl-C in backup or restore: the caller's KeyboardInterrupt must stop the helper with SIGTERM
    and wait for it, not SIGKILL it 0.25 s later (subprocess.run's default), which left the
    container with the secret files. The caller alone is signalled: the helper runs in its own
    session, out of the terminal's reach."""
    marker = _blocked_at(docker, tmp_path, "start")
    # A terminal's Python turns SIGINT into KeyboardInterrupt; one started by a pytest-xdist worker
    # inherits SIGINT ignored (and Python then keeps it ignored): restore what a terminal gives.
    script = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from ops.local_stack import LocalStack\n"
              "LocalStack.find().run_oneoff(['true'], env={'AWS_SECRET_ACCESS_KEY': 'x'})\n")
    caller = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(marker, caller)
    caller.send_signal(signal.SIGINT)
    _, stderr = caller.communicate(timeout=90)  # a loaded CI machine starts each Python slowly
    assert b"KeyboardInterrupt" in stderr
    assert docker.calls()[-1]["argv"] == ["rm", "--force", "c0ffee"]


def test_leftover_oneoffs_are_removed_only_once_the_lock_is_held(docker, monkeypatch):
    """Created, never started, without a hold (an interrupt cut their helper short: each holds its secret
    files): removed by the next holder. Review 22 F3: not before the lock, where a tool the lock then
    refuses removed a live restore's container between its create and its start."""
    monkeypatch.setenv("FAKE_DOCKER_LEFTOVERS", "aaa111\t\tcreated\nbbb222\t\trunning")
    access = LocalAccess.find()
    assert not [call for call in docker.calls() if call["argv"][0] in ("ps", "rm")]
    access.lock_token = "fedcba987654"
    assert access.stop_orphaned_oneoffs() == 1
    assert [call["argv"] for call in docker.calls() if call["argv"][0] == "rm"] == [["rm", "--force", "aaa111"]]


def test_a_tool_holding_the_lock_stops_the_running_oneoffs_of_another_hold(docker, monkeypatch):
    """Review 16 F2: a tool killed with kill -9 leaves its one-off running (a put-back --every-key goes on
    copying over what users write after the next run started the server): the next tool holding the
    lock removes it. Review 17 F2: not a one-off started without a hold (a restore's image facts, which
    only read). Review 20 F3a: a hold's token says it whichever host or pid namespace the killed tool
    ran in (the pid it named before meant nothing outside its own)."""
    monkeypatch.setenv("FAKE_DOCKER_LEFTOVERS", "\n".join(["ccc333\t0123456789ab\trunning",
                                                        "ddd444\tfedcba987654\trunning", "fff666\t\trunning"]))
    access = LocalAccess(LocalStack.find())
    with pytest.raises(RuntimeError, match="only with the maintenance lock held"):
        access.stop_orphaned_oneoffs()
    access.lock_token = "fedcba987654"
    assert access.stop_orphaned_oneoffs() == 1
    sweep = [call["argv"] for call in docker.calls() if call["argv"][0] in ("ps", "rm")]
    assert sweep == [["ps", "--all", "--no-trunc", "--filter", "label=org.mlflow-platform.ops=one-off", "--filter",
                      "label=org.mlflow-platform.ops.stack=mlflow-local", "--filter", "status=running",
                      "--filter", "status=created",
                      "--format", '{{.ID}}\t{{.Label "org.mlflow-platform.ops.lock"}}\t{{.State}}'],
                     ["rm", "--force", "ccc333"]]


def test_a_oneoff_whose_tool_died_before_it_started_is_not_started(docker, monkeypatch, tmp_path):
    """Review 21 F3: the helper (in a session of its own) outlives a tool killed with kill -9, and its
    `docker start` could come after the next holder's sweep: a container the gone tool created is removed,
    never started."""
    import time

    monkeypatch.setenv("FAKE_DOCKER_SLOW", "cp")
    script = ("import subprocess, sys\n"
              "from ops.local_stack import LocalStack\n"
              "command = LocalStack.find().oneoff_command(['python', '-c', 'pass'], {'AWS_SECRET_ACCESS_KEY': 'x'})\n"
              "subprocess.Popen(command.argv, env=dict(command.env), start_new_session=True)\n")  # then exits
    subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], check=True, timeout=60)
    deadline = time.monotonic() + 30
    while not [call for call in docker.calls() if call["argv"][0] == "rm"]:
        assert time.monotonic() < deadline, docker.calls()
        time.sleep(0.1)
    assert [call["argv"][0] for call in docker.calls() if call["argv"][0] in ("create", "cp", "start", "rm")] == [
        "create", "cp", "rm"]


def test_oneoffs_started_under_the_lock_carry_its_token(docker):
    access = LocalAccess(LocalStack.find())
    assert not [arg for arg in access.python_command(["-c", "pass"], {}).argv if "ops.lock=" in arg]
    access.lock_token = "fedcba987654"
    argv = access.python_command(["-c", "pass"], {}).argv
    assert argv[argv.index("org.mlflow-platform.ops.lock=fedcba987654") - 1] == "--label"


def test_an_orphan_another_tool_removes_at_the_same_moment_counts_as_stopped(docker, monkeypatch):
    """Review 20 F3: two tools stopping the same orphan at once (before F3a gc swept before its lock):
    the slower `docker rm --force` fails, which failed that whole tool."""
    monkeypatch.setenv("FAKE_DOCKER_LEFTOVERS", "ccc333\t0123456789ab")
    monkeypatch.setenv("FAKE_DOCKER_RM_ERROR", "Error response from daemon: removal of container ccc333 is already in "
                                               "progress")
    assert LocalStack.find().stop_orphaned_oneoffs("fedcba987654") == ["ccc333"]
    monkeypatch.setenv("FAKE_DOCKER_RM_ERROR", "Error response from daemon: permission denied")
    with pytest.raises(OpsError, match="left running failed: Error response from daemon: permission denied"):
        LocalStack.find().stop_orphaned_oneoffs("fedcba987654")


def test_no_leftover_oneoffs_removes_nothing(docker):
    assert LocalStack.find().stop_orphaned_oneoffs("fedcba987654") == []
    assert [call["argv"][0] for call in docker.calls()] == ["inspect", "ps"]


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
    assert command.argv[-4:] == ["--", "python", "-c", "pass"] and IMAGE_ID in command.argv
    assert command.env["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY and SECRET_KEY not in " ".join(command.argv)
    assert command.hold is None and "PGAPPNAME" not in command.env


def test_under_a_hold_every_database_session_is_named_after_it(docker):
    """Review 23 F2: `docker exec` does not pass SIGTERM on, so a tool must be able to find the sessions of
    its psql, pg_dump, pg_restore and one-offs in PostgreSQL: libpq's PGAPPNAME names them `... work <token>`
    (a plain variable on the exec; a file-borne one for a one-off, like every one-off variable)."""
    access = LocalAccess.find()
    access.lock_token = "0123456789ab"
    name = f"mlflow-ops pid {os.getpid()} work 0123456789ab"
    command = access.postgres_command(["psql", "-d", "postgres"])
    assert command.argv[1:] == ["exec", "-i", "-e", f"PGAPPNAME={name}", "--user", "postgres",
                                "mlflow-local-postgres", "psql", "-d", "postgres"]
    assert command.hold == "0123456789ab"
    command = access.python_command(["-c", "pass"], {"AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    assert command.env["PGAPPNAME"] == name and command.hold == "0123456789ab"
    assert "PGAPPNAME_FILE=/run/secrets/PGAPPNAME" in command.argv and not any(name in arg for arg in command.argv)
    assert "org.mlflow-platform.ops.lock=0123456789ab" in command.argv


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
    docker.set_containers([_server(),
                           _container("mlflow-local-postgres", State={"Running": False, "Status": "exited"})])
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


def test_an_option_given_twice_is_read_as_the_server_reads_it():
    """Issue 24 (a cold read): the tools read the first `--artifacts-destination` of the server's
    command while click uses the last; a backup would then copy a destination the server does not use."""
    from ops.access import server_option

    command = ["mlflow", "server", "--artifacts-destination", "s3://old/", "--host", "0.0.0.0",
               "--artifacts-destination=s3://used/"]
    assert server_option(command, "--artifacts-destination") == "s3://used/"
    assert server_option(command + ["--artifacts-destination", "s3://last/"], "--artifacts-destination") == "s3://last/"
    assert server_option(command, "--app-name") is None


def test_backup_and_restore_refuse_a_server_started_with_a_backend_store_flag():
    """Review 11 of issue 28: click prefers --backend-store-uri over the environment the tools read."""
    from ops import OpsError as Error
    from ops.access import StackLayout

    class Access:
        description = "the stack"

        def server_env(self):
            return {"MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://mlflow:x@postgres:5432/mlflow"}

        def server_command(self):
            return ["mlflow", "server", "--artifacts-destination", "s3://b/", "--backend-store-uri=sqlite:///other.db"]

    with pytest.raises(Error, match="started with --backend-store-uri"):
        StackLayout.read(Access())

    class RegistryElsewhere(Access):  # review 12: the models would be left out of every backup
        def server_env(self):
            return {**super().server_env(), "MLFLOW_REGISTRY_STORE_URI": "postgresql://mlflow:x@other:5432/models"}

        def server_command(self):
            return ["mlflow", "server", "--artifacts-destination", "s3://b/"]

    with pytest.raises(Error, match="keeps its model registry elsewhere"):
        StackLayout.read(RegistryElsewhere())

    class RegistryFlag(RegistryElsewhere):
        def server_env(self):
            return Access.server_env(self)

        def server_command(self):
            return ["mlflow", "server", "--artifacts-destination", "s3://b/", "--registry-store-uri", "sqlite:///m.db"]

    with pytest.raises(Error, match="started with --registry-store-uri"):
        StackLayout.read(RegistryFlag())
