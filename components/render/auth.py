"""auth.mode mlflow and oidc: the auth apps in front of MLflow's routes, their settings and secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from components.config import AuthConfig, ServerConfig


# auth.mode mlflow and oidc: an auth app in front of MLflow's own routes (`--app-name`) checks
# every request; its users and permissions live in a database of their own beside the tracking one
# (mlflow-oidc-auth keeps its revision in `alembic_version`, which would collide with MLflow's in the
# tracking database; MLflow's auth app uses `alembic_version_auth`, kept apart the same way).
AUTH_APPS = {"mlflow": "basic-auth", "oidc": "oidc-auth"}
AUTH_DATABASE_URI_ENV = "MLFLOW_AUTH_DATABASE_URI"
"""The auth database's URI (secret): read by its upgrade step, and by the oidc plugin as OIDC_USERS_DB_URI."""
# MLflow's auth app (mlflow) reads its database URI from an ini file only, so the file is secret;
# the admin comes from the environment (MLflow 3.17 refuses to start without an admin password).
AUTH_CONFIG_ENV = "MLFLOW_AUTH_CONFIG_PATH"
AUTH_CONFIG_PATH = "/tmp/mlflow-auth.ini"
AUTH_ADMIN_USERNAME_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"
AUTH_ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
# The key that signs sessions (and, for mlflow, CSRF tokens): the same in every worker and replica,
# or a request served by another worker than the sign-in fails. MLflow refuses several workers without it.
SESSION_KEY_ENVS = {"mlflow": "MLFLOW_FLASK_SERVER_SECRET_KEY", "oidc": "SECRET_KEY"}
OIDC_CLIENT_SECRET_ENV = "OIDC_CLIENT_SECRET"
OIDC_USERS_DB_URI_ENV = "OIDC_USERS_DB_URI"


def auth_secret_env_names(mode: str) -> tuple[str, ...]:
    """The secrets an auth mode adds to the server's env."""
    if mode == "mlflow":
        return (AUTH_ADMIN_PASSWORD_ENV, SESSION_KEY_ENVS[mode])
    if mode == "oidc":
        return (SESSION_KEY_ENVS[mode], OIDC_CLIENT_SECRET_ENV, OIDC_USERS_DB_URI_ENV)
    return ()


def auth_config_ini(default_permission: str, database_uri: str) -> str:
    """MLflow's auth app config (mode mlflow): the default permission and its database, with the
    password (a secret file). The admin comes from MLFLOW_AUTH_ADMIN_USERNAME/PASSWORD."""
    return ("[mlflow]\n"
            f"default_permission = {default_permission}\n"
            f"database_uri = {database_uri.replace('%', '%%')}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "grant_default_workspace_access = false\n")


def oidc_env(auth: "AuthConfig", public_url: str, server: "ServerConfig") -> dict[str, str]:
    """mlflow-oidc-auth's plain settings (mode oidc). The redirect URL is the public one (what the
    provider must have registered); bearer tokens must be issued to this client (OIDC_AUDIENCE),
    or any token the provider signs for any application would do. Cookies are Secure behind HTTPS.
    Its pool is sized as MLflow's, so the connection budget in config.py holds."""
    oidc = auth.oidc
    assert oidc.discovery_url and oidc.client_id, "validated by AuthConfig"
    return {
        "OIDC_DISCOVERY_URL": oidc.discovery_url,
        "OIDC_CLIENT_ID": oidc.client_id,
        "OIDC_AUDIENCE": oidc.client_id,
        "OIDC_REDIRECT_URI": f"{public_url.rstrip('/')}/callback",
        "OIDC_SCOPE": " ".join(oidc.scopes),
        "OIDC_GROUPS_ATTRIBUTE": oidc.groups_claim,
        "OIDC_GROUP_NAME": ",".join(oidc.user_groups),
        "OIDC_ADMIN_GROUP_NAME": oidc.admin_group,
        "DEFAULT_MLFLOW_PERMISSION": auth.default_permission,
        "SESSION_COOKIE_SECURE": "true" if public_url.startswith("https://") else "false",
        "OIDC_DB_POOL_SIZE": str(server.db_pool_size),
        "OIDC_DB_POOL_MAX_OVERFLOW": str(server.db_max_overflow),
    }
