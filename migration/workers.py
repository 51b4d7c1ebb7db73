"""Reader processes: read SQLite ranges, convert, checksum, and format COPY data, in parallel.

Forked before any PostgreSQL connection exists, so they share the parent's hash seed (the row
checksum uses Python's hash) and hold no socket of the parent's. The main process only streams the
bytes they produce into COPY, so reading SQLite overlaps with PostgreSQL ingesting the previous chunk.
Each task's output reaches the main process as typed messages: Chunk..., then TaskDone (or
TaskRefused / TaskFailed).

The fast path reads through apsw: the same values as the standard library's sqlite3 module (int,
float, str, bytes, None) for markedly less CPU per row fetched (bench/README.md has the figures), and
the readers' CPU is what bounds the copy. The careful path, taken after the fast path failed on a
table, reads through sqlite3, whose errors name the column.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import sqlite3
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import apsw
from psycopg._copy_base import _binary_signature, format_row_binary, format_row_text  # psycopg >= 3.2

from migration.catalog import qident
from migration.convert import (
    ALWAYS_CONVERT, ANOMALY_SQL, ARTIFACT_COLUMNS, CONVERTERS, TAG_ARTIFACT_COLUMNS, ArtifactRewrite, rewrite_value,
)
from migration.errors import ConversionError, FastPathRefused
from migration.lifetime import die_with_parent
from migration.sqlite import connect_readonly
from migration.widen import RANGES

# COPY's binary format: a header before the first row and a trailer after the last, written by the
# COPY loop (the readers send rows only)
BINARY_SIGNATURE = _binary_signature
BINARY_TRAILER = b"\xff\xff"
# Target column types fed in COPY's binary format (psycopg's C dumpers: no text rendering of floats
# and integers on this side, no parsing on PostgreSQL's). Any other type in a table: text format.
BINARY_OIDS = {"boolean": 16, "smallint": 21, "integer": 23, "bigint": 20, "double precision": 701,
               "text": 25, "character varying": 1043, "bytea": 17}

INT_BOUNDS = {21: RANGES["smallint"], 23: RANGES["integer"]}  # by type oid
NAN_TOKEN = "\x00NaN\x00"  # NaN compares unequal to itself and hashes by identity: hash this instead
FETCH_ROWS = 5000
CHUNK_BYTES = 1 << 20
MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    categories: tuple[str, ...]
    rewrites: tuple[ArtifactRewrite, ...] = ()
    nullable: tuple[bool, ...] = ()
    order_by: tuple[str, ...] = ()  # read (and so store) rows in this order: cheap index builds
    oids: tuple[int, ...] = ()  # type oid of every column when the table is copied in binary format

    @property
    def qname(self) -> str:
        return qident(self.name)

    def qcols(self) -> str:
        return ", ".join(qident(c) for c in self.columns)

    @property
    def float_idx(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.categories) if c == "float")

    @property
    def bytea_idx(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.categories) if c == "bytea")

    def artifact_idx(self) -> tuple[int, ...]:
        if not self.rewrites:
            return ()
        return tuple(self.columns.index(c) for c in ARTIFACT_COLUMNS.get(self.name, []) if c in self.columns)

    def tag_artifact(self) -> tuple[int, int, str] | None:
        if not self.rewrites or self.name not in TAG_ARTIFACT_COLUMNS:
            return None
        key_col, value_col, key = TAG_ARTIFACT_COLUMNS[self.name]
        if key_col in self.columns and value_col in self.columns:
            return self.columns.index(key_col), self.columns.index(value_col), key
        return None


@dataclass(frozen=True)
class Task:
    task_id: int
    spec: TableSpec
    where: str = ""  # e.g. "rowid BETWEEN ? AND ?" or '"run_uuid" >= ? AND "run_uuid" < ?'
    params: tuple = ()
    careful: bool = False  # check every value's storage class and convert (after the fast path failed)


class Totals(NamedTuple):
    """What reading a task came to: rows, their checksum, and how many values were converted or rewritten."""
    rows: int
    checksum: int
    counters: dict[str, int]


# What a reader sends the main process, per task: Chunk messages, then one of the other three.

class Chunk(NamedTuple):
    """COPY data for some of the task's rows."""
    task_id: int
    payload: bytes
    rows: int


class TaskDone(NamedTuple):
    task_id: int
    totals: Totals


class TaskRefused(NamedTuple):
    """The fast path cannot send a value (see errors.FastPathRefused)."""
    task_id: int
    reason: str


class TaskFailed(NamedTuple):
    """Reading failed otherwise; `detail` is the message for the user."""
    task_id: int
    detail: str


ReaderMessage = Chunk | TaskDone | TaskRefused | TaskFailed


def canon_rows(rows: list[tuple], float_idx: tuple[int, ...]) -> list[tuple]:
    """Rows ready to hash: NaN floats replaced by a token (NaN never equals itself)."""
    if not float_idx:
        return rows
    out = rows
    for n, row in enumerate(rows):
        for i in float_idx:
            v = row[i]
            if v != v:
                if out is rows:
                    out = list(rows)
                row = row[:i] + (NAN_TOKEN,) + row[i + 1:]
                out[n] = row
    return out


def row_checksum(rows: list[tuple], float_idx: tuple[int, ...]) -> int:
    return sum(map(hash, canon_rows(rows, float_idx)))


def _where(task: Task) -> str:
    return f" WHERE {task.where}" if task.where else ""


def _order(spec: TableSpec) -> str:
    if not spec.order_by:
        return ""
    return " ORDER BY " + ", ".join(qident(c) for c in spec.order_by)


def _anomalous_columns(conn: sqlite3.Connection, task: Task) -> list[int]:
    spec = task.spec
    checks = []
    idx = []
    for i, (col, cat) in enumerate(zip(spec.columns, spec.categories)):
        if cat in ALWAYS_CONVERT:
            continue
        pred = ANOMALY_SQL.get(cat)
        if pred:
            q = qident(col)
            checks.append(f"coalesce(max({pred.format(c=q)}), 0)")
            idx.append(i)
    found = [i for i, cat in enumerate(spec.categories) if cat in ALWAYS_CONVERT]
    if checks:
        row = conn.execute(f"SELECT {', '.join(checks)} FROM {spec.qname}{_where(task)}", task.params).fetchone()
        found += [i for i, flag in zip(idx, row) if flag]
    return sorted(found)


def _converter(spec: TableSpec, conv_idx: list[int]):
    """A function over a batch of rows, or None when the batch passes through unchanged."""
    convs = [(i, CONVERTERS[spec.categories[i]]) for i in conv_idx]
    art_idx = spec.artifact_idx()
    tag = spec.tag_artifact()
    rules = spec.rewrites
    if not convs and not art_idx and not tag:
        return None

    def convert(rows: list[tuple], counters: dict) -> list[tuple]:
        out = []
        for row in rows:
            vals = list(row)
            for i, fn in convs:
                v = vals[i]
                try:
                    nv = fn(v)
                except ConversionError as exc:
                    raise ConversionError(f"{spec.name}.{spec.columns[i]}: {exc}") from None
                if nv is not v:
                    vals[i] = nv
                    if type(nv) is not type(v) and v is not None:
                        counters["converted"] = counters.get("converted", 0) + 1
            for i in art_idx:
                nv = rewrite_value(rules, vals[i])
                if nv != vals[i]:
                    vals[i] = nv
                    counters["rewritten"] = counters.get("rewritten", 0) + 1
            if tag and vals[tag[0]] == tag[2]:
                nv = rewrite_value(rules, vals[tag[1]])
                if nv != vals[tag[1]]:
                    vals[tag[1]] = nv
                    counters["rewritten"] = counters.get("rewritten", 0) + 1
            out.append(tuple(vals))
        return out

    return convert


def _copy_ready(rows: list[tuple], bytea_idx: tuple[int, ...]) -> list[tuple]:
    """bytea as hex input text: the connection-less text dumper would escape bytes for the wrong context."""
    if not bytea_idx:
        return rows
    out = []
    for row in rows:
        vals = list(row)
        for i in bytea_idx:
            if vals[i] is not None:
                vals[i] = "\\x" + vals[i].hex()
        out.append(tuple(vals))
    return out


_BOOL_TEXT = {0: "f", 1: "t", None: "\\N"}


def fast_formatter(spec: TableSpec):
    """COPY text lines via one generated f-string per row; None when the table needs the general formatter.

    Only valid for values without backslash, tab, newline or CR (checked per batch by the caller)."""
    if any(c in ("bytea", "other", "timestamp") for c in spec.categories):
        return None
    names = [f"v{i}" for i in range(len(spec.columns))]
    parts = []
    for name, cat, nullable in zip(names, spec.categories, spec.nullable or (True,) * len(names)):
        if cat == "bool":
            parts.append("{_B[" + name + "]}")
        elif nullable:
            parts.append("{_N if " + name + " is None else " + name + "}")
        else:
            parts.append("{" + name + "}")
    target = names[0] + "," if len(names) == 1 else ", ".join(names)
    code = "lambda rows: [f\"" + "\\t".join(parts) + "\\n\" for " + target + " in rows]"
    return eval(code, {"_B": _BOOL_TEXT, "_N": "\\N"})  # noqa: S307 - generated from column positions only


def _format_fast(fmt, rows: list[tuple], ncols: int) -> str | None:
    try:
        text = "".join(fmt(rows))
    except (KeyError, TypeError):
        return None
    n = len(rows)
    if (text.count("\t") != n * (ncols - 1) or text.count("\n") != n or "\r" in text
            or text.count("\\") != text.count("\\N")):
        return None
    return text


def run_task(conn: apsw.Connection | sqlite3.Connection, task: Task, emit: Callable[[bytes, int], None]) -> Totals:
    """Read, convert and format the task's rows; `emit(payload, rows)` is called for every chunk of COPY data."""
    from psycopg.adapt import Transformer

    spec = task.spec
    tx = Transformer()
    counters: dict[str, int] = {}
    always = [i for i, cat in enumerate(spec.categories) if cat in ALWAYS_CONVERT]
    if task.careful:
        convert = _converter(spec, _anomalous_columns(conn, task))
        fmt = None
    else:
        convert = _converter(spec, always)
        fmt = fast_formatter(spec)
    float_idx, bytea_idx = spec.float_idx, spec.bytea_idx
    ncols = len(spec.columns)
    binary = bool(spec.oids)
    bounded: list[tuple[int, int, int]] = []
    if binary:
        from psycopg.pq import Format

        tx.set_dumper_types(list(spec.oids), Format.BINARY)
        if task.careful:  # the binary int2/int4 dumpers keep the low bits of a bigger number, silently
            bounded = [(i, *INT_BOUNDS[oid]) for i, oid in enumerate(spec.oids) if oid in INT_BOUNDS]
    cur = conn.execute(f"SELECT {spec.qcols()} FROM {spec.qname}{_where(task)}{_order(spec)}", task.params)
    total = 0
    checksum = 0
    buf = bytearray()
    pending = 0
    while True:
        try:
            rows = list(itertools.islice(cur, FETCH_ROWS))
        except UnicodeDecodeError as exc:
            if task.careful:
                raise
            raise FastPathRefused(f"text that is not UTF-8 ({exc})") from None
        if not rows:
            break
        if convert is not None:
            rows = convert(rows, counters)
        checksum += row_checksum(rows, float_idx)
        for row in rows if bounded else ():
            for i, lo, hi in bounded:
                v = row[i]
                if v is not None and not lo <= v <= hi:
                    raise ConversionError(f"{spec.name}.{spec.columns[i]}: {v} does not fit the column's "
                                          f"{'smallint' if hi < 1 << 16 else 'integer'} type")
        if binary:
            try:
                for row in rows:
                    format_row_binary(row, tx, buf)
            except (TypeError, ValueError, OverflowError, UnicodeError) as exc:
                if task.careful:
                    raise ConversionError(f"{spec.name}: a value does not fit its column type: {exc}") from None
                raise FastPathRefused(f"a value of an unexpected type ({exc})") from None
        elif (text := _format_fast(fmt, rows, ncols) if fmt is not None else None) is not None:
            buf += text.encode("utf-8")
        else:
            for row in _copy_ready(rows, bytea_idx):
                format_row_text(row, tx, buf)
        total += len(rows)
        pending += len(rows)
        if len(buf) >= CHUNK_BYTES:
            emit(bytes(buf), pending)
            buf = bytearray()
            pending = 0
    if buf:
        emit(bytes(buf), pending)
    return Totals(total, checksum & MASK64, counters)


def _open_fast(db_path: str) -> apsw.Connection:
    conn = apsw.Connection(f"file:{db_path}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    _tune(conn)
    return conn


def _open_careful(db_path: str) -> sqlite3.Connection:
    conn = connect_readonly(Path(db_path))
    _tune(conn)
    return conn


def _tune(conn) -> None:
    conn.execute("PRAGMA query_only = 1")
    # Index-ordered reads look up each row by rowid: through a memory map, not one read() per page
    # (the file is the tool's private copy, nobody truncates it under us). SQLite caps the size.
    conn.execute(f"PRAGMA mmap_size = {1 << 40}")


def _worker_main(db_path: str, tasks: mp.Queue, results: mp.Queue, parent: int) -> None:
    import queue as _queue

    die_with_parent(parent)
    fast = _open_fast(db_path)
    careful: sqlite3.Connection | None = None
    while True:
        try:
            task = tasks.get(timeout=2.0)
        except _queue.Empty:
            if os.getppid() != parent:  # the migration process is gone: do not linger
                break
            continue
        if task is None:
            break
        try:
            def emit(payload: bytes, rows: int, _t: Task = task) -> None:
                results.put(Chunk(_t.task_id, payload, rows))

            if task.careful and careful is None:
                careful = _open_careful(db_path)
            results.put(TaskDone(task.task_id, run_task(careful if task.careful else fast, task, emit)))
        except FastPathRefused as exc:
            results.put(TaskRefused(task.task_id, exc.reason))
        except Exception as exc:  # noqa: BLE001 - reported to the main process
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            results.put(TaskFailed(task.task_id, f"reading {task.spec.name} from the source: {detail}"))
    fast.close()
    if careful is not None:
        careful.close()


@dataclass
class ReaderPool:
    db_path: Path
    jobs: int
    tasks: Any = None
    results: Any = None
    procs: list = field(default_factory=list)

    def start(self) -> "ReaderPool":
        ctx = mp.get_context("fork")
        self.tasks = ctx.Queue()
        self.results = ctx.Queue(maxsize=max(8, 4 * self.jobs))
        for _ in range(self.jobs):
            proc = ctx.Process(target=_worker_main, args=(str(self.db_path), self.tasks, self.results, os.getpid()),
                               daemon=True)
            proc.start()
            self.procs.append(proc)
        return self

    def submit(self, task: Task) -> None:
        self.tasks.put(task)

    def get(self, timeout: float = 1.0) -> ReaderMessage:
        return self.results.get(timeout=timeout)

    def alive(self) -> bool:
        return all(p.is_alive() for p in self.procs)

    def close(self) -> None:
        for _ in self.procs:
            try:
                self.tasks.put(None)
            except Exception:  # noqa: BLE001
                pass
        for proc in self.procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2)
        self.procs.clear()
        for q in (self.tasks, self.results):
            if q is not None:
                q.cancel_join_thread()
                q.close()


SAMPLES_PER_PART = 256
MAX_SAMPLES = 100_000


def _order_bounds(conn: sqlite3.Connection, spec: TableSpec, cols: str, rows: int, parts: int,
                  lo: int | None, hi: int | None) -> list[tuple]:
    """parts-1 increasing row values of the ORDER BY list that cut the table into ranges of about equal size.

    Taken from a sample of rows at evenly spaced rowids, sorted by SQLite itself (its collation decides,
    as in the reads): a few index look-ups whatever the table size. Without rowids, or when the sample
    comes out too small, exact quantiles by OFFSET (a walk along the index, fine for moderate tables)."""
    picked: list[tuple] = []
    if lo is not None and hi is not None and hi >= lo:
        want = min(rows, SAMPLES_PER_PART * parts, MAX_SAMPLES)
        ids = sorted({lo + (hi - lo) * i // max(1, want - 1) for i in range(want)})
        sample = conn.execute(f"SELECT {cols} FROM {spec.qname} WHERE rowid IN ({', '.join(map(str, ids))}) "
                              f"ORDER BY {cols}").fetchall()
        if len(sample) >= 4 * parts:
            picked = [sample[k * len(sample) // parts] for k in range(1, parts)]
    if not picked:
        for k in range(1, parts):
            found = conn.execute(f"SELECT {cols} FROM {spec.qname} ORDER BY {cols} LIMIT 1 OFFSET ?",
                                 (k * rows // parts,)).fetchone()
            if found is not None:
                picked.append(found)
    bounds: list[tuple] = []
    for found in picked:
        if any(v is None for v in found):
            continue  # a NULL is no usable bound; NULL rows go to the first task
        if not bounds or _sqlite_less(conn, bounds[-1], found):
            bounds.append(found)
    return bounds


def _sqlite_less(conn: sqlite3.Connection, a: tuple, b: tuple) -> bool:
    """a < b as SQLite compares row values (Python cannot compare, say, a str with an int)."""
    marks = "(" + ", ".join("?" * len(a)) + ")"
    return bool(conn.execute(f"SELECT {marks} < {marks}", a + b).fetchone()[0])


def split_tasks(conn: sqlite3.Connection, spec: TableSpec, rows: int, has_rowid: bool, lo: int | None,
                hi: int | None, target_rows: int, start_id: int) -> list[Task]:
    """Ranges of roughly `target_rows` rows each. A table read in an index order is split on row values
    of the whole ORDER BY list (tasks are then written in task order, keeping the global order, and a
    leading column with few distinct values, like metrics.key, still gives every reader its share);
    any other table on rowid ranges."""
    if rows <= target_rows * 1.5:
        return [Task(start_id, spec)]
    parts = max(2, round(rows / target_rows))
    if spec.order_by:
        cols = ", ".join(qident(c) for c in spec.order_by)
        bounds = _order_bounds(conn, spec, cols, rows, parts, lo, hi if has_rowid else None)
        if not bounds:
            return [Task(start_id, spec)]
        row = f"({cols})"
        marks = "(" + ", ".join("?" * len(spec.order_by)) + ")"
        # A row value with a NULL compares as NULL once the comparison reaches that column, so such a
        # row could fall between two ranges, or into one: where SQLite allows NULL in the ORDER BY list,
        # the ranges leave those rows out and a last task (a full scan) takes them all.
        declared_not_null = {r[1] for r in conn.execute(f"PRAGMA table_info({spec.qname})") if r[3]}
        nullable = [c for c in spec.order_by if c not in declared_not_null]
        has_null = " OR ".join(f"{qident(c)} IS NULL" for c in nullable)
        no_null = f" AND NOT ({has_null})" if nullable else ""
        ranges = [(f"{row} < {marks}", bounds[0])]
        ranges += [(f"{row} >= {marks} AND {row} < {marks}", bounds[k - 1] + bounds[k]) for k in range(1, len(bounds))]
        ranges.append((f"{row} >= {marks}", bounds[-1]))
        tasks = [Task(start_id + k, spec, where + no_null, params) for k, (where, params) in enumerate(ranges)]
        if nullable:
            tasks.append(Task(start_id + len(tasks), spec, has_null))
        return tasks
    if not has_rowid or lo is None:
        return [Task(start_id, spec)]
    span = hi - lo + 1
    step = -(-span // parts)
    tasks = []
    for k in range(parts):
        a = lo + k * step
        if a > hi:
            break
        tasks.append(Task(start_id + k, spec, "rowid BETWEEN ? AND ?", (a, min(hi, a + step - 1))))
    return tasks


def choose_order(conn: sqlite3.Connection, table_name: str, columns: tuple[str, ...], primary_key: list[str],
                 key_sets: list[list[str]]) -> tuple[str, ...]:
    """The order to read (and so store) a bulk-loaded table in, if SQLite can read in it without sorting.

    The index column list that most keys/indexes are a prefix of (metrics: run_uuid, key, step serves
    two of its three indexes), then the primary key (SQLite keeps a composite key in an index of its
    own, often covering). PostgreSQL's sort notices presorted input, so each index that is a prefix of
    the order builds cheaply; the fewer full sorts remain, the better, whatever the target's collation
    makes a comparison cost."""
    candidates = [tuple(k) for k in key_sets if k and all(c in columns for c in k)]
    if not candidates:
        return ()

    def score(cand):
        return (sum(1 for k in candidates if cand[:len(k)] == k), cand == tuple(primary_key), len(cand))

    qname = qident(table_name)
    for cand in sorted(set(candidates), key=lambda c: (score(c), c), reverse=True):  # ties: by name, not hash order
        order = ", ".join(qident(c) for c in cand)
        plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT * FROM {qname} ORDER BY {order}"))
        if "TEMP B-TREE" not in plan.upper():
            return cand
    return ()
