"""`python -m migration move`, review 11 (issue 27): a logged model made on the laptop after the database step is
not sent (it has no row on the stack: exit 3, as for runs), a model deleted on the stack still is its row
(GetLoggedModel with allow_deleted); a stack holding the source's rows with other artifact locations (the
database moved before by the plain migration) is refused before anything is sent. The reviewer's repros, turned
to assert the fix. Without servers."""

from __future__ import annotations

import sqlite3

from migration import cli
from migration.stack import StackContents
from tests.migration import test_move, test_move_review5
from tests.migration.test_move_review5 import RUN, _Stack
from tests.migration.test_move_review9 import CREATED, MODEL, _argv, _timed_laptop

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack
NEW = "m-" + "e" * 32
OWNER = {RUN: "1", "b" * 32: "2", "tr-1": "1", MODEL: "1"}


def _moved(self, layout=None):
    if not _Stack.held:
        return StackContents(experiments={"0": "Default"}, created={"0": 5})
    return StackContents(experiments={"0": "Default", "1": "a", "2": "team"}, created=dict(CREATED),
                         runs={RUN, "b" * 32}, logged_models={MODEL}, traces={"tr-1"}, owner=dict(OWNER))


def test_a_logged_model_made_on_the_laptop_after_the_step_is_not_sent(tmp_path, stack, monkeypatch, capsys):
    """F1: its files went to a folder with no row on the stack, exit 0, and --finish passed."""
    monkeypatch.setattr(_Stack, "contents", _moved)
    asked: list[str] = []
    monkeypatch.setattr(_Stack, "add_deleted_models", lambda self, found, ids: asked.extend(sorted(
        set(ids) - found.logged_models)))  # the stack has no such model, deleted or not
    db, root = _timed_laptop(tmp_path)
    argv = _argv(db, root, "--stack", "local")
    assert cli.main(argv) == 0
    _Stack.held = True
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO logged_models (model_id, experiment_id, artifact_location, status) "
                     "VALUES (?, 1, ?, 2)", (NEW, str(root / "1/models" / NEW / "artifacts")))
    conn.close()
    (root / f"1/models/{NEW}/artifacts").mkdir(parents=True)
    (root / f"1/models/{NEW}/artifacts/MLmodel").write_bytes(b"new model")
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert f"1/models/{NEW}/artifacts" in err and "not sent" in err
    assert f"1/models/{NEW}/artifacts/MLmodel" not in stack.files and len(stack.files) == 4
    assert asked and NEW in asked, "the stack was asked for the model the search did not list"
    assert cli.main(_argv(db, root, "--finish")) == 4


def test_a_stack_holding_the_rows_with_the_laptops_paths_is_refused(tmp_path, stack, monkeypatch, capsys):
    """F2: the database moved earlier by `python -m migration ./mlflow.db` (rows keep /home/.../mlruns): taken as
    moved, files sent to mlflow-artifacts:/ where no row points, exit 0."""
    db, root = _timed_laptop(tmp_path)
    laptop = {RUN: str(root / "1" / RUN / "artifacts"), MODEL: str(root / "1/models" / MODEL / "artifacts")}
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", "1": "a", "2": "team"}, created=dict(CREATED), runs={RUN, "b" * 32},
        logged_models={MODEL}, traces={"tr-1"}, owner=dict(OWNER), location=laptop))
    assert cli.main(_argv(db, root)) == 3
    err = capsys.readouterr().err
    assert "other artifact locations" in err and laptop[RUN] in err and stack.files == {} and not stack.seen
    assert cli.main(_argv(db, root, "--finish")) == 3
    # the control: the rows as the move writes them pass
    served = {RUN: f"mlflow-artifacts:/1/{RUN}/artifacts", MODEL: f"mlflow-artifacts:/1/models/{MODEL}/artifacts"}
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", "1": "a", "2": "team"}, created=dict(CREATED), runs={RUN, "b" * 32},
        logged_models={MODEL}, traces={"tr-1"}, owner=dict(OWNER), location=served))
    capsys.readouterr()
    assert cli.main(_argv(db, root)) == 0, capsys.readouterr().err
    assert len(stack.files) == 4
