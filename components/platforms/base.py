"""What a platform must provide to the four components: a database, a bucket, an image, a one-off
job and a long-running service. Components call only this interface, so the MLflow knowledge stays
in the components and `render.py`, and the provider knowledge stays in each platform module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Protocol, Sequence

import pulumi

from components.spec import ContainerSpec


@dataclass(frozen=True)
class DatabaseRequest:
    """A PostgreSQL database for MLflow, owned by a login role that is not a superuser."""

    database: str
    username: str
    max_connections: int
    postgres_version: str


@dataclass
class DatabaseEndpoint:
    host: pulumi.Output[str]
    port: pulumi.Output[int]
    ready: Sequence[pulumi.Resource] = ()
    """Resources that must exist before anything connects (the role and database are provisioned)."""


@dataclass(frozen=True)
class ObjectStoreRequest:
    bucket: str
    prefix: str = ""


@dataclass
class ObjectStoreEndpoint:
    bucket: pulumi.Output[str]
    artifact_root: pulumi.Output[str]
    """Where the server writes proxied artifacts (s3://bucket/prefix, wasbs://...)."""
    endpoint_url: Optional[pulumi.Output[str]] = None
    """The S3 endpoint the server uses (MinIO); None for the cloud's own service."""
    console_url: Optional[pulumi.Output[str]] = None
    credentials: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    """Secret env the server needs for this store only (scoped keys); empty where an identity is used."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Non-secret env the server needs for this store (region, account name)."""
    server_policy: Optional[pulumi.Output[str]] = None
    """IAM policy document (JSON) granting the server's identity this store, where identities are used."""
    ready: Sequence[pulumi.Resource] = ()


@dataclass
class PublicEntry:
    """How users reach the platform's public service: the names, scheme and port they see."""

    hostnames: pulumi.Output[list]
    scheme: str
    port: int


@dataclass(frozen=True)
class InitStep:
    """A container that must run to completion before a service starts (the schema upgrade)."""

    service_name: str
    spec: "pulumi.Output[ContainerSpec]"
    secret_env: Mapping[str, pulumi.Output[str]]


@dataclass
class ServiceEndpoint:
    internal_url: pulumi.Output[str]
    """URL other services on the platform reach this one at."""
    resources: Sequence[pulumi.Resource] = ()


class Platform(Protocol):
    """How one environment (local Docker, AWS, Azure) realizes what the components need.

    Every method receives `opts` whose parent is the calling component; resources it creates are
    children of that component.
    """

    runtime_file_dir: str
    """Directory where a container's rendered and runtime files are placed (nginx.conf, htpasswd)."""
    database_password_specials: str
    """Special characters the platform's PostgreSQL accepts in a generated password."""

    def stack_outputs(self) -> dict[str, pulumi.Output]:
        """Platform-specific stack outputs (database endpoint, log group, warnings)."""
        ...

    def postgres_database(self, name: str, request: DatabaseRequest, password: pulumi.Output[str],
                          opts: pulumi.ResourceOptions) -> DatabaseEndpoint: ...

    def object_store(self, name: str, request: ObjectStoreRequest,
                     opts: pulumi.ResourceOptions) -> ObjectStoreEndpoint: ...

    def server_image(self, name: str, mlflow_version: str, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
        """Build (and where needed push) the MLflow image from docker/mlflow/Dockerfile."""
        ...

    def public_image(self, name: str, reference: str, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
        """Make a pinned public image (e.g. nginx) available to the platform's containers."""
        ...

    def public_entry(self) -> PublicEntry:
        """The host names, scheme and port users reach the published service at (config host
        names on `local`; the domain or the load balancer's DNS name on a cloud)."""
        ...

    def run_service(self, name: str, service_name: str, spec: pulumi.Output[ContainerSpec],
                    secret_env: Mapping[str, pulumi.Output[str]],
                    runtime_files: Mapping[str, pulumi.Output[str]],
                    opts: pulumi.ResourceOptions,
                    public: bool = False,
                    init: Optional[InitStep] = None,
                    access_policies: Sequence[pulumi.Output[str]] = ()) -> ServiceEndpoint:
        """Run a long-lived, health-checked, restarted container, reachable by other services as
        `service_name`. `public`: publish its first port to users (see public_entry). `init`: run this
        first, to completion, before the service starts. `access_policies`: IAM documents for the
        service's identity, where the platform uses identities instead of keys."""
        ...
