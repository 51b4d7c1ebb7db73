"""Basic auth at Nginx, /health open, MLflow's host-check middleware on behind it."""

from __future__ import annotations

import requests
from mlflow.server.security_utils import INVALID_HOST_MSG

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def _url(variant, path: str) -> str:
    return f"http://127.0.0.1:{variant.proxy.port}{variant.config.server.static_prefix or ''}{path}"


def test_no_credentials_is_401(any_variant):
    response = requests.get(_url(any_variant, SEARCH), timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="MLflow"'


def test_wrong_password_and_unknown_user_are_401(any_variant):
    wrong = requests.get(_url(any_variant, SEARCH), auth=(any_variant.username, any_variant.password + "x"), timeout=10)
    assert wrong.status_code == 401
    unknown = requests.get(_url(any_variant, SEARCH), auth=("someone-else", any_variant.password), timeout=10)
    assert unknown.status_code == 401


def test_right_credentials_reach_mlflow(any_variant):
    response = requests.get(_url(any_variant, SEARCH), auth=(any_variant.username, any_variant.password), timeout=10)
    assert response.status_code == 200
    assert "experiments" in response.json()


def test_health_is_open_without_credentials(any_variant):
    # /health at the root (probes), and under the prefix the server's own prefixed health route.
    root = requests.get(f"http://127.0.0.1:{any_variant.proxy.port}/health", timeout=10)
    assert root.status_code == 200 and root.text == "OK"
    prefixed = requests.get(_url(any_variant, "/health"), timeout=10)
    assert prefixed.status_code == 200 and prefixed.text == "OK"


def test_foreign_host_header_is_rejected_by_mlflow_middleware(any_variant):
    auth = (any_variant.username, any_variant.password)
    foreign = requests.get(_url(any_variant, SEARCH), auth=auth, headers={"Host": "evil.example.com"}, timeout=10)
    assert foreign.status_code == 403
    assert foreign.text == INVALID_HOST_MSG  # MLflow's message, not an Nginx page
    # The configured public names pass (with and without the public port).
    for host in ("localhost", f"localhost:{any_variant.proxy.port}", "127.0.0.1"):
        allowed = requests.get(_url(any_variant, SEARCH), auth=auth, headers={"Host": host}, timeout=10)
        assert allowed.status_code == 200, host


def test_rendered_health_probes_pass(any_variant):
    """The container health checks the components render, run as rendered (programs mapped)."""
    import shutil
    import subprocess

    from rehearsal.processes import local_command

    server_probe = any_variant.server.spec.health_check
    result = subprocess.run(local_command(server_probe.command), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    proxy_probe = any_variant.proxy.spec.health_check
    assert proxy_probe.command[0] == "wget"
    if shutil.which("wget"):
        result = subprocess.run(list(proxy_probe.command), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr


def test_ai_gateway_is_off_unless_configured(default_variant):
    auth = (default_variant.username, default_variant.password)
    info = requests.get(_url(default_variant, "/api/3.0/mlflow/server-info"), auth=auth, timeout=10)
    assert info.status_code == 200 and info.json()["features_enabled"]["gateway"] is False
    gateway = requests.get(_url(default_variant, "/ajax-api/3.0/mlflow/gateway/secrets/config"), auth=auth, timeout=10)
    assert gateway.status_code != 200


def test_enabled_ai_gateway_encrypts_with_the_generated_key(rehearsal_stack):
    """MLflow itself reports whether it stores secrets under its published default passphrase."""
    variant = rehearsal_stack.variants.get("gateway") or rehearsal_stack.add_variant(
        "gateway", overrides={"server": {"aiGateway": True}})
    auth = (variant.username, variant.password)
    info = requests.get(_url(variant, "/api/3.0/mlflow/server-info"), auth=auth, timeout=10)
    assert info.json()["features_enabled"]["gateway"] is True
    config = requests.get(_url(variant, "/ajax-api/3.0/mlflow/gateway/secrets/config"), auth=auth, timeout=10)
    assert config.status_code == 200, config.text
    assert config.json() == {"secrets_available": True, "using_default_passphrase": False}
