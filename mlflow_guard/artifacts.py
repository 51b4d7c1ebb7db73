"""The artifact repositories the server uses for `s3://` and `wasbs://` (artifacts.transfer direct, review of
issue 26): MLflow 3.17.2's own, with two repairs to the presigned multipart upload they start.

Registered through MLflow's plugin entry points (`mlflow.artifact_repository` in mlflow_guard/dist-info):
mlflow/store/artifact/artifact_repository_registry.py registers the built-in schemes, then every entry point
of that group over them (register_entrypoints), in every process that resolves an artifact URI. So the
server's workers use these in every `auth.mode` (`auth.mode proxy` runs no `--app-name`, hence none of
app.py), and so do the day-2 one-offs of the image, which never start a multipart upload.

- Azure Blob: MLflow names the blocks `mlflow_block_{i}` (azure_blob_artifact_repo.py,
  create_multipart_upload, l.283): from block 10 the ID is longer, and Put Block refuses it, "For a
  specified blob, all block IDs must be the same length" (https://learn.microsoft.com/rest/api/storageservices/
  put-block, URI parameters, blockid; Azurite enforces it since 3.6, Azure/Azurite#401). Every direct upload of
  ten parts or more (the 500 MiB threshold is 50 parts of 10 MiB) failed with 400 InvalidBlobOrBlock. The IDs
  here are zero-padded to five digits (Put Block List takes at most 50,000 blocks: put-block-list, Remarks),
  and complete_multipart_upload, MLflow's, reads them back from the part URLs, so both agree. The SAS is
  write-only: Put Block needs Write ("Write (w): ... Put Block", https://learn.microsoft.com/rest/api/
  storageservices/create-user-delegation-sas, Specify permissions; the same for a service SAS,
  create-service-sas); MLflow signs read and write, which let a part URL read the whole committed blob.
- Both: `num_parts` is the client's (handlers.py, _create_multipart_upload_artifact, l.4278-4285) and MLflow
  signs that many URLs in the request: a user with update rights asked for millions. Refused above the
  store's own limit, S3's and MinIO's 10,000 parts (https://docs.aws.amazon.com/AmazonS3/latest/userguide/
  qfacts.html; MinIO: https://min.io/docs/minio/linux/operations/concepts/thresholds.html) and Blob's 50,000
  blocks, with MLflow's INVALID_PARAMETER_VALUE (400), before anything is started or signed.
"""

from __future__ import annotations

import datetime
import logging
import os
import posixpath
import urllib.parse

from mlflow.entities.multipart_upload import CreateMultipartUploadResponse, MultipartUploadCredential
from mlflow.exceptions import MlflowException, _UnsupportedMultipartUploadException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store.artifact.azure_blob_artifact_repo import AzureBlobArtifactRepository, encode_base64
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

_logger = logging.getLogger(__name__)

S3_MAX_PARTS = 10_000
BLOB_MAX_BLOCKS = 50_000
BLOCK_ID_DIGITS = len(str(BLOB_MAX_BLOCKS))
SAS_HOURS = 1
"""MLflow's part SAS lifetime (azure_blob_artifact_repo.py l.252), kept."""


def block_id(part_number: int) -> str:
    """`mlflow_block_00001` ... `mlflow_block_50000`: MLflow's prefix, one length for every block of a blob."""
    return f"mlflow_block_{part_number:0{BLOCK_ID_DIGITS}d}"


def check_num_parts(num_parts: int, limit: int, store: str) -> None:
    if num_parts > limit:
        raise MlflowException(
            f"num_parts {num_parts} is more than {store} takes ({limit:,}); upload in larger parts "
            "(MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE)", error_code=INVALID_PARAMETER_VALUE)


class S3Repository(S3ArtifactRepository):
    """MLflow's S3 repository, refusing more parts than S3 (and MinIO) take."""

    def create_multipart_upload(self, local_file, num_parts=1, artifact_path=None):
        check_num_parts(num_parts, S3_MAX_PARTS, "S3")
        return super().create_multipart_upload(local_file, num_parts, artifact_path)


class AzureBlobRepository(AzureBlobArtifactRepository):
    """MLflow's Blob repository, with block IDs of one length and write-only part URLs."""

    def create_multipart_upload(self, local_file, num_parts=1, artifact_path=None):
        # MLflow 3.17.2's create_multipart_upload (azure_blob_artifact_repo.py l.239-296), with block_id() for
        # its `mlflow_block_{i}`, write=True alone for read=True, write=True, and the limit on num_parts.
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        check_num_parts(num_parts, BLOB_MAX_BLOCKS, "Blob Storage")
        (container, _, dest_path, _) = self.parse_wasbs_uri(self.artifact_uri)
        if artifact_path:
            dest_path = posixpath.join(dest_path, artifact_path)
        dest_path = posixpath.join(dest_path, os.path.basename(local_file))
        blob_url = posixpath.join(self.client.url, container, dest_path)
        now = datetime.datetime.now(datetime.timezone.utc)
        expiry = now + datetime.timedelta(hours=SAS_HOURS)
        sas_kwargs = {
            "account_name": self.client.account_name,
            "container_name": container,
            "blob_name": dest_path,
            "permission": BlobSasPermissions(write=True),
            "expiry": expiry,
        }
        credential = self.client.credential
        if account_key := getattr(credential, "account_key", None):
            sas_kwargs["account_key"] = account_key
        elif hasattr(credential, "get_token"):
            start = now - datetime.timedelta(minutes=5)
            try:
                user_delegation_key = self.client.get_user_delegation_key(start, expiry)
            except HttpResponseError as e:
                if e.status_code == 403 and getattr(e, "error_code", None) == "AuthorizationPermissionMismatch":
                    # MLflow falls back to proxied uploads without a word: say why (second review of issue 26).
                    _logger.warning(
                        "direct uploads fall back to proxied: the storage account refused this server's identity a "
                        "user-delegation key (%s: Storage Blob Delegator missing or not yet propagated)", e.error_code)
                    raise _UnsupportedMultipartUploadException() from e
                raise
            sas_kwargs.update(user_delegation_key=user_delegation_key, start=start)
        else:
            raise _UnsupportedMultipartUploadException()
        sas_token = generate_blob_sas(**sas_kwargs)
        credentials = [
            MultipartUploadCredential(
                url=(f"{blob_url}?comp=block&blockid="
                     f"{urllib.parse.quote(encode_base64(block_id(i)), safe='')}&{sas_token}"),
                part_number=i, headers={})
            for i in range(1, num_parts + 1)
        ]
        return CreateMultipartUploadResponse(credentials=credentials, upload_id=None)
