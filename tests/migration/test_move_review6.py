"""`python -m migration move`, review 6 (issue 27, after the database step moved before the uploads): a rerun after
the laptop or the stack changed in the window is not stuck; a user's file on the stack is never overwritten without
--overwrite, whatever the manifest's row; --check and --finish write nothing; interrupts and failures after the
commit say so. Each test is the reviewer's repro, turned to assert the fix. Without servers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from migration import cli
from migration.manifest import FAILED, UPLOADED, VERIFIED, FileRecord, Manifest
from migration.moveplan import StackLayout, plan_move
from migration.stack import StackContents
from tests.migration import test_move, test_move_review5
from tests.migration.test_move import _laptop, _mover, _StackStub
from tests.migration.test_move_review5 import RUN, _Stack

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack
TO = "https://stack.example"
LATE = "d" * 32


def _argv(db, root, *extra):
    return ["move", str(db), "--to", TO, "--artifacts", str(root), "-q", *extra]


def _log_a_run_on_the_laptop(db: Path, root: Path) -> str:
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO runs VALUES (?, 1, ?)", (LATE, str(root / "1" / LATE / "artifacts")))
    conn.commit()
    conn.close()
    (root / "1" / LATE / "artifacts").mkdir(parents=True)
    (root / "1" / LATE / "artifacts" / "x.txt").write_text("x")
    return f"1/{LATE}/artifacts"


def test_a_run_logged_on_the_laptop_after_the_step_does_not_stick_the_move(tmp_path, stack, capsys):
    """F1: the rerun took the stack for another's ("data of its own", exit 3, nothing sent, for good)."""
    db, root = _laptop(tmp_path, str)
    assert cli.main(_argv(db, root, "--stack", "aws")) == 0  # staged: the step printed
    _Stack.held = True  # the printed step ran, then the user logged one more run on the laptop
    late = _log_a_run_on_the_laptop(db, root)
    assert cli.main(_argv(db, root)) == 3
    err = capsys.readouterr().err
    assert "data of its own" not in err and late in err and "not sent" in err
    assert len(stack.files) == 4 and not any(LATE in k for k in stack.files), "the moved runs' files, not the late"
    assert cli.main(_argv(db, root, "--finish")) == 4
    assert f"{late}/ (no row on the stack)" in capsys.readouterr().err


def test_an_experiment_renamed_on_the_stack_in_the_window_does_not_stick_the_move(tmp_path, stack, monkeypatch,
                                                                                   capsys):
    db, root = _laptop(tmp_path, str)
    _Stack.held = True
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", "1": "a (renamed)", "2": "team"}, runs={RUN, "b" * 32},
        logged_models={"m-" + "c" * 32}, traces={"tr-1"}))
    assert cli.main(_argv(db, root)) == 0, capsys.readouterr().err
    assert len(stack.files) == 4


@pytest.mark.parametrize("state", [UPLOADED, FAILED])
def test_a_users_file_is_kept_whatever_the_row_says(tmp_path, fake_stack, state):
    """F2: a row left `uploaded` (Ctrl-C, kill -9) or `failed`, and a user's newer object at that path in the
    window: kept and reported (differs), as for a `verified` row; --overwrite sends the laptop's."""
    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", TO)
    assert _mover(tmp_path)._upload(_StackStub(), plan, manifest) == 4
    key = next(k for k in fake_stack if k.endswith("data.csv"))
    rec = manifest.records()[key]
    manifest.record(FileRecord(rec.dest, rec.source, rec.size, rec.mtime_ns, rec.sha256, state))
    fake_stack[key] = b"x,y\n1,2\n3,4\n"
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == 0
    assert fake_stack[key] == b"x,y\n1,2\n3,4\n" and len(again.result.differs) == 1 and key in again.result.differs[0]
    forced = _mover(tmp_path, overwrite=True)
    assert forced._upload(_StackStub(), plan, manifest) == 1 and fake_stack[key] == b"x,y\n"
    manifest.close()


def test_a_failed_row_is_read_back_in_any_mode(tmp_path, fake_stack):
    """A `failed` row (its check found other bytes) with the same size listed: read back even with --verify size;
    the stack's bytes equal to the laptop's are kept (and recorded), others reported, never trusted by size."""
    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", TO)
    _mover(tmp_path)._upload(_StackStub(), plan, manifest)
    key = next(k for k in fake_stack if k.endswith("data.csv"))
    rec = manifest.records()[key]
    manifest.record(FileRecord(rec.dest, rec.source, rec.size, rec.mtime_ns, rec.sha256, FAILED))
    good = fake_stack[key]
    fake_stack[key] = b"X,Y\n"  # same size, other bytes
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == 0 and "another sha256" in again.result.differs[0]
    fake_stack[key] = good
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == 0 and again.result.differs == []
    assert manifest.records()[key].state == VERIFIED
    manifest.close()


def test_ctrl_c_mid_folder_leaves_rows_the_rerun_keeps_without_sending(tmp_path, fake_stack, monkeypatch):
    """F2c: a stop between a file's upload and its folder's check leaves `uploaded` rows; the rerun keeps what the
    stack lists as sent and records it verified (no second transfer, no user's file overwritten)."""
    db, root = _laptop(tmp_path, str)
    (root / "1" / RUN / "artifacts/a/b/d.txt").write_text("d")
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", TO)
    mover = _mover(tmp_path)
    mover.opts.jobs = 1
    real = test_move._FakeRepo.log_artifact

    def log(self, local_file, artifact_path=None):
        real(self, local_file, artifact_path)
        mover._stop.set()  # what SIGINT does, right after this file went up
    monkeypatch.setattr(test_move._FakeRepo, "log_artifact", log)
    mover._upload(_StackStub(), plan, manifest)
    assert {r.state for r in manifest.records().values()} == {UPLOADED}
    monkeypatch.setattr(test_move._FakeRepo, "log_artifact", real)
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == len(plan.files) - 1 and again.result.skipped == 1
    assert {r.state for r in manifest.records().values()} == {VERIFIED}
    manifest.close()


@pytest.mark.parametrize("flag", ["--finish", "--check"])
def test_finish_and_check_write_no_manifest_row(tmp_path, stack, flag, capsys):
    """F3: both promoted `uploaded` rows to `verified` (by size alone)."""
    db, root = _laptop(tmp_path, str)
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB")) == 0
    path = Path(str(db) + ".move") / "manifest.sqlite"
    m = Manifest(path, TO)
    for rec in m.records().values():
        m.record(FileRecord(rec.dest, rec.source, rec.size, rec.mtime_ns, rec.sha256, UPLOADED))
    m.close()
    assert cli.main(_argv(db, root, flag)) == 0, capsys.readouterr().err
    m = Manifest(path, TO, readonly=True)
    assert {r.state for r in m.records().values()} == {UPLOADED}, f"{flag} wrote the manifest"
    m.close()


def test_check_makes_no_manifest(tmp_path, stack, capsys):
    db, root = _laptop(tmp_path, str)
    assert cli.main(_argv(db, root, "--check")) == 0, capsys.readouterr().err
    state = Path(str(db) + ".move")
    assert not (state / "manifest.sqlite").exists() and not list(state.glob("rewritten.db*"))
    assert cli.main(_argv(db, root, "--finish")) == 3  # nothing held: refused, and still no manifest
    assert not (state / "manifest.sqlite").exists()


def test_an_interrupt_before_the_stack_was_listed_claims_nothing_about_it(tmp_path, stack, monkeypatch, capsys):
    """F4: an interrupt in a rerun's preflight said "before the database step committed ... a rerun starts again"
    while the stack held the rows."""
    import migration.source

    db, root = _laptop(tmp_path, str)
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB")) == 0
    capsys.readouterr()

    def interrupted(path):
        raise KeyboardInterrupt
    monkeypatch.setattr(migration.source, "prepare_source", interrupted)
    assert cli.main(_argv(db, root, "--json", str(tmp_path / "r.json"))) == 130
    err = capsys.readouterr().err
    assert "before the database step committed" not in err and "starts again" not in err
    assert "before the stack was listed" in err and "move --check" in err


def test_a_failure_after_the_commit_says_the_rows_are_there(tmp_path, stack, monkeypatch, capsys):
    """F5: the stack going away mid-upload gave exit 1 with the raw error; nothing said the database step had
    committed and that the same command sends the rest."""
    def down(self, local_file, artifact_path=None):
        raise ConnectionError("('Connection aborted.', RemoteDisconnected('Remote end closed connection'))")
    monkeypatch.setattr(test_move._FakeRepo, "log_artifact", down)
    db, root = _laptop(tmp_path, str)
    result = tmp_path / "r.json"
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB", "--json", str(result))) == 1
    err = capsys.readouterr().err
    assert "the database step has committed" in err and "the same command again sends" in err
    assert json.loads(result.read_text())["committed"] is True
