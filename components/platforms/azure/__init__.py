"""The `azure` platform: PostgreSQL flexible server, Blob Storage, Azure Container Apps.

    config.py    the `mlflow:azure` config section, its limits and cross-checks
    platform.py  AzurePlatform, the component: shared resources (resource group, network, private
                 DNS, identities, registry, Container Apps environment) and what the components ask
                 for (database, container, images, apps)
    cli_login.py the fresh Azure CLI login before each of the program's `az` commands, when asked
                 (MLFLOW_FRESH_AZ_LOGIN=1: deploy.yml's `apply`)

Imports only pulumi_azure_native (plus pulumi_docker to build and push images, pulumi_command for the
registry token), so `local` never loads it.
"""

import importlib
import importlib.util

__all__ = ["AzurePlatform"]


def __getattr__(name: str):
    """AzurePlatform (and the rest of platform.py) on first use: importing this package for its config section
    must not load pulumi_azure_native."""
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(name)  # a module of the package (`from ... import config`): imported as such
    return getattr(importlib.import_module(f"{__name__}.platform"), name)
