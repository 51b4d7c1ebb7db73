"""The `local` platform's section of the stack configuration (`mlflow:local`), and what it needs of the
other sections (`consistent`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from pydantic import Field, field_validator

from components.config_base import _HOSTNAME, _IPV4, _pinned_image, _Section

if TYPE_CHECKING:
    from components.config import StackConfig


# Names a container's /etc/hosts maps to its own loopback (Docker writes localhost, ip6-localhost and
# ip6-loopback; distributions add localhost.localdomain): looked up there before Docker's DNS, so the server
# would reach itself, not MinIO. Other *.localhost names go to Docker's DNS inside the network (glibc has no
# special case for them), and to loopback on clients whose resolver follows RFC 6761 section 6.3.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class LocalConfig(_Section):
    """Docker-on-one-machine settings (the `local` stack)."""

    bind_address: str = Field("127.0.0.1", description="host address published ports bind to (0.0.0.0 for a team host)")
    minio_api_port: int = Field(9000, ge=1, le=65535, description="host port of the MinIO S3 API")
    minio_console_port: int = Field(9001, ge=1, le=65535, description="host port of the MinIO console")
    postgres_image: str = Field("postgres:16.6-bookworm", description="pinned PostgreSQL image")
    minio_image: str = Field("minio/minio:RELEASE.2025-04-22T22-12-26Z", description="pinned MinIO image")
    s3_public_host: Optional[str] = Field(None, description="artifacts.transfer direct: the DNS name clients and the "
                                          "server both reach MinIO at, on minioApiPort (e.g. minio.localhost with a "
                                          "hosts entry on a laptop, a DNS name of a shared host); the server signs "
                                          "presigned URLs for it")

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

    @field_validator("s3_public_host")
    @classmethod
    def _s3_public_host(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        if "/" in value or (":" in value and value.count(":") == 1):
            raise ValueError("must be a host name alone, without scheme or port (the port is local.minioApiPort)")
        if _IPV4.match(value) or ":" in value:
            raise ValueError("must be a DNS name, not an address: MinIO gets it as a name on the stack's Docker "
                             "network, so that the server reaches MinIO at the very URL it signs for clients "
                             "(an address cannot be such a name)")
        if not _HOSTNAME.match(value) or value.startswith("*") or "." not in value:
            raise ValueError("must be a DNS name with a dot, like minio.localhost or minio.example.com (the "
                             "containers' own names, postgres or mlflow-server, have none)")
        if value.lower().rstrip(".") in LOOPBACK_NAMES:
            raise ValueError(f"must not be {value}: inside the server's container it names the container itself "
                             "(its /etc/hosts), never MinIO; use e.g. minio.localhost")
        return value


def consistent(config: StackConfig) -> None:
    """What the local stack needs of the other sections: its PostgreSQL image, its host ports."""
    if not config.local.postgres_image.split(":")[-1].startswith(f"{config.database.postgres_version}."):
        raise ValueError(
            f"local.postgresImage {config.local.postgres_image!r} does not match database.postgresVersion "
            f"{config.database.postgres_version!r}; change both together"
        )
    host_ports = [config.proxy.port, config.local.minio_api_port, config.local.minio_console_port]
    if config.observability.prometheus:
        host_ports.append(config.observability.metrics_port)
    if len(set(host_ports)) != len(host_ports):
        raise ValueError("proxy.port, local.minioApiPort, local.minioConsolePort"
                         f"{' and observability.metricsPort' if config.observability.prometheus else ''} "
                         "must all differ")
    direct = config.artifacts.transfer == "direct"
    if direct and config.local.s3_public_host is None:
        raise ValueError("artifacts.transfer direct needs local.s3PublicHost: clients upload and download with URLs "
                         "the server signs for MinIO's address, and http://minio:9000 exists only on the stack's "
                         "Docker network. Name a host both reach (e.g. minio.localhost, with `127.0.0.1 "
                         "minio.localhost` in the clients' hosts file; README, \"Direct artifact transfers\"), or keep "
                         "artifacts.transfer proxied")
    if not direct and config.local.s3_public_host is not None:
        raise ValueError("local.s3PublicHost is used only with artifacts.transfer direct: set that too, or remove it")


# --- what the rest of the configuration asks of the platform (components.platforms.PLATFORMS) ---------

SECTION = LocalConfig
KNOWN_LATER_KEYS: tuple[str, ...] = ()
RESERVED_DB_CONNECTIONS = 0
ARGS_ENUM_TYPES: dict[str, str] = {}


def raw_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """The models' own defaults are the local stack's."""
    return values


def server_replicas(config: StackConfig) -> tuple[int, str]:
    return 1, "1 replica (local)"


def temporary_disk_gib(server_cpu: float, section: LocalConfig) -> Optional[int]:
    """None: the host's disk, no limit the stack knows."""
    return None


def temporary_disk_said(config: StackConfig, disk: int) -> str:
    raise AssertionError("local has no temporary disk limit")


def gc_schedule(expression: str) -> None:
    raise ValueError("the local stack has no scheduler; run scripts/gc from cron (README, \"Garbage collection\")")
