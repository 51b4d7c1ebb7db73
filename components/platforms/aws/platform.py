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
from typing import Optional

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker
import pulumi_random as random

from components import render
from components.config import StackConfig, aws_schedule_expression
from components.platforms.aws import tasks
from components.platforms.aws.alarms import FIVE_MINUTES, AlarmTarget, expression, metric, metric_alarm
from components.platforms.aws.network import Network, existing_network, new_network
from components.platforms.containers import file_env_name, output_dict, secret_digest
from components.platforms.base import (
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
# The TrackingServer's service: the proxy's upstream name, and the task family one-off jobs reuse.
SERVER_SERVICE = "mlflow-server"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


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
        self.prefix = f"{instance}-{pulumi.get_stack()}"
        self._child_prefix = name
        self._moved = moved_from_top_level
        self.provider = aws.Provider(
            f"{name}-aws", region=self.settings.region,
            default_tags={"tags": {"project": "mlflow-platform", "stack": pulumi.get_stack()}},
            opts=pulumi.ResourceOptions(parent=self, aliases=moved_from_top("aws", moved_from_top_level)))
        self.opts = pulumi.ResourceOptions(provider=self.provider)
        self.protect = self.settings.protect_resources
        self.network: Network = (existing_network(self.settings) if self.settings.vpc_id
                                 else new_network(self.settings, self.prefix, self._shared))
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

    def _shared(self, short_name: str, **options) -> dict:
        """Name and options of a platform-wide resource: named after this component, its child, on
        the stack's AWS provider, and at its pre-facade URN when it moved from the top level."""
        return {"resource_name": f"{self._child_prefix}-{short_name}",
                "opts": pulumi.ResourceOptions(parent=self, provider=self.provider,
                                               aliases=moved_from_top(short_name, self._moved), **options)}

    def _merge(self, opts: pulumi.ResourceOptions, **extra) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(pulumi.ResourceOptions.merge(opts, self.opts), pulumi.ResourceOptions(**extra))

    # --- platform-wide resources ------------------------------------------------------------------

    def _security_groups(self) -> None:
        """Load balancer <- clients; proxy <- load balancer; server <- proxy; database <- server."""
        def group(name: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(**self._shared(f"{name}-sg"), vpc_id=self.network.vpc_id,
                                         description=description, tags={"Name": f"{self.prefix}-{name}"})

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
            self.scraper_sg = group("metrics-scraper", "Prometheus scrapers: may reach the MLflow proxies' metrics port")
            egress("scraper-out-proxy-metrics", self.scraper_sg, port, target_sg=self.proxy_sg)
            ingress("proxy-in-scraper-metrics", self.proxy_sg, port, source_sg=self.scraper_sg)

    def _alarm_topic(self) -> AlarmTarget:
        topic = aws.sns.Topic(**self._shared("alarms"), name=f"{self.prefix}-alarms",
                              kms_master_key_id="alias/aws/sns")
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
            idle_timeout=s.load_balancer_idle_timeout_seconds, drop_invalid_header_fields=True)
        self.target_group = aws.lb.TargetGroup(
            **self._shared("proxy-targets"), name_prefix="mlflow", port=PROXY_PORT, protocol="HTTP", target_type="ip",
            vpc_id=self.network.vpc_id,
            # A task leaving (deploy, scale-in) keeps serving the transfers it has for this long.
            deregistration_delay=min(self.proxy.timeout_seconds, 3600),
            health_check={"path": "/health", "matcher": "200", "interval": 15, "healthy_threshold": 2,
                          "unhealthy_threshold": 3, "timeout": 5})
        certificate_arn = self._certificate()
        forward = [{"type": "forward", "target_group_arn": self.target_group.arn}]
        if certificate_arn is not None:
            self.listener = aws.lb.Listener(**self._shared("https"), load_balancer_arn=self.load_balancer.arn, port=443,
                                            protocol="HTTPS", ssl_policy=TLS_POLICY, certificate_arn=certificate_arn,
                                            default_actions=forward)
            aws.lb.Listener(**self._shared("http-redirect"), load_balancer_arn=self.load_balancer.arn, port=80,
                            protocol="HTTP", default_actions=[{"type": "redirect", "redirect": {
                                "port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}])
        else:  # only with aws.allowPlainHttp (config check)
            self.listener = aws.lb.Listener(**self._shared("http"), load_balancer_arn=self.load_balancer.arn, port=80,
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
            metric_queries=expression("rate", "100 * (FILL(targets, 0) + FILL(balancer, 0)) / requests",
                                      "5xx per 100 requests", [
                metric("targets", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", balancer),
                metric("balancer", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", balancer),
                metric("requests", "AWS/ApplicationELB", "RequestCount", balancer)]))
        metric_alarm(
            **self._shared("alarm-unhealthy"), target=self.alarms, short_name="unhealthy-proxy-targets",
            description="A proxy task failed the load balancer's /health check for 5 minutes",
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

    def postgres_database(self, name: str, request: DatabaseRequest, password: pulumi.Output[str],
                          opts: pulumi.ResourceOptions) -> DatabaseEndpoint:
        """RDS, with a master user whose password RDS keeps (Secrets Manager, rotated by RDS): Pulumi
        never holds it. MLflow's own role gets `password` from the server's role-setup step."""
        s = self.settings
        child = self._merge(opts)
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=self.network.private_subnet_ids,
                                      description="MLflow database: private subnets only", opts=child)
        parameters = aws.rds.ParameterGroup(
            f"{name}-parameters", family=f"postgres{request.postgres_version}",
            description="MLflow database parameters",
            # Both are static parameters: a change applies at the instance's next reboot (README).
            parameters=[{"name": "max_connections", "value": str(request.max_connections), "apply_method": "pending-reboot"},
                        {"name": "rds.force_ssl", "value": "1", "apply_method": "pending-reboot"}],
            opts=child)
        # A final snapshot name of its own for each instance: a stack destroyed, made again and
        # destroyed again would otherwise collide with the first one's snapshot.
        final_suffix = random.RandomId(f"{name}-final-snapshot", byte_length=4,
                                       keepers={"database": request.database, "engine": "postgres"}, opts=child)
        pinned = s.db_engine_version is not None
        instance = aws.rds.Instance(
            name,
            identifier_prefix=f"{self.prefix}-",
            engine="postgres",
            # The major alone, unless pinned: RDS applies minor upgrades itself, and a stack that
            # names 16.6 would ask RDS to go back down from 16.7 (which RDS refuses).
            engine_version=s.engine_version(request.postgres_version),
            auto_minor_version_upgrade=not pinned,
            allow_major_version_upgrade=False,
            instance_class=s.db_instance_class,
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
            final_snapshot_identifier=final_suffix.hex.apply(lambda h: f"{self.prefix}-final-{h}")
            if s.final_snapshot else None,
            copy_tags_to_snapshot=True,
            # Going back to an earlier MLflow version: a new instance from the snapshot taken before the
            # upgrade (guard_schema_upgrade); the name, user and data come from the snapshot.
            snapshot_identifier=s.db_restore_snapshot,
            performance_insights_enabled=s.performance_insights,
            performance_insights_retention_period=7 if s.performance_insights else None,
            enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
            opts=self._merge(opts, protect=self.protect),
        )
        self._database_alarms(name, instance, request, child)
        return DatabaseEndpoint(host=instance.address, port=instance.port, published_endpoint=instance.endpoint,
                                admin_credentials=instance.master_user_secrets[0].secret_arn,
                                instance_id=instance.identifier)

    def _database_alarms(self, name: str, instance: aws.rds.Instance, request: DatabaseRequest,
                         opts: pulumi.ResourceOptions) -> None:
        database = {"DBInstanceIdentifier": instance.identifier}
        metric_alarm(f"{name}-alarm-cpu", self.alarms, "database-cpu", "Database CPU above 80% for 15 minutes", opts,
                     namespace="AWS/RDS", metric_name="CPUUtilization", dimensions=database, statistic="Average",
                     period=FIVE_MINUTES, evaluation_periods=3, comparison_operator="GreaterThanThreshold", threshold=80)
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
        bucket = aws.s3.Bucket(name, bucket_prefix=f"{request.bucket}-", force_destroy=False,
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
            env={"AWS_DEFAULT_REGION": s.region},
            server_policy=bucket.bucket.apply(lambda b: json.dumps(render.artifact_bucket_policy(b, request.prefix))),
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
        token = aws.ecr.get_authorization_token_output(registry_id=repository.registry_id,
                                                       opts=pulumi.InvokeOutputOptions(provider=self.provider))
        image = docker.Image(
            name,
            image_name=repository.repository_url.apply(lambda url: f"{url}:{tag}"),
            build=docker.DockerBuildArgs(context=source.context, dockerfile=source.dockerfile, args=build_args,
                                         platform="linux/amd64"),
            registry=docker.RegistryArgs(server=repository.repository_url,
                                         username=token.user_name,
                                         password=pulumi.Output.secret(token.password)),
            opts=self._merge(opts),
        )
        return Image(reference=image.repo_digest, repository=repository.arn)

    def server_image(self, name: str, mlflow_version: str, opts: pulumi.ResourceOptions) -> Image:
        return self._pushed(name, "mlflow-server", mlflow_version, {"MLFLOW_VERSION": mlflow_version},
                            server_image_build(), opts, protect=self.protect)

    def public_image(self, name: str, reference: str, opts: pulumi.ResourceOptions) -> Image:
        """A copy in the stack's ECR: no pull from Docker Hub by the tasks (anonymous rate limits,
        through one NAT address), scanned on push, run by digest."""
        repository, tag = reference.rsplit("/", 1)[-1].split(":", 1)
        return self._pushed(name, _slug(repository), tag, {"IMAGE": reference}, mirror_image_build(), opts,
                            protect=False)

    def public_entry(self) -> PublicEntry:
        s = self.settings
        hostnames = (pulumi.Output.from_input([s.domain]) if s.domain
                     else self.load_balancer.dns_name.apply(lambda dns: [dns.lower()]))
        return PublicEntry(hostnames=hostnames, scheme="https" if s.https else "http", port=443 if s.https else 80)

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
        snapshot = aws.rds.Snapshot(
            f"{name}-before-{version}",
            db_instance_identifier=database_instance,
            db_snapshot_identifier=deployed.apply(
                lambda before: f"{self.prefix}-mlflow-{_slug(before)}-to-{version}" if before and before != mlflow_version
                else f"{self.prefix}-mlflow-{version}-first"),
            opts=self._merge(opts, retain_on_delete=True, ignore_changes=["dbSnapshotIdentifier"]))
        return SchemaGuard(before=[snapshot],
                           rollback_safe=deployed.apply(lambda before: before is None or before == mlflow_version))

    def record_deployed_version(self, name: str, mlflow_version: str, rollout: ServiceEndpoint,
                                opts: pulumi.ResourceOptions) -> None:
        aws.ssm.Parameter(name, name=f"{self._version_path}/deployed-version", type="String", value=mlflow_version,
                          description="MLflow version the server last rolled out (read before the next change)",
                          opts=self._merge(opts, depends_on=[rollout.rollout] if rollout.rollout else []))

    @property
    def _version_path(self) -> str:
        return f"/{self.prefix}/mlflow"

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
        for variable, value in secret_values.items():
            slug = _slug(variable)
            secret = aws.secretsmanager.Secret(f"{name}-{slug}", name_prefix=f"{self.prefix}/{service_name}/{slug}-",
                                               recovery_window_in_days=7, opts=child)
            aws.secretsmanager.SecretVersion(f"{name}-{slug}", secret_id=secret.id,
                                             secret_string=pulumi.Output.secret(value), opts=child)
            value_from[variable] = secret.arn
        for step in request.init:
            for variable, ref in step.secret_refs.items():
                value_from[variable] = pulumi.Output.concat(ref.secret_id, f":{ref.key}::")
        # The digests of the values (not secret: see tasks.secret_digest) go into the definition,
        # so that a new password or htpasswd starts new tasks.
        digests = pulumi.Output.unsecret(output_dict(secret_values).apply(
            lambda values: {key: secret_digest(value) for key, value in values.items()}))

        execution_role = aws.iam.Role(f"{name}-execution-role", assume_role_policy=tasks.ASSUME_ECS_TASKS,
                                      description=f"ECS agent for {service_name}: pull image, write logs, read its secrets",
                                      opts=child)
        aws.iam.RolePolicy(f"{name}-execution", role=execution_role.id, opts=child,
                           policy=pulumi.Output.all(self.log_group_resource.arn, request.image_repository,
                                                    pulumi.Output.all(*value_from.values())).apply(
                               lambda parts: tasks.execution_policy(parts[0], parts[1], parts[2])))
        task_role = aws.iam.Role(f"{name}-task-role", assume_role_policy=tasks.ASSUME_ECS_TASKS,
                                 description=f"{service_name} itself: only what its stores grant", opts=child)
        for index, policy in enumerate(request.access_policies):
            aws.iam.RolePolicy(f"{name}-access-{index}", role=task_role.id, policy=policy, opts=child)
        execute = s.exec_enabled and not request.public
        if execute:
            aws.iam.RolePolicy(f"{name}-exec", role=task_role.id, opts=child,
                               policy=json.dumps({"Version": "2012-10-17", "Statement": [tasks.ECS_EXEC_STATEMENT]}))

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
        cpu, memory = ((s.proxy_cpu / 1024, s.proxy_memory_mib) if request.public
                       else (self.server.cpu, self.server.memory_mib))
        task = aws.ecs.TaskDefinition(
            name, family=f"{self.prefix}-{service_name}", network_mode="awsvpc", requires_compatibilities=["FARGATE"],
            cpu=str(int(cpu * 1024)), memory=str(memory), execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn, runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            container_definitions=definitions, opts=child)

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
        replicas = s.proxy_replicas if request.public else self.server.replicas
        autoscaled = not request.public and self.server.max_replicas > self.server.replicas
        service = aws.ecs.Service(
            name, name=service_name, cluster=self.ecs_cluster.arn, task_definition=task.arn,
            desired_count=replicas, launch_type="FARGATE", platform_version="LATEST",
            availability_zone_rebalancing="ENABLED",
            network_configuration={"subnets": self.network.private_subnet_ids, "assign_public_ip": False,
                                   "security_groups": [(self.proxy_sg if request.public else self.server_sg).id]},
            load_balancers=[{"target_group_arn": self.target_group.arn, "container_name": service_name,
                             "container_port": port}] if request.public else [],
            health_check_grace_period_seconds=120 if request.public else None,
            service_connect_configuration=connect,
            # A failed rollout stops; it goes back by itself only where that is safe (request.rollback).
            deployment_circuit_breaker={"enable": True, "rollback": request.rollback},
            alarms={"alarm_names": [self.errors_alarm.name], "enable": True, "rollback": request.rollback},
            # `pulumi up` waits for the rollout, and fails with it.
            wait_for_steady_state=True,
            enable_execute_command=execute, propagate_tags="SERVICE",
            opts=self._merge(opts, depends_on=[self.listener] if request.public else [],
                             ignore_changes=["desiredCount"] if autoscaled else []))
        if autoscaled:
            self._autoscaling(name, service, child)
        self._task_count_alarm(name, service_name, child)
        for job in request.jobs:
            self._scheduled_job(f"{name}-{_slug(job.job_name.removeprefix('mlflow-'))}", job, value_from_known,
                                digests, execution_role, task_role, cpu, memory, child)
        return ServiceEndpoint(internal_url=port.apply(lambda p: f"http://{service_name}:{p}"), rollout=service)

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
            task_role_arn=task_role.arn, runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            container_definitions=definitions, opts=opts)
        account = self.ecs_cluster.arn.apply(lambda arn: arn.split(":")[4])  # arn:aws:ecs:<region>:<account>:...
        role = aws.iam.Role(f"{name}-scheduler-role", assume_role_policy=account.apply(tasks.scheduler_assume_policy),
                            description=f"EventBridge Scheduler: start {job.job_name} only", opts=opts)
        aws.iam.RolePolicy(f"{name}-scheduler", role=role.id, opts=opts, policy=pulumi.Output.all(
            task.arn, self.ecs_cluster.arn, task_role.arn, execution_role.arn).apply(
                lambda parts: tasks.scheduler_policy(parts[0], parts[1], parts[2:])))
        aws.scheduler.Schedule(
            name, name=f"{self.prefix}-{job.job_name}", description=f"{job.job_name} on '{job.schedule}' (UTC)",
            schedule_expression=aws_schedule_expression(job.schedule), schedule_expression_timezone="UTC",
            flexible_time_window={"mode": "OFF"},
            target={"arn": self.ecs_cluster.arn, "role_arn": role.arn,
                    "retry_policy": {"maximum_retry_attempts": 0},  # the next run catches up
                    "ecs_parameters": {
                        "task_definition_arn": task.arn, "launch_type": "FARGATE", "platform_version": "LATEST",
                        "task_count": 1,
                        "network_configuration": {"subnets": self.network.private_subnet_ids,
                                                  "security_groups": [self.server_sg.id],
                                                  "assign_public_ip": False}}},
            opts=opts)

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

    def _task_count_alarm(self, name: str, service_name: str, opts: pulumi.ResourceOptions) -> None:
        service = {"ClusterName": self.ecs_cluster.name, "ServiceName": service_name}
        metric_alarm(
            f"{name}-alarm-tasks", self.alarms, f"{service_name}-tasks-below-desired",
            f"{service_name}: fewer tasks running than desired for 10 minutes", opts,
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=1, evaluation_periods=10,
            metric_queries=expression("missing", "desired - running", "tasks missing", [
                metric("desired", "ECS/ContainerInsights", "DesiredTaskCount", service, stat="Maximum"),
                metric("running", "ECS/ContainerInsights", "RunningTaskCount", service, stat="Minimum")]))
