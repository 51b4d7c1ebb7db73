"""`scripts/rehearse --set auth.mode=...` and `--scenario <name>` as a user (or a held-out client) runs it:
read its lines until `ready`, use only what they say, stop it with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import signal
import subprocess
import time
from typing import Iterator
from urllib.parse import parse_qs, urlparse

import requests

from rehearsal.ports import free_port
from rehearsal.processes import REPO_ROOT
from tests.rehearsal.conftest import require_servers


@contextlib.contextmanager
def rehearse(*arguments: str, timeout: float = 240) -> Iterator[tuple[dict[str, str], list[str]]]:
    """Run scripts/rehearse until `ready`; yield its exported variables and its comment lines."""
    require_servers()
    process = subprocess.Popen([str(REPO_ROOT / "scripts" / "rehearse"), "--stack-file", "none",
                                "--port", str(free_port()), *arguments],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    exports: dict[str, str] = {}
    comments: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        assert process.stdout is not None
        for line in process.stdout:
            assert time.monotonic() < deadline, "scripts/rehearse did not become ready"
            if line == "ready\n":
                break
            if line.startswith("#"):
                comments.append(line)
                continue
            name, _, value = line.removeprefix("export ").rstrip("\n").partition("=")
            exports[name] = shlex.split(value)[0]
        else:
            raise AssertionError(f"scripts/rehearse exited ({process.wait()}) before ready")
        yield exports, comments
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


def test_mlflow_mode_prints_the_admin_who_adds_a_user(monkeypatch):
    """`--scenario mlflow_auth` starts test_09's stack (rehearsal/scenarios.py: auth.mode mlflow,
    defaultPermission NO_PERMISSIONS): a user without a grant is refused."""
    from mlflow.server.auth.client import AuthServiceClient

    with rehearse("--scenario", "mlflow_auth") as (exports, _):
        uri = exports["MLFLOW_TRACKING_URI"]
        assert exports["MLFLOW_TRACKING_USERNAME"] == "admin"
        for name, value in exports.items():
            monkeypatch.setenv(name, value)
        password = secrets.token_urlsafe(16)
        AuthServiceClient(uri).create_user("carol", password)
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=5"
        assert requests.get(search, auth=("carol", password), timeout=30).status_code == 200
        experiment = requests.post(f"{uri}/api/2.0/mlflow/experiments/create", json={"name": "admins-only"},
                                   auth=(exports["MLFLOW_TRACKING_USERNAME"], exports["MLFLOW_TRACKING_PASSWORD"]),
                                   timeout=30).json()["experiment_id"]
        assert requests.get(f"{uri}/api/2.0/mlflow/experiments/get?experiment_id={experiment}",
                            auth=("carol", password), timeout=30).status_code == 403, "NO_PERMISSIONS, as scenario 9"
        assert requests.get(search, auth=("carol", password + "x"), timeout=30).status_code == 401
        assert requests.get(search, timeout=30).status_code == 401


def test_oidc_mode_describes_its_identity_provider_and_a_signed_in_user_gets_a_token(monkeypatch):
    with rehearse("--set", "auth.mode=oidc") as (exports, comments):
        uri = exports["MLFLOW_TRACKING_URI"]
        assert set(exports) == {"MLFLOW_TRACKING_URI"}, "single sign-on: no shared user"
        provider = re.search(r"identity provider \(oidc-provider-mock\): (\S+),", "".join(comments)).group(1)
        browser = requests.Session()
        authorize = browser.get(f"{uri}/login", allow_redirects=False, timeout=30).headers["Location"]
        assert authorize.startswith(f"{provider}/oauth2/authorize?")
        assert parse_qs(urlparse(authorize).query)["redirect_uri"] == [f"{uri}/callback"]
        callback = browser.post(authorize, data={"sub": "bob"}, allow_redirects=False, timeout=30).headers["Location"]
        assert browser.get(callback, allow_redirects=False, timeout=30).status_code == 302
        token = browser.post(f"{uri}/api/2.0/mlflow/users/current/tokens", timeout=30,
                             json={"name": "cli", "expiration": _in_days(300)})
        assert token.status_code == 201, token.text
        search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=5"
        assert requests.get(search, auth=("bob@example.com", token.json()["token"]), timeout=30).status_code == 200
        assert requests.get(search, timeout=30).status_code == 401


def _in_days(days: int) -> str:
    """An expiry date (the plugin allows at most a year)."""
    import datetime

    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)).isoformat()
