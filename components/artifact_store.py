"""ArtifactStore: the private bucket MLflow's server proxies artifacts to, and credentials scoped to it."""

from __future__ import annotations

from typing import Mapping, Optional, TypedDict

import pulumi

from components.config import ArtifactsConfig
from components.platforms.base import ObjectStoreRequest, Platform


class ArtifactStoreArgs(TypedDict):
    platform: Platform
    """Where the bucket lives (MinIO, S3, Azure Blob)."""
    artifacts: ArtifactsConfig
    """Bucket name and key prefix."""


class ArtifactStore(pulumi.ComponentResource):
    """A private bucket and the least-privileged access the tracking server needs to it.

    `server_credentials` are secret env values for the server (a bucket-scoped key pair on MinIO;
    empty on clouds where the server's identity is granted access instead).
    """

    bucket: pulumi.Output[str]
    artifact_root: pulumi.Output[str]
    endpoint_url: Optional[pulumi.Output[str]]
    console_url: Optional[pulumi.Output[str]]
    server_credentials: Mapping[str, pulumi.Output[str]]
    server_env: Mapping[str, str]
    server_policy: Optional[pulumi.Output[str]]

    def __init__(self, name: str, args: ArtifactStoreArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlflow:index:ArtifactStore", name, None, opts)
        store = args["platform"].object_store(
            name, ObjectStoreRequest(bucket=args["artifacts"].bucket, prefix=args["artifacts"].prefix),
            pulumi.ResourceOptions(parent=self),
        )
        self.ready = list(store.ready)
        self.bucket = store.bucket
        self.artifact_root = store.artifact_root
        self.endpoint_url = store.endpoint_url
        self.console_url = store.console_url
        self.server_credentials = {key: pulumi.Output.secret(value) for key, value in store.credentials.items()}
        self.server_env = dict(store.env)
        self.server_policy = store.server_policy
        outputs = {"bucket": self.bucket, "artifact_root": self.artifact_root}
        if self.endpoint_url is not None:
            outputs["endpoint_url"] = self.endpoint_url
        self.register_outputs(outputs)
