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
- Both: MLflow's client completes the upload with one request that lists every part, each with its whole URL
  (http_artifact_repo.py, complete_multipart_upload: `{"path", "upload_id", "parts": [part.to_dict()]}`,
  MultipartUploadPart.to_dict: part_number, etag, url; sent as requests' `json=`, json.dumps' default
  separators). Nginx takes that body, like every API body, up to its API limit (components/render/proxy.py,
  api_body_limit: 16 MiB, or clientMaxBodySize if smaller; mlflow_guard.asgi reads 16 MiB at most): above it
  the completion got 413 after every part had been moved (second cloud review of issue 26). The limit reaches
  the server as MLFLOW_PLATFORM_API_BODY_LIMIT_BYTES (render.tracking_server_env), so the cap here and Nginx
  agree. num_parts is refused (400, before anything is started or signed) above what that body can list for
  this artifact's key (part_url_bound: the real endpoint, bucket or account, container and key; bounds for
  the rest), and the request MLflow signed is measured once more, exactly, before it leaves: over the limit
  (an S3 session token or upload ID longer than the bounds), the upload is aborted and refused the same way.
- Azure Blob, user-delegation SAS: each part URL is signed for its own block only, with signed request query
  parameters (`srq=comp,blockid`: the request must carry `comp=block` and that `blockid`; user-delegation SAS
  from service version 2026-04-06, https://learn.microsoft.com/rest/api/storageservices/create-user-delegation-sas,
  "Signed request query parameters"; azure-storage-blob 12.31.1 signs them as `request_query_params`,
  _shared/shared_access_signature.py add_request_query_params, with its service version 2026-10-06). A write
  SAS for the blob let any part URL Put Blob over the committed artifact, or Put Block List, for its hour.
  A key-signed (service) SAS has no such parameters (the SDK signs them only with a user-delegation key): the
  stacks sign with the identity's key; a connection string (test stand-ins) keeps one SAS for all parts.
- S3 on `local` (MinIO; fourth cloud review of issue 26): a part URL signs only `host`, and MinIO takes x-amz-*
  headers a request adds unsigned (extractSignedHeaders, minio/minio cmd/signature-v4-utils.go): sent back with
  `x-amz-copy-source`, it is an UploadPartCopy whose source read MinIO authorizes with the URL's key
  (CopyObjectPartHandler, cmd/object-multipart-handlers.go). Signed with the server's key (s3:GetObject on the
  whole prefix), any artifact of the bucket could be copied into one's own upload. With PART_SIGNER_ENVS set (the
  local platform's `<bucket>-mlflow-part-signer`, s3:PutObject only:
  components/render/storage.py, part_signer_bucket_policy), the part URLs, and only they, are signed with that key
  (a client of MLflow's own making: same endpoint, region, addressing, signature version); starting, completing,
  aborting and presigned GETs stay the server's. AWS refuses the unsigned header (HeadersNotSigned) and Azure
  authorizes a copy source with the caller's credentials, so the aws and azure stacks set none.
- Azure Blob: MLflow joins the blob name into the part URLs raw (azure_blob_artifact_repo.py l.250,
  `posixpath.join(self.client.url, container, dest_path)`): a name with `#`, `?` or `%` cut the URL (a fragment, a
  query) or was decoded once more by the service (403), and MLflow's complete_multipart_upload, which reads the
  block IDs back from the URLs' queries, raised KeyError. The name is percent-encoded here as botocore encodes an
  S3 key (safe "/~").
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import posixpath
import urllib.parse
from typing import Optional

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

API_BODY_LIMIT_ENV = "MLFLOW_PLATFORM_API_BODY_LIMIT_BYTES"
"""Nginx's limit on API bodies, the completion request's included (render.tracking_server_env sets it)."""
DEFAULT_API_BODY_LIMIT_BYTES = 16 * 1024 * 1024
"""Without the env var: Nginx's API_BODY_LIMIT and mlflow_guard.asgi.MAX_INSPECTED_BODY_BYTES (16 MiB)."""
COMPLETION_HEADROOM_BYTES = 16 * 1024
"""What the completion body holds besides its parts: `path` (the client's local file path: Linux PATH_MAX is 4,096
bytes, JSON-escaped at most 6 characters a byte would exceed this, but no real path does; the exact measure below
catches one that would), `upload_id` and the framing."""
ETAG_BOUND = '"' + "0" * 32 + '"'
"""The longest ETag a part answers: S3's (and MinIO's) is the part's MD5 in quotes (UploadPart, ETag,
https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html); Put Block answers none (MLflow sends "")."""
ENTRY_FRAMING_BYTES = len(json.dumps({"part_number": BLOB_MAX_BLOCKS, "etag": ETAG_BOUND, "url": ""})) + len(", ")
"""One part in the completion body, without its URL (MultipartUploadPart.to_dict, json.dumps' separators)."""
S3_SESSION_TOKEN_BOUND = 1_400
"""An S3 part URL's `X-Amz-Security-Token`, URL-encoded: the task role's temporary credentials on aws (STS does
not fix their size, https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html, "The size of the
security token ... is not fixed"; ECS task-role tokens measure about 1,100-1,300). MinIO's static keys have none."""
AWS_ACCESS_KEY_ID_CHARS = 20
"""The access key ID S3_QUERY_FIXED was measured with (AWS's are 20 characters)."""
S3_UPLOAD_ID_BOUND = 256
"""An S3 upload ID in a part URL (not documented; S3's are about 100-180 characters)."""
S3_QUERY_FIXED = 331
"""The rest of an S3 part URL's query, for the longest region name and part number 10,000 (measured with botocore:
tests/mlflow_guard/test_mlflow_guard_artifacts.py, test_part_url_bounds_hold)."""
BLOB_QUERY_BOUND = 400
"""A Blob part URL's query: `comp=block&blockid=...&` and the user-delegation SAS with srq (measured with the SDK:
367 at most, its 44-character signature escaping `+` and `=`; the bound leaves room for a dozen `+` in it, which
random base64 never comes near; the same test)."""


def block_id(part_number: int) -> str:
    """`mlflow_block_00001` ... `mlflow_block_50000`: MLflow's prefix, one length for every block of a blob."""
    return f"mlflow_block_{part_number:0{BLOCK_ID_DIGITS}d}"


def check_num_parts(num_parts: int, limit: int, store: str, url_bound: Optional[int] = None) -> None:
    """Refuse more parts than the store takes, or (with `url_bound`, the longest part URL) than the completion
    request can list within the API body limit; and fewer than one (third cloud review of issue 26: MLflow reads a
    missing num_parts as 0, and S3 would open an upload with no part URL, left until the lifecycle rule ends it)."""
    if not isinstance(num_parts, int) or num_parts < 1:
        raise MlflowException(f"num_parts must be a whole number of at least 1, got {num_parts!r}",
                              error_code=INVALID_PARAMETER_VALUE)
    cap = limit if url_bound is None else parts_cap(limit, url_bound)
    if num_parts > cap:
        why = (f"{store} takes ({limit:,})" if cap == limit else
               f"one completion request can list ({cap:,}: MLflow's client sends every part's URL in it, and the "
               f"server takes API bodies up to {api_body_limit_bytes() // (1024 * 1024)} MiB)")
        raise MlflowException(
            f"num_parts {num_parts} is more than {why}; upload in larger parts (MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE)",
            error_code=INVALID_PARAMETER_VALUE)


def api_body_limit_bytes() -> int:
    return int(os.environ.get(API_BODY_LIMIT_ENV) or DEFAULT_API_BODY_LIMIT_BYTES)


def parts_cap(limit: int, url_bound: int) -> int:
    """The most parts whose completion request fits the API body limit, and no more than the store's limit."""
    return max(0, min(limit, (api_body_limit_bytes() - COMPLETION_HEADROOM_BYTES) // (ENTRY_FRAMING_BYTES + url_bound)))


def _key_in_url(key: str) -> int:
    """The key's length in a part URL as the completion body carries it: percent-encoded (UTF-8 bytes as %XX, "/"
    and "~" kept) in both: botocore's S3 URLs, and the Blob URLs here (blob_path_in_url); plain ASCII, which
    json.dumps leaves as it is."""
    return len(blob_path_in_url(key))


def blob_path_in_url(name: str) -> str:
    """A key or blob name as a URL path carries it: `#`, `?`, `%` and the rest escaped, as botocore escapes an S3
    key (safe "/~"). Blob Storage reads the name percent-decoded from the path ("Certain characters must be
    percent-encoded to appear in a URL, using UTF-8", which the SDKs do: https://learn.microsoft.com/rest/api/
    storageservices/naming-and-referencing-containers--blobs--and-metadata, Resource Names)."""
    return urllib.parse.quote(name, safe="/~")


def s3_part_url_bound(endpoint: Optional[str], bucket: str, key: str, session_token: bool = True,
                      access_key_id: Optional[str] = None) -> int:
    """The longest part URL MLflow signs for `key`: path or virtual-hosted style, the same length. S3_QUERY_FIXED
    holds an access key ID of AWS's 20 characters; a longer one (MinIO's user names: `<bucket>-mlflow-part-signer`)
    adds its excess."""
    base = (endpoint or "https://s3.amazonaws.com").rstrip("/")
    longer_key = max(0, len(urllib.parse.quote(access_key_id or "", safe="")) - AWS_ACCESS_KEY_ID_CHARS)
    return len(base) + 1 + len(bucket) + 1 + _key_in_url(key) + S3_QUERY_FIXED + S3_UPLOAD_ID_BOUND + (
        S3_SESSION_TOKEN_BOUND if session_token else 0) + longer_key


def signs_with_session_token() -> bool:
    """False when the part URLs are signed with long-term keys (the part signer's, or the local stack's MinIO key
    in AWS_ACCESS_KEY_ID, no AWS_SESSION_TOKEN: botocore's environment provider comes first); the aws task role's
    are temporary."""
    if part_signer_keys() is not None:
        return False
    return not (os.environ.get("AWS_ACCESS_KEY_ID") and not os.environ.get("AWS_SESSION_TOKEN"))


PART_SIGNER_ENVS = ("MLFLOW_PLATFORM_PART_SIGNER_ACCESS_KEY_ID", "MLFLOW_PLATFORM_PART_SIGNER_SECRET_ACCESS_KEY")
"""The part signer's key (components/render/server.py, PART_SIGNER_CREDENTIAL_ENVS): set on `local` with direct
transfers only."""


def part_signer_keys() -> Optional[tuple[str, str]]:
    """(access key ID, secret) of the part signer, or None where the stack gives none; one without the other is a
    broken deployment, refused rather than signed with the server's key."""
    key, secret = (os.environ.get(name) for name in PART_SIGNER_ENVS)
    if not key and not secret:
        return None
    if not (key and secret):
        raise MlflowException(f"{' and '.join(PART_SIGNER_ENVS)} must be set together")
    return key, secret


class _PartSigningClient:
    """The server's boto3 client, except that upload_part URLs are signed by the part signer's client."""

    def __init__(self, client, signer):
        self._client = client
        self._signer = signer

    def generate_presigned_url(self, ClientMethod, *args, **kwargs):  # noqa: N803 - boto3's parameter name
        signer = self._signer if ClientMethod == "upload_part" else self._client
        return signer.generate_presigned_url(ClientMethod, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def blob_part_url_bound(account_url: str, container: str, blob: str) -> int:
    return len(account_url.rstrip("/")) + 1 + len(container) + 1 + _key_in_url(blob) + BLOB_QUERY_BOUND


def completion_body_bytes(local_file: str, upload_id: Optional[str], credentials) -> int:
    """The exact size of the body MLflow's client will send to complete this upload (each part's ETag at its
    longest)."""
    parts = [{"part_number": c.part_number, "etag": ETAG_BOUND, "url": c.url} for c in credentials]
    return len(json.dumps({"path": local_file, "upload_id": upload_id, "parts": parts}).encode())


def check_completion_fits(local_file: str, upload_id: Optional[str], credentials) -> None:
    size = completion_body_bytes(local_file, upload_id, credentials)
    if size > api_body_limit_bytes():
        raise MlflowException(
            f"num_parts {len(credentials)} is more than one completion request can list (it would be {size:,} "
            f"bytes, the server takes API bodies up to {api_body_limit_bytes():,}); upload in larger parts "
            "(MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE)", error_code=INVALID_PARAMETER_VALUE)


def _dest_path(parsed_path: str, local_file: str, artifact_path: Optional[str]) -> str:
    """Where MLflow puts the upload (create_multipart_upload of both repositories)."""
    if artifact_path:
        parsed_path = posixpath.join(parsed_path, artifact_path)
    return posixpath.join(parsed_path, os.path.basename(local_file))


class S3Repository(S3ArtifactRepository):
    """MLflow's S3 repository, refusing more parts than S3 (and MinIO) take or its completion request can list, and
    signing part URLs with the part signer's key where the stack gives one."""

    def _get_s3_client(self):
        client = super()._get_s3_client()
        keys = part_signer_keys()
        if keys is None:
            return client
        from mlflow.store.artifact.s3_artifact_repo import _get_s3_client

        # MLflow's own client factory (cached as the server's is): the endpoint (MLFLOW_S3_ENDPOINT_URL), region
        # (AWS_DEFAULT_REGION), addressing style and signature version are the server client's.
        return _PartSigningClient(client, _get_s3_client(access_key_id=keys[0], secret_access_key=keys[1]))

    def create_multipart_upload(self, local_file, num_parts=1, artifact_path=None):
        from mlflow.environment_variables import MLFLOW_S3_ENDPOINT_URL

        (bucket, path) = self.parse_s3_compliant_uri(self.artifact_uri)
        key = _dest_path(path, local_file, artifact_path)
        signer = part_signer_keys()
        check_num_parts(num_parts, S3_MAX_PARTS, "S3", s3_part_url_bound(
            MLFLOW_S3_ENDPOINT_URL.get(), bucket, key, signs_with_session_token(),
            signer[0] if signer else os.environ.get("AWS_ACCESS_KEY_ID")))
        created = super().create_multipart_upload(local_file, num_parts, artifact_path)
        try:
            check_completion_fits(local_file, created.upload_id, created.credentials)
        except MlflowException:
            super().abort_multipart_upload(local_file, created.upload_id, artifact_path)
            raise
        return created


class AzureBlobRepository(AzureBlobArtifactRepository):
    """MLflow's Blob repository, with block IDs of one length and write-only part URLs."""

    def create_multipart_upload(self, local_file, num_parts=1, artifact_path=None):
        # MLflow 3.17.2's create_multipart_upload (azure_blob_artifact_repo.py l.239-296), with block_id() for
        # its `mlflow_block_{i}`, write=True alone for read=True, write=True, the limit on num_parts, and the blob
        # name percent-encoded in the URLs.
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        (container, _, dest_path, _) = self.parse_wasbs_uri(self.artifact_uri)
        dest_path = _dest_path(dest_path, local_file, artifact_path)
        check_num_parts(num_parts, BLOB_MAX_BLOCKS, "Blob Storage",
                        blob_part_url_bound(self.client.url, container, dest_path))
        # Percent-encoded (module docstring); the SAS is signed for the name itself, as the service decodes it.
        blob_url = posixpath.join(self.client.url, container, blob_path_in_url(dest_path))
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
        shared = None if "user_delegation_key" in sas_kwargs else generate_blob_sas(**sas_kwargs)
        credentials = []
        for i in range(1, num_parts + 1):
            encoded = encode_base64(block_id(i))
            # With a user-delegation key: this part's SAS admits Put Block of this block only (module docstring).
            sas_token = shared or generate_blob_sas(
                **sas_kwargs, request_query_params={"comp": "block", "blockid": encoded})
            credentials.append(MultipartUploadCredential(
                url=f"{blob_url}?comp=block&blockid={urllib.parse.quote(encoded, safe='')}&{sas_token}",
                part_number=i, headers={}))
        check_completion_fits(local_file, None, credentials)
        return CreateMultipartUploadResponse(credentials=credentials, upload_id=None)
