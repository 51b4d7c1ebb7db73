"""artifacts.transfer proxied, through the real Nginx the stack renders and the real MLflow 3.17.2 client:
the routes that hand out presigned URLs answer 501 as MLflow does for a store without them, so a client that
forces them (MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD / _DOWNLOAD=true) falls back to proxied transfers and the
server never signs a URL (review of issue 26: advertising them off in server-info hid them only). With direct
transfers they pass (render test)."""

from __future__ import annotations

import hashlib
import http.server
import os
from collections.abc import Iterator

import pytest

from components.config import ProxyConfig
from tests.components.test_proxy_body_limits import running_nginx

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
    with running_nginx(tmp_path_factory.mktemp("nginx"), Artifacts, ProxyConfig(),
                       static_prefix=request.param) as (port, settings):
        assert not settings.direct_transfers
        yield f"http://127.0.0.1:{port}{request.param}"


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
