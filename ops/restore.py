"""`scripts/restore DIR [--replace] [--no-upgrade]`: put a backup (ops.backup) back into a stack.
`scripts/restore --purge-replaced`: remove what earlier `--replace` runs kept.
`scripts/restore --put-back STAMP`: give the stack its own objects back after a `--replace` that was
killed before it replaced the databases.

Everything that can refuse does so before the stack is touched: the manifest, each file's sha256,
`pg_restore --list` of each dump, every object's sha256 in objects.tar, the dump's schema revision
against the server image's own Alembic history (a revision it does not know was written by a newer
MLflow), a backup of another stack (unless `--from-other-stack`), the scratch and replaced database
names (distinct within PostgreSQL's 63 bytes), and the target: a stack holding anything a fresh
deployment does not (a run, an experiment besides Default, a model, an object under the artifacts
destination, a user besides the deployed admin, a permission) is refused unless `--replace`, which
first says what it replaces. The whole restore holds the stack's maintenance lock (ops.lock): no
backup or gc runs meanwhile.

Then each database is restored into a scratch database beside it, while the server keeps serving
(`pg_restore --single-transaction` as MLflow's own role), its rows per table must equal the
manifest's, its schema revision must be the manifest's (read from the restored copy: the manifest
is not trusted), and the auth copy loses the permission rows of objects the tracking dump lacks (the
two dumps are taken one after the other: a grant on an experiment created in between would otherwise
hand the restored sequence's next experiment to that user). Only then is the server stopped, the
objects uploaded (with --replace the current ones are first copied to a quarantine, ops.quarantine:
the upload overwrites the keys both hold), and every scratch database takes its database's name in
ONE transaction: the stack's databases are all old or all new, whatever interrupts the restore. A
replaced database is kept as `<name>__replaced_<UTC time>`. Then the schema upgrade (unless
--no-upgrade) and the server starts.

Every step can be interrupted and the restore run again: scratch databases are made afresh, a
database left refusing connections is repaired at the start, the server is started after any
successful run. A --replace stopped after the upload but before the swap would leave the old
databases with some of the backup's bytes: a failure or interrupt copies the stack's bytes back from
the quarantine first; after a SIGKILL (nothing runs) the next restore finds the quarantine whose
`<name>__replaced_<stamp>` database does not exist and refuses, naming `--put-back STAMP`, and
--purge-replaced keeps such a quarantine.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence

from components import render
from components.config import AuthConfig
from ops import OpsError, RefusedError, objects, quarantine
from ops.access import (hang_up_and_terminate_as_interrupt, BACKEND_URI_ENV, HashingReader, StackAccess, StackLayout,
                        psql, run, script_source)
from ops.archive import (
    EXTERNAL_OBJECTS_FILE, REVISION_TABLES,
    DatabaseBackup, ImageFacts, Manifest, database_exists, file_sha256, foreign_owned, headline_counts, image_facts,
    read_objects_tar, table_counts, user_data,
)
from ops.lock import HeldLock, LockLost, maintenance_lock

Say = Callable[[str], None]
_AUTH_MODES = {"basic-auth": "mlflow", "oidc-auth": "oidc"}  # --app-name -> auth.mode (components.render.AUTH_APPS)
_NAME_LIMIT = 63  # bytes of a PostgreSQL identifier
SCRATCH_TAG = "__restoring"
REPLACED_TAG = "__replaced_"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_STAMP_PATTERN = quarantine.STAMP  # one definition: the quarantine's source runs on its own
_STAMP_LENGTH = len("20250101T000000Z")
_HASH_LENGTH = 8
_SWAP_ATTEMPTS = 3
_DEFAULT_ADMIN = render.config_default(AuthConfig, "admin_username")


def _stderr(message: str) -> None:
    print(f"restore: {message}", file=sys.stderr, flush=True)


def _quietly(say: Say) -> Say:
    """`say` for the paths after a failure: a closed terminal (OSError, e.g. EIO) must not replace the
    error being raised, nor stop what still has to run (the server started again)."""
    def said(message: str) -> None:
        try:
            say(message)
        except OSError:
            pass
    return said


# --- names (checked before anything changes) -----------------------------------------------------------


def _beside(name: str, tag: str) -> str:
    """A database name beside `name` for the restore's scratch copy or the replaced original: `name` +
    `tag` when it fits PostgreSQL's 63 bytes, else `name` shortened + `_` + 8 hex digits of its sha256
    + `tag`, so two long names that share their first bytes (`x` and `x_auth`) never meet."""
    encoded = name.encode()
    if len(encoded) + len(tag.encode()) <= _NAME_LIMIT:
        return name + tag
    room = _NAME_LIMIT - len(tag.encode()) - _HASH_LENGTH - 1
    return f"{encoded[:room].decode(errors='ignore')}_{hashlib.sha256(encoded).hexdigest()[:_HASH_LENGTH]}{tag}"


def replaced_prefix(name: str) -> str:
    """What every `<name>__replaced_<stamp>` starts with (the stamp has a fixed length)."""
    return _beside(name, REPLACED_TAG + "0" * _STAMP_LENGTH)[:-_STAMP_LENGTH]


@dataclass(frozen=True)
class DatabaseNames:
    target: str
    scratch: str
    replaced: str


def plan_names(targets: dict[str, str], stamp: str) -> dict[str, DatabaseNames]:
    """role -> its target, scratch and replaced names; RefusedError when any two are the same (a
    collision would drop or rename one database onto another)."""
    plan = {role: DatabaseNames(name, _beside(name, SCRATCH_TAG), _beside(name, REPLACED_TAG + stamp))
            for role, name in targets.items()}
    every = [name for names in plan.values() for name in (names.target, names.scratch, names.replaced)]
    duplicates = sorted({name for name in every if every.count(name) > 1})
    if duplicates:
        raise RefusedError(f"the restore's database names collide ({', '.join(duplicates)}): choose a shorter "
                           "mlflow:database.name; nothing was changed")
    return plan


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
    if auth is not None and auth.app and not layout.auth_app:
        raise RefusedError(
            f"the backup holds users and permissions (--app-name {auth.app}) and {access.description} runs no auth "
            f"app: every experiment would be open to whoever reaches the server. Set mlflow:auth.mode to "
            f"{_AUTH_MODES.get(auth.app, auth.app)}, pulumi up, then restore")
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
    rows = psql(access, "postgres", "SELECT 1 FROM pg_roles WHERE rolname = :'owner';\n",
                variables={"owner": layout.owner})
    if not rows:
        raise RefusedError(f"role {layout.owner} (the server's database user) does not exist in {access.description}: "
                           "deploy the stack first (pulumi up), then restore")


def check_source(access: StackAccess, manifest: Manifest, layout: StackLayout, other_stack: bool) -> None:
    """A backup of another stack (or destination) is refused unless the user says it is meant."""
    if other_stack or (manifest.source, manifest.artifacts_destination) == (access.description,
                                                                           layout.artifacts_destination):
        return
    raise RefusedError(f"the backup was taken from {manifest.source} (artifacts under "
                       f"{manifest.artifacts_destination}), not {access.description} (artifacts under "
                       f"{layout.artifacts_destination}): pass --from-other-stack if restoring it here is what "
                       "you want")


def backup_age(created_at: str, now: Optional[datetime.datetime] = None) -> str:
    """"3 days 4 hours old": said before a restore, so an old backup is not restored by mistake."""
    try:
        created = datetime.datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError:
        return "of unknown age"
    if created.tzinfo is None:
        created = created.replace(tzinfo=datetime.timezone.utc)
    seconds = int(((now or datetime.datetime.now(datetime.timezone.utc)) - created).total_seconds())
    if seconds < 0:
        return "from the future (check the clocks)"
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    return (f"{days} days {hours} hours" if days else f"{hours} hours {minutes} minutes" if hours else
            f"{minutes} minutes") + " old"


def list_objects(access: StackAccess, destination: str, env: dict[str, str]) -> dict[str, int]:
    """key below the destination -> size (the restore's quarantine inside it is listed around: ops.objects)."""
    out = run(access.python_command(["-c", script_source(objects.__file__), "list", destination], env),
              f"listing the objects under {destination}")
    return {entry["key"]: entry["bytes"] for entry in map(json.loads, out.decode().splitlines())}


_PERMISSION_TABLE_SUFFIX = "permissions"


def auth_data(access: StackAccess, layout: StackLayout) -> dict[str, int]:
    """The target's users and permissions are data too: users besides the deployed admin, and any
    permission row. Empty when the stack has no auth database or nobody used it."""
    if not database_exists(access, layout.auth_database):
        return {}
    counts = table_counts(access, layout.auth_database)
    found = {table: count for table, count in counts.items() if table.endswith(_PERMISSION_TABLE_SUFFIX) and count}
    if counts.get("users"):
        admin = _deployed_admin(access.server_env())
        others = int(psql(access, layout.auth_database,
                          "SELECT count(*) FROM public.users WHERE username <> :'admin';\n",
                          variables={"admin": admin})[0][0])
        if others:
            found["users besides the admin"] = others
    return found


def _deployed_admin(server_env: Mapping[str, str]) -> str:
    """The admin the stack deploys (auth.adminUsername), as its server's environment names it."""
    return server_env.get(render.AUTH_ADMIN_USERNAME_ENV, _DEFAULT_ADMIN)


def _text_rows(access: StackAccess, database: str, query: str, columns: int,
               variables: Optional[Mapping[str, str]] = None) -> list[list[str]]:
    """The rows of `query` (`columns` values each), whatever the values hold: a user name may hold a tab or
    a newline (MLflow refuses only an empty one), which psql's tab-separated rows cannot carry, so each
    value travels hex-encoded (review 24, F1: a name holding a tab shifted the columns, and a password
    hash was printed as a name)."""
    names = [f"c{index}" for index in range(columns)]
    encoded = ", ".join(f"encode(convert_to({name}, 'UTF8'), 'hex')" for name in names)
    wrapped = f"SELECT {encoded} FROM ({query.strip().rstrip(';')}) AS q({', '.join(names)});\n"
    return [[bytes.fromhex(value).decode() for value in (row + [""] * columns)[:columns]]
            for row in psql(access, database, wrapped, variables=variables)]


def _named(names: Iterable[str]) -> str:
    """Names as a message lists them: one with a control character (a tab, a newline) quoted, so that it
    reads as one name and cannot forge a line of the tool's output."""
    return ", ".join(name if name.isprintable() else repr(name) for name in names)


@dataclass
class TargetData:
    """What the target holds beyond a fresh deployment (what a restore replaces)."""

    tracking: dict[str, int]
    auth: dict[str, int]
    objects: dict[str, int]
    destination: str

    def __bool__(self) -> bool:
        return bool(self.tracking or self.auth or self.objects)

    def describe(self) -> str:
        parts = [_describe(self.tracking)] if self.tracking else []
        parts += [f"{name} {count}" for name, count in self.auth.items()]
        if self.objects:
            parts.append(f"{len(self.objects)} objects ({sum(self.objects.values())} bytes) under {self.destination}")
        return ", ".join(parts)


def target_data(access: StackAccess, layout: StackLayout, s3_env: dict[str, str]) -> TargetData:
    return TargetData(user_data(access, layout.database), auth_data(access, layout),
                      list_objects(access, layout.artifacts_destination, s3_env), layout.artifacts_destination)


def _refuse_non_empty(access: StackAccess, layout: StackLayout, s3_env: dict[str, str]) -> None:
    found = target_data(access, layout, s3_env)
    if found:
        raise RefusedError(f"{access.description} is not empty ({found.describe()}); "
                           "restoring replaces all of it: pass --replace if that is what you want")


_FIRST_NAMED = ("runs", "experiments", "registered_models", "model_versions", "logged_models", "trace_info")


def _describe(found: dict[str, int]) -> str:
    """What makes a target non-empty, what users know first (runs, experiments, models), at most 6 tables."""
    order = sorted(found, key=lambda table: (_FIRST_NAMED.index(table) if table in _FIRST_NAMED else 99, -found[table]))
    parts = [f"{table} {found[table]}" + (" besides Default" if table == "experiments" else "") for table in order[:6]]
    if len(found) > 6:
        parts.append(f"{len(found) - 6} more tables")
    return ", ".join(parts)


# --- repairs left by an interrupted run ------------------------------------------------------------------


def repair_connections(access: StackAccess, names: list[str], say: Say) -> None:
    """A database of the stack left refusing connections (ALLOW_CONNECTIONS false, by an interrupted
    restore of an earlier version) is opened again: MLflow's role would be refused."""
    refusing = {row[0] for row in psql(access, "postgres", "SELECT datname FROM pg_database WHERE NOT datallowconn;\n")}
    for name in names:
        if name in refusing:
            psql(access, "postgres", 'ALTER DATABASE :"name" WITH ALLOW_CONNECTIONS true;\n', variables={"name": name},
                 what=f"allowing connections to {name} again")
            say(f"database {name} refused connections (left by an interrupted restore): allowed them again")


# --- the scratch copies -----------------------------------------------------------------------------------


def _restore_into_scratch(access: StackAccess, path: Path, backup: DatabaseBackup, role: str, scratch: str,
                          owner: str, say: Say) -> dict[str, int]:
    """The dump in a new database `scratch`, owned by MLflow's role, verified against the manifest
    (rows per table, schema revision read from the restored copy). Returns its rows per table."""
    _create_scratch(access, scratch, owner)
    say(f"restoring {path.name} into {scratch} (as role {owner})")
    with open(path, "rb") as dump:
        fed = HashingReader(dump)
        # --role: restored as MLflow's role (SET ROLE), so it owns every object; --no-owner: no ALTER
        # ... OWNER TO the source's role names; --no-privileges: no GRANTs to roles this stack may lack.
        run(access.postgres_command(["pg_restore", "--dbname", scratch, "--role", owner, "--no-owner",
                                     "--no-privileges", "--single-transaction", "--exit-on-error"]),
            f"pg_restore of {path.name}", stdin=fed)
        if fed.hexdigest() != backup.sha256:  # review 13: what pg_restore read, not what was checked before
            raise RefusedError(f"{path} changed after it was checked (its sha256 is no longer the manifest's): the "
                               "stack's databases were not changed")
    counts = table_counts(access, scratch)
    if counts != backup.tables:
        differ = sorted(t for t in set(counts) | set(backup.tables) if counts.get(t) != backup.tables.get(t))
        detail = ", ".join(f"{t}: {counts.get(t)} restored, {backup.tables.get(t)} in the backup" for t in differ[:5])
        raise OpsError(f"the restored copy of {path.name} differs from the manifest ({detail})")
    foreign = foreign_owned(access, scratch, owner)
    if foreign:
        raise OpsError(f"restored objects not owned by {owner}: {', '.join(foreign[:5])}")
    restored = restored_revision(access, scratch, role, counts)
    if restored != backup.schema_revision:
        raise RefusedError(f"{path.name}: the manifest says schema revision {backup.schema_revision}, the dump holds "
                           f"{restored}: the manifest was edited or belongs to another backup; the stack's databases "
                           "were not changed")
    return counts


def restored_revision(access: StackAccess, database: str, role: str, counts: dict[str, int]) -> Optional[str]:
    """The Alembic revision a restored database holds (None: no revision table, never migrated)."""
    for table in REVISION_TABLES[role]:
        if table in counts:
            rows = psql(access, database, f'SELECT version_num FROM public."{table}";\n')
            return rows[0][0] if len(rows) == 1 else f"{len(rows)} rows of {table}"
    return None


def _create_scratch(access: StackAccess, scratch: str, owner: str, template: Optional[str] = None) -> None:
    """A new database `scratch` (a leftover of an interrupted run is dropped first: its name is the restore's own)."""
    psql(access, "postgres", """\
DROP DATABASE IF EXISTS :"scratch" WITH (FORCE);
""" + ('SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity WHERE datname = :\'template\';\n'
       'CREATE DATABASE :"scratch" OWNER :"owner" TEMPLATE :"template";\n' if template else
       'CREATE DATABASE :"scratch" OWNER :"owner";\n') + """\
REVOKE ALL ON DATABASE :"scratch" FROM PUBLIC;
GRANT ALL ON DATABASE :"scratch" TO :"owner";
""", variables={"scratch": scratch, "owner": owner, **({"template": template} if template else {})},
         what=f"creating database {scratch}")


_KEYS_SQL = """\
SELECT 'e', encode(convert_to(experiment_id::text, 'UTF8'), 'hex') FROM public.experiments
UNION ALL SELECT 'm', encode(convert_to(name, 'UTF8'), 'hex') FROM public.registered_models;
"""
_EXPERIMENT_TYPES = ("experiment",)
_MODEL_TYPES = ("registered_model", "prompt")
_KEPT_TYPES = ("workspace",)  # role_permissions rows not keyed by a tracking object
_ANY = "*"


def _prune_statements(columns: dict[str, set[str]], everything: bool) -> list[str]:
    """DELETE ... RETURNING statements (one result row per table: its name and how many rows went) for
    the auth database's permission tables: MLflow 3.17's role_permissions (resource_type,
    resource_pattern), older and mlflow-oidc-auth tables keyed by experiment_id or a model's name.
    `everything`: every row keyed by a tracking object (the tracking data is not the one they meant)."""
    statements = []
    for table, cols in sorted(columns.items()):
        if not table.endswith(_PERMISSION_TABLE_SUFFIX):
            continue
        quoted = '"' + table.replace('"', '""') + '"'
        if {"resource_type", "resource_pattern"} <= cols:
            if everything:
                where = f"resource_type NOT IN ({_sql_list(_KEPT_TYPES)}) AND resource_pattern <> '{_ANY}'"
            else:
                where = (f"resource_pattern <> '{_ANY}' AND ("
                         f"(resource_type IN ({_sql_list(_EXPERIMENT_TYPES)}) AND resource_pattern NOT IN "
                         f"(SELECT key FROM keep WHERE kind = 'e')) OR "
                         f"(resource_type IN ({_sql_list(_MODEL_TYPES)}) AND resource_pattern NOT IN "
                         f"(SELECT key FROM keep WHERE kind = 'm')))")
        elif "experiment_id" in cols:
            where = "true" if everything else "experiment_id::text NOT IN (SELECT key FROM keep WHERE kind = 'e')"
        elif "name" in cols and ("model" in table or "prompt" in table):
            where = "true" if everything else "name NOT IN (SELECT key FROM keep WHERE kind = 'm')"
        elif everything and not table.startswith("workspace"):
            where = "true"
        else:
            continue
        statements.append(f"WITH gone AS (DELETE FROM public.{quoted} WHERE {where} RETURNING 1) "
                          f"SELECT '{table}', count(*) FROM gone;")
    return statements


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def prune_permissions(access: StackAccess, auth_db: str, tracking_db: Optional[str]) -> dict[str, int]:
    """Delete the auth database's permission rows for objects `tracking_db` does not hold (every row
    keyed by a tracking object when `tracking_db` is None). table -> rows deleted (non-zero only)."""
    rows = psql(access, auth_db, "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public';\n")
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    statements = _prune_statements(columns, everything=tracking_db is None)
    if not statements:
        return {}
    keys = psql(access, tracking_db, _KEYS_SQL) if tracking_db else []
    data = "".join(f"{kind}\t{hex_key}\n" for kind, hex_key in keys)
    script = ("BEGIN;\nCREATE TEMP TABLE keep_hex (kind text, hex text);\nCOPY keep_hex FROM STDIN;\n" + data + "\\.\n"
              "CREATE TEMP TABLE keep AS SELECT kind, convert_from(decode(hex, 'hex'), 'UTF8') AS key FROM keep_hex;\n"
              + "\n".join(statements) + "\nCOMMIT;\n")
    deleted = psql(access, auth_db, script, what=f"pruning permissions in {auth_db}")
    return {table: int(count) for table, count in deleted if int(count)}


# --- the swap ---------------------------------------------------------------------------------------------


SWAPPED_MARK = "swapped:"
"""In a restored database's comment, `swapped:<stamp>` for each restore whose swap put it (or an earlier
copy of it) in place, written in the swap's own transaction: whether a stamp's swap happened stays
known when its replaced databases are dropped by hand or there were none (review 4, F2)."""


def swap(access: StackAccess, plan: list[DatabaseNames], stamp: str) -> list[str]:
    """Every scratch database takes its target's name in one transaction (the targets that exist are
    renamed to their replaced names first), and is marked SWAPPED_MARK + stamp: the stack's databases
    are all old or all new, whatever interrupts it, and no database is ever left refusing connections.
    Returns the replaced names."""
    existing = [names for names in plan if database_exists(access, names.target)]
    variables: dict[str, str] = {"mark": SWAPPED_MARK + stamp}
    lines = []
    for index, names in enumerate(plan):
        variables.update({f"t{index}": names.target, f"s{index}": names.scratch, f"r{index}": names.replaced})
        if names in existing:
            lines.append(f'ALTER DATABASE :"t{index}" RENAME TO :"r{index}";')
        lines.append(f'ALTER DATABASE :"s{index}" RENAME TO :"t{index}";')
        # the marks of the database it replaces, and this one's
        lines.append(f"SELECT format('COMMENT ON DATABASE %I IS %L', :'t{index}', concat_ws(' ', (SELECT "
                     f"shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :'r{index}'), "
                     ":'mark')) \\gexec")
    targets = ", ".join(f":'t{index}'" for index in range(len(plan)))
    script = ("BEGIN;\n"
              f"SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity WHERE datname IN ({targets}) "
              "AND pid <> pg_backend_pid();\n" + "\n".join(lines) + "\nCOMMIT;\n")
    for attempt in range(1, _SWAP_ATTEMPTS + 1):
        try:
            psql(access, "postgres", script, variables=variables,
                 what=f"renaming the restored databases to {', '.join(names.target for names in plan)}")
            break
        except OpsError as error:  # a client reconnected between the termination and the rename
            if "being accessed by other users" not in str(error) or attempt == _SWAP_ATTEMPTS:
                raise
    return [names.replaced for names in existing]


def _drop_quietly(access: StackAccess, names: list[str]) -> None:
    for name in names:
        try:
            psql(access, "postgres", 'DROP DATABASE IF EXISTS :"name" WITH (FORCE);\n', variables={"name": name})
        except OpsError:
            pass


# --- the restore --------------------------------------------------------------------------------------


@dataclass
class _Progress:
    """What the restore changed so far, for an error message that never says "not changed" wrongly."""

    changed: list[str] = field(default_factory=list)
    server_started: bool = False
    """set once a failed restore started the MLflow server again"""

    def describe(self) -> str:
        return "; ".join(self.changed) if self.changed else "nothing of the stack was changed"

    def rerun(self, replace: bool) -> str:
        """A plain restore that got as far as uploading finds the stack non-empty when run again."""
        if self.changed and not replace:
            return "run the restore again with --replace (what the stack holds now came from this backup)"
        return "run the restore again"


@dataclass
class _Swap:
    """How far a --replace got towards the swap, for what a failure must undo (F1 of review 2)."""

    stamp: str
    stack_keys: set[str]
    """the stack's objects before the restore (the quarantine's keys)"""
    backup_keys: set[str]
    """the backup's (what the upload writes)"""
    quarantining: bool = False
    """the copy to the quarantine began: the upload may overwrite keys after it"""
    uploading: bool = False
    """the upload of the backup's objects began"""
    started: bool = False
    done: bool = False


def restore(access: StackAccess, directory: Path, *, replace: bool = False, upgrade: bool = True,
            other_stack: bool = False, say: Say = _stderr) -> Manifest:
    """Restore the backup in `directory` into the stack (see the module docstring). Returns its manifest."""
    started = time.monotonic()
    directory = Path(directory)
    manifest = Manifest.load(directory)
    say(f"checking {directory} (taken {manifest.created_at} from {manifest.source}, "
        f"{backup_age(manifest.created_at)}, MLflow {manifest.mlflow_version})")
    check_backup(access, directory, manifest)
    layout = StackLayout.read(access)
    check_source(access, manifest, layout, other_stack)
    facts = image_facts(access)
    check_schema(access, manifest, facts, layout)
    check_roles(access, layout)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime(STAMP_FORMAT)
    targets = {"tracking": layout.database, "auth": layout.auth_database}
    plan = plan_names(targets, stamp)
    with maintenance_lock(access, "restore") as lock:
        try:
            listing = _listing(access, layout)
            refuse_unswapped(access, layout, listing)
            _refuse_a_stamp_in_use(access, layout, stamp, listing)
            repair_connections(access, [*targets.values(), *(names.scratch for names in plan.values())], say)
            counts = _restore_locked(access, directory, manifest, layout, facts, plan, replace=replace,
                                     upgrade=upgrade, stamp=stamp, say=say, lock=lock)
        except LockLost as error:  # before the swap phase (it stops the watch before it says what it did)
            raise OpsError(f"{lock.lost_message()}; nothing of the stack was changed") from error
    _say_outside_locations(manifest, directory, say)
    say(f"done in {time.monotonic() - started:.1f}s: {counts['experiments']} experiments, {counts['runs']} runs, "
        f"{counts['metrics']} metric values, {counts['registered_models']} models, {counts['model_versions']} model "
        f"versions, {counts['objects']} objects ({counts['bytes']} bytes) restored into {access.description}")
    return manifest


def _restore_locked(access: StackAccess, directory: Path, manifest: Manifest, layout: StackLayout, facts: ImageFacts,
                    plan: dict[str, DatabaseNames], *, replace: bool, upgrade: bool, stamp: str, say: Say,
                    lock: Optional[HeldLock] = None) -> dict[str, int]:
    """The restore under the maintenance lock. Returns the headline counts of what was restored (rows
    counted in the restored tracking database, the objects checked in objects.tar)."""
    s3_env = layout.s3_env(access)
    found = target_data(access, layout, s3_env)
    if found and not replace:
        raise RefusedError(f"{access.description} is not empty ({found.describe()}); "
                           "restoring replaces all of it: pass --replace if that is what you want")
    if replace:  # checked while the server serves: the quarantine copy would fail with it stopped
        _refuse_unquarantinable(layout, stamp, found.objects)
    if found:
        say(f"--replace: replacing {found.describe()}; the replaced databases are kept as "
            f"<name>{REPLACED_TAG}{stamp} and the objects in a quarantine until scripts/restore --purge-replaced")

    # The scratch copies are made and verified while the server keeps serving: a dump that does not
    # restore costs no downtime and changes nothing.
    restoring = [role for role in plan if role in manifest.databases]
    scratches = [plan[role].scratch for role in plan]
    restored: dict[str, dict[str, int]] = {}
    try:
        for role in restoring:
            backup = manifest.databases[role]
            restored[role] = _restore_into_scratch(access, directory / backup.file, backup, role, plan[role].scratch,
                                                   layout.owner, say)
        if "auth" in restoring:
            _report_pruned(prune_permissions(access, plan["auth"].scratch, plan["tracking"].scratch),
                           "for objects the backup's tracking dump does not hold (created between the two dumps)", say)
    except BaseException as error:
        lost, may_clean_up = _lock_after_failure(lock)
        if may_clean_up:  # the scratch names are every restore's: another one may be using them now
            _drop_quietly(access, scratches)
        _stop_watching(lock)  # review 13: a LockLost from here on would replace the error said below
        if isinstance(error, LockLost) or (lost and isinstance(error, OpsError)
                                           and not isinstance(error, RefusedError)):
            assert lock is not None
            left = "" if may_clean_up else (f"; its scratch databases are left ({lock.why_not_retaken}): the next "
                                            "restore replaces them")
            raise OpsError(f"{lock.lost_message('replacing the databases')}. The stack's databases were not "
                           f"changed{left}") from error
        if isinstance(error, OpsError) and not isinstance(error, RefusedError):
            raise OpsError(f"{error}. The stack's databases were not changed") from error
        raise
    revision = manifest.databases["tracking"].schema_revision  # the restored copy's, checked just above

    progress = _Progress()
    state = _Swap(stamp, set(found.objects), {entry.key for entry in manifest.objects.entries})
    started_ok = False
    can_start = upgrade or revision == facts.head("tracking")  # --no-upgrade of an older schema: it stays stopped
    was_running = True  # until stop_server says otherwise: interrupted in it, the server is started again
    try:
        say("stopping the MLflow server")
        was_running = access.stop_server()
        if not replace:  # nobody wrote meanwhile (the check above ran while the server served)
            _refuse_non_empty(access, layout, s3_env)
        swapping = [plan[role] for role in restoring]
        if "auth" not in restoring and found.auth and database_exists(access, layout.auth_database):
            swapping.append(_cleared_auth_copy(access, layout, plan["auth"], say))
        # --replace: every object of the stack copied to the quarantine first (the upload overwrites the
        # keys both hold; a failure before the swap copies the stack's bytes back); the databases in one
        # swap; only then the stack's objects the backup lacks deleted (each already in the quarantine).
        if replace:
            state.quarantining = True
            _quarantine_copy(access, manifest, layout, s3_env, stamp=stamp, progress=progress, say=say)
        state.uploading = True
        _upload_objects(access, directory, manifest, layout, s3_env, progress=progress, say=say)
        say(f"replacing database {', '.join(names.target for names in swapping)}")
        if lock is not None:  # a PostgreSQL restart during the upload released it: a gc may be reading
            lock.confirm("replacing the databases")
        state.started = True
        replaced = swap(access, swapping, stamp)
        state.done = True
        if not replace:  # they held nothing a fresh deployment does not (checked with the server stopped)
            _drop_quietly(access, replaced)
            replaced = []
        progress.changed = ["the databases hold the backup" + (
            f" (the replaced ones are kept as {', '.join(replaced)})" if replaced else "")]
        if replace:
            _prune_others(access, manifest, layout, s3_env, stamp=stamp, progress=progress, say=say)
        _check_objects(access, manifest, layout, s3_env)
        started_ok = _upgrade(access, manifest, revision, facts, layout, upgrade, say)
        if "auth" in manifest.databases and layout.auth_app in _AUTH_MODES:  # also with --no-upgrade (review 19)
            _say_restored_access(access, layout, _AUTH_MODES[layout.auth_app], say)
            if replace and "auth" in plan:
                _say_re_enabled(access, layout, _AUTH_MODES[layout.auth_app], plan["auth"].replaced, say)
        if started_ok:  # inside the guard: an interrupt here still starts it (_after_failure) and says so
            say("starting the MLflow server")
            access.start_server()
        _stop_watching(lock)  # done: a lock lost from here on must not be said as a failure (review 12)
    except BaseException as error:
        lost, may_clean_up = _lock_after_failure(lock)
        if not may_clean_up:
            assert lock is not None
            raise OpsError(f"{lock.lost_message()}, and it could not be taken again ({lock.why_not_retaken}): this "
                           f"restore undid nothing and leaves the MLflow server as it is. {progress.describe()}; once "
                           f"that is over, {progress.rerun(replace)} (it says first if a --put-back is "
                           "needed)") from error
        try:
            _after_failure(access, layout, s3_env, plan, state, progress, was_running, say, may_start=can_start)
            _stop_watching(lock)  # what it did is said below, whatever the lock does meanwhile
        except LockLost as again:
            assert lock is not None
            then = ("run the restore again" if progress.server_started  # review 11: not "leave it stopped"
                    else "leave the MLflow server stopped and run the restore again")
            raise OpsError(f"{lock.lost_message()} while it cleaned up after a failure, so what it left is not known: "
                           f"{progress.describe()}; {then}, which says first if a --put-back is needed") from again
        except KeyboardInterrupt:  # a second Ctrl-C, SIGTERM or SIGHUP during the cleanup (review 11)
            _quietly(say)(f"interrupted again while it cleaned up: {progress.describe()}; run the restore again, "
                          "which says first if a --put-back is needed")
            raise
        if lost:
            assert lock is not None
            raise OpsError(f"{lock.lost_message()}; it took the lock again to clean up: {progress.describe()}; "
                           f"{progress.rerun(replace)}") from error
        if isinstance(error, (OSError, OpsError)) and not isinstance(error, RefusedError):
            raise OpsError(f"{error}. {progress.describe()}; {progress.rerun(replace)}") from error
        if isinstance(error, KeyboardInterrupt):
            _quietly(say)(f"interrupted: {progress.describe()}; {progress.rerun(replace)}")
        elif not isinstance(error, OpsError):  # a defect: its traceback follows
            _quietly(say)(f"failed ({type(error).__name__}): {progress.describe()}; {progress.rerun(replace)}")
        raise
    if not started_ok:
        say(f"the MLflow server was left stopped: the restored schema ({revision}) is older than its "
            f"MLflow {facts.mlflow_version}'s; deploy MLflow {manifest.mlflow_version} (mlflow:mlflowVersion, pulumi "
            "up), which starts it")
    return headline_counts(restored["tracking"], manifest.objects.entries)


def _stop_watching(lock: Optional[HeldLock]) -> None:
    """No LockLost after this: what is left to do is to say what was done (restore()'s own handler
    says "nothing of the stack was changed", true only before the swap phase)."""
    if lock is not None:
        try:
            lock.unwatch()
        except LockLost:
            pass


def _lock_after_failure(lock: Optional[HeldLock]) -> tuple[bool, bool]:
    """After a failure, before anything is undone: (whether the lock was lost, whether this tool may still
    touch the stack). The watch is stopped first (a LockLost arriving here would escape the decision;
    review 8) and the session is asked, not the watch's flag (a step can fail on a PostgreSQL restart
    before the watch noticed it; review 7). A lost lock is taken again first; when someone else took it
    meanwhile, undoing now would overlap whatever that one is doing (review 6)."""
    if lock is None:
        return False, True
    _stop_watching(lock)  # a LockLost sent meanwhile sets the flag: holds() answers False
    if lock.holds():
        lock.watch()  # watched again through the cleanup (a LockLost there is said as such)
        return False, True
    return True, lock.retake()


def _after_failure(access: StackAccess, layout: StackLayout, s3_env: dict[str, str], plan: dict[str, DatabaseNames],
                   state: _Swap, progress: _Progress, was_running: bool, say: Say, *, may_start: bool = True) -> None:
    """A failed or interrupted restore, once the server was stopped: the scratch databases not renamed
    dropped, the stack's own bytes put back when the swap did not happen, the server started again if
    it was running (or the swap happened) and its databases match its objects; only then is anything
    said (a closed terminal must not leave it stopped). Not after a swap to a schema older than the
    server's MLflow (`may_start` False: --no-upgrade, rolling back), which that MLflow would refuse."""
    _drop_quietly(access, [names.scratch for names in plan.values()])  # the swap renamed all or none
    consistent, put_back_done = True, False
    if state.quarantining and not state.done:
        undone, consistent, put_back_done = _undo_upload(access, layout, s3_env, plan, state)
        progress.changed = [undone]
    if not consistent:  # serving would hand out the backup's bytes beside the stack's databases
        return
    if state.done and not may_start:
        progress.changed.append("the MLflow server stays stopped: the restored schema is older than its MLflow's "
                                "(--no-upgrade); deploy the MLflow that wrote the backup, which starts it")
        return
    start_failed = False
    if was_running or state.done:
        progress.server_started, said_of_start = _start_again(access)
        start_failed = not progress.server_started
        _quietly(say)(said_of_start)
    if put_back_done and start_failed:
        progress.changed.append(f"its quarantine {state.stamp} is kept until the server runs: "
                                f"scripts/restore --put-back {state.stamp} starts it and removes the quarantine")
    elif put_back_done:  # only once it runs: killed before, the next restore names the --put-back (review 10)
        try:
            purge_quarantine(access, layout, s3_env, state.stamp)
            progress.changed.append(f"the quarantine {state.stamp} was then removed")
        except OpsError as error:
            progress.changed.append(f"the quarantine {state.stamp} is left ({error}): scripts/restore --put-back "
                                    f"{state.stamp} removes it")


def _undo_upload(access: StackAccess, layout: StackLayout, s3_env: dict[str, str], plan: dict[str, DatabaseNames],
                 state: _Swap) -> tuple[str, bool, bool]:
    """The stack still has its own databases (the swap did not happen): the keys the upload overwrote
    get the stack's bytes back from the quarantine (which stays until the server runs again). Returns
    what is true afterwards, whether the databases and the objects match (False: the server must stay
    stopped until --put-back), and whether the bytes were put back."""
    destination = layout.artifacts_destination
    if state.started:
        try:
            swapped = stamp_swapped(access, layout, state.stamp)
        except OpsError as error:
            return (f"the objects under {destination} were copied to the quarantine {state.stamp} and the backup's "
                    f"uploaded over them, and whether the databases were replaced could not be read ({error}); "
                    f"the MLflow server {STAYS_STOPPED}: the next restore checks it and says what to do"), False, False
        if swapped:
            kept = [names.replaced for names in plan.values() if database_exists(access, names.replaced)]
            return (f"the databases hold the backup (the replaced ones are kept as {', '.join(kept) or '(none)'}); "
                    f"the stack's objects the backup does not hold are still under {destination}"), True, False
    try:
        result = put_back_objects(access, layout, s3_env, state.stamp, undo=True)
    except BaseException as error:  # noqa: BLE001 - said, and the restore's own error is the one raised
        return (f"the databases were not replaced, but the backup's objects were uploaded over the stack's and "
                f"putting the stack's bytes back failed ({str(error) or type(error).__name__}); the MLflow server "
                f"{STAYS_STOPPED} until scripts/restore --put-back {state.stamp}, which puts them back and starts it"
                ), False, False
    changed = int(result.get("changed_since", 0))
    if changed:  # the server was stopped: no user wrote them; the upload wrote other bytes than it recorded,
        # so the put-back set its record aside: every later put-back of it asks for --every-key (review 14)
        return (f"the databases were not replaced, but {changed} keys the upload wrote hold neither the stack's bytes "
                f"nor the ones it recorded ({result['put_back']} others got the stack's bytes back); the MLflow "
                f"server {STAYS_STOPPED} and the quarantine {state.stamp} is kept: scripts/restore --put-back "
                f"{state.stamp} --every-key puts the stack's bytes back into every key and starts it"), False, False
    if not state.uploading:  # stopped while the stack's objects were copied to the quarantine (review 26)
        return ("the databases were not replaced and no object of the backup was uploaded (the stack keeps its "
                "own)"), True, True
    new = len(state.backup_keys - state.stack_keys)
    return (f"the databases were not replaced (the stack keeps its own); {result['put_back']} objects the "
            f"backup's upload had overwritten got the stack's bytes back from the quarantine"
            + (f"; up to {new} objects of the backup the stack did not hold are left under {destination}"
               if new else "")
            ), True, True


STAYS_STOPPED = "stays stopped (serving would hand out the backup's bytes beside the stack's own databases)"


def _start_again(access: StackAccess) -> tuple[bool, str]:
    """After a failure the server starts again before anything is said; a failure of that start does
    not hide the restore's own error."""
    try:
        access.start_server()
    except Exception as error:  # noqa: BLE001 - the restore's own error is the one raised
        return False, f"starting the MLflow server failed too: {error}"
    return True, "started the MLflow server again"


def _say_outside_locations(manifest: Manifest, directory: Path, say: Say) -> None:
    """Runs whose artifacts live outside the destination are restored without them: say so (issue 28)."""
    outside = manifest.outside_locations
    if outside:
        copied = sum(1 for item in outside if item.backed_up)
        say(f"NOT restored: {len(outside)} artifact locations outside the artifacts destination "
            f"({copied} of them copied into {directory / EXTERNAL_OBJECTS_FILE}: put those back by hand, "
            f"README \"Backup and restore\"), e.g. {outside[0].kind} {outside[0].id} at {outside[0].location}")


def _report_pruned(pruned: dict[str, int], why: str, say: Say) -> None:
    if pruned:
        say(f"removed permission rows {why}: " + ", ".join(f"{table} {count}" for table, count in pruned.items()))


def _cleared_auth_copy(access: StackAccess, layout: StackLayout, names: DatabaseNames, say: Say) -> DatabaseNames:
    """A backup without an auth database replaces the tracking data under the target's permissions,
    keyed by experiment ids and model names that now mean other objects: a copy of the target's auth
    database (users and passwords kept) without those rows takes its place in the swap. Clearing
    rather than refusing: the users keep signing in, nobody gains access to someone else's objects,
    the admin grants again (the original is kept as the replaced database)."""
    _create_scratch(access, names.scratch, layout.owner, template=layout.auth_database)
    pruned = prune_permissions(access, names.scratch, None)
    _report_pruned(pruned, "of the stack's own (the backup has no auth database: their experiment ids and model "
                   "names would now point at the backup's objects)", say)
    return names


def _upload_objects(access: StackAccess, directory: Path, manifest: Manifest, layout: StackLayout,
                    s3_env: dict[str, str], *, progress: _Progress, say: Say) -> None:
    """The backup's objects uploaded: over the stack's keys it also holds (with --replace their bytes
    are in the quarantine), beside the rest (nothing of the stack's is deleted here)."""
    destination = layout.artifacts_destination
    entries = manifest.objects.entries  # checked against objects.tar by check_backup
    say(f"uploading {len(entries)} objects ({sum(entry.bytes for entry in entries)} bytes) to {destination}")
    progress.changed.append(f"objects of the backup were being uploaded to {destination} (over the stack's keys "
                            "it also holds)")
    expected = json.dumps({entry.key: [entry.bytes, entry.sha256] for entry in entries}).encode() + b"\n"
    with open(directory / manifest.objects.file, "rb") as tar:
        run(access.python_command(["-c", script_source(objects.__file__), "import", destination, "--expected-first"],
                                  s3_env),
            f"uploading the objects to {destination}", stdin=HashingReader(tar, prefix=expected))
    progress.changed[-1] = (f"the backup's objects were uploaded to {destination} (over the stack's keys it also "
                            "holds)")


def _quarantine_copy(access: StackAccess, manifest: Manifest, layout: StackLayout, s3_env: dict[str, str], *,
                     stamp: str, progress: _Progress, say: Say) -> None:
    """--replace, before anything is overwritten: a record of what the upload will write over the stack's
    keys (a put-back tells those bytes from ones written since), then every object of the stack copied
    (server side) to a quarantine (ops.quarantine), kept until scripts/restore --purge-replaced."""
    destination = layout.artifacts_destination
    progress.changed.append(f"the objects under {destination} were being copied to a quarantine under "
                            f"{_quarantine_uri(destination, stamp)} (nothing deleted)")
    backup = {entry.key: [entry.bytes, entry.sha256] for entry in manifest.objects.entries}
    out = run(access.python_command(["-c", quarantine.source(), "copy", destination, stamp], s3_env),
              f"copying the objects under {destination} to a quarantine", stdin=json.dumps(backup).encode())
    copied = json.loads(out.decode().strip().splitlines()[-1])
    progress.changed[-1] = (f"the {copied['objects']} objects that were under {destination} are kept under "
                            f"{copied['quarantine']}")
    if copied["objects"]:
        say(progress.changed[-1])


def _prune_others(access: StackAccess, manifest: Manifest, layout: StackLayout, s3_env: dict[str, str], *,
                  stamp: str, progress: _Progress, say: Say) -> None:
    """--replace, after the swap: the quarantine marked swapped (the bucket's own record that the
    databases were replaced), then the stack's objects the backup does not hold deleted (their copies
    are in the quarantine)."""
    destination = layout.artifacts_destination
    progress.changed.append(f"the objects under {destination} the backup does not hold were being deleted "
                            "(each is in the quarantine)")
    out = run(access.python_command(["-c", quarantine.source(), "prune", destination, stamp], s3_env),
              f"deleting the objects under {destination} the backup does not hold",
              stdin=json.dumps([entry.key for entry in manifest.objects.entries]).encode())
    deleted = json.loads(out.decode().strip().splitlines()[-1])["deleted"]
    progress.changed[-1] = f"the {deleted} objects under {destination} the backup does not hold were deleted"
    if deleted:
        say(progress.changed[-1] + " (their copies are in the quarantine)")


def _check_objects(access: StackAccess, manifest: Manifest, layout: StackLayout, s3_env: dict[str, str]) -> None:
    """The listing under the destination must equal the backup's."""
    destination = layout.artifacts_destination
    listed = list_objects(access, destination, s3_env)
    expected = {entry.key: entry.bytes for entry in manifest.objects.entries
                if not entry.key.startswith(quarantine.QUARANTINE_SUFFIX)}  # a root destination's, backed up
    if listed != expected:
        missing = sorted(set(expected) - set(listed))[:3]
        extra = sorted(set(listed) - set(expected))[:3]
        raise OpsError(f"the objects under {destination} differ from the backup after the upload "
                       f"(missing {missing}, not in the backup {extra}, or sizes differ)")


def _refuse_unquarantinable(layout: StackLayout, stamp: str, keys) -> None:
    _, prefix = objects.split_destination(layout.artifacts_destination)
    long = quarantine.unquarantinable(prefix, stamp, keys)
    if long:
        raise RefusedError(
            f"{len(long)} objects under {layout.artifacts_destination} have keys too long to be kept in the quarantine "
            f"(S3 allows {quarantine.MAX_KEY_BYTES} bytes, the quarantine adds "
            f"{len(quarantine.quarantined_key(prefix, stamp, '').encode())}), e.g. {long[0][:80]!r}...: "
            "--replace keeps every object it replaces, so move or delete those by hand first; nothing was changed")


def _quarantine_uri(destination: str, stamp: str) -> str:
    bucket, prefix = objects.split_destination(destination)
    return f"s3://{bucket}/{quarantine.quarantine_root(prefix)}{stamp}/"


def _upgrade(access: StackAccess, manifest: Manifest, revision: Optional[str], facts: ImageFacts, layout: StackLayout,
             upgrade: bool, say: Say) -> bool:
    """The deployment's own steps, as `pulumi up` runs them before the server: the schema upgrade when
    the backup's revision is older than the server's; the auth app's upgrade (which also gives the
    admin the deployed password, mode mlflow) when an auth database was restored. Without `upgrade`
    (rolling back to the image that wrote the backup) neither runs. True when the server can start:
    the tracking schema is at its image's head. `revision`: the one the restored database holds."""
    at_head = revision == facts.head("tracking")
    if not upgrade:
        say("--no-upgrade: the schema stays at the backup's revision " + str(revision))
        return at_head
    if not at_head:
        say(f"upgrading the schema from {revision} to {facts.head('tracking')}")
        run(access.python_command(["-c", render.SCHEMA_UPGRADE_SCRIPT],
                                  {BACKEND_URI_ENV: layout.backend_uri, "PYTHONUNBUFFERED": "1"}),
            "the schema upgrade (mlflow db upgrade)")
    if "auth" in manifest.databases and layout.auth_app in _AUTH_MODES:
        mode = _AUTH_MODES[layout.auth_app]
        env = {render.AUTH_DATABASE_URI_ENV: layout.auth_uri, "PYTHONUNBUFFERED": "1"}
        server_env = access.server_env()
        if mode == "mlflow" and render.AUTH_ADMIN_PASSWORD_ENV in server_env:
            env[render.AUTH_ADMIN_USERNAME_ENV] = _deployed_admin(server_env)
            env[render.AUTH_ADMIN_PASSWORD_ENV] = server_env[render.AUTH_ADMIN_PASSWORD_ENV]
        say("running the auth app's upgrade step")
        run(access.python_command(["-c", render.AUTH_UPGRADE_SCRIPT, render.AUTH_MIGRATIONS[mode]], env),
            "the auth database's upgrade step")
    return True


_ACCESS_QUERIES = {
    "mlflow": {
        "users": "SELECT username, username, '' FROM public.users;\n",
        # A user the restore makes again comes with all of these: named once, above.
        # Not the deployed admin's: the stack sets it from its own secret at every start, with a new salt.
        "the backup's passwords of": "SELECT username || ' ' || password_hash, username, username FROM public.users "
                                     "WHERE username <> :'admin';\n",
        "admin rights of": "SELECT username, username, username FROM public.users WHERE is_admin;\n",
        "roles of": "SELECT u.username || ' ' || r.workspace || ' ' || r.name, u.username || ' (' || r.name || ')', "
                    "u.username FROM public.user_role_assignments a JOIN public.users u ON u.id = a.user_id "
                    "JOIN public.roles r ON r.id = a.role_id;\n",
        "role permissions": "SELECT r.workspace || ' ' || r.name || ' ' || p.resource_type || ' ' "
                            "|| p.resource_pattern || ' ' || p.permission, "
                            "r.name || ': ' || p.permission || ' on ' || p.resource_type || ' ' "
                            "|| p.resource_pattern, '' FROM public.role_permissions p "
                            "JOIN public.roles r ON r.id = p.role_id;\n"},
    "oidc": {
        "active users": "SELECT username, username, '' FROM public.users WHERE active;\n",
        "access tokens of": "SELECT u.username || ' ' || t.name || ' ' || t.token_hash, "
                            "u.username || ' (' || t.name || ')', "
                            "'' FROM public.user_tokens t JOIN public.users u ON u.id = t.user_id "
                            "WHERE u.active AND t.expires_at > now();\n",
        "SCIM tokens": "SELECT name || ' ' || token_hash, name, '' FROM public.scim_tokens WHERE revoked_at IS NULL "
                       "AND (expires_at IS NULL OR expires_at > now());\n"},
}
"""What lets someone in, per auth mode, compared between the restored and the replaced auth database:
each row (what identifies the grant itself, a token or password by its hash; how it is named; whose
it is, when what the first query names implies it)."""
_HOLDERS_SQL = ("SELECT DISTINCT u.username FROM public.user_tokens t JOIN public.users u ON u.id = t.user_id "
                "WHERE u.active AND t.expires_at > now() ORDER BY u.username;\n")


def _say_re_enabled(access: StackAccess, layout: StackLayout, mode: str, replaced: str, say: Say) -> None:
    """With --replace, what the restore lets in again that the stack had taken away since the backup
    (a user deleted or deactivated, a token deleted or rotated, a password changed, an admin right or
    role taken away), by name, compared with the replaced auth database row by row (review 20, F1;
    review 21, F1: a user's other, newer token no longer hides a restored one). Never fails the
    restore: it is done by then."""
    back: list[str] = []
    named: set[str] = set()  # the users the first query names
    try:
        admin = {"admin": _deployed_admin(access.server_env())}
        for index, (what, query) in enumerate(_ACCESS_QUERIES[mode].items()):
            before = {row[0] for row in _text_rows(access, replaced, query, 3, admin)}
            rows = _text_rows(access, layout.auth_database, query, 3, admin)
            fresh = [(label, user) for key, label, user in rows if key not in before]
            if index == 0:
                named = {label for label, _ in fresh}
            again = sorted({label for label, user in fresh if user not in named})
            if again:
                back.append(f"{what} {_named(again)}")
    except OpsError as error:
        say(f"could not compare who the restored auth database lets in with the replaced one ({error}): "
            "check its users and tokens")
        return
    if back:
        say(f"the restore lets in again what {access.description} had taken away since the backup: {'; '.join(back)}"
            " (deactivate or delete them again, change those passwords, if they should stay out)")


def _say_restored_access(access: StackAccess, layout: StackLayout, mode: str, say: Say) -> None:
    """Who can get in after the restore, as the backup had it, said by name: the backup's admins besides
    the deployed one (mode mlflow: another stack's after --from-other-stack, this one's before
    auth.adminUsername was renamed; review 15, F4), and in mode oidc its active admins and the users
    holding unexpired access tokens: a user offboarded (deactivated) since the backup is back (review
    19, F1). Never fails the restore: it is done by then."""
    try:
        if mode == "mlflow":
            admin = _deployed_admin(access.server_env())
            others = [row[0] for row in _text_rows(
                access, layout.auth_database,
                "SELECT username FROM public.users WHERE is_admin AND username <> :'admin' ORDER BY username;\n", 1,
                variables={"admin": admin})]
            if others:
                say(f"the backup's users {_named(others)} are admins of {access.description} too, signing in with "
                    f"the passwords the backup holds: if they should not be, the admin ({admin}) takes it away "
                    "(AuthServiceClient.update_user_admin) or deletes them")
            return
        admins = [row[0] for row in _text_rows(access, layout.auth_database, "SELECT username FROM public.users "
                                               "WHERE is_admin AND active ORDER BY username;\n", 1)]
        holders = [row[0] for row in _text_rows(access, layout.auth_database, _HOLDERS_SQL, 1)]
    except OpsError as error:
        say(f"could not list who the restored auth database lets in ({error}): check its admins and tokens")
        return
    if admins or holders:
        say(f"as the backup had them, {access.description} now has the admins {_named(admins) or '(none)'} and "
            f"the access tokens of {_named(holders) or '(nobody)'}: a user offboarded since the backup is "
            "active again; deactivate them again in the plugin's admin page")


# --- the quarantines of --replace runs ------------------------------------------------------------------


def _listing(access: StackAccess, layout: StackLayout) -> dict:
    """ops.quarantine list: {"quarantines": {stamp: [objects, bytes]}, "recorded": [stamps with a record],
    "swapped": [stamps marked swapped], "put_back": [stamps whose put-back finished]}."""
    out = run(access.python_command(["-c", quarantine.source(), "list", layout.artifacts_destination],
                                    layout.s3_env(access)), "listing the quarantines of earlier restores")
    return json.loads(out.decode().strip().splitlines()[-1])


def _database_names(access: StackAccess) -> dict[str, str]:
    """Every database's name -> its comment ("" for none)."""
    rows = psql(access, "postgres", "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') "
                                    "FROM pg_database;\n")
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows}


def _swapped(layout: StackLayout, stamp: str, databases: dict[str, str], marked: Sequence[str] = ()) -> bool:
    """The restore of `stamp` replaced the databases: its quarantine is marked swapped (`marked`, from the
    listing), a `<name>__replaced_<stamp>` database exists, or a database of the stack carries its
    SWAPPED_MARK. Any one is enough: a database's comment is lost when it is moved with pg_dump and
    pg_restore without --create, the replaced databases when they are dropped (review 5, F2)."""
    names = (layout.database, layout.auth_database)
    return (stamp in marked
            or any(_beside(name, REPLACED_TAG + stamp) in databases for name in names)
            or any(SWAPPED_MARK + stamp in databases.get(name, "").split() for name in names))


def stamp_swapped(access: StackAccess, layout: StackLayout, stamp: str, listing: Optional[dict] = None) -> bool:
    listing = _listing(access, layout) if listing is None else listing
    return _swapped(layout, stamp, _database_names(access), listing.get("swapped", ()))


def unswapped(access: StackAccess, layout: StackLayout, listing: Optional[dict] = None) -> dict[str, list[int]]:
    """The quarantines whose restore never replaced the databases (killed between its upload and its
    swap): the stack keeps its own databases while keys it shares with that backup may hold the
    backup's bytes; the stack's are in the quarantine."""
    listing = _listing(access, layout) if listing is None else listing
    found = listing["quarantines"]
    databases = _database_names(access) if found else {}
    return {stamp: size for stamp, size in found.items() if not _swapped(layout, stamp, databases, listing["swapped"])}


def _refuse_a_stamp_in_use(access: StackAccess, layout: StackLayout, stamp: str, listing: dict) -> None:
    """Two restores one second apart, or a clock set back, would share a stamp: the second one's
    quarantine and record would overwrite the first's, its failure purge them (review 14), and a database
    still commented swapped by the first would make the second's quarantine pass for swapped (review 15)."""
    if stamp in listing["quarantines"] or _swapped(layout, stamp, _database_names(access)):
        raise RefusedError(f"an earlier restore left a quarantine or database with this restore's stamp {stamp} (the "
                           "clock was set back?): run it again in a second; nothing was changed")


def _put_back_hint(access: StackAccess, layout: StackLayout, stamp: str, size: list[int],
                   put_back_done: bool = False) -> str:
    if put_back_done:
        return (f"the stack's bytes were put back from the quarantine "
                f"{_quarantine_uri(layout.artifacts_destination, stamp)} ({size[0]} objects), which is left: remove it "
                f"first: scripts/restore --put-back {stamp}")
    return (f"a restore --replace (quarantine {_quarantine_uri(layout.artifacts_destination, stamp)}, {size[0]} "
            f"objects) stopped before it replaced the databases: {access.description} keeps its own databases, "
            f"but keys it shares with that backup may hold the backup's bytes. Put the stack's bytes back first: "
            f"scripts/restore --put-back {stamp}")


def refuse_unswapped(access: StackAccess, layout: StackLayout, listing: Optional[dict] = None) -> None:
    """RefusedError naming the command that puts the stack's bytes back, before anything changes."""
    listing = _listing(access, layout) if listing is None else listing
    for stamp, size in sorted(unswapped(access, layout, listing).items()):
        hint = _put_back_hint(access, layout, stamp, size, stamp in listing.get("put_back", ()))
        raise RefusedError(f"{hint}, then run this again; nothing was changed")


def put_back_objects(access: StackAccess, layout: StackLayout, s3_env: dict[str, str], stamp: str,
                     every_key: bool = False, undo: bool = False) -> dict[str, int]:
    """ops.quarantine put-back: the quarantined objects whose key still holds what the upload wrote
    (`every_key`: whatever differs) copied back; the quarantine stays (purge_quarantine), marked put
    back unless `undo` (a failing restore's own, see ops.quarantine.put_back)."""
    argv = ["-c", quarantine.source(), "put-back", layout.artifacts_destination, stamp,
            *(["--every-key"] * every_key), *(["--undo"] * undo)]
    out = run(access.python_command(argv, s3_env), f"putting the stack's objects back from the quarantine {stamp}")
    return json.loads(out.decode().strip().splitlines()[-1])


def purge_quarantine(access: StackAccess, layout: StackLayout, s3_env: dict[str, str], stamp: str) -> int:
    """ops.quarantine purge: the quarantine `stamp`, its upload record and its mark deleted; returns how
    many quarantined objects were deleted."""
    out = run(access.python_command(["-c", quarantine.source(), "purge", layout.artifacts_destination, stamp],
                                    s3_env), f"deleting the quarantine {stamp}")
    return int(json.loads(out.decode().strip().splitlines()[-1])["deleted"])


def put_back(access: StackAccess, stamp: str, *, every_key: bool = False, say: Say = _stderr) -> dict[str, int]:
    """`--put-back STAMP`: after a --replace killed before its swap, the stack gets its own bytes back
    (the quarantine `stamp` holds them), the MLflow server is started (a killed restore leaves it
    stopped; one still serving is stopped while keys are rewritten) and only then the quarantine removed:
    a put-back killed before the start leaves it, so the same command runs again (review 5, F3)."""
    if not _STAMP_PATTERN.fullmatch(stamp):
        raise RefusedError(f"{stamp!r} is not a restore's stamp (like 20250101T000000Z); nothing was changed")
    layout = StackLayout.read(access)
    with maintenance_lock(access, "restore") as lock:
        listing = _listing(access, layout)
        if stamp_swapped(access, layout, stamp, listing):
            raise RefusedError(f"the restore of {stamp} replaced the databases: {access.description} holds the "
                               "backup's, whose objects are in place; its quarantine holds what was replaced "
                               "(scripts/restore --purge-replaced removes it). Nothing was changed")
        if stamp not in listing["quarantines"]:
            raise RefusedError(f"no quarantine {_quarantine_uri(layout.artifacts_destination, stamp)}: nothing to put "
                               "back; nothing was changed")
        done = stamp in listing.get("put_back", ())  # copying again would undo what was written since (review 15)
        if not done and listing["quarantines"][stamp][0] and stamp not in listing["recorded"] and not every_key:
            raise RefusedError(  # checked before the server stops (review 4, F3)
                f"the quarantine {stamp} has no readable record of which keys its restore's upload wrote (made before "
                "restore kept one, damaged, or set aside by a failed restore that found keys it had not recorded), so "
                "keys written since cannot be told apart: scripts/restore "
                f"--put-back {stamp} --every-key puts back every quarantined object whose key holds other bytes now, "
                "newer ones included. Nothing was changed")
        result: Optional[dict[str, int]] = {"put_back": 0, "kept": 0} if done else None
        starting = started = False
        try:
            if result is None:  # a finished one's rerun leaves a running server be (review 20, F3a)
                access.stop_server()  # inside: an interrupt while it stops says what to run (review 20, F2)
                result = put_back_objects(access, layout, layout.s3_env(access), stamp, every_key)
            starting = True
            access.start_server()  # before anything is said: a closed terminal must not leave it stopped
            started = True
        except (OpsError, KeyboardInterrupt) as error:  # KeyboardInterrupt: Ctrl-C, a closed terminal, the lock lost
            if started:
                raise
            stopped = (f"was starting and may not be serving yet (the stack's bytes are back): run scripts/restore "
                       f"--put-back {stamp} again to make sure it runs" if starting else  # review 19, F2
                       f"is stopped, the stack's bytes back: run scripts/restore --put-back {stamp} again to start it"
                       if result is not None else
                       f"{STAYS_STOPPED}: run scripts/restore --put-back {stamp} again")
            if isinstance(error, OpsError):
                raise OpsError(f"{error}; the MLflow server {stopped}") from error
            why = "the maintenance lock was lost" if isinstance(error, LockLost) else "interrupted"
            raise _StoppedPuttingBack(f"stopped: {why}; the MLflow server {stopped}") from error  # review 15, F2
        # Only now: a put-back killed before the start finds its quarantine and is run again (review 5, F3).
        return _remove_put_back_quarantine(access, layout, stamp, result, done, lock, say)


class _StoppedPuttingBack(OpsError):
    exit_code = 130


def _remove_put_back_quarantine(access: StackAccess, layout: StackLayout, stamp: str, result: dict[str, int],
                                done_before: bool, lock: HeldLock, say: Say) -> dict[str, int]:
    """The last step of a put-back, once the server runs: its quarantine removed. Marked put back, a
    quarantine left by a failure here is only removed by the rerun, never copied from again."""
    try:
        lock.confirm("removing the quarantine")
        purge_quarantine(access, layout, layout.s3_env(access), stamp)
    except OpsError as error:
        raise OpsError(f"{error}: the stack's bytes are back and the MLflow server runs, but the quarantine "
                       f"{stamp} is left; scripts/restore --put-back {stamp} again removes it") from error
    if done_before:
        say(f"the stack's bytes were put back from the quarantine {stamp} before; removed it (the MLflow server runs)")
        return result
    say(f"put the stack's bytes back into {result['put_back']} objects the restore of {stamp} had overwritten (of "
        f"{result['kept']} it had quarantined), removed its quarantine and started the MLflow server; the backup's "
        f"objects the stack did not hold are left under {layout.artifacts_destination}"
        + (f"; {result['changed_since']} keys written or deleted since that restore kept what they hold now"
           if result.get("changed_since") else ""))
    return result


# --- what --replace kept --------------------------------------------------------------------------------


def purge_replaced(access: StackAccess, *, say: Say = _stderr) -> dict[str, int]:
    """Drop the databases `--replace` kept (`<name>__replaced_<stamp>`) and delete its quarantined
    objects; a quarantine whose restore never replaced the databases is kept (it holds the stack's
    only copy of the keys that restore's upload overwrote) and named with the --put-back that ends it
    (also once its put-back finished: that command starts a server a failed restore left stopped, review 18)."""
    layout = StackLayout.read(access)
    prefixes = [replaced_prefix(name) for name in (layout.database, layout.auth_database)]
    env = layout.s3_env(access)
    with maintenance_lock(access, "restore") as lock:
        databases = _database_names(access)
        names = sorted(databases)
        doomed = [name for name in names if any(name.startswith(prefix) and len(name) == len(prefix) + _STAMP_LENGTH
                                                for prefix in prefixes)]
        deleted = 0
        listing = _listing(access, layout)
        for stamp, size in sorted(listing["quarantines"].items()):
            if not _swapped(layout, stamp, databases, listing["swapped"]):  # its --put-back also starts the server
                say(f"kept: {_put_back_hint(access, layout, stamp, size, stamp in listing.get('put_back', ()))}")
                continue
            # objects first: a purge stopped in between leaves a database without quarantine, never the reverse
            deleted += purge_quarantine(access, layout, env, stamp)
        say(f"deleted {deleted} quarantined objects of {layout.artifacts_destination}")
        if doomed:
            lock.confirm("dropping the replaced databases")  # review 19, F3: not after the lock was lost
        for name in doomed:
            psql(access, "postgres", 'DROP DATABASE :"name" WITH (FORCE);\n', variables={"name": name},
                 what=f"dropping the replaced database {name}")
            say(f"dropped database {name}")
    return {"databases": len(doomed), "objects": deleted}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/restore",
        description="Restore a backup made by scripts/backup into the local stack. Refuses a backup from a newer "
                    "MLflow schema than the server's, of another stack, and a stack holding data unless --replace.")
    parser.add_argument("directory", metavar="DIR", type=Path, nargs="?")
    parser.add_argument("--replace", action="store_true",
                        help="replace the stack's data (databases, users and permissions, the objects under its "
                             "artifacts destination); what is replaced is kept until --purge-replaced")
    parser.add_argument("--no-upgrade", action="store_true",
                        help="leave the schema at the backup's revision (rolling back to the MLflow that wrote it); "
                             "the server stays stopped until that MLflow is deployed")
    parser.add_argument("--from-other-stack", action="store_true",
                        help="accept a backup whose manifest names another stack or artifacts destination")
    parser.add_argument("--purge-replaced", action="store_true",
                        help="drop the databases and delete the objects earlier --replace runs kept (no DIR)")
    parser.add_argument("--put-back", metavar="STAMP",
                        help="after a --replace killed before it replaced the databases: put the stack's own bytes "
                             "back from the quarantine STAMP (the refusal of the next restore names it; no DIR)")
    parser.add_argument("--every-key", action="store_true",
                        help="with --put-back, for a quarantine without its record: put back every quarantined "
                             "object whose key holds other bytes, also bytes written since")
    parser.add_argument("--prefix", default="mlflow-local",
                        help="the stack's Docker name prefix, <instance>-<stack> (default: mlflow-local)")
    args = parser.parse_args(argv)
    if [args.directory is not None, args.purge_replaced, args.put_back is not None].count(True) != 1:
        parser.error("give DIR to restore, or --purge-replaced alone, or --put-back STAMP alone")
    if args.every_key and args.put_back is None:
        parser.error("--every-key goes with --put-back STAMP")
    hang_up_and_terminate_as_interrupt()
    try:
        from ops.local_stack import LocalAccess

        if args.purge_replaced:
            purge_replaced(LocalAccess.find(args.prefix))
            return 0
        if args.put_back is not None:
            put_back(LocalAccess.find(args.prefix), args.put_back, every_key=args.every_key)
            return 0
        Manifest.load(args.directory)  # refuse before looking for Docker
        restore(LocalAccess.find(args.prefix), args.directory, replace=args.replace, upgrade=not args.no_upgrade,
                other_stack=args.from_other_stack)
        return 0
    except OpsError as error:
        _quietly(_stderr)(str(error))
        return error.exit_code
    except OSError as error:  # a full disk, an unreadable file, a closed terminal: what changed was said before
        _quietly(_stderr)(f"stopped: {error}")
        return 1
    except LockLost:  # --put-back and --purge-replaced (a restore says more itself): both can be run again
        _quietly(_stderr)("stopped: the maintenance lock was lost (PostgreSQL restarted?), so that this cannot "
                          "overlap another backup, restore or gc; run the same command again")
        return 1
    except KeyboardInterrupt:
        _quietly(_stderr)("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
