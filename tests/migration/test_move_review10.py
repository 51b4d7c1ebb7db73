"""`python -m migration move`, review 10 (issue 27): runs in the Default experiment 0 (the commonest laptop:
`mlflow.start_run()` without `set_experiment`) are sent by a rerun after the printed step or a kill (the step lets
the laptop's experiment 0 win over the stack's seed row, creation time and all); a logged model a stack user
deleted after the move no longer fails every --finish. The reviewer's repros, turned to assert the fix."""

from __future__ import annotations

import sqlite3

from migration import cli
from migration.stack import StackContents
from tests.migration import test_move, test_move_review5
from tests.migration.test_move_review5 import RUN, _Stack
from tests.migration.test_move_review9 import CREATED, MODEL, _argv, _get_allow_deleted, _timed_laptop

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack
RUN0 = "d" * 32
STACK_SEED = {"0": 5}  # the stack's own experiment 0, before the database step


def _with_run_in_default(tmp_path):
    db, root = _timed_laptop(tmp_path)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO runs VALUES (?, 0, ?)", (RUN0, str(root / "0" / RUN0 / "artifacts")))
    conn.close()
    (root / f"0/{RUN0}/artifacts").mkdir(parents=True)
    (root / f"0/{RUN0}/artifacts/model.pkl").write_bytes(b"weights")
    return db, root


def _moved(self, layout=None):
    if not _Stack.held:
        return StackContents(experiments={"0": "Default"}, created=dict(STACK_SEED))
    return StackContents(experiments={"0": "Default", "1": "a", "2": "team"}, created=dict(CREATED),
                         runs={RUN, "b" * 32, RUN0}, logged_models={MODEL}, traces={"tr-1"},
                         owner={RUN: "1", "b" * 32: "2", RUN0: "0", MODEL: "1", "tr-1": "1"})


def test_a_rerun_after_the_printed_step_sends_the_default_experiments_files(tmp_path, stack, monkeypatch, capsys):
    monkeypatch.setattr(_Stack, "contents", _moved)
    db, root = _with_run_in_default(tmp_path)
    argv = _argv(db, root, "--stack", "local")
    assert cli.main(argv) == 0 and stack.files == {}
    _Stack.held = True  # the printed step ran
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert stack.files[f"0/{RUN0}/artifacts/model.pkl"] == b"weights" and len(stack.files) == 5
    assert cli.main(_argv(db, root, "--finish")) == 0


def test_a_rerun_after_a_kill_past_the_commit_sends_them(tmp_path, stack, monkeypatch, capsys):
    monkeypatch.setattr(_Stack, "contents", _moved)
    db, root = _with_run_in_default(tmp_path)
    _Stack.held = True  # committed by the killed run
    assert cli.main(_argv(db, root)) == 0, capsys.readouterr().err
    assert f"0/{RUN0}/artifacts/model.pkl" in stack.files


def test_a_default_only_laptop_is_moved_and_checked(tmp_path, stack, monkeypatch, capsys):
    db, root = _with_run_in_default(tmp_path)
    conn = sqlite3.connect(db)
    with conn:
        for table in ("logged_models", "trace_info", "trace_tags", "model_versions"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("DELETE FROM runs WHERE experiment_id <> 0")
        conn.execute("DELETE FROM experiments WHERE experiment_id <> 0")
    conn.close()
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default"}, created={"0": CREATED["0"]} if _Stack.held else dict(STACK_SEED),
        runs={RUN0} if _Stack.held else set(), owner={RUN0: "0"} if _Stack.held else {}))
    argv = _argv(db, root, "--stack", "local")
    assert cli.main(argv) == 0
    _Stack.held = True
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert stack.files == {f"0/{RUN0}/artifacts/model.pkl": b"weights"}
    assert cli.main(_argv(db, root, "--finish")) == 0


def test_the_stacks_own_default_experiment_is_not_the_laptops(tmp_path, stack, monkeypatch, capsys):
    """The other side: before the step the stack's 0 has its own creation time; a trace id a stack user chose in
    experiment 0 gets nothing, and the database step is not skipped."""
    db, root = _with_run_in_default(tmp_path)
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default"}, created=dict(STACK_SEED), runs=set(), traces={"tr-1"}, owner={"tr-1": "0"}))
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB")) == 3
    assert "data of its own" in capsys.readouterr().err and stack.files == {} and not stack.seen


def test_a_logged_model_deleted_on_the_stack_after_the_move_passes_finish(tmp_path, stack, monkeypatch, capsys):
    deleted = {"yes": False}

    def contents(self, layout=None):
        if not _Stack.held:
            return StackContents(experiments={"0": "Default"}, created=dict(STACK_SEED))
        return StackContents(experiments={"0": "Default", "1": "a", "2": "team"}, created=dict(CREATED),
                             runs={RUN, "b" * 32}, logged_models=set() if deleted["yes"] else {MODEL},
                             traces={"tr-1"}, owner={RUN: "1", "b" * 32: "2", "tr-1": "1", MODEL: "1"})
    monkeypatch.setattr(_Stack, "contents", contents)
    monkeypatch.setattr(_Stack, "add_deleted_models", _get_allow_deleted)
    db, root = _timed_laptop(tmp_path)
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB")) == 0
    deleted["yes"] = True  # mlflow.delete_logged_model on the stack: row and files stay until gc
    assert cli.main(_argv(db, root, "--finish")) == 0, capsys.readouterr().err
