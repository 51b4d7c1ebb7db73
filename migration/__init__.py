"""Migrate an MLflow SQLite database into PostgreSQL: `python -m migration SOURCE TARGET [options]`.

Modules, one job each:
  cli       argument parsing, exit codes, masked error messages
  core      the run from start to end (the only place that sequences the steps)
  uris      SOURCE/TARGET parsing, password masking
  revisions the Alembic revisions the installed MLflow knows (parsed, not imported)
  source    the private copy of the source, upgraded to MLflow's head
  schema    target schema: created by MLflow inside the transaction, or checked
  catalog   target tables, typed columns, keys, indexes, sequences
  existing  rows a target already holds: refuse, merge or replace
  widen     columns the source's values exceed (FileStore experiment ids, long names), widened
  orphans   rows without their parent row: named, or left out with --drop-orphans
  nul       text holding NUL characters: named, or replaced with --replace-nul
  convert   SQLite values -> target column types; artifact-root rewriting
  workers   reader processes: SQLite -> converted rows -> checksum + binary/text COPY data
  load      drop/re-create keys and indexes, COPY, sequences
  verify    read-back checksums inside the transaction
  predict   the target's column types and keys, predicted from the source copy (read-ahead)
  lifetime  reader and probe processes end with the migration, even on kill -9
  probe     MLflow itself on the target after commit
  lean      MLflow imported without its data-science stack (schema, upgrade, probe)
  collector Python's garbage collector paused while a migration runs
  report    progress and the summary table
"""

import os

__version__ = "1.0.0"

__all__ = ["__version__", "default_jobs"]


def default_jobs() -> int:
    """Source reader processes: two at most (the main process and PostgreSQL need the other cycles)."""
    return max(1, min(2, os.cpu_count() or 1))
