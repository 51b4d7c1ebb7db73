"""auth.mode proxy / mlflow / oidc on every stack, under recording mocks: what the server runs, what
Nginx checks, the auth database's provisioning and upgrade step, outputs, and that no password,
session key or client secret is ever in plain text."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from components import render
from tests.harness.program import ProgramRun, plain_strings, run_program
from tests.harness.stacks import CLIENT_SECRET, OIDC, container, env_of, find_leaks, stack_config, uploads_of

STACKS = ("local", "aws", "azure")


_RUNS: dict[tuple[str, str], ProgramRun] = {}


def run_for(stack: str, mode: str) -> ProgramRun:
    if (stack, mode) not in _RUNS:
        auth = {"mode": mode, **({"oidc": OIDC} if mode == "oidc" else {})}
        _RUNS[stack, mode] = run_program(stack_config(stack, auth), stack=stack, secret_keys=["mlflow:auth"])
    return _RUNS[stack, mode]


def server_container(run: ProgramRun, stack: str) -> dict:
    """The MLflow server's command, plain env, secret env names and init steps, whatever the platform."""
    if stack == "local":
        server = container(run, "mlflow-server")
        env = env_of(server)
        return {"command": server.inputs["command"], "env": env, "secret_names": set(env),
                "init": [r.name for r in run.of_type("docker:index/container:Container") if r.inputs.get("attach")],
                "files": uploads_of(server)}
    if stack == "aws":
        task = run.one("aws:ecs/taskDefinition:TaskDefinition", "mlflow-server")
        definitions = json.loads(task.inputs["containerDefinitions"])
        main = definitions[-1]
        return {"command": main["command"], "env": {e["name"]: e["value"] for e in main["environment"]},
                "secret_names": {s["name"] for s in main["secrets"]}, "init": [d["name"] for d in definitions[:-1]]}
    app = run.one("azure-native:app:ContainerApp", "mlflow-server").inputs
    main = app["template"]["containers"][0]
    return {"command": [*main.get("command", []), *main.get("args", [])],
            "env": {e["name"]: e["value"] for e in main["env"] if "value" in e},
            "secret_names": {e["name"] for e in main["env"] if "secretRef" in e},
            "init": [c["name"] for c in app["template"].get("initContainers", [])]}


def mlflow_arguments(command: list[str]) -> list[str]:
    """The `mlflow server ...` part (clouds wrap it in a shell that writes runtime files first)."""
    return command[command.index("mlflow"):]


# --- the server ----------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_proxy_mode_runs_mlflow_without_an_auth_app(stack):
    server = server_container(run_for(stack, "proxy"), stack)
    assert "--app-name" not in server["command"]
    assert not any(name.startswith(("MLFLOW_AUTH_", "OIDC_")) for name in server["env"])


@pytest.mark.parametrize("stack", STACKS)
def test_mlflow_mode_runs_the_basic_auth_app_with_its_secrets_from_the_platform(stack):
    server = server_container(run_for(stack, "mlflow"), stack)
    arguments = mlflow_arguments(server["command"])
    assert arguments[arguments.index("--app-name") + 1] == "basic-auth"
    assert server["env"][render.AUTH_CONFIG_ENV] == render.AUTH_CONFIG_PATH
    assert server["env"][render.AUTH_ADMIN_USERNAME_ENV] == "admin"
    if stack != "local":  # local passes every env var through the one secret envs list
        assert {render.AUTH_ADMIN_PASSWORD_ENV, "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= server["secret_names"]
        assert render.AUTH_ADMIN_PASSWORD_ENV not in server["env"]
    assert server["init"][-1].endswith("auth-db-upgrade"), "the auth schema is upgraded before the server starts"


def test_mlflow_mode_auth_ini_names_its_own_database_and_is_secret():
    run = run_for("local", "mlflow")
    server = container(run, "mlflow-server")
    assert server.input_is_secret("uploads")
    ini = uploads_of(server)[render.AUTH_CONFIG_PATH]
    assert "default_permission = NO_PERMISSIONS" in ini  # the default: positive grants only (issue 29)
    database_uri = ini.split("database_uri = ", 1)[1].splitlines()[0].replace("%%", "%")
    assert (database_uri.startswith("postgresql+psycopg2://mlflow:")
            and database_uri.endswith("@postgres:5432/mlflow_auth"))
    tracking_uri = env_of(server)[render.BACKEND_URI_ENV]
    assert (tracking_uri.endswith("/mlflow")
            and unquote(tracking_uri.split(":")[2].split("@")[0]) in unquote(database_uri))


@pytest.mark.parametrize("stack", STACKS)
def test_oidc_mode_runs_the_plugin_configured_from_auth_oidc(stack):
    run = run_for(stack, "oidc")
    server = server_container(run, stack)
    arguments = mlflow_arguments(server["command"])
    assert arguments[arguments.index("--app-name") + 1] == "oidc-auth"
    env = server["env"]
    tracking_uri = run.output("tracking_uri")
    assert env["OIDC_DISCOVERY_URL"] == OIDC["discoveryUrl"]
    assert env["OIDC_CLIENT_ID"] == env["OIDC_AUDIENCE"] == "mlflow-tracking"
    assert env["OIDC_REDIRECT_URI"] == f"{tracking_uri}/callback"
    assert env["OIDC_ADMIN_GROUP_NAME"] == "ml-admins" and env["OIDC_GROUP_NAME"] == "ml-team,data-science"
    assert env["DEFAULT_MLFLOW_PERMISSION"] == "NO_PERMISSIONS" and env["OIDC_SCOPE"] == "openid email profile"
    assert env["SESSION_COOKIE_SECURE"] == ("true" if tracking_uri.startswith("https://") else "false")
    if stack != "local":
        assert {"OIDC_CLIENT_SECRET", "OIDC_USERS_DB_URI", "SECRET_KEY"} <= server["secret_names"]
        assert not {"OIDC_CLIENT_SECRET", "OIDC_USERS_DB_URI", "SECRET_KEY"} & set(env)


def test_oidc_redirect_is_https_and_cookies_secure_behind_tls():
    config = stack_config("local", {"mode": "oidc", "oidc": OIDC})
    config["mlflow:proxy"] = json.dumps({"tls": "self-signed", "port": 8443})
    run = run_program(config, stack="local", secret_keys=["mlflow:auth"])
    env = env_of(container(run, "mlflow-server"))
    assert env["OIDC_REDIRECT_URI"] == "https://localhost:8443/callback"
    assert env["SESSION_COOKIE_SECURE"] == "true"


# --- Nginx ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["mlflow", "oidc"])
def test_nginx_checks_no_password_and_holds_no_htpasswd_when_mlflow_checks_users(mode):
    run = run_for("local", mode)
    proxy = container(run, "mlflow-proxy")
    files = uploads_of(proxy)
    assert "/etc/nginx/htpasswd" not in files
    assert "auth_basic_user_file" not in files["/etc/nginx/nginx.conf"]
    assert not run.of_type("random:index/randomBytes:RandomBytes"), "no htpasswd salt"
    assert "mlflow-proxy-password" not in {r.name for r in run.of_type("random:index/randomPassword:RandomPassword")}


def test_proxy_mode_keeps_basic_auth_at_nginx():
    files = uploads_of(container(run_for("local", "proxy"), "mlflow-proxy"))
    assert "auth_basic_user_file /etc/nginx/htpasswd;" in files["/etc/nginx/nginx.conf"]


# --- the auth database ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["mlflow", "oidc"])
def test_local_provisioning_creates_the_auth_database_owned_by_mlflows_role(mode):
    provision = container(run_for("local", mode), "mlflow-metadata-provision")
    command = provision.inputs["command"][-1]
    # (tests/integration/test_local_provisioning.py runs such a command against PostgreSQL)
    assert command.endswith("-v app_user=mlflow -v app_db=mlflow -v extra_db_1=mlflow_auth")
    assert 'REVOKE ALL ON DATABASE :"extra_db_1" FROM PUBLIC' in command


def test_proxy_mode_provisions_only_the_tracking_database():
    command = container(run_for("local", "proxy"), "mlflow-metadata-provision").inputs["command"][-1]
    assert "extra_db" not in command and "mlflow_auth" not in command


@pytest.mark.parametrize("stack", ["aws", "azure"])
def test_cloud_role_setup_creates_the_auth_database(stack):
    run = run_for(stack, "mlflow")
    if stack == "aws":
        task = run.one("aws:ecs/taskDefinition:TaskDefinition", "mlflow-server")
        setup = json.loads(task.inputs["containerDefinitions"])[0]
        env = {e["name"]: e["value"] for e in setup["environment"]}
    else:
        setup = run.one("azure-native:app:ContainerApp", "mlflow-server").inputs["template"]["initContainers"][0]
        env = {e["name"]: e["value"] for e in setup["env"] if "value" in e}
    assert setup["name"] == "mlflow-db-setup"
    assert env[render.DB_EXTRA_NAMES_ENV] == "mlflow_auth"


def test_the_mlflow_auth_upgrade_step_sets_the_admins_password():
    step = container(run_for("local", "mlflow"), "mlflow-server-auth-db-upgrade")
    env = env_of(step)
    assert set(env) == {"PYTHONUNBUFFERED", render.AUTH_DATABASE_URI_ENV, render.AUTH_ADMIN_USERNAME_ENV,
                        render.AUTH_ADMIN_PASSWORD_ENV}
    assert env[render.AUTH_ADMIN_PASSWORD_ENV] == env_of(container(run_for("local", "mlflow"), "mlflow-server"))[
        render.AUTH_ADMIN_PASSWORD_ENV]
    assert step.input_is_secret("uploads") and step.inputs["command"][-1] == "mlflow.server.auth.db.utils"


def test_the_auth_upgrade_step_gets_only_the_auth_database():
    run = run_for("local", "oidc")
    step = container(run, "mlflow-server-auth-db-upgrade")
    env = env_of(step)
    assert set(env) == {"PYTHONUNBUFFERED", render.AUTH_DATABASE_URI_ENV}
    assert env[render.AUTH_DATABASE_URI_ENV].endswith("/mlflow_auth")
    assert step.inputs["command"][-1] == "mlflow_oidc_auth.db.utils" and step.input_is_secret("uploads")
    assert step.inputs["command"][:3] == ["python", "-c", render.AUTH_UPGRADE_SCRIPT]


# --- outputs and secrets -------------------------------------------------------------------------

@pytest.mark.parametrize("stack", STACKS)
def test_mlflow_mode_outputs_the_admin_and_its_secret_password(stack):
    run = run_for(stack, "mlflow")
    assert run.output("admin_username") == run.output("username") == "admin"
    password = run.output("admin_password")
    assert run.output_is_secret("admin_password") and run.output_is_secret("password")
    assert password in run.generated_secrets and len(password) == 32
    client_env = run.output("client_env")
    assert "export MLFLOW_TRACKING_USERNAME=admin\n" in client_env and password in client_env
    assert run.output_is_secret("client_env")


@pytest.mark.parametrize("stack", STACKS)
def test_oidc_mode_outputs_no_shared_user(stack):
    outputs = run_for(stack, "oidc").stack_outputs
    assert not {"username", "password", "admin_username", "admin_password"} & set(outputs)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("mode", ["mlflow", "oidc"])
def test_no_password_key_or_client_secret_in_plain_text(stack, mode):
    run = run_for(stack, mode)
    assert not find_leaks(run), find_leaks(run)
    for resource in run.resources:
        for path, text in plain_strings(resource.raw_inputs, f"{resource.type} {resource.name}"):
            assert CLIENT_SECRET not in text, path
    for name, value in run.stack_outputs.items():
        for path, text in plain_strings(value, name):
            assert CLIENT_SECRET not in text, path
    keys = {r.name for r in run.of_type("random:index/randomPassword:RandomPassword")}
    assert "mlflow-server-session-key" in keys


def test_the_session_key_is_shared_by_every_replica():
    """One generated key in the task definition, so each replica (and worker) signs alike."""
    run = run_for("aws", "oidc")
    secrets = [r for r in run.of_type("aws:secretsmanager/secret:Secret") if "secret-key" in r.name]
    assert len(secrets) == 1
    assert run.one("aws:ecs/service:Service", "mlflow-server").inputs["desiredCount"] >= 2
