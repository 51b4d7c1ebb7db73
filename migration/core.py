"""The migration, start to end: source copy, target schema, one transaction of COPY, verify, commit, probe.

A `Migration` holds one run's state (options, prepared source, target, reader pool, probe, reporter,
result); its methods are the phases, in the order `run` calls them. The transaction is tried as an
`Attempt`: when PostgreSQL refuses a string longer than its column, or the read-back checksums
differ, the try is rolled back and returns the attempt to make next (strings widened, or those
tables copied with every value checked); a second failure of the same kind is final.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg

from migration import collector, default_jobs, nul, orphans
from migration.catalog import Catalog, qident, read_catalog
from migration.convert import ArtifactRewrite
from migration.errors import (
    ForeignKeyBroken, MigrationError, ProbeError, RefusedError, StringTooLong, ValueRefused, VerificationError,
)
from migration.existing import inspect, refuse_user_data, resolve_seed_conflicts
from migration.load import (
    Rebuild, TableLoad, TaskStream, copy_tables, drop, plan_rebuild, recreate, reset_sequences,
)
from migration.predict import predict_catalog
from migration.probe import InProcessProbe, Probe, ProbeResult
from migration.report import Reporter
from migration.schema import check_target, create
from migration.source import PreparedSource, prepare_source, workspaces_in_use
from migration.sqlite import connect_readonly
from migration.uris import Target, parse_target, redact, source_path
from migration.verify import Fetched, TableCheck, prepare_connection, table_checksum
from migration.widen import Widening, plan_widening, source_extents, widen
from migration.workers import BINARY_OIDS, MASK64, ReaderPool, TableSpec, Task, choose_order, split_tasks

log = logging.getLogger(__name__)

PREFETCH_BYTES = 256 << 20  # what the readers may send ahead while MLflow creates the schema
IN_MEMORY_ROWS = 5_000_000  # tables up to this size are read back at once, while PostgreSQL builds indexes


@dataclass
class Options:
    source: str
    target: str
    mode: str = "merge"  # or "replace"
    dry_run: bool = False
    rewrites: tuple[ArtifactRewrite, ...] = ()
    jobs: int = field(default_factory=default_jobs)
    rebuild_threshold: int = 10_000
    task_rows: int = 250_000
    probe: bool = True
    lock_timeout: float = 60.0
    drop_orphans: bool = False
    replace_nul: bool = False


@dataclass
class Result:
    dry_run: bool
    tables: list[TableLoad] = field(default_factory=list)
    existing_counts: dict[str, int] = field(default_factory=dict)
    verified: dict[str, bool] = field(default_factory=dict)
    sequences: list[tuple[str, int]] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    created_schema: bool = False
    source_revision: str | None = None
    upgraded_source: bool = False
    probe: ProbeResult | None = None
    read_ahead: dict[str, list[str]] | None = None  # tables read while MLflow created the schema: reused / read again
    widened: list[str] = field(default_factory=list)  # table.column made wider for the source's values
    dropped_orphans: dict[str, int] = field(default_factory=dict)  # rows without their parent row, left out
    replaced_nul: dict[str, int] = field(default_factory=dict)  # rows whose NUL characters became U+FFFD
    workspaces: list[str] = field(default_factory=list)  # non-default MLflow workspaces in the source

    def as_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "rows": sum(t.copied_rows for t in self.tables),
            "tables": {t.name: {"source_rows": t.source_rows, "copied_rows": t.copied_rows,
                                "seconds": round(t.seconds, 3), **t.counters} for t in self.tables},
            "existing_counts": self.existing_counts,
            "verified": all(self.verified.values()) if self.verified else None,
            "sequences": dict(self.sequences),
            "phases": {n: round(s, 3) for n, s in self.phases},
            "created_schema": self.created_schema,
            "source_revision": self.source_revision,
            "upgraded_source": self.upgraded_source,
            "probe": None if self.probe is None else {"ok": self.probe.ok, "detail": self.probe.detail,
                                                      "seconds": round(self.probe.seconds, 3)},
            "read_ahead": self.read_ahead,
            "widened": self.widened,
            "dropped_orphans": self.dropped_orphans,
            "replaced_nul": self.replaced_nul,
            "workspaces": self.workspaces,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Attempt:
    """How one try of the transaction copies. A try rolled back for a reason the tool can mend returns
    the attempt to make next."""

    careful: frozenset[str] = frozenset()  # tables copied with every value checked (after a checksum mismatch)
    widen_strings: bool = False  # varchar columns widened to the source's longest strings (after one was refused)
    after_mismatch: bool = False  # an earlier try's checksums differed: another mismatch is final


@dataclass
class ReadAhead:
    """Reads started on predicted specs (migration/predict.py) while MLflow creates the target schema."""

    specs: dict[str, TableSpec]
    tasks: dict[str, list[Task]]
    stream: TaskStream


@dataclass
class CopyPlan:
    """What one try copies: the keys and indexes to re-build, and each table's spec, tasks and load."""

    rebuild: Rebuild
    specs: dict[str, TableSpec]
    order: list[str]  # foreign-key order: referenced tables first
    tasks: dict[str, list[Task]]
    loads: dict[str, TableLoad]
    stream: TaskStream


Kept = dict[str, tuple[int, int]]  # merge: table -> (rows, checksum) the target already held and keeps


def migrate(opts: Options, reporter: Reporter, probe: Probe | InProcessProbe | None = None) -> Result:
    """Run the migration. The CLI passes the MLflow probe it started first thing; else it starts here."""
    with collector.paused():  # the reader processes forked here inherit the pause
        run = Migration(opts, reporter, probe)
        try:
            return run.run()
        finally:
            run.close()


class Migration:
    """One run's state; the phases are its methods, in the order `run` calls them."""

    def __init__(self, opts: Options, reporter: Reporter, probe: Probe | InProcessProbe | None):
        self.started = time.perf_counter()
        self.opts = opts
        self.reporter = reporter
        self.result = Result(dry_run=opts.dry_run)
        self.path: Path = source_path(opts.source)
        self.target: Target = parse_target(opts.target)
        if opts.mode not in ("merge", "replace"):
            raise MigrationError(f"unknown mode {opts.mode!r}")
        if not opts.probe or opts.dry_run:
            probe = None
        elif probe is None:
            probe = Probe()
        self.probe = probe
        self._source: PreparedSource | None = None
        self.tables: list[str] = []  # every MLflow table of the source
        self.with_rows: list[str] = []  # those holding rows
        self.pool: ReaderPool | None = None
        self.read_ahead: ReadAhead | None = None
        self._task_ids = itertools.count()

    @property
    def source(self) -> PreparedSource:
        """The private copy of the source, which the first phase makes."""
        assert self._source is not None, "the source is not prepared yet"
        return self._source

    def close(self) -> None:
        """Stop what the run started, whatever state it ended in."""
        if self.read_ahead is not None:
            try:
                self.read_ahead.stream.stop_prefetch()
            except BaseException:  # noqa: BLE001 - the failure that brought us here is the one to report
                pass
        if self.pool is not None:
            self.pool.close()
        if self.probe is not None:
            self.probe.close()
        if self._source is not None:
            self._source.cleanup()

    def run(self) -> Result:
        self._prepare_source()
        if self.opts.dry_run:
            return self._dry_run()
        if self.with_rows:
            self.pool = ReaderPool(self.source.path, max(1, self.opts.jobs)).start()  # fork before any socket exists
        attempt: Attempt | None = Attempt()
        while attempt is not None:
            attempt = self._try(attempt)
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.probe is not None:
            with self.reporter.phase("MLflow probe"):
                self.result.probe = self.probe.run(self.target.uri, self.target.secrets,
                                                   workspaces=bool(self.result.workspaces))
        self._finish()
        if self.result.probe is not None and not self.result.probe.ok:
            raise ProbeError(f"the data was committed and verified, but MLflow does not work on the target: "
                             f"{self.result.probe.detail}")
        return self.result

    def _finish(self) -> None:
        self.result.seconds = time.perf_counter() - self.started
        self.result.phases = self.reporter.phases

    # --- source -------------------------------------------------------------------------------------
    def _prepare_source(self) -> None:
        opts, result = self.opts, self.result
        with self.reporter.phase("prepare source"):
            self._source = source = prepare_source(self.path, drop_orphans=opts.drop_orphans,
                                                   replace_nul=opts.replace_nul)
        result.dropped_orphans = source.dropped_orphans
        result.replaced_nul = source.replaced_nul
        if source.replaced_nul:
            result.notes.append("NUL characters replaced by U+FFFD (--replace-nul): " +
                                ", ".join(f"{c} ({n})" for c, n in source.replaced_nul.items()))
        if source.dropped_orphans:
            result.notes.append("left out rows without their parent row (--drop-orphans): " +
                                ", ".join(f"{t} ({n})" for t, n in source.dropped_orphans.items()))
        result.source_revision = source.revision_before
        result.upgraded_source = source.upgraded
        if source.upgraded:
            result.notes.append(f"source copy upgraded from revision {source.revision_before} to {source.revision} "
                                "(the source file itself is untouched)")
        result.workspaces = workspaces_in_use(source.path)
        if result.workspaces:
            result.notes.append("the source uses MLflow workspaces besides default (" + ", ".join(result.workspaces) +
                                "): run MLflow on the target with MLFLOW_ENABLE_WORKSPACES=true"
                                + ("" if opts.dry_run or not opts.probe else " (the probe did)"))
        self.tables = sorted(source.tables)
        self.with_rows = [t for t in self.tables if source.tables[t].rows > 0]
        self.reporter.info(f"source {self.path}: {sum(source.tables[t].rows for t in self.tables):,} rows in "
                           f"{len(self.with_rows)} non-empty tables (revision {source.revision})")

    # --- one try, in one transaction ---------------------------------------------------------------
    def _try(self, attempt: Attempt) -> Attempt | None:
        """Copy, verify and commit; None once committed, else (rolled back) the attempt to make next."""
        notes_before = len(self.result.notes)
        with self._transaction() as conn:
            catalog, created = self._target_schema(conn, attempt)
            retry = self._load(conn, catalog, attempt)
            if retry is None:
                if created:
                    self.result.notes.append("target was empty: MLflow's schema was created "
                                             f"(revision {self.source.revision})")
                return None
            conn.rollback()
        self._forget_attempt(notes_before)
        if retry.after_mismatch and not attempt.after_mismatch:
            self.result.notes.append("re-ran the copy with per-value checks for: " + ", ".join(sorted(retry.careful)))
        return retry

    def _forget_attempt(self, notes_before: int) -> None:
        """What the rolled-back try reported no longer holds."""
        del self.result.notes[notes_before:]
        self.result.read_ahead = None
        self.result.widened = []
        self.result.verified.clear()
        self.reporter.phases.clear()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """A connection to the target for one transaction: rolled back (quietly: the connection may be
        gone) when the body fails, closed either way. The body commits or rolls back itself."""
        conn = self._connect()
        try:
            yield conn
        except BaseException:
            _roll_back_quietly(conn)
            raise
        finally:
            conn.close()

    def _connect(self) -> psycopg.Connection:
        target = self.target
        try:
            conn = psycopg.connect(target.conninfo, autocommit=False, application_name="mlflow-migration")
        except psycopg.Error as exc:
            raise MigrationError(f"cannot connect to the target {target.masked}: "
                                 f"{redact(str(exc).strip(), target.secrets)}") from exc
        prepare_connection(conn)
        if self.opts.dry_run:
            conn.read_only = True
        return conn

    def _target_schema(self, conn: psycopg.Connection, attempt: Attempt) -> tuple[Catalog, bool]:
        """The target's catalog, and whether it was empty. On an empty target MLflow creates its schema
        (not in a dry run), and the readers start meanwhile on the catalog predicted from the source."""
        with self.reporter.phase("target schema"):
            catalog, created = check_target(conn, set(self.tables))
            if created and not self.opts.dry_run:
                if isinstance(self.probe, Probe):
                    # MLflow gets imported in this process for the schema: the probe runs here too,
                    # not in a second interpreter importing it again
                    self.probe.close()
                    self.probe = InProcessProbe()
                if self.pool is not None and not attempt.careful:
                    self.read_ahead = self._start_read_ahead()
                catalog = create(conn, set(self.tables))
                if isinstance(self.probe, InProcessProbe):
                    self.probe.start_warm_up()
        self.result.created_schema = created
        return catalog, created

    def _load(self, conn: psycopg.Connection, catalog: Catalog, attempt: Attempt) -> Attempt | None:
        """Everything inside the transaction after the schema, commit included; or the attempt to make next."""
        cur = conn.cursor()
        self._lock_tables(cur, catalog)
        catalog = self._widen(conn, cur, catalog, attempt.widen_strings)
        with self.reporter.phase("target existing rows"):
            kept = self._existing_rows(conn, cur, catalog)
        if not all(catalog.tables[t].owned for t in self.tables):
            self.result.notes.append("the target role does not own every MLflow table: indexes were kept during "
                                     "the copy")
        plan = self._plan_copy(catalog, attempt)
        with self.reporter.phase("drop keys and indexes"):
            drop(cur, plan.rebuild)
        with self.reporter.phase("copy and verify each table"):
            self.reporter.copy_begin(sum(load.source_rows for load in plan.loads.values()))
            try:
                self._copy(conn, catalog, plan)
            except StringTooLong as exc:
                plan.stream.drain()  # the readers' pending output must not reach the next try
                if attempt.widen_strings:
                    raise
                self.reporter.info(f"{exc.table}: {exc.reason}{exc.context}: rolled back; copying again with the "
                                   "columns widened that the source's strings exceed")
                return replace(attempt, widen_strings=True)
            finally:
                self.reporter.copy_end()
        with self.reporter.phase("verify + re-create keys, indexes, foreign keys, sequences"):
            try:
                checks = self._verify_and_rebuild(conn, catalog, plan, kept)
            except ForeignKeyBroken as exc:
                _explain_orphans(self.source.path, exc)
                raise
            self.result.verified = {c.table: c.ok for c in checks}
            if bad := [c for c in checks if not c.ok]:
                return self._after_mismatch(attempt, bad, plan)
            self.result.notes.append(f"verified {len(checks)} tables (row counts and content checksums) before "
                                     "commit")
        with self.reporter.phase("commit"):
            conn.commit()
        self._note_copied(plan)
        return None

    def _after_mismatch(self, attempt: Attempt, bad: list[TableCheck], plan: CopyPlan) -> Attempt:
        """Copy the tables whose checksums differ again with every value checked; a second mismatch is final."""
        if attempt.after_mismatch:
            raise VerificationError("verification failed, nothing was committed (the target is unchanged): "
                                    + "; ".join(c.problem() for c in bad))
        careful = frozenset(c.table for c in bad if c.table in plan.loads)
        self.reporter.info("checksum mismatch in " + ", ".join(sorted(careful)) +
                           ": rolled back; copying again with every value of those tables checked")
        return replace(attempt, careful=careful, after_mismatch=True)

    def _lock_tables(self, cur: psycopg.Cursor, catalog: Catalog) -> None:
        lock_timeout = self.opts.lock_timeout
        cur.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
        cur.execute("SET LOCAL statement_timeout = 0")
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
        owned = [t for t in self.tables if catalog.tables[t].owned]
        if owned:
            try:
                cur.execute(f"LOCK TABLE {', '.join(qident(t) for t in owned)} IN ACCESS EXCLUSIVE MODE")
            except psycopg.errors.LockNotAvailable as exc:
                raise MigrationError(f"could not lock the target's MLflow tables within {lock_timeout:.0f} s: "
                                     "is an MLflow server using the target? stop it for the migration") from exc

    def _widening(self, catalog: Catalog, strings: bool) -> Widening | None:
        """Columns to widen for the source's values: integers always (a cheap scan of small tables);
        varchar lengths only when asked, after PostgreSQL refused a string (the scan reads every string)."""
        source = self.source
        src = connect_readonly(source.path)
        try:
            extents = source_extents(src, catalog, self.with_rows,
                                     {t: source.tables[t].columns for t in self.with_rows}, strings)
        finally:
            src.close()
        return plan_widening(catalog, extents)

    def _widen(self, conn: psycopg.Connection, cur: psycopg.Cursor, catalog: Catalog, strings: bool) -> Catalog:
        """The catalog after widening the columns the source's values exceed."""
        widening = self._widening(catalog, strings)
        if widening is None:
            return catalog
        with self.reporter.phase("widen columns"):
            widen(cur, catalog, widening)
            catalog = read_catalog(conn)
        self.result.widened = [f"{t}.{c}" for t, c, _type in widening.columns]
        self.result.notes.append(widening.describe())
        return catalog

    def _existing_rows(self, conn: psycopg.Connection, cur: psycopg.Cursor, catalog: Catalog) -> Kept:
        """Refuse user data (merge) or empty the tables (replace); what a merge keeps of the target's rows."""
        result = self.result
        existing = inspect(conn, self.tables)
        kept: Kept = {}
        if self.opts.mode == "merge":
            refuse_user_data(existing, self.target.masked)
            src = connect_readonly(self.source.path)
            try:
                deleted = resolve_seed_conflicts(conn, catalog, existing, src, set(self.tables))
            finally:
                src.close()
            for t, n in deleted.items():
                result.notes.append(f"merge: {n} seed row(s) of {t} replaced by the source's")
            for t in existing.seed:
                kept[t] = table_checksum(conn, catalog.tables[t], self._columns(catalog, t))
                if kept[t][0]:
                    result.notes.append(f"merge: kept {kept[t][0]} row(s) of {t} that the target already had")
        elif existing.counts:
            cur.execute(f"TRUNCATE {', '.join(qident(t) for t in self.tables)}")  # all at once: FKs allow it
            result.notes.append("replace: emptied " +
                                ", ".join(f"{t} ({n})" for t, n in sorted(existing.counts.items())))
        result.existing_counts = existing.counts
        return kept

    def _columns(self, catalog: Catalog, table: str) -> list[str]:
        """The target columns the source has, in the target's order: what is copied and checksummed."""
        return [c.name for c in catalog.tables[table].copy_columns if c.name in self.source.tables[table].columns]

    # --- what to copy, and how ---------------------------------------------------------------------
    def _specs(self, catalog: Catalog, src: sqlite3.Connection, ordered: set[str]) -> dict[str, TableSpec]:
        """Each table's spec for the readers; tables in `ordered` are read in the order of their indexes."""
        specs = {}
        for name in self.with_rows:
            src_cols = self.source.tables[name].columns
            target = catalog.tables[name]
            tcols = {c.name: c for c in target.copy_columns}
            unknown = [c for c in src_cols if c not in tcols]
            if unknown:
                raise RefusedError(f"source table {name} has columns the target lacks: {', '.join(unknown)}")
            missing = [c.name for c in target.copy_columns if c.name not in src_cols and c.not_null]
            if missing:
                log.debug("target %s columns %s are not in the source; defaults apply", name, missing)
            cols = tuple(c.name for c in target.copy_columns if c.name in src_cols)
            order = (choose_order(src, name, cols, target.primary_key(), target.index_column_lists())
                     if name in ordered else ())
            oids = tuple(BINARY_OIDS.get(tcols[c].type, 0) for c in cols)
            specs[name] = TableSpec(name, cols, tuple(tcols[c].category for c in cols), tuple(self.opts.rewrites),
                                    tuple(not tcols[c].not_null for c in cols), order, oids if all(oids) else ())
        return specs

    def _plan(self, catalog: Catalog, src: sqlite3.Connection) -> tuple[Rebuild, dict[str, TableSpec], list[str]]:
        """Which keys and indexes to rebuild, each table's spec, and the copy order: one rule for the
        real catalog and the predicted one (else every read ahead would look mispredicted)."""
        rows = {t: self.source.tables[t].rows for t in self.with_rows}
        rebuild = plan_rebuild(catalog, self.tables, rows, self.opts.rebuild_threshold)
        specs = self._specs(catalog, src, set(rebuild.tables))
        return rebuild, specs, catalog.fk_order(self.with_rows)

    def _tasks(self, src: sqlite3.Connection, spec: TableSpec, careful: bool = False) -> list[Task]:
        st = self.source.tables[spec.name]
        parts = split_tasks(src, spec, st.rows, st.has_rowid, st.min_rowid, st.max_rowid, self.opts.task_rows, 0)
        return [replace(task, task_id=next(self._task_ids), careful=careful) for task in parts]

    def _careful_tasks(self, spec: TableSpec) -> list[Task]:
        src = connect_readonly(self.source.path)
        try:
            return self._tasks(src, spec, careful=True)
        finally:
            src.close()

    def _new_stream(self) -> TaskStream:
        return TaskStream(self.pool, window=2 * self.pool.jobs if self.pool else 2)  # two tasks in flight per reader

    def _start_read_ahead(self) -> ReadAhead | None:
        """Start reading on the catalog predicted from the source, while MLflow creates the real one."""
        src = connect_readonly(self.source.path)
        try:
            _rebuild, specs, order = self._plan(predict_catalog(src, self.tables), src)
            tasks = {t: self._tasks(src, specs[t]) for t in order}
        except Exception as exc:  # noqa: BLE001 - only a head start: without it the copy starts after the schema
            log.debug("no reads ahead of the schema creation: %s", exc)
            return None
        finally:
            src.close()
        stream = self._new_stream()
        for ts in tasks.values():
            stream.add(ts)
        stream.prefetch(PREFETCH_BYTES)
        return ReadAhead(specs, tasks, stream)

    def _plan_copy(self, catalog: Catalog, attempt: Attempt) -> CopyPlan:
        """Specs and tasks on the real catalog; reads ahead whose spec it confirms are kept, the others dropped."""
        read_ahead, self.read_ahead = self.read_ahead, None
        src = connect_readonly(self.source.path)
        try:
            rebuild, specs, order = self._plan(catalog, src)
            loads = {t: TableLoad(t, self.source.tables[t].rows) for t in order}
            reuse: set[str] = set()
            if read_ahead is None:
                stream = self._new_stream()
            else:
                stream = read_ahead.stream
                stream.stop_prefetch()
                reuse = {t for t in order if read_ahead.specs.get(t) == specs[t]}
                stream.abandon(task.task_id for t, ts in read_ahead.tasks.items() if t not in reuse for task in ts)
                again = [t for t in order if t not in reuse]
                self.result.read_ahead = {"reused": [t for t in order if t in reuse], "read_again": again}
                self.result.notes.append(f"{len(reuse)} of {len(order)} tables were read from the source while MLflow "
                                         "created the schema" + (f"; read again (other column types or keys than "
                                                                 f"predicted): {', '.join(again)}" if again else ""))
            tasks = {t: read_ahead.tasks[t] if t in reuse else self._tasks(src, specs[t], t in attempt.careful)
                     for t in order}
        finally:
            src.close()
        stream.reorder([task for t in order for task in tasks[t]])
        return CopyPlan(rebuild, specs, order, tasks, loads, stream)

    # --- copy, verify -------------------------------------------------------------------------------
    def _copy(self, conn: psycopg.Connection, catalog: Catalog, plan: CopyPlan) -> None:
        """COPY every table; a value PostgreSQL refuses is named, with how to go on."""
        try:
            copy_tables(conn, plan.stream, plan.order, plan.tasks, plan.loads, self.reporter,
                        careful_tasks=lambda name: self._careful_tasks(plan.specs[name]))
        except StringTooLong:
            raise  # the caller widens the strings and tries again
        except ValueRefused as exc:
            where = nul.find(self.source.path, exc.table, self._columns(catalog, exc.table)) if exc.nul else []
            if where:
                raise ValueRefused(exc.table, exc.reason, exc.context, ": " + "; ".join(where)) from exc
            raise
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.errors.ForeignKeyViolation):
                _explain_orphans(self.source.path, exc)  # raises when the source has rows without their parent
            diag = exc.diag
            where = f" ({diag.context.strip()})" if diag.context else ""
            raise MigrationError(f"PostgreSQL refused the data: {diag.message_primary or exc}{where}; "
                                 "nothing was committed") from exc

    def _verify_and_rebuild(self, conn: psycopg.Connection, catalog: Catalog, plan: CopyPlan,
                            kept: Kept) -> list[TableCheck]:
        """Read every copied table back and compare with the source checksum, while PostgreSQL re-creates
        the keys, indexes and foreign keys (the rows are transferred first, then parsed and hashed here
        during the index builds: both cores busy). Sets the sequences to max+1 too."""
        loads, source = plan.loads, self.source
        fetched: list[Fetched] = []
        later: list[str] = []
        for t in self.tables:
            if t not in loads and not kept.get(t, (0, 0))[0]:
                continue
            if source.tables[t].rows + kept.get(t, (0, 0))[0] <= IN_MEMORY_ROWS:
                fetched.append(Fetched(conn, catalog.tables[t], self._columns(catalog, t)))
            else:
                later.append(t)
        failure: list[BaseException] = []

        def rebuild_all() -> None:
            try:
                cur = conn.cursor()
                recreate(cur, plan.rebuild, {t: spec.order_by for t, spec in plan.specs.items()})
                self.result.sequences = reset_sequences(cur, catalog, self.tables)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                failure.append(exc)

        worker = threading.Thread(target=rebuild_all, name="rebuild", daemon=True)
        worker.start()
        sums: dict[str, tuple[int, int]] = {}
        try:
            for f in fetched:
                sums[f.table] = f.checksum()
        finally:
            worker.join()
            for f in fetched:
                f.close()
        if failure:
            raise failure[0]
        for t in later:
            sums[t] = table_checksum(conn, catalog.tables[t], self._columns(catalog, t))
        checks = []
        cur = conn.cursor()
        for t in self.tables:
            kept_rows, kept_sum = kept.get(t, (0, 0))
            load = loads.get(t)
            exp_rows = (source.tables[t].rows if load else 0) + kept_rows
            exp_sum = ((load.checksum if load else 0) + kept_sum) & MASK64
            if t in sums:
                n, s = sums[t]
            else:
                n, s = cur.execute(f"SELECT count(*) FROM {qident(t)}").fetchone()[0], 0
            checks.append(TableCheck(t, exp_rows, n, exp_sum, s))
        return checks

    def _note_copied(self, plan: CopyPlan) -> None:
        result = self.result
        result.tables = [plan.loads[t] for t in plan.order]
        checked = [t.name for t in result.tables if t.counters.get("checked")]
        if checked:
            result.notes.append("copied again with per-value checks (a value of another type than its column's): "
                                + ", ".join(checked))
        rewritten = sum(t.counters.get("rewritten", 0) for t in result.tables)
        if self.opts.rewrites:
            result.notes.append(f"artifact locations rewritten: {rewritten}")
        converted = {t.name: t.counters["converted"] for t in result.tables if t.counters.get("converted")}
        if converted:
            result.notes.append("values converted to the target column type: " +
                                ", ".join(f"{t} ({n})" for t, n in converted.items()))
        seq = ", ".join(f"{s.split('.')[-1]}={v}" for s, v in result.sequences)
        result.notes.append(f"sequences set to max+1: {seq}")

    # --- dry run ------------------------------------------------------------------------------------
    def _dry_run(self) -> Result:
        """Check what the real run would check, in a read-only transaction; report what it would copy."""
        opts, result, source = self.opts, self.result, self.source
        with self._transaction() as conn:
            catalog, created = self._target_schema(conn, Attempt())
            if created:
                result.notes.append(f"target is empty: MLflow's schema would be created (revision {source.revision})")
            else:
                existing = inspect(conn, self.tables)
                result.existing_counts = existing.counts
                if opts.mode == "merge":
                    refuse_user_data(existing, self.target.masked)
                    if existing.seed:
                        result.notes.append("target seed rows kept unless the source has the same key: " +
                                            ", ".join(f"{t} ({n})" for t, n in sorted(existing.seed.items())))
                elif existing.counts:
                    result.notes.append("--mode replace would empty: " +
                                        ", ".join(f"{t} ({n})" for t, n in sorted(existing.counts.items())))
            if not opts.replace_nul and (holding := nul.scan(source.path)):  # the real run would be refused
                raise MigrationError("PostgreSQL would refuse text holding NUL characters (SQLite keeps them, "
                                     f"PostgreSQL's text cannot): {nul.describe(holding)}",
                                     hint="--replace-nul replaces each with U+FFFD; nothing was written")
            if not opts.drop_orphans:
                _explain_orphans(source.path, None)  # raises, as the real run's foreign keys would
            if not created:
                if (widening := self._widening(catalog, strings=True)) is not None:
                    result.notes.append("would be " + widening.describe())
                if not all(catalog.tables[t].owned for t in self.tables):
                    result.notes.append("the target role does not own every MLflow table: indexes would stay in "
                                        "place during the copy (slower)")
            conn.rollback()
        result.tables = [TableLoad(t, source.tables[t].rows) for t in self.with_rows]
        result.notes.append(f"dry run: {sum(t.source_rows for t in result.tables):,} rows in {len(result.tables)} "
                            f"tables would be copied into {self.target.masked} (mode {opts.mode}); nothing was "
                            "written")
        self._finish()
        return result


def _roll_back_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone; PostgreSQL rolls back then
        pass


def _explain_orphans(path: Path, exc: Exception | None) -> None:
    """A foreign key failed (or a dry run asks): if the source copy has rows without their parent row, say
    so, and how to go on."""
    try:
        found = orphans.find(path)
    except sqlite3.Error:
        return
    if found:
        raise MigrationError(
            "the source holds rows whose parent row is missing (MLflow never turns SQLite's foreign keys on; "
            f"PostgreSQL enforces them): {orphans.describe(found)}; nothing was committed",
            hint="--drop-orphans leaves those rows out (from the tool's copy; the source stays as it is) and "
                 "reports how many") from exc
