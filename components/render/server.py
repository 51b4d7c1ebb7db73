"""The MLflow server: its settings, environment, command line and container, the backend URI, and
the lines a user pastes to reach it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Optional
from urllib.parse import quote

from components.config import ArtifactsConfig, AuthConfig, ProxyConfig, ServerConfig
from components.names import SERVER_SERVICE
from components.render.auth import (AUTH_ADMIN_USERNAME_ENV, AUTH_APPS, AUTH_CONFIG_ENV, AUTH_CONFIG_PATH,
                                    auth_secret_env_names, oidc_env)
from components.render.endpoints import (KEEPALIVE_MARGIN_SECONDS, MLFLOW_PORT, allowed_hosts, config_default,
                                         health_path, public_origins, public_scheme, public_url)
from components.spec import ContainerSpec, HealthCheck

if TYPE_CHECKING:
    from components.config import ObservabilityConfig


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

# artifacts.transfer direct: how long a presigned download URL the server hands out stays valid. MLflow 3.17.2
# reads it for GET .../mlflow-artifacts/presigned/<path> (mlflow/server/handlers.py, _get_presigned_download_url;
# its default, mlflow/environment_variables.py); the client asks again for a chunk whose URL failed
# (mlflow/store/artifact/http_artifact_repo.py, _multipart_download). Pinned, so the bound the README states is the
# deployed one. Upload URLs are MLflow's own: S3 upload parts the SDK's 3600 s (s3_artifact_repo.py
# create_multipart_upload passes no ExpiresIn), Blob blocks a SAS of one hour (azure_blob_artifact_repo.py).
PRESIGNED_DOWNLOAD_TTL_ENV = "MLFLOW_PRESIGNED_DOWNLOAD_URL_TTL_SECONDS"
PRESIGNED_DOWNLOAD_TTL_SECONDS = 300

# artifacts.transfer direct: Nginx's limit on API bodies (proxy.api_body_limit), in bytes. MLflow's client completes a
# direct upload with one request listing every part's URL (mlflow/store/artifact/http_artifact_repo.py,
# complete_multipart_upload); mlflow_guard.artifacts refuses an upload of more parts than that body can list within
# this limit before it signs anything, so the server and Nginx agree (second cloud review of issue 26).
API_BODY_LIMIT_ENV = "MLFLOW_PLATFORM_API_BODY_LIMIT_BYTES"

# artifacts.transfer direct on `local`: the MinIO key that signs the part URLs of a direct upload, and nothing else
# (render.storage.part_signer_bucket_policy says why); mlflow_guard.artifacts reads it. Secret env of the server
# only (not of gc, which starts no upload).
PART_SIGNER_CREDENTIAL_ENVS = ("MLFLOW_PLATFORM_PART_SIGNER_ACCESS_KEY_ID",
                               "MLFLOW_PLATFORM_PART_SIGNER_SECRET_ACCESS_KEY")


def backend_store_uri(username: str, password: str, host: str, port: int, database: str,
                      driver: str = "psycopg2") -> str:
    """SQLAlchemy URI with the driver named (a bare postgresql:// means psycopg 3 under SQLAlchemy
    2.1) and user and password URL-encoded, so passwords full of @:/?#% survive."""
    return (f"postgresql+{driver}://{quote(username, safe='')}:{quote(password, safe='')}"
            f"@{host}:{port}/{quote(database, safe='')}")


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
    part_signer_secret_env_names: tuple[str, ...] = ()
    """PART_SIGNER_CREDENTIAL_ENVS where the store gives a part signer's key (local with direct transfers)."""
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
    direct_transfers: bool = False
    """artifacts.transfer direct: clients move large artifacts with presigned URLs the server signs for the
    store's endpoint (`s3_endpoint_url`, which the clients must reach); False: every byte through the server."""
    api_body_limit_bytes: int = 16 * 1024 * 1024
    """Nginx's limit on API bodies (proxy.api_body_limit of proxy.clientMaxBodySize): with direct transfers, what
    the completion of a multipart upload may weigh (API_BODY_LIMIT_ENV)."""


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
    if settings.direct_transfers:
        env[PRESIGNED_DOWNLOAD_TTL_ENV] = str(PRESIGNED_DOWNLOAD_TTL_SECONDS)
        env[API_BODY_LIMIT_ENV] = str(settings.api_body_limit_bytes)
    if settings.auth_mode == "mlflow":
        env[AUTH_CONFIG_ENV] = AUTH_CONFIG_PATH
        env[AUTH_ADMIN_USERNAME_ENV] = settings.auth_admin_username
    env.update(settings.auth_env)
    env.update(settings.extra_env)
    return env


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


METRICS_DIR = "/tmp/mlflow-prometheus"
# The auth apps ask /metrics for credentials too; mlflow_guard (in the image) answers it without them
# when Nginx's internal listener marks the request so; the public listener clears the mark.
METRICS_SCRAPE_HEADER = "X-Mlflow-Platform-Listener"
METRICS_SCRAPE_HEADER_VALUE = "internal"
METRICS_DIR_RESET = 'rm -rf "$1" && mkdir -p "$1" && shift && exec "$@"'


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
                          *settings.part_signer_secret_env_names, *auth_secret_env_names(settings.auth_mode)),
        runtime_file_paths=(AUTH_CONFIG_PATH,) if settings.auth_mode == "mlflow" else (),
        ports=(settings.port,),
        health_check=HealthCheck(command=("python", "-c", probe), http_path=path, port=settings.port,
                                 start_period_seconds=60),
        user="mlflow",
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


def tracking_server_settings(server: "ServerConfig", proxy: "ProxyConfig", hostnames: tuple[str, ...], *,
                             image: str, artifacts_destination: str,
                             s3_endpoint_url: Optional[str] = None,
                             artifact_secret_env_names: tuple[str, ...] = (),
                             part_signer_secret_env_names: tuple[str, ...] = (),
                             extra_env: Optional[Mapping[str, str]] = None,
                             scheme: Optional[str] = None,
                             port: Optional[int] = None,
                             auth: Optional["AuthConfig"] = None,
                             observability: Optional["ObservabilityConfig"] = None,
                             artifacts: Optional["ArtifactsConfig"] = None) -> TrackingServerSettings:
    """The server settings a stack's config renders to: the one place config becomes flags,
    used by the TrackingServer component and by the rehearsal alike. `scheme` and `port` are what
    users see (default: the proxy's own, as on `local`; a cloud load balancer has its own)."""
    from components.config import nginx_size_bytes
    from components.render.proxy import api_body_limit

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
        part_signer_secret_env_names=part_signer_secret_env_names,
        extra_env=dict(extra_env or {}),
        timeout_seconds=proxy.timeout_seconds,
        auth_mode=auth.mode if auth else config_default(AuthConfig, "mode"),
        auth_admin_username=auth.admin_username if auth else config_default(AuthConfig, "admin_username"),
        auth_env=(oidc_env(auth, public_url(hostnames[0], scheme, port, server.static_prefix), server)
                  if auth and auth.mode == "oidc" else {}),
        metrics_dir=METRICS_DIR if observability is None or observability.prometheus else None,
        direct_transfers=artifacts is not None and artifacts.transfer == "direct",
        api_body_limit_bytes=nginx_size_bytes(api_body_limit(proxy.client_max_body_size)),
    )
