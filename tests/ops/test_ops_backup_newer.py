"""ops.backup's "written after the dump began" (issue 28): listings give LastModified in whole
seconds, so an object written in the same second as the dump's clock reading must still count as
newer than the dump (a CI run lost one that way: written 0.4 s after the reading, listed 0.3 s before)."""

from __future__ import annotations

from ops.archive import ObjectEntry
from ops.backup import _newer_than

STARTED = "2026-12-04T05:00:48.312345Z"


def _entry(key: str, last_modified: str | None) -> ObjectEntry:
    return ObjectEntry(key=key, bytes=1, sha256="0" * 64, last_modified=last_modified)


def test_an_object_listed_in_the_dumps_own_second_counts_as_newer():
    entries = [_entry("same-second", "2026-12-04T05:00:48+00:00"), _entry("later", "2026-12-04T05:00:49+00:00")]

    assert _newer_than(entries, STARTED) == ["same-second", "later"]


def test_objects_from_earlier_seconds_and_old_backups_without_times_are_not_newer():
    entries = [_entry("earlier", "2026-12-04T05:00:47+00:00"), _entry("no-time", None),
               _entry("yesterday", "2026-12-03T05:00:48.999000+00:00")]

    assert _newer_than(entries, STARTED) == []


def test_a_naive_or_z_suffixed_listing_time_is_read_as_utc():
    entries = [_entry("naive", "2026-12-04T05:00:48"), _entry("zulu", "2026-12-04T05:00:48.000Z")]

    assert _newer_than(entries, STARTED) == ["naive", "zulu"]
