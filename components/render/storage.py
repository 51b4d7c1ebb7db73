"""Where artifacts live: the S3 bucket's scoped policy and URIs, the Azure Blob container's URI and
how MLflow authenticates to it."""

from __future__ import annotations


# The IAM actions of every S3 call MLflow 3.17.2's S3ArtifactRepository makes
# (mlflow/store/artifact/s3_artifact_repo.py) and of what boto3's managed transfers under it call
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html names the action of each
# operation): list_objects_v2 (listing, delete_artifacts) -> s3:ListBucket; download_file, head_object and the
# presigned GET (get_download_presigned_url) -> s3:GetObject; upload_file, put_object and the presigned multipart
# upload (CreateMultipartUpload, UploadPart, CompleteMultipartUpload) -> s3:PutObject; abort_multipart_upload (and
# a failed managed upload) -> s3:AbortMultipartUpload; delete_objects -> s3:DeleteObject. Nothing of MLflow lists
# uploads or parts (ListMultipartUploads, ListParts) or asks for the bucket's location, and neither do the one-offs
# that run with the same credentials: `mlflow gc` (render/gc.py: delete_artifacts, the calls above), ops/objects.py
# (list_objects_v2, get_object, upload_fileobj, delete_objects) and ops/quarantine.py (put_object, get_object,
# copy: HeadObject and CopyObject/UploadPartCopy, s3:GetObject on the source and s3:PutObject on the target,
# delete_object, delete_objects).
MLFLOW_BUCKET_ACTIONS = ("s3:ListBucket",)
MLFLOW_OBJECT_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")


def artifact_bucket_policy(bucket: str, prefix: str = "") -> dict:
    """The S3 actions the MLflow server needs on its artifact bucket, and nothing else: list the
    bucket (under the prefix), read/write/delete objects, multipart uploads (MLFLOW_BUCKET_ACTIONS,
    MLFLOW_OBJECT_ACTIONS). Used for the MinIO user on `local` and for the task role on AWS, in both
    artifacts.transfer modes (proxied stacks had three listing actions more, which nothing called)."""
    key_prefix = f"{prefix}/" if prefix else ""
    list_statement: dict = {
        "Effect": "Allow",
        "Action": list(MLFLOW_BUCKET_ACTIONS),
        "Resource": [f"arn:aws:s3:::{bucket}"],
    }
    if prefix:
        list_statement["Condition"] = {"StringLike": {"s3:prefix": [f"{key_prefix}*"]}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            list_statement,
            {
                "Effect": "Allow",
                "Action": list(MLFLOW_OBJECT_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}/{key_prefix}*"],
            },
        ],
    }


# artifacts.transfer direct on `local` (fourth cloud review of issue 26): the key that signs the part URLs MLflow hands
# clients. A presigned URL signs only `host`, and MinIO does not refuse the x-amz-* headers a request adds unsigned
# (extractSignedHeaders reads only the signed ones: minio/minio cmd/signature-v4-utils.go, upstream archived unfixed;
# forks fixed it, pgsty/silo#173, juicedata/minio#85; Ceph RGW's same bug is CVE-2026-54330): a part URL sent back
# with `x-amz-copy-source: <bucket>/<another experiment's object>` is an UploadPartCopy, whose source read MinIO
# authorizes with the signing key (cmd/object-multipart-handlers.go, CopyObjectPartHandler: checkRequestAuthType(...,
# policy.GetObjectAction, srcBucket, srcObject)). Signed with a key that cannot read, the copy is refused. MinIO
# authorizes UploadPart as s3:PutObject (PutObjectPartHandler: isPutActionAllowed(..., policy.PutObjectAction)) and
# binds an upload to nothing but its bucket, object and upload ID (cmd/erasure-multipart.go, checkUploadIDExists; the
# parts listing's Initiator and Owner are "Dumb values not meaningful", cmd/api-response.go generateListPartsResponse),
# so this key uploads the parts of an upload the server's key started (minio/minio 7aac2a2c, February 2026).
# AWS refuses unsigned x-amz-* headers on a presigned request (403 AccessDenied, "There were headers present in the
# request which were not signed", HeadersNotSigned) and Azure authorizes a copy source with the caller's own
# credentials: only `local` needs this key. PutObject alone (fifth cloud review): the key signs part URLs only;
# aborts, like starts and completions, are the server's (a part URL cannot become an abort: the method and every
# query parameter are signed).
PART_SIGNER_OBJECT_ACTIONS = ("s3:PutObject",)


def part_signer_bucket_policy(bucket: str, prefix: str = "") -> dict:
    """The MinIO part signer's policy: upload (and abort) parts under the prefix; no read, no listing, no delete."""
    key_prefix = f"{prefix}/" if prefix else ""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": list(PART_SIGNER_OBJECT_ACTIONS),
            "Resource": [f"arn:aws:s3:::{bucket}/{key_prefix}*"],
        }],
    }


def artifacts_destination(bucket: str, prefix: str = "") -> str:
    """s3://bucket/ or s3://bucket/prefix: where the server puts proxied artifacts."""
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}/"


# MLflow's Azure Blob repository (3.17) authenticates with AZURE_STORAGE_CONNECTION_STRING, else
# AZURE_STORAGE_ACCESS_KEY, else DefaultAzureCredential, which takes a user-assigned managed identity
# from AZURE_CLIENT_ID. The azure stack sets the last and no key; the rehearsal, against Azurite, the first.
AZURE_CLIENT_ID_ENV = "AZURE_CLIENT_ID"
AZURE_CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"


def blob_artifacts_destination(container: str, account: str, prefix: str = "") -> str:
    """wasbs://container@account.blob.core.windows.net/prefix: MLflow's URI for a Blob container."""
    return f"wasbs://{container}@{account}.blob.core.windows.net/{prefix}"
