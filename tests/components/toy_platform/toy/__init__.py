"""A toy platform kept outside `components/` (issue 24's proof): its config rules here, its component
in platform.py, registered by the entry point of the dist-info beside it. Under the unit harness's
mocks its resources are recorded like any other platform's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from pydantic import Field, field_validator

from components.config_base import _Section
from components.platforms import PlatformPlugin

if TYPE_CHECKING:
    from components.config import StackConfig


class ToyConfig(_Section):
    """The toy platform's settings (`mlflow:toy`)."""

    region: str = Field("lab-1", description="where the toy runs")
    disk_gib: int = Field(6, ge=2, le=64, description="each server replica's temporary disk")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not value.startswith("lab-"):
            raise ValueError("must be a lab region like lab-1")
        return value


SECTION = ToyConfig
KNOWN_LATER_KEYS: tuple[str, ...] = ()
RESERVED_DB_CONNECTIONS = 5
ARGS_ENUM_TYPES: dict[str, str] = {}


def raw_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """Toy's databases allow 300 connections unless the user says otherwise."""
    database = values.get("database")
    if database is None or (isinstance(database, dict) and not {"maxConnections", "max_connections"} & set(database)):
        values = {**values, "database": {**(database or {}), "max_connections": 300}}
    return values


def consistent(config: StackConfig) -> None:
    if config.proxy.tls != "off":
        raise ValueError("proxy.tls must be off on toy: its entry terminates TLS")


def server_replicas(config: StackConfig) -> tuple[int, str]:
    return config.server.max_replicas, "server.maxReplicas"


def temporary_disk_gib(server_cpu: float, section: ToyConfig) -> Optional[int]:
    return section.disk_gib


def temporary_disk_said(config: StackConfig, disk: int) -> str:
    return f"a toy replica's {disk} GiB"


def gc_schedule(expression: str) -> None:
    """Toy runs gc jobs on any standard cron expression."""


PLUGIN = PlatformPlugin("toy", __import__(__name__), "toy.platform:ToyPlatform", moved_from_top_level=False,
                        rehearsal_runtime="toy.runtime")
