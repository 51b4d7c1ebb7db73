"""`python -m migration move`, review 5 (issue 27): the database step before any artifact (uploaded first, under
experiment ids the stack had not given out yet, a user creating an experiment meanwhile got id 1 with MANAGE on
the laptop's experiment-1 files); --verify full reads back what a rerun keeps, and --finish too; --check writes
no rewritten copy over the one a printed step reads. Without servers (tests/rehearsal/test_25_move.py runs the
order against a real stack)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from migration import cli
from migration.errors import RefusedError, VerificationError
from migration.manifest import Manifest
from migration.moveplan import StackLayout, plan_move
from migration.stack import StackContents
from tests.migration import test_move
from tests.migration.test_move import _everything, _laptop, _mover, _StackStub
from tests.migration.test_move_review3 import _MovedStack

fake_stack = test_move.fake_stack  # the stack's artifact store as a dict (a fixture)

RUN = "a" * 32


class _Stack(_MovedStack):
    """An empty stack until its database step ran (`held`), its artifacts in `fake_stack`."""

    held = False

    def contents(self, layout=None):
        if not _Stack.held:
            return StackContents(experiments={"0": "Default"})
        return StackContents(experiments={"0": "Default", "1": "a", "2": "team"}, runs={RUN, "b" * 32},
                             logged_models={"m-" + "c" * 32}, traces={"tr-1"})


@pytest.fixture
def stack(monkeypatch, fake_stack):
    import migration.source
    import migration.stack
    from migration.move import Move

    _Stack.held = False
    seen: dict[str, object] = {}

    def database(self, rewritten, db_uri, manifest):
        seen["files on the stack at the database step"] = dict(fake_stack)
        seen["rewritten copy"] = Path(rewritten).read_bytes()
        self.committed = True
        _Stack.held = True
        return {"rows": 1, "tables": {}, "verified": True, "probe": None}

    monkeypatch.setattr(migration.stack, "Stack", _Stack)
    monkeypatch.setattr(migration.source, "prepare_source", lambda path: SimpleNamespace(path=path, cleanup=lambda: 0))
    monkeypatch.setattr(Move, "_database_dry_run", lambda self, rewritten, db_uri: None)
    monkeypatch.setattr(Move, "_database", database)
    monkeypatch.setenv("STACK_DB", "postgresql://u@h/db")
    return SimpleNamespace(files=fake_stack, seen=seen)


def test_the_database_step_runs_before_any_artifact_goes_up(tmp_path, stack, capsys):
    """Finding 3: the experiments hold the source's ids on the stack before a file goes up under them."""
    db, root = _laptop(tmp_path, str)
    argv = ["move", str(db), "--to", "https://stack.example", "--artifacts", str(root), "-q",
            "--database-uri-env", "STACK_DB"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert stack.seen["files on the stack at the database step"] == {}, "a file went up before its experiment existed"
    assert len(stack.files) == 4 and "MLflow move: moved" in capsys.readouterr().out


def test_a_failed_database_step_sends_nothing(tmp_path, stack, monkeypatch, capsys):
    from migration.move import Move

    def refused(self, rewritten, db_uri, manifest):
        raise RefusedError("target holds MLflow data besides the default experiment/workspace (experiments: 1)")

    monkeypatch.setattr(Move, "_database", refused)
    db, root = _laptop(tmp_path, str)
    assert cli.main(["move", str(db), "--to", "https://stack.example", "--artifacts", str(root), "-q",
                     "--database-uri-env", "STACK_DB"]) == 3
    err = capsys.readouterr().err
    assert stack.files == {} and "nothing of this move was written" in err and "--mode replace" not in err


def test_without_the_database_the_step_is_printed_and_the_same_command_then_sends(tmp_path, stack, capsys):
    db, root = _laptop(tmp_path, str)
    argv = ["move", str(db), "--to", "https://stack.example", "--artifacts", str(root), "--stack", "aws"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert stack.files == {}, "nothing goes up before the printed step made the experiments"
    rerun = out.rsplit("\n# then the artifacts", 1)[1].splitlines()[1]
    assert rerun == f"python -m migration move {db} --to https://stack.example --artifacts {root}"
    _Stack.held = True  # the printed step ran
    assert cli.main(argv) == 0 and len(stack.files) == 4
    assert "MLflow move: moved" in capsys.readouterr().out
    assert cli.main(argv) == 3, "a second move"
    assert "already holds this source" in capsys.readouterr().err


def test_verify_full_reads_back_what_a_rerun_keeps(tmp_path, fake_stack):
    """Finding 1: a stack copy of the same size but other bytes is no longer kept as verified by --verify full
    (a rerun lists it as differing, kept; --overwrite sends the laptop's), nor passed by --finish."""
    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    assert _mover(tmp_path)._upload(_StackStub(), plan, manifest) == 4
    key = next(k for k in fake_stack if k.endswith("/MLmodel") and "/models/" not in k)
    good = fake_stack[key]
    fake_stack[key] = bytes([good[0] ^ 0xFF]) + good[1:]
    size_only = _mover(tmp_path)
    assert size_only._upload(_StackStub(), plan, manifest) == 0 and size_only.result.skipped == 4, \
        "--verify size keeps what the stack lists with its size (the control: this test can fail)"
    again = _mover(tmp_path, verify="full")
    assert again._upload(_StackStub(), plan, manifest) == 0
    assert again.result.skipped == 3 and len(again.result.differs) == 1 and key in again.result.differs[0]
    assert "another sha256" in again.result.differs[0] and fake_stack[key] != good, "kept, reported"
    with pytest.raises(VerificationError, match="1 artifact file") as caught:
        _mover(tmp_path, verify="full")._finish(_StackStub(), plan, manifest, True, _everything(plan))
    assert key in str(caught.value)
    _mover(tmp_path)._finish(_StackStub(), plan, manifest, True, _everything(plan))  # by size it passes: the control
    forced = _mover(tmp_path, verify="full", overwrite=True)
    assert forced._upload(_StackStub(), plan, manifest) == 1 and fake_stack[key] == good
    _mover(tmp_path, verify="full")._finish(_StackStub(), plan, manifest, True, _everything(plan))
    manifest.close()


def test_a_row_sent_but_not_checked_is_checked_by_the_listing_and_marked_verified(tmp_path, fake_stack):
    """kill -9 between an upload and its folder's check leaves `uploaded` rows: the rerun keeps what the stack lists
    as sent (no second transfer) and records it verified."""
    from migration.manifest import UPLOADED, VERIFIED, FileRecord

    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    _mover(tmp_path)._upload(_StackStub(), plan, manifest)
    for rec in manifest.records().values():
        manifest.record(FileRecord(rec.dest, rec.source, rec.size, rec.mtime_ns, rec.sha256, UPLOADED))
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == 0 and again.result.skipped == 4
    assert {r.state for r in manifest.records().values()} == {VERIFIED}
    manifest.close()


def test_check_leaves_the_staged_rewritten_copy_alone(tmp_path, stack, capsys):
    """Finding 4: --check made its rewritten copy over SOURCE.move/rewritten.db, the file a printed step reads."""
    db, root = _laptop(tmp_path, str)
    state = Path(str(db) + ".move")
    state.mkdir()
    staged = state / "rewritten.db"
    staged.write_bytes(b"the copy a printed step reads")
    before = os.stat(staged)
    assert cli.main(["move", str(db), "--to", "https://stack.example", "--artifacts", str(root), "-q",
                     "--check"]) == 0, capsys.readouterr().err
    assert staged.read_bytes() == b"the copy a printed step reads" and os.stat(staged).st_ino == before.st_ino
    assert stack.files == {}


def test_an_interrupt_after_the_database_step_says_the_rerun_sends_the_artifacts(tmp_path, stack, monkeypatch,
                                                                                  capsys):
    from migration.move import Move

    def interrupted(self, stack_, plan, manifest):
        raise KeyboardInterrupt

    monkeypatch.setattr(Move, "_upload", interrupted)
    db, root = _laptop(tmp_path, str)
    assert cli.main(["move", str(db), "--to", "https://stack.example", "--artifacts", str(root), "-q",
                     "--database-uri-env", "STACK_DB"]) == 130
    err = capsys.readouterr().err
    assert "after the database step committed" in err and "rerun the same command" in err
