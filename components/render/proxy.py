"""Nginx in front of the server: nginx.conf, the htpasswd line, its container and health checks."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from components.config import ProxyConfig, nginx_size_bytes
from components.names import PROXY_SERVICE
from components.render.endpoints import (DEFAULT_METRICS_PORT, NGINX_DEFAULT_KEEPALIVE_SECONDS,
                                         PROXY_CONNECT_TIMEOUT_SECONDS, PROXY_HTTP_PORT, PROXY_HTTPS_PORT,
                                         PROXY_LIVENESS_PATH, config_default, health_path, nginx_keepalive_seconds)
from components.render.server import METRICS_SCRAPE_HEADER, METRICS_SCRAPE_HEADER_VALUE
from components.spec import ContainerSpec, HealthCheck

API_BODY_LIMIT = "16m"
"""The largest body of any request but an artifact upload: what mlflow_guard reads of an API body at most
(MAX_INSPECTED_BODY_BYTES). MLflow's bridge to its Flask routes buffers the whole body in memory before its
auth app has looked at the request (review 24, azure 3 F1: an anonymous 1.5 GB POST cost 2.2 GB)."""
STREAMED_UPLOAD_ROUTE = r"^/(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/."
"""The streaming artifact router's file routes (mlflow/server/artifact_router.py: GET and PUT), unprefixed: the
server mounts them at the root under a static prefix too."""

if TYPE_CHECKING:
    from components.config import ArtifactsConfig, AuthConfig, ObservabilityConfig, ServerConfig


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
    direct_transfers: bool = False
    """artifacts.transfer direct: MLflow's server-info passes unchanged, so clients use its presigned multipart
    routes; False: it is rewritten to advertise them off (every transfer proxied)."""


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
    listen = (f"{settings.listen_address}:{settings.listen_port}" if settings.listen_address
              else str(settings.listen_port))
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
            f"                client_max_body_size {settings.client_max_body_size};\n"
            f"{_refuse_unstreamed_bodies('                ')}"
            "                if ($request_method ~ ^(GET|PUT)$) {\n"
            f"                    rewrite ^{prefix}(/api/2\\.0/mlflow-artifacts/.*)$ $1 break;\n"
            "                }\n"
            f"    {upstream}"
            "            }\n"
            f"{upstream}"
            "        }\n"
        )
    # Only MLflow's streaming artifact router takes large bodies (PUT, written to a temporary file): every
    # other route reaches MLflow through its WSGI bridge, which holds the whole body in memory before any
    # login check (mlflow/server/fastapi_app.py, _EfficientWSGIResponder), so those stay at API_BODY_LIMIT.
    locations.append(
        f"        location ~ {STREAMED_UPLOAD_ROUTE} {{\n"
        f"            client_max_body_size {settings.client_max_body_size};\n"
        f"{_refuse_unstreamed_bodies('            ')}"
        f"{upstream}"
        "        }\n"
    )
    # With an S3-compatible artifact store, MLflow 3.17 advertises presigned multipart transfers in
    # server-info; clients then download every artifact (and upload those >= 500 MB) at the
    # server's own S3 endpoint, past this proxy (on `local` http://minio:9000, which users cannot
    # reach). Advertise them off so artifact transfers stay proxied, unless the stack made that endpoint
    # one the clients reach (artifacts.transfer direct). The multipart and presigned routes are Flask's, under
    # the prefix only (mlflow/server/handlers.py _get_paths): passed on unchanged, by the prefix's artifact
    # location or by `location /`; MLflow's auth app guards them (mlflow/server/auth/__init__.py,
    # _is_proxy_artifact_path: mpu/ as an update, presigned/ as a read of the experiment's artifacts).
    for api in (() if settings.direct_transfers else ("api", "ajax-api")):
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
    locations += _unsupported_presigned_routes(prefix, unsupported_routes(settings.direct_transfers))
    # MLflow's Prometheus metrics are for scrapers on the internal listener, never for the public.
    for path in sorted({"/metrics", f"{prefix}/metrics"}):
        locations.append(f"        location = {path} {{\n            return 404;\n        }}\n")
    locations.append(f"        location / {{\n{upstream}        }}\n")

    return (
        # (the header still names render.py, as before the package split: a changed byte would replace every
        # deployed proxy for nothing)
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
        f"{_UNSTREAMED_BODY_MAP}"
        "    upstream mlflow_upstream {\n"
        f"        server {settings.upstream};\n"
        "    }\n"
        "    server {\n"
        f"        listen {listen};\n"
        "        server_name _;\n"
        f"{tls_lines}"
        f"{_refuse_empty_artifact_path(prefix)}"
        # API bodies are small; artifacts (their own locations) can be gigabytes. Stream both ways, long timeouts.
        f"        client_max_body_size {api_body_limit(settings.client_max_body_size)};\n"
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


def api_body_limit(artifact_limit: str) -> str:
    """The body limit of every route but the artifact uploads: API_BODY_LIMIT, or the artifacts' own if smaller."""
    own = nginx_size_bytes(artifact_limit)
    return artifact_limit if 0 < own < nginx_size_bytes(API_BODY_LIMIT) else API_BODY_LIMIT


def _refuse_unstreamed_bodies(indent: str) -> str:
    """On the artifact routes only PUT is streamed to disk; a body sent with another method goes to the
    WSGI bridge, which holds it in memory: 413 before it is read."""
    return (f"{indent}if ($mlflow_unstreamed_body) {{\n"
            f"{indent}    return 413;\n"
            f"{indent}}}\n")


_UNSTREAMED_BODY_MAP = (
    # 1 when a request other than PUT announces a body (a Content-Length above 0, or any Transfer-Encoding).
    '    map "$request_method:$http_content_length:$http_transfer_encoding" $mlflow_unstreamed_body {\n'
    "        default 0;\n"
    '        "~^PUT:" 0;\n'
    '        "~^[^:]+:0*[1-9]" 1;\n'
    '        "~^[^:]+:[^:]*:." 1;\n'
    "    }\n"
)


UNSUPPORTED = {
    "mlflow-artifacts/mpu": "Multipart upload is not supported for the current artifact repository",
    "mlflow-artifacts/presigned": "Multipart download is not supported for the current artifact repository",
    "mlflow/artifacts/presigned-upload-url": "Presigned upload is not supported for the current artifact repository",
    "mlflow/artifacts/presigned-download-url":
        "Presigned download is not supported for the current artifact repository",
}
"""route (after .../api/2.0/) -> what MLflow 3.17.2 answers when its store cannot (mlflow/exceptions.py,
_UnsupportedMultipartUploadException.MESSAGE and its three siblings, error_code NOT_IMPLEMENTED, 501)."""

ALWAYS_UNSUPPORTED = ("mlflow/artifacts/presigned-upload-url", "mlflow/artifacts/presigned-download-url")
"""Answered 501 with direct transfers too (third cloud review of issue 26): the request names the URL's lifetime
and MLflow bounds it only by S3's 7 days (mlflow/server/handlers.py, _create_presigned_upload_url and
_create_presigned_download_url: `expiration` overrides MLFLOW_PRESIGNED_DOWNLOAD_URL_TTL_SECONDS), and the upload
URL is a whole-object PUT past mlflow_guard.artifacts. MLflow's Python client never calls them; the UI's download
button falls back to a download through the server on an error. Direct transfers use mpu/* and presigned/*."""


def unsupported_routes(direct_transfers: bool) -> dict[str, str]:
    """The routes Nginx answers 501 (UNSUPPORTED's messages) in a transfer mode."""
    return {route: message for route, message in UNSUPPORTED.items()
            if not direct_transfers or route in ALWAYS_UNSUPPORTED}


def _unsupported_presigned_routes(prefix: str, routes: dict[str, str]) -> list[str]:
    """artifacts.transfer proxied: the routes that hand out presigned URLs answer as MLflow does for a store
    without them (501, NOT_IMPLEMENTED, its message), so every client falls back to proxied transfers.
    Advertising them off in server-info is not enough (review of issue 26): a client with
    MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD/_DOWNLOAD=true calls them anyway, and on aws the server signs them for
    the global S3 endpoint, which works from any network (past aws.allowedCidrs and aws.internal). MLflow's
    client falls back on an upload whose create answers a message starting with
    _UnsupportedMultipartUploadException.MESSAGE (mlflow/store/artifact/http_artifact_repo.py,
    _try_multipart_upload), and on a forced download answered 501 or 404 (mlflow_artifacts_repo.py,
    _download_file). Both API forms, with and without the prefix (the routes are Flask's, under the prefix
    only, but an unprefixed request reaches `location /` too); after Nginx's basic auth like any location."""
    root = f"(?:{re.escape(prefix)})?" if prefix else ""
    return [
        f"        location ~ ^{root}/(?:ajax-)?api/2\\.0/{route}(?:/|$) {{\n"
        # (no types: mime.types would answer .../x.bin as application/octet-stream)
        "            types { }\n"
        "            default_type application/json;\n"
        f"            return 501 '{json.dumps({'error_code': 'NOT_IMPLEMENTED', 'message': message})}';\n"
        "        }\n"
        for route, message in routes.items()
    ]


def _refuse_empty_artifact_path(prefix: str) -> str:
    """MLflow's artifact routes (.../mlflow-artifacts/artifacts/<path>: download, upload, delete;
    .../mpu/<step>/<path>; .../presigned/<path>, which signs a download URL for <path>; in both transfer
    modes: proxied stacks answer the last two 501 after this check) are authorized by MLflow's auth app
    against ?path= when <path> names no experiment, and a path MLflow reads as empty then works on the
    whole artifact root, everyone's objects: a download fetches the bucket to the server's disk (issue
    29). MLflow reads many spellings as empty (`file:`, `;`, `?`, spaces and control characters stripped, repeated
    percent-decoding: mlflow/utils/uri.py validate_path_is_safe, _decode), so this is an allow-list:
    the path must start with the experiment id the server writes under (`<id>`, or
    `workspaces/<name>/<id>`) and hold no `%` left after Nginx's own decoding. Refused before any
    location is chosen (server-level `if`s run in the rewrite phase, ahead of the prefix rewrite and
    of auth), in both API forms, with and without the prefix (the streaming router answers the
    unprefixed path under a prefix too), on Nginx's decoded, normalised URI. The list route
    (.../artifacts?path=) has no path segment and is untouched."""
    root = f"(?:{re.escape(prefix)})?" if prefix else ""
    routes = "artifacts|mpu/[a-z]+|presigned"
    route = f"^{root}/(?:ajax-)?api/2\\.0/mlflow-artifacts/(?:{routes})/"
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


def proxy_settings(proxy: "ProxyConfig", server: "ServerConfig", upstream: str,
                   paths: NginxPaths = NginxPaths(), auth: Optional["AuthConfig"] = None,
                   observability: Optional["ObservabilityConfig"] = None,
                   hostnames: tuple[str, ...] = ("localhost",),
                   front_idle_timeout_seconds: Optional[int] = None,
                   artifacts: Optional["ArtifactsConfig"] = None) -> ProxySettings:
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
        direct_transfers=artifacts is not None and artifacts.transfer == "direct",
    )
