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
import time
import urllib.parse
import urllib.request
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


class _IdentityWithoutDelegator:
    """A BlobServiceClient whose token credential the account refuses a user-delegation key, as Azure answers an
    identity without Storage Blob Delegator (or before the role has propagated)."""

    url = "https://account.blob.core.windows.net"
    account_name = "account"

    class credential:  # noqa: N801 - the attribute MLflow reads
        @staticmethod
        def get_token(*scopes, **kwargs):
            raise AssertionError("not asked: the key request below is refused first")

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
