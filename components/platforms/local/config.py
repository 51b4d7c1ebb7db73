"""The `local` platform's section of the stack configuration (`mlflow:local`), and what it needs of the
other sections (`consistent`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
                         f"{' and observability.metricsPort' if config.observability.prometheus else ''} must all differ")
