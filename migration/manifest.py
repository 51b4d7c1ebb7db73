"""The move's local manifest: which artifact files reached which stack, with their size and sha256.

A SQLite file (default: `<source>.move/manifest.sqlite`), written one row per file as each upload is
verified, so a move killed at any moment (Ctrl-C, kill -9, a closed laptop) resumes where it stopped.
It is a cache, never the proof: the stack's listing (and with --verify full its read-back) decides what is
sent again (move.py, Move._to_send); a row tells whether what the stack holds is what this move sent, and
whether the laptop's file changed since. Rows are keyed by stack (its normalised URI, never
with credentials) and destination, so one manifest can serve a rehearsal and the real move.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

UPLOADED, VERIFIED, FAILED = "uploaded", "verified", "failed"  # failed: the listing after its upload disagreed

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    stack TEXT NOT NULL,       -- the tracking URI the file went to
    dest TEXT NOT NULL,        -- its path under the stack's artifact root: 1/<run id>/artifacts/...
    source TEXT NOT NULL,      -- the local path, relative to --artifacts when under it
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,       -- uploaded | verified | failed (sent again by the next run)
    at REAL NOT NULL,
    PRIMARY KEY (stack, dest)
);
CREATE TABLE IF NOT EXISTS steps (
    stack TEXT NOT NULL,
    name TEXT NOT NULL,        -- database: the rows were committed
    detail TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (stack, name)
);
"""


@dataclass(frozen=True)
class FileRecord:
    dest: str
    source: str
    size: int
    mtime_ns: int
    sha256: str
    state: str


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class Manifest:
    """Thread-safe: upload threads record their files through one connection, each row committed alone."""

    def __init__(self, path: Path, stack: str, readonly: bool = False):
        """`readonly` (--check, --finish): the file opened read-only, or, where there is none, an empty one in
        memory: nothing is made or written on disk."""
        self.path = path
        self.stack = stack
        self.readonly = readonly
        self._lock = threading.Lock()
        if readonly:
            where, uri = (f"file:{path}?mode=ro", True) if path.exists() else (":memory:", False)
            self._conn = sqlite3.connect(where, uri=uri, check_same_thread=False, isolation_level=None, timeout=30)
            if where == ":memory:":
                self._conn.executescript(_SCHEMA)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def records(self) -> dict[str, FileRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT dest, source, size, mtime_ns, sha256, state FROM files WHERE stack = ?",
                                      (self.stack,)).fetchall()
        return {r[0]: FileRecord(*r) for r in rows}

    def record(self, rec: FileRecord) -> None:
        if self.readonly:
            raise RuntimeError(f"the manifest {self.path} is open read-only")
        with self._lock:
            self._conn.execute(
                "INSERT INTO files (stack, dest, source, size, mtime_ns, sha256, state, at) VALUES (?,?,?,?,?,?,?,?) "
                "ON CONFLICT (stack, dest) DO UPDATE SET source = excluded.source, size = excluded.size, "
                "mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, state = excluded.state, at = excluded.at",
                (self.stack, rec.dest, rec.source, rec.size, rec.mtime_ns, rec.sha256, rec.state, time.time()))

    def step_done(self, name: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT detail FROM steps WHERE stack = ? AND name = ?",
                                     (self.stack, name)).fetchone()
        return row[0] if row else None

    def mark_step(self, name: str, detail: str) -> None:
        if self.readonly:
            raise RuntimeError(f"the manifest {self.path} is open read-only")
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO steps (stack, name, detail, at) VALUES (?,?,?,?)",
                               (self.stack, name, detail, time.time()))
