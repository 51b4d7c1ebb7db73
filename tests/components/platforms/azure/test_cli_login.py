"""The fresh Azure CLI login (components/platforms/azure/cli_login.py) in front of the program's `az`
commands, run as pulumi-command runs them (`/bin/sh -c`), with a stand-in `az` on PATH that records its
arguments and a stand-in for GitHub's OIDC token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL): what it runs
when asked (MLFLOW_FRESH_AZ_LOGIN=1, as deploy.yml's `up` step sets it), that it runs nothing more
without the opt-in whatever else the environment holds, that the opt-in without what it needs fails,
and that a failed step fails the command with what failed, before the command, without the tokens in
any output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from components.platforms.azure.cli_login import AUDIENCE, FRESH_AZ_LOGIN, OPT_IN, with_fresh_az_login
from components.platforms.azure.platform import ON_DEMAND_BACKUP_SCRIPT
from tests.harness.program import run_program
from tests.harness.stacks import azure_config

REQUEST_TOKEN = "request-token-0123456789"
OIDC_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm8vcjplbnZpcm9ubWVudDphenVyZSJ9.c2lnbmF0dXJl"
ACR_LOGIN = "az acr login --name mlflowacr123 --expose-token --output tsv --query accessToken"

# Records argv (one JSON list a line); `az login` fails when AZ_LOGIN_FAILS is set, `az acr login`
# prints a registry token, like the real one.
FAKE_AZ = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["AZ_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:2] == ["login"] and os.environ.get("AZ_LOGIN_FAILS"):
    sys.stderr.write("ERROR: AADSTS700211: No matching federated identity record found\\n")
    sys.exit(1)
if sys.argv[1:3] == ["acr", "login"]:
    print("acr-access-token")
"""


class TokenEndpoint(BaseHTTPRequestHandler):
    """GitHub's OIDC token endpoint: answers {"value": <token>} to a GET with the request token as bearer."""
    requests: list[dict] = []
    status = 200
    body = json.dumps({"count": 1, "value": OIDC_TOKEN})

    def do_GET(self):  # noqa: N802 (http.server's name)
        TokenEndpoint.requests.append({"path": self.path, "authorization": self.headers.get("Authorization")})
        ok = self.headers.get("Authorization") == f"bearer {REQUEST_TOKEN}"
        status, body = (TokenEndpoint.status, TokenEndpoint.body) if ok else (401, '{"message": "bad token"}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    TokenEndpoint.requests, TokenEndpoint.status = [], 200
    TokenEndpoint.body = json.dumps({"count": 1, "value": OIDC_TOKEN})
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # As GitHub sets it: the URL already holds a query (api-version); the audience is added with `&`.
        yield f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0"
    finally:
        server.shutdown()
        server.server_close()


class Shell:
    def __init__(self, tmp_path: Path):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        (self.bin / "az").write_text(FAKE_AZ)
        (self.bin / "az").chmod(0o755)
        self.log = tmp_path / "az.log"
        self.log.write_text("")
        self.home = tmp_path / "home"
        self.home.mkdir()

    def __call__(self, script: str, **env: str) -> subprocess.CompletedProcess:
        environment = {"PATH": f"{self.bin}:{os.environ['PATH']}", "HOME": str(self.home), "AZ_LOG": str(self.log),
                       **env}
        return subprocess.run(["/bin/sh", "-c", script], env=environment, capture_output=True, text=True, timeout=60)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def shell(tmp_path) -> Shell:
    return Shell(tmp_path)


def ambient(endpoint: str, **more: str) -> dict[str, str]:
    """What any GitHub Actions job with `id-token: write` and a workflow's AZURE_* has (another program's
    CI using the component too): GitHub's OIDC request pair and AZURE_*, without the opt-in."""
    return {"ACTIONS_ID_TOKEN_REQUEST_URL": endpoint, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN,
            "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
            "AZURE_TENANT_ID": "66666666-7777-8888-9999-000000000000",
            "AZURE_SUBSCRIPTION_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", **more}


def actions(endpoint: str, **more: str) -> dict[str, str]:
    """What deploy.yml's `apply` gives its `up` step: the ambient variables and the opt-in."""
    return ambient(endpoint, **{OPT_IN: "1", **more})


def test_every_az_command_of_the_program_has_the_prelude():
    """Every command the azure program runs that calls `az` (the on-demand backup, above the Burstable tier,
    and the registry token) starts with the one prelude; the others (the rollout clock, the role pauses)
    run no `az`."""
    run = run_program(azure_config(azure={"dbSku": "Standard_D2ds_v5"}), stack="azure")
    creates = [str(command.inputs.get("create", "")) for command in run.of_type("command:local:Command")]
    calling_az = [create for create in creates if re.search(r"(?:^|[\n;&|(])\s*az\s", create)]
    assert len(calling_az) == 2 and ON_DEMAND_BACKUP_SCRIPT in calling_az
    assert all(create.startswith(FRESH_AZ_LOGIN) and create.count(FRESH_AZ_LOGIN) == 1 for create in calling_az)
    assert not [create for create in creates if create not in calling_az and "az " in create]


def test_under_github_actions_it_signs_in_afresh_then_runs_the_command(shell, endpoint):
    result = shell(with_fresh_az_login(ACR_LOGIN), **actions(endpoint))
    assert result.returncode == 0, result.stderr
    # The command's stdout is its own alone (the registry token command's stdout is the token).
    assert result.stdout == "acr-access-token\n" and result.stderr == ""
    [request] = TokenEndpoint.requests
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request["path"]).query)
    assert query == {"api-version": ["2.0"], "audience": [AUDIENCE]}
    assert request["authorization"] == f"bearer {REQUEST_TOKEN}"
    assert shell.calls() == [
        ["login", "--service-principal", "--username", "11111111-2222-3333-4444-555555555555",
         "--tenant", "66666666-7777-8888-9999-000000000000", "--federated-token", OIDC_TOKEN, "--output", "none"],
        ["account", "set", "--subscription", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "--output", "none"],
        ACR_LOGIN.split()[1:]]
    # The logins of concurrent commands take turns on a lock in the CLI's directory.
    assert (shell.home / ".azure" / "mlflow-fresh-login.lock").exists()


def test_the_backup_script_runs_after_the_login_with_its_environment(shell, endpoint):
    result = shell(ON_DEMAND_BACKUP_SCRIPT, **actions(endpoint), SUBSCRIPTION="sub", RESOURCE_GROUP="rg",
                   SERVER="db", BACKUP_NAME="mlflow-before-3-17-2-abcdef")
    assert result.returncode == 0, result.stderr
    assert [call[:2] for call in shell.calls()] == [["login", "--service-principal"], ["account", "set"],
                                                    ["postgres", "flexible-server"]]
    assert shell.calls()[-1][4:] == ["--subscription", "sub", "--resource-group", "rg", "--name", "db",
                                     "--backup-name", "mlflow-before-3-17-2-abcdef", "--output", "none"]


def test_without_a_subscription_the_login_keeps_the_clis_choice(shell, endpoint):
    environment = actions(endpoint)
    del environment["AZURE_SUBSCRIPTION_ID"]
    result = shell(with_fresh_az_login(ACR_LOGIN), **environment)
    assert result.returncode == 0, result.stderr
    assert [call[0] for call in shell.calls()] == ["login", "acr"]


@pytest.mark.parametrize("opt_in", [None, "", "0"])
@pytest.mark.parametrize("environment", ["none", "ambient"])
def test_without_the_opt_in_it_does_nothing(shell, endpoint, opt_in, environment):
    """A workstation, or any CI job with `id-token: write` and AZURE_CLIENT_ID/AZURE_TENANT_ID of its own
    (a program of someone else's using the component): the command runs on the login the CLI has."""
    variables = {} if environment == "none" else ambient(endpoint)
    if opt_in is not None:
        variables[OPT_IN] = opt_in
    result = shell(with_fresh_az_login(ACR_LOGIN), **variables)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "acr-access-token\n" and result.stderr == ""
    assert shell.calls() == [ACR_LOGIN.split()[1:]] and TokenEndpoint.requests == []
    assert not (shell.home / ".azure").exists()


@pytest.mark.parametrize("missing", [("ACTIONS_ID_TOKEN_REQUEST_URL",), ("ACTIONS_ID_TOKEN_REQUEST_TOKEN",),
                                     ("AZURE_CLIENT_ID",), ("AZURE_TENANT_ID",),
                                     ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")])
def test_the_opt_in_without_what_it_needs_fails_before_the_command(shell, endpoint, missing):
    """Asked for, the fresh login is not skipped quietly: a job without `id-token: write`, or an `up` step
    without AZURE_*, fails the command with the names of what is missing (empty counts as missing)."""
    environment = {key: value for key, value in actions(endpoint).items() if key not in missing[1:]}
    environment[missing[0]] = ""
    result = shell(with_fresh_az_login(ACR_LOGIN), **environment)
    assert result.returncode == 1 and result.stdout == ""
    assert "MLFLOW_FRESH_AZ_LOGIN=1, but not set: " + " ".join(missing) + ": nothing run" in result.stderr
    assert shell.calls() == [] and TokenEndpoint.requests == []
    assert REQUEST_TOKEN not in result.stderr


@pytest.mark.parametrize("value", ["true", "yes", "2"])
def test_an_opt_in_other_than_1_or_0_fails(shell, endpoint, value):
    result = shell(with_fresh_az_login(ACR_LOGIN), **actions(endpoint, **{OPT_IN: value}))
    assert result.returncode == 1 and result.stdout == ""
    assert f"MLFLOW_FRESH_AZ_LOGIN is {value}, not 1, 0 or unset: nothing run" in result.stderr
    assert shell.calls() == [] and TokenEndpoint.requests == []


@pytest.mark.parametrize("failure", ["refused", "unreachable", "no token", "az login"])
def test_a_failed_login_fails_the_command_with_the_reason_and_no_token(shell, endpoint, failure):
    environment = actions(endpoint)
    if failure == "refused":
        environment["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = "expired"
    elif failure == "unreachable":
        environment["ACTIONS_ID_TOKEN_REQUEST_URL"] = "http://127.0.0.1:9/token?api-version=2.0"
    elif failure == "no token":
        TokenEndpoint.body = json.dumps({"count": 0})
    else:
        environment["AZ_LOGIN_FAILS"] = "1"
    result = shell(with_fresh_az_login(ACR_LOGIN), **environment)
    assert result.returncode == 1 and result.stdout == ""
    assert "fresh Azure CLI login" in result.stderr and "nothing run" in result.stderr
    if failure == "az login":
        assert "AADSTS700211" in result.stderr  # az's reason, kept back until it failed
        assert [call[0] for call in shell.calls()] == ["login"]
    else:
        assert "OIDC token endpoint" in result.stderr and shell.calls() == []
    assert OIDC_TOKEN not in result.stderr and REQUEST_TOKEN not in result.stderr


def test_neither_token_is_in_the_script():
    """The script (what pulumi-command shows of a failed command) names the variables, never a value; the
    request token goes to curl on its stdin."""
    assert "$ACTIONS_ID_TOKEN_REQUEST_TOKEN" in FRESH_AZ_LOGIN and "--header @-" in FRESH_AZ_LOGIN
    assert "echo \"$mlflow_oidc" not in FRESH_AZ_LOGIN and "set -x" not in FRESH_AZ_LOGIN
