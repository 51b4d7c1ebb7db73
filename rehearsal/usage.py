"""What a server process tree spent while a client worked: CPU seconds, bytes it read and wrote (sockets
included), its peak resident memory, and the peak size of a directory (its TMPDIR), from /proc.

Used by the artifact rehearsal (`tests/rehearsal`) and the benchmark (`bench/artifacts.py`) alike:

    with TreeUsage({"server": variant.server.service}, temp_dirs={"server": tmp}) as usage:
        ...                                     # the transfer
    usage.cpu_seconds("server"), usage.io_bytes("server"), usage.peak_rss("server"), usage.peak_temp("server")

CPU and I/O are the differences between the counters at the start and at the end, summed over the tree's
processes that live through the window (uvicorn's workers and Nginx's do). A process that exits inside it
is counted through its parent's cutime/cstime (CPU only): the rehearsal's servers do not fork per request.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Protocol

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessTree(Protocol):
    """rehearsal.processes.Service, or anything that names the PIDs of a process tree."""

    def tree_pids(self) -> list[int]: ...


@dataclass(frozen=True)
class Counters:
    cpu_ticks: int
    """utime + stime + cutime + cstime, summed over the tree."""
    io_bytes: int
    """rchar + wchar (every read and write, sockets and files), summed over the tree."""
    rss: int


def _read_stat(pid: int) -> tuple[int, int]:
    """(CPU ticks incl. waited-for children, RSS bytes) of one process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17, rss (pages) 24.
    ticks = sum(int(fields[index]) for index in (11, 12, 13, 14))
    return ticks, int(fields[21]) * os.sysconf("SC_PAGE_SIZE")


def _read_io(pid: int) -> int:
    total = 0
    with open(f"/proc/{pid}/io") as io:
        for line in io:
            name, _, value = line.partition(":")
            if name in ("rchar", "wchar"):
                total += int(value)
    return total


def read_counters(tree: ProcessTree) -> dict[int, Counters]:
    counters = {}
    for pid in tree.tree_pids():
        try:
            ticks, rss = _read_stat(pid)
            counters[pid] = Counters(ticks, _read_io(pid), rss)
        except (OSError, ValueError, IndexError):
            continue
    return counters


def directory_bytes(path: Path) -> int:
    """Bytes allocated under a directory now (files being written included)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


class TreeUsage:
    """Samples process trees (and directories) while in the `with` block; see the module docstring."""

    def __init__(self, trees: Mapping[str, ProcessTree], temp_dirs: Optional[Mapping[str, Path]] = None,
                 interval: float = 0.05):
        self.trees = dict(trees)
        self.temp_dirs = dict(temp_dirs or {})
        self.interval = interval
        self.start: dict[str, dict[int, Counters]] = {}
        self.end: dict[str, dict[int, Counters]] = {}
        self.rss_peak = {name: 0 for name in self.trees}
        self.temp_peak = {name: 0 for name in self.temp_dirs}
        self.temp_baseline: dict[str, int] = {}
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._began = 0.0

    def _sample(self) -> None:
        for name, tree in self.trees.items():
            self.rss_peak[name] = max(self.rss_peak[name], sum(c.rss for c in read_counters(tree).values()))
        for name, path in self.temp_dirs.items():
            self.temp_peak[name] = max(self.temp_peak[name], directory_bytes(path))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "TreeUsage":
        self.start = {name: read_counters(tree) for name, tree in self.trees.items()}
        self.temp_baseline = {name: directory_bytes(path) for name, path in self.temp_dirs.items()}
        self._sample()
        self._began = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.seconds = time.monotonic() - self._began
        self.end = {name: read_counters(tree) for name, tree in self.trees.items()}

    def _delta(self, name: str, field: str) -> int:
        start, end = self.start[name], self.end[name]
        return sum(getattr(end[pid], field) - getattr(start[pid], field) for pid in end if pid in start)

    def cpu_seconds(self, name: str) -> float:
        return self._delta(name, "cpu_ticks") / CLOCK_TICKS

    def io_bytes(self, name: str) -> int:
        """Bytes the tree read plus wrote in the window (a proxied transfer counts about twice its size)."""
        return self._delta(name, "io_bytes")

    def peak_rss(self, name: str) -> int:
        return self.rss_peak[name]

    def peak_temp(self, name: str) -> int:
        """Peak bytes under the directory above what it held at the start."""
        return max(0, self.temp_peak[name] - self.temp_baseline[name])
