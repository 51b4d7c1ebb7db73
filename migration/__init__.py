"""Migrate an MLflow SQLite database into PostgreSQL: `python -m migration SOURCE TARGET [options]`.

Modules, one job each, in the order a run uses them (core.Migration.run sequences them):
  cli       argument parsing, exit codes, masked error messages
  core      the run: one Migration object whose methods are the phases, one Attempt per transaction
  errors    every exception, one type per meaning, and the exit codes
  uris      SOURCE/TARGET parsing, password masking
read the source
  source    the private copy of the source, upgraded to MLflow's head
  revisions the Alembic revisions the installed MLflow knows (parsed, not imported)
  sqlite    read-only SQLite connections, the tables a database holds
  nul       text holding NUL characters: named, or replaced with --replace-nul
  orphans   rows without their parent row: named, or left out with --drop-orphans
prepare the target
  schema    target schema: created by MLflow inside the transaction, or checked
  catalog   target tables, typed columns, keys, indexes, sequences
  predict   the target's column types and keys, predicted from the source copy (read-ahead)
  widen     columns the source's values exceed (FileStore experiment ids, long names), widened
  existing  rows a target already holds: refuse, merge or replace
convert and load
  workers   reader processes: SQLite -> converted rows -> checksum + binary/text COPY data
  convert   SQLite values -> target column types; artifact-root rewriting
  load      drop/re-create keys and indexes, the task stream from the readers, COPY, sequences
verify
  verify    read-back checksums inside the transaction
probe
  probe     MLflow itself on the target after commit
  lean      MLflow imported without its data-science stack (schema, upgrade, probe)
around the run
  lifetime  reader and probe processes end with the migration, even on kill -9
  collector Python's garbage collector paused while a migration runs
  report    progress and the summary table
"""

import os

__version__ = "1.0.0"

__all__ = ["__version__", "default_jobs"]


def default_jobs() -> int:
    """Source reader processes: two at most (the main process and PostgreSQL need the other cycles)."""
    return max(1, min(2, os.cpu_count() or 1))
