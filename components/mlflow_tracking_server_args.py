"""MlflowTrackingServer's arguments: plain data any Pulumi language can pass.

GENERATED from the pydantic model in components/config.py by scripts/generate-package; do not edit (a
unit test fails when the two differ). Each key is the stack config key of the same name (README,
"Configuration"), with the same default and rules: MlflowTrackingServer validates its arguments with
that model. Keys that shape the resource graph are plain values; the ids of existing infrastructure
also take an Output. Pulumi's component analyzer reads these classes and docstrings for the package
schema, so this module must not use `from __future__ import annotations`.
"""

from enum import Enum
from typing import NotRequired, TypedDict

import pulumi


class PlatformName(str, Enum):
    """Allowed values of `platform`."""

    LOCAL = "local"
    AWS = "aws"
    AZURE = "azure"


class TlsMode(str, Enum):
    """Allowed values of `proxy.tls`."""

    OFF = "off"
    SELF_SIGNED = "self-signed"


class PasswordHashScheme(str, Enum):
    """Allowed values of `proxy.passwordHash`."""

    SSHA = "ssha"
    BCRYPT = "bcrypt"


class ArtifactTransfer(str, Enum):
    """Allowed values of `artifacts.transfer`."""

    PROXIED = "proxied"
    DIRECT = "direct"


class AuthMode(str, Enum):
    """Allowed values of `auth.mode`."""

    PROXY = "proxy"
    MLFLOW = "mlflow"
    OIDC = "oidc"


class Permission(str, Enum):
    """Allowed values of `auth.defaultPermission`."""

    READ = "READ"
    USE = "USE"
    EDIT = "EDIT"
    MANAGE = "MANAGE"
    NO_PERMISSIONS = "NO_PERMISSIONS"


class Oidc(TypedDict):
    """Single sign-on (auth.mode oidc) through the identity provider, with the mlflow-oidc-auth plugin."""

    discovery_url: NotRequired[str]
    """the identity provider's OpenID configuration URL (https://.../.well-known/openid-configuration). Default: unset."""

    client_id: NotRequired[str]
    """the client (application) id registered for MLflow at the provider; bearer tokens must be issued to it. Default: unset."""

    client_secret: NotRequired[pulumi.Input[str]]
    """its client secret: a secret config value (pulumi config set --secret --path mlflow:auth.oidc.clientSecret ...), never plain text. Default: unset."""

    admin_group: NotRequired[str]
    """members of this group administer MLflow: users, permissions. Default: "mlflow-admins"."""

    user_groups: NotRequired[list[str]]
    """members of these groups may sign in; everyone else is refused. Default: ["mlflow-users"]."""

    groups_claim: NotRequired[str]
    """the ID token claim that lists a user's groups. Default: "groups"."""

    scopes: NotRequired[list[str]]
    """scopes requested at sign-in (add `groups` where the provider sends the groups claim only for it, e.g. Okta). Default: ["openid", "email", "profile"]."""


class NatGateways(str, Enum):
    """Allowed values of `aws.natGateways`."""

    PER_ZONE = "per-zone"
    SINGLE = "single"


class RegistrySku(str, Enum):
    """Allowed values of `azure.registrySku`."""

    BASIC = "Basic"
    STANDARD = "Standard"
    PREMIUM = "Premium"


class DatabaseHighAvailability(str, Enum):
    """Allowed values of `azure.dbHighAvailability`."""

    DISABLED = "disabled"
    SAME_ZONE = "same-zone"
    ZONE_REDUNDANT = "zone-redundant"


class StorageRedundancy(str, Enum):
    """Allowed values of `azure.storageSku`."""

    STANDARD_LRS = "Standard_LRS"
    STANDARD_ZRS = "Standard_ZRS"
    STANDARD_GRS = "Standard_GRS"
    STANDARD_GZRS = "Standard_GZRS"
    STANDARD_RAGRS = "Standard_RAGRS"
    STANDARD_RAGZRS = "Standard_RAGZRS"


class Server(TypedDict):
    """The MLflow tracking server process."""

    workers: NotRequired[int]
    """uvicorn worker processes per replica. Default: 2."""

    replicas: NotRequired[int]
    """server replicas, spread over the zones (cloud stacks; local runs one). Default: 2."""

    max_replicas: NotRequired[int]
    """autoscaling ceiling on CPU (cloud stacks; equal to replicas: no autoscaling); the connection budget counts it. Default: 3."""

    cpu_target_percent: NotRequired[int]
    """average CPU the server's autoscaling keeps (cloud stacks). Default: 60."""

    db_pool_size: NotRequired[int]
    """SQLAlchemy pool size per engine. Default: 4."""

    db_max_overflow: NotRequired[int]
    """SQLAlchemy overflow connections per engine. Default: 4."""

    db_pool_recycle_seconds: NotRequired[int]
    """recycle pooled connections after this many seconds. Default: 1800."""

    static_prefix: NotRequired[str]
    """serve MLflow under this path, e.g. /mlflow. Default: unset."""

    job_execution: NotRequired[bool]
    """run MLflow's background job runners (off unless used). Default: false."""

    ai_gateway: NotRequired[bool]
    """MLflow's AI Gateway: LLM endpoints whose provider keys MLflow stores encrypted with a generated key (off unless used). Default: false."""

    workspaces: NotRequired[bool]
    """MLflow workspaces (--enable-workspaces): experiments and models kept apart per workspace; needed for a database with workspaces besides default. Default: false."""

    cpu: NotRequired[float]
    """CPUs per replica (cloud stacks). Default: 1.0."""

    memory_mib: NotRequired[int]
    """memory per replica in MiB (cloud stacks). Default: 2048."""


class Proxy(TypedDict):
    """The Nginx reverse proxy in front of the server: TLS, basic auth, large uploads."""

    port: NotRequired[int]
    """public port users connect to. Default: 8080."""

    tls: NotRequired[TlsMode]
    """TLS on the public port. Default: "off"."""

    username: NotRequired[str]
    """basic-auth user name. Default: "mlflow"."""

    client_max_body_size: NotRequired[str]
    """largest artifact upload, nginx syntax (0 = unlimited, 512m, 10g; every other request: at most 16m); aws and azure: at most, and by default, half the server replica's temporary disk, where MLflow spools each proxied artifact whole (README, "Large artifacts"). Default: "0"."""

    timeout_seconds: NotRequired[int]
    """read/send timeout for slow, large transfers (azure: the ingress's limit, 240 or 1800 with premium ingress). Default: 900."""

    certificate_validity_days: NotRequired[int]
    """self-signed certificate lifetime. Default: 365."""

    password_hash: NotRequired[PasswordHashScheme]
    """htpasswd scheme: ssha (salted SHA-1; the generated password is 32 random characters, so a slow hash adds nothing) or bcrypt (pulumi-random's hash; costs ~70 ms CPU per request). Default: "ssha"."""

    image: NotRequired[str]
    """pinned Nginx image. Default: "nginx:1.27.3-alpine"."""


class Database(TypedDict):
    """The PostgreSQL metadata store."""

    name: NotRequired[str]
    """database name. Default: "mlflow"."""

    username: NotRequired[str]
    """owner role the server logs in as. Default: "mlflow"."""

    max_connections: NotRequired[int]
    """PostgreSQL max_connections (aws: 200, 250 with auth.mode mlflow or oidc; azure: azure.dbSku's limit). Default: 100."""

    postgres_version: NotRequired[str]
    """PostgreSQL major version. Default: "16"."""


class Artifacts(TypedDict):
    """The artifact store."""

    bucket: NotRequired[str]
    """bucket (or Blob container) name. Default: "mlflow-artifacts"."""

    prefix: NotRequired[str]
    """key prefix for artifacts inside the bucket (empty: bucket root). Default: ""."""

    transfer: NotRequired[ArtifactTransfer]
    """proxied: every artifact byte goes through Nginx and the server; direct: the server hands clients short-lived presigned URLs and large transfers go straight to the bucket, which the clients must then reach (README, "Direct artifact transfers"). Default: "proxied"."""


class Auth(TypedDict):
    """Who may use MLflow: one shared user at Nginx, MLflow's own users and permissions, or single sign-on."""

    mode: NotRequired[AuthMode]
    """proxy: Nginx basic auth with one generated user; mlflow: MLflow's auth app (users, per-experiment and per-model permissions); oidc: single sign-on (mlflow-oidc-auth). Default: "proxy"."""

    default_permission: NotRequired[Permission]
    """what a user may do with experiments and models nobody granted them (modes mlflow, oidc). Default: "NO_PERMISSIONS"."""

    admin_username: NotRequired[str]
    """MLflow's administrator (mode mlflow); its password is generated. Default: "admin"."""

    oidc: NotRequired[Oidc]
    """Single sign-on (auth.mode oidc) through the identity provider, with the mlflow-oidc-auth plugin. Defaults for every key inside."""


class Observability(TypedDict):
    """Metrics: MLflow's Prometheus exporter and Nginx's stub_status, on an internal listener only."""

    prometheus: NotRequired[bool]
    """MLflow serves Prometheus metrics (--expose-prometheus) and Nginx its stub_status, both on the proxy's internal metrics port, never through the public entry. Default: true."""

    metrics_port: NotRequired[int]
    """the proxy's internal metrics listener (/metrics, /nginx_status); on local also the host port, bound to local.bindAddress. Default: 9180."""


class Maintenance(TypedDict):
    """Garbage collection: `mlflow gc` removes deleted runs' rows and artifacts, on a schedule."""

    gc_schedule: NotRequired[str]
    """cron expression (5 fields: minute hour day-of-month month day-of-week, UTC) running `mlflow gc` on aws and azure; unset: off (local: scripts/gc from cron). Default: unset."""

    gc_older_than: NotRequired[str]
    """`mlflow gc --older-than`: runs deleted longer ago than this (#d#h#m#s) are removed for good. Default: "30d"."""

    gc_timeout_seconds: NotRequired[int]
    """a gc run longer than this is stopped. Default: 3600."""


class Local(TypedDict):
    """Docker-on-one-machine settings (the `local` stack)."""

    bind_address: NotRequired[str]
    """host address published ports bind to (0.0.0.0 for a team host). Default: "127.0.0.1"."""

    minio_api_port: NotRequired[int]
    """host port of the MinIO S3 API. Default: 9000."""

    minio_console_port: NotRequired[int]
    """host port of the MinIO console. Default: 9001."""

    postgres_image: NotRequired[str]
    """pinned PostgreSQL image. Default: "postgres:16.6-bookworm"."""

    minio_image: NotRequired[str]
    """pinned MinIO image. Default: "minio/minio:RELEASE.2025-04-22T22-12-26Z"."""

    s3_public_host: NotRequired[str]
    """artifacts.transfer direct: the DNS name clients and the server both reach MinIO at, on minioApiPort (e.g. minio.localhost with a hosts entry on a laptop, a DNS name of a shared host); the server signs presigned URLs for it. Default: unset."""


class Aws(TypedDict):
    """The `aws` stack: RDS, S3, ECR, ECS Fargate behind an ALB."""

    region: NotRequired[str]
    """AWS region, e.g. eu-west-1. Default: "us-east-1"."""

    availability_zones: NotRequired[list[str]]
    """AZs for the new VPC's subnets (default: the account's first two in the region, as EC2 lists them: <region>a and <region>b where it has them). Default: []."""

    vpc_cidr: NotRequired[str]
    """CIDR of the VPC this stack creates. Default: "10.40.0.0/16"."""

    vpc_id: NotRequired[pulumi.Input[str]]
    """use this existing VPC instead of creating one. Default: unset."""

    public_subnet_ids: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """existing public subnets (load balancer), with vpcId. Default: []."""

    private_subnet_ids: NotRequired[pulumi.Input[list[pulumi.Input[str]]]]
    """existing private subnets (service, database), with vpcId. Default: []."""

    domain: NotRequired[str]
    """DNS name users reach MLflow at, e.g. mlflow.example.com. Default: unset."""

    hosted_zone_id: NotRequired[pulumi.Input[str]]
    """Route 53 zone of `domain`: an ACM certificate and DNS record are made there. Default: unset."""

    certificate_arn: NotRequired[pulumi.Input[str]]
    """existing ACM certificate for `domain` (instead of hostedZoneId). Default: unset."""

    allowed_cidrs: NotRequired[list[str]]
    """client networks allowed to reach the load balancer (at most 30 with HTTPS, 60 without: one security group rule per network and port). Default: ["0.0.0.0/0"]."""

    internal: NotRequired[bool]
    """load balancer inside the VPC only (reached over VPN or peering), not internet-facing; switching it replaces the load balancer (a new DNS name), refusing requests until its listeners exist. Default: false."""

    allow_plain_http: NotRequired[bool]
    """serve plain HTTP when no domain or certificate is set (passwords cross the network unencrypted): only on purpose. Default: false."""

    waf_acl_arn: NotRequired[str]
    """AWS WAF web ACL (regional) to associate with the load balancer. Default: unset."""

    proxy_replicas: NotRequired[int]
    """Nginx tasks, spread over the zones. Default: 2."""

    nat_gateways: NotRequired[NatGateways]
    """NAT gateways of the VPC this stack creates: one per zone (a zone's outage leaves the others their egress) or a single one (cheaper). Default: "per-zone"."""

    alarm_email: NotRequired[str]
    """address subscribed to the stack's alarm topic (confirm the subscription email AWS sends). Default: unset."""

    exec_enabled: NotRequired[bool]
    """ECS Exec into the server's tasks (aws ecs execute-command). Default: false."""

    db_instance_class: NotRequired[str]
    """RDS instance class. Default: "db.t4g.small"."""

    db_master_username: NotRequired[str]
    """RDS master user (its password is kept by RDS in Secrets Manager; MLflow logs in as database.username, not a superuser). Default: "mlflow_admin"."""

    db_restore_snapshot: NotRequired[str]
    """create the database from this RDS snapshot (to go back to an earlier MLflow version: README); changing it replaces the database. Default: unset."""

    db_performance_insights: NotRequired[bool]
    """RDS Performance Insights (7 days, free tier); unset: on (RDS for PostgreSQL has it on every instance class). Default: unset."""

    db_allocated_storage_gb: NotRequired[int]
    """RDS storage in GiB. Default: 20."""

    db_max_allocated_storage_gb: NotRequired[int]
    """RDS storage autoscaling ceiling in GiB. Default: 100."""

    db_engine_version: NotRequired[str]
    """unset: database.postgresVersion's major, and RDS applies minor upgrades itself; a full version like 16.6 pins it (automatic minor upgrades off: raise it yourself). Default: unset."""

    db_multi_az: NotRequired[bool]
    """standby in a second AZ. Default: false."""

    db_backup_retention_days: NotRequired[int]
    """automated backup retention. Default: 7."""

    deletion_protection: NotRequired[bool]
    """RDS deletion protection (switch off for throw-away stacks). Default: true."""

    final_snapshot: NotRequired[bool]
    """take a final RDS snapshot on delete. Default: true."""

    protect_resources: NotRequired[bool]
    """Pulumi `protect` on the database, bucket and image repository. Default: true."""

    log_retention_days: NotRequired[int]
    """CloudWatch log retention (a value CloudWatch accepts). Default: 30."""

    noncurrent_version_expiration_days: NotRequired[int]
    """expire old artifact versions after N days (0 or null: keep). Default: 90."""

    load_balancer_idle_timeout_seconds: NotRequired[int]
    """ALB idle timeout in seconds, at least proxy.timeoutSeconds (unset: proxy.timeoutSeconds), so that a slow transfer is not cut. Default: unset."""

    proxy_cpu: NotRequired[int]
    """Fargate CPU units of the proxy task. Default: 256."""

    proxy_memory_mib: NotRequired[int]
    """Fargate memory of the proxy task (a size Fargate pairs with proxyCpu). Default: 512."""

    server_ephemeral_storage_gib: NotRequired[int]
    """Fargate ephemeral storage of a server task in GiB (unset: Fargate's 20); a proxied artifact is spooled there whole, so it bounds proxy.clientMaxBodySize. Default: unset."""


class Azure(TypedDict):
    """The `azure` stack: PostgreSQL flexible server, Blob Storage, Container Apps."""

    location: NotRequired[str]
    """Azure region name, e.g. westeurope or eastus2. Default: "westeurope"."""

    resource_group_name: NotRequired[str]
    """use this existing resource group instead of creating one; it must hold no other MLflow stack (the apps are named mlflow-server and mlflow-proxy in every stack, and Container Apps names are unique per group). Default: unset."""

    vnet_cidr: NotRequired[str]
    """address space of the virtual network this stack creates (/22 or larger, outside the ranges Container Apps reserves; fixed once deployed). Default: "10.50.0.0/16"."""

    allowed_cidrs: NotRequired[list[str]]
    """client networks allowed through the ingress. Default: ["0.0.0.0/0"]."""

    internal: NotRequired[bool]
    """ingress inside the virtual network only (reached over VPN or peering). Default: false."""

    domain: NotRequired[str]
    """DNS name users reach MLflow at (a managed certificate is made for it unless certificateId is set). Default: unset."""

    certificate_id: NotRequired[str]
    """existing certificate of the Container Apps environment for `domain`. Default: unset."""

    premium_ingress: NotRequired[bool]
    """premium ingress (a dedicated workload profile): idle requests last up to 30 minutes instead of 240 s, for slow large artifacts. Default: false."""

    proxy_replicas: NotRequired[int]
    """Nginx replicas. Default: 2."""

    proxy_cpu: NotRequired[float]
    """vCPUs of an Nginx replica (memory: twice as many GiB). Default: 0.25."""

    registry_sku: NotRequired[RegistrySku]
    """Azure Container Registry tier. Default: "Basic"."""

    db_sku: NotRequired[str]
    """flexible server compute size; its connection limit bounds database.maxConnections. Default: "Standard_B2s"."""

    db_storage_gb: NotRequired[int]
    """initial flexible server storage in GiB (32, 64, ... 32767): auto-grow enlarges it and later changes are ignored; grow it by hand with `az postgres flexible-server update --storage-size`. Default: 32."""

    db_admin_username: NotRequired[str]
    """flexible server administrator (MLflow logs in as database.username, not a superuser); set when the server is created, Azure refuses a change. Default: "mlflow_admin"."""

    db_backup_retention_days: NotRequired[int]
    """automated backup retention (point-in-time restore). Default: 7."""

    db_geo_redundant_backup: NotRequired[bool]
    """keep backups in the paired region too; taken when the server is created only (a later change is ignored). Default: false."""

    db_high_availability: NotRequired[DatabaseHighAvailability]
    """standby server (not on burstable sizes). Default: "disabled"."""

    storage_sku: NotRequired[StorageRedundancy]
    """storage account redundancy (default: Standard_ZRS where the region offers it, else Standard_LRS); the zone-redundant ones only where Azure offers them. Default: unset."""

    blob_soft_delete_days: NotRequired[int]
    """deleted blobs and containers stay recoverable this long. Default: 7."""

    noncurrent_version_expiration_days: NotRequired[int]
    """delete old artifact versions after N days (0 or null: keep). Default: 90."""

    storage_client_cidrs: NotRequired[list[str]]
    """artifacts.transfer direct: the clients' public IPv4 addresses or ranges the storage account admits (it refuses every other network but the apps' subnet); at most 400, no private ranges, ranges /30 or wider, single addresses without a prefix. Default: []."""

    log_retention_days: NotRequired[int]
    """Log Analytics retention. Default: 30."""

    zone_redundant: NotRequired[bool]
    """Container Apps environment spread over the region's availability zones (default: where the region has them); applies only when the environment is created, later changes are ignored: changing it means a new stack. Default: unset."""

    alarm_email: NotRequired[str]
    """address the stack's Azure Monitor alerts email (through its action group). Default: unset."""

    protect_resources: NotRequired[bool]
    """Pulumi `protect` on the database, storage account and registry. Default: true."""


class MlflowTrackingServerArgs(TypedDict):
    """Everything is optional: with no arguments the `local` platform runs with the defaults."""

    platform: NotRequired[PlatformName]
    """where the stack runs. Default: "local"."""

    mlflow_version: NotRequired[str]
    """MLflow version installed in the server image. Default: "3.17.2"."""

    hostnames: NotRequired[list[str]]
    """public host names of the server; --allowed-hosts is derived from them. Default: ["localhost", "127.0.0.1"]."""

    server: NotRequired[Server]
    """The MLflow tracking server process. Defaults for every key inside."""

    proxy: NotRequired[Proxy]
    """The Nginx reverse proxy in front of the server: TLS, basic auth, large uploads. Defaults for every key inside."""

    database: NotRequired[Database]
    """The PostgreSQL metadata store. Defaults for every key inside."""

    artifacts: NotRequired[Artifacts]
    """The artifact store. Defaults for every key inside."""

    auth: NotRequired[Auth]
    """Who may use MLflow: one shared user at Nginx, MLflow's own users and permissions, or single sign-on. Defaults for every key inside."""

    observability: NotRequired[Observability]
    """Metrics: MLflow's Prometheus exporter and Nginx's stub_status, on an internal listener only. Defaults for every key inside."""

    maintenance: NotRequired[Maintenance]
    """Garbage collection: `mlflow gc` removes deleted runs' rows and artifacts, on a schedule. Defaults for every key inside."""

    local: NotRequired[Local]
    """Docker-on-one-machine settings (the `local` stack). Defaults for every key inside."""

    aws: NotRequired[Aws]
    """The `aws` stack: RDS, S3, ECR, ECS Fargate behind an ALB. Defaults for every key inside."""

    azure: NotRequired[Azure]
    """The `azure` stack: PostgreSQL flexible server, Blob Storage, Container Apps. Defaults for every key inside."""
