"""Where `restore --replace` keeps the objects it replaces, instead of deleting them (issue 28).

Runs in the stack like ops.objects (a one-off from the server's image with the server's scoped S3
key), sent as `python -c` source: `source()` prepends ops.objects' own source (OBJECTS_SOURCE), so
the S3 client and key listing are written once. Standard library and boto3 only; no
`from __future__` import here, as this source follows that assignment.

    copy     s3://BUCKET[/PREFIX] STAMP  copy (server side) every object under the destination to
                                         the quarantine STAMP, deleting nothing: done before the
                                         backup's upload overwrites any key
    prune    s3://BUCKET[/PREFIX]        (stdin: JSON list of the backup's keys) after the swap,
                                         delete the stack's objects the backup does not hold
    put-back s3://BUCKET[/PREFIX] STAMP  a restore stopped before its swap: copy every quarantined
                                         object whose bytes differ back over its key, then delete
                                         the quarantine STAMP (the stack keeps its own bytes)
    list     s3://BUCKET[/PREFIX]        {"quarantines": {stamp: [objects, bytes]}}
    purge    s3://BUCKET[/PREFIX] STAMP  delete the quarantine STAMP

The quarantine lies inside the destination, `<prefix>/.mlflow-restore-replaced/<STAMP>/<key>`: the
only place the server's scoped key may write (the bucket policy grants it `<prefix>/*`).
ops.objects lists around it (it is not the stack's data, nor a backup's), Nginx's artifact
allow-list never serves it, and objects.tar members under it are refused (ops.archive).
"""

import json
import sys
import types

QUARANTINE_SUFFIX = ".mlflow-restore-replaced/"  # ops.objects.RESTORE_QUARANTINE
DELETE_BATCH = 1000


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


def copy(objects, destination: str, stamp: str) -> dict:
    """Copy (server side) every object under the destination into the quarantine `stamp`, deleting
    nothing: done before the backup's objects overwrite any key, so the stack's bytes of a key the
    backup also holds are kept too."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    root = quarantine_root(prefix)
    copied = total = 0
    for listed in objects._objects(client, bucket, prefix):
        key = listed["Key"]
        client.copy({"Bucket": bucket, "Key": key}, bucket, f"{root}{stamp}/{key[len(prefix):]}")
        copied, total = copied + 1, total + listed["Size"]
    return {"objects": copied, "bytes": total, "quarantine": f"s3://{bucket}/{root}{stamp}/"}


def prune(objects, destination: str, keep: set) -> dict:
    """Delete the objects under the destination not in `keep` (each copied to a quarantine before)."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    doomed = [listed["Key"] for listed in objects._objects(client, bucket, prefix) if listed["Key"][len(prefix):] not in keep]
    _delete(client, bucket, doomed)
    return {"deleted": len(doomed)}


def quarantines(objects, destination: str) -> dict:
    """stamp -> [objects, bytes] of each quarantine of the destination."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    root = quarantine_root(prefix)
    found: dict = {}
    for listed in objects._objects(client, bucket, root):
        stamp = listed["Key"][len(root):].split("/", 1)[0]
        entry = found.setdefault(stamp, [0, 0])
        entry[0], entry[1] = entry[0] + 1, entry[1] + listed["Size"]
    return found


def _stamp_keys(objects, client, bucket: str, prefix: str, stamp: str) -> list:
    """(quarantined key, the key it was copied from) of every object of the quarantine `stamp`."""
    root = f"{quarantine_root(prefix)}{stamp}/"
    return [(listed["Key"], prefix + listed["Key"][len(root):]) for listed in objects._objects(client, bucket, root)]


def put_back(objects, destination: str, stamp: str) -> dict:
    """A restore stopped before its swap left the stack on its own databases while the backup's upload
    may have overwritten keys both hold: each quarantined object whose key is missing or holds other
    bytes (another ETag) is copied back, then the quarantine `stamp` is deleted (nothing is replaced).
    Run again after a failure, it copies what still differs."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    kept = _stamp_keys(objects, client, bucket, prefix, stamp)
    restored = 0
    for quarantined, key in kept:
        if _etag(client, bucket, key) != _etag(client, bucket, quarantined):
            client.copy({"Bucket": bucket, "Key": quarantined}, bucket, key)
            restored += 1
    _delete(client, bucket, [quarantined for quarantined, _ in kept])
    return {"put_back": restored, "kept": len(kept)}


def _etag(client, bucket: str, key: str):
    """The object's ETag (its content's md5 for a single-part upload); None when there is no such key."""
    try:
        return client.head_object(Bucket=bucket, Key=key)["ETag"]
    except client.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def purge(objects, destination: str, stamp: str) -> dict:
    """Delete the quarantine `stamp` (restore decides which stamps may go: those whose swap happened)."""
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    keys = [quarantined for quarantined, _ in _stamp_keys(objects, client, bucket, prefix, stamp)]
    _delete(client, bucket, keys)
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
            result = copy(objects, argv[1], argv[2])
        elif len(argv) == 2 and argv[0] == "prune":
            result = prune(objects, argv[1], set(json.loads(sys.stdin.read() or "[]")))
        elif len(argv) == 2 and argv[0] == "list":
            result = {"quarantines": quarantines(objects, argv[1])}
        elif len(argv) == 3 and argv[0] == "put-back":
            result = put_back(objects, argv[1], argv[2])
        elif len(argv) == 3 and argv[0] == "purge":
            result = purge(objects, argv[1], argv[2])
        else:
            print("usage: quarantine copy DEST STAMP | prune DEST (keys to keep on stdin) | put-back DEST STAMP | "
                  "list DEST | purge DEST STAMP", file=sys.stderr)
            return 2
        print(json.dumps(result))
        return 0
    except Exception as error:  # noqa: BLE001 - one line for the caller; botocore names the operation, no secret
        print(f"quarantine: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
