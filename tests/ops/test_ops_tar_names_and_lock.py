"""Review 2 of issue 28: objects.tar member names that are no key below the artifacts destination are
refused before anything changes (F4), and a maintenance lock's session that stops answering counts as
lost instead of blocking the restore forever (F5)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import time
import types
from pathlib import Path

import pytest

from ops import OpsError, RefusedError, lock, objects
from ops.archive import read_objects_tar
from ops.lock import HeldLock

BUCKET = "mlflow-artifacts"
GOOD = "1/0123abcd/artifacts/model.pkl"


def _tar(names: list[str]) -> bytes:
    """A pax tar as ops.objects exports it: each member's sha256 in its header."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            body = f"bytes of {name}".encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            info.pax_headers = {objects.SHA256_HEADER: hashlib.sha256(body).hexdigest()}
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


BAD_NAMES = {
    "/abs.txt": "starts with /",
    "../outside.txt": "'..' path segment",
    "1/../../../root.txt": "'..' path segment",
    "1/./a.txt": "'..' path segment",
    "1//a.txt": "'..' path segment",
    "1/dir/": "'..' path segment",
    ".mlflow-restore-replaced/20260101T000000Z/1/a.txt": "under the restore's quarantine",
    GOOD: "appears twice",
}


@pytest.mark.parametrize("bad", list(BAD_NAMES))
def test_read_objects_tar_refuses_a_member_that_is_no_key_below_the_destination(tmp_path: Path, bad: str):
    path = tmp_path / "objects.tar"
    path.write_bytes(_tar([GOOD, bad]))
    with pytest.raises(RefusedError) as refused:
        read_objects_tar(path)
    assert f"member {bad!r}" in str(refused.value) and BAD_NAMES[bad] in str(refused.value), refused.value
    assert "nothing was changed" in str(refused.value)


def test_read_objects_tar_reads_plain_keys(tmp_path: Path):
    path = tmp_path / "objects.tar"
    path.write_bytes(_tar([GOOD, "1/0123abcd/artifacts/a.mlflow-restore-replaced/x", "..a/b..", "grüße/✓"]))
    assert [entry.key for entry in read_objects_tar(path)[0]] == [
        GOOD, "1/0123abcd/artifacts/a.mlflow-restore-replaced/x", "..a/b..", "grüße/✓"]


@pytest.mark.parametrize("bad", ["../outside.txt", ".mlflow-restore-replaced/20260101T000000Z/1/a.txt"])
def test_import_refuses_such_a_member_and_writes_nothing_for_it(s3, bad: str):
    with pytest.raises(objects.ObjectsError, match=f"member '{bad}' of the tar .*: refused"):
        objects.import_(f"s3://{BUCKET}/team", io.BytesIO(_tar([bad, GOOD])), delete_others=False)
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_confirm_counts_a_silent_lock_session_as_lost(monkeypatch):
    """psql neither answers nor exits (its output pipe stays open, here for 20 s): confirm must give up
    after its timeout instead of waiting as long as the session stays silent."""
    monkeypatch.setattr(lock, "CONFIRM_TIMEOUT_SECONDS", 0.5, raising=False)
    silent = subprocess.Popen(["sleep", "20"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        started = time.monotonic()
        with pytest.raises(OpsError, match="maintenance lock of the stack was lost .*before replacing the databases"):
            HeldLock(silent, types.SimpleNamespace(description="the stack"), "restore", "0123456789ab").confirm(
                "replacing the databases")
        assert time.monotonic() - started < 5
    finally:
        silent.kill()
        silent.wait()
        for pipe in (silent.stdin, silent.stdout, silent.stderr):
            pipe.close()


def _entry(name: str) -> list:
    body = f"bytes of {name}".encode()
    return [len(body), hashlib.sha256(body).hexdigest()]


def test_import_uploads_only_what_the_manifest_lists(s3):
    """Review 13: restore checked objects.tar, then read it again for the upload; a tar replaced in
    between (a `latest` link repointed, a sync rewriting the directory) was uploaded as it came, its
    own headers consistent. With the manifest's entries each member is checked before it is written,
    and a tar lacking some is refused."""
    other = "1/0123abcd/artifacts/other.txt"
    expected = {GOOD: _entry(GOOD), other: _entry(other)}
    changed = {GOOD: _entry(GOOD), other: [len(b"bytes of " + other.encode()), "0" * 64]}
    with pytest.raises(objects.ObjectsError, match=f"object '{other}' .* is not the one the manifest lists"):
        objects.import_(f"s3://{BUCKET}/team", io.BytesIO(_tar([GOOD, other])), delete_others=False, expected=changed)
    assert [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [f"team/{GOOD}"]
    with pytest.raises(objects.ObjectsError, match="the tar holds 1 of the 2 objects the manifest lists"):
        objects.import_(f"s3://{BUCKET}/team", io.BytesIO(_tar([GOOD])), delete_others=False, expected=expected)
    summary = objects.import_(f"s3://{BUCKET}/team", io.BytesIO(_tar([GOOD, other])), delete_others=False,
                              expected=expected)
    assert summary["objects"] == 2


def test_a_hashing_reader_hashes_what_it_handed_on_and_the_rest(tmp_path: Path):
    """What a command read of a backup file is what is checked (review 13), also when it stopped early."""
    from ops.access import HashingReader

    path = tmp_path / "database.dump"
    path.write_bytes(b"x" * 100_000)
    with open(path, "rb") as source:
        reader = HashingReader(source, prefix=b"header\n")
        assert reader.read(3) == b"hea" and reader.read() == b"der\n"
        assert reader.read(10) == b"x" * 10
        assert reader.hexdigest() == hashlib.sha256(b"x" * 100_000).hexdigest()


def test_a_retaken_lock_stops_the_one_offs_of_a_tool_that_held_it_meanwhile(monkeypatch):
    """Review 22 F2: while this tool waited for PostgreSQL, another took the lock, started a one-off and was
    killed; the retake must sweep as the first take does before this tool undoes anything."""
    import subprocess

    from ops import lock

    swept = []

    class Access:
        description = "the stack"
        lock_token = "0123456789ab"

        def stop_orphaned_oneoffs(self) -> int:
            swept.append(self.lock_token)
            return 1

    def session() -> subprocess.Popen:
        return subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    monkeypatch.setattr(lock, "_take", lambda access, holder, token: session())
    monkeypatch.setattr(lock, "_end_sessions_of", lambda access, token: swept.append("ended " + token))
    monkeypatch.setattr(lock.HeldLock, "end_work_sessions", lambda self, others:
                        swept.append("ended work of " + ("others" if others else "own")) or 0)
    held = lock.HeldLock(session(), Access(), "restore", "0123456789ab")
    monkeypatch.setattr(held, "watch", lambda: None)
    assert held.retake() and swept == ["ended 0123456789ab", "0123456789ab", "ended work of others"]
    held.close()


class _LockAccess:
    description = "the stack"
    lock_token = None

    def stop_orphaned_oneoffs(self) -> int:
        return 0


_FAKE_LOCK_SESSION = """
import re, sys, time
for line in sys.stdin:
    tag = re.match("SELECT '(q[0-9]+)', ", line).group(1)
    if "pg_terminate_backend" in line:
        time.sleep(1.0)  # ending a session takes a while
        print(tag + "|0", flush=True)
    elif "pg_locks" in line:
        print(tag + "|t", flush=True)
"""


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def test_an_answer_an_interrupt_left_unread_is_not_taken_for_the_next(monkeypatch):
    """Review 24: a second Ctrl-C while the lock's session ended an interrupted command's sessions left the
    answer unread; the next question read it, and the lock looked lost. Answers carry their question's
    number (review 25: a count of unread answers was itself cut by interrupts)."""
    import signal
    import subprocess
    import sys
    import threading

    from ops import lock

    session = subprocess.Popen([sys.executable, "-c", _FAKE_LOCK_SESSION], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)  # as ops.lock._take
    held = lock.HeldLock(session, _LockAccess(), "restore", "0123456789ab")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        with pytest.raises(KeyboardInterrupt):
            held.end_work_sessions(others=False)
            time.sleep(5)  # (not reached: the interrupt arrives while the answer is awaited)
        assert held.holds(), "the next question got its own answer"
    finally:
        signal.signal(signal.SIGTERM, previous)
        held.close()


def test_a_lock_lost_at_the_end_does_not_replace_the_tools_own_error(monkeypatch):
    """Review 24: a LockLost sent just before a failing tool let its lock go was raised by the cleanup in
    place of the tool's own error (a backup said "interrupted" instead of what failed)."""
    import subprocess

    from ops import lock

    def session() -> subprocess.Popen:
        return subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    monkeypatch.setattr(lock, "_take", lambda access, holder, token: session())
    monkeypatch.setattr(lock.HeldLock, "end_work_sessions", lambda self, others: 0)
    monkeypatch.setattr(lock.HeldLock, "watch", lambda self: None)
    monkeypatch.setattr(lock.HeldLock, "confirm", lambda self, before: None)
    real_unwatch = lock.HeldLock.unwatch
    sent = []

    def unwatch(self) -> None:
        real_unwatch(self)
        if not sent:  # the watch's signal, arriving as it is stopped
            sent.append(True)
            self.lost = True
            raise lock.LockLost("the maintenance lock was lost")

    monkeypatch.setattr(lock.HeldLock, "unwatch", unwatch)
    with pytest.raises(RuntimeError, match="the step failed"):
        with lock.maintenance_lock(_LockAccess(), "backup"):
            raise RuntimeError("the step failed")


def test_an_interrupt_while_a_finished_tool_lets_the_lock_go_changes_nothing(monkeypatch):
    """Review 25: a Ctrl-C or a LockLost arriving while a tool that had finished its work let the lock go
    escaped the `with`: a complete backup said "interrupted; the incomplete backup's files were removed", a
    complete restore said only "interrupted". The release finishes all the same and the work stands."""
    import subprocess

    from ops import lock

    sessions = []

    def session() -> subprocess.Popen:
        sessions.append(subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE))
        return sessions[-1]

    monkeypatch.setattr(lock, "_take", lambda access, holder, token: session())
    monkeypatch.setattr(lock.HeldLock, "end_work_sessions", lambda self, others: 0)
    monkeypatch.setattr(lock.HeldLock, "watch", lambda self: None)
    monkeypatch.setattr(lock.HeldLock, "confirm", lambda self, before: None)
    interrupts = ["unwatch", "end_own_work_sessions"]
    for name in list(interrupts):
        real = getattr(lock.HeldLock, name)

        def cut(self, real=real, name=name) -> None:
            if name in interrupts:  # the first call of each is interrupted, as by a Ctrl-C
                interrupts.remove(name)
                raise KeyboardInterrupt
            real(self)

        monkeypatch.setattr(lock.HeldLock, name, cut)
    try:
        with lock.maintenance_lock(_LockAccess(), "backup"):
            finished = True
    except KeyboardInterrupt:
        pytest.fail("an interrupt while the finished tool let the lock go escaped as its outcome")
    assert finished and not interrupts
    assert sessions[0].wait(5) == 0, "the lock's session was closed all the same"


def test_a_backup_interrupted_as_it_finished_says_it_is_complete(monkeypatch, tmp_path, capsys):
    """Review 25: the manifest is written last; a backup interrupted after it said its files were removed."""
    from ops import backup as backup_module
    from ops import local_stack
    from ops.archive import MANIFEST

    def finished_then_interrupted(access, directory, **_) -> None:
        (directory / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
        (directory / MANIFEST).write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(local_stack.LocalAccess, "find", classmethod(lambda cls, prefix=None: object()))
    monkeypatch.setattr(backup_module, "backup", finished_then_interrupted)
    monkeypatch.setattr(backup_module, "hang_up_and_terminate_as_interrupt", lambda: None)
    assert backup_module.main([str(tmp_path / "b")]) == 0
    assert f"the backup in {tmp_path / 'b'} is complete" in capsys.readouterr().err
