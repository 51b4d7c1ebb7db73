"""`python -m migration move`, review 13 (issue 27): a private laptop database gets no world-readable copy (SOURCE.move/
is 0700; the rewritten copy 0644 only where a step is printed for the one-off container, and removed once a direct
database step committed); --finish says when the stack holds the runs but not the experiments as the step writes
them. (The FileStore without creation times: tests/migration/test_move_filestore.py.)"""

from __future__ import annotations

import stat
from pathlib import Path

from migration import cli
from migration.stack import StackContents
from tests.migration import test_move, test_move_review5
from tests.migration.test_move_review5 import RUN, _Stack
from tests.migration.test_move_review9 import CREATED, _argv, _timed_laptop

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_laptops_database_copy_is_private_unless_a_step_reads_it(tmp_path, stack, capsys):
    db, root = _timed_laptop(tmp_path)
    db.chmod(0o600)
    state = Path(str(db) + ".move")
    assert cli.main(_argv(db, root, "--stack", "local")) == 0
    assert _mode(state) == 0o700 and _mode(state / "rewritten.db") == 0o644, "the local container reads it"
    (state / "rewritten.db").unlink()
    assert cli.main(_argv(db, root, "--database-uri-env", "STACK_DB")) == 0, capsys.readouterr().err
    assert len(stack.seen["rewritten copy"]) > 0 and not (state / "rewritten.db").exists(), "removed once committed"


def test_finish_says_when_the_runs_are_there_but_not_the_experiments_as_moved(tmp_path, stack, monkeypatch, capsys):
    monkeypatch.setattr(_Stack, "contents", lambda self, layout=None: StackContents(
        experiments={"0": "Default", "1": "a", "2": "team"}, created={e: t + 1 for e, t in CREATED.items()},
        runs={RUN, "b" * 32}, owner={RUN: "1", "b" * 32: "2"}))
    db, root = _timed_laptop(tmp_path)
    assert cli.main(_argv(db, root, "--finish")) == 3
    err = capsys.readouterr().err
    assert "not its experiments as the database step writes them" in err and "0 of 2 runs absent" not in err
