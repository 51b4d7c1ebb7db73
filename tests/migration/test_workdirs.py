"""Leftovers of killed migrations (a source copy is as big as the source) are swept by the next run;
directories of running processes, and anything not named like ours, stay."""

from __future__ import annotations

import os
import subprocess
import sys

from migration.source import WORKDIR_PREFIX, remove_stale_copies


def test_only_directories_of_ended_processes_are_removed(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    dead = tmp_path / f"{WORKDIR_PREFIX}{ended.pid}-x1"
    dead_probe = tmp_path / f"{WORKDIR_PREFIX}{ended.pid}-probe-x2"
    alive = tmp_path / f"{WORKDIR_PREFIX}{os.getpid()}-x3"
    other = [tmp_path / f"{WORKDIR_PREFIX}probe-x4", tmp_path / f"{WORKDIR_PREFIX}12x-x5", tmp_path / "unrelated-1-x6"]
    for d in (dead, dead_probe, alive, *other):
        d.mkdir()
        (d / "source-copy.db").write_bytes(b"x" * 1024)
    (tmp_path / f"{WORKDIR_PREFIX}{ended.pid}-file").write_text("a file, not a directory")

    assert sorted(remove_stale_copies(tmp_path)) == sorted([dead, dead_probe])
    assert not dead.exists() and not dead_probe.exists()
    assert alive.exists() and all(d.exists() for d in other)
    assert (tmp_path / f"{WORKDIR_PREFIX}{ended.pid}-file").exists()
