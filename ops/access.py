"""How backup and restore reach a stack, and what they read from its server's configuration.

`StackAccess` is the only platform-specific part: how a PostgreSQL client tool reaches the stack's
database server (as its superuser, connection settings left to the tool's defaults), how Python
runs in the server's image with (part of) the server's environment, and how the server is stopped
and started. Everything else (what to dump, how to check and verify) is shared, so the rehearsal
tests run the very code `scripts/backup` and `scripts/restore` run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import IO, Iterator, Mapping, Optional, Protocol, Sequence, Union
from urllib.parse import unquote, urlsplit, urlunsplit, quote

from components.image_scripts import script_source  # noqa: F401 - the tools' scripts load as the image's do
from ops import OpsError

BACKEND_URI_ENV = "MLFLOW_BACKEND_STORE_URI"  # components.render.BACKEND_URI_ENV
REGISTRY_URI_ENV = "MLFLOW_REGISTRY_STORE_URI"
S3_ENV_PREFIXES = ("AWS_", "MLFLOW_S3_")
"""The server's variables the object store script needs (endpoint, region, the scoped key)."""

Input = Union[None, bytes, IO[bytes]]
STOP_GRACE_SECONDS = 30.0
"""How long an interrupted command gets to clean up after SIGTERM (a one-off's `docker rm --force`)."""


@dataclass(frozen=True)
class Command:
    """A process to start: its argv and its whole environment. Secrets travel in `env` only."""

    argv: list[str]
    env: Mapping[str, str]
    hold: Optional[str] = None
    """The maintenance lock hold (its token) whose work sessions this command's database sessions are
    (`work_session_env`): when the command is interrupted, `run` ends them (ops.lock.end_own_work_sessions)."""


WORK_SESSION_PATTERN = r" work [0-9a-f]{12}$"
"""How the work sessions of any hold end (a regular expression for pg_stat_activity.application_name)."""


def work_session_name(token: str) -> str:
    """The application_name of every PostgreSQL session a tool opens under its maintenance lock hold
    `token` (its psql, pg_dump and pg_restore, and its one-offs' clients): a holder ends the sessions of
    other holds, and a tool its own after an interrupted command (ops.lock, review 23 F2)."""
    return f"mlflow-ops pid {os.getpid()} work {token}"


def work_session_env(token: Optional[str]) -> dict[str, str]:
    """PGAPPNAME for a command under the hold `token` (libpq's default application_name; the lock's own
    session sets another), nothing without a hold."""
    return {"PGAPPNAME": work_session_name(token)} if token else {}


class StackAccess(Protocol):
    """How commands reach one deployed stack (see the module docstring)."""

    description: str
    """Names the stack in messages, e.g. "the local stack mlflow-local"."""
    lock_token: Optional[str]
    """The maintenance lock hold this tool is under (ops.lock.maintenance_lock sets it while it holds the
    lock, else None): the one-offs python_command starts carry it."""

    def postgres_command(self, argv: Sequence[str]) -> Command:
        """`argv` (pg_dump, pg_restore or psql and their options) run as the PostgreSQL superuser
        where its default connection reaches the stack's database server; under a hold (`lock_token`),
        with `work_session_env` and `Command.hold` set."""
        ...

    def python_command(self, argv: Sequence[str], env: Mapping[str, str]) -> Command:
        """`python *argv` in the server's image, on the stack's network, with exactly `env` added (and,
        under a hold, `work_session_env` and `Command.hold`)."""
        ...

    def server_env(self) -> Mapping[str, str]:
        """The MLflow server's environment (holds secrets: never print it)."""
        ...

    def server_command(self) -> Sequence[str]:
        """The MLflow server's command line (`mlflow server ... --artifacts-destination ...`)."""
        ...

    def stop_server(self) -> bool:
        """Stop the MLflow server (every replica); True when it was running."""
        ...

    def start_server(self) -> None:
        """Start the MLflow server (one that runs is left running) and wait until it is healthy."""
        ...

    def stop_orphaned_oneoffs(self) -> int:
        """Stop the stack's one-offs (python_command), running or created, that carry another lock token
        than `lock_token`, and say how many: a tool killed with `kill -9` cannot stop the one-off it
        started, which goes on copying or deleting objects (review 16, F2), and a tool holding no lock any
        more may not write. Called with the maintenance lock held; running one-offs started without a hold
        (read-only: a restore's image facts) are left alone."""
        ...


# --- running commands ----------------------------------------------------------------------------


def _keyboard_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def hang_up_and_terminate_as_interrupt() -> None:
    """For the command-line tools: SIGTERM and SIGHUP (kill, a closed terminal or ssh session) take the
    same path as Ctrl-C, so a running one-off is stopped and removes its container (run_process)
    instead of being left behind in its own session. A SIGHUP ignored already (`nohup`) stays ignored:
    a restore started with nohup must outlive the closed session, as its user asked (review 7)."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signum == signal.SIGHUP and signal.getsignal(signum) is signal.SIG_IGN:
            continue
        signal.signal(signum, _keyboard_interrupt)


def start_process(argv: Sequence[str], env: Mapping[str, str], **popen: object) -> subprocess.Popen:
    """Popen in a session of its own: a terminal's Ctrl-C (or hang-up) reaches only this process,
    which then stops the command with `stop_process`, instead of the command and its children being
    signalled at once and subprocess's default SIGKILL following 0.25 s later (too soon for a
    one-off's `docker rm --force`, see ops/oneoff.py)."""
    return subprocess.Popen(list(argv), env=dict(env), start_new_session=True, **popen)  # type: ignore[call-overload]


def stop_process(process: subprocess.Popen, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM, then wait up to `grace_seconds` for it to clean up and exit; SIGKILL after that."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


PUMP_CHUNK = 1024 * 1024


def _pump(source: IO[bytes], sink: IO[bytes]) -> None:
    """Copy a file into a command's stdin pipe, then close it (the command sees the end)."""
    try:
        for chunk in iter(lambda: source.read(PUMP_CHUNK), b""):
            sink.write(chunk)
    except (BrokenPipeError, ValueError):  # the command exited, or was stopped and its pipe closed
        pass
    finally:
        with contextlib.suppress(BrokenPipeError, ValueError):
            sink.close()


def _communicate(process: subprocess.Popen, input: Optional[bytes], stream: Optional[IO[bytes]]):
    """Popen.communicate, or with `stream`: pumped into stdin while stdout and stderr are drained."""
    if stream is None:
        return process.communicate(input)
    read: dict[str, bytes] = {}

    def drain(name: str, pipe: IO[bytes]) -> None:
        read[name] = pipe.read()

    threads = [threading.Thread(target=_pump, args=(stream, process.stdin), daemon=True)]
    threads += [threading.Thread(target=drain, args=(name, getattr(process, name)), daemon=True)
                for name in ("stdout", "stderr") if getattr(process, name) is not None]
    for thread in threads:
        thread.start()
    process.wait()
    for thread in threads:
        thread.join()
    return read.get("stdout"), read.get("stderr")


class HashingReader:
    """A file as a command's stdin (run's `stdin`), after `prefix`: the sha256 of the file's bytes as
    they were read, so what a command was fed is checked, not what the file held at an earlier check
    (review 13: a backup file replaced between the check and the upload)."""

    def __init__(self, source: IO[bytes], prefix: bytes = b""):
        self._source, self._prefix = source, prefix
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            chunk, self._prefix = (self._prefix, b"") if size < 0 or size >= len(self._prefix) else \
                (self._prefix[:size], self._prefix[size:])
            return chunk
        chunk = self._source.read(size)
        self._digest.update(chunk)
        return chunk

    def hexdigest(self) -> str:
        """The sha256 of the whole file: what the command did not read is read (and hashed) now."""
        for chunk in iter(lambda: self._source.read(PUMP_CHUNK), b""):
            self._digest.update(chunk)
        return self._digest.hexdigest()


def run_process(argv: Sequence[str], env: Mapping[str, str], *, input: Optional[bytes] = None,
                stdin: object = None, stdout: object = None, stderr: object = None) -> subprocess.CompletedProcess:
    """subprocess.run, but an interrupt (KeyboardInterrupt, or any exception while waiting) stops the
    command with SIGTERM and a bounded wait (start_process, stop_process). A file given as `stdin` is
    fed through a pipe from this process, not handed to the command: the command sees its input end
    when this process dies, so a killed restore's upload stops with it instead of writing on, unseen,
    after the maintenance lock is gone (review 4, F1)."""
    stream = stdin if hasattr(stdin, "read") else None
    process = start_process(argv, env, stdin=subprocess.PIPE if input is not None or stream is not None else stdin,
                            stdout=stdout, stderr=stderr)
    try:
        out, err = _communicate(process, input, stream)  # type: ignore[arg-type]
    except BaseException:
        stop_process(process)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        raise
    return subprocess.CompletedProcess(list(argv), process.returncode, out, err)


def _error_line(stderr: bytes, what: str, returncode: int) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    detail = lines[-1] if lines else f"exit status {returncode}"
    return f"{what} failed: {detail}"


def run(command: Command, what: str, *, stdin: Input = None, stdout: Optional[IO[bytes]] = None) -> bytes:
    """Run to completion; return stdout unless it went to `stdout`. Failure: OpsError naming `what`
    and the last line the process wrote to stderr. Interrupted (Ctrl-C, SIGTERM, a lost lock) or failed, a
    command under a hold has its database sessions ended before this returns: its client was stopped, but `docker
    exec` does not pass the SIGTERM on (docker/cli#5309) and PostgreSQL runs a statement to its end after
    its client is gone, so a script already sent (a DROP DATABASE, the swap) would run on past the tool's
    "interrupted", beside its undo or after the lock is let go (review 23, F2)."""
    with tempfile.TemporaryFile() as stderr:
        try:
            result = run_process(
                command.argv, command.env,
                input=stdin if isinstance(stdin, bytes) else None,
                stdin=None if isinstance(stdin, bytes) else (stdin if stdin is not None else subprocess.DEVNULL),
                stdout=stdout if stdout is not None else subprocess.PIPE, stderr=stderr,
            )
        except BaseException:
            _end_work_sessions_of(command)
            raise
        if result.returncode != 0:
            _end_work_sessions_of(command)  # its client may have died alone (OOM, a killed CLI): review 24, F2
            stderr.seek(0)
            raise OpsError(_error_line(stderr.read(), what, result.returncode))
    return result.stdout if stdout is None else b""


def _end_work_sessions_of(command: Command) -> None:
    """A command under a hold that did not end well: its database sessions end before the tool goes on."""
    if command.hold:
        from ops.lock import end_own_work_sessions

        end_own_work_sessions(command.hold)


@contextlib.contextmanager
def output_lines(command: Command, what: str, *, stdin: Optional[IO[bytes]] = None) -> Iterator[Iterator[bytes]]:
    """Stream a command's stdout line by line (pg_restore's SQL output can be far larger than memory);
    a failed exit raises OpsError after the lines are read."""
    with tempfile.TemporaryFile() as stderr:
        process = start_process(command.argv, command.env, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=stderr)
        assert process.stdout is not None
        try:
            yield iter(process.stdout)
            process.stdout.read()  # whatever the caller left unread
        except BaseException:
            stop_process(process)
            raise
        finally:
            process.stdout.close()
            returncode = process.wait()
        if returncode != 0:
            stderr.seek(0)
            raise OpsError(_error_line(stderr.read(), what, returncode))


def psql(access: StackAccess, database: str, script: str, *, variables: Optional[Mapping[str, str]] = None,
         what: Optional[str] = None) -> list[list[str]]:
    """Run an SQL script (psql, unaligned, tuples only, stopping at the first error) and return its
    rows. Names reach the script as psql variables (`:'name'`, `:"name"`), never spliced into SQL."""
    argv = ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", database]
    for name, value in (variables or {}).items():
        argv += ["-v", f"{name}={value}"]
    out = run(access.postgres_command([*argv, "-f", "-"]), what or f"psql on database {database}",
              stdin=script.encode())
    return [line.split("\t") for line in out.decode().splitlines() if line]


# --- what the server's configuration says ----------------------------------------------------------


@dataclass(frozen=True)
class StackLayout:
    """Where the stack keeps its data, read from the server's own environment and command line (so
    backup and restore follow the deployed configuration, not a copy of it)."""

    database: str
    owner: str
    """MLflow's role, which owns the database and every object in it (not a superuser)."""
    backend_uri: str
    artifacts_destination: str
    auth_app: Optional[str]
    """`--app-name` of the server (basic-auth, oidc-auth), None for Nginx's basic auth."""

    @property
    def auth_database(self) -> str:
        from components.config import auth_database_name

        return auth_database_name(self.database)

    @property
    def auth_uri(self) -> str:
        return with_database(self.backend_uri, self.auth_database)

    @classmethod
    def read(cls, access: StackAccess) -> "StackLayout":
        env, command = access.server_env(), list(access.server_command())
        uri = env.get(BACKEND_URI_ENV)
        if not uri:
            raise OpsError(f"the MLflow server of {access.description} has no {BACKEND_URI_ENV} in its environment")
        parts = urlsplit(uri)
        database = unquote(parts.path.lstrip("/"))
        if not parts.scheme.startswith("postgresql") or not database or not parts.username:
            raise OpsError(f"the MLflow server of {access.description} does not use a PostgreSQL database "
                           f"(its backend store URI starts with {parts.scheme}://)")
        refuse_stores_elsewhere(command, access.description, env)
        destination = server_option(command, "--artifacts-destination")
        if not destination:
            raise OpsError(f"the MLflow server of {access.description} has no --artifacts-destination")
        if not destination.startswith("s3://"):
            raise OpsError(f"artifacts destination {destination}: only S3-compatible stores (the local stack's "
                           "MinIO) are backed up by this tool")
        return cls(database=database, owner=unquote(parts.username), backend_uri=uri,
                   artifacts_destination=destination, auth_app=server_option(command, "--app-name"))

    def s3_env(self, access: StackAccess) -> dict[str, str]:
        """The part of the server's environment the object store script needs."""
        return {name: value for name, value in access.server_env().items() if name.startswith(S3_ENV_PREFIXES)}


def server_option(command: Sequence[str], name: str) -> Optional[str]:
    """The value the server's CLI (click) uses: the last one given, as `--name value` or `--name=value`."""
    value: Optional[str] = None
    for index, arg in enumerate(command):
        if arg == name and index + 1 < len(command):
            value = command[index + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def refuse_stores_elsewhere(command: Sequence[str], description: str,
                              env: Optional[Mapping[str, str]] = None) -> None:
    """The tools read the server's database from its environment, as this project renders it; a
    `--backend-store-uri` on its command line would win over that in click (review 11 of issue 28),
    and a backup, restore or gc would then work on another database than the one served. A model
    registry kept elsewhere (`--registry-store-uri`, MLFLOW_REGISTRY_STORE_URI) would be left out of
    every backup and restore (review 12)."""
    for flag in ("--backend-store-uri", "--registry-store-uri"):
        if server_option(command, flag) is not None:
            raise OpsError(f"the MLflow server of {description} is started with {flag}: these tools read its "
                           f"database from {BACKEND_URI_ENV} (as this project renders it), and the flag would name "
                           "another one; remove it from the server's command")
    env = env or {}
    registry = env.get(REGISTRY_URI_ENV)
    if registry and registry != env.get(BACKEND_URI_ENV):
        raise OpsError(f"the MLflow server of {description} keeps its model registry elsewhere ({REGISTRY_URI_ENV}): "
                       "these tools back up and restore the tracking database only, which would leave the models out")


def with_database(uri: str, database: str) -> str:
    """The same connection URI naming another database on the same server (the auth database)."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))
