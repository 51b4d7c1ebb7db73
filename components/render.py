"""Pure functions that hold the MLflow- and Nginx-specific knowledge: server args and env, the
schema-upgrade step, nginx.conf, the htpasswd line, the backend URI.

No Pulumi here: components call these inside `apply`, and the rehearsal tests call the very same
functions to run the rendered configuration natively. Secret values never enter a spec; specs only
name the secret env vars (values reach the container through the platform's secret mechanism).
"""

from __future__ import annotations

import base64
import hashlib
import re
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Optional
from urllib.parse import quote

from components.names import PROXY_SERVICE, SERVER_SERVICE
from components.image_scripts import image_script
from components.spec import ContainerSpec, HealthCheck

from components.config import AuthConfig, ProxyConfig, ServerConfig

if TYPE_CHECKING:
    from components.config import ObservabilityConfig


def config_default(model: type, key: str):
    """A config key's default, from the one place defaults live: the config model (issue 24)."""
    return model.model_fields[key].default


MLFLOW_PORT = 5000
PROXY_HTTP_PORT = 8080
PROXY_HTTPS_PORT = 8443
# Answered by Nginx itself (liveness of the proxy); MLflow's /health is the readiness path.
PROXY_LIVENESS_PATH = "/nginx-health"
PROXY_CONNECT_TIMEOUT_SECONDS = 10
"""How long Nginx waits to connect to the server: a replica that does not accept within it is down
(the client gets 502 and retries), not slow."""
# Keep-alive chain: every hop keeps an idle connection open longer than the hop in front of it, so
# the front always closes first. Otherwise the back hop may close a connection just as the front
# sends a request on it, and the front answers 502 (AWS: "configure the idle timeout of your
# application to be larger than the idle timeout configured for the load balancer",
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout).
KEEPALIVE_MARGIN_SECONDS = 60
"""How much longer a hop keeps an idle connection than the hop in front of it; also covers Container
Apps' ingress, which rounds its idle timeout up to whole minutes (at most 59 s more)."""
NGINX_DEFAULT_KEEPALIVE_SECONDS = 75
"""Nginx's own keepalive_timeout; never rendered lower (clients straight at Nginx, on `local`)."""
BACKEND_URI_ENV = "MLFLOW_BACKEND_STORE_URI"
# The key MLflow encrypts the secrets it stores (AI Gateway provider keys) with. Unset, MLflow falls
# back to a passphrase published in its source, and anyone with the database (or a backup) can
# decrypt them: the stack always sets a generated one, kept as long as the stack.
SECRETS_KEK_ENV = "MLFLOW_CRYPTO_KEK_PASSPHRASE"
S3_CREDENTIAL_ENVS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# A model version's source is read with the server's own storage credentials
# (GET /model-versions/get-artifact), checking only the reader's permission on the registered model:
# a version whose source is a storage URI (s3://<bucket>/<experiment id>, wasbs://...) would hand
# anyone other users' artifacts. MLflow 3.17.2 checks this regex (re.search) on every CreateModelVersion
# before anything else, prompts included (mlflow/server/handlers.py, _create_model_version). It allows
# only what MLflow's own clients send: models:/ (logged models, copies), runs:/, mlflow-artifacts:/
# (register_model on a run holding an MLmodel; the UI), never with an authority (MLflow then checks
# these lie within the named run or logged model), and the prompt placeholders exactly
# (mlflow/prompt/constants.py, _PROMPT_SOURCE_PLACEHOLDERS). Every storage scheme, file: and plain
# paths are refused.
MODEL_VERSION_SOURCE_REGEX_ENV = "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX"
MODEL_VERSION_SOURCE_REGEX = r"^(?:(?:models|runs|mlflow-artifacts):/(?!/)|(?:dummy-source|prompt-template)\Z)"

# MLflow's background job runners (huey consumers): on only where server.jobExecution asks for them.
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"

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
# Each app migrates its own schema when a process starts; replicas (and the parent process and its
# workers) starting together on an empty database race. As for MLflow's schema, one step upgrades
# it first, under an advisory lock; the processes then find it at head. In mode mlflow the step
# also sets the admin's password to the one Pulumi generated (MLflow itself reads it only when it
# creates the admin), so the admin_password output stays true: after a password was changed
# through the API, or on a kept data volume under a new stack, as the role's own password is.
AUTH_MIGRATIONS = {"mlflow": "mlflow.server.auth.db.utils", "oidc": "mlflow_oidc_auth.db.utils"}
AUTH_UPGRADE_LOCK_KEY = 0x6D6C666C6F61  # "mlfloa"
AUTH_UPGRADE_SCRIPT = image_script("auth_upgrade")


# `mlflow db upgrade URL` takes the URI as an argument, which would put the password on a command
# line (visible in `ps` and `docker inspect`). Invoke the same click command from Python instead,
# reading the URI from the environment. Replicas starting together (a first deploy, a rolling MLflow
# upgrade on `aws`) each run this step, and two Alembic upgrades at once fail one of them: they take
# turns under a PostgreSQL advisory lock (held by a session of its own, released when the step ends),
# and the later ones find the schema at head and do nothing.
SCHEMA_UPGRADE_LOCK_KEY = 0x6D6C666C6F77  # "mlflow" in ASCII
SCHEMA_UPGRADE_SCRIPT = image_script("schema_upgrade")


# Where the database server is reached only from inside a private network and its admin user is
# not a superuser (RDS), MLflow's role is set up by this step, run first in the server's tasks with
# the admin's credentials (which the server itself never gets). Idempotent, like the `local`
# platform's provisioning container: creates the role once, sets its password on every run, hands
# it the database, and creates the role's other databases (DB_EXTRA_NAMES_ENV: the auth app's)
# where missing. The password is sent as a SCRAM verifier computed here, so even a statement log
# never holds it. Tasks starting together take turns under an advisory lock.
ROLE_SETUP_LOCK_KEY = 0x6D6C666C6F72  # "mlflor"
MAINTENANCE_LOCK_KEY = 0x6D6C666C6F6D  # "mlflom": backup, restore and gc never overlap on a stack
"""Taken (session-level, in the `postgres` database of the stack's server) by ops.backup,
ops.restore and the gc step; the holder names itself in application_name."""
DB_SETUP_ENV = ("MLFLOW_DB_HOST", "MLFLOW_DB_PORT", "MLFLOW_DB_NAME", "MLFLOW_DB_USER", "MLFLOW_DB_SSLMODE")
DB_EXTRA_NAMES_ENV = "MLFLOW_DB_EXTRA_NAMES"
DB_PASSWORD_ENV = "MLFLOW_DB_PASSWORD"
DB_ADMIN_USER_ENV = "MLFLOW_DB_ADMIN_USER"
DB_ADMIN_PASSWORD_ENV = "MLFLOW_DB_ADMIN_PASSWORD"
ROLE_SETUP_SCRIPT = image_script("role_setup")


def backend_store_uri(username: str, password: str, host: str, port: int, database: str,
                      driver: str = "psycopg2") -> str:
    """SQLAlchemy URI with the driver named (a bare postgresql:// means psycopg 3 under SQLAlchemy
    2.1) and user and password URL-encoded, so passwords full of @:/?#% survive."""
    return (f"postgresql+{driver}://{quote(username, safe='')}:{quote(password, safe='')}"
            f"@{host}:{port}/{quote(database, safe='')}")


def allowed_hosts(hostnames: tuple[str, ...], public_port: int) -> tuple[str, ...]:
    """Host headers MLflow's middleware accepts. Nginx forwards `$host` (no port); the `host:port`
    forms cover clients that send the port, e.g. through a proxy that keeps it."""
    hosts: list[str] = []
    for name in hostnames:
        for candidate in (name, f"{name}:{public_port}"):
            if candidate not in hosts:
                hosts.append(candidate)
    return tuple(hosts)


def public_origins(hostnames: tuple[str, ...], scheme: str, public_port: int) -> tuple[str, ...]:
    """Browser origins of the UI, for --cors-allowed-origins (default ports written both ways)."""
    default_port = {"http": 80, "https": 443}[scheme]
    origins: list[str] = []
    for name in hostnames:
        origins.append(f"{scheme}://{name}:{public_port}")
        if public_port == default_port:
            origins.append(f"{scheme}://{name}")
    return tuple(origins)


def public_url(hostname: str, scheme: str, public_port: int, static_prefix: Optional[str]) -> str:
    """The tracking URI users set: scheme, first host name, port unless default, static prefix."""
    default_port = {"http": 80, "https": 443}[scheme]
    port = "" if public_port == default_port else f":{public_port}"
    return f"{scheme}://{hostname}{port}{static_prefix or ''}"


@dataclass(frozen=True)
class TrackingServerSettings:
    """Everything the server's command and env are rendered from (no secrets)."""

    image: str
    artifacts_destination: str
    """Where proxied artifacts go, e.g. s3://bucket/prefix or wasbs://container@account.blob.core.windows.net/prefix."""
    allowed_hosts: tuple[str, ...]
    cors_allowed_origins: tuple[str, ...]
    workers: int = config_default(ServerConfig, "workers")
    db_pool_size: int = config_default(ServerConfig, "db_pool_size")
    db_max_overflow: int = config_default(ServerConfig, "db_max_overflow")
    db_pool_recycle_seconds: int = config_default(ServerConfig, "db_pool_recycle_seconds")
    static_prefix: Optional[str] = config_default(ServerConfig, "static_prefix")
    job_execution: bool = config_default(ServerConfig, "job_execution")
    ai_gateway: bool = config_default(ServerConfig, "ai_gateway")
    """MLflow's AI Gateway (LLM endpoints, provider keys stored encrypted in the database)."""
    workspaces: bool = False
    """MLflow workspaces; MLflow refuses a database with rows outside `default` without them."""
    s3_endpoint_url: Optional[str] = None
    """MinIO (or another S3-compatible) endpoint; None for AWS S3."""
    artifact_secret_env_names: tuple[str, ...] = ()
    """Env vars holding the artifact store's credentials (empty where an identity is used)."""
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """Platform-specific, non-secret env (e.g. AWS_DEFAULT_REGION)."""
    port: int = MLFLOW_PORT
    bind_host: str = "0.0.0.0"
    timeout_seconds: int = config_default(ProxyConfig, "timeout_seconds")
    """proxy.timeoutSeconds: also the idle timeout of the hop in front of the server (Service
    Connect's Envoy on aws; the Container Apps ingress on azure, in whole minutes), which uvicorn's
    keep-alive must outlast (uvicorn_keep_alive_seconds)."""
    auth_mode: str = config_default(AuthConfig, "mode")
    """proxy: MLflow checks nobody (Nginx checks one user); mlflow, oidc: an auth app (AUTH_APPS) does."""
    auth_admin_username: str = config_default(AuthConfig, "admin_username")
    """The admin MLflow's auth app creates on its first start (mlflow)."""
    auth_env: Mapping[str, str] = field(default_factory=dict)
    """The oidc plugin's settings (oidc_env), besides its secrets."""
    metrics_dir: Optional[str] = None
    """Prometheus metrics (--expose-prometheus): the directory the worker processes share, emptied
    when the server starts; None: off."""


def tracking_server_env(settings: TrackingServerSettings) -> dict[str, str]:
    """Non-secret env of the server (pool sizing, job runners, S3 endpoint)."""
    env = {
        # SQLAlchemy pool per engine; worst case is checked against max_connections in config.py.
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(settings.db_pool_size),
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(settings.db_max_overflow),
        "MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE": str(settings.db_pool_recycle_seconds),
        # Background job runners (huey workers) only when used.
        JOB_EXECUTION_ENV: "true" if settings.job_execution else "false",
        # MLflow turns its AI Gateway on unless told otherwise: here only when the config asks for it.
        "MLFLOW_ENABLE_AI_GATEWAY": "true" if settings.ai_gateway else "false",
        MODEL_VERSION_SOURCE_REGEX_ENV: MODEL_VERSION_SOURCE_REGEX,
        "PYTHONUNBUFFERED": "1",
    }
    if settings.s3_endpoint_url:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
        env["AWS_DEFAULT_REGION"] = "us-east-1"
    if settings.auth_mode == "mlflow":
        env[AUTH_CONFIG_ENV] = AUTH_CONFIG_PATH
        env[AUTH_ADMIN_USERNAME_ENV] = settings.auth_admin_username
    env.update(settings.auth_env)
    env.update(settings.extra_env)
    return env


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


def tracking_server_command(settings: TrackingServerSettings) -> tuple[str, ...]:
    """`mlflow server` arguments. The backend URI comes from MLFLOW_BACKEND_STORE_URI (secret env),
    never from an argument; the security middleware stays on with explicit hosts and origins."""
    command = [
        "mlflow", "server",
        "--host", settings.bind_host,
        "--port", str(settings.port),
        "--workers", str(settings.workers),
        "--serve-artifacts",
        "--artifacts-destination", settings.artifacts_destination,
        "--allowed-hosts", ",".join(settings.allowed_hosts),
        "--cors-allowed-origins", ",".join(settings.cors_allowed_origins),
        "--uvicorn-opts", f"--timeout-keep-alive {uvicorn_keep_alive_seconds(settings)}",
    ]
    if settings.static_prefix:
        command += ["--static-prefix", settings.static_prefix]
    if settings.workspaces:
        command.append("--enable-workspaces")
    if settings.auth_mode in AUTH_APPS:
        command += ["--app-name", AUTH_APPS[settings.auth_mode]]
    if settings.metrics_dir:
        # Each uvicorn worker writes its counters to files in this directory and /metrics adds them up
        # (prometheus_client's multiprocess mode); files a previous start left (a restarted container
        # keeps its file system) would be added too, so the directory starts empty.
        command += ["--expose-prometheus", settings.metrics_dir]
        return ("sh", "-c", METRICS_DIR_RESET, "sh", settings.metrics_dir, *command)
    return tuple(command)


def uvicorn_keep_alive_seconds(settings: TrackingServerSettings) -> int:
    """uvicorn's keep-alive (its default, 5 s, is far below any proxy's idle timeout): longer than
    the idle timeout of the hop in front of the server. `mlflow server` passes --uvicorn-opts on to
    uvicorn (mlflow/server/__init__.py, _build_uvicorn_command, MLflow 3.17.2)."""
    return settings.timeout_seconds + KEEPALIVE_MARGIN_SECONDS


def nginx_keepalive_seconds(front_idle_timeout_seconds: Optional[int]) -> int:
    """Nginx's keepalive_timeout: longer than the idle timeout of what sits in front of it (the
    ALB's, the Container Apps ingress's), never below Nginx's own default."""
    if front_idle_timeout_seconds is None:
        return NGINX_DEFAULT_KEEPALIVE_SECONDS
    return max(NGINX_DEFAULT_KEEPALIVE_SECONDS, front_idle_timeout_seconds + KEEPALIVE_MARGIN_SECONDS)


METRICS_DIR = "/tmp/mlflow-prometheus"
# The auth apps ask /metrics for credentials too; mlflow_guard (in the image) answers it without them
# when Nginx's internal listener marks the request so; the public listener clears the mark.
METRICS_SCRAPE_HEADER = "X-Mlflow-Platform-Listener"
METRICS_SCRAPE_HEADER_VALUE = "internal"
METRICS_DIR_RESET = 'rm -rf "$1" && mkdir -p "$1" && shift && exec "$@"'


GC_LOCKED_EXIT = 75
"""EX_TEMPFAIL: the gc step found the maintenance lock held (a backup or restore is running); it
changed nothing and the next scheduled gc does the work."""
GC_LOCK_DATABASE = "postgres"
"""Where the maintenance lock lives (ops/lock.py): never the tracking database, which a restore renames."""
GC_LOCK_TOKEN_ENV = "MLFLOW_MAINTENANCE_LOCK_TOKEN"
"""Set (scripts/gc on the local stack): the gc step runs under the lock its tool holds, in the session
named `... lock <token>` (ops/lock.py), instead of taking it; it stops when that session loses it."""

# Upstream `mlflow gc` (mlflow/cli/__init__.py, _gc_tracking_resources, MLflow 3.17.2) hard-deletes
# every deleted experiment older than --older-than, and the ORM cascade (SqlRun.experiment,
# cascade="all") takes *all* its runs, also ones restored since (restore_run works inside a deleted
# experiment); it hard-deletes deleted runs, files included, that a registered model version's
# source or run_id still points at (the version stays READY, its files gone). The gc step hands
# MLflow's gc the ids it may touch instead: explicit lists (run_ids=[] means none; no experiments
# means skip_experiments), which upstream checks again (deleted, old enough) before deleting.

# MLflow 3.17.2's Blob repository refuses to delete a path holding no blob ("No such file or
# directory", mlflow/store/artifact/azure_blob_artifact_repo.py, delete_artifacts l.231-232; S3's
# deletes nothing quietly): through the artifacts server that is an HTTP 500, retried for minutes, and
# `mlflow gc` stops at the first deleted run that logged no artifact, every time it runs. So a run's
# artifacts are deleted only when the server lists some; a failure to list or delete still stops gc.
GC_SCRIPT = image_script("gc")


GC_HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def gc_spec(settings: TrackingServerSettings, older_than: str, timeout_seconds: int = 3600,
            name: str = "mlflow-gc") -> ContainerSpec:
    """`mlflow gc --older-than` as a one-off container from the server's image with the server's
    storage access and database URI: deleted runs' rows and artifacts go for good."""
    extra = ("--all-workspaces",) if settings.workspaces else ()
    env = {key: value for key, value in tracking_server_env(settings).items()
           if key.startswith(("MLFLOW_S3_", "AWS_", "AZURE_")) or key == "PYTHONUNBUFFERED"}
    # gc's client talks to its own artifacts server on loopback, whose storage SDK has retried
    # already: a 500 there is the store refusing, not the network. Fail within seconds instead of
    # MLflow's default backoff (minutes per run); the next scheduled gc takes it up again.
    env.update(GC_HTTP_RETRIES)
    # Its artifacts-only server runs no jobs; MLflow's default (true) would start seven huey consumers
    # that each import MLflow (~230 MiB apiece: past a 2 GiB task) and outlive the server's shutdown.
    env[JOB_EXECUTION_ENV] = "false"
    return ContainerSpec(
        name=name,
        image=settings.image,
        command=("python", "-c", GC_SCRIPT, settings.artifacts_destination, older_than, str(timeout_seconds), *extra),
        env=env,
        secret_env_names=(BACKEND_URI_ENV, *settings.artifact_secret_env_names),
        user="mlflow",
    )


def health_path(static_prefix: Optional[str]) -> str:
    """Under --static-prefix P only P/health is exempt from the host check."""
    return f"{static_prefix or ''}/health"


def tracking_server_spec(settings: TrackingServerSettings, name: str = SERVER_SERVICE) -> ContainerSpec:
    """The long-running MLflow server."""
    path = health_path(settings.static_prefix)
    probe = (f"import urllib.request; urllib.request.urlopen("
             f"'http://127.0.0.1:{settings.port}{path}', timeout=4)")
    return ContainerSpec(
        name=name,
        image=settings.image,
        command=tracking_server_command(settings),
        env=tracking_server_env(settings),
        secret_env_names=(BACKEND_URI_ENV, SECRETS_KEK_ENV, *settings.artifact_secret_env_names,
                          *auth_secret_env_names(settings.auth_mode)),
        runtime_file_paths=(AUTH_CONFIG_PATH,) if settings.auth_mode == "mlflow" else (),
        ports=(settings.port,),
        health_check=HealthCheck(command=("python", "-c", probe), http_path=path, port=settings.port,
                                 start_period_seconds=60),
        user="mlflow",
    )


def schema_upgrade_spec(settings: TrackingServerSettings, name: str = "mlflow-db-upgrade") -> ContainerSpec:
    """The one-off step that brings the schema to MLflow's Alembic head before any worker starts
    (several workers upgrading at once race; several of these steps take turns)."""
    return ContainerSpec(
        name=name,
        image=settings.image,
        command=("python", "-c", SCHEMA_UPGRADE_SCRIPT),
        env={"PYTHONUNBUFFERED": "1"},
        secret_env_names=(BACKEND_URI_ENV,),
        user="mlflow",
    )


def auth_upgrade_spec(settings: TrackingServerSettings, name: str = "mlflow-auth-db-upgrade") -> ContainerSpec:
    """The one-off step that brings the auth app's own schema to its head (modes mlflow, oidc)."""
    admin = settings.auth_mode == "mlflow"
    return ContainerSpec(
        name=name,
        image=settings.image,
        command=("python", "-c", AUTH_UPGRADE_SCRIPT, AUTH_MIGRATIONS[settings.auth_mode]),
        env={"PYTHONUNBUFFERED": "1", **({AUTH_ADMIN_USERNAME_ENV: settings.auth_admin_username} if admin else {})},
        secret_env_names=(AUTH_DATABASE_URI_ENV, *((AUTH_ADMIN_PASSWORD_ENV,) if admin else ())),
        user="mlflow",
    )


def role_setup_spec(image: str, host: str, port: int, database: str, username: str, sslmode: str = "require",
                    name: str = "mlflow-db-setup", extra_databases: tuple[str, ...] = ()) -> ContainerSpec:
    """The step that sets up MLflow's role with the database admin's credentials (see ROLE_SETUP_SCRIPT)."""
    extra = {DB_EXTRA_NAMES_ENV: ",".join(extra_databases)} if extra_databases else {}
    return ContainerSpec(
        name=name,
        image=image,
        command=("python", "-c", ROLE_SETUP_SCRIPT),
        env=dict(zip(DB_SETUP_ENV, (host, str(port), database, username, sslmode), strict=True))
        | extra | {"PYTHONUNBUFFERED": "1"},
        secret_env_names=(DB_PASSWORD_ENV, DB_ADMIN_USER_ENV, DB_ADMIN_PASSWORD_ENV),
        user="mlflow",
    )


@dataclass(frozen=True)
class NginxPaths:
    """Where nginx reads and writes; the container's defaults, remapped by the rehearsal."""

    config: str = "/etc/nginx/nginx.conf"
    htpasswd: str = "/etc/nginx/htpasswd"
    certificate: str = "/etc/nginx/tls/server.crt"
    private_key: str = "/etc/nginx/tls/server.key"
    pid: str = "/tmp/nginx.pid"
    temp_dir: str = "/tmp"
    access_log: str = "/dev/stdout"
    error_log: str = "/dev/stderr"
    mime_types: str = "/etc/nginx/mime.types"

    @classmethod
    def under(cls, directory: str) -> "NginxPaths":
        """The rendered and runtime files in `directory` (where the platform can place them)."""
        return cls(config=f"{directory}/nginx.conf", htpasswd=f"{directory}/htpasswd",
                   certificate=f"{directory}/tls/server.crt", private_key=f"{directory}/tls/server.key")


@dataclass(frozen=True)
class ProxySettings:
    """Everything nginx.conf is rendered from."""

    upstream: str
    """host:port of the MLflow server as nginx reaches it."""
    listen_port: int = PROXY_HTTP_PORT
    listen_address: Optional[str] = None
    tls: bool = False
    static_prefix: Optional[str] = None
    client_max_body_size: str = config_default(ProxyConfig, "client_max_body_size")
    timeout_seconds: int = config_default(ProxyConfig, "timeout_seconds")
    keepalive_timeout_seconds: int = NGINX_DEFAULT_KEEPALIVE_SECONDS
    """How long Nginx keeps an idle client connection (nginx_keepalive_seconds)."""
    realm: str = "MLflow"
    paths: NginxPaths = field(default_factory=NginxPaths)
    basic_auth: bool = True
    """Check the one htpasswd user here (auth.mode proxy); otherwise MLflow checks each request
    and Nginx passes the Authorization header on."""
    metrics_port: Optional[int] = None
    """The internal listener for scrapers (MLflow's /metrics, Nginx's /nginx_status); None: off.
    The public listener refuses /metrics either way."""
    metrics_host: str = "localhost"
    """The Host header Nginx sends MLflow for /metrics (one of its --allowed-hosts)."""


def ssha_hash(password: str, salt: bytes) -> str:
    """Nginx's `{SSHA}` scheme: base64(sha1(password + salt) + salt).

    Nginx checks the hash on every request. bcrypt (cost 10, pulumi-random's bcrypt_hash) costs
    ~70 ms of CPU per request there (measured: 83.6 ms median through Nginx vs 10.5 ms with this
    scheme, bench/client_latency.py). A slow hash protects guessable passwords; the generated one is
    32 random characters, out of reach of any brute force, so the fast salted hash loses nothing.
    """
    if len(salt) < 4:
        raise ValueError("use a salt of at least 4 bytes")
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def htpasswd_line(username: str, password_hash: str) -> str:
    """One htpasswd entry from a bcrypt hash (pulumi-random's RandomPassword.bcrypt_hash) or an
    `{SSHA}` hash (ssha_hash)."""
    if ":" in username or "\n" in username or not username:
        raise ValueError("basic-auth user names cannot be empty or contain ':' or a newline")
    if not password_hash.startswith(("$2a$", "$2b$", "$2y$", "{SSHA}")):
        raise ValueError("expected a bcrypt ($2a$/$2b$/$2y$) or {SSHA} hash")
    return f"{username}:{password_hash}\n"


def nginx_conf(settings: ProxySettings) -> str:
    """nginx.conf for the proxy: basic auth, TLS, unlimited (or configured) streaming uploads,
    /health open, Host forwarded for MLflow's host check, and under a static prefix the artifact
    routes rewritten to the server's unprefixed streaming endpoint."""
    p = settings.paths
    prefix = settings.static_prefix or ""
    listen = f"{settings.listen_address}:{settings.listen_port}" if settings.listen_address else str(settings.listen_port)
    tls_lines = ""
    if settings.tls:
        listen += " ssl"
        tls_lines = (
            f"        ssl_certificate {p.certificate};\n"
            f"        ssl_certificate_key {p.private_key};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;\n"
            "        ssl_prefer_server_ciphers off;\n"
            "        ssl_session_cache shared:SSL:10m;\n"
            "        ssl_session_timeout 1d;\n"
        )
    timeout = f"{settings.timeout_seconds}s"
    health = health_path(settings.static_prefix)
    upstream = "            proxy_pass http://mlflow_upstream;\n"
    locations = [
        # Nginx's own liveness, answered here: a probe that went through to MLflow would restart
        # every proxy (and cut every transfer) whenever the server blips.
        f"        location = {PROXY_LIVENESS_PATH} {{\n"
        "            auth_basic off;\n"
        "            access_log off;\n"
        "            default_type text/plain;\n"
        "            return 200 \"ok\\n\";\n"
        "        }\n",
        # Health is open: load balancers and container probes call it without credentials.
        "        location = /health {\n"
        "            auth_basic off;\n"
        f"            rewrite ^ {health} break;\n{upstream}"
        "        }\n"
    ]
    if prefix:
        locations.append(
            f"        location = {prefix}/health {{\n"
            f"            auth_basic off;\n{upstream}"
            "        }\n"
        )
        # The server mounts its streaming artifact router without the prefix; the prefixed path
        # goes through a WSGI bridge that holds whole uploads in memory. Send uploads to the former.
        # That router has only file GET and PUT (.../artifacts/<path>); listing, DELETE, multipart
        # and presigned routes exist under the prefix only, so those are passed on unchanged.
        locations.append(
            f"        location {prefix}/api/2.0/mlflow-artifacts/ {{\n"
            # (a regex location: a prefix one ending in "/" would 301 the listing URI .../artifacts)
            f"            location ~ ^{prefix}/api/2\\.0/mlflow-artifacts/artifacts/. {{\n"
            "                if ($request_method ~ ^(GET|PUT)$) {\n"
            f"                    rewrite ^{prefix}(/api/2\\.0/mlflow-artifacts/.*)$ $1 break;\n"
            "                }\n"
            f"    {upstream}"
            "            }\n"
            f"{upstream}"
            "        }\n"
        )
    # With an S3-compatible artifact store, MLflow 3.17 advertises presigned multipart transfers in
    # server-info; clients then download every artifact (and upload those >= 500 MB) at the
    # server's own S3 endpoint, past this proxy (on `local` http://minio:9000, which users cannot
    # reach). Advertise them off so artifact transfers stay proxied.
    for api in ("api", "ajax-api"):
        locations.append(
            f"        location = {prefix}/{api}/3.0/mlflow/server-info {{\n"
            # (no proxy_set_header here: one would stop the server-level Host header being inherited;
            # the server answers uncompressed JSON, which sub_filter can read)
            "            sub_filter_types application/json;\n"
            "            sub_filter_once off;\n"
            "            sub_filter '\"multipart_downloads_enabled\":true' '\"multipart_downloads_enabled\":false';\n"
            "            sub_filter '\"multipart_uploads_enabled\":true' '\"multipart_uploads_enabled\":false';\n"
            f"{upstream}"
            "        }\n"
        )
    # MLflow's Prometheus metrics are for scrapers on the internal listener, never for the public.
    for path in sorted({"/metrics", f"{prefix}/metrics"}):
        locations.append(f"        location = {path} {{\n            return 404;\n        }}\n")
    locations.append(f"        location / {{\n{upstream}        }}\n")

    return (
        "# Rendered by components/render.py; do not edit by hand.\n"
        "worker_processes auto;\n"
        f"pid {p.pid};\n"
        f"error_log {p.error_log} warn;\n"
        "events {\n    worker_connections 1024;\n}\n"
        "http {\n"
        f"    include {p.mime_types};\n"
        "    default_type application/octet-stream;\n"
        f"    access_log {p.access_log};\n"
        "    server_tokens off;\n"
        "    sendfile on;\n"
        "    tcp_nodelay on;\n"
        f"    client_body_temp_path {p.temp_dir}/client_body;\n"
        f"    proxy_temp_path {p.temp_dir}/proxy;\n"
        f"    fastcgi_temp_path {p.temp_dir}/fastcgi;\n"
        f"    uwsgi_temp_path {p.temp_dir}/uwsgi;\n"
        f"    scgi_temp_path {p.temp_dir}/scgi;\n"
        "    upstream mlflow_upstream {\n"
        f"        server {settings.upstream};\n"
        "    }\n"
        "    server {\n"
        f"        listen {listen};\n"
        "        server_name _;\n"
        f"{tls_lines}"
        f"{_refuse_empty_artifact_path(prefix)}"
        # Artifacts can be gigabytes: no body limit by default, stream both ways, long timeouts.
        f"        client_max_body_size {settings.client_max_body_size};\n"
        "        proxy_request_buffering off;\n"
        "        proxy_buffering off;\n"
        f"        client_body_timeout {timeout};\n"
        f"        send_timeout {timeout};\n"
        f"        proxy_read_timeout {timeout};\n"
        f"        proxy_send_timeout {timeout};\n"
        # Idle client connections outlast the load balancer's or ingress's in front (see
        # KEEPALIVE_MARGIN_SECONDS): it, not Nginx, closes them.
        f"        keepalive_timeout {settings.keepalive_timeout_seconds}s;\n"
        f"        proxy_connect_timeout {PROXY_CONNECT_TIMEOUT_SECONDS}s;\n"
        # Forward the public Host: MLflow's middleware checks it against --allowed-hosts. No
        # upstream keepalive: measured, it adds latency with a multi-worker uvicorn server.
        "        proxy_http_version 1.1;\n"
        "        proxy_set_header Host $host;\n"
        "        proxy_set_header X-Real-IP $remote_addr;\n"
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "        proxy_set_header X-Forwarded-Proto $scheme;\n"
        "        proxy_set_header X-Forwarded-Host $host;\n"
        "        proxy_set_header Connection \"\";\n"
        # Only the internal listener marks a request as a scrape (mlflow_guard answers /metrics then).
        f"        proxy_set_header {METRICS_SCRAPE_HEADER} \"\";\n"
        + (f"        auth_basic \"{settings.realm}\";\n"
           f"        auth_basic_user_file {p.htpasswd};\n" if settings.basic_auth else "")
        + f"{''.join(locations)}"
        "    }\n"
        f"{_metrics_server(settings)}"
        "}\n"
    )


def _refuse_empty_artifact_path(prefix: str) -> str:
    """MLflow's artifact routes (.../mlflow-artifacts/artifacts/<path>: download, upload, delete;
    .../mpu/<step>/<path>) are authorized by MLflow's auth app against ?path= when <path> names no
    experiment, and a path MLflow reads as empty then works on the whole artifact root, everyone's
    objects: a download fetches the bucket to the server's disk (issue 29). MLflow reads many
    spellings as empty (`file:`, `;`, `?`, spaces and control characters stripped, repeated
    percent-decoding: mlflow/utils/uri.py validate_path_is_safe, _decode), so this is an allow-list:
    the path must start with the experiment id the server writes under (`<id>`, or
    `workspaces/<name>/<id>`) and hold no `%` left after Nginx's own decoding. Refused before any
    location is chosen (server-level `if`s run in the rewrite phase, ahead of the prefix rewrite and
    of auth), in both API forms, with and without the prefix (the streaming router answers the
    unprefixed path under a prefix too), on Nginx's decoded, normalised URI. The list route
    (.../artifacts?path=) has no path segment and is untouched."""
    root = f"(?:{re.escape(prefix)})?" if prefix else ""
    route = f"^{root}/(?:ajax-)?api/2\\.0/mlflow-artifacts/(?:artifacts|mpu/[a-z]+)/"
    well_formed = f"{route}(?:workspaces/[A-Za-z0-9._-]+/)?[0-9]+(?:/[^%]*)?$"
    return ('        set $mlflow_artifact_path "";\n'
            f'        if ($uri ~ "{route}") {{\n'
            '            set $mlflow_artifact_path "route";\n'
            "        }\n"
            f'        if ($uri !~ "{well_formed}") {{\n'
            '            set $mlflow_artifact_path "${mlflow_artifact_path}-malformed";\n'
            "        }\n"
            '        if ($mlflow_artifact_path = "route-malformed") {\n'
            "            return 400 \"an artifact path starts with its experiment id\\n\";\n"
            "        }\n")


def _metrics_server(settings: ProxySettings) -> str:
    """The internal listener: MLflow's /metrics (sent with a Host MLflow allows) and Nginx's own
    connection counters; nothing else."""
    if settings.metrics_port is None:
        return ""
    listen = (f"{settings.listen_address}:{settings.metrics_port}" if settings.listen_address
              else str(settings.metrics_port))
    return (
        "    server {\n"
        f"        listen {listen};\n"
        "        server_name _;\n"
        "        location = /metrics {\n"
        f"            proxy_set_header Host {settings.metrics_host};\n"
        f"            proxy_set_header {METRICS_SCRAPE_HEADER} {METRICS_SCRAPE_HEADER_VALUE};\n"
        "            proxy_pass http://mlflow_upstream/metrics;\n"
        "        }\n"
        "        location = /nginx_status {\n"
        "            stub_status;\n"
        "        }\n"
        "        location / {\n"
        "            return 404;\n"
        "        }\n"
        "    }\n"
    )


def proxy_health_check(settings: ProxySettings) -> HealthCheck:
    """Liveness: Nginx's own location (busybox wget in the alpine image), never through to MLflow.
    Readiness (where a platform has it): MLflow's /health through this Nginx."""
    scheme = "https" if settings.tls else "http"
    url = f"{scheme}://127.0.0.1:{settings.listen_port}{PROXY_LIVENESS_PATH}"
    command = ("wget", "-q", "-O", "/dev/null", *(("--no-check-certificate",) if settings.tls else ()), url)
    return HealthCheck(command=command, http_path=PROXY_LIVENESS_PATH, port=settings.listen_port,
                       readiness_path="/health")


def reverse_proxy_spec(settings: ProxySettings, image: str, name: str = PROXY_SERVICE) -> ContainerSpec:
    """The nginx container: rendered nginx.conf as a plain file; htpasswd and TLS material are
    runtime files (their content arrives at deploy time, the key and htpasswd as secrets)."""
    runtime_files = [settings.paths.htpasswd] if settings.basic_auth else []
    if settings.tls:
        runtime_files += [settings.paths.certificate, settings.paths.private_key]
    return ContainerSpec(
        name=name,
        image=image,
        command=("nginx", "-c", settings.paths.config, "-g", "daemon off;"),
        files={settings.paths.config: nginx_conf(settings)},
        runtime_file_paths=tuple(runtime_files),
        ports=(settings.listen_port, *((settings.metrics_port,) if settings.metrics_port else ())),
        health_check=proxy_health_check(settings),
        user="nginx",
    )


def client_env_lines(tracking_uri: str, username: Optional[str], password: Optional[str],
                     certificate_path: Optional[str] = None) -> str:
    """The `export MLFLOW_TRACKING_*` lines a user pastes (contains the password: keep secret).
    Without a user (single sign-on), each user adds their own name and access token."""
    lines = [f"export MLFLOW_TRACKING_URI={_shell_quote(tracking_uri)}"]
    if username is not None and password is not None:
        lines += [f"export MLFLOW_TRACKING_USERNAME={_shell_quote(username)}",
                  f"export MLFLOW_TRACKING_PASSWORD={_shell_quote(password)}"]
    if certificate_path:
        lines.append(f"export MLFLOW_TRACKING_SERVER_CERT_PATH={_shell_quote(certificate_path)}")
    return "\n".join(lines) + "\n"


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def public_scheme(proxy: "ProxyConfig") -> str:
    return "https" if proxy.tls != "off" else "http"


def tracking_server_settings(server: "ServerConfig", proxy: "ProxyConfig", hostnames: tuple[str, ...], *,
                             image: str, artifacts_destination: str,
                             s3_endpoint_url: Optional[str] = None,
                             artifact_secret_env_names: tuple[str, ...] = (),
                             extra_env: Optional[Mapping[str, str]] = None,
                             scheme: Optional[str] = None,
                             port: Optional[int] = None,
                             auth: Optional["AuthConfig"] = None,
                             observability: Optional["ObservabilityConfig"] = None) -> TrackingServerSettings:
    """The server settings a stack's config renders to: the one place config becomes flags,
    used by the TrackingServer component and by the rehearsal alike. `scheme` and `port` are what
    users see (default: the proxy's own, as on `local`; a cloud load balancer has its own)."""
    scheme = scheme or public_scheme(proxy)
    port = port or proxy.port
    return TrackingServerSettings(
        image=image,
        artifacts_destination=artifacts_destination,
        allowed_hosts=allowed_hosts(hostnames, port),
        cors_allowed_origins=public_origins(hostnames, scheme, port),
        workers=server.workers,
        db_pool_size=server.db_pool_size,
        db_max_overflow=server.db_max_overflow,
        db_pool_recycle_seconds=server.db_pool_recycle_seconds,
        static_prefix=server.static_prefix,
        job_execution=server.job_execution,
        ai_gateway=server.ai_gateway,
        workspaces=server.workspaces,
        s3_endpoint_url=s3_endpoint_url,
        artifact_secret_env_names=artifact_secret_env_names,
        extra_env=dict(extra_env or {}),
        timeout_seconds=proxy.timeout_seconds,
        auth_mode=auth.mode if auth else config_default(AuthConfig, "mode"),
        auth_admin_username=auth.admin_username if auth else config_default(AuthConfig, "admin_username"),
        auth_env=(oidc_env(auth, public_url(hostnames[0], scheme, port, server.static_prefix), server)
                  if auth and auth.mode == "oidc" else {}),
        metrics_dir=METRICS_DIR if observability is None or observability.prometheus else None,
    )


def proxy_settings(proxy: "ProxyConfig", server: "ServerConfig", upstream: str,
                   paths: NginxPaths = NginxPaths(), auth: Optional["AuthConfig"] = None,
                   observability: Optional["ObservabilityConfig"] = None,
                   hostnames: tuple[str, ...] = ("localhost",),
                   front_idle_timeout_seconds: Optional[int] = None) -> ProxySettings:
    """The nginx settings a stack's config renders to (container ports; the rehearsal remaps
    listen address, port and paths only). `front_idle_timeout_seconds`: the idle timeout of what
    sits in front of Nginx (PublicEntry.idle_timeout_seconds; None: clients connect directly)."""
    metrics = observability is None or observability.prometheus
    tls = proxy.tls != "off"
    return ProxySettings(
        upstream=upstream,
        listen_port=PROXY_HTTPS_PORT if tls else PROXY_HTTP_PORT,
        tls=tls,
        static_prefix=server.static_prefix,
        client_max_body_size=proxy.client_max_body_size,
        timeout_seconds=proxy.timeout_seconds,
        keepalive_timeout_seconds=nginx_keepalive_seconds(front_idle_timeout_seconds),
        paths=paths,
        basic_auth=auth is None or auth.mode == "proxy",
        metrics_port=(observability.metrics_port if observability else DEFAULT_METRICS_PORT) if metrics else None,
        metrics_host=hostnames[0],
    )


DEFAULT_METRICS_PORT = 9180


def artifact_bucket_policy(bucket: str, prefix: str = "") -> dict:
    """The S3 actions the MLflow server needs on its artifact bucket, and nothing else: list the
    bucket (under the prefix), read/write/delete objects, multipart uploads. Used for the MinIO
    user on `local` and for the task role on AWS."""
    key_prefix = f"{prefix}/" if prefix else ""
    list_statement: dict = {
        "Effect": "Allow",
        "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
        "Resource": [f"arn:aws:s3:::{bucket}"],
    }
    if prefix:
        list_statement["Condition"] = {"StringLike": {"s3:prefix": [f"{key_prefix}*"]}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            list_statement,
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                           "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                "Resource": [f"arn:aws:s3:::{bucket}/{key_prefix}*"],
            },
        ],
    }


def artifacts_destination(bucket: str, prefix: str = "") -> str:
    """s3://bucket/ or s3://bucket/prefix: where the server puts proxied artifacts."""
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}/"


# MLflow's Azure Blob repository (3.17) authenticates with AZURE_STORAGE_CONNECTION_STRING, else
# AZURE_STORAGE_ACCESS_KEY, else DefaultAzureCredential, which takes a user-assigned managed identity
# from AZURE_CLIENT_ID. The azure stack sets the last and no key; the rehearsal, against Azurite, the first.
AZURE_CLIENT_ID_ENV = "AZURE_CLIENT_ID"
AZURE_CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"


def blob_artifacts_destination(container: str, account: str, prefix: str = "") -> str:
    """wasbs://container@account.blob.core.windows.net/prefix: MLflow's URI for a Blob container."""
    return f"wasbs://{container}@{account}.blob.core.windows.net/{prefix}"


def certificate_names(hostnames) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the self-signed certificate for the public host names: addresses go
    to IP SANs, names to DNS SANs; 127.0.0.1 when no address is given, so a local client can connect."""
    def is_ip(host: str) -> bool:
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return False

    return [h for h in hostnames if not is_ip(h)], [h for h in hostnames if is_ip(h)] or ["127.0.0.1"]
