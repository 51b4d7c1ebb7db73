"""A backup directory: its files, its manifest, and the checks both backup and restore make.

    DIR/database.dump        pg_dump -Fc of the tracking database
    DIR/auth-database.dump   pg_dump -Fc of the auth app's database, when the stack has one
    DIR/objects.tar          the objects under the artifacts destination (ops.objects: pax tar,
                             member name = key below the destination, sha256 in a pax header)
    DIR/external-objects.tar the objects of artifact locations outside the destination that the
                             server's key could read (member name = BUCKET/KEY), when there are any
    DIR/manifest.json        written last: a directory without it is no (complete) backup

The manifest's facts about a dump (its schema revision, rows per table) are read back from the dump
itself (`pg_restore -f -`, counting COPY rows), not queried beside it: they describe exactly what
the dump holds, also while MLflow keeps writing, and reading them proves the dump readable end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping, Optional

from ops import OpsError, RefusedError, mlflow_facts
from ops.access import StackAccess, output_lines, psql, run, script_source
from ops.objects import LAST_MODIFIED_HEADER, SHA256_HEADER, member_problem

FORMAT = 1
MANIFEST = "manifest.json"
DUMP_FILES = {"tracking": "database.dump", "auth": "auth-database.dump"}
OBJECTS_FILE = "objects.tar"
EXTERNAL_OBJECTS_FILE = "external-objects.tar"
HEADLINE_TABLES = {
    "experiments": "experiments", "runs": "runs", "metrics": "metrics", "params": "params", "tags": "tags",
    "registered_models": "registered_models", "model_versions": "model_versions",
}
"""manifest count -> table (metrics: every logged value, the full histories)."""

# Rows a freshly deployed stack holds before anyone used it: they do not make a target "non-empty".
_SERVER_STATE_TABLES = {"alembic_version", "scheduler_leases", "job_locks"}
_FRESH_ROWS_SQL = {
    "experiments": "SELECT count(*) FROM public.experiments WHERE experiment_id <> 0",
    "workspaces": "SELECT count(*) FROM public.workspaces WHERE name <> 'default'",
}

_COPY = re.compile(r'^COPY (?:("[^"]+"|[^ ."]+)\.)?("[^"]+"|[^ ."(]+)[ (]')


# --- the manifest ----------------------------------------------------------------------------------


@dataclass
class DatabaseBackup:
    """One database's dump and what it holds."""

    file: str
    name: str
    schema_revision: Optional[str]
    tables: dict[str, int]
    """rows per table of schema public, counted in the dump"""
    bytes: int
    sha256: str
    app: Optional[str] = None
    """the auth app the database belongs to (--app-name), for the auth database"""


@dataclass
class ObjectEntry:
    key: str
    """the key below the artifacts destination"""
    bytes: int
    sha256: str
    last_modified: Optional[str] = None
    """the store's LastModified (ISO 8601), in backups written since issue 28"""


@dataclass
class OutsideLocation:
    """An artifact location the dump refers to outside the artifacts destination (issue 28)."""

    kind: str
    """experiment, run, logged_model or model_version"""
    id: str
    location: str
    backed_up: bool
    """its objects are in external-objects.tar"""
    detail: str
    """e.g. "3 objects, 1024 bytes" or why it was not backed up"""


@dataclass
class ObjectsBackup:
    file: str
    bytes: int
    sha256: str
    entries: list[ObjectEntry]


@dataclass
class Manifest:
    created_at: str
    source: str
    mlflow_version: str
    schema_revision: str
    artifacts_destination: str
    counts: dict[str, int]
    databases: dict[str, DatabaseBackup]
    """"tracking", and "auth" when the stack has an auth database"""
    objects: ObjectsBackup
    format: int = FORMAT
    tool: dict[str, str] = field(default_factory=lambda: {"name": "mlflow-platform ops.backup"})
    # Since issue 28 (absent from older manifests, read as these defaults):
    dump_started_at: Optional[str] = None
    """when the tracking dump began, by the database server's clock (ISO 8601, UTC)"""
    objects_extra: list[str] = field(default_factory=list)
    """keys last modified after the dump began: most likely written for runs the dump does not hold"""
    objects_vanished: list[str] = field(default_factory=list)
    """keys listed but deleted before they could be read (not in objects.tar)"""
    objects_skipped: list[dict[str, str]] = field(default_factory=list)
    """{"key": s3:// URI, "why"} of objects NOT backed up: no tar member can hold them (a folder marker)"""
    outside_locations: list[OutsideLocation] = field(default_factory=list)
    external_objects: Optional[ObjectsBackup] = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def load(cls, directory: Path) -> "Manifest":
        path = directory / MANIFEST
        if not path.is_file():
            raise RefusedError(f"{path} not found: {directory} is not a complete backup (the manifest is written last)")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("format") != FORMAT:
                raise RefusedError(f"{path}: backup format {raw.get('format')!r}, this tool reads format {FORMAT}")
            objects = raw["objects"]
            if "tracking" not in raw["databases"] or set(raw["databases"]) - set(DUMP_FILES):
                raise KeyError(f"databases {sorted(raw['databases'])}: a backup holds 'tracking' and may hold 'auth'")
            return cls(
                created_at=raw["created_at"], source=raw["source"], mlflow_version=raw["mlflow_version"],
                schema_revision=raw["schema_revision"], artifacts_destination=raw["artifacts_destination"],
                counts={k: int(v) for k, v in raw["counts"].items()},
                databases={role: DatabaseBackup(**db) for role, db in raw["databases"].items()},
                objects=_objects_backup(objects),
                format=raw["format"], tool=raw.get("tool", {}),
                dump_started_at=raw.get("dump_started_at"), objects_extra=list(raw.get("objects_extra", [])),
                objects_vanished=list(raw.get("objects_vanished", [])),
                objects_skipped=[dict(item) for item in raw.get("objects_skipped", [])],
                outside_locations=[OutsideLocation(**item) for item in raw.get("outside_locations", [])],
                external_objects=_objects_backup(raw["external_objects"]) if raw.get("external_objects") else None,
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise RefusedError(f"{path} is not a manifest of this tool ({type(error).__name__}: {error})") from None


def _objects_backup(raw: Mapping[str, Any]) -> ObjectsBackup:
    return ObjectsBackup(file=raw["file"], bytes=raw["bytes"], sha256=raw["sha256"],
                         entries=[ObjectEntry(**entry) for entry in raw["entries"]])


def headline_counts(tables: Mapping[str, int], entries: list[ObjectEntry]) -> dict[str, int]:
    counts = {name: tables.get(table, 0) for name, table in HEADLINE_TABLES.items()}
    counts["objects"] = len(entries)
    counts["bytes"] = sum(entry.bytes for entry in entries)
    return counts


# --- files -----------------------------------------------------------------------------------------


def create_file(path: Path) -> IO[bytes]:
    """A new file only its owner reads: a backup holds password hashes and encrypted secrets."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _HashingReader:
    """Reads a file and hashes every byte read (one pass over objects.tar: whole-file and per-member)."""

    def __init__(self, handle: IO[bytes]):
        self.handle = handle
        self.digest = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        self.bytes += len(data)
        return data


def read_objects_tar(path: Path) -> tuple[list[ObjectEntry], str, int]:
    """(entries, sha256 of the file, its size): every member's data hashed and checked against the
    sha256 its pax header carries. RefusedError on anything that is not such a tar, and on a member
    name that is no key below the destination (ops.objects.member_problem)."""
    entries: list[ObjectEntry] = []
    seen: set[str] = set()
    with open(path, "rb") as handle:
        reader = _HashingReader(handle)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    problem = member_problem(member.name, seen)
                    if problem:
                        raise RefusedError(f"{path}: member {member.name!r} {problem}: it is no object key below the "
                                           "artifacts destination; nothing was changed")
                    source = tar.extractfile(member) if member.isreg() else None
                    if source is None:
                        raise RefusedError(f"{path}: member {member.name!r} is not a regular file")
                    digest = hashlib.sha256()
                    while chunk := source.read(1024 * 1024):
                        digest.update(chunk)
                    expected = member.pax_headers.get(SHA256_HEADER)
                    if digest.hexdigest() != expected:
                        raise RefusedError(f"{path}: object {member.name!r} has sha256 {digest.hexdigest()}, "
                                           f"its header says {expected}: the file is damaged")
                    entries.append(ObjectEntry(key=member.name, bytes=member.size, sha256=digest.hexdigest(),
                                               last_modified=member.pax_headers.get(LAST_MODIFIED_HEADER)))
            while reader.read(1024 * 1024):  # the tar's padding after its end marker
                pass
        except tarfile.TarError as error:
            raise RefusedError(f"{path} is not a readable tar ({error}): the file is damaged") from None
    return entries, reader.digest.hexdigest(), reader.bytes


# --- databases ---------------------------------------------------------------------------------------


def database_exists(access: StackAccess, name: str) -> bool:
    rows = psql(access, "postgres", "SELECT 1 FROM pg_database WHERE datname = :'name';\n", variables={"name": name})
    return bool(rows)


REVISION_TABLES = {"tracking": ("alembic_version",), "auth": ("alembic_version_auth", "alembic_version")}
"""Where Alembic keeps each database's schema revision: MLflow's auth app names its table
alembic_version_auth, mlflow-oidc-auth uses alembic_version (in the auth database of its own)."""


def dump_contents(access: StackAccess, path: Path, what: str,
                  revision_tables: tuple[str, ...] = REVISION_TABLES["tracking"]
                  ) -> tuple[dict[str, int], Optional[str]]:
    """(rows per table of schema public, the schema's Alembic revision), read from a custom-format dump
    by pg_restore writing it as SQL: each COPY row is one line (newlines in values are escaped)."""
    tables: dict[str, int] = {}
    revisions: dict[str, list[str]] = {}
    in_copy, current = False, None  # inside a COPY block; its table when in schema public
    with open(path, "rb") as dump, output_lines(access.postgres_command(["pg_restore", "-f", "-"]),
                                                f"reading {what}", stdin=dump) as lines:
        for raw in lines:
            if in_copy:
                if raw == b"\\.\n":
                    in_copy, current = False, None
                elif current is not None:
                    tables[current] += 1
                    if current in revision_tables:
                        revisions.setdefault(current, []).append(raw.decode().split("\t", 1)[0].rstrip("\n"))
            elif raw.startswith(b"COPY ") and raw.rstrip().endswith(b"FROM stdin;"):
                in_copy = True
                match = _COPY.match(raw.decode(errors="replace"))
                if match is None:
                    raise OpsError(f"{what}: cannot read the table name of {raw[:80]!r}")
                if match.group(1) in (None, "public", '"public"'):
                    current = match.group(2).strip('"')
                    tables[current] = 0
    for table in revision_tables:
        if table in revisions:
            if len(revisions[table]) != 1:
                raise OpsError(f"{what}: {table} holds {len(revisions[table])} revisions; expected one")
            return tables, revisions[table][0]
    return tables, None


_COPY_COLUMNS = re.compile(r"\((.*)\) FROM stdin;$")
_COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _unescape(match: "re.Match[str]") -> str:
    sequence = match.group(1)
    if sequence in _COPY_ESCAPES:
        return _COPY_ESCAPES[sequence]
    if sequence[0] == "x" and len(sequence) > 1:
        return chr(int(sequence[1:], 16))
    if sequence[0] in "01234567":
        return chr(int(sequence, 8))
    return sequence


def _copy_value(raw: str) -> Optional[str]:
    """One field of COPY's text format: \\N is NULL, backslash escapes decoded."""
    if raw == "\\N":
        return None
    return re.sub(r"\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)", _unescape, raw)


def dump_rows(access: StackAccess, path: Path, what: str,
              tables: Mapping[str, tuple[str, ...]]) -> dict[str, list[tuple]]:
    """Chosen columns of chosen tables (schema public), read from a custom-format dump: pg_restore
    writes only those tables' data (--data-only --table), so this reads what the dump holds, not
    the live database."""
    found: dict[str, list[tuple]] = {table: [] for table in tables}
    argv = ["pg_restore", "--data-only", "--schema=public", *[f"--table={table}" for table in tables], "-f", "-"]
    current: Optional[tuple[str, list[int]]] = None
    with open(path, "rb") as dump, output_lines(access.postgres_command(argv), f"reading {what}", stdin=dump) as lines:
        for raw in lines:
            line = raw.decode().rstrip("\n")
            if current is not None:
                if line == "\\.":
                    current = None
                else:
                    fields = line.split("\t")
                    found[current[0]].append(tuple(_copy_value(fields[index]) for index in current[1]))
            elif line.startswith("COPY ") and line.endswith("FROM stdin;"):
                table, columns = _copy_table(line), _COPY_COLUMNS.search(line)
                if table in tables and columns is not None:
                    names = [name.strip().strip('"') for name in columns.group(1).split(",")]
                    current = (table, [names.index(column) for column in tables[table]])
    return found


def _copy_table(line: str) -> Optional[str]:
    match = _COPY.match(line)
    return match.group(2).strip('"') if match else None


_COUNT_TABLES_SQL = r"""
SELECT format('SELECT %L, count(*) FROM public.%I', c.relname, c.relname)
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' ORDER BY c.relname \gexec
"""


def table_counts(access: StackAccess, database: str) -> dict[str, int]:
    """Rows per table of schema public, counted by the database."""
    return {name: int(count) for name, count in psql(access, database, _COUNT_TABLES_SQL)}


def foreign_owned(access: StackAccess, database: str, owner: str) -> list[str]:
    """Relations in schema public not owned by MLflow's role (after a restore there must be none)."""
    rows = psql(access, database, "SELECT c.relname || ' (' || pg_get_userbyid(c.relowner) || ')' FROM pg_class c "
                "WHERE c.relnamespace = 'public'::regnamespace AND pg_get_userbyid(c.relowner) <> :'owner' "
                "ORDER BY 1;\n", variables={"owner": owner})
    return [row[0] for row in rows]


def user_data(access: StackAccess, database: str) -> dict[str, int]:
    """Rows beyond what a freshly deployed stack holds (the Default experiment, the default workspace,
    the schema revision, the server's own scheduling state): empty when nobody used the stack."""
    if not database_exists(access, database):
        return {}
    counts = table_counts(access, database)
    found: dict[str, int] = {}
    for table, count in counts.items():
        if table in _SERVER_STATE_TABLES or not count:
            continue
        if table in _FRESH_ROWS_SQL:
            count = int(psql(access, database, _FRESH_ROWS_SQL[table] + ";\n")[0][0])
        if count:
            found[table] = count
    return found


# --- the server image ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFacts:
    """What the server's image knows (ops.mlflow_facts): its MLflow and the schema histories."""

    mlflow_version: str
    histories: dict[str, dict[str, list[str]]]

    def knows(self, history: str, revision: Optional[str]) -> bool:
        return revision is not None and revision in self.histories.get(history, {}).get("revisions", [])

    def head(self, history: str) -> Optional[str]:
        heads = self.histories.get(history, {}).get("heads", [])
        return heads[0] if len(heads) == 1 else None


def image_facts(access: StackAccess) -> ImageFacts:
    out = run(access.python_command(["-c", script_source(mlflow_facts.__file__)], {}),
              "reading the MLflow version of the server's image")
    try:
        raw: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return ImageFacts(mlflow_version=raw["mlflow_version"], histories=raw["histories"])
    except (IndexError, KeyError, ValueError):
        raise OpsError("the server's image answered no MLflow version (ops.mlflow_facts printed no JSON)") from None
