"""What a move does, read from the source copy alone (no stack, no network): every artifact location
classified and rewritten to the stack's layout, the files to upload with their destinations, what is
missing on disk and what is left where it is.

`plan_move` reads the private copy; `apply_rewrites` writes the new locations into that copy (never
the user's file), inside one SQLite transaction, before the database step copies it.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path

from migration.errors import RefusedError
from migration.locations import (DirMove, Place, experiment_root, local_place, rewrite_inside, served_path,
                                 served_uri)
from migration.sqlite import table_names

READY = 2  # logged_models.status of a model whose files were all logged (LoggedModelStatus.READY.to_int())
TRACE_LOCATION_TAG = "mlflow.artifactLocation"
TRACE_SPANS_TAG = "mlflow.trace.spansLocation"
DATASET_LOCATION_KEYS = ("uri", "path", "url", "location", "source_uri")

# Ids as MLflow writes them; anything else (a crafted or damaged database: SQLite's loose types keep it) would
# name another place on the stack (`../workspaces/teamb`), so the plan refuses it.
EXPERIMENT_ID = re.compile(r"[0-9]+")
ENTITY_ID = re.compile(r"[A-Za-z0-9_-]+")  # run, logged model and trace ids
# MLflow's own rule (mlflow/store/workspace/abstract_store.py, WorkspaceNameValidator): 2-63 characters,
# lowercase alphanumerics with inner hyphens, a few reserved names.
WORKSPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
RESERVED_WORKSPACES = {"workspaces", "api", "ajax-api", "static-files"}
# Characters a file name cannot carry to the stack: MLflow's client puts the name into the URL unquoted (`?`
# starts a query, `#` a fragment: the file lands under a shorter name), the server decodes `%` repeatedly
# (`%41` becomes `A`) and refuses `#`, and the stack's Nginx refuses any `%` left after its own decoding
# (components/render/proxy.py, _refuse_empty_artifact_path); control characters are stripped or refused on
# the way; names that are not UTF-8 cannot be put into a URL at all.
UNSENDABLE = re.compile(r"[%?#\x00-\x1f\x7f\udc80-\udcff]")


def valid_workspace(name: str) -> bool:
    return name == "default" or (2 <= len(name) <= 63 and WORKSPACE_NAME.fullmatch(name) is not None
                                 and name not in RESERVED_WORKSPACES)


def normalised_dest(dest: str) -> bool:
    """A destination under the stack's artifact root: relative, no empty, `.` or `..` segment."""
    return (not dest.startswith("/") and posixpath.normpath(dest) == dest
            and all(part not in ("", ".", "..") for part in dest.split("/")))


@dataclass(frozen=True)
class Rewrite:
    """One stored value and what it becomes. `key` selects the row (its primary key values); `json_key`
    names the field inside a JSON value (dataset sources)."""

    table: str
    column: str
    key: tuple
    old: str
    new: str | None  # None: set to NULL (a workspace's laptop artifact root: the stack's default applies)
    json_key: str | None = None


@dataclass(frozen=True)
class PlannedFile:
    source: Path  # absolute local path
    dest: str  # path under the stack's artifact root: 1/<run id>/artifacts/a/b.txt
    size: int
    mtime_ns: int
    # the file as planned (lstat of the file, or stat of a link's target): the upload opens `real` without
    # following a link and sends it only if it is still this very file (device, inode, size)
    dev: int
    ino: int
    real: Path | None = None  # the path to open: `source`, or the target a link inside the root resolved to
    # the folder (resolved) the file must lie in: the upload checks the real path of the descriptor it opened
    # (a parent folder swapped for a link after the walk is followed by open(2); O_NOFOLLOW guards only the name)
    root: Path | None = None
    # that folder's (st_dev, st_ino), taken once when it was walked: the check accepts a real path spelled
    # otherwise (macOS F_GETPATH answers a case-insensitive volume's on-disk spelling) when one of its folders
    # is this very folder; a root swapped after the plan is another folder
    root_id: tuple[int, int] | None = None

    @property
    def opened(self) -> Path:
        return self.real or self.source


@dataclass(frozen=True)
class Left:
    """A location kept as it is: why, and where it is stored."""

    where: str
    value: str
    reason: str


@dataclass
class MovePlan:
    artifacts_dir: Path
    rewrites: list[Rewrite] = field(default_factory=list)
    files: list[PlannedFile] = field(default_factory=list)
    left: list[Left] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what the database names but the disk lacks
    outside_links: list[str] = field(default_factory=list)  # links out of the artifact root: refused, listed
    outside: list[str] = field(default_factory=list)  # folders outside the artifact root, of MLflow's shape: moved
    outside_refused: list[str] = field(default_factory=list)  # any other folder outside it: refused, listed
    unsendable: list[str] = field(default_factory=list)  # file names the stack cannot carry: refused, listed
    moves: list[DirMove] = field(default_factory=list)
    experiments: dict[str, str] = field(default_factory=dict)  # id -> name
    runs: dict[str, str] = field(default_factory=dict)  # run id -> experiment id
    logged_models: set[str] = field(default_factory=set)
    traces: set[str] = field(default_factory=set)
    registered_models: list[str] = field(default_factory=list)
    owner: dict[str, str] = field(default_factory=dict)  # run, logged model or trace id -> its experiment id
    created: dict[str, int] = field(default_factory=dict)  # experiment id -> its creation_time (ms), where set
    deleted_models: set[str] = field(default_factory=set)  # logged models deleted on the laptop (rows kept)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def rewritten_count(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rewrites:
            name = f"{r.table}.{r.column}" + (f".{r.json_key}" if r.json_key else "")
            counts[name] = counts.get(name, 0) + 1
        return counts


@dataclass(frozen=True)
class StackLayout:
    """How the stack names artifact locations: its root (`mlflow-artifacts:`) and whether it runs with
    workspaces (then `mlflow-artifacts:/workspaces/<name>/<experiment id>`)."""

    root: str = "mlflow-artifacts:"
    workspaces: bool = False

    def experiment(self, experiment_id: str, workspace: str | None) -> str:
        return served_uri(experiment_root(self.root, workspace, self.workspaces), str(experiment_id))


# The folders MLflow writes an entity's files to, under its experiment's location (append_to_uri_path):
# a run `<experiment>/<run id>/artifacts`, a logged model `<experiment>/models/<model id>/artifacts`, a trace
# `<experiment>/traces/<trace id>/artifacts`; the experiment's location is `<root>/<experiment id>` by default.
RUN_SHAPE, MODEL_SHAPE, TRACE_SHAPE = ("{id}", "artifacts"), ("models", "{id}", "artifacts"), \
    ("traces", "{id}", "artifacts")


def _shaped(path: Path, shape: tuple[str, ...], entity_id: str, exp_id: str, exp_dir: Path | None) -> bool:
    """Whether `path` is the folder MLflow writes for this very entity: `shape` (its own id in it) under its
    experiment's folder, i.e. under `<dir>/<experiment id>` or the experiment's own stored location."""
    tail = tuple(part.format(id=entity_id) for part in shape)
    if len(path.parts) <= len(tail) + 1 or path.parts[-len(tail):] != tail:
        return False
    head = path.parents[len(tail) - 1]
    return head.name == exp_id or (exp_dir is not None and head == exp_dir)


def _root_and_home() -> list[Path]:
    """`/` and $HOME (as written and as resolved)."""
    found = [Path("/")]
    try:
        home = Path.home()
        found += [home.absolute(), home.resolve()]
    except (RuntimeError, KeyError):  # no $HOME and no passwd entry
        pass
    return found


def _precious(artifacts_dir: Path) -> list[Path]:
    """What no folder outside the artifact root may be or contain: `/`, $HOME and the artifact root (so none
    of its ancestors), each as written and as resolved."""
    return [*_root_and_home(), artifacts_dir, artifacts_dir.resolve()]


def _too_wide(folder: Path, artifacts_dir: Path) -> Path | None:
    """The precious place an outside folder is or contains (checked as written and where it resolves to)."""
    for candidate in (folder, folder.resolve()):
        for precious in _precious(artifacts_dir):
            if precious == candidate or candidate in precious.parents:
                return precious
    return None


def _root_too_wide(artifacts_dir: Path) -> Path | None:
    """`/` or $HOME, if the artifact root (given, or read from the database's own locations) is or holds it."""
    for precious in _root_and_home():
        for candidate in (artifacts_dir, artifacts_dir.resolve()):
            if precious == candidate or candidate in precious.parents:
                return precious
    return None


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')}


def plan_move(db: Path, artifacts_dir: Path, layout: StackLayout, *, base: Path,
              relocate: tuple[Path, Path] | None = None) -> MovePlan:
    """Read the source copy `db`: rewrites, files and what is left or missing. `base` is the original
    database's directory (relative locations resolve there). Every local location is moved (under
    `artifacts_dir` or elsewhere on this machine); only non-local ones (s3://, ...) are left. Refuses ids
    MLflow never writes, and any destination that is not a plain path under the stack's root. Outside the
    artifact root only MLflow's own folders are taken (`_shaped`: `<experiment>/<run id>/artifacts`, ...; an
    experiment's location `<dir>/<experiment id>`, or the parent of such a folder of its own), never one that is
    or holds `/`, $HOME or the artifact root; any other is listed in `outside_refused` (the caller refuses)."""
    plan = MovePlan(artifacts_dir=artifacts_dir)
    bad: list[str] = []
    if (wide := _root_too_wide(artifacts_dir)) is not None:
        raise RefusedError(f"the artifact root {artifacts_dir} is or holds {wide}: a move never uploads that; "
                           "nothing was written", hint="give --artifacts the folder holding the experiments' "
                                                      "folders (e.g. ./mlruns)")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = set(table_names(conn))
        plan.registered_models = sorted({r[0] for t in ("registered_models", "model_versions") if t in tables
                                         for r in conn.execute(f"SELECT name FROM {t}")})

        def place(value: str) -> Place:
            found = local_place(value, base=base, served_root=artifacts_dir)
            if relocate is not None and found.path is not None and (found.path == relocate[0]
                                                                    or relocate[0] in found.path.parents):
                # `relocate`: (the root the rows name, gone; where it lies now)
                return Place(found.value, relocate[1] / found.path.relative_to(relocate[0]))
            return found

        def good(kind: str, value, pattern: re.Pattern) -> bool:
            if isinstance(value, (str, int)) and not isinstance(value, bool) and pattern.fullmatch(str(value)):
                return True
            bad.append(f"{kind} {value!r}")
            return False

        ws_col = "workspace" in _columns(conn, "experiments")
        exp_ws: dict[str, str | None] = {}
        exp_dirs: dict[str, Path | None] = {}  # each experiment's own location on this machine
        exp_outside: dict[str, tuple[str, Path]] = {}  # experiments located outside the artifact root
        heads: set[tuple[str, Path]] = set()  # (experiment id, folder) holding an entity folder taken outside
        created = ({str(e): t for e, t in conn.execute("SELECT experiment_id, creation_time FROM experiments")}
                   if "creation_time" in _columns(conn, "experiments") else {})
        for exp_id, name, location, workspace in conn.execute(
                f"SELECT experiment_id, name, artifact_location, {'workspace' if ws_col else 'NULL'} FROM experiments"):
            if not good("experiment id", exp_id, EXPERIMENT_ID):
                continue
            if workspace is not None and not (isinstance(workspace, str) and valid_workspace(workspace)):
                bad.append(f"workspace {workspace!r} (experiment {exp_id})")
                continue
            exp_id = str(exp_id)
            plan.experiments[exp_id] = name
            if created.get(exp_id):
                plan.created[exp_id] = int(created[exp_id])
            exp_ws[exp_id] = workspace
            if exp_id == "0" and location and place(location).path is None:
                # the Default experiment's row replaces the stack's seed row: left at another storage it would
                # send the stack's own new Default runs there (and the stack's layout is read from it); its
                # runs keep their own locations
                plan.rewrites.append(Rewrite("experiments", "artifact_location", (exp_id,), location,
                                             layout.experiment(exp_id, workspace)))
                exp_dirs[exp_id] = None
                continue
            found = _entity(plan, place, "experiments", "artifact_location", (exp_id,), location,
                            layout.experiment(exp_id, workspace), walk=False)
            exp_dirs[exp_id] = place(location).path if found is not None else None
            if found is not None and not place(location).under(artifacts_dir):
                exp_outside[exp_id] = (f"experiments.artifact_location {exp_id}", place(location).path)

        def shaped(shape, entity_id, exp_id):
            def check(path: Path) -> bool:
                if not _shaped(path, shape, str(entity_id), str(exp_id), exp_dirs.get(str(exp_id))):
                    return False
                heads.add((str(exp_id), path.parents[len(shape) - 1]))
                return True
            check.expected = f"<folder>/{exp_id}/" + "/".join(part.format(id=entity_id) for part in shape)
            return check

        def where(exp_id) -> str | None:
            exp_id = str(exp_id)
            if exp_id not in plan.experiments:
                bad.append(f"experiment id {exp_id!r} (of no valid experiment)")
                return None
            return layout.experiment(exp_id, exp_ws.get(exp_id))

        for run_id, exp_id, uri in conn.execute("SELECT run_uuid, experiment_id, artifact_uri FROM runs"):
            if not good("run id", run_id, ENTITY_ID) or (root := where(exp_id)) is None:
                continue
            plan.runs[run_id] = plan.owner[run_id] = str(exp_id)
            _entity(plan, place, "runs", "artifact_uri", (run_id,), uri, served_uri(root, run_id, "artifacts"),
                    shape=shaped(RUN_SHAPE, run_id, exp_id))
        if "logged_models" in tables:
            deleted = ({r[0] for r in conn.execute("SELECT model_id FROM logged_models WHERE lifecycle_stage = "
                                                   "'deleted'")}
                       if "lifecycle_stage" in _columns(conn, "logged_models") else set())
            for model_id, exp_id, location, status in conn.execute(
                    "SELECT model_id, experiment_id, artifact_location, status FROM logged_models"):
                if not good("logged model id", model_id, ENTITY_ID) or (root := where(exp_id)) is None:
                    continue
                plan.logged_models.add(model_id)
                plan.owner[model_id] = str(exp_id)
                if model_id in deleted:
                    plan.deleted_models.add(model_id)
                found = _entity(plan, place, "logged_models", "artifact_location", (model_id,), location,
                                served_uri(root, "models", model_id, "artifacts"),
                                shape=shaped(MODEL_SHAPE, model_id, exp_id))
                if found is False and status == READY:
                    plan.missing.append(f"logged model {model_id}: {location} (no such directory)")
        if "trace_info" in tables:
            for trace_id, exp_id in conn.execute("SELECT request_id, experiment_id FROM trace_info"):
                plan.traces.add(trace_id)
                plan.owner[trace_id] = str(exp_id)
        if "trace_tags" in tables and "trace_info" in tables:
            spans_in_artifacts = {r[0] for r in conn.execute(
                "SELECT request_id FROM trace_tags WHERE key = ? AND value <> 'TRACKING_STORE'", (TRACE_SPANS_TAG,))}
            for trace_id, exp_id, value in conn.execute(
                    "SELECT t.request_id, i.experiment_id, t.value FROM trace_tags t JOIN trace_info i "
                    "ON i.request_id = t.request_id WHERE t.key = ?", (TRACE_LOCATION_TAG,)):
                if not good("trace id", trace_id, ENTITY_ID) or (root := where(exp_id)) is None:
                    continue
                found = _entity(plan, place, "trace_tags", "value", (trace_id, TRACE_LOCATION_TAG), value,
                                served_uri(root, "traces", trace_id, "artifacts"),
                                shape=shaped(TRACE_SHAPE, trace_id, exp_id))
                if found is False and trace_id in spans_in_artifacts:
                    plan.missing.append(f"trace {trace_id}: {value} (no such directory)")
        for exp_id, (where_, path) in sorted(exp_outside.items()):
            # an experiment's folder is never walked: taken as `<dir>/<experiment id>` or as the parent of a run,
            # logged model or trace folder of its own taken above
            if path.name != exp_id and (exp_id, path) not in heads:
                plan.outside_refused.append(f"{where_}: {path} (not <folder>/{exp_id}, nor the folder of one of its "
                                            "runs, logged models or traces)")
            elif (wide := _too_wide(path, artifacts_dir)) is not None:
                plan.outside_refused.append(f"{where_}: {path} (is or holds {wide})")
            else:
                plan.outside.append(f"{where_}: {path} (not walked: only its runs', models' and traces' folders)")
        if bad:
            raise RefusedError(f"the source holds {len(bad)} id(s) or workspace name(s) MLflow never writes: "
                               + "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
                               + "; nothing was written", hint="this database was not written by MLflow as it is")
        plan.moves.sort(key=lambda m: len(str(m.source)), reverse=True)
        _inside(plan, place, conn, tables)
    finally:
        conn.close()
    _dedupe(plan)
    wrong = [f.dest for f in plan.files if not normalised_dest(f.dest)]
    if wrong:
        raise RefusedError(f"{len(wrong)} destination(s) on the stack would not be plain paths under its artifact "
                           f"root, e.g. {wrong[0]!r}; nothing was written")
    return plan


def _entity(plan: MovePlan, place, table: str, column: str, key: tuple, value: str | None, target: str,
            walk: bool = True, shape=None) -> bool | None:
    """An experiment, run, logged model or trace: its location becomes `target` when it is a local path (under
    the artifact root or elsewhere on this machine: its files are planned), else it is left. Outside the
    artifact root a folder is taken only if `shape(path)` says MLflow wrote it for this entity, and it is not,
    nor holds, `/`, $HOME or the artifact root: else it is listed in `outside_refused`. True/False: moved,
    with/without a directory on disk; None: left."""
    if not value:
        return None
    where = f"{table}.{column} {'/'.join(map(str, key[:1]))}"
    p = place(value)
    if p.path is None:
        plan.left.append(Left(where, value, "not a local path"))
        return None
    plan.rewrites.append(Rewrite(table, column, key, value, target))
    if not walk:  # an experiment's folder: only its runs', models' and traces' files move
        return p.path.is_dir()
    if not p.under(plan.artifacts_dir):
        if shape is not None and not shape(p.path):
            plan.outside_refused.append(f"{where}: {p.path} (not the folder MLflow writes for it: "
                                        f"{shape.expected})")
            return True
        if (wide := _too_wide(p.path, plan.artifacts_dir)) is not None:
            plan.outside_refused.append(f"{where}: {p.path} (is or holds {wide})")
            return True
        plan.outside.append(f"{where}: {p.path}")
    plan.moves.append(DirMove(p.path, target))
    if not p.path.is_dir():
        return False
    # links may point anywhere inside the artifact root (or, for a folder elsewhere, inside that folder)
    allowed = (plan.artifacts_dir if p.under(plan.artifacts_dir) else p.path).resolve()
    real = p.path.resolve()
    if not _within(real, allowed):
        plan.outside_links.append(f"{p.path} -> {real}")
        return True
    _walk(plan, where, p.path, served_path(target), allowed, real)
    return True


def _renamed_by_mlflow(name: str) -> bool:
    """Whether MLflow's client would list or download this name as another (validate_path_is_safe decodes it
    as a URI: a leading space goes, `T10:00:00.log` is lowercased as a scheme) or refuse it: such a file goes up
    intact but no MLflow client ever finds it by its name."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.uri import validate_path_is_safe

    try:
        return validate_path_is_safe(name) != name
    except MlflowException:
        return True


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _walk(plan: MovePlan, where: str, top: Path, prefix: str, allowed: Path, top_real: Path) -> None:
    """Every file under `top`, links included (lstat: a link is judged by where it resolves): a link into
    `allowed` is followed (a folder once per path: a link to a folder above it is a loop, not followed), a
    link out of it is refused (listed), a broken one is missing. Names the stack cannot carry are listed."""

    try:
        st_root = os.stat(allowed)
        root_id: tuple[int, int] | None = (st_root.st_dev, st_root.st_ino)
    except OSError:
        root_id = None  # gone meanwhile: the upload compares the path's text only

    def visit(directory: Path, rel: str, ancestors: tuple[Path, ...]) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
            now = Path(os.path.realpath(directory))
        except OSError as exc:
            plan.missing.append(f"{where}: {directory} (unreadable: {exc.strerror})")
            return
        if not _within(now, allowed):  # swapped for a link after it was judged: what was listed lies outside
            plan.outside_links.append(f"{directory} -> {now}")
            return
        for entry in entries:
            full = Path(entry.path)
            name = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = full.lstat()
                link = stat.S_ISLNK(st.st_mode)
                if link:
                    real = full.resolve(strict=True)
                    if not _within(real, allowed):
                        plan.outside_links.append(f"{full} -> {real}")
                        continue
                    st = real.stat()
                else:
                    real = full if not stat.S_ISDIR(st.st_mode) else full.resolve()
            except (OSError, RuntimeError) as exc:
                reason = "a broken link" if full.is_symlink() else f"unreadable: {getattr(exc, 'strerror', exc)}"
                plan.missing.append(f"{where}: {full} ({reason})")
                continue
            if UNSENDABLE.search(entry.name) or _renamed_by_mlflow(entry.name):
                plan.unsendable.append(str(full))
                continue
            if stat.S_ISDIR(st.st_mode):
                if real in ancestors or _within(top_real, real):
                    # above it: a loop, or the folder holding this entity's (the artifact root, its experiment):
                    # followed, every other run's files would be copied into this one
                    plan.left.append(Left(where, str(full), "a link to a folder above it (a loop): not followed"))
                    continue
                visit(full, name, (*ancestors, real))
            elif stat.S_ISREG(st.st_mode):
                plan.files.append(PlannedFile(full, f"{prefix}/{name}", st.st_size, st.st_mtime_ns, st.st_dev,
                                              st.st_ino, real if link else None, allowed, root_id))
            else:
                plan.missing.append(f"{where}: {full} (not a regular file)")

    visit(top, "", (top_real,))


def _inside(plan: MovePlan, place, conn: sqlite3.Connection, tables: set[str]) -> None:
    """Values that point somewhere inside a moved directory: model versions, dataset sources, workspaces."""
    if "model_versions" in tables:
        for name, version, source, storage in conn.execute(
                "SELECT name, version, source, storage_location FROM model_versions"):
            for column, value in (("source", source), ("storage_location", storage)):
                _inside_one(plan, place, "model_versions", column, (name, version), value,
                            f"model version {name}/{version}", check_exists=column == "storage_location")
    if "datasets" in tables:
        for uuid, source in conn.execute("SELECT dataset_uuid, dataset_source FROM datasets"):
            try:
                doc = json.loads(source) if source else None
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            for json_key in DATASET_LOCATION_KEYS:
                value = doc.get(json_key)
                if isinstance(value, str):
                    _inside_one(plan, place, "datasets", "dataset_source", (uuid,), value, f"dataset {uuid}",
                                json_key=json_key, keep_outside=True)
    if "workspaces" in tables:
        cols = _columns(conn, "workspaces")
        for column in ("default_artifact_root", "trace_archival_location"):
            if column not in cols:
                continue
            for name, value in conn.execute(f'SELECT name, "{column}" FROM workspaces WHERE "{column}" IS NOT NULL'):
                p = place(value)
                if p.path is not None:  # a laptop folder: the stack's own root for the workspace applies
                    plan.rewrites.append(Rewrite("workspaces", column, (name,), value, None))
                elif value:
                    plan.left.append(Left(f"workspaces.{column} {name}", value, "not a local path"))


def _inside_one(plan: MovePlan, place, table: str, column: str, key: tuple, value: str | None, what: str, *,
                json_key: str | None = None, check_exists: bool = False, keep_outside: bool = False) -> None:
    if not value:
        return
    p = place(value)
    where = f"{table}.{column}{'.' + json_key if json_key else ''} {key[0]}"
    if p.path is None:
        if not keep_outside and not value.startswith(("models:/", "runs:/")):  # references keep working
            plan.left.append(Left(where, value, "not a local path"))
        return
    new = rewrite_inside(p, plan.moves)
    if new is None:
        plan.left.append(Left(where, value, "a local path in no run, logged model or trace folder"))
        return
    if check_exists and not p.path.exists():
        plan.missing.append(f"{what}: {value} (no such file or directory)")
    plan.rewrites.append(Rewrite(table, column, key, value, new, json_key))


def _dedupe(plan: MovePlan) -> None:
    """One upload per destination (a directory named by two rows, e.g. a hand-set location)."""
    seen: dict[str, PlannedFile] = {}
    for f in plan.files:
        seen.setdefault(f.dest, f)
    plan.files = list(seen.values())


_KEYS = {
    "experiments": ("experiment_id",),
    "runs": ("run_uuid",),
    "logged_models": ("model_id",),
    "trace_tags": ("request_id", "key"),
    "model_versions": ("name", "version"),
    "datasets": ("dataset_uuid",),
    "workspaces": ("name",),
}


def apply_rewrites(db: Path, rewrites: list[Rewrite]) -> int:
    """Write the new locations into the source copy, in one transaction. Returns the rows changed."""
    conn = sqlite3.connect(db)
    changed = 0
    try:
        with conn:
            for r in rewrites:
                where = " AND ".join(f'"{k}" = ?' for k in _KEYS[r.table])
                if r.json_key is None:
                    cur = conn.execute(f'UPDATE "{r.table}" SET "{r.column}" = ? WHERE {where} AND "{r.column}" = ?',
                                       (r.new, *r.key, r.old))
                else:
                    (source,) = conn.execute(f'SELECT "{r.column}" FROM "{r.table}" WHERE {where}', r.key).fetchone()
                    doc = json.loads(source)
                    doc[r.json_key] = r.new
                    cur = conn.execute(f'UPDATE "{r.table}" SET "{r.column}" = ? WHERE {where}',
                                       (json.dumps(doc), *r.key))
                changed += cur.rowcount
    finally:
        conn.close()
    return changed
