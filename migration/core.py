"""The migration, start to end: source copy, target schema, one transaction of COPY, verify, commit, probe."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace

import psycopg

from migration import collector, default_jobs, nul
from migration.catalog import Catalog, qident, read_catalog
from migration.convert import ArtifactRewrite
from migration.errors import MigrationError, ProbeError, RefusedError, VerificationError
from migration.existing import inspect, refuse_user_data, resolve_seed_conflicts
from migration.load import (
    ForeignKeyBroken, Rebuild, StringTooLong, TableLoad, TaskStream, ValueRefused, copy_tables, drop, plan_rebuild,
    recreate, reset_sequences,
)
from migration.probe import InProcessProbe, Probe, ProbeResult
from migration.report import Reporter
from migration.predict import predict_catalog
from migration.schema import check_target, create
from migration.source import PreparedSource, connect_readonly, prepare_source, workspaces_in_use
from migration.uris import parse_target, redact, source_path
from migration.verify import Fetched, TableCheck, Verification, prepare_connection, table_checksum
from migration.widen import Widening, plan_widening, source_extents, widen
from migration.workers import BINARY_OIDS, MASK64, ReaderPool, TableSpec, Task, choose_order, split_tasks

log = logging.getLogger(__name__)


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


def _connect(conninfo: str, masked: str, secrets: list[str]) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo, autocommit=False, application_name="mlflow-migration")
    except psycopg.Error as exc:
        raise MigrationError(f"cannot connect to the target {masked}: {redact(str(exc).strip(), secrets)}") from exc


def _specs(prepared: PreparedSource, catalog, tables: list[str], rewrites, src: sqlite3.Connection,
           ordered: set[str]) -> dict[str, TableSpec]:
    specs = {}
    for name in tables:
        src_cols = prepared.tables[name].columns
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
        specs[name] = TableSpec(name, cols, tuple(tcols[c].category for c in cols), tuple(rewrites),
                                tuple(not tcols[c].not_null for c in cols), order, oids if all(oids) else ())
    return specs


_TASK_IDS = itertools.count()
PREFETCH_BYTES = 256 << 20  # what the readers may send ahead while MLflow creates the schema


def _tasks(src: sqlite3.Connection, prepared: PreparedSource, spec: TableSpec, opts: Options,
           careful: bool = False) -> list[Task]:
    st = prepared.tables[spec.name]
    parts = split_tasks(src, spec, st.rows, st.has_rowid, st.min_rowid, st.max_rowid, opts.task_rows, 0)
    return [replace(task, task_id=next(_TASK_IDS), careful=careful) for task in parts]


def _new_stream(pool: ReaderPool | None) -> TaskStream:
    return TaskStream(pool, window=2 * pool.jobs if pool else 2)  # two tasks in flight per reader


@dataclass
class _Speculation:
    """Reads started on predicted specs (migration/predict.py) while MLflow creates the target schema."""
    specs: dict[str, TableSpec]
    tasks: dict[str, list[Task]]
    stream: TaskStream


def _plan(prepared: PreparedSource, catalog: Catalog, all_tables: list[str], with_rows: list[str], opts: Options,
          src: sqlite3.Connection) -> tuple[Rebuild, dict[str, TableSpec], list[str]]:
    """Which keys and indexes to rebuild, each table's spec, and the copy order: one rule for the
    real catalog and the predicted one (else every read ahead would look mispredicted)."""
    rows = {t: prepared.tables[t].rows for t in with_rows}
    rebuild = plan_rebuild(catalog, all_tables, rows, opts.rebuild_threshold)
    specs = _specs(prepared, catalog, with_rows, opts.rewrites, src, set(rebuild.tables))
    return rebuild, specs, catalog.fk_order(with_rows)


def _speculate(prepared: PreparedSource, all_tables: list[str], with_rows: list[str], opts: Options,
               pool: ReaderPool) -> _Speculation | None:
    src = connect_readonly(prepared.path)
    try:
        _rebuild, specs, order = _plan(prepared, predict_catalog(src, all_tables), all_tables, with_rows, opts, src)
        tasks = {t: _tasks(src, prepared, specs[t], opts) for t in order}
    except Exception as exc:  # noqa: BLE001 - only a head start: without it the copy starts after the schema
        log.debug("no reads ahead of the schema creation: %s", exc)
        return None
    finally:
        src.close()
    stream = _new_stream(pool)
    for ts in tasks.values():
        stream.add(ts)
    stream.prefetch(PREFETCH_BYTES)
    return _Speculation(specs, tasks, stream)


def _widening(catalog: Catalog, prepared: PreparedSource, with_rows: list[str], strings: bool) -> Widening | None:
    """Columns to widen for the source's values: integers always (a cheap scan of small tables);
    varchar lengths only when asked, after PostgreSQL refused a string (the scan reads every string)."""
    src = connect_readonly(prepared.path)
    try:
        extents = source_extents(src, catalog, with_rows, {t: prepared.tables[t].columns for t in with_rows}, strings)
    finally:
        src.close()
    return plan_widening(catalog, extents)


def migrate(opts: Options, reporter: Reporter, probe: Probe | InProcessProbe | None = None) -> Result:
    """Run the migration. The CLI passes the MLflow probe it started first thing; else it starts here."""
    with collector.paused():  # the reader processes forked here inherit the pause
        return _migrate(opts, reporter, probe)


def _migrate(opts: Options, reporter: Reporter, probe: Probe | InProcessProbe | None) -> Result:
    started = time.perf_counter()
    result = Result(dry_run=opts.dry_run)
    path = source_path(opts.source)
    target = parse_target(opts.target)
    if opts.mode not in ("merge", "replace"):
        raise MigrationError(f"unknown mode {opts.mode!r}")
    if not opts.probe or opts.dry_run:
        probe = None
    elif probe is None:
        probe = Probe()
    prepared: PreparedSource | None = None
    pool: ReaderPool | None = None
    speculation: _Speculation | None = None
    try:
        with reporter.phase("prepare source"):
            prepared = prepare_source(path, drop_orphans=opts.drop_orphans, replace_nul=opts.replace_nul)
        result.dropped_orphans = prepared.dropped_orphans
        result.replaced_nul = prepared.replaced_nul
        if prepared.replaced_nul:
            result.notes.append("NUL characters replaced by U+FFFD (--replace-nul): " +
                                ", ".join(f"{c} ({n})" for c, n in prepared.replaced_nul.items()))
        if prepared.dropped_orphans:
            result.notes.append("left out rows without their parent row (--drop-orphans): " +
                                ", ".join(f"{t} ({n})" for t, n in prepared.dropped_orphans.items()))
        result.source_revision = prepared.revision_before
        result.upgraded_source = prepared.upgraded
        if prepared.upgraded:
            result.notes.append(f"source copy upgraded from revision {prepared.revision_before} to {prepared.revision} "
                                "(the source file itself is untouched)")
        result.workspaces = workspaces_in_use(prepared.path)
        if result.workspaces:
            result.notes.append("the source uses MLflow workspaces besides default (" + ", ".join(result.workspaces) +
                                "): run MLflow on the target with MLFLOW_ENABLE_WORKSPACES=true"
                                + ("" if opts.dry_run or not opts.probe else " (the probe did)"))
        all_tables = sorted(prepared.tables)
        with_rows = [t for t in all_tables if prepared.tables[t].rows > 0]
        reporter.info(f"source {path}: {sum(prepared.tables[t].rows for t in all_tables):,} rows in "
                      f"{len(with_rows)} non-empty tables (revision {prepared.revision})")
        if not opts.dry_run and with_rows:
            pool = ReaderPool(prepared.path, max(1, opts.jobs)).start()  # fork before any socket exists
        careful: set[str] = set()
        widen_strings = False
        mismatches = 0
        while True:
            notes_before = len(result.notes)
            conn = _connect(target.conninfo, target.masked, target.secrets)
            try:
                prepare_connection(conn)
                if opts.dry_run:
                    conn.read_only = True
                with reporter.phase("target schema"):
                    catalog, created = check_target(conn, set(all_tables))
                    if created and not opts.dry_run:
                        if isinstance(probe, Probe):
                            # MLflow gets imported in this process for the schema: the probe runs here too,
                            # not in a second interpreter importing it again
                            probe.close()
                            probe = InProcessProbe()
                        if pool is not None and not careful:
                            speculation = _speculate(prepared, all_tables, with_rows, opts, pool)
                        catalog = create(conn, set(all_tables))
                        if isinstance(probe, InProcessProbe):
                            probe.start_warm_up()
                result.created_schema = created
                if opts.dry_run:
                    if created:
                        result.notes.append("target is empty: MLflow's schema would be created "
                                            f"(revision {prepared.revision})")
                    return _dry_run(conn, catalog, created, prepared, all_tables, opts, target, result, reporter,
                                    started)
                _load(conn, catalog, prepared, all_tables, with_rows, opts, target, pool, result, reporter, careful,
                      speculation, widen_strings)
                speculation = None
                if created:
                    result.notes.append(f"target was empty: MLflow's schema was created (revision {prepared.revision})")
                break
            except StringTooLong as exc:
                speculation = None
                conn.rollback()
                if widen_strings:
                    raise
                widen_strings = True
                reporter.info(f"{exc.table}: {exc.reason}{exc.context}: rolled back; copying again with the columns widened "
                              "that the source's strings exceed")
                _restart(result, reporter, notes_before)
            except _Mismatch as exc:
                speculation = None
                conn.rollback()
                mismatches += 1
                if mismatches == 2:
                    raise VerificationError(
                        "verification failed, nothing was committed (the target is unchanged): "
                        + "; ".join(exc.details)) from None
                careful = set(exc.tables)
                reporter.info("checksum mismatch in " + ", ".join(sorted(careful)) +
                              ": rolled back; copying again with every value of those tables checked")
                _restart(result, reporter, notes_before)
                result.notes.append("re-ran the copy with per-value checks for: " + ", ".join(sorted(careful)))
            except BaseException:
                try:
                    conn.rollback()
                except Exception:  # noqa: BLE001 - the connection may be gone; PostgreSQL rolls back then
                    pass
                raise
            finally:
                conn.close()
        if pool is not None:
            pool.close()
            pool = None
        if probe is not None:
            with reporter.phase("MLflow probe"):
                result.probe = probe.run(target.uri, target.secrets, workspaces=bool(result.workspaces))
        result.seconds = time.perf_counter() - started
        result.phases = reporter.phases
        if result.probe is not None and not result.probe.ok:
            raise ProbeError(f"the data was committed and verified, but MLflow does not work on the target: "
                             f"{result.probe.detail}")
        return result
    finally:
        if speculation is not None:
            try:
                speculation.stream.stop_prefetch()
            except BaseException:  # noqa: BLE001 - the failure that brought us here is the one to report
                pass
        if pool is not None:
            pool.close()
        if probe is not None:
            probe.close()
        if prepared is not None:
            prepared.cleanup()


def _explain_orphans(prepared: PreparedSource, exc: Exception | None) -> None:
    """A foreign key failed (or a dry run asks): if the source copy has rows without their parent row, say
    so, and how to go on."""
    from migration import orphans

    try:
        found = orphans.find(prepared.path)
    except sqlite3.Error:
        return
    if found:
        raise MigrationError(
            "the source holds rows whose parent row is missing (MLflow never turns SQLite's foreign keys on; "
            f"PostgreSQL enforces them): {orphans.describe(found)}; nothing was committed",
            hint="--drop-orphans leaves those rows out (from the tool's copy; the source stays as it is) and "
                 "reports how many") from exc


def _restart(result: Result, reporter: Reporter, notes_before: int) -> None:
    """Forget what the rolled-back attempt reported."""
    del result.notes[notes_before:]
    result.read_ahead = None
    result.widened = []
    result.verified.clear()
    reporter.phases.clear()


IN_MEMORY_ROWS = 5_000_000  # tables up to this size are read back at once, while PostgreSQL builds indexes


def _verify_and_rebuild(conn, catalog, prepared, all_tables, loads, kept, rebuild, columns_of, result,
                        row_order: dict[str, tuple[str, ...]]) -> None:
    """Read every copied table back and compare with the source checksum, while PostgreSQL re-creates
    the keys, indexes and foreign keys (the rows are transferred first, then parsed and hashed here
    during the index builds: both cores busy). Raises _Mismatch for tables to copy again carefully."""
    fetched: list[Fetched] = []
    later: list[str] = []
    for t in all_tables:
        if t not in loads and not kept.get(t, (0, 0))[0]:
            continue
        if prepared.tables[t].rows + kept.get(t, (0, 0))[0] <= IN_MEMORY_ROWS:
            fetched.append(Fetched(conn, catalog.tables[t], columns_of(t)))
        else:
            later.append(t)
    failure: list[BaseException] = []

    def rebuild_all() -> None:
        try:
            cur = conn.cursor()
            recreate(cur, rebuild, row_order)
            result.sequences = reset_sequences(cur, catalog, all_tables)
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
        sums[t] = table_checksum(conn, catalog.tables[t], columns_of(t))
    verification = Verification()
    cur = conn.cursor()
    for t in all_tables:
        kept_rows, kept_sum = kept.get(t, (0, 0))
        load = loads.get(t)
        exp_rows = (prepared.tables[t].rows if load else 0) + kept_rows
        exp_sum = ((load.checksum if load else 0) + kept_sum) & MASK64
        if t in sums:
            n, s = sums[t]
        else:
            n, s = cur.execute(f"SELECT count(*) FROM {qident(t)}").fetchone()[0], 0
        verification.checks.append(TableCheck(t, exp_rows, n, exp_sum, s))
    result.verified = {c.table: c.ok for c in verification.checks}
    bad = [c for c in verification.checks if not c.ok]
    if bad:
        details = [f"{c.table}: source {c.expected_rows} rows, target {c.target_rows}" if c.expected_rows != c.target_rows
                   else f"{c.table}: content checksum differs" for c in bad]
        raise _Mismatch([c.table for c in bad if c.table in loads], details)
    result.notes.append(f"verified {len(verification.checks)} tables (row counts and content checksums) before commit")


def _dry_run(conn, catalog, created, prepared, all_tables, opts, target, result, reporter, started) -> Result:
    existing_counts: dict[str, int] = {}
    if not created:
        existing = inspect(conn, all_tables)
        existing_counts = existing.counts
        if opts.mode == "merge":
            refuse_user_data(existing, target.masked)
            if existing.seed:
                result.notes.append("target seed rows kept unless the source has the same key: " +
                                    ", ".join(f"{t} ({n})" for t, n in sorted(existing.seed.items())))
        elif existing.counts:
            result.notes.append("--mode replace would empty: " +
                                ", ".join(f"{t} ({n})" for t, n in sorted(existing.counts.items())))
    if not opts.replace_nul and (holding := nul.scan(prepared.path)):  # the real run would be refused: say so now
        raise MigrationError("PostgreSQL would refuse text holding NUL characters (SQLite keeps them, PostgreSQL's "
                             f"text cannot): {nul.describe(holding)}", hint="--replace-nul replaces each with U+FFFD; "
                             "nothing was written")
    if not opts.drop_orphans:
        _explain_orphans(prepared, None)  # raises, as the real run's foreign keys would
    with_rows = [t for t in all_tables if prepared.tables[t].rows > 0]
    widening = _widening(catalog, prepared, with_rows, strings=True) if not created else None
    if widening is not None:
        result.notes.append("would be " + widening.describe())
    if not created:
        owned = all(catalog.tables[t].owned for t in all_tables)
        if not owned:
            result.notes.append("the target role does not own every MLflow table: indexes would stay in place "
                                "during the copy (slower)")
    conn.rollback()
    result.existing_counts = existing_counts
    result.tables = [TableLoad(t, prepared.tables[t].rows) for t in all_tables if prepared.tables[t].rows > 0]
    result.notes.append(f"dry run: {sum(t.source_rows for t in result.tables):,} rows in {len(result.tables)} "
                        f"tables would be copied into {target.masked} (mode {opts.mode}); nothing was written")
    result.seconds = time.perf_counter() - started
    result.phases = reporter.phases
    return result


class _Mismatch(Exception):
    def __init__(self, tables: list[str], details: list[str]):
        super().__init__("; ".join(details))
        self.tables = tables
        self.details = details


def _load(conn, catalog, prepared, all_tables, with_rows, opts, target, pool, result, reporter,
          careful: set[str], speculation: _Speculation | None, widen_strings: bool = False) -> None:
    cur = conn.cursor()
    cur.execute(f"SET LOCAL lock_timeout = '{int(opts.lock_timeout * 1000)}ms'")
    cur.execute("SET LOCAL statement_timeout = 0")
    cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
    owned = [t for t in all_tables if catalog.tables[t].owned]
    if owned:
        try:
            cur.execute(f"LOCK TABLE {', '.join(qident(t) for t in owned)} IN ACCESS EXCLUSIVE MODE")
        except psycopg.errors.LockNotAvailable as exc:
            raise MigrationError(f"could not lock the target's MLflow tables within {opts.lock_timeout:.0f} s: "
                                 "is an MLflow server using the target? stop it for the migration") from exc

    widening = _widening(catalog, prepared, with_rows, widen_strings)
    if widening is not None:
        with reporter.phase("widen columns"):
            widen(cur, catalog, widening)
            catalog = read_catalog(conn)
        result.widened = [f"{t}.{c}" for t, c, _type in widening.columns]
        result.notes.append(widening.describe())

    with reporter.phase("target existing rows"):
        existing = inspect(conn, all_tables)
        kept: dict[str, tuple[int, int]] = {}
        if opts.mode == "merge":
            refuse_user_data(existing, target.masked)
            src = connect_readonly(prepared.path)
            try:
                deleted = resolve_seed_conflicts(conn, catalog, existing, src, set(all_tables))
            finally:
                src.close()
            for t, n in deleted.items():
                result.notes.append(f"merge: {n} seed row(s) of {t} replaced by the source's")
            for t in existing.seed:
                table = catalog.tables[t]
                cols = [c.name for c in table.copy_columns if c.name in prepared.tables[t].columns]
                kept[t] = table_checksum(conn, table, cols)
                if kept[t][0]:
                    result.notes.append(f"merge: kept {kept[t][0]} row(s) of {t} that the target already had")
        elif existing.counts:
            cur.execute(f"TRUNCATE {', '.join(qident(t) for t in all_tables)}")  # all at once: FKs allow it
            result.notes.append("replace: emptied " + ", ".join(f"{t} ({n})" for t, n in sorted(existing.counts.items())))
        result.existing_counts = existing.counts

    if not all(catalog.tables[t].owned for t in all_tables):
        result.notes.append("the target role does not own every MLflow table: indexes were kept during the copy")
    src = connect_readonly(prepared.path)
    try:
        rebuild, specs, order = _plan(prepared, catalog, all_tables, with_rows, opts, src)
        loads = {t: TableLoad(t, prepared.tables[t].rows) for t in order}
        reuse: set[str] = set()
        if speculation is None:
            stream = _new_stream(pool)
        else:
            stream = speculation.stream
            stream.stop_prefetch()
            reuse = {t for t in order if speculation.specs.get(t) == specs[t]}
            stream.abandon(task.task_id for t, ts in speculation.tasks.items() if t not in reuse for task in ts)
            again = [t for t in order if t not in reuse]
            result.read_ahead = {"reused": [t for t in order if t in reuse], "read_again": again}
            result.notes.append(f"{len(reuse)} of {len(order)} tables were read from the source while MLflow created "
                                "the schema" + (f"; read again (other column types or keys than predicted): "
                                                f"{', '.join(again)}" if again else ""))
        tasks = {t: speculation.tasks[t] if t in reuse else _tasks(src, prepared, specs[t], opts, t in careful)
                 for t in order}
    finally:
        src.close()
    stream.reorder([task for t in order for task in tasks[t]])

    def columns_of(t: str) -> list[str]:
        return [c.name for c in catalog.tables[t].copy_columns if c.name in prepared.tables[t].columns]

    def careful_tasks(name: str) -> list[Task]:
        src2 = connect_readonly(prepared.path)
        try:
            return _tasks(src2, prepared, specs[name], opts, careful=True)
        finally:
            src2.close()

    with reporter.phase("drop keys and indexes"):
        drop(cur, rebuild)
    with reporter.phase("copy and verify each table"):
        reporter.copy_begin(sum(load.source_rows for load in loads.values()))
        try:
            try:
                copy_tables(conn, stream, order, tasks, loads, reporter, verify=None, careful_tasks=careful_tasks)
            except StringTooLong:
                stream.drain()  # the readers' pending output must not reach the next attempt
                raise
            except ValueRefused as exc:
                where = nul.find(prepared.path, exc.table, columns_of(exc.table)) if exc.nul else []
                if where:
                    raise ValueRefused(exc.table, exc.reason, exc.context, ": " + "; ".join(where)) from exc
                raise
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.errors.ForeignKeyViolation):
                    _explain_orphans(prepared, exc)  # raises when the source has rows without their parent
                diag = exc.diag
                where = f" ({diag.context.strip()})" if diag.context else ""
                raise MigrationError(f"PostgreSQL refused the data: {diag.message_primary or exc}{where}; "
                                     "nothing was committed") from exc
        finally:
            reporter.copy_end()
    with reporter.phase("verify + re-create keys, indexes, foreign keys, sequences"):
        try:
            _verify_and_rebuild(conn, catalog, prepared, all_tables, loads, kept, rebuild, columns_of, result,
                                {t: spec.order_by for t, spec in specs.items()})
        except ForeignKeyBroken as exc:
            _explain_orphans(prepared, exc)
            raise
    with reporter.phase("commit"):
        conn.commit()
    result.tables = [loads[t] for t in order]
    checked = [t.name for t in result.tables if t.counters.get("checked")]
    if checked:
        result.notes.append("copied again with per-value checks (a value of another type than its column's): "
                            + ", ".join(checked))
    rewritten = sum(t.counters.get("rewritten", 0) for t in result.tables)
    if opts.rewrites:
        result.notes.append(f"artifact locations rewritten: {rewritten}")
    converted = {t.name: t.counters["converted"] for t in result.tables if t.counters.get("converted")}
    if converted:
        result.notes.append("values converted to the target column type: " +
                            ", ".join(f"{t} ({n})" for t, n in converted.items()))
    seq = ", ".join(f"{s.split('.')[-1]}={v}" for s, v in result.sequences)
    result.notes.append(f"sequences set to max+1: {seq}")
