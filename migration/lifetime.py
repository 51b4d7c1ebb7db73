"""Child processes end with the migration: a killed migration leaves no reader or probe behind.

A reader blocked on its full result queue, or a probe still importing MLflow, would otherwise wait
forever for a parent that is gone (SIGKILL, OOM killer, a closed container shell).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when `parent` ends; exit now if it has already ended."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the readers' own parent checks remain
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
