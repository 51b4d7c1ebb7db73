"""The task stream between the COPY loop and real reader processes: read-ahead bounded, thrown-away
reads never delivered, every row once and in order (pure SQLite, no PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

from migration.load import TaskStream
from migration.workers import ReaderPool, TableSpec, split_tasks
from tests.migration.conftest import REPO, processes_gone
from tests.migration.test_workers import COLUMNS, _make


def _drain(stream: TaskStream, tasks) -> list[str]:
    """What a COPY would receive: each task's chunks, in task order (pumping as the COPY loop does)."""
    lines: list[str] = []
    for task in tasks:
        while True:
            while (chunk := stream.take(task.task_id)) is not None:
                lines += chunk[0].decode().splitlines()
            assert task.task_id not in stream.errors and task.task_id not in stream.refused
            if task.task_id in stream.finished and not stream.chunks.get(task.task_id):
                break
            stream.pump()
    return lines


def test_prefetch_stops_at_its_budget_and_abandoned_reads_never_arrive(tmp_path):
    db = tmp_path / "s.db"
    conn = _make(db, rowid=True)
    order = ("run", "key")
    spec = TableSpec("m", COLUMNS, ("text", "int", "int", "text", "float"), order_by=order,
                     nullable=(False, False, True, False, True))
    total, lo, hi = conn.execute("SELECT count(*), min(rowid), max(rowid) FROM m").fetchone()
    tasks = split_tasks(conn, spec, total, True, lo, hi, target_rows=500, start_id=0)
    assert len(tasks) >= 8
    pool = ReaderPool(db, 2).start()
    try:
        stream = TaskStream(pool, window=4)
        stream.add(tasks)
        stream.prefetch(budget=1)  # one chunk is over budget: nothing more is taken in
        deadline = time.monotonic() + 30
        while not stream.buffered and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)
        stream.stop_prefetch()
        assert stream.buffered > 0 and stream.submitted == {tasks[0].task_id}, "one reader, one task ahead"
        assert stream.window == 4, "the COPY loop gets its window back"

        # the guess behind the first task was wrong: what it sent is dropped, its late reports ignored,
        # and a replacement takes its place in the order
        stream.abandon([tasks[0].task_id])
        assert stream.buffered == 0
        again = replace(tasks[0], task_id=1000)
        final = [again, *tasks[1:]]
        stream.reorder(final)
        lines = _drain(stream, final)
        assert tasks[0].task_id not in stream.finished and tasks[0].task_id not in stream.chunks
        assert stream.inflight == 0 and stream.buffered == 0
    finally:
        pool.close()

    expected = sorted((k, str(ts), run) for k, ts, run in conn.execute("SELECT key, ts, run FROM m"))
    got = [tuple(line.split("\t")) for line in lines]
    assert sorted((r[0], r[1], r[3]) for r in got) == expected and len(got) == total, "every row exactly once"
    keyed = [(r[3], r[0]) for r in got]
    assert keyed == sorted(keyed), "task order keeps the global (run, key) order"


def test_readers_blocked_on_a_full_queue_end_with_a_killed_migration(tmp_path):
    """Readers whose results nobody takes any more block on the queue; SIGKILL of the migration (the
    OOM killer, a closed container shell) must not leave them waiting forever."""
    db = tmp_path / "s.db"
    _make(db, rowid=True).close()
    code = f"""
import time
from migration.workers import ReaderPool, TableSpec, Task
pool = ReaderPool({str(db)!r}, 2).start()
spec = TableSpec("m", {COLUMNS!r}, ("text", "int", "int", "text", "float"))
for i in range(100):  # results never taken: both readers end up blocked on the full queue
    pool.submit(Task(i, spec))
print(" ".join(str(p.pid) for p in pool.procs), flush=True)
time.sleep(120)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        readers = [int(p) for p in proc.stdout.readline().split()]
        assert len(readers) == 2
        time.sleep(1.5)  # they fill the queue (8 results) and block
        assert not processes_gone(readers, within=0.1), "the readers should still be there, blocked"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert processes_gone(readers, within=5.0), "readers outlived the killed migration"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
