"""The `local` platform: Docker on one machine (PostgreSQL, MinIO, MLflow, Nginx).

    config.py    the `mlflow:local` config section
    platform.py  LocalDockerPlatform, the component: the network, volumes, containers and steps
"""

import importlib
import importlib.util

__all__ = ["LocalDockerPlatform"]


def __getattr__(name: str):
    """LocalDockerPlatform (and the rest of platform.py) on first use: importing this package for its
    config section must not load pulumi_docker."""
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(name)  # a module of the package (`from ... import config`): imported as such
    return getattr(importlib.import_module(f"{__name__}.platform"), name)
