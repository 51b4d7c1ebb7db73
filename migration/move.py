"""`python -m migration move SOURCE --to TRACKING_URI`: a laptop's MLflow (database and artifacts) into a stack.

The order, so that nothing is half-written and a rerun resumes:
 1. preflight, writing nothing on the stack: the source copied privately (upgraded to MLflow's head), every
    artifact location classified (a local path: moved, outside the artifact root only as MLflow writes it,
    printed; another storage: left and listed), missing files
    listed (refused unless --allow-missing), the stack reachable, the credentials accepted (an admin in
    auth.mode mlflow), and the stack holding none of the source's experiments or other data of its own (the
    database step keeps ids, and refuses such a target anyway); with the database reachable, the database
    step's own dry run on the rewritten copy.
 2. the database: the existing migration of the rewritten copy (one transaction, ids kept), run here when
    --database-uri-env names a variable holding the PostgreSQL URI, else printed as the stack's one-off step
    (then the same command again does step 3). First, so that the source's experiment ids are the stack's
    before any file goes up under them: uploaded first, under ids the stack had not given out yet, a user who
    created an experiment meanwhile would get id 1 with MANAGE on it and read or overwrite the laptop's
    experiment-1 files (the fifth review of issue 27). From here the moved experiments carry no permission of
    their own: with auth.defaultPermission NO_PERMISSIONS (the default) only admins see them until granted.
 3. artifacts, uploaded through the stack's artifact API (MLflow's repository for `mlflow-artifacts:/`: auth,
    the proxy, multipart/presigned transfers where the stack has them) into the experiments the stack now
    holds, --jobs in parallel, each file recorded in the manifest once the stack lists it with its size (read
    back and hashed with --verify full). Until this step ends the moved runs show only part of their
    artifacts; `move --finish` checks the stack afterwards.

The manifest is a cache, never the proof (Move._to_send): every destination folder is listed on the stack
(and with --verify full every listed file read back) before anything is sent. A file the stack lacks is
sent; one it holds as this move sent it stays unless the laptop's changed since; one it holds otherwise
(another machine's move, or a user's newer version) stays when equal to the laptop's, else is kept and
reported (exit 3; --overwrite sends it).
Each file is sent from a private snapshot copied from one descriptor, opened without following a link and
checked to be the file the plan saw (device, inode, size); a changed one is not sent, listed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import fcntl
import functools
import os
import re
import secrets
import shlex
import shutil
import signal
import sqlite3
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from migration.errors import EXIT_OK, Interrupted, MigrationError, RefusedError, UsageError, VerificationError
from migration.manifest import FAILED, UPLOADED, VERIFIED, FileRecord, Manifest, sha256_of
from migration.moveplan import MovePlan, PlannedFile, StackLayout, apply_rewrites, normalised_dest, plan_move
from migration.report import Reporter
from migration.stack import normalise_stack_uri

STATE_SUFFIX = ".move"
# On a resume, files the manifest holds as verified are hashed again (sha256) when they total at most this
# much (reading them locally costs far less than sending them); above it, size and mtime decide, plus the
# stack's listing (--verify full always hashes them).
REHASH_BYTES = 4 << 30


@dataclass
class MoveOptions:
    source: str
    to: str
    artifacts: str | None = None
    manifest: str | None = None
    jobs: int = 8
    verify: str = "size"  # size | full
    allow_missing: bool = False
    overwrite: bool = False  # a moved source: send files the stack lists with another size too
    database_uri_env: str | None = None
    finish: bool = False
    check: bool = False
    stack_kind: str | None = None  # local | aws | azure: which one-off step to print
    pulumi_stack: str | None = None  # the Pulumi stack's name in the printed step (default: the kind's name)
    quiet: bool = False


@dataclass
class MoveResult:
    status: str = "moved"  # moved | checked | staged | finished | repaired
    source: str = ""
    stack: str = ""
    artifacts_dir: str = ""
    manifest: str = ""
    files: int = 0
    bytes: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped: int = 0  # verified earlier, per the manifest, and listed on the stack with their size
    lost: list[str] = field(default_factory=list)  # verified earlier per the manifest, but not on the stack
    differs: list[str] = field(default_factory=list)  # files the stack holds otherwise (size, sha256 read back)
    not_moved: list[str] = field(default_factory=list)  # folders of entities the stack has no row of: not sent
    unverified: list[str] = field(default_factory=list)  # sent, but their check after upload failed
    changed: list[str] = field(default_factory=list)  # files replaced or changed between the plan and the upload
    verified: int = 0
    verify: str = "size"
    rewritten: dict[str, int] = field(default_factory=dict)
    left: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    database: dict | None = None
    one_off: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


LOCK_NAME = "lock"
SEND_PREFIX = "mlflow-move-send-"  # private snapshots of files being sent, in SOURCE.move/


class MoveLock:
    """An exclusive fcntl.flock, for the whole run, on SOURCE.move/lock and on `<manifest>.lock` (wherever the
    manifest lies, the default one included): two moves of one source, or of two sources sharing one manifest,
    never overlap: the second is refused, naming the first's pid. The kernel drops the lock when its holder
    exits, however it exits."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self._fds: list[int] = []

    def __enter__(self) -> "MoveLock":
        try:
            for path in self.paths:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # SOURCE.move/: the laptop's data
                # never through a link (a planted `<manifest>.lock -> ~/file` would be truncated): a regular file
                # of this user's, or none yet
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                except OSError as exc:
                    if exc.errno != errno.ELOOP:
                        raise
                    raise RefusedError(f"the lock file {path} is a link; nothing was written",
                                       hint="remove it, or give --manifest another place") from None
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                    os.close(fd)
                    raise RefusedError(f"the lock file {path} is not a regular file of this user's; nothing was "
                                       "written", hint="remove it, or give --manifest another place")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise RefusedError(f"another move of this source is running (pid {holder}; lock {path}); "
                                       "nothing was written",
                                       hint="wait for it to end (or stop it), then rerun: the rerun resumes") from None
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self._fds.append(fd)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        while self._fds:
            os.close(self._fds.pop())  # closing the descriptor releases the flock


def lock_paths(state: Path, manifest_path: Path) -> list[Path]:
    """The source's lock, then the manifest's: always both (a manifest inside this source's state directory may
    be another source's --manifest too). Taken in this order by every move."""
    return [state / LOCK_NAME, manifest_path.with_name(manifest_path.name + ".lock")]


def _remove_leftovers(state: Path) -> list[Path]:
    """What a run killed outright leaves in SOURCE.move/: private snapshots of the files it was sending
    (mlflow-move-send-*/, up to --jobs of them) and a rewritten copy being written (rewritten.db.*.partial).
    Called only with the lock held: no other move of this source is writing them."""
    gone: list[Path] = []
    if not state.is_dir():
        return gone
    for path in [*state.glob(SEND_PREFIX + "*"), *state.glob("rewritten.db.*.partial")]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        gone.append(path)
    return gone


def _rollback_journal(db: Path) -> None:
    """The database file in rollback-journal mode (header bytes 18/19 = 1; WAL writes 2): a reader opens it
    read-only (`?mode=ro`) in a read-only place, as the local one-off step mounts it, with no -wal or -shm
    beside it. The WAL, if any, is checkpointed into the file first (SQLite does so on the switch)."""
    conn = sqlite3.connect(db)
    try:
        mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    finally:
        conn.close()
    if str(mode).lower() != "delete":
        raise MigrationError(f"could not take the rewritten copy {db} out of WAL mode (journal_mode {mode})")


def _raise_interrupted(signum, frame):
    raise Interrupted()


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM -> Interrupted for the whole run, as migration/cli.py does for the migration: the run unwinds, the
    transaction rolls back, and every temporary copy (/tmp/mlflow-move-*, the migration's own) is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _CommitWatch(Reporter):
    """The reporter the database step's migration gets: its "commit" phase is where the rows become the stack's.
    SIGINT and SIGTERM are held across it (the commit is never cut short), `on_commit` runs the moment it
    returned (the manifest marked, before the probe and the check), and a held signal is raised after."""

    def __init__(self, base: Reporter, on_commit):
        super().__init__(quiet=base.quiet, console=base.err, out=base.out)
        self._on_commit = on_commit

    @contextlib.contextmanager
    def phase(self, name: str):
        if name != "commit" or threading.current_thread() is not threading.main_thread():
            with super().phase(name):
                yield
            return
        held: list[int] = []
        previous = {s: signal.signal(s, lambda signum, frame: held.append(signum))
                    for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with super().phase(name):
                yield
            self._on_commit()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if held:
            raise KeyboardInterrupt if held[0] == signal.SIGINT else Interrupted()


def state_dir(source: Path) -> Path:
    """SOURCE.move/ beside the real source (links followed, `..` resolved): one database or FileStore given by
    two names has one state directory, so one lock."""
    source = source.resolve()
    return source.parent / (source.name + STATE_SUFFIX)


def resolve_source(source: str, workdir: Path, reporter: Reporter) -> tuple[Path, Path | None]:
    """The SQLite file to read, and the FileStore directory it was made from (None for a database source)."""
    from migration.uris import source_path

    raw = Path(source[len("file://"):] if source.startswith("file://") else source).expanduser()
    if not source.startswith("sqlite:") and raw.is_dir():
        return _from_filestore(raw.resolve(), workdir, reporter), raw.resolve()
    return source_path(source), None


def _from_filestore(directory: Path, workdir: Path, reporter: Reporter) -> Path:
    """A FileStore `mlruns` directory, turned into a private SQLite database by MLflow's own
    `mlflow migrate-filestore` (its --source is the directory holding the experiments)."""
    import subprocess
    import sys

    if not any(p.name == "meta.yaml" for p in directory.glob("*/meta.yaml")):
        raise UsageError(f"{str(directory)!r} is no FileStore directory (no <experiment>/meta.yaml in it)")
    db = workdir / "filestore.db"
    if db.exists():
        db.unlink()
    reporter.info(f"turning the FileStore {directory} into SQLite with `mlflow migrate-filestore`")
    done = subprocess.run([sys.executable, "-m", "mlflow", "migrate-filestore", "--source", str(directory),
                           "--target", f"sqlite:///{db}", "--no-progress"], capture_output=True, text=True)
    if done.returncode != 0 or not db.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RefusedError(f"`mlflow migrate-filestore` could not read {str(directory)!r}: {tail[0]}",
                           hint=f"run `mlflow migrate-filestore --source {directory} --target sqlite:///mlflow.db` "
                                "yourself and move mlflow.db")
    _untimed_as_null(directory, db)
    return db


def _untimed_as_null(directory: Path, db: Path) -> None:
    """Experiments whose meta.yaml has no creation_time (older MLflow wrote none): `mlflow migrate-filestore` fills
    in the time of the conversion, which every run of the move makes anew, so the stack (holding the first run's)
    would never be recognised as holding this source. Set back to NULL, as older MLflow left it: such
    experiments are recognised by their runs' ids instead (_holds_source)."""
    import yaml

    untimed = []
    for meta in [*directory.glob("*/meta.yaml"), *directory.glob(".trash/*/meta.yaml")]:  # deleted ones too
        try:
            data = yaml.safe_load(meta.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("experiment_id") is not None and not data.get("creation_time"):
            untimed.append(str(data["experiment_id"]))
    if untimed:
        conn = sqlite3.connect(db)
        try:
            with conn:
                conn.executemany("UPDATE experiments SET creation_time = NULL WHERE CAST(experiment_id AS TEXT) = ?",
                                 [(e,) for e in untimed])
        finally:
            conn.close()


class Move:
    def __init__(self, opts: MoveOptions, reporter: Reporter):
        self.opts = opts
        self.reporter = reporter
        self.result = MoveResult(stack=normalise_stack_uri(opts.to), verify=opts.verify)
        self._stop = threading.Event()
        self._count = threading.Lock()
        self.committed = False  # the database step's transaction committed (the stack holds the rows), or had
        self._listed: dict[str, int] = {}  # what the destination folders held before any upload (_to_send)
        self.held: bool | None = None  # whether the stack held the source's rows when listed (None: not listed yet)
        self.scratch: Path | None = None  # where private snapshots of files being sent are made (None: $TMPDIR)

    # --- the whole move ------------------------------------------------------------------------------
    def run(self) -> MoveResult:
        from migration.stack import Stack

        opts, result = self.opts, self.result
        started = time.perf_counter()
        stack = Stack(opts.to)
        with _sigterm_interrupts(), tempfile.TemporaryDirectory(prefix="mlflow-move-") as tmp:
            db, filestore = resolve_source(opts.source, Path(tmp), self.reporter)
            state = state_dir(filestore if filestore is not None else db)
            manifest_path = Path(opts.manifest).expanduser().resolve() if opts.manifest else state / "manifest.sqlite"
            result.source, result.manifest = str(filestore or db), str(manifest_path)
            with MoveLock(lock_paths(state, manifest_path)):
                return self._locked(stack, db, filestore, state, manifest_path, started, Path(tmp))

    def _locked(self, stack, db: Path, filestore: Path | None, state: Path, manifest_path: Path,
                started: float, tmp: Path) -> MoveResult:
        from migration.source import prepare_source

        opts, result = self.opts, self.result
        self.scratch = state
        _remove_leftovers(state)  # a killed run's (kill -9: no cleanup ran); the lock says none is running
        # 1. preflight: the stack first (cheap, and the credentials are the commonest mistake)
        self.reporter.info(f"checking the stack at {stack.uri}")
        layout = stack.layout()
        stack.check_admin()
        prepared = prepare_source(db)
        try:
            plan = self._plan(prepared.path, db, filestore, layout)
            result.seconds["preflight"] = time.perf_counter() - started
            # --check and --finish write nothing: the manifest read only (none made when there is none)
            manifest = Manifest(manifest_path, stack.uri, readonly=opts.check or opts.finish)
            try:
                contents = stack.contents(layout)
                held = self.held = _holds_source(plan, contents)
                if held:  # only a stack holding the source has them
                    stack.add_deleted_models(contents, plan.logged_models)
                self.committed = held  # by an earlier run, or the printed step
                if opts.finish:
                    return self._finish(stack, plan, manifest, held, contents, layout)
                if not held:
                    _refuse_other_data(plan, contents)
                    # --check writes nothing of the move's own either: its copy is a temporary one (a staged step
                    # may be reading SOURCE.move/rewritten.db)
                    rewritten = tmp / "rewritten.db" if opts.check else state / "rewritten.db"
                    db_uri = self._database_uri()
                    # readable by the local one-off container (uid 10001) only where a step is printed
                    self._rewrite(prepared.path, plan, rewritten, shared=db_uri is None and not opts.check)
                    if db_uri is not None:
                        self._database_dry_run(rewritten, db_uri)
                    if opts.check:
                        result.status = "checked"
                        return result
                    if db_uri is None:
                        result.status = "staged"
                        result.one_off = one_off_step(opts, rewritten)
                        return result
                    # 2. the database, before any artifact: the experiments hold the source's ids from here on
                    t = time.perf_counter()
                    try:
                        result.database = self._database(rewritten, db_uri, manifest)
                    except MigrationError as exc:
                        if self.committed:  # the probe failed: the rows are the stack's
                            raise
                        raise _after_failed_database(exc, plan, stack, layout) from exc
                    result.seconds["database"] = time.perf_counter() - t
                    rewritten.unlink(missing_ok=True)  # a full copy of the laptop's database: no step reads it
                    self._check_on_stack(stack, plan, layout)
                    not_moved: list[str] = []
                else:
                    # the rows as the database step moved them: files of runs, logged models and traces logged
                    # on the laptop since (or deleted on the stack) have no row there, and are not sent
                    plan, not_moved = _held_part(plan, contents)
                    _refuse_other_locations(plan, contents, layout)
                    result.not_moved = not_moved
                    if not opts.check and not manifest.step_done("database"):
                        manifest.mark_step("database", "found on the stack " + time.strftime("%Y-%m-%d %H:%M:%S"))
                # 3. artifacts, into experiments the stack holds
                t = time.perf_counter()
                if opts.check:
                    todo = self._to_send(_Repos(stack.uri), plan, manifest, record=False)
                    result.status = "checked"
                    self.reporter.info(f"the stack holds this source's rows; {len(todo):,} file(s) to send, "
                                       f"{len(result.differs):,} differ on the stack"
                                       + (f"; {len(not_moved)} folder(s) of entities it lacks: "
                                          f"{_listing(not_moved)}" if not_moved else ""))
                    return result
                complete = manifest.step_done("artifacts")
                sent = self._upload(stack, plan, manifest)
                result.seconds["artifacts"] = time.perf_counter() - t
                if result.differs:
                    raise RefusedError(
                        f"{len(result.differs)} file(s) of this source differ on the stack (another size, or another "
                        f"sha256 read back), kept: {_listing(result.differs)}"
                        + (f"; {sent} file(s) the stack lacked were sent" if sent else "; nothing was sent"),
                        hint="--overwrite sends the laptop's version over the stack's")
                if not_moved:
                    raise RefusedError(
                        f"{len(not_moved)} run, logged model or trace folder(s) of the laptop belong to nothing the "
                        f"stack holds (logged on the laptop after its database step, or deleted on the stack): not "
                        f"sent: {_listing(not_moved)}"
                        + (f"; {sent} file(s) of what it holds were sent" if sent else "; nothing else was missing"),
                        hint="the database step moved the source as it was then (ids kept, one transaction): log "
                             "those runs again into the stack, or move the whole source into a new stack")
                manifest.mark_step("artifacts", time.strftime("%Y-%m-%d %H:%M:%S"))
                if held and complete and not sent:
                    raise RefusedError(
                        f"the stack already holds this source ({len(plan.experiments)} experiments, "
                        f"{len(plan.runs)} runs, same ids) and lists every file of it: it was moved ({complete}); "
                        "nothing was written", hint="`move --finish` with the same arguments checks it")
                result.status = "repaired" if held and complete else "moved"
                return result
            finally:
                manifest.close()
        finally:
            prepared.cleanup()
            result.seconds["total"] = time.perf_counter() - started

    # --- 1. preflight --------------------------------------------------------------------------------
    def _plan(self, copy: Path, db: Path, filestore: Path | None, layout: StackLayout) -> MovePlan:
        from migration.locations import default_artifact_dir

        opts, result = self.opts, self.result
        conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            locations = [r[0] for r in conn.execute("SELECT artifact_location FROM experiments") if r[0]]
        finally:
            conn.close()
        recorded = filestore if filestore is not None else default_artifact_dir(locations, base=db.parent)
        artifacts_dir = Path(opts.artifacts).expanduser().absolute() if opts.artifacts else recorded
        relocate = None
        if artifacts_dir != recorded and not recorded.exists():
            # the project folder moved (or only the database was copied here): the rows name the old root;
            # what lies under it is read from --artifacts, the folder that holds it now
            relocate = (recorded, artifacts_dir)
            self.reporter.info(f"the locations name {recorded}, which does not exist: read from {artifacts_dir}")
        result.artifacts_dir = str(artifacts_dir)
        plan = plan_move(copy, artifacts_dir, layout, base=db.parent, relocate=relocate)
        if not artifacts_dir.is_dir() and not opts.allow_missing and any(r.table == "runs" for r in plan.rewrites):
            raise RefusedError(f"the artifact root {artifacts_dir} does not exist, and the runs' locations lie in it "
                               "(the project folder moved, or only the database was copied here?): their files "
                               "would be left behind; nothing was written",
                               hint="give --artifacts the folder that holds the experiments' folders now "
                                    "(e.g. ./mlruns next to the database); --allow-missing if there is none")
        result.files, result.bytes = len(plan.files), plan.bytes
        result.rewritten = plan.rewritten_count()
        result.left = [{"where": x.where, "value": x.value, "reason": x.reason} for x in plan.left]
        result.missing = list(plan.missing)
        self.reporter.info(f"source: {len(plan.experiments)} experiments, {len(plan.runs)} runs; artifacts under "
                           f"{artifacts_dir}: {len(plan.files):,} files, {_size(plan.bytes)}; "
                           f"{len(plan.rewrites)} locations to rewrite, {len(plan.left)} left as they are")
        for x in plan.left:
            self.reporter.info(f"  left: {x.where}: {x.value} ({x.reason})")
        for x in plan.outside:
            self.reporter.info(f"  outside the artifact root, moved: {x}")
        if plan.outside_refused:
            raise RefusedError(f"{len(plan.outside_refused)} location(s) name a folder outside the artifact root "
                               f"{artifacts_dir} that MLflow does not write there (a move takes only "
                               "<folder>/<experiment id>/<run id>/artifacts, .../models/<model id>/artifacts and "
                               ".../traces/<trace id>/artifacts outside it, never one that is or holds /, $HOME or "
                               f"the artifact root): {_listing(plan.outside_refused)}; nothing was written",
                               hint="give --artifacts the folder that holds them, or correct those locations in "
                                    "the database")
        if plan.unsendable:
            raise RefusedError(f"{len(plan.unsendable)} file name(s) the stack cannot carry (MLflow's artifact API "
                               f"and the stack's proxy refuse or change %, ?, #, control characters and names that "
                               f"are not UTF-8): {_listing(plan.unsendable)}; nothing was written",
                               hint="rename them on the laptop (MLflow lists a run's artifacts as they are on disk)")
        if plan.outside_links:
            raise RefusedError(f"{len(plan.outside_links)} link(s) point out of the artifact root (a move never "
                               f"uploads what lies outside it): {_listing(plan.outside_links)}; nothing was written",
                               hint="replace each link by a copy of what it points to, or remove it "
                                    "(--allow-missing does not cover links)")
        if plan.missing:
            listing = _listing(plan.missing)
            if not opts.allow_missing:
                raise RefusedError(f"{len(plan.missing)} artifact location(s) missing on disk: {listing}; nothing was "
                                   "written", hint="--allow-missing moves the rest (the rows keep naming them)")
            self.reporter.info(f"missing on disk (--allow-missing): {listing}")
        return plan

    def _rewrite(self, copy: Path, plan: MovePlan, rewritten: Path, shared: bool = True) -> None:
        """The rewritten copy, kept in the move's state directory: the one-off step reads it there. Written to a
        name of its own (mkstemp: no other run ever writes it), synced, then renamed over rewritten.db: a reader
        sees the old file or the new one, never a mix. Mode 0644 on that file only where a step is printed
        (`shared`; a laptop with umask 077 would leave it 0600): the one-off container reads it as its own user
        (uid 10001); else 0600, in SOURCE.move/ (0700), and removed once the database step committed here. In
        rollback-journal mode whatever the laptop's was: the local step mounts it read-only as a single file,
        where SQLite can create no -shm beside a WAL database ("attempt to write a readonly database")."""
        rewritten.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=rewritten.name + ".", suffix=".partial", dir=rewritten.parent)
        partial = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, open(copy, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            apply_rewrites(partial, plan.rewrites)
            _rollback_journal(partial)
            with open(partial, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(partial, 0o644 if shared else 0o600)
            os.replace(partial, rewritten)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        dir_fd = os.open(rewritten.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _database_uri(self) -> str | None:
        name = self.opts.database_uri_env
        if not name:
            return None
        value = os.environ.get(name)
        if not value:
            raise UsageError(f"--database-uri-env {name}: that environment variable is not set")
        return value

    def _database_dry_run(self, rewritten: Path, db_uri: str) -> None:
        from migration.core import Options, migrate

        quiet = Reporter(quiet=True)
        migrate(Options(source=str(rewritten), target=db_uri, dry_run=True, probe=False), quiet)

    # --- 3. artifacts --------------------------------------------------------------------------------
    def _to_send(self, repos: "_Repos", plan: MovePlan, manifest: Manifest, record: bool = True) -> list[PlannedFile]:
        """Which planned files to send, decided by the stack's listing of every destination folder (the
        manifest is a cache, never the proof) and by reading back what it lists: every file with --verify full;
        in any mode every file this move has not verified itself (no row: another machine's move, or a user's
        object of the same size in the window; a row sent but not checked, or whose check failed): size alone
        is trusted only for what this move verified:
        - not listed: sent (`lost` when the manifest held it as verified);
        - listed as this move sent it (the manifest's size; its sha256 where read back): kept if the laptop's
          file is unchanged since (size, mtime; sha256 when cheap), else sent (the laptop's is newer); a row a
          killed run left `uploaded` is recorded verified then (`record`: never in --check or --finish);
        - listed otherwise (no row: another machine's move; or another writer's object since this move sent
          it: a user may log into the moved runs once the database step committed): kept when it equals the
          laptop's file (sha256 read back; a verified row's file changed on the stack since, with --verify
          size: by size), else listed in `differs` and kept (--overwrite sends it). S3 and Blob write an
          object whole: another size listed is never half of this move's upload."""
        opts, result = self.opts, self.result
        records = manifest.records()
        listed = self._listing(repos, {f.dest.rsplit("/", 1)[0] for f in plan.files})
        cheap = opts.verify == "full" or sum(f.size for f in plan.files if f.dest in listed) <= REHASH_BYTES

        def hashed(files: list[PlannedFile], digest, prefix: str) -> dict[str, str | None]:
            with concurrent.futures.ThreadPoolExecutor(max(1, opts.jobs), thread_name_prefix=prefix) as pool:
                return dict(zip((f.dest for f in files), pool.map(digest, files)))

        # read back: every listed file with --verify full, else each this move has not verified itself
        wanted = [f for f in plan.files if f.dest in listed
                  and (opts.verify == "full" or getattr(records.get(f.dest), "state", None) != VERIFIED
                       or listed[f.dest] != records[f.dest].size)]  # verified at another size: not this move's
        remote: dict[str, str | None] = hashed(wanted, lambda f: _stack_digest(repos, f.dest), "read-back")
        # the laptop's side: every listed file when cheap, and always those read back (compared to it)
        local = hashed([f for f in plan.files if f.dest in listed and (cheap or f.dest in remote)], _digest_or_none,
                       "hash")
        todo: list[PlannedFile] = []
        differs: list[str] = []
        lost: list[str] = []
        newer: list[PlannedFile] = []  # this move's copy on the stack (by size), the laptop's file changed since
        for f in plan.files:
            size, rec = listed.get(f.dest), records.get(f.dest)
            if size is None:
                todo.append(f)
                if rec is not None and rec.state == VERIFIED:
                    lost.append(f.dest)
                continue
            here, there = local.get(f.dest), remote.get(f.dest)
            ours = (rec is not None and size == rec.size
                    and (there == rec.sha256 if there is not None else rec.state != FAILED))
            if ours:  # the stack holds what this move sent (by its size, or its sha256 read back)
                unchanged = (here == rec.sha256 if here is not None else
                             rec.size == f.size and rec.mtime_ns == f.mtime_ns)
                if unchanged:
                    if record and rec.state != VERIFIED:  # sent by a run stopped before its check: checked now
                        manifest.record(FileRecord(rec.dest, rec.source, rec.size, rec.mtime_ns, rec.sha256,
                                                   VERIFIED))
                elif there is not None:
                    todo.append(f)  # the stack's is this move's own copy (read back): the laptop's is newer
                else:
                    newer.append(f)
                continue
            if size == f.size and there is not None and there == here:
                continue  # what the stack holds is the laptop's file (read back: never by size alone here)
            if opts.overwrite:
                todo.append(f)
            else:
                differs.append(_differs(f, size))
        # before sending the laptop's newer file over what the stack holds by this move's size alone: read it
        # back; another sha256 than this move sent is a user's version (same size): kept, reported
        if newer:
            backs = hashed(newer, lambda f: _stack_digest(repos, f.dest), "read-back")
            laptop = {**hashed([f for f in newer if local.get(f.dest) is None], _digest_or_none, "hash"),
                      **{f.dest: local[f.dest] for f in newer if local.get(f.dest) is not None}}
            for f in newer:
                if backs[f.dest] is not None and backs[f.dest] == laptop[f.dest]:
                    # the stack holds the laptop's new bytes already (a run killed between their upload and
                    # its row; or a user logged the same): kept, and recorded as what it is
                    if record:
                        manifest.record(FileRecord(f.dest, self._rel(f.source), f.size, f.mtime_ns, laptop[f.dest],
                                                   VERIFIED))
                elif backs[f.dest] == records[f.dest].sha256 or opts.overwrite:
                    todo.append(f)
                else:
                    differs.append(_differs(f, listed[f.dest]))
        self._listed = listed  # what the folders held before any upload: each is listed again before its own
        result.skipped = len(plan.files) - len(todo) - len(differs)
        result.lost, result.differs = lost, differs
        return todo

    def _listing(self, repos: "_Repos", directories) -> dict[str, int]:
        """dest -> size of every file the stack lists in these destination folders (one listing each)."""

        def one(directory: str) -> list[tuple[str, int]]:
            repo, sub = repos.get(directory)
            return [(f"{directory}/{name}", size) for name, size in repo.list_files(sub).items()]

        found: dict[str, int] = {}
        with concurrent.futures.ThreadPoolExecutor(max(1, self.opts.jobs), thread_name_prefix="list") as pool:
            for entries in pool.map(one, sorted(directories)):
                found.update(entries)
        return found

    def _upload(self, stack, plan: MovePlan, manifest: Manifest) -> int:
        """The files `_to_send` chooses, --jobs folders in parallel; returns how many were sent."""
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        opts, result = self.opts, self.result
        repos = _Repos(stack.uri)
        todo = self._to_send(repos, plan, manifest)
        sent_before = result.uploaded
        if result.skipped:
            self.reporter.info(f"{result.skipped:,} files already on the stack (its listing"
                               + (", read back" if opts.verify == "full" else "") + f"; manifest {manifest.path})")
        if result.lost:
            self.reporter.info(f"{len(result.lost):,} file(s) the manifest held as verified are not on the stack: "
                               f"sent again, e.g. {result.lost[0]}")
        if not todo:
            return 0
        progress = None
        if not opts.quiet and self.reporter.err.is_terminal:
            progress = Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                                DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                console=self.reporter.err)
            progress.start()
        task = progress.add_task("artifacts", total=sum(f.size for f in todo)) if progress else None
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def stop(signum, frame):
            self._stop.set()
            raise Interrupted()

        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for s in previous:
                signal.signal(s, stop)
        try:
            by_dir: dict[str, list[PlannedFile]] = {}
            for f in todo:
                by_dir.setdefault(f.dest.rsplit("/", 1)[0], []).append(f)
            with concurrent.futures.ThreadPoolExecutor(max(1, opts.jobs), thread_name_prefix="upload") as pool:
                futures = [pool.submit(self._upload_dir, repos, manifest, directory, files, progress, task)
                           for directory, files in by_dir.items()]
                try:
                    for fut in concurrent.futures.as_completed(futures):
                        fut.result()
                except BaseException:
                    self._stop.set()
                    for fut in futures:
                        fut.cancel()
                    raise
        except Interrupted:
            raise KeyboardInterrupt from None
        finally:
            if in_main:
                for s, handler in previous.items():
                    signal.signal(s, handler)
            if progress is not None:
                progress.stop()
        problems = []
        if result.unverified:
            problems.append(f"{len(result.unverified)} file(s) failed their check after upload (marked failed: a "
                            "rerun reads each back, keeps it if it is the laptop's, sends it again if the stack "
                            "lacks it, else reports it, --overwrite sends it): "
                            f"{_listing(sorted(result.unverified), 5)}")
        if result.changed:
            problems.append(f"{len(result.changed)} file(s) changed between the plan and their upload (replaced, "
                            f"now a link, or of another size): not sent: {_listing(sorted(result.changed))}")
        if problems:
            # one message with everything not sent: what the stack holds otherwise and folders of entities it
            # lacks are told here too (their own refusals come after the uploads, and this ends the run)
            if result.differs:
                problems.append(f"{len(result.differs)} file(s) the stack holds otherwise, kept, not sent: "
                                f"{_listing(result.differs, 5)}")
            if result.not_moved:
                problems.append(f"{len(result.not_moved)} folder(s) of entities the stack lacks, not sent: "
                                f"{_listing(result.not_moved, 5)}")
            message = "; ".join(problems) + ("; every other file was sent and recorded"
                                             if not (result.differs or result.not_moved) else "")
            hint = ("rerun when nothing writes to the artifact folders: it plans again and sends only what is not on "
                    "the stack yet")
            raise (VerificationError if result.unverified else MigrationError)(message, hint=hint)
        return result.uploaded - sent_before

    def _upload_dir(self, repos: "_Repos", manifest: Manifest, directory: str, files: list[PlannedFile],
                    progress, task) -> None:
        """One destination folder: each file sent from a private snapshot and recorded `uploaded`; then one
        listing to compare sizes (and a read-back with --verify full), each file recorded `verified`, or
        `failed` (sent again by the next run)."""
        repo, sub = repos.get(directory)
        if not self.opts.overwrite:
            # listed again just before sending into it (the first listing may be hours old): an object that
            # appeared or changed since is another writer's (a user of a moved run): kept, reported, not sent.
            # What remains is the seconds between this listing and each upload (MLflow's artifact API has no
            # conditional write).
            now = repo.list_files(sub)
            before = self._listed
            late = [f for f in files if now.get(posixpath_name(f.dest)) != before.get(f.dest)]
            if late:
                with self._count:
                    self.result.differs += [
                        f"{f.dest} (" + ("removed from the stack during the move" if posixpath_name(f.dest) not in now
                                         else f"written on the stack during the move, {now[posixpath_name(f.dest)]} "
                                              "bytes") + ")" for f in late]
                files = [f for f in files if f not in late]
        pending: list[tuple[PlannedFile, str]] = []
        for f in files:
            if self._stop.is_set():
                return
            try:
                # sent from a private snapshot copied from the one descriptor opened and checked (MLflow's
                # repository takes a path: the laptop's path could be swapped for a link meanwhile)
                with tempfile.TemporaryDirectory(prefix=SEND_PREFIX, dir=self.scratch) as tmp:
                    snapshot = Path(tmp) / f.dest.rsplit("/", 1)[-1]
                    digest = read_planned(f, snapshot)
                    repo.log_artifact(str(snapshot), sub or None)
                with self._count:
                    self.result.uploaded += 1
                    self.result.uploaded_bytes += f.size
                manifest.record(FileRecord(f.dest, self._rel(f.source), f.size, f.mtime_ns, digest, UPLOADED))
            except Changed as exc:
                with self._count:
                    self.result.changed.append(f"{f.source} ({exc})")
                continue
            pending.append((f, digest))
            if progress is not None:
                progress.advance(task, f.size)
        listed = repo.list_files(sub)
        for f, digest in pending:
            name = f.dest.rsplit("/", 1)[-1]
            try:
                if listed.get(name) != f.size:
                    raise VerificationError(f"after upload the stack lists {f.dest} with {listed.get(name)} bytes, "
                                            f"not {f.size}")
                if self.opts.verify == "full" and _stack_digest(repos, f.dest) != digest:
                    raise VerificationError(f"{f.dest} read back from the stack differs from {f.source} "
                                            "(sha256)")
            except VerificationError as exc:  # this file only: the other folders go on, the run fails at the end
                manifest.record(FileRecord(f.dest, self._rel(f.source), f.size, f.mtime_ns, digest, FAILED))
                with self._count:
                    self.result.unverified.append(str(exc))
                continue
            manifest.record(FileRecord(f.dest, self._rel(f.source), f.size, f.mtime_ns, digest, VERIFIED))
            with self._count:
                self.result.verified += 1

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.result.artifacts_dir).as_posix()
        except ValueError:
            return str(path)

    # --- 2. database ---------------------------------------------------------------------------------
    def _database(self, rewritten: Path, db_uri: str, manifest: Manifest) -> dict:
        """The migration of the rewritten copy; the manifest marks the step the moment its commit returned."""
        from migration.core import Options, migrate

        def committed() -> None:
            self.committed = True
            manifest.mark_step("database", time.strftime("%Y-%m-%d %H:%M:%S"))

        self.reporter.info("database step: the existing migration of the rewritten copy (one transaction)")
        outcome = migrate(Options(source=str(rewritten), target=db_uri), _CommitWatch(self.reporter, committed))
        self.reporter.summary(outcome)
        data = outcome.as_dict()
        return {"rows": data["rows"], "tables": {t: v["copied_rows"] for t, v in data["tables"].items()},
                "verified": data["verified"], "probe": data["probe"]}

    def _check_on_stack(self, stack, plan: MovePlan, layout: StackLayout) -> None:
        """Through the API, after the database step: every run of the source is there."""
        contents = stack.contents(layout)
        absent = [r for r in plan.runs if r not in contents.runs]
        if absent:
            raise VerificationError(f"after the database step the stack lacks {len(absent)} run(s) of the source, "
                                    f"e.g. {absent[0]}")

    def _finish(self, stack, plan: MovePlan, manifest: Manifest, held: bool, contents,
                layout: StackLayout | None = None) -> MoveResult:
        """A check, writing nothing on the stack: it holds the source's rows, and every planned file as the
        laptop has it (listed with its size; with --verify full read back and compared by sha256)."""
        result = self.result
        if not held:
            absent = len(plan.runs) - len(contents.runs & set(plan.runs))
            if plan.runs and not absent:
                raise RefusedError("the stack holds runs with this source's ids, but not its experiments as the "
                                   "database step writes them (id and creation time): not this source's move")
            raise RefusedError("the stack does not hold the source's runs yet: run the printed database step first "
                               f"({absent} of {len(plan.runs)} runs absent)")
        plan, not_moved = _held_part(plan, contents)
        _refuse_other_locations(plan, contents, layout or StackLayout())  # the layout _locked read: no second call
        todo = self._to_send(_Repos(stack.uri), plan, manifest, record=False)
        wrong = [f.dest for f in todo] + result.differs + [f"{d}/ (no row on the stack)" for d in not_moved]
        if wrong:
            raise VerificationError(f"{len(wrong)} artifact file(s) of the source are not on the stack as the laptop "
                                    "has them (" + ("listed, read back" if self.opts.verify == "full" else "listed")
                                    + f"): {_listing(wrong)}",
                                    hint="rerun the move without --finish: it sends the ones the stack lacks or holds "
                                         "as this move sent them (those changed on the stack only with --overwrite)")
        result.skipped = len(plan.files)
        result.status = "finished"
        return result


class Changed(Exception):
    """A planned file is no longer the one the plan saw: replaced, a link now, gone, or of another size."""


def read_planned(f: PlannedFile, copy_to: Path | None = None, chunk: int = 1 << 20) -> str:
    """The sha256 of the planned file, read through one descriptor opened without following a link (O_NOFOLLOW)
    and checked to be the very file the plan recorded (device, inode, size; a regular file); with `copy_to`, the
    bytes hashed are the bytes written there (a private snapshot, mode 0600). Raises Changed otherwise."""
    import hashlib

    try:
        fd = os.open(f.opened, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise Changed("a link now" if exc.errno == errno.ELOOP else exc.strerror or str(exc)) from None
    try:
        if f.root is not None:
            where = _fd_path(fd)
            if not _under_root(where, f):
                raise Changed(f"opened as {where}, outside {f.root} (a folder on its path swapped for a link?)")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (f.dev, f.ino):
            raise Changed("another file than the one planned")
        if st.st_size != f.size:
            raise Changed(f"{st.st_size} bytes, planned with {f.size}")
        digest = hashlib.sha256()
        read = 0
        out = os.open(copy_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600) if copy_to else None
        try:
            while block := os.read(fd, chunk):
                digest.update(block)
                read += len(block)
                if out is not None:
                    view = memoryview(block)
                    while view:
                        view = view[os.write(out, view):]
        finally:
            if out is not None:
                os.close(out)
        if read != f.size:
            raise Changed(f"{read} bytes read, planned with {f.size}")
        return digest.hexdigest()
    finally:
        os.close(fd)


def _under_root(where: Path, f: PlannedFile) -> bool:
    """Whether the descriptor's real path `where` lies in the planned file's root: by its text, else by identity
    (a folder of `where` is the very folder the plan walked, its device and inode recorded then). The kernel
    answers a real path (no link in it) but may spell it otherwise than the plan (macOS F_GETPATH: a
    case-insensitive volume's on-disk spelling); each folder is looked at with lstat, so one that is a link
    now is not taken for the folder it points to."""
    if where == f.root or f.root in where.parents:
        return True
    if f.root_id is None:
        return False
    for folder in where.parents:
        try:
            st = os.lstat(folder)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == f.root_id:
            return True
    return False


def _fd_path(fd: int) -> Path:
    """The real path of an open descriptor: /proc/self/fd on Linux, fcntl F_GETPATH on macOS. Where neither
    exists the move refuses to send (it could not tell a file reached through a swapped folder)."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
    if hasattr(fcntl, "F_GETPATH"):
        return Path(os.fsdecode(fcntl.fcntl(fd, fcntl.F_GETPATH, b"\0" * 1024).rstrip(b"\0")))
    raise RefusedError("this system tells no open file's path (neither /proc/self/fd nor F_GETPATH): the move "
                       "cannot check that a file it sends lies inside the artifact root; nothing more was sent",
                       hint="run the move on Linux or macOS")


def _differs(f: PlannedFile, size: int) -> str:
    return f"{f.dest} (" + (f"{size} bytes on the stack, {f.size} here" if size != f.size else
                            "another sha256 read back from the stack, same size") + ")"


def _stack_digest(repos: "_Repos", dest: str) -> str:
    """The sha256 of a file as the stack serves it (downloaded through its artifact API, then hashed)."""
    directory, name = dest.rsplit("/", 1)
    repo, sub = repos.get(directory)
    with tempfile.TemporaryDirectory(prefix="mlflow-move-verify-") as tmp:
        local = Path(tmp) / name
        repo._download_file(f"{sub}/{name}" if sub else name, str(local))
        return sha256_of(local)


def _digest_or_none(f: PlannedFile) -> str | None:
    try:
        return read_planned(f)
    except Changed:
        return None  # not done: the upload refuses it, listed


def posixpath_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


class _Repos:
    """MLflow's artifact repository per experiment folder (`mlflow-artifacts:/<id>` or `.../workspaces/<w>/<id>`),
    with the stack as tracking URI: MLflow resolves it to the stack's artifact API with the stack's path prefix
    (a repository at `mlflow-artifacts:/` itself would drop the prefix: MlflowArtifactsRepository.resolve_uri)."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self._repos: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, directory: str):
        if not normalised_dest(directory) or not _HEAD.match(directory):
            raise ValueError(f"not a destination under the stack's artifact root: {directory!r}")
        parts = directory.split("/")
        head_len = 3 if parts[0] == "workspaces" else 1
        head, sub = "/".join(parts[:head_len]), "/".join(parts[head_len:])
        with self._lock:
            repo = self._repos.get(head)
            if repo is None:
                repo = _Repository(f"mlflow-artifacts:/{head}", tracking_uri=self.tracking_uri)
                if parts[0] == "workspaces" and parts[1] != "default":
                    repo = _InWorkspace(repo, parts[1])
                self._repos[head] = repo
        return repo, sub


@functools.cache
def _repository_class():
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import augmented_raise_for_status, http_request

    class Repository(MlflowArtifactsRepository):
        """MLflow's repository, with a listing that says what the server says: `list_artifacts` answers [] for a
        folder holding one file of the folder's own name (`x/x`: "the path names a file"), and rewrites names
        through validate_path_is_safe (a leading space stripped, `T10:00.log` lowercased as a URL scheme)."""

        def list_files(self, sub: str) -> dict[str, int]:
            """name -> size of the files directly in `sub` (a file listed without a size has 0 bytes)."""
            endpoint = "/mlflow-artifacts/artifacts"
            url, tail = self.artifact_uri.split(endpoint, maxsplit=1)
            root = tail.lstrip("/")
            resp = http_request(get_default_host_creds(url), endpoint, "GET",
                                params={"path": f"{root}/{sub}" if sub else root})
            augmented_raise_for_status(resp)
            found = {}
            for f in resp.json().get("files", []):
                name = f.get("path", "")
                if f.get("is_dir") or not name or "/" in name or name in (".", ".."):
                    continue
                found[name] = int(f.get("file_size") or 0)
            return found

    return Repository


def _Repository(uri: str, tracking_uri: str):
    return _repository_class()(uri, tracking_uri=tracking_uri)


class _InWorkspace:
    """A repository whose every call carries its workspace: the server refuses a `workspaces/<w>/...` path
    unless the request names <w> (X-MLFLOW-WORKSPACE; none means `default`), and MLflow's client adds that header
    from a context variable. Set per call, in the calling thread (upload threads start with an empty context),
    never through MLFLOW_WORKSPACE (process-wide: parallel calls for other workspaces would take it)."""

    def __init__(self, repo, workspace: str):
        self._repo, self._workspace = repo, workspace

    def __getattr__(self, name):
        attr = getattr(self._repo, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            from mlflow.utils.workspace_context import _IS_WORKSPACE_RESOLVED, _WORKSPACE, set_server_request_workspace

            resolved = _IS_WORKSPACE_RESOLVED.get()
            token = set_server_request_workspace(self._workspace)
            try:
                return attr(*args, **kwargs)
            finally:
                _WORKSPACE.reset(token)
                _IS_WORKSPACE_RESOLVED.set(resolved)
        return call


def _holds_source(plan: MovePlan, contents) -> bool:
    """Whether the database step moved this source into the stack. First by its experiments: one on the stack
    with the laptop's id and creation time (set by the server that made it, kept by the database step, never
    chosen through the API: a stack user's experiment 1 has the stack's own time). For experiments without a
    creation time (older MLflow): one of its runs or logged models (uuids the server made) in the same
    experiment, else one of its traces there. A source without any of them has nothing to send and is never
    taken as held. Never "all of them": runs or traces logged on the laptop after the step, or a moved
    experiment renamed on the stack, must not make a rerun take the stack for another's (stuck for good)."""
    if any(plan.created.values()):
        return bool(_moved_experiments(plan, contents))
    made = [e for e in (*plan.runs, *plan.logged_models) if e not in plan.deleted_models] or sorted(plan.traces)
    return any(_same_entity(e, plan.owner.get(e), contents) for e in made)


def _moved_experiments(plan: MovePlan, contents) -> set[str]:
    """The source's experiments the stack holds as the database step wrote them (id and creation time). The
    Default experiment 0 too: the step lets the laptop's row win over the stack's seed row (migration/existing.py),
    so the stack's 0 carries the laptop's creation time only once the step ran."""
    created = contents.created
    return {e for e, t in plan.created.items() if created.get(e) == t}


def _same_entity(entity: str, experiment: str | None, contents) -> bool:
    """The stack holds this run, logged model or trace id, in this experiment."""
    held = entity in contents.runs or entity in contents.logged_models or entity in contents.traces
    return held and (experiment is None or contents.owner.get(entity, experiment) == experiment)


def _entity_folder(dest: str) -> str:
    """The run, logged model or trace folder a destination lies in: `1/<run>/artifacts`,
    `1/models/<id>/artifacts`, `workspaces/<w>/1/traces/<id>/artifacts`."""
    parts = dest.split("/")
    i = 2 if parts[0] == "workspaces" else 0
    depth = 4 if len(parts) > i + 1 and parts[i + 1] in ("models", "traces") else 3
    return "/".join(parts[:i + depth])


def _entity_held(folder: str, plan: MovePlan, contents, moved: set[str]) -> bool:
    """Whether the stack holds the run, logged model or trace a folder belongs to, in the folder's experiment,
    and that experiment is the laptop's (`moved`: id and creation time; where the laptop's has no creation
    time, the id): a trace id a stack user chose to be the laptop's, in an experiment of their own, gets
    nothing. Logged models deleted on either side are in `contents` too (Stack.add_deleted_models)."""
    parts = folder.split("/")
    i = 2 if parts[0] == "workspaces" else 0
    experiment = parts[i]
    if plan.created.get(experiment) and experiment not in moved:
        return False
    kind = parts[i + 1] if len(parts) > i + 1 else ""
    entity = parts[i + 2] if kind in ("models", "traces") and len(parts) > i + 2 else kind
    return _same_entity(entity, experiment, contents)


def _refuse_other_locations(plan: MovePlan, contents, layout: StackLayout) -> None:
    """A stack holding the source's runs and logged models with other artifact locations than the move's (the
    database moved earlier by the plain migration, which keeps the laptop's paths or a --rewrite-artifact-root
    target): files sent into the server's layout would be seen by nobody. Refused, nothing sent."""
    from migration.locations import served_uri

    other = []
    for folder in sorted({_entity_folder(f.dest) for f in plan.files}):
        parts = folder.split("/")
        i = 2 if parts[0] == "workspaces" else 0
        entity = parts[i + 2] if parts[i + 1] in ("models", "traces") else parts[i + 1]
        have = contents.location.get(entity)
        want = served_uri(layout.root, *parts)
        if have and parts[i + 1] != "traces" and have.rstrip("/") != want:  # "" or None: the stack did not say
            other.append(f"{entity}: {have} (the move's: {want})")
    if other:
        raise RefusedError(f"the stack holds this source's rows with other artifact locations than the move writes "
                           f"({len(other)}: {_listing(other, 5)}): its database was moved before without them "
                           "(the plain migration keeps the laptop's paths); files sent now would be seen by nobody; "
                           "nothing was sent",
                           hint="move into a new stack, or have the stack's rows point at mlflow-artifacts:/ first")


def _held_part(plan: MovePlan, contents) -> tuple[MovePlan, list[str]]:
    """The plan cut to the files of runs, logged models and traces the stack holds, and the folders of the
    others (sorted)."""
    import dataclasses

    moved = _moved_experiments(plan, contents)
    held = {d: _entity_held(d, plan, contents, moved) for d in {_entity_folder(f.dest) for f in plan.files}}
    files = [f for f in plan.files if held[_entity_folder(f.dest)]]
    return dataclasses.replace(plan, files=files), sorted(d for d, ok in held.items() if not ok)


def _refuse_other_data(plan: MovePlan, contents) -> None:
    """Ids are kept: a stack holding data of its own is refused by the database step; refused here first,
    with the move's own message: experiments (their ids are the source's ids too: both count from 1),
    registered models, and runs, logged models or traces in any experiment (0 included) and any workspace.
    Called only for a stack that does not hold this source (_holds_source), so every one of them is another's,
    the source's own ids included (a client chooses trace ids)."""
    own = {e: n for e, n in contents.experiments.items() if e != "0"}
    runs, models, traces = contents.runs, contents.logged_models, contents.traces
    if own and not (plan.runs or plan.logged_models or plan.traces) and not (runs or models or traces) and \
            own == {e: n for e, n in plan.experiments.items() if e != "0"} and \
            sorted(contents.registered_models) == sorted(plan.registered_models):
        raise RefusedError("the stack holds experiments and registered models of exactly this source's ids and names, "
                           "and nothing else; this source has no artifact to send: if its printed database step "
                           "ran, the move is complete; nothing was written",
                           hint="`move --check` lists the source; if the step did not run, these are a stack user's: "
                                "move into a new stack")
    if own or contents.registered_models or runs or models or traces:
        clash = sorted(set(own) & set(plan.experiments), key=lambda x: int(x) if x.isdigit() else 0)
        parts = ([f"{len(own)} experiment(s)" + (f" (ids {', '.join(clash[:10])} are the source's ids too)"
                                                 if clash else "")] if own else [])
        parts += [f"{len(x)} {what}" for x, what in ((contents.registered_models, "registered model(s)"),
                                                     (runs, "run(s)"), (models, "logged model(s)"),
                                                     (traces, "trace(s)")) if x]
        raise RefusedError(f"the stack already holds data of its own: {', '.join(parts)}; a move keeps the source's "
                           "ids and goes only into a stack without experiments, registered models, runs, logged "
                           "models or traces of its own (experiment 0 included); nothing was written",
                           hint="move into a new stack (or `pulumi destroy`/recreate its database)")


_HEAD = re.compile(r"^(?:workspaces/[a-z0-9][-a-z0-9]*/)?[0-9]+(?:/|$)")


def _listing(items: list[str], limit: int = 20) -> str:
    return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _restated(exc: MigrationError, message: str, hint: str | None) -> MigrationError:
    """The same failure (its type and exit code) with the move's message and hint."""
    try:
        new = type(exc)(message, hint=hint)
    except TypeError:  # a type whose constructor takes other arguments
        new = MigrationError(message, hint=hint)
        new.exit_code = exc.exit_code
    return new


MOVE_HINT = "`move --check` with the same arguments says what the stack holds now; then rerun the move"


def _after_failed_database(exc: MigrationError, plan: MovePlan, stack, layout: StackLayout) -> MigrationError:
    """The database step failed, nothing of it committed, and no artifact was sent (they go after it). The
    stack is listed again: if it holds this source now, another move of it committed meanwhile (a rerun sends
    the artifacts). The hint is the move's own (the migration's would say `--mode replace`: emptying the
    stack)."""
    try:
        contents = stack.contents(layout)
    except MigrationError as again:
        return _restated(exc, f"{exc.message}; nothing of this move was written (the artifacts go after the "
                              f"database step); the stack could not be listed again ({again.message})",
                         hint=MOVE_HINT)
    if _holds_source(plan, contents):
        return _restated(exc, f"{exc.message}; another move of this source committed meanwhile: the stack holds its "
                         "experiments and runs", hint="rerun the move: it sends the artifacts the stack lacks")
    return _restated(exc, f"{exc.message}; nothing of this move was written (the artifacts go after the database "
                          "step)", hint=MOVE_HINT)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"


# The migration's main with the database URI read from the environment variable named by its 2nd argument:
# the URI is on no command line (no quotes in it: it nests in every stack's command).
MIGRATE_FROM_ENV = "import os,sys;from migration.cli import main;sys.exit(main([sys.argv[1],os.environ[sys.argv[2]]]))"


STAGED_DB = "mlflow.db"
STAGE_DIR = ".move"
"""The rewritten copy goes to `<artifacts.prefix>/.move/<random>/mlflow.db` in the stack's bucket (aws, azure):
under the prefix the server's role may read and write (components/render/storage.py, artifact_bucket_policy:
objects under `<prefix>/*` only), outside MLflow's `<experiment id>/` layout, so the stack never serves it: the
proxy refuses every artifact download, upload, presigned or multipart path that does not start with an experiment
id (components/render/proxy.py, _refuse_empty_artifact_path: 400 before MLflow's auth runs)."""
PULUMI_INSTANCE = "mlflow"  # the program's component name (__main__.py): local resources are mlflow-<stack>-...


def _stage_key(token: str) -> str:
    return f'${{PREFIX:+$PREFIX/}}{STAGE_DIR}/{token}/{STAGED_DB}'


def _mount_source(path: Path) -> str:
    """`--mount` takes comma-separated key=value fields (CSV): a source holding `,` or `"` is quoted as CSV
    quotes it (a `:` needs nothing, unlike in -v)."""
    src = f"src={path}"
    if "," in src or '"' in src:
        src = '"' + src.replace('"', '""') + '"'
    return f"type=bind,{src},dst=/data/{STAGED_DB},readonly"


def _local_step(rewritten: Path, pulumi_stack: str) -> str:
    """The one-off container as the ops tools start theirs (ops/local_stack.py, oneoff_command; ops/oneoff.py):
    the server's image on the stack's network, its one-off labels, the URI as a secret file (never in the
    container's config or a process list), removed when done."""
    from ops.local_stack import SERVER, LocalStack

    prefix = f"{PULUMI_INSTANCE}-{pulumi_stack}"
    image = "@IMAGE@"
    stack = LocalStack(prefix=prefix, docker="docker", containers={SERVER: {"Image": image}}, network=f"{prefix}-net")
    argv = stack.oneoff_command(["python", "-c", MIGRATE_FROM_ENV, f"/data/{STAGED_DB}", "URI"], {"URI": ""}).argv
    argv = ["python3", *argv[1:]]
    at = argv.index(image)
    argv[at:at] = ["--mount", _mount_source(rewritten)]
    command = " ".join(shlex.quote(a) for a in argv).replace(shlex.quote(image), '"$IMAGE"')
    server = f"{prefix}-{SERVER}"
    s = shlex.quote(pulumi_stack)
    return (f"# no maintenance lock is taken: run it when no backup, restore or gc runs on the stack\n"
            f"export URI=\"$(pulumi stack output database_uri --show-secrets -s {s})\"\n"
            f"IMAGE=\"$(docker inspect --format '{{{{.Image}}}}' {server})\"  # the image the server runs: its "
            "mlflowVersion\n"
            f"{command}\n"
            "unset URI")


def _aws_step(rewritten: Path, pulumi_stack: str, token: str) -> str:
    s = shlex.quote(pulumi_stack)
    download = ("python -c \"import boto3,os;e=os.environ;boto3.client('s3').download_file(e['MOVE_BUCKET'],"
                f"e['MOVE_KEY'],'/tmp/{STAGED_DB}')\"")
    script = f"{download} && python -c \"{MIGRATE_FROM_ENV}\" /tmp/{STAGED_DB} MLFLOW_BACKEND_STORE_URI"
    overrides = ('{containerOverrides: [{name: "mlflow-server", command: ["sh", "-c", $c], environment: '
                 '[{name: "MOVE_BUCKET", value: $b}, {name: "MOVE_KEY", value: $k}]}]}')
    return (f"BUCKET=\"$(pulumi stack output bucket -s {s})\"\n"
            f"CLUSTER=\"$(pulumi stack output cluster -s {s})\"\n"
            f"NETWORK=\"$(pulumi stack output run_task_network -s {s})\"\n"
            f"PREFIX=\"$(pulumi config get --path mlflow:artifacts.prefix -s {s} 2>/dev/null || true)\"\n"
            f"KEY=\"{_stage_key(token)}\"  # inside the task role's prefix, never served (no experiment id)\n"
            f"aws s3 cp {shlex.quote(str(rewritten))} \"s3://$BUCKET/$KEY\"\n"
            f"SCRIPT={shlex.quote(script)}\n"
            "TASK=\"$(aws ecs run-task --cluster \"$CLUSTER\" --task-definition \"$CLUSTER-mlflow-server\" "
            "--launch-type FARGATE \\\n"
            "  --network-configuration \"$NETWORK\" --started-by mlflow-move --query 'tasks[0].taskArn' --output text "
            "\\\n"
            f"  --overrides \"$(jq -n --arg c \"$SCRIPT\" --arg b \"$BUCKET\" --arg k \"$KEY\" '{overrides}')\")\"\n"
            "aws ecs wait tasks-stopped --cluster \"$CLUSTER\" --tasks \"$TASK\"  # up to 10 minutes: repeat it if "
            "it times out\n"
            "aws ecs describe-tasks --cluster \"$CLUSTER\" --tasks \"$TASK\" "
            "--query 'tasks[0].containers[?name==`mlflow-server`].exitCode' --output text  # 0: committed\n"
            f"# its output: aws logs tail \"$(pulumi stack output log_group -s {s})\"\n"
            "aws s3 rm \"s3://$BUCKET/$KEY\"\n"
            "# the bucket is versioned: the rm leaves a noncurrent version, deleted by the lifecycle rule "
            "expire-noncurrent-versions\n"
            "# after aws.noncurrentVersionExpirationDays (default 90; 0 or null: kept). To delete it now:\n"
            "# aws s3api list-object-versions --bucket \"$BUCKET\" --prefix \"$KEY\" --query "
            "'[Versions,DeleteMarkers][].VersionId' --output text | tr '\\t' '\\n' | while read -r v; do\n"
            "#   [ \"$v\" = None ] || aws s3api delete-object --bucket \"$BUCKET\" --key \"$KEY\" --version-id \"$v\"; "
            "done")


REPLICA_TIMEOUT = 86400  # the azure job's replicaTimeout (s): Container Apps stops the execution after it
POLL_GRACE = 600  # the polling gives up this long after the replica timeout
POLL_MISSES = 30  # or after this many empty/failed/Unknown answers in a row (5 minutes at 10 s)


def _azure_step(rewritten: Path, pulumi_stack: str, token: str) -> str:
    """A Container Apps job of the server's image, identity and environment, made from a spec file: `az
    containerapp job create --args -c ...` is refused by az's own parser (a value starting with `-`:
    Azure/azure-cli#27011, microsoft/azure-container-apps#976), and `az containerapp exec --command` runs its
    string as one executable (microsoft/azure-container-apps#1029). The database URI reaches the job as a
    secret of its own (MLFLOW_BACKEND_STORE_URI=secretref), written into the spec file (mode 0600, removed),
    never onto a command line."""
    s = shlex.quote(pulumi_stack)
    download = ("python -c \"import os;from azure.identity import DefaultAzureCredential as C;from azure.storage.blob "
                "import BlobClient as B;e=os.environ;B('https://'+e['MOVE_ACCOUNT']+'.blob.core.windows.net',"
                f"e['MOVE_CONTAINER'],e['MOVE_KEY'],credential=C()).download_blob().readinto(open('/tmp/{STAGED_DB}',"
                "'wb'))\"")
    script = f"{download} && python -c \"{MIGRATE_FROM_ENV}\" /tmp/{STAGED_DB} MLFLOW_BACKEND_STORE_URI"
    spec = ('($app.properties.template.containers[] | select(.name == "mlflow-server")) as $server | '
            '{location: $app.location, identity: {type: "UserAssigned", userAssignedIdentities: '
            '($app.identity.userAssignedIdentities | map_values({}))}, properties: {environmentId: '
            '$app.properties.environmentId, configuration: {triggerType: "Manual", replicaTimeout: '
            + str(REPLICA_TIMEOUT) + ', '
            'replicaRetryLimit: 0, manualTriggerConfig: {parallelism: 1, replicaCompletionCount: 1}, '
            'secrets: [{name: "backend-uri", value: input}], registries: $app.properties.configuration.registries}, '
            'template: {containers: [{name: "mlflow-move", image: $server.image, command: ["sh", "-c", $c], '
            'resources: $server.resources, env: ([$server.env[] | select(.name == "AZURE_CLIENT_ID")] + '
            '[{name: "MLFLOW_BACKEND_STORE_URI", secretRef: "backend-uri"}, {name: "MOVE_ACCOUNT", value: $a}, '
            '{name: "MOVE_CONTAINER", value: $b}, {name: "MOVE_KEY", value: $k}])}]}}}')
    job = f"mlflow-move-{token}"
    return (f"RG=\"$(pulumi stack output resource_group -s {s})\"\n"
            f"ACCOUNT=\"$(pulumi stack output storage_account -s {s})\"\n"
            f"CONTAINER=\"$(pulumi stack output bucket -s {s})\"\n"
            f"PREFIX=\"$(pulumi config get --path mlflow:artifacts.prefix -s {s} 2>/dev/null || true)\"\n"
            f"KEY=\"{_stage_key(token)}\"  # never served (no experiment id)\n"
            "az storage blob upload --auth-mode login --account-name \"$ACCOUNT\" --container-name \"$CONTAINER\" "
            f"--name \"$KEY\" --file {shlex.quote(str(rewritten))}\n"
            "APP=\"$(az containerapp show -g \"$RG\" -n mlflow-server -o json)\"\n"
            f"SCRIPT={shlex.quote(script)}\n"
            "SPEC=\"$(umask 077; mktemp)\"\n"
            f"pulumi stack output database_uri --show-secrets -s {s} | jq -Rn --argjson app \"$APP\" --arg c "
            "\"$SCRIPT\" \\\n"
            f"  --arg a \"$ACCOUNT\" --arg b \"$CONTAINER\" --arg k \"$KEY\" {shlex.quote(spec)} > \"$SPEC\"\n"
            f"az containerapp job create -g \"$RG\" -n {job} --yaml \"$SPEC\"; rm -f \"$SPEC\"\n"
            f"EXECUTION=\"$(az containerapp job start -g \"$RG\" -n {job} --query name -o tsv)\"  # returns when "
            "queued\n"
            "STATUS=\"$([ -n \"$EXECUTION\" ] && echo Running || echo 'Failed (no execution started)')\"\n"
            f"MISSES=0; WAITED=0  # gives up after {POLL_MISSES} empty or failed answers in a row, or the job's "
            f"replicaTimeout ({REPLICA_TIMEOUT} s) and {POLL_GRACE} s\n"
            "while :; do\n"
            "  case \"$STATUS\" in Running|Processing|Pending) ;; *) break;; esac  # any other status is final\n"
            f"  if [ \"$WAITED\" -ge {REPLICA_TIMEOUT + POLL_GRACE} ]; then STATUS=\"still $STATUS after the job's "
            f"replicaTimeout ({REPLICA_TIMEOUT} s)\"; break; fi\n"
            "  sleep 10; WAITED=$((WAITED + 10))\n"
            f"  ANSWER=\"$(az containerapp job execution show -g \"$RG\" -n {job} --job-execution-name \"$EXECUTION\" "
            "--query properties.status -o tsv)\"\n"
            "  case \"$ANSWER\" in\n"
            "    ''|Unknown) MISSES=$((MISSES + 1))\n"
            "      echo \"$EXECUTION: ${ANSWER:-no answer} ($MISSES in a row)\"\n"
            f"      if [ \"$MISSES\" -ge {POLL_MISSES} ]; then STATUS=\"unknown: no status in {POLL_MISSES} "
            "answers in a row; check az login and the network, then the execution in the portal\"; break; fi;;\n"
            "    *) MISSES=0; STATUS=\"$ANSWER\"; echo \"$EXECUTION: $STATUS\";;\n"
            "  esac\n"
            "done\n"
            "if [ \"$STATUS\" = Succeeded ]; then\n"
            "  echo \"the database step committed\"\n"
            f"  az containerapp job delete -g \"$RG\" -n {job} --yes\n"
            "  az storage blob delete --auth-mode login --account-name \"$ACCOUNT\" --container-name \"$CONTAINER\" "
            "--name \"$KEY\"\n"
            "else\n"
            f"  echo \"the database step did not succeed ($STATUS): nothing was deleted; the job {job} and its logs "
            "are kept, and the staged copy $KEY: read its output (az containerapp job logs show -g \"$RG\" -n "
            f"{job} --execution \"$EXECUTION\" --container mlflow-move; az containerapp job execution show), and "
            "whether the stack holds the source's runs now (move --finish): only if it does not, delete both (az "
            "containerapp job delete, az storage blob delete) before another try\"\n"
            "fi")


def one_off_step(opts: MoveOptions, rewritten: Path, token: str | None = None) -> str:
    """The database step where the stack's database is not reachable from here: the commands per stack, every
    name read from `pulumi stack output` (of --pulumi-stack, default: the kind's own stack name). No password on
    any command line: the migration inside reads the URI from its environment (`python -c MIGRATE_FROM_ENV
    FILE VARIABLE`), which a secret file (local) or the task's or job's secret env fills."""
    token = token or secrets.token_hex(6)
    me = rerun_command(opts)
    kinds = {"local": lambda n: _local_step(rewritten, n), "aws": lambda n: _aws_step(rewritten, n, token),
             "azure": lambda n: _azure_step(rewritten, n, token)}
    chosen = [opts.stack_kind] if opts.stack_kind else list(kinds)
    body = "\n\n".join(f"# {k}:\n{kinds[k](opts.pulumi_stack or k)}" for k in chosen)
    return (f"{body}\n\n# then the artifacts, into the experiments the step created (the same command again; "
            f"--finish checks afterwards):\n{me}")


def rerun_command(opts: MoveOptions) -> str:
    """This move's command as the user gave it, for after the one-off database step (it sends the artifacts)."""
    argv = ["python", "-m", "migration", "move", opts.source, "--to", normalise_stack_uri(opts.to)]
    for flag, value in (("--artifacts", opts.artifacts), ("--manifest", opts.manifest)):
        if value:
            argv += [flag, value]
    if opts.jobs != 8:
        argv += ["--jobs", str(opts.jobs)]
    if opts.verify != "size":
        argv += ["--verify", opts.verify]
    argv += [flag for flag, on in (("--allow-missing", opts.allow_missing), ("--overwrite", opts.overwrite)) if on]
    return " ".join(shlex.quote(a) for a in argv)


__all__ = ["Move", "MoveOptions", "MoveResult", "EXIT_OK", "state_dir", "one_off_step", "rerun_command"]
