"""With proxy.tls=self-signed, Nginx serves the component's kind of certificate (ECDSA
P-256, the host names as SANs) and the MLflow client works with MLFLOW_TRACKING_SERVER_CERT_PATH."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
import uuid
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from mlflow.exceptions import MlflowException


def _served_certificate(port: int) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_nginx_serves_the_rendered_self_signed_certificate(tls_variant):
    assert tls_variant.tracking_uri == f"https://localhost:{tls_variant.proxy.port}"
    served = _served_certificate(tls_variant.proxy.port)
    saved = x509.load_pem_x509_certificate(Path(tls_variant.certificate_path).read_bytes())
    assert served == saved
    assert isinstance(served.public_key(), ec.EllipticCurvePublicKey)
    assert served.public_key().curve.name == "secp256r1"
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    # Verified against the saved certificate, by name and by address, and only TLS 1.2+.
    for host in ("localhost", "127.0.0.1"):
        ok = requests.get(f"https://{host}:{tls_variant.proxy.port}/health", verify=tls_variant.certificate_path,
                          timeout=10)
        assert ok.status_code == 200
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname = False
    legacy.verify_mode = ssl.CERT_NONE
    legacy.maximum_version = ssl.TLSVersion.TLSv1_1
    legacy.minimum_version = ssl.TLSVersion.TLSv1
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", tls_variant.proxy.port), timeout=10) as raw:
            legacy.wrap_socket(raw, server_hostname="localhost")
    # Plain HTTP on the TLS port is refused by Nginx.
    plain = requests.get(f"http://127.0.0.1:{tls_variant.proxy.port}/health", timeout=10)
    assert plain.status_code == 400


def test_mlflow_client_over_tls_with_the_certificate_path(tls_variant, client_for, tmp_path):
    artifact = tmp_path / "notes.txt"
    artifact.write_text("over TLS")
    with client_for(tls_variant) as client:
        experiment_id = client.create_experiment(f"tls-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_metric(run_id, "secure", 1.5, timestamp=int(time.time() * 1000), step=3)
        client.log_artifact(run_id, str(artifact))
        assert client.get_run(run_id).data.metrics == {"secure": 1.5}
        local = client.download_artifacts(run_id, "notes.txt", str(tmp_path / "back"))
        assert Path(local).read_text() == "over TLS"


def test_mlflow_client_without_the_certificate_refuses_the_server(tls_variant, client_for):
    with client_for(tls_variant, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0") as client:
        import os

        os.environ.pop("MLFLOW_TRACKING_SERVER_CERT_PATH")
        with pytest.raises(MlflowException, match="(?i)certificate|SSL"):
            client.search_experiments(max_results=1)
