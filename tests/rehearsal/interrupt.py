"""A crash-consistency harness for ops/ (issue 28): the project's own backup and restore, run in a
child process whose every step can be interrupted for real.

The child (`python -m tests.rehearsal.interrupt`, started by `Harness.run`) runs `ops.backup.main` or
`ops.restore.main` (scripts/backup, scripts/restore) with `ControlledAccess` in place of the local
stack's LocalAccess, a StackAccess that builds exactly the commands
test_13's RehearsalAccess builds, but announces each one to the parent before returning it (the
psql/pg_dump/pg_restore/python command lines, stop_server, start_server: the tool's steps) and waits
for the parent's answer. So the parent decides, at step k: let it run; SIGKILL the child (a real
kill -9: no `finally`, no `except`); restart PostgreSQL while the step runs; or make the step fail
with ENOSPC (the temporary file every command's stderr goes to could not be written). The MLflow
server stays a process of the parent's stack: the child's stop_server/start_server ask the parent.

A full disk for the files a backup writes is real where the machine allows it: the child runs in a
mount namespace of its own (`unshare --user --map-root-user --mount`) on a tmpfs of a given size,
partly taken by a filler file; the parent reads the directory through /proc/<child>/root while the
child waits, and tells it to free the filler and run the same command again.

`stack_state` reads what the invariants compare straight from PostgreSQL and the bucket (the server
may be stopped after an interruption; starting it to look would hide a restore that leaves it stopped).
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
CODE_UNDER_TEST_ENV = "OPS_UNDER_TEST_ROOT"
"""A checkout whose ops/ the child runs instead of this one's (it needs this file and test_13 too):
how a case is shown to fail before a fix, e.g. a `git archive HEAD` extracted elsewhere."""
RUN_TIMEOUT_SECONDS = 300.0
LOCK_RELEASE_SECONDS = 15.0
TMPFS_PAGE = 4096
SERVER_STATE_TABLES = ("scheduler_leases", "job_locks")
"""Rows the server writes for itself (leases, job locks) whenever it runs: not user data."""

GO, KILL, RESTART_POSTGRES, ENOSPC = "go", "kill", "restart-postgres", "enospc"
ACTIONS = (GO, KILL, RESTART_POSTGRES, ENOSPC)


# --- what the parent sees of a run -------------------------------------------------------------------


@dataclass
class Step:
    """One command (or server stop/start) the tool asked its StackAccess for, in order."""

    index: int
    kind: str
    """postgres, python, stop_server or start_server"""
    argv: list[str]

    @property
    def summary(self) -> str:
        return f"#{self.index} {self.kind} {' '.join(self.argv)}".strip()


@dataclass
class Outcome:
    """How a run of the tool ended."""

    steps: list[Step]
    stderr: str
    """everything the tool printed (its progress lines and its error)"""
    exit_code: Optional[int]
    """None when the harness killed it"""
    acted_at: Optional[Step] = None
    """the step at which the plan interrupted the run (None: it ran through)"""
    observed: list[Any] = field(default_factory=list)
    """what `observe` returned before each step (the enumeration run's fingerprints)"""

    def describe(self) -> str:
        ending = "killed (SIGKILL)" if self.exit_code is None else f"exit status {self.exit_code}"
        at = f" at {self.acted_at.summary}" if self.acted_at else ""
        steps = "\n    ".join(step.summary for step in self.steps)
        return f"{ending}{at}; printed:\n{self.stderr.strip() or '(nothing)'}\n  steps:\n    {steps}"


Plan = Callable[[Step], str]
"""step -> one of ACTIONS"""


def always_go(_step: Step) -> str:
    return GO


# --- the child ---------------------------------------------------------------------------------------


class _Channel:
    """JSON lines to and from the parent over the child's original stdin/stdout (fd 1 then points at
    stderr, so nothing the tool prints can garble the protocol)."""

    def __init__(self) -> None:
        self.out: IO[str] = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        self.into: IO[str] = sys.stdin

    def send(self, message: Mapping[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    def receive(self) -> dict[str, Any]:
        line = self.into.readline()
        if not line:
            raise SystemExit("interrupt harness: the parent closed the channel")
        return json.loads(line)


def _script_name(source: str) -> str:
    """A `python -c` source as the name of what it is (the sources are long)."""
    from components import render
    from ops import mlflow_facts, objects
    from ops.access import script_source

    known = {script_source(objects.__file__): "ops/objects.py",
             script_source(mlflow_facts.__file__): "ops/mlflow_facts.py"}
    known.update({getattr(render, name): name for name in dir(render)
                  if name.endswith("_SCRIPT") and isinstance(getattr(render, name), str)})
    return known.get(source, f"<script {source.strip().splitlines()[0][:60] if source.strip() else ''}>")


class ControlledAccess:
    """ops.access.StackAccess whose every step waits for the parent's go (see the module docstring)."""

    def __init__(self, spec: Mapping[str, Any], channel: _Channel):
        self.spec = spec
        self.channel = channel
        self.description = "the rehearsal stack"
        self.lock_token: Optional[str] = None

    def _step(self, kind: str, argv: Sequence[str]) -> dict[str, Any]:
        shown = list(argv)
        if len(shown) >= 2 and shown[0] == "-c":
            shown[1] = _script_name(shown[1])
        self.channel.send({"step": kind, "argv": shown})
        answer = self.channel.receive()
        if answer["do"] == ENOSPC:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(self.spec["workdir"]) / "tmp"))
        if answer["do"] == "error":
            from ops import OpsError

            raise OpsError(answer["message"])
        return answer

    def postgres_command(self, argv: Sequence[str]):
        from ops.access import Command, work_session_env
        from tests.container_pipes import through_pipes

        self._step("postgres", argv)
        postgres = self.spec["postgres"]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(Path(self.spec["workdir"]) / "home"),
               "PGHOST": "127.0.0.1", "PGPORT": str(postgres["port"]), "PGUSER": postgres["superuser"],
               "PGPASSWORD": postgres["password"], **work_session_env(self.lock_token)}
        return Command(through_pipes([str(Path(postgres["bindir"]) / argv[0]), *argv[1:]], forward_sigterm=False),
                       env, hold=self.lock_token)

    def python_command(self, argv: Sequence[str], env: Mapping[str, str]):
        from ops.access import Command, work_session_env
        from rehearsal.processes import base_env
        from tests.container_pipes import through_pipes
        from tests.rehearsal.test_13_backup_restore import oneoff_mark, reads_only

        assert self.lock_token is not None or reads_only(argv), \
            f"a one-off that writes started without the lock: {argv[2:]}"
        self._step("python", argv)
        workdir = Path(self.spec["workdir"])
        return Command(through_pipes([sys.executable, *argv], forward_sigterm=True),
                       {**base_env(workdir / "home", workdir / "tmp"), **oneoff_mark(workdir, self.lock_token), **env,
                        **work_session_env(self.lock_token)}, hold=self.lock_token)

    def server_env(self) -> Mapping[str, str]:
        return self.spec["server_env"]

    def server_command(self) -> Sequence[str]:
        return self.spec["server_command"]

    def stop_server(self) -> bool:
        return bool(self._step("stop_server", [])["was_running"])

    def start_server(self) -> None:
        self._step("start_server", [])

    def stop_orphaned_oneoffs(self) -> int:  # not a step: it must not move the parent's kill points
        from tests.rehearsal.test_13_backup_restore import stop_orphaned

        assert self.lock_token is not None
        return stop_orphaned(Path(self.spec["workdir"]), self.lock_token)


def _run_tool(spec: Mapping[str, Any], access: ControlledAccess) -> int:
    """The tool's own command-line entry point (ops.backup.main, ops.restore.main: its messages, its
    exit statuses, what it lets through as a traceback), with LocalAccess.find answering `access`."""
    import importlib

    from ops import local_stack

    local_stack.LocalAccess.find = classmethod(lambda cls, prefix=None: access)  # type: ignore[assignment,method-assign]
    argv = spec.get("argv") or [spec["directory"], *(["--replace"] if spec.get("replace") else [])]
    return int(importlib.import_module(f"ops.{spec['tool']}").main(argv))


def child_main() -> int:
    """Run the tool as the spec (the first line from the parent) says, report its exit status, then
    wait: "again" runs it once more (after deleting the filler file, if any), "quit" ends."""
    channel = _Channel()
    spec = channel.receive()
    filler = spec.get("filler")
    if filler:
        with open(filler["path"], "wb") as handle:
            handle.write(b"\0" * int(filler["bytes"]))
    access = ControlledAccess(spec, channel)
    while True:
        try:
            code = _run_tool(spec, access)
        except Exception:  # noqa: BLE001 - what main() lets through: Python prints a traceback, exit status 1
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            code = 1
        channel.send({"exit": code})
        command = channel.receive()["do"]
        if command != "again":
            return 0
        if filler:
            Path(filler["path"]).unlink(missing_ok=True)


# --- the parent ----------------------------------------------------------------------------------------


@dataclass
class TinyDisk:
    """The child's backup directory on a tmpfs of `size` bytes of which `filler` are taken."""

    mountpoint: Path
    size: int
    filler: int


class Harness:
    """Runs the tool in a child process against a rehearsal stack (RehearsalAccess of test_13) and
    interrupts it as a plan says."""

    def __init__(self, access: Any, report_dir: Path):
        self.access = access
        self.stack = access.stack
        self.report_dir = report_dir
        report_dir.mkdir(parents=True, exist_ok=True)

    def spec(self, tool: str, directory: Path, replace: bool) -> dict[str, Any]:
        postgres = self.stack.postgres
        return {"tool": tool, "directory": str(directory), "replace": replace, "workdir": str(self.access.workdir),
                "postgres": {"port": postgres.port, "superuser": postgres.superuser,
                             "password": postgres.superuser_password, "bindir": str(postgres.bindir)},
                "server_env": dict(self.access.server_env()), "server_command": list(self.access.server_command())}

    def run(self, tool: str, directory: Path, plan: Plan = always_go, *, replace: bool = False,
            observe: Optional[Callable[[], Any]] = None, disk: Optional[TinyDisk] = None,
            then: Optional[Callable[["ChildRun", Outcome], None]] = None,
            argv: Optional[Sequence[str]] = None) -> Outcome:
        """Run `tool` (backup or restore) once under `plan`. `then(child, outcome)` runs while the
        child still waits after its run (its directory readable, `child.again()` reruns it). `argv`:
        the tool's arguments instead of DIR [--replace] (e.g. `--put-back STAMP`)."""
        spec = self.spec(tool, directory, replace)
        if argv is not None:
            spec["argv"] = list(argv)
        argv = [sys.executable, "-m", "tests.rehearsal.interrupt"]
        if disk is not None:
            spec["filler"] = {"path": str(disk.mountpoint / ".filler"), "bytes": disk.filler}
            argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                    'mount -t tmpfs -o size="$1",mode=0700 tmpfs "$2" && shift 2 && exec "$@"', "sh",
                    str(disk.size), str(disk.mountpoint), *argv]
        child = ChildRun(self, argv, spec)
        try:
            outcome = child.serve(plan, observe)
            if then is not None and outcome.exit_code is not None:
                then(child, outcome)
            return outcome
        finally:
            child.close()

    # -- what the children ask for

    def stop_server(self) -> bool:
        server = self.access.variant.server
        was_running = server.service.alive()
        server.stop()
        return was_running

    def start_server(self) -> None:
        self.access.start_server()  # RehearsalAccess's: a running one is left be, as by `docker start`

    def restart_postgres(self) -> None:
        """PostgreSQL's fast shutdown (every session terminated, open transactions rolled back), then up again."""
        self.stack.postgres.restart()

    def wait_for_lock_release(self) -> Optional[str]:
        """After a kill: the maintenance lock's session must end with its holder. Returns who still
        holds it after LOCK_RELEASE_SECONDS, None once it is free."""
        from components.render import MAINTENANCE_LOCK_KEY

        sql = ("SELECT a.application_name || ' (pid ' || a.pid || ')' FROM pg_locks l JOIN pg_stat_activity a "
               f"ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.classid = {MAINTENANCE_LOCK_KEY >> 32} "
               f"AND l.objid = {MAINTENANCE_LOCK_KEY & 0xFFFFFFFF} AND l.objsubid = 1")
        deadline = time.monotonic() + LOCK_RELEASE_SECONDS
        while True:
            holder = self.stack.postgres.psql(sql).strip()
            if not holder or time.monotonic() > deadline:
                return holder or None
            time.sleep(0.2)


class ChildRun:
    """One child process and the parent's side of its protocol."""

    def __init__(self, harness: Harness, argv: list[str], spec: dict[str, Any]):
        self.harness = harness
        self.stderr_path = harness.report_dir / f"child-{time.monotonic_ns()}.log"
        self._stderr = open(self.stderr_path, "w+b")
        root = os.environ.get(CODE_UNDER_TEST_ENV) or str(REPO_ROOT)
        self.process = subprocess.Popen(argv, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._stderr, env={**os.environ, "PYTHONPATH": root})
        self.deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        self._send(spec)

    @property
    def root(self) -> Path:
        """The child's file system as it sees it (its own mount namespace, when on a tiny disk)."""
        return Path(f"/proc/{self.process.pid}/root")

    def _send(self, message: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def _receive(self) -> Optional[dict[str, Any]]:
        """The child's next message; None when it exited (or did not answer in time: it is killed)."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, self.deadline - time.monotonic()))
            if not ready:
                self.process.kill()
                raise AssertionError(f"the tool did not finish within {RUN_TIMEOUT_SECONDS}s:\n{self.printed()}")
            line = self.process.stdout.readline()
            return json.loads(line) if line else None

    def printed(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_bytes().decode(errors="replace")

    def serve(self, plan: Plan, observe: Optional[Callable[[], Any]] = None) -> Outcome:
        """Answer the child's steps as `plan` says until its run ends or the plan kills it."""
        steps: list[Step] = []
        outcome = Outcome(steps=steps, stderr="", exit_code=None)
        while True:
            message = self._receive()
            if message is None:
                self.process.wait()
                raise AssertionError(f"the harness's child died (exit status {self.process.returncode}):\n"
                                     f"{self.printed()}")
            if "exit" in message:
                outcome.exit_code, outcome.stderr = message["exit"], self.printed()
                return outcome
            step = Step(len(steps), message["step"], message["argv"])
            steps.append(step)
            if observe is not None:
                outcome.observed.append(observe())
            action = plan(step)
            if action != GO:
                outcome.acted_at = step
            if action == KILL:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait()
                outcome.stderr = self.printed()
                return outcome
            self._answer(step, action)

    def _answer(self, step: Step, action: str) -> None:
        if action == ENOSPC:
            self._send({"do": ENOSPC})
            return
        answer: dict[str, Any] = {"do": GO}
        try:
            if step.kind == "stop_server":
                answer["was_running"] = self.harness.stop_server()
            elif step.kind == "start_server":
                self.harness.start_server()
        except Exception as error:  # noqa: BLE001 - the tool sees it as its start_server failing
            answer = {"do": "error", "message": f"{step.kind} failed: {error}"}
        self._send(answer)
        if action == RESTART_POSTGRES:
            self.harness.restart_postgres()

    def again(self, plan: Plan = always_go) -> Outcome:
        """The same command once more in the same child (after its filler file was deleted)."""
        self.deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        self._send({"do": "again"})
        return self.serve(plan)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._send({"do": "quit"})
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()


# --- the stack's data, read directly -------------------------------------------------------------------


_DIGEST_SQL = r"""
SELECT format('SELECT %L, count(*), md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), '''')) FROM %s t',
              c.relname,
              CASE WHEN c.relname = 'users' AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid
                                                 AND a.attname IN ('is_admin', 'password_hash')) = 2
                   THEN '(SELECT u.id, u.username, u.is_admin, CASE WHEN u.is_admin THEN NULL ELSE u.password_hash '
                        'END AS password_hash FROM public.users u)'
                   ELSE format('public.%I', c.relname) END)
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
  AND c.relname <> ALL (string_to_array(:'skip', ','))
ORDER BY c.relname \gexec
"""
"""(rows, md5 of the rows as text) per table. The admin's password hash is left out: the restore's
auth upgrade step gives the admin the deployed password again, a new salt each time."""


def psql_rows(stack: Any, database: str, script: str, variables: Mapping[str, str] = {}) -> list[list[str]]:
    """Rows of an SQL script run as the superuser (stdin, so psql's backslash commands work)."""
    postgres = stack.postgres
    argv = [str(postgres.bindir / "psql"), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(postgres.port), "-U", postgres.superuser, "-d", database, "-f", "-"]
    for name, value in variables.items():
        argv += ["-v", f"{name}={value}"]
    result = subprocess.run(argv, input=script, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PGPASSWORD": postgres.superuser_password})
    if result.returncode != 0:
        raise RuntimeError(f"psql on {database} failed: {result.stderr.strip()}")
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def databases(stack: Any) -> dict[str, tuple[str, bool]]:
    """name -> (oid, datallowconn) of every database but the templates."""
    rows = psql_rows(stack, "postgres", "SELECT datname, oid, datallowconn FROM pg_database WHERE NOT datistemplate;\n")
    return {name: (oid, allow == "t") for name, oid, allow in rows}


def bucket_objects(stack: Any) -> dict[str, tuple[int, str]]:
    """key -> (size, ETag) of every object in the stack's bucket (the ETag: the content's md5 here)."""
    s3 = stack.s3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.s3.bucket)
    return {item["Key"]: (item["Size"], item["ETag"]) for page in pages for item in page.get("Contents", [])}


def _artifact_prefixes(stack: Any, tracking: str) -> list[str]:
    """Bucket key prefixes of the artifacts the tracking database refers to (runs, logged models)."""
    sql = "SELECT artifact_uri FROM runs"
    if _has_table(stack, tracking, "logged_models"):
        sql += " UNION SELECT artifact_location FROM logged_models"
    rows = psql_rows(stack, tracking, sql + ";\n")
    prefix = stack.base_config.artifacts.prefix.strip("/")
    found = []
    for (uri,) in rows:
        path = uri.split(":", 1)[1].lstrip("/") if uri.startswith("mlflow-artifacts:") else uri
        found.append("/".join(part for part in (prefix, path.strip("/")) if part) + "/")
    return found


def _has_table(stack: Any, database: str, table: str) -> bool:
    return bool(psql_rows(stack, database, "SELECT 1 FROM pg_class WHERE relname = :'t' "
                          "AND relnamespace = 'public'::regnamespace;\n", {"t": table}))


@dataclass(frozen=True)
class StackState:
    """What a restore may change, read directly: rows per table of both databases (digests) and the
    objects the tracking database refers to."""

    tracking: dict[str, tuple[int, str]]
    auth: dict[str, tuple[int, str]]
    artifacts: dict[str, tuple[int, str]]

    def differences(self, other: "StackState") -> list[str]:
        """What differs, named: tables, and artifact keys (at most 5)."""
        found = []
        for name, mine, theirs in (("tracking", self.tracking, other.tracking), ("auth", self.auth, other.auth)):
            tables = sorted(t for t in set(mine) | set(theirs) if mine.get(t) != theirs.get(t))
            found += [f"{name}.{t} ({mine.get(t, ('absent',))[0]} rows vs {theirs.get(t, ('absent',))[0]})"
                      for t in tables]
        keys = sorted(k for k in set(self.artifacts) | set(other.artifacts)
                      if self.artifacts.get(k) != other.artifacts.get(k))
        if keys:
            found.append(f"{len(keys)} artifact objects, e.g. " + ", ".join(
                f"{k} ({'present' if k in self.artifacts else 'missing'} here)" for k in keys[:5]))
        return found


def stack_state(stack: Any) -> StackState:
    """The state now; RuntimeError when a database refuses connections or is missing."""
    tracking = stack.base_config.database.name
    from components.config import auth_database_name

    skip = {"skip": ",".join(SERVER_STATE_TABLES)}
    digests = {name: {table: (int(count), digest) for table, count, digest in psql_rows(stack, name, _DIGEST_SQL, skip)}
               for name in (tracking, auth_database_name(tracking))}
    prefixes = _artifact_prefixes(stack, tracking)
    artifacts = {key: value for key, value in bucket_objects(stack).items() if key.startswith(tuple(prefixes))}
    return StackState(tracking=digests[tracking], auth=digests[auth_database_name(tracking)], artifacts=artifacts)


# --- putting a stack back between cases ------------------------------------------------------------------


@dataclass
class Saved:
    """A state to go back to: template copies of both databases and the bucket's objects."""

    templates: dict[str, str]
    """database -> its template copy"""
    objects: dict[str, tuple[bytes, Optional[str]]]
    """key -> (content, content type)"""


TEMPLATE_SUFFIX = "__h6_saved"


def save(stack: Any) -> Saved:
    """Copy both databases to templates and the bucket's objects to memory. CREATE DATABASE ... TEMPLATE
    needs the source idle: its sessions (the running server's pool) are ended and new ones refused for
    the copy, and the server reconnects afterwards (MLflow's engines ping a connection before using it),
    as it does after put_back's DROP ... FORCE; a server restart here cost each run a server start."""
    from components.config import auth_database_name

    tracking = stack.base_config.database.name
    templates = {name: name + TEMPLATE_SUFFIX for name in (tracking, auth_database_name(tracking))}
    for name, template in templates.items():
        stack.postgres.psql(f'DROP DATABASE IF EXISTS "{template}"')
        copy_idle(stack, name, template)
    s3 = stack.s3.client("s3")
    objects = {}
    for key in bucket_objects(stack):
        got = s3.get_object(Bucket=stack.s3.bucket, Key=key)
        objects[key] = (got["Body"].read(), got.get("ContentType"))
    return Saved(templates=templates, objects=objects)


def copy_idle(stack: Any, source: str, target: str) -> None:
    """CREATE DATABASE target TEMPLATE source while clients of source may be connected: their sessions
    are ended and new ones refused until the copy is made."""
    postgres = stack.postgres
    postgres.psql(f'ALTER DATABASE "{source}" WITH ALLOW_CONNECTIONS false')
    try:
        postgres.psql("SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
                      f"WHERE datname = '{source}'")
        postgres.psql(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
    finally:
        postgres.psql(f'ALTER DATABASE "{source}" WITH ALLOW_CONNECTIONS true')


def put_back(stack: Any, saved: Saved) -> None:
    """The saved state again, whatever a case left: PostgreSQL up, every other database of the
    stack's (scratch or replaced copies) dropped, both databases made from their templates, the
    bucket holding exactly the saved objects, the server running. A running server is left running
    (its sessions are terminated by DROP ... FORCE and it reconnects): a restart per case would
    double the module's run time, and the next case's restore stops it anyway."""
    postgres, server = stack.postgres, stack.variants["default"].server
    if postgres.pid is None or not _accepts(stack):
        postgres.start()
    owner = stack.base_config.database.username
    keep = set(saved.templates.values()) | {"postgres"}
    for name in databases(stack):
        if name not in keep:
            postgres.psql(f'DROP DATABASE "{name}" WITH (FORCE)')
    for name, template in saved.templates.items():
        postgres.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}" OWNER "{owner}"')
        postgres.psql(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
    s3 = stack.s3.client("s3")
    for key in bucket_objects(stack):
        s3.delete_object(Bucket=stack.s3.bucket, Key=key)
    for key, (body, content_type) in saved.objects.items():
        s3.put_object(Bucket=stack.s3.bucket, Key=key, Body=body,
                      **({"ContentType": content_type} if content_type else {}))
    if not server.service.alive():
        server.start()


def _accepts(stack: Any) -> bool:
    try:
        stack.postgres.psql("SELECT 1")
        return True
    except RuntimeError:
        return False


def drop_saved(stack: Any, saved: Saved) -> None:
    for template in saved.templates.values():
        stack.postgres.psql(f'DROP DATABASE IF EXISTS "{template}"')


def tmpfs_available(probe_dir: Path) -> bool:
    """Can a child mount a tmpfs in a mount namespace of its own here (unprivileged user namespaces)?"""
    if shutil.which("unshare") is None:
        return False
    probe_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                             f'mount -t tmpfs -o size=64k tmpfs "{probe_dir}"'], capture_output=True)
    return result.returncode == 0


def pages(size: int) -> int:
    return -(-size // TMPFS_PAGE)


if __name__ == "__main__":
    sys.exit(child_main())
