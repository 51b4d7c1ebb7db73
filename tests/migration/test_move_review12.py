"""`python -m migration move`, review 12 (issue 27): a laptop whose Default experiment 0 names another storage no
longer takes the stack's own Default there (the laptop's row replaces the stack's seed row, and the stack's
layout is read from it: every later run was refused for good); a file this move verified at one size and listed
at another is read back, never taken by size. The reviewer's repros, turned to assert the fix."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

import pytest

from migration import cli
from migration.errors import VerificationError
from migration.moveplan import StackLayout, plan_move
from migration.stack import Stack as RealStack
from migration.stack import StackContents
from tests.migration import test_move, test_move_review5
from tests.migration.test_move import _everything, _moved, _mover, _StackStub
from tests.migration.test_move_review5 import RUN, _Stack
from tests.migration.test_move_review9 import CREATED, MODEL, _argv, _timed_laptop

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack
OWNER = {RUN: "1", "b" * 32: "2", "tr-1": "1", MODEL: "1"}


def test_a_default_experiment_at_another_storage_keeps_the_stacks_layout(tmp_path, stack, monkeypatch, capsys):
    db, root = _timed_laptop(tmp_path)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE experiments SET artifact_location = 's3://team-bucket/0' WHERE experiment_id = 0")
    conn.close()
    staged = tmp_path / "mlflow.db.move" / "rewritten.db"

    def layout(self):  # the real Stack.layout over the stack's experiment 0: after the step, the laptop's row
        if _Stack.held:
            c = sqlite3.connect(staged)
            location = c.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()[0]
            c.close()
        else:
            location = "mlflow-artifacts:/0"
        return RealStack.layout(SimpleNamespace(call=lambda *a, **k: {"experiment": {"artifact_location": location}}))

    monkeypatch.setattr(_Stack, "layout", layout)
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", "1": "a", "2": "team"}, created=dict(CREATED), runs={RUN, "b" * 32},
        logged_models={MODEL}, traces={"tr-1"}, owner=dict(OWNER)) if _Stack.held else
        StackContents(experiments={"0": "Default"}, created={"0": 5}))
    argv = _argv(db, root, "--stack", "aws")
    assert cli.main(argv) == 0 and stack.files == {}
    c = sqlite3.connect(staged)
    assert c.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()[0] == \
        "mlflow-artifacts:/0", "the stack's own Default location"
    c.close()
    _Stack.held = True  # the printed step ran
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert len(stack.files) == 4 and cli.main(_argv(db, root, "--finish")) == 0


def test_a_verified_file_listed_at_another_size_is_read_back(tmp_path, fake_stack):
    db, root, plan, manifest = _moved(tmp_path)
    f = next(p for p in plan.files if p.dest.endswith("a/b/c.txt"))
    f.source.write_bytes(b"laptop v2")  # the laptop's file changed (9 bytes) ...
    fake_stack[f.dest] = b"USER'S v2"  # ... and a stack user's object of 9 bytes is there
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == 0 and f.dest in again.result.differs[0]
    with pytest.raises(VerificationError):
        _mover(tmp_path)._finish(_StackStub(), plan, manifest, True, _everything(plan))
    forced = _mover(tmp_path, overwrite=True)
    assert forced._upload(_StackStub(), plan, manifest) == 1 and fake_stack[f.dest] == b"laptop v2"
    manifest.close()
