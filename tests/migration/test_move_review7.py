"""`python -m migration move`, review 7 (issue 27): a same-size object someone else put at a moved file's path is
read back, never kept by its size; a source without runs is recognised on the stack by its traces (in their own
experiment) and one with nothing to send by its experiments and registered models; a trace id a stack user
chose to be the laptop's gets nothing. The reviewer's repros, turned to assert the fix. Without servers."""

from __future__ import annotations

import json
import sqlite3

from migration import cli
from migration.moveplan import StackLayout, plan_move
from migration.stack import StackContents
from tests.migration import test_move, test_move_review5
from tests.migration.test_move_review5 import _Stack

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack
TO = "https://stack.example"


def _argv(db, root, *extra):
    return ["move", str(db), "--to", TO, "--artifacts", str(root), "-q", *extra]


def test_a_same_size_object_planted_after_the_step_is_read_back_not_kept(tmp_path, stack, capsys):
    """F1: with --verify size, a same-size object of other bytes, put there by a user in the window, was kept as the
    laptop's (exit 0) and --finish passed."""
    db, root = _laptop_moved_by_a_printed_step(tmp_path, capsys)
    f = next(f for f in plan_move(db, root, StackLayout(), base=tmp_path).files if f.dest.endswith("data.csv"))
    stack.files[f.dest] = bytes(b ^ 1 for b in f.source.read_bytes())
    assert cli.main(_argv(db, root)) == 3
    err = capsys.readouterr().err
    assert f.dest in err and "another sha256" in err and "--overwrite" in err
    assert cli.main(_argv(db, root, "--finish")) == 4 and f.dest in capsys.readouterr().err
    assert cli.main(_argv(db, root, "--overwrite")) == 0 and stack.files[f.dest] == f.source.read_bytes()
    assert cli.main(_argv(db, root, "--finish")) == 0


def _laptop_moved_by_a_printed_step(tmp_path, capsys):
    db, root = test_move._laptop(tmp_path, str)
    assert cli.main(_argv(db, root, "--stack", "aws")) == 0
    capsys.readouterr()
    _Stack.held = True  # the printed step ran
    return db, root


def test_a_same_size_object_planted_in_the_run_that_committed_is_read_back(tmp_path, stack, capsys, monkeypatch):
    from migration.move import Move

    db, root = test_move._laptop(tmp_path, str)
    f = next(f for f in plan_move(db, root, StackLayout(), base=tmp_path).files if f.dest.endswith("data.csv"))
    real = Move._check_on_stack

    def check_then_plant(self, st, pl, layout):
        real(self, st, pl, layout)
        stack.files[f.dest] = bytes(b ^ 1 for b in f.source.read_bytes())
    monkeypatch.setattr(Move, "_check_on_stack", check_then_plant)
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB")) == 3
    assert f.dest in capsys.readouterr().err and stack.files[f.dest] != f.source.read_bytes(), "kept, reported"


def _traces_only(tmp_path):
    db, root = test_move._laptop(tmp_path, str)
    conn = sqlite3.connect(db)
    conn.executescript("DELETE FROM runs; DELETE FROM logged_models; DELETE FROM model_versions; DELETE FROM datasets;")
    conn.commit()
    conn.close()
    trace = root / "1/traces/tr-1/artifacts/traces.json"
    trace.parent.mkdir(parents=True)
    trace.write_text("{}")
    return db, root


def test_a_traces_only_source_is_not_stuck_by_a_late_trace(tmp_path, stack, capsys, monkeypatch):
    """F2: a GenAI laptop (experiments and traces, no runs): after the step, one more trace logged on the laptop
    made the rerun take the stack for another's ("data of its own", exit 3, for good)."""
    db, root = _traces_only(tmp_path)
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", "1": "a (renamed)", "2": "team"}, traces={"tr-1"}, owner={"tr-1": "1"})
        if _Stack.held else StackContents(experiments={"0": "Default"}))
    assert cli.main(_argv(db, root, "--stack", "aws")) == 0
    _Stack.held = True
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO trace_info VALUES ('tr-2', 1)")
    conn.commit()
    conn.close()
    assert cli.main(_argv(db, root)) == 0, capsys.readouterr().err
    assert stack.files == {"1/traces/tr-1/artifacts/traces.json": b"{}"}


def test_a_trace_id_chosen_by_a_stack_user_in_their_own_experiment_gets_nothing(tmp_path, stack, capsys,
                                                                                 monkeypatch):
    """F4: trace ids are the client's choice: the laptop's trace id on the stack, in another experiment (a user's),
    neither makes the stack hold this source nor receives its files."""
    db, root = _traces_only(tmp_path)
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", "1": "a", "2": "team", "3": "mallory"}, traces={"tr-1"},
        owner={"tr-1": "3"}))
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB")) == 3
    assert "data of its own" in capsys.readouterr().err and stack.files == {}


def test_a_source_with_nothing_to_send_needs_its_registered_models_too(tmp_path, stack, capsys, monkeypatch):
    """F3: experiments and a registry (versions on s3://), no runs, logged models or traces; a stack holding a
    user's experiments of the same ids and names was taken as this source moved: the database step skipped,
    exit 0 "moved"."""
    db, root = _traces_only(tmp_path)
    conn = sqlite3.connect(db)
    conn.executescript("DELETE FROM trace_info; DELETE FROM trace_tags;"
                       "INSERT INTO model_versions VALUES ('reg', 1, 's3://team/x', 's3://team/x');")
    conn.commit()
    conn.close()
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", "1": "a", "2": "team"}))
    result = tmp_path / "r.json"
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB", "--json", str(result))) == 3
    assert "data of its own" in capsys.readouterr().err and json.loads(result.read_text())["database"] is None
