"""Reading the `mlflow:` namespace of the running stack's config into MlflowTrackingServer's arguments.

Kept out of `config.py` (the model) and out of `__main__.py` (thin) so that other programs can
read a stack config the same way.
"""

from typing import Any, cast

import pulumi
from pulumi.runtime import config as runtime_config

from components.config import CONFIG_NAMESPACE, ConfigError, StackConfig, parse_stack_config
from components.mlflow_tracking_server_args import MlflowTrackingServerArgs


def raw_namespace_config(namespace: str = CONFIG_NAMESPACE) -> dict[str, Any]:
    """Every `namespace:key` value the engine passed to the program, keyed without the namespace.

    Pulumi's Config object can only fetch keys it is asked for; validation needs all of them, so
    that a misspelt key is reported instead of silently ignored.
    """
    values = {**(runtime_config.get_config_env() or {}), **runtime_config.CONFIG.get()}
    prefix = f"{namespace}:"
    return {key[len(prefix):]: value for key, value in values.items() if key.startswith(prefix)}


def is_secret_key(key: str) -> bool:
    """Was `key` set with `pulumi config set --secret` (with --path: its top-level key)?"""
    return runtime_config.is_config_secret(key) or key in runtime_config.get_config_secret_keys_env()


def load_stack_config() -> StackConfig:
    """Validate the stack's config, or stop the program with one line per problem naming the stack file."""
    stack_file = f"Pulumi.{pulumi.get_stack()}.yaml"
    try:
        config = parse_stack_config(raw_namespace_config(), stack_file)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
    auth_key = f"{CONFIG_NAMESPACE}:auth"
    if config.auth.oidc.client_secret is not None and not is_secret_key(auth_key):
        raise pulumi.RunError(
            f"invalid stack configuration in {stack_file}:\n"
            f"  {auth_key}.oidc.clientSecret: is stored in plain text; store it encrypted instead: "
            f"pulumi config set --secret --path {auth_key}.oidc.clientSecret <secret>")
    return config


def load_stack_args() -> MlflowTrackingServerArgs:
    """The stack's config, validated against its file (so errors name it), as the component's arguments;
    the OIDC client secret stays a secret."""
    args = load_stack_config().model_dump()
    oidc = args["auth"]["oidc"]
    if oidc["client_secret"] is not None:
        oidc["client_secret"] = pulumi.Output.secret(oidc["client_secret"])
    return cast(MlflowTrackingServerArgs, args)
