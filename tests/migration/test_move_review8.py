"""`python -m migration move`, review 8 (issue 27): an identical file without a row is no "differs" above the
rehash limit; a laptop file only touched never sends its bytes over a user's newer version; a folder is listed
again right before its uploads (a user's object written meanwhile is kept); a source with nothing to send is
never taken as held. The reviewer's repros, turned to assert the fix. Without servers."""

from __future__ import annotations

import os

import pytest

from migration import move as move_module
from migration.errors import RefusedError
from migration.manifest import Manifest
from migration.moveplan import MovePlan, StackLayout, plan_move
from migration.stack import StackContents
from tests.migration import test_move, test_move_review5
from tests.migration.test_move import _laptop, _mover, _StackStub
from tests.migration.test_move_review5 import RUN

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack
TO = "https://stack.example"


def test_an_identical_file_without_a_row_is_kept_above_the_rehash_limit(tmp_path, fake_stack, monkeypatch):
    """F1: above 4 GiB listed (--verify size) the laptop's side of a file read back was never hashed: every
    identical file without a row (a kill -9 right after its upload; another machine's move) was "differs"."""
    monkeypatch.setattr(move_module, "REHASH_BYTES", 0)  # stands for a move with more than 4 GiB on the stack
    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    for f in plan.files:
        fake_stack[f.dest] = f.source.read_bytes()
    fake_stack[plan.files[0].dest] = bytes(b ^ 1 for b in plan.files[0].source.read_bytes())  # the control
    move = _mover(tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", TO)
    assert move._upload(_StackStub(), plan, manifest) == 0
    assert [d.split(" ")[0] for d in move.result.differs] == [plan.files[0].dest], "only the one that differs"
    assert move.result.skipped == len(plan.files) - 1
    manifest.close()


def test_a_touched_laptop_file_never_overwrites_a_users_newer_version(tmp_path, fake_stack):
    """F2: after a complete move a user logs a newer same-size version into a moved run; the laptop's file is only
    touched (cp without -p, a restore): its bytes went over the user's, exit 0. Then the laptop's content changes
    too: still kept (the stack's is not what this move sent, read back), reported."""
    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", TO)
    assert _mover(tmp_path)._upload(_StackStub(), plan, manifest) == 4
    dest = f"1/{RUN}/artifacts/a/b/c.txt"
    fake_stack[dest] = b"U"
    src = root / "1" / RUN / "artifacts/a/b/c.txt"
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan_move(db, root, StackLayout(), base=tmp_path), manifest) == 0
    assert fake_stack[dest] == b"U" and again.result.differs == [], "same bytes on the laptop: nothing to send"
    src.write_bytes(b"L")
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan_move(db, root, StackLayout(), base=tmp_path), manifest) == 0
    assert fake_stack[dest] == b"U" and dest in again.result.differs[0]
    fake_stack[dest] = b"c"  # the stack holds this move's copy again: the laptop's newer file goes
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan_move(db, root, StackLayout(), base=tmp_path), manifest) == 1
    assert fake_stack[dest] == b"L"
    manifest.close()


def test_a_users_object_written_after_the_first_listing_is_kept(tmp_path, fake_stack, monkeypatch):
    """F3: one listing of every folder before the first upload, then hours of uploads: a user's file logged into
    a moved run meanwhile was overwritten. Each folder is listed again right before its own uploads."""
    from migration.move import Move

    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    dest = f"1/{RUN}/artifacts/a/b/c.txt"
    real = Move._upload_dir

    def late_user(self, repos, manifest, directory, files, progress, task):
        fake_stack.setdefault(dest, b"USER'S NEWER")
        return real(self, repos, manifest, directory, files, progress, task)

    monkeypatch.setattr(Move, "_upload_dir", late_user)
    move = _mover(tmp_path)
    assert move._upload(_StackStub(), plan, Manifest(tmp_path / "m.sqlite", TO)) == 3
    assert fake_stack[dest] == b"USER'S NEWER"
    assert move.result.differs == [f"{dest} (written on the stack during the move, 12 bytes)"], "as what it is"


def test_a_source_with_nothing_to_send_is_never_taken_as_held(tmp_path, stack, monkeypatch, capsys):
    """F4: a registry-only source and a stack where a user made a registered model of the same name: "held", the
    database step skipped, exit 0 "moved". Now never held; a stack holding exactly its names is told apart."""
    from migration.move import _holds_source, _refuse_other_data

    plan = MovePlan(artifacts_dir=tmp_path, experiments={"0": "Default"}, registered_models=["model"])
    users = StackContents(experiments={"0": "Default", "7": "someone's"}, registered_models=["model"])
    assert not _holds_source(plan, users)
    with pytest.raises(RefusedError, match="data of its own"):
        _refuse_other_data(plan, users)
    plan.experiments["1"] = "a"
    same = StackContents(experiments={"0": "Default", "1": "a"}, registered_models=["model"])
    with pytest.raises(RefusedError, match="exactly this source's ids and names") as caught:
        _refuse_other_data(plan, same)
    assert "if its printed database step ran, the move is complete" in str(caught.value)
