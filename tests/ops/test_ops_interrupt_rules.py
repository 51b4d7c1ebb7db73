"""What the day-2 tools do with signals and with a failure after the swap (reviews 7 of issue 28)."""

from __future__ import annotations

import signal
import types
from pathlib import Path

import pytest

from ops import access, restore


@pytest.fixture
def saved_handlers():
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_nohup_stays_in_force(saved_handlers):
    """Review 7 F2: the tools turned SIGHUP into an interrupt also when nohup had it ignored, so
    `nohup scripts/restore DIR --replace &` and a closed ssh session aborted (and undid) the restore."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    access.hang_up_and_terminate_as_interrupt()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is access._keyboard_interrupt
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    access.hang_up_and_terminate_as_interrupt()
    assert signal.getsignal(signal.SIGHUP) is access._keyboard_interrupt, "a terminal's hang-up still stops it"


class _Server:
    def __init__(self):
        self.starts = 0

    def start_server(self) -> None:
        self.starts += 1


@pytest.mark.parametrize("may_start, done, started", [(False, True, 0), (True, True, 1), (False, False, 1)])
def test_a_failure_after_a_no_upgrade_swap_leaves_the_server_stopped(monkeypatch, may_start, done, started):
    """Review 7 T1: with --no-upgrade the restored schema may be older than the server's MLflow, which
    refuses it (the normal path leaves the server stopped and says which MLflow to deploy); a failure
    after the swap started it anyway. Before the swap the stack keeps its own databases: it starts."""
    monkeypatch.setattr(restore, "_drop_quietly", lambda access, names: None)
    server, progress = _Server(), restore._Progress()
    state = restore._Swap("20260101T000000Z", set(), set(), done=done)
    restore._after_failure(server, types.SimpleNamespace(), {}, {}, state, progress, True, lambda message: None,
                           may_start=may_start)
    assert server.starts == started
    assert ("stays stopped" in progress.describe()) == (not started)


def test_the_quarantine_goes_only_once_the_server_runs_again(monkeypatch):
    """Review 10: after a failure before the swap, the stack's bytes were put back and the quarantine
    deleted before the server started; killed in between, the server stayed stopped and the next
    restore had nothing to name. As `--put-back` does (review 5 F3): the quarantine goes last."""
    events: list[str] = []
    monkeypatch.setattr(restore, "_drop_quietly", lambda access, names: None)
    monkeypatch.setattr(restore, "put_back_objects", lambda *args, **kwargs: events.append("put back") or
                        {"put_back": 2, "kept": 3})
    monkeypatch.setattr(restore, "purge_quarantine", lambda *args: events.append("purge") or 3)

    class Server:
        fails = False

        def start_server(self) -> None:
            events.append("start")
            if self.fails:
                raise restore.OpsError("the server did not become healthy")

    layout = types.SimpleNamespace(artifacts_destination="s3://bucket/root")
    for fails, expected in ((False, ["put back", "start", "purge"]), (True, ["put back", "start"])):
        events.clear()
        server, progress = Server(), restore._Progress()
        server.fails = fails
        state = restore._Swap("20260101T000000Z", {"a"}, {"a", "b"}, quarantining=True)
        restore._after_failure(server, layout, {}, {}, state, progress, True, lambda message: None)
        assert events == expected
        assert ("quarantine 20260101T000000Z was then removed" in progress.describe()) == (not fails)
        assert ("kept until the server runs: scripts/restore --put-back 20260101T000000Z"
                in progress.describe()) == fails


class _LostLock:
    """A lock whose session ended (a PostgreSQL restart) and that was taken again."""

    why_not_retaken = ""

    def unwatch(self) -> None:
        pass

    def watch(self) -> None:
        pass

    def holds(self) -> bool:
        return False

    def retake(self) -> bool:
        return True

    def lost_message(self, before: str = "its next step") -> str:
        return f"the maintenance lock was lost before {before}"


@pytest.mark.parametrize("error, raised, says", [
    (restore.RefusedError("the dump's schema revision is not the manifest's"), restore.RefusedError, "schema revision"),
    (restore.OpsError("pg_restore failed: server closed the connection"), restore.OpsError, "lock was lost"),
])
def test_a_refusal_in_the_scratch_copy_stays_a_refusal_when_the_lock_is_also_lost(monkeypatch, tmp_path, error,
                                                                                  raised, says):
    """Review 10: with the lock lost too, a refusal (exit 3, nothing changed) was reported as a lost
    lock (exit 1); a step that failed on the restart itself is said as the lost lock."""
    from ops.archive import DatabaseBackup

    dropped: list[list[str]] = []
    monkeypatch.setattr(restore, "target_data", lambda *args: restore.TargetData({}, {}, {}, "s3://b/"))
    monkeypatch.setattr(restore, "_drop_quietly", lambda access, names: dropped.append(names))

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(restore, "_restore_into_scratch", failing)
    backup = DatabaseBackup(file="database.dump", name="mlflow", schema_revision="r", tables={}, bytes=1, sha256="x")
    manifest = types.SimpleNamespace(databases={"tracking": backup})
    plan = {"tracking": restore.DatabaseNames("mlflow", "mlflow__restoring", "mlflow__replaced")}
    layout = types.SimpleNamespace(s3_env=lambda access: {}, owner="mlflow")
    with pytest.raises(raised, match=says) as caught:
        restore._restore_locked(types.SimpleNamespace(description="a stack"), tmp_path, manifest, layout, None, plan,
                                replace=False, upgrade=True, stamp="20260101T000000Z", say=lambda message: None,
                                lock=_LostLock())
    assert type(caught.value) is raised
    assert dropped == [["mlflow__restoring"]], "the lock was taken again: its scratch copy is dropped"


def test_a_manifest_without_a_tracking_database_is_refused(tmp_path):
    """Review 10: a manifest naming only an auth dump ended in a KeyError traceback."""
    import json

    from ops.archive import FORMAT, MANIFEST, Manifest

    raw = {"format": FORMAT, "created_at": "2026-01-01T00:00:00Z", "source": "s", "mlflow_version": "3.17.2",
           "schema_revision": "r", "artifacts_destination": "s3://b/", "counts": {},
           "databases": {"auth": {"file": "auth-database.dump", "name": "mlflow_auth", "schema_revision": "a",
                                  "tables": {}, "bytes": 1, "sha256": "x"}},
           "objects": {"file": "objects.tar", "bytes": 0, "sha256": "x", "entries": []}}
    for databases in (raw["databases"], ["tracking"]):
        (tmp_path / MANIFEST).write_text(json.dumps({**raw, "databases": databases}))
        with pytest.raises(restore.RefusedError, match="is not a manifest of this tool"):
            Manifest.load(tmp_path)


class _HeldLock(_LostLock):
    def holds(self) -> bool:
        return True


def _replace_failing_at_upload(monkeypatch, upload_error: BaseException, *, start_error=None, purge_error=None,
                               lock=None, put_back_result=None, events=None):
    """_restore_locked with --replace up to the upload, which raises `upload_error`; the stack's bytes are
    put back, then the server start and the quarantine's purge run (each may raise). Returns (what was
    said, the exception raised)."""
    from ops.archive import DatabaseBackup

    monkeypatch.setattr(restore, "target_data", lambda *args: restore.TargetData({}, {}, {"a": 1}, "s3://b/"))
    monkeypatch.setattr(restore, "_refuse_unquarantinable", lambda *args: None)
    monkeypatch.setattr(restore, "_restore_into_scratch", lambda *args: {"runs": 1})
    monkeypatch.setattr(restore, "_drop_quietly", lambda access, names: None)
    monkeypatch.setattr(restore, "_quarantine_copy", lambda *args, **kwargs: None)

    def upload(*args, **kwargs):
        raise upload_error

    def purge(*args):
        if events is not None:
            events.append("purge")
        if purge_error is not None:
            raise purge_error
        return 1

    monkeypatch.setattr(restore, "_upload_objects", upload)
    def put_back_objects(*args, **kwargs):
        if events is not None:
            events.append(("put back", kwargs))
        return put_back_result or {"put_back": 1, "kept": 1, "changed_since": 0}

    monkeypatch.setattr(restore, "put_back_objects", put_back_objects)
    monkeypatch.setattr(restore, "purge_quarantine", purge)

    ran: list[list[str]] = []
    monkeypatch.setattr(restore, "run", lambda command, what, **kwargs: ran.append(command) or b"{}")

    class Access:
        description = "a stack"

        def python_command(self, argv, env):
            return [arg for arg in argv if not arg.startswith(("OBJECTS_SOURCE", '"""'))][-3:]

        def stop_server(self) -> bool:
            return True

        def start_server(self) -> None:
            if events is not None:
                events.append("start")
            if start_error is not None:
                raise start_error

    backup = DatabaseBackup(file="database.dump", name="mlflow", schema_revision="r", tables={}, bytes=1, sha256="x")
    manifest = types.SimpleNamespace(databases={"tracking": backup}, objects=types.SimpleNamespace(entries=[]))
    plan = {"tracking": restore.DatabaseNames("mlflow", "mlflow__restoring", "mlflow__replaced")}
    layout = types.SimpleNamespace(s3_env=lambda access: {}, owner="mlflow", artifacts_destination="s3://b/")
    said: list[str] = []
    if events is not None:
        events.append(ran)
    with pytest.raises(BaseException) as raised:
        restore._restore_locked(Access(), Path("/nonexistent"), manifest, layout, None, plan, replace=True,
                                upgrade=True, stamp="20260101T000000Z", say=said.append, lock=lock)
    return said, raised.value


def test_a_full_disk_is_said_as_a_failure_not_an_interrupt(monkeypatch):
    """Review 11: every error that was not an OpsError was said as "interrupted"."""
    said, raised = _replace_failing_at_upload(monkeypatch, OSError(28, "No space left on device"))
    assert isinstance(raised, restore.OpsError) and "No space left on device" in str(raised)
    assert "got the stack's bytes back" in str(raised) and not [line for line in said if "interrupted" in line]


def test_a_second_interrupt_during_the_cleanup_still_says_what_was_done(monkeypatch):
    """Review 11: a second Ctrl-C while the server started again left only a bare "interrupted"."""
    said, raised = _replace_failing_at_upload(monkeypatch, KeyboardInterrupt(), start_error=KeyboardInterrupt())
    assert isinstance(raised, KeyboardInterrupt)
    assert any(line.startswith("interrupted again while it cleaned up: ") and "got the stack's bytes back" in line
               for line in said), said


def test_a_lock_lost_after_the_server_started_again_does_not_say_leave_it_stopped(monkeypatch):
    """Review 11: the quarantine is purged after the start; a lock lost there said "leave the MLflow
    server stopped" of a server that was running again."""
    from ops.lock import LockLost

    said, raised = _replace_failing_at_upload(monkeypatch, restore.OpsError("upload failed"),
                                              purge_error=LockLost("lost"), lock=_HeldLock())
    assert isinstance(raised, restore.OpsError) and "so what it left is not known" in str(raised)
    assert "leave the MLflow server stopped" not in str(raised) and "run the restore again" in str(raised)


def test_keys_the_upload_wrote_without_recording_them_keep_the_server_stopped(monkeypatch):
    """Review 13: the server is stopped during a restore, so a key holding neither the stack's bytes nor
    the ones the upload recorded was written by the upload itself (a tar changed after its check):
    putting back "the rest" and removing the quarantine lost the stack's own bytes of that key."""
    events: list[str] = []
    said, raised = _replace_failing_at_upload(monkeypatch, restore.OpsError("upload failed"), events=events,
                                              put_back_result={"put_back": 2, "kept": 3, "changed_since": 1})
    assert isinstance(raised, restore.OpsError)
    assert "1 keys the upload wrote hold neither the stack's bytes nor the ones it recorded" in str(raised)
    assert "--put-back 20260101T000000Z --every-key" in str(raised)
    ran = events.pop(0)
    assert events == [("put back", {"undo": True})], "the server stays stopped and the quarantine is kept"
    assert ran == [], "the put-back itself sets the record aside (review 16: a killed tool cannot skip it)"


def test_a_stamp_an_earlier_restore_left_is_refused(monkeypatch):
    """Review 14: two restores a second apart (or a clock set back) shared a stamp: the second one's
    quarantine and record overwrote the first's, and its failure purged them."""
    layout = types.SimpleNamespace(database="mlflow", auth_database="mlflow_auth")
    monkeypatch.setattr(restore, "_database_names",
                        lambda access: {"mlflow": "", "mlflow__replaced_20260101T000000Z": ""})
    for listing in ({"quarantines": {"20260101T000000Z": [1, 1]}}, {"quarantines": {}}):
        with pytest.raises(restore.RefusedError, match="stamp 20260101T000000Z .* nothing was changed"):
            restore._refuse_a_stamp_in_use(None, layout, "20260101T000000Z", listing)
    restore._refuse_a_stamp_in_use(None, layout, "20260101T000001Z", {"quarantines": {"20260101T000000Z": [1, 1]}})


def test_a_stamp_a_database_comment_still_names_as_swapped_is_refused(monkeypatch):
    """Review 15 F3: restore A (stamp S) completed and was purged, the clock set back, and restore B got
    stamp S: the stack's database still commented `swapped:S` made B's quarantine pass for swapped, so
    a B killed before its swap had its quarantine (the stack's only copy) deleted by --purge-replaced."""
    layout = types.SimpleNamespace(database="mlflow", auth_database="mlflow_auth")
    monkeypatch.setattr(restore, "_database_names",
                        lambda access: {"mlflow": f"{restore.SWAPPED_MARK}20260101T000000Z", "mlflow_auth": ""})
    with pytest.raises(restore.RefusedError, match="stamp 20260101T000000Z .* nothing was changed"):
        restore._refuse_a_stamp_in_use(None, layout, "20260101T000000Z", {"quarantines": {}})
    restore._refuse_a_stamp_in_use(None, layout, "20260101T000001Z", {"quarantines": {}})


def test_purge_replaced_drops_no_database_once_its_lock_is_lost(monkeypatch):
    """Review 19 F3: a PostgreSQL restart during --purge-replaced's listing lost its lock, and the drops
    ran within the watch's second with no lock held: the lock is confirmed before them."""
    import contextlib

    class LostLock:
        def confirm(self, before: str) -> None:
            raise restore.OpsError(f"the maintenance lock was lost before {before}")

    @contextlib.contextmanager
    def lock(access, holder):
        yield LostLock()

    dropped: list[str] = []
    layout = types.SimpleNamespace(database="mlflow", auth_database="mlflow_auth", artifacts_destination="s3://b/",
                                   s3_env=lambda access: {})
    monkeypatch.setattr(restore, "maintenance_lock", lock)
    monkeypatch.setattr(restore.StackLayout, "read", classmethod(lambda cls, access: layout))
    monkeypatch.setattr(restore, "_database_names",
                        lambda access: {"mlflow": "", "mlflow__replaced_20260101T000000Z": ""})
    monkeypatch.setattr(restore, "_listing", lambda access, layout: {"quarantines": {}, "swapped": [], "put_back": []})
    monkeypatch.setattr(restore, "psql", lambda access, database, script, **kwargs: dropped.append(script))
    with pytest.raises(restore.OpsError, match="lost before dropping the replaced databases"):
        restore.purge_replaced(object(), say=lambda message: None)
    assert dropped == []


def test_a_put_back_interrupted_while_the_server_stops_names_the_command_that_starts_it(monkeypatch):
    """Review 20 F2: Ctrl-C, SIGTERM or SIGHUP during `docker stop` (up to 30 s) left the server stopped
    and said only "interrupted"; the put-back's own message names the rerun."""
    import contextlib

    class Lock:
        def confirm(self, before: str) -> None:
            pass

    @contextlib.contextmanager
    def lock(access, holder):
        yield Lock()

    layout = types.SimpleNamespace(database="mlflow", auth_database="mlflow_auth", artifacts_destination="s3://b/",
                                   s3_env=lambda access: {})
    monkeypatch.setattr(restore, "maintenance_lock", lock)
    monkeypatch.setattr(restore.StackLayout, "read", classmethod(lambda cls, access: layout))
    monkeypatch.setattr(restore, "stamp_swapped", lambda *args: False)
    monkeypatch.setattr(restore, "put_back_objects", lambda *args, **kwargs: pytest.fail("copied while stopping"))
    stamp = "20260101T000000Z"
    for done in (False, True):
        monkeypatch.setattr(restore, "_listing", lambda access, layout, done=done: {
            "quarantines": {stamp: [1, 1]}, "recorded": [stamp], "swapped": [], "put_back": [stamp] * done})

        class Access:
            description = "a stack"
            calls: list[str] = []

            def stop_server(self) -> bool:
                self.calls.append("stop")
                raise KeyboardInterrupt  # the stop is under way

            def start_server(self) -> None:
                self.calls.append("start")
                raise KeyboardInterrupt  # the start is under way

        access = Access()
        with pytest.raises(restore.OpsError) as raised:
            restore.put_back(access, stamp, say=lambda message: None)
        assert raised.value.exit_code == 130 and str(raised.value).startswith("stopped: interrupted; the MLflow server")
        assert f"run scripts/restore --put-back {stamp} again" in str(raised.value)
        # Review 20 F3a: a finished put-back's rerun leaves a running server be (it only makes sure it runs).
        assert access.calls == (["start"] if done else ["stop"])
