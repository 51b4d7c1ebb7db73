"""`python -m migration move`, review 9 (issue 27): a logged model deleted on the laptop (MLflow keeps its row and
files; the stack's logged-model search never lists a deleted one) no longer fails every --finish and rerun; a
moved experiment is known by its id and creation time (the server sets it, the database step keeps it, no API
chooses it), so a stack user's experiment 1 with a trace id they chose to be the laptop's is not this source.
The reviewer's repros, turned to assert the fix. Without servers."""

from __future__ import annotations

import sqlite3

from migration import cli
from migration.stack import StackContents
from tests.migration import test_move, test_move_review5
from tests.migration.test_move import _laptop
from tests.migration.test_move_review5 import RUN, _Stack

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack
MODEL = "m-" + "c" * 32
CREATED = {"0": 1_700_000_000_000, "1": 1_700_000_100_000, "2": 1_700_000_200_000}


def _timed_laptop(tmp_path, deleted_model: bool = False):
    """The fake laptop with MLflow's experiments.creation_time (and logged_models.lifecycle_stage) columns."""
    db, root = _laptop(tmp_path, str)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("ALTER TABLE experiments ADD COLUMN creation_time INTEGER")
        conn.executemany("UPDATE experiments SET creation_time = ? WHERE experiment_id = ?",
                         [(t, int(e)) for e, t in CREATED.items()])
        conn.execute("ALTER TABLE logged_models ADD COLUMN lifecycle_stage TEXT DEFAULT 'active'")
        if deleted_model:
            conn.execute("UPDATE logged_models SET lifecycle_stage = 'deleted' WHERE model_id = ?", (MODEL,))
    conn.close()
    return db, root


def _get_allow_deleted(self, found, model_ids):
    """What the real stack answers to GetLoggedModel with allow_deleted=true once the step moved the row."""
    if _Stack.held and MODEL in model_ids:
        found.logged_models.add(MODEL)
        found.owner[MODEL] = "1"


def _argv(db, root, *extra):
    return ["move", str(db), "--to", "https://stack.example", "--artifacts", str(root), "-q", *extra]


def test_a_logged_model_deleted_on_the_laptop_does_not_fail_every_finish(tmp_path, stack, monkeypatch, capsys):
    """F1: the first move sent the deleted model's files; then --finish exited 4 and every rerun 3 ("no row on the
    stack", false: the row is there, the search hides it), and a move cut short never sent the rest."""
    def contents(self, layout=None):  # what the real stack answers: no deleted logged model
        if not _Stack.held:
            return StackContents(experiments={"0": "Default"}, created={"0": 5})
        return StackContents(experiments={"0": "Default", "1": "a", "2": "team"}, created=dict(CREATED, **{"0": 5}),
                             runs={RUN, "b" * 32}, traces={"tr-1"}, owner={RUN: "1", "b" * 32: "2", "tr-1": "1"})
    monkeypatch.setattr(_Stack, "contents", contents)
    monkeypatch.setattr(_Stack, "add_deleted_models", _get_allow_deleted)
    db, root = _timed_laptop(tmp_path, deleted_model=True)
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB")) == 0, capsys.readouterr().err
    model_file = f"1/models/{MODEL}/artifacts/MLmodel"
    assert model_file in stack.files
    assert cli.main(_argv(db, root, "--finish")) == 0, capsys.readouterr().err
    del stack.files[model_file]  # a run cut short before the model's files: the rerun sends them
    assert cli.main(_argv(db, root)) == 0, capsys.readouterr().err
    assert model_file in stack.files


def test_a_stack_users_experiment_1_and_chosen_trace_id_are_not_this_source(tmp_path, stack, monkeypatch, capsys):
    """F2: a traces-only laptop; a stack user made experiment 1 (the first id a fresh stack gives) and a trace with
    the laptop's trace id: taken as moved, the database step skipped, the laptop's trace files sent into that
    user's experiment, exit 0."""
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", "1": "mallory's"}, created={"0": 5, "1": 1_800_000_000_000},
        traces={"tr-1"}, owner={"tr-1": "1"}))
    db, root = _timed_laptop(tmp_path)
    (root / "1/traces/tr-1/artifacts").mkdir(parents=True, exist_ok=True)
    (root / "1/traces/tr-1/artifacts/traces.json").write_text('{"request": "the laptop\'s prompt"}')
    conn = sqlite3.connect(db)
    with conn:
        for table in ("runs", "logged_models", "model_versions"):
            conn.execute(f"DELETE FROM {table}")
    conn.close()
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB")) == 3
    assert "data of its own" in capsys.readouterr().err and stack.files == {} and not stack.seen


def test_a_moved_experiment_is_known_by_its_creation_time_even_renamed_and_without_runs(tmp_path, stack,
                                                                                        monkeypatch, capsys):
    """The other side: the moved experiments (creation times equal), renamed on the stack, every run of the laptop
    deleted there by gc: still this source (files of entities the stack lacks listed, not sent)."""
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", "1": "a (renamed)", "2": "team"}, created=dict(CREATED, **{"0": 5}),
        traces={"tr-1"}, owner={"tr-1": "1"}))
    db, root = _timed_laptop(tmp_path)
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB")) == 3
    err = capsys.readouterr().err
    assert "data of its own" not in err and "not sent" in err and not stack.seen, "no second database step"
