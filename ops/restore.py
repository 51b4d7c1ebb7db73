"""`scripts/restore DIR [--replace]`: put a backup (ops.backup) back into a stack.

Everything that can refuse does so before the stack is touched: the manifest, each file's sha256,
`pg_restore --list` of each dump, every object's sha256 in objects.tar, the dump's schema revision
against the server image's own Alembic history (a revision it does not know was written by a newer
MLflow), and the target: a stack holding anything a fresh deployment does not (a run, an experiment
besides Default, a model, an object under the artifacts destination...) is refused unless
`--replace`.

Then each database is restored into a scratch database beside it, while the server keeps serving
(`pg_restore --single-transaction` as MLflow's own role: every object owned by that role, none by
the superuser), and its rows per table must equal the manifest's. Only then is the server stopped
(downtime: the upload and the swap), the objects uploaded (each one's sha256 checked before its
upload; with --replace the objects the backup does not hold are deleted), each scratch database
takes its database's name (the old one is dropped), the schema is upgraded when the backup's is
older than the server's, and the server started again.
Why a scratch database instead of `pg_restore --clean` in place: nothing of the target is dropped
until the restored copy is complete and verified, and a target at another schema revision is
replaced whole (`--clean` drops only what the dump holds and would leave a newer schema's tables).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from ops import OpsError, RefusedError, objects
from ops.access import hang_up_and_terminate_as_interrupt, BACKEND_URI_ENV, StackAccess, StackLayout, psql, run, script_source
from ops.archive import (
    DatabaseBackup, ImageFacts, Manifest, database_exists, file_sha256, foreign_owned, image_facts,
    read_objects_tar, table_counts, user_data,
)

Say = Callable[[str], None]
_AUTH_MODES = {"basic-auth": "mlflow", "oidc-auth": "oidc"}  # --app-name -> auth.mode (components.render.AUTH_APPS)
_NAME_LIMIT = 63  # PostgreSQL identifiers


def _stderr(message: str) -> None:
    print(f"restore: {message}", file=sys.stderr, flush=True)


def _beside(name: str, tag: str) -> str:
    """A database name beside `name` for the restore's scratch copy or the replaced original."""
    return name[:_NAME_LIMIT - len(tag)] + tag


# --- checks (nothing is changed) ---------------------------------------------------------------------


def check_backup(access: StackAccess, directory: Path, manifest: Manifest) -> None:
    """Every file whole and readable, before anything is stopped or dropped."""
    for backup in manifest.databases.values():
        path = directory / backup.file
        if not path.is_file():
            raise RefusedError(f"{path} is missing from the backup")
        if file_sha256(path) != backup.sha256:
            raise RefusedError(f"{path} does not match the manifest's sha256: the dump is damaged")
        with open(path, "rb") as dump:
            try:
                run(access.postgres_command(["pg_restore", "--list"]), f"pg_restore --list of {path.name}", stdin=dump)
            except OpsError as error:
                raise RefusedError(f"{path} is not a readable dump ({error})") from None
    path = directory / manifest.objects.file
    if not path.is_file():
        raise RefusedError(f"{path} is missing from the backup")
    entries, sha256, _ = read_objects_tar(path)
    if sha256 != manifest.objects.sha256 or entries != manifest.objects.entries:
        raise RefusedError(f"{path} does not match the manifest's objects (sha256 or keys differ): the file is damaged")


def check_schema(access: StackAccess, manifest: Manifest, facts: ImageFacts, layout: StackLayout) -> None:
    """The server must know each dump's schema revision: one it does not know was written by a newer MLflow."""
    tracking = manifest.databases["tracking"]
    if tracking.schema_revision != manifest.schema_revision:
        raise RefusedError(f"the manifest's schema revision {manifest.schema_revision} differs from its database's "
                           f"{tracking.schema_revision}: the manifest was edited or mixed up")
    if not facts.knows("tracking", tracking.schema_revision):
        raise RefusedError(
            f"the backup's schema revision {tracking.schema_revision} (written by MLflow {manifest.mlflow_version}) "
            f"is not in the history of MLflow {facts.mlflow_version}, which {access.description} runs: it was "
            f"written by a newer MLflow. Set mlflow:mlflowVersion to {manifest.mlflow_version} (or newer), "
            f"pulumi up, then restore")
    auth = manifest.databases.get("auth")
    if auth is None or auth.schema_revision is None:  # none, or never migrated (no revision to compare)
        return
    if auth.app and layout.auth_app and auth.app != layout.auth_app:
        raise RefusedError(f"the backup's auth database belongs to --app-name {auth.app}, {access.description} runs "
                           f"{layout.auth_app}: set mlflow:auth.mode to match the backup first")
    histories = [auth.app or layout.auth_app] if (auth.app or layout.auth_app) else \
        [name for name in facts.histories if name != "tracking"]
    if not any(facts.knows(history, auth.schema_revision) for history in histories if history):
        raise RefusedError(
            f"the backup's auth schema revision {auth.schema_revision} (MLflow {manifest.mlflow_version}) is unknown "
            f"to the auth app of MLflow {facts.mlflow_version}, which {access.description} runs: it was written by a "
            f"newer version. Set mlflow:mlflowVersion to {manifest.mlflow_version} (or newer), pulumi up, then restore")


def check_roles(access: StackAccess, layout: StackLayout) -> None:
    rows = psql(access, "postgres", "SELECT 1 FROM pg_roles WHERE rolname = :'owner';\n", variables={"owner": layout.owner})
    if not rows:
        raise RefusedError(f"role {layout.owner} (the server's database user) does not exist in {access.description}: "
                           "deploy the stack first (pulumi up), then restore")


def list_objects(access: StackAccess, destination: str, env: dict[str, str]) -> dict[str, int]:
    """key below the destination -> size."""
    out = run(access.python_command(["-c", script_source(objects.__file__), "list", destination], env),
              f"listing the objects under {destination}")
    listed: dict[str, int] = {}
    for line in out.decode().splitlines():
        entry = json.loads(line)
        listed[entry["key"]] = entry["bytes"]
    return listed


def _refuse_non_empty(access: StackAccess, layout: StackLayout, s3_env: dict[str, str]) -> None:
    found = user_data(access, layout.database)
    present = list_objects(access, layout.artifacts_destination, s3_env)
    if found or present:
        raise RefusedError(f"{access.description} is not empty ({_describe(found, len(present), layout.artifacts_destination)}); "
                           "restoring replaces all of it: pass --replace if that is what you want")


_FIRST_NAMED = ("runs", "experiments", "registered_models", "model_versions", "logged_models", "trace_info")


def _describe(found: dict[str, int], object_count: int, destination: str) -> str:
    """What makes a target non-empty, what users know first (runs, experiments, models), at most 6 tables."""
    order = sorted(found, key=lambda table: (_FIRST_NAMED.index(table) if table in _FIRST_NAMED else 99, -found[table]))
    parts = [f"{table} {found[table]}" + (" besides Default" if table == "experiments" else "") for table in order[:6]]
    if len(found) > 6:
        parts.append(f"{len(found) - 6} more tables")
    if object_count:
        parts.append(f"{object_count} objects under {destination}")
    return ", ".join(parts)


# --- the restore --------------------------------------------------------------------------------------


def _restore_into_scratch(access: StackAccess, path: Path, backup: DatabaseBackup, scratch: str, owner: str,
                          say: Say) -> None:
    """The dump in a new database `scratch`, owned by MLflow's role, verified against the manifest."""
    psql(access, "postgres", """\
DROP DATABASE IF EXISTS :"scratch" WITH (FORCE);
CREATE DATABASE :"scratch" OWNER :"owner";
REVOKE ALL ON DATABASE :"scratch" FROM PUBLIC;
GRANT ALL ON DATABASE :"scratch" TO :"owner";
""", variables={"scratch": scratch, "owner": owner}, what=f"creating database {scratch}")
    say(f"restoring {path.name} into {scratch} (as role {owner})")
    with open(path, "rb") as dump:
        # --role: restored as MLflow's role (SET ROLE), so it owns every object; --no-owner: no ALTER
        # ... OWNER TO the source's role names; --no-privileges: no GRANTs to roles this stack may lack.
        run(access.postgres_command(["pg_restore", "--dbname", scratch, "--role", owner, "--no-owner",
                                     "--no-privileges", "--single-transaction", "--exit-on-error"]),
            f"pg_restore of {path.name}", stdin=dump)
    counts = table_counts(access, scratch)
    if counts != backup.tables:
        differ = sorted(t for t in set(counts) | set(backup.tables) if counts.get(t) != backup.tables.get(t))
        detail = ", ".join(f"{t}: {counts.get(t)} restored, {backup.tables.get(t)} in the backup" for t in differ[:5])
        raise OpsError(f"the restored copy of {path.name} differs from the manifest ({detail})")
    foreign = foreign_owned(access, scratch, owner)
    if foreign:
        raise OpsError(f"restored objects not owned by {owner}: {', '.join(foreign[:5])}")


def _swap(access: StackAccess, scratch: str, name: str) -> None:
    """The scratch database takes `name`; the previous one is dropped afterwards."""
    if not database_exists(access, name):
        psql(access, "postgres", 'ALTER DATABASE :"scratch" RENAME TO :"name";\n',
             variables={"scratch": scratch, "name": name}, what=f"renaming {scratch} to {name}")
        return
    replaced = _beside(name, "__replaced")
    variables = {"scratch": scratch, "name": name, "replaced": replaced}
    try:
        psql(access, "postgres", """\
DROP DATABASE IF EXISTS :"replaced" WITH (FORCE);
ALTER DATABASE :"name" WITH ALLOW_CONNECTIONS false;
SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity WHERE datname = :'name' AND pid <> pg_backend_pid();
BEGIN;
ALTER DATABASE :"name" RENAME TO :"replaced";
ALTER DATABASE :"scratch" RENAME TO :"name";
COMMIT;
""", variables=variables, what=f"replacing database {name}")
    except OpsError:
        psql(access, "postgres", 'ALTER DATABASE :"name" WITH ALLOW_CONNECTIONS true;\n', variables=variables)
        raise
    psql(access, "postgres", 'DROP DATABASE :"replaced" WITH (FORCE);\n', variables=variables,
         what=f"dropping the replaced database {replaced}")


def _drop_quietly(access: StackAccess, names: list[str]) -> None:
    for name in names:
        try:
            psql(access, "postgres", 'DROP DATABASE IF EXISTS :"name" WITH (FORCE);\n', variables={"name": name})
        except OpsError:
            pass


def restore(access: StackAccess, directory: Path, *, replace: bool = False, say: Say = _stderr) -> Manifest:
    """Restore the backup in `directory` into the stack (see the module docstring). Returns its manifest."""
    started = time.monotonic()
    directory = Path(directory)
    manifest = Manifest.load(directory)
    say(f"checking {directory} (taken {manifest.created_at} from {manifest.source}, MLflow {manifest.mlflow_version})")
    check_backup(access, directory, manifest)
    layout = StackLayout.read(access)
    facts = image_facts(access)
    check_schema(access, manifest, facts, layout)
    check_roles(access, layout)
    s3_env = layout.s3_env(access)
    if not replace:
        _refuse_non_empty(access, layout, s3_env)

    # The scratch copies are made and verified while the server keeps serving: a dump that does not
    # restore costs no downtime and changes nothing.
    targets = {"tracking": layout.database, "auth": layout.auth_database}
    scratches = {role: _beside(targets[role], "__restoring") for role in manifest.databases}
    try:
        for role, backup in manifest.databases.items():
            _restore_into_scratch(access, directory / backup.file, backup, scratches[role], layout.owner, say)
    except BaseException as error:
        _drop_quietly(access, list(scratches.values()))
        if isinstance(error, OpsError):
            raise OpsError(f"{error}. The stack's databases were not changed") from error
        raise

    swapped: list[str] = []
    uploading = False
    say("stopping the MLflow server")
    was_running = access.stop_server()
    try:
        if not replace:  # nobody wrote meanwhile (the check above ran while the server served)
            _refuse_non_empty(access, layout, s3_env)
        say(f"uploading {manifest.counts['objects']} objects ({manifest.counts['bytes']} bytes) to "
            f"{layout.artifacts_destination}" + (", deleting the others" if replace else ""))
        uploading = True
        with open(directory / manifest.objects.file, "rb") as tar:
            run(access.python_command(["-c", script_source(objects.__file__), "import", layout.artifacts_destination,
                                       *(["--delete-others"] if replace else [])], s3_env),
                f"uploading the objects to {layout.artifacts_destination}", stdin=tar)
        listed = list_objects(access, layout.artifacts_destination, s3_env)
        expected = {entry.key: entry.bytes for entry in manifest.objects.entries}
        if listed != expected:
            missing = sorted(set(expected) - set(listed))[:3]
            extra = sorted(set(listed) - set(expected))[:3]
            raise OpsError(f"the objects under {layout.artifacts_destination} differ from the backup after the upload "
                           f"(missing {missing}, not in the backup {extra}, or sizes differ)")
        for role, scratch in scratches.items():
            say(f"replacing database {targets[role]}")
            _swap(access, scratch, targets[role])
            swapped.append(targets[role])
        _upgrade(access, manifest, facts, layout, say)
    except BaseException as error:
        _drop_quietly(access, list(scratches.values()))  # the ones not renamed yet
        if isinstance(error, OpsError) and not isinstance(error, RefusedError) and len(swapped) < len(scratches):
            changed = f"database {', '.join(swapped)} was replaced, the others not" if swapped else \
                "the stack's databases were not changed"
            uploaded = (f"; objects under {layout.artifacts_destination} may have been overwritten by the backup's: "
                        "run the restore again with --replace") if uploading else ""
            raise OpsError(f"{error}. {changed}{uploaded}") from error
        raise
    finally:
        if was_running:
            say("starting the MLflow server")
            access.start_server()
    counts = manifest.counts
    say(f"done in {time.monotonic() - started:.1f}s: {counts['experiments']} experiments, {counts['runs']} runs, "
        f"{counts['metrics']} metric values, {counts['registered_models']} models, {counts['model_versions']} model "
        f"versions, {counts['objects']} objects ({counts['bytes']} bytes) restored into {access.description}")
    return manifest


def _upgrade(access: StackAccess, manifest: Manifest, facts: ImageFacts, layout: StackLayout, say: Say) -> None:
    """The deployment's own steps, as `pulumi up` runs them before the server: the schema upgrade when
    the backup's revision is older than the server's; the auth app's upgrade (which also gives the
    admin the deployed password, mode mlflow) when an auth database was restored."""
    from components import render

    if manifest.schema_revision != facts.head("tracking"):
        say(f"upgrading the schema from {manifest.schema_revision} to {facts.head('tracking')}")
        run(access.python_command(["-c", render.SCHEMA_UPGRADE_SCRIPT],
                                  {BACKEND_URI_ENV: layout.backend_uri, "PYTHONUNBUFFERED": "1"}),
            "the schema upgrade (mlflow db upgrade)")
    if "auth" in manifest.databases and layout.auth_app in _AUTH_MODES:
        mode = _AUTH_MODES[layout.auth_app]
        env = {render.AUTH_DATABASE_URI_ENV: layout.auth_uri, "PYTHONUNBUFFERED": "1"}
        server_env = access.server_env()
        if mode == "mlflow" and render.AUTH_ADMIN_PASSWORD_ENV in server_env:
            env[render.AUTH_ADMIN_USERNAME_ENV] = server_env.get(render.AUTH_ADMIN_USERNAME_ENV, "admin")
            env[render.AUTH_ADMIN_PASSWORD_ENV] = server_env[render.AUTH_ADMIN_PASSWORD_ENV]
        say("running the auth app's upgrade step")
        run(access.python_command(["-c", render.AUTH_UPGRADE_SCRIPT, render.AUTH_MIGRATIONS[mode]], env),
            "the auth database's upgrade step")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/restore",
        description="Restore a backup made by scripts/backup into the local stack. Refuses a backup from a newer "
                    "MLflow schema than the server's, and a stack holding data unless --replace.")
    parser.add_argument("directory", metavar="DIR", type=Path)
    parser.add_argument("--replace", action="store_true",
                        help="replace the stack's data (databases and the objects under its artifacts destination)")
    parser.add_argument("--prefix", default="mlflow-local",
                        help="the stack's Docker name prefix, <instance>-<stack> (default: mlflow-local)")
    args = parser.parse_args(argv)
    hang_up_and_terminate_as_interrupt()
    try:
        from ops.local_stack import LocalAccess

        Manifest.load(args.directory)  # refuse before looking for Docker
        restore(LocalAccess.find(args.prefix), args.directory, replace=args.replace)
        return 0
    except OpsError as error:
        _stderr(str(error))
        return error.exit_code
    except KeyboardInterrupt:
        _stderr("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
