"""artifacts.transfer direct on the S3 stand-in (issue 26), auth.mode proxy: a server and Nginx rendered with
direct transfers beside the session stack's proxied ones (same database, same bucket), driven by the MLflow
client as users drive it, with MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE lowered on the client.

The bytes of an artifact above the threshold go to the bucket and come back with presigned URLs the server
signs for its S3 endpoint (moto, which checks them: rehearsal/moto_s3.py); the server and Nginx see only the
small requests that ask for the URLs. The same under the static prefix and with MLflow's permissions:
test_09_mlflow_auth (its direct-prefix variant); on the azure stack's Blob store: test_24_azure_direct.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

from components import render
from rehearsal.launcher import Variant
from tests.rehearsal.conftest import mlflow_client_for, shared_scenario_variants
from tests.rehearsal.direct import (
    CLIENT_ENV,
    DIRECT_SIZE,
    FAR_BELOW,
    MIB,
    SERVER_IO_BOUND,
    THRESHOLD,
    create_upload,
    measured,
    route as mlflow_route,
    presigned_download,
    random_file,
    sha256,
)


@pytest.fixture(scope="module")
def direct(rehearsal_stack) -> Variant:
    return shared_scenario_variants(rehearsal_stack, __file__)["direct"]


@pytest.fixture(scope="module")
def logged(direct, tmp_path_factory) -> dict:
    """A run of the direct variant's with one small artifact (below the threshold), logged as the one user."""
    notes = tmp_path_factory.mktemp("notes") / "notes.txt"
    notes.write_text("direct notes\n")
    with pytest.MonkeyPatch.context() as patch, mlflow_client_for(direct, patch) as client:
        experiment_id = client.create_experiment(f"direct-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_artifact(run_id, str(notes))
    return {"experiment_id": experiment_id, "run_id": run_id}


def test_the_proxy_passes_the_servers_multipart_flags_on(rehearsal_stack, direct, default_variant):
    info = requests.get(f"{direct.tracking_uri}/api/3.0/mlflow/server-info", auth=(direct.username, direct.password),
                        timeout=30).json()
    assert info["multipart_uploads_enabled"] is True and info["multipart_downloads_enabled"] is True
    assert "sub_filter" not in Path(direct.proxy.settings.paths.config).read_text()
    assert direct.server.spec.env["MLFLOW_S3_ENDPOINT_URL"] == default_variant.server.spec.env["MLFLOW_S3_ENDPOINT_URL"]
    # Its key carries only the rendered bucket policy (exactly MLflow's actions: render.artifact_bucket_policy,
    # one for both modes), which every URL it signs carries: the transfers below work with nothing wider.
    assert direct.server.service.env["AWS_ACCESS_KEY_ID"] == rehearsal_stack.s3.server_credentials[0]
    # The part URLs' signer (local with direct: render.part_signer_bucket_policy), a secret of the direct server only.
    signer_key = rehearsal_stack.s3.part_signer_credentials[0]
    assert direct.server.service.env["MLFLOW_PLATFORM_PART_SIGNER_ACCESS_KEY_ID"] == signer_key
    assert set(render.PART_SIGNER_CREDENTIAL_ENVS) <= set(direct.server.spec.secret_env_names)
    assert not set(render.PART_SIGNER_CREDENTIAL_ENVS) & set(default_variant.server.service.env)


def test_an_artifact_above_the_threshold_goes_to_the_bucket_and_back_past_the_server(
        rehearsal_stack, direct, client_for, report_figure, tmp_path):
    source = tmp_path / "weights.bin"
    expected = random_file(source, DIRECT_SIZE)
    small = tmp_path / "config.json"
    small.write_text('{"lr": 0.01}')
    with client_for(direct, **CLIENT_ENV) as client:
        experiment_id = client.create_experiment(f"direct-big-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id
        with measured(direct) as up:
            client.log_artifact(run_id, str(source), artifact_path="big")
        with measured(direct) as below:
            client.log_artifact(run_id, str(small), artifact_path="big")
        assert {f.path: f.file_size for f in client.list_artifacts(run_id, "big")} == {
            "big/weights.bin": DIRECT_SIZE, "big/config.json": small.stat().st_size}
        with measured(direct) as down:
            local = Path(client.download_artifacts(run_id, "big/weights.bin", str(tmp_path / "down")))
        assert sha256(local) == expected

    upload, download = up.transfer, down.transfer
    assert upload.routes() == {"POST mpu"}, upload.log  # create and complete; the parts went to the bucket
    assert below.transfer.routes() == {"PUT artifacts"}, "below the threshold the client uploads through the server"
    assert download.routes() == {"GET presigned"}, download.log
    for name, transfer in (("upload", upload), ("download", download)):
        assert transfer.server_io_bytes < SERVER_IO_BOUND, (name, transfer)
        assert transfer.nginx_io_bytes < FAR_BELOW, (name, transfer)
        assert transfer.server_peak_temp_bytes < FAR_BELOW, (name, transfer)
        assert transfer.logged_body_bytes < FAR_BELOW, (name, transfer)
    s3 = rehearsal_stack.s3.client("s3")
    key = [obj["Key"] for obj in s3.list_objects_v2(Bucket=rehearsal_stack.s3.bucket)["Contents"]
           if obj["Key"].endswith(f"{run_id}/artifacts/big/weights.bin")]
    assert len(key) == 1
    assert s3.head_object(Bucket=rehearsal_stack.s3.bucket, Key=key[0])["ContentLength"] == DIRECT_SIZE

    size = f"{DIRECT_SIZE // MIB} MiB (client threshold {THRESHOLD // MIB} MiB)"
    for name, transfer in (("upload", upload), ("download", download)):
        report_figure(f"direct {name} of {size}", f"{transfer.seconds:.1f}", "s")
        report_figure(f"direct {name}: server CPU", f"{transfer.server_cpu_seconds:.2f}", "s")
        report_figure(f"direct {name}: Nginx read+written", f"{transfer.nginx_io_bytes / MIB:.2f}", "MiB")
        report_figure(f"direct {name}: server read+written (its file reads included)",
                      f"{transfer.server_io_bytes / MIB:.2f}", "MiB")
        report_figure(f"direct {name}: server peak temporary disk", f"{transfer.server_peak_temp_bytes / MIB:.2f}",
                      "MiB")


def test_no_credentials_no_urls_and_nginx_s_one_user_gets_them(direct, logged):
    """auth.mode proxy: Nginx's one user may do everything; nobody else gets an upload or a download URL."""
    ids = (logged["experiment_id"], logged["run_id"])
    wrong = (direct.username, direct.password + "x")
    for auth in (None, wrong):
        assert create_upload(direct, *ids, auth=auth).status_code == 401
        assert presigned_download(direct, *ids, "notes.txt", auth=auth).status_code == 401
    right = (direct.username, direct.password)
    created = create_upload(direct, *ids, auth=right)
    assert created.status_code == 200 and created.json()["credentials"][0]["url"].startswith(
        direct.server.spec.env["MLFLOW_S3_ENDPOINT_URL"])
    signed = presigned_download(direct, *ids, "notes.txt", auth=right)
    assert signed.status_code == 200
    assert requests.get(signed.json()["url"], headers=signed.json().get("headers") or {},
                        timeout=30).text == "direct notes\n"


def test_the_one_url_presigning_routes_stay_unserved_with_direct_transfers(direct, logged):
    """Third cloud review of issue 26: presigned-download-url takes the URL's lifetime from the request (up to
    S3's 7 days, past the stack's 300 s) and presigned-upload-url signs a whole-object PUT: Nginx answers both
    501, as MLflow answers a store without them, for the user who may do everything too; mpu/* and presigned/*
    (above) are what direct transfers use."""
    right = (direct.username, direct.password)
    body = {"run_id": logged["run_id"], "path": "notes.txt", "expiration": 604800}
    base = direct.tracking_uri + "/api/2.0/mlflow/artifacts/"
    for route, message in [("presigned-download-url", "Presigned download"), ("presigned-upload-url",
                                                                             "Presigned upload")]:
        for method in ("POST", "GET"):
            answer = requests.request(method, base + route, auth=right, json=body, params=body, timeout=30)
            assert answer.status_code == 501, (route, method, answer.status_code, answer.text[:300])
            assert answer.json()["message"].startswith(message) and "X-Amz" not in answer.text


def _signed_at(url: str, key: tuple[str, str], when: float, expires: int, region: str = "us-east-1",
               service: str = "s3") -> str:
    """`url` signed again with `key` as if at `when` (epoch seconds), valid `expires` seconds (SigV4, query), for
    `region` and `service`."""
    from rehearsal.moto_s3 import presigned_string_to_sign, sigv4_signature

    parts = urllib.parse.urlsplit(url)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    query = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", f"{key[0]}/{scope}"),
             ("X-Amz-Date", stamp), ("X-Amz-Expires", str(expires)), ("X-Amz-SignedHeaders", "host")]
    string_to_sign, _ = presigned_string_to_sign("GET", parts.path, [*query, ("X-Amz-Signature", "")],
                                                 {"host": parts.netloc})
    signed = [*query, ("X-Amz-Signature", sigv4_signature(key[1], scope, string_to_sign))]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(signed)))


def test_the_bucket_refuses_forged_and_expired_urls(rehearsal_stack, direct, logged):
    """The URLs carry the server's key's signature (the bucket-scoped key); the bucket checks it, as S3 does."""
    ids = (logged["experiment_id"], logged["run_id"])
    url = presigned_download(direct, *ids, "notes.txt", auth=(direct.username, direct.password)).json()["url"]
    assert requests.get(url, timeout=30).status_code == 200
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    forged = {**query, "X-Amz-Signature": ("0" if query["X-Amz-Signature"][0] != "0" else "1")
              + query["X-Amz-Signature"][1:]}
    another_key = parts.path.replace("notes.txt", "other.txt")
    longer = {**query, "X-Amz-Expires": str(int(query["X-Amz-Expires"]) * 10)}
    for path, changed in ((parts.path, forged), (another_key, query), (parts.path, longer)):
        tampered = parts._replace(path=path, query=urllib.parse.urlencode(changed))
        refused = requests.get(urllib.parse.urlunsplit(tampered), timeout=30)
        assert refused.status_code == 403, (path, changed, refused.text[:300])
    unsigned = requests.get(urllib.parse.urlunsplit(parts._replace(query="")), timeout=30)
    assert unsigned.status_code in {403, 500} and "direct notes" not in unsigned.text
    # A URL the server's key signed an hour ago for a minute (as S3: "Request has expired").
    server_key = (direct.server.service.env["AWS_ACCESS_KEY_ID"], direct.server.service.env["AWS_SECRET_ACCESS_KEY"])
    assert requests.get(_signed_at(url, server_key, time.time() - 3600, 60), timeout=30).status_code == 403
    assert requests.get(_signed_at(url, server_key, time.time() - 30, 60), timeout=30).status_code == 200
    s3 = rehearsal_stack.s3.client("s3", server_key)
    # A key outside the server's bucket policy signs URLs the bucket refuses.
    other = f"other-{uuid.uuid4().hex[:8]}"
    rehearsal_stack.s3.client("s3").create_bucket(Bucket=other)
    outside = s3.generate_presigned_url("put_object", Params={"Bucket": other, "Key": "x"}, ExpiresIn=60)
    assert requests.put(outside, data=b"x", timeout=30).status_code == 403


def test_the_bucket_refuses_urls_and_requests_signed_for_another_region_or_service(rehearsal_stack, direct, logged):
    """S3 refuses a credential scope naming another region (or service) with 400, before the signature: a presigned
    URL with AuthorizationQueryParametersError, a signed header with AuthorizationHeaderMalformed ("the region 'x' is
    wrong; expecting 'y'", https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html). moto recomputed the
    signature with whatever region the scope named, so the stand-in passed them (rehearsal/moto_s3.py).

    Still unrehearsed (S3 and the stacks differ from the stand-in there): the bucket policy's TLS-only condition
    (plain HTTP here), the local stack's Docker DNS path (MinIO's alias), session tokens and their expiry."""
    import botocore.exceptions

    ids = (logged["experiment_id"], logged["run_id"])
    url = presigned_download(direct, *ids, "notes.txt", auth=(direct.username, direct.password)).json()["url"]
    server_key = (direct.server.service.env["AWS_ACCESS_KEY_ID"], direct.server.service.env["AWS_SECRET_ACCESS_KEY"])
    assert requests.get(_signed_at(url, server_key, time.time() - 30, 60), timeout=30).status_code == 200
    for region, service in (("eu-west-1", "s3"), ("us-east-1", "sqs")):
        refused = requests.get(_signed_at(url, server_key, time.time() - 30, 60, region, service), timeout=30)
        assert refused.status_code == 400, (region, service, refused.status_code, refused.text[:300])
        assert "AuthorizationQueryParametersError" in refused.text and "direct notes" not in refused.text
    bucket = rehearsal_stack.s3.bucket
    import boto3
    from botocore.config import Config

    elsewhere = boto3.client("s3", endpoint_url=rehearsal_stack.s3.endpoint, region_name="eu-west-1",
                             aws_access_key_id=server_key[0], aws_secret_access_key=server_key[1],
                             config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                           signature_version="s3v4"))
    with pytest.raises(botocore.exceptions.ClientError) as error:
        elsewhere.list_objects_v2(Bucket=bucket, MaxKeys=1)
    assert error.value.response["Error"]["Code"] == "AuthorizationHeaderMalformed"
    assert rehearsal_stack.s3.client("s3", server_key).list_objects_v2(Bucket=bucket, MaxKeys=1)["KeyCount"] >= 0


# --- a part URL sent back as a copy (fourth cloud review of issue 26) ---------------------------------------------

NOT_SIGNED = "There were headers present in the request which were not signed"


def _bucket_and_key(url: str) -> tuple[str, str]:
    """The bucket and key of a path-style S3 URL (moto's loopback endpoint)."""
    bucket, key = urllib.parse.unquote(urllib.parse.urlsplit(url).path).lstrip("/").split("/", 1)
    return bucket, key


def _copy_with(url: str, source: str) -> requests.Response:
    """`url` (a part URL) sent back as PUT with an unsigned `x-amz-copy-source: <source>` and no body."""
    return requests.put(url, headers={"x-amz-copy-source": source}, timeout=30)


@pytest.fixture(scope="module")
def aws_store(tmp_path_factory):
    """A second S3 stand-in playing S3 itself (store "aws"): the aws stack's bucket, signed with the server's key."""
    from rehearsal.stand_ins import S3StandIn

    stand_in = S3StandIn(tmp_path_factory.mktemp("aws-s3"), "mlflow-artifacts", store="aws")
    stand_in.start()
    yield stand_in
    stand_in.stop()


def test_s3_refuses_a_part_url_sent_back_with_an_unsigned_copy_source(aws_store):
    """S3 answers 403 AccessDenied "There were headers present in the request which were not signed" to a presigned
    request with an x-amz-* header X-Amz-SignedHeaders leaves out (rehearsal/moto_s3.py cites it); the stand-in let
    the copy through (200 CopyPartResult, /tmp/review_direct4/copy_demo.py). The same URL without it uploads."""
    admin, bucket = aws_store.client("s3"), aws_store.bucket
    admin.put_object(Bucket=bucket, Key="2/r2/artifacts/secret.txt", Body=b"experiment 2's private artifact\n")
    server = aws_store.client("s3", aws_store.server_credentials)
    key = "1/r1/artifacts/big.bin"
    upload = server.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    url = server.generate_presigned_url("upload_part", Params={"Bucket": bucket, "Key": key, "PartNumber": 1,
                                                               "UploadId": upload})
    try:
        refused = _copy_with(url, f"{bucket}/2/r2/artifacts/secret.txt")
        assert refused.status_code == 403 and "AccessDenied" in refused.text and NOT_SIGNED in refused.text, \
            refused.text[:300]
        # x-amz-content-sha256 is the one x-amz-* header S3 takes unsigned.
        assert requests.put(url, data=b"part", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
                            timeout=30).status_code == 200
    finally:
        admin.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)


def test_a_part_url_sent_back_as_a_copy_reads_nothing_on_minio(rehearsal_stack, direct, logged):
    """MinIO (the stand-in's store "minio", the session stack's) lets an unsigned x-amz-copy-source act: the part
    URL becomes an UploadPartCopy whose source read is authorized with the URL's key. The server signs part URLs
    with the part signer's key, which cannot read: refused. The same upload's part URL signed with the server's key
    would have copied another experiment's artifact (the check that this test can fail)."""
    s3 = rehearsal_stack.s3
    admin = s3.client("s3")
    [secret_key] = [o["Key"] for o in admin.list_objects_v2(Bucket=s3.bucket)["Contents"]
                    if o["Key"].endswith(f"{logged['run_id']}/artifacts/notes.txt")]
    source = f"{s3.bucket}/{secret_key}"
    with pytest.MonkeyPatch.context() as patch, mlflow_client_for(direct, patch) as client:
        experiment_id = client.create_experiment(f"direct-copy-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id
    auth = (direct.username, direct.password)
    created = create_upload(direct, experiment_id, run_id, auth=auth)
    assert created.status_code == 200, created.text[:300]
    upload_id, [part] = created.json()["upload_id"], created.json()["credentials"]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(part["url"]).query))
    assert query["X-Amz-Credential"].startswith(s3.part_signer_credentials[0] + "/")
    bucket, key = _bucket_and_key(part["url"])
    try:
        refused = _copy_with(part["url"], source)
        assert refused.status_code == 403 and "AccessDenied" in refused.text, refused.text[:300]
        assert "direct notes" not in refused.text
        # The server's key (s3:GetObject on the whole prefix) signing the same part: the copy goes through.
        env = direct.server.service.env
        server_key = (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
        by_server = s3.client("s3", server_key).generate_presigned_url("upload_part", Params={
            "Bucket": bucket, "Key": key, "PartNumber": 1, "UploadId": upload_id})
        copied = _copy_with(by_server, source)
        assert copied.status_code == 200 and "CopyPartResult" in copied.text, copied.text[:300]
        # The part signer uploads a part of the upload the server's key started (MinIO binds uploads to no key).
        assert requests.put(part["url"], data=b"own bytes", timeout=30).status_code == 200
    finally:
        aborted = requests.post(mlflow_route(direct, "mpu/abort", experiment_id, run_id, "big"), auth=auth, timeout=30,
                                json={"path": "x.bin", "upload_id": upload_id})
        assert aborted.status_code == 200, aborted.text[:300]
