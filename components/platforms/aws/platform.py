"""AwsPlatform: RDS PostgreSQL, S3, ECR and ECS Fargate behind an Application Load Balancer.

Shape: a VPC (or an existing one) with public subnets for the load balancer and private subnets
for the tasks and the database, in two zones. Two Fargate services spread over the zones:
`mlflow-proxy` (the rendered Nginx, behind the ALB) and `mlflow-server` (MLflow, reachable only from
the proxy through ECS Service Connect, which gives Nginx a stable upstream name, `mlflow-server:5000`,
exactly as on `local`). The server's tasks first set MLflow's role up with the RDS master's
credentials (which RDS keeps in Secrets Manager; the server never gets them), then upgrade the
schema, then serve. No static AWS keys: the server's task role is granted the artifact bucket's
object actions, nothing else. Secrets reach containers from Secrets Manager via the task
definition's `secrets`, never in its plain environment or command.

Production behaviour, each with its reason at the place it is set: Service Connect's 15 s request
timeout switched off, rollouts that `pulumi up` waits for and that stop (not roll back) when a new
MLflow version may have upgraded the schema, a snapshot first, secrets that roll, autoscaling, alarms.
"""

import json
import re
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_command as command
import pulumi_docker as docker
import pulumi_random as random

from components import render
from components.config import StackConfig
from components.platforms.aws.config import aws_schedule_expression, server_rollout_percents
from components.names import SERVER_IMAGE
from components.platforms.aws import names, tasks
from components.platforms.aws.alarms import FIVE_MINUTES, AlarmTarget, expression, metric, metric_alarm
from components.platforms.aws.network import Network, existing_network, new_network, zones
from components.platforms.containers import file_env_name, output_dict, registry_token, secret_digest
from components.platforms.base import (
    images_fingerprint,
    DatabaseEndpoint,
    DatabaseRequest,
    Image,
    ObjectStoreEndpoint,
    ObjectStoreRequest,
    PlatformOutputs,
    PublicEntry,
    ScheduledJob,
    SchemaGuard,
    ServiceEndpoint,
    ServiceRequest,
    mirror_image_build,
    moved_from_top,
    server_image_build,
)

PROXY_PORT = render.PROXY_HTTP_PORT
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# The logs RDS exports to CloudWatch (into /aws/rds/instance/<identifier>/<log>):
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_LogAccess.Procedural.UploadtoCloudWatch.html
RDS_LOG_EXPORTS = ("postgresql", "upgrade")
# The longest deregistration delay a target group takes:
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html#deregistration-delay
ALB_MAX_DEREGISTRATION_DELAY_SECONDS = 3600
# What a rollout takes besides draining the old tasks: image pull, the init containers (role setup,
# schema upgrade), health checks and the grace period; the provider's default wait is 20 minutes
# (https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/ecs_service#timeouts).
ROLLOUT_START_SECONDS = 20 * 60
# ECS reports a deployment COMPLETED only after steady state AND the alarms' bake time
# (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html), later than
# the provider's steady-state wait returns: poll while IN_PROGRESS, up to $WAIT_SECONDS. A primary
# deployment of another task definition is a rollback: fail at once.
VERIFY_ROLLOUT_SCRIPT = """set -eu
deadline=$(( $(date +%s) + WAIT_SECONDS ))
while :; do
  if ! primary=$(aws ecs describe-services --region "$AWS_REGION" --cluster "$CLUSTER" --services "$SERVICE" \
      --query 'services[0].deployments[?status==`PRIMARY`] | [0].[taskDefinition, rolloutState]' --output text); then
    primary=""  # throttled or a network blip: one more poll, the deadline still applies
  fi
  definition=$(printf '%s' "$primary" | cut -f1)
  state=$(printf '%s' "$primary" | cut -f2)
  if [ -z "$primary" ]; then
    state=IN_PROGRESS
  elif [ "$definition" != "$TASK_DEFINITION" ]; then
    echo "$SERVICE: the primary deployment runs $definition, not $TASK_DEFINITION: the rollout was rolled back \
(aws ecs describe-services); Pulumi's state still names the new one: fix the cause, then 'pulumi up --refresh' \
to roll out again" >&2
    exit 1
  fi
  case "$state" in
    COMPLETED) exit 0 ;;
    IN_PROGRESS) ;;
    *) echo "$SERVICE: the rollout of $TASK_DEFINITION is $state (aws ecs describe-services); fix the cause, \
then 'pulumi up --refresh'" >&2; exit 1 ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "$SERVICE: the rollout of $TASK_DEFINITION is still IN_PROGRESS after $WAIT_SECONDS s" >&2
    exit 1
  fi
  sleep "${POLL_SECONDS:-15}"
done
"""

# Idempotent: an existing group (RDS's own) only gets its retention.
RDS_LOG_RETENTION_SCRIPT = """set -eu
for log in $LOG_EXPORTS; do
  group="/aws/rds/instance/$DB_INSTANCE/$log"
  aws logs create-log-group --region "$AWS_REGION" --log-group-name "$group" 2>/dev/null || true
  aws logs put-retention-policy --region "$AWS_REGION" --log-group-name "$group" --retention-in-days "$RETENTION_DAYS"
done
"""

# The provider's aws_db_snapshot makes one CreateDBSnapshot call, with no retry (terraform-provider-aws
# internal/service/rds/snapshot.go, resourceSnapshotCreate; only its cluster snapshot retries a busy cluster,
# hashicorp/terraform-provider-aws#14527), and RDS refuses it unless the instance is `available` or
# `storage-optimization` (InvalidDBInstanceState:
# https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSnapshot.html). Before the snapshot,
# this waits until the instance is in one of those states for READY_POLLS polls in a row (the provider's own
# wait for an instance asks for 3: ContinuousTargetOccurence) and outside its backup window (an automated
# backup starts at any time inside it and puts the instance in `backing-up`:
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_WorkingWithAutomatedBackups.BackupWindow.html)
# and its maintenance window (pending maintenance runs then:
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_UpgradeDBInstance.Maintenance.html), each
# from MARGIN_MINUTES before its start. States that never pass by themselves fail at once (status table:
# https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/accessing-monitoring.html#Overview.DBInstance.Status).
# Windows: `hh24:mi-hh24:mi` (daily) and `ddd:hh24:mi-ddd:hh24:mi` (weekly), UTC.
DB_SNAPSHOT_READY_SCRIPT = """set -eu
minute() {  # minutes since Monday 00:00 UTC of `ddd:hh:mm`, or since 00:00 of `hh:mm`
  case "$1" in
    *:*:*) day=${1%%:*}; time=${1#*:} ;;
    *) day=mon; time=$1 ;;
  esac
  index=0
  for name in mon tue wed thu fri sat sun; do
    [ "$name" = "$day" ] && break
    index=$((index + 1))
  done
  hours=${time%%:*}; minutes=${time#*:}
  echo $(( index * 1440 + ${hours#0} * 60 + ${minutes#0} ))
}
within() {  # is it now inside window $1, or MARGIN_MINUTES before it?
  case "$1" in *:*-*:*) ;; *) return 1 ;; esac
  case "$1" in *:*:*-*) period=10080 ;; *) period=1440 ;; esac
  start=$(( $(minute "${1%-*}") % period )); end=$(( $(minute "${1#*-}") % period ))
  margin=${MARGIN_MINUTES:-5}
  [ $(( (NOW % period - start + margin + 2 * period) % period )) -lt $(( (end - start + period) % period + margin )) ]
}
deadline=$(( $(date +%s) + WAIT_SECONDS ))
ready=0
why="not yet described"
while :; do
  if ! found=$(aws rds describe-db-instances --region "$AWS_REGION" --db-instance-identifier "$DB_INSTANCE" \
      --query 'DBInstances[0].[DBInstanceStatus,PreferredBackupWindow,PreferredMaintenanceWindow]' --output text); then
    found=""  # throttled or a network blip: one more poll, the deadline still applies
  fi
  status=$(printf '%s' "$found" | cut -f1)
  backup=$(printf '%s' "$found" | cut -f2)
  maintenance=$(printf '%s' "$found" | cut -f3)
  set -- $(date -u '+%u %H %M')
  NOW=$(( ($1 - 1) * 1440 + ${2#0} * 60 + ${3#0} ))
  case "$status" in
    available|storage-optimization)
      if within "$backup" || within "$maintenance"; then
        ready=0; why="inside its backup window ($backup) or maintenance window ($maintenance)"
      else
        ready=$((ready + 1)); why="$status, not yet for ${READY_POLLS:-3} polls in a row"
      fi ;;
    failed|stopped|stopping|deleting|storage-full|incompatible-*|inaccessible-encryption-credentials*)
      echo "$DB_INSTANCE is $status: RDS takes no snapshot of it, and the MLflow upgrade waits for one; \
fix that, then 'pulumi up' again" >&2
      exit 1 ;;
    *) ready=0; why=${status:-not described (aws rds describe-db-instances failed)} ;;
  esac
  if [ "$ready" -ge "${READY_POLLS:-3}" ]; then
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "$DB_INSTANCE is still $why after $WAIT_SECONDS s: no snapshot taken, nothing rolled out; \
'pulumi up' again later" >&2
    exit 1
  fi
  sleep "${POLL_SECONDS:-10}"
done
"""
# How long the upgrade waits for the instance to be ready for its snapshot: an automated backup of a
# large instance, a modification, a window of 30 minutes or more.
DB_READY_WAIT_SECONDS = 3 * 3600
# The provider waits 20 minutes for a snapshot unless told (`timeouts.create`, its only timeout:
# https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/db_snapshot#timeouts). A
# ceiling, not an estimate: it stops at once on a snapshot that fails (it waits only while `creating`), and
# the first snapshot of an instance copies all of its storage
# (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_CreateSnapshot.html).
DB_SNAPSHOT_CREATE_TIMEOUT = "4h"
# The longest SQS keeps a message (MessageRetentionPeriod):
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SetQueueAttributes.html
SQS_MAX_RETENTION_SECONDS = 14 * 24 * 3600


def s3_endpoint(region: str) -> str:
    """The S3 regional endpoint the server signs presigned URLs for (artifacts.transfer direct). Without an
    endpoint boto3 signs for the legacy global one (https://<bucket>.s3.amazonaws.com) whatever the region. For a
    bucket outside us-east-1 S3 then answers "307 Temporary Redirect" until its name has propagated (up to 24 hours
    after creation), and in a region launched after March 20, 2019 "400 Bad Request" for good ("Virtual-hosted-style
    requests for other Regions", https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html;
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingRouting.html): a client's presigned upload part
    fails either way. Regional endpoints by partition: https://docs.aws.amazon.com/general/latest/gr/s3.html
    (China: amazonaws.com.cn)."""
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://s3.{region}.{domain}"


S3_ADDRESSING_STYLE_ENV = "MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"


def s3_addressing_style(bucket: str) -> str:
    """How URLs name the bucket (MLflow passes it to botocore's `addressing_style`; with an endpoint URL
    botocore's `auto` picks path style). Virtual-hosted, as AWS recommends, except for a bucket name with a
    dot, which the endpoint's wildcard certificate does not cover over HTTPS ("Virtual hosting of buckets",
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html): path style then."""
    return "path" if "." in bucket else "virtual"


def _rollout_seconds(drain_seconds: int) -> int:
    """How long a rollout may take: starting the new tasks, then draining the old ones (the target
    group's deregistration delay, then their stop timeout)."""
    return ROLLOUT_START_SECONDS + drain_seconds + tasks.ECS_MAX_STOP_TIMEOUT_SECONDS


def _rollout_timeouts(drain_seconds: int) -> pulumi.CustomTimeouts:
    """How long `pulumi up` waits for an ECS service: a rollout ends only once the old tasks have drained."""
    minutes = -(-_rollout_seconds(drain_seconds) // 60)
    return pulumi.CustomTimeouts(create=f"{minutes}m", update=f"{minutes}m", delete=f"{minutes}m")


def _arn_account(arn: str) -> tuple[str, str]:
    """The partition and account of an ARN (arn:<partition>:<service>:<region>:<account>:...)."""
    parts = arn.split(":")
    return parts[1], parts[4]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


ECR_TOKEN_USERNAME = "AWS"
"""The user name of an ECR token (`aws ecr get-login-password`)."""

class AwsPlatform(pulumi.ComponentResource):
    """Realizes the components' needs on AWS. The network, security groups, cluster, log group,
    load balancer and alarm topic are platform-wide: children of this component. Databases,
    buckets and services are created under the component that asks for them. AWS names start
    with `<instance>-<stack>`, `instance` being the MlflowTrackingServer's name."""

    load_balancer_dns_name: pulumi.Output[str]
    log_group: pulumi.Output[str]
    cluster: pulumi.Output[str]
    alarm_topic: pulumi.Output[str]
    run_task_network: pulumi.Output[str]
    warning: Optional[pulumi.Output[str]]
    """Set while the load balancer serves plain HTTP (aws.allowPlainHttp)."""
    metrics_scraper_security_group: Optional[pulumi.Output[str]]
    """The group a Prometheus scraper joins to reach the proxies' metrics port (observability.prometheus)."""

    runtime_file_dir = "/tmp/mlflow-platform"
    # RDS master passwords may not contain '/', '@', '"', "'" or spaces; MLflow's own role's
    # password keeps to the same characters.
    database_password_specials = ":?#%&+!*-_"

    def __init__(self, name: str, config: StackConfig, instance: str,
                 opts: Optional[pulumi.ResourceOptions] = None, *, moved_from_top_level: bool = False):
        super().__init__("mlflow:index:AwsPlatform", name, None, opts)
        self.settings = config.aws
        self.server = config.server
        self.proxy = config.proxy
        self.observability = config.observability
        self.prefix = names.prefix(instance, pulumi.get_stack())
        self._child_prefix = name
        self._moved = moved_from_top_level
        self.provider = aws.Provider(
            f"{name}-aws", region=self.settings.region,
            default_tags={"tags": {"project": "mlflow-platform", "stack": pulumi.get_stack()}},
            opts=pulumi.ResourceOptions(parent=self, aliases=moved_from_top("aws", moved_from_top_level)))
        self.opts = pulumi.ResourceOptions(provider=self.provider)
        self.protect = self.settings.protect_resources
        self.images = images_fingerprint(config.mlflow_version, [config.proxy.image])
        self._registry_token: Optional[pulumi.Output[str]] = None
        # The load balancer keeps an idle connection at least as long as Nginx waits on MLflow; a
        # leaving proxy task drains as long as a transfer may last, within what ALB allows.
        self.idle_timeout_seconds = self.settings.idle_timeout(self.proxy.timeout_seconds)
        self.drain_seconds = min(self.proxy.timeout_seconds, ALB_MAX_DEREGISTRATION_DELAY_SECONDS)
        self.network: Network = (existing_network(self.settings) if self.settings.vpc_id
                                 else new_network(self.settings, self.prefix, self._shared,
                                                  zones(self.settings, self.provider)))
        self._security_groups()
        self.ecs_cluster = aws.ecs.Cluster(**self._shared("cluster"), name=self.prefix,
                                           settings=[{"name": "containerInsights", "value": "enabled"}])
        self.namespace = aws.servicediscovery.HttpNamespace(
            **self._shared("service-connect"), name=self.prefix, description="MLflow services (ECS Service Connect)")
        self.log_group_resource = aws.cloudwatch.LogGroup(
            **self._shared("logs"), name=f"/{instance}/{pulumi.get_stack()}",
            retention_in_days=self.settings.log_retention_days)
        self.alarms = self._alarm_topic()
        self._load_balancer()

        self.load_balancer_dns_name = self.load_balancer.dns_name
        self.log_group = self.log_group_resource.name
        self.cluster = self.ecs_cluster.name
        self.alarm_topic = self.alarms.topic_arn
        self.run_task_network = pulumi.Output.all(self.network.private_subnet_ids, self.server_sg.id).apply(
            lambda parts: json.dumps({"awsvpcConfiguration": {"subnets": parts[0], "securityGroups": [parts[1]],
                                                              "assignPublicIp": "DISABLED"}}))
        self.warning = None if self.settings.https else pulumi.Output.from_input(
            "The load balancer serves plain HTTP (aws.allowPlainHttp): passwords cross the network unencrypted. "
            "Set mlflow:aws.domain with mlflow:aws.hostedZoneId or mlflow:aws.certificateArn for HTTPS.")
        self.metrics_scraper_security_group = self.scraper_sg.id if self.scraper_sg is not None else None
        self.user_outputs = PlatformOutputs(
            load_balancer_dns_name=self.load_balancer_dns_name, log_group=self.log_group, cluster=self.cluster,
            alarm_topic=self.alarm_topic, run_task_network=self.run_task_network, warning=self.warning,
            metrics_scraper_security_group=self.metrics_scraper_security_group)
        outputs = {"load_balancer_dns_name": self.load_balancer_dns_name, "log_group": self.log_group,
                   "cluster": self.cluster, "alarm_topic": self.alarm_topic, "run_task_network": self.run_task_network}
        if self.metrics_scraper_security_group is not None:
            outputs["metrics_scraper_security_group"] = self.metrics_scraper_security_group
        if self.warning is not None:
            outputs["warning"] = self.warning
        self.register_outputs(outputs)

    def _shared(self, short_name: str, *, formerly: Sequence[str] = (), **options) -> dict:
        """Name and options of a platform-wide resource: named after this component, its child, on
        the stack's AWS provider, and at its pre-facade URN when it moved from the top level.
        `formerly`: other short names the same cloud object had (the resource takes it over)."""
        aliases = [alias for old in (short_name, *formerly) for alias in moved_from_top(old, self._moved)]
        aliases += [pulumi.Alias(name=f"{self._child_prefix}-{old}") for old in formerly]
        return {"resource_name": f"{self._child_prefix}-{short_name}",
                "opts": pulumi.ResourceOptions(parent=self, provider=self.provider, aliases=aliases, **options)}

    def _merge(self, opts: pulumi.ResourceOptions, **extra) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(pulumi.ResourceOptions.merge(opts, self.opts),
                                            pulumi.ResourceOptions(**extra))

    # --- platform-wide resources ------------------------------------------------------------------

    def _security_groups(self) -> None:
        """Load balancer <- clients; proxy <- load balancer; server <- proxy; database <- server."""
        def group(name: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(**self._shared(f"{name}-sg"), vpc_id=self.network.vpc_id,
                                         description=names.ec2_description(description),
                                         tags={"Name": f"{self.prefix}-{name}"})

        self.lb_sg = group("load-balancer", "MLflow load balancer: HTTP(S) from allowed client networks")
        self.proxy_sg = group("proxy", "MLflow Nginx proxy tasks: from the load balancer only")
        self.server_sg = group("server", "MLflow server tasks: from the proxy only")
        self.db_sg = group("database", "MLflow PostgreSQL: from the server tasks only")

        def ingress(name: str, sg, port: int, source_sg=None, cidr: Optional[str] = None) -> None:
            aws.vpc.SecurityGroupIngressRule(**self._shared(name), security_group_id=sg.id, ip_protocol="tcp",
                                             from_port=port, to_port=port, cidr_ipv4=cidr,
                                             referenced_security_group_id=source_sg.id if source_sg else None)

        def egress(name: str, sg, port: int, target_sg=None, cidr: Optional[str] = None) -> None:
            aws.vpc.SecurityGroupEgressRule(**self._shared(name), security_group_id=sg.id, ip_protocol="tcp",
                                            from_port=port, to_port=port, cidr_ipv4=cidr,
                                            referenced_security_group_id=target_sg.id if target_sg else None)

        listener_ports = (80, 443) if self.settings.https else (80,)
        for cidr_index, cidr in enumerate(self.settings.allowed_cidrs):
            for port in listener_ports:
                ingress(f"lb-in-{port}-{cidr_index}", self.lb_sg, port, cidr=cidr)
        egress("lb-out-proxy", self.lb_sg, PROXY_PORT, target_sg=self.proxy_sg)
        ingress("proxy-in-lb", self.proxy_sg, PROXY_PORT, source_sg=self.lb_sg)
        egress("proxy-out-server", self.proxy_sg, render.MLFLOW_PORT, target_sg=self.server_sg)
        egress("proxy-out-https", self.proxy_sg, 443, cidr="0.0.0.0/0")  # image pull, secrets, logs
        ingress("server-in-proxy", self.server_sg, render.MLFLOW_PORT, source_sg=self.proxy_sg)
        egress("server-out-database", self.server_sg, 5432, target_sg=self.db_sg)
        egress("server-out-https", self.server_sg, 443, cidr="0.0.0.0/0")  # S3, ECR, secrets, logs, ECS Exec
        ingress("database-in-server", self.db_sg, 5432, source_sg=self.server_sg)
        self.scraper_sg = None
        if self.observability.prometheus:
            # Metrics stay inside the VPC: only what carries this group (a Prometheus task or
            # instance) reaches the proxies' metrics listener.
            port = self.observability.metrics_port
            self.scraper_sg = group("metrics-scraper",
                                    "Prometheus scrapers: may reach the metrics port of the MLflow proxies")
            egress("scraper-out-proxy-metrics", self.scraper_sg, port, target_sg=self.proxy_sg)
            ingress("proxy-in-scraper-metrics", self.proxy_sg, port, source_sg=self.scraper_sg)

    def _alarm_topic(self) -> AlarmTarget:
        """The topic every alarm notifies, encrypted with a key of the stack's own: CloudWatch cannot
        publish to a topic under the AWS-managed key (alias/aws/sns), whose policy no one can widen to
        cloudwatch.amazonaws.com, and every notification would be dropped silently
        (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services,
        https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger)."""
        key = aws.kms.Key(**self._shared("alarms-key"), description=f"{self.prefix}: SNS alarm topic",
                          enable_key_rotation=True, deletion_window_in_days=30,
                          policy=self.ecs_cluster.arn.apply(
                              lambda arn: tasks.alarm_topic_key_policy(*_arn_account(arn))))
        topic = aws.sns.Topic(**self._shared("alarms"), name=f"{self.prefix}-alarms", kms_master_key_id=key.arn)
        if self.settings.alarm_email:
            aws.sns.TopicSubscription(**self._shared("alarms-email"), topic=topic.arn, protocol="email",
                                      endpoint=self.settings.alarm_email)
        return AlarmTarget(topic_arn=topic.arn, prefix=self.prefix)

    def _load_balancer(self) -> None:
        s = self.settings
        self.load_balancer = aws.lb.LoadBalancer(
            **self._shared("load-balancer"), name_prefix="mlflow", load_balancer_type="application",
            internal=s.internal, security_groups=[self.lb_sg.id],
            subnets=self.network.private_subnet_ids if s.internal else self.network.public_subnet_ids,
            idle_timeout=self.idle_timeout_seconds, drop_invalid_header_fields=True)
        self.target_group = aws.lb.TargetGroup(
            **self._shared("proxy-targets"), name_prefix="mlflow", port=PROXY_PORT, protocol="HTTP", target_type="ip",
            vpc_id=self.network.vpc_id,
            # A task leaving (deploy, scale-in) keeps serving the transfers it has for this long.
            deregistration_delay=self.drain_seconds,
            # Nginx's own location (the proxy's HealthCheck.http_path): ECS replaces targets the load
            # balancer finds unhealthy, so a check passed on to MLflow would replace every proxy (and
            # cut every transfer) whenever the server blips.
            health_check={"path": render.PROXY_LIVENESS_PATH, "matcher": "200", "interval": 15, "healthy_threshold": 2,
                          "unhealthy_threshold": 3, "timeout": 5})
        certificate_arn = self._certificate()
        forward = [{"type": "forward", "target_group_arn": self.target_group.arn}]
        # A target group belongs to one load balancer: when the load balancer is replaced (aws.internal
        # switched), a new listener forwarding to it while the old one still does is refused
        # (TargetGroupAssociationLimit: hashicorp/terraform-provider-aws#22005). The old listener goes
        # first; the switch drops requests until the new one exists (README).
        forwarding = {"delete_before_replace": True}
        if certificate_arn is not None:
            self.listener = aws.lb.Listener(**self._shared("https", **forwarding),
                                            load_balancer_arn=self.load_balancer.arn, port=443,
                                            protocol="HTTPS", ssl_policy=TLS_POLICY, certificate_arn=certificate_arn,
                                            default_actions=forward)
            # Port 80 is one listener in both modes (ELB refuses a second on the same port:
            # DuplicateListener): switching modes updates it in place, the alias carrying it over.
            aws.lb.Listener(**self._shared("http-redirect", formerly=["http"]),
                            load_balancer_arn=self.load_balancer.arn,
                            port=80,
                            protocol="HTTP", default_actions=[{"type": "redirect", "redirect": {
                                "port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}])
        else:  # only with aws.allowPlainHttp (config check)
            self.listener = aws.lb.Listener(**self._shared("http", formerly=["http-redirect"], **forwarding),
                                            load_balancer_arn=self.load_balancer.arn, port=80,
                                            protocol="HTTP", default_actions=forward)
        if s.waf_acl_arn:
            aws.wafv2.WebAclAssociation(**self._shared("waf"), resource_arn=self.load_balancer.arn,
                                        web_acl_arn=s.waf_acl_arn)
        balancer = {"LoadBalancer": self.load_balancer.arn_suffix}
        self.errors_alarm = metric_alarm(
            **self._shared("alarm-5xx"), target=self.alarms, short_name="http-5xx",
            description="More than 5% of requests answered 5xx (by MLflow or, with no healthy target, the load "
                        "balancer) in 3 of 5 minutes; ECS stops a rollout on it",
            comparison_operator="GreaterThanThreshold", threshold=5, evaluation_periods=5, datapoints_to_alarm=3,
            # Every metric FILLed: 5xx answered while RequestCount reports nothing (no target reached)
            # reads as 100%, not as missing data; no traffic at all is no error (not breaching)
            # (FILL, IF: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html).
            metric_queries=expression("rate", "IF(served > 0, 100 * errors / served, 100 * (errors > 0))",
                                      "5xx per 100 requests", [
                metric("targets", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", balancer),
                metric("balancer", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", balancer),
                metric("requests", "AWS/ApplicationELB", "RequestCount", balancer),
                {"id": "errors", "expression": "FILL(targets, 0) + FILL(balancer, 0)", "return_data": False},
                {"id": "served", "expression": "FILL(requests, 0)", "return_data": False}]))
        metric_alarm(
            **self._shared("alarm-unhealthy"), target=self.alarms, short_name="unhealthy-proxy-targets",
            description=f"A proxy task failed the load balancer's {render.PROXY_LIVENESS_PATH} check for 5 minutes",
            namespace="AWS/ApplicationELB", metric_name="UnHealthyHostCount", statistic="Maximum", period=60,
            dimensions={"LoadBalancer": self.load_balancer.arn_suffix, "TargetGroup": self.target_group.arn_suffix},
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=1, evaluation_periods=5)

    def _certificate(self) -> Optional[pulumi.Input[str]]:
        s = self.settings
        if s.certificate_arn:
            return s.certificate_arn
        if not s.hosted_zone_id:
            return None
        certificate = aws.acm.Certificate(**self._shared("certificate"), domain_name=s.domain, validation_method="DNS")
        option = certificate.domain_validation_options[0]
        validation_record = aws.route53.Record(
            **self._shared("certificate-validation"), zone_id=s.hosted_zone_id, name=option.resource_record_name,
            type=option.resource_record_type, records=[option.resource_record_value], ttl=300, allow_overwrite=True)
        validation = aws.acm.CertificateValidation(**self._shared("certificate"), certificate_arn=certificate.arn,
                                                   validation_record_fqdns=[validation_record.fqdn])
        aws.route53.Record(**self._shared("domain"), zone_id=s.hosted_zone_id, name=s.domain, type="A",
                           aliases=[{"name": self.load_balancer.dns_name, "zone_id": self.load_balancer.zone_id,
                                     "evaluate_target_health": True}])
        return validation.certificate_arn

    # --- Platform interface ---------------------------------------------------------------------

    def postgres_database(self, name: str, request: DatabaseRequest, owner_password: pulumi.Output[str],
                          opts: pulumi.ResourceOptions) -> DatabaseEndpoint:
        """RDS, with a master user whose password RDS keeps (Secrets Manager, rotated by RDS): Pulumi
        never holds it. MLflow's own role gets `owner_password` from the server's role-setup step."""
        s = self.settings
        child = self._merge(opts)
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=self.network.private_subnet_ids,
                                      description="MLflow database: private subnets only", opts=child)
        parameters = aws.rds.ParameterGroup(
            f"{name}-parameters", family=f"postgres{request.postgres_version}",
            description="MLflow database parameters",
            # Both are static parameters: a change applies at the instance's next reboot (README).
            parameters=[{"name": "max_connections", "value": str(request.max_connections),
                         "apply_method": "pending-reboot"},
                        {"name": "rds.force_ssl", "value": "1", "apply_method": "pending-reboot"}],
            opts=child)
        # A final snapshot name of its own for each instance: new whenever the instance is (its
        # keepers are what replaces an RDS instance: the snapshot it is made from, its database
        # name, master user, engine), so a restore done twice, or a stack destroyed and made again,
        # never meets an earlier instance's final snapshot (DBSnapshotAlreadyExists).
        final_suffix = random.RandomId(f"{name}-final-snapshot", byte_length=4, opts=child, keepers={
            "database": request.database, "engine": "postgres", "master": s.db_master_username,
            "snapshot": s.db_restore_snapshot or ""})
        pinned = s.db_engine_version is not None
        instance = aws.rds.Instance(
            name,
            # A prefix, not a fixed identifier: a replacement (a restore) is made before the old
            # instance goes, under a name of its own, and existing stacks keep their instance and
            # endpoint (a changed identifier renames the instance, and its endpoint with it).
            identifier_prefix=f"{names.fit(self.prefix, names.RDS_IDENTIFIER_PREFIX_MAX - 1)}-",
            engine="postgres",
            # The major alone, unless pinned: RDS applies minor upgrades itself, and a stack that
            # names 16.6 would ask RDS to go back down from 16.7 (which RDS refuses).
            engine_version=s.engine_version(request.postgres_version),
            auto_minor_version_upgrade=not pinned,
            allow_major_version_upgrade=False,
            instance_class=s.db_instance_class,
            # A changed class, storage, Multi-AZ or pinned minor applies at `pulumi up` (a restart or
            # failover then), not at the next maintenance window while `up` reports it done and every
            # later `up` shows the same change again. Static parameters still wait for a reboot (README).
            apply_immediately=True,
            allocated_storage=s.db_allocated_storage_gb,
            max_allocated_storage=s.db_max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=request.database,
            username=s.db_master_username,
            manage_master_user_password=True,
            db_subnet_group_name=subnets.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[self.db_sg.id],
            publicly_accessible=False,
            multi_az=s.db_multi_az,
            backup_retention_period=s.db_backup_retention_days,
            deletion_protection=s.deletion_protection,
            skip_final_snapshot=not s.final_snapshot,
            final_snapshot_identifier=final_suffix.hex.apply(
                lambda h: f"{names.fit(self.prefix, names.RDS_SNAPSHOT_MAX - 16)}-final-{h}"
            ) if s.final_snapshot else None,
            copy_tags_to_snapshot=True,
            # Going back to an earlier MLflow version: a new instance from the snapshot taken before the
            # upgrade (guard_schema_upgrade); the name, user and data come from the snapshot.
            snapshot_identifier=s.db_restore_snapshot,
            performance_insights_enabled=s.performance_insights,
            performance_insights_retention_period=7 if s.performance_insights else None,
            enabled_cloudwatch_logs_exports=list(RDS_LOG_EXPORTS),
            opts=self._merge(opts, protect=self.protect),
        )
        self._rds_log_retention(name, instance, child)
        self._database_alarms(name, instance, request, child)
        return DatabaseEndpoint(host=instance.address, port=instance.port, published_endpoint=instance.endpoint,
                                admin_credentials=instance.master_user_secrets[0].secret_arn,
                                instance_id=instance.identifier)

    def _rds_log_retention(self, name: str, instance: aws.rds.Instance, opts: pulumi.ResourceOptions) -> None:
        """RDS makes the log groups it exports to itself, never to expire, named after the instance
        identifier (known only once the instance exists; a fixed identifier would rename existing
        instances). After the instance: make each group if RDS has not yet, then set its retention
        (again whenever the identifier or the retention changes). Runs the AWS CLI with the
        deployer's credentials, as the rollout check does.
        https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_LogAccess.Procedural.UploadtoCloudWatch.html"""
        command.local.Command(
            f"{name}-log-retention", create=RDS_LOG_RETENTION_SCRIPT,
            triggers=[instance.identifier, self.settings.log_retention_days],
            environment={"AWS_REGION": self.settings.region, "DB_INSTANCE": instance.identifier,
                         "RETENTION_DAYS": str(self.settings.log_retention_days),
                         "LOG_EXPORTS": " ".join(RDS_LOG_EXPORTS)},
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[instance])))

    def _database_alarms(self, name: str, instance: aws.rds.Instance, request: DatabaseRequest,
                         opts: pulumi.ResourceOptions) -> None:
        database = {"DBInstanceIdentifier": instance.identifier}
        metric_alarm(f"{name}-alarm-cpu", self.alarms, "database-cpu", "Database CPU above 80% for 15 minutes", opts,
                     namespace="AWS/RDS", metric_name="CPUUtilization", dimensions=database, statistic="Average",
                     period=FIVE_MINUTES, evaluation_periods=3, comparison_operator="GreaterThanThreshold",
                     threshold=80)
        low_storage = self.settings.db_allocated_storage_gb * 1024 ** 3 // 10
        metric_alarm(f"{name}-alarm-storage", self.alarms, "database-free-storage",
                     "Database free storage below 10% of its initial size (storage autoscaling may be at its ceiling)",
                     opts, namespace="AWS/RDS", metric_name="FreeStorageSpace", dimensions=database,
                     statistic="Minimum", period=FIVE_MINUTES, evaluation_periods=1,
                     comparison_operator="LessThanThreshold", threshold=low_storage)
        metric_alarm(f"{name}-alarm-connections", self.alarms, "database-connections",
                     "Database connections above 80% of max_connections for 10 minutes", opts,
                     namespace="AWS/RDS", metric_name="DatabaseConnections", dimensions=database, statistic="Maximum",
                     period=FIVE_MINUTES, evaluation_periods=2, comparison_operator="GreaterThanThreshold",
                     threshold=request.max_connections * 0.8)

    def object_store(self, name: str, request: ObjectStoreRequest,
                     opts: pulumi.ResourceOptions) -> ObjectStoreEndpoint:
        s = self.settings
        prefix = names.fit(request.bucket, names.S3_BUCKET_PREFIX_MAX - 1) + "-"
        bucket = aws.s3.Bucket(name, bucket_prefix=prefix, force_destroy=False,
                               opts=self._merge(opts, protect=self.protect))
        child = self._merge(opts)
        block = aws.s3.BucketPublicAccessBlock(f"{name}-public-access", bucket=bucket.id, block_public_acls=True,
                                               block_public_policy=True, ignore_public_acls=True,
                                               restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=bucket.id,
                                       rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}], opts=child)
        aws.s3.BucketVersioning(f"{name}-versioning", bucket=bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=child)
        rules = [{"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {},
                  "abort_incomplete_multipart_upload": {"days_after_initiation": 7}}]
        if s.noncurrent_version_expiration_days:  # 0 or None: keep
            rules.append({"id": "expire-noncurrent-versions", "status": "Enabled", "filter": {},
                          "noncurrent_version_expiration": {"noncurrent_days": s.noncurrent_version_expiration_days}})
        aws.s3.BucketLifecycleConfiguration(f"{name}-lifecycle", bucket=bucket.id, rules=rules, opts=child)
        aws.s3.BucketPolicy(f"{name}-tls-only", bucket=bucket.id,
                            policy=bucket.arn.apply(lambda arn: json.dumps({
                                "Version": "2012-10-17",
                                "Statement": [{
                                    "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
                                    "Action": "s3:*", "Resource": [arn, f"{arn}/*"],
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }],
                            })),
                            opts=self._merge(opts, depends_on=[block]))
        return ObjectStoreEndpoint(
            bucket=bucket.bucket,
            artifact_root=bucket.bucket.apply(lambda b: render.artifacts_destination(b, request.prefix)),
            # Direct: the server signs URLs for the regional endpoint, which clients anywhere reach (s3_endpoint).
            endpoint_url=pulumi.Output.from_input(s3_endpoint(s.region)) if request.direct else None,
            env={"AWS_DEFAULT_REGION": s.region,
                 **({S3_ADDRESSING_STYLE_ENV: s3_addressing_style(request.bucket)} if request.direct else {})},
            server_policy=bucket.bucket.apply(lambda b: json.dumps(render.artifact_bucket_policy(
                b, request.prefix))),
        )

    def _pushed(self, name: str, repository_name: str, tag: str, build_args: dict, source, opts: pulumi.ResourceOptions,
                protect: bool) -> Image:
        """An image built (or copied) and pushed to a private, scanned ECR repository of its own; tasks
        run it by digest, so a tag pushed again can never change a running service silently."""
        repository = aws.ecr.Repository(
            f"{name}-repository", name=f"{self.prefix}/{repository_name}", image_tag_mutability="MUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "AES256"}], force_delete=not protect,
            opts=self._merge(opts, protect=protect))
        aws.ecr.LifecyclePolicy(f"{name}-lifecycle", repository=repository.name, policy=json.dumps({"rules": [{
            "rulePriority": 1, "description": "keep the last 20 images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
            "action": {"type": "expire"}}]}), opts=self._merge(opts))
        image = docker.Image(
            name,
            image_name=repository.repository_url.apply(lambda url: f"{url}:{tag}"),
            build=docker.DockerBuildArgs(context=source.context, dockerfile=source.dockerfile, args=build_args,
                                         platform="linux/amd64"),
            registry=docker.RegistryArgs(server=repository.repository_url, username=ECR_TOKEN_USERNAME,
                                         password=self._push_password()),
            opts=self._merge(opts),
        )
        return Image(reference=image.repo_digest, repository=repository.arn)

    def _push_password(self) -> pulumi.Output[str]:
        """A registry token for the pushes, asked for again only when an image is to be pushed again (its sources
        changed), as on azure. Read fresh at every run (aws.ecr.get_authorization_token), it was a new input of
        every image at every `up`, which `pulumi up --plan` refuses ("violates plan", pulumi/pulumi#17546): no
        reviewed plan could be applied (review 25). A token lasts 12 hours; never shown, kept secret in the state."""
        if self._registry_token is None:
            self._registry_token = registry_token(
                self._shared("registry-token", additional_secret_outputs=["stdout"]),
                f"aws ecr get-login-password --region {self.settings.region}", self.images)
        return self._registry_token

    def server_image(self, name: str, mlflow_version: str, opts: pulumi.ResourceOptions) -> Image:
        return self._pushed(name, SERVER_IMAGE, mlflow_version, {"MLFLOW_VERSION": mlflow_version},
                            server_image_build(), opts, protect=self.protect)

    def public_image(self, name: str, reference: str, opts: pulumi.ResourceOptions) -> Image:
        """A copy in the stack's ECR: no pull from Docker Hub by the tasks (anonymous rate limits,
        through one NAT address), scanned on push, run by digest."""
        repository, tag = reference.rsplit("/", 1)[-1].split(":", 1)
        return self._pushed(name, _slug(repository), tag, {"IMAGE": reference}, mirror_image_build(), opts,
                            protect=self.protect)

    def public_entry(self) -> PublicEntry:
        s = self.settings
        hostnames = (pulumi.Output.from_input([s.domain]) if s.domain
                     else self.load_balancer.dns_name.apply(lambda dns: [dns.lower()]))
        return PublicEntry(hostnames=hostnames, scheme="https" if s.https else "http", port=443 if s.https else 80,
                           idle_timeout_seconds=self.idle_timeout_seconds)

    def guard_schema_upgrade(self, name: str, database_instance: Optional[pulumi.Output[str]],
                             mlflow_version: str, opts: pulumi.ResourceOptions) -> SchemaGuard:
        """A snapshot the rollout of `mlflow_version` waits for, named after the version deployed
        before it (read back from the parameter record_deployed_version writes). One snapshot per
        version: its resource is named after the new version, and kept when the next one replaces
        it (retained, not deleted). A rollback is safe only while the version stays the same."""
        if database_instance is None:
            return SchemaGuard()
        deployed = aws.ssm.get_parameters_by_path_output(
            path=self._version_path, opts=pulumi.InvokeOutputOptions(provider=self.provider)
        ).values.apply(lambda values: values[0] if values else None)
        version = _slug(mlflow_version)
        change = deployed.apply(lambda before: f"{_slug(before)}-to-{version}" if before and before != mlflow_version
                                else f"{version}-first")
        # Retained snapshots outlive the stack and the instance: a suffix of their own, drawn anew with
        # each snapshot resource, keeps a re-created stack, or the go-back path taken twice, from
        # meeting a name already taken (DBSnapshotAlreadyExists). The snapshot is taken once, before
        # the version's first rollout: neither the name (`change` reads "first" once recorded) nor a
        # later instance (a restore) takes it again (ignore_changes).
        suffix = random.RandomId(f"{name}-before-{version}-suffix", byte_length=4, opts=self._merge(opts),
                                 keepers={"instance": database_instance, "version": mlflow_version})
        # RDS refuses a snapshot of a busy instance and the provider does not retry (DB_SNAPSHOT_READY_SCRIPT):
        # wait for it first, with the deployer's credentials, as the rollout check does. Once, as the snapshot.
        ready = command.local.Command(
            f"{name}-before-{version}-ready", create=DB_SNAPSHOT_READY_SCRIPT,
            environment={"AWS_REGION": self.settings.region, "DB_INSTANCE": database_instance,
                         "WAIT_SECONDS": str(DB_READY_WAIT_SECONDS)},
            opts=self._merge(opts, ignore_changes=["environment"]))
        snapshot = aws.rds.Snapshot(
            f"{name}-before-{version}",
            db_instance_identifier=database_instance,
            db_snapshot_identifier=pulumi.Output.all(change, suffix.hex).apply(
                lambda parts: f"{names.fit(self.prefix, 100)}-mlflow-{parts[0]}-{parts[1]}"),
            opts=self._merge(opts, retain_on_delete=True, depends_on=[ready],
                             custom_timeouts=pulumi.CustomTimeouts(create=DB_SNAPSHOT_CREATE_TIMEOUT),
                             ignore_changes=["dbSnapshotIdentifier", "dbInstanceIdentifier"]))
        return SchemaGuard(before=[snapshot],
                           rollback_safe=deployed.apply(lambda before: before is None or before == mlflow_version))

    def record_deployed_version(self, name: str, mlflow_version: str, rollout: ServiceEndpoint,
                                opts: pulumi.ResourceOptions) -> None:
        aws.ssm.Parameter(name, name=f"{self._version_path}/deployed-version", type="String", value=mlflow_version,
                          description="MLflow version the server last rolled out (read before the next change)",
                          opts=self._merge(opts, depends_on=[rollout.rollout] if rollout.rollout else []))

    @property
    def _version_path(self) -> str:
        """Where the deployed version is kept. SSM refuses a parameter name that begins with `aws` or `ssm`
        (case-insensitive: https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html),
        so a prefix that does (an instance named `aws-tracking`) goes under `/mlflow-`: the first `up` failed at
        its end and the schema guard never learnt a version (review 24, aws 2 F2). Every other stack keeps its
        path, and with it its history."""
        reserved = self.prefix.lower().startswith(("aws", "ssm"))
        return f"/{'mlflow-' if reserved else ''}{self.prefix}/mlflow"

    def run_service(self, name: str, request: ServiceRequest, opts: pulumi.ResourceOptions) -> ServiceEndpoint:
        s, child = self.settings, self._merge(opts)
        service_name, spec = request.service_name, request.spec
        # Every secret value (env and runtime files) becomes a Secrets Manager secret.
        secret_values: dict[str, pulumi.Output[str]] = dict(request.secret_env)
        for step in request.init:
            secret_values.update(step.secret_env)
        for path, content in request.runtime_files.items():
            secret_values[file_env_name(path)] = pulumi.Output.secret(content)
        value_from: dict[str, pulumi.Output[str]] = {}
        versions: list[aws.secretsmanager.SecretVersion] = []
        for variable, value in secret_values.items():
            slug = _slug(variable)
            secret = aws.secretsmanager.Secret(f"{name}-{slug}", name_prefix=f"{self.prefix}/{service_name}/{slug}-",
                                               recovery_window_in_days=7, opts=child)
            # ECS reads a secret's value when a task starts: the service waits for the version too.
            versions.append(aws.secretsmanager.SecretVersion(f"{name}-{slug}", secret_id=secret.id,
                                                             secret_string=pulumi.Output.secret(value), opts=child))
            value_from[variable] = secret.arn
        for step in request.init:
            for variable, ref in step.secret_refs.items():
                value_from[variable] = pulumi.Output.concat(ref.secret_id, f":{ref.key}::")
        # The digests of the values (not secret: see containers.secret_digest) go into the definition,
        # so that a new password or htpasswd starts new tasks.
        digests = pulumi.Output.unsecret(output_dict(secret_values).apply(
            lambda values: {key: secret_digest(value) for key, value in values.items()}))

        execution_role = aws.iam.Role(f"{name}-execution-role", **names.iam_role_naming(f"{name}-execution-role"),
                                      assume_role_policy=tasks.ASSUME_ECS_TASKS,
                                      description=f"ECS agent for {service_name}: pull image, write logs, "
                                                  "read its secrets",
                                      opts=child)
        policies = [aws.iam.RolePolicy(f"{name}-execution", role=execution_role.id, opts=child,
                           policy=pulumi.Output.all(self.log_group_resource.arn, request.image_repository,
                                                    pulumi.Output.all(*value_from.values())).apply(
                               lambda parts: tasks.execution_policy(parts[0], parts[1], parts[2])))]
        task_role = aws.iam.Role(f"{name}-task-role", **names.iam_role_naming(f"{name}-task-role"),
                                 assume_role_policy=tasks.ASSUME_ECS_TASKS,
                                 description=f"{service_name} itself: only what its stores grant", opts=child)
        for index, policy in enumerate(request.access_policies):
            policies.append(aws.iam.RolePolicy(f"{name}-access-{index}", role=task_role.id, policy=policy, opts=child))
        proxy = request.role == "proxy"
        execute = s.exec_enabled and not proxy  # a shell in the server only
        if execute:
            policies.append(aws.iam.RolePolicy(
                f"{name}-exec", role=task_role.id, opts=child,
                policy=json.dumps({"Version": "2012-10-17", "Statement": [tasks.ECS_EXEC_STATEMENT]})))

        value_from_known = output_dict(value_from)
        steps = [pulumi.Output.all(step.spec, list(step.secret_env), list(step.secret_refs)) for step in request.init]
        definitions = pulumi.Output.all(
            spec, pulumi.Output.all(*steps), spec.apply(lambda c: dict(c.files)), value_from_known,
            digests, self.log_group_resource.name,
        ).apply(lambda parts: json.dumps(tasks.container_definitions(tasks.Task(
            service_name=service_name,
            main=tasks.Container(parts[0], (*parts[0].secret_env_names,)),
            init=[tasks.Container(step_spec, (*env_names, *ref_names)) for step_spec, env_names, ref_names in parts[1]],
            plain_files=parts[2], runtime_paths=list(request.runtime_files), value_from=parts[3], digests=parts[4],
            log_group=parts[5], region=s.region))))
        cpu, memory = ((s.proxy_cpu / 1024, s.proxy_memory_mib) if proxy
                       else (self.server.cpu, self.server.memory_mib))
        # Proxied artifacts are spooled whole on the server task's disk (config.largest_transfer_mib).
        storage = (None if proxy or s.server_ephemeral_storage_gib is None
                   else {"size_in_gib": s.server_ephemeral_storage_gib})
        task = aws.ecs.TaskDefinition(
            name, family=f"{self.prefix}-{service_name}", network_mode="awsvpc", requires_compatibilities=["FARGATE"],
            cpu=str(int(cpu * 1024)), memory=str(memory), execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            ephemeral_storage=storage, container_definitions=definitions, opts=child)

        port = spec.apply(lambda c: c.ports[0])
        connect: dict = {"enabled": True, "namespace": self.namespace.arn}
        if not request.public:
            connect["services"] = [{
                "port_name": "http", "discovery_name": service_name,
                "client_alias": [{"port": port, "dns_name": service_name}],
                # Service Connect's Envoy otherwise ends every request after 15 s, whatever Nginx and
                # the load balancer allow: no per-request limit, and idle connections kept as long
                # as Nginx waits on a slow transfer.
                "timeout": {"per_request_timeout_seconds": 0, "idle_timeout_seconds": self.proxy.timeout_seconds},
            }]
        replicas = s.proxy_replicas if proxy else self.server.replicas
        autoscaled = not proxy and self.server.max_replicas > self.server.replicas
        # The server's rollouts stop old tasks first: the database's connection budget counts every
        # server task running at once (aws/config.py ecs_rollout_peak_tasks). The proxy's start new ones first.
        minimum, maximum = (None, None) if proxy else server_rollout_percents(self.server.replicas)
        service = aws.ecs.Service(
            name, name=service_name, cluster=self.ecs_cluster.arn, task_definition=task.arn,
            desired_count=replicas, launch_type="FARGATE", platform_version="LATEST",
            # ECS moves tasks back into a zone it lost only with room for an extra task: rebalancing
            # needs maximumPercent above 100 (CreateService refuses it otherwise), so a stop-first
            # server stays as it is until its next rollout (README).
            # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-rebalancing.html
            availability_zone_rebalancing="ENABLED" if maximum is None or maximum > 100 else "DISABLED",
            network_configuration={"subnets": self.network.private_subnet_ids, "assign_public_ip": False,
                                   "security_groups": [(self.proxy_sg if proxy else self.server_sg).id]},
            load_balancers=[{"target_group_arn": self.target_group.arn, "container_name": service_name,
                             "container_port": port}] if request.public else [],
            health_check_grace_period_seconds=120 if request.public else None,
            service_connect_configuration=connect,
            # A failed rollout stops; it goes back by itself only where that is safe (request.rollback).
            deployment_circuit_breaker={"enable": True, "rollback": request.rollback},
            alarms={"alarm_names": [self.errors_alarm.name], "enable": True, "rollback": request.rollback},
            # `pulumi up` waits for the rollout (longer than old tasks drain: custom_timeouts), and
            # fails with it; after a rollback it would not (_verify_rollout).
            wait_for_steady_state=True,
            deployment_minimum_healthy_percent=minimum, deployment_maximum_percent=maximum,
            enable_execute_command=execute, propagate_tags="SERVICE",
            # Tasks start only once their roles hold their permissions (IAM policies are separate resources).
            opts=self._merge(opts, depends_on=[*policies, *versions, *([self.listener] if request.public else [])],
                             ignore_changes=["desiredCount"] if autoscaled else [],
                             custom_timeouts=_rollout_timeouts(self.drain_seconds if request.public else 0)))
        if autoscaled:
            self._autoscaling(name, service, child)
        self._task_count_alarm(name, service_name, child)
        if not proxy:  # the server spools proxied artifacts on its disk
            self._temporary_disk_alarm(name, service_name, child)
        for job in request.jobs:
            self._scheduled_job(f"{name}-{_slug(job.job_name.removeprefix('mlflow-'))}", job, value_from_known,
                                digests, execution_role, task_role, cpu, memory, child)
        # Whatever starts a new ECS deployment of the service: its task definition, and the service's
        # own deployment settings (Service Connect, network, rollout percents).
        deployment = pulumi.Output.json_dumps({"connect": connect, "minimum": minimum, "maximum": maximum,
                                               "subnets": self.network.private_subnet_ids, "replicas": replicas})
        verified = self._verify_rollout(name, service, task, deployment, self.drain_seconds if request.public else 0,
                                        child)
        return ServiceEndpoint(internal_url=port.apply(lambda p: f"http://{service_name}:{p}"), rollout=verified)

    def _verify_rollout(self, name: str, service: aws.ecs.Service, task: aws.ecs.TaskDefinition,
                        deployment: pulumi.Output[str], drain_seconds: int,
                        opts: pulumi.ResourceOptions) -> command.local.Command:
        """`wait_for_steady_state` also succeeds once a circuit breaker or an alarm has rolled the
        service back, and the state would then record a task definition that is not running. After
        each rollout (a new task definition), the service's PRIMARY deployment must run the task
        definition just registered with rolloutState COMPLETED, or `pulumi up` fails here (and the
        deployed version is not recorded: record_deployed_version waits for this). Runs the AWS CLI
        with the deployer's credentials, as Pulumi does. Fields: DescribeServices' Deployment
        (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Deployment.html)."""
        return command.local.Command(
            f"{name}-rollout-check", create=VERIFY_ROLLOUT_SCRIPT, triggers=[task.arn, deployment],
            environment={"AWS_REGION": self.settings.region, "CLUSTER": self.ecs_cluster.name,
                         "SERVICE": service.name, "TASK_DEFINITION": task.arn,
                         # ECS's bake time after steady state: at most as long as the rollout may take.
                         "WAIT_SECONDS": str(_rollout_seconds(drain_seconds))},
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[service])))

    def _scheduled_job(self, name: str, job: ScheduledJob, value_from: pulumi.Output[dict],
                       digests: pulumi.Output[dict], execution_role: aws.iam.Role, task_role: aws.iam.Role,
                       cpu: float, memory: int, opts: pulumi.ResourceOptions) -> None:
        """A task definition of its own (the service's image, roles and secrets) that an EventBridge
        Scheduler schedule starts in the service's subnets and security group. ECS has no run time
        limit: the job's command keeps its own (render.gc_spec)."""
        definitions = pulumi.Output.all(job.spec, value_from, digests, self.log_group_resource.name).apply(
            lambda parts: json.dumps(tasks.container_definitions(tasks.Task(
                service_name=parts[0].name, main=tasks.Container(parts[0], tuple(parts[0].secret_env_names)),
                value_from=parts[1], digests=parts[2], log_group=parts[3], region=self.settings.region))))
        task = aws.ecs.TaskDefinition(
            name, family=f"{self.prefix}-{job.job_name}", network_mode="awsvpc", requires_compatibilities=["FARGATE"],
            cpu=str(int(cpu * 1024)), memory=str(memory), execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn,
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            container_definitions=definitions, opts=opts)
        failures = self._job_failures(name, job, task, opts)
        account = self.ecs_cluster.arn.apply(lambda arn: _arn_account(arn)[1])
        role = aws.iam.Role(f"{name}-scheduler-role", **names.iam_role_naming(f"{name}-scheduler-role"),
                            assume_role_policy=account.apply(tasks.scheduler_assume_policy),
                            description=f"EventBridge Scheduler: start {job.job_name} only", opts=opts)
        policy = aws.iam.RolePolicy(f"{name}-scheduler", role=role.id, opts=opts, policy=pulumi.Output.all(
            task.arn, self.ecs_cluster.arn, failures.arn, task_role.arn, execution_role.arn).apply(
                lambda parts: tasks.scheduler_policy(parts[0], parts[1], parts[3:], parts[2])))
        aws.scheduler.Schedule(
            name, name=f"{self.prefix}-{job.job_name}", description=f"{job.job_name} on '{job.schedule}' (UTC)",
            schedule_expression=aws_schedule_expression(job.schedule), schedule_expression_timezone="UTC",
            flexible_time_window={"mode": "OFF"},
            target={"arn": self.ecs_cluster.arn, "role_arn": role.arn,
                    "retry_policy": {"maximum_retry_attempts": 0},  # the next run catches up
                    # A RunTask the scheduler cannot make (refused, throttled) leaves a dead-letter event here
                    # instead of nothing at all.
                    "dead_letter_config": {"arn": failures.arn},
                    "ecs_parameters": {
                        "task_definition_arn": task.arn, "launch_type": "FARGATE", "platform_version": "LATEST",
                        "task_count": 1,
                        "network_configuration": {"subnets": self.network.private_subnet_ids,
                                                  "security_groups": [self.server_sg.id],
                                                  "assign_public_ip": False}}},
            # The role may send its dead letters before the first run.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[policy])))

    def _job_failures(self, name: str, job: ScheduledJob, task: aws.ecs.TaskDefinition,
                      opts: pulumi.ResourceOptions) -> aws.sqs.Queue:
        """Where a scheduled run that failed leaves a record, and the alarm on it. ECS has nobody waiting on
        a scheduled task: a run the scheduler could not start (its dead-letter queue) and a task that stopped
        without success (an EventBridge rule on ECS's task state change events: an exit code other than 0,
        or a task that never started) both go to one encrypted queue, kept 14 days, and the alarm
        `<job>-failed` notifies the stack's topic while the queue holds one (read the events, then delete
        them: README). A queue rather than the topic itself: the topic keeps its default policy, which the
        CloudWatch alarms publish through, and the events stay to be read."""
        queue_name = names.suffixed(f"{self.prefix}-{job.job_name}", "failures", names.SQS_QUEUE_NAME_MAX)
        queue = aws.sqs.Queue(f"{name}-failures", name=queue_name, sqs_managed_sse_enabled=True,
                              message_retention_seconds=SQS_MAX_RETENTION_SECONDS, opts=opts)
        rule = aws.cloudwatch.EventRule(
            f"{name}-failed", name=names.suffixed(f"{self.prefix}-{job.job_name}", "failed", names.EVENT_RULE_NAME_MAX),
            description=f"{job.job_name}: a task that stopped with an exit code other than 0 or never started",
            event_pattern=pulumi.Output.all(self.ecs_cluster.arn, task.arn).apply(
                lambda parts: json.dumps(tasks.failed_task_pattern(parts[0], parts[1]))),
            opts=opts)
        allowed = aws.sqs.QueuePolicy(f"{name}-failures", queue_url=queue.url, opts=opts, policy=pulumi.Output.all(
            queue.arn, rule.arn).apply(lambda parts: tasks.failure_queue_policy(parts[0], parts[1])))
        # No role on an SQS target: the queue's policy authorizes EventBridge
        # (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html).
        aws.cloudwatch.EventTarget(
            f"{name}-failed", rule=rule.name, arn=queue.arn,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[allowed])))
        # SQS reports its metrics every minute while a queue is active, which a queue holding messages is
        # (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/monitoring-using-cloudwatch.html).
        metric_alarm(
            f"{name}-alarm-failed", self.alarms, f"{job.job_name}-failed",
            f"{job.job_name}: a scheduled run could not start or stopped with an exit code other than 0; the "
            f"events are in the SQS queue {queue_name} (14 days)", opts,
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible", dimensions={"QueueName": queue.name},
            statistic="Maximum", period=FIVE_MINUTES, evaluation_periods=1,
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=1)
        return queue

    def _autoscaling(self, name: str, service: aws.ecs.Service, opts: pulumi.ResourceOptions) -> None:
        """The server scales on CPU between server.replicas and server.maxReplicas (the connection
        budget counts the ceiling); the service's desired count is then Application Auto Scaling's."""
        target = aws.appautoscaling.Target(
            f"{name}-scaling", service_namespace="ecs", scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", self.ecs_cluster.name, "/", service.name),
            min_capacity=self.server.replicas, max_capacity=self.server.max_replicas, opts=opts)
        aws.appautoscaling.Policy(
            f"{name}-cpu", policy_type="TargetTrackingScaling", resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension, service_namespace=target.service_namespace,
            target_tracking_scaling_policy_configuration={
                "predefined_metric_specification": {"predefined_metric_type": "ECSServiceAverageCPUUtilization"},
                "target_value": self.server.cpu_target_percent, "scale_in_cooldown": 300, "scale_out_cooldown": 60,
            }, opts=opts)

    def _temporary_disk_alarm(self, name: str, service_name: str, opts: pulumi.ResourceOptions) -> None:
        """MLflow spools every proxied upload and download whole on the server task's ephemeral
        storage (shared with the image): a full disk shows only as 5xx. Container Insights reports
        Fargate's EphemeralStorageUtilized and EphemeralStorageReserved per service, summed over its
        tasks (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Container-Insights-metrics-ECS.html):
        this is the share used across the service's tasks, sustained pressure on every task; one
        task's full disk alone shows in the 5xx alarm (per-task series need Container Insights with
        enhanced observability, README)."""
        service = {"ClusterName": self.ecs_cluster.name, "ServiceName": service_name}
        metric_alarm(
            f"{name}-alarm-disk", self.alarms, f"{service_name}-temporary-disk",
            f"{service_name}: ephemeral storage above 80% across its tasks (proxied transfers spool there) "
            "for 5 minutes",
            opts, comparison_operator="GreaterThanThreshold", threshold=80, evaluation_periods=5,
            metric_queries=expression(
                "percent", "IF(FILL(reserved, 0) > 0, 100 * FILL(used, 0) / FILL(reserved, 1), 0)",
                "ephemeral storage used, percent", [
                    metric("used", "ECS/ContainerInsights", "EphemeralStorageUtilized", service, stat="Maximum"),
                    metric("reserved", "ECS/ContainerInsights", "EphemeralStorageReserved", service, stat="Minimum")]))

    def _task_count_alarm(self, name: str, service_name: str, opts: pulumi.ResourceOptions) -> None:
        service = {"ClusterName": self.ecs_cluster.name, "ServiceName": service_name}
        metric_alarm(
            f"{name}-alarm-tasks", self.alarms, f"{service_name}-tasks-below-desired",
            f"{service_name}: fewer tasks running than desired for 10 minutes", opts,
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=1, evaluation_periods=10,
            metric_queries=expression("missing", "desired - running", "tasks missing", [
                metric("desired", "ECS/ContainerInsights", "DesiredTaskCount", service, stat="Maximum"),
                metric("running", "ECS/ContainerInsights", "RunningTaskCount", service, stat="Minimum")]))
