"""NUL characters in the tool's copy of the source (migration/nul.py), without PostgreSQL."""

from __future__ import annotations

import sqlite3

import pytest

from migration import nul
from migration.errors import MigrationError


def _db(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE params (key VARCHAR(250) NOT NULL, value VARCHAR(8000), run_uuid VARCHAR(32) NOT NULL, "
                 "PRIMARY KEY (key, run_uuid))")
    conn.execute("CREATE TABLE metrics (key VARCHAR(250), value FLOAT, blob BLOB)")
    conn.executemany("INSERT INTO params VALUES (?, ?, ?)", rows)
    conn.execute("INSERT INTO metrics VALUES ('m', 1.5, X'00FF00')")  # a NUL in a blob is no text: left alone
    conn.commit()
    conn.close()


def test_replace_changes_only_text_holding_nul(tmp_path):
    path = tmp_path / "copy.db"
    _db(path, [("a\x00b", "x\x00y\x00", "r1"), ("plain", "é✓", "r1"), ("k", None, "r2")])
    assert nul.replace(path) == {"params.key": 1, "params.value": 1}
    conn = sqlite3.connect(path)
    assert sorted(conn.execute("SELECT key, value FROM params"), key=str) == sorted(
        [("a\ufffdb", "x\ufffdy\ufffd"), ("plain", "é✓"), ("k", None)], key=str)
    assert conn.execute("SELECT blob FROM metrics").fetchone()[0] == b"\x00\xff\x00"
    assert nul.find(path, "params", ["key", "value"]) == []
    assert nul.replace(path) == {}  # nothing left to replace


def test_replacement_that_would_merge_two_keys_is_refused(tmp_path):
    path = tmp_path / "copy.db"
    _db(path, [("a\x00", "1", "r1"), ("a\ufffd", "2", "r1")])
    with pytest.raises(MigrationError, match=r"params\.key would make two rows equal"):
        nul.replace(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM params WHERE key = ?", ("a\x00",)).fetchone()[0] == 1, "rolled back"


def test_find_names_column_count_and_first_key(tmp_path):
    path = tmp_path / "copy.db"
    _db(path, [("a", "x\x00", "r1"), ("b", "y\x00", "r1")])
    assert nul.find(path, "params", ["key", "value"]) == ["params.value: 2 rows, first key='a', run_uuid='r1'"]
