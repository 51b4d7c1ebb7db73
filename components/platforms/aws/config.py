"""The `aws` platform's section of the stack configuration (`mlflow:aws`), its AWS limits, and what it
needs of the other sections (`consistent`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components.config_base import (cidr_list, cron_fields, dns_name, _CIDR, _IDENTIFIER, KnownLater, _Section,
                                    _when_known)

if TYPE_CHECKING:
    from components.config import StackConfig


# Connections an RDS instance allows MLflow by default (the default db.t4g.small would allow about 225).
AWS_MAX_CONNECTIONS = 200
AWS_MAX_CONNECTIONS_WITH_AUTH_APP = 250  # a third pool per server process (auth.mode mlflow, oidc)


# Inbound rules per security group: 60 by default (a quota an account may raise; IPv4 and IPv6 counted
# apart): https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html#vpc-limits-security-groups
SECURITY_GROUP_INBOUND_RULES = 60

# The regions the stack can be deployed to (commercial, GovCloud, China), as AWS lists them
# (https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html); a region AWS
# opens later is added here.
AWS_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "ca-west-1", "mx-central-1", "sa-east-1",
    "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-south-2", "eu-north-1",
    "il-central-1", "me-south-1", "me-central-1", "af-south-1",
    "ap-east-1", "ap-east-2", "ap-south-1", "ap-south-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6",
    "ap-southeast-7", "us-gov-east-1", "us-gov-west-1", "cn-north-1", "cn-northwest-1",
)
# Fargate's task sizes: CPU units -> the memory (MiB) each allows
# (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size).
FARGATE_TASK_SIZES = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
# An Application Load Balancer's idle timeout: 1 to 4000 seconds
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout).
ALB_MAX_IDLE_TIMEOUT_SECONDS = 4000
_DB_INSTANCE_CLASS = re.compile(r"^db\.[a-z0-9]+(\.[a-z0-9]+)?\.[a-z0-9]+$")
_CERT_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]{36}$")
def _certificate_arn(value: Optional[str]) -> Optional[str]:
    if value is not None and not _CERT_ARN.match(value):
        raise ValueError("must be an ACM certificate ARN: arn:aws:acm:<region>:<account>:certificate/<uuid>")
    return value


def _waf_acl_arn(value: Optional[str]) -> Optional[str]:
    if value is not None and not re.match(r"^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:[0-9]{12}:regional/webacl/.+", value):
        raise ValueError("must be a regional AWS WAF (wafv2) web ACL ARN: "
                         "arn:aws:wafv2:<region>:<account>:regional/webacl/...")
    return value


def _subnet_ids(value: Any) -> tuple[str, ...]:
    """A known subnet list (possibly from an Output): a tuple of non-empty strings."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise ValueError("must be a list of subnet ids")
    return tuple(value)


_LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
                       3288, 3653)


class AwsConfig(_Section):
    """The `aws` stack: RDS, S3, ECR, ECS Fargate behind an ALB."""

    region: str = Field("us-east-1", description="AWS region, e.g. eu-west-1")
    availability_zones: tuple[str, ...] = Field(
        (), description="AZs for the new VPC's subnets (default: the account's first two in the region, as EC2 "
                        "lists them: <region>a and <region>b where it has them)")
    vpc_cidr: str = Field("10.40.0.0/16", description="CIDR of the VPC this stack creates")
    vpc_id: Annotated[Optional[str], KnownLater] = Field(
        None, description="use this existing VPC instead of creating one")
    public_subnet_ids: Annotated[tuple[str, ...], KnownLater] = Field(
        (), description="existing public subnets (load balancer), with vpcId")
    private_subnet_ids: Annotated[tuple[str, ...], KnownLater] = Field(
        (), description="existing private subnets (service, database), with vpcId")
    domain: Optional[str] = Field(None, description="DNS name users reach MLflow at, e.g. mlflow.example.com")
    hosted_zone_id: Annotated[Optional[str], KnownLater] = Field(
        None, description="Route 53 zone of `domain`: an ACM certificate and DNS record are made there")
    certificate_arn: Annotated[Optional[str], KnownLater] = Field(
        None, description="existing ACM certificate for `domain` (instead of hostedZoneId)")
    allowed_cidrs: tuple[str, ...] = Field(("0.0.0.0/0",),
                                           description="client networks allowed to reach the load balancer "
                                                       "(at most 30 with HTTPS, 60 without: one security group "
                                                       "rule per network and port)")
    internal: bool = Field(False, description="load balancer inside the VPC only (reached over VPN or peering), "
                           "not internet-facing; switching it replaces the load balancer (a new DNS name), "
                           "refusing requests until its listeners exist")
    allow_plain_http: bool = Field(False, description="serve plain HTTP when no domain or certificate is set "
                                   "(passwords cross the network unencrypted): only on purpose")
    waf_acl_arn: Annotated[Optional[str], KnownLater] = Field(
        None, description="AWS WAF web ACL (regional) to associate with the load balancer")
    proxy_replicas: int = Field(2, ge=1, le=20, description="Nginx tasks, spread over the zones")
    nat_gateways: Literal["per-zone", "single"] = Field("per-zone", description="NAT gateways of the VPC this stack "
                                                        "creates: one per zone (a zone's outage leaves the others "
                                                        "their egress) or a single one (cheaper)")
    alarm_email: Optional[str] = Field(None, description="address subscribed to the stack's alarm topic (confirm the "
                                       "subscription email AWS sends)")
    exec_enabled: bool = Field(False, description="ECS Exec into the server's tasks (aws ecs execute-command)")
    db_instance_class: str = Field("db.t4g.small", description="RDS instance class")
    db_master_username: str = Field("mlflow_admin", description="RDS master user (its password is kept by RDS in "
                                    "Secrets Manager; MLflow logs in as database.username, not a superuser)")
    db_restore_snapshot: Optional[str] = Field(None, description="create the database from this RDS snapshot (to go "
                                               "back to an earlier MLflow version: README); changing it replaces "
                                               "the database")
    db_performance_insights: Optional[bool] = Field(None, description="RDS Performance Insights (7 days, free tier); "
                                                    "unset: on (RDS for PostgreSQL has it on every instance class)")
    db_allocated_storage_gb: int = Field(20, ge=20, le=65536, description="RDS storage in GiB")
    db_max_allocated_storage_gb: int = Field(100, ge=20, le=65536, description="RDS storage autoscaling ceiling in GiB")
    db_engine_version: Optional[str] = Field(None, description="unset: database.postgresVersion's major, and RDS "
                                             "applies minor upgrades itself; a full version like 16.6 pins it "
                                             "(automatic minor upgrades off: raise it yourself)")
    db_multi_az: bool = Field(False, description="standby in a second AZ")
    db_backup_retention_days: int = Field(7, ge=1, le=35, description="automated backup retention")
    deletion_protection: bool = Field(True, description="RDS deletion protection (switch off for throw-away stacks)")
    final_snapshot: bool = Field(True, description="take a final RDS snapshot on delete")
    protect_resources: bool = Field(True, description="Pulumi `protect` on the database, bucket and image repository")
    log_retention_days: int = Field(30, description="CloudWatch log retention (a value CloudWatch accepts)")
    noncurrent_version_expiration_days: Optional[int] = Field(
        90, ge=0, le=3650, description="expire old artifact versions after N days (0 or null: keep)")
    load_balancer_idle_timeout_seconds: Optional[int] = Field(
        None, ge=1, le=ALB_MAX_IDLE_TIMEOUT_SECONDS, description="ALB idle timeout in seconds, at least "
        "proxy.timeoutSeconds (unset: proxy.timeoutSeconds), so that a slow transfer is not cut")
    proxy_cpu: int = Field(256, description="Fargate CPU units of the proxy task")
    proxy_memory_mib: int = Field(512, ge=512, le=30720, description="Fargate memory of the proxy task (a size "
                                  "Fargate pairs with proxyCpu)")
    server_ephemeral_storage_gib: Optional[int] = Field(
        None, ge=21, le=200, description="Fargate ephemeral storage of a server task in GiB (unset: Fargate's 20); "
        "a proxied artifact is spooled there whole, so it bounds proxy.clientMaxBodySize")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value not in AWS_REGIONS:
            raise ValueError(f"must be an AWS region name, one of {', '.join(AWS_REGIONS)}")
        return value

    @field_validator("availability_zones")
    @classmethod
    def _azs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if value and (len(value) < 2 or len(set(value)) != len(value)):
            raise ValueError("must list at least two different availability zones, e.g. [eu-west-1a, eu-west-1b]")
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_cidr(cls, value: str) -> str:
        if not _CIDR.match(value) or int(value.split("/")[1]) > 20:
            raise ValueError("must be an IPv4 CIDR of /20 or larger, e.g. 10.40.0.0/16")
        return value

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return cidr_list(value)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: Optional[str]) -> Optional[str]:
        return value if value is None else dns_name(value)

    @field_validator("certificate_arn")
    @classmethod
    def _cert(cls, value: Any) -> Any:
        return _when_known(value, _certificate_arn, "aws.certificateArn")

    @field_validator("public_subnet_ids", "private_subnet_ids")
    @classmethod
    def _subnets(cls, value: Any, info: ValidationInfo) -> Any:
        return _when_known(value, _subnet_ids, f"aws.{to_camel(info.field_name)}")

    @field_validator("db_instance_class")
    @classmethod
    def _instance_class(cls, value: str) -> str:
        if not _DB_INSTANCE_CLASS.match(value):
            raise ValueError("must be an RDS instance class like db.t4g.small or db.r6g.large")
        return value

    @field_validator("db_engine_version")
    @classmethod
    def _engine_version(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^1[4-7]\.[0-9]+$", value):
            raise ValueError("must be a full PostgreSQL 14-17 engine version like 16.6 (leave unset to follow the "
                             "major version with RDS's minor upgrades)")
        return value

    @field_validator("db_master_username")
    @classmethod
    def _master(cls, value: str) -> str:
        if not _IDENTIFIER.match(value) or value in ("postgres", "rdsadmin", "admin"):
            raise ValueError("must be a lower-case SQL identifier other than postgres, rdsadmin or admin")
        return value

    @field_validator("db_restore_snapshot")
    @classmethod
    def _snapshot(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^(arn:aws[a-z-]*:rds:[a-z0-9-]+:[0-9]{12}:snapshot:)?"
                                              r"[a-zA-Z][a-zA-Z0-9-]{0,254}$", value):
            raise ValueError("must be an RDS snapshot identifier or ARN, e.g. mlflow-aws-mlflow-3-16-0-to-3-17-2")
        return value

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
            raise ValueError("must be an email address")
        return value

    @field_validator("waf_acl_arn")
    @classmethod
    def _waf(cls, value: Any) -> Any:
        return _when_known(value, _waf_acl_arn, "aws.wafAclArn")

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        if value not in _LOG_RETENTION_DAYS:
            raise ValueError("must be one of CloudWatch's retention values: "
                             f"{', '.join(map(str, _LOG_RETENTION_DAYS))}")
        return value

    @field_validator("proxy_cpu")
    @classmethod
    def _proxy_cpu(cls, value: int) -> int:
        if value not in (256, 512, 1024, 2048, 4096):
            raise ValueError("must be a Fargate CPU value: 256, 512, 1024, 2048 or 4096")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "AwsConfig":
        if self.certificate_arn and not self.domain:
            raise ValueError("aws.certificateArn needs aws.domain (the name the certificate is for)")
        if self.hosted_zone_id and not self.domain:
            raise ValueError("aws.hostedZoneId needs aws.domain")
        existing = (self.vpc_id, self.public_subnet_ids, self.private_subnet_ids)
        if any(existing) and not all(existing):
            raise ValueError("an existing network needs all of aws.vpcId, aws.publicSubnetIds and aws.privateSubnetIds")
        if self.availability_zones and any(not zone.startswith(self.region) for zone in self.availability_zones):
            raise ValueError(f"aws.availabilityZones must be in aws.region {self.region}")
        ports = 2 if self.https else 1  # one inbound rule per client network and listener port
        if len(self.allowed_cidrs) * ports > SECURITY_GROUP_INBOUND_RULES:
            raise ValueError(
                f"aws.allowedCidrs: at most {SECURITY_GROUP_INBOUND_RULES // ports} networks with "
                f"{'HTTPS (ports 80 and 443)' if ports == 2 else 'one listener port'}, "
                f"{len(self.allowed_cidrs)} given: each is one inbound rule per listener port on the load "
                f"balancer's security group, which holds {SECURITY_GROUP_INBOUND_RULES} (AWS's default quota); "
                "join them into larger CIDR blocks")
        if self.db_max_allocated_storage_gb < self.db_allocated_storage_gb:
            raise ValueError("aws.dbMaxAllocatedStorageGb must be >= aws.dbAllocatedStorageGb")
        _fargate_task_size("aws.proxyCpu", self.proxy_cpu, "aws.proxyMemoryMib", self.proxy_memory_mib)
        return self

    def idle_timeout(self, proxy_timeout_seconds: int) -> int:
        """The load balancer's idle timeout: as set, or proxy.timeoutSeconds (never shorter: the
        config check), so that the load balancer never cuts what Nginx still waits for."""
        return self.load_balancer_idle_timeout_seconds or proxy_timeout_seconds

    @property
    def https(self) -> bool:
        return bool(self.certificate_arn or self.hosted_zone_id)

    def engine_version(self, postgres_version: str) -> str:
        """What RDS gets: a pinned full version, or the major alone (RDS then moves minors itself, and
        a stack that names the major never asks RDS to go back down)."""
        return self.db_engine_version or postgres_version

    @property
    def performance_insights(self) -> bool:
        """On unless switched off: RDS for PostgreSQL has it on every instance class (the micro and
        small burstable classes lack it on MySQL and MariaDB only)
        (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PerfInsights.Overview.Engines.html)."""
        if self.db_performance_insights is not None:
            return self.db_performance_insights
        return True


def _fargate_task_size(cpu_key: str, cpu_units: int, memory_key: str, memory_mib: int) -> None:
    """Refuse a CPU and memory pair Fargate does not run (RegisterTaskDefinition fails at `up`)."""
    allowed = FARGATE_TASK_SIZES.get(cpu_units)
    if allowed is None:
        raise ValueError(f"{cpu_key} must be a Fargate size: "
                         f"{', '.join(f'{c / 1024:g} vCPU' for c in FARGATE_TASK_SIZES)}")
    if memory_mib not in allowed:
        raise ValueError(f"{memory_key} {memory_mib} is not a size Fargate pairs with {cpu_key} {cpu_units / 1024:g} "
                         f"vCPU: {allowed[0]} to {allowed[-1]} MiB in steps of {allowed[1] - allowed[0]}")


def server_rollout_percents(replicas: int) -> tuple[int, int]:
    """(minimumHealthyPercent, maximumPercent) of the server's ECS rollouts. With two replicas or
    more, no extra task: ECS stops up to half of the old tasks first (minimum rounded up), then
    starts their replacements, so the database never sees more servers than the autoscaling
    ceiling (capacity dips during a rollout instead). A single replica cannot stop first without
    an outage: one extra task (maximum 200%).
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service_definition_parameters.html#sd-deploymentconfiguration"""
    return (50, 100) if replicas >= 2 else (100, 200)


def ecs_rollout_peak_tasks(replicas: int, max_replicas: int) -> int:
    """Server tasks running at once during an ECS rollout at any desired count the autoscaling may
    have set (ECS rounds maximumPercent's task count down)."""
    maximum = server_rollout_percents(replicas)[1]
    return max(desired * maximum // 100 for desired in range(replicas, max_replicas + 1))


def consistent(self: StackConfig) -> None:
    """What the aws stack needs of the other sections (Fargate sizes, load balancer timeouts, rollouts)."""
    _fargate_task_size("server.cpu", round(self.server.cpu * 1024), "server.memoryMib", self.server.memory_mib)
    timeout = self.proxy.timeout_seconds
    if timeout > ALB_MAX_IDLE_TIMEOUT_SECONDS:
        raise ValueError(f"proxy.timeoutSeconds {timeout} exceeds what the load balancer allows: "
                         f"aws.loadBalancerIdleTimeoutSeconds is at most {ALB_MAX_IDLE_TIMEOUT_SECONDS} s")
    idle = self.aws.load_balancer_idle_timeout_seconds
    if idle is not None and idle < timeout:
        raise ValueError(f"aws.loadBalancerIdleTimeoutSeconds {idle} is shorter than proxy.timeoutSeconds {timeout}: "
                         "the load balancer would cut a transfer Nginx still waits for (set it to at least "
                         "proxy.timeoutSeconds, or leave it unset)")
    if self.proxy.tls != "off":
        raise ValueError("proxy.tls must be off on aws: the load balancer terminates TLS (set aws.domain "
                         "with aws.hostedZoneId or aws.certificateArn for HTTPS)")
    pinned = self.aws.db_engine_version
    if pinned is not None and pinned.split(".")[0] != self.database.postgres_version:
        raise ValueError(f"aws.dbEngineVersion {pinned!r} does not match "
                         f"database.postgresVersion {self.database.postgres_version!r}")
    if not self.aws.https and not self.aws.allow_plain_http:
        raise ValueError("the load balancer would serve plain HTTP, passwords unencrypted: set aws.domain with "
                         "aws.hostedZoneId or aws.certificateArn, or aws.allowPlainHttp: true on purpose")
    if self.aws.db_master_username == self.database.username:
        raise ValueError("aws.dbMasterUsername must differ from database.username (MLflow's own role is not "
                         "the master user)")


def aws_schedule_expression(expression: str) -> str:
    """A standard cron expression in EventBridge Scheduler's form: six fields with a year, one of the
    two day fields `?`, and days of the week counted from SUN=1 (standard cron: SUN=0 or 7)."""
    minute, hour, day, month, weekday = cron_fields(expression)
    if day != "*" and weekday != "*":
        raise ValueError("AWS cannot schedule on both a day of the month and a day of the week: set one to '*'")
    weekday = re.sub(r"\d+", lambda number: str(int(number.group()) % 7 + 1), weekday)
    if weekday == "*":
        weekday = "?"
    else:
        day = "?"
    return f"cron({minute} {hour} {day} {month} {weekday} *)"


# --- what the rest of the configuration asks of the platform (components.platforms.PLATFORMS) ---------

SECTION = AwsConfig
KNOWN_LATER_KEYS = ("aws.vpcId", "aws.publicSubnetIds", "aws.privateSubnetIds", "aws.certificateArn",
                    "aws.hostedZoneId")
"""Its keys that take a pulumi.Output (ids of existing infrastructure: see config.KNOWN_LATER_KEYS)."""
ARGS_ENUM_TYPES = {"aws.natGateways": "NatGateways"}
"""The generated args' enum type of each choice in the section (components.args_source)."""
RESERVED_DB_CONNECTIONS = 0
"""Connections RDS keeps for itself beyond the project's own reserve (config.RESERVED_DB_CONNECTIONS)."""
FARGATE_DEFAULT_EPHEMERAL_GIB = 20
FARGATE_IMAGE_RESERVE_GIB = 4
"""The server image (MLflow and its dependencies, unpacked) and what else the task writes."""


def raw_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """A cloud stack runs several replicas, so its database allows more connections by default (the
    default RDS db.t4g.small would allow about 225), more with an auth app's pool."""
    database = values.get("database")
    if database is None or (isinstance(database, dict) and not {"maxConnections", "max_connections"} & set(database)):
        auth = values.get("auth")
        mode = auth.get("mode", "proxy") if isinstance(auth, dict) else getattr(auth, "mode", "proxy")
        default = AWS_MAX_CONNECTIONS if mode == "proxy" else AWS_MAX_CONNECTIONS_WITH_AUTH_APP
        values = {**values, "database": {**(database or {}), "max_connections": default}}
    return values


def server_replicas(config: StackConfig) -> tuple[int, str]:
    """Server tasks the database must serve at most, and how they are counted: ECS stops old tasks
    first in a rollout (server_rollout_percents), so the peak is ecs_rollout_peak_tasks."""
    replicas = ecs_rollout_peak_tasks(config.server.replicas, config.server.max_replicas)
    return replicas, f"{replicas} server tasks (server.maxReplicas, and ECS's extra task with server.replicas 1)"


def temporary_disk_gib(server_cpu: float, section: AwsConfig) -> Optional[int]:
    """What a server task can spool artifacts to: its ephemeral storage beside its image."""
    return (section.server_ephemeral_storage_gib or FARGATE_DEFAULT_EPHEMERAL_GIB) - FARGATE_IMAGE_RESERVE_GIB


def temporary_disk_said(config: StackConfig, disk: int) -> str:
    return (f"a server task's {disk} GiB of Fargate ephemeral storage left beside its image; "
            "aws.serverEphemeralStorageGib (21-200) raises it")


def gc_schedule(expression: str) -> None:
    """EventBridge Scheduler runs gc: the expression must have its form (aws_schedule_expression)."""
    aws_schedule_expression(expression)
