"""The artifact store's side of backup and restore: the objects under the stack's artifacts
destination, to and from a tar stream.

Runs where the store and the server's scoped key work: for the local stack in a one-off container
from the server image on the stack's network, sent as `python -c` source with the server's S3
variables (AWS_*, MLFLOW_S3_ENDPOINT_URL). So: the standard library and boto3 only.

    export s3://BUCKET[/PREFIX]                    a tar of every object under it, to stdout
    export-locations -                             the same for the s3:// locations outside the
                                                   destination read from stdin (one a line),
                                                   member name = BUCKET/KEY
    import s3://BUCKET[/PREFIX] [--delete-others]  a tar from stdin, each member uploaded after its
                                                   sha256 matched; then (option) delete the rest
    list   s3://BUCKET[/PREFIX]                    one JSON line per object: {"key", "bytes"}

Why a tar and not a directory tree: S3 keys are not paths. `a` and `a/b` can both be objects, and a
file system cannot hold them both; a pax tar keeps every key exactly (member name = the key below
the destination, any length, UTF-8), in one file, streamed through a pipe without bind mounts or
file ownership. Each member carries the object's sha256 and content type in pax headers of its own,
so the tar checks itself. A member name that is no plain key below the destination (a leading `/`,
an empty, `.` or `..` segment, the restore's quarantine, a duplicate) is refused (`member_problem`):
MLflow writes no such key, and a crafted one would write beside or above the destination. The
exports skip such a key instead (a zero-byte "folder" marker ending in `/` is the common one) and
report it as not backed up.

The stack keeps serving while a backup reads: an object deleted between listing and reading (a gc,
a user deleting a run's artifact) is recorded as vanished instead of aborting the copy; each member
carries the object's LastModified so the backup can tell objects newer than its dump. The exports
end with one line on stderr, REPORT_MARKER + JSON: {"vanished": [keys], "skipped": [{"key", "why"}],
"locations": {uri: {...}}}.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import tempfile
from typing import IO, Any, Iterator, Optional

SHA256_HEADER = "MLFLOWBACKUP.sha256"
CONTENT_TYPE_HEADER = "MLFLOWBACKUP.content_type"
LAST_MODIFIED_HEADER = "MLFLOWBACKUP.last_modified"
"""The object's LastModified as the store listed it (ISO 8601, UTC)."""
REPORT_MARKER = "MLFLOWBACKUP-REPORT "
CHUNK = 1024 * 1024
SPOOL_BYTES = 32 * 1024 * 1024  # objects up to this size stay in memory while hashed; larger ones spill to /tmp


class ObjectsError(Exception):
    """One line for the caller's error message."""


def split_destination(destination: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, "prefix/"); s3://bucket[/] -> (bucket, "")."""
    if not destination.startswith("s3://"):
        raise ObjectsError(f"not an s3:// destination: {destination}")
    bucket, _, prefix = destination[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise ObjectsError(f"no bucket in {destination}")
    return bucket, f"{prefix}/" if prefix else ""


def _client() -> Any:
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
    verify = os.environ.get("MLFLOW_S3_IGNORE_TLS", "").lower() != "true"
    config = Config(s3={"addressing_style": "path"} if endpoint else {},
                    retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint, verify=verify, config=config,
                        region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")


RESTORE_QUARANTINE = ".mlflow-restore-replaced/"  # ops.quarantine.QUARANTINE_SUFFIX


def member_problem(name: str, seen: set) -> Optional[str]:
    """Why `name` cannot be an objects.tar member (None: it can). Members are keys below the
    destination as the export writes them: a leading `/`, an empty, `.` or `..` segment would write
    beside or above the destination, a key under the restore's quarantine would overwrite the only
    copy of what an earlier --replace kept, and a second member of one key would hide the first."""
    if name.startswith("/"):
        return "starts with /"
    if any(segment in ("", ".", "..") for segment in name.split("/")):
        return "has an empty, '.' or '..' path segment"
    if (name + "/").startswith(RESTORE_QUARANTINE):
        return f"lies under the restore's quarantine {RESTORE_QUARANTINE}"
    if name in seen:
        return "appears twice"
    seen.add(name)
    return None


def _objects(client: Any, bucket: str, prefix: str) -> Iterator[dict]:
    """Every object under the prefix, in key order (S3 lists keys sorted), but the restore's quarantine
    (ops.quarantine), which sits inside the destination: it is not the stack's data."""
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            yield from (item for item in page.get("Contents", [])
                        if not item["Key"].startswith(prefix + RESTORE_QUARANTINE))
    except client.exceptions.NoSuchBucket:
        raise ObjectsError(f"bucket {bucket} does not exist: deploy the stack first (pulumi up creates it)") from None


def _spool(source: IO[bytes], spool: IO[bytes]) -> tuple[str, int]:
    """Copy source into spool; (sha256 hex, bytes)."""
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: source.read(CHUNK), b""):
        digest.update(chunk)
        spool.write(chunk)
        size += len(chunk)
    spool.seek(0)
    return digest.hexdigest(), size


def _is_gone(client: Any, error: Exception) -> bool:
    """NoSuchKey: the object was deleted after it was listed."""
    return isinstance(error, client.exceptions.NoSuchKey)


def _add_object(client: Any, tar: tarfile.TarFile, bucket: str, listed: dict, name: str) -> Optional[int]:
    """One listed object into the tar as member `name`: its size, or None when it vanished meanwhile."""
    key = listed["Key"]
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except Exception as error:  # noqa: BLE001 - only NoSuchKey is tolerated, the rest is raised again
        if _is_gone(client, error):
            return None
        raise
    with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spool:
        sha256, size = _spool(response["Body"], spool)
        if size != response["ContentLength"]:
            raise ObjectsError(f"{key}: read {size} bytes of {response['ContentLength']}")
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.type = size, 0o644, tarfile.REGTYPE
        info.mtime = int(response["LastModified"].timestamp())
        info.pax_headers = {SHA256_HEADER: sha256, LAST_MODIFIED_HEADER: listed["LastModified"].isoformat()}
        if response.get("ContentType"):
            info.pax_headers[CONTENT_TYPE_HEADER] = response["ContentType"]
        tar.addfile(info, spool)
    return size


FOLDER_MARKER = "a zero-byte folder marker (a key ending in /, as the AWS console's \"Create folder\" writes): no file"


def _unexportable(bucket: str, listed: dict, name: str, seen: set, skipped: list) -> bool:
    """A listed object that cannot be a tar member (a key ending in `/`, an empty or `..` segment, ...:
    no restore could write it back as that key) is recorded in `skipped` with its full key and why,
    instead of failing the whole backup (review 3 F6)."""
    problem = member_problem(name, seen)
    if problem is None:
        return False
    why = FOLDER_MARKER if listed["Key"].endswith("/") and not listed["Size"] else f"its name {problem}"
    skipped.append({"key": f"s3://{bucket}/{listed['Key']}", "why": why})
    return True


def _report(report: dict) -> None:
    print(REPORT_MARKER + json.dumps(report), file=sys.stderr, flush=True)


def export(destination: str, out: IO[bytes]) -> dict:
    client = _client()
    bucket, prefix = split_destination(destination)
    count = total = 0
    vanished: list[str] = []
    skipped: list[dict] = []
    seen: set = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for listed in _objects(client, bucket, prefix):
            name = listed["Key"][len(prefix):]
            if _unexportable(bucket, listed, name, seen, skipped):
                continue
            size = _add_object(client, tar, bucket, listed, name)
            if size is None:
                vanished.append(name)
                continue
            count, total = count + 1, total + size
    _report({"vanished": vanished, "skipped": skipped})
    return {"objects": count, "bytes": total}


def export_locations(locations: list[str], out: IO[bytes]) -> dict:
    """Locations outside the destination, where the server's key can read them: each one's outcome
    ({"objects", "bytes"} or {"error"}) in the report; one it cannot read does not stop the others."""
    client = _client()
    outcomes: dict[str, dict] = {}
    vanished: list[str] = []
    skipped: list[dict] = []
    seen: set = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for location in locations:
            count = total = 0
            try:
                bucket, prefix = split_destination(location)
                for listed in list(_objects(client, bucket, prefix)):
                    if _unexportable(bucket, listed, f"{bucket}/{listed['Key']}", seen, skipped):
                        continue
                    size = _add_object(client, tar, bucket, listed, f"{bucket}/{listed['Key']}")
                    if size is None:
                        vanished.append(f"{bucket}/{listed['Key']}")
                        continue
                    count, total = count + 1, total + size
                outcomes[location] = {"objects": count, "bytes": total}
            except Exception as error:  # noqa: BLE001 - recorded per location: "not backed up" and why
                code = (getattr(error, "response", None) or {}).get("Error", {}).get("Code")
                outcomes[location] = {"error": code or f"{type(error).__name__}: {error}", "objects": count,
                                      "bytes": total}
    _report({"vanished": vanished, "skipped": skipped, "locations": outcomes})
    return {"objects": sum(o["objects"] for o in outcomes.values()),
            "bytes": sum(o["bytes"] for o in outcomes.values())}


def import_(destination: str, source: IO[bytes], delete_others: bool, expected: Optional[dict] = None) -> dict:
    """`expected` (key -> [bytes, sha256], the manifest's): every member must be one of them, with those
    bytes, checked before it is uploaded, and every one must be in the tar (review 13: a tar replaced
    after restore checked it was uploaded as it came)."""
    from boto3.s3.transfer import TransferConfig

    client = _client()
    bucket, prefix = split_destination(destination)
    transfer = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024)
    written: set[str] = set()
    seen: set = set()
    count = total = 0
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for member in tar:
            problem = member_problem(member.name, seen)
            if problem:
                raise ObjectsError(f"member {member.name!r} of the tar {problem}: refused")
            if not member.isreg():
                raise ObjectsError(f"{member.name!r} in the tar is not a regular file")
            header = member.pax_headers.get(SHA256_HEADER)
            if not header:
                raise ObjectsError(f"{member.name!r} in the tar has no {SHA256_HEADER} header")
            reader = tar.extractfile(member)
            assert reader is not None
            with tempfile.SpooledTemporaryFile(SPOOL_BYTES) as spool:
                sha256, size = _spool(reader, spool)
                if sha256 != header or size != member.size:
                    raise ObjectsError(f"object {member.name!r}: sha256 {sha256} ({size} bytes) differs from the "
                                       f"backup's {header} ({member.size} bytes); not uploaded")
                if expected is not None and expected.get(member.name) != [size, sha256]:
                    raise ObjectsError(f"object {member.name!r} ({size} bytes, sha256 {sha256}) is not the one the "
                                       "manifest lists: the tar changed after it was checked; not uploaded")
                content_type = member.pax_headers.get(CONTENT_TYPE_HEADER)
                client.upload_fileobj(spool, bucket, prefix + member.name, Config=transfer,
                                      ExtraArgs={"ContentType": content_type} if content_type else None)
            written.add(prefix + member.name)
            count, total = count + 1, total + size
    if expected is not None and len(written) != len(expected):
        raise ObjectsError(f"the tar holds {len(written)} of the {len(expected)} objects the manifest lists: "
                           "it changed after it was checked")
    deleted = 0
    if delete_others:
        stale = [listed["Key"] for listed in _objects(client, bucket, prefix) if listed["Key"] not in written]
        for start in range(0, len(stale), 1000):
            batch = stale[start:start + 1000]
            response = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch],
                                                                    "Quiet": True})
            if response.get("Errors"):
                error = response["Errors"][0]
                raise ObjectsError(f"could not delete {error.get('Key')}: {error.get('Code')} {error.get('Message')}")
            deleted += len(batch)
    return {"objects": count, "bytes": total, "deleted": deleted}


def list_(destination: str, out: IO[str]) -> dict:
    client = _client()
    bucket, prefix = split_destination(destination)
    count = total = 0
    for listed in _objects(client, bucket, prefix):
        out.write(json.dumps({"key": listed["Key"][len(prefix):], "bytes": listed["Size"]}) + "\n")
        count, total = count + 1, total + listed["Size"]
    return {"objects": count, "bytes": total}


def main(argv: Optional[list[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) < 2:
            raise ObjectsError("usage: objects export|import|list s3://BUCKET[/PREFIX] [--delete-others], "
                               "objects export-locations - (locations on stdin)")
        command, destination, options = args[0], args[1], args[2:]
        if command == "export" and not options:
            summary = export(destination, sys.stdout.buffer)
        elif command == "export-locations" and destination == "-" and not options:
            summary = export_locations([line.strip() for line in sys.stdin if line.strip()], sys.stdout.buffer)
        elif command == "import" and options in ([], ["--delete-others"], ["--expected-first"]):
            # --expected-first: stdin's first line is the manifest's {key: [bytes, sha256]}, the tar follows
            expected = json.loads(sys.stdin.buffer.readline()) if options == ["--expected-first"] else None
            summary = import_(destination, sys.stdin.buffer, delete_others=options == ["--delete-others"],
                              expected=expected)
            sys.stdout.write(json.dumps(summary) + "\n")
        elif command == "list" and not options:
            summary = list_(destination, sys.stdout)
        else:
            raise ObjectsError(f"unknown command {' '.join(args[:1] + options)}")
        sys.stdout.flush()
        print(f"objects {command}: {summary['objects']} objects, {summary['bytes']} bytes", file=sys.stderr)
        return 0
    except ObjectsError as error:
        print(f"objects: {error}", file=sys.stderr)
    except Exception as error:  # noqa: BLE001 - one line for the caller; botocore names the operation, no secret
        print(f"objects: {type(error).__name__}: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
