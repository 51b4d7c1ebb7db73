"""What the day-2 tools do with signals and with a failure after the swap (reviews 7 of issue 28)."""

from __future__ import annotations

import signal
import types

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
