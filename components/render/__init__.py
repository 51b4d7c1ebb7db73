"""Pure functions that hold the MLflow- and Nginx-specific knowledge, one module per subject:

- `endpoints`: ports, host names, origins, the public URL, the keep-alive chain, certificate names;
- `auth`: the auth apps (auth.mode mlflow, oidc), their settings and secrets;
- `server`: the MLflow server's settings, env, command and container, the backend URI, client lines;
- `database`: the steps before the server (schema upgrade, auth upgrade, role setup) and the lock keys;
- `gc`: MLflow's garbage collection as a step, and the maintenance lock it shares with backup/restore;
- `proxy`: Nginx (nginx.conf, htpasswd, its container and health checks);
- `storage`: the artifact stores (S3 policy and URIs, Azure Blob URI and credentials).

No Pulumi here: components call these inside `apply`, and the rehearsal tests call the very same
functions to run the rendered configuration natively. Secret values never enter a spec; specs only
name the secret env vars (values reach the container through the platform's secret mechanism).
Everything is importable from here (`from components import render; render.nginx_conf(...)`).
"""

from __future__ import annotations

from components.render.endpoints import (config_default, MLFLOW_PORT, PROXY_HTTP_PORT, PROXY_HTTPS_PORT,
                                         PROXY_LIVENESS_PATH, PROXY_CONNECT_TIMEOUT_SECONDS, KEEPALIVE_MARGIN_SECONDS,
                                         NGINX_DEFAULT_KEEPALIVE_SECONDS, DEFAULT_METRICS_PORT, allowed_hosts,
                                         public_origins, public_url, public_scheme, health_path,
                                         nginx_keepalive_seconds, certificate_names)
from components.render.auth import (AUTH_APPS, AUTH_DATABASE_URI_ENV, AUTH_CONFIG_ENV, AUTH_CONFIG_PATH,
                                    AUTH_ADMIN_USERNAME_ENV, AUTH_ADMIN_PASSWORD_ENV, SESSION_KEY_ENVS,
                                    OIDC_CLIENT_SECRET_ENV, OIDC_USERS_DB_URI_ENV, auth_secret_env_names,
                                    auth_config_ini, oidc_env)
from components.render.server import (BACKEND_URI_ENV, SECRETS_KEK_ENV, S3_CREDENTIAL_ENVS,
                                      MODEL_VERSION_SOURCE_REGEX_ENV, MODEL_VERSION_SOURCE_REGEX, JOB_EXECUTION_ENV,
                                      PRESIGNED_DOWNLOAD_TTL_ENV, PRESIGNED_DOWNLOAD_TTL_SECONDS, API_BODY_LIMIT_ENV,
                                      PART_SIGNER_CREDENTIAL_ENVS, METRICS_DIR,
                                      METRICS_SCRAPE_HEADER, METRICS_SCRAPE_HEADER_VALUE,
                                      METRICS_DIR_RESET, backend_store_uri, TrackingServerSettings, tracking_server_env,
                                      tracking_server_command, uvicorn_keep_alive_seconds, tracking_server_spec,
                                      tracking_server_settings, client_env_lines)
from components.render.database import (AUTH_MIGRATIONS, AUTH_UPGRADE_LOCK_KEY, AUTH_UPGRADE_SCRIPT,
                                        SCHEMA_UPGRADE_LOCK_KEY, SCHEMA_UPGRADE_SCRIPT, ROLE_SETUP_LOCK_KEY,
                                        MAINTENANCE_LOCK_KEY, DB_SETUP_ENV, DB_EXTRA_NAMES_ENV, DB_PASSWORD_ENV,
                                        DB_ADMIN_USER_ENV, DB_ADMIN_PASSWORD_ENV, ROLE_SETUP_SCRIPT,
                                        schema_upgrade_spec, auth_upgrade_spec, role_setup_spec)
from components.render.gc import (GC_LOCKED_EXIT, GC_LOCK_DATABASE, GC_LOCK_TOKEN_ENV, GC_SCRIPT, GC_HTTP_RETRIES,
                                  gc_spec)
from components.render.proxy import (API_BODY_LIMIT, NginxPaths, ProxySettings, ssha_hash, htpasswd_line, nginx_conf,
                                     proxy_health_check, reverse_proxy_spec, proxy_settings)
from components.render.storage import (artifact_bucket_policy, artifacts_destination, AZURE_CLIENT_ID_ENV,
                                       AZURE_CONNECTION_STRING_ENV, blob_artifacts_destination,
                                       PART_SIGNER_OBJECT_ACTIONS, part_signer_bucket_policy)

__all__ = [
    "API_BODY_LIMIT",
    "config_default", "MLFLOW_PORT", "PROXY_HTTP_PORT", "PROXY_HTTPS_PORT", "PROXY_LIVENESS_PATH",
    "PROXY_CONNECT_TIMEOUT_SECONDS", "KEEPALIVE_MARGIN_SECONDS", "NGINX_DEFAULT_KEEPALIVE_SECONDS",
    "DEFAULT_METRICS_PORT", "allowed_hosts", "public_origins", "public_url", "public_scheme", "health_path",
    "nginx_keepalive_seconds", "certificate_names", "AUTH_APPS", "AUTH_DATABASE_URI_ENV", "AUTH_CONFIG_ENV",
    "AUTH_CONFIG_PATH", "AUTH_ADMIN_USERNAME_ENV", "AUTH_ADMIN_PASSWORD_ENV", "SESSION_KEY_ENVS",
    "OIDC_CLIENT_SECRET_ENV", "OIDC_USERS_DB_URI_ENV", "auth_secret_env_names", "auth_config_ini", "oidc_env",
    "BACKEND_URI_ENV", "SECRETS_KEK_ENV", "S3_CREDENTIAL_ENVS", "MODEL_VERSION_SOURCE_REGEX_ENV",
    "MODEL_VERSION_SOURCE_REGEX", "JOB_EXECUTION_ENV", "PRESIGNED_DOWNLOAD_TTL_ENV", "PRESIGNED_DOWNLOAD_TTL_SECONDS",
    "API_BODY_LIMIT_ENV", "PART_SIGNER_CREDENTIAL_ENVS", "PART_SIGNER_OBJECT_ACTIONS", "part_signer_bucket_policy",
    "METRICS_DIR", "METRICS_SCRAPE_HEADER",
    "METRICS_SCRAPE_HEADER_VALUE", "METRICS_DIR_RESET", "backend_store_uri", "TrackingServerSettings",
    "tracking_server_env", "tracking_server_command", "uvicorn_keep_alive_seconds", "tracking_server_spec",
    "tracking_server_settings", "client_env_lines", "AUTH_MIGRATIONS", "AUTH_UPGRADE_LOCK_KEY",
    "AUTH_UPGRADE_SCRIPT", "SCHEMA_UPGRADE_LOCK_KEY", "SCHEMA_UPGRADE_SCRIPT", "ROLE_SETUP_LOCK_KEY",
    "MAINTENANCE_LOCK_KEY", "DB_SETUP_ENV", "DB_EXTRA_NAMES_ENV", "DB_PASSWORD_ENV", "DB_ADMIN_USER_ENV",
    "DB_ADMIN_PASSWORD_ENV", "ROLE_SETUP_SCRIPT", "schema_upgrade_spec", "auth_upgrade_spec", "role_setup_spec",
    "GC_LOCKED_EXIT", "GC_LOCK_DATABASE", "GC_LOCK_TOKEN_ENV", "GC_SCRIPT", "GC_HTTP_RETRIES", "gc_spec",
    "NginxPaths", "ProxySettings", "ssha_hash", "htpasswd_line", "nginx_conf", "proxy_health_check",
    "reverse_proxy_spec", "proxy_settings", "artifact_bucket_policy", "artifacts_destination",
    "AZURE_CLIENT_ID_ENV", "AZURE_CONNECTION_STRING_ENV", "blob_artifacts_destination"
]
