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
from typing import Annotated, Any, Callable, Literal, Mapping, Optional

from pulumi import Output
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, WrapValidator, field_validator,
                      model_validator)
from pydantic.alias_generators import to_camel

CONFIG_NAMESPACE = "mlflow"

# nginx size syntax: a number with an optional k/m/g suffix; 0 means "no limit".
_BODY_SIZE = re.compile(r"^(0|[1-9][0-9]*[kKmMgG]?)$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$")
_STATIC_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
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
_BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IMAGE_REF = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9._-]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[0-9a-f]{64})?$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")

# Connections the database keeps for itself, superuser sessions and one-off jobs (migration, psql).
RESERVED_DB_CONNECTIONS = 10
AWS_MAX_CONNECTIONS = 200
AWS_MAX_CONNECTIONS_WITH_AUTH_APP = 250  # a third pool per server process (auth.mode mlflow, oidc)


def _known_later(value: Any, handler: Callable[[Any], Any]) -> Any:
    return value if isinstance(value, Output) else handler(value)


KnownLater = WrapValidator(_known_later)
"""Marks a key whose value may be a `pulumi.Output` (known only once another resource exists): the
type's own validation applies to plain values, the key's rules to an Output's value when known."""

# The keys whose value may be known later: ids of existing infrastructure, which only flow into
# resource properties. Every other key decides which resources exist, so it must be plain data.
KNOWN_LATER_KEYS = ("aws.vpcId", "aws.publicSubnetIds", "aws.privateSubnetIds", "aws.certificateArn",
                    "aws.hostedZoneId", "auth.oidc.clientSecret")


def _when_known(value: Any, rule: Callable[[Any], Any], key: str) -> Any:
    """Apply a field's rule now, or to an Output's value once it is known (failing the deployment
    with the key named, as a config error would)."""
    if not isinstance(value, Output):
        return rule(value)

    def check(known: Any) -> Any:
        try:
            return rule(known)
        except ValueError as error:
            raise ConfigError(f"{key}: {error} (got {known!r})") from None

    return value.apply(check)


def _pinned_image(value: str) -> str:
    if not _IMAGE_REF.match(value) or value.endswith(":latest"):
        raise ValueError("must be an image reference pinned to a tag (not :latest), e.g. nginx:1.27.3-alpine")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class ServerConfig(_Section):
    """The MLflow tracking server process."""

    workers: int = Field(2, ge=1, le=32, description="uvicorn worker processes per replica")
    replicas: int = Field(2, ge=1, le=20, description="server replicas, spread over the zones (cloud stacks; local runs one)")
    max_replicas: int = Field(3, ge=1, le=40, description="autoscaling ceiling on CPU (cloud stacks; equal to replicas: no "
                              "autoscaling); the connection budget counts it")
    cpu_target_percent: int = Field(60, ge=10, le=90, description="average CPU the server's autoscaling keeps (cloud stacks)")
    db_pool_size: int = Field(4, ge=1, le=100, description="SQLAlchemy pool size per engine")
    db_max_overflow: int = Field(4, ge=0, le=100, description="SQLAlchemy overflow connections per engine")
    db_pool_recycle_seconds: int = Field(1800, ge=30, le=86400, description="recycle pooled connections after this many seconds")
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
    client_max_body_size: str = Field("0", description="largest request body, nginx syntax (0 = unlimited, 512m, 10g); "
                                      "aws and azure: at most, and by default, half the server replica's temporary "
                                      "disk, where MLflow spools each proxied artifact whole (README, \"Large artifacts\")")
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
            raise ValueError("must be nginx size syntax: 0 (unlimited) or a number with optional k, m or g suffix, e.g. 512m")
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
            raise ValueError("must be an S3 bucket name: 3-63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit")
        return value


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
_CRON_FIELD = re.compile(r"^[A-Za-z0-9*,/?-]+$")


class ObservabilityConfig(_Section):
    """Metrics: MLflow's Prometheus exporter and Nginx's stub_status, on an internal listener only."""

    prometheus: bool = Field(True, description="MLflow serves Prometheus metrics (--expose-prometheus) and Nginx "
                             "its stub_status, both on the proxy's internal metrics port, never through the public entry")
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


def cron_fields(expression: str) -> tuple[str, str, str, str, str]:
    """The five fields of a standard cron expression (minute hour day-of-month month day-of-week)."""
    fields = expression.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(field) for field in fields):
        raise ValueError("must be a cron expression of 5 fields (minute hour day-of-month month day-of-week), "
                         "e.g. '0 3 * * *' for 03:00 UTC daily")
    if "?" in expression:
        raise ValueError("use '*' rather than '?' (standard cron; the aws stack writes AWS's form itself)")
    if "/" in fields[4]:
        raise ValueError("day-of-week steps ('/') are not supported; list the days, e.g. MON,WED,FRI")
    minute, hour, day, month, weekday = fields
    return minute, hour, day, month, weekday


def aws_schedule_expression(expression: str) -> str:
    """A standard cron expression in EventBridge Scheduler's form: six fields with a year, one of the
    two day fields `?`, and days of the week counted from SUN=1 (standard cron: SUN=0 or 7)."""
    minute, hour, day, month, weekday = cron_fields(expression)
    if day != "*" and weekday != "*":
        raise ValueError("AWS cannot schedule on both a day of the month and a day of the week: set one to '*'")
    weekday = re.sub(r"\d+", lambda number: str(int(number.group()) % 7 + 1), weekday)
    if weekday == "*":
        weekday = "?"
    else:
        day = "?"
    return f"cron({minute} {hour} {day} {month} {weekday} *)"


class LocalConfig(_Section):
    """Docker-on-one-machine settings (the `local` stack)."""

    bind_address: str = Field("127.0.0.1", description="host address published ports bind to (0.0.0.0 for a team host)")
    minio_api_port: int = Field(9000, ge=1, le=65535, description="host port of the MinIO S3 API")
    minio_console_port: int = Field(9001, ge=1, le=65535, description="host port of the MinIO console")
    postgres_image: str = Field("postgres:16.6-bookworm", description="pinned PostgreSQL image")
    minio_image: str = Field("minio/minio:RELEASE.2025-04-22T22-12-26Z", description="pinned MinIO image")

    @field_validator("bind_address")
    @classmethod
    def _bind(cls, value: str) -> str:
        if not _IPV4.match(value):
            raise ValueError("must be an IPv4 address such as 127.0.0.1 or 0.0.0.0")
        return value

    @field_validator("postgres_image", "minio_image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _pinned_image(value)


# The regions the stack can be deployed to (commercial, GovCloud, China), as AWS lists them
# (https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html); a region AWS
# opens later is added here.
AWS_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "ca-west-1", "mx-central-1", "sa-east-1",
    "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1",
    "il-central-1", "me-south-1", "me-central-1", "af-south-1",
    "ap-east-1", "ap-east-2", "ap-south-1", "ap-south-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6",
    "ap-southeast-7", "us-gov-east-1", "us-gov-west-1", "cn-north-1", "cn-northwest-1",
)
# Fargate's task sizes: CPU units -> the memory (MiB) each allows
# (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size).
FARGATE_TASK_SIZES = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
# An Application Load Balancer's idle timeout: 1 to 4000 seconds
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout).
ALB_MAX_IDLE_TIMEOUT_SECONDS = 4000
_DB_INSTANCE_CLASS = re.compile(r"^db\.[a-z0-9]+(\.[a-z0-9]+)?\.[a-z0-9]+$")
_CERT_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]{36}$")
_CIDR = re.compile(r"^((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)/([0-9]|[12][0-9]|3[0-2])$")
def _certificate_arn(value: Optional[str]) -> Optional[str]:
    if value is not None and not _CERT_ARN.match(value):
        raise ValueError("must be an ACM certificate ARN: arn:aws:acm:<region>:<account>:certificate/<uuid>")
    return value


def _waf_acl_arn(value: Optional[str]) -> Optional[str]:
    if value is not None and not re.match(r"^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:[0-9]{12}:regional/webacl/.+", value):
        raise ValueError("must be a regional AWS WAF (wafv2) web ACL ARN: arn:aws:wafv2:<region>:<account>:regional/webacl/...")
    return value


def _subnet_ids(value: Any) -> tuple[str, ...]:
    """A known subnet list (possibly from an Output): a tuple of non-empty strings."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise ValueError("must be a list of subnet ids")
    return tuple(value)


_LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)


class AwsConfig(_Section):
    """The `aws` stack: RDS, S3, ECR, ECS Fargate behind an ALB."""

    region: str = Field("us-east-1", description="AWS region, e.g. eu-west-1")
    availability_zones: tuple[str, ...] = Field((), description="AZs for the new VPC's subnets (default: <region>a, <region>b)")
    vpc_cidr: str = Field("10.40.0.0/16", description="CIDR of the VPC this stack creates")
    vpc_id: Annotated[Optional[str], KnownLater] = Field(None, description="use this existing VPC instead of creating one")
    public_subnet_ids: Annotated[tuple[str, ...], KnownLater] = Field((), description="existing public subnets (load balancer), with vpcId")
    private_subnet_ids: Annotated[tuple[str, ...], KnownLater] = Field((), description="existing private subnets (service, database), with vpcId")
    domain: Optional[str] = Field(None, description="DNS name users reach MLflow at, e.g. mlflow.example.com")
    hosted_zone_id: Annotated[Optional[str], KnownLater] = Field(None, description="Route 53 zone of `domain`: an ACM certificate and DNS record are made there")
    certificate_arn: Annotated[Optional[str], KnownLater] = Field(None, description="existing ACM certificate for `domain` (instead of hostedZoneId)")
    allowed_cidrs: tuple[str, ...] = Field(("0.0.0.0/0",), description="client networks allowed to reach the load balancer")
    internal: bool = Field(False, description="load balancer inside the VPC only (reached over VPN or peering), not internet-facing")
    allow_plain_http: bool = Field(False, description="serve plain HTTP when no domain or certificate is set (passwords "
                                   "cross the network unencrypted): only on purpose")
    waf_acl_arn: Annotated[Optional[str], KnownLater] = Field(None, description="AWS WAF web ACL (regional) to associate with the load balancer")
    proxy_replicas: int = Field(2, ge=1, le=20, description="Nginx tasks, spread over the zones")
    nat_gateways: Literal["per-zone", "single"] = Field("per-zone", description="NAT gateways of the VPC this stack "
                                                        "creates: one per zone (a zone's outage leaves the others "
                                                        "their egress) or a single one (cheaper)")
    alarm_email: Optional[str] = Field(None, description="address subscribed to the stack's alarm topic (confirm the "
                                       "subscription email AWS sends)")
    exec_enabled: bool = Field(False, description="ECS Exec into the server's tasks (aws ecs execute-command)")
    db_instance_class: str = Field("db.t4g.small", description="RDS instance class")
    db_master_username: str = Field("mlflow_admin", description="RDS master user (its password is kept by RDS in "
                                    "Secrets Manager; MLflow logs in as database.username, not a superuser)")
    db_restore_snapshot: Optional[str] = Field(None, description="create the database from this RDS snapshot (to go "
                                               "back to an earlier MLflow version: README); changing it replaces "
                                               "the database")
    db_performance_insights: Optional[bool] = Field(None, description="RDS Performance Insights (7 days, free tier); "
                                                    "unset: on (RDS for PostgreSQL has it on every instance class)")
    db_allocated_storage_gb: int = Field(20, ge=20, le=65536, description="RDS storage in GiB")
    db_max_allocated_storage_gb: int = Field(100, ge=20, le=65536, description="RDS storage autoscaling ceiling in GiB")
    db_engine_version: Optional[str] = Field(None, description="unset: database.postgresVersion's major, and RDS applies "
                                             "minor upgrades itself; a full version like 16.6 pins it (automatic "
                                             "minor upgrades off: raise it yourself)")
    db_multi_az: bool = Field(False, description="standby in a second AZ")
    db_backup_retention_days: int = Field(7, ge=1, le=35, description="automated backup retention")
    deletion_protection: bool = Field(True, description="RDS deletion protection (switch off for throw-away stacks)")
    final_snapshot: bool = Field(True, description="take a final RDS snapshot on delete")
    protect_resources: bool = Field(True, description="Pulumi `protect` on the database, bucket and image repository")
    log_retention_days: int = Field(30, description="CloudWatch log retention (a value CloudWatch accepts)")
    noncurrent_version_expiration_days: Optional[int] = Field(90, ge=0, le=3650, description="expire old artifact versions after N days (0 or null: keep)")
    load_balancer_idle_timeout_seconds: Optional[int] = Field(
        None, ge=1, le=ALB_MAX_IDLE_TIMEOUT_SECONDS, description="ALB idle timeout in seconds, at least "
        "proxy.timeoutSeconds (unset: proxy.timeoutSeconds), so that a slow transfer is not cut")
    proxy_cpu: int = Field(256, description="Fargate CPU units of the proxy task")
    proxy_memory_mib: int = Field(512, ge=512, le=30720, description="Fargate memory of the proxy task (a size "
                                  "Fargate pairs with proxyCpu)")
    server_ephemeral_storage_gib: Optional[int] = Field(
        None, ge=21, le=200, description="Fargate ephemeral storage of a server task in GiB (unset: Fargate's 20); "
        "a proxied artifact is spooled there whole, so it bounds proxy.clientMaxBodySize")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value not in AWS_REGIONS:
            raise ValueError(f"must be an AWS region name, one of {', '.join(AWS_REGIONS)}")
        return value

    @field_validator("availability_zones")
    @classmethod
    def _azs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value and (len(value) < 2 or len(set(value)) != len(value)):
            raise ValueError("must list at least two different availability zones, e.g. [eu-west-1a, eu-west-1b]")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_cidr(cls, value: str) -> str:
        if not _CIDR.match(value) or int(value.split("/")[1]) > 20:
            raise ValueError("must be an IPv4 CIDR of /20 or larger, e.g. 10.40.0.0/16")
        return value

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [cidr for cidr in value if not _CIDR.match(cidr)]
        if bad or not value:
            raise ValueError(f"must be IPv4 CIDRs like 203.0.113.0/24; not {bad}")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not _HOSTNAME.match(value) or "." not in value):
            raise ValueError("must be a fully qualified DNS name like mlflow.example.com")
        return value

    @field_validator("certificate_arn")
    @classmethod
    def _cert(cls, value: Any) -> Any:
        return _when_known(value, _certificate_arn, "aws.certificateArn")

    @field_validator("public_subnet_ids", "private_subnet_ids")
    @classmethod
    def _subnets(cls, value: Any, info: ValidationInfo) -> Any:
        return _when_known(value, _subnet_ids, f"aws.{to_camel(info.field_name)}")

    @field_validator("db_instance_class")
    @classmethod
    def _instance_class(cls, value: str) -> str:
        if not _DB_INSTANCE_CLASS.match(value):
            raise ValueError("must be an RDS instance class like db.t4g.small or db.r6g.large")
        return value

    @field_validator("db_engine_version")
    @classmethod
    def _engine_version(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^1[4-7]\.[0-9]+$", value):
            raise ValueError("must be a full PostgreSQL 14-17 engine version like 16.6 (leave unset to follow the "
                             "major version with RDS's minor upgrades)")
        return value

    @field_validator("db_master_username")
    @classmethod
    def _master(cls, value: str) -> str:
        if not _IDENTIFIER.match(value) or value in ("postgres", "rdsadmin", "admin"):
            raise ValueError("must be a lower-case SQL identifier other than postgres, rdsadmin or admin")
        return value

    @field_validator("db_restore_snapshot")
    @classmethod
    def _snapshot(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^(arn:aws[a-z-]*:rds:[a-z0-9-]+:[0-9]{12}:snapshot:)?[a-zA-Z][a-zA-Z0-9-]{0,254}$", value):
            raise ValueError("must be an RDS snapshot identifier or ARN, e.g. mlflow-aws-mlflow-3-16-0-to-3-17-2")
        return value

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
            raise ValueError("must be an email address")
        return value

    @field_validator("waf_acl_arn")
    @classmethod
    def _waf(cls, value: Any) -> Any:
        return _when_known(value, _waf_acl_arn, "aws.wafAclArn")

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in _LOG_RETENTION_DAYS:
            raise ValueError(f"must be one of CloudWatch's retention values: {', '.join(map(str, _LOG_RETENTION_DAYS))}")
        return value

    @field_validator("proxy_cpu")
    @classmethod
    def _proxy_cpu(cls, value: int) -> int:
        if value not in (256, 512, 1024, 2048, 4096):
            raise ValueError("must be a Fargate CPU value: 256, 512, 1024, 2048 or 4096")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "AwsConfig":
        if self.certificate_arn and not self.domain:
            raise ValueError("aws.certificateArn needs aws.domain (the name the certificate is for)")
        if self.hosted_zone_id and not self.domain:
            raise ValueError("aws.hostedZoneId needs aws.domain")
        existing = (self.vpc_id, self.public_subnet_ids, self.private_subnet_ids)
        if any(existing) and not all(existing):
            raise ValueError("an existing network needs all of aws.vpcId, aws.publicSubnetIds and aws.privateSubnetIds")
        if self.availability_zones and any(not zone.startswith(self.region) for zone in self.availability_zones):
            raise ValueError(f"aws.availabilityZones must be in aws.region {self.region}")
        if self.db_max_allocated_storage_gb < self.db_allocated_storage_gb:
            raise ValueError("aws.dbMaxAllocatedStorageGb must be >= aws.dbAllocatedStorageGb")
        _fargate_task_size("aws.proxyCpu", self.proxy_cpu, "aws.proxyMemoryMib", self.proxy_memory_mib)
        return self

    def idle_timeout(self, proxy_timeout_seconds: int) -> int:
        """The load balancer's idle timeout: as set, or proxy.timeoutSeconds (never shorter: the
        config check), so that the load balancer never cuts what Nginx still waits for."""
        return self.load_balancer_idle_timeout_seconds or proxy_timeout_seconds

    @property
    def zones(self) -> tuple[str, ...]:
        return self.availability_zones or (f"{self.region}a", f"{self.region}b")

    @property
    def https(self) -> bool:
        return bool(self.certificate_arn or self.hosted_zone_id)

    def engine_version(self, postgres_version: str) -> str:
        """What RDS gets: a pinned full version, or the major alone (RDS then moves minors itself, and
        a stack that names the major never asks RDS to go back down)."""
        return self.db_engine_version or postgres_version

    @property
    def performance_insights(self) -> bool:
        """On unless switched off: RDS for PostgreSQL has it on every instance class (the micro and
        small burstable classes lack it on MySQL and MariaDB only)
        (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PerfInsights.Overview.Engines.html)."""
        if self.db_performance_insights is not None:
            return self.db_performance_insights
        return True


def _fargate_task_size(cpu_key: str, cpu_units: int, memory_key: str, memory_mib: int) -> None:
    """Refuse a CPU and memory pair Fargate does not run (RegisterTaskDefinition fails at `up`)."""
    allowed = FARGATE_TASK_SIZES.get(cpu_units)
    if allowed is None:
        raise ValueError(f"{cpu_key} must be a Fargate size: {', '.join(f'{c / 1024:g} vCPU' for c in FARGATE_TASK_SIZES)}")
    if memory_mib not in allowed:
        raise ValueError(f"{memory_key} {memory_mib} is not a size Fargate pairs with {cpu_key} {cpu_units / 1024:g} "
                         f"vCPU: {allowed[0]} to {allowed[-1]} MiB in steps of {allowed[1] - allowed[0]}")


def server_rollout_percents(replicas: int) -> tuple[int, int]:
    """(minimumHealthyPercent, maximumPercent) of the server's ECS rollouts. With two replicas or
    more, no extra task: ECS stops up to half of the old tasks first (minimum rounded up), then
    starts their replacements, so the database never sees more servers than the autoscaling
    ceiling (capacity dips during a rollout instead). A single replica cannot stop first without
    an outage: one extra task (maximum 200%).
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service_definition_parameters.html#sd-deploymentconfiguration"""
    return (50, 100) if replicas >= 2 else (100, 200)


def ecs_rollout_peak_tasks(replicas: int, max_replicas: int) -> int:
    """Server tasks running at once during an ECS rollout at any desired count the autoscaling may
    have set (ECS rounds maximumPercent's task count down)."""
    maximum = server_rollout_percents(replicas)[1]
    return max(desired * maximum // 100 for desired in range(replicas, max_replicas + 1))


def _aws_consistent(self: "StackConfig") -> None:
    """What the aws stack needs of the other sections (Fargate sizes, load balancer timeouts, rollouts)."""
    _fargate_task_size("server.cpu", round(self.server.cpu * 1024), "server.memoryMib", self.server.memory_mib)
    timeout = self.proxy.timeout_seconds
    if timeout > ALB_MAX_IDLE_TIMEOUT_SECONDS:
        raise ValueError(f"proxy.timeoutSeconds {timeout} exceeds what the load balancer allows: "
                         f"aws.loadBalancerIdleTimeoutSeconds is at most {ALB_MAX_IDLE_TIMEOUT_SECONDS} s")
    idle = self.aws.load_balancer_idle_timeout_seconds
    if idle is not None and idle < timeout:
        raise ValueError(f"aws.loadBalancerIdleTimeoutSeconds {idle} is shorter than proxy.timeoutSeconds {timeout}: "
                         "the load balancer would cut a transfer Nginx still waits for (set it to at least "
                         "proxy.timeoutSeconds, or leave it unset)")



# Azure Database for PostgreSQL flexible server: the default max_connections of each compute size
# (Microsoft's "Limits" page); the server keeps 15 of them for itself.
AZURE_DB_CONNECTIONS = {
    "Standard_B1ms": 50, "Standard_B2s": 429, "Standard_B2ms": 859, "Standard_B4ms": 1718, "Standard_B8ms": 3437,
    "Standard_B12ms": 5000, "Standard_B16ms": 5000, "Standard_B20ms": 5000,
    **{f"Standard_D{size}{suffix}": limit for size, limit in ((2, 859), (4, 1718), (8, 3437), (16, 5000), (32, 5000),
                                                                (48, 5000), (64, 5000))
       for suffix in ("s_v3", "ds_v4", "ds_v5", "ads_v5")},
    **{f"Standard_E{size}{suffix}": limit for size, limit in ((2, 1718), (4, 3437), (8, 5000), (16, 5000), (32, 5000),
                                                                (48, 5000), (64, 5000))
       for suffix in ("s_v3", "ds_v4", "ds_v5", "ads_v5")},
}
AZURE_DB_RESERVED_CONNECTIONS = 15
AZURE_DB_STORAGE_GB = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767)
# Container Apps ends a request at 240 s at its ingress; premium ingress raises the idle limit to 30 min.
AZURE_INGRESS_TIMEOUT_SECONDS = 240
AZURE_PREMIUM_INGRESS_TIMEOUT_SECONDS = 1800
# allowedCidrs that let every client in.
ANYWHERE = ("0.0.0.0/0",)
# Azure's public-cloud regions by programmatic name, and whether each has availability zones
# (https://learn.microsoft.com/en-us/azure/reliability/regions-list). `az account list-locations
# --query "[].name"` lists what a subscription may use.
AZURE_ZONE_REGIONS = frozenset({
    "australiaeast", "austriaeast", "belgiumcentral", "brazilsouth", "canadacentral", "centralindia", "centralus",
    "chilecentral", "eastasia", "eastus", "eastus2", "francecentral", "germanywestcentral", "indonesiacentral",
    "israelcentral", "italynorth", "japaneast", "japanwest", "koreacentral", "malaysiawest", "mexicocentral",
    "newzealandnorth", "northeurope", "norwayeast", "polandcentral", "qatarcentral", "southafricanorth",
    "southcentralus", "southeastasia", "spaincentral", "swedencentral", "switzerlandnorth", "uaenorth", "uksouth",
    "westeurope", "westus2", "westus3",
})
AZURE_LOCATIONS = AZURE_ZONE_REGIONS | frozenset({
    "australiacentral", "australiacentral2", "australiasoutheast", "brazilsoutheast", "canadaeast", "francesouth",
    "germanynorth", "jioindiacentral", "jioindiawest", "koreasouth", "northcentralus", "norwaywest",
    "southafricawest", "southindia", "swedensouth", "switzerlandwest", "uaecentral", "ukwest", "westcentralus",
    "westindia", "westus",
})
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AzureConfig(_Section):
    """The `azure` stack: PostgreSQL flexible server, Blob Storage, Container Apps."""

    location: str = Field("westeurope", description="Azure region name, e.g. westeurope or eastus2")
    resource_group_name: Optional[str] = Field(None, description="use this existing resource group instead of creating "
                                               "one; it must hold no other MLflow stack (the apps are named "
                                               "mlflow-server and mlflow-proxy in every stack, and Container Apps "
                                               "names are unique per group)")
    vnet_cidr: str = Field("10.50.0.0/16", description="address space of the virtual network this stack creates (/22 or larger)")
    allowed_cidrs: tuple[str, ...] = Field(("0.0.0.0/0",), description="client networks allowed through the ingress")
    internal: bool = Field(False, description="ingress inside the virtual network only (reached over VPN or peering)")
    domain: Optional[str] = Field(None, description="DNS name users reach MLflow at (a managed certificate is "
                                  "made for it unless certificateId is set)")
    certificate_id: Optional[str] = Field(None, description="existing certificate of the Container Apps environment for `domain`")
    premium_ingress: bool = Field(False, description="premium ingress (a dedicated workload profile): idle requests "
                                  "last up to 30 minutes instead of 240 s, for slow large artifacts")
    proxy_replicas: int = Field(2, ge=1, le=30, description="Nginx replicas")
    proxy_cpu: float = Field(0.25, description="vCPUs of an Nginx replica (memory: twice as many GiB)")
    registry_sku: Literal["Basic", "Standard", "Premium"] = Field("Basic", description="Azure Container Registry tier")
    db_sku: str = Field("Standard_B2s", description="flexible server compute size; its connection limit bounds "
                        "database.maxConnections")
    db_storage_gb: int = Field(32, description="initial flexible server storage in GiB (32, 64, ... 32767): "
                               "auto-grow enlarges it and later changes are ignored; grow it by hand with "
                               "`az postgres flexible-server update --storage-size`")
    db_admin_username: str = Field("mlflow_admin", description="flexible server administrator (MLflow logs in as "
                                   "database.username, not a superuser)")
    db_backup_retention_days: int = Field(7, ge=7, le=35, description="automated backup retention (point-in-time restore)")
    db_geo_redundant_backup: bool = Field(False, description="keep backups in the paired region too")
    db_high_availability: Literal["disabled", "same-zone", "zone-redundant"] = Field(
        "disabled", description="standby server (not on burstable sizes)")
    storage_sku: Literal["Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_GZRS", "Standard_RAGRS",
                         "Standard_RAGZRS"] = Field("Standard_ZRS", description="storage account redundancy")
    blob_soft_delete_days: int = Field(7, ge=1, le=365, description="deleted blobs and containers stay recoverable this long")
    noncurrent_version_expiration_days: Optional[int] = Field(90, ge=0, le=3650, description="delete old artifact "
                                                              "versions after N days (0 or null: keep)")
    log_retention_days: int = Field(30, ge=30, le=730, description="Log Analytics retention")
    zone_redundant: Optional[bool] = Field(None, description="Container Apps environment spread over the region's "
                                           "availability zones (default: where the region has them); applies only "
                                           "when the environment is created, later changes are ignored: changing "
                                           "it means a new stack")
    alarm_email: Optional[str] = Field(None, description="address the stack's Azure Monitor alerts email (through "
                                       "its action group)")
    protect_resources: bool = Field(True, description="Pulumi `protect` on the database, storage account and registry")

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        if value not in AZURE_LOCATIONS:
            raise ValueError("must be the programmatic region name of an Azure public-cloud region, like westeurope or "
                             "eastus2 (lower case, no spaces); `az account list-locations --query "
                             "\"[].name\" -o tsv` lists those your subscription may use")
        return value

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("must be an email address")
        return value

    @field_validator("resource_group_name")
    @classmethod
    def _group(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _RESOURCE_GROUP.match(value):
            raise ValueError("must be a resource group name: 1-90 letters, digits, '-', '_', '.', '(', ')', not ending in '.'")
        return value

    @field_validator("vnet_cidr")
    @classmethod
    def _vnet(cls, value: str) -> str:
        if not _CIDR.match(value) or int(value.split("/")[1]) > 22:
            raise ValueError("must be an IPv4 CIDR of /22 or larger, e.g. 10.50.0.0/16 (Container Apps needs a /23)")
        return value

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [cidr for cidr in value if not _CIDR.match(cidr)]
        if bad or not value:
            raise ValueError(f"must be IPv4 CIDRs like 203.0.113.0/24; not {bad}")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not _HOSTNAME.match(value) or "." not in value):
            raise ValueError("must be a fully qualified DNS name like mlflow.example.com")
        return value

    @field_validator("certificate_id")
    @classmethod
    def _certificate(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                                              r"Microsoft\.App/managedEnvironments/[^/]+/(managedC|c)ertificates/[^/]+$",
                                              value, re.IGNORECASE):
            raise ValueError("must be the resource id of a Container Apps environment certificate: "
                             "/subscriptions/.../managedEnvironments/<env>/certificates/<name>")
        return value

    @field_validator("proxy_cpu")
    @classmethod
    def _proxy_cpu(cls, value: float) -> float:
        return _container_apps_cpu(value)

    @field_validator("db_sku")
    @classmethod
    def _sku(cls, value: str) -> str:
        if value not in AZURE_DB_CONNECTIONS:
            raise ValueError("must be a flexible server compute size such as Standard_B2s, Standard_D2ds_v5 or "
                             "Standard_E2ds_v5 (Burstable B*, General Purpose D*, Memory Optimized E*)")
        return value

    @field_validator("db_storage_gb")
    @classmethod
    def _storage(cls, value: int) -> int:
        if value not in AZURE_DB_STORAGE_GB:
            raise ValueError(f"must be one of {', '.join(map(str, AZURE_DB_STORAGE_GB))}")
        return value

    @field_validator("db_admin_username")
    @classmethod
    def _admin(cls, value: str) -> str:
        reserved = {"azure_superuser", "azure_pg_admin", "admin", "administrator", "root", "guest", "public"}
        if not _IDENTIFIER.match(value) or value in reserved or value.startswith("pg_"):
            raise ValueError("must be a lower-case SQL identifier, not admin, administrator, root, guest, public, "
                             "azure_superuser or pg_*")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "AzureConfig":
        if self.certificate_id and not self.domain:
            raise ValueError("azure.certificateId needs azure.domain (the name the certificate is for)")
        if self.db_high_availability != "disabled" and self.db_sku.startswith("Standard_B"):
            raise ValueError("azure.dbHighAvailability needs a General Purpose or Memory Optimized azure.dbSku "
                             "(burstable sizes have no standby)")
        if self.zone_redundant and self.location not in AZURE_ZONE_REGIONS:
            raise ValueError(f"azure.zoneRedundant: azure.location {self.location} has no availability zones; set "
                             "it false or choose a region with zones")
        if self.managed_certificate and (self.internal or tuple(self.allowed_cidrs) != ANYWHERE):
            # DigiCert validates, and renews, over the public internet
            # (https://learn.microsoft.com/en-us/azure/container-apps/custom-domains-managed-certificates).
            raise ValueError("azure.domain without azure.certificateId asks for a managed certificate, which Azure "
                             "issues and renews only for a publicly reachable app: not with azure.internal true or "
                             "azure.allowedCidrs narrower than [\"0.0.0.0/0\"]; bring your own certificate "
                             "(azure.certificateId) instead")
        return self

    @property
    def managed_certificate(self) -> bool:
        """A certificate Azure issues for `domain` (none given)."""
        return self.domain is not None and self.certificate_id is None

    @property
    def zone_redundancy(self) -> bool:
        return self.location in AZURE_ZONE_REGIONS if self.zone_redundant is None else self.zone_redundant

    @property
    def db_tier(self) -> str:
        return {"B": "Burstable", "D": "GeneralPurpose", "E": "MemoryOptimized"}[self.db_sku.split("_")[1][0]]

    @property
    def ingress_timeout_seconds(self) -> int:
        return AZURE_PREMIUM_INGRESS_TIMEOUT_SECONDS if self.premium_ingress else AZURE_INGRESS_TIMEOUT_SECONDS


def _container_apps_cpu(value: float) -> float:
    if value * 4 != int(value * 4) or not 0.25 <= value <= 4:
        raise ValueError("must be a Container Apps CPU size: 0.25 to 4 in steps of 0.25")
    return value


class StackConfig(_Section):
    """Every key of the `mlflow:` config namespace."""

    platform: Literal["local", "aws", "azure"] = Field("local", description="where the stack runs")
    mlflow_version: str = Field("3.17.2", description="MLflow version installed in the server image")
    hostnames: tuple[str, ...] = Field(("localhost", "127.0.0.1"), description="public host names of the server; --allowed-hosts is derived from them")
    server: ServerConfig = Field(default_factory=ServerConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    azure: AzureConfig = Field(default_factory=AzureConfig)

    @field_validator("mlflow_version")
    @classmethod
    def _mlflow_version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError("must be an exact version like 3.17.2")
        major, minor, _ = (int(part) for part in value.split("."))
        if (major, minor) < (3, 17):
            raise ValueError("must be 3.17.0 or later (older servers lack --allowed-hosts and break with SQLAlchemy 2.1)")
        return value

    @field_validator("hostnames")
    @classmethod
    def _hostnames(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one host, e.g. [localhost]")
        bad = [host for host in value if not (_HOSTNAME.match(host) or _IPV4.match(host))]
        if bad:
            raise ValueError(f"must be DNS names or IPv4 addresses without scheme or port; not {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _platform_defaults(cls, values: Any) -> Any:
        """Defaults that differ by platform: a cloud stack runs several replicas, so its database
        allows more connections (the default RDS db.t4g.small would allow about 225; on azure the
        size's own limit); on azure, transfers last as long as the ingress allows."""
        if not isinstance(values, dict) or values.get("platform") not in ("aws", "azure"):
            return values
        database = values.get("database")
        if database is None or (isinstance(database, dict) and not {"maxConnections", "max_connections"} & set(database)):
            if values["platform"] == "aws":
                auth = values.get("auth")
                mode = auth.get("mode", "proxy") if isinstance(auth, dict) else getattr(auth, "mode", "proxy")
                default = AWS_MAX_CONNECTIONS if mode == "proxy" else AWS_MAX_CONNECTIONS_WITH_AUTH_APP
            else:  # the size's own limit (Azure sets it by size); a size the model refuses says so below
                azure = values.get("azure") or {}
                sku = azure.get("dbSku", azure.get("db_sku", "Standard_B2s")) if isinstance(azure, dict) else None
                default = AZURE_DB_CONNECTIONS.get(sku, 100)
            values = {**values, "database": {**(database or {}), "max_connections": default}}
        proxy = values.get("proxy")
        if values["platform"] == "azure" and (proxy is None or (
                isinstance(proxy, dict) and not {"timeoutSeconds", "timeout_seconds"} & set(proxy))):
            # As long as the Container Apps ingress lets a request last.
            azure = values.get("azure") or {}
            premium = isinstance(azure, dict) and azure.get("premiumIngress", azure.get("premium_ingress")) is True
            timeout = AZURE_PREMIUM_INGRESS_TIMEOUT_SECONDS if premium else AZURE_INGRESS_TIMEOUT_SECONDS
            values = {**values, "proxy": {**(proxy or {}), "timeout_seconds": timeout}}
        proxy = values.get("proxy")
        if proxy is None or (isinstance(proxy, dict) and not {"clientMaxBodySize", "client_max_body_size"} & set(proxy)):
            limit = largest_transfer_mib(values["platform"], _raw_server_cpu(values), _raw_ephemeral_storage(values))
            values = {**values, "proxy": {**(proxy or {}), "client_max_body_size": nginx_size(limit)}}
        return values

    @model_validator(mode="after")
    def _connection_budget(self) -> "StackConfig":
        if self.server.max_replicas < self.server.replicas:
            raise ValueError("server.maxReplicas must be >= server.replicas")
        replicas = budget_replicas(self)
        engines = database_engines(self.auth)
        needed = connections_needed(self.server, replicas, engines)
        budget = self.database.max_connections - RESERVED_DB_CONNECTIONS
        if self.platform == "azure":
            budget -= AZURE_DB_RESERVED_CONNECTIONS
        if needed > budget:
            counted = ("1 replica (local)" if self.platform == "local" else
                       "(server.maxReplicas + server.replicas during a rollout)"
                       if self.platform in ROLLOUT_SURGE_PLATFORMS else
                       f"{replicas} server tasks (server.maxReplicas, and ECS's extra task with server.replicas 1)"
                       if self.platform == "aws" else "server.maxReplicas")
            raise ValueError(
                f"{counted} x (server.workers + 1) x {engines} engines x (server.dbPoolSize + server.dbMaxOverflow)"
                f" = {needed} connections exceeds database.maxConnections - {self.database.max_connections - budget}"
                f" reserved = {budget};"
                " lower workers, pool sizes or replicas, or raise database.maxConnections"
            )
        if self.auth.mode != "proxy" and len(auth_database_name(self.database.name)) > 63:
            raise ValueError(f"database.name must be at most {63 - len(AUTH_DATABASE_SUFFIX)} characters with auth.mode "
                             f"{self.auth.mode}: the auth app's database is named <database.name>{AUTH_DATABASE_SUFFIX}")
        if self.auth.mode == "oidc" and self.server.static_prefix:
            raise ValueError("auth.mode oidc cannot be combined with server.staticPrefix: mlflow-oidc-auth serves "
                             "its sign-in routes (/login, /callback) at the root only")
        if self.platform == "local" and not self.local.postgres_image.split(":")[-1].startswith(
            f"{self.database.postgres_version}."
        ):
            raise ValueError(
                f"local.postgresImage {self.local.postgres_image!r} does not match database.postgresVersion "
                f"{self.database.postgres_version!r}; change both together"
            )
        if self.platform == "aws":
            _aws_consistent(self)
            if self.proxy.tls != "off":
                raise ValueError("proxy.tls must be off on aws: the load balancer terminates TLS (set aws.domain "
                                 "with aws.hostedZoneId or aws.certificateArn for HTTPS)")
            pinned = self.aws.db_engine_version
            if pinned is not None and pinned.split(".")[0] != self.database.postgres_version:
                raise ValueError(f"aws.dbEngineVersion {pinned!r} does not match "
                                 f"database.postgresVersion {self.database.postgres_version!r}")
            if not self.aws.https and not self.aws.allow_plain_http:
                raise ValueError("the load balancer would serve plain HTTP, passwords unencrypted: set aws.domain with "
                                 "aws.hostedZoneId or aws.certificateArn, or aws.allowPlainHttp: true on purpose")
            if self.aws.db_master_username == self.database.username:
                raise ValueError("aws.dbMasterUsername must differ from database.username (MLflow's own role is not "
                                 "the master user)")
        if self.platform == "azure":
            _azure_consistent(self)
        _proxied_transfers_fit(self)
        host_ports = [self.proxy.port, self.local.minio_api_port, self.local.minio_console_port]
        if self.observability.prometheus:
            host_ports.append(self.observability.metrics_port)
        if self.platform == "local" and len(set(host_ports)) != len(host_ports):
            raise ValueError("proxy.port, local.minioApiPort, local.minioConsolePort"
                             f"{' and observability.metricsPort' if self.observability.prometheus else ''} must all differ")
        if self.observability.prometheus and self.observability.metrics_port == self.proxy.port:
            raise ValueError("observability.metricsPort must differ from proxy.port: metrics stay off the public entry")
        if self.maintenance.gc_schedule is not None:
            if self.platform == "local":
                raise ValueError("maintenance.gcSchedule: the local stack has no scheduler; run scripts/gc from cron "
                                 "(README, \"Garbage collection\")")
            if self.platform == "aws":
                try:
                    aws_schedule_expression(self.maintenance.gc_schedule)
                except ValueError as error:
                    raise ValueError(f"maintenance.gcSchedule: {error}") from None
        return self


def _azure_consistent(self: "StackConfig") -> None:
    """What the azure stack needs of the other sections."""
    azure = self.azure
    if self.proxy.tls != "off":
        raise ValueError("proxy.tls must be off on azure: the Container Apps ingress terminates TLS (set "
                         "azure.domain for your own name; the default name is HTTPS already)")
    if self.proxy.timeout_seconds > azure.ingress_timeout_seconds:
        raise ValueError(f"proxy.timeoutSeconds {self.proxy.timeout_seconds} exceeds what the Container Apps "
                         f"ingress allows ({azure.ingress_timeout_seconds} s"
                         f"{'' if azure.premium_ingress else '; azure.premiumIngress raises it to 1800'})")
    limit = AZURE_DB_CONNECTIONS[azure.db_sku]
    if self.database.max_connections > limit:
        raise ValueError(f"database.maxConnections {self.database.max_connections} exceeds what azure.dbSku "
                         f"{azure.db_sku} allows ({limit}); choose a larger size")
    if "." in self.artifacts.bucket:
        raise ValueError("artifacts.bucket names a Blob container on azure: letters, digits and '-' only, no '.'")
    _container_apps_cpu(self.server.cpu)
    if self.server.memory_mib != int(self.server.cpu * 2048):
        raise ValueError(f"server.memoryMib must be {int(self.server.cpu * 2048)} for server.cpu {self.server.cpu} "
                         "on azure (Container Apps gives 2 GiB per vCPU)")


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
FARGATE_DEFAULT_EPHEMERAL_GIB = 20
FARGATE_IMAGE_RESERVE_GIB = 4
"""The server image (MLflow and its dependencies, unpacked) and what else the task writes."""
# Container Apps: a replica's ephemeral storage by its vCPUs (consumption profile)
# (https://learn.microsoft.com/en-us/azure/container-apps/storage-mounts#ephemeral-storage).
CONTAINER_APPS_EPHEMERAL_GIB = ((0.25, 1), (0.5, 2), (1.0, 4), (float("inf"), 8))


def replica_temporary_disk_gib(platform: str, server_cpu: float, ephemeral_storage_gib: Optional[int]) -> Optional[int]:
    """GiB a server replica can spool artifacts to; None on `local` (the host's disk)."""
    if platform == "aws":
        return (ephemeral_storage_gib or FARGATE_DEFAULT_EPHEMERAL_GIB) - FARGATE_IMAGE_RESERVE_GIB
    if platform == "azure":
        return next(gib for cpus, gib in CONTAINER_APPS_EPHEMERAL_GIB if server_cpu <= cpus)
    return None


def largest_transfer_mib(platform: str, server_cpu: float, ephemeral_storage_gib: Optional[int]) -> Optional[int]:
    """The largest proxied artifact a server replica can take, in MiB; None: no limit (`local`)."""
    disk = replica_temporary_disk_gib(platform, server_cpu, ephemeral_storage_gib)
    return None if disk is None else disk * 1024 // TRANSFERS_AT_ONCE


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


def _raw_ephemeral_storage(values: Mapping[str, Any]) -> Optional[int]:
    """aws.serverEphemeralStorageGib from raw config (None where missing or malformed)."""
    aws = values.get("aws")
    if isinstance(aws, BaseModel):
        return getattr(aws, "server_ephemeral_storage_gib", None)
    raw = aws.get("serverEphemeralStorageGib", aws.get("server_ephemeral_storage_gib")) if isinstance(aws, dict) else None
    try:
        return AwsConfig.model_validate({"server_ephemeral_storage_gib": raw}).server_ephemeral_storage_gib
    except ValidationError:
        return None


def _proxied_transfers_fit(config: "StackConfig") -> None:
    """proxy.clientMaxBodySize within what a server replica can spool (see TRANSFERS_AT_ONCE)."""
    limit = largest_transfer_mib(config.platform, config.server.cpu, config.aws.server_ephemeral_storage_gib)
    value = config.proxy.client_max_body_size
    if limit is None or 0 < nginx_size_bytes(value) <= limit * MIB:
        return
    disk = replica_temporary_disk_gib(config.platform, config.server.cpu, config.aws.server_ephemeral_storage_gib)
    if config.platform == "aws":
        where = (f"a server task's {disk} GiB of Fargate ephemeral storage left beside its image; "
                 "aws.serverEphemeralStorageGib (21-200) raises it")
    else:
        where = (f"a Container Apps replica's {disk} GiB of ephemeral storage at server.cpu {config.server.cpu:g}; "
                 "8 GiB above 1 vCPU")
    raise ValueError(
        f"proxy.clientMaxBodySize {value!r} promises more than {config.platform} can hold: MLflow spools each proxied "
        f"upload and download whole on the server replica's temporary disk ({where}). Allowed: a size up to "
        f"{nginx_size(limit)} (half that disk: an upload and a download of the largest artifact at once); "
        "0 (unlimited) only on local")


# Platforms whose rollout runs the old and the new server side by side: Container Apps in single-revision
# mode keeps the old revision (up to server.maxReplicas) serving until the new one (server.replicas at first)
# is ready (https://learn.microsoft.com/en-us/azure/container-apps/revisions#revision-modes). On aws the
# server's rollouts stop old tasks first (server_rollout_percents): see ecs_rollout_peak_tasks.
ROLLOUT_SURGE_PLATFORMS = ("azure",)


def budget_replicas(config: "StackConfig") -> int:
    """Server replicas the database must serve at most: one on `local`; on a cloud the autoscaling
    ceiling, plus the new revision's replicas while a rollout runs both."""
    if config.platform == "local":
        return 1
    if config.platform == "aws":
        return ecs_rollout_peak_tasks(config.server.replicas, config.server.max_replicas)
    surge = config.server.replicas if config.platform in ROLLOUT_SURGE_PLATFORMS else 0
    return config.server.max_replicas + surge


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


class ConfigError(ValueError):
    """The stack config is invalid; the message has one line per problem."""


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
            rows.append((f"{CONFIG_NAMESPACE}:{key}", _type_name(annotation), rendered_default, field.description or ""))

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
    return {"int": "integer", "str": "string", "bool": "boolean", "float": "number"}.get(annotation.__name__, annotation.__name__)


def reference_table_markdown() -> str:
    """The README's configuration reference, generated from the model (a test keeps them equal)."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, kind, default, description in field_reference():
        lines.append(f"| `{key}` | {kind} | `{default}` | {description} |")
    return "\n".join(lines)

