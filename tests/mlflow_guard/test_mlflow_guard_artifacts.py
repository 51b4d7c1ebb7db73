"""mlflow_guard.artifacts (review of issue 26, artifacts.transfer direct): Blob block IDs of one length and
write-only part URLs, against Azurite, which enforces Put Block's "all block IDs must be the same length"
(Azure/Azurite#401) as Azure does; num_parts refused above the store's limit; and the image's layout makes
MLflow resolve `s3://` and `wasbs://` to these, in a server started without `--app-name` (auth.mode proxy)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from mlflow_guard import artifacts
from rehearsal import processes
from rehearsal.ports import free_port

CONTAINER = "artifacts"
PARTS = 13  # >= 12: MLflow's own IDs change length at block 10


def _block_ids(credentials) -> list[str]:
    return [base64.b64decode(urllib.parse.parse_qs(urllib.parse.urlparse(c.url).query)["blockid"][0]).decode()
            for c in credentials]


def test_block_ids_are_of_one_length_up_to_blobs_limit():
    assert {len(artifacts.block_id(i)) for i in (1, 9, 10, 99, 10_000, artifacts.BLOB_MAX_BLOCKS)} == {18}
    assert artifacts.block_id(12) == "mlflow_block_00012"


@pytest.mark.parametrize("repository, uri, limit", [
    (artifacts.S3Repository, "s3://bucket/prefix", 10_000),
    (artifacts.AzureBlobRepository, f"wasbs://{CONTAINER}@devstoreaccount1.blob.core.windows.net/p", 50_000)])
def test_more_parts_than_the_store_takes_are_refused_before_anything_is_signed(repository, uri, limit, monkeypatch):
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", _connection_string("http://127.0.0.1:9/devstoreaccount1"))
    monkeypatch.setenv(artifacts.API_BODY_LIMIT_ENV, str(1024 ** 3))  # the store's limit, not the body's, refuses
    repo = repository(uri)
    with pytest.raises(MlflowException) as refused:
        repo.create_multipart_upload("/tmp/model.bin", limit + 1, "1/run/artifacts")
    assert refused.value.get_http_status_code() == 400
    assert f"{limit:,}" in refused.value.message


def _connection_string(endpoint: str) -> str:
    from rehearsal.stand_ins import AZURITE_ACCOUNT, AZURITE_ACCOUNT_KEY

    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_ACCOUNT_KEY};"
            f"BlobEndpoint={endpoint};")


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    from rehearsal.stand_ins import AzuriteStandIn

    stand_in = AzuriteStandIn(tmp_path_factory.mktemp("azurite"), CONTAINER)
    try:
        stand_in.start()
    except Exception as error:  # noqa: BLE001 - no node or no rehearsal/azurite/node_modules here
        pytest.skip(f"Azurite unavailable: {error}")
    yield stand_in
    stand_in.stop()


def _put_parts(credentials, data: bytes, size: int) -> None:
    for index, credential in enumerate(credentials):
        response = requests.put(credential.url, data=data[index * size:(index + 1) * size], timeout=30)
        assert response.status_code == 201, (credential.part_number, response.status_code, response.text[:300])


def test_mlflows_own_block_ids_fail_from_the_tenth_part(azurite, monkeypatch, tmp_path):
    """The defect, reproduced: MLflow 3.17.2's repository, ten parts or more."""
    from mlflow.store.artifact.azure_blob_artifact_repo import AzureBlobArtifactRepository

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    repo = AzureBlobArtifactRepository(f"wasbs://{CONTAINER}@{azurite.account}.blob.core.windows.net/1/a/artifacts")
    statuses = [requests.put(c.url, data=b"x", timeout=30).status_code
                for c in repo.create_multipart_upload(str(tmp_path / "f.bin"), PARTS, "m").credentials]
    assert statuses[:9] == [201] * 9 and set(statuses[9:]) == {400}


def test_a_blob_of_thirteen_parts_is_committed_whole_with_write_only_urls(azurite, monkeypatch, tmp_path):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    repo = artifacts.AzureBlobRepository(f"wasbs://{CONTAINER}@{azurite.account}.blob.core.windows.net/1/r/artifacts")
    size = 1024
    data = os.urandom(size * PARTS - 100)
    local = tmp_path / "model.bin"
    local.write_bytes(data)
    create = repo.create_multipart_upload(str(local), PARTS, "m")
    assert len({len(i) for i in _block_ids(create.credentials)}) == 1
    assert {urllib.parse.parse_qs(urllib.parse.urlparse(c.url).query)["sp"][0] for c in create.credentials} == {"w"}
    _put_parts(create.credentials, data, size)
    from mlflow.entities.multipart_upload import MultipartUploadPart

    parts = [MultipartUploadPart(part_number=c.part_number, etag="", url=c.url) for c in create.credentials]
    repo.complete_multipart_upload(str(local), create.upload_id, parts, "m")
    blob = azurite.client().get_blob_client(CONTAINER, "1/r/artifacts/m/model.bin").download_blob().readall()
    assert hashlib.sha256(blob).hexdigest() == hashlib.sha256(data).hexdigest()
    # The part URL reads nothing (MLflow's read+write SAS read the committed blob).
    assert requests.get(create.credentials[0].url.replace("comp=block&", "", 1), timeout=30).status_code == 403


# --- the server process the image runs -------------------------------------------------------------------

def test_the_images_layout_resolves_s3_and_wasbs_to_the_guards_repositories(tmp_path):
    """A fresh interpreter with the image's PYTHONPATH (entry points are read from sys.path), as
    `mlflow server` and its uvicorn workers start in every auth.mode."""
    code = ("from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry as r\n"
            "print({s: r.get_registered_artifact_repositories()[s].__qualname__ for s in ('s3', 'wasbs')})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": processes.image_python_path(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str({"s3": "S3Repository", "wasbs": "AzureBlobRepository"})


@pytest.mark.slow
def test_mlflow_server_without_an_app_name_uploads_thirteen_blocks_and_refuses_too_many(azurite, tmp_path):
    """`mlflow server` as auth.mode proxy runs it (no --app-name), under a static prefix, on Azurite; the real
    MLflow client uploads a 13-part file directly (forced, as a client may) and the blob's sha256 matches."""
    port = free_port()
    env = {**processes.base_env(tmp_path, tmp_path), "PYTHONPATH": processes.image_python_path(tmp_path),
           "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string, "MLFLOW_ENABLE_AI_GATEWAY": "false"}
    destination = f"wasbs://{CONTAINER}@{azurite.account}.blob.core.windows.net/srv"
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db", "--serve-artifacts",
         "--artifacts-destination", destination, "--static-prefix", "/mlflow"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/mlflow"
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "server.log").read_text()[-3000:]
                time.sleep(1)
        size = 1024 * 1024
        data = os.urandom(size * PARTS - 12345)
        local = tmp_path / "model.bin"
        local.write_bytes(data)
        code = ("import mlflow, sys\n"
                f"mlflow.set_tracking_uri({base!r})\n"
                "with mlflow.start_run() as run:\n"
                f"    mlflow.log_artifact({str(local)!r}, 'm')\n"
                "print(run.info.experiment_id + '/' + run.info.run_id)\n")
        client_env = {**processes.base_env(tmp_path, tmp_path), "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true",
                      "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": "1", "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE": str(size)}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                                env=client_env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Failed to upload" not in result.stderr, result.stderr[-3000:]
        run_path = result.stdout.strip().splitlines()[-1]
        container = azurite.client().get_container_client(CONTAINER)
        blob = container.get_blob_client(f"srv/{run_path}/artifacts/m/model.bin")
        assert len(blob.get_block_list("committed")[0]) == PARTS  # went directly, in blocks, not proxied
        assert hashlib.sha256(blob.download_blob().readall()).hexdigest() == hashlib.sha256(data).hexdigest()
        refused = requests.post(f"{base}/api/2.0/mlflow-artifacts/mpu/create/{run_path}/artifacts/x",
                                json={"path": "x.bin", "num_parts": 50_001}, timeout=30)
        assert refused.status_code == 400, refused.text[:500]
        assert json.loads(refused.text)["error_code"] == "INVALID_PARAMETER_VALUE"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


class _TokenIdentity:
    """A BlobServiceClient with a token credential (the azure stack's managed identity); the key is what differs."""

    class credential:  # noqa: N801 - the attribute MLflow reads
        @staticmethod
        def get_token(*scopes, **kwargs):
            raise AssertionError("not asked: the user-delegation key is")


class _IdentityWithoutDelegator(_TokenIdentity):
    """A BlobServiceClient whose token credential the account refuses a user-delegation key, as Azure answers an
    identity without Storage Blob Delegator (or before the role has propagated)."""

    url = "https://account.blob.core.windows.net"
    account_name = "account"

    @staticmethod
    def get_user_delegation_key(start, expiry):
        from azure.core.exceptions import HttpResponseError

        error = HttpResponseError(message="This request is not authorized to perform this operation using this "
                                  "permission.")
        error.status_code, error.error_code = 403, "AuthorizationPermissionMismatch"
        raise error


def test_a_refused_delegation_key_falls_back_to_proxied_and_says_why(caplog):
    """MLflow turns the refusal into "unsupported" and clients upload proxied; without a log line an operator cannot
    tell direct uploads are not in effect (second review of issue 26)."""
    from mlflow.exceptions import _UnsupportedMultipartUploadException

    repo = artifacts.AzureBlobRepository(f"wasbs://{CONTAINER}@account.blob.core.windows.net/p",
                                         client=_IdentityWithoutDelegator())
    with caplog.at_level("WARNING", logger="mlflow_guard.artifacts"):
        with pytest.raises(_UnsupportedMultipartUploadException):
            repo.create_multipart_upload("/tmp/model.bin", 3, "1/run/artifacts")
    assert "fall back to proxied" in caplog.text and "Storage Blob Delegator" in caplog.text


# --- the completion request's size (second cloud review of issue 26, item 1) -------------------------------------

AWS_ENDPOINT = "https://s3.ap-southeast-5.amazonaws.com"  # one of the longest region names
REALISTIC_KEY = "mlflow/12/" + "a" * 32 + "/artifacts/model/data/model.safetensors"


def _s3_part_urls(key: str, num_parts: int, token_chars: int, upload_id_chars: int, bucket: str = "b" * 63):
    """Part URLs as MLflow's S3 repository signs them (botocore), with the aws task role's kind of credentials."""
    import boto3
    from botocore.config import Config

    token = base64.b64encode(os.urandom(token_chars * 3 // 4)).decode()[:token_chars]
    session = boto3.session.Session(aws_access_key_id="ASIA" + "X" * 16, aws_secret_access_key="s" * 40,
                                    aws_session_token=token, region_name="ap-southeast-5")
    client = session.client("s3", endpoint_url=AWS_ENDPOINT, config=Config(signature_version="s3v4"))
    upload_id = "U" * upload_id_chars
    return upload_id, [client.generate_presigned_url("upload_part", Params={
        "Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": n}) for n in num_parts]


def test_part_url_bounds_hold():
    """The bounds the cap uses are at least the URLs MLflow signs: S3 (botocore, a session token and upload ID at
    their bounds, the longest part number) and Blob (the SDK's user-delegation SAS with srq, worst escaping)."""
    import urllib.parse as parse

    for key in (REALISTIC_KEY, "p/1/" + "r" * 32 + "/artifacts/dir with spaces/ünïcode+model.bin"):
        # the token's base64 escapes to more than its length: take its escaped length at the bound
        _, (url,) = _s3_part_urls(key, [10_000], 1_250, artifacts.S3_UPLOAD_ID_BOUND)
        token = dict(parse.parse_qsl(parse.urlsplit(url).query))["X-Amz-Security-Token"]
        escaped_token = len(parse.quote(token, safe=""))
        assert escaped_token <= artifacts.S3_SESSION_TOKEN_BOUND
        bound = artifacts.s3_part_url_bound(AWS_ENDPOINT, "b" * 63, key)
        assert len(url) - escaped_token <= bound - artifacts.S3_SESSION_TOKEN_BOUND, (len(url), bound)
        assert bound - len(url) < artifacts.S3_SESSION_TOKEN_BOUND - escaped_token + 32  # not loose either

    repo = artifacts.AzureBlobRepository("wasbs://c" + "c" * 62 + "@a23456789012345678901234.blob.core.windows.net/p",
                                         client=_IdentityWithDelegator())
    for path in ("m", "dir with spaces/ünïcode"):
        created = repo.create_multipart_upload("/tmp/model.bin", 200, f"1/{'r' * 32}/artifacts/{path}")
        dest = f"p/1/{'r' * 32}/artifacts/{path}/model.bin"
        bound = artifacts.blob_part_url_bound(_IdentityWithDelegator.url, "c" * 63, dest)
        longest = max(len(json.dumps(c.url)) - 2 for c in created.credentials)
        assert bound - 60 <= longest <= bound - 20, (longest, bound)  # room for a signature escaped worse


class _IdentityWithDelegator(_TokenIdentity):
    """A BlobServiceClient with a token credential the account grants a user-delegation key (the azure stack)."""

    url = "https://a23456789012345678901234.blob.core.windows.net"
    account_name = "a23456789012345678901234"

    @staticmethod
    def get_user_delegation_key(start, expiry):
        from azure.storage.blob import UserDelegationKey

        key = UserDelegationKey()
        key.signed_oid = key.signed_tid = "0" * 8 + "-0000-0000-0000-" + "0" * 12
        key.signed_start, key.signed_expiry = "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"
        key.signed_service, key.signed_version = "b", "2026-10-06"
        key.value = base64.b64encode(os.urandom(32)).decode()
        return key


def test_the_cap_follows_the_api_body_limit_and_the_key(monkeypatch):
    monkeypatch.delenv(artifacts.API_BODY_LIMIT_ENV, raising=False)
    aws = artifacts.s3_part_url_bound(AWS_ENDPOINT, "my-mlflow-artifacts-123456789012", REALISTIC_KEY)
    blob = artifacts.blob_part_url_bound("https://mlflowartifacts1234.blob.core.windows.net", "artifacts",
                                         REALISTIC_KEY)
    minio = artifacts.s3_part_url_bound("http://minio.localhost:9000", "mlflow", REALISTIC_KEY, session_token=False)
    # The README's figures ("Large artifacts"): parts of 10 MiB.
    assert artifacts.parts_cap(artifacts.S3_MAX_PARTS, aws) == 7_536
    assert artifacts.parts_cap(artifacts.BLOB_MAX_BLOCKS, blob) == 26_860
    assert artifacts.parts_cap(artifacts.S3_MAX_PARTS, minio) == 10_000  # long-term keys: no token in the URLs
    # A longer key, a smaller cap; a smaller body limit (proxy.clientMaxBodySize below 16m), a smaller cap.
    assert artifacts.parts_cap(10_000, artifacts.s3_part_url_bound(AWS_ENDPOINT, "b", "k" * 900)) == 5_564
    monkeypatch.setenv(artifacts.API_BODY_LIMIT_ENV, str(8 * 1024 * 1024))
    assert artifacts.parts_cap(artifacts.S3_MAX_PARTS, aws) == 3_764


def test_the_server_signs_with_a_session_token_unless_it_has_long_term_keys(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert artifacts.signs_with_session_token()  # the aws task role (container credentials)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "minio-key")
    assert not artifacts.signs_with_session_token()  # the local stack's MinIO key
    monkeypatch.setenv("AWS_SESSION_TOKEN", "t")
    assert artifacts.signs_with_session_token()


def _repository_that_records_starts(repository, uri: str, monkeypatch) -> tuple[object, list]:
    """The guard's repository for `uri` on the aws or azure stack (task role credentials; a managed identity with
    Storage Blob Delegator); MLflow's S3 upload start and the Blob SAS signer only record that they were called."""
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", AWS_ENDPOINT)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)  # the task role's temporary credentials
    monkeypatch.delenv(artifacts.API_BODY_LIMIT_ENV, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", _connection_string("http://127.0.0.1:9/devstoreaccount1"))
    called: list = []
    monkeypatch.setattr(artifacts.S3ArtifactRepository, "create_multipart_upload",
                        lambda *args, **kwargs: called.append(args))
    monkeypatch.setattr("azure.storage.blob.generate_blob_sas", lambda **kwargs: called.append(kwargs))
    repo = repository(uri)
    if repository is artifacts.AzureBlobRepository:
        repo.client = _IdentityWithDelegator()
        repo.client.url = "https://mlflowartifacts1234.blob.core.windows.net"
    return repo, called


@pytest.mark.parametrize("repository, uri", [
    (artifacts.S3Repository, "s3://my-mlflow-artifacts-123456789012/mlflow"),
    (artifacts.AzureBlobRepository, "wasbs://artifacts@mlflowartifacts1234.blob.core.windows.net/mlflow")])
def test_more_parts_than_the_completion_can_list_are_refused_before_anything_is_signed(repository, uri, monkeypatch):
    """Refused with 400 before MLflow starts the upload or signs a URL; one part fewer than the cap goes through."""
    from mlflow.exceptions import MlflowException

    repo, called = _repository_that_records_starts(repository, uri, monkeypatch)
    artifact_path = f"12/{'a' * 32}/artifacts/model/data"
    key = f"mlflow/{artifact_path}/model.safetensors"
    cap = (artifacts.parts_cap(10_000, artifacts.s3_part_url_bound(AWS_ENDPOINT, uri[5:].split("/")[0], key))
           if repository is artifacts.S3Repository else
           artifacts.parts_cap(50_000, artifacts.blob_part_url_bound(repo.client.url, "artifacts", key)))
    assert cap < (10_000 if repository is artifacts.S3Repository else 50_000)
    with pytest.raises(MlflowException) as refused:
        repo.create_multipart_upload("/home/user/model.safetensors", cap + 1, artifact_path)
    assert refused.value.get_http_status_code() == 400
    assert "completion request" in refused.value.message and "16 MiB" in refused.value.message
    assert called == []


@pytest.mark.parametrize("repository, uri", [
    (artifacts.S3Repository, "s3://my-mlflow-artifacts-123456789012/mlflow"),
    (artifacts.AzureBlobRepository, "wasbs://artifacts@mlflowartifacts1234.blob.core.windows.net/mlflow")])
@pytest.mark.parametrize("num_parts", [0, -3])
def test_fewer_than_one_part_is_refused_before_an_upload_is_opened(repository, uri, num_parts, monkeypatch):
    """Third cloud review of issue 26: MLflow reads a missing num_parts as 0; S3 then opened an upload with no part
    URL (CreateMultipartUpload), left in the bucket until the lifecycle rule ends it, as many as a user asks."""
    from mlflow.exceptions import MlflowException

    repo, called = _repository_that_records_starts(repository, uri, monkeypatch)
    with pytest.raises(MlflowException) as refused:
        repo.create_multipart_upload("/home/user/model.bin", num_parts, f"12/{'a' * 32}/artifacts/m")
    assert refused.value.get_http_status_code() == 400 and "at least 1" in refused.value.message
    assert called == []


def test_an_s3_upload_whose_real_urls_outgrow_the_body_is_aborted_and_refused(monkeypatch):
    """The bounds are the pre-check; the URLs MLflow signed are measured exactly before they leave (a longer
    session token than the bound): over the limit, the upload is aborted and refused."""
    from mlflow.entities.multipart_upload import CreateMultipartUploadResponse, MultipartUploadCredential
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv(artifacts.API_BODY_LIMIT_ENV, str(1024 * 1024))
    key = f"p/1/{'a' * 32}/artifacts/m/x.bin"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    num = artifacts.parts_cap(10_000, artifacts.s3_part_url_bound(None, "bucket", key))
    _, urls = _s3_part_urls(key, range(1, num + 1), 2_000, 100, bucket="bucket")  # longer token than the bound
    aborted = []
    monkeypatch.setattr(artifacts.S3ArtifactRepository, "create_multipart_upload", lambda *a, **k: (
        CreateMultipartUploadResponse(credentials=[MultipartUploadCredential(url=u, part_number=n, headers={})
                                                   for n, u in enumerate(urls, 1)], upload_id="U" * 100)))
    monkeypatch.setattr(artifacts.S3ArtifactRepository, "abort_multipart_upload",
                        lambda self, local_file, upload_id, artifact_path=None: aborted.append(upload_id))
    with pytest.raises(MlflowException) as refused:
        artifacts.S3Repository("s3://bucket/p").create_multipart_upload("/tmp/x.bin", num, f"1/{'a' * 32}/artifacts/m")
    assert refused.value.get_http_status_code() == 400 and aborted == ["U" * 100]


def test_the_default_limit_is_the_guards_and_nginxs():
    from components import render
    from components.config import nginx_size_bytes
    from mlflow_guard.asgi import MAX_INSPECTED_BODY_BYTES

    assert artifacts.DEFAULT_API_BODY_LIMIT_BYTES == MAX_INSPECTED_BODY_BYTES == nginx_size_bytes(render.API_BODY_LIMIT)
    assert artifacts.API_BODY_LIMIT_ENV == render.API_BODY_LIMIT_ENV


# --- the Blob part SAS (second cloud review of issue 26, item 3) ------------------------------------------------

def test_each_blob_part_url_is_signed_for_its_own_block():
    repo = artifacts.AzureBlobRepository("wasbs://c@a23456789012345678901234.blob.core.windows.net/p",
                                         client=_IdentityWithDelegator())
    created = repo.create_multipart_upload("/tmp/model.bin", 3, "1/r/artifacts/m")
    queries = [dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(c.url).query)) for c in created.credentials]
    assert {q["srq"] for q in queries} == {"comp,blockid"} and {q["comp"] for q in queries} == {"block"}
    assert len({q["sig"] for q in queries}) == 3  # one signature per block


# --- the image build's check (second cloud review of issue 26, item 2) -------------------------------------------

def _plugin_check(python_path: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlflow_guard.plugin_check"], capture_output=True, text=True,
                          timeout=180, cwd=cwd, env={"PYTHONPATH": python_path, "PATH": "/usr/bin:/bin"})


def test_the_build_check_passes_on_the_images_layout(tmp_path):
    result = _plugin_check(processes.image_python_path(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resolves s3:// and wasbs:// to mlflow_guard's repositories" in result.stdout


def _layout_with_entry_points(tmp_path: Path, entry_points: str) -> str:
    """The image's layout with its own dist-info (entry_points.txt replaced)."""
    platform = tmp_path / "mlflow-platform"
    platform.mkdir()
    (platform / "mlflow_guard").symlink_to(processes.REPO_ROOT / "mlflow_guard", target_is_directory=True)
    dist_info = platform / "mlflow_platform_guard-1.0.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text((processes.REPO_ROOT / "mlflow_guard/dist-info/METADATA").read_text())
    (dist_info / "entry_points.txt").write_text(entry_points)
    return str(platform)


@pytest.mark.parametrize("case, entry_points", [
    ("no entry points", "[mlflow.app]\nbasic-auth = mlflow_guard.app:basic_auth\n"),
    # What an MLflow that moved a private name does: the plugin's import fails, MLflow warns and keeps its own.
    ("the plugin fails to import", "[mlflow.artifact_repository]\ns3 = mlflow_guard.artifacts:S3Repository\n"
                                   "wasbs = mlflow_guard.artifacts:NoSuchRepository\n"),
])
def test_the_build_check_fails_when_mlflow_would_run_its_own_repositories(tmp_path, case, entry_points):
    result = _plugin_check(_layout_with_entry_points(tmp_path, entry_points), tmp_path)
    assert result.returncode == 1, (case, result.stdout, result.stderr[-3000:])
    assert "wasbs:// resolves to mlflow.store.artifact.azure_blob_artifact_repo.AzureBlobArtifactRepository" \
        in result.stderr, result.stderr[-3000:]
    if "import" in case:
        assert "MLflow skipped a plugin" in result.stderr


def test_the_build_check_lets_another_mlflow_serve_proxied_stacks(tmp_path):
    """An MLflow other than the one the plugin copies code of (config refuses `direct` for it): the image is built,
    the plugin's absence reported, not refused: an upgrade, or going back, to another 3.17+ version stays possible."""
    from components.config import DIRECT_TRANSFERS_MLFLOW_VERSION
    from mlflow_guard.plugin_check import WRITTEN_FOR

    assert WRITTEN_FOR == DIRECT_TRANSFERS_MLFLOW_VERSION
    broken = "[mlflow.artifact_repository]\ns3 = mlflow_guard.artifacts:NoSuchRepository\n"
    code = ("import sys, mlflow; mlflow.__version__ = '3.18.0'; from mlflow_guard import plugin_check; "
            "sys.exit(plugin_check.main())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=tmp_path,
                            env={"PYTHONPATH": _layout_with_entry_points(tmp_path, broken), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "serves artifacts.transfer proxied only" in result.stdout
    assert "not required: MLflow 3.18.0" in result.stderr


def test_the_server_image_runs_the_check_as_the_servers_user_after_the_guard_is_copied():
    lines = (processes.REPO_ROOT / "docker/mlflow/Dockerfile").read_text().splitlines()
    check = lines.index("RUN python -m mlflow_guard.plugin_check")
    assert check > lines.index("USER mlflow")
    assert check > max(i for i, line in enumerate(lines) if line.startswith("COPY mlflow_guard"))


# --- blob names a URL must escape (fourth cloud review of issue 26, item 3) ----------------------------------------
# Repository level, against Azurite: through the stack, Nginx's artifact-path allow-list refuses `%` in a path
# (components/render/proxy.py), so MLflow's client could upload such a file (its name travels in the mpu/* bodies)
# but not download it through the stack; the part URLs are what the repair is about.

AWKWARD_NAME = "a#b%41?.bin"


def test_a_blob_named_with_url_delimiters_goes_up_in_parts_and_comes_back_whole(azurite, monkeypatch, tmp_path):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    repo = artifacts.AzureBlobRepository(f"wasbs://{CONTAINER}@{azurite.account}.blob.core.windows.net/1/r/artifacts")
    size = 1024
    data = os.urandom(size * PARTS - 100)
    local = tmp_path / AWKWARD_NAME
    local.write_bytes(data)
    create = repo.create_multipart_upload(str(local), PARTS, "m")
    assert all(urllib.parse.urlsplit(c.url).path.endswith("/m/a%23b%2541%3F.bin") for c in create.credentials)
    _put_parts(create.credentials, data, size)
    from mlflow.entities.multipart_upload import MultipartUploadPart

    parts = [MultipartUploadPart(part_number=c.part_number, etag="", url=c.url) for c in create.credentials]
    repo.complete_multipart_upload(str(local), create.upload_id, parts, "m")
    blob = azurite.client().get_blob_client(CONTAINER, f"1/r/artifacts/m/{AWKWARD_NAME}").download_blob().readall()
    assert hashlib.sha256(blob).hexdigest() == hashlib.sha256(data).hexdigest()
    (tmp_path / "down").mkdir()
    back = Path(repo.download_artifacts(f"m/{AWKWARD_NAME}", str(tmp_path / "down")))
    assert hashlib.sha256(back.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_mlflows_own_urls_break_on_such_a_name(azurite, monkeypatch, tmp_path):
    """The defect, reproduced: MLflow 3.17.2's raw join makes `#` start a fragment (no comp=block reaches the
    service) and its completion finds no blockid in the URL's query."""
    from mlflow.entities.multipart_upload import MultipartUploadPart
    from mlflow.store.artifact.azure_blob_artifact_repo import AzureBlobArtifactRepository

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    repo = AzureBlobArtifactRepository(f"wasbs://{CONTAINER}@{azurite.account}.blob.core.windows.net/1/o/artifacts")
    create = repo.create_multipart_upload(str(tmp_path / AWKWARD_NAME), 2, "m")
    assert {requests.put(c.url, data=b"x", timeout=30).status_code for c in create.credentials} != {201}
    parts = [MultipartUploadPart(part_number=c.part_number, etag="", url=c.url) for c in create.credentials]
    with pytest.raises(KeyError):
        repo.complete_multipart_upload(str(tmp_path / AWKWARD_NAME), create.upload_id, parts, "m")


def test_the_bound_counts_the_escaped_name():
    name = f"p/1/{'r' * 32}/artifacts/m/{AWKWARD_NAME}"
    assert artifacts._key_in_url(name) == len(name) + 2 * 3  # `#`, `%`, `?` three characters each
    url = f"https://a.blob.core.windows.net/c/{artifacts.blob_path_in_url(name)}"
    assert url.endswith("/a%23b%2541%3F.bin") and len(json.dumps(url)) - 2 == len(url)


# --- the part URLs' signer on `local` (fourth cloud review of issue 26, item 1) -------------------------------------

class _RecordingS3(BaseHTTPRequestHandler):
    """An S3 endpoint that answers CreateMultipartUpload, CompleteMultipartUpload, AbortMultipartUpload and HeadObject
    and records which access key signed each request (the Authorization header's Credential)."""

    seen: list = []

    def _record(self) -> str:
        credential = self.headers.get("Authorization", "").split("Credential=", 1)[-1].split("/", 1)[0]
        query = urllib.parse.urlsplit(self.path).query
        posted = "create" if "uploads" in query else "complete"
        operation = {"POST": posted, "DELETE": "abort"}.get(self.command, "head")
        self.seen.append((operation, credential))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        return operation

    def do_POST(self):  # noqa: N802 - http.server's name
        operation = self._record()
        tag = "InitiateMultipartUploadResult" if operation == "create" else "CompleteMultipartUploadResult"
        body = (f'<?xml version="1.0" encoding="UTF-8"?><{tag}><Bucket>b</Bucket><Key>k</Key>'
                f'<UploadId>UPLOAD</UploadId><ETag>"e"</ETag></{tag}>').encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_DELETE(self):  # noqa: N802
        self._record()
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):  # noqa: N802 - get_download_presigned_url asks for the object's size first
        self._record()
        self.send_response(200)
        self.send_header("Content-Length", "10")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_s3(monkeypatch):
    from mlflow.store.artifact.s3_artifact_repo import _cached_get_s3_client

    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _RecordingS3.seen = []
    _cached_get_s3_client.cache_clear()
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mlflow-artifacts-mlflow-server")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s" * 40)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for name in artifacts.PART_SIGNER_ENVS:
        monkeypatch.delenv(name, raising=False)
    yield _RecordingS3.seen
    server.shutdown()
    server.server_close()
    _cached_get_s3_client.cache_clear()


def _credential(url: str) -> str:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["X-Amz-Credential"].split("/", 1)[0]


def test_part_urls_carry_the_part_signers_key_and_everything_else_the_servers(recording_s3, monkeypatch):
    from mlflow.entities.multipart_upload import MultipartUploadPart

    monkeypatch.setenv(artifacts.PART_SIGNER_ENVS[0], "mlflow-artifacts-mlflow-part-signer")
    monkeypatch.setenv(artifacts.PART_SIGNER_ENVS[1], "p" * 40)
    repo = artifacts.S3Repository("s3://mlflow-artifacts/")
    created = repo.create_multipart_upload("/tmp/model.bin", 3, "1/r/artifacts/m")
    assert [_credential(c.url) for c in created.credentials] == ["mlflow-artifacts-mlflow-part-signer"] * 3
    endpoint = os.environ["MLFLOW_S3_ENDPOINT_URL"]
    assert all(c.url.startswith(f"{endpoint}/mlflow-artifacts/1/r/artifacts/m/model.bin?") for c in created.credentials)
    assert all("/us-east-1/s3/aws4_request" in dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(c.url).query))[
        "X-Amz-Credential"] for c in created.credentials)
    repo.complete_multipart_upload("/tmp/model.bin", created.upload_id,
                                   [MultipartUploadPart(part_number=1, etag='"e"', url=created.credentials[0].url)],
                                   "1/r/artifacts/m")
    repo.abort_multipart_upload("/tmp/model.bin", created.upload_id, "1/r/artifacts/m")
    server = "mlflow-artifacts-mlflow-server"
    assert recording_s3 == [("create", server), ("complete", server), ("abort", server)]
    # The presigned GET of a direct download stays the server's: the part signer cannot read.
    assert _credential(repo.get_download_presigned_url("1/r/artifacts/m/model.bin").url) == server
    assert recording_s3[-1] == ("head", server)


def test_without_the_part_signer_the_servers_key_signs_the_parts(recording_s3):
    """The aws and azure stacks (and proxied ones) set no part signer: MLflow's behaviour, unchanged."""
    created = artifacts.S3Repository("s3://mlflow-artifacts/").create_multipart_upload("/tmp/model.bin", 2, "1/r/a")
    assert {_credential(c.url) for c in created.credentials} == {"mlflow-artifacts-mlflow-server"}


def test_half_a_part_signer_is_refused_before_anything_is_started(recording_s3, monkeypatch):
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv(artifacts.PART_SIGNER_ENVS[0], "mlflow-artifacts-mlflow-part-signer")
    with pytest.raises(MlflowException, match="must be set together"):
        artifacts.S3Repository("s3://mlflow-artifacts/").create_multipart_upload("/tmp/model.bin", 2, "1/r/a")
    assert recording_s3 == []


def test_the_part_signers_env_is_the_one_the_platform_sets():
    from components import render

    assert artifacts.PART_SIGNER_ENVS == render.PART_SIGNER_CREDENTIAL_ENVS


def test_a_long_access_key_id_is_counted_in_the_bound():
    key = f"p/1/{'a' * 32}/artifacts/m/x.bin"
    base = artifacts.s3_part_url_bound("http://minio.localhost:9000", "b", key, session_token=False)
    assert artifacts.s3_part_url_bound("http://minio.localhost:9000", "b", key, False, "A" * 20) == base
    assert artifacts.s3_part_url_bound("http://minio.localhost:9000", "b", key, False, "k" * 82) == base + 62
