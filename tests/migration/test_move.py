"""`python -m migration move`, without servers: every location form classified and rewritten, the plan made from a
database shaped as MLflow writes it, the manifest's resume rule, and the argument errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from migration import cli
from migration.locations import (DirMove, WindowsLocation, default_artifact_dir, local_place, rewrite_inside,
                                 served_path, served_uri)
from migration.manifest import UPLOADED, VERIFIED, FileRecord, Manifest, is_done
from migration.moveplan import StackLayout, apply_rewrites, plan_move

BASE = Path("/home/me/proj")
SERVED = Path("/home/me/proj/mlartifacts")


@pytest.mark.parametrize("value, path", [
    ("/home/me/proj/mlruns/1/abc/artifacts", "/home/me/proj/mlruns/1/abc/artifacts"),
    ("file:///home/me/proj/mlruns/1", "/home/me/proj/mlruns/1"),
    ("file:/home/me/proj/mlruns/1", "/home/me/proj/mlruns/1"),
    ("file://localhost/home/me/proj/mlruns/1", "/home/me/proj/mlruns/1"),
    ("file:///home/me/my%20proj/mlruns/1", "/home/me/my proj/mlruns/1"),
    ("mlruns/1/abc/artifacts", "/home/me/proj/mlruns/1/abc/artifacts"),
    ("./mlruns/../mlruns/1", "/home/me/proj/mlruns/1"),
    ("mlflow-artifacts:/1/abc/artifacts", "/home/me/proj/mlartifacts/1/abc/artifacts"),
    ("mlflow-artifacts://localhost:5000/1/abc/artifacts", "/home/me/proj/mlartifacts/1/abc/artifacts"),
    ("mlflow-artifacts:/", "/home/me/proj/mlartifacts"),
])
def test_local_forms_name_a_path_here(value, path):
    assert local_place(value, base=BASE, served_root=SERVED).path == Path(path)


@pytest.mark.parametrize("value", [
    "s3://team-bucket/mlflow/1/abc/artifacts", "gs://b/x", "wasbs://c@acct.blob.core.windows.net/x",
    "abfss://c@acct.dfs.core.windows.net/x", "hdfs://nn/x", "dbfs:/x", "https://example.com/x", "runs:/abc/model",
    "models:/m-123", "file://otherhost/share/x", "",
])
def test_other_forms_are_left(value):
    assert local_place(value, base=BASE, served_root=SERVED).path is None


@pytest.mark.parametrize("value", [
    "C:\\Users\\me\\mlruns\\1", "C:/Users/me/mlruns/1", "file:///C:/Users/me/mlruns/1", "\\\\server\\share\\mlruns",
])
def test_windows_paths_are_refused_clearly(value):
    with pytest.raises(WindowsLocation, match="Windows path") as caught:
        local_place(value, base=BASE, served_root=SERVED)
    assert caught.value.exit_code == 3 and value in str(caught.value)


def test_served_uris_and_rewrites_inside_moved_folders():
    assert served_uri("mlflow-artifacts:", "1", "abc", "artifacts") == "mlflow-artifacts:/1/abc/artifacts"
    assert served_uri("mlflow-artifacts:/workspaces/team", "7") == "mlflow-artifacts:/workspaces/team/7"
    assert served_path("mlflow-artifacts:/1/abc/artifacts/a%20b") == "1/abc/artifacts/a b"
    moves = [DirMove(Path("/r/1/abc/artifacts"), "mlflow-artifacts:/1/abc/artifacts")]
    place = local_place("/r/1/abc/artifacts/model/MLmodel", base=BASE, served_root=SERVED)
    assert rewrite_inside(place, moves) == "mlflow-artifacts:/1/abc/artifacts/model/MLmodel"
    assert rewrite_inside(local_place("/r/1/abc/artifactsX", base=BASE, served_root=SERVED), moves) is None
    assert rewrite_inside(local_place("/r/1/abc/artifacts", base=BASE, served_root=SERVED), moves) == \
        "mlflow-artifacts:/1/abc/artifacts"


def test_default_artifact_dir_follows_the_locations(tmp_path):
    assert default_artifact_dir(["/x/mlruns/0", "/x/mlruns/1", "s3://b/2"], base=tmp_path) == Path("/x/mlruns")
    assert default_artifact_dir(["mlflow-artifacts:/0", "mlflow-artifacts:/1"], base=tmp_path) == \
        tmp_path / "mlartifacts"
    assert default_artifact_dir([], base=tmp_path) == tmp_path / "mlruns"


def _laptop(tmp_path: Path, form) -> tuple[Path, Path]:
    """A database with MLflow's tables (the columns a move reads), locations written by `form(path)`."""
    root = tmp_path / "mlruns"
    db = tmp_path / "mlflow.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT, artifact_location TEXT,
                                  workspace TEXT);
        CREATE TABLE runs (run_uuid TEXT PRIMARY KEY, experiment_id INTEGER, artifact_uri TEXT);
        CREATE TABLE logged_models (model_id TEXT PRIMARY KEY, experiment_id INTEGER, artifact_location TEXT,
                                    status INTEGER);
        CREATE TABLE trace_info (request_id TEXT PRIMARY KEY, experiment_id INTEGER);
        CREATE TABLE trace_tags (key TEXT, value TEXT, request_id TEXT, PRIMARY KEY (key, request_id));
        CREATE TABLE model_versions (name TEXT, version INTEGER, source TEXT, storage_location TEXT,
                                     PRIMARY KEY (name, version));
        CREATE TABLE datasets (dataset_uuid TEXT PRIMARY KEY, dataset_source TEXT);
        CREATE TABLE workspaces (name TEXT PRIMARY KEY, default_artifact_root TEXT, trace_archival_location TEXT);
    """)
    run, other, model = "a" * 32, "b" * 32, "m-" + "c" * 32
    conn.executemany("INSERT INTO experiments VALUES (?, ?, ?, 'default')", [
        (0, "Default", form(root / "0")), (1, "a", form(root / "1")), (2, "team", "s3://team-bucket/exp")])
    conn.executemany("INSERT INTO runs VALUES (?, ?, ?)", [
        (run, 1, form(root / "1" / run / "artifacts")), (other, 2, f"s3://team-bucket/exp/{other}/artifacts")])
    conn.execute("INSERT INTO logged_models VALUES (?, 1, ?, 2)",
                 (model, form(root / "1/models" / model / "artifacts")))
    conn.execute("INSERT INTO trace_info VALUES ('tr-1', 1)")
    conn.executemany("INSERT INTO trace_tags VALUES (?, ?, 'tr-1')", [
        ("mlflow.artifactLocation", form(root / "1/traces/tr-1/artifacts")), ("mlflow.trace.spansLocation",
                                                                              "TRACKING_STORE")])
    conn.executemany("INSERT INTO model_versions VALUES ('m', ?, ?, ?)", [
        (1, f"models:/{model}", form(root / "1/models" / model / "artifacts")),
        (2, form(root / "1" / run / "artifacts/model"), form(root / "1" / run / "artifacts/model"))])
    conn.executemany("INSERT INTO datasets VALUES (?, ?)", [
        ("d1", json.dumps({"uri": form(root / "1" / run / "artifacts/data.csv")})),
        ("d2", json.dumps({"uri": "data/train.csv"}))])
    conn.execute("INSERT INTO workspaces VALUES ('default', ?, NULL)", (form(root),))
    conn.commit()
    conn.close()
    for rel, body in ((f"1/{run}/artifacts/a/b/c.txt", b"c"), (f"1/{run}/artifacts/model/MLmodel", b"m"),
                      (f"1/{run}/artifacts/data.csv", b"x,y\n"), (f"1/models/{model}/artifacts/MLmodel", b"lm"),
                      (f"1/{run}/meta.yaml", b"not an artifact")):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    return db, root


@pytest.mark.parametrize("form", [str, lambda p: f"file://{p}"], ids=["plain path", "file uri"])
def test_plan_rewrites_every_location_to_the_servers_layout(tmp_path, form):
    db, root = _laptop(tmp_path, form)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    run, model = "a" * 32, "m-" + "c" * 32
    new = {(r.table, r.column, r.key, r.json_key): r.new for r in plan.rewrites}
    assert new == {
        ("experiments", "artifact_location", ("0",), None): "mlflow-artifacts:/0",
        ("experiments", "artifact_location", ("1",), None): "mlflow-artifacts:/1",
        ("runs", "artifact_uri", (run,), None): f"mlflow-artifacts:/1/{run}/artifacts",
        ("logged_models", "artifact_location", (model,), None): f"mlflow-artifacts:/1/models/{model}/artifacts",
        ("trace_tags", "value", ("tr-1", "mlflow.artifactLocation"), None): "mlflow-artifacts:/1/traces/tr-1/artifacts",
        ("model_versions", "storage_location", ("m", 1), None): f"mlflow-artifacts:/1/models/{model}/artifacts",
        ("model_versions", "source", ("m", 2), None): f"mlflow-artifacts:/1/{run}/artifacts/model",
        ("model_versions", "storage_location", ("m", 2), None): f"mlflow-artifacts:/1/{run}/artifacts/model",
        ("datasets", "dataset_source", ("d1",), "uri"): f"mlflow-artifacts:/1/{run}/artifacts/data.csv",
        ("workspaces", "default_artifact_root", ("default",), None): None,
    }, "models:/ sources stay (ids are kept); the team's s3:// experiment and its runs stay"
    assert sorted(f.dest for f in plan.files) == sorted([
        f"1/{run}/artifacts/a/b/c.txt", f"1/{run}/artifacts/model/MLmodel", f"1/{run}/artifacts/data.csv",
        f"1/models/{model}/artifacts/MLmodel"]), "artifacts only: a FileStore run's meta.yaml stays"
    assert {x.value for x in plan.left} == {"s3://team-bucket/exp", f"s3://team-bucket/exp/{'b' * 32}/artifacts",
                                            "data/train.csv"}
    assert plan.missing == [], "a trace kept in the database has no folder, and needs none"
    changed = apply_rewrites(db, plan.rewrites)
    assert changed == len(plan.rewrites)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run,)).fetchone()[0] == \
        f"mlflow-artifacts:/1/{run}/artifacts"
    assert conn.execute("SELECT source FROM model_versions WHERE version = 1").fetchone()[0] == f"models:/{model}"
    assert json.loads(conn.execute("SELECT dataset_source FROM datasets WHERE dataset_uuid = 'd1'").fetchone()[0]) \
        == {"uri": f"mlflow-artifacts:/1/{run}/artifacts/data.csv"}
    assert conn.execute("SELECT default_artifact_root FROM workspaces").fetchone()[0] is None
    conn.close()


def test_plan_for_a_workspaces_stack_and_mlflow_artifacts_sources(tmp_path):
    served = tmp_path / "mlartifacts"
    db, _root = _laptop(tmp_path, lambda p: "mlflow-artifacts:/" + p.relative_to(tmp_path / "mlruns").as_posix())
    (tmp_path / "mlruns").rename(served)
    plan = plan_move(db, served, StackLayout(workspaces=True), base=tmp_path)
    run = "a" * 32
    assert f"mlflow-artifacts:/workspaces/default/1/{run}/artifacts" in {r.new for r in plan.rewrites}
    assert f"workspaces/default/1/{run}/artifacts/a/b/c.txt" in {f.dest for f in plan.files}


def test_missing_folders_are_listed(tmp_path):
    db, root = _laptop(tmp_path, str)
    model = "m-" + "c" * 32
    for path in sorted((root / "1/models").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "1/models").rmdir()
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    assert any(model in m and "logged model" in m for m in plan.missing)
    assert any("model version m/1" in m for m in plan.missing)


def test_manifest_resume_rule(tmp_path):
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack")
    manifest.record(FileRecord("1/r/artifacts/a", "1/r/artifacts/a", 3, 10, "h", UPLOADED))
    manifest.record(FileRecord("1/r/artifacts/b", "1/r/artifacts/b", 4, 11, "h2", VERIFIED))
    other = Manifest(tmp_path / "m.sqlite", "https://other-stack")
    assert other.records() == {}, "rows are per stack"
    records = manifest.records()
    assert not is_done(records["1/r/artifacts/a"], 3, 10), "uploaded but not verified: checked again"
    assert is_done(records["1/r/artifacts/b"], 4, 11)
    assert not is_done(records["1/r/artifacts/b"], 5, 11) and not is_done(records["1/r/artifacts/b"], 4, 12), \
        "a file changed since: sent again"
    assert not is_done(None, 4, 11)
    manifest.mark_step("database", "now")
    assert manifest.step_done("database") == "now" and other.step_done("database") is None
    manifest.close()
    other.close()
    again = Manifest(tmp_path / "m.sqlite", "https://stack")
    assert set(again.records()) == {"1/r/artifacts/a", "1/r/artifacts/b"}, "kept across processes"
    again.close()


@pytest.mark.parametrize("argv, message", [
    (["move", "x.db"], "--to"),
    (["move", "x.db", "--to", "https://s", "--jobs", "0"], "--jobs must be at least 1"),
    (["move", "x.db", "--to", "https://s", "--finish", "--check"], "exclude each other"),
    (["move", "x.db", "--to", "https://s", "--verify", "some"], "invalid choice"),
])
def test_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_usage_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["move", str(tmp_path / "nope.db"), "--to", "https://stack.example"]) == 2
    assert cli.main(["move", str(tmp_path), "--to", "https://stack.example"]) == 2, "a directory without meta.yaml"
    assert cli.main(["move", str(tmp_path / "nope.db"), "--to", "postgresql://u:pw@h/db"]) == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 3
    assert "pw@" not in err
