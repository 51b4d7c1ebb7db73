"""ops.quarantine (review of issue 28): with --replace, the stack's bytes of every key are kept, also
of a key the backup's upload overwrites, and the quarantine lies inside the destination's prefix,
the only place the server's scoped key may write (bucket policy `<prefix>/*`). Against moto's S3."""

from __future__ import annotations

import pytest

from ops import objects, quarantine

BUCKET = "mlflow-artifacts"


def _read(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


@pytest.mark.parametrize("prefix", ["team/", ""])
def test_replace_keeps_every_object_of_the_stack_inside_the_destination(s3, prefix):
    destination = f"s3://{BUCKET}/{prefix}"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/run/artifacts/config.json", Body=b"the stack's newer bytes")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/later/artifacts/model.pkl", Body=b"logged after the backup")
    copied = quarantine.copy(objects, destination, "20260101T000000Z")
    root = f"{prefix}.mlflow-restore-replaced/20260101T000000Z/"
    assert copied["objects"] == 2 and copied["quarantine"] == f"s3://{BUCKET}/{root}"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/run/artifacts/config.json", Body=b"the backup's bytes")  # the upload
    assert quarantine.prune(objects, destination, {"1/run/artifacts/config.json"}) == {"deleted": 1}
    assert [item["Key"] for item in objects._objects(s3, BUCKET, prefix)] == [f"{prefix}1/run/artifacts/config.json"]
    assert _read(s3, f"{root}1/run/artifacts/config.json") == b"the stack's newer bytes"
    assert _read(s3, f"{root}1/later/artifacts/model.pkl") == b"logged after the backup"
    assert quarantine.purge(objects, destination, "20260101T000000Z") == {"deleted": 2}


@pytest.mark.parametrize("prefix", ["team/", ""])
def test_put_back_gives_the_stack_its_own_bytes_after_a_restore_stopped_before_its_swap(s3, prefix):
    """Review 2 F1: the upload overwrote a key both hold, then the restore stopped before the swap: the
    stack's databases refer to its own bytes, which the quarantine holds; a key only the backup holds
    is left; another stamp (a completed restore's) is not touched."""
    destination = f"s3://{BUCKET}/{prefix}"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/run/artifacts/a.txt", Body=b"the stack's bytes")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/run/artifacts/same.txt", Body=b"the same in both")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}.mlflow-restore-replaced/20250101T000000Z/x", Body=b"older stamp")
    quarantine.copy(objects, destination, "20260101T000000Z")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/run/artifacts/a.txt", Body=b"the backup's bytes")  # the upload
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}1/only-in-backup.txt", Body=b"new")
    assert quarantine.put_back(objects, destination, "20260101T000000Z") == {"put_back": 1, "kept": 2}
    assert _read(s3, f"{prefix}1/run/artifacts/a.txt") == b"the stack's bytes"
    assert _read(s3, f"{prefix}1/only-in-backup.txt") == b"new"
    assert quarantine.quarantines(objects, destination) == {"20250101T000000Z": [1, len(b"older stamp")]}
    assert quarantine.put_back(objects, destination, "20260101T000000Z") == {"put_back": 0, "kept": 0}
