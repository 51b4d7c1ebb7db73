"""What a platform must provide to the four components: a database, a bucket, an image, a one-off
job and a long-running service. Components call only this interface, so the MLflow knowledge stays
in the components and `components.render`, and the provider knowledge stays in each platform module.
"""

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Optional, Protocol, Sequence, Union

import pulumi

from components.spec import ContainerSpec


@dataclass(frozen=True)
class DatabaseRequest:
    """A PostgreSQL database for MLflow, owned by a login role that is not a superuser."""

    database: str
    username: str
    max_connections: int
    postgres_version: str
    extra_databases: tuple[str, ...] = ()
    """More databases on the same server, owned by the same role (the auth app's)."""


@dataclass
class DatabaseEndpoint:
    host: pulumi.Output[str]
    port: pulumi.Output[int]
    published_endpoint: Optional[pulumi.Output[str]] = None
    """`host:port` where the platform's own network reaches the database (an RDS endpoint), as an
    operator would look it up; None where it is private to the containers (`local`)."""
    admin_credentials: Optional[pulumi.Output[str]] = None
    """Where the platform cannot set MLflow's role up itself (RDS, a flexible server: reached only
    from inside the network, by an admin that is no superuser), the server's tasks run
    render.ROLE_SETUP_SCRIPT first with the admin's credentials: here the id of a secret the platform
    holds with them as JSON (`username`, `password`; RDS keeps its master's so)..."""
    admin_username: Optional[pulumi.Output[str]] = None
    admin_password: Optional[pulumi.Output[str]] = None
    """...or the admin's name and its generated password (secret), where the platform keeps no
    secret of its own (Azure). All three None where the role is provisioned already (`local`)."""
    instance_id: Optional[pulumi.Output[str]] = None
    """The platform's id of the database instance, for snapshots (RDS); None where it has none."""


@dataclass(frozen=True)
class ObjectStoreRequest:
    bucket: str
    prefix: str = ""
    direct: bool = False
    """artifacts.transfer direct: clients use URLs the server signs, so the store must take requests from
    them (an endpoint they reach, network rules that admit them) and the server's identity must be able to
    sign (a user-delegation key on Azure)."""


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
    part_signer_credentials: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    """Secret env (render.PART_SIGNER_CREDENTIAL_ENVS) of a second key the server signs direct-upload part URLs
    with, where the store needs one (MinIO: render.storage.part_signer_bucket_policy); empty elsewhere."""
    env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Non-secret env the server needs for this store (region, the identity to use)."""
    server_policy: Optional[pulumi.Output[str]] = None
    """IAM policy document (JSON) granting the server's identity this store, where identities are used."""
    account_name: Optional[pulumi.Output[str]] = None
    """The storage account holding the container (Azure)."""


@dataclass
class PublicEntry:
    """How users reach the platform's public service: the names, scheme and port they see."""

    hostnames: pulumi.Output[list]
    scheme: str
    port: int
    idle_timeout_seconds: Optional[int] = None
    """The idle timeout of whatever sits in front of the proxy (a load balancer, an ingress), which
    Nginx's keepalive_timeout must outlast; None where clients connect to Nginx directly (`local`)."""


@dataclass(frozen=True)
class Image:
    """An image a service runs, and the registry repository it is pulled from (ARN on AWS), so that
    only the services running it are allowed to pull from it. None: a public registry."""

    reference: pulumi.Output[str]
    repository: Optional[pulumi.Output[str]] = None


@dataclass(frozen=True)
class SecretRef:
    """A value inside a secret the platform holds and Pulumi never sees (RDS's master password)."""

    secret_id: pulumi.Output[str]
    key: str
    """The JSON key of the value in the secret."""


@dataclass(frozen=True)
class InitStep:
    """A container that must run to completion before a service starts (role setup, schema
    upgrade). It runs from the service's image."""

    service_name: str
    spec: "pulumi.Output[ContainerSpec]"
    secret_env: Mapping[str, pulumi.Output[str]]
    secret_refs: Mapping[str, SecretRef] = field(default_factory=dict)
    """Secret env whose values stay with the platform (see SecretRef)."""


@dataclass(frozen=True)
class ScheduledJob:
    """A container run to completion on a schedule, from its service's image, as its service's
    identity, with the service's secrets that `spec.secret_env_names` names (e.g. `mlflow gc`)."""

    job_name: str
    spec: "pulumi.Output[ContainerSpec]"
    schedule: str
    """A standard 5-field cron expression, UTC (config_base.cron_fields)."""
    timeout_seconds: int = 3600


ServiceRole = Literal["server", "proxy"]


@dataclass(frozen=True)
class ServiceRequest:
    """A long-lived, health-checked, restarted container, reachable by other services as
    `service_name`."""

    service_name: str
    role: ServiceRole
    """What the service is, which decides its size, replicas and identity on each platform: the MLflow
    server (`server.*`; its identity holds the storage access) or the reverse proxy (the platform's
    proxy settings). Whether users reach it is `public`."""
    spec: "pulumi.Output[ContainerSpec]"
    image_repository: Optional[pulumi.Output[str]]
    """The repository `spec.image` is pulled from (Image.repository), None for a public registry."""
    secret_env: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    runtime_files: Mapping[str, pulumi.Output[str]] = field(default_factory=dict)
    """Path -> content only known at deploy time (htpasswd, TLS key); secret where secret."""
    public: bool = False
    """Publish its first port to users (see Platform.public_entry): the load balancer, the external
    ingress, the host port. Not public: reached only by the other services, as `service_name`."""
    init: Sequence[InitStep] = ()
    """Run these first, in order, each to completion, before the service starts."""
    access_policies: Sequence[pulumi.Output[str]] = ()
    """IAM documents for the service's identity, where the platform uses identities instead of keys."""
    rollback: Union[bool, pulumi.Output[bool]] = True
    """May a failed rollout go back to the previous version? Not while the new one may have
    upgraded the database schema: the old image refuses a newer schema (see SchemaGuard)."""
    metrics_port: Optional[int] = None
    """A port of the spec for scrapers on the platform's own network, never through the public entry
    (local publishes it on the host's bind address only)."""
    jobs: Sequence[ScheduledJob] = ()
    """Scheduled one-off runs beside the service (platforms without a scheduler refuse them)."""


@dataclass(frozen=True)
class SchemaGuard:
    """What stands before a rollout that may upgrade the database schema (a new MLflow version):
    a snapshot to go back to, which the rollout waits for, and whether a failed rollout may roll
    back by itself (only while the version stays the same)."""

    before: Sequence[pulumi.Resource] = ()
    rollback_safe: Union[bool, pulumi.Output[bool]] = True


@dataclass(frozen=True)
class PlatformOutputs:
    """What a platform tells users beyond the components' outputs (MlflowTrackingServer exports them)."""

    load_balancer_dns_name: Optional[pulumi.Output[str]] = None
    log_group: Optional[pulumi.Output[str]] = None
    cluster: Optional[pulumi.Output[str]] = None
    alarm_topic: Optional[pulumi.Output[str]] = None
    resource_group: Optional[pulumi.Output[str]] = None
    run_task_network: Optional[pulumi.Output[str]] = None
    """`aws ecs run-task --network-configuration` for one-off tasks next to the server (README)."""
    warning: Optional[pulumi.Output[str]] = None
    """A deployment that works but should not stay as it is (plain HTTP on a cloud)."""
    metrics_scraper_security_group: Optional[pulumi.Output[str]] = None
    """The security group a Prometheus scraper joins to reach the proxies' metrics port (aws)."""
    domain_verification_id: Optional[pulumi.Output[str]] = None
    """The value of the TXT record `asuid.<azure.domain>` that proves the domain is the subscription's (azure)."""


@dataclass
class ServiceEndpoint:
    internal_url: pulumi.Output[str]
    """URL other services on the platform reach this one at."""
    rollout: Optional[pulumi.Resource] = None
    """The resource that, once updated, means the new version runs (an ECS service waiting for
    steady state); None where the platform does not wait for it."""


class Platform(Protocol):
    """How one environment (local Docker, AWS, Azure) realizes what the components need.

    A platform is a component of its own that holds the environment-wide resources (a network, a
    cluster, a load balancer). Every method receives `opts` whose parent is the calling component;
    resources it creates are children of that component. Methods keep no state between calls:
    what one call needs from another is passed in (an image's repository, for instance).
    """

    runtime_file_dir: str
    """Directory where a container's rendered and runtime files are placed (nginx.conf, htpasswd)."""
    database_password_specials: str
    """Special characters the platform's PostgreSQL accepts in a generated password."""
    user_outputs: PlatformOutputs

    def postgres_database(self, name: str, request: DatabaseRequest, owner_password: pulumi.Output[str],
                          opts: pulumi.ResourceOptions) -> DatabaseEndpoint:
        """The PostgreSQL server and `request.database`, owned by `request.username`. `owner_password` is
        that role's: a platform that provisions the role itself sets it (local); the clouds create only
        their administrator, and the server's role-setup step (render.role_setup_spec) gives MLflow's
        role this password before the server starts."""

    def object_store(self, name: str, request: ObjectStoreRequest,
                     opts: pulumi.ResourceOptions) -> ObjectStoreEndpoint: ...

    def server_image(self, name: str, mlflow_version: str, opts: pulumi.ResourceOptions) -> Image:
        """Build (and where needed push) the MLflow image from docker/mlflow/Dockerfile."""
        ...

    def public_image(self, name: str, reference: str, opts: pulumi.ResourceOptions) -> Image:
        """Make a pinned public image (e.g. nginx) available to the platform's containers."""
        ...

    def public_entry(self) -> PublicEntry:
        """The host names, scheme and port users reach the published service at (config host
        names on `local`; the domain or the load balancer's DNS name on a cloud)."""
        ...

    def run_service(self, name: str, request: ServiceRequest, opts: pulumi.ResourceOptions) -> ServiceEndpoint:
        """Run `request` until replaced; `opts.depends_on` holds what must exist before it starts."""
        ...

    def guard_schema_upgrade(self, name: str, database_instance: Optional[pulumi.Output[str]],
                             mlflow_version: str, opts: pulumi.ResourceOptions) -> SchemaGuard:
        """Before the server's MLflow version changes: what to take first, and whether rolling back
        stays safe (see SchemaGuard)."""
        ...

    def record_deployed_version(self, name: str, mlflow_version: str, rollout: ServiceEndpoint,
                                opts: pulumi.ResourceOptions) -> None:
        """Remember the MLflow version once its rollout is done (the next guard compares with it)."""
        ...


def moved_from_top(old_name: str, moved: bool) -> list[pulumi.Alias]:
    """The alias of a resource that sat at the top of the tree, named `old_name`, in stacks made
    before MlflowTrackingServer existed: with it, `pulumi up` moves the resource under its component
    instead of replacing it. Its children follow by themselves (the engine derives their aliases
    from their parent's)."""
    return [pulumi.Alias(name=old_name, parent=pulumi.ROOT_STACK_RESOURCE)] if moved else []


REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ImageBuild:
    """Where an image is built from: a directory of this repository's checkout, which the
    components run from."""

    context: str
    dockerfile: str


def source_fingerprint(*parts: str, directories: Sequence[Path] = (), files: Sequence[Path] = ()) -> str:
    """A digest of what an image is built from (its build arguments, Dockerfile and copied files):
    it changes exactly when the image would, so a push credential need only be renewed then."""
    digest = hashlib.sha256("\0".join(parts).encode())
    paths = [*files, *(path for directory in directories for path in sorted(directory.rglob("*"))
                       if path.is_file() and "__pycache__" not in path.parts)]
    for path in paths:
        # The mode too, as pulumi-docker's context digest counts it (provider.go: a checkout with another umask
        # rebuilds and pushes, so the push token must be renewed then as well: review 25, aws 5 F2).
        mode = oct(stat.S_IMODE(path.stat().st_mode)).encode()
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + mode + b"\0" + path.read_bytes())
    return digest.hexdigest()


def image_build(context: Path, dockerfile: Path) -> ImageBuild:
    """Paths relative to the project directory (Pulumi runs the program there): the build's inputs
    are then the same from every checkout, and `up` from CI after a workstation (README) does not
    see a changed context, rebuild and roll out for nothing. pulumi-docker reads a relative
    Dockerfile path from the project's directory, not the build context's
    (https://github.com/pulumi/pulumi-docker/releases/tag/v4.0.1)."""
    if not dockerfile.is_file():
        raise pulumi.RunError(
            f"images are built from this repository's docker/ folder, not found at {dockerfile}: use the "
            "components from a checkout (pip install -e <checkout>, or pulumi package add <checkout>/provider)")
    return ImageBuild(context=_from_project(context), dockerfile=_from_project(dockerfile))


def _from_project(path: Path) -> str:
    """`path` relative to the working directory (the Pulumi project's), in POSIX form."""
    return Path(os.path.relpath(path, Path.cwd())).as_posix()


def server_image_build() -> ImageBuild:
    """The MLflow image: the context is the repository (the image ships `migration/` too)."""
    return image_build(REPO_ROOT, REPO_ROOT / "docker" / "mlflow" / "Dockerfile")


def mirror_image_build() -> ImageBuild:
    """A public image copied as it is into a private registry (docker/mirror: FROM ${IMAGE})."""
    return image_build(REPO_ROOT / "docker" / "mirror", REPO_ROOT / "docker" / "mirror" / "Dockerfile")


def images_fingerprint(mlflow_version: str, public_images: Sequence[str]) -> str:
    """The server image's sources (its Dockerfile, the .dockerignore and every file of the build context Docker
    sends) and the public images' references, as source_fingerprint. Counted from the context as Docker filters
    it: mlflow_guard/ was copied but not counted, so a changed guard would have been pushed with a token hours
    old; and the .dockerignore left it out of the context, so no build could copy it (review 25)."""
    dockerfile = REPO_ROOT / "docker" / "mlflow" / "Dockerfile"
    return source_fingerprint(mlflow_version, *public_images,
                              files=[dockerfile, REPO_ROOT / ".dockerignore",
                                     *build_context_files(REPO_ROOT, dockerfile),
                                     REPO_ROOT / "docker" / "mirror" / "Dockerfile"])


def build_context_files(context: Path, dockerfile: Path) -> list[Path]:
    """The files of `context` Docker sends to the builder: the .dockerignore rules applied as the Docker CLI
    applies them (docker-py's exclude_paths, which MLflow itself depends on)."""
    from docker.utils.build import exclude_paths

    ignore = context / ".dockerignore"
    patterns = [line.strip() for line in (ignore.read_text().splitlines() if ignore.is_file() else [])
                if line.strip() and not line.strip().startswith("#")]
    kept = exclude_paths(str(context), patterns, dockerfile=str(dockerfile.relative_to(context)))
    return sorted(path for path in (context / name for name in kept) if path.is_file())

