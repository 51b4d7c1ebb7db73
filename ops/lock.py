"""One PostgreSQL advisory lock per stack: backup, restore and gc never overlap (issue 28).

The lock lives in a session of the stack's own PostgreSQL server (database `postgres`, which a
restore never renames or terminates), held by a `psql` process that stays open for the whole
operation. A tool that dies (SIGKILL, a closed terminal) closes its end of psql's stdin: psql exits,
its session ends and PostgreSQL releases the lock. Nothing to clean up by hand, no lock file that
outlives its holder.

A PostgreSQL restart ends the session and releases the lock without telling its holder, and then
another backup, restore or gc may take it. So the holder watches: every WATCH_SECONDS a thread asks
the session whether it still holds the lock, and when it does not, interrupts the tool's main thread
(SIGUSR1, whose handler raises LockLost, a KeyboardInterrupt: the running step's command is stopped
as by Ctrl-C) and marks the lock lost; the tool then
undoes nothing unless it can take the lock again (HeldLock.retake), since someone else may be working
on the stack by then (review 6).

The gc step (components.render.GC_SCRIPT) takes the same key as MLflow's role, exits 75 while a
backup or restore holds it, and stops the same way when it loses it. The session's application_name says who holds it
(`mlflow-<holder> pid <pid> on <host> lock <token>`), so the refusal can name the holder.

Each hold has a random token. The one-offs a holder starts carry it (`StackAccess.lock_token`), so a
holder can tell the one-offs a killed tool left running (another token: their tool holds no lock any
more, whatever host or container it ran in) and stops them before it works. So do its database sessions
(`... work <token>`, ops.access.work_session_name): a psql script that runs on in PostgreSQL after its
tool was killed (`docker exec` does not pass signals on, and the server finishes a statement whose client
is gone) is ended by the next holder, and an interrupted tool ends its own before it undoes anything or
lets the lock go (review 23, F2). scripts/gc on the local
stack runs its gc step under its own hold (render.GC_LOCK_TOKEN_ENV) instead of letting it take the
lock: the sweep and the step are under one hold, with no gap between them (review 20, F3a).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator, Optional

from components.render import MAINTENANCE_LOCK_KEY
from ops import OpsError, RefusedError
from ops.access import WORK_SESSION_PATTERN, StackAccess, psql, start_process, stop_process

LOCK_DATABASE = "postgres"
"""Never the tracking or auth database: restore renames those and terminates their sessions."""
CLOSE_GRACE_SECONDS = 10.0
WATCH_SECONDS = 1.0
"""How often a holder asks its session whether it still holds the lock (HeldLock.watch)."""
RETAKE_SECONDS = 60.0
"""How long HeldLock.retake keeps trying while PostgreSQL does not answer (a restart takes seconds)."""
CONFIRM_TIMEOUT_SECONDS = 30.0
"""How long HeldLock.confirm waits for psql's answer (a one-row query): a session that does not
answer (a network gone quiet, a psql that neither answers nor exits) counts as a lost lock."""
END_SESSION_MILLISECONDS = 5000
"""How long pg_terminate_backend waits for each work session it ends to be gone."""
END_SESSIONS_TIMEOUT_SECONDS = 120.0
"""How long ending the work sessions may take in all (each waited for up to END_SESSION_MILLISECONDS)."""

_HOLDER_SQL = """\
SELECT a.application_name, a.pid, to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       a.client_addr
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :classid AND l.objid = :objid AND l.objsubid = 1;
"""
"""A bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low 32 bits), objsubid 1."""


def application_name(holder: str, token: str) -> str:
    """What the holder's session is called in pg_stat_activity (at most 63 bytes, PostgreSQL's limit; the
    host name is cut short, never the token)."""
    ending = f" lock {token}"
    host = socket.gethostname().encode("ascii", "replace").decode()  # PostgreSQL cuts at 63 bytes, not characters
    return f"mlflow-{holder} pid {os.getpid()} on {host}"[:63 - len(ending)] + ending


def describe_holder(access: StackAccess) -> str:
    """Who holds the maintenance lock, e.g. "mlflow-backup pid 12 on host (since 2025-01-01T10:00:00Z)"."""
    rows = psql(access, LOCK_DATABASE, _HOLDER_SQL,
                variables={"classid": str(MAINTENANCE_LOCK_KEY >> 32), "objid": str(MAINTENANCE_LOCK_KEY & 0xFFFFFFFF)},
                what="reading who holds the maintenance lock")
    if not rows:
        return "a session that has just ended (try again)"
    name, pid, since, _ = (rows[0] + ["", "", "", ""])[:4]
    return f"{name or 'an unnamed session'} (PostgreSQL backend pid {pid}, since {since})"


def _read_answer(process: subprocess.Popen, what: str, timeout: Optional[float] = None, answer: str = "[tf]") -> str:
    """psql's one-line answer ("t" or "f", or what the regular expression `answer` matches); OpsError
    when it answers anything else, exits, or (`timeout`) stays silent."""
    assert process.stdout is not None
    if timeout is not None and not select.select([process.stdout], [], [], timeout)[0]:
        raise OpsError(f"{what} failed: psql answered nothing within {timeout:.0f}s")
    line = process.stdout.readline().decode(errors="replace").strip()
    if re.fullmatch(answer, line):
        return line
    assert process.stderr is not None
    stop_process(process, CLOSE_GRACE_SECONDS)
    detail = process.stderr.read().decode(errors="replace").strip().splitlines()
    raise OpsError(f"{what} failed: {detail[-1] if detail else f'psql answered {line!r}'}")


class LockLostError(OpsError):
    """HeldLock.confirm found the lock gone: nothing after that check ran."""


class LockLost(KeyboardInterrupt):
    """Raised in the tool's main thread when its maintenance lock is gone (HeldLock.watch): an
    interrupt, so every step stops and cleans up as for Ctrl-C, but one that says why."""


def _raise_lock_lost(signum: int, frame: object) -> None:
    raise LockLost("the maintenance lock was lost")


def _end_work_sessions_sql(token: str, others: bool) -> str:
    """The query that ends the work sessions of the holds other than `token` (`others`) or of `token`
    itself, and answers how many ended. The lock's own sessions (`... lock <token>`) are never ended
    here: a tool that is taking the lock may be refused by it, not cut off."""
    assert re.fullmatch("[0-9a-f]{12}", token), token
    own = f"application_name LIKE '% work {token}'"
    where = f"application_name ~ '{WORK_SESSION_PATTERN}' AND NOT {own}" if others else own
    return (f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, {END_SESSION_MILLISECONDS})) "
            f"FROM pg_stat_activity WHERE {where} AND pid <> pg_backend_pid();\n")


_HOLDS: dict[str, "HeldLock"] = {}
"""The holds this process has, by token (end_own_work_sessions finds its hold by a command's token)."""


def end_own_work_sessions(token: str) -> None:
    """After a command of the hold `token` was interrupted (ops.access.run): end its database sessions,
    which would run on without it, before the tool goes on. Best effort: a hold that is lost, or a session
    that does not answer, leaves them to the next holder (and to its own retake)."""
    held = _HOLDS.get(token)
    if held is not None:
        held.end_own_work_sessions()


_STILL_HELD_SQL = ("SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                   "AND pid = pg_backend_pid() AND classid = {classid} AND objid = {objid} AND objsubid = 1;\n")


class HeldLock:
    """The lock's session: confirm it still holds the lock before a step that must not overlap, watch it
    while the tool works, take the lock again after it was lost (before undoing anything)."""

    def __init__(self, process: subprocess.Popen, access: StackAccess, holder: str, token: str):
        self._process, self._access, self._holder = process, access, holder
        self.token = token
        """this hold's: its session's name ends with `lock <token>`, its one-offs carry it (kept by retake)"""
        self._mutex = threading.Lock()  # one query at a time on the session's pipes
        self._asked = 0  # questions asked on the session: each answer carries its number (_ask)
        self._stop = threading.Event()
        self._signalling = threading.Lock()  # a stop set under it: no signal is sent after unwatch
        self._watcher: Optional[threading.Thread] = None
        self._previous_handler: object = None
        self.lost = False
        """set when the session no longer holds the lock (the main thread was interrupted, or confirm failed)"""
        self.why_not_retaken = ""
        """after retake returned False: another holder, or PostgreSQL not answering"""

    def _ask(self, sql: str, what: str, timeout: float, answer: str = "[tf]") -> str:
        """One question (`SELECT ...`) on the lock's session, its answer. Each answer carries its question's
        number: one an interrupt (Ctrl-C, a LockLost) left unread between asking and reading is skipped, never
        taken for the next question's (review 24: a second Ctrl-C made the lock look lost; review 25: a count
        of unread answers was itself cut by interrupts)."""
        assert sql.startswith("SELECT "), sql
        with self._mutex:
            self._asked += 1
            tag = f"q{self._asked}"
            assert self._process.stdin is not None
            self._process.stdin.write(sql.replace("SELECT ", f"SELECT '{tag}', ", 1).encode())
            self._process.stdin.flush()
            deadline = time.monotonic() + timeout
            while True:
                line = _read_answer(self._process, what, max(0.0, deadline - time.monotonic()), answer=r"q\d+\|.*")
                got, _, value = line.partition("|")
                if got != tag:
                    continue  # an earlier question's
                if not re.fullmatch(answer, value):
                    stop_process(self._process, CLOSE_GRACE_SECONDS)
                    raise OpsError(f"{what} failed: psql answered {value!r}")
                return value

    def _still_held(self) -> bool:
        sql = _STILL_HELD_SQL.format(classid=MAINTENANCE_LOCK_KEY >> 32, objid=MAINTENANCE_LOCK_KEY & 0xFFFFFFFF)
        try:
            return self._ask(sql, "checking the maintenance lock", CONFIRM_TIMEOUT_SECONDS) == "t"
        except (OSError, OpsError, ValueError):
            return False

    def end_work_sessions(self, *, others: bool) -> int:
        """End the database sessions of other holds (`others`: a killed tool's script still running) or of
        this one (an interrupted command's); how many ended. LockLostError when the lock's session does not
        answer (it is gone, or silent: the lock counts as lost, as for confirm)."""
        what = "ending the database sessions " + ("another tool left running" if others
                                                  else "of an interrupted command")
        try:
            return int(self._ask(_end_work_sessions_sql(self.token, others), what, END_SESSIONS_TIMEOUT_SECONDS,
                                 answer="[0-9]+"))
        except (OSError, ValueError, OpsError) as error:
            self.lost = True
            raise LockLostError(f"{self.lost_message('its next step')} ({error})") from error

    def sweep(self) -> None:
        """Before this hold works: stop what a tool that holds no lock any more left running, its one-offs
        (they would go on writing: review 16, F2) and then its scripts in PostgreSQL (review 23, F2).
        LockLostError when the lock's session does not answer."""
        _say_stopped(self._access, self._access.stop_orphaned_oneoffs())
        _say_ended(self._access, self.end_work_sessions(others=True))

    def end_own_work_sessions(self) -> None:
        """end_work_sessions(others=False), quietly: skipped when the lock is lost (its session is gone or
        silent; PostgreSQL's restart ended them, or the retake and the next holder will)."""
        if self.lost:
            return
        with contextlib.suppress(OpsError):
            ended = self.end_work_sessions(others=False)
            if ended:
                print(f"ended {ended} database session(s) of the interrupted command on {self._access.description}",
                      file=sys.stderr)

    def lost_message(self, before: str = "its next step") -> str:
        return (f"the maintenance lock of {self._access.description} was lost (PostgreSQL restarted?) before {before}: "
                "stopped there, so that it cannot overlap another backup, restore or gc")

    def holds(self) -> bool:
        """Asks the session (not the flag: a failed step may come before the watch noticed)."""
        if not self.lost and not self._still_held():
            self.lost = True
        return not self.lost

    def confirm(self, before: str) -> None:
        """OpsError unless this session is alive and still holds the lock."""
        if self.lost or not self._still_held():
            self.lost = True
            raise LockLostError(self.lost_message(before))

    def watch(self) -> None:
        """Check the lock every WATCH_SECONDS from a thread; when it is gone, raise LockLost in the main
        thread. Only for a holder in the main thread (the command-line tools): a signal reaches no other."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._stop.clear()
        main = threading.main_thread().ident
        assert main is not None
        self._previous_handler = signal.signal(signal.SIGUSR1, _raise_lock_lost)
        # A mask inherited blocked (a supervisor, a parent that blocked it before exec) would keep the
        # signal pending for ever and the step running without the lock (review 10).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})

        def watching() -> None:
            while not self._stop.wait(WATCH_SECONDS):
                if not self._still_held():
                    with self._signalling:
                        if not self._stop.is_set():
                            self.lost = True
                            signal.pthread_kill(main, signal.SIGUSR1)
                    return

        self._watcher = threading.Thread(target=watching, name="maintenance-lock-watch", daemon=True)
        self._watcher.start()

    def unwatch(self) -> None:
        """Stop the watch: no LockLost is raised after this returns (one already sent is raised here)."""
        with self._signalling:
            self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(CONFIRM_TIMEOUT_SECONDS + 1)
        self._watcher = None
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._previous_handler)  # type: ignore[arg-type]
            self._previous_handler = None

    def retake(self) -> bool:
        """After the lock was lost: take it again in a new session (True), unless someone else holds it
        now, or PostgreSQL does not answer for RETAKE_SECONDS (False, why_not_retaken says which: this tool
        must not touch the stack any more). A restart takes seconds: retried meanwhile (review 8)."""
        self.unwatch()
        deadline = time.monotonic() + RETAKE_SECONDS
        while True:
            try:
                # This hold's own session may still hold it: a psql that stopped answering (its client gave up
                # on it), one that `docker exec` left running after its client was stopped (review 23, F1).
                _end_sessions_of(self._access, self.token)
                process = _take(self._access, self._holder, self.token)
                break
            except OpsError as error:
                if time.monotonic() > deadline:
                    self.why_not_retaken = f"PostgreSQL did not answer for {RETAKE_SECONDS:.0f}s ({error})"
                    return False
                time.sleep(1.0)
        if process is None:
            self.why_not_retaken = "another backup, restore or gc holds it now"
            return False
        _close(self._process, 1.0)  # its session was ended above (or it went with it): no grace needed
        self._process, self.lost = process, False
        # Another tool may have held it meanwhile and been killed, its one-offs still writing (review 22, F2),
        # its scripts still running in PostgreSQL (review 23, F2).
        try:
            self.sweep()
        except OpsError as error:  # (a LockLostError too)
            _close(process)
            self.lost = True
            self.why_not_retaken = f"what another tool left running could not be stopped ({error})"
            return False
        self.watch()
        return True

    def close(self) -> None:
        self.unwatch()
        _close(self._process)


def _end_sessions_of(access: StackAccess, token: str) -> None:
    """End every session of this hold (`... lock <token>`, `... work <token>`): no other tool has its token."""
    psql(access, LOCK_DATABASE, "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
                                "WHERE application_name ~ (' (lock|work) ' || :'token' || '$') "
                                "AND pid <> pg_backend_pid();\n",
         variables={"token": token}, what="ending this tool's earlier sessions of the maintenance lock")


def _take(access: StackAccess, holder: str, token: str) -> Optional[subprocess.Popen]:
    """A psql session holding the maintenance lock, or None when another session holds it."""
    command = access.postgres_command(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", LOCK_DATABASE,
                                       "-v", f"appname={application_name(holder, token)}"])
    # Unbuffered: select() then sees every answer line (none waits, unseen, in a Python buffer).
    process = start_process(command.argv, command.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    assert process.stdin is not None
    try:
        process.stdin.write(f"SET application_name = :'appname';\n"
                            f"SELECT pg_try_advisory_lock({MAINTENANCE_LOCK_KEY});\n"
                            .encode())
        process.stdin.flush()
        taken = _read_answer(process, f"taking the maintenance lock of {access.description}") == "t"
    except BaseException:
        _close(process)
        raise
    if not taken:
        _close(process)
        return None
    return process


@contextlib.contextmanager
def maintenance_lock(access: StackAccess, holder: str) -> Iterator[HeldLock]:
    """backup, restore and gc never overlap on a stack (issue 28).

    RefusedError (nothing changed) naming the holder when another one holds the lock."""
    token = secrets.token_hex(6)
    process = _take(access, holder, token)
    if process is None:
        raise RefusedError(
            f"another backup, restore or gc is running on {access.description}: {describe_holder(access)} holds "
            f"its maintenance lock. Wait for it to finish (or check that process: the lock is released as soon "
            f"as it exits), then run this again")
    held = HeldLock(process, access, holder, token)
    outer, access.lock_token = access.lock_token, token
    _HOLDS[token] = held
    try:
        try:
            held.sweep()
        except LockLostError:
            raise LockLostError(held.lost_message("its first step")) from None
        # Watched only from here: a LockLost before the `with` body is bound would reach the tool as an
        # interrupt it cannot tell from Ctrl-C (review 21, F2); a lock lost during the sweep is found here.
        held.watch()
        held.confirm("its first step")
        yield held
    except BaseException:
        with contextlib.suppress(LockLost):  # one already sent must not replace the tool's own error (review 24)
            held.unwatch()
        held.end_own_work_sessions()  # before the lock is let go: nothing of this tool runs on after it
        raise
    else:
        _let_go(held)
    finally:
        del _HOLDS[token]
        access.lock_token = outer
        held.close()


def _let_go(held: HeldLock) -> None:
    """Release the lock after the work is done: stop the watch, end what a command that failed on its own
    (its client died) may have left, close the session. An interrupt or a LockLost arriving now changes
    nothing the tool did: each step is finished all the same and the tool reports its outcome (review 25: a
    complete backup said "interrupted; the incomplete backup's files were removed")."""
    steps = [held.unwatch, held.end_own_work_sessions, held.close]
    for _ in range(10):  # each interrupt costs a retry of the step it cut; a flood of them gives up
        try:
            while steps:
                steps[0]()
                steps.pop(0)
            return
        except KeyboardInterrupt:  # (LockLost too)
            continue


def _say_stopped(access: StackAccess, orphans: int) -> None:
    if orphans:
        print(f"stopped {orphans} one-off(s) an earlier backup or restore left running on {access.description} "
              "(that tool was killed before they ended)", file=sys.stderr)


def _say_ended(access: StackAccess, sessions: int) -> None:
    if sessions:
        print(f"ended {sessions} database session(s) an earlier backup, restore or gc left running on "
              f"{access.description} (that tool was killed or lost the lock before they ended)", file=sys.stderr)


def _close(process: subprocess.Popen, grace_seconds: float = CLOSE_GRACE_SECONDS) -> None:
    """End the session (and so release the lock): EOF on psql's stdin, then a bounded wait."""
    try:
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
    except OSError:  # psql already gone (broken pipe): its session ended with it
        pass
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        stop_process(process, grace_seconds)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
