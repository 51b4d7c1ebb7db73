"""The stack configuration: one pydantic model for every key, its defaults and its validation.

Keys live in the `mlflow:` namespace of `Pulumi.<stack>.yaml`, spelled in camelCase as Pulumi
users expect (`mlflow:server: {workers: 2, dbPoolSize: 4}`). Defaults make `pulumi up -s local`
work with no config at all. A wrong value stops the program before any resource is registered,
with one line per problem naming the stack file, the key and what is allowed.

The same model validates `MlflowTrackingServer`'s arguments (their keys are these keys), so a
program in any Pulumi language gets the same rules and messages. The few keys that name existing
infrastructure (`KNOWN_LATER_KEYS`) also take a `pulumi.Output`, e.g. a subnet id of a VPC made in
the same program; their rules are checked once the value is known.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Mapping, Optional

from pydantic import (BaseModel, Field, ValidationError, create_model,
                      field_validator, model_validator)

from components.config_base import (cron_fields, _BODY_SIZE, _BUCKET, _HOSTNAME, _IDENTIFIER, _IPV4, _STATIC_PREFIX,
                                    _VERSION, ConfigError, KnownLater, _Section, _pinned_image)
from components.platforms import PLATFORMS
from pydantic.alias_generators import to_camel

CONFIG_NAMESPACE = "mlflow"

# Paths the auth apps let through without authentication, matched with str.startswith: MLflow 3.17.2's
# (`_UNPROTECTED_PATH_PREFIXES`, mlflow/server/auth/__init__.py) and mlflow-oidc-auth 10.2.0's
# (hooks/before_request.py `_is_unprotected_route`, middleware/route_path.py `UNPROTECTED_PREFIXES`).
# A static prefix under which every request path starts with one of them (/healthcare starts with
# /health) would switch authentication off for every route; refused in every auth mode, as the mode
# may change later. `/providers` is exempt as an exact path: refused as the prefix or a parent of it.
AUTH_EXEMPT_PATH_PREFIXES = ("/static", "/favicon.ico", "/health",  # MLflow's auth app
                             "/metrics", "/docs", "/redoc", "/openapi.json", "/login", "/callback", "/oidc/static",
                             "/oidc/ui", "/static-files", "/scim/v2/", "/slo/", "/saml/metadata/")  # mlflow-oidc-auth
AUTH_EXEMPT_EXACT_PATHS = ("/providers",)
# Connections the database keeps for itself, superuser sessions and one-off jobs (migration, psql).
RESERVED_DB_CONNECTIONS = 10

# The keys whose value may be known later: ids of existing infrastructure, which only flow into
# resource properties. Every other key decides which resources exist, so it must be plain data.
KNOWN_LATER_KEYS = (*(key for plugin in PLATFORMS.values() for key in plugin.rules.KNOWN_LATER_KEYS),
                    "auth.oidc.clientSecret")




class ServerConfig(_Section):
    """The MLflow tracking server process."""

    workers: int = Field(2, ge=1, le=32, description="uvicorn worker processes per replica")
    replicas: int = Field(2, ge=1, le=20,
                          description="server replicas, spread over the zones (cloud stacks; local runs one)")
    max_replicas: int = Field(3, ge=1, le=40, description="autoscaling ceiling on CPU (cloud stacks; equal to "
                              "replicas: no autoscaling); the connection budget counts it")
    cpu_target_percent: int = Field(60, ge=10, le=90,
                                    description="average CPU the server's autoscaling keeps (cloud stacks)")
    db_pool_size: int = Field(4, ge=1, le=100, description="SQLAlchemy pool size per engine")
    db_max_overflow: int = Field(4, ge=0, le=100, description="SQLAlchemy overflow connections per engine")
    db_pool_recycle_seconds: int = Field(1800, ge=30, le=86400,
                                         description="recycle pooled connections after this many seconds")
    static_prefix: Optional[str] = Field(None, description="serve MLflow under this path, e.g. /mlflow")
    job_execution: bool = Field(False, description="run MLflow's background job runners (off unless used)")
    ai_gateway: bool = Field(False, description="MLflow's AI Gateway: LLM endpoints whose provider keys MLflow "
                             "stores encrypted with a generated key (off unless used)")
    workspaces: bool = Field(False, description="MLflow workspaces (--enable-workspaces): experiments and models "
                             "kept apart per workspace; needed for a database with workspaces besides default")
    cpu: float = Field(1.0, gt=0, le=16, description="CPUs per replica (cloud stacks)")
    memory_mib: int = Field(2048, ge=512, le=65536, description="memory per replica in MiB (cloud stacks)")

    @field_validator("static_prefix")
    @classmethod
    def _prefix(cls, value: Optional[str]) -> Optional[str]:
        # It is written into nginx.conf's locations and rewrites and MLflow's routes: a '.' or '..'
        # segment would be normalised away by clients and Nginx, and never match.
        if value is not None and (not _STATIC_PREFIX.match(value)
                                  or any(segment in (".", "..") for segment in value.split("/"))):
            raise ValueError("must be a path like /mlflow: leading slash, no trailing slash, no '//', no '.' or '..' "
                             "segments; letters, digits, . _ ~ - only")
        if value is not None:
            exempt = next((p for p in AUTH_EXEMPT_PATH_PREFIXES if f"{value}/".startswith(p)), None) or next(
                (p for p in AUTH_EXEMPT_EXACT_PATHS if f"{value}/".startswith(f"{p}/")), None)
            if exempt:
                raise ValueError(f"must not start with {exempt.rstrip('/')!r}: MLflow's auth app (or mlflow-oidc-auth) "
                                 f"lets every path starting with {exempt!r} through without authentication, so every "
                                 "route under the prefix would be open to anyone; choose another prefix, e.g. /mlflow")
        return value


class ProxyConfig(_Section):
    """The Nginx reverse proxy in front of the server: TLS, basic auth, large uploads."""

    port: int = Field(8080, ge=1, le=65535, description="public port users connect to")
    tls: Literal["off", "self-signed"] = Field("off", description="TLS on the public port")
    username: str = Field("mlflow", description="basic-auth user name")
    client_max_body_size: str = Field("0", description="largest artifact upload, nginx syntax (0 = unlimited, 512m, "
                                      "10g; every other request: at most 16m); "
                                      "aws and azure: at most, and by default, half the server replica's temporary "
                                      "disk, where MLflow spools each proxied artifact whole "
                                      "(README, \"Large artifacts\")")
    timeout_seconds: int = Field(900, ge=10, le=86400, description="read/send timeout for slow, large transfers "
                                 "(azure: the ingress's limit, 240 or 1800 with premium ingress)")
    certificate_validity_days: int = Field(365, ge=1, le=3650, description="self-signed certificate lifetime")
    password_hash: Literal["ssha", "bcrypt"] = Field(
        "ssha", description="htpasswd scheme: ssha (salted SHA-1; the generated password is 32 random "
        "characters, so a slow hash adds nothing) or bcrypt (pulumi-random's hash; costs ~70 ms CPU per request)")
    image: str = Field("nginx:1.27.3-alpine", description="pinned Nginx image")

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _pinned_image(value)

    @field_validator("client_max_body_size")
    @classmethod
    def _body_size(cls, value: str) -> str:
        if not _BODY_SIZE.match(value):
            raise ValueError("must be nginx size syntax: 0 (unlimited) or a number with optional k, m or g suffix, "
                             "e.g. 512m")
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9._-]{1,64}$", value):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-' (no ':', which htpasswd cannot hold)")
        return value


# Role names MLflow's own role may not take. `postgres` is the superuser of the `local` database (MLflow
# would run as it) and RDS's default master; PostgreSQL reserves `pg_*` and `public`, and the
# keywords `current_user`, `session_user`, `current_role`, `none` cannot name a role
# (https://www.postgresql.org/docs/current/sql-createrole.html, .../predefined-roles.html); RDS
# keeps `rds*` roles for itself (rdsadmin, rds_superuser, ...:
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Appendix.PostgreSQL.CommonDBATasks.Roles.html);
# Azure's flexible server keeps `azure_*` and `azuresu`
# (https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/how-to-create-users).
RESERVED_ROLE_NAMES = frozenset({"postgres", "public", "none", "current_user", "session_user", "current_role",
                                 "azuresu", "rdsadmin", "replication"})
RESERVED_ROLE_PREFIXES = ("pg_", "rds", "azure_")


class DatabaseConfig(_Section):
    """The PostgreSQL metadata store."""

    name: str = Field("mlflow", description="database name")
    username: str = Field("mlflow", description="owner role the server logs in as")
    max_connections: int = Field(100, ge=25, le=5000, description="PostgreSQL max_connections (aws: 200, 250 with "
                                 "auth.mode mlflow or oidc; azure: azure.dbSku's limit)")
    postgres_version: str = Field("16", description="PostgreSQL major version")

    @field_validator("name", "username")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("must be a lower-case SQL identifier: a-z, 0-9, _ (max 63, not starting with a digit)")
        return value

    @field_validator("username")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_ROLE_NAMES or value.startswith(RESERVED_ROLE_PREFIXES):
            raise ValueError(f"must not be a superuser or reserved role: not {', '.join(sorted(RESERVED_ROLE_NAMES))} "
                             f"or {'*, '.join(RESERVED_ROLE_PREFIXES)}* (MLflow's own role, no superuser)")
        return value

    @field_validator("postgres_version")
    @classmethod
    def _pg_version(cls, value: str) -> str:
        if value not in {"14", "15", "16", "17"}:
            raise ValueError("must be one of 14, 15, 16, 17")
        return value


class ArtifactsConfig(_Section):
    """The artifact store."""

    bucket: str = Field("mlflow-artifacts", description="bucket (or Blob container) name")
    prefix: str = Field("", description="key prefix for artifacts inside the bucket (empty: bucket root)")
    transfer: Literal["proxied", "direct"] = Field(
        "proxied", description="proxied: every artifact byte goes through Nginx and the server; direct: the server "
        "hands clients short-lived presigned URLs and large transfers go straight to the bucket, which the clients "
        "must then reach (README, \"Direct artifact transfers\")")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not re.match(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", value):
            raise ValueError("must be a key prefix like mlflow or team/mlflow (no leading or trailing slash)")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if not _BUCKET.match(value) or _IPV4.match(value):
            raise ValueError("must be an S3 bucket name: 3-63 lower-case letters, digits, '.' or '-', "
                             "starting and ending with a letter or digit")
        return value


DIRECT_TRANSFERS_MLFLOW_VERSION = "3.17.2"
"""The MLflow whose multipart code mlflow_guard/artifacts.py repairs (issue 26 review): direct only there."""

MLFLOW_PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")
_LOOPBACK_URL = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?/")


class OidcConfig(_Section):
    """Single sign-on (auth.mode oidc) through the identity provider, with the mlflow-oidc-auth plugin."""

    discovery_url: Optional[str] = Field(None, description="the identity provider's OpenID configuration URL "
                                         "(https://.../.well-known/openid-configuration)")
    client_id: Optional[str] = Field(None, description="the client (application) id registered for MLflow at the "
                                     "provider; bearer tokens must be issued to it")
    client_secret: Annotated[Optional[str], KnownLater] = Field(
        None, description="its client secret: a secret config value (pulumi config set --secret --path "
        "mlflow:auth.oidc.clientSecret ...), never plain text")
    admin_group: str = Field("mlflow-admins", description="members of this group administer MLflow: users, "
                             "permissions")
    user_groups: tuple[str, ...] = Field(("mlflow-users",), description="members of these groups may sign in; "
                                         "everyone else is refused")
    groups_claim: str = Field("groups", description="the ID token claim that lists a user's groups")
    scopes: tuple[str, ...] = Field(("openid", "email", "profile"), description="scopes requested at sign-in "
                                    "(add `groups` where the provider sends the groups claim only for it, e.g. Okta)")

    @field_validator("discovery_url")
    @classmethod
    def _discovery(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        if not re.match(r"^https?://[^\s/]+(/\S*)?/\.well-known/openid-configuration$", value):
            raise ValueError("must be the provider's discovery document URL, ending in "
                             "/.well-known/openid-configuration")
        if value.startswith("http://") and not _LOOPBACK_URL.match(value):
            raise ValueError("must use https (plain http only for a provider on this machine's loopback address)")
        return value

    @field_validator("admin_group", "groups_claim")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or "," in value or value != value.strip():
            raise ValueError("must be one non-empty name without commas or surrounding spaces")
        return value

    @field_validator("user_groups", "scopes")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or any(not item or "," in item or item != item.strip() or " " in item for item in value):
            raise ValueError("must be a non-empty list of names without commas or spaces")
        return value

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError("must include openid")
        return value


class AuthConfig(_Section):
    """Who may use MLflow: one shared user at Nginx, MLflow's own users and permissions, or single sign-on."""

    mode: Literal["proxy", "mlflow", "oidc"] = Field("proxy", description="proxy: Nginx basic auth with one generated "
                                                     "user; mlflow: MLflow's auth app (users, per-experiment and "
                                                     "per-model permissions); oidc: single sign-on (mlflow-oidc-auth)")
    default_permission: Literal[MLFLOW_PERMISSIONS] = Field(  # type: ignore[valid-type]
        "NO_PERMISSIONS", description="what a user may do with experiments and models nobody granted them (modes "
        "mlflow, oidc)")
    admin_username: str = Field("admin", description="MLflow's administrator (mode mlflow); its password is generated")
    oidc: OidcConfig = Field(default_factory=OidcConfig)

    @field_validator("admin_username")
    @classmethod
    def _admin(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9._@-]{1,64}$", value):
            raise ValueError("must be 1-64 letters, digits, '.', '_', '@' or '-'")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> "AuthConfig":
        if self.mode == "oidc":
            missing = [key for key, value in (("discoveryUrl", self.oidc.discovery_url),
                                              ("clientId", self.oidc.client_id),
                                              ("clientSecret", self.oidc.client_secret)) if value is None]
            if missing:
                raise ValueError(f"auth.mode oidc needs auth.oidc.{', auth.oidc.'.join(missing)}")
        return self


# MLflow's own syntax for `mlflow gc --older-than` (mlflow/cli/__init__.py).
_GC_AGE = re.compile(r"^(([.\d]+?)d)?(([.\d]+?)h)?(([.\d]+?)m)?(([.\d]+?)s)?$")



class ObservabilityConfig(_Section):
    """Metrics: MLflow's Prometheus exporter and Nginx's stub_status, on an internal listener only."""

    prometheus: bool = Field(True, description="MLflow serves Prometheus metrics (--expose-prometheus) and Nginx "
                             "its stub_status, both on the proxy's internal metrics port, never through the public "
                             "entry")
    metrics_port: int = Field(9180, ge=1, le=65535, description="the proxy's internal metrics listener (/metrics, "
                              "/nginx_status); on local also the host port, bound to local.bindAddress")


class MaintenanceConfig(_Section):
    """Garbage collection: `mlflow gc` removes deleted runs' rows and artifacts, on a schedule."""

    gc_schedule: Optional[str] = Field(None, description="cron expression (5 fields: minute hour day-of-month month "
                                       "day-of-week, UTC) running `mlflow gc` on aws and azure; unset: off (local: "
                                       "scripts/gc from cron)")
    gc_older_than: str = Field("30d", description="`mlflow gc --older-than`: runs deleted longer ago than this "
                               "(#d#h#m#s) are removed for good")
    gc_timeout_seconds: int = Field(3600, ge=300, le=86400, description="a gc run longer than this is stopped")

    @field_validator("gc_older_than")
    @classmethod
    def _age(cls, value: str) -> str:
        if not value or not _GC_AGE.match(value):
            raise ValueError("must be an age in mlflow gc's #d#h#m#s syntax, e.g. 30d or 12h30m")
        return value

    @field_validator("gc_schedule")
    @classmethod
    def _cron(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            cron_fields(value)
        return value


class _StackSections(_Section):
    """Every key of the `mlflow:` config namespace but the platforms' sections (StackConfig adds them)."""

    platform: Literal[tuple(PLATFORMS)] = Field("local", description="where the stack runs")  # type: ignore[valid-type]
    mlflow_version: str = Field("3.17.2", description="MLflow version installed in the server image")
    hostnames: tuple[str, ...] = Field(("localhost", "127.0.0.1"),
                                       description="public host names of the server; "
                                                   "--allowed-hosts is derived from them")
    server: ServerConfig = Field(default_factory=ServerConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)

    @field_validator("mlflow_version")
    @classmethod
    def _mlflow_version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError("must be an exact version like 3.17.2")
        major, minor, _ = (int(part) for part in value.split("."))
        if (major, minor) < (3, 17):
            raise ValueError("must be 3.17.0 or later (older servers lack --allowed-hosts and break with "
                             "SQLAlchemy 2.1)")
        return value

    @field_validator("hostnames")
    @classmethod
    def _hostnames(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one host, e.g. [localhost]")
        bad = [host for host in value if not (_HOSTNAME.match(host) or _IPV4.match(host))]
        if bad:
            raise ValueError("must be DNS names or IPv4 addresses without scheme or port; "
                             f"not {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _platform_defaults(cls, values: Any) -> Any:
        """Defaults that differ by platform (each platform's raw_defaults: a cloud stack's database allows
        more connections, azure's transfers last as long as its ingress allows), then the largest proxied
        transfer a replica's temporary disk holds."""
        if not isinstance(values, dict) or values.get("platform", "local") not in PLATFORMS:
            return values
        platform = values.get("platform", "local")
        values = PLATFORMS[platform].rules.raw_defaults(values)
        proxy = values.get("proxy")
        if proxy is None or (isinstance(proxy, dict)
                             and not {"clientMaxBodySize", "client_max_body_size"} & set(proxy)):
            limit = largest_transfer_mib(platform, _raw_server_cpu(values), _raw_platform_section(values, platform))
            if limit is not None:  # without one (the host's disk) ProxyConfig's own default stands
                values = {**values, "proxy": {**(proxy or {}), "client_max_body_size": nginx_size(limit)}}
        return values

    @model_validator(mode="after")
    def _connection_budget(self) -> "StackConfig":
        if self.server.max_replicas < self.server.replicas:
            raise ValueError("server.maxReplicas must be >= server.replicas")
        rules = PLATFORMS[self.platform].rules
        replicas, counted = rules.server_replicas(self)
        engines = database_engines(self.auth)
        needed = connections_needed(self.server, replicas, engines)
        budget = self.database.max_connections - RESERVED_DB_CONNECTIONS - rules.RESERVED_DB_CONNECTIONS
        if needed > budget:
            raise ValueError(
                f"{counted} x (server.workers + 1) x {engines} engines x (server.dbPoolSize + server.dbMaxOverflow)"
                f" = {needed} connections exceeds database.maxConnections - {self.database.max_connections - budget}"
                f" reserved = {budget};"
                " lower workers, pool sizes or replicas, or raise database.maxConnections"
            )
        if self.auth.mode != "proxy" and len(auth_database_name(self.database.name)) > 63:
            raise ValueError(f"database.name must be at most {63 - len(AUTH_DATABASE_SUFFIX)} characters with "
                             f"auth.mode {self.auth.mode}: the auth app's database is named "
                             f"<database.name>{AUTH_DATABASE_SUFFIX}")
        if self.auth.mode == "oidc" and self.server.static_prefix:
            raise ValueError("auth.mode oidc cannot be combined with server.staticPrefix: mlflow-oidc-auth serves "
                             "its sign-in routes (/login, /callback) at the root only")
        if self.artifacts.transfer == "direct" and self.mlflow_version != DIRECT_TRANSFERS_MLFLOW_VERSION:
            raise ValueError(
                f"artifacts.transfer direct needs mlflowVersion {DIRECT_TRANSFERS_MLFLOW_VERSION} (got "
                f"{self.mlflow_version}): mlflow_guard/artifacts.py repairs that version's multipart uploads (Blob "
                "block IDs, the part SAS, the part count) with a copy of its code, and MLflow skips a plugin it cannot "
                "import, so another version would run its own again; use artifacts.transfer proxied")
        rules.consistent(self)
        _proxied_transfers_fit(self)
        if self.observability.prometheus and self.observability.metrics_port == self.proxy.port:
            raise ValueError("observability.metricsPort must differ from proxy.port: metrics stay off the public entry")
        if self.maintenance.gc_schedule is not None:
            try:
                rules.gc_schedule(self.maintenance.gc_schedule)
            except ValueError as error:
                raise ValueError(f"maintenance.gcSchedule: {error}") from None
        return self


StackConfig = create_model(  # the platforms' sections last, in the registry's order (the config reference's)
    "StackConfig", __base__=_StackSections, __module__=__name__, __doc__="Every key of the `mlflow:` config namespace.",
    **{name: (plugin.config_section, Field(default_factory=plugin.config_section))
       for name, plugin in PLATFORMS.items()},
)


# MLflow 3.17.2 spools a proxied upload whole to a temporary file before writing it to S3 or Blob, and
# fetches a proxied download whole into one before sending it (mlflow/server/artifact_router.py:
# upload_artifact l.160-172, download_artifact l.95-101; handlers.py's _upload_artifact l.4020-4028 and
# _download_artifact l.3999-4001 alike; only a local-disk store streams). The largest artifact is
# bounded by the server replica's temporary disk; `local` uses the host's (unlimited stays allowed).
MIB = 1024 * 1024
_NGINX_UNITS = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}
TRANSFERS_AT_ONCE = 2
"""The limit is half the disk: an upload and a download of the largest artifact fit at once."""
# Fargate gives a task 20 GiB unless the task definition asks for 21-200, and the image's layers
# use the same storage (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-task-storage.html).
def replica_temporary_disk_gib(platform: str, server_cpu: float, section: BaseModel) -> Optional[float]:
    """GiB a server replica can spool artifacts to (`section`: the platform's own); None where it is the
    host's disk (`local`)."""
    return PLATFORMS[platform].rules.temporary_disk_gib(server_cpu, section)


def largest_transfer_mib(platform: str, server_cpu: float, section: BaseModel) -> Optional[int]:
    """The largest proxied artifact a server replica can take, in MiB; None: no limit (`local`)."""
    disk = replica_temporary_disk_gib(platform, server_cpu, section)
    return None if disk is None else int(disk * 1024) // TRANSFERS_AT_ONCE


def nginx_size(mib: Optional[int]) -> str:
    """MiB in nginx size syntax (None: 0, unlimited)."""
    if mib is None:
        return "0"
    return f"{mib // 1024}g" if mib % 1024 == 0 else f"{mib}m"


def nginx_size_bytes(value: str) -> int:
    """Bytes of an nginx size (k, m, g are binary units; 0: unlimited)."""
    unit = value[-1].lower() if value[-1].isalpha() else ""
    return int(value.rstrip("kKmMgG")) * _NGINX_UNITS[unit]


def _raw_server_cpu(values: Mapping[str, Any]) -> float:
    """server.cpu from raw config (its default where missing or malformed: its own error says so)."""
    server = values.get("server")
    raw = getattr(server, "cpu", None) if isinstance(server, BaseModel) else (
        server.get("cpu") if isinstance(server, dict) else None)
    try:
        return ServerConfig.model_validate({"cpu": raw} if raw is not None else {}).cpu
    except ValidationError:
        return ServerConfig().cpu


def _raw_platform_section(values: Mapping[str, Any], platform: str) -> BaseModel:
    """The platform's own section (`mlflow:<platform>`) from raw config, validated; its defaults where it is
    missing or malformed (its own error says so)."""
    model = PLATFORMS[platform].config_section
    raw = values.get(platform)
    if isinstance(raw, model):
        return raw
    try:
        return model.model_validate(raw if isinstance(raw, dict) else {})
    except ValidationError:
        return model()


def _proxied_transfers_fit(config: "StackConfig") -> None:
    """proxy.clientMaxBodySize within what a server replica can spool (see TRANSFERS_AT_ONCE)."""
    section = getattr(config, config.platform)
    limit = largest_transfer_mib(config.platform, config.server.cpu, section)
    value = config.proxy.client_max_body_size
    if limit is None or 0 < nginx_size_bytes(value) <= limit * MIB:
        return
    disk = replica_temporary_disk_gib(config.platform, config.server.cpu, section)
    assert disk is not None  # a limit comes from the disk
    where = PLATFORMS[config.platform].rules.temporary_disk_said(config, disk)
    raise ValueError(
        f"proxy.clientMaxBodySize {value!r} promises more than {config.platform} can hold: MLflow spools each proxied "
        f"upload and download whole on the server replica's temporary disk ({where}). Allowed: a size up to "
        f"{nginx_size(limit)} (half that disk: an upload and a download of the largest artifact at once); "
        "0 (unlimited) only on local")


def budget_replicas(config: "StackConfig") -> int:
    """Server replicas the database must serve at most (the platform's server_replicas)."""
    return PLATFORMS[config.platform].rules.server_replicas(config)[0]


AUTH_DATABASE_SUFFIX = "_auth"


def auth_database_name(database: str) -> str:
    """The auth app's users and permissions live beside the tracking database, in one of their own."""
    return database + AUTH_DATABASE_SUFFIX


def database_engines(auth: AuthConfig) -> int:
    """SQLAlchemy engines per server process: tracking and registry, plus the auth app's own."""
    return 2 if auth.mode == "proxy" else 3


def connections_needed(server: ServerConfig, replicas: int, engines: int = 2) -> int:
    """Worst-case PostgreSQL connections: each worker (and the parent) holds `engines` pools."""
    return replicas * (server.workers + 1) * engines * (server.db_pool_size + server.db_max_overflow)


def parse_stack_config(raw: Mapping[str, Any], stack_file: str) -> StackConfig:
    """Validate the raw `mlflow:` config values (keys without namespace, values JSON or plain strings).

    Raises ConfigError naming the stack file, each bad key and what is allowed.
    """
    values = {key: _decode(value) for key, value in raw.items()}
    return validate_settings(values, f"invalid stack configuration in {stack_file}:", f"{CONFIG_NAMESPACE}:")


def validate_settings(values: Mapping[str, Any], heading: str, key_prefix: str = "") -> StackConfig:
    """Validate settings keyed as in the stack config (camelCase, or the Python names); raises
    ConfigError: `heading`, then one line per problem, `key_prefix` + the key in camelCase."""
    try:
        return StackConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, heading, key_prefix)) from None


def _decode(value: Any) -> Any:
    """Pulumi hands structured config (objects, lists, numbers) to the program as JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _format_errors(error: ValidationError, heading: str, key_prefix: str) -> str:
    lines = [heading]
    for problem in error.errors():
        # Keys in camelCase whether the values came keyed by alias or by Python name.
        location = [to_camel(part) if isinstance(part, str) else str(part) for part in problem["loc"]]
        key = key_prefix + ".".join(location) if location else key_prefix.rstrip(":")
        lines.append(f"  {key}: {_explain(problem)}" if key else f"  {_explain(problem)}")
    return "\n".join(lines)


def _explain(problem: Mapping[str, Any]) -> str:
    kind = problem["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the config reference in README.md)"
    if kind == "literal_error":
        return f"must be one of {problem['ctx']['expected']} (got {problem['input']!r})"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bounds = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}
        limit = next(iter(problem["ctx"].values()))
        return f"must be {bounds[kind]} {limit} (got {problem['input']!r})"
    if kind == "value_error":
        message = str(problem["ctx"]["error"]) if "ctx" in problem else problem["msg"]
        return f"{message} (got {problem['input']!r})" if not isinstance(problem["input"], dict) else message
    return f"{problem['msg'].lower()} (got {problem['input']!r})"


def field_reference() -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every config key: the README's reference table."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}{to_camel(name)}"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, key + ".")
                continue
            default = field.get_default(call_default_factory=True)
            rendered_default = json.dumps(list(default) if isinstance(default, tuple) else default)
            rows.append((f"{CONFIG_NAMESPACE}:{key}", _type_name(annotation), rendered_default,
                         field.description or ""))

    walk(StackConfig, "")
    return rows


def _type_name(annotation: Any) -> str:
    from typing import get_args, get_origin

    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    if origin is tuple:
        return "list of strings"
    if origin is not None and type(None) in get_args(annotation):
        inner = [arg for arg in get_args(annotation) if arg is not type(None)][0]
        return f"{_type_name(inner)} or null"
    return {"int": "integer", "str": "string", "bool": "boolean", "float": "number"}.get(annotation.__name__,
                                                                                         annotation.__name__)


def reference_table_markdown() -> str:
    """The README's configuration reference, generated from the model (a test keeps them equal)."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, kind, default, description in field_reference():
        lines.append(f"| `{key}` | {kind} | `{default}` | {description} |")
    return "\n".join(lines)

