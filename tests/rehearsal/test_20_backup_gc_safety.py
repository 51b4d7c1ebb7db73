"""Backup and gc with unlucky timing (issue 28), for real: the rendered gc step (render.gc_spec) and
ops.backup against the rehearsal's PostgreSQL, MLflow (auth.mode mlflow) and S3 stand-in, the
destination under a key prefix so that other roots in the bucket are outside it.

gc: a run restored inside a deleted experiment, and a deleted run a registered model version points
at, are kept (upstream `mlflow gc` hard-deletes both), said so in gc's output, while everything else
deleted is still collected. Backup, restore and gc share one maintenance lock: each refuses while
another holds it, naming the holder. Backup: the auth database is dumped before the tracking one (a
permission row never outlives its object), objects that vanish while it reads are recorded instead of
aborting it, objects newer than the dump are recorded as extras, and artifact locations outside the
destination are listed (copied when the server's key can read them, else reported not backed up).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
from pathlib import Path
from typing import Iterator, Optional

import pytest

from components import render
from ops import RefusedError
from ops.lock import LockLost, maintenance_lock
from rehearsal.launcher import RehearsalStack, Variant, run_step
from rehearsal.processes import StartupError
from tests.rehearsal.conftest import mlflow_client_for, scenario_of, scenario_stack
from tests.rehearsal.sign_in import cheap_hashes
from tests.rehearsal.test_13_backup_restore import RehearsalAccess

PREFIX = scenario_of(__file__).config["artifacts"]["prefix"]


@pytest.fixture(scope="module")
def stack() -> Iterator[RehearsalStack]:
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module")
def variant(stack) -> Variant:
    return stack.variants["default"]


@pytest.fixture(scope="module")
def access(stack) -> RehearsalAccess:
    return RehearsalAccess(stack)


@pytest.fixture(scope="module")
def client(stack, variant):
    """The MLflow client as the stack's admin, for the whole module (its password under a one-round hash:
    gc and backup are the subject here, not the sign-in, tests/rehearsal/sign_in.py)."""
    cheap_hashes(stack, [(variant.username, variant.password)])
    with pytest.MonkeyPatch.context() as patch, mlflow_client_for(variant, patch) as client:
        yield client


def _keys(stack: RehearsalStack, prefix: str) -> list[str]:
    assert stack.s3 is not None
    listed = stack.s3.client("s3").list_objects_v2(Bucket=stack.s3.bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def _run_keys(stack: RehearsalStack, experiment_id: str, run_id: str) -> list[str]:
    return _keys(stack, f"{PREFIX}/{experiment_id}/{run_id}/")


def _logged_run(client, experiment_id: str, workdir: Path) -> str:
    """A finished run with a metric and a model-like artifact directory."""
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "loss", 0.25)
    model = workdir / run_id / "model"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "weights.bin").write_bytes(secrets.token_bytes(16 * 1024))
    client.log_artifacts(run_id, str(model), "model")
    client.set_terminated(run_id)
    return run_id


def _gc(stack: RehearsalStack, variant: Variant, workdir: Path, lock_token: Optional[str] = None) -> str:
    """The gc step; with `lock_token`, under that hold of the maintenance lock, as scripts/gc runs it."""
    spec = render.gc_spec(variant.server.settings, "0s", timeout_seconds=300)
    if lock_token is not None:
        spec = dataclasses.replace(spec, env={**spec.env, render.GC_LOCK_TOKEN_ENV: lock_token})
    return run_step(spec, stack._secret_env(variant.config), workdir)


def _logged_model(client, experiment_id: str, workdir: Path) -> tuple[str, str]:
    """A logged model with files (MLflow 3's models:/<id>); (its id, the key prefix of its files)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    model = client.create_logged_model(experiment_id, name="gc-logged")
    files = workdir / model.model_id
    files.mkdir(parents=True)
    (files / "MLmodel").write_text("flavors: {}\n")
    get_artifact_repository(model.artifact_location).log_artifacts(str(files))
    return model.model_id, f"{PREFIX}/{experiment_id}/models/{model.model_id}/"


def _gone(client, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as error:
        assert error.error_code == "RESOURCE_DOES_NOT_EXIST", error
        return True
    return False


# --- gc keeps what upstream gc would destroy --------------------------------------------------------


@pytest.fixture(scope="module")
def first_gc(stack, variant, client, tmp_path_factory) -> dict:
    """What the two tests below delete, then one gc run over all of it (a gc run is this module's costliest
    step: it imports MLflow and starts an artifacts server; each test checks its own objects in the stack and
    in the output). Returns each test's objects and the output."""
    workdir = tmp_path_factory.mktemp("first-gc")
    restored = _a_restored_run_in_a_deleted_experiment(stack, client, workdir)
    versioned = _deleted_runs_model_versions_point_at(stack, client, workdir)
    return {"restored": restored, "versioned": versioned, "output": _gc(stack, variant, workdir / "gc")}


def _a_restored_run_in_a_deleted_experiment(stack: RehearsalStack, client, workdir: Path) -> dict:
    experiment_id = client.create_experiment(f"gc-restored-{secrets.token_hex(4)}")
    restored, dropped = (_logged_run(client, experiment_id, workdir) for _ in range(2))
    client.delete_experiment(experiment_id)  # both runs are marked deleted with it
    client.restore_run(restored)
    return {"experiment_id": experiment_id, "restored": restored, "dropped": dropped,
            "kept_keys": _run_keys(stack, experiment_id, restored)}


def test_gc_keeps_a_deleted_experiment_that_holds_a_restored_run(stack, client, first_gc):
    """restore_run works inside a deleted experiment; upstream gc then hard-deletes the experiment and
    the ORM cascade takes the active run, rows and all."""
    ids, output = first_gc["restored"], first_gc["output"]
    experiment_id, restored, dropped = ids["experiment_id"], ids["restored"], ids["dropped"]
    kept_keys = ids["kept_keys"]

    assert not _gone(client, restored), "upstream gc hard-deletes the active run with its experiment"
    assert client.get_run(restored).info.lifecycle_stage == "active"
    assert client.get_run(restored).data.metrics == {"loss": 0.25}
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert kept_keys and _run_keys(stack, experiment_id, restored) == kept_keys
    assert f"gc: kept experiment {experiment_id} (deleted, but it holds runs or logged models {restored}" in output
    # everything else deleted is still collected: the experiment's other (deleted) run
    assert f"Run with ID {dropped} has been permanently deleted." in output
    assert _gone(client, dropped) and _run_keys(stack, experiment_id, dropped) == []


def _deleted_runs_model_versions_point_at(stack: RehearsalStack, client, workdir: Path) -> dict:
    live_experiment = client.create_experiment(f"gc-versioned-{secrets.token_hex(4)}")
    dropped_experiment = client.create_experiment(f"gc-versioned-dropped-{secrets.token_hex(4)}")
    versioned = _logged_run(client, live_experiment, workdir)
    in_dropped = _logged_run(client, dropped_experiment, workdir)
    unrelated = _logged_run(client, live_experiment, workdir)
    name = f"gc-model-{secrets.token_hex(4)}"
    client.create_registered_model(name)
    by_source = client.create_model_version(name, f"{client.get_run(versioned).info.artifact_uri}/model",
                                           run_id=versioned)
    by_run_id = client.create_model_version(name, f"runs:/{in_dropped}/model", run_id=in_dropped)
    keys = {run: _run_keys(stack, experiment, run)
            for run, experiment in ((versioned, live_experiment), (in_dropped, dropped_experiment))}
    logged, model_prefix = _logged_model(client, live_experiment, workdir)  # review: models:/ sources too
    by_model = client.create_model_version(name, f"models:/{logged}", model_id=logged)
    model_keys = _keys(stack, model_prefix)
    client.delete_logged_model(logged)
    client.delete_run(versioned)
    client.delete_run(unrelated)
    client.delete_experiment(dropped_experiment)
    return {"live_experiment": live_experiment, "dropped_experiment": dropped_experiment, "versioned": versioned,
            "in_dropped": in_dropped, "unrelated": unrelated, "name": name, "by_source": by_source,
            "by_run_id": by_run_id, "keys": keys, "logged": logged, "model_prefix": model_prefix,
            "by_model": by_model, "model_keys": model_keys}


def test_gc_keeps_a_deleted_run_a_model_version_points_at(stack, variant, client, first_gc, tmp_path):
    """The version's source is the deleted run's artifact directory (as log_model + register_model
    write it): upstream gc deletes those files while the version stays READY. Also when the run's
    experiment is deleted: its hard delete would cascade to the run."""
    from mlflow.entities.model_registry.model_version_status import ModelVersionStatus

    ids, output = first_gc["versioned"], first_gc["output"]
    live_experiment, dropped_experiment = ids["live_experiment"], ids["dropped_experiment"]
    versioned, in_dropped, unrelated, name = ids["versioned"], ids["in_dropped"], ids["unrelated"], ids["name"]
    by_source, by_run_id, by_model, keys = ids["by_source"], ids["by_run_id"], ids["by_model"], ids["keys"]
    logged, model_prefix, model_keys = ids["logged"], ids["model_prefix"], ids["model_keys"]

    for run, experiment in ((versioned, live_experiment), (in_dropped, dropped_experiment)):
        assert not _gone(client, run), "upstream gc hard-deletes it and the files the version serves"
        assert client.get_run(run).info.lifecycle_stage == "deleted", "kept as it was, for a later gc"
        assert keys[run] and _run_keys(stack, experiment, run) == keys[run], "the version's files are still there"
    assert f"gc: kept run {versioned} (deleted, but registered model '{name}' version {by_source.version}" in output
    assert f"gc: kept run {in_dropped} (deleted, but registered model '{name}' version {by_run_id.version}" in output
    assert (f"gc: kept experiment {dropped_experiment} (deleted, but it holds runs or logged models {in_dropped}"
            in output)
    assert model_keys and _keys(stack, model_prefix) == model_keys, "the logged model's files the version serves"
    assert (f"gc: kept logged model {logged} (deleted, but registered model '{name}' version {by_model.version}"
            in output)
    version = client.get_model_version(name, by_source.version)
    assert ModelVersionStatus.from_string(version.status) == ModelVersionStatus.READY
    assert f"Run with ID {unrelated} has been permanently deleted." in output
    assert _gone(client, unrelated) and _run_keys(stack, live_experiment, unrelated) == []
    # once the versions are gone, the next gc collects the runs and the experiment
    client.delete_registered_model(name)
    output = _gc(stack, variant, tmp_path / "gc-again")
    assert _gone(client, versioned) and _gone(client, in_dropped)
    assert f"Experiment with ID {dropped_experiment} has been permanently deleted." in output
    assert _keys(stack, model_prefix) == [], "the logged model is collected once no version points at it"


# --- one maintenance lock -----------------------------------------------------------------------------


def test_gc_refuses_while_a_backup_holds_the_maintenance_lock(stack, variant, access, client, tmp_path):
    experiment_id = client.create_experiment(f"gc-locked-{secrets.token_hex(4)}")
    doomed = _logged_run(client, experiment_id, tmp_path)
    client.delete_run(doomed)
    with maintenance_lock(access, "backup"):
        with pytest.raises(StartupError) as refused:
            _gc(stack, variant, tmp_path / "gc-refused")
    message = str(refused.value)
    assert f"failed ({render.GC_LOCKED_EXIT})" in message
    assert f"mlflow-backup pid {os.getpid()}" in message and "holds its maintenance lock" in message
    assert "Nothing was deleted" in message
    assert client.get_run(doomed).info.lifecycle_stage == "deleted" and _run_keys(stack, experiment_id, doomed)
    with maintenance_lock(access, "gc"):  # released with the holder's session: the next gc takes it
        pass


def test_gc_that_lost_its_lock_stops_at_once(stack, variant, client, tmp_path):
    """Review 6 F3: gc took the lock once and went on deleting after a PostgreSQL restart ended its session,
    beside a restore that took the lock meanwhile (it deleted files the restore had just put back). Its
    watch stops it within a second or two, before it deletes anything here."""
    import threading
    import time

    experiment_id = client.create_experiment(f"gc-lost-{secrets.token_hex(4)}")
    doomed = _logged_run(client, experiment_id, tmp_path)
    client.delete_run(doomed)
    outcome: dict[str, BaseException] = {}

    def gc() -> None:
        try:
            _gc(stack, variant, tmp_path / "gc-lost")
        except BaseException as error:  # noqa: BLE001 - examined below
            outcome["error"] = error

    running = threading.Thread(target=gc)
    running.start()
    deadline = time.monotonic() + 60
    while stack.postgres.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mlflow-gc'").strip() != "1":
        assert time.monotonic() < deadline and running.is_alive(), "gc never took its lock"
        time.sleep(0.05)
    stack.postgres.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mlflow-gc'")
    running.join(120)
    message = str(outcome.get("error"))
    assert f"failed ({render.GC_LOCKED_EXIT})" in message and "maintenance lock was lost" in message, message
    assert client.get_run(doomed).info.lifecycle_stage == "deleted" and _run_keys(stack, experiment_id, doomed)


def test_gc_runs_under_the_hold_its_tool_took(stack, variant, access, client, tmp_path):
    """Review 20 F3a: scripts/gc stopped a killed tool's one-offs and only then did its step take the lock,
    seconds later: a tool killed in between left a one-off writing beside gc. Now the tool takes the lock,
    sweeps, and the step runs under that same hold (its token), refused when no session holds it so."""
    experiment_id = client.create_experiment(f"gc-held-{secrets.token_hex(4)}")
    doomed = _logged_run(client, experiment_id, tmp_path)
    client.delete_run(doomed)
    for holder, token in (("backup", None), (None, "0123456789ab")):
        with contextlib.ExitStack() as held:
            other = held.enter_context(maintenance_lock(access, holder)) if holder else None
            with pytest.raises(StartupError) as refused:
                _gc(stack, variant, tmp_path / "gc-not-held", lock_token=token or (other and other.token[::-1]))
        message = str(refused.value)
        assert f"failed ({render.GC_LOCKED_EXIT})" in message and "is not held any more" in message, message
        assert "nothing was deleted" in message and _run_keys(stack, experiment_id, doomed)
    with maintenance_lock(access, "gc") as held:
        output = _gc(stack, variant, tmp_path / "gc-held", lock_token=held.token)
    assert _gone(client, doomed) and not _run_keys(stack, experiment_id, doomed), output


def test_gc_under_its_tools_hold_stops_when_the_hold_is_gone(stack, variant, access, client, tmp_path):
    """The tool's session ends (the tool killed, PostgreSQL restarted): its step stops within a second or
    two, before it deletes anything, as one that holds the lock itself does."""
    import threading
    import time

    experiment_id = client.create_experiment(f"gc-hold-gone-{secrets.token_hex(4)}")
    doomed = _logged_run(client, experiment_id, tmp_path)
    client.delete_run(doomed)
    outcome: dict[str, BaseException] = {}
    finished = threading.Event()  # not Thread.join: one that LockLost interrupts can mark the thread ended

    def gc(token: str) -> None:
        try:
            _gc(stack, variant, tmp_path / "gc-hold-gone", lock_token=token)
        except BaseException as error:  # noqa: BLE001 - examined below
            outcome["error"] = error
        finally:
            finished.set()

    with pytest.raises(LockLost):  # this process's own watch notices too (as scripts/gc's does)
        with maintenance_lock(access, "gc") as held:
            running = threading.Thread(target=gc, args=(held.token,))
            running.start()
            deadline = time.monotonic() + 60
            while stack.postgres.psql("SELECT count(*) FROM pg_stat_activity "
                                      "WHERE application_name = 'mlflow-gc'").strip() != "1":
                assert time.monotonic() < deadline and running.is_alive(), "gc never started"
                time.sleep(0.05)
            time.sleep(1.0)  # past its first check of the hold
            stack.postgres.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                f"WHERE application_name LIKE '% lock {held.token}'")
            finished.wait(120)
    assert finished.wait(120), "the gc step went on after its hold was gone"
    running.join()
    message = str(outcome.get("error"))
    assert f"failed ({render.GC_LOCKED_EXIT})" in message and "maintenance lock was lost" in message, message
    assert client.get_run(doomed).info.lifecycle_stage == "deleted" and _run_keys(stack, experiment_id, doomed)


def test_backup_refuses_while_another_holds_the_maintenance_lock(access, tmp_path):
    from ops.backup import backup

    with maintenance_lock(access, "restore"):
        with pytest.raises(RefusedError, match=f"mlflow-restore pid {os.getpid()} on .* holds its maintenance lock"):
            backup(access, tmp_path / "refused")
    assert not (tmp_path / "refused").exists(), "nothing written, not even the directory"


# --- backup with the stack busy ---------------------------------------------------------------------


class _Injecting(RehearsalAccess):
    """The rehearsal access with something happening on the stack at a chosen point of the backup:
    `before_dump[n]` runs as the n-th pg_dump is about to start; `export_wrapper` runs the objects
    export under a wrapper (a race inside the export, against the real S3 stand-in)."""

    def __init__(self, stack: RehearsalStack, before_dump: dict, export_wrapper: tuple[str, ...] = ()):
        super().__init__(stack)
        self.before_dump, self.export_wrapper, self.dumps = before_dump, export_wrapper, 0

    def postgres_command(self, argv):
        if argv[0] == "pg_dump":
            self.dumps += 1
            self.before_dump.get(self.dumps, lambda: None)()
        return super().postgres_command(argv)

    def python_command(self, argv, env):
        if self.export_wrapper and argv[2:3] == ["export"]:
            argv = ["-c", self.export_wrapper[0], argv[1], *self.export_wrapper[1:], *argv[2:]]
        return super().python_command(argv, env)


RACING_EXPORT = """\
import sys
source, victim, late, *args = sys.argv[1:]
sys.argv[1:] = args
objects = {"__name__": "objects"}
exec(compile(source, "ops/objects.py", "exec"), objects)
real_client = objects["_client"]


def racing_client():
    client = real_client()
    bucket, prefix = objects["split_destination"](args[1])
    client.put_object(Bucket=bucket, Key=prefix + late, Body=b"written after the dump began")
    get_object = client.get_object

    def get_deleted_first(**request):  # a gc deletes the object between listing and reading
        if request["Key"] == prefix + victim:
            client.delete_object(Bucket=request["Bucket"], Key=request["Key"])
        return get_object(**request)

    client.get_object = get_deleted_first
    return client


objects["_client"] = racing_client
sys.exit(objects["main"]())
"""


def _said():
    lines: list[str] = []
    return lines, lines.append


def test_backup_dumps_auth_first_so_no_permission_outlives_its_experiment(stack, client, tmp_path):
    """An experiment created between the two dumps: its MANAGE row must not be in the backup
    without the experiment (restored, the id would be handed out again to someone else's)."""
    from ops.archive import dump_rows
    from ops.backup import backup

    created: list[str] = []
    access = _Injecting(stack, {2: lambda: created.append(client.create_experiment(f"between-{secrets.token_hex(4)}"))})
    lines, say = _said()
    backup(access, tmp_path / "backup", say=say)
    assert created and access.dumps == 2
    experiments = {row[0] for row in dump_rows(access, tmp_path / "backup" / "database.dump", "tracking",
                                               {"experiments": ("experiment_id",)})["experiments"]}
    granted = {pattern for kind, pattern in dump_rows(access, tmp_path / "backup" / "auth-database.dump", "auth",
                                                      {"role_permissions": ("resource_type", "resource_pattern")}
                                                      )["role_permissions"] if kind == "experiment"}
    # (rows of experiments a gc hard-deleted earlier stay in the auth database: MLflow keeps them)
    assert created[0] in experiments, "created before the tracking dump began: it is in it"
    assert created[0] not in granted, "its MANAGE row came after the auth dump: no row without its experiment"
    assert [line for line in lines if line.startswith("dumping")] == [
        f"dumping database {name} (pg_dump, custom format)" for name in ("mlflow_auth", "mlflow")]


def test_backup_records_vanished_and_newer_objects_instead_of_aborting(stack, client, tmp_path):
    from ops.backup import backup

    experiment_id = client.create_experiment(f"racing-{secrets.token_hex(4)}")
    run_id = _logged_run(client, experiment_id, tmp_path)
    victim = f"{experiment_id}/{run_id}/artifacts/model/weights.bin"
    late = f"late/{secrets.token_hex(4)}.txt"
    assert f"{PREFIX}/{victim}" in _keys(stack, f"{PREFIX}/{experiment_id}/")
    lines, say = _said()

    manifest = backup(_Injecting(stack, {}, (RACING_EXPORT, victim, late)), tmp_path / "backup", say=say)

    assert manifest.objects_vanished == [victim]
    keys = [entry.key for entry in manifest.objects.entries]
    assert victim not in keys and f"{experiment_id}/{run_id}/artifacts/model/MLmodel" in keys
    assert late in keys and late in manifest.objects_extra, "written after the dump began"
    assert f"{experiment_id}/{run_id}/artifacts/model/MLmodel" not in manifest.objects_extra
    assert any("1 objects were deleted while the backup read them" in line and victim in line for line in lines)
    assert any("written after the dump began" in line and late in line for line in lines)
    from ops.archive import Manifest

    assert Manifest.load(tmp_path / "backup").objects_vanished == [victim], "the manifest on disk says so too"


def _experiment_with_a_root_of_its_own(stack: RehearsalStack, name: str, root: str) -> str:
    """As a migrated database or an older server has them: written with MLflow's store, since the server
    refuses `artifact_location` on experiments/create (mlflow_guard.hooks)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore(stack.backend_uri, "unused").create_experiment(name, artifact_location=root)


def test_backup_lists_locations_outside_the_destination_and_copies_the_readable_ones(stack, client, tmp_path):
    """Experiments with roots of their own: elsewhere in the same bucket (outside the key's prefix),
    in an old bucket the server's key was granted to read, and on a file system."""
    import hashlib
    import json

    from ops.archive import EXTERNAL_OBJECTS_FILE, read_objects_tar
    from ops.backup import backup

    assert stack.s3 is not None
    tag = secrets.token_hex(4)
    s3, old_bucket = stack.s3.client("s3"), f"old-artifacts-{tag}"
    s3.create_bucket(Bucket=old_bucket)
    stack.s3.client("iam").put_user_policy(
        UserName=stack.s3.server_user, PolicyName=f"read-{old_bucket}", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{old_bucket}"]},
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{old_bucket}/*"]}]}))
    roots = {"readable": f"s3://{old_bucket}/mlruns/{tag}", "denied": f"s3://{stack.s3.bucket}/legacy/{tag}",
             "file": f"file:///srv/mlruns/{tag}"}
    experiments = {name: _experiment_with_a_root_of_its_own(stack, f"outside-{name}-{tag}", root)
                   for name, root in roots.items()}
    runs = {name: client.create_run(experiment_id).info.run_id for name, experiment_id in experiments.items()}
    payload = secrets.token_bytes(4096)
    for name in ("readable", "denied"):
        bucket, _, root = roots[name][len("s3://"):].partition("/")
        s3.put_object(Bucket=bucket, Key=f"{root}/{runs[name]}/artifacts/data.bin", Body=payload)
    lines, say = _said()

    manifest = backup(RehearsalAccess(stack), tmp_path / "backup", say=say)

    listed = {(item.kind, item.id): item for item in manifest.outside_locations}
    for name in roots:
        assert listed[("experiment", experiments[name])].location == roots[name]
        assert listed[("run", runs[name])].location == f"{roots[name]}/{runs[name]}/artifacts"
    assert listed[("run", runs["readable"])].backed_up and listed[("experiment", experiments["readable"])].backed_up
    assert not listed[("run", runs["denied"])].backed_up and "AccessDenied" in listed[("run", runs["denied"])].detail
    assert not listed[("experiment", experiments["file"])].backed_up
    assert "only s3:// locations" in listed[("experiment", experiments["file"])].detail
    assert manifest.external_objects is not None
    entries, _, _ = read_objects_tar(tmp_path / "backup" / EXTERNAL_OBJECTS_FILE)
    copied = {entry.key: entry.sha256 for entry in entries}
    assert copied == {f"{old_bucket}/mlruns/{tag}/{runs['readable']}/artifacts/data.bin":
                      hashlib.sha256(payload).hexdigest()}, "only what the server's key may read, byte for byte"
    summary = [line for line in lines if "outside" in line and "NOT backed up" in line]
    assert summary and f"{len(listed)} artifact locations the dump refers to are outside" in summary[0]
    missing = sum(not item.backed_up for item in listed.values())
    assert f"{len(listed) - missing} copied into {EXTERNAL_OBJECTS_FILE}, {missing} NOT backed up" in summary[0]
