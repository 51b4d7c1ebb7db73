"""scripts/gc against a fake `docker` CLI on PATH: it finds the stack's server container, reads the
server's secrets back from its /run/secrets files, and runs the stack's own gc command
(render.gc_spec) in a one-off container from the server's image on the stack's network
(ops/oneoff.py: `docker create`, `docker cp` of the variables as files, `docker start`, `docker rm`).
The values reach the container only as files its secret-env wrapper reads: never on a command line,
in the container's config (`-e`) or in docker's own environment."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from components import render
from components.platforms import local
from tests.harness.program import REPO_ROOT

URI = "postgresql+psycopg2://mlflow:s3cr%40t@postgres:5432/mlflow"
SERVER_SECRETS = {render.BACKEND_URI_ENV: URI, "AWS_ACCESS_KEY_ID": "mlflow-server-key",
                  "AWS_SECRET_ACCESS_KEY": "minio-s3cret-value", render.AUTH_ADMIN_PASSWORD_ENV: "not-for-gc"}
SECRET_VALUES = ("s3cr", "minio-s3cret-value", "not-for-gc")
ONEOFF_ID = "c0ffee"
SERVER = {  # as the local platform creates it: secrets in /run/secrets, their paths in the env
    "Name": "/mlflow-local-mlflow-server", "Image": "sha256:" + "ab" * 32, "State": {"Running": True},
    "Config": {"Entrypoint": local.secret_env_entrypoint(sorted(SERVER_SECRETS)),
               "Cmd": ["sh", "-c", render.METRICS_DIR_RESET, "sh", render.METRICS_DIR, "mlflow", "server",
                       "--artifacts-destination", "s3://mlflow-artifacts/team", "--enable-workspaces"],
               "Env": [*(f"{key}={path}" for key, path in local.secret_file_env(SERVER_SECRETS).items()),
                       "MLFLOW_S3_ENDPOINT_URL=http://minio:9000", "AWS_DEFAULT_REGION=us-east-1"]},
    "NetworkSettings": {"Networks": {"mlflow-local-net": {}}},
}
SERVER_FILES = {local.secret_file_path(name): value for name, value in SERVER_SECRETS.items()}
POSTGRES = {"Name": "/mlflow-local-postgres", "State": {"Running": True}, "Config": {}, "NetworkSettings": {}}

FAKE_DOCKER = """#!{python}
import io, json, os, sys, tarfile
args = sys.argv[1:]
record = {{"argv": args, "env": {{k: v for k, v in os.environ.items() if k.startswith(("MLFLOW", "AWS"))}}}}
if args[:2] == ["cp", "-"]:  # a tar into a container: keep what the daemon would unpack
    with tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read())) as tar:
        record["tar"] = [{{"name": m.name, "mode": m.mode, "uid": m.uid, "gid": m.gid, "dir": m.isdir(),
                          "content": tar.extractfile(m).read().decode() if m.isfile() else None}}
                         for m in tar.getmembers()]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as handle:
    handle.write(json.dumps(record) + "\\n")
if args[0] == os.environ.get("FAKE_DOCKER_BLOCK"):  # hang until signalled
    import time
    open(os.environ["FAKE_DOCKER_BLOCKED"], "w").close()
    time.sleep(60)
if args[0] == "exec" and "psql" in args:  # the lock's session: FAKE_DOCKER_LOCK's answers in turn ("t,f")
    answers = os.environ.get("FAKE_DOCKER_LOCK", "t").split(",")
    for line in sys.stdin:
        tag = line.split("'")[1] + "|" if line.startswith("SELECT 'q") else ""  # a held lock's numbered question
        if "pg_try_advisory_lock" in line or "pg_locks" in line:
            print(tag + (answers.pop(0) if len(answers) > 1 else answers[0]), flush=True)
        elif "pg_terminate_backend" in line:  # the holder ends other holds' work sessions: none here
            print(tag + "0", flush=True)
    sys.exit(0)
if args[0] == "inspect":  # as docker answers: found ones on stdout, the others named on stderr
    print(json.dumps({containers}))
    if not {found}:
        print("Error: No such container: mlflow-local-postgres", file=sys.stderr)
    sys.exit(0 if {found} else 1)
if args[0] == "cp" and args[1] == "mlflow-local-mlflow-server:/run/secrets":  # out: a tar of the directory
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, content in {files}.items():
            info = tarfile.TarInfo("secrets/" + path.rsplit("/", 1)[-1])
            info.size = len(content.encode())
            tar.addfile(info, io.BytesIO(content.encode()))
    sys.stdout.buffer.write(buffer.getvalue())
elif args[0] == "create":
    print("{oneoff_id}")
sys.exit(0)  # cp into, start, rm
"""


def _gc(tmp_path: Path, *args: str, found: bool = True,
        lock: str = "t") -> tuple[subprocess.CompletedProcess, list[dict]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable, containers=[SERVER, POSTGRES] if found else [],
                                         found=found, files=SERVER_FILES, oneoff_id=ONEOFF_ID))
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "docker.log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DOCKER_LOG": str(log), "HOME": str(tmp_path),
           "FAKE_DOCKER_LOCK": lock}
    result = subprocess.run([str(REPO_ROOT / "scripts" / "gc"), *args], env=env, capture_output=True, text=True,
                            timeout=120)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def _env_in_the_container(tmp_path: Path, create_argv: list[str], image_at: int, tar: list[dict]) -> dict[str, str]:
    """For real: the copied tar unpacked under a stand-in root (as the daemon would at /), the
    container's `-e` env pointed there, and the command's secret-env wrapper run by sh, in front of
    a Python that prints the environment the gc command would start with."""
    root = tmp_path / "root"
    for member in tar:
        path = root / member["name"]
        if member["dir"]:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.write_text(member["content"])
            path.chmod(member["mode"])
    docker_env = dict(create_argv[i + 1].split("=", 1) for i in range(image_at) if create_argv[i] == "-e")
    env = {key: str(root / path.lstrip("/")) for key, path in docker_env.items()}
    wrapper = create_argv[image_at + 1:create_argv.index("--", image_at) + 1]
    printed = subprocess.run([*wrapper, sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                             env={**env, "PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True)
    return json.loads(printed.stdout)


def test_gc_runs_the_rendered_command_on_the_stacks_network_with_secrets_as_files(tmp_path):
    result, calls = _gc(tmp_path, "--older-than", "7d")
    assert result.returncode == 0, result.stderr
    assert ["cp", "mlflow-local-mlflow-server:/run/secrets", "-"] in [call["argv"] for call in calls]
    create, copy, start, remove = calls[-4:]
    argv = create["argv"]
    assert argv[0] == "create"
    assert argv[argv.index("--network") + 1] == "mlflow-local-net" and argv[argv.index("--user") + 1] == "mlflow"
    image_at = argv.index(SERVER["Image"])
    names = sorted([render.BACKEND_URI_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL",
                    "AWS_DEFAULT_REGION", "PYTHONUNBUFFERED", render.JOB_EXECUTION_ENV, *render.GC_HTTP_RETRIES,
                    render.GC_LOCK_TOKEN_ENV, "PGAPPNAME"])
    assert argv[image_at + 1:] == [*local.secret_env_entrypoint(names), "python", "-c", render.GC_SCRIPT,
                                   "s3://mlflow-artifacts/team", "7d", "3600", "--all-workspaces"]
    passed = [argv[i + 1] for i, item in enumerate(argv[:image_at]) if item == "-e"]
    assert passed == [f"{name}_FILE=/run/secrets/{name}" for name in names], "only where each file is"
    assert copy["argv"] == ["cp", "-", f"{ONEOFF_ID}:/"]
    files = {m["name"]: m for m in copy["tar"] if not m["dir"]}
    assert sorted(files) == [f"run/secrets/{name}" for name in names]
    assert {(m["mode"], m["uid"], m["gid"]) for m in files.values()} == {(0o400, 10001, 10001)}
    assert start["argv"] == ["start", "--attach", "--interactive", ONEOFF_ID]
    assert remove["argv"] == ["rm", "--force", ONEOFF_ID]
    seen = _env_in_the_container(tmp_path, argv, image_at, copy["tar"])
    assert seen[render.BACKEND_URI_ENV] == URI and seen["AWS_SECRET_ACCESS_KEY"] == "minio-s3cret-value"
    assert seen["AWS_ACCESS_KEY_ID"] == "mlflow-server-key" and seen["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert {key: seen[key] for key in render.GC_HTTP_RETRIES} == render.GC_HTTP_RETRIES
    assert render.AUTH_ADMIN_PASSWORD_ENV not in seen and not [key for key in seen if key.endswith("_FILE")]
    # Review 20 F3a: run under this tool's own hold of the maintenance lock, taken before the sweep of a
    # killed tool's one-offs: the step checks that hold (its token) instead of taking the lock after a gap.
    token = seen[render.GC_LOCK_TOKEN_ENV]
    lock = next(call["argv"] for call in calls if call["argv"][0] == "exec" and "psql" in call["argv"])
    assert lock[:5] == ["exec", "-i", "--user", "postgres", "mlflow-local-postgres"]
    assert lock[-1].endswith(f" lock {token}")
    assert argv[argv.index(f"org.mlflow-platform.ops.lock={token}") - 1] == "--label"
    # Review 23 F2: the step's database sessions are this hold's work sessions (a next holder ends them).
    assert seen["PGAPPNAME"].endswith(f" work {token}")
    order = [call["argv"][0] if call["argv"][0] != "ps" else "ps " + call["argv"][-1].split("\t")[-1] for call in calls]
    assert order.index("exec") < order.index("ps {{.State}}") < order.index("create")
    for call in (create, copy, start, remove):
        assert call["env"] == {}, "docker itself never holds a value"
        assert not [value for value in SECRET_VALUES if value in " ".join(call["argv"])]
    assert "not-for-gc" not in json.dumps(copy["tar"]), "gc needs no MLflow user"


def test_gc_refuses_while_another_holds_the_maintenance_lock(tmp_path):
    result, calls = _gc(tmp_path, lock="f")
    assert result.returncode == render.GC_LOCKED_EXIT, result.stderr
    assert "holds its maintenance lock" in result.stderr and "nothing was deleted" in result.stderr
    assert not [call for call in calls if call["argv"][0] in ("run", "create")]


def test_gc_whose_lock_went_during_its_sweep_deletes_nothing_and_says_so(tmp_path):
    """Review 21 F2: taken, then gone (PostgreSQL restarted) when gc confirms it after the sweep: exit 75, one line."""
    result, calls = _gc(tmp_path, lock="t,f")
    assert result.returncode == render.GC_LOCKED_EXIT, result.stderr
    assert "was lost" in result.stderr and "nothing was deleted" in result.stderr and "Traceback" not in result.stderr
    assert not [call for call in calls if call["argv"][0] in ("run", "create")]


@pytest.mark.parametrize(("args", "found", "message"), [
    (("--older-than", "a month"), True, "must be an age like 30d"),
    ((), False, "no container mlflow-local-postgres, mlflow-local-mlflow-server"),
])
def test_gc_refuses_with_one_line(tmp_path, args, found, message):
    result, calls = _gc(tmp_path, *args, found=found)
    assert result.returncode != 0 and message in result.stderr
    assert not [call for call in calls if call["argv"][0] in ("run", "create")]
    assert "s3cr" not in result.stderr + result.stdout


def test_a_hang_up_during_gc_still_removes_the_oneoff(tmp_path):
    """The terminal (or ssh session) running scripts/gc closes while the one-off container runs:
    SIGHUP to the whole process group. The one-off helper must still `docker rm --force` the
    container holding the server's secrets (before: Python's default SIGHUP ended it at once)."""
    import signal
    import time

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable, containers=[SERVER, POSTGRES], found=True,
                                         files=SERVER_FILES, oneoff_id=ONEOFF_ID))
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    log, marker = tmp_path / "docker.log", tmp_path / "blocked"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DOCKER_LOG": str(log), "HOME": str(tmp_path),
           "FAKE_DOCKER_BLOCK": "start", "FAKE_DOCKER_BLOCKED": str(marker)}
    gc = subprocess.Popen([str(REPO_ROOT / "scripts" / "gc")], env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert gc.poll() is None and time.monotonic() < deadline, gc.communicate()
        time.sleep(0.05)
    os.killpg(gc.pid, signal.SIGHUP)
    gc.communicate(timeout=30)
    time.sleep(1)  # the helper outlives gc in its own session: give its removal time to land
    calls = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    assert calls[-1] == ["rm", "--force", ONEOFF_ID]
    orphans = [index for index, call in enumerate(calls) if call[0] == "ps" and "status=running" in call]
    assert orphans and orphans[0] < [call[0] for call in calls].index("create"), \
        "a killed tool's one-offs stopped first"
    assert [call[0] for call in calls].index("exec") < orphans[0], "with the lock held (review 20, F3a)"


class _Stack:
    """What gc_spec_for reads of a running local stack."""

    def __init__(self, command: list[str]):
        self.command = command

    def server_command(self) -> list[str]:
        return self.command

    def server_env(self) -> dict[str, str]:
        return {render.BACKEND_URI_ENV: URI, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}

    def server_image(self) -> str:
        return "sha256:" + "ab" * 32

    def container(self, service: str) -> str:
        return f"mlflow-local-{service}"


def test_gc_reads_the_server_options_as_the_server_does():
    """Review 11 of issue 28: gc read the first --artifacts-destination while the server (click),
    backup and restore use the last: its artifacts server deleted under another destination and left
    the real artifacts as orphans. The `--name=value` form counts too; a --backend-store-uri flag
    (which click prefers over the environment the tools read) is refused."""
    from ops import OpsError
    from ops.gc import gc_spec_for

    for command in (["mlflow", "server", "--artifacts-destination", "s3://old/a", "--artifacts-destination",
                     "s3://mlflow-artifacts/team"],
                    ["mlflow", "server", "--artifacts-destination=s3://mlflow-artifacts/team"]):
        spec, _ = gc_spec_for(_Stack(command), "30d", 60)
        assert spec.command[3] == "s3://mlflow-artifacts/team", spec.command[:4]
    with pytest.raises(OpsError, match="started with --backend-store-uri"):
        gc_spec_for(_Stack(["mlflow", "server", "--artifacts-destination", "s3://b/", "--backend-store-uri",
                            "postgresql://other/db"]), "30d", 60)


def test_an_interrupt_after_the_step_ended_keeps_its_status(monkeypatch):
    """Review 22 F1: Ctrl-C while the lock is let go (up to seconds), after the step had ended: exit 130 and
    "interrupted" told cron a complete gc was cut short."""
    import contextlib
    import types

    from ops import gc

    @contextlib.contextmanager
    def lock(access, holder):
        yield types.SimpleNamespace(token="0123456789ab")
        raise KeyboardInterrupt

    stack = types.SimpleNamespace(oneoff_command=lambda argv, env, token: types.SimpleNamespace(argv=argv, env=env))
    monkeypatch.setattr(gc.LocalAccess, "find", classmethod(lambda cls, prefix: types.SimpleNamespace(stack=stack)))
    monkeypatch.setattr(gc, "gc_spec_for", lambda stack, older, timeout: (types.SimpleNamespace(command=["gc"]), {}))
    monkeypatch.setattr(gc, "maintenance_lock", lock)
    monkeypatch.setattr(gc, "run_process", lambda argv, env, **kwargs: types.SimpleNamespace(returncode=0))
    assert gc.main([]) == 0
