"""Where `restore --replace` keeps the objects it replaces, instead of deleting them (issue 28).

Runs in the stack like ops.objects (a one-off from the server's image with the server's scoped S3
key), sent as `python -c` source: `source()` prepends ops.objects' own source (OBJECTS_SOURCE), so
the S3 client and key listing are written once. Standard library and boto3 only; no
`from __future__` import here, as this source follows that assignment.

    copy     s3://BUCKET[/PREFIX] STAMP  (stdin: JSON {key: [bytes, sha256]} of the backup) first
                                         record what the upload will write over the stack's keys
                                         (STAMP.upload.json), then copy (server side) every object
                                         under the destination to the quarantine STAMP, deleting
                                         nothing: done before the backup's upload overwrites any key
    prune    s3://BUCKET[/PREFIX] STAMP  (stdin: JSON list of the backup's keys) after the swap:
                                         mark the quarantine STAMP swapped (STAMP.swapped), then
                                         delete the stack's objects the backup does not hold
    put-back s3://BUCKET[/PREFIX] STAMP [--every-key | --undo]
                                         a restore stopped before its swap: copy each quarantined
                                         object back over its key where the key still holds what
                                         the backup's upload wrote (not where it was written or
                                         deleted since), then mark the quarantine put back
                                         (STAMP.put-back); the quarantine stays until `purge` (the
                                         caller purges once the server runs again);
                                         --every-key (no readable record): every key that
                                         holds other bytes, newer ones included;
                                         --undo (a failing restore's own put-back, the server
                                         stopped): a key holding other bytes than recorded sets
                                         the record aside (distrust_record) instead of the mark
    list     s3://BUCKET[/PREFIX]        {"quarantines": {stamp: [objects, bytes]}, "recorded": [stamps
                                         whose upload record reads], "swapped": [stamps marked swapped],
                                         "put_back": [stamps marked put back]}
    purge    s3://BUCKET[/PREFIX] STAMP  delete the quarantine STAMP, its upload record and its mark

The quarantine lies inside the destination, `<prefix>/.mlflow-restore-replaced/<STAMP>/<key>`: the
only place the server's scoped key may write (the bucket policy grants it `<prefix>/*`).
ops.objects lists around it (it is not the stack's data, nor a backup's), Nginx's artifact
allow-list never serves it, and objects.tar members under it are refused (ops.archive).
"""

import hashlib
import json
import re
import sys
import types

QUARANTINE_SUFFIX = ".mlflow-restore-replaced/"  # ops.objects.RESTORE_QUARANTINE
UPLOAD_RECORD_SUFFIX = ".upload.json"
"""`<quarantine root><STAMP>.upload.json`, beside the quarantine: {key: [bytes, sha256]} of what the
backup's upload writes over keys the stack holds, written before anything is copied or uploaded, so
a put-back after a kill tells the upload's bytes from bytes written to the key since."""
SWAPPED_SUFFIX = ".swapped"
"""`<quarantine root><STAMP>.swapped`, written by `prune` right after the restore's swap committed: the
bucket's own evidence that the databases were replaced. The databases' comments (ops.restore's
SWAPPED_MARK) say it too, but a database moved with pg_dump and pg_restore without --create loses its
comment, and an old quarantine would then pass for an interrupted restore's (review 5, F2)."""
PUT_BACK_SUFFIX = ".put-back"
"""`<quarantine root><STAMP>.put-back`, written by `put_back` once every object it had to put back is
back: a put-back stopped after that (its lock lost while the server started, its purge failed) is
run again without copying anything, so the bytes written to the stack since are kept (review 15)."""
DISTRUSTED_SUFFIX = ".distrusted"
"""appended to an upload record that a failed restore found wrong (distrust_record)"""
MARK_SUFFIXES = (UPLOAD_RECORD_SUFFIX, UPLOAD_RECORD_SUFFIX + DISTRUSTED_SUFFIX, SWAPPED_SUFFIX, PUT_BACK_SUFFIX)
"""What lies beside a quarantine `<STAMP>/`: its upload record (or the record set aside) and its marks."""
STAMP = re.compile(r"\d{8}T\d{6}Z")  # a restore's stamp (UTC time), also ops.restore's
DELETE_BATCH = 1000
HASH_CHUNK = 1024 * 1024


MAX_KEY_BYTES = 1024
"""The longest object key S3 and MinIO accept (UTF-8 bytes)."""


def quarantined_key(destination_prefix: str, stamp: str, key: str) -> str:
    """Where `copy` keeps the stack's object `key` (below the destination) for the restore `stamp`."""
    return f"{quarantine_root(destination_prefix)}{stamp}/{key}"


def unquarantinable(destination_prefix: str, stamp: str, keys) -> list:
    """The keys (below the destination) whose quarantined copy would be longer than S3 allows: `copy`
    would fail on them halfway, with the server stopped, and again on every rerun."""
    return sorted(key for key in keys if len(quarantined_key(destination_prefix, stamp, key).encode()) > MAX_KEY_BYTES)


def quarantine_root(destination_prefix: str) -> str:
    """The key prefix of every quarantine of a destination whose key prefix is `destination_prefix`
    ("" or "p/"): inside the destination, where the server's scoped key may write (the bucket policy
    grants it `p/*` only); ops.objects lists around it, Nginx's artifact allow-list never serves it."""
    return destination_prefix + QUARANTINE_SUFFIX


def _objects_module():
    """ops.objects: from the source prepended by `source()` in the stack, or the package here."""
    source = globals().get("OBJECTS_SOURCE")
    if source is None:
        from ops import objects

        return objects
    module = types.ModuleType("stack_objects")
    sys.modules[module.__name__] = module
    exec(compile(source, "objects.py", "exec"), module.__dict__)  # noqa: S102 - our own module's source
    return module


def _delete(client, bucket: str, keys: list) -> None:
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start:start + DELETE_BATCH]
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch],
                                                                "Quiet": True})
        if response.get("Errors"):
            error = response["Errors"][0]
            raise RuntimeError(f"could not delete {error.get('Key')}: {error.get('Code')} {error.get('Message')}")


def copy(objects, destination: str, stamp: str, backup: dict) -> dict:
    """Record what the upload will write over the stack's keys (`backup`: key -> [bytes, sha256]),
    then copy (server side) every object under the destination into the quarantine `stamp`,
    deleting nothing: done before the backup's objects overwrite any key, so the stack's bytes of a
    key the backup also holds are kept too."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    root = quarantine_root(prefix)
    listed = list(objects._objects(client, bucket, prefix))
    overwritten = {name: backup[name] for name in (item["Key"][len(prefix):] for item in listed) if name in backup}
    client.put_object(Bucket=bucket, Key=f"{root}{stamp}{UPLOAD_RECORD_SUFFIX}", Body=json.dumps(overwritten).encode(),
                      ContentType="application/json")
    copied = total = 0
    for item in listed:
        key = item["Key"]
        client.copy({"Bucket": bucket, "Key": key}, bucket, quarantined_key(prefix, stamp, key[len(prefix):]))
        copied, total = copied + 1, total + item["Size"]
    return {"objects": copied, "bytes": total, "quarantine": f"s3://{bucket}/{root}{stamp}/"}


def prune(objects, destination: str, stamp: str, keep: set) -> dict:
    """After the swap of the restore `stamp`: mark its quarantine swapped, then delete the objects under
    the destination not in `keep` (each copied to the quarantine before)."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    client.put_object(Bucket=bucket, Key=f"{quarantine_root(prefix)}{stamp}{SWAPPED_SUFFIX}", Body=b"")
    doomed = [listed["Key"] for listed in objects._objects(client, bucket, prefix)
              if listed["Key"][len(prefix):] not in keep]
    _delete(client, bucket, doomed)
    return {"deleted": len(doomed)}


def quarantines(objects, destination: str) -> dict:
    """stamp -> [objects, bytes] of each quarantine of the destination (one with only its upload
    record or mark, [0, 0]: a restore stopped before it copied anything, a purge stopped halfway)."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    root = quarantine_root(prefix)
    found: dict = {}
    for listed in objects._objects(client, bucket, root):
        rest = listed["Key"][len(root):]
        if "/" in rest and STAMP.fullmatch(rest.split("/", 1)[0]):
            entry = found.setdefault(rest.split("/", 1)[0], [0, 0])
            entry[0], entry[1] = entry[0] + 1, entry[1] + listed["Size"]
        else:
            for suffix in MARK_SUFFIXES:
                if rest.endswith(suffix) and STAMP.fullmatch(rest[:-len(suffix)]):
                    found.setdefault(rest[:-len(suffix)], [0, 0])
    return found


def marked(objects, destination: str, suffix: str) -> list:
    """The stamps whose quarantine carries the mark `suffix`: SWAPPED_SUFFIX (`prune` ran: the databases
    were replaced) or PUT_BACK_SUFFIX (`put_back` finished)."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    root = quarantine_root(prefix)
    marks = (listed["Key"][len(root):-len(suffix)] for listed in objects._objects(client, bucket, root)
             if listed["Key"].endswith(suffix))
    return sorted(stamp for stamp in marks if STAMP.fullmatch(stamp))


def recorded(objects, destination: str, stamps) -> list:
    """The stamps among `stamps` whose upload record is there and reads as one (put-back needs it)."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    return [stamp for stamp in stamps if _upload_record(client, bucket, prefix, stamp) is not None]


def _stamp_objects(objects, client, bucket: str, prefix: str, stamp: str) -> list:
    """(listing entry of the quarantined object, the key it was copied from) of the quarantine `stamp`."""
    root = f"{quarantine_root(prefix)}{stamp}/"
    return [(listed, prefix + listed["Key"][len(root):]) for listed in objects._objects(client, bucket, root)]


def _upload_record(client, bucket: str, prefix: str, stamp: str):
    """The quarantine's record of what the upload writes over the stack's keys; None if there is none
    or it does not read as one (damaged)."""
    try:
        body = client.get_object(Bucket=bucket, Key=f"{quarantine_root(prefix)}{stamp}{UPLOAD_RECORD_SUFFIX}")["Body"]
        record = json.loads(body.read())
    except (client.exceptions.NoSuchKey, ValueError):
        return None
    if not isinstance(record, dict) or not all(_written_entry(value) for value in record.values()):
        return None  # damaged even if it parses: --put-back then names --every-key (review 12)
    return record


def _written_entry(value) -> bool:
    """One record entry: [bytes, sha256 hex] of what the upload wrote at that key."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int) and not isinstance(value[0], bool)
            and isinstance(value[1], str) and len(value[1]) == 64)


def _holds(client, bucket: str, listed: dict, written: list) -> bool:
    """The key holds exactly the bytes the upload wrote ([bytes, sha256]): read back and hashed when the
    size matches (an ETag is no content hash under SSE-KMS or for multipart uploads)."""
    return listed["Size"] == written[0] and _digest(client, bucket, listed) == written[1]


def _digest(client, bucket: str, listed: dict) -> str:
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=listed["Key"], IfMatch=listed["ETag"])["Body"]
    for chunk in iter(lambda: body.read(HASH_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _same_bytes(client, bucket: str, one: dict, other: dict) -> bool:
    """Equal content although the ETags differ: a copy of more than 8 MiB is made in parts, and its ETag
    (`<md5 of parts>-N`) is not the original's (review 14: counted as "written since")."""
    return _digest(client, bucket, one) == _digest(client, bucket, other)


def distrust_record(objects, destination: str, stamp: str) -> dict:
    """A failed restore found keys holding bytes its record does not hold, while the server was stopped:
    the record is set aside (`<stamp>.upload.json.distrusted`), so that every put-back of this quarantine
    asks for --every-key instead of keeping those bytes and removing the stack's copy (review 14)."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    key = f"{quarantine_root(prefix)}{stamp}{UPLOAD_RECORD_SUFFIX}"
    client.copy({"Bucket": bucket, "Key": key}, bucket, key + DISTRUSTED_SUFFIX)
    client.delete_object(Bucket=bucket, Key=key)
    return {"distrusted": stamp}


def put_back(objects, destination: str, stamp: str, every_key: bool = False, undo: bool = False) -> dict:
    """A restore stopped before its swap left the stack on its own databases while the backup's upload
    may have overwritten keys both hold: each quarantined object is copied back over its key where the
    key still holds the bytes the upload wrote (its record says which). A key written since (the
    server started by hand after a kill, a user logging again) keeps its newer bytes, and a key
    deleted since stays deleted: both are counted as `changed_since`. The quarantine stays (`purge`
    removes it once the server runs again: a put-back killed before that is run again, and finds the
    keys it put back holding their own bytes). `every_key`: the record is not asked (there is none
    readable, or a failed restore found keys holding bytes it never recorded): every quarantined
    object whose key holds other bytes is put back, also over bytes written since. Done, the quarantine
    is marked put back (its rerun copies nothing: review 15, and review 17 for a failing restore's own),
    except with `undo` when a key holds other bytes than recorded: a failing restore puts back with the
    server stopped, so no user wrote them; the record is set aside for --every-key instead, here, in the
    same process (a killed tool cannot skip it; review 16)."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    kept = _stamp_objects(objects, client, bucket, prefix, stamp)
    record = _upload_record(client, bucket, prefix, stamp)
    if record is None and kept and not every_key:
        raise RuntimeError(f"the quarantine {stamp} has no readable record of what the upload wrote "
                           f"({quarantine_root(prefix)}{stamp}{UPLOAD_RECORD_SUFFIX}): put back nothing and kept it")
    current = {listed["Key"]: listed for listed in objects._objects(client, bucket, prefix)}
    restored = changed = 0
    for quarantined, key in kept:
        now = current.get(key)
        if now is not None and now["Size"] == quarantined["Size"] and (
                now["ETag"] == quarantined["ETag"] or _same_bytes(client, bucket, now, quarantined)):
            continue  # its own bytes (the upload did not reach it, or wrote the same)
        if record is None or every_key:  # whatever differs, newer bytes included (as --every-key says)
            written = None
        else:
            written = record.get(key[len(prefix):])
            if written is None:
                continue  # the upload did not write it (a large object's copy has another ETag): the stack's
            if now is None or not _holds(client, bucket, now, written):
                changed += 1
                continue
        client.copy({"Bucket": bucket, "Key": quarantined["Key"]}, bucket, key)
        restored += 1
    if undo and changed:
        distrust_record(objects, destination, stamp)
        return {"put_back": restored, "kept": len(kept), "changed_since": changed, "distrusted": True}
    client.put_object(Bucket=bucket, Key=f"{quarantine_root(prefix)}{stamp}{PUT_BACK_SUFFIX}", Body=b"")
    return {"put_back": restored, "kept": len(kept), "changed_since": changed,
            **({"distrusted": False} if undo else {})}


def purge(objects, destination: str, stamp: str) -> dict:
    """Delete the quarantine `stamp`, then its upload record and its marks (restore decides which stamps
    may go: those whose swap happened, or whose objects were put back)."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    keys = [quarantined["Key"] for quarantined, _ in _stamp_objects(objects, client, bucket, prefix, stamp)]
    _delete(client, bucket, keys)
    _delete(client, bucket, [f"{quarantine_root(prefix)}{stamp}{suffix}" for suffix in MARK_SUFFIXES])
    return {"deleted": len(keys)}


def source() -> str:
    """This module as `python -c` source, ops.objects' source prepended."""
    from pathlib import Path

    from ops import objects

    here = Path(__file__).read_text(encoding="utf-8")
    return f"OBJECTS_SOURCE = {Path(objects.__file__).read_text(encoding='utf-8')!r}\n{here}"


def main(argv: list) -> int:
    try:
        objects = _objects_module()
        if len(argv) == 3 and argv[0] == "copy":
            result = copy(objects, argv[1], argv[2], json.loads(sys.stdin.read() or "{}"))
        elif len(argv) == 3 and argv[0] == "prune":
            keep = sys.stdin.read()
            if not keep.strip():  # its tool died before it wrote the list: an empty one would prune everything
                raise SystemExit("prune: no list of the keys to keep arrived on stdin; nothing was removed")
            result = prune(objects, argv[1], argv[2], set(json.loads(keep)))
        elif len(argv) == 2 and argv[0] == "list":
            found = quarantines(objects, argv[1])
            result = {"quarantines": found, "recorded": recorded(objects, argv[1], found),
                      "swapped": marked(objects, argv[1], SWAPPED_SUFFIX),
                      "put_back": marked(objects, argv[1], PUT_BACK_SUFFIX)}
        elif len(argv) in (3, 4) and argv[0] == "put-back" and argv[3:] in ([], ["--every-key"], ["--undo"]):
            result = put_back(objects, argv[1], argv[2], every_key=argv[3:] == ["--every-key"],
                              undo=argv[3:] == ["--undo"])
        elif len(argv) == 3 and argv[0] == "purge":
            result = purge(objects, argv[1], argv[2])
        else:
            print("usage: quarantine copy DEST STAMP (backup keys on stdin) | "
                  "prune DEST STAMP (keys to keep on stdin) | put-back DEST STAMP [--every-key | --undo] | "
                  "list DEST | purge DEST STAMP", file=sys.stderr)
            return 2
        print(json.dumps(result))
        return 0
    except Exception as error:  # noqa: BLE001 - one line for the caller; botocore names the operation, no secret
        print(f"quarantine: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
