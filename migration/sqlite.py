"""SQLite files as the tool opens them: read-only connections, and the tables a database holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect_readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


def table_names(conn: sqlite3.Connection) -> list[str]:
    """The database's own tables (SQLite's internal ones left out), by name."""
    return [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    )]
