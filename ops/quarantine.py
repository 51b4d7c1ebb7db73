"""Where `restore --replace` keeps the objects it replaces, instead of deleting them (issue 28).

Runs in the stack like ops.objects (a one-off from the server's image with the server's scoped S3
key), sent as `python -c` source: `source()` prepends ops.objects' own source (OBJECTS_SOURCE), so
the S3 client and key listing are written once. Standard library and boto3 only; no
`from __future__` import here, as this source follows that assignment.

    move  s3://BUCKET[/PREFIX] STAMP   (stdin: JSON list of the keys to keep)
          copy every object under the destination to the quarantine (STAMP/<key>), then delete the
          ones not kept: what the backup holds is uploaded over the kept ones afterwards
    list  s3://BUCKET[/PREFIX]          one JSON line per quarantine: {"stamp", "objects", "bytes"}
    purge s3://BUCKET[/PREFIX]          delete every quarantine of the destination

The quarantine is a sibling of the destination's prefix (`<prefix>.mlflow-restore-replaced/`,
outside what the server serves). A destination at the bucket's root has no sibling the server's
bucket-scoped key may write: the quarantine is then `.mlflow-restore-replaced/` in the bucket, a key
no MLflow artifact path starts with (they start with an experiment id), skipped by restore's checks.
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


def purge(objects, destination: str) -> dict:
    client = objects._client()
    bucket, prefix = objects.split_destination(destination)
    keys = [listed["Key"] for listed in objects._objects(client, bucket, quarantine_root(prefix))]
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
        elif len(argv) == 2 and argv[0] == "purge":
            result = purge(objects, argv[1])
        else:
            print("usage: quarantine copy DEST STAMP | prune DEST (keys to keep on stdin) | list DEST | purge DEST", file=sys.stderr)
            return 2
        print(json.dumps(result))
        return 0
    except Exception as error:  # noqa: BLE001 - one line for the caller; botocore names the operation, no secret
        print(f"quarantine: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
