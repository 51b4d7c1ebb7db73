"""`python -m migration move`: a laptop's MLflow, made by MLflow itself with its defaults (sqlite:///mlflow.db and
./mlruns), moved into the stack in auth.mode mlflow (artifacts under the prefix `team` in the S3 stand-in),
then checked with the MLflow client through Nginx, in PostgreSQL and in the bucket.

One stack, one laptop; the tests run in order and build on each other: refusals first (they must leave the stack
empty), then the move (the database step first), killed mid-transfer (another user meanwhile reaches none of its
files) and resumed, then what the stack serves, then a second move.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from rehearsal.launcher import RehearsalStack, Variant
from tests.rehearsal.conftest import mlflow_client_for, scenario_stack

REPO = Path(__file__).resolve().parents[2]
MANY = 80  # 64 KiB files, ten per folder: enough folders for a kill to land between them
DB_ENV = "MOVE_TEST_DATABASE_URI"


@pytest.fixture(scope="module")
def laptop(tmp_path_factory) -> Iterator[tuple[Path, subprocess.Popen]]:
    """Started first, in a child process, while the stack starts (both take MLflow imports and Alembic)."""
    directory = tmp_path_factory.mktemp("laptop")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_"))}
    child = subprocess.Popen([sys.executable, "-m", "tests.migration.make_laptop", str(directory), str(MANY)],
                             cwd=directory, env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        yield directory, child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.fixture(scope="module")
def stack(laptop) -> Iterator[RehearsalStack]:
    with scenario_stack(__file__) as running:
        yield running


@pytest.fixture(scope="module")
def variant(stack) -> Variant:
    return stack.variants["default"]


@pytest.fixture(scope="module")
def source(laptop, stack) -> dict:
    directory, child = laptop
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err[-3000:]
    made = json.loads(out.strip().splitlines()[-1])
    assert made["tracking_uri"] == f"sqlite:///{directory}/mlflow.db", "MLflow's default tracking URI"
    files = {p.relative_to(directory / "mlruns").as_posix(): _sha(p) for p in (directory / "mlruns").rglob("*")
             if p.is_file()}
    assert len(files) > MANY + 10
    return {**made, "dir": directory, "db": directory / "mlflow.db", "files": files}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _move(variant: Variant, *args: str, env: dict | None = None, password: str | None = None,
          wait: bool = True, database: str | None = None):
    """The tool as a user runs it: credentials in MLflow's variables, the database URI in a named one."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_"))}
    environ.update(variant.client_env(), PYTHONPATH=str(REPO))
    if password is not None:
        environ["MLFLOW_TRACKING_PASSWORD"] = password
    if database:
        environ[DB_ENV] = database
    environ.update(env or {})
    command = [sys.executable, "-m", "migration", "move", *args]
    if not wait:
        return subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=600)


def _db_uri(stack: RehearsalStack) -> str:
    return stack.backend_uri


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_refusals_leave_the_stack_untouched(stack, variant, source, tmp_path):
    db = str(source["db"])
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    done = _move(variant, db, "--to", closed)
    assert done.returncode == 1 and "cannot reach the stack" in done.stderr, done.stderr
    assert len(_error_lines(done.stderr)) == 1

    done = _move(variant, db, "--to", variant.tracking_uri, password="not-the-password")
    assert done.returncode == 3 and "refused the credentials" in done.stderr, done.stderr
    assert "not-the-password" not in done.stdout + done.stderr and variant.password not in done.stdout + done.stderr

    model_dir = source["dir"] / "mlruns" / "1" / "models" / source["model_id"]
    hidden = model_dir.with_name(model_dir.name + ".hidden")
    model_dir.rename(hidden)
    try:
        done = _move(variant, db, "--to", variant.tracking_uri, "--database-uri-env", DB_ENV,
                     database=_db_uri(stack))
        assert done.returncode == 3, done.stderr
        assert "missing on disk" in done.stderr and source["model_id"] in done.stderr
        result = tmp_path / "check.json"
        done = _move(variant, db, "--to", variant.tracking_uri, "--allow-missing", "--check", "--json", str(result),
                     "--database-uri-env", DB_ENV, database=_db_uri(stack))
        assert done.returncode == 0, done.stderr
        checked = json.loads(result.read_text())
        assert checked["status"] == "checked" and any(source["model_id"] in m for m in checked["missing"])
    finally:
        hidden.rename(model_dir)
    with _client(variant) as client:
        assert [e.experiment_id for e in client.search_experiments(view_type=3)] == ["0"], "nothing written"
    manifest = Path(db + ".move") / "manifest.sqlite"
    assert not manifest.exists() or _manifest(manifest) == {}


@contextlib.contextmanager
def _client(variant: Variant, **env: str):
    """The MLflow client through Nginx with the stack's client env (the admin, unless `env` says another user),
    as a user points it."""
    with pytest.MonkeyPatch.context() as patch, mlflow_client_for(variant, patch, **env) as client:
        yield client


def _manifest(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT dest, state FROM files"))
    finally:
        conn.close()


def _objects(stack: RehearsalStack) -> dict[str, tuple]:
    s3 = stack.s3.client("s3")
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.s3.bucket):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = (obj["LastModified"], obj["ETag"], obj["Size"])
    return found


def test_interrupted_move_resumes_without_sending_again(stack, variant, source, tmp_path, report_figure):
    db = str(source["db"])
    manifest = Path(db + ".move") / "manifest.sqlite"
    child = _move(variant, db, "--to", variant.tracking_uri, "--jobs", "1", "--database-uri-env", DB_ENV,
                  "-q", wait=False, database=_db_uri(stack))
    deadline = time.monotonic() + 300  # the database step first, then 20 files: a bound, not a wait
    verified: set[str] = set()
    while time.monotonic() < deadline and child.poll() is None:
        if manifest.exists():
            with contextlib.suppress(sqlite3.Error):
                verified = {d for d, s in _manifest(manifest).items() if s == "verified"}
            if len(verified) >= 20:
                break
        time.sleep(0.02)
    assert child.poll() is None, f"the move ended before it could be killed: {child.communicate()[1][-2000:]}"
    child.send_signal(signal.SIGKILL)
    child.communicate()
    done_before = {d for d, s in _manifest(manifest).items() if s == "verified"}
    assert 20 <= len(done_before) < len(source["files"])
    before = _objects(stack)
    prefix = "team/"
    assert {prefix + d for d in done_before} <= set(before), "what the manifest holds as verified is in the bucket"
    with _client(variant) as client:
        assert sorted(e.experiment_id for e in client.search_experiments(view_type=3)) == ["0", "1", "2"], \
            "the database step committed before the uploads: the source's experiments hold their ids"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        laptop_created = {str(e): t for e, t in conn.execute("SELECT experiment_id, creation_time FROM experiments")}
        conn.close()
        assert {e: client.get_experiment(e).creation_time for e in laptop_created} == laptop_created, \
            "a moved experiment (the Default 0 too: the laptop's row wins over the seed) keeps its creation time: " \
            "how a rerun knows the stack holds this source"
    _another_user_cannot_reach_the_moved_files(variant, source, done_before)
    time.sleep(1.1)  # S3's LastModified has whole seconds: a file sent again would show a later one
    result = tmp_path / "move.json"
    started = time.monotonic()
    done = _move(variant, db, "--to", variant.tracking_uri, "--jobs", "4", "--database-uri-env", DB_ENV,
                 "--json", str(result), database=_db_uri(stack))
    report_figure("move (resumed, incl. MLflow import and database step)", f"{time.monotonic() - started:.1f}", "s")
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    moved = json.loads(result.read_text())
    assert moved["status"] == "moved" and moved["files"] == len(source["files"])
    assert moved["skipped"] >= len(done_before) and moved["uploaded"] + moved["skipped"] == len(source["files"])
    after = _objects(stack)
    assert all(after[prefix + d] == before[prefix + d] for d in done_before), "a file the manifest held was sent again"
    assert set(after) >= {prefix + d for d in _manifest(manifest)}
    assert all(s == "verified" for s in _manifest(manifest).values())
    assert moved["database"] is None, "committed by the killed run (its migration verified the rows)"
    assert moved["rewritten"]["runs.artifact_uri"] == 3 and moved["rewritten"]["logged_models.artifact_location"] == 1
    assert [x["value"] for x in moved["left"]] == ["data/train.csv"], "the dataset's own source is not an artifact"
    assert "MLflow move: moved" in done.stdout and "rewritten: runs.artifact_uri" in done.stdout


def _another_user_cannot_reach_the_moved_files(variant: Variant, source: dict, sent: set[str]) -> None:
    """The fifth review of issue 27: uploaded before the database step, under experiment ids the stack had not
    given out, the laptop's files were read and overwritten by a user who created an experiment meanwhile (id 1,
    MANAGE). Now, mid-upload: a new user's experiment gets an id after the source's, and that user can neither
    list, read nor write the moved experiment's files (auth.defaultPermission NO_PERMISSIONS)."""
    import requests
    from mlflow.server.auth.client import AuthServiceClient

    password = secrets.token_urlsafe(18)
    with _client(variant):
        AuthServiceClient(variant.tracking_uri).create_user("mallory", password)
    with _client(variant, MLFLOW_TRACKING_USERNAME="mallory", MLFLOW_TRACKING_PASSWORD=password) as client:
        assert int(client.create_experiment("mallory-during-the-move")) > 2, "an id after the source's"
    dest = sorted(sent)[0]
    api = f"{variant.tracking_uri}/api/2.0/mlflow-artifacts/artifacts"
    verify = variant.certificate_path or True
    auth = ("mallory", password)
    answers = {"list": requests.get(api, params={"path": dest.rsplit("/", 1)[0]}, auth=auth, verify=verify,
                                    timeout=30).status_code,
               "read": requests.get(f"{api}/{dest}", auth=auth, verify=verify, timeout=30).status_code,
               "write": requests.put(f"{api}/{dest}", data=b"mallory's", auth=auth, verify=verify,
                                     timeout=30).status_code}
    assert answers == {"list": 403, "read": 403, "write": 403}, answers
    admin = requests.get(f"{api}/{dest}", auth=(variant.username, variant.password), verify=verify, timeout=30)
    assert admin.status_code == 200, "the control: the same request as the admin reads the file"


def test_the_stack_serves_what_was_moved(stack, variant, source, tmp_path):
    import mlflow
    import pandas as pd

    with _client(variant) as client:
        for run_id in source["runs"]:
            run = client.get_run(run_id)
            root = source["dir"] / "mlruns" / run.info.experiment_id / run_id / "artifacts"
            expected = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                              and not _hidden_by_mlflow(p.relative_to(root).as_posix()))
            listed = _walk(client, run_id)
            assert listed == expected, f"run {run_id} lists {listed[:5]}..., not its files"
        out = tmp_path / "down"
        got = {}
        for run_id in source["runs"]:
            exp = client.get_run(run_id).info.experiment_id
            local = Path(client.download_artifacts(run_id, "", str(out / run_id)))
            got.update({f"{exp}/{run_id}/artifacts/{p.relative_to(local).as_posix()}": _sha(p)
                        for p in local.rglob("*") if p.is_file()})
            for rel in [d.split("/artifacts/", 1)[1] for d in source["files"]
                        if d.startswith(f"{exp}/{run_id}/artifacts/") and _hidden_by_mlflow(d)]:
                # MLflow's own listing hides it from every client (even for a run it logged itself): by its path
                one = Path(client.download_artifacts(run_id, rel, str(out / "by-path" / run_id)))
                got[f"{exp}/{run_id}/artifacts/{rel}"] = _sha(one)
        mlflow.set_tracking_uri(variant.tracking_uri)
        try:
            location = client.get_logged_model(source["model_id"]).artifact_location  # as a client reads it
            model_local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(out / "model")))
            got.update({f"1/models/{source['model_id']}/artifacts/{p.relative_to(model_local).as_posix()}": _sha(p)
                        for p in model_local.rglob("*") if p.is_file()})
            extra, lacking = sorted(set(got) - set(source["files"])), sorted(set(source["files"]) - set(got))
            assert not extra and not lacking, f"downloaded but not on the laptop: {extra}; not downloaded: {lacking}"
            assert got == source["files"], "every artifact, byte for byte"
            model = mlflow.pyfunc.load_model(f"models:/{source['model_name']}@{source['alias']}")
            assert list(model.predict(pd.DataFrame({"x": [1.0, 5.0]}))["x"]) == [3.0, 7.0]
            trace = client.get_trace(source["trace_id"])
            assert trace.info.tags["mlflow.artifactLocation"] == \
                f"mlflow-artifacts:/1/traces/{source['trace_id']}/artifacts"
            new = client.create_run(client.get_run(source["runs"][0]).info.experiment_id)
            client.log_text(new.info.run_id, "new\n", "n/new.txt")
            assert new.info.run_id not in source["runs"]
            new_exp = client.create_experiment("after-the-move")
            assert int(new_exp) > 2, "the experiment sequence continues after the source's ids"
        finally:
            mlflow.set_tracking_uri(None)
    import psycopg

    conninfo = "postgresql" + stack.backend_uri[stack.backend_uri.index("://"):]
    with psycopg.connect(conninfo) as conn:
        rows = dict(conn.execute("SELECT run_uuid, artifact_uri FROM runs").fetchall())
        exps = dict(conn.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall())
        models = dict(conn.execute("SELECT model_id, artifact_location FROM logged_models").fetchall())
        version = conn.execute("SELECT source, storage_location FROM model_versions").fetchone()
    for run_id in [*source["runs"], new.info.run_id]:
        exp = "2" if run_id == source["runs"][2] else "1"
        assert rows[run_id] == f"mlflow-artifacts:/{exp}/{run_id}/artifacts", "the server's own layout"
    assert exps[0] == "mlflow-artifacts:/0" and exps[1] == "mlflow-artifacts:/1" and exps[2] == "mlflow-artifacts:/2"
    assert models[source["model_id"]] == f"mlflow-artifacts:/1/models/{source['model_id']}/artifacts"
    assert version == (f"models:/{source['model_id']}", models[source["model_id"]])
    keys = set(_objects(stack))
    assert f"team/1/{new.info.run_id}/artifacts/n/new.txt" in keys, "a new run's file, where the server puts it"
    assert {f"team/{d}" for d in source["files"]} <= keys, "the moved files, in the same layout"


def _hidden_by_mlflow(path: str) -> bool:
    """`x/x`: MLflow 3.17.2's list_artifacts answers [] for a folder holding one file of its own name (it takes the
    listing for "the path names a file"), so no client lists or downloads it by walking; the move lists the
    stack itself, and sends and checks it."""
    parts = path.split("/")
    return len(parts) >= 2 and parts[-1] == parts[-2]


def _walk(client, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for info in client.list_artifacts(run_id, path):
        found += _walk(client, run_id, info.path) if info.is_dir else [info.path]
    return sorted(found)


def test_a_second_move_is_refused_and_finish_confirms(stack, variant, source, tmp_path):
    """The manifest is no proof: files the bucket lost after the move are reported by --finish (exit 4) and
    sent again by a rerun; then a second move is refused and --finish confirms."""
    db = str(source["db"])
    lost = sorted(d for d in source["files"] if "/many/" in d)[:2]
    s3 = stack.s3.client("s3")
    for dest in lost:
        s3.delete_object(Bucket=stack.s3.bucket, Key=f"team/{dest}")
    done = _move(variant, db, "--to", variant.tracking_uri, "--finish")
    assert done.returncode == 4 and "2 artifact file(s)" in done.stderr, done.stderr
    assert all(d in done.stderr for d in lost)
    result = tmp_path / "repair.json"
    done = _move(variant, db, "--to", variant.tracking_uri, "--json", str(result))
    assert done.returncode == 0, done.stderr
    repaired = json.loads(result.read_text())
    assert repaired["status"] == "repaired" and sorted(repaired["lost"]) == lost and repaired["uploaded"] == 2
    assert {f"team/{d}" for d in lost} <= set(_objects(stack))
    done = _move(variant, db, "--to", variant.tracking_uri, "--database-uri-env", DB_ENV, database=_db_uri(stack))
    assert done.returncode == 3 and "already holds this source" in done.stderr, done.stderr
    result = tmp_path / "finish.json"
    done = _move(variant, db, "--to", variant.tracking_uri, "--finish", "--json", str(result))
    assert done.returncode == 0, done.stderr
    assert json.loads(result.read_text())["status"] == "finished"
    with _client(variant) as client:  # a user deletes the moved logged model: the search no longer lists it
        client.delete_logged_model(source["model_id"])
    done = _move(variant, db, "--to", variant.tracking_uri, "--finish")
    assert done.returncode == 0, "still the stack's row (GetLoggedModel allow_deleted): " + done.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)
