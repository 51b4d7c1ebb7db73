"""Reusable Pulumi components for a production MLflow tracking server.

    from components import MetadataStore, ArtifactStore, TrackingServer, ReverseProxy, StackConfig
"""

from components.artifact_store import ArtifactStore, ArtifactStoreArgs
from components.config import ConfigError, StackConfig, parse_stack_config
from components.metadata_store import MetadataStore, MetadataStoreArgs
from components.reverse_proxy import ReverseProxy, ReverseProxyArgs
from components.tracking_server import TrackingServer, TrackingServerArgs

__all__ = [
    "ArtifactStore", "ArtifactStoreArgs", "ConfigError", "MetadataStore", "MetadataStoreArgs",
    "ReverseProxy", "ReverseProxyArgs", "StackConfig", "TrackingServer", "TrackingServerArgs",
    "parse_stack_config",
]
