"""The stack configuration: one pydantic model for every key, its defaults and its validation.

Keys live in the `mlflow:` namespace of `Pulumi.<stack>.yaml`, spelled in camelCase as Pulumi
users expect (`mlflow:server: {workers: 2, dbPoolSize: 4}`). Defaults make `pulumi up -s local`
work with no config at all. A wrong value stops the program before any resource is registered,
with one line per problem naming the stack file, the key and what is allowed.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

CONFIG_NAMESPACE = "mlflow"

# nginx size syntax: a number with an optional k/m/g suffix; 0 means "no limit".
_BODY_SIZE = re.compile(r"^(0|[1-9][0-9]*[kKmMgG]?)$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$")
_STATIC_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
_BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IMAGE_REF = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9._-]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[0-9a-f]{64})?$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")

# Connections the database keeps for itself, superuser sessions and one-off jobs (migration, psql).
RESERVED_DB_CONNECTIONS = 10


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
    replicas: int = Field(1, ge=1, le=20, description="server replicas (cloud stacks; local runs one)")
    db_pool_size: int = Field(4, ge=1, le=100, description="SQLAlchemy pool size per engine")
    db_max_overflow: int = Field(4, ge=0, le=100, description="SQLAlchemy overflow connections per engine")
    db_pool_recycle_seconds: int = Field(1800, ge=30, le=86400, description="recycle pooled connections after this many seconds")
    static_prefix: Optional[str] = Field(None, description="serve MLflow under this path, e.g. /mlflow")
    job_execution: bool = Field(False, description="run MLflow's background job runners (off unless used)")
    cpu: float = Field(1.0, gt=0, le=16, description="CPUs per replica (cloud stacks)")
    memory_mib: int = Field(2048, ge=512, le=65536, description="memory per replica in MiB (cloud stacks)")

    @field_validator("static_prefix")
    @classmethod
    def _prefix(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _STATIC_PREFIX.match(value):
            raise ValueError("must be a path like /mlflow: leading slash, no trailing slash, letters, digits, . _ ~ -")
        return value


class ProxyConfig(_Section):
    """The Nginx reverse proxy in front of the server: TLS, basic auth, large uploads."""

    port: int = Field(8080, ge=1, le=65535, description="public port users connect to")
    tls: Literal["off", "self-signed"] = Field("off", description="TLS on the public port")
    username: str = Field("mlflow", description="basic-auth user name")
    client_max_body_size: str = Field("0", description="largest request body, nginx syntax (0 = unlimited, 512m, 10g)")
    timeout_seconds: int = Field(900, ge=10, le=86400, description="read/send timeout for slow, large transfers")
    certificate_validity_days: int = Field(365, ge=1, le=3650, description="self-signed certificate lifetime")
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


class DatabaseConfig(_Section):
    """The PostgreSQL metadata store."""

    name: str = Field("mlflow", description="database name")
    username: str = Field("mlflow", description="owner role the server logs in as")
    max_connections: int = Field(100, ge=25, le=5000, description="PostgreSQL max_connections")
    postgres_version: str = Field("16", description="PostgreSQL major version")

    @field_validator("name", "username")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("must be a lower-case SQL identifier: a-z, 0-9, _ (max 63, not starting with a digit)")
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


class StackConfig(_Section):
    """Every key of the `mlflow:` config namespace."""

    platform: Literal["local", "aws", "azure"] = Field("local", description="where the stack runs")
    mlflow_version: str = Field("3.17.2", description="MLflow version installed in the server image")
    hostnames: tuple[str, ...] = Field(("localhost", "127.0.0.1"), description="public host names of the server; --allowed-hosts is derived from them")
    server: ServerConfig = Field(default_factory=ServerConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)

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

    @model_validator(mode="after")
    def _connection_budget(self) -> "StackConfig":
        needed = connections_needed(self.server)
        budget = self.database.max_connections - RESERVED_DB_CONNECTIONS
        if needed > budget:
            raise ValueError(
                f"server.replicas x (server.workers + 1) x 2 engines x (server.dbPoolSize + server.dbMaxOverflow)"
                f" = {needed} connections exceeds database.maxConnections - {RESERVED_DB_CONNECTIONS} reserved = {budget};"
                " lower workers or pool sizes, or raise database.maxConnections"
            )
        if self.platform == "local" and not self.local.postgres_image.split(":")[-1].startswith(
            f"{self.database.postgres_version}."
        ):
            raise ValueError(
                f"local.postgresImage {self.local.postgres_image!r} does not match database.postgresVersion "
                f"{self.database.postgres_version!r}; change both together"
            )
        if self.local.minio_api_port == self.local.minio_console_port or self.proxy.port in (
            self.local.minio_api_port, self.local.minio_console_port
        ):
            if self.platform == "local":
                raise ValueError("proxy.port, local.minioApiPort and local.minioConsolePort must all differ")
        return self


def connections_needed(server: ServerConfig) -> int:
    """Worst-case PostgreSQL connections: each worker (and the parent) holds tracking + registry engines."""
    return server.replicas * (server.workers + 1) * 2 * (server.db_pool_size + server.db_max_overflow)


class ConfigError(ValueError):
    """The stack config is invalid; the message has one line per problem."""


def parse_stack_config(raw: Mapping[str, Any], stack_file: str) -> StackConfig:
    """Validate the raw `mlflow:` config values (keys without namespace, values JSON or plain strings).

    Raises ConfigError naming the stack file, each bad key and what is allowed.
    """
    values = {key: _decode(value) for key, value in raw.items()}
    try:
        return StackConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(_format_errors(error, stack_file)) from None


def _decode(value: Any) -> Any:
    """Pulumi hands structured config (objects, lists, numbers) to the program as JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _format_errors(error: ValidationError, stack_file: str) -> str:
    lines = [f"invalid stack configuration in {stack_file}:"]
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        key = f"{CONFIG_NAMESPACE}:{location[0]}" + "".join(f".{part}" for part in location[1:]) if location else f"{CONFIG_NAMESPACE}"
        message = _explain(problem)
        lines.append(f"  {key}: {message}")
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

