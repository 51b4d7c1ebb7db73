"""`scripts/backup DIR`: a consistent copy of a stack's data into an empty directory.

Under the stack's maintenance lock (ops.lock: a restore or gc running on the stack refuses this
backup, naming itself, and waits for nothing):

1. the auth database, when there is one, *then* the tracking database, each with `pg_dump -Fc` (one
   snapshot each: consistent while MLflow keeps writing). In this order every permission row in the
   auth dump names an experiment or model that already existed when the tracking snapshot was taken,
   so it is in the tracking dump. The other order loses that: an experiment created between the two
   dumps would have its MANAGE row in the auth dump and no row in the tracking one, and after a
   restore the sequence hands its id out again to someone else's experiment (issue 28). In this
   order the worst case is the reverse (an object created between the dumps without its
   permission row: only its creator loses a grant, nobody gains one);
2. the objects under the artifacts destination, *after* the dump: every artifact a dumped run refers
   to was written before the dump began, so it is in the copy, unless it was deleted meanwhile (a gc,
   a user deleting an artifact): such objects are recorded as vanished, not an error. Objects last
   modified after the tracking dump began are recorded as extras (most likely written for runs the
   dump does not hold); they are in the copy and harmless;
3. artifact locations the dump refers to outside the destination (an experiment created with its own
   artifact_location, runs under an old root, a model version's source elsewhere): listed in the
   manifest and the output, and their objects copied into external-objects.tar where they are
   s3:// locations the server's key can read; the others are reported as not backed up;
4. the manifest, last: the server image's MLflow version, the dump's schema revision and rows per
   table (read back from the dump), per-object sha256, headline counts, and what 2 and 3 recorded.

The stack keeps serving throughout. Files are created 0600 in a 0700 directory: a backup holds the
auth app's password hashes and MLflow's encrypted secrets.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from ops import OpsError, RefusedError, objects
from ops.access import Command, hang_up_and_terminate_as_interrupt, StackAccess, StackLayout, psql, run, run_process, \
    script_source
from ops.archive import (
    DUMP_FILES, EXTERNAL_OBJECTS_FILE, MANIFEST, OBJECTS_FILE, REVISION_TABLES, DatabaseBackup, Manifest, ObjectEntry,
    ObjectsBackup, OutsideLocation, create_file, database_exists, dump_contents, dump_rows, file_sha256,
    headline_counts, image_facts, read_objects_tar,
)
from ops.lock import HeldLock, LockLost, maintenance_lock
from ops.restore import refuse_unswapped, unswapped

Say = Callable[[str], None]

DUMP_ORDER = ("auth", "tracking")
"""Auth first: see the module docstring (a permission row never outlives its object in a backup)."""
LOCATION_COLUMNS = {
    "experiments": ("experiment_id", "artifact_location"),
    "runs": ("run_uuid", "artifact_uri"),
    "logged_models": ("model_id", "artifact_location"),
    "model_versions": ("name", "version", "source"),
}
"""Where the tracking schema keeps artifact locations: table -> (id columns..., location column)."""
LOCATION_KINDS = {"experiments": "experiment", "runs": "run", "logged_models": "logged_model",
                  "model_versions": "model_version"}
RESOLVED_SCHEMES = ("mlflow-artifacts:", "runs:/", "models:/")
"""Served under the destination by the server itself, or resolved through a run or logged model."""
EXAMPLES = 3
_CLOCK_SQL = """SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');\n"""


def _stderr(message: str) -> None:
    print(f"backup: {message}", file=sys.stderr, flush=True)


BACKUP_FILES = frozenset({*DUMP_FILES.values(), OBJECTS_FILE, EXTERNAL_OBJECTS_FILE, MANIFEST})


def incomplete_backup(directory: Path) -> list[Path]:
    """The files of a backup that was killed before its manifest (written last): only this tool's own
    file names, no manifest. A rerun removes them instead of refusing the directory."""
    entries = list(directory.iterdir())
    if any(entry.name == MANIFEST or entry.name not in BACKUP_FILES or not entry.is_file() for entry in entries):
        return []
    return entries


def prepare_directory(directory: Path, *, create: bool = True, say: Optional[Say] = None) -> None:
    """Refuse anything but a missing or empty directory (never mix two backups) or one holding an
    incomplete backup (removed when `create`); create it 0700."""
    if directory.exists():
        if not directory.is_dir():
            raise RefusedError(f"{directory} exists and is not a directory")
        leftovers = incomplete_backup(directory)
        if any(directory.iterdir()) and not leftovers:
            raise RefusedError(f"{directory} is not empty: a backup goes into a new or empty directory")
        if create:
            for path in leftovers:
                path.unlink()
            if leftovers and say is not None:
                say(f"removed an incomplete backup's files from {directory} (no {MANIFEST}: an earlier backup was "
                    f"stopped): {', '.join(sorted(path.name for path in leftovers))}")
    if create:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def backup(access: StackAccess, directory: Path, *, say: Say = _stderr) -> Manifest:
    """Back the stack up into `directory` (missing or empty). Returns the manifest written last."""
    directory = Path(directory)
    prepare_directory(directory, create=False)
    with maintenance_lock(access, "backup") as lock:  # an incomplete backup's files go only under the lock
        # a --replace killed before its swap left the backup's bytes beside the stack's databases (issue 28)
        refuse_unswapped(access, StackLayout.read(access))
        prepare_directory(directory, say=say)
        created: list[Path] = []
        try:
            return _backup(access, directory, created, say, lock)
        except BaseException as error:
            for path in created:  # an incomplete backup must not look like one; the directory stays (it was empty)
                path.unlink(missing_ok=True)
            if isinstance(error, LockLost):
                raise OpsError(f"{lock.lost_message()}; no backup was written (its files are removed)") from error
            raise


def _dump(access: StackAccess, layout: StackLayout, role: str, name: str, path: Path, say: Say) -> DatabaseBackup:
    say(f"dumping database {name} (pg_dump, custom format)")
    with create_file(path) as out:
        run(access.postgres_command(["pg_dump", "--format=custom", "--dbname", name]), f"pg_dump of {name}",
            stdout=out)
    tables, revision = dump_contents(access, path, f"the dump of {name}", REVISION_TABLES[role])
    if role == "tracking" and (revision is None or "experiments" not in tables):
        raise OpsError(f"database {name} holds no MLflow schema (no alembic_version row or experiments table)")
    return DatabaseBackup(file=path.name, name=name, schema_revision=revision, tables=tables,
                          bytes=path.stat().st_size, sha256=file_sha256(path),
                          app=layout.auth_app if role == "auth" else None)


def _database_clock(access: StackAccess) -> str:
    """Now by the database server's clock (the one the dump's snapshot follows), ISO 8601 UTC."""
    return psql(access, "postgres", _CLOCK_SQL, what="reading the database server's clock")[0][0]


def _export(command: Command, what: str, path: Path, stdin: Optional[bytes] = None) -> tuple[ObjectsBackup, dict]:
    """Run an ops.objects export into `path`: (what the tar holds, checked, and the export's report)."""
    with create_file(path) as out, tempfile.TemporaryFile() as stderr:
        result = run_process(command.argv, command.env, input=stdin,
                             stdin=subprocess.DEVNULL if stdin is None else None, stdout=out, stderr=stderr)
        stderr.seek(0)
        lines = stderr.read().decode(errors="replace").splitlines()
    reports = [line[len(objects.REPORT_MARKER):] for line in lines if line.startswith(objects.REPORT_MARKER)]
    if result.returncode != 0 or not reports:
        _refuse_a_full_disk(path)
        detail = [line for line in lines if line.strip() and not line.startswith(objects.REPORT_MARKER)]
        raise OpsError(f"{what} failed: {detail[-1] if detail else f'exit status {result.returncode}'}")
    entries, sha256, size = read_objects_tar(path)
    return ObjectsBackup(file=path.name, bytes=size, sha256=sha256, entries=entries), json.loads(reports[-1])


FULL_DISK_BYTES = 1 << 20
"""Less free space than this after a failed export: the disk filled (the exporting process, at the far
end of a pipe, sees a broken pipe rather than ENOSPC)."""


def _refuse_a_full_disk(path: Path) -> None:
    usage = shutil.disk_usage(path.parent)
    if usage.free < FULL_DISK_BYTES:
        raise OSError(errno.ENOSPC, f"No space left on device: {usage.free} bytes free on the disk holding "
                                    f"{path.parent} after writing {path.stat().st_size} bytes of {path.name}",
                      str(path))


def _newer_than(entries: list[ObjectEntry], started_at: str) -> list[str]:
    """Objects that may have been written after `started_at`. Listings give LastModified in whole
    seconds (S3, MinIO, Blob), so an object written in the dump's own second counts as newer: listing
    one too many is harmless, missing one would hide an object the dump does not know."""
    start = datetime.datetime.fromisoformat(started_at.replace("Z", "+00:00")).replace(microsecond=0)
    return [entry.key for entry in entries
            if entry.last_modified and _utc(entry.last_modified) >= start]


def _utc(timestamp: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def _is_outside(location: Optional[str], destination: str) -> bool:
    if not location or location.startswith(RESOLVED_SCHEMES):
        return False
    root = destination.rstrip("/")
    return location.rstrip("/") != root and not location.startswith(root + "/")


def outside_locations(access: StackAccess, dump: Path, destination: str) -> list[tuple[str, str, str]]:
    """(kind, id, location) of every artifact location in the tracking dump outside the destination."""
    found = []
    for table, rows in dump_rows(access, dump, "the tracking dump's artifact locations", LOCATION_COLUMNS).items():
        for row in rows:
            *ids, location = row
            if _is_outside(location, destination):
                found.append((LOCATION_KINDS[table], "/".join(str(part) for part in ids), location))
    return found


def _covering(locations: Sequence[str]) -> list[str]:
    """The s3:// locations to copy: each once, none under another one (a run under its experiment's root)."""
    chosen: list[str] = []
    for location in sorted({location.rstrip("/") for location in locations}):
        if not any(location.startswith(parent + "/") for parent in chosen):
            chosen.append(location)
    return chosen


def _outside(access: StackAccess, layout: StackLayout, directory: Path, created: list[Path],
             found: list[tuple[str, str, str]], skipped: list[dict[str, str]],
             say: Say) -> tuple[list[OutsideLocation], Optional[ObjectsBackup]]:
    """Copy what the server's key can read of the locations outside the destination; say what was not
    (objects the export skipped are added to `skipped`)."""
    if not found:
        return [], None
    roots = _covering([location for _, _, location in found if location.startswith("s3://")])
    outcomes: dict[str, dict] = {}
    external = None
    if roots:
        path = directory / EXTERNAL_OBJECTS_FILE
        created.append(path)
        say(f"copying {len(roots)} artifact locations outside {layout.artifacts_destination} the server's key may read")
        command = access.python_command(["-c", script_source(objects.__file__), "export-locations", "-"],
                                        layout.s3_env(access))
        external, report = _export(command, "copying the artifact locations outside the destination", path,
                                   stdin="".join(f"{root}\n" for root in roots).encode())
        outcomes = report["locations"]
        skipped.extend(report.get("skipped", []))
    listed = [_located(kind, id_, location, roots, outcomes) for kind, id_, location in found]
    missing = [item for item in listed if not item.backed_up]
    examples = "; ".join(f"{item.kind} {item.id} at {item.location} ({item.detail})"
                         for item in (missing or listed)[:EXAMPLES])
    say(f"{len(listed)} artifact locations the dump refers to are outside {layout.artifacts_destination}: "
        f"{len(listed) - len(missing)} copied into {EXTERNAL_OBJECTS_FILE}, {len(missing)} NOT backed up "
        f"(all listed in the manifest's outside_locations), e.g. {examples}")
    return listed, external


def _located(kind: str, id_: str, location: str, roots: list[str], outcomes: dict[str, dict]) -> OutsideLocation:
    if not location.startswith("s3://"):
        return OutsideLocation(kind, id_, location, False, "not backed up: only s3:// locations can be copied")
    root = next(root for root in roots if location.rstrip("/") == root or location.startswith(root + "/"))
    outcome = outcomes.get(root, {"error": "no outcome reported"})
    if "error" in outcome:
        return OutsideLocation(kind, id_, location, False,
                               f"not backed up: the server's key cannot read it ({outcome['error']})")
    return OutsideLocation(kind, id_, location, True, f"{root}: {outcome['objects']} objects, {outcome['bytes']} bytes")


def _say_skipped(skipped: list[dict[str, str]], say: Say) -> None:
    """Objects the export could not put in the tar (ops.objects: a folder marker ending in `/`, a key
    no restore could write back) are NOT in the backup: said with their full keys, kept in the manifest."""
    if skipped:
        say(f"{len(skipped)} objects are NOT backed up (no restore could write them back as those keys; the "
            f"manifest's objects_skipped): "
            + "; ".join(f"{item['key']}: {item['why']}" for item in skipped[:EXAMPLES]))


def _backup(access: StackAccess, directory: Path, created: list[Path], say: Say, lock: HeldLock) -> Manifest:
    started = time.monotonic()
    layout = StackLayout.read(access)
    facts = image_facts(access)
    databases: dict[str, DatabaseBackup] = {}
    wanted = {"tracking": layout.database}
    if database_exists(access, layout.auth_database):
        wanted["auth"] = layout.auth_database
    dump_started_at = ""
    for role in (role for role in DUMP_ORDER if role in wanted):
        path = directory / DUMP_FILES[role]
        created.append(path)
        if role == "tracking":
            dump_started_at = _database_clock(access)
        databases[role] = _dump(access, layout, role, wanted[role], path, say)

    # A PostgreSQL restart ends the lock's session without telling this process: a restore could then
    # swap the databases and upload its objects while this backup pairs the old dumps with the new
    # objects (review 5, F1). Confirmed before the objects are read and before the manifest is written.
    lock.confirm("copying the objects")
    path = directory / OBJECTS_FILE
    say(f"copying the objects under {layout.artifacts_destination}")
    created.append(path)
    command = access.python_command(["-c", script_source(objects.__file__), "export", layout.artifacts_destination],
                                    layout.s3_env(access))
    copied, report = _export(command, f"copying the objects under {layout.artifacts_destination}", path)
    vanished, extra = list(report["vanished"]), _newer_than(copied.entries, dump_started_at)
    skipped: list[dict[str, str]] = list(report.get("skipped", []))
    if vanished:
        say(f"{len(vanished)} objects were deleted while the backup read them (not in it; the manifest's "
            f"objects_vanished), e.g. {', '.join(vanished[:EXAMPLES])}")
    if extra:
        say(f"{len(extra)} objects were written after the dump began (in the backup as extras, most likely for "
            f"runs the dump does not hold; the manifest's objects_extra), e.g. {', '.join(extra[:EXAMPLES])}")
    found = outside_locations(access, directory / DUMP_FILES["tracking"], layout.artifacts_destination)
    outside, external = _outside(access, layout, directory, created, found, skipped, say)
    _say_skipped(skipped, say)

    tracking = databases["tracking"]
    assert tracking.schema_revision is not None
    manifest = Manifest(
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        source=access.description,
        mlflow_version=facts.mlflow_version,
        schema_revision=tracking.schema_revision,
        artifacts_destination=layout.artifacts_destination,
        counts=headline_counts(tracking.tables, copied.entries),
        databases=databases,
        objects=copied,
        dump_started_at=dump_started_at,
        objects_extra=extra,
        objects_vanished=vanished,
        objects_skipped=skipped,
        outside_locations=outside,
        external_objects=external,
    )
    lock.confirm("writing the manifest")
    # A restore that lost its lock to a PostgreSQL restart may have written over the stack's objects while
    # this backup read them (review 6, F2); it leaves its quarantine (it undoes nothing without the lock).
    interrupted = unswapped(access, layout)
    if interrupted:
        raise OpsError(f"a restore --replace (quarantine {', '.join(sorted(interrupted))}) changed the stack's objects "
                       "while this backup read them, so its dumps and objects may not belong together: no backup was "
                       "written. Run the restore's --put-back (scripts/restore names it), then back up again")
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
        if (args.directory / MANIFEST).is_file():  # written last: the backup was complete (review 25)
            _stderr(f"interrupted as it finished: the backup in {args.directory} is complete")
            return 0
        _stderr("interrupted; the incomplete backup's files were removed")
        return 130
    except OSError as error:  # a full disk, a directory that cannot be written
        _stderr(f"stopped: {error}; the incomplete backup's files were removed, the stack was not changed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
