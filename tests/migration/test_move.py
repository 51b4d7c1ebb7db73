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
from migration.manifest import UPLOADED, VERIFIED, FileRecord, Manifest
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
    assert (records["1/r/artifacts/a"].state, records["1/r/artifacts/b"].state) == (UPLOADED, VERIFIED)
    assert (records["1/r/artifacts/b"].size, records["1/r/artifacts/b"].mtime_ns) == (4, 11)
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


# --- the review of issue 27: each finding, proved without a stack -------------------------------------------

class _Info:
    def __init__(self, path: str, size: int | None, is_dir: bool = False):
        self.path, self.file_size, self.is_dir = path, size, is_dir


class _FakeRepo:
    """MLflow's artifact repository for one experiment folder, over a dict: path -> bytes."""

    def __init__(self, store: dict[str, bytes], head: str):
        self.store, self.head = store, head

    def log_artifact(self, local_file, artifact_path=None):
        name = Path(local_file).name
        self.store[f"{self.head}/{artifact_path}/{name}" if artifact_path else f"{self.head}/{name}"] = \
            Path(local_file).read_bytes()

    def list_files(self, sub):
        return {i.path.rsplit("/", 1)[-1]: i.file_size or 0 for i in self.list_artifacts(sub or None) if not i.is_dir}

    def _download_file(self, remote_file_path, local_path):
        Path(local_path).write_bytes(self.store[f"{self.head}/{remote_file_path}"])

    def list_artifacts(self, path=None):
        base = f"{self.head}/{path}" if path else self.head
        # as MLflow's server lists them: a 0-byte file without a size (FileInfo.to_proto writes only a truthy one)
        return [_Info(k[len(self.head) + 1:], len(v) or None) for k, v in self.store.items()
                if k.rsplit("/", 1)[0] == base]


@pytest.fixture
def fake_stack(monkeypatch):
    """The stack's artifact store as a dict, reached through move._Repos as the move reaches it."""
    from migration import move as move_module

    store: dict[str, bytes] = {}
    real = move_module._Repos

    class Repos(real):
        def get(self, directory):
            if not move_module.normalised_dest(directory) or not move_module._HEAD.match(directory):
                raise ValueError(directory)
            parts = directory.split("/")
            n = 3 if parts[0] == "workspaces" else 1
            return _FakeRepo(store, "/".join(parts[:n])), "/".join(parts[n:])

    monkeypatch.setattr(move_module, "_Repos", Repos)
    return store


def _mover(tmp_path, **kw):
    from migration.move import Move, MoveOptions
    from migration.report import Reporter

    move = Move(MoveOptions(source=str(tmp_path / "mlflow.db"), to="https://stack.example", jobs=2, **kw),
                Reporter(quiet=True))
    move.result.artifacts_dir = str(tmp_path / "mlruns")
    return move


class _StackStub:
    uri = "https://stack.example"


def _moved(tmp_path):
    """The fake laptop, its four files moved into the fake stack: (db, root, plan, manifest)."""
    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    assert _mover(tmp_path)._upload(_StackStub(), plan, manifest) == 4
    return db, root, plan, manifest


def _everything(plan):
    """What a stack holds once the database step moved `plan`'s source."""
    from migration.stack import StackContents

    return StackContents(experiments=dict(plan.experiments), runs=set(plan.runs),
                         logged_models=set(plan.logged_models), traces=set(plan.traces))


def test_a_manifest_that_lies_is_not_trusted_the_stacks_listing_decides(tmp_path, fake_stack):
    """Finding 1: files the manifest holds as verified but the stack lost are sent again before the database
    step; --finish lists them and fails."""
    from migration.errors import VerificationError

    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    move = _mover(tmp_path)
    assert move._upload(_StackStub(), plan, manifest) == 4 and len(fake_stack) == 4
    lost = sorted(fake_stack)[:2]
    for key in lost:
        del fake_stack[key]  # the bucket lost them (a lifecycle rule, a recreated stack at the same URL)
    with pytest.raises(VerificationError, match="2 artifact file") as caught:
        _mover(tmp_path)._finish(_StackStub(), plan, manifest, True, _everything(plan))
    assert all(key in str(caught.value) for key in lost), "--finish lists exactly what is missing"
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == 2, "sent again, not 'already there (manifest)'"
    assert sorted(again.result.lost) == lost and again.result.skipped == 2 and len(fake_stack) == 4
    _mover(tmp_path)._finish(_StackStub(), plan, manifest, True, _everything(plan))
    manifest.close()
    del fake_stack[lost[0]]
    elsewhere = Manifest(tmp_path / "other.sqlite", "https://stack.example")  # a moved source, another machine
    repair = _mover(tmp_path)
    assert repair._upload(_StackStub(), plan, elsewhere) == 1, "what the stack lists stays"
    assert repair.result.lost == [], "lost: what this manifest held as verified; this one holds nothing"
    assert repair.result.skipped == 3 and len(fake_stack) == 4
    elsewhere.close()


def test_a_same_size_edit_with_mtime_kept_is_sent_again(tmp_path, fake_stack):
    """Finding 1: the sha256 recorded is checked (a `touch -r`/`rsync -t` edit keeps size and mtime)."""
    import os

    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    _mover(tmp_path)._upload(_StackStub(), plan, manifest)
    target = next(f for f in plan.files if f.dest.endswith("data.csv"))
    st = target.source.stat()
    target.source.write_bytes(b"a,b\n")  # same size
    os.utime(target.source, ns=(st.st_atime_ns, st.st_mtime_ns))
    rec = manifest.records()[target.dest]
    assert (rec.size, rec.mtime_ns) == (target.size, target.mtime_ns), "size and mtime alone cannot tell"
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == 1
    assert fake_stack[target.dest] == b"a,b\n"
    manifest.close()


def _link_laptop(tmp_path):
    db, root = _laptop(tmp_path, str)
    art = root / "1" / ("a" * 32) / "artifacts"
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "id_rsa").write_text("PRIVATE KEY\n")
    (root / "shared").mkdir()
    (root / "shared" / "inside.txt").write_text("inside the root\n")
    return db, root, art


def test_links_inside_the_root_are_followed_links_out_of_it_refused(tmp_path):
    """Findings 2 and 3: a linked folder is walked (not skipped in silence); a link out of the root is refused,
    listed, whatever --allow-missing says; a link to a folder above it is no endless walk."""
    from migration.errors import RefusedError

    db, root, art = _link_laptop(tmp_path)
    (art / "linked").symlink_to(root / "shared")
    (art / "loop").symlink_to(art)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    dests = {f.dest for f in plan.files}
    assert f"1/{'a' * 32}/artifacts/linked/inside.txt" in dests, "a folder linked inside the root is moved"
    assert plan.outside_links == [] and any("loop" in x.value for x in plan.left)
    (art / "model" / "key").symlink_to(tmp_path / "secret" / "id_rsa")
    (art / "out").symlink_to(tmp_path / "secret")
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    assert sorted(x.split(" -> ")[0] for x in plan.outside_links) == [str(art / "model" / "key"), str(art / "out")]
    assert not [f for f in plan.files if "secret" in str(f.source) or f.dest.endswith(("/key", "id_rsa"))]
    with pytest.raises(RefusedError, match="2 link") as caught:
        _mover(tmp_path, allow_missing=True, artifacts=str(root))._plan(db, db, None, StackLayout())
    assert str(art / "model" / "key") in str(caught.value) and "\n" not in caught.value.message


@pytest.mark.parametrize("name", ["pct%.txt", "pct%41.txt", "q?x.txt", "h#x.txt", "tab\tx.txt", "nl\nx"])
def test_names_the_stack_cannot_carry_are_refused_before_any_upload(tmp_path, name):
    """Finding 4: refused in the preflight, one line listing them (a folder's name counts too)."""
    from migration.errors import RefusedError

    db, root = _laptop(tmp_path, str)
    art = root / "1" / ("a" * 32) / "artifacts"
    (art / name).write_bytes(b"x")
    (art / "d%ir").mkdir()
    (art / "d%ir" / "ok.txt").write_bytes(b"y")
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    assert sorted(plan.unsendable) == sorted([str(art / name), str(art / "d%ir")])
    with pytest.raises(RefusedError, match="2 file name") as caught:
        _mover(tmp_path, artifacts=str(root))._plan(db, db, None, StackLayout())
    assert str(art / "d%ir") in caught.value.message and "ok.txt" not in caught.value.message


@pytest.mark.parametrize("uri, key", [
    ("https://Stack.Example/", "https://stack.example"), ("http://h:80/mlflow/", "http://h/mlflow"),
    ("https://h:8443/p", "https://h:8443/p"), ("HTTP://[::1]:5000", "http://[::1]:5000"),
])
def test_the_stack_key_is_normalised(uri, key):
    from migration.stack import normalise_stack_uri

    assert normalise_stack_uri(uri) == key


def test_credentials_in_to_are_refused_and_never_printed(tmp_path, capsys):
    """Finding 5: userinfo in --to is a usage error naming MLflow's variables; the password is never echoed."""
    code = cli.main(["move", str(tmp_path / "x.db"), "--to", "http://admin:s3cret-pw@stack.example"])
    out = capsys.readouterr()
    assert code == 2 and "MLFLOW_TRACKING_USERNAME" in out.err and "MLFLOW_TRACKING_PASSWORD" in out.err
    assert "s3cret" not in out.err + out.out


def test_the_printed_database_step_puts_no_password_on_a_command_line(tmp_path):
    """Finding 5: the local step passes the URI as a secret file (ops/oneoff.py: never in the container's config
    or a process list), and the migration reads it from its environment."""
    import os
    import shlex
    import subprocess
    import sys

    from migration.move import MIGRATE_FROM_ENV, MoveOptions, one_off_step

    step = one_off_step(MoveOptions(source="./mlflow.db", to="https://Stack.example/"), Path("/x/rewritten.db"))
    assert 'URI="$(' not in step.split("export URI=")[1].split("\n", 1)[1], "no value after the export"
    assert step.endswith("\npython -m migration move ./mlflow.db --to https://stack.example"), \
        "after the step: the same command again (it sends the artifacts)"
    assert "$MLFLOW_BACKEND_STORE_URI" not in step and '"$URI"' not in step
    local = step.split("# local:\n")[1].split("\n\n")[0]
    command = local[local.rindex("\n", 0, local.index("oneoff.py")) + 1:local.index("\nunset URI")]
    argv = shlex.split(command.replace('"$IMAGE"', "IMAGE"))
    assert "URI_FILE=/run/secrets/URI" in argv and argv[argv.index("--") - 1] == "URI", "URI: a secret file"
    assert argv[-3:] == [MIGRATE_FROM_ENV, "/data/mlflow.db", "URI"] and "URI=" not in " ".join(argv[:-3])
    # the code the container runs: the migration, its target read from the environment (here: refused source)
    env = {**os.environ, "URI": "postgresql://u:s3cret-pw@127.0.0.1:1/db", "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run([sys.executable, "-c", MIGRATE_FROM_ENV, str(tmp_path / "none.db"), "URI"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "none.db" in done.stderr and "s3cret" not in done.stderr


def test_the_manifest_key_has_no_credentials_and_one_stack_one_key(tmp_path):
    move = _mover(tmp_path)
    assert move.result.stack == "https://stack.example"
    from migration.move import Move, MoveOptions
    from migration.report import Reporter

    other = Move(MoveOptions(source="x", to="HTTPS://stack.example:443/"), Reporter(quiet=True))
    assert other.result.stack == move.result.stack


@pytest.mark.parametrize("column, value", [
    ("workspace", "../workspaces/teamb"), ("workspace", "Team_B"), ("run_uuid", "../../x"),
    ("run_uuid", "a/b"), ("runs.experiment_id", "1/../2"),
])
def test_ids_mlflow_never_writes_are_refused(tmp_path, column, value):
    """Finding 6: a crafted database cannot name another workspace's (or run's) folder."""
    from migration.errors import RefusedError

    db, root = _laptop(tmp_path, str)
    conn = sqlite3.connect(db)
    if column == "workspace":
        conn.execute("UPDATE experiments SET workspace = ? WHERE experiment_id = 1", (value,))
    elif column == "run_uuid":
        conn.execute("UPDATE runs SET run_uuid = ? WHERE experiment_id = 1", (value,))
    else:
        conn.execute("UPDATE runs SET experiment_id = ? WHERE experiment_id = 1", (value,))
    conn.commit()
    conn.close()
    with pytest.raises(RefusedError, match="MLflow never writes") as caught:
        plan_move(db, root, StackLayout(workspaces=True), base=tmp_path)
    assert repr(value) in str(caught.value)


def test_the_artifact_repository_takes_only_plain_destinations():
    from migration.move import _Repos

    repos = _Repos("https://stack.example")
    for bad in ("workspaces/../workspaces/teamb/7/r/artifacts", "../1/r", "1/r/../../2", "x/1", "/1/r"):
        with pytest.raises(ValueError):
            repos.get(bad)
    assert repos.get("workspaces/team-b/7/r/artifacts")[1] == "r/artifacts"


def test_the_preflight_searches_every_workspace(monkeypatch):
    """Finding 6: on a stack with workspaces, each one is searched with MLflow's workspace header."""
    from migration.stack import Stack

    seen = []

    def call(self, endpoint, method="GET", workspace=None, **body):
        seen.append((endpoint, workspace))
        if endpoint == "/api/3.0/mlflow/workspaces":
            return {"workspaces": [{"name": "default"}, {"name": "team-b"}]}
        if endpoint.endswith("experiments/search"):
            return {"experiments": [{"experiment_id": "0" if workspace == "default" else "7", "name": "x"}]}
        if endpoint.endswith("runs/search"):
            return {"runs": [{"info": {"run_id": "victim"}}]} if workspace == "team-b" else {}
        return {}

    monkeypatch.setattr(Stack, "call", call)
    found = Stack("https://stack.example").contents(StackLayout(workspaces=True))
    assert found.workspaces == ["default", "team-b"] and found.runs == {"victim"} and "7" in found.experiments
    assert {w for e, w in seen if e.endswith("experiments/search")} == {"default", "team-b"}


@pytest.mark.parametrize("field_name, what", [("runs", "run(s)"), ("logged_models", "logged model(s)"),
                                               ("traces", "trace(s)")])
def test_a_stack_with_runs_models_or_traces_of_its_own_is_refused(tmp_path, field_name, what):
    """Finding 7: data in the stack's experiment 0 is data of its own (before: everything uploaded, then the
    database step refused, the uploads orphaned)."""
    from migration.errors import RefusedError
    from migration.move import _holds_source, _refuse_other_data
    from migration.stack import StackContents

    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    assert plan.logged_models == {"m-" + "c" * 32} and plan.traces == {"tr-1"}
    contents = StackContents(experiments={"0": "Default"})
    _refuse_other_data(plan, contents)  # an empty stack passes
    setattr(contents, field_name, {"someone-elses"})
    assert not _holds_source(plan, contents)
    with pytest.raises(RefusedError, match=f"1 {what.replace('(', '[(]').replace(')', '[)]')}"):
        _refuse_other_data(plan, contents)


def test_local_folders_outside_the_artifact_root_are_moved_too(tmp_path):
    """Design note: an experiment placed elsewhere on the laptop moves into the server's layout (left, the stack
    would point at a laptop path); a location that is not local stays, listed."""
    db, root = _laptop(tmp_path, str)
    elsewhere = tmp_path / "elsewhere"
    run = "e" * 32
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO experiments VALUES (3, 'custom', ?, 'default')", (str(elsewhere),))
    conn.execute("INSERT INTO runs VALUES (?, 3, ?)", (run, str(elsewhere / run / "artifacts")))
    conn.commit()
    conn.close()
    (elsewhere / run / "artifacts").mkdir(parents=True)
    (elsewhere / run / "artifacts" / "o.txt").write_text("outside the root\n")
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    new = {(r.table, r.key): r.new for r in plan.rewrites}
    assert new[("experiments", ("3",))] == "mlflow-artifacts:/3"
    assert new[("runs", (run,))] == f"mlflow-artifacts:/3/{run}/artifacts"
    assert f"3/{run}/artifacts/o.txt" in {f.dest for f in plan.files}
    assert not [x for x in plan.left if "elsewhere" in x.value]
