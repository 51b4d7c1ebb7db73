"""The rendered nginx.conf's body limits, run by the real Nginx in front of a stand-in upstream that counts
what reaches it: only artifact uploads (PUT on the streaming router's routes) may be large; every other
route stops at render.API_BODY_LIMIT before the server holds anything.

Review 24 (azure 3 F1): one `client_max_body_size` for the whole server let an anonymous client send a
1.5 GB body to any API route, which MLflow's WSGI bridge holds whole in memory before its auth app
answers 401: a replica killed per request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.server
import os
import posixpath
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import render
from components.config import ProxyConfig, ServerConfig
from mlflow_guard.asgi import MAX_INSPECTED_BODY_BYTES

MIB = 1024 * 1024
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
ARTIFACT_LIMIT = "64m"


class Counting(http.server.BaseHTTPRequestHandler):
    """Reads the whole body (Content-Length or chunked) and answers with its size."""

    protocol_version = "HTTP/1.1"
    received: list[tuple[str, str, int]] = []

    def _any(self) -> None:
        size = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                length = int(self.rfile.readline().split(b";")[0], 16)
                if length == 0:
                    self.rfile.readline()
                    break
                size += len(self.rfile.read(length))
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                chunk = self.rfile.read(min(remaining, MIB))
                size, remaining = size + len(chunk), remaining - len(chunk)
        self.received.append((self.command, self.path, size))
        body = str(size).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _any

    def log_message(self, *args) -> None:
        pass


class Upstream(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a body Nginx cut off on a 413: nothing to report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_nginx(tmp: Path, handler: type[http.server.BaseHTTPRequestHandler], proxy_config: ProxyConfig,
                  static_prefix: str | None = None, artifacts=None) -> Iterator[tuple[int, render.ProxySettings]]:
    """The real Nginx with the config the stack renders (no basic auth, no metrics listener) in front of `handler`
    standing in for the server; (port, the settings rendered)."""
    if NGINX is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (apt-get install nginx)")
        pytest.skip("nginx not installed: apt-get install nginx")
    upstream = Upstream(("127.0.0.1", 0), handler)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = _free_port()
    paths = render.NginxPaths(config=str(tmp / "nginx.conf"), htpasswd=str(tmp / "htpasswd"),
                              certificate=str(tmp / "c"), private_key=str(tmp / "k"), pid=str(tmp / "nginx.pid"),
                              temp_dir=str(tmp), access_log=str(tmp / "a.log"), error_log=str(tmp / "e.log"))
    extra = {} if artifacts is None else {"artifacts": artifacts}
    settings = dataclasses.replace(
        render.proxy_settings(proxy_config, ServerConfig(), f"127.0.0.1:{upstream.server_address[1]}", **extra),
        paths=paths, listen_address="127.0.0.1", listen_port=port, basic_auth=False, metrics_port=None,
        static_prefix=static_prefix or None)
    (tmp / "nginx.conf").write_text(render.nginx_conf(settings))
    nginx = subprocess.Popen([NGINX, "-c", paths.config, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, settings
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        upstream.shutdown()


@pytest.fixture(scope="module", params=["", "/mlflow"], ids=["root", "static-prefix"])
def proxy(request, tmp_path_factory) -> Iterator[tuple[int, str]]:
    with running_nginx(tmp_path_factory.mktemp("nginx"), Counting, ProxyConfig(client_max_body_size=ARTIFACT_LIMIT),
                       static_prefix=request.param) as (port, _):
        yield port, request.param


def send(port: int, method: str, path: str, size: int, chunked: bool = False) -> tuple[int, int]:
    """(status, bytes the upstream got; -1: it saw no request)."""
    Counting.received.clear()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    block = b"x" * MIB
    headers = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(size)}
    connection.putrequest(method, path)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    try:
        sent = 0
        while sent < size:
            part = block[:min(MIB, size - sent)]
            connection.send(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            sent += len(part)
        if chunked:
            connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # Nginx answered and closed before the whole body was sent
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, (Counting.received[-1][2] if Counting.received else -1)


def test_the_api_limit_is_what_the_guard_reads_at_most():
    assert render.API_BODY_LIMIT == f"{MAX_INSPECTED_BODY_BYTES // MIB}m"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("route", ["/api/2.0/mlflow/experiments/create", "/ajax-api/2.0/mlflow/upload-artifact",
                                   "/api/2.0/mlflow/runs/log-batch", "/v1/traces", "/anything"])
def test_api_routes_refuse_bodies_above_the_api_limit(proxy, route, chunked):
    port, prefix = proxy
    status, got = send(port, "POST", prefix + route, 17 * MIB, chunked=chunked)
    assert status == 413 and got < 17 * MIB, (status, got)
    assert send(port, "POST", prefix + route, 15 * MIB, chunked=chunked) == (200, 15 * MIB)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_artifact_uploads_stream_up_to_their_own_limit(proxy, chunked):
    port, prefix = proxy
    for path in (f"{prefix}/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/model.bin",
                 "/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/model.bin",
                 "/ajax-api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/model.bin"):
        assert send(port, "PUT", path, 40 * MIB, chunked=chunked) == (200, 40 * MIB), path
        status, got = send(port, "PUT", path, 65 * MIB, chunked=chunked)
        assert status == 413 and got < 65 * MIB, (path, status, got)


@pytest.mark.parametrize("method", ["POST", "DELETE", "PATCH", "GET"])
def test_other_methods_on_the_artifact_routes_take_no_body(proxy, method):
    """Only PUT reaches the streaming router; any other method goes to the WSGI bridge, which would hold
    the body in memory."""
    port, prefix = proxy
    path = f"{prefix}/api/2.0/mlflow-artifacts/artifacts/1/run/artifacts/a.txt"
    for size, chunked in ((1024, False), (20 * MIB, False), (1024, True)):
        status, got = send(port, method, path, size, chunked=chunked)
        assert status == 413 and got == -1, (method, size, chunked, status, got)
    assert send(port, method, path, 0) == (200, 0)


# --- the completion of a direct upload (second cloud review of issue 26, item 1) ---------------------------------

@pytest.fixture(scope="module")
def direct_proxy(tmp_path_factory) -> Iterator[tuple[int, int]]:
    """Nginx rendered for artifacts.transfer direct with the default proxy config; (port, the API body limit the
    server's env gets from the same config)."""
    from components.config import ArtifactsConfig

    proxy_config, artifacts = ProxyConfig(), ArtifactsConfig(transfer="direct")
    server_env = render.tracking_server_env(render.tracking_server_settings(
        ServerConfig(), proxy_config, ("localhost",), image="i", artifacts_destination="s3://b/p", artifacts=artifacts))
    with running_nginx(tmp_path_factory.mktemp("nginx-direct"), Counting, proxy_config,
                       artifacts=artifacts) as (port, settings):
        assert settings.direct_transfers
        yield port, int(server_env[render.API_BODY_LIMIT_ENV])


def _complete(port: int, upload_id, urls: list[str]) -> None:
    """MLflow's client completing a direct upload through Nginx (http_artifact_repo.complete_multipart_upload), each
    part with the longest ETag a part answers."""
    from mlflow.entities.multipart_upload import MultipartUploadPart
    from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

    from mlflow_guard.artifacts import ETAG_BOUND

    repo = HttpArtifactRepository(f"http://127.0.0.1:{port}/api/2.0/mlflow-artifacts/artifacts/12/{'a' * 32}/artifacts")
    parts = [MultipartUploadPart(part_number=n, etag=ETAG_BOUND, url=url) for n, url in enumerate(urls, 1)]
    Counting.received.clear()
    repo.complete_multipart_upload("/home/someone/models/model.safetensors", upload_id, parts, "model/data")


def _cap_and_urls(store: str, monkeypatch) -> tuple[int, int, object, list[str]]:
    """(the guard's cap, the store's own limit, upload id, part URLs at the store's limit) for a realistic key on the
    aws (a task role's session token and an upload ID at their bounds) or azure stack."""
    from mlflow_guard import artifacts
    from tests.mlflow_guard.test_mlflow_guard_artifacts import (AWS_ENDPOINT, REALISTIC_KEY, _IdentityWithDelegator,
                                                                _s3_part_urls)

    if store == "s3":
        bucket = "my-mlflow-artifacts-123456789012"
        cap = artifacts.parts_cap(artifacts.S3_MAX_PARTS,
                                  artifacts.s3_part_url_bound(AWS_ENDPOINT, bucket, REALISTIC_KEY))
        upload_id, urls = _s3_part_urls(REALISTIC_KEY, range(1, artifacts.S3_MAX_PARTS + 1), 1_300,
                                        artifacts.S3_UPLOAD_ID_BOUND, bucket=bucket)
        return cap, artifacts.S3_MAX_PARTS, upload_id, urls
    repo = artifacts.AzureBlobRepository(f"wasbs://artifacts@{_IdentityWithDelegator.account_name}.blob.core.windows"
                                         ".net/mlflow", client=_IdentityWithDelegator())
    key = REALISTIC_KEY.removeprefix("mlflow/")
    cap = artifacts.parts_cap(artifacts.BLOB_MAX_BLOCKS, artifacts.blob_part_url_bound(
        _IdentityWithDelegator.url, "artifacts", REALISTIC_KEY))
    monkeypatch.setenv(artifacts.API_BODY_LIMIT_ENV, str(1024 ** 3))  # to sign past the cap for the second half
    created = repo.create_multipart_upload("/x/model.safetensors", artifacts.BLOB_MAX_BLOCKS, posixpath.dirname(key))
    monkeypatch.delenv(artifacts.API_BODY_LIMIT_ENV)
    return cap, artifacts.BLOB_MAX_BLOCKS, None, [c.url for c in created.credentials]


@pytest.mark.parametrize("store", ["s3", "blob"])
def test_a_completion_at_the_guards_cap_passes_nginx_and_one_at_the_stores_limit_did_not(direct_proxy, store,
                                                                                           monkeypatch):
    """The guard caps num_parts at what the completion request can list within the API body limit the server's
    env carries; the real MLflow client's completion at that cap passes the rendered Nginx, while at the store's own
    limit (the cap before) it was refused 413 after every part had been moved."""
    import requests

    from mlflow_guard import artifacts

    port, budget = direct_proxy
    monkeypatch.setenv(artifacts.API_BODY_LIMIT_ENV, str(budget))
    cap, limit, upload_id, urls = _cap_and_urls(store, monkeypatch)
    assert 0 < cap < limit
    _complete(port, upload_id, urls[:cap])
    (method, path, size) = Counting.received[-1]
    assert method == "POST" and "/mpu/complete/" in path and budget * 0.9 < size <= budget, (size, budget)
    with pytest.raises(requests.HTTPError, match="413"):
        _complete(port, upload_id, urls)
    assert Counting.received == []  # refused before the server saw it
