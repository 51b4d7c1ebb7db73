"""`python -m migration move ./mlruns`: an older FileStore laptop, made by MLflow 3.17.2 itself (its file backend,
opted into with MLFLOW_ALLOW_FILE_STORE), turned into SQLite by MLflow's `mlflow migrate-filestore` and moved: the
FileStore's random 18-19 digit experiment id kept in the server's layout, every file sent, the rows rewritten.
Without servers (the project's fake stack); the migration's widening of such ids is tests/migration's own."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from migration import cli
from migration.stack import StackContents
from tests.migration import test_move, test_move_review5
from tests.migration.test_move_review5 import _Stack

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack

MAKE = """
import json, mlflow
mlflow.set_tracking_uri("file:./mlruns")
mlflow.set_experiment("filestore laptop")
with mlflow.start_run() as run:
    mlflow.log_metric("loss", 0.5)
    mlflow.log_text("hello", "notes/a b.txt")
    mlflow.log_dict({"k": 1}, "config.json")
print(json.dumps({"experiment": run.info.experiment_id, "run": run.info.run_id}))
"""


def make_filestore(directory: Path, script: str) -> dict:
    """A FileStore `./mlruns` made by MLflow 3.17.2 itself (its file backend needs MLFLOW_ALLOW_FILE_STORE now):
    what `script` prints last, as JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    made = subprocess.run([sys.executable, "-c", script], cwd=directory, env={**env, "MLFLOW_ALLOW_FILE_STORE": "true"},
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    return json.loads(made.stdout.strip().splitlines()[-1])


def test_a_filestore_laptop_moves_with_its_experiment_id(tmp_path, stack, monkeypatch, capsys):
    ids = make_filestore(tmp_path, MAKE)
    exp, run = ids["experiment"], ids["run"]
    assert len(exp) >= 18, "FileStore draws experiment ids at random (what SQLite keeps and PostgreSQL must widen)"
    held = StackContents(experiments={"0": "Default", exp: "filestore laptop"}, runs={run})
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: held if _Stack.held else
                        StackContents(experiments={"0": "Default"}))
    result = tmp_path / "move.json"
    assert cli.main(["move", str(tmp_path / "mlruns"), "--to", "https://stack.example", "-q", "--json", str(result),
                     "--database-uri-env", "STACK_DB"]) == 0, capsys.readouterr().err
    assert stack.seen["files on the stack at the database step"] == {}
    assert {k: v for k, v in stack.files.items()} == {
        f"{exp}/{run}/artifacts/notes/a b.txt": b"hello", f"{exp}/{run}/artifacts/config.json":
        (tmp_path / "mlruns" / exp / run / "artifacts" / "config.json").read_bytes()}
    moved = json.loads(result.read_text())
    assert moved["status"] == "moved" and moved["files"] == 2 and moved["source"] == str(tmp_path / "mlruns")
    assert not (Path(str(tmp_path / "mlruns") + ".move") / "rewritten.db").exists(), "removed once committed"
    rewritten = tmp_path / "what-the-database-step-read.db"
    rewritten.write_bytes(stack.seen["rewritten copy"])
    conn = sqlite3.connect(rewritten)
    try:
        assert conn.execute("SELECT artifact_uri FROM runs").fetchone()[0] == f"mlflow-artifacts:/{exp}/{run}/artifacts"
        assert dict(conn.execute("SELECT experiment_id, artifact_location FROM experiments")) == {
            0: "mlflow-artifacts:/0", int(exp): f"mlflow-artifacts:/{exp}"}
    finally:
        conn.close()


def test_a_filestore_without_creation_times_is_recognised_on_the_rerun(tmp_path, stack, monkeypatch, capsys):
    """Review 13: older MLflow wrote experiment meta.yaml without creation_time; `mlflow migrate-filestore` fills in
    the conversion's time, anew on every run of the move, so after the printed step the rerun never recognised the
    stack (refused for good). Such experiments convert to NULL now, and are recognised by their runs' ids."""
    ids = make_filestore(tmp_path, MAKE)
    exp, run = ids["experiment"], ids["run"]
    for meta in (tmp_path / "mlruns").glob("*/meta.yaml"):  # as an older MLflow wrote them
        meta.write_text("".join(line for line in meta.read_text().splitlines(keepends=True)
                                if not line.startswith(("creation_time", "last_update_time"))))
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", exp: "filestore laptop"}, runs={run}, owner={run: exp})
        if _Stack.held else StackContents(experiments={"0": "Default"}, created={"0": 5}))
    argv = ["move", str(tmp_path / "mlruns"), "--to", "https://stack.example", "-q", "--stack", "aws"]
    assert cli.main(argv) == 0 and stack.files == {}
    staged = sqlite3.connect(Path(str(tmp_path / "mlruns") + ".move") / "rewritten.db")
    assert dict(staged.execute("SELECT experiment_id, creation_time FROM experiments")) == {0: None, int(exp): None}
    staged.close()
    _Stack.held = True  # the printed step ran
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert len(stack.files) == 2
