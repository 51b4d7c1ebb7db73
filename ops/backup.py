"""`scripts/backup DIR`: a consistent copy of a stack's data into an empty directory.

1. the tracking database with `pg_dump -Fc` (one snapshot: consistent while MLflow keeps writing),
   then the auth database when there is one;
2. the objects under the artifacts destination, *after* the dump: every artifact a dumped run refers
   to was written before the dump began, so it is in the copy (unless a gc removed it meanwhile);
   objects newer than the dump are harmless extras;
3. the manifest, last: the server image's MLflow version, the dump's schema revision and rows per
   table (read back from the dump), per-object sha256, headline counts.

The stack keeps serving throughout. Files are created 0600 in a 0700 directory: a backup holds the
auth app's password hashes and MLflow's encrypted secrets.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from ops import OpsError, RefusedError, objects
from ops.access import hang_up_and_terminate_as_interrupt, StackAccess, StackLayout, run, script_source
from ops.archive import (
    DUMP_FILES, MANIFEST, OBJECTS_FILE, REVISION_TABLES, DatabaseBackup, Manifest, ObjectsBackup, create_file, database_exists,
    dump_contents, file_sha256, headline_counts, image_facts, read_objects_tar,
)

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"backup: {message}", file=sys.stderr, flush=True)


def prepare_directory(directory: Path, *, create: bool = True) -> None:
    """Refuse anything but a missing or empty directory (never mix two backups); create it 0700."""
    if directory.exists():
        if not directory.is_dir():
            raise RefusedError(f"{directory} exists and is not a directory")
        if any(directory.iterdir()):
            raise RefusedError(f"{directory} is not empty: a backup goes into a new or empty directory")
    if create:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def backup(access: StackAccess, directory: Path, *, say: Say = _stderr) -> Manifest:
    """Back the stack up into `directory` (missing or empty). Returns the manifest written last."""
    directory = Path(directory)
    prepare_directory(directory)
    created: list[Path] = []
    try:
        return _backup(access, directory, created, say)
    except BaseException:
        for path in created:  # an incomplete backup must not look like one; the directory stays (it was empty)
            path.unlink(missing_ok=True)
        raise


def _backup(access: StackAccess, directory: Path, created: list[Path], say: Say) -> Manifest:
    started = time.monotonic()
    layout = StackLayout.read(access)
    facts = image_facts(access)
    databases: dict[str, DatabaseBackup] = {}
    wanted = {"tracking": layout.database}
    if database_exists(access, layout.auth_database):
        wanted["auth"] = layout.auth_database
    for role, name in wanted.items():
        path = directory / DUMP_FILES[role]
        say(f"dumping database {name} (pg_dump, custom format)")
        created.append(path)
        with create_file(path) as out:
            run(access.postgres_command(["pg_dump", "--format=custom", "--dbname", name]), f"pg_dump of {name}",
                stdout=out)
        tables, revision = dump_contents(access, path, f"the dump of {name}", REVISION_TABLES[role])
        if role == "tracking" and (revision is None or "experiments" not in tables):
            raise OpsError(f"database {name} holds no MLflow schema (no alembic_version row or experiments table)")
        databases[role] = DatabaseBackup(file=path.name, name=name, schema_revision=revision, tables=tables,
                                         bytes=path.stat().st_size, sha256=file_sha256(path),
                                         app=layout.auth_app if role == "auth" else None)

    path = directory / OBJECTS_FILE
    say(f"copying the objects under {layout.artifacts_destination}")
    created.append(path)
    with create_file(path) as out:
        run(access.python_command(["-c", script_source(objects.__file__), "export", layout.artifacts_destination],
                                  layout.s3_env(access)),
            f"copying the objects under {layout.artifacts_destination}", stdout=out)
    entries, sha256, size = read_objects_tar(path)

    tracking = databases["tracking"]
    assert tracking.schema_revision is not None
    manifest = Manifest(
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        source=access.description,
        mlflow_version=facts.mlflow_version,
        schema_revision=tracking.schema_revision,
        artifacts_destination=layout.artifacts_destination,
        counts=headline_counts(tracking.tables, entries),
        databases=databases,
        objects=ObjectsBackup(file=path.name, bytes=size, sha256=sha256, entries=entries),
    )
    manifest_path = directory / MANIFEST
    created.append(manifest_path)
    with create_file(manifest_path) as out:
        out.write(manifest.to_json().encode())
    counts = manifest.counts
    say(f"done in {time.monotonic() - started:.1f}s: {directory} (MLflow {facts.mlflow_version}, schema "
        f"{manifest.schema_revision}; {counts['experiments']} experiments, {counts['runs']} runs, "
        f"{counts['metrics']} metric values, {counts['registered_models']} models, {counts['model_versions']} "
        f"model versions, {counts['objects']} objects, {counts['bytes']} bytes of artifacts)")
    return manifest


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/backup",
        description="Back up the local stack: a pg_dump of its databases, a copy of its bucket's objects "
                    "and a manifest, into DIR (new or empty). The stack keeps serving.")
    parser.add_argument("directory", metavar="DIR", type=Path)
    parser.add_argument("--prefix", default="mlflow-local",
                        help="the stack's Docker name prefix, <instance>-<stack> (default: mlflow-local)")
    args = parser.parse_args(argv)
    hang_up_and_terminate_as_interrupt()
    try:
        from ops.local_stack import LocalAccess

        prepare_directory(args.directory, create=False)  # refuse before looking for Docker
        backup(LocalAccess.find(args.prefix), args.directory)
        return 0
    except OpsError as error:
        _stderr(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        _stderr("interrupted; the incomplete backup's files were removed")
        return 130


if __name__ == "__main__":
    sys.exit(main())
