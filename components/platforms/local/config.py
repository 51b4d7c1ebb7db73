"""The `local` platform's section of the stack configuration (`mlflow:local`), and what it needs of the
other sections (`consistent`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from pydantic import Field, field_validator

from components.config_base import _IPV4, _pinned_image, _Section

if TYPE_CHECKING:
    from components.config import StackConfig


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
