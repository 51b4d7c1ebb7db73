"""Reading the `mlflow:` namespace of the running stack's config and choosing its platform.

Kept out of `config.py` (pure pydantic, no Pulumi) and out of `__main__.py` (thin) so that
programs importing the components can reuse it.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components.config import CONFIG_NAMESPACE, ConfigError, StackConfig, parse_stack_config


def raw_namespace_config(namespace: str = CONFIG_NAMESPACE) -> dict[str, Any]:
    """Every `namespace:key` value the engine passed to the program, keyed without the namespace.

    Pulumi's Config object can only fetch keys it is asked for; validation needs all of them, so
    that a misspelt key is reported instead of silently ignored.
    """
    values = {**(runtime_config.get_config_env() or {}), **runtime_config.CONFIG.get()}
    prefix = f"{namespace}:"
    return {key[len(prefix):]: value for key, value in values.items() if key.startswith(prefix)}


def load_stack_config() -> StackConfig:
    """Validate the stack's config, or stop the program with one line per problem."""
    stack_file = f"Pulumi.{pulumi.get_stack()}.yaml"
    try:
        return parse_stack_config(raw_namespace_config(), stack_file)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None


def make_platform(config: StackConfig) -> Any:
    """Import only the chosen platform's module, so `local` never loads a cloud SDK."""
    if config.platform == "local":
        from components.platforms.local import LocalDockerPlatform

        return LocalDockerPlatform(pulumi.get_stack(), config.local, config.hostnames, config.proxy)
    if config.platform == "aws":
        from components.platforms.aws import AwsPlatform

        return AwsPlatform(pulumi.get_stack(), config.aws, config.server)
    raise pulumi.RunError(
        f"Pulumi.{pulumi.get_stack()}.yaml: {CONFIG_NAMESPACE}:platform: '{config.platform}' is not implemented yet "
        "(implemented: local, aws)"
    )
