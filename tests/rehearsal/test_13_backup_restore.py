"""Backup and restore (ops.backup, ops.restore), for real: the functions scripts/backup and
scripts/restore run, against the rehearsal's stack reached natively (RehearsalAccess below: Debian's
pg_dump/pg_restore/psql against its PostgreSQL cluster as the superuser, this venv's Python with the
server's S3 environment against the S3 stand-in) instead of through `docker exec` / `docker run`.
Only how a command reaches a process differs from the local stack's LocalAccess.

The stack runs with auth.mode mlflow, so there is an auth database to back up too. The client logs
experiments (one deleted), runs with metric histories, params, tags and artifacts (one binary of a
few MiB), a deleted run, a registered model with versions, an alias and tags, and a user with a
permission; a backup is taken; the stack is wiped (databases dropped and made again as a new
deployment makes them, bucket emptied); the backup is restored; the MLflow client must read back
all of it, artifacts byte for byte. Refusals: a non-empty target without --replace, a schema
revision the server's MLflow does not know, a damaged dump, a non-empty backup directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import pytest

from components import render
from components.image_scripts import script_source
from components.platforms.local import secret_env_entrypoint, secret_file_env
from ops import OpsError, RefusedError
from ops.access import Command, StackLayout, work_session_env
from ops.archive import DUMP_FILES, MANIFEST, OBJECTS_FILE, Manifest, file_sha256, table_counts
from ops.backup import backup
from ops.lock import WATCH_SECONDS, LockLost, maintenance_lock
from ops.restore import REPLACED_TAG, purge_replaced, put_back, restore
from rehearsal.launcher import RehearsalStack, Variant
from rehearsal.processes import base_env
from tests.container_pipes import PIPES_SOURCE, through_pipes
from tests.rehearsal.conftest import mlflow_client_for, scenario_stack
from tests.rehearsal.interrupt import copy_idle
from tests.rehearsal.sign_in import cheap_hashes

BINARY_BYTES = 4 * 1024 * 1024


ONEOFF_MARK_ENV = "REHEARSAL_ONEOFF"
"""Marks the rehearsal's one-offs (python_command) with their stack's ops directory and the maintenance
lock hold they work under (`<dir>:<token>`, `<dir>:` without one), as LocalStack's labels mark its
containers: stop_orphaned finds the ones a tool that holds no lock any more left running by it."""


def oneoff_mark(workdir: Path, lock_token: Optional[str]) -> dict[str, str]:
    return {ONEOFF_MARK_ENV: f"{workdir}:{lock_token or ''}"}


def reads_only(argv: Sequence[str]) -> bool:
    """A one-off that changes nothing (started without the lock: a restore's image facts, a listing)."""
    from ops import mlflow_facts

    return argv[1:2] == [script_source(mlflow_facts.__file__)] or argv[2:3] == ["list"]


def stop_orphaned(workdir: Path, lock_token: str) -> int:
    """SIGKILL every one-off of the stack whose ops directory is `workdir` that works under another hold
    than `lock_token`; returns how many one-offs that was (a one-off's own children carry its mark too)."""
    prefix, marked = f"{ONEOFF_MARK_ENV}={workdir}:".encode(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            tokens = [item[len(prefix):].decode() for item in (entry / "environ").read_bytes().split(b"\0")
                      if item.startswith(prefix)]
            if tokens and tokens[0] not in ("", lock_token):
                marked[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:  # gone meanwhile, or not ours to read
            continue
    for pid in marked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    return sum(1 for parent in marked.values() if parent not in marked)


class RehearsalAccess:
    """ops.access.StackAccess for the rehearsal: the same commands, started natively."""

    def __init__(self, stack: RehearsalStack):
        assert stack.postgres is not None
        self.stack = stack
        self.postgres = stack.postgres
        self.description = "the rehearsal stack"
        self.workdir = stack.base_dir / "ops"
        for sub in ("home", "tmp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.python_runs = 0
        self.server_stops = 0
        self.lock_token: Optional[str] = None

    @property
    def variant(self) -> Variant:
        return self.stack.variants["default"]

    def postgres_command(self, argv: Sequence[str]) -> Command:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.workdir / "home"),
               "PGHOST": "127.0.0.1", "PGPORT": str(self.postgres.port), "PGUSER": self.postgres.superuser,
               "PGPASSWORD": self.postgres.superuser_password, **work_session_env(self.lock_token)}
        return Command(through_pipes([str(self.postgres.bindir / argv[0]), *argv[1:]], forward_sigterm=False), env,
                       hold=self.lock_token)

    def oneoff_env(self) -> dict[str, str]:
        """What a one-off's process starts with, before its own variables (the image's environment)."""
        return {**base_env(self.workdir / "home", self.workdir / "tmp"), **oneoff_mark(self.workdir, self.lock_token)}

    def python_command(self, argv: Sequence[str], env: Mapping[str, str]) -> Command:
        self.python_runs += 1
        assert self.lock_token is not None or reads_only(argv), \
            f"a one-off that writes started without the lock: {argv[2:]}"
        return Command(through_pipes([sys.executable, *argv], forward_sigterm=True),
                       {**self.oneoff_env(), **env, **work_session_env(self.lock_token)}, hold=self.lock_token)

    def server_env(self) -> Mapping[str, str]:
        return self.variant.server.service.env

    def server_command(self) -> Sequence[str]:
        return list(self.variant.server.spec.command)

    def stop_server(self) -> bool:
        self.server_stops += 1
        was_running = self.variant.server.service.alive()
        self.variant.server.stop()
        return was_running

    def start_server(self) -> None:
        if not self.variant.server.service.alive():  # as `docker start` leaves a running container be
            self.variant.server.start()

    def stop_orphaned_oneoffs(self) -> int:
        assert self.lock_token is not None
        return stop_orphaned(self.workdir, self.lock_token)


# --- the stack and what the client logged ----------------------------------------------------------


@pytest.fixture(scope="module")
def stack() -> Iterator[RehearsalStack]:
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module")
def access(stack) -> RehearsalAccess:
    return RehearsalAccess(stack)


@contextlib.contextmanager
def admin_client(stack: RehearsalStack):
    """The MLflow client as the stack's admin (the admin_username/admin_password outputs). The admin signs in
    once against its hash as the stack holds it (as the deployment or a restore's auth upgrade step set it),
    then gets a one-round hash of the same password for the requests that follow: the backups, not the
    sign-ins, are the subject here (tests/rehearsal/sign_in.py)."""
    import requests

    variant = stack.variants["default"]
    signed_in = requests.get(f"{variant.tracking_uri}/api/2.0/mlflow/users/get", params={"username": variant.username},
                             auth=(variant.username, variant.password), timeout=60)
    assert signed_in.status_code == 200, f"the admin does not sign in with the deployed password: {signed_in.text}"
    cheap_hashes(stack, [(variant.username, variant.password)])
    with pytest.MonkeyPatch.context() as patch, mlflow_client_for(variant, patch) as client:
        yield client


FRESH_PREFIX = "fresh_"
"""The copies of the stack's databases as they were new (`fresh`); not `<name>__...`, the restore's names."""


@pytest.fixture(scope="module")
def fresh(stack) -> dict[str, str]:
    """Database -> a copy of it made while the stack is new, before anything is logged: what its provisioning
    and upgrade steps made and its server's first start wrote (`_wipe` makes the databases from these)."""
    from components.config import auth_database_name

    tracking = stack.base_config.database.name
    copies = {name: FRESH_PREFIX + name for name in (tracking, auth_database_name(tracking))}
    for name, copy in copies.items():
        copy_idle(stack, name, copy)
    return copies


@pytest.fixture(scope="module")
def logged(stack, fresh, tmp_path_factory) -> dict[str, Any]:
    """What the client logged, and the binary artifact's own sha256 (computed from the file, not the stack)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.server.auth.client import AuthServiceClient

    variant = stack.variants["default"]
    files = tmp_path_factory.mktemp("artifacts")
    (files / "model").mkdir()
    (files / "model" / "weights.bin").write_bytes(os.urandom(BINARY_BYTES))
    (files / "model" / "MLmodel").write_text("flavors: {}\n")
    (files / "notes.txt").write_text("grüße ✓ notes\n")
    (files / "nested" / "deeper").mkdir(parents=True)
    (files / "nested" / "deeper" / "data.json").write_text(json.dumps({"a": [1, 2, 3]}))
    tag = uuid.uuid4().hex[:8]
    with admin_client(stack) as client:
        kept = client.create_experiment(f"backup-{tag}", tags={"team": "rehearsal", "purpose": "backup"})
        dropped = client.create_experiment(f"backup-deleted-{tag}")
        now = int(time.time() * 1000)
        run = client.create_run(kept, run_name="trained", tags={"stage": "dev"})
        run_id = run.info.run_id
        client.log_batch(run_id, metrics=[Metric("loss", 1 / (step + 1), now + step, step) for step in range(200)]
                         + [Metric("acc", step / 10, now + step, step) for step in range(10)],
                         params=[Param("lr", "0.01"), Param("unicode", "grüße @:/?#%&+")],
                         tags=[RunTag("owner", "rehearsal")])
        client.log_artifacts(run_id, str(files))
        client.set_terminated(run_id, "FINISHED")
        second = client.create_run(kept, run_name="second").info.run_id
        client.log_metric(second, "loss", 0.5, timestamp=now, step=0)
        client.log_text(second, "second run\n", "readme.txt")
        deleted_run = client.create_run(kept, run_name="deleted").info.run_id
        client.log_param(deleted_run, "p", "v")
        client.delete_run(deleted_run)
        in_dropped = client.create_run(dropped, run_name="in deleted experiment").info.run_id
        client.log_metric(in_dropped, "m", 1.0, timestamp=now, step=0)
        client.set_terminated(in_dropped, "FAILED")
        client.delete_experiment(dropped)

        model = f"backup-model-{tag}"
        client.create_registered_model(model, tags={"domain": "rehearsal"}, description="restored?")
        for _ in range(2):
            client.create_model_version(model, source=f"{run.info.artifact_uri}/model", run_id=run_id)
        client.set_model_version_tag(model, "2", "validated", "yes")
        client.set_registered_model_alias(model, "champion", "2")

        admin = AuthServiceClient(variant.tracking_uri)
        alice_password = f"alice-{uuid.uuid4().hex}"
        admin.create_user("alice", alice_password)
        admin.grant_user_permission("alice", "experiment", str(kept), "EDIT")
        admin.create_user("carol", f"carol-{uuid.uuid4().hex}")  # a second admin the team made (review 15, F4)
        admin.update_user_admin("carol", True)
    return {"experiments": [kept, dropped], "runs": [run_id, second, deleted_run, in_dropped], "model": model,
            "binary_sha256": hashlib.sha256((files / "model" / "weights.bin").read_bytes()).hexdigest(),
            "alice": ("alice", alice_password), "artifact_files": 4 + 1}


def snapshot(client, workdir: Path, artifacts: bool = True) -> dict[str, Any]:
    """Everything the client can read back: experiments (deleted ones too), runs (all lifecycles) with
    metric histories, params, tags and the sha256 of every artifact (downloaded through the server;
    without `artifacts`: only their paths and sizes, as the server lists them), registered models
    and versions with tags and aliases."""
    from mlflow.entities import ViewType

    experiments = {e.experiment_id: (e.name, e.lifecycle_stage, e.artifact_location, dict(e.tags), e.creation_time,
                                     e.last_update_time)
                   for e in client.search_experiments(view_type=ViewType.ALL)}
    runs = {}
    for run in client.search_runs(list(experiments), run_view_type=ViewType.ALL, max_results=1000):
        info = run.info
        histories = {key: sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(info.run_id, key))
                     for key in run.data.metrics}
        runs[info.run_id] = {
            "info": (info.experiment_id, info.run_name, info.status, info.lifecycle_stage, info.start_time,
                     info.end_time, info.artifact_uri),
            "params": dict(run.data.params), "tags": dict(run.data.tags), "metrics": histories,
            "artifacts": _artifacts(client, info.run_id, workdir / info.run_id) if artifacts else
            _artifact_sizes(client, info.run_id),
        }
    models = {}
    for model in client.search_registered_models():
        versions = {}
        for version in client.search_model_versions(f"name = '{model.name}'"):
            versions[version.version] = (version.source, version.run_id, version.status, dict(version.tags),
                                         sorted(version.aliases), version.creation_timestamp)
        models[model.name] = {"tags": dict(model.tags), "description": model.description,
                              "aliases": dict(model.aliases), "versions": versions}
    return {"experiments": experiments, "runs": runs, "models": models}


def _artifacts(client, run_id: str, destination: Path) -> dict[str, tuple[int, str]]:
    """path -> (size, sha256) of every artifact of a run, downloaded through the tracking server."""
    root = Path(client.download_artifacts(run_id, "", str(destination)))
    return {path.relative_to(root).as_posix(): (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(root.rglob("*")) if path.is_file()}


def _artifact_sizes(client, run_id: str) -> dict[str, tuple[int, None]]:
    """path -> (size, None) of every artifact of a run, as the tracking server lists them."""
    found: dict[str, tuple[int, None]] = {}
    pending: list[Any] = [None]
    while pending:
        for entry in client.list_artifacts(run_id, pending.pop()):
            if entry.is_dir:
                pending.append(entry.path)
            else:
                found[entry.path] = (entry.file_size, None)
    return found


def _sizes_only(state: dict[str, Any]) -> dict[str, Any]:
    runs = {run_id: {**run, "artifacts": {path: size for path, (size, _) in run["artifacts"].items()}}
            for run_id, run in state["runs"].items()}
    return {**state, "runs": runs}


@pytest.fixture(scope="module")
def before(stack, logged, tmp_path_factory) -> dict[str, Any]:
    with admin_client(stack) as client:
        state = snapshot(client, tmp_path_factory.mktemp("before"))
    # The snapshot must hold what was logged, or comparing two of them proves nothing.
    kept, dropped = logged["experiments"]
    assert state["experiments"][dropped][1] == "deleted" and state["experiments"][kept][1] == "active"
    trained = state["runs"][logged["runs"][0]]
    assert len(trained["metrics"]["loss"]) == 200 and trained["params"]["unicode"] == "grüße @:/?#%&+"
    assert trained["artifacts"]["model/weights.bin"] == (BINARY_BYTES, logged["binary_sha256"])
    assert state["runs"][logged["runs"][2]]["info"][3] == "deleted"
    assert sorted(state["models"][logged["model"]]["versions"]) == ["1", "2"]
    assert state["models"][logged["model"]]["aliases"] == {"champion": "2"}
    return state


@pytest.fixture(scope="module")
def taken(access, before, tmp_path_factory) -> dict[str, Any]:
    """The backup every test below uses, taken once, and how long it took."""
    directory = tmp_path_factory.mktemp("backups") / "first"
    started = time.monotonic()
    backup(access, directory, say=lambda message: None)
    return {"directory": directory, "seconds": time.monotonic() - started}


@pytest.fixture(scope="module")
def backup_dir(taken) -> Path:
    return taken["directory"]


def _stack_rows(stack: RehearsalStack) -> str:
    """A fingerprint of both databases (rows per table) and the server's PID: 'nothing changed'."""
    assert stack.postgres is not None
    counts = [stack.postgres.psql("SELECT count(*) FROM runs", "mlflow"),
              stack.postgres.psql("SELECT count(*) FROM metrics", "mlflow"),
              stack.postgres.psql("SELECT count(*) FROM experiments", "mlflow"),
              stack.postgres.psql("SELECT count(*) FROM users", "mlflow_auth"),
              stack.postgres.psql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database")]
    return "|".join(c.strip() for c in counts) + f"|pid {stack.variants['default'].server.service.pid}"


def _objects(stack: RehearsalStack) -> dict[str, int]:
    assert stack.s3 is not None
    s3 = stack.s3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.s3.bucket)
    return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}


# --- tests ------------------------------------------------------------------------------------------


def test_backup_refuses_a_non_empty_directory(access, tmp_path):
    (tmp_path / "something.txt").write_text("not a backup\n")
    with pytest.raises(RefusedError, match="not empty"):
        backup(access, tmp_path, say=lambda message: None)
    assert [path.name for path in tmp_path.iterdir()] == ["something.txt"]


def test_a_folder_marker_is_skipped_and_named_not_failing_the_backup(stack, access, backup_dir, tmp_path):
    """Review 3 F6: a zero-byte key ending in `/` (the AWS console's "Create folder") cannot be a tar
    member; it made every backup fail. It is skipped, said with its full key and kept in the manifest."""
    s3, marker = stack.s3.client("s3"), "reports/"
    s3.put_object(Bucket=stack.s3.bucket, Key=marker, Body=b"")
    said: list[str] = []
    try:
        manifest = backup(access, tmp_path / "with-marker", say=said.append)
    finally:
        s3.delete_object(Bucket=stack.s3.bucket, Key=marker)
    uri = f"s3://{stack.s3.bucket}/{marker}"
    assert [item["key"] for item in manifest.objects_skipped] == [uri]
    assert Manifest.load(tmp_path / "with-marker").objects_skipped == manifest.objects_skipped
    assert any(line.startswith("1 objects are NOT backed up") and f"{uri}: a zero-byte folder marker" in line
               for line in said), said
    assert len(manifest.objects.entries) == len(Manifest.load(backup_dir).objects.entries)


def test_backup_holds_dumps_objects_and_a_manifest_of_what_was_logged(stack, access, logged, before, taken,
                                                                      report_figure):
    backup_dir = taken["directory"]
    report_figure("backup seconds", f"{taken['seconds']:.1f}")
    report_figure("backup bytes", json.dumps({path.name: path.stat().st_size for path in backup_dir.iterdir()}))
    assert sorted(path.name for path in backup_dir.iterdir()) == sorted(
        [DUMP_FILES["tracking"], DUMP_FILES["auth"], OBJECTS_FILE, MANIFEST])
    assert all((path.stat().st_mode & 0o077) == 0 for path in backup_dir.iterdir())
    manifest = Manifest.load(backup_dir)
    runs = len(before["runs"])
    artifact_objects = sum(len(run["artifacts"]) for run in before["runs"].values())
    assert manifest.counts["runs"] == runs == 4
    assert manifest.counts["experiments"] == len(before["experiments"]) == 3
    assert manifest.counts["metrics"] == 200 + 10 + 1 + 1
    assert manifest.counts["registered_models"] == 1 and manifest.counts["model_versions"] == 2
    assert manifest.counts["objects"] == artifact_objects == logged["artifact_files"]
    assert manifest.counts["bytes"] > BINARY_BYTES
    binary = [entry for entry in manifest.objects.entries if entry.key.endswith("model/weights.bin")]
    assert [entry.sha256 for entry in binary] == [logged["binary_sha256"]]
    # Facts of the server's MLflow and schema, as the database itself says.
    import mlflow

    revision = stack.postgres.psql("SELECT version_num FROM alembic_version", "mlflow").strip()
    assert manifest.mlflow_version == mlflow.__version__ and manifest.schema_revision == revision
    assert manifest.databases["auth"].app == "basic-auth" and manifest.databases["auth"].tables["users"] == 3
    assert manifest.artifacts_destination == StackLayout.read(access).artifacts_destination
    assert manifest.databases["tracking"].sha256 == file_sha256(backup_dir / DUMP_FILES["tracking"])


DOCKER_SHIM = r'''#!{python}
"""The docker CLI as far as ops.local_stack and ops/oneoff.py use it, over the rehearsal: `inspect`
answers from the rehearsal's server; `cp <server>:/run/secrets -` writes a tar of the server's secret
files; `exec ... <prefix>-postgres` runs the PostgreSQL tool natively (its `-e` variables added, a SIGTERM
not passed on: tests/container_pipes.py); `create` keeps a one-off
container's arguments under a state directory and prints its id; `cp - <id>:/` unpacks the tar into
that container's root (modes kept, as the daemon does); `start --attach --interactive <id>` runs the
container's command natively with only its `-e` env (each /run/secrets path mapped into its root), so
the platform's secret-env wrapper (sh) reads the values from the files and execs this venv's Python;
`rm --force <id>...` removes them (killing a running one); `ps --all --quiet ... --filter status=created`
lists those created and never started (the tools' sweep of leftovers), `ps --no-trunc ... status=running`
those still running with the tool that started them (what a tool holding the lock stops). Each call is
logged with the secret values docker itself could see."""
import io, json, os, shutil, sys, tarfile

config = json.load(open(os.environ["DOCKER_SHIM_CONFIG"]))
args = sys.argv[1:]
state = config["state"]
with open(config["log"], "a") as log:
    log.write(json.dumps({{"argv": args, "env": sorted(name for name, value in config["secrets"].items()
                                                     if value in os.environ.values())}}) + "\n")
if args[0] == "inspect":
    names = [arg for arg in args[1:] if not arg.startswith("--") and arg != "container"]
    found = [config["containers"][name] for name in names if name in config["containers"]]
    print(json.dumps(found))
    sys.exit(0 if len(found) == len(names) else 1)
if args[0] == "exec":  # through pipes, and a SIGTERM stops this CLI but not the command (tests/container_pipes.py)
    env, at = dict(config["pg_env"]), 2
    assert args[1] == "-i", args
    while args[at] == "-e":
        env.update([args[at + 1].split("=", 1)])
        at += 2
    assert args[at:at + 3] == ["--user", "postgres", config["prefix"] + "-postgres"], args
    argv = args[at + 3:]
    os.execve(config["python"], [config["python"], "-c", config["pipes"], "exec",
                                 os.path.join(config["pg_bindir"], argv[0]), *argv[1:]], env)
if args[:3] == ["cp", config["prefix"] + "-mlflow-server:/run/secrets", "-"]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo("secrets")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name, value in config["secrets"].items():
            data = value.encode()
            info = tarfile.TarInfo("secrets/" + name)
            info.size, info.mode = len(data), 0o400
            tar.addfile(info, io.BytesIO(data))
    sys.stdout.buffer.write(buffer.getvalue())
    sys.exit(0)
if args[0] == "create":
    image_at = args.index(config["image"])
    container = "oneoff%d" % len(os.listdir(state))
    os.makedirs(os.path.join(state, container, "root"))
    with open(os.path.join(state, container, "create.json"), "w") as handle:
        json.dump(args[1:], handle)
    print(container)
    sys.exit(0)
if args[:2] == ["cp", "-"] and args[2].endswith(":/"):
    root = os.path.join(state, args[2][:-2], "root")
    with tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read())) as tar:
        tar.extractall(root, filter="tar")
    sys.exit(0)
if args[:3] == ["ps", "--all", "--no-trunc"]:  # the holder's sweep: running or created one-offs of the stack
    assert "status=running" in args and "status=created" in args, args
    assert "label=org.mlflow-platform.ops.stack=" + config["prefix"] in args, args
    def status_of(name):
        if not os.path.exists(os.path.join(state, name, "started")):
            return "created"
        try:
            os.kill(int(open(os.path.join(state, name, "started")).read()), 0)
            return "running"
        except (OSError, ValueError):
            return "exited"
    def hold(name):  # its lock label, "" without one
        create = json.load(open(os.path.join(state, name, "create.json")))
        return next((create[i + 1].split("=", 1)[1] for i, arg in enumerate(create)
                     if arg == "--label" and create[i + 1].startswith("org.mlflow-platform.ops.lock=")), "")
    print("\n".join(name + "\t" + hold(name) + "\t" + status_of(name) for name in sorted(os.listdir(state))
                    if status_of(name) in ("created", "running")))
    sys.exit(0)
if args[:3] == ["start", "--attach", "--interactive"]:
    container = os.path.join(state, args[3])
    with open(os.path.join(container, "started"), "w") as started:
        started.write(str(os.getpid()))  # the command's, after the execve below
    create = json.load(open(os.path.join(container, "create.json")))
    image_at = create.index(config["image"])
    env = dict(config["base_env"])
    for index in [i for i, arg in enumerate(create[:image_at]) if arg == "-e"]:
        name, _, value = create[index + 1].partition("=")
        env[name] = os.path.join(container, "root", value.lstrip("/")) if value.startswith("/run/secrets/") else value
    argv = create[image_at + 1:]
    wrapped = argv[0] == "sh"  # the secret-env wrapper in front of the command (when it has variables)
    assert wrapped == any(arg == "-e" for arg in create[:image_at]) and (not wrapped or "--" in argv), argv
    command_at = argv.index("--") + 1 if wrapped else 0
    assert argv[command_at] == "python", argv
    argv[command_at] = config["python"]
    os.execve("/bin/sh" if wrapped else argv[0], argv, env)
if args[:2] == ["rm", "--force"]:
    for name in args[2:]:
        try:
            os.kill(int(open(os.path.join(state, name, "started")).read()), 9)
        except (OSError, ValueError):
            pass
        shutil.rmtree(os.path.join(state, name))
    sys.exit(0)
sys.exit(f"docker shim: unsupported {{args[:2]}}")
'''


def test_scripts_backup_through_the_docker_cli(stack, access, backup_dir, tmp_path):
    """scripts/backup as a user runs it (LocalStack discovery, the server's secrets read from its
    /run/secrets, docker exec, one-off containers whose variables arrive as files), over a docker CLI
    stand-in that runs the same commands natively: the one-offs through the platform's secret-env
    wrapper, which must find every value in the files copied in (none is ever an `-e` value)."""
    prefix, image = "mlflow-rehearsal", "sha256:" + "12" * 32
    variant = stack.variants["default"]
    env = variant.server.service.env
    secrets = {name: env[name] for name in variant.server.spec.secret_env_names}
    server_env = {**{k: v for k, v in env.items() if k not in secrets}, **secret_file_env(secrets)}
    server = {"Name": f"/{prefix}-mlflow-server", "Image": image,
              "Config": {"Env": [f"{k}={v}" for k, v in server_env.items()],
                         "Cmd": list(variant.server.spec.command),
                         "Entrypoint": secret_env_entrypoint(sorted(secrets))},
              "NetworkSettings": {"Networks": {f"{prefix}-net": {}}}, "State": {"Running": True}}
    postgres = {"Name": f"/{prefix}-postgres", "Image": image, "Config": {"Env": [], "Cmd": []},
                "NetworkSettings": {"Networks": {f"{prefix}-net": {}}}, "State": {"Running": True}}
    shim_dir, state = tmp_path / "bin", tmp_path / "containers"
    shim_dir.mkdir()
    state.mkdir()
    log = tmp_path / "docker.log"
    config = {"prefix": prefix, "image": image, "log": str(log), "python": sys.executable, "state": str(state),
              "containers": {f"{prefix}-mlflow-server": server, f"{prefix}-postgres": postgres}, "secrets": secrets,
              "pg_bindir": str(stack.postgres.bindir), "pg_env": dict(access.postgres_command(["psql"]).env),
              "base_env": access.oneoff_env(), "pipes": PIPES_SOURCE}
    (tmp_path / "shim.json").write_text(json.dumps(config))
    (shim_dir / "docker").write_text(DOCKER_SHIM.format(python=sys.executable))
    (shim_dir / "docker").chmod(0o755)
    target = tmp_path / "via-cli"
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([str(repo / "scripts" / "backup"), str(target), "--prefix", prefix], cwd=tmp_path,
                            env={"PATH": f"{shim_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
                                 "DOCKER_SHIM_CONFIG": str(tmp_path / "shim.json")},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    via_cli, first = Manifest.load(target), Manifest.load(backup_dir)
    assert via_cli.counts == first.counts and via_cli.objects.entries == first.objects.entries
    assert {role: db.tables for role, db in via_cli.databases.items()} == \
        {role: db.tables for role, db in first.databases.items()}
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    creates = [call["argv"] for call in calls if call["argv"][0] == "create"]
    assert any("AWS_SECRET_ACCESS_KEY_FILE=/run/secrets/AWS_SECRET_ACCESS_KEY" in argv for argv in creates)
    for argv in creates:  # every variable of a one-off is a file: `-e` holds only where it is
        passed = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-e"]
        assert all(entry == f"{entry.split('_FILE=')[0]}_FILE=/run/secrets/{entry.split('_FILE=')[0]}"
                              for entry in passed), argv
    assert not list(state.iterdir()), "every one-off container was removed"
    assert all(call["env"] == [] for call in calls), "docker itself never holds a secret value"
    values = [value for value in secrets.values() if len(value) >= 8]
    assert values and not any(value in arg for call in calls for arg in call["argv"] for value in values)
    assert not any(value in result.stderr + result.stdout for value in values)


def test_restore_into_a_non_empty_stack_is_refused_without_replace(stack, access, backup_dir, before):
    fingerprint, objects, stops = _stack_rows(stack), _objects(stack), access.server_stops
    with pytest.raises(RefusedError, match=r"not empty \(runs 4, experiments 2 besides Default, registered_models 1, "
                                           r"model_versions 2, .*role_permissions \d+, users besides the admin 2, "
                                           r"5 objects \(\d+ bytes\) under s3://.*pass --replace"):
        restore(access, backup_dir, say=lambda message: None)
    assert (_stack_rows(stack), _objects(stack), access.server_stops) == (fingerprint, objects, stops)


def test_a_backup_from_a_newer_mlflow_schema_is_refused(stack, access, backup_dir, tmp_path):
    newer = tmp_path / "newer"
    shutil.copytree(backup_dir, newer)
    raw = json.loads((newer / MANIFEST).read_text())
    raw["mlflow_version"] = "9.9.9"
    raw["schema_revision"] = raw["databases"]["tracking"]["schema_revision"] = "ffffffffffff"
    (newer / MANIFEST).write_text(json.dumps(raw))
    fingerprint, stops = _stack_rows(stack), access.server_stops
    import mlflow

    with pytest.raises(RefusedError) as refused:
        restore(access, newer, replace=True, say=lambda message: None)
    message = str(refused.value)
    assert "ffffffffffff" in message and "9.9.9" in message and mlflow.__version__ in message
    assert "newer MLflow" in message and "mlflowVersion" in message
    assert (_stack_rows(stack), access.server_stops) == (fingerprint, stops)


def _damage_table_data(dump: Path) -> None:
    """Flip a byte inside the largest compressed data chunk of a custom-format dump (a chunk is a
    length, written as a zero sign byte and 4 bytes little-endian, then a zlib stream starting 78 9c):
    the table of contents stays readable, the table's data fails zlib's check."""
    data = bytearray(dump.read_bytes())
    chunks = []
    at = data.find(b"\x78\x9c")
    while at != -1:
        if at >= 5 and data[at - 5] == 0:
            length = struct.unpack("<I", data[at - 4:at])[0]
            if 64 < length <= len(data) - at:
                chunks.append((length, at))
        at = data.find(b"\x78\x9c", at + 1)
    assert chunks, "no compressed data chunk found in the dump"
    length, at = max(chunks)
    data[at + length // 2] ^= 0xFF
    dump.write_bytes(bytes(data))


def test_a_damaged_dump_is_refused_before_anything_is_dropped(stack, access, backup_dir, tmp_path):
    fingerprint, objects = _stack_rows(stack), _objects(stack)
    # 1. bytes changed: the sha256 in the manifest says so before anything is stopped.
    damaged = tmp_path / "damaged"
    shutil.copytree(backup_dir, damaged)
    dump = damaged / DUMP_FILES["tracking"]
    _damage_table_data(dump)
    stops = access.server_stops
    with pytest.raises(RefusedError, match="does not match the manifest's sha256"):
        restore(access, damaged, replace=True, say=lambda message: None)
    assert access.server_stops == stops
    # 2. the same damage with a manifest made to match (a dump damaged before it was hashed): its
    # table of contents reads, its data does not. The restore into the scratch database fails while
    # the server keeps serving: databases, objects and server as they were, no scratch left behind.
    raw = json.loads((damaged / MANIFEST).read_text())
    raw["databases"]["tracking"]["sha256"] = file_sha256(dump)
    (damaged / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(OpsError, match="pg_restore.*databases were not changed"):
        restore(access, damaged, replace=True, say=lambda message: None)
    assert access.server_stops == stops
    assert (_stack_rows(stack), _objects(stack)) == (fingerprint, objects)


def _wipe(stack: RehearsalStack, fresh: dict[str, str]) -> None:
    """Lose everything, as when the data volumes are gone: the databases are made again as the stack's
    provisioning and upgrade steps (what `pulumi up` runs on new volumes) and its server's first start
    made them, from the copies `fresh` saved then (running those steps again cost two MLflow imports and
    gave the same databases), the bucket emptied, the server started on them."""
    postgres, variant = stack.postgres, stack.variants["default"]
    assert postgres is not None and stack.s3 is not None
    variant.server.stop()
    owner = stack.base_config.database.username
    for name, copy in fresh.items():
        postgres.psql(f'DROP DATABASE "{name}" WITH (FORCE)')
        postgres.psql(f'CREATE DATABASE "{name}" TEMPLATE "{copy}" OWNER "{owner}"')
        postgres.psql(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
    s3 = stack.s3.client("s3")
    for key in _objects(stack):
        s3.delete_object(Bucket=stack.s3.bucket, Key=key)
    variant.server.start()


def test_wiped_stack_restored_reads_back_everything(stack, access, fresh, logged, before, backup_dir, tmp_path,
                                                   report_figure):
    _wipe(stack, fresh)
    with admin_client(stack) as client:
        wiped = snapshot(client, tmp_path / "wiped")
    assert list(wiped["experiments"]) == ["0"] and not wiped["runs"] and not wiped["models"] and not _objects(stack)

    started, said = time.monotonic(), []
    restore(access, backup_dir, say=said.append)  # an empty stack: no --replace needed
    report_figure("restore seconds", f"{time.monotonic() - started:.1f}")
    # Review 15 F4: the backup's other admins keep their rights and passwords: said, by name
    assert [line for line in said if "are admins of" in line] == [
        "the backup's users carol are admins of the rehearsal stack too, signing in with the passwords the backup "
        "holds: if they should not be, the admin (admin) takes it away (AuthServiceClient.update_user_admin) or "
        "deletes them"], said

    with admin_client(stack) as client:
        after = snapshot(client, tmp_path / "after")
    assert after == before
    # Owned by MLflow's role, not the superuser that ran pg_restore.
    owners = stack.postgres.psql("SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
                                 "WHERE relnamespace = 'public'::regnamespace", "mlflow").split()
    assert owners == [stack.base_config.database.username]
    assert stack.postgres.psql("SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_%'").strip() == ""
    # The auth database came back: alice signs in and keeps her permission; the admin keeps the
    # deployed password (the admin client above signed in with it).
    from mlflow.server.auth.client import AuthServiceClient

    variant = stack.variants["default"]
    with admin_client(stack):
        permission = AuthServiceClient(variant.tracking_uri).get_user_permission(
            "alice", "experiment", str(logged["experiments"][0]))
    assert permission.permission == "EDIT"
    import requests

    response = requests.get(f"{variant.tracking_uri}/api/2.0/mlflow/experiments/get",
                            params={"experiment_id": logged["experiments"][0]}, auth=logged["alice"], timeout=30)
    assert response.status_code == 200, response.text


def test_replace_restores_over_newer_data_and_drops_what_the_backup_does_not_hold(stack, access, before, backup_dir,
                                                                                  tmp_path, report_figure):
    with admin_client(stack) as client:
        extra = client.create_experiment(f"after-backup-{uuid.uuid4().hex[:6]}")
        extra_run = client.create_run(extra).info.run_id
        client.log_text(extra_run, "not in the backup\n", "extra.txt")
    assert any(key.endswith("extra.txt") for key in _objects(stack))

    stack.postgres.psql("DELETE FROM users WHERE username = 'carol'", "mlflow_auth")  # removed since the backup
    # Review 21 F1: alice's password changed since (after a leak): the restore sets the backup's again
    stack.postgres.psql("UPDATE users SET password_hash = 'changed-since' WHERE username = 'alice'", "mlflow_auth")

    started, said = time.monotonic(), []
    restore(access, backup_dir, replace=True, say=said.append)
    report_figure("restore --replace seconds", f"{time.monotonic() - started:.1f}")
    # Review 20 F1: what the restore lets in again, named against the replaced auth database
    assert [line for line in said if line.startswith("the restore lets in again")] == [
        "the restore lets in again what the rehearsal stack had taken away since the backup: users carol; the "
        "backup's passwords of alice (deactivate or delete them again, change those passwords, if they should stay "
        "out)"], said

    # Artifacts byte for byte were proven by the test before (and objects.tar's sha256s were checked
    # on upload); here the server's listing of them must match.
    with admin_client(stack) as client:
        after = snapshot(client, tmp_path / "after", artifacts=False)
    assert _sizes_only(after) == _sizes_only(before)
    assert sum(len(run["artifacts"]) for run in after["runs"].values()) == 5
    served = [key for key in _objects(stack) if not key.startswith(".mlflow-restore-replaced/")]
    assert not any(key.endswith("extra.txt") for key in served)
    assert any(key.endswith("/extra.txt") for key in _objects(stack)), "kept in the quarantine until purged"
    assert table_counts(access, "mlflow")["runs"] == len(before["runs"])


# --- issue 28: restore never loses or leaks what it replaces -------------------------------------------


def _auth_rows(stack: RehearsalStack, sql: str) -> str:
    assert stack.postgres is not None
    return stack.postgres.psql(sql, "mlflow_auth").strip()


def _databases_like(stack: RehearsalStack, pattern: str) -> list[str]:
    assert stack.postgres is not None
    return stack.postgres.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{pattern}' ORDER BY 1").split()


def test_restore_is_refused_while_a_backup_holds_the_maintenance_lock(stack, access, backup_dir):
    fingerprint, stops = _stack_rows(stack), access.server_stops
    with maintenance_lock(access, "backup"):
        with pytest.raises(RefusedError, match=rf"mlflow-backup pid {os.getpid()} on .*holds its maintenance lock"):
            restore(access, backup_dir, replace=True, say=lambda message: None)
    assert (_stack_rows(stack), access.server_stops) == (fingerprint, stops)


def test_a_backup_of_another_stack_is_refused_and_its_age_said(stack, access, backup_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(backup_dir, other)
    raw = json.loads((other / MANIFEST).read_text())
    raw["source"] = "the local stack mlflow-elsewhere"
    (other / MANIFEST).write_text(json.dumps(raw))
    said: list[str] = []
    fingerprint = _stack_rows(stack)
    with pytest.raises(RefusedError, match="taken from the local stack mlflow-elsewhere.*--from-other-stack"):
        restore(access, other, replace=True, say=said.append)
    assert re.search(r"\d+ minutes old", said[0]), said
    assert _stack_rows(stack) == fingerprint


def test_a_database_left_refusing_connections_is_repaired_at_the_start(stack, access, backup_dir):
    """Issue 28 item 5: an interrupted swap of an earlier version committed ALLOW_CONNECTIONS false."""
    stack.postgres.psql('ALTER DATABASE "mlflow" WITH ALLOW_CONNECTIONS false')
    said: list[str] = []
    with pytest.raises(RefusedError, match="not empty"):
        restore(access, backup_dir, say=said.append)
    assert stack.postgres.psql("SELECT datallowconn FROM pg_database WHERE datname = 'mlflow'").strip() == "t"
    assert any("database mlflow refused connections" in line for line in said), said


class _FailingAccess(RehearsalAccess):
    """The objects.tar is damaged once the server is stopped (after every check passed), and starting
    the server fails: the restore's own error must survive, saying what changed."""

    def __init__(self, stack: RehearsalStack, tar: Path):
        super().__init__(stack)
        self.tar = tar

    def stop_server(self) -> bool:
        data = bytearray(self.tar.read_bytes())
        data[len(data) // 2] ^= 0xFF  # inside the large binary's data: its sha256 no longer matches
        self.tar.write_bytes(bytes(data))
        return super().stop_server()

    def start_server(self) -> None:
        raise OpsError("docker is gone")


def test_a_failed_restore_says_what_changed_and_a_later_one_starts_the_server(stack, access, backup_dir, tmp_path):
    """Issue 28 item 5: the error of `start_server` in `finally` must not hide the restore's; a rerun
    that succeeds starts the server although the failed run left it stopped."""
    damaged = tmp_path / "damaged-objects"
    shutil.copytree(backup_dir, damaged)
    said: list[str] = []
    with pytest.raises(OpsError) as failed:
        restore(_FailingAccess(stack, damaged / OBJECTS_FILE), damaged, replace=True, say=said.append)
    message = str(failed.value)
    assert "uploading the objects" in message and "the databases were not replaced" in message, message
    assert "objects the backup's upload had overwritten got the stack's bytes back" in message, message
    assert "were not changed" not in message and "nothing of the stack" not in message
    assert "starting the MLflow server failed too: docker is gone" in said
    assert not stack.variants["default"].server.service.alive()
    # Review 10: the quarantine stays until the server runs (a kill before the start would leave it
    # stopped with nothing to say so); the put-back named starts it and removes the quarantine.
    named = re.search(r"kept until the server runs: scripts/restore --put-back (\d{8}T\d{6}Z) starts it", message)
    assert named, message
    with pytest.raises(RefusedError, match=f"scripts/restore --put-back {named.group(1)}, then run this again"):
        restore(access, backup_dir, replace=True, say=lambda message: None)
    put_back(access, named.group(1), say=lambda message: None)
    assert stack.variants["default"].server.service.alive()
    assert not [name for name in _objects(stack) if name.startswith(QUARANTINE_KEYS + named.group(1))]
    restore(access, backup_dir, replace=True, say=lambda message: None)
    assert stack.variants["default"].server.service.alive()


def test_a_grant_on_an_experiment_the_tracking_dump_lacks_is_pruned(stack, access, logged, tmp_path):
    """Issue 28 item 3: a MANAGE grant in the auth dump for an experiment created after the tracking
    dump; the restored sequence hands that id to the next new experiment, which must not be alice's."""
    next_id = int(stack.postgres.psql("SELECT max(experiment_id) + 1 FROM experiments", "mlflow").strip())
    role = _auth_rows(stack, "SELECT a.role_id FROM user_role_assignments a JOIN users u ON u.id = a.user_id "
                             "WHERE u.username = 'alice' LIMIT 1")
    assert role, "alice holds a grant, so she has a role"
    _auth_rows(stack, f"INSERT INTO role_permissions (role_id, resource_type, resource_pattern, permission) "
                      f"VALUES ({role}, 'experiment', '{next_id}', 'MANAGE')")
    raced = tmp_path / "raced"
    backup(access, raced, say=lambda message: None)
    said: list[str] = []
    restore(access, raced, replace=True, say=said.append)
    assert any("removed permission rows for objects the backup's tracking dump does not hold" in line
               and "role_permissions 1" in line for line in said), said
    with admin_client(stack) as client:
        created = client.create_experiment(f"bobs-{uuid.uuid4().hex[:6]}")
    assert created == str(next_id)
    import requests

    response = requests.post(f"{stack.variants['default'].tracking_uri}/api/2.0/mlflow/experiments/delete",
                             json={"experiment_id": created}, auth=logged["alice"], timeout=30)
    assert response.status_code == 403, response.text


def test_replace_keeps_what_it_replaces_until_purged(stack, access, before, backup_dir, tmp_path):
    import ops.restore as restore_module

    """Issue 28 items 2 and 9: --replace says what it replaces, keeps the replaced databases and objects
    (outside what the backup restores), and a backup without an auth database clears the target's
    permission rows (their ids would now name the backup's objects) but keeps its users. Review 3 F4: a
    SIGHUP (a KeyboardInterrupt, ops.access) after the swap, as the server is about to start, must not
    leave it stopped, and what is said names the state of the stack."""
    with admin_client(stack) as client:
        extra = client.create_experiment(f"replaced-{uuid.uuid4().hex[:6]}")
        client.log_text(client.create_run(extra).info.run_id, "kept in quarantine\n", "kept.txt")
    no_auth = tmp_path / "no-auth"
    shutil.copytree(backup_dir, no_auth)
    (no_auth / DUMP_FILES["auth"]).unlink()
    raw = json.loads((no_auth / MANIFEST).read_text())
    del raw["databases"]["auth"]
    (no_auth / MANIFEST).write_text(json.dumps(raw))
    assert int(_auth_rows(stack, "SELECT count(*) FROM role_permissions WHERE resource_type = 'experiment'")) > 0
    said: list[str] = []

    def hung_up(message: str) -> None:
        said.append(message)
        if message == "starting the MLflow server":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        restore(access, no_auth, replace=True, say=hung_up)
    assert stack.variants["default"].server.service.alive() and "started the MLflow server again" in said, said
    assert [line for line in said if line.startswith("interrupted: the databases hold the backup")], said
    assert any(re.match(r"--replace: replacing runs \d+, experiments \d+ besides Default.* objects \(", line)
               for line in said), said
    assert any("removed permission rows of the stack's own" in line for line in said), said
    assert _auth_rows(stack, "SELECT count(*) FROM role_permissions WHERE resource_type = 'experiment'") == "0"
    assert _auth_rows(stack, "SELECT count(*) FROM users WHERE username = 'alice'") == "1"
    kept = _databases_like(stack, "mlflow%\\_\\_replaced\\_%")
    assert any(name.startswith("mlflow__replaced_") for name in kept)
    assert any(name.startswith("mlflow_auth__replaced_") for name in kept)
    quarantined = [key for key in _objects(stack)  # the objects, not each quarantine's upload record
                   if key.startswith(QUARANTINE_KEYS) and "/" in key.removeprefix(QUARANTINE_KEYS)]
    assert any(key.endswith("/kept.txt") for key in quarantined)
    with admin_client(stack) as client:
        after = snapshot(client, tmp_path / "after", artifacts=False)
    assert _sizes_only(after) == _sizes_only(before)  # the quarantine is not served as anyone's artifacts
    stamp = kept[0].rsplit(REPLACED_TAG, 1)[1]
    with pytest.raises(RefusedError, match=f"the restore of {stamp} replaced the databases"):  # review 2 F1
        put_back(access, stamp, say=lambda message: None)
    # Review 5 F2: the databases moved with pg_dump and pg_restore without --create lose their comments
    # (the swap's marks) and the replaced ones were dropped: the bucket's own mark still says the swap
    # happened, so nothing refuses naming a put-back that would write the old bytes over the restored ones.
    for name in ("mlflow", "mlflow_auth"):
        stack.postgres.psql(f'COMMENT ON DATABASE "{name}" IS NULL')
    for name in kept:
        stack.postgres.psql(f'DROP DATABASE "{name}"')
    assert restore_module.unswapped(access, StackLayout.read(access)) == {}
    with pytest.raises(RefusedError, match=f"the restore of {stamp} replaced the databases"):
        put_back(access, stamp, say=lambda message: None)
    kept = []

    assert purge_replaced(access, say=lambda message: None) == {"databases": len(kept), "objects": len(quarantined)}
    assert not _databases_like(stack, "mlflow%\\_\\_replaced\\_%")
    assert not [key for key in _objects(stack) if key.startswith(".mlflow-restore-replaced/")]


# --- review 2: a --replace stopped before its swap, the manifest not trusted, a closed terminal -------------


QUARANTINE_KEYS = ".mlflow-restore-replaced/"


def _bytes_of(stack: RehearsalStack, key_end: str) -> bytes:
    """The content of the one object (outside the quarantine) whose key ends with `key_end`."""
    keys = [key for key in _objects(stack) if key.endswith(key_end) and not key.startswith(QUARANTINE_KEYS)]
    assert len(keys) == 1, keys
    return stack.s3.client("s3").get_object(Bucket=stack.s3.bucket, Key=keys[0])["Body"].read()


def _overwrite_in_stack(stack: RehearsalStack, logged: dict[str, Any]) -> str:
    """A key the stack and the backup both hold gets newer bytes in the stack (logged after the backup)."""
    second = logged["runs"][1]
    with admin_client(stack) as client:
        client.log_text(second, "logged after the backup\n", "readme.txt")
    assert _bytes_of(stack, f"{second}/artifacts/readme.txt") == b"logged after the backup\n"
    return f"{second}/artifacts/readme.txt"


def _terminate_lock_session(stack: RehearsalStack, holder: str = "restore") -> None:
    """As a PostgreSQL restart ends it. Waits (up to 10 s) until the backend is gone and its lock with it:
    without the wait another session could try the lock while the old one still held it (a flaky race)."""
    stack.postgres.psql("SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
                        f"WHERE application_name LIKE 'mlflow-{holder}%'")


def _interrupt_before_swap(monkeypatch, stack: RehearsalStack, how: str) -> type:
    """Stop a restore --replace between its upload and its swap: Ctrl-C, or its lock's session ended
    (a PostgreSQL restart) so that lock.confirm fails. Returns the exception the restore raises."""
    import ops.restore as restore_module

    upload = restore_module._upload_objects

    def upload_then_stop(*args, **kwargs):
        upload(*args, **kwargs)
        if how == "ctrl-c":
            raise KeyboardInterrupt
        _terminate_lock_session(stack)

    monkeypatch.setattr(restore_module, "_upload_objects", upload_then_stop)
    return KeyboardInterrupt if how == "ctrl-c" else OpsError


@pytest.mark.parametrize("how", ["ctrl-c", "lock lost"])
def test_a_replace_stopped_before_its_swap_gives_the_stack_its_own_bytes_back(stack, access, logged, backup_dir,
                                                                             monkeypatch, how):
    """Review 2 F1: the upload overwrote a key both hold, then the restore stopped before the swap: the
    stack keeps its databases, so that key must hold the stack's bytes again, and what is said is true."""
    key = _overwrite_in_stack(stack, logged)
    fingerprint = _stack_rows(stack).rsplit("|pid", 1)[0]
    raised = _interrupt_before_swap(monkeypatch, stack, how)
    said: list[str] = []
    with pytest.raises(raised) as stopped:
        restore(access, backup_dir, replace=True, say=said.append)
    told = " ".join(said) + f" {stopped.value}"
    assert _bytes_of(stack, key) == b"logged after the backup\n"
    assert re.search(r"the databases were not replaced \(the stack keeps its own\); 1 objects the backup's "
                     r"upload had overwritten got the stack's bytes back", told), told
    assert "beside the stack's" not in told
    assert _stack_rows(stack).rsplit("|pid", 1)[0] == fingerprint
    assert stack.variants["default"].server.service.alive()
    assert not [name for name in _objects(stack) if name.startswith(QUARANTINE_KEYS)]


def test_a_replace_killed_before_its_swap_is_put_back_by_the_command_it_names(stack, access, logged, backup_dir,
                                                                              tmp_path):
    """Review 2 F1 (b): after a SIGKILL between the upload and the swap nothing of the restore runs:
    the state it leaves (the server stopped, the quarantine copy, then the upload, made here by the
    restore's own steps) must make the next restore refuse naming `--put-back STAMP`, a backup refuse
    too (review 3 F1: it would save the backup's bytes beside the stack's databases), purge must keep
    that quarantine, and --put-back gives the stack its bytes back and starts the server (review 3 F3)."""
    import ops.restore as restore_module

    key = _overwrite_in_stack(stack, logged)
    access.stop_server()
    layout = StackLayout.read(access)
    env, stamp = layout.s3_env(access), "20260101T000000Z"
    manifest = Manifest.load(backup_dir)
    progress = restore_module._Progress()
    with maintenance_lock(access, "restore"):  # as the restore holds it
        restore_module._quarantine_copy(access, manifest, layout, env, stamp=stamp, progress=progress,
                                        say=lambda message: None)
        restore_module._upload_objects(access, backup_dir, manifest, layout, env, progress=progress,
                                       say=lambda message: None)
    assert _bytes_of(stack, key) != b"logged after the backup\n"  # the state a SIGKILL leaves
    # Review 4 F2: the server started by hand after the kill, a user writes a key both hold again:
    # --put-back must not put the stack's old bytes over it.
    rewritten = next(entry.key for entry in manifest.objects.entries if not entry.key.endswith(key))
    stack.s3.client("s3").put_object(Bucket=stack.s3.bucket, Body=b"written after the kill\n", Key=next(
        name for name in _objects(stack) if name.endswith(rewritten) and not name.startswith(QUARANTINE_KEYS)))

    with pytest.raises(RefusedError, match=rf"stopped before it replaced the databases: .* keeps its own databases, "
                                           rf".*scripts/restore --put-back {stamp}, then run this again; nothing was "
                                           "changed"):
        restore(access, backup_dir, replace=True, say=lambda message: None)
    with pytest.raises(RefusedError, match=rf"scripts/restore --put-back {stamp}, then run this again"):
        backup(access, tmp_path / "during", say=lambda message: None)
    assert not (tmp_path / "during").exists() or not any((tmp_path / "during").iterdir())
    said: list[str] = []
    assert purge_replaced(access, say=said.append)["objects"] == 0
    assert any(line.startswith("kept: ") and f"--put-back {stamp}" in line for line in said), said
    with pytest.raises(RefusedError, match="not a restore's stamp"):
        restore_module.put_back(access, "../x", say=lambda message: None)
    # Review 4 F3: a damaged upload record is refused before the server is stopped, naming the way out
    s3, record = stack.s3.client("s3"), f"{QUARANTINE_KEYS}{stamp}.upload.json"
    kept_record = s3.get_object(Bucket=stack.s3.bucket, Key=record)["Body"].read()
    s3.put_object(Bucket=stack.s3.bucket, Key=record, Body=kept_record[:10])
    stops = access.server_stops
    with pytest.raises(RefusedError, match=rf"no readable record.*--put-back {stamp} --every-key.*Nothing was changed"):
        restore_module.put_back(access, stamp, say=lambda message: None)
    assert access.server_stops == stops
    s3.put_object(Bucket=stack.s3.bucket, Key=record, Body=kept_record)
    # Review 5 F3: a put-back killed after its copy, before the server starts: the quarantine is still
    # there, so the same command runs again and starts the server. Review 15 F2: it says the server is
    # stopped. The copy finished, so the rerun copies nothing again (review 15 F1, below).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(access, "start_server", lambda: (_ for _ in ()).throw(LockLost()))
        with pytest.raises(OpsError, match=rf"stopped: the maintenance lock was lost; the MLflow server was starting "
                                           rf"and may not be serving yet \(the stack's bytes are back\): run "
                                           rf"scripts/restore --put-back {stamp} again to make sure it runs"):
            restore_module.put_back(access, stamp, say=lambda message: None)
    assert not stack.variants["default"].server.service.alive()
    assert _bytes_of(stack, key) == b"logged after the backup\n"
    assert _bytes_of(stack, rewritten) == b"written after the kill\n", "a key written since keeps its bytes"
    assert [name for name in _objects(stack) if name.startswith(QUARANTINE_KEYS)]
    # Review 15 F1: the rerun fails to remove the quarantine, users write while the server serves, and the
    # record is set aside (which made every put-back ask for --every-key): the put-back had finished, so
    # its next run only removes the quarantine; the bytes written since stay.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(restore_module, "purge_quarantine",
                      lambda *args: (_ for _ in ()).throw(OpsError("deleting the quarantine failed (injected)")))
        with pytest.raises(OpsError, match=rf"the MLflow server runs, but the quarantine {stamp} is left; "
                                           rf"scripts/restore --put-back {stamp} again removes it"):
            restore_module.put_back(access, stamp, say=lambda message: None)
    assert stack.variants["default"].server.service.alive()
    s3.put_object(Bucket=stack.s3.bucket, Key=next(name for name in _objects(stack) if name.endswith(key)
                                                   and not name.startswith(QUARANTINE_KEYS)),
                  Body=b"written after the put-back\n")
    s3.copy({"Bucket": stack.s3.bucket, "Key": record}, stack.s3.bucket, record + ".distrusted")
    s3.delete_object(Bucket=stack.s3.bucket, Key=record)
    # Review 18 F1: --purge-replaced keeps it (a failed restore may have left the server stopped, which only
    # that --put-back starts) and names the command
    said = []
    assert purge_replaced(access, say=said.append)["objects"] == 0
    assert any(line.startswith("kept: the stack's bytes were put back") and f"--put-back {stamp}" in line
               for line in said), said
    with pytest.raises(RefusedError, match=rf"bytes were put back from the quarantine .*{stamp}.*: remove it first: "
                                           rf"scripts/restore --put-back {stamp}, then run this again"):
        restore(access, backup_dir, replace=True, say=lambda message: None)
    said = []
    result = restore_module.put_back(access, stamp, say=said.append)
    assert result["put_back"] == 0 and "were put back from the quarantine" in said[-1], (result, said)
    assert _bytes_of(stack, key) == b"written after the put-back\n", "the rerun copied the quarantine again"
    assert _bytes_of(stack, rewritten) == b"written after the kill\n"
    assert stack.variants["default"].server.service.alive()
    assert not [name for name in _objects(stack) if name.startswith(QUARANTINE_KEYS)]
    with pytest.raises(RefusedError, match="no quarantine"):
        restore_module.put_back(access, stamp, say=lambda message: None)


def test_a_failed_put_back_leaves_the_server_stopped_until_put_back(stack, access, logged, backup_dir, monkeypatch):
    """Review 3 F5: a --replace failing before its swap whose automatic put-back is itself interrupted (a
    second Ctrl-C) must not start the server on the stack's databases with the backup's bytes, and says
    what failed and the command that mends it."""
    import ops.restore as restore_module

    key = _overwrite_in_stack(stack, logged)

    def failing_swap(*args, **kwargs):
        raise OpsError("renaming failed (injected)")

    def interrupted_put_back(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(restore_module, "swap", failing_swap)
    monkeypatch.setattr(restore_module, "put_back_objects", interrupted_put_back)
    said: list[str] = []
    with pytest.raises(OpsError) as failed:
        restore(access, backup_dir, replace=True, say=said.append)
    monkeypatch.undo()
    message = str(failed.value)
    stamp = re.search(r"scripts/restore --put-back (\d{8}T\d{6}Z)", message)
    assert "putting the stack's bytes back failed (KeyboardInterrupt); the MLflow server stays stopped" in message
    assert stamp and not stack.variants["default"].server.service.alive(), (message, said)
    assert not [line for line in said if "started the MLflow server" in line], said
    put_back(access, stamp.group(1), say=lambda message: None)
    assert _bytes_of(stack, key) == b"logged after the backup\n"
    assert stack.variants["default"].server.service.alive()


def test_keys_a_failing_restore_cannot_explain_keep_the_quarantine_for_every_key(stack, access, logged, backup_dir,
                                                                                monkeypatch):
    """Review 16 F1: a --replace failing after its upload, one key it overwrote holding bytes neither
    the stack's nor recorded, keeps the server stopped and names `--put-back STAMP --every-key`; its own
    put-back had marked the quarantine done, so that command, plain --put-back and --purge-replaced
    each removed the stack's only copy of that key's bytes."""
    import ops.restore as restore_module

    key = _overwrite_in_stack(stack, logged)
    upload, s3 = restore_module._upload_objects, stack.s3.client("s3")

    def upload_then_fail(*args, **kwargs):
        upload(*args, **kwargs)
        s3.put_object(Bucket=stack.s3.bucket, Body=b"neither\n", Key=next(
            name for name in _objects(stack) if name.endswith(key) and not name.startswith(QUARANTINE_KEYS)))
        raise OpsError("upload failed (injected)")

    monkeypatch.setattr(restore_module, "_upload_objects", upload_then_fail)
    with pytest.raises(OpsError, match=r"hold neither the stack's bytes nor the ones it recorded") as failed:
        restore(access, backup_dir, replace=True, say=lambda message: None)
    monkeypatch.undo()
    stamp = re.search(r"--put-back (\d{8}T\d{6}Z) --every-key", str(failed.value)).group(1)
    assert not stack.variants["default"].server.service.alive()
    said: list[str] = []
    assert purge_replaced(access, say=said.append)["objects"] == 0 and any(line.startswith("kept: ") for line in said)
    with pytest.raises(RefusedError, match=rf"--put-back {stamp} --every-key"):
        restore_module.put_back(access, stamp, say=lambda message: None)
    restore_module.put_back(access, stamp, every_key=True, say=lambda message: None)
    assert _bytes_of(stack, key) == b"logged after the backup\n", "the stack's only copy of its bytes is gone"
    assert stack.variants["default"].server.service.alive()
    assert not [name for name in _objects(stack) if name.startswith(QUARANTINE_KEYS)]


def test_a_one_off_a_killed_tool_left_running_is_stopped_by_the_next_tool(access, capfd):
    """Review 16 F2: `kill -9` of a tool leaves the one-off it started running (a put-back --every-key
    copying on over what users write once the rerun started the server): the next tool holding the lock
    stops it first and says so. Review 17 F2: not a one-off started without a hold (a restore's image
    facts). Review 20 F3a: a hold's token marks its one-offs, wherever the killed tool ran (a pid said
    nothing outside its own namespace)."""
    from ops import mlflow_facts

    with maintenance_lock(access, "restore") as gone:  # the hold of a tool that is killed: its token
        sleeping = access.python_command(["-c", "import time; time.sleep(120)"], {})
    facts = access.python_command(["-c", script_source(mlflow_facts.__file__)], {})
    one_offs = [subprocess.Popen(argv, env=dict(env), stdin=subprocess.DEVNULL, start_new_session=True)
                for argv, env in ((sleeping.argv, sleeping.env),
                                  (sleeping.argv, facts.env))]  # started without a hold: it only reads
    assert sleeping.env[ONEOFF_MARK_ENV].endswith(f":{gone.token}") and facts.env[ONEOFF_MARK_ENV].endswith(":")
    try:
        time.sleep(0.5)
        with maintenance_lock(access, "restore") as held:
            assert held.token != gone.token and one_offs[0].wait(timeout=10) == -9
            mine = subprocess.Popen(sleeping.argv,
                                    env={**sleeping.env, ONEOFF_MARK_ENV: f"{access.workdir}:{held.token}"},
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            one_offs.append(mine)
            time.sleep(0.5)
            assert access.stop_orphaned_oneoffs() == 0 and mine.poll() is None, "its own one-off was stopped"
        assert one_offs[1].poll() is None, "a one-off started without a hold was stopped"
    finally:
        for one_off in one_offs:  # each with what it started (its own session)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(one_off.pid, 9)
            one_off.wait()
    assert ("stopped 1 one-off(s) an earlier backup or restore left running on the rehearsal stack"
            in capfd.readouterr().err)
    with maintenance_lock(access, "restore"):  # none left: nothing said
        pass
    assert "one-off" not in capfd.readouterr().err


def test_a_manifest_whose_revision_or_counts_lie_is_not_trusted(stack, access, backup_dir, tmp_path, monkeypatch):
    """Review 2 F2: the schema revision is read from the restored copy (refused before the swap when it
    differs), and the counts said are the restored ones, not the manifest's.

    On the same restore (one full restore serves both; their checks are independent), review 12 F1: the
    watch ran until the lock was released, so a PostgreSQL restart noticed after the swap and the server's
    start (a blocked stderr, say) was reported as "nothing of the stack was changed" by a restore that had
    replaced everything. The watch stops once the restore is done."""
    import time as clock

    import ops.restore as restore_module
    from ops.archive import image_facts

    facts = image_facts(access)
    real = Manifest.load(backup_dir).schema_revision
    other = next(rev for rev in facts.histories["tracking"]["revisions"] if rev != real)
    edited = tmp_path / "edited"
    shutil.copytree(backup_dir, edited)
    raw = json.loads((edited / MANIFEST).read_text())
    raw["schema_revision"] = raw["databases"]["tracking"]["schema_revision"] = other
    raw["counts"]["runs"] = 999
    (edited / MANIFEST).write_text(json.dumps(raw))
    fingerprint = _stack_rows(stack)
    with pytest.raises(RefusedError, match=rf"the manifest says schema revision {other}, the dump holds {real}"):
        restore(access, edited, replace=True, upgrade=False, say=lambda message: None)
    assert _stack_rows(stack) == fingerprint

    raw["schema_revision"] = raw["databases"]["tracking"]["schema_revision"] = real
    (edited / MANIFEST).write_text(json.dumps(raw))
    counted = restore_module.headline_counts

    def counts_then_lose_the_lock(*args, **kwargs):  # review 12 F1: once the restore is done
        _terminate_lock_session(stack)
        clock.sleep(3 * WATCH_SECONDS)  # the watch would have noticed by now
        return counted(*args, **kwargs)

    monkeypatch.setattr(restore_module, "headline_counts", counts_then_lose_the_lock)
    said: list[str] = []
    restore(access, edited, replace=True, say=said.append)
    assert said[-1].startswith("done in "), said[-3:]  # review 12 F1
    assert stack.variants["default"].server.service.alive()
    runs = int(stack.postgres.psql("SELECT count(*) FROM runs", "mlflow"))
    assert re.search(rf"done in .*: \d+ experiments, {runs} runs,", said[-1]) and runs != 999, said[-1]  # review 2
    purge_replaced(access, say=lambda message: None)


def test_a_closed_terminal_does_not_leave_the_server_stopped(stack, access, backup_dir):
    """Review 2 F3: writing to stderr fails (EIO) once the server is stopped: the server is started
    again first and the restore's own error is the one raised."""
    def closed_terminal(message: str) -> None:
        if message.startswith("uploading"):
            raise OSError(5, "Input/output error")

    with pytest.raises(OpsError, match="Input/output error"):  # said with what changed (review 11)
        restore(access, backup_dir, replace=True, say=closed_terminal)
    assert stack.variants["default"].server.service.alive()


class _LockLostAt(RehearsalAccess):
    """The backup's lock session ended (as by a PostgreSQL restart) when the backup asks for `step`."""

    def __init__(self, stack: RehearsalStack, step: str):
        super().__init__(stack)
        self.step = step

    def postgres_command(self, argv: Sequence[str]) -> Command:
        if self.step == "the auth pg_dump" and argv[0] == "pg_dump" and "mlflow_auth" in argv:
            _terminate_lock_session(self.stack, "backup")
        return super().postgres_command(argv)

    def python_command(self, argv: Sequence[str], env: Mapping[str, str]) -> Command:
        if self.step == "the objects export" and "export" in argv:
            _terminate_lock_session(self.stack, "backup")
        return super().python_command(argv, env)


@pytest.mark.parametrize("step", ["the auth pg_dump", "the objects export"])
def test_a_backup_that_lost_its_lock_is_not_completed(stack, access, tmp_path, step):
    """Review 5 F1: a PostgreSQL restart ended the backup's lock session; a restore --replace then took the
    lock and completed while the backup went on, pairing the old dumps with the restore's objects. The
    backup confirms its lock before reading the objects and before the manifest: stopped, no files left."""
    directory = tmp_path / "backup"
    # whichever notices first: the confirm before the next step, or the lock's watch during this one
    with pytest.raises(OpsError, match="maintenance lock of the rehearsal stack was lost .* before (its next step|"
                                       + ("copying the objects" if step == "the auth pg_dump"
                                          else "writing the manifest")
                                       + ")"):
        backup(_LockLostAt(stack, step), directory, say=lambda message: None)
    assert not any(directory.iterdir()), sorted(path.name for path in directory.iterdir())
    backup(access, directory, say=lambda message: None)
    assert (directory / MANIFEST).is_file()


def test_a_lost_maintenance_lock_is_noticed_at_once(stack, access):
    """Review 2 F5: confirm reads psql's answer with a timeout, and a psql whose session ended ends the
    read (here and through `docker exec -i`) instead of waiting for input that never comes."""
    with maintenance_lock(access, "restore") as lock:
        lock.unwatch()  # confirm is what is tested here: the watch would raise LockLost within a second
        _terminate_lock_session(stack)
        started = time.monotonic()
        with pytest.raises(OpsError, match="maintenance lock of the rehearsal stack was lost"):
            lock.confirm("replacing the databases")
    assert time.monotonic() - started < NOTICED_SECONDS


NOTICED_SECONDS = 10.0
"""Well below ops.lock.CONFIRM_TIMEOUT_SECONDS: the ended session itself must end the read."""


def test_a_key_too_long_for_the_quarantine_is_refused_while_the_server_serves(stack, access, backup_dir):
    """Review 5: the quarantine's copy of a key near S3's 1,024 bytes would be refused by S3 or MinIO
    (moto takes it) after the server stopped, and again on every rerun: refused before anything."""
    s3, long_key = stack.s3.client("s3"), "1/" + "k" * 1000
    s3.put_object(Bucket=stack.s3.bucket, Key=long_key, Body=b"a long name")
    stops = access.server_stops
    try:
        with pytest.raises(RefusedError, match=r"1 objects under .* have keys too long to be kept in the quarantine"
                                               r".*nothing was changed"):
            restore(access, backup_dir, replace=True, say=lambda message: None)
    finally:
        s3.delete_object(Bucket=stack.s3.bucket, Key=long_key)
    assert access.server_stops == stops and stack.variants["default"].server.service.alive()



# --- review 6: a holder that lost its lock stops at once and undoes nothing beside the next holder ------


def test_a_holder_whose_lock_is_lost_is_stopped_at_once_and_takes_it_again_only_if_free(stack, access):
    """A PostgreSQL restart ends the lock's session without telling its holder (review 6): the holder's
    watch raises LockLost in it within a second or two, and it may take the lock again only while
    nobody else holds it."""
    with maintenance_lock(access, "restore") as lock:
        started = time.monotonic()
        with pytest.raises(LockLost):  # the watch may notice while the termination is still being confirmed
            _terminate_lock_session(stack)
            time.sleep(NOTICED_SECONDS)
        assert lock.lost and time.monotonic() - started < NOTICED_SECONDS / 2
        with maintenance_lock(access, "backup"):
            assert not lock.retake(), "someone else holds it now"
        assert lock.retake() and not lock.lost
        lock.confirm("the next step")


class _OtherTakesTheLockAtUpload(RehearsalAccess):
    """As the restore's upload starts, its lock session ends (a PostgreSQL restart) and another tool,
    already waiting for the lock (`pg_advisory_lock`), gets it that instant: before the restore's watch
    (once a second) can notice and take it again. Held by a psql session until `release`. (A holder
    that tried only after the termination raced the restore's retake, and lost it under load.)"""

    HOLDER = "mlflow-backup (the racing holder)"

    def __init__(self, stack: RehearsalStack):
        super().__init__(stack)
        self.holder: Optional[subprocess.Popen] = None

    def _held_by_holder(self, granted: bool) -> bool:
        return self.stack.postgres.psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            f"AND l.granted = {str(granted).lower()} AND a.application_name = '{self.HOLDER}'").strip() == "1"

    def python_command(self, argv: Sequence[str], env: Mapping[str, str]) -> Command:
        if "import" in argv and self.holder is None:
            psql = RehearsalAccess(self.stack).postgres_command(["psql", "-X", "-q", "-A", "-t", "-d", "postgres"])
            self.holder = subprocess.Popen(psql.argv, env=dict(psql.env), stdin=subprocess.PIPE,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
            assert self.holder.stdin is not None
            self.holder.stdin.write(f"SET application_name = '{self.HOLDER}';\n"
                                    f"SELECT pg_advisory_lock({render.MAINTENANCE_LOCK_KEY});\n")
            self.holder.stdin.flush()
            _wait_for(lambda: self._held_by_holder(granted=False), "the racing holder waits for the lock")
            _terminate_lock_session(self.stack)
            _wait_for(lambda: self._held_by_holder(granted=True), "the racing holder got the lock")
        return super().python_command(argv, env)

    def release(self) -> None:
        if self.holder is not None:
            assert self.holder.stdin is not None
            self.holder.stdin.close()
            self.holder.wait(30)


def _wait_for(condition, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f}s"
        time.sleep(0.05)


def test_a_restore_that_lost_its_lock_to_another_holder_undoes_nothing(stack, access, logged, backup_dir):
    """Review 6 F1: a restore --replace whose lock was lost went on, and its undo ran beside the next
    holder. Now it stops at once, touches nothing while the other one holds the lock, and says so; once
    that one is gone the next restore names the put-back, which gives the stack its own bytes back."""
    key = _overwrite_in_stack(stack, logged)
    fingerprint = _stack_rows(stack).rsplit("|pid", 1)[0]
    racing = _OtherTakesTheLockAtUpload(stack)
    try:
        with pytest.raises(OpsError, match=r"maintenance lock of the rehearsal stack was lost .*could not be taken "
                                           r"again \(another backup, restore or gc holds it now\): this restore "
                                           r"undid nothing"):
            restore(racing, backup_dir, replace=True, say=lambda message: None)
    finally:
        racing.release()
    assert _stack_rows(stack).split("|")[:4] == fingerprint.split("|")[:4], "the databases were not swapped"
    with pytest.raises(RefusedError, match=r"scripts/restore --put-back (\d{8}T\d{6}Z)") as refused:
        restore(access, backup_dir, replace=True, say=lambda message: None)
    stamp = re.search(r"--put-back (\d{8}T\d{6}Z)", str(refused.value)).group(1)
    put_back(access, stamp, say=lambda message: None)
    assert _bytes_of(stack, key) == b"logged after the backup\n"
    assert stack.variants["default"].server.service.alive()
    assert not [name for name in _objects(stack) if name.startswith(QUARANTINE_KEYS + stamp)]
    for name in _databases_like(stack, "%\\_\\_restoring"):  # its scratch copies, left beside the other holder
        stack.postgres.psql(f'DROP DATABASE "{name}"')


def _tampered_tar(source: Path, target: Path, key_end: str, data: bytes) -> None:
    """objects.tar with one member's bytes (same size) replaced, its own sha256 header made to match."""
    from ops.objects import SHA256_HEADER

    with tarfile.open(source, "r") as original, tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tampered:
        for member in original:
            body = original.extractfile(member).read()
            if member.name.endswith(key_end):
                assert len(body) == len(data), body
                body = data
                member.pax_headers = {**member.pax_headers, SHA256_HEADER: hashlib.sha256(body).hexdigest()}
            tampered.addfile(member, io.BytesIO(body))


def test_backup_files_replaced_after_their_checks_are_refused_and_the_stack_keeps_its_bytes(stack, access, logged,
                                                                                           backup_dir, tmp_path):
    """Review 13: restore checked the backup's files, then read them again for pg_restore and the upload;
    a file replaced in between (a `latest` link repointed, a sync rewriting the directory) went in as it
    came: a restore that said done with other bytes, or, interrupted, a put-back that counted the
    upload's own bytes as "written since" and removed the stack's only copy. Now what is read is
    checked: each object against the manifest before it is written, each dump's bytes as fed."""
    key = _overwrite_in_stack(stack, logged)
    fingerprint = _stack_rows(stack).rsplit("|pid", 1)[0]
    copied = tmp_path / "copied"
    shutil.copytree(backup_dir, copied)
    tampered = tmp_path / "objects.tampered.tar"
    _tampered_tar(copied / OBJECTS_FILE, tampered, key, b"TAMPERED!!\n")

    def replace_the_tar(message: str) -> None:
        if message.startswith("uploading"):
            os.replace(tampered, copied / OBJECTS_FILE)

    with pytest.raises(OpsError, match=r"is not the one the manifest lists: the tar changed after it was checked"):
        restore(access, copied, replace=True, say=replace_the_tar)
    assert _bytes_of(stack, key) == b"logged after the backup\n", "the stack keeps its own bytes"
    assert _stack_rows(stack).rsplit("|pid", 1)[0] == fingerprint
    assert stack.variants["default"].server.service.alive()

    shutil.rmtree(copied)
    shutil.copytree(backup_dir, copied)

    def replace_the_dump(message: str) -> None:
        if message.startswith(f"restoring {DUMP_FILES['tracking']}"):
            with open(copied / DUMP_FILES["tracking"], "ab") as dump:
                dump.write(b"\0")

    with pytest.raises(RefusedError, match=r"database.dump changed after it was checked"):
        restore(access, copied, replace=True, say=replace_the_dump)
    assert _stack_rows(stack).rsplit("|pid", 1)[0] == fingerprint


def test_a_backup_during_which_a_restore_changed_the_objects_is_not_completed(stack, access, tmp_path):
    """Review 6 F2: a restore that lost its lock wrote over the stack's objects while a backup (holding
    the lock rightly) read them: dumps of one state, objects of another, reported as done. A restore
    leaves its quarantine when it cannot undo; the backup looks for one before its manifest."""
    record = f"{QUARANTINE_KEYS}20260202T000000Z.upload.json"

    class RestoreMeanwhile(RehearsalAccess):
        def python_command(self, argv: Sequence[str], env: Mapping[str, str]) -> Command:
            if "export" in argv:
                stack.s3.client("s3").put_object(Bucket=stack.s3.bucket, Key=record, Body=b"{}")
            return super().python_command(argv, env)

    directory = tmp_path / "backup"
    try:
        with pytest.raises(OpsError, match=r"a restore --replace \(quarantine 20260202T000000Z\) changed the stack's "
                                           r"objects while this backup read them.*no backup was written"):
            backup(RestoreMeanwhile(stack), directory, say=lambda message: None)
    finally:
        stack.s3.client("s3").delete_object(Bucket=stack.s3.bucket, Key=record)
    assert not any(directory.iterdir())


def test_a_restore_that_cannot_reach_postgresql_for_a_while_takes_its_lock_again_once_it_answers(
        stack, access, logged, backup_dir, monkeypatch):
    """Review 7 F1 and review 8: a PostgreSQL restart made the swap's psql fail before the lock's watch
    noticed; the cleanup ran without the lock and the restore said "nothing of the stack was changed"
    over a stack holding the backup's bytes; and with PostgreSQL down for seconds (a real restart),
    taking the lock again failed to connect and the restore said another tool held it (nobody did),
    leaving the server stopped. The restore asks its session before cleaning up, retries while
    PostgreSQL does not answer, takes the lock again, puts the stack's bytes back and says so."""
    import ops.restore as restore_module

    key = _overwrite_in_stack(stack, logged)

    def swap_during_an_outage(*args, **kwargs):
        threading.Thread(target=stack.restart_postgres, kwargs={"down_seconds": 4}, daemon=True).start()
        time.sleep(1)
        raise OpsError("renaming the databases failed: server closed the connection unexpectedly (injected)")

    monkeypatch.setattr(restore_module, "swap", swap_during_an_outage)
    with pytest.raises(OpsError) as failed:
        restore(access, backup_dir, replace=True, say=lambda message: None)
    message = str(failed.value)
    assert "took the lock again" in message and "holds it now" not in message, message
    assert "nothing of the stack was changed" not in message and "got the stack's bytes back" in message, message
    assert _bytes_of(stack, key) == b"logged after the backup\n"
    assert stack.variants["default"].server.service.alive()
    assert restore_module.unswapped(access, StackLayout.read(access)) == {}
