"""`python -m migration move`, review 14 (issue 27): an untimed deleted FileStore experiment (.trash/) converts to
NULL too; a stack copy that already is the laptop's new bytes is kept and recorded, not "differs"; a link to the
folder holding the run (the artifact root, its experiment) is not followed; a lock file that is a link is refused,
never truncated (an object written during the move, reported as such: test_move_review8). The reviewer's
repros, turned to assert the fix. Without servers (the FileStore is MLflow 3.17.2's own)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from migration import cli
from migration.errors import RefusedError
from migration.manifest import VERIFIED
from migration.move import MoveLock, lock_paths
from migration.moveplan import StackLayout, plan_move
from migration.stack import StackContents
from tests.migration import test_move, test_move_review5
from tests.migration.test_move import _everything, _laptop, _moved, _mover, _StackStub
from tests.migration.test_move_filestore import make_filestore
from tests.migration.test_move_review5 import _Stack

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack
RUN = "a" * 32
MAKE = """
import json, mlflow
mlflow.set_tracking_uri("file:./mlruns")
gone = mlflow.create_experiment("old, deleted")
with mlflow.start_run(experiment_id=gone):
    mlflow.log_text("old", "old.txt")
mlflow.delete_experiment(gone)
mlflow.set_experiment("filestore laptop")
with mlflow.start_run() as run:
    mlflow.log_text("hello", "notes/a.txt")
print(json.dumps({"experiment": run.info.experiment_id, "run": run.info.run_id, "gone": gone}))
"""


def test_an_untimed_deleted_filestore_experiment_converts_to_null_too(tmp_path, stack, monkeypatch, capsys):
    make_filestore(tmp_path, MAKE)
    metas = [*(tmp_path / "mlruns").glob("*/meta.yaml"), *(tmp_path / "mlruns").glob(".trash/*/meta.yaml")]
    assert any(".trash" in str(m) for m in metas)
    for meta in metas:  # as an older MLflow wrote them
        meta.write_text("".join(line for line in meta.read_text().splitlines(keepends=True)
                                if not line.startswith(("creation_time", "last_update_time"))))
    argv = ["move", str(tmp_path / "mlruns"), "--to", "https://stack.example", "-q", "--stack", "aws"]
    assert cli.main(argv) == 0 and stack.files == {}
    staged = sqlite3.connect(Path(str(tmp_path / "mlruns") + ".move") / "rewritten.db")
    rows = dict(staged.execute("SELECT experiment_id, creation_time FROM experiments"))
    runs = dict(staged.execute("SELECT run_uuid, experiment_id FROM runs"))
    staged.close()
    assert set(rows.values()) == {None}, rows
    held = StackContents(experiments={str(e): "x" for e in rows}, runs=set(runs),
                         owner={r: str(e) for r, e in runs.items()})
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: held)
    assert cli.main(argv) == 0, capsys.readouterr().err
    # the live run's file; the deleted experiment's lie in mlruns/.trash/, where its rows do not point (README)
    assert list(stack.files.values()) == [b"hello"]


def test_a_stack_copy_that_is_already_the_laptops_new_bytes_is_kept(tmp_path, fake_stack):
    db, root, plan, manifest = _moved(tmp_path)
    f = next(p for p in plan.files if p.dest.endswith("/data.csv"))
    st = os.stat(f.source)
    with open(f.source, "r+b") as handle:  # same size, new bytes, same inode
        handle.write(b"X")
    os.utime(f.source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    fake_stack[f.dest] = f.source.read_bytes()  # a kill -9 between its upload and its row
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == 0 and again.result.differs == []
    rec = manifest.records()[f.dest]
    assert rec.state == VERIFIED and rec.mtime_ns == os.stat(f.source).st_mtime_ns
    _mover(tmp_path)._finish(_StackStub(), plan, manifest, True, _everything(plan))
    manifest.close()


@pytest.mark.parametrize("target", ["root", "experiment"])
def test_a_link_to_the_folder_holding_the_run_is_not_followed(tmp_path, target):
    db, root = _laptop(tmp_path, str)
    os.symlink(root if target == "root" else root / "1", root / "1" / RUN / "artifacts" / "up")
    (root / "2" / "secret").mkdir(parents=True)
    (root / "2" / "secret" / "team-b.txt").write_text("team b only")
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    assert not [f.dest for f in plan.files if "/artifacts/up/" in f.dest]
    assert any(x.value.endswith("/artifacts/up") and "loop" in x.reason for x in plan.left)


def test_a_lock_file_that_is_a_link_is_refused_not_truncated(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    (tmp_path / "m.sqlite.lock").symlink_to(precious)
    with pytest.raises(RefusedError, match="is a link"):
        with MoveLock(lock_paths(tmp_path / "state", tmp_path / "m.sqlite")):
            pass
    assert precious.read_text() == "mine"

