"""A 256 MiB artifact up and down through Nginx and MLflow into the bucket, with and
without the static prefix, while the RSS of the server and of Nginx is sampled. Also: the server's
S3 key pair is confined to its bucket."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from pathlib import Path

import botocore.exceptions
import pytest

from ops.archive import file_sha256

MIB = 1024 * 1024
ARTIFACT_SIZE = 256 * MIB
RSS_GROWTH_LIMIT = 200 * MIB




@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[Path, str]:
    """256 MiB of random bytes (incompressible) and their sha256."""
    path = tmp_path_factory.mktemp("big") / "weights.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for _ in range(ARTIFACT_SIZE // (8 * MIB)):
            chunk = os.urandom(8 * MIB)
            digest.update(chunk)
            handle.write(chunk)
    return path, digest.hexdigest()


class RssSampler:
    """Samples the RSS of process trees (the server with its workers, Nginx with its workers)."""

    def __init__(self, services: dict, interval: float = 0.05):
        self.services = services
        self.interval = interval
        self.baseline = {name: service.rss_bytes() for name, service in services.items()}
        self.peak = dict(self.baseline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, service in self.services.items():
                self.peak[name] = max(self.peak[name], service.rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self, name: str) -> int:
        return self.peak[name] - self.baseline[name]


@pytest.mark.parametrize("variant_name", ["default", "prefix"])
def test_256_mib_artifact_round_trip_with_bounded_memory(variant_name, request, rehearsal_stack, big_file,
                                                         client_for, report_figure, tmp_path):
    variant = request.getfixturevalue(f"{variant_name}_variant")
    source, expected_sha = big_file
    services = {"mlflow server": variant.server.service, "nginx": variant.proxy.service}
    with client_for(variant) as client:
        experiment_id = client.create_experiment(f"artifacts-{variant_name}-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id

        started = time.monotonic()
        with RssSampler(services) as upload:
            client.log_artifact(run_id, str(source), artifact_path="big")
        upload_seconds = time.monotonic() - started

        listed = {f.path: f.file_size for f in client.list_artifacts(run_id, "big")}
        assert listed == {"big/weights.bin": ARTIFACT_SIZE}

        started = time.monotonic()
        with RssSampler(services) as download:
            local = client.download_artifacts(run_id, "big/weights.bin", str(tmp_path))
        download_seconds = time.monotonic() - started
        assert Path(local).stat().st_size == ARTIFACT_SIZE
        assert file_sha256(Path(local)) == expected_sha

    # The upload reached the server's streaming route (unprefixed, also under a static prefix).
    server_log = variant.server.service.log_path.read_text()
    assert f'"PUT /api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/big/weights.bin' in server_log
    # It is in the bucket (not on the server's disk), under the experiment's run.
    s3 = rehearsal_stack.s3.client("s3")
    keys = [obj for obj in s3.list_objects_v2(Bucket=rehearsal_stack.s3.bucket).get("Contents", [])
            if obj["Key"].endswith(f"{run_id}/artifacts/big/weights.bin")]
    assert [obj["Size"] for obj in keys] == [ARTIFACT_SIZE]

    for name in services:
        report_figure(f"{variant_name} upload peak RSS growth of {name}", f"{upload.growth(name) / MIB:.1f}",
                      f"MiB (peak {upload.peak[name] / MIB:.1f} MiB, baseline {upload.baseline[name] / MIB:.1f} MiB,"
                      " process tree)")
        report_figure(f"{variant_name} download peak RSS growth of {name}", f"{download.growth(name) / MIB:.1f}", "MiB")
    report_figure(f"{variant_name} 256 MiB upload", f"{upload_seconds:.1f}", "s")
    report_figure(f"{variant_name} 256 MiB download", f"{download_seconds:.1f}", "s")
    for name in services:
        assert upload.growth(name) < RSS_GROWTH_LIMIT, f"{name} grew {upload.growth(name) / MIB:.0f} MiB on upload"


def test_server_credentials_are_confined_to_the_bucket(rehearsal_stack, default_variant):
    s3_stand_in = rehearsal_stack.s3
    bucket = s3_stand_in.bucket
    env = default_variant.server.service.env
    server_keys = (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    assert server_keys == s3_stand_in.server_credentials and server_keys != s3_stand_in.admin_credentials

    as_server = s3_stand_in.client("s3", server_keys)
    key = f"scope-check/{uuid.uuid4().hex}"
    as_server.put_object(Bucket=bucket, Key=key, Body=b"inside")
    assert as_server.get_object(Bucket=bucket, Key=key)["Body"].read() == b"inside"
    as_server.delete_object(Bucket=bucket, Key=key)

    def denied(call) -> str:
        with pytest.raises(botocore.exceptions.ClientError) as error:
            call()
        return error.value.response["Error"]["Code"]

    admin = s3_stand_in.client("s3")
    other = f"other-{uuid.uuid4().hex[:8]}"
    admin.create_bucket(Bucket=other)
    assert denied(lambda: as_server.put_object(Bucket=other, Key="x", Body=b"outside")) == "AccessDenied"
    assert denied(lambda: as_server.list_objects_v2(Bucket=other)) == "AccessDenied"
    assert denied(lambda: as_server.create_bucket(Bucket=f"new-{uuid.uuid4().hex[:8]}")) == "AccessDenied"
    assert denied(lambda: as_server.list_buckets()) == "AccessDenied"
    # Unknown keys and unsigned requests get nothing.
    stranger = s3_stand_in.client("s3", ("AKIAIOSFODNN7EXAMPLE", "not-a-secret"))
    assert denied(lambda: stranger.list_objects_v2(Bucket=bucket)) in {"InvalidAccessKeyId", "AccessDenied"}
    import requests

    # Unsigned requests are refused (moto answers 500 rather than AWS's 403: it fails on the
    # missing Authorization header), and nothing is listed.
    anonymous = requests.get(f"{s3_stand_in.endpoint}/{bucket}?list-type=2", timeout=10)
    assert anonymous.status_code in {403, 500} and "<Contents>" not in anonymous.text


def test_artifact_transfers_stay_behind_the_proxy(any_variant):
    """The server advertises presigned multipart transfers (its store is S3); through the proxy
    clients are told they are off, so they never go to the server's private S3 endpoint."""
    import requests

    path = f"{any_variant.config.server.static_prefix or ''}/api/3.0/mlflow/server-info"
    proxied = requests.get(f"http://127.0.0.1:{any_variant.proxy.port}{path}",
                           auth=(any_variant.username, any_variant.password), timeout=10)
    assert proxied.status_code == 200
    info = proxied.json()
    assert info["multipart_downloads_enabled"] is False and info["multipart_uploads_enabled"] is False
    assert info["store_type"] == "SqlStore"
    direct = requests.get(f"{any_variant.server.url}{path}", headers={"Host": "localhost"}, timeout=10).json()
    assert direct["multipart_downloads_enabled"] is True  # what the proxy rewrites
    access_log = Path(any_variant.proxy.settings.paths.access_log).read_text()
    assert "/mlflow-artifacts/presigned/" not in access_log
    assert "/mlflow-artifacts/mpu/" not in access_log


def test_small_artifacts_list_download_and_delete(any_variant, client_for, tmp_path):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "nested" / "b.json").write_text('{"b": 1}')
    with client_for(any_variant) as client:
        experiment_id = client.create_experiment(f"small-{uuid.uuid4().hex[:8]}")
        run = client.create_run(experiment_id)
        client.log_artifacts(run.info.run_id, str(source), artifact_path="files")
        assert [f.path for f in client.list_artifacts(run.info.run_id, "files")] == ["files/a.txt", "files/nested"]
        assert [f.path for f in client.list_artifacts(run.info.run_id, "files/nested")] == ["files/nested/b.json"]
        local = Path(client.download_artifacts(run.info.run_id, "files", str(tmp_path / "dst")))
        assert (local / "a.txt").read_text() == "alpha"
        assert (local / "nested" / "b.json").read_text() == '{"b": 1}'
        get_artifact_repository(run.info.artifact_uri).delete_artifacts("files/nested")
        assert [f.path for f in client.list_artifacts(run.info.run_id, "files")] == ["files/a.txt"]
