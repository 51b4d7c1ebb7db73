"""ArtifactStore: the private bucket MLflow's server proxies artifacts to, and credentials scoped to it."""

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
    """A private bucket and the least-privileged access the tracking server needs to it (with
    artifacts.transfer direct, also to sign URLs clients use, and the store open to them).

    Whatever uses the bucket depends on this component, which covers the scoped user's policy.
    """

    bucket: pulumi.Output[str]
    artifact_root: pulumi.Output[str]
    """Where the server writes proxied artifacts (s3://bucket/prefix, wasbs://...)."""
    endpoint_url: Optional[pulumi.Output[str]]
    """The S3-compatible endpoint the server uses (MinIO); None for the cloud's own service."""
    console_url: Optional[pulumi.Output[str]]
    """The store's web console for operators (MinIO), if it has one of its own."""
    server_credentials: Mapping[str, pulumi.Output[str]]
    """Secret env values for the server: a bucket-scoped key pair on MinIO; empty on clouds, where
    the server's identity is granted access instead (`server_policy`)."""
    part_signer_credentials: Mapping[str, pulumi.Output[str]]
    """Secret env values for the server's part-URL signer (MinIO with artifacts.transfer direct); empty elsewhere."""
    server_env: Mapping[str, pulumi.Input[str]]
    """Non-secret env the server needs for this store (region, the identity to use)."""
    server_policy: Optional[pulumi.Output[str]]
    """IAM policy document (JSON) for the server's identity, where the platform uses identities."""
    account_name: Optional[pulumi.Output[str]]
    """The storage account holding the container (Azure)."""

    def __init__(self, name: str, args: ArtifactStoreArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlflow:index:ArtifactStore", name, None, opts)
        store = args["platform"].object_store(
            name, ObjectStoreRequest(bucket=args["artifacts"].bucket, prefix=args["artifacts"].prefix,
                                     direct=args["artifacts"].transfer == "direct"),
            pulumi.ResourceOptions(parent=self),
        )
        self.bucket = store.bucket
        self.artifact_root = store.artifact_root
        self.endpoint_url = store.endpoint_url
        self.console_url = store.console_url
        self.server_credentials = {key: pulumi.Output.secret(value) for key, value in store.credentials.items()}
        self.part_signer_credentials = {key: pulumi.Output.secret(value)
                                        for key, value in store.part_signer_credentials.items()}
        self.server_env = dict(store.env)
        self.server_policy = store.server_policy
        self.account_name = store.account_name
        outputs = {"bucket": self.bucket, "artifact_root": self.artifact_root,
                   "server_credentials": self.server_credentials, "server_env": self.server_env,
                   "part_signer_credentials": self.part_signer_credentials}
        for key in ("endpoint_url", "console_url", "server_policy", "account_name"):
            if getattr(self, key) is not None:
                outputs[key] = getattr(self, key)
        self.register_outputs(outputs)
