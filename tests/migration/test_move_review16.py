"""`python -m migration move`, review 16 (issue 27): names MLflow's client would list or download as others (a
leading space stripped, `T10:00:00.log` lowercased as a URI scheme) are refused in the preflight, all listed; one
file's failed check no longer stops every other folder. (The stack's own listing, not MLflow's list_artifacts,
which answers [] for a folder holding one file of its own name: tests/rehearsal/test_25_move.py's laptop has
`x/x`, checked against the real server.)"""

from __future__ import annotations

import pytest

from migration.errors import VerificationError
from migration.manifest import FAILED, VERIFIED, Manifest
from migration.moveplan import StackLayout, plan_move
from tests.migration import test_move
from tests.migration.test_move import _laptop, _mover, _StackStub

fake_stack = test_move.fake_stack  # fixtures
RUN = "a" * 32


@pytest.mark.parametrize("name", [" notes.txt", "T10:00:00.log", "C:x.txt"])
def test_names_mlflow_would_list_as_others_are_refused(tmp_path, name):
    db, root = _laptop(tmp_path, str)
    (root / "1" / RUN / "artifacts" / name).write_text("x")
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in plan.unsendable] == [name]
    assert not [f for f in plan.files if f.dest.endswith("/" + name)]


VICTIM = f"1/{RUN}/artifacts/a/b/c.txt"


def _folders_and_a_hidden_victim(tmp_path, monkeypatch, folders: int):
    """The fake laptop with `folders` more folders; the fake stack never lists VICTIM after its upload."""
    db, root = _laptop(tmp_path, str)
    for i in range(folders):
        (root / "1" / RUN / "artifacts" / f"d{i}").mkdir()
        (root / "1" / RUN / "artifacts" / f"d{i}" / "f.txt").write_text(f"file {i}")
    real = test_move._FakeRepo.list_files
    monkeypatch.setattr(test_move._FakeRepo, "list_files", lambda self, sub: {
        k: v for k, v in real(self, sub).items() if f"{self.head}/{sub}/{k}" != VICTIM})
    return db, root


def test_one_files_failed_check_does_not_stop_the_other_folders(tmp_path, fake_stack, monkeypatch):
    db, root = _folders_and_a_hidden_victim(tmp_path, monkeypatch, 6)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    victim = VICTIM
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    move = _mover(tmp_path)
    move.opts.jobs = 1
    with pytest.raises(VerificationError, match="1 file"):
        move._upload(_StackStub(), plan, manifest)
    states = {d: r.state for d, r in manifest.records().items()}
    assert states.pop(victim) == FAILED and set(states.values()) == {VERIFIED}
    assert len(states) == len(plan.files) - 1, "every other folder sent and checked"
    manifest.close()


def test_a_failed_check_and_files_not_sent_are_told_in_one_message(tmp_path, fake_stack, monkeypatch):
    """Review 17: a failed check raised "(the rest was sent and recorded)" while a file changed after the plan was
    not sent: one message names both, and says "every other file was sent" only when it was."""
    db, root = _folders_and_a_hidden_victim(tmp_path, monkeypatch, 3)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    victim = VICTIM
    (root / "1" / RUN / "artifacts" / "d1" / "f.txt").write_text("file 1, edited and longer")
    move = _mover(tmp_path)
    move.opts.jobs = 1
    with pytest.raises(VerificationError) as caught:
        move._upload(_StackStub(), plan, Manifest(tmp_path / "m.sqlite", "https://stack.example"))
    assert victim in caught.value.message and "d1/f.txt" in caught.value.message
    assert "failed their check" in caught.value.message and "not sent" in caught.value.message
