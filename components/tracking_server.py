"""TrackingServer: the MLflow server, its image, and the schema upgrade that runs before it."""

from __future__ import annotations

from typing import Optional, TypedDict

import pulumi
import pulumi_random as random

from components import render
from components.artifact_store import ArtifactStore
from components.config import ProxyConfig, ServerConfig
from components.metadata_store import MetadataStore
from components.platforms.base import InitStep, Platform
from components.spec import ContainerSpec


class TrackingServerArgs(TypedDict):
    platform: Platform
    """Where the server runs."""
    metadata_store: MetadataStore
    """The PostgreSQL database (its connection_uri reaches the server as a secret env var)."""
    artifact_store: ArtifactStore
    """The bucket the server proxies artifacts to, and the credentials scoped to it."""
    server: ServerConfig
    """Workers, pool sizes, static prefix, job runners."""
    proxy: ProxyConfig
    """Timeouts for slow transfers (the public names, scheme and port come from the platform)."""
    mlflow_version: str
    """MLflow version installed in the image."""


class TrackingServer(pulumi.ComponentResource):
    """`mlflow server` with proxied artifacts, the security middleware configured (never disabled),
    pools sized under the database's max_connections, and `mlflow db upgrade` as its own step that
    finishes before any worker starts."""

    internal_url: pulumi.Output[str]
    container_spec: pulumi.Output[ContainerSpec]
    schema_upgrade_spec: pulumi.Output[ContainerSpec]

    def __init__(self, name: str, args: TrackingServerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlflow:index:TrackingServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        platform = args["platform"]
        metadata = args["metadata_store"]
        artifacts = args["artifact_store"]

        image = platform.server_image(f"{name}-image", args["mlflow_version"], child)
        public = platform.public_entry()
        settings = pulumi.Output.all(
            image, artifacts.artifact_root, artifacts.endpoint_url, public.hostnames,
        ).apply(lambda parts: render.tracking_server_settings(
            args["server"], args["proxy"], tuple(parts[3]),
            image=parts[0], artifacts_destination=parts[1], s3_endpoint_url=parts[2],
            artifact_secret_env_names=tuple(artifacts.server_credentials),
            extra_env=artifacts.server_env, scheme=public.scheme, port=public.port,
        ))
        self.container_spec = settings.apply(render.tracking_server_spec)
        self.schema_upgrade_spec = settings.apply(render.schema_upgrade_spec)

        backend = {render.BACKEND_URI_ENV: metadata.connection_uri}
        # Generated even while the AI Gateway is off: switching it on later then finds a key that stays
        # (a new one would leave stored secrets undecryptable).
        secrets_key = random.RandomPassword(f"{name}-secrets-key", length=48, special=False, opts=child)
        service = platform.run_service(
            name, "mlflow-server", self.container_spec,
            {**backend, render.SECRETS_KEK_ENV: secrets_key.result, **artifacts.server_credentials}, {},
            pulumi.ResourceOptions(parent=self, depends_on=[*metadata.ready, *artifacts.ready]),
            init=InitStep("mlflow-db-upgrade", self.schema_upgrade_spec, backend),
            access_policies=[artifacts.server_policy] if artifacts.server_policy is not None else [],
        )
        self.ready = list(service.resources)
        self.internal_url = service.internal_url
        self.register_outputs({"internal_url": self.internal_url})
