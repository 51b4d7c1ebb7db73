"""One PostgreSQL advisory lock per stack: backup, restore and gc never overlap (issue 28).

The lock lives in a session of the stack's own PostgreSQL server (database `postgres`, which a
restore never renames or terminates), held by a `psql` process that stays open for the whole
operation. A tool that dies (SIGKILL, a closed terminal) closes its end of psql's stdin: psql exits,
its session ends and PostgreSQL releases the lock. Nothing to clean up by hand, no lock file that
outlives its holder.

The gc step (components.render.GC_SCRIPT) takes the same key as MLflow's role and exits 75 while a
backup or restore holds it. The session's application_name says who holds it
(`mlflow-<holder> pid <pid> on <host>`), so the refusal can name the holder.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
from typing import Iterator, Optional

from components.render import MAINTENANCE_LOCK_KEY
from ops import OpsError, RefusedError
from ops.access import StackAccess, psql, start_process, stop_process

LOCK_DATABASE = "postgres"
"""Never the tracking or auth database: restore renames those and terminates their sessions."""
CLOSE_GRACE_SECONDS = 10.0
CONFIRM_TIMEOUT_SECONDS = 30.0
"""How long HeldLock.confirm waits for psql's answer (a one-row query): a session that does not
answer (a network gone quiet, a psql that neither answers nor exits) counts as a lost lock."""

_HOLDER_SQL = """\
SELECT a.application_name, a.pid, to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       a.client_addr
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :classid AND l.objid = :objid AND l.objsubid = 1;
"""
"""A bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low 32 bits), objsubid 1."""


def application_name(holder: str) -> str:
    """What the holder's session is called in pg_stat_activity (at most 63 bytes, PostgreSQL's limit)."""
    return f"mlflow-{holder} pid {os.getpid()} on {socket.gethostname()}"[:63]


def describe_holder(access: StackAccess) -> str:
    """Who holds the maintenance lock, e.g. "mlflow-backup pid 12 on host (since 2025-01-01T10:00:00Z)"."""
    rows = psql(access, LOCK_DATABASE, _HOLDER_SQL,
                variables={"classid": str(MAINTENANCE_LOCK_KEY >> 32), "objid": str(MAINTENANCE_LOCK_KEY & 0xFFFFFFFF)},
                what="reading who holds the maintenance lock")
    if not rows:
        return "a session that has just ended (try again)"
    name, pid, since, _ = (rows[0] + ["", "", "", ""])[:4]
    return f"{name or 'an unnamed session'} (PostgreSQL backend pid {pid}, since {since})"


def _read_answer(process: subprocess.Popen, what: str, timeout: Optional[float] = None) -> str:
    """psql's "t" or "f"; OpsError when it answers anything else, exits, or (`timeout`) stays silent."""
    assert process.stdout is not None
    if timeout is not None and not select.select([process.stdout], [], [], timeout)[0]:
        raise OpsError(f"{what} failed: psql answered nothing within {timeout:.0f}s")
    line = process.stdout.readline().decode(errors="replace").strip()
    if line in ("t", "f"):
        return line
    assert process.stderr is not None
    stop_process(process, CLOSE_GRACE_SECONDS)
    detail = process.stderr.read().decode(errors="replace").strip().splitlines()
    raise OpsError(f"{what} failed: {detail[-1] if detail else f'psql answered {line!r}'}")


_STILL_HELD_SQL = ("SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                   "AND pid = pg_backend_pid() AND classid = {classid} AND objid = {objid} AND objsubid = 1;\n")


class HeldLock:
    """The lock's session, to confirm it still holds the lock before a step that must not overlap:
    a PostgreSQL restart ends the session and releases the lock without telling the holder."""

    def __init__(self, process: subprocess.Popen, description: str):
        self._process, self._description = process, description

    def confirm(self, before: str) -> None:
        """OpsError unless this session is alive and still holds the lock."""
        sql = _STILL_HELD_SQL.format(classid=MAINTENANCE_LOCK_KEY >> 32, objid=MAINTENANCE_LOCK_KEY & 0xFFFFFFFF)
        try:
            assert self._process.stdin is not None
            self._process.stdin.write(sql.encode())
            self._process.stdin.flush()
            held = _read_answer(self._process, "checking the maintenance lock", CONFIRM_TIMEOUT_SECONDS) == "t"
        except (OSError, OpsError):
            held = False
        if not held:
            raise OpsError(f"the maintenance lock of {self._description} was lost (PostgreSQL restarted?) before "
                           f"{before}: stopped there, so that it cannot overlap another backup, restore or gc")


@contextlib.contextmanager
def maintenance_lock(access: StackAccess, holder: str) -> Iterator[HeldLock]:
    """backup, restore and gc never overlap on a stack (issue 28).

    RefusedError (nothing changed) naming the holder when another one holds the lock."""
    command = access.postgres_command(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", LOCK_DATABASE,
                                       "-v", f"appname={application_name(holder)}"])
    process = start_process(command.argv, command.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert process.stdin is not None
    try:
        process.stdin.write(f"SET application_name = :'appname';\nSELECT pg_try_advisory_lock({MAINTENANCE_LOCK_KEY});\n"
                            .encode())
        process.stdin.flush()
        if _read_answer(process, f"taking the maintenance lock of {access.description}") != "t":
            raise RefusedError(
                f"another backup, restore or gc is running on {access.description}: {describe_holder(access)} holds "
                f"its maintenance lock. Wait for it to finish (or check that process: the lock is released as soon "
                f"as it exits), then run this again")
        yield HeldLock(process, access.description)
    finally:
        _close(process)


def _close(process: subprocess.Popen) -> None:
    """End the session (and so release the lock): EOF on psql's stdin, then a bounded wait."""
    try:
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
    except OSError:  # psql already gone (broken pipe): its session ended with it
        pass
    try:
        process.wait(CLOSE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        stop_process(process, CLOSE_GRACE_SECONDS)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
