"""The platforms a stack runs on, by the name `mlflow:platform` takes: each one a package here.

A platform's package holds its config section (`config.py`: the `mlflow:<name>` model, its limits
and `consistent`, what it needs of the other sections) and its component (`platform.py`, a
`Platform`, see base.py). `StackConfig` takes its `platform` values and its platform sections from
this table, and the facade builds the component it names; only the chosen platform's component
module is imported, so a `local` stack never loads a cloud SDK.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from pydantic import BaseModel

from components.platforms.aws import config as aws_config
from components.platforms.azure import config as azure_config
from components.platforms.local import config as local_config

if TYPE_CHECKING:
    from components.config import StackConfig


@dataclass(frozen=True)
class PlatformPlugin:
    """One platform: its config section and where its component lives."""

    name: str
    """The `mlflow:platform` value, and the key of its section (`mlflow:<name>`)."""
    config_section: type[BaseModel]
    consistent: Callable[[StackConfig], None]
    """ValueError when the rest of the config does not suit this platform (checked once it is chosen)."""
    component: str
    """`module:Class` of its Platform component, imported only when a stack is on it."""
    moved_from_top_level: bool = True
    """Its component takes `moved_from_top_level` (stacks made before the facade kept resources at the top)."""

    def component_class(self) -> type:
        module, _, name = self.component.partition(":")
        return getattr(importlib.import_module(module), name)


PLATFORMS: dict[str, PlatformPlugin] = {plugin.name: plugin for plugin in (
    PlatformPlugin("local", local_config.LocalConfig, local_config.consistent,
                   "components.platforms.local.platform:LocalDockerPlatform"),
    PlatformPlugin("aws", aws_config.AwsConfig, aws_config.consistent, "components.platforms.aws.platform:AwsPlatform"),
    PlatformPlugin("azure", azure_config.AzureConfig, azure_config.consistent,
                   "components.platforms.azure.platform:AzurePlatform", moved_from_top_level=False),
)}
"""Name -> platform, in the order the config reference and the generated args list them."""
