"""The garbage collector pause around a migration (migration/collector.py)."""

from __future__ import annotations

import gc

import pytest

from migration import collector


@pytest.fixture(autouse=True)
def _restore_collector():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_turns_the_collector_off_and_back_on():
    gc.enable()
    with collector.paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_paused_re_enables_it_after_an_exception():
    gc.enable()
    with pytest.raises(RuntimeError):
        with collector.paused():
            raise RuntimeError("copy failed")
    assert gc.isenabled()


def test_paused_leaves_a_collector_off_that_was_off():
    gc.disable()
    with collector.paused():
        with collector.paused():  # nested: the inner block must not switch it on
            pass
        assert not gc.isenabled()
    assert not gc.isenabled()
