"""The bulk load, inside the caller's single transaction.

Keys and indexes of the big tables (and every foreign key touching them) are dropped, the rows are
streamed with COPY from the reader processes, then keys, indexes and foreign keys are re-created
and every sequence/identity is set to max+1. Re-adding a foreign key validates all rows at once, so
integrity is checked as strictly as row-by-row triggers would, only faster. No superuser needed:
the table owner may do all of it, and if the role does not own the tables, the tool keeps the
indexes and copies in foreign-key order instead.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg

from migration.catalog import Catalog, Constraint, Index, qident
from migration.errors import FastPathRefused, ForeignKeyBroken, MigrationError, StringTooLong, ValueRefused
from migration.report import Reporter
from migration.workers import (
    BINARY_SIGNATURE, BINARY_TRAILER, MASK64, Chunk, ReaderPool, Task, TaskDone, TaskRefused, Totals,
)

log = logging.getLogger(__name__)


@dataclass
class TableLoad:
    name: str
    source_rows: int
    copied_rows: int = 0
    checksum: int = 0
    seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)  # converted, rewritten, checked


@dataclass
class Rebuild:
    foreign_keys: list[Constraint] = field(default_factory=list)
    keys: list[Constraint] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


def plan_rebuild(catalog: Catalog, mlflow_tables: list[str], rows: dict[str, int], threshold: int) -> Rebuild:
    """Which keys/indexes to drop around the copy: those of tables receiving >= threshold rows."""
    plan = Rebuild()
    if not all(catalog.tables[t].owned for t in mlflow_tables):
        return plan  # not the owner: keep everything, copy in FK order
    big = {t for t in mlflow_tables if rows.get(t, 0) >= threshold and rows.get(t, 0) > 0}
    if not big:
        return plan
    plan.tables = sorted(big)
    for t in mlflow_tables:
        for con in catalog.tables[t].constraints:
            if con.kind == "f" and (t in big or con.referenced_table in big):
                plan.foreign_keys.append(con)
    for t in sorted(big):
        plan.keys += [c for c in catalog.tables[t].constraints if c.kind in ("p", "u")]
        plan.indexes += catalog.tables[t].indexes
    return plan


def drop(cur: psycopg.Cursor, plan: Rebuild) -> None:
    for con in plan.foreign_keys:
        cur.execute(f"ALTER TABLE {qident(con.table)} DROP CONSTRAINT {qident(con.name)}")
    for con in plan.keys:
        cur.execute(f"ALTER TABLE {qident(con.table)} DROP CONSTRAINT {qident(con.name)}")
    for idx in plan.indexes:
        cur.execute(f"DROP INDEX {qident(idx.name)}")


def _timed(cur: psycopg.Cursor, sql: str) -> None:
    started = time.perf_counter()
    cur.execute(sql)
    log.debug("%.2f s: %s", time.perf_counter() - started, sql)


def _presorted(columns: list[str], row_order: tuple[str, ...]) -> bool:
    return bool(columns) and tuple(columns) == tuple(row_order[:len(columns)])


def recreate(cur: psycopg.Cursor, plan: Rebuild, row_order: dict[str, tuple[str, ...]] | None = None) -> None:
    """Keys and indexes, then foreign keys (they need the referenced keys).

    Builds over rows already stored in their order come first: they are cheap, single-process work
    that overlaps the caller's read-back checksum; the full sorts follow, when PostgreSQL's parallel
    workers have both cores."""
    row_order = row_order or {}
    builds = [(con.table, con.columns, con) for con in plan.keys] + [(i.table, i.columns, i) for i in plan.indexes]
    builds.sort(key=lambda b: not _presorted(b[1], row_order.get(b[0], ())))  # stable: presorted first
    for _table, _columns, item in builds:
        if isinstance(item, Index):
            _timed(cur, item.definition)
            continue
        try:
            _timed(cur, f"ALTER TABLE {qident(item.table)} ADD CONSTRAINT {qident(item.name)} {item.definition}")
        except psycopg.Error as exc:
            raise MigrationError(f"re-creating {item.table}.{item.name} ({item.definition}) failed: "
                                 f"{exc.diag.message_primary or exc}; the source holds duplicate keys") from exc
    for con in plan.foreign_keys:
        try:
            _timed(cur, f"ALTER TABLE {qident(con.table)} ADD CONSTRAINT {qident(con.name)} {con.definition}")
        except psycopg.Error as exc:
            raise ForeignKeyBroken(
                f"foreign key {con.table}.{con.name} ({con.definition}) does not hold for the copied rows: "
                f"{exc.diag.message_detail or exc.diag.message_primary or exc}"
            ) from exc


def reset_sequences(cur: psycopg.Cursor, catalog: Catalog, tables: list[str]) -> list[tuple[str, int]]:
    """Every serial/identity sequence to max(column)+1 (1 for an empty table)."""
    done = []
    for t in tables:
        for column, seq in catalog.tables[t].sequences:
            value = cur.execute(
                f"SELECT setval(%s::regclass, GREATEST(COALESCE(max({qident(column)}), 0) + 1, 1), false) "
                f"FROM {qident(t)}",
                (seq,),
            ).fetchone()[0]
            done.append((seq, int(value)))
    return done


class TaskStream:
    """Feeds tasks to the reader processes (a bounded window ahead) and routes what they send back.

    Normally pumped by the COPY loop whenever it waits for data (`deliver`). While MLflow creates an
    empty target's schema, `prefetch` pumps it from a thread instead, so the readers work on the other
    core; what they send is held in memory (up to `budget` bytes) until the COPY takes it."""

    def __init__(self, pool: ReaderPool | None, window: int):
        self.pool = pool
        self.window = window  # tasks submitted ahead of the COPY loop
        self.pending: deque[Task] = deque()
        self.submitted: set[int] = set()
        self.inflight = 0
        self.chunks: dict[int, deque[tuple[bytes, int]]] = {}  # task -> (COPY data, rows) not yet taken
        self.buffered = 0  # bytes held in `chunks`
        self.finished: dict[int, Totals] = {}
        self.errors: dict[int, str] = {}
        self.refused: dict[int, str] = {}
        self.discard: set[int] = set()
        self._prefetch: threading.Thread | None = None
        self._stop = threading.Event()
        self._prefetch_error: BaseException | None = None

    def add(self, tasks: list[Task], front: bool = False) -> None:
        if front:
            self.pending.extendleft(reversed(tasks))
        else:
            self.pending.extend(tasks)

    def pump(self, timeout: float = 1.0, window: int | None = None) -> None:
        """Submit tasks up to `window` (default: self.window) in flight, then file one reader message."""
        while self.pending and self.inflight < (self.window if window is None else window):
            task = self.pending.popleft()
            self.pool.submit(task)
            self.submitted.add(task.task_id)
            self.inflight += 1
        try:
            msg = self.pool.get(timeout=timeout)
        except queue.Empty:
            if not self.pool.alive():
                raise MigrationError("a source reader process died unexpectedly") from None
            return
        if isinstance(msg, Chunk):
            if msg.task_id not in self.discard:
                self.chunks.setdefault(msg.task_id, deque()).append((msg.payload, msg.rows))
                self.buffered += len(msg.payload)
            return
        self.inflight -= 1
        if msg.task_id in self.discard:
            return
        if isinstance(msg, TaskDone):
            self.finished[msg.task_id] = msg.totals
        elif isinstance(msg, TaskRefused):
            self.refused[msg.task_id] = msg.reason
        else:
            self.errors[msg.task_id] = msg.detail

    def take(self, tid: int) -> tuple[bytes, int] | None:
        """The task's next (COPY data, rows) received, if any."""
        chunks = self.chunks.get(tid)
        if not chunks:
            return None
        payload, rows = chunks.popleft()
        self.buffered -= len(payload)
        return payload, rows

    def deliver(self, tid: int, write: Callable[[bytes, int], None]) -> Totals:
        """Pass the task's COPY data to `write(payload, rows)` in order, pumping until the reader is done
        with it; returns what the task read. A reader's refusal raises FastPathRefused, its failure
        MigrationError."""
        while True:
            while (chunk := self.take(tid)) is not None:
                write(*chunk)
            if tid in self.errors:
                raise MigrationError(self.errors.pop(tid))
            if tid in self.refused:
                raise FastPathRefused(self.refused.pop(tid))
            if tid in self.finished and not self.chunks.get(tid):
                self.chunks.pop(tid, None)
                return self.finished.pop(tid)
            self.pump()

    def abandon(self, tids: Iterable[int]) -> None:
        """Forget these tasks: what they sent is dropped, and whatever they send later."""
        for tid in tids:
            self.discard.add(tid)
            for payload, _rows in self.chunks.pop(tid, ()):
                self.buffered -= len(payload)
            self.refused.pop(tid, None)
            self.finished.pop(tid, None)
            self.errors.pop(tid, None)
        self.pending = deque(t for t in self.pending if t.task_id not in self.discard)

    def reorder(self, tasks: list[Task]) -> None:
        """From now on submit exactly these tasks (those not submitted yet), in this order."""
        self.pending = deque(t for t in tasks if t.task_id not in self.submitted)

    def prefetch(self, budget: int, window: int = 1) -> None:
        """Pump from a thread. One reader at a time by default: the caller's own thread keeps a core."""
        def run() -> None:
            try:
                while not self._stop.is_set() and (self.pending or self.inflight):
                    if self.buffered >= budget:
                        self._stop.wait(0.05)  # the readers block on the full result queue meanwhile
                        continue
                    self.pump(timeout=0.05, window=window)
            except BaseException as exc:  # noqa: BLE001 - re-raised by stop_prefetch
                self._prefetch_error = exc

        self._stop.clear()
        self._prefetch = threading.Thread(target=run, name="prefetch", daemon=True)
        self._prefetch.start()

    def drain(self) -> None:
        """Forget every task; wait for what the readers hold, dropping what they send (the pool is then
        idle and can serve a new stream)."""
        self.abandon(list(self.submitted) + [t.task_id for t in self.pending])
        self.pending.clear()
        while self.inflight > 0:
            self.pump()

    def stop_prefetch(self) -> None:
        """Back to pumping from the caller's thread; raises what went wrong in the prefetch."""
        if self._prefetch is None:
            return
        self._stop.set()
        self._prefetch.join()
        self._prefetch = None
        if self._prefetch_error is not None:
            error, self._prefetch_error = self._prefetch_error, None
            raise error


def copy_tables(conn: psycopg.Connection, stream: TaskStream, order: list[str], tasks: dict[str, list[Task]],
                loads: dict[str, TableLoad], reporter: Reporter,
                careful_tasks: Callable[[str], list[Task]]) -> None:
    """COPY every table, each under a savepoint.

    The fast path formats rows without per-value type checks; if a reader or PostgreSQL refuses a
    value, the table is rolled back to its savepoint and copied again with every value checked and
    converted to the target column's type (`careful_tasks`). A second failure is final. (A checksum
    mismatch found later by the verification makes the caller re-run the whole transaction with those
    tables checked.) `stream` already holds the tasks, in this order."""
    cur = conn.cursor()
    for name in order:
        load = loads[name]
        reporter.table_start(name, load.source_rows)
        started = time.perf_counter()
        attempt = tasks[name]
        cur.execute("SAVEPOINT migration_table")
        while True:
            careful = attempt[0].careful
            try:
                _copy_one(cur, stream, attempt, load, reporter)
                break
            except (FastPathRefused, psycopg.errors.DataError) as exc:
                if isinstance(exc, psycopg.errors.StringDataRightTruncation):  # no value check mends that
                    raise StringTooLong(name, exc.diag.message_primary or str(exc), _context(exc)) from exc
                stream.abandon(t.task_id for t in attempt)
                cur.execute("ROLLBACK TO SAVEPOINT migration_table")
                reason = exc.reason if isinstance(exc, FastPathRefused) else (exc.diag.message_primary or str(exc))
                if careful:  # every value checked and converted, and still refused: final
                    raise ValueRefused(name, reason, _context(exc)) from exc
                reporter.info(f"  {name}: {reason}; copying it again with every value checked")
                attempt = careful_tasks(name)
                stream.add(attempt, front=True)
                reporter.table_restart(name)
        cur.execute("RELEASE SAVEPOINT migration_table")
        load.seconds = time.perf_counter() - started
        reporter.table_done(name, load.copied_rows, load.seconds)


def _context(exc: Exception) -> str:
    """Where PostgreSQL met the refused value (the COPY line), if it says."""
    diag = getattr(exc, "diag", None)
    return f" ({diag.context.strip()})" if getattr(diag, "context", None) else ""


def _copy_one(cur: psycopg.Cursor, stream: TaskStream, tasks: list[Task], load: TableLoad,
              reporter: Reporter) -> None:
    """One COPY of a table from its tasks' data, in task order (which keeps the global ORDER BY of
    index-ordered reads); sums the tasks' checksums and counters into `load`."""
    spec = tasks[0].spec
    load.checksum = 0
    load.counters = {}
    read = 0
    binary = bool(spec.oids)

    with cur.copy(f"COPY {spec.qname} ({spec.qcols()}) FROM STDIN" + (" (FORMAT binary)" if binary else "")) as copy:
        def write(payload: bytes, rows: int) -> None:
            copy.write(payload)
            reporter.table_advance(load.name, rows)

        if binary:
            copy.write(BINARY_SIGNATURE)
        for task in tasks:
            totals = stream.deliver(task.task_id, write)
            read += totals.rows
            load.checksum = (load.checksum + totals.checksum) & MASK64
            for k, v in totals.counters.items():
                load.counters[k] = load.counters.get(k, 0) + v
        if binary:
            copy.write(BINARY_TRAILER)
    load.copied_rows = cur.rowcount
    if read != load.copied_rows:
        raise MigrationError(f"{load.name}: read {read} rows from the source but COPY stored {load.copied_rows}")
    if tasks[0].careful:
        load.counters["checked"] = 1
