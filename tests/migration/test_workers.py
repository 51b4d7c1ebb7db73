"""How the readers split a table: every row read exactly once, in one global order (pure SQLite)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from migration.workers import TableSpec, choose_order, split_tasks

COLUMNS = ("key", "ts", "step", "run", "value")


def _make(path: Path, rowid: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE m (key TEXT NOT NULL, ts INTEGER NOT NULL, step INTEGER, run TEXT NOT NULL, value REAL, "
        "PRIMARY KEY (key, ts, step, run))" + ("" if rowid else " WITHOUT ROWID")
    )
    conn.execute("CREATE INDEX m_run ON m (run)")
    conn.execute("CREATE INDEX m_run_key ON m (run, key)")
    rnd = random.Random(7)
    rows = set()
    while len(rows) < 5000:  # two metric keys only: a split on the leading column alone would give 2 tasks
        rows.add((rnd.choice(["loss", "acc"]), rnd.randrange(100), rnd.randrange(50), f"run{rnd.randrange(40):02d}"))
    conn.executemany("INSERT INTO m VALUES (?, ?, ?, ?, ?)", [r + (rnd.random(),) for r in sorted(rows, key=str)])
    if rowid:  # SQLite lets a rowid table's key hold NULL: such rows must not be lost
        conn.executemany("INSERT INTO m VALUES (?, ?, NULL, ?, 1.0)", [("loss", 1, "runX"), ("acc", 2, "runY")])
    conn.commit()
    return conn


def _read(conn: sqlite3.Connection, spec: TableSpec, tasks) -> list[tuple]:
    cols = ", ".join(spec.columns)
    order = ", ".join(spec.order_by)
    out: list[tuple] = []
    for task in tasks:
        where = f" WHERE {task.where}" if task.where else ""
        out += conn.execute(f"SELECT {cols} FROM m{where} ORDER BY {order}", task.params).fetchall()
    return out


@pytest.mark.parametrize("rowid", [True, False], ids=["rowid-table", "without-rowid"])
def test_ordered_split_reads_every_row_once_in_global_order(tmp_path, rowid):
    conn = _make(tmp_path / "s.db", rowid)
    order = choose_order(conn, "m", COLUMNS, ["key", "ts", "step", "run"], [["key", "ts", "step", "run"], ["run"]])
    assert order == ("key", "ts", "step", "run"), "the primary key order is readable without a sort"
    spec = TableSpec("m", COLUMNS, ("text", "int", "int", "text", "float"), order_by=order)
    total, lo, hi = conn.execute("SELECT count(*), min(rowid), max(rowid) FROM m").fetchone() if rowid else \
        (conn.execute("SELECT count(*) FROM m").fetchone()[0], None, None)
    tasks = split_tasks(conn, spec, total, rowid, lo, hi, target_rows=500, start_id=0)
    assert len(tasks) >= 8

    got = _read(conn, spec, tasks)
    whole = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM m ORDER BY key, ts, step, run").fetchall()
    assert sorted(got, key=repr) == sorted(whole, key=repr), "each row exactly once"
    keyed = [r for r in got if r[2] is not None]
    assert keyed == [r for r in whole if r[2] is not None], "tasks in task order keep the global order"
    sizes = [len(_read(conn, spec, [t])) for t in tasks]
    assert max(sizes) < 3 * 500, sizes


def test_order_serving_most_indexes_wins_then_the_primary_key(tmp_path):
    conn = _make(tmp_path / "s.db", rowid=True)
    pk = ["key", "ts", "step", "run"]
    assert choose_order(conn, "m", COLUMNS, pk, [pk, ["run"], ["run", "key"]]) == ("run", "key")
    assert choose_order(conn, "m", COLUMNS, pk, [pk, ["run"]]) == tuple(pk)
    # no index SQLite could read (value) in: the next candidate
    assert choose_order(conn, "m", COLUMNS, pk, [pk, ["value"], ["value", "run"]]) == tuple(pk)


def test_unordered_split_uses_rowid_ranges(tmp_path):
    conn = _make(tmp_path / "s.db", rowid=True)
    spec = TableSpec("m", COLUMNS, ("text", "int", "int", "text", "float"))
    total, lo, hi = conn.execute("SELECT count(*), min(rowid), max(rowid) FROM m").fetchone()
    tasks = split_tasks(conn, spec, total, True, lo, hi, target_rows=1000, start_id=10)
    assert [t.task_id for t in tasks] == list(range(10, 10 + len(tasks))) and len(tasks) == 5
    got = []
    for task in tasks:
        got += conn.execute(f"SELECT rowid FROM m WHERE {task.where}", task.params).fetchall()
    assert sorted(got) == conn.execute("SELECT rowid FROM m ORDER BY rowid").fetchall()


def test_careful_read_refuses_an_integer_its_binary_column_cannot_hold(tmp_path):
    """psycopg's binary int4 dumper keeps the low 32 bits of a bigger number without a word; a careful
    read names the value instead (the fast path relies on migration/widen.py having widened the column)."""
    from migration.convert import ConversionError
    from migration.workers import Task, run_task

    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("CREATE TABLE e (id INTEGER, name TEXT)")
    conn.executemany("INSERT INTO e VALUES (?, ?)", [(1, "a"), (736256110831348181, "b")])
    spec = TableSpec("e", ("id", "name"), ("int", "text"), nullable=(False, False), oids=(23, 25))
    sent: list[bytes] = []
    with pytest.raises(ConversionError, match=r"e\.id: 736256110831348181 does not fit"):
        run_task(conn, Task(0, spec, careful=True), lambda payload, rows: sent.append(payload))
    wide = TableSpec("e", ("id", "name"), ("int", "text"), nullable=(False, False), oids=(20, 25))
    total, _checksum, _counters = run_task(conn, Task(1, wide, careful=True),
                                           lambda payload, rows: sent.append(payload))
    assert total == 2 and (736256110831348181).to_bytes(8, "big") in b"".join(sent)
