"""Reusable Pulumi components for a production MLflow tracking server.

    from components import MlflowTrackingServer

MlflowTrackingServer takes plain data (any Pulumi language, see provider/); the four components
it is made of take a platform object and the config model's sections (Python only).
"""

from components.artifact_store import ArtifactStore, ArtifactStoreArgs
from components.config import ConfigError, StackConfig, parse_stack_config
from components.metadata_store import MetadataStore, MetadataStoreArgs
from components.mlflow_tracking_server import MlflowTrackingServer
from components.mlflow_tracking_server_args import MlflowTrackingServerArgs
from components.reverse_proxy import ReverseProxy, ReverseProxyArgs
from components.tracking_server import TrackingServer, TrackingServerArgs

__all__ = [
    "ArtifactStore", "ArtifactStoreArgs", "ConfigError", "MetadataStore", "MetadataStoreArgs",
    "MlflowTrackingServer", "MlflowTrackingServerArgs", "ReverseProxy", "ReverseProxyArgs", "StackConfig",
    "TrackingServer", "TrackingServerArgs", "parse_stack_config",
]
