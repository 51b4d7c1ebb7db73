"""artifacts.transfer proxied, through the real Nginx the stack renders and the real MLflow 3.17.2 client:
the routes that hand out presigned URLs answer 501 as MLflow does for a store without them, so a client that
forces them (MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD / _DOWNLOAD=true) falls back to proxied transfers and the
server never signs a URL (review of issue 26: advertising them off in server-info hid them only). With direct
transfers they pass (render test)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from components import render
from components.config import ProxyConfig, ServerConfig
from tests.components.test_proxy_body_limits import NGINX, Upstream, _free_port

STORE: dict[str, bytes] = {}
SEEN: list[tuple[str, str]] = []


class Artifacts(http.server.BaseHTTPRequestHandler):
    """The server's streaming artifact routes, in memory: PUT stores, GET returns; anything else 404."""

    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        SEEN.append(("PUT", self.path))
        STORE[self.path.split("?")[0]] = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(200, b"{}")

    def do_GET(self) -> None:
        SEEN.append(("GET", self.path))
        body = STORE.get(self.path.split("?")[0])
        self._answer(404) if body is None else self._answer(200, body)

    def do_POST(self) -> None:
        SEEN.append(("POST", self.path))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(404)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module", params=["", "/mlflow"], ids=["root", "static-prefix"])
def proxied(request, tmp_path_factory) -> Iterator[str]:
    if NGINX is None:
        pytest.skip("nginx not installed: apt-get install nginx")
    tmp = tmp_path_factory.mktemp("nginx")
    upstream = Upstream(("127.0.0.1", 0), Artifacts)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = _free_port()
    paths = render.NginxPaths(config=str(tmp / "nginx.conf"), htpasswd=str(tmp / "htpasswd"),
                              certificate=str(tmp / "c"), private_key=str(tmp / "k"), pid=str(tmp / "nginx.pid"),
                              temp_dir=str(tmp), access_log=str(tmp / "a.log"), error_log=str(tmp / "e.log"))
    settings = dataclasses.replace(
        render.proxy_settings(ProxyConfig(), ServerConfig(), f"127.0.0.1:{upstream.server_address[1]}"),
        paths=paths, listen_address="127.0.0.1", listen_port=port, basic_auth=False, metrics_port=None,
        static_prefix=request.param or None)
    assert not settings.direct_transfers
    (tmp / "nginx.conf").write_text(render.nginx_conf(settings))
    nginx = subprocess.Popen([NGINX, "-c", paths.config, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        import socket

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}{request.param}"
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        upstream.shutdown()


def test_a_forced_multipart_upload_and_download_fall_back_to_proxied(proxied, tmp_path, monkeypatch):
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    SEEN.clear()
    data = os.urandom(300_000)
    (tmp_path / "model.bin").write_bytes(data)
    repo = MlflowArtifactsRepository("mlflow-artifacts:/1/abc/artifacts", tracking_uri=proxied)
    repo.log_artifact(str(tmp_path / "model.bin"), "m")
    repo._download_file("m/model.bin", str(tmp_path / "back.bin"))  # what download_artifacts calls per file
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    assert [method for method, _ in SEEN] == ["PUT", "GET"], SEEN  # mpu/create and presigned never reached it


@pytest.mark.parametrize("route, message", [
    ("/api/2.0/mlflow-artifacts/mpu/create/1/abc/artifacts/m", "Multipart upload is not supported"),
    ("/ajax-api/2.0/mlflow-artifacts/mpu/complete/1/abc/artifacts/m", "Multipart upload is not supported"),
    ("/api/2.0/mlflow-artifacts/presigned/1/abc/artifacts/m/x.bin", "Multipart download is not supported"),
    ("/api/2.0/mlflow/artifacts/presigned-upload-url", "Presigned upload is not supported"),
    ("/api/2.0/mlflow/artifacts/presigned-download-url", "Presigned download is not supported"),
])
def test_every_presigning_route_answers_mlflows_unsupported_error(proxied, route, message):
    import requests

    SEEN.clear()
    response = requests.post(proxied + route, json={"path": "x.bin", "num_parts": 2}, timeout=30)
    assert response.status_code == 501
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error_code"] == "NOT_IMPLEMENTED" and response.json()["message"].startswith(message)
    assert SEEN == []


def test_a_malformed_presigned_path_is_still_refused_first(proxied):
    import requests

    assert requests.get(proxied + "/api/2.0/mlflow-artifacts/presigned/file:x", timeout=30).status_code == 400
