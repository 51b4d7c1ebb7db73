"""The `aws` platform: RDS PostgreSQL, S3, ECR and ECS Fargate behind an Application Load Balancer.

Shape: a VPC (or an existing one) with public subnets for the load balancer and private subnets
for the tasks and the database. Two Fargate services: `mlflow-proxy` (the rendered Nginx, behind
the ALB) and `mlflow-server` (MLflow, reachable only from the proxy through ECS Service Connect,
which gives Nginx a stable upstream name, `mlflow-server:5000`, exactly as on `local`). The schema
upgrade runs as an init container the server container waits for. No static AWS keys: the
server's task role is granted the artifact bucket's object actions, nothing else. Secrets (the
database URI, the htpasswd line) reach containers from Secrets Manager via the task definition's
`secrets`; they are never in a task definition's plain environment or command.

Imports only pulumi_aws (plus pulumi_docker to build and push the image), so the `local` stack
never loads it.
"""

import hashlib
import ipaddress
import json
import re
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components import render
from components.config import StackConfig
from components.platforms.base import (
    DatabaseEndpoint,
    DatabaseRequest,
    Image,
    InitStep,
    ObjectStoreEndpoint,
    ObjectStoreRequest,
    PlatformOutputs,
    PublicEntry,
    ServiceEndpoint,
    ServiceRequest,
    moved_from_top,
    server_image_build,
)
from components.spec import ContainerSpec

PROXY_PORT = render.PROXY_HTTP_PORT
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
ASSUME_ECS_TASKS = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}],
})


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _file_env_name(path: str) -> str:
    return "MLFLOW_PLATFORM_FILE_" + hashlib.sha256(path.encode()).hexdigest()[:10].upper()


def _with_files(command: Sequence[str], paths: Sequence[str]) -> list[str]:
    """ECS has no file uploads: write each file from its env var (plain or secret), drop the var,
    then exec the real command. Contents never appear on a command line."""
    if not paths:
        return list(command)
    steps = ["set -eu", "umask 077"]
    for path in paths:
        variable = _file_env_name(path)
        directory = path.rsplit("/", 1)[0] or "/"
        steps.append(f'mkdir -p "{directory}" && printf "%s" "${variable}" > "{path}" && unset {variable}')
    steps.append('exec "$@"')
    return ["sh", "-c", "; ".join(steps), "sh", *command]


class AwsPlatform(pulumi.ComponentResource):
    """Realizes the components' needs on AWS. The network, security groups, cluster, log group and
    load balancer are platform-wide: children of this component. Databases, buckets and services
    are created under the component that asks for them. AWS names start with `<instance>-<stack>`,
    `instance` being the MlflowTrackingServer's name."""

    load_balancer_dns_name: pulumi.Output[str]
    log_group: pulumi.Output[str]
    cluster: pulumi.Output[str]
    warning: Optional[pulumi.Output[str]]
    """Set while the load balancer serves plain HTTP."""

    runtime_file_dir = "/tmp/mlflow-platform"
    # RDS master passwords may not contain '/', '@', '"', "'" or spaces.
    database_password_specials = ":?#%&+!*-_"

    def __init__(self, name: str, config: StackConfig, instance: str,
                 opts: Optional[pulumi.ResourceOptions] = None, *, moved_from_top_level: bool = False):
        super().__init__("mlflow:index:AwsPlatform", name, None, opts)
        self.settings = config.aws
        self.server = config.server
        self.prefix = f"{instance}-{pulumi.get_stack()}"
        self._child_prefix = name
        self._moved = moved_from_top_level
        self.provider = aws.Provider(
            f"{name}-aws", region=self.settings.region,
            default_tags={"tags": {"project": "mlflow-platform", "stack": pulumi.get_stack()}},
            opts=pulumi.ResourceOptions(parent=self, aliases=moved_from_top("aws", moved_from_top_level)))
        self.opts = pulumi.ResourceOptions(provider=self.provider)
        self.protect = self.settings.protect_resources
        self._network()
        self._security_groups()
        self.ecs_cluster = aws.ecs.Cluster(**self._shared("cluster"), name=self.prefix,
                                           settings=[{"name": "containerInsights", "value": "enabled"}])
        self.namespace = aws.servicediscovery.HttpNamespace(
            **self._shared("service-connect"), name=self.prefix, description="MLflow services (ECS Service Connect)")
        self.log_group_resource = aws.cloudwatch.LogGroup(
            **self._shared("logs"), name=f"/{instance}/{pulumi.get_stack()}",
            retention_in_days=self.settings.log_retention_days)
        self._load_balancer()
        self.load_balancer_dns_name = self.load_balancer.dns_name
        self.log_group = self.log_group_resource.name
        self.cluster = self.ecs_cluster.name
        self.warning = None if self.settings.https else pulumi.Output.from_input(
            "The load balancer serves plain HTTP: passwords cross the network unencrypted. Set "
            "mlflow:aws.domain with mlflow:aws.hostedZoneId or mlflow:aws.certificateArn for HTTPS.")
        self.user_outputs = PlatformOutputs(load_balancer_dns_name=self.load_balancer_dns_name,
                                            log_group=self.log_group, cluster=self.cluster, warning=self.warning)
        outputs = {"load_balancer_dns_name": self.load_balancer_dns_name, "log_group": self.log_group,
                   "cluster": self.cluster}
        if self.warning is not None:
            outputs["warning"] = self.warning
        self.register_outputs(outputs)

    def _shared(self, short_name: str, **options) -> dict:
        """Name and options of a platform-wide resource: named after this component, its child, on
        the stack's AWS provider, and at its pre-facade URN when it moved from the top level."""
        return {"resource_name": f"{self._child_prefix}-{short_name}",
                "opts": pulumi.ResourceOptions(parent=self, provider=self.provider,
                                               aliases=moved_from_top(short_name, self._moved), **options)}

    # --- platform-wide resources ------------------------------------------------------------------

    def _network(self) -> None:
        s = self.settings
        if s.vpc_id:
            self.vpc_id = pulumi.Output.from_input(s.vpc_id)
            self.public_subnet_ids = pulumi.Output.from_input(s.public_subnet_ids).apply(list)
            self.private_subnet_ids = pulumi.Output.from_input(s.private_subnet_ids).apply(list)
            return
        network = ipaddress.ip_network(s.vpc_cidr)
        blocks = list(network.subnets(new_prefix=min(network.prefixlen + 4, 28)))
        vpc = aws.ec2.Vpc(**self._shared("vpc"), cidr_block=s.vpc_cidr, enable_dns_hostnames=True,
                          enable_dns_support=True, tags={"Name": self.prefix})
        gateway = aws.ec2.InternetGateway(**self._shared("internet-gateway"), vpc_id=vpc.id)
        public_routes = aws.ec2.RouteTable(**self._shared("public-routes"), vpc_id=vpc.id,
                                           routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}])
        public, private = [], []
        for index, zone in enumerate(s.zones):
            subnet = aws.ec2.Subnet(**self._shared(f"public-{zone}"), vpc_id=vpc.id, cidr_block=str(blocks[index]),
                                    availability_zone=zone, map_public_ip_on_launch=False,
                                    tags={"Name": f"{self.prefix}-public-{zone}"})
            aws.ec2.RouteTableAssociation(**self._shared(f"public-{zone}"), subnet_id=subnet.id,
                                          route_table_id=public_routes.id)
            public.append(subnet)
        # One NAT gateway: tasks reach ECR, Secrets Manager, CloudWatch and Docker Hub through it.
        nat_ip = aws.ec2.Eip(**self._shared("nat-ip"), domain="vpc")
        nat = aws.ec2.NatGateway(**self._shared("nat", depends_on=[gateway]), subnet_id=public[0].id,
                                 allocation_id=nat_ip.id)
        private_routes = aws.ec2.RouteTable(**self._shared("private-routes"), vpc_id=vpc.id,
                                            routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}])
        for index, zone in enumerate(s.zones):
            subnet = aws.ec2.Subnet(**self._shared(f"private-{zone}"), vpc_id=vpc.id, cidr_block=str(blocks[8 + index]),
                                    availability_zone=zone, tags={"Name": f"{self.prefix}-private-{zone}"})
            aws.ec2.RouteTableAssociation(**self._shared(f"private-{zone}"), subnet_id=subnet.id,
                                          route_table_id=private_routes.id)
            private.append(subnet)
        # Artifact traffic to S3 stays inside AWS (and off the NAT bill).
        aws.ec2.VpcEndpoint(**self._shared("s3-endpoint"), vpc_id=vpc.id, service_name=f"com.amazonaws.{s.region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=[private_routes.id])
        self.vpc_id = vpc.id
        self.public_subnet_ids = pulumi.Output.all(*[subnet.id for subnet in public])
        self.private_subnet_ids = pulumi.Output.all(*[subnet.id for subnet in private])

    def _security_groups(self) -> None:
        """Load balancer <- clients; proxy <- load balancer; server <- proxy; database <- server."""
        def group(name: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(**self._shared(f"{name}-sg"), vpc_id=self.vpc_id, description=description,
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
        egress("server-out-https", self.server_sg, 443, cidr="0.0.0.0/0")  # S3, ECR, secrets, logs
        ingress("database-in-server", self.db_sg, 5432, source_sg=self.server_sg)

    def _load_balancer(self) -> None:
        s = self.settings
        self.load_balancer = aws.lb.LoadBalancer(
            **self._shared("load-balancer"), name_prefix="mlflow", load_balancer_type="application", internal=False,
            security_groups=[self.lb_sg.id], subnets=self.public_subnet_ids,
            idle_timeout=s.load_balancer_idle_timeout_seconds, drop_invalid_header_fields=True)
        self.target_group = aws.lb.TargetGroup(
            **self._shared("proxy-targets"), name_prefix="mlflow", port=PROXY_PORT, protocol="HTTP", target_type="ip",
            vpc_id=self.vpc_id, deregistration_delay=30,
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
        else:
            self.listener = aws.lb.Listener(**self._shared("http"), load_balancer_arn=self.load_balancer.arn, port=80,
                                            protocol="HTTP", default_actions=forward)

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

    def _merge(self, opts: pulumi.ResourceOptions, **extra) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(pulumi.ResourceOptions.merge(opts, self.opts), pulumi.ResourceOptions(**extra))

    # --- Platform interface ---------------------------------------------------------------------

    def postgres_database(self, name: str, request: DatabaseRequest, password: pulumi.Output[str],
                          opts: pulumi.ResourceOptions) -> DatabaseEndpoint:
        s = self.settings
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=self.private_subnet_ids,
                                      description="MLflow database: private subnets only", opts=self._merge(opts))
        parameters = aws.rds.ParameterGroup(
            f"{name}-parameters", family=f"postgres{request.postgres_version}",
            description="MLflow database parameters",
            parameters=[{"name": "max_connections", "value": str(request.max_connections), "apply_method": "pending-reboot"},
                        {"name": "rds.force_ssl", "value": "1", "apply_method": "pending-reboot"}],
            opts=self._merge(opts))
        instance = aws.rds.Instance(
            name,
            identifier_prefix=f"{self.prefix}-",
            engine="postgres",
            engine_version=s.db_engine_version,
            instance_class=s.db_instance_class,
            allocated_storage=s.db_allocated_storage_gb,
            max_allocated_storage=s.db_max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=request.database,
            username=request.username,
            password=password,
            db_subnet_group_name=subnets.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[self.db_sg.id],
            publicly_accessible=False,
            multi_az=s.db_multi_az,
            backup_retention_period=s.db_backup_retention_days,
            deletion_protection=s.deletion_protection,
            skip_final_snapshot=not s.final_snapshot,
            final_snapshot_identifier=f"{self.prefix}-final" if s.final_snapshot else None,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            performance_insights_enabled=False,
            opts=self._merge(opts, protect=self.protect),
        )
        return DatabaseEndpoint(host=instance.address, port=instance.port, published_endpoint=instance.endpoint)

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

    def server_image(self, name: str, mlflow_version: str, opts: pulumi.ResourceOptions) -> Image:
        source = server_image_build()
        repository = aws.ecr.Repository(
            f"{name}-repository", name=f"{self.prefix}/mlflow-server", image_tag_mutability="MUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "AES256"}], force_delete=False,
            opts=self._merge(opts, protect=self.protect))
        aws.ecr.LifecyclePolicy(f"{name}-lifecycle", repository=repository.name, policy=json.dumps({"rules": [{
            "rulePriority": 1, "description": "keep the last 20 images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20},
            "action": {"type": "expire"}}]}), opts=self._merge(opts))
        token = aws.ecr.get_authorization_token_output(registry_id=repository.registry_id,
                                                       opts=pulumi.InvokeOutputOptions(provider=self.provider))
        image = docker.Image(
            name,
            image_name=repository.repository_url.apply(lambda url: f"{url}:{mlflow_version}"),
            build=docker.DockerBuildArgs(context=source.context, dockerfile=source.dockerfile,
                                         args={"MLFLOW_VERSION": mlflow_version}, platform="linux/amd64"),
            registry=docker.RegistryArgs(server=repository.repository_url,
                                         username=token.user_name,
                                         password=pulumi.Output.secret(token.password)),
            opts=self._merge(opts),
        )
        # Tasks run the pushed digest, so a rebuilt tag can never change a running service silently.
        return Image(reference=image.repo_digest, repository=repository.arn)

    def public_image(self, name: str, reference: str, opts: pulumi.ResourceOptions) -> Image:
        return Image(reference=pulumi.Output.from_input(reference))

    def public_entry(self) -> PublicEntry:
        s = self.settings
        hostnames = (pulumi.Output.from_input([s.domain]) if s.domain
                     else self.load_balancer.dns_name.apply(lambda dns: [dns.lower()]))
        return PublicEntry(hostnames=hostnames, scheme="https" if s.https else "http", port=443 if s.https else 80)

    def run_service(self, name: str, request: ServiceRequest, opts: pulumi.ResourceOptions) -> ServiceEndpoint:
        child = self._merge(opts)
        service_name, spec, init = request.service_name, request.spec, request.init
        # Every secret value (env and runtime files) becomes a Secrets Manager secret.
        secret_values: dict[str, pulumi.Output[str]] = dict(request.secret_env)
        if init is not None:
            secret_values.update(init.secret_env)
        for path, content in request.runtime_files.items():
            secret_values[_file_env_name(path)] = pulumi.Output.secret(content)
        secret_arns: dict[str, pulumi.Output[str]] = {}
        for variable, value in secret_values.items():
            slug = _slug(variable)
            secret = aws.secretsmanager.Secret(f"{name}-{slug}", name_prefix=f"{self.prefix}/{service_name}/{slug}-",
                                               recovery_window_in_days=7, opts=child)
            aws.secretsmanager.SecretVersion(f"{name}-{slug}", secret_id=secret.id,
                                             secret_string=pulumi.Output.secret(value), opts=child)
            secret_arns[variable] = secret.arn

        execution_role = aws.iam.Role(f"{name}-execution-role", assume_role_policy=ASSUME_ECS_TASKS,
                                      description=f"ECS agent for {service_name}: pull image, write logs, read its secrets",
                                      opts=child)
        aws.iam.RolePolicy(f"{name}-execution", role=execution_role.id,
                           policy=self._execution_policy(request.image_repository, list(secret_arns.values())),
                           opts=child)
        task_role = aws.iam.Role(f"{name}-task-role", assume_role_policy=ASSUME_ECS_TASKS,
                                 description=f"{service_name} itself: only what its stores grant", opts=child)
        for index, policy in enumerate(request.access_policies):
            aws.iam.RolePolicy(f"{name}-access-{index}", role=task_role.id, policy=policy, opts=child)

        plain_files = spec.apply(lambda s: dict(s.files))
        runtime_paths = list(request.runtime_files)
        definitions = pulumi.Output.all(
            spec, init.spec if init is not None else None, plain_files, pulumi.Output.all(**secret_arns),
            self.log_group_resource.name,
        ).apply(lambda parts: json.dumps(self._containers(
            service_name, parts[0], parts[1], init, parts[2], runtime_paths, parts[3], parts[4])))
        sizing = (self.server.cpu, self.server.memory_mib) if not request.public else (
            self.settings.proxy_cpu / 1024, self.settings.proxy_memory_mib)
        task = aws.ecs.TaskDefinition(
            name, family=f"{self.prefix}-{service_name}", network_mode="awsvpc", requires_compatibilities=["FARGATE"],
            cpu=str(int(sizing[0] * 1024)), memory=str(sizing[1]), execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn, runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            container_definitions=definitions, opts=child)
        port = spec.apply(lambda s: s.ports[0])
        connect: dict = {"enabled": True, "namespace": self.namespace.arn}
        if not request.public:
            connect["services"] = [{"port_name": "http", "discovery_name": service_name,
                                    "client_alias": [{"port": port, "dns_name": service_name}]}]
        service_opts = self._merge(opts, depends_on=[self.listener] if request.public else [])
        aws.ecs.Service(
            name, name=service_name, cluster=self.ecs_cluster.arn, task_definition=task.arn,
            desired_count=self.server.replicas, launch_type="FARGATE", platform_version="LATEST",
            network_configuration={"subnets": self.private_subnet_ids, "assign_public_ip": False,
                                   "security_groups": [(self.proxy_sg if request.public else self.server_sg).id]},
            load_balancers=[{"target_group_arn": self.target_group.arn, "container_name": service_name,
                             "container_port": port}] if request.public else [],
            health_check_grace_period_seconds=120 if request.public else None,
            service_connect_configuration=connect,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            enable_execute_command=False, propagate_tags="SERVICE",
            opts=service_opts)
        return ServiceEndpoint(internal_url=port.apply(lambda p: f"http://{service_name}:{p}"))

    def _execution_policy(self, image_repository: Optional[pulumi.Output[str]],
                          secret_arns: list[pulumi.Output[str]]) -> pulumi.Output[str]:
        """Pull this service's own image (when it lives in ECR), write to the stack's log group, read
        this service's secrets. ecr:GetAuthorizationToken has no resource-level permissions in IAM:
        it must name "*"."""
        return pulumi.Output.all(self.log_group_resource.arn, image_repository, *secret_arns).apply(
            lambda parts: json.dumps({
                "Version": "2012-10-17",
                "Statement": [
                    *([{"Sid": "RegistryLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"],
                        "Resource": "*"},
                       {"Sid": "PullImage", "Effect": "Allow",
                        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                        "Resource": [parts[1]]}] if parts[1] else []),
                    {"Sid": "WriteLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                     "Resource": [f"{parts[0]}:*"]},
                    *([{"Sid": "ReadSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                        "Resource": list(parts[2:])}] if parts[2:] else []),
                ],
            }))

    def _containers(self, service_name: str, spec: ContainerSpec, init_spec: Optional[ContainerSpec],
                    init: Optional[InitStep], plain_files: Mapping[str, str], runtime_paths: Sequence[str],
                    secret_arns: Mapping[str, str], log_group: str) -> list[dict]:
        def logging(prefix: str) -> dict:
            return {"logDriver": "awslogs", "options": {"awslogs-group": log_group, "awslogs-region": self.settings.region,
                                                       "awslogs-stream-prefix": prefix}}

        def secrets_for(names: Sequence[str]) -> list[dict]:
            return [{"name": n, "valueFrom": secret_arns[n]} for n in names]

        containers = []
        main_depends = []
        if init_spec is not None and init is not None:
            containers.append({
                "name": init.service_name, "image": init_spec.image, "essential": False,
                "command": list(init_spec.command), "user": init_spec.user,
                "environment": [{"name": k, "value": v} for k, v in init_spec.env.items()],
                "secrets": secrets_for(list(init.secret_env)), "logConfiguration": logging(init.service_name),
            })
            main_depends = [{"containerName": init.service_name, "condition": "SUCCESS"}]
        files = [*plain_files, *runtime_paths]
        environment = {**spec.env, **{_file_env_name(path): content for path, content in plain_files.items()}}
        main = {
            "name": service_name, "image": spec.image, "essential": True,
            "command": _with_files(spec.command, files), "user": spec.user,
            "environment": [{"name": k, "value": v} for k, v in environment.items()],
            "secrets": secrets_for([*spec.secret_env_names, *[_file_env_name(p) for p in runtime_paths]]),
            "portMappings": [{"containerPort": spec.ports[0], "protocol": "tcp", "name": "http", "appProtocol": "http"}],
            "logConfiguration": logging(service_name),
            "dependsOn": main_depends,
        }
        if spec.health_check is not None:
            check = spec.health_check
            main["healthCheck"] = {"command": ["CMD", *check.command], "interval": check.interval_seconds,
                                   "timeout": check.timeout_seconds, "retries": check.retries,
                                   "startPeriod": check.start_period_seconds}
        containers.append(main)
        return containers
