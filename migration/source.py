"""The source side: a private copy of the SQLite database, brought to the installed MLflow's head.

The user's file is opened read-only and copied with SQLite's online backup API (consistent even while
another process writes to it, WAL included). Everything afterwards, the Alembic upgrade included,
happens on the copy.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from migration import nul, orphans
from migration.catalog import qident
from migration.errors import MigrationError, RefusedError
from migration.revisions import mlflow_version, revision_graph
from migration.sqlite import connect_readonly, table_names

log = logging.getLogger(__name__)


@dataclass
class SourceTable:
    name: str
    columns: list[str]
    rows: int
    has_rowid: bool
    min_rowid: int | None = None
    max_rowid: int | None = None


@dataclass
class PreparedSource:
    original: Path
    path: Path  # the working copy
    revision_before: str | None
    revision: str
    upgraded: bool
    tables: dict[str, SourceTable] = field(default_factory=dict)
    dropped_orphans: dict[str, int] = field(default_factory=dict)  # --drop-orphans: rows deleted from the copy
    replaced_nul: dict[str, int] = field(default_factory=dict)  # --replace-nul: rows changed per table.column
    _tmpdir: tempfile.TemporaryDirectory | None = None

    def cleanup(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None


def _copy(original: Path, workdir: Path) -> Path:
    """A consistent private copy. Rollback-journal databases: a plain file copy while holding a read
    transaction (SQLite's SHARED lock keeps writers from committing meanwhile). WAL databases, or any
    doubt: SQLite's online backup API."""
    copy_path = workdir / "source-copy.db"
    wal = Path(str(original) + "-wal")
    if not wal.exists():
        try:
            src = connect_readonly(original)
            try:
                src.execute("BEGIN")
                mode = src.execute("PRAGMA journal_mode").fetchone()[0]
                src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # takes the SHARED lock
                if mode.lower() != "wal" and not wal.exists():
                    shutil.copyfile(original, copy_path)
                    check = sqlite3.connect(copy_path)
                    try:
                        check.execute("SELECT count(*) FROM sqlite_master").fetchone()
                    finally:
                        check.close()
                    return copy_path
            finally:
                src.rollback()
                src.close()
        except (sqlite3.Error, OSError):
            copy_path.unlink(missing_ok=True)
    try:
        src = connect_readonly(original)
        dst = sqlite3.connect(copy_path)
        with dst:
            src.backup(dst, pages=-1)
        src.close()
        dst.close()
    except sqlite3.Error as exc:
        raise MigrationError(f"could not read source database {str(original)!r}: {exc}") from exc
    return copy_path


def _revision(conn: sqlite3.Connection) -> str | None:
    try:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return None
    if len(rows) > 1:
        raise RefusedError(f"source has {len(rows)} Alembic revisions ({rows}); expected one")
    return rows[0][0] if rows else None


DEFAULT_WORKSPACE = "default"


def workspaces_in_use(path: Path) -> list[str]:
    """Workspaces other than `default` that the source defines or that its rows belong to.

    MLflow 3 with MLFLOW_ENABLE_WORKSPACES=true scopes experiments, registered models and more by a
    `workspace` column. Started without that setting, MLflow refuses a database holding any of them
    outside `default`: the probe, and the user's server, must then run with workspaces enabled."""
    conn = connect_readonly(path)
    try:
        found: set[str] = set()
        for name in table_names(conn):
            qname = qident(name)
            column = "name" if name == "workspaces" else "workspace"
            if name == "workspaces" or any(r[1] == "workspace" for r in conn.execute(f"PRAGMA table_info({qname})")):
                found.update(r[0] for r in conn.execute(
                    f"SELECT DISTINCT {column} FROM {qname} WHERE {column} IS NOT NULL AND {column} <> ?",
                    (DEFAULT_WORKSPACE,)))
        return sorted(map(str, found))
    finally:
        conn.close()


def _upgrade(copy_path: Path) -> None:
    """Run MLflow's own Alembic migrations on the copy (imports MLflow: only when needed)."""
    from migration import lean

    lean.import_modules("mlflow.store.db.utils")
    import sqlalchemy
    from mlflow.store.db.utils import _upgrade_db

    engine = sqlalchemy.create_engine(f"sqlite:///{copy_path}")
    try:
        _upgrade_db(engine)
    finally:
        engine.dispose()


def inventory(path: Path) -> dict[str, SourceTable]:
    conn = connect_readonly(path)
    try:
        tables: dict[str, SourceTable] = {}
        for name in table_names(conn):
            if name == "alembic_version":
                continue
            qname = qident(name)
            # hidden: 0 = ordinary column, 2/3 = generated (computed by the database, never copied)
            columns = [r[1] for r in conn.execute(f"PRAGMA table_xinfo({qname})") if r[6] == 0]
            try:
                lo, hi, count = conn.execute(f"SELECT min(rowid), max(rowid), count(*) FROM {qname}").fetchone()
                has_rowid = True
            except sqlite3.OperationalError:  # WITHOUT ROWID table
                (count,) = conn.execute(f"SELECT count(*) FROM {qname}").fetchone()
                lo = hi = None
                has_rowid = False
            tables[name] = SourceTable(name, columns, count, has_rowid, lo, hi)
        return tables
    finally:
        conn.close()


WORKDIR_PREFIX = "mlflow-migration-"
_WORKDIR = re.compile(re.escape(WORKDIR_PREFIX) + r"(\d+)-")


def remove_stale_copies(parent: Path | None = None) -> list[Path]:
    """Delete source copies left by migrations that were killed outright (their cleanup never ran; a
    copy is as big as the source). A copy's directory names the process that made it; only those of
    processes that no longer exist are removed."""
    removed = []
    for entry in Path(parent or tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        match = _WORKDIR.match(entry.name)
        if not match or not entry.is_dir():
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # that process still runs (or belongs to someone else): not ours to judge
        except ProcessLookupError:
            pass
        except OSError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        log.info("removed %s, left by a migration that was killed", entry)
        removed.append(entry)
    return removed


def prepare_source(original: Path, *, upgrade: bool = True, drop_orphans: bool = False,
                   replace_nul: bool = False) -> PreparedSource:
    """Copy the source, check its revision, upgrade the copy to head. Never touches `original`."""
    graph = revision_graph()
    remove_stale_copies()
    tmp = tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
    try:
        copy_path = _copy(original, Path(tmp.name))
        conn = sqlite3.connect(copy_path)
        try:
            names = set(table_names(conn))
            revision = _revision(conn)
        finally:
            conn.close()
        if "experiments" not in names:
            raise RefusedError(f"source {str(original)!r} is not an MLflow tracking database (no experiments table)")
        if revision is None:
            raise RefusedError(
                f"source {str(original)!r} has no Alembic revision (alembic_version is missing or empty); "
                "it was not created by a supported MLflow version",
                hint="open it once with `mlflow db upgrade sqlite:///PATH` using the MLflow that created it",
            )
        if revision not in graph.revisions:
            raise RefusedError(
                f"source schema revision {revision} is unknown to the installed MLflow {mlflow_version()} "
                f"(head {graph.head}): the source was written by a newer MLflow",
                hint="run the migration with an MLflow at least as new as the one that wrote the source",
            )
        upgraded = False
        if revision != graph.head:
            if not upgrade:
                raise RefusedError(f"source is at revision {revision}, not head {graph.head}")
            log.info("upgrading the source copy from %s to %s", revision, graph.head)
            try:
                _upgrade(copy_path)
            except Exception as exc:  # noqa: BLE001 - any migration failure is reported as such
                raise MigrationError(f"upgrading the source copy from {revision} to {graph.head} "
                                     f"failed: {exc}") from exc
            conn = sqlite3.connect(copy_path)
            try:
                after = _revision(conn)
            finally:
                conn.close()
            if after != graph.head:
                raise MigrationError(f"source copy upgrade ended at revision {after}, expected {graph.head}")
            upgraded = True
        prepared = PreparedSource(original, copy_path, revision, graph.head, upgraded, _tmpdir=tmp)
        if replace_nul:  # first: a key and the foreign keys naming it change alike
            prepared.replaced_nul = nul.replace(copy_path)
        if drop_orphans:
            prepared.dropped_orphans = orphans.drop(copy_path)
        prepared.tables = inventory(copy_path)
        return prepared
    except BaseException:
        tmp.cleanup()
        raise
