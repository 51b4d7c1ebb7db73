"""`python -m migration move`, review 5, paths: the descriptor check compares the artifact root by identity
(device, inode recorded at plan time), not by the spelling of its path (macOS F_GETPATH answers the on-disk
spelling of a case-insensitive volume, the plan keeps what was typed); the state directory and its lock are
those of the real source file, whatever name it was given by. Without servers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from migration import cli
from migration import move as move_module
from migration.errors import MigrationError
from migration.manifest import Manifest
from migration.move import MoveLock, lock_paths, state_dir
from migration.moveplan import StackLayout, plan_move
from tests.migration import test_move
from tests.migration.test_move import _laptop, _mover, _StackStub
from tests.migration.test_move_safety import _sqlite

fake_stack = test_move.fake_stack  # the stack's artifact store as a dict (a fixture)


def _answering(root: Path, elsewhere: Path):
    """`_fd_path` answering `elsewhere/...` for a descriptor the kernel places under `root/...`."""
    real = move_module._fd_path

    def fd_path(fd: int) -> Path:
        where = real(fd)
        return elsewhere / where.relative_to(root)

    return fd_path


# --- fix 1: the root by identity ----------------------------------------------------------------------------------
def test_a_descriptor_path_spelled_otherwise_is_the_root_by_identity(tmp_path, fake_stack, monkeypatch):
    """What F_GETPATH does on a case-insensitive volume (the plan holds `.../MLRuns`, the kernel answers
    `.../mlruns`), simulated on Linux: the descriptor's path text names the root through an alias folder (a
    link to the root's parent), so its text is not under the plan's root but one of its folders is the root
    itself. Every file is sent; before the fix every file was refused as changed."""
    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    real_root = root.resolve()
    alias = real_root.parent / "ALIAS"
    alias.symlink_to(real_root.parent, target_is_directory=True)
    spelled = alias / real_root.name
    assert spelled != real_root and os.path.samefile(spelled, real_root)
    assert plan.files and all(f.root == real_root for f in plan.files)
    monkeypatch.setattr(move_module, "_fd_path", _answering(real_root, spelled))
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    move = _mover(tmp_path)
    assert move._upload(_StackStub(), plan, manifest) == len(plan.files)
    assert move.result.changed == [] and sorted(fake_stack) == sorted(f.dest for f in plan.files)
    manifest.close()


def test_a_descriptor_path_outside_the_root_is_still_refused(tmp_path, fake_stack, monkeypatch):
    """The plan records the root's identity once (a root swapped after the plan is not the one recorded); a
    descriptor whose real path lies in another real folder (here a copy of the tree, same names, so that
    nothing but identity tells them apart) is refused, nothing sent."""
    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    st = os.stat(root)
    assert plan.files and all(f.root_id == (st.st_dev, st.st_ino) for f in plan.files)
    outside = tmp_path / "outside" / root.name
    shutil.copytree(root, outside, symlinks=True)
    assert outside.is_dir() and not os.path.samefile(outside, root)
    monkeypatch.setattr(move_module, "_fd_path", _answering(root.resolve(), outside))
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    move = _mover(tmp_path)
    with pytest.raises(MigrationError, match="changed between the plan"):
        move._upload(_StackStub(), plan, manifest)
    assert len(move.result.changed) == len(plan.files) and not fake_stack
    assert all("outside" in c for c in move.result.changed)
    manifest.close()


# --- fix 2: the state directory of the real source ----------------------------------------------------------------
def test_the_state_directory_is_the_real_sources_whatever_its_name(tmp_path):
    db = _sqlite(tmp_path / "mlflow.db")
    (tmp_path / "x").mkdir()
    alias = tmp_path / "alias.db"
    alias.symlink_to(db)
    real = db.resolve()
    assert state_dir(alias) == state_dir(db) == state_dir(tmp_path / "x" / ".." / "mlflow.db") \
        == real.parent / "mlflow.db.move"
    # a FileStore directory given by a link to it
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "runs-link").symlink_to(tmp_path / "mlruns", target_is_directory=True)
    assert state_dir(tmp_path / "runs-link") == state_dir(tmp_path / "mlruns") == real.parent / "mlruns.move"


def test_a_second_move_by_another_name_is_refused_while_the_first_runs(tmp_path, capsys):
    db = _sqlite(tmp_path / "mlflow.db")
    alias = tmp_path / "alias.db"
    alias.symlink_to(db)
    state = state_dir(db)
    with MoveLock(lock_paths(state, state / "manifest.sqlite")):
        for name in (alias, tmp_path / "sub" / ".." / "alias.db"):
            (tmp_path / "sub").mkdir(exist_ok=True)
            code = cli.main(["move", str(name), "--to", "http://127.0.0.1:9"])
            err = capsys.readouterr().err
            assert code == 3 and f"another move of this source is running (pid {os.getpid()}" in err, err
    assert not (tmp_path / "alias.db.move").exists()
