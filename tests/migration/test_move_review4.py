"""`python -m migration move`, review 4: a file recorded as uploaded but lost by the stack is sent again (R1); a
folder swapped for a link during the walk sends nothing from outside (R2); a killed run's snapshots and partial
copies are removed by the next (R3); the azure step's polling ends (R4). Without servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from migration.errors import MigrationError, VerificationError
from migration.manifest import FAILED, UPLOADED, VERIFIED, FileRecord, Manifest
from migration.moveplan import StackLayout, plan_move
from tests.migration import test_move
from tests.migration.test_move_review3 import run_azure_step
from tests.migration.test_move import _laptop, _mover, _StackStub

fake_stack = test_move.fake_stack  # the stack's artifact store as a dict (a fixture)


def _uploaded_not_verified(tmp_path):
    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    _mover(tmp_path)._upload(_StackStub(), plan, manifest)
    victim = plan.files[0]
    rec = manifest.records()[victim.dest]
    # what a kill -9 leaves after log_artifact returned, before the listing recorded 'verified'
    manifest.record(FileRecord(rec.dest, rec.source, rec.size, rec.mtime_ns, rec.sha256, UPLOADED))
    return plan, manifest, victim


# --- R1 ---------------------------------------------------------------------------------------------------------
def test_an_uploaded_row_the_stack_lost_is_sent_again(tmp_path, fake_stack):
    plan, manifest, victim = _uploaded_not_verified(tmp_path)
    data = victim.source.read_bytes()
    del fake_stack[victim.dest]
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == 1
    assert fake_stack[victim.dest] == data and manifest.records()[victim.dest].state == VERIFIED
    manifest.close()


def test_an_uploaded_row_the_stack_lists_with_its_size_is_not_sent_again(tmp_path, fake_stack):
    plan, manifest, victim = _uploaded_not_verified(tmp_path)
    again = _mover(tmp_path)
    again._upload(_StackStub(), plan, manifest)
    assert again.result.uploaded == 0 and manifest.records()[victim.dest].state == VERIFIED
    manifest.close()


def test_overwrite_on_a_moved_source_sends_an_uploaded_row(tmp_path, fake_stack):
    plan, manifest, victim = _uploaded_not_verified(tmp_path)
    data = victim.source.read_bytes()
    fake_stack[victim.dest] = b"someone else's, longer"
    _mover(tmp_path, overwrite=True)._upload(_StackStub(), plan, manifest)
    assert fake_stack[victim.dest] == data
    manifest.close()


def test_a_failed_check_marks_the_row_failed_and_the_next_run_sends_it(tmp_path, fake_stack, monkeypatch):
    from migration import move as move_module

    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    victim = plan.files[0]
    real_get = move_module._Repos.get

    def losing_get(self, directory):  # the stack drops the victim the moment it is sent
        repo, sub = real_get(self, directory)
        log = repo.log_artifact

        def log_artifact(path, artifact_path=None):
            log(path, artifact_path)
            fake_stack.pop(victim.dest, None)
        repo.log_artifact = log_artifact
        return repo, sub

    monkeypatch.setattr(move_module._Repos, "get", losing_get)
    with pytest.raises(VerificationError, match="marked failed: a rerun reads each back"):
        _mover(tmp_path)._upload(_StackStub(), plan, manifest)
    assert manifest.records()[victim.dest].state == FAILED
    monkeypatch.setattr(move_module._Repos, "get", real_get)
    _mover(tmp_path)._upload(_StackStub(), plan, manifest)
    assert victim.dest in fake_stack and manifest.records()[victim.dest].state == VERIFIED
    manifest.close()


# --- R2 ---------------------------------------------------------------------------------------------------------
def _home_key(tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE KEY\n")
    return home


def test_a_folder_swapped_for_a_link_during_the_walk_is_refused_by_the_plan(tmp_path, monkeypatch):
    from migration import moveplan

    home = _home_key(tmp_path)
    db, root = _laptop(tmp_path, str)
    sub = root / "1" / ("a" * 32) / "artifacts" / "sub"
    sub.mkdir()
    (sub / "id_rsa").write_text("decoy\n")
    real_scandir = os.scandir

    def racing_scandir(path):
        if Path(path) == sub and not sub.is_symlink():
            (sub / "id_rsa").unlink()
            sub.rmdir()
            sub.symlink_to(home / ".ssh")
        return real_scandir(path)

    monkeypatch.setattr(moveplan.os, "scandir", racing_scandir)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    assert not [f for f in plan.files if f.dest.endswith("sub/id_rsa")]
    assert any(str(home / ".ssh") in x for x in plan.outside_links)


def test_a_folder_swapped_for_a_link_after_the_plan_sends_nothing_from_outside(tmp_path, fake_stack):
    home = _home_key(tmp_path)
    db, root = _laptop(tmp_path, str)
    sub = root / "1" / ("a" * 32) / "artifacts" / "sub"
    sub.mkdir()
    (home / ".ssh" / "id_rsa").unlink()
    (sub / "id_rsa").write_text("decoy\n")
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    key = next(f for f in plan.files if f.dest.endswith("sub/id_rsa"))
    assert key.root == root.resolve()
    # the swap after the walk: the key lands where the planned file's path now leads, as the very inode planned
    os.rename(sub / "id_rsa", home / ".ssh" / "id_rsa")
    sub.rmdir()
    sub.symlink_to(home / ".ssh")
    (home / ".ssh" / "id_rsa").write_text("PRIVATE KEY\n"[:key.size].ljust(key.size))
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    with pytest.raises(MigrationError, match="changed between the plan") as caught:
        _mover(tmp_path)._upload(_StackStub(), plan, manifest)
    assert "outside" in str(caught.value) and key.dest not in fake_stack
    manifest.close()


# --- R3 ---------------------------------------------------------------------------------------------------------
def test_a_killed_runs_snapshots_and_partial_copies_are_removed_under_the_lock(tmp_path):
    from migration.move import SEND_PREFIX, _remove_leftovers

    state = tmp_path / "mlflow.db.move"
    (state / f"{SEND_PREFIX}abc").mkdir(parents=True)
    (state / f"{SEND_PREFIX}abc" / "big.bin").write_bytes(b"x" * 100)
    (state / "rewritten.db.x1y2.partial").write_bytes(b"half")
    for keep in ("manifest.sqlite", "rewritten.db", "orphans.txt", "lock"):
        (state / keep).write_text("kept")
    _remove_leftovers(state)
    assert sorted(p.name for p in state.iterdir()) == ["lock", "manifest.sqlite", "orphans.txt", "rewritten.db"]


def test_the_locked_run_removes_leftovers_first(tmp_path, monkeypatch):
    from migration import move as move_module

    state = tmp_path / "mlflow.db.move"
    (state / f"{move_module.SEND_PREFIX}abc").mkdir(parents=True)
    seen = []

    class Stop(Exception):
        pass

    class Stack:
        uri = "https://stack.example"

        def layout(self):
            seen.append(sorted(p.name for p in state.iterdir()))
            raise Stop

    with pytest.raises(Stop):
        _mover(tmp_path)._locked(Stack(), tmp_path / "mlflow.db", None, state, state / "manifest.sqlite", 0.0,
                                  tmp_path)
    assert seen == [[]]


# --- R4 ---------------------------------------------------------------------------------------------------------

def _run_azure(tmp_path, final: str):
    """The printed azure step (test_move_review3.run_azure_step): Running once, then `final`; (the run, its polls,
    its deletes)."""
    done, calls = run_azure_step(tmp_path, final, runs=2)
    return done, [c for c in calls if "execution show" in c], [c for c in calls if " delete " in f"{c} "]


def test_the_azure_polling_stops_after_a_run_of_empty_answers(tmp_path):
    from migration.move import POLL_MISSES

    done, polls, deletes = _run_azure(tmp_path, "")
    assert len(polls) == 1 + POLL_MISSES and deletes == []
    assert "no status in" in done.stdout and "nothing was deleted" in done.stdout


@pytest.mark.parametrize("final", ["Degraded", "Cancelled"])
def test_the_azure_polling_treats_another_final_status_as_failed(tmp_path, final):
    done, polls, deletes = _run_azure(tmp_path, final)
    assert len(polls) == 2 and deletes == [] and f"did not succeed ({final})" in done.stdout


def test_the_azure_polling_stops_after_the_replica_timeout(tmp_path, monkeypatch):
    from migration import move as move_module

    monkeypatch.setattr(move_module, "REPLICA_TIMEOUT", 300)
    monkeypatch.setattr(move_module, "POLL_GRACE", 100)
    done, polls, deletes = _run_azure(tmp_path, "Running")
    assert len(polls) == 40 and deletes == []
    assert "after the job's replicaTimeout" in done.stdout
