"""ops.quarantine (review of issue 28): with --replace, the stack's bytes of every key are kept, also
of a key the backup's upload overwrites, and the quarantine lies inside the destination's prefix,
the only place the server's scoped key may write (bucket policy `<prefix>/*`). Against moto's S3."""

from __future__ import annotations

import hashlib

import pytest

from ops import objects, quarantine

BUCKET = "mlflow-artifacts"


def _backup(objects_by_key: dict[str, bytes]) -> dict[str, list]:
    """What restore hands `copy`: the backup's key -> [bytes, sha256]."""
    return {key: [len(data), hashlib.sha256(data).hexdigest()] for key, data in objects_by_key.items()}


def _read(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


@pytest.mark.parametrize("prefix", ["team/", ""])
def test_replace_keeps_every_object_of_the_stack_inside_the_destination(s3, prefix):
    destination = f"s3://{BUCKET}/{prefix}"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/run/artifacts/config.json", Body=b"the stack's newer bytes")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/later/artifacts/model.pkl", Body=b"logged after the backup")
    copied = quarantine.copy(objects, destination, "20260101T000000Z",
                             _backup({"1/run/artifacts/config.json": b"the backup's bytes"}))
    root = f"{prefix}.mlflow-restore-replaced/20260101T000000Z/"
    assert copied["objects"] == 2 and copied["quarantine"] == f"s3://{BUCKET}/{root}"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/run/artifacts/config.json", Body=b"the backup's bytes")  # the upload
    assert quarantine.prune(objects, destination, "20260101T000000Z", {"1/run/artifacts/config.json"}) == {"deleted": 1}
    assert [item["Key"] for item in objects._objects(s3, BUCKET, prefix)] == [f"{prefix}1/run/artifacts/config.json"]
    assert quarantine.marked(objects, destination, quarantine.SWAPPED_SUFFIX) == ["20260101T000000Z"], \
        "prune marks the swap in the bucket"
    assert _read(s3, f"{root}1/run/artifacts/config.json") == b"the stack's newer bytes"
    assert _read(s3, f"{root}1/later/artifacts/model.pkl") == b"logged after the backup"
    assert quarantine.purge(objects, destination, "20260101T000000Z") == {"deleted": 2}
    assert quarantine.quarantines(objects, destination) == {}, "the upload record and the mark go with it"
    assert quarantine.marked(objects, destination, quarantine.SWAPPED_SUFFIX) == []


@pytest.mark.parametrize("prefix", ["team/", ""])
def test_put_back_gives_the_stack_its_own_bytes_after_a_restore_stopped_before_its_swap(s3, prefix):
    """Review 2 F1: the upload overwrote a key both hold, then the restore stopped before the swap: the
    stack's databases refer to its own bytes, which the quarantine holds; a key only the backup holds
    is left; another stamp (a completed restore's) is not touched."""
    destination = f"s3://{BUCKET}/{prefix}"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/run/artifacts/a.txt", Body=b"the stack's bytes")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/run/artifacts/same.txt", Body=b"the same in both")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}.mlflow-restore-replaced/20250101T000000Z/x", Body=b"older stamp")
    quarantine.copy(objects, destination, "20260101T000000Z",
                    _backup({"1/run/artifacts/a.txt": b"the backup's bytes", "1/only-in-backup.txt": b"new"}))
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/run/artifacts/a.txt", Body=b"the backup's bytes")  # the upload
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/only-in-backup.txt", Body=b"new")
    assert quarantine.put_back(objects, destination, "20260101T000000Z") == {"put_back": 1, "kept": 2,
                                                                             "changed_since": 0}
    assert _read(s3, f"{prefix}1/run/artifacts/a.txt") == b"the stack's bytes"
    assert _read(s3, f"{prefix}1/only-in-backup.txt") == b"new"
    # run again (a put-back killed before its purge, review 5 F3): the keys hold their own bytes again
    assert quarantine.put_back(objects, destination, "20260101T000000Z") == {"put_back": 0, "kept": 2,
                                                                             "changed_since": 0}
    assert _read(s3, f"{prefix}1/run/artifacts/a.txt") == b"the stack's bytes"
    # review 15 F1: a finished put-back is marked, so its rerun after a later failure copies nothing
    assert quarantine.marked(objects, destination, quarantine.PUT_BACK_SUFFIX) == ["20260101T000000Z"]
    assert quarantine.purge(objects, destination, "20260101T000000Z") == {"deleted": 2}
    assert quarantine.quarantines(objects, destination) == {"20250101T000000Z": [1, len(b"older stamp")]}
    assert quarantine.marked(objects, destination, quarantine.PUT_BACK_SUFFIX) == [], "purge removes the mark"


def test_put_back_keeps_what_was_written_or_deleted_after_the_kill(s3):
    """Review 3 F2: a --replace killed between its upload and its swap leaves the server stopped; an
    operator starts it by hand and users write again before `--put-back`. Only keys still holding the
    upload's bytes get the stack's old bytes back: a key rewritten since (other size, or the same size
    and other bytes) keeps the newer bytes, a key deleted since stays deleted."""
    destination = f"s3://{BUCKET}/team/"
    stack = {"1/r/artifacts/kept-upload.txt": b"stack v1", "1/r/artifacts/rewritten.txt": b"stack v1",
             "1/r/artifacts/same-size.txt": b"stack v1", "1/r/artifacts/deleted.txt": b"stack v1",
             "1/r/artifacts/untouched.txt": b"only the stack"}
    for key, data in stack.items():
        s3.put_object(Bucket=BUCKET, Key=f"team/{key}", Body=data)
    backup = {key: b"backup!!" for key in stack if key != "1/r/artifacts/untouched.txt"}
    quarantine.copy(objects, destination, "20260101T000000Z", _backup(backup))
    for key, data in backup.items():  # the upload, then the kill
        s3.put_object(Bucket=BUCKET, Key=f"team/{key}", Body=data)
    s3.put_object(Bucket=BUCKET, Key="team/1/r/artifacts/rewritten.txt", Body=b"a user's newer bytes")
    s3.put_object(Bucket=BUCKET, Key="team/1/r/artifacts/same-size.txt", Body=b"newer!!!")
    s3.delete_object(Bucket=BUCKET, Key="team/1/r/artifacts/deleted.txt")
    s3.put_object(Bucket=BUCKET, Key="team/1/r/artifacts/untouched.txt", Body=b"rewritten, not in the backup")

    assert quarantine.put_back(objects, destination, "20260101T000000Z") == {
        "put_back": 1, "kept": 5, "changed_since": 3}  # untouched.txt: not the upload's to undo, nor counted
    assert _read(s3, "team/1/r/artifacts/kept-upload.txt") == b"stack v1"
    assert _read(s3, "team/1/r/artifacts/rewritten.txt") == b"a user's newer bytes"
    assert _read(s3, "team/1/r/artifacts/same-size.txt") == b"newer!!!"
    assert _read(s3, "team/1/r/artifacts/untouched.txt") == b"rewritten, not in the backup"
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="team/1/r/artifacts/deleted.txt")


def test_a_quarantine_without_its_upload_record_is_kept_and_nothing_put_back(s3):
    """The record is written before anything is copied, so a quarantine without one was tampered with:
    putting back blind could overwrite newer bytes, deleting it would lose the stack's only copy."""
    destination = f"s3://{BUCKET}/team/"
    s3.put_object(Bucket=BUCKET, Key="team/1/a.txt", Body=b"stack")
    quarantine.copy(objects, destination, "20260101T000000Z", _backup({"1/a.txt": b"backup"}))
    s3.put_object(Bucket=BUCKET, Key="team/1/a.txt", Body=b"backup")
    record = "team/.mlflow-restore-replaced/20260101T000000Z.upload.json"
    # Review 12: JSON objects whose entries are not [bytes, sha256] are as damaged as a truncated one
    # (they raised TypeError in put-back, which then asked to be run again for ever).
    damaged = {"truncated": b'{"1/a.txt": [6, "ab', "a number": b'{"1/a.txt": 5}', "one item": b'{"1/a.txt": [3]}',
               "no digest": b'{"1/a.txt": [6, 7]}', "a list": b'[["1/a.txt", 6]]'}
    for damage in ("deleted", *damaged):
        if damage == "deleted":
            s3.delete_object(Bucket=BUCKET, Key=record)
        else:
            s3.put_object(Bucket=BUCKET, Key=record, Body=damaged[damage])
        assert quarantine.recorded(objects, destination, ["20260101T000000Z"]) == []
        with pytest.raises(RuntimeError, match="no readable record of what the upload wrote"):
            quarantine.put_back(objects, destination, "20260101T000000Z")
        assert quarantine.quarantines(objects, destination) == {"20260101T000000Z": [1, len(b"stack")]}
        assert _read(s3, "team/1/a.txt") == b"backup"
    # the way out it names (review 4, F3): every quarantined object whose key holds other bytes
    assert quarantine.put_back(objects, destination, "20260101T000000Z", every_key=True)["put_back"] == 1
    assert _read(s3, "team/1/a.txt") == b"stack"


def test_a_large_untouched_object_is_neither_put_back_nor_said_to_have_changed(s3):
    """Review 4 F4: boto3 copies an object of 8 MiB or more in parts, so its quarantined copy has
    another ETag than the key; the upload did not write it, so put-back leaves it and says nothing."""
    destination = f"s3://{BUCKET}/team/"
    big = b"x" * (9 * 1024 * 1024)
    s3.put_object(Bucket=BUCKET, Key="team/1/big.bin", Body=big)
    quarantine.copy(objects, destination, "20260101T000000Z", _backup({"1/other.txt": b"backup"}))
    quarantined = s3.head_object(Bucket=BUCKET, Key="team/.mlflow-restore-replaced/20260101T000000Z/1/big.bin")
    assert quarantined["ETag"] != s3.head_object(Bucket=BUCKET, Key="team/1/big.bin")["ETag"], "the case under test"
    assert quarantine.put_back(objects, destination, "20260101T000000Z") == {"put_back": 0, "kept": 1,
                                                                             "changed_since": 0}


def test_a_folder_under_the_quarantine_root_that_is_no_stamp_is_not_a_quarantine(s3):
    """Review 4 F5: `.mlflow-restore-replaced/notes/x` was listed as quarantine "notes": backup and
    restore refused naming `--put-back notes`, which --put-back refused as no stamp."""
    s3.put_object(Bucket=BUCKET, Key=".mlflow-restore-replaced/notes/x", Body=b"someone's notes")
    s3.put_object(Bucket=BUCKET, Key=".mlflow-restore-replaced/notes.upload.json", Body=b"{}")
    assert quarantine.quarantines(objects, f"s3://{BUCKET}/") == {}


def test_a_restore_stopped_before_copying_anything_leaves_a_quarantine_put_back_removes(s3):
    """Killed right after the record was written: the stamp is listed (restore and backup refuse until
    it is dealt with, as for any unswapped quarantine) and `put_back` clears it, changing nothing."""
    destination = f"s3://{BUCKET}/"
    s3.put_object(Bucket=BUCKET, Key=".mlflow-restore-replaced/20260101T000000Z.upload.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="1/a.txt", Body=b"stack")
    assert quarantine.quarantines(objects, destination) == {"20260101T000000Z": [0, 0]}
    assert quarantine.put_back(objects, destination, "20260101T000000Z") == {"put_back": 0, "kept": 0,
                                                                             "changed_since": 0}
    quarantine.purge(objects, destination, "20260101T000000Z")
    assert quarantine.quarantines(objects, destination) == {}
    assert _read(s3, "1/a.txt") == b"stack"


def test_every_key_goes_with_put_back_only():
    from ops import restore

    with pytest.raises(SystemExit) as refused:
        restore.main(["some-backup", "--every-key"])
    assert refused.value.code == 2


def test_a_purge_stopped_halfway_leaves_a_stamp_the_next_purge_finds(s3):
    """Only the swap's mark left (a purge killed after deleting the objects and the record): still listed,
    still swapped, so --purge-replaced removes it instead of leaving it forever."""
    destination = f"s3://{BUCKET}/team/"
    s3.put_object(Bucket=BUCKET, Key="team/.mlflow-restore-replaced/20260101T000000Z.swapped", Body=b"")
    assert quarantine.quarantines(objects, destination) == {"20260101T000000Z": [0, 0]}
    assert quarantine.marked(objects, destination, quarantine.SWAPPED_SUFFIX) == ["20260101T000000Z"]
    quarantine.purge(objects, destination, "20260101T000000Z")
    assert quarantine.quarantines(objects, destination) == {}
    assert quarantine.marked(objects, destination, quarantine.SWAPPED_SUFFIX) == []


def test_a_key_too_long_for_the_quarantine_is_found_before_anything_is_copied():
    """Review 5 (not reproducible on moto, which takes any length): S3 and MinIO refuse keys over 1,024
    bytes, and the quarantine adds its root and stamp: `copy` would fail halfway with the server stopped,
    and on every rerun. restore --replace refuses such a stack while it still serves."""
    stamp = "20260101T000000Z"
    room = quarantine.MAX_KEY_BYTES - len(quarantine.quarantined_key("team/", stamp, "").encode())
    fits, too_long, wide = "1/" + "a" * (room - 2), "1/" + "a" * (room - 1), "1/" + "é" * (room // 2)
    assert quarantine.unquarantinable("team/", stamp, [fits, too_long, wide]) == sorted([too_long, wide])
    assert quarantine.unquarantinable("", stamp, [too_long]) == [], "without a prefix it fits"


def test_a_key_copied_in_parts_still_counts_as_holding_its_own_bytes(s3):
    """Review 14: the quarantine copy of an object over 8 MiB is made in parts, so its ETag is not the
    original's; a restore that failed before its upload reached the key counted it "written since"
    (and kept the server stopped for nothing)."""
    import os

    stack_bytes, backup_bytes = os.urandom(9 * 1024 * 1024), os.urandom(9 * 1024 * 1024)
    s3.put_object(Bucket=BUCKET, Key="team/1/run/artifacts/model.bin", Body=stack_bytes)
    quarantine.copy(objects, f"s3://{BUCKET}/team/", "20260101T000000Z",
                    _backup({"1/run/artifacts/model.bin": backup_bytes}))
    copied = s3.head_object(Bucket=BUCKET,
                            Key="team/.mlflow-restore-replaced/20260101T000000Z/1/run/artifacts/model.bin")
    assert copied["ETag"] != s3.head_object(Bucket=BUCKET, Key="team/1/run/artifacts/model.bin")["ETag"]
    result = quarantine.put_back(objects, f"s3://{BUCKET}/team/", "20260101T000000Z")
    assert (result["put_back"], result["changed_since"]) == (0, 0)
    assert _read(s3, "team/1/run/artifacts/model.bin") == stack_bytes


def test_a_distrusted_record_makes_every_put_back_ask_for_every_key(s3):
    """Review 14: a failed restore that found keys holding bytes its record lacks said to use
    --every-key, but the next refusal named plain --put-back, which kept those bytes and removed the
    quarantine (the stack's only copy). The record is set aside: put-back now needs --every-key."""
    destination = f"s3://{BUCKET}/team/"
    s3.put_object(Bucket=BUCKET, Key="team/1/a.txt", Body=b"stack")
    quarantine.copy(objects, destination, "20260101T000000Z", _backup({"1/a.txt": b"backup"}))
    s3.put_object(Bucket=BUCKET, Key="team/1/a.txt", Body=b"unrecorded")
    assert quarantine.recorded(objects, destination, ["20260101T000000Z"]) == ["20260101T000000Z"]
    quarantine.distrust_record(objects, destination, "20260101T000000Z")
    assert quarantine.recorded(objects, destination, ["20260101T000000Z"]) == []
    assert "20260101T000000Z" in quarantine.quarantines(objects, destination)
    with pytest.raises(RuntimeError, match="no readable record"):
        quarantine.put_back(objects, destination, "20260101T000000Z")
    assert quarantine.put_back(objects, destination, "20260101T000000Z", every_key=True)["put_back"] == 1
    assert _read(s3, "team/1/a.txt") == b"stack"
    quarantine.purge(objects, destination, "20260101T000000Z")
    assert [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["team/1/a.txt"]


def test_a_failing_restores_own_put_back_never_marks_and_sets_an_unexplained_record_aside(s3):
    """Review 16 F1: the automatic put-back of a failing restore (server stopped) found a key holding
    bytes its record lacks and kept the quarantine for --every-key, but the put-back had marked it
    done, so --every-key, plain --put-back and --purge-replaced each removed the stack's only copy."""
    destination = f"s3://{BUCKET}/team/"
    s3.put_object(Bucket=BUCKET, Key="team/1/a.txt", Body=b"stack")
    s3.put_object(Bucket=BUCKET, Key="team/1/b.txt", Body=b"stack b")
    quarantine.copy(objects, destination, "20260101T000000Z", _backup({"1/a.txt": b"backup", "1/b.txt": b"backup b"}))
    s3.put_object(Bucket=BUCKET, Key="team/1/a.txt", Body=b"unrecorded")  # neither the stack's nor recorded
    s3.put_object(Bucket=BUCKET, Key="team/1/b.txt", Body=b"backup b")  # the upload, as recorded
    result = quarantine.put_back(objects, destination, "20260101T000000Z", undo=True)
    assert result == {"put_back": 1, "kept": 2, "changed_since": 1, "distrusted": True}
    assert quarantine.marked(objects, destination, quarantine.PUT_BACK_SUFFIX) == []
    assert quarantine.recorded(objects, destination, ["20260101T000000Z"]) == [], "set aside: --every-key asked"
    assert quarantine.put_back(objects, destination, "20260101T000000Z", every_key=True)["put_back"] == 1
    assert _read(s3, "team/1/a.txt") == b"stack" and _read(s3, "team/1/b.txt") == b"stack b"
    # Review 17 F1: without an unexplained key the undo sets nothing aside and marks the quarantine put back,
    # so if it is left (the restore stopped before its purge) a rerun copies nothing over later writes
    s3.put_object(Bucket=BUCKET, Key="team/2/c.txt", Body=b"stack c")
    quarantine.copy(objects, destination, "20260102T000000Z", _backup({"2/c.txt": b"backup c"}))
    s3.put_object(Bucket=BUCKET, Key="team/2/c.txt", Body=b"backup c")
    assert quarantine.put_back(objects, destination, "20260102T000000Z", undo=True)["distrusted"] is False
    assert quarantine.recorded(objects, destination, ["20260102T000000Z"]) == ["20260102T000000Z"]
    assert quarantine.marked(objects, destination, quarantine.PUT_BACK_SUFFIX) == ["20260101T000000Z",
                                                                                   "20260102T000000Z"]


def test_a_prune_whose_keep_list_never_arrived_removes_nothing(s3, monkeypatch):
    """Review 21: its tool killed before it wrote the list of keys to keep, a prune read "" as [] and
    deleted every object of the stack."""
    import io

    destination = f"s3://{BUCKET}/team/"
    s3.put_object(Bucket=BUCKET, Key="team/1/run/artifacts/model.pkl", Body=b"model")
    quarantine.copy(objects, destination, "20260101T000000Z", {})
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(SystemExit, match="no list of the keys to keep arrived"):
        quarantine.main(["prune", destination, "20260101T000000Z"])
    assert _read(s3, "team/1/run/artifacts/model.pkl") == b"model"
