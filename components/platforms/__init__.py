"""The platforms a stack runs on, by the name `mlflow:platform` takes: each one a package here.

A platform's package holds its config rules (`config.py`: the `mlflow:<name>` model, its limits,
its defaults for other sections and what it needs of them: PlatformRules) and its component (`platform.py`, a
`Platform`, see base.py). `StackConfig` takes its `platform` values and its platform sections from
this table, and the facade builds the component it names; only the chosen platform's component
module is imported, so a `local` stack never loads a cloud SDK. A platform kept in another package
registers through an entry point (ENTRY_POINT_GROUP), as tests/components/toy_platform does.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Protocol

from pydantic import BaseModel

from components.platforms.aws import config as aws_config
from components.platforms.azure import config as azure_config
from components.platforms.local import config as local_config

if TYPE_CHECKING:
    from components.config import StackConfig


class PlatformRules(Protocol):
    """What a platform's config module (`components/platforms/<name>/config.py`) gives the rest of the
    configuration."""

    SECTION: type[BaseModel]
    """The `mlflow:<name>` section's model."""
    RESERVED_DB_CONNECTIONS: int
    """Connections its database server keeps for itself, beyond the project's own reserve."""
    ARGS_ENUM_TYPES: dict[str, str]
    """`<name>.<key>` -> the generated args' enum type of each choice in its section."""
    KNOWN_LATER_KEYS: tuple[str, ...]
    """`<name>.<key>` of the keys that take a pulumi.Output (ids of existing infrastructure)."""

    def raw_defaults(self, values: dict[str, Any]) -> dict[str, Any]:
        """Its defaults for keys of other sections the user left unset (raw config, camelCase or not)."""
        ...

    def consistent(self, config: StackConfig) -> None:
        """ValueError when the rest of the config does not suit the platform (checked once it is chosen)."""
        ...

    def server_replicas(self, config: StackConfig) -> tuple[int, str]:
        """Server replicas its database must serve at most (rollouts included), and how they are counted."""
        ...

    def temporary_disk_gib(self, server_cpu: float, section: Any) -> Optional[float]:
        """GiB a server replica can spool artifacts to (`section`: its own, validated); None where the host's
        disk is the limit."""
        ...

    def temporary_disk_said(self, config: StackConfig, disk: float) -> str:
        """That disk in a config error, with what raises it."""
        ...

    def gc_schedule(self, expression: str) -> None:
        """ValueError when it cannot run gc on `maintenance.gcSchedule`."""
        ...


@dataclass(frozen=True)
class PlatformPlugin:
    """One platform: its config rules and where its component lives."""

    name: str
    """The `mlflow:platform` value, and the key of its section (`mlflow:<name>`)."""
    rules: PlatformRules
    component: str
    """`module:Class` of its Platform component, imported only when a stack is on it."""
    moved_from_top_level: bool = True
    """Its component takes `moved_from_top_level` (stacks made before the facade kept resources at the top)."""
    rehearsal_runtime: Optional[str] = None
    """The module that says what the platform runs, read from a stack's recorded graph, for the
    platform-faithful rehearsal (its contract: rehearsal/runtimes/__init__.py); None: not rehearsed that
    way (local is rehearsed through its docker CLI). Imported by the rehearsal only."""

    @property
    def config_section(self) -> type[BaseModel]:
        return self.rules.SECTION

    def component_class(self) -> type:
        module, _, name = self.component.partition(":")
        return getattr(importlib.import_module(module), name)


BUILT_IN = (
    PlatformPlugin("local", local_config, "components.platforms.local.platform:LocalDockerPlatform"),
    PlatformPlugin("aws", aws_config, "components.platforms.aws.platform:AwsPlatform",
                   rehearsal_runtime="rehearsal.runtimes.aws"),
    PlatformPlugin("azure", azure_config, "components.platforms.azure.platform:AzurePlatform",
                   moved_from_top_level=False, rehearsal_runtime="rehearsal.runtimes.azure"),
)
ENTRY_POINT_GROUP = "mlflow_platform.platforms"
"""Where a platform packaged elsewhere registers: an entry point `<name> = <module>:<PlatformPlugin>`."""


def _registered() -> dict[str, PlatformPlugin]:
    """The built-in platforms, then those other installed packages register (ENTRY_POINT_GROUP)."""
    from importlib.metadata import entry_points

    found = {plugin.name: plugin for plugin in BUILT_IN}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        plugin = entry.load()
        if not isinstance(plugin, PlatformPlugin) or plugin.name != entry.name or plugin.name in found:
            raise TypeError(f"entry point {entry.name} = {entry.value} ({ENTRY_POINT_GROUP}) must name a "
                            f"PlatformPlugin called {entry.name!r}, and not one of {', '.join(found)}")
        found[plugin.name] = plugin
    return found


PLATFORMS: dict[str, PlatformPlugin] = _registered()
"""Name -> platform, in the order the config reference and the generated args list them."""
