"""AWS's own rules, checked on every recorded `aws` graph: the stack file's defaults and variants.

Each rule is a function returning what breaks it (empty: the graph keeps the rule) and cites the
AWS (or provider) documentation it comes from. The variants turn on what the rules depend on: auth
modes, a domain with a Route 53 zone or a certificate, an internal load balancer, scheduled gc, ECS
Exec, Prometheus on and off, stacks named `Prod` and `eu_prod`, a long MlflowTrackingServer name.
The last tests mutate one resource of the default graph (of a graph with scheduled gc for the rules
on it), to show each rule that the current graph keeps can fail.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Callable, Optional

import pytest

from tests.policy.graphs import replaced
from tests.harness.cloud_rules import (
    artifact_body_size,
    DROP,
    GIB,
    LONG_INSTANCE,
    NGINX_DEFAULT_KEEPALIVE_SECONDS,
    OIDC_AUTH,
    Graph,
    NameRule,
    answered_by_nginx,
    build,
    directive,
    event_matches,
    name_problems,
    nginx_conf_in,
    nginx_size_bytes,
    nginx_time_seconds,
    public_server_block,
    url_path,
    uvicorn_keep_alive_seconds,
    variant,
)
from tests.harness import program as harness
from tests.harness.program import ProgramRun, Recorded

SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"

VARIANTS = [
    variant("default", "aws"),
    variant("Prod-oidc-zone-internal-gc-exec", "aws", stack="Prod",
            auth=OIDC_AUTH, database={"maxConnections": DROP},
            aws={"domain": "mlflow.example.com", "hostedZoneId": "Z0123456789ABCDEFGHIJ", "allowPlainHttp": DROP,
                 "internal": True, "execEnabled": True, "alarmEmail": "mlops@example.com"},
            maintenance={"gcSchedule": "15 3 * * *"}),
    variant("eu_prod-long-mlflow-auth-certificate-no-prometheus", "aws", stack="eu_prod", instance=LONG_INSTANCE,
            auth={"mode": "mlflow"}, database={"maxConnections": DROP},
            aws={"domain": "mlflow.example.com", "allowPlainHttp": DROP, "natGateways": "single",
                 "certificateArn":
                     "arn:aws:acm:eu-west-1:123456789012:certificate/0123abcd-4567-89ef-0123-456789abcdef"},
            observability={"prometheus": False}, proxy={"timeoutSeconds": 600, "clientMaxBodySize": "8g"},
            server={"cpu": 2, "memoryMib": 4096}, maintenance={"gcSchedule": "15 3 * * *"},
            artifacts={"bucket": "mlflow-artifacts-research-team-eu-west-1"}),
    # A region whose zone letters are not a and b for most accounts (ap-northeast-1: a, c, d).
    variant("tokyo-zones-from-the-account", "aws", aws={"region": "ap-northeast-1"}),
    # An instance name SSM's reserved prefixes begin (review 24, aws 2 F2: `/aws-...` parameter names).
    variant("aws-named-instance", "aws", instance="aws-tracking"),
    # Issue 26: clients move artifacts with presigned URLs; a region launched after March 2019, an internal
    # load balancer, a prefix.
    variant("direct-transfers-cape-town-internal", "aws", artifacts={"transfer": "direct", "prefix": "mlflow"},
            aws={"region": "af-south-1", "internal": True}),
]
DIRECT = VARIANTS[-1]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: v.name)
def graph(request) -> Graph:
    return build(request.param)


def report(problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


# --- reading the graph ---------------------------------------------------------------------------

def task_of(graph: Graph, service: Recorded) -> Recorded:
    return next(t for t in graph.of_type(TASK) if t.state.get("arn") == service.inputs["taskDefinition"])


def containers(task: Recorded) -> list[dict]:
    return json.loads(task.inputs["containerDefinitions"])


def main_container(graph: Graph, service: Recorded) -> dict:
    """The service's essential container, the one its load balancer or Service Connect reaches."""
    return next(c for c in containers(task_of(graph, service)) if c.get("essential", True))


def proxy_services(graph: Graph) -> list[Recorded]:
    """Services behind the load balancer."""
    return [s for s in graph.of_type(SERVICE) if s.inputs.get("loadBalancers")]


def server_services(graph: Graph) -> list[Recorded]:
    """Services others reach through Service Connect."""
    return [s for s in graph.of_type(SERVICE) if (s.inputs.get("serviceConnectConfiguration") or {}).get("services")]


def nginx_conf(graph: Graph, service: Recorded) -> str:
    return nginx_conf_in(e.get("value") for e in main_container(graph, service).get("environment", []))


def target_group(graph: Graph, service: Recorded) -> Recorded:
    [attachment] = service.inputs["loadBalancers"]
    return next(t for t in graph.of_type("aws:lb/targetGroup:TargetGroup")
                if t.state.get("arn") == attachment["targetGroupArn"])


# --- names ----------------------------------------------------------------------------------------

EC2_TEXT = NameRule("EC2 security group text", r"[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]*", 0, 255,
                    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html")
RDS_ID = r"[a-zA-Z](?:[a-zA-Z0-9]|-(?!-))*(?<!-)"
ECS_NAME = r"[a-zA-Z0-9_-]+"
NAME_CHECKS = [
    # Every text of a security group and its rules (GroupDescription; rule descriptions allow the same).
    ("aws:ec2/securityGroup:SecurityGroup", "description", EC2_TEXT),
    ("aws:ec2/securityGroup:SecurityGroup", "name", EC2_TEXT),
    ("aws:ec2/securityGroup:SecurityGroup", "ingress[].description", EC2_TEXT),
    ("aws:ec2/securityGroup:SecurityGroup", "egress[].description", EC2_TEXT),
    ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "description", EC2_TEXT),
    ("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "description", EC2_TEXT),
    # RDS: the provider adds 26 characters to identifier_prefix and allows lower-case only; the
    # identifier itself is 1-63 letters, digits, hyphens, starting with a letter, no '--' nor trailing '-'.
    ("aws:rds/instance:Instance", "identifierPrefix", NameRule(
        "RDS identifier_prefix", r"[a-z](?:[a-z0-9]|-(?!-))*", 1, 63 - 26,
        "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html, "
        "https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/db_instance#identifier_prefix")),
    ("aws:rds/instance:Instance", "identifier", NameRule(
        "RDS identifier", RDS_ID, 1, 63, "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html")),
    ("aws:rds/instance:Instance", "finalSnapshotIdentifier", NameRule(
        "RDS final snapshot identifier", RDS_ID, 1, 255,
        "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DeleteDBInstance.html")),
    ("aws:rds/snapshot:Snapshot", "dbSnapshotIdentifier", NameRule(
        "RDS snapshot identifier", RDS_ID, 1, 255,
        "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSnapshot.html")),
    ("aws:rds/parameterGroup:ParameterGroup", "name", NameRule(
        "RDS parameter group name", r"[a-z](?:[a-z0-9]|-(?!-))*(?<!-)", 1, 255,
        "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBParameterGroup.html")),
    ("aws:rds/subnetGroup:SubnetGroup", "name", NameRule(
        "RDS subnet group name", r"[a-z0-9 ._-]+", 1, 255,
        "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSubnetGroup.html")),
    # S3: the provider appends 26 characters to bucket_prefix (bucket names are 3-63, lower-case).
    ("aws:s3/bucket:Bucket", "bucketPrefix", NameRule(
        "S3 bucket_prefix", r"[a-z0-9][a-z0-9.-]*", 1, 37,
        "https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/s3_bucket#bucket_prefix, "
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html")),
    ("aws:ecr/repository:Repository", "name", NameRule(
        "ECR repository name", r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*", 2, 256,
        "https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html")),
    # name_prefix: the provider adds 26 characters to at most 6 (names are 32 at most).
    ("aws:lb/loadBalancer:LoadBalancer", "namePrefix", NameRule(
        "ALB name_prefix", r"(?!internal-)[a-zA-Z0-9](?:[a-zA-Z0-9-]*)", 1, 6,
        "https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/lb#name_prefix")),
    ("aws:lb/loadBalancer:LoadBalancer", "name", NameRule(
        "ALB name", r"(?!internal-)[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?", 1, 32,
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html")),
    ("aws:lb/targetGroup:TargetGroup", "namePrefix", NameRule(
        "target group name_prefix", r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*)", 1, 6,
        "https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/lb_target_group#name_prefix")),
    ("aws:lb/targetGroup:TargetGroup", "name", NameRule(
        "target group name", r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?", 1, 32,
        "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html")),
    ("aws:ecs/cluster:Cluster", "name", NameRule(
        "ECS cluster name", ECS_NAME, 1, 255, "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateCluster.html")),
    ("aws:ecs/service:Service", "name", NameRule(
        "ECS service name", ECS_NAME, 1, 255, "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateService.html")),
    ("aws:ecs/taskDefinition:TaskDefinition", "family", NameRule(
        "ECS task family", ECS_NAME, 1, 255,
        "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RegisterTaskDefinition.html")),
    ("aws:servicediscovery/httpNamespace:HttpNamespace", "name", NameRule(
        "Cloud Map namespace name", r"[!-~]+", 1, 1024,
        "https://docs.aws.amazon.com/cloud-map/latest/api/API_CreateHttpNamespace.html")),
    ("aws:sns/topic:Topic", "name", NameRule(
        "SNS topic name", r"[a-zA-Z0-9_-]+", 1, 256, "https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html")),
    ("aws:cloudwatch/metricAlarm:MetricAlarm", "name", NameRule(
        "CloudWatch alarm name", r"[^\x00-\x1f\x7f]+", 1, 255,
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html")),
    ("aws:cloudwatch/metricAlarm:MetricAlarm", "alarmDescription", NameRule(
        "CloudWatch alarm description", r"[^\x00-\x1f\x7f]*", 0, 1024,
        "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html")),
    ("aws:cloudwatch/logGroup:LogGroup", "name", NameRule(
        "log group name", r"[.\-_/#A-Za-z0-9]+", 1, 512,
        "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html")),
    ("aws:secretsmanager/secret:Secret", "namePrefix", NameRule(
        "Secrets Manager name_prefix", r"[a-zA-Z0-9/_+=.@-]+", 1, 512 - 26,
        "https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html")),
    ("aws:secretsmanager/secret:Secret", "name", NameRule(
        "Secrets Manager name", r"[a-zA-Z0-9/_+=.@-]+", 1, 512,
        "https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html")),
    ("aws:scheduler/schedule:Schedule", "name", NameRule(
        "EventBridge Scheduler schedule name", r"[0-9a-zA-Z_.-]+", 1, 64,
        "https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html")),
    ("aws:scheduler/schedule:Schedule", "description", NameRule(
        "EventBridge Scheduler description", r"[\s\S]*", 0, 512,
        "https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html")),
    ("aws:sqs/queue:Queue", "name", NameRule(
        "SQS queue name", r"[a-zA-Z0-9_-]+", 1, 80,
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html")),
    ("aws:cloudwatch/eventRule:EventRule", "name", NameRule(
        "EventBridge rule name", r"[.\-_A-Za-z0-9]+", 1, 64,
        "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html")),
    ("aws:cloudwatch/eventRule:EventRule", "description", NameRule(
        "EventBridge rule description", r"[\s\S]*", 0, 512,
        "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html")),
    ("aws:ssm/parameter:Parameter", "name", NameRule(
        "SSM parameter name", r"(?!/?(?:aws|ssm))[a-zA-Z0-9_./-]+", 1, 1011,
        "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html")),
    ("aws:iam/role:Role", "name", NameRule(
        "IAM role name", r"[\w+=,.@-]+", 1, 64, "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html")),
    ("aws:iam/role:Role", "description", NameRule(
        "IAM role description", r"[\t\n\r\x20-\x7e\xa1-\xff]*", 0, 1000,
        "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html")),
]


def names_rule(graph: Graph) -> list[str]:
    problems = name_problems(graph, NAME_CHECKS)
    for task in graph.of_type(TASK):  # container names: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html
        for container in containers(task):
            if not re.fullmatch(r"[a-zA-Z0-9_-]{1,255}", container["name"]):
                problems.append(f"[{graph.variant.name}] {task.name}: container name {container['name']!r}")
    return problems


def test_every_name_the_graph_sets_is_one_aws_accepts(graph):
    """Character sets and lengths of every physical name and free text the graph sets (each
    NAME_CHECKS entry cites its API reference). Stacks called `Prod` or `eu_prod` and a long
    instance name reach the identifiers through `<instance>-<stack>`."""
    report(names_rule(graph))


# Types Pulumi names when the program gives no name: the logical name, "-" and 7 random characters
# (pulumi/sdk resource.NewUniqueHex), refused when longer than the cloud allows.
AUTO_NAMED = {
    "aws:iam/role:Role": (64, "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html"),
    "aws:iam/rolePolicy:RolePolicy": (128, "https://docs.aws.amazon.com/IAM/latest/APIReference/API_PutRolePolicy.html"),
    "aws:ec2/securityGroup:SecurityGroup": (
        255, "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html"),
    "aws:rds/parameterGroup:ParameterGroup": (
        255, "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBParameterGroup.html"),
    "aws:rds/subnetGroup:SubnetGroup": (
        255, "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSubnetGroup.html"),
    "aws:appautoscaling/policy:Policy": (
        256, "https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PutScalingPolicy.html"),
}


def auto_names_rule(graph: Graph) -> list[str]:
    problems = []
    for type_, (limit, source) in AUTO_NAMED.items():
        for resource in graph.of_type(type_):
            if not (resource.inputs.get("name") or resource.inputs.get("namePrefix")) \
                    and len(resource.name) + 8 > limit:
                problems.append(f"[{graph.variant.name}] {resource.name}: Pulumi's name for it would be "
                                f"{len(resource.name) + 8} characters, {type_} allows {limit} ({source})")
    return problems


def test_names_pulumi_makes_fit_too(graph):
    """Review 24 (aws F1): IAM roles without a name got Pulumi's (logical name + 8 characters); with a long
    MlflowTrackingServer name and gc on, the scheduler role's was 66 of IAM's 64 and `pulumi up` refused it."""
    report(auto_names_rule(graph))


def zones_rule(graph: Graph) -> list[str]:
    """Subnets only in the zones the account has in its region (EC2 DescribeAvailabilityZones, as the
    mocks answer it for an account: ap-northeast-1 has no `b` for most accounts)."""
    config = json.loads(graph.variant.config()["mlflow:aws"])
    region = config.get("region", "us-east-1")
    letters = harness.ProgramMocks.AWS_ZONE_LETTERS.get(region, "abc")
    have = {f"{region}{letter}" for letter in letters} | set(config.get("availabilityZones") or ())
    return [f"[{graph.variant.name}] subnet {subnet.name} in {subnet.inputs['availabilityZone']}, a zone the account "
            f"does not have in {region} (it has {sorted(have)})"
            for subnet in graph.of_type("aws:ec2/subnet:Subnet") if subnet.inputs["availabilityZone"] not in have]


def test_subnets_are_in_zones_the_account_has(graph):
    """Review 24 (aws F2): with aws.availabilityZones unset the subnets went to `<region>a` and `<region>b`;
    CreateSubnet refuses ap-northeast-1b for most accounts ("Subnets can currently only be created in ...
    ap-northeast-1a, ap-northeast-1c, ap-northeast-1d": aws-samples/saas-reference-architecture-ecs#12)."""
    report(zones_rule(graph))


def test_an_impaired_zone_during_a_later_up_moves_nothing(monkeypatch):
    """Review 24 (aws 2, F1): the zones were looked up with state=available at every `up`; one run during a
    zone event planned the subnets, the NAT gateways and the database's subnet group in other zones (RDS
    refuses to drop a subnet its instance uses). The zones an account has do not change with their state."""
    before = {s.name: s.inputs["availabilityZone"] for s in build(VARIANTS[0]).of_type("aws:ec2/subnet:Subnet")}
    monkeypatch.setattr(harness.ProgramMocks, "AWS_IMPAIRED_ZONES", frozenset({"eu-west-1a"}))
    during = {s.name: s.inputs["availabilityZone"]
              for s in build(VARIANTS[0]).of_type("aws:ec2/subnet:Subnet")}
    assert during == before and sorted(set(before.values())) == ["eu-west-1a", "eu-west-1b"]


def listener_replacement_rule(graph: Graph) -> list[str]:
    """A listener forwarding to a target group is deleted before it is replaced: a target group belongs to
    one load balancer, and a new listener on a new load balancer (aws.internal switched) forwarding to it
    while the old one still does is refused (TargetGroupAssociationLimit, hashicorp/terraform-provider-aws#22005)."""
    return [f"[{graph.variant.name}] listener {listener.name} forwards to a target group but is replaced "
            "create-before-delete"
            for listener in graph.of_type("aws:lb/listener:Listener")
            if any(action.get("type") == "forward" for action in listener.inputs.get("defaultActions", []))
            and not listener.delete_before_replace]


def test_forwarding_listeners_go_before_their_replacements(graph):
    """Review 24 (aws F3): switching aws.internal replaced the load balancer and its listeners; the new
    listener's target group was still the old one's, and ELB refused it half-way through the update."""
    report(listener_replacement_rule(graph))


def inbound_rules_rule(graph: Graph) -> list[str]:
    counts: dict[str, int] = {}
    for rule in graph.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        counts[rule.inputs["securityGroupId"]] = counts.get(rule.inputs["securityGroupId"], 0) + 1
    return [f"[{graph.variant.name}] security group {group}: {count} inbound rules, AWS allows 60 by default "
            "(https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html)"
            for group, count in counts.items() if count > 60]


def test_security_groups_hold_no_more_inbound_rules_than_aws_allows(graph):
    report(inbound_rules_rule(graph))


def test_too_many_client_networks_are_refused_before_anything_is_made():
    """Review 24 (aws F4): each aws.allowedCidrs entry is one inbound rule per listener port on the load
    balancer's security group (60 by default): 31 networks with HTTPS failed the deploy half-way."""
    from pydantic import ValidationError

    from components.platforms.aws.config import AwsConfig

    many = [f"10.{index}.0.0/16" for index in range(31)]
    with pytest.raises(ValidationError, match=r"aws.allowedCidrs: at most 30 networks with HTTPS .* 31 given"):
        AwsConfig(region="eu-west-1", domain="mlflow.example.com", hosted_zone_id="Z0123456789ABCDEFGHIJ",
                  allowed_cidrs=many)
    AwsConfig(region="eu-west-1", domain="mlflow.example.com", hosted_zone_id="Z0123456789ABCDEFGHIJ",
              allowed_cidrs=many[:30])
    AwsConfig(region="eu-west-1", allow_plain_http=True, allowed_cidrs=many)  # one port: 60 fit


# --- ordering -------------------------------------------------------------------------------------

def role_policies(graph: Graph, role_arn: str) -> list[Recorded]:
    role = next((r for r in graph.of_type("aws:iam/role:Role") if r.state.get("arn") == role_arn), None)
    if role is None:
        return []
    return [p for p in graph.of_type("aws:iam/rolePolicy:RolePolicy") + graph.of_type(
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if p.inputs.get("role") in (role.state["id"], role.state.get("name"))]


def services_after_policies_rule(graph: Graph) -> list[str]:
    problems = []
    for service in graph.of_type(SERVICE):
        task = task_of(graph, service)
        for key in ("executionRoleArn", "taskRoleArn"):
            for policy in role_policies(graph, task.inputs.get(key)):
                if not graph.waits_for(service, policy):
                    problems.append(f"[{graph.variant.name}] service {service.name} may start tasks before "
                                    f"{policy.name} ({key}) exists")
    return problems


def test_services_wait_for_their_roles_policies(graph):
    """IAM is eventually consistent and a task started before its execution role may read its
    secrets and pull its image fails (ResourceInitializationError): each ECS service waits for
    every inline policy of its task and execution roles.
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html,
    https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/ecs_service (note on
    depends_on for the role policy)."""
    report(services_after_policies_rule(graph))


def secret_values_rule(graph: Graph) -> list[str]:
    problems = []
    versions = graph.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    secrets = graph.of_type("aws:secretsmanager/secret:Secret")
    for service in graph.of_type(SERVICE):
        read = {item["valueFrom"] for c in containers(task_of(graph, service)) for item in c.get("secrets", [])}
        for secret in secrets:
            if not any(value.startswith(secret.state["arn"]) for value in read):
                continue
            for version in versions:
                if version.inputs.get("secretId") in (secret.state["id"], secret.state["arn"]) and not graph.waits_for(
                        service, version):
                    problems.append(f"[{graph.variant.name}] service {service.name} may start tasks before "
                                    f"{version.name} gives {secret.name} a value")
    return problems


def test_services_wait_for_the_secret_values_their_tasks_read(graph):
    """ECS reads each `secrets` entry when a task starts; a secret without a version fails the
    start (ResourceInitializationError: ... ResourceNotFoundException). The service waits for the
    SecretVersion of every secret its task definition names, not only for the secret.
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-secrets-manager.html"""
    report(secret_values_rule(graph))


# --- timeouts and keep-alive ------------------------------------------------------------------------

ECS_SERVICE_DEFAULT_TIMEOUT_SECONDS = 20 * 60
"""https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/ecs_service#timeouts"""
TARGET_GROUP_DEFAULTS = {"deregistrationDelay": 300, "interval": 30, "healthyThreshold": 5}
"""https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-target-groups.html"""
ECS_DEFAULT_STOP_TIMEOUT_SECONDS = 30
"""https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ContainerDefinition.html (stopTimeout)"""
TASK_START_ALLOWANCE_SECONDS = 180
"""Provisioning, image pull by digest and container start of a Fargate task: a margin, not a measure."""


def rollout_seconds(graph: Graph, service: Recorded) -> int:
    """The longest steady rollout of a load-balanced service: new tasks start and pass the target
    group's health checks (after the grace period), the old ones drain for the deregistration delay
    and then get their stop timeout."""
    group = target_group(graph, service).inputs
    check = group.get("healthCheck") or {}
    delay = int(group.get("deregistrationDelay", TARGET_GROUP_DEFAULTS["deregistrationDelay"]))
    healthy = int(check.get("interval", TARGET_GROUP_DEFAULTS["interval"])) * int(
        check.get("healthyThreshold", TARGET_GROUP_DEFAULTS["healthyThreshold"]))
    stop = int(main_container(graph, service).get("stopTimeout", ECS_DEFAULT_STOP_TIMEOUT_SECONDS))
    grace = int(service.inputs.get("healthCheckGracePeriodSeconds", 0))
    return TASK_START_ALLOWANCE_SECONDS + max(grace, healthy) + delay + stop


def rollout_timeout_rule(graph: Graph) -> list[str]:
    problems = []
    for service in proxy_services(graph):
        if not service.inputs.get("waitForSteadyState"):
            continue
        needed = rollout_seconds(graph, service)
        for operation in ("create", "update"):
            allowed = graph.timeout_seconds(service, operation, ECS_SERVICE_DEFAULT_TIMEOUT_SECONDS)
            if allowed <= needed:
                problems.append(f"[{graph.variant.name}] service {service.name}: {operation} timeout {allowed}s, "
                                f"a rollout takes up to {needed}s")
    return problems


def test_rollouts_fit_in_the_service_timeouts(graph):
    """With wait_for_steady_state, `pulumi up` fails when the rollout outlasts the service's
    create/update timeout (20 minutes unless customTimeouts): the timeout must exceed start-up,
    health checks, the target group's deregistration delay and the stop timeout together.
    https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/ecs_service#wait_for_steady_state,
    https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html#deregistration-delay"""
    report(rollout_timeout_rule(graph))


def load_balancer_idle_rule(graph: Graph) -> list[str]:
    problems = []
    for balancer in graph.of_type("aws:lb/loadBalancer:LoadBalancer"):
        idle = balancer.inputs.get("idleTimeout", 60)
        if not 1 <= idle <= 4000:
            problems.append(f"[{graph.variant.name}] {balancer.name}: idle timeout {idle} outside 1-4000")
        for service in proxy_services(graph):
            keepalive = directive(public_server_block(nginx_conf(graph, service)), "keepalive_timeout")
            seconds = nginx_time_seconds(keepalive.split()[0]) if keepalive else NGINX_DEFAULT_KEEPALIVE_SECONDS
            if not seconds > idle:
                problems.append(f"[{graph.variant.name}] Nginx keepalive_timeout {seconds:g}s of {service.name} is not "
                                f"longer than the load balancer's idle timeout {idle}s: Nginx closes connections "
                                "the load balancer still reuses (502)")
    return problems


def test_load_balancer_idle_timeout_is_valid_and_shorter_than_nginx_keepalive(graph):
    """idle_timeout.timeout_seconds is 1-4000, and the targets' keep-alive must outlast it
    ("configure the idle timeout of your application to be larger than the idle timeout configured
    for the load balancer"); Nginx's keepalive_timeout is 75 s unless set.
    https://docs.aws.amazon.com/elasticloadbalancing/latest/application/application-load-balancers.html#connection-idle-timeout,
    http://nginx.org/en/docs/http/ngx_http_core_module.html#keepalive_timeout"""
    report(load_balancer_idle_rule(graph))


SERVICE_CONNECT_DEFAULT_IDLE_SECONDS = 300
"""https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_TimeoutConfiguration.html"""


def service_connect_rule(graph: Graph) -> list[str]:
    problems = []
    proxy_read = [nginx_time_seconds(directive(public_server_block(nginx_conf(graph, s)), "proxy_read_timeout") or "60")
                  for s in proxy_services(graph)]
    for service in server_services(graph):
        keep_alive = uvicorn_keep_alive_seconds(main_container(graph, service)["command"])
        for entry in service.inputs["serviceConnectConfiguration"]["services"]:
            timeout = entry.get("timeout") or {}
            idle = timeout.get("idleTimeoutSeconds", SERVICE_CONNECT_DEFAULT_IDLE_SECONDS)
            if not (idle and idle < keep_alive):
                problems.append(f"[{graph.variant.name}] {service.name}: Service Connect idle timeout {idle}s is not "
                                f"shorter than uvicorn's --timeout-keep-alive {keep_alive:g}s")
            per_request = timeout.get("perRequestTimeoutSeconds", 15)
            if per_request and any(per_request <= read for read in proxy_read):
                problems.append(f"[{graph.variant.name}] {service.name}: Service Connect ends requests after "
                                f"{per_request}s, before Nginx's proxy_read_timeout")
    return problems


def test_service_connect_hop_idles_out_before_uvicorn_and_lets_requests_run(graph):
    """Envoy (Service Connect) in front of uvicorn: its idle timeout (300 s unless set) must be
    shorter than uvicorn's keep-alive, or Envoy reuses a connection uvicorn is closing; its
    per-request timeout (15 s for HTTP unless set, 0 disables) must not end what Nginx waits for.
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_TimeoutConfiguration.html,
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-connect-concepts-deploy.html"""
    report(service_connect_rule(graph))


# --- alarms ---------------------------------------------------------------------------------------

TREAT_MISSING = {"breaching", "notBreaching", "ignore", "missing"}


def divisors(expression: str) -> list[str]:
    """The operand right of each `/`: an id, FILL(...) or a parenthesised group."""
    found = []
    for match in re.finditer(r"/\s*", expression):
        rest = expression[match.end():]
        depth, index = 0, 0
        while index < len(rest):
            char = rest[index]
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and char in "+-*/ ,":
                break
            index += 1
        found.append(rest[:index])
    return found


def alarm_rule(graph: Graph) -> list[str]:
    problems = []
    watched = {name for s in graph.of_type(SERVICE) for name in (s.inputs.get("alarms") or {}).get("alarmNames", [])}
    for alarm in graph.of_type(ALARM):
        where = f"[{graph.variant.name}] alarm {alarm.inputs.get('name')}"
        treat = alarm.inputs.get("treatMissingData")
        if treat not in TREAT_MISSING:
            problems.append(f"{where}: treat_missing_data {treat!r} is not chosen (one of {sorted(TREAT_MISSING)})")
        if alarm.inputs.get("name") in watched and treat == "breaching":
            problems.append(f"{where}: a deployment alarm that breaches on missing data stops every quiet rollout")
        metric_ids = {q["id"] for q in alarm.inputs.get("metricQueries") or [] if q.get("metric")}
        for query in alarm.inputs.get("metricQueries") or []:
            for divisor in divisors(query.get("expression") or ""):
                for metric_id in metric_ids:
                    if re.search(rf"\b{metric_id}\b", divisor) and not re.search(rf"FILL\(\s*{metric_id}\b", divisor):
                        problems.append(f"{where}: divides by {metric_id} without FILL: no data gives no value")
    return problems


def test_alarms_treat_missing_data_deliberately(graph):
    """Metric math over a metric with no data point yields no value, so `x / requests` with no
    traffic is missing, not 0: a divisor metric must be FILLed. Every alarm names its
    treat_missing_data, and an alarm an ECS deployment watches must not breach on missing data.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html#metric-math-syntax (FILL),
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html#alarms-and-missing-data,
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html"""
    report(alarm_rule(graph))


def alarm_topic_rule(graph: Graph) -> list[str]:
    problems = []
    targets = {arn for a in graph.of_type(ALARM) for arn in (a.inputs.get("alarmActions") or []) + (
        a.inputs.get("okActions") or [])}
    for topic in graph.of_type("aws:sns/topic:Topic"):
        key = topic.inputs.get("kmsMasterKeyId")
        if topic.state.get("arn") in targets and key and re.search(r"alias/aws/sns$", key):
            problems.append(f"[{graph.variant.name}] topic {topic.name}: CloudWatch cannot publish to a topic "
                            "encrypted with the AWS managed key alias/aws/sns")
    return problems


def test_alarm_topics_are_not_under_the_aws_managed_key(graph):
    """CloudWatch publishes to an encrypted topic only with a customer managed key whose policy lets
    cloudwatch.amazonaws.com use it; the AWS managed key's policy cannot be changed, so every
    notification is dropped. https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger,
    https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services"""
    report(alarm_topic_rule(graph))


# --- health -------------------------------------------------------------------------------------

def proxy_liveness_rule(graph: Graph) -> list[str]:
    problems = []
    for service in proxy_services(graph):
        conf = nginx_conf(graph, service)
        check = main_container(graph, service).get("healthCheck")
        paths = {"the container health check": url_path(check["command"]) if check else None,
                 "the target group health check": (target_group(graph, service).inputs.get("healthCheck") or {}).get(
                     "path", "/")}
        for what, path in paths.items():
            why = answered_by_nginx(conf, path) if path else "no URL found in the command"
            if why:
                problems.append(f"[{graph.variant.name}] {service.name}: {what} ({path}): {why}")
    return problems


def test_proxy_liveness_is_answered_by_nginx_itself(graph):
    """ECS replaces a task whose container health check or load balancer health check fails. A
    check the proxy passes on to MLflow turns a server blip into a restart of every proxy (and cuts
    every transfer): both must hit a location Nginx answers itself, with 200, without credentials.
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/healthcheck.html,
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/load-balancer-healthcheck.html"""
    report(proxy_liveness_rule(graph))


# --- capacity -----------------------------------------------------------------------------------

FARGATE_DEFAULT_EPHEMERAL_GIB = 20
FARGATE_SIZES = {256: range(512, 2049, 512), 512: range(1024, 4097, 1024), 1024: range(2048, 8193, 1024),
                 2048: range(4096, 16385, 1024), 4096: range(8192, 30721, 1024), 8192: range(16384, 61441, 4096),
                 16384: range(32768, 122881, 8192)}
"""CPU units -> memory MiB Fargate allows (512 MiB steps at 256 are 512, 1024, 2048).
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size"""


def fargate_size_rule(graph: Graph) -> list[str]:
    problems = []
    for task in graph.of_type(TASK):
        cpu, memory = int(task.inputs["cpu"]), int(task.inputs["memory"])
        allowed = FARGATE_SIZES.get(cpu, range(0))
        if memory not in allowed or (cpu == 256 and memory not in (512, 1024, 2048)):
            problems.append(f"[{graph.variant.name}] {task.name}: {cpu} CPU units with {memory} MiB is no Fargate size")
        storage = (task.inputs.get("ephemeralStorage") or {}).get("sizeInGib")
        if storage is not None and not 21 <= storage <= 200:
            problems.append(f"[{graph.variant.name}] {task.name}: ephemeral storage {storage} GiB outside 21-200")
    return problems


def test_task_sizes_are_fargate_sizes(graph):
    """Fargate runs only its fixed CPU/memory pairs and 21-200 GiB of ephemeral storage.
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size,
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_EphemeralStorage.html"""
    report(fargate_size_rule(graph))


def rebalancing_rule(graph: Graph) -> list[str]:
    return [f"[{graph.variant.name}] {service.name}: zone rebalancing with deploymentMaximumPercent "
            f"{service.inputs.get('deploymentMaximumPercent')}"
            for service in graph.of_type(SERVICE)
            if service.inputs.get("availabilityZoneRebalancing") == "ENABLED"
            and service.inputs.get("deploymentMaximumPercent", 200) <= 100]


def test_zone_rebalancing_has_room_for_an_extra_task(graph):
    """ECS refuses availabilityZoneRebalancing ENABLED unless maximumPercent is above 100 (it moves
    tasks by starting one first).
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-rebalancing.html"""
    report(rebalancing_rule(graph))


def spool_rule(graph: Graph) -> list[str]:
    problems = []
    bodies = [artifact_body_size(nginx_conf(graph, s))
              for s in proxy_services(graph)]
    for service in server_services(graph):
        task = task_of(graph, service)
        disk = (task.inputs.get("ephemeralStorage") or {}).get("sizeInGib", FARGATE_DEFAULT_EPHEMERAL_GIB)
        for body in bodies:
            if nginx_size_bytes(body) > disk * GIB:
                problems.append(f"[{graph.variant.name}] the proxy accepts bodies of {body} (0: any size) but "
                                f"{service.name}'s tasks have {disk} GiB of temporary disk to spool them on")
    return problems


def test_largest_accepted_upload_fits_the_server_tasks_disk(graph):
    """MLflow 3.17.2 spools a proxied upload to a temporary file (and fetches a download whole)
    before it reaches S3: the largest body Nginx accepts must fit the server task's ephemeral
    storage, 20 GiB on Fargate unless `ephemeralStorage` says more.
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-task-storage.html,
    http://nginx.org/en/docs/http/ngx_http_core_module.html#client_max_body_size"""
    report(spool_rule(graph))


# --- direct artifact transfers (issue 26) ---------------------------------------------------------

NETWORK_CONDITION_KEYS = ("aws:sourcevpce", "aws:sourcevpc", "aws:sourceip", "aws:vpcsourceip")
"""Global condition keys that depend on where a request comes from
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html)."""


def multipart_advertised(graph: Graph) -> bool:
    """Clients are told to move artifacts through presigned URLs: Nginx passes MLflow's server-info unchanged
    (MLflow 3.17.2 advertises multipart transfers for an S3 store, mlflow/server/handlers.py _get_server_info)."""
    return any('multipart_uploads_enabled":false' not in nginx_conf(graph, s) for s in proxy_services(graph))


def server_env(graph: Graph, service: Recorded) -> dict[str, str]:
    return {e["name"]: e["value"] for e in main_container(graph, service).get("environment", [])}


def presigned_url_rule(graph: Graph) -> list[str]:
    """URLs the server signs for clients work from anywhere: signed for the bucket region's endpoint (the legacy
    global endpoint answers a bucket outside us-east-1 with a 307 redirect until its name has propagated, and
    with 400 in a region launched after March 20, 2019: "Virtual-hosted-style requests for other Regions",
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html; endpoints:
    https://docs.aws.amazon.com/general/latest/gr/s3.html); virtual-hosted only for a bucket name without a dot
    (the endpoint's wildcard certificate, same page, "Virtual hosting of buckets" over HTTPS); and no
    MLFLOW_S3_EXPECTED_BUCKET_OWNER, which MLflow 3.17.2 signs into each upload part as a header it never tells
    the client to send (s3_artifact_repo.py create_multipart_upload: MultipartUploadCredential headers={})."""
    if not multipart_advertised(graph):
        return []
    region = graph.of_type("pulumi:providers:aws")[0].inputs["region"]
    buckets = [b.state.get("bucket", "") for b in graph.of_type("aws:s3/bucket:Bucket")]
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    problems = []
    for service in server_services(graph):
        env = server_env(graph, service)
        endpoint = env.get("MLFLOW_S3_ENDPOINT_URL")
        if endpoint != f"https://s3.{region}.{suffix}":
            problems.append(f"[{graph.variant.name}] {service.name} signs for {endpoint or 'the global endpoint'}, "
                            f"not https://s3.{region}.{suffix}")
        if env.get("MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE") == "virtual" and any("." in b for b in buckets):
            problems.append(f"[{graph.variant.name}] virtual-hosted URLs for a dotted bucket name fail TLS")
        if "MLFLOW_S3_EXPECTED_BUCKET_OWNER" in env:
            problems.append(f"[{graph.variant.name}] {service.name} signs a header into upload parts clients omit")
    return problems


def test_presigned_urls_are_signed_for_an_endpoint_that_answers_them(graph):
    report(presigned_url_rule(graph))


def _conditions(statement: dict) -> list[str]:
    return [key.lower() for block in (statement.get("Condition") or {}).values() for key in block]


def presigned_bucket_rule(graph: Graph) -> list[str]:
    """Where clients use presigned URLs: the bucket's policy refuses nothing for where a request comes from
    (a Deny on aws:SourceVpce and the like refuses every client outside the VPC, whatever the signature;
    a presigned request is judged like its signer's own: https://docs.aws.amazon.com/AmazonS3/latest/userguide/
    using-presigned-url.html), the server's role may do each presigned operation on the artifacts (UploadPart,
    CreateMultipartUpload and CompleteMultipartUpload are s3:PutObject, AbortMultipartUpload its own, GetObject and
    HeadObject s3:GetObject: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html),
    and the bucket aborts the uploads clients leave incomplete, which S3 keeps and bills until then
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpu-abort-incomplete-mpu-lifecycle-config.html)."""
    if not multipart_advertised(graph):
        return []
    problems = []
    for policy in graph.of_type("aws:s3/bucketPolicy:BucketPolicy"):
        for statement in _statements(policy.inputs["policy"]):
            network = [key for key in _conditions(statement) if key in NETWORK_CONDITION_KEYS]
            if network:
                problems.append(f"[{graph.variant.name}] {policy.name} conditions on {', '.join(network)}: "
                                "clients' presigned requests come from their own networks")
    task_roles = {s.name: task_of(graph, s).inputs.get("taskRoleArn") for s in server_services(graph)}
    for service, role in task_roles.items():
        statements = [st for p in role_policies(graph, role) for st in _statements(p.inputs["policy"])]
        for action in ("s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"):
            if not any(statement.get("Effect") == "Allow" and action in _listed(statement.get("Action", []))
                       and any(str(r).endswith("/*") for r in _listed(statement.get("Resource", [])))
                       for statement in statements):
                problems.append(f"[{graph.variant.name}] {service}'s role may not {action} on the artifacts: the "
                                "URLs it signs for it are refused")
    for lifecycle in graph.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"):
        if not any(rule.get("status") == "Enabled" and rule.get("abortIncompleteMultipartUpload")
                   and not (rule.get("filter") or {}).get("prefix") for rule in lifecycle.inputs["rules"]):
            problems.append(f"[{graph.variant.name}] {lifecycle.name} keeps incomplete multipart uploads")
    if not graph.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"):
        problems.append(f"[{graph.variant.name}] no lifecycle rule aborts incomplete multipart uploads")
    return problems


def test_presigned_requests_pass_the_bucket_and_the_role_and_leftovers_go(graph):
    report(presigned_bucket_rule(graph))


def test_direct_is_among_the_variants_and_advertises_multipart():
    assert multipart_advertised(build(DIRECT)) and not multipart_advertised(build(VARIANTS[0]))


# --- the snapshot before an MLflow upgrade ------------------------------------------------------------

SNAPSHOT = "aws:rds/snapshot:Snapshot"
RDS_SNAPSHOT_DEFAULT_CREATE_SECONDS = 20 * 60
"""https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/db_snapshot#timeouts"""


def snapshot_rule(graph: Graph) -> list[str]:
    problems = []
    for snapshot in graph.of_type(SNAPSHOT):
        where = f"[{graph.variant.name}] snapshot {snapshot.name}"
        allowed = graph.timeout_seconds(snapshot, "create", RDS_SNAPSHOT_DEFAULT_CREATE_SECONDS)
        if allowed <= RDS_SNAPSHOT_DEFAULT_CREATE_SECONDS:
            problems.append(f"{where}: create timeout {allowed}s, no more than the provider's default 20 minutes")
        instance = snapshot.inputs["dbInstanceIdentifier"]
        waits = [command for command in graph.of_type("command:local:Command")
                 if graph.waits_for(snapshot, command)
                 and instance in (command.inputs.get("environment") or {}).values()
                 and "describe-db-instances" in command.inputs.get("create", "")
                 and "available" in command.inputs.get("create", "")]
        if not waits:
            problems.append(f"{where}: CreateDBSnapshot may be called while {instance} is not available "
                            "(backing-up, modifying): nothing before it waits for the instance")
    return problems


def test_upgrade_snapshots_wait_for_an_available_instance_and_for_their_own_duration(graph):
    """Review 24 (aws 3, F3): the snapshot an MLflow upgrade waits for failed the `up` whenever the instance
    was busy (an automated backup, a modification). RDS takes a snapshot only of an instance `available` (or
    `storage-optimization`) and answers InvalidDBInstanceState otherwise
    (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSnapshot.html); the provider's
    aws_db_snapshot calls CreateDBSnapshot once, without retrying (terraform-provider-aws
    internal/service/rds/snapshot.go; only its cluster snapshot retries, hashicorp/terraform-provider-aws#14527),
    and waits for the snapshot 20 minutes unless told
    (https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/db_snapshot#timeouts).
    Each snapshot waits for a command that polls that instance's status, and may take longer than 20 minutes."""
    report(snapshot_rule(graph))


# --- a scheduled job that fails is seen -------------------------------------------------------------------

SCHEDULE = "aws:scheduler/schedule:Schedule"
QUEUE = "aws:sqs/queue:Queue"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"


def stopped_task_event(cluster_arn: str, task_definition_arn: str, exit_code: Optional[int], stop_code: str,
                       reason: str) -> dict:
    """An `ECS Task State Change` event of a Fargate task started by a schedule, as ECS sends it when the
    task has stopped: shaped after the example in
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_task_events.html (a container that
    never ran has no exitCode)."""
    region, account = cluster_arn.split(":")[3:5]
    family = task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]
    task_arn = f"arn:aws:ecs:{region}:{account}:task/{cluster_arn.rsplit('/', 1)[-1]}/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    container = {"containerArn": f"arn:aws:ecs:{region}:{account}:container/0f1e2d3c/4b5a6978-8796-a5b4c3d2e1f0",
                 "lastStatus": "STOPPED", "name": "mlflow-gc", "taskArn": task_arn, "cpu": "0",
                 "networkInterfaces": [{"attachmentId": "a1b2c3d4", "privateIpv4Address": "10.0.2.17"}]}
    if exit_code is not None:
        container["exitCode"] = exit_code
    return {
        "version": "0", "id": "9bcdac79-b31f-4d3d-9410-fbd727c29fab", "detail-type": "ECS Task State Change",
        "source": "aws.ecs", "account": account, "time": "2026-11-26T03:15:42Z", "region": region,
        "resources": [task_arn],
        "detail": {
            "attachments": [{"id": "a1b2c3d4", "type": "eni", "status": "DELETED"}],
            "availabilityZone": f"{region}a", "clusterArn": cluster_arn, "connectivity": "CONNECTED",
            "containers": [container], "cpu": "1024", "memory": "2048", "createdAt": "2026-11-26T03:15:02.81Z",
            "desiredStatus": "STOPPED", "group": f"family:{family}", "launchType": "FARGATE",
            "lastStatus": "STOPPED", "overrides": {"containerOverrides": [{"name": "mlflow-gc"}]},
            "platformVersion": "1.4.0", "startedBy": "chronos-schedule/mlflow-gc", "stopCode": stop_code,
            "stoppedReason": reason, "stoppingAt": "2026-11-26T03:15:40.1Z", "taskArn": task_arn,
            "taskDefinitionArn": task_definition_arn, "updatedAt": "2026-11-26T03:15:42.2Z", "version": 5,
        },
    }


def _statements(policy: object) -> list[dict]:
    document = json.loads(policy) if isinstance(policy, str) else policy
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _listed(value: object) -> list:
    return value if isinstance(value, list) else [value]


def _allows(statement: dict, action: str, resource: str) -> bool:
    actions = _listed(statement.get("Action", []))
    return (statement.get("Effect") == "Allow" and any(a in (action, "sqs:*", "*") for a in actions)
            and any(r in (resource, "*") for r in _listed(statement.get("Resource", []))))


def failed_job_rule(graph: Graph) -> list[str]:
    """For each schedule: a RunTask it cannot make goes to a dead-letter queue its role may send to, and a
    task of it that stops with an exit code other than 0, or never starts, matches a rule whose target is a
    queue EventBridge may send to from that rule; each such queue is encrypted and alarmed at one message
    (the alarm notifies someone), and a run that succeeds reaches none of them."""
    problems = []
    queues = {queue.state["arn"]: queue for queue in graph.of_type(QUEUE)}
    alarms = {}
    for alarm in graph.of_type(ALARM):
        inputs = alarm.inputs
        operator, threshold = inputs.get("comparisonOperator"), inputs.get("threshold", 2)
        fires_at_one = ((operator == "GreaterThanOrEqualToThreshold" and threshold <= 1)
                        or (operator == "GreaterThanThreshold" and threshold < 1))
        if (inputs.get("namespace"), inputs.get("metricName")) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible") \
                and fires_at_one and inputs.get("alarmActions"):
            alarms[(inputs.get("dimensions") or {}).get("QueueName")] = alarm

    def unseen(queue_arn: str) -> Optional[str]:
        """Why a message in this queue would reach no one (None: it would)."""
        queue = queues.get(queue_arn)
        if queue is None:
            return f"{queue_arn} is no queue of the stack"
        if not (queue.inputs.get("sqsManagedSseEnabled") or queue.inputs.get("kmsMasterKeyId")):
            return f"queue {queue.inputs.get('name')} is not encrypted"
        if queue.state.get("name") not in alarms:
            return f"no alarm notifies anyone while queue {queue.inputs.get('name')} holds a message"
        return None

    def events_may_send(queue_arn: str, rule: Recorded) -> bool:
        queue = queues[queue_arn]
        for policy in graph.of_type("aws:sqs/queuePolicy:QueuePolicy"):
            if policy.inputs.get("queueUrl") != queue.state.get("url"):
                continue
            for statement in _statements(policy.inputs["policy"]):
                principal = statement.get("Principal") or {}
                condition = (statement.get("Condition") or {}).get("ArnEquals", {}).get("aws:SourceArn")
                if _allows(statement, "sqs:SendMessage", queue_arn) \
                        and "events.amazonaws.com" in _listed(principal.get("Service", [])) \
                        and rule.state["arn"] in _listed(condition):
                    return True
        return False

    for schedule in graph.of_type(SCHEDULE):
        where = f"[{graph.variant.name}] schedule {schedule.inputs.get('name')}"
        target = schedule.inputs["target"]
        dead_letter = (target.get("deadLetterConfig") or {}).get("arn")
        if not dead_letter:
            problems.append(f"{where}: no dead-letter queue: a RunTask the scheduler cannot make leaves no trace")
        else:
            why = unseen(dead_letter)
            if why:
                problems.append(f"{where}: its dead-letter queue: {why}")
            allowed = [statement for policy in role_policies(graph, target["roleArn"])
                       for statement in _statements(policy.inputs["policy"])
                       if _allows(statement, "sqs:SendMessage", dead_letter)]
            if not allowed:
                problems.append(f"{where}: its role may not send to its dead-letter queue (the scheduler sends "
                                "with the schedule's role)")
        cluster, task_definition = target["arn"], target["ecsParameters"]["taskDefinitionArn"]
        failed = {"a task that exited 1": stopped_task_event(
                      cluster, task_definition, 1, "EssentialContainerExited", "Essential container in task exited"),
                  "a task that never started": stopped_task_event(
                      cluster, task_definition, None, "TaskFailedToStart",
                      "CannotPullContainerError: pull image manifest has been retried 7 time(s)")}
        succeeded = stopped_task_event(cluster, task_definition, 0, "EssentialContainerExited",
                                       "Essential container in task exited")
        for rule in graph.of_type(EVENT_RULE):
            pattern = json.loads(rule.inputs.get("eventPattern") or "{}")
            targets = [t.inputs["arn"] for t in graph.of_type(EVENT_TARGET)
                       if t.inputs.get("rule") in (rule.inputs.get("name"), rule.state.get("id"))]
            if event_matches(pattern, succeeded) and any(arn in queues and not unseen(arn) for arn in targets):
                problems.append(f"{where}: rule {rule.inputs.get('name')} alarms on a run that succeeded (exit 0)")
        for what, event in failed.items():
            seen = [rule for rule in graph.of_type(EVENT_RULE)
                    if event_matches(json.loads(rule.inputs.get("eventPattern") or "{}"), event)
                    and any(arn in queues and not unseen(arn) and events_may_send(arn, rule)
                            for arn in [t.inputs["arn"] for t in graph.of_type(EVENT_TARGET)
                                        if t.inputs.get("rule") in (rule.inputs.get("name"), rule.state.get("id"))])]
            if not seen:
                problems.append(f"{where}: {what} is seen by no one (no rule matching it delivers to an alarmed "
                                "queue that lets EventBridge send for that rule)")
    return problems


def test_a_scheduled_job_that_fails_is_seen(graph):
    """Review 24 (aws 3, F4): gc runs as an ECS task a schedule starts; nobody waits on it, so a run the
    scheduler could not start, or one that stopped with an exit code other than 0, went unseen. The
    scheduler sends what it could not deliver to a dead-letter queue with the schedule's role
    (https://docs.aws.amazon.com/scheduler/latest/UserGuide/configuring-schedule-dlq.html); ECS sends a task
    state change event when the task stops (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_task_events.html),
    which an EventBridge rule delivers to an SQS queue whose policy allows events.amazonaws.com for that rule
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sqs-permissions);
    an alarm on the queue's visible messages notifies the stack's topic
    (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html)."""
    report(failed_job_rule(graph))


def test_the_failed_task_pattern_as_eventbridge_reads_it(graph):
    """The rule's own pattern against sample events (the matcher: tests/harness/cloud_rules.event_matches):
    a failed gc and one that never started match; one that succeeded, one still running, and a failed task
    of another family (the server's) do not."""
    for schedule in graph.of_type(SCHEDULE):
        target = schedule.inputs["target"]
        cluster, task_definition = target["arn"], target["ecsParameters"]["taskDefinitionArn"]
        [rule] = [r for r in graph.of_type(EVENT_RULE) if task_definition.rsplit(":", 1)[0] in r.inputs["eventPattern"]]
        pattern = json.loads(rule.inputs["eventPattern"])
        later_revision = task_definition.rsplit(":", 1)[0] + ":7"
        assert event_matches(pattern, stopped_task_event(cluster, later_revision, 137, "UserInitiated", "Task stopped"))
        assert event_matches(pattern, stopped_task_event(cluster, task_definition, 75, "EssentialContainerExited",
                                                         "Essential container in task exited"))
        assert event_matches(pattern, stopped_task_event(
            cluster, task_definition, None, "TaskFailedToStart", "ResourceInitializationError: unable to pull secrets"))
        assert not event_matches(pattern, stopped_task_event(cluster, task_definition, 0, "EssentialContainerExited",
                                                             "Essential container in task exited"))
        running = stopped_task_event(cluster, task_definition, None, "EssentialContainerExited", "")
        running["detail"].update(lastStatus="RUNNING", desiredStatus="RUNNING")
        del running["detail"]["stopCode"]
        assert not event_matches(pattern, running)
        server = next(t for t in graph.of_type(TASK) if t.state["arn"] != task_definition).state["arn"]
        assert not event_matches(pattern, stopped_task_event(cluster, server, 1, "EssentialContainerExited", "x"))
        elsewhere = stopped_task_event(cluster + "-another", task_definition, 1, "EssentialContainerExited",
                                       "Essential container in task exited")
        assert not event_matches(pattern, elsewhere)


def test_the_matcher_reads_arrays_of_objects_as_eventbridge_does():
    """A field of the objects in an array matches if one element's does, and two fields match only within
    one element (aws/event-ruler README, "JSON Array Matching"); `anything-but` and exact values need the
    field to be there (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html)."""
    employees = {"employees": [{"firstName": "John", "lastName": "Doe"}, {"firstName": "Anna", "lastName": "Smith"}]}
    assert event_matches({"employees": {"firstName": ["Anna"]}}, employees)
    assert not event_matches({"employees": {"firstName": ["Anna"], "lastName": ["Doe"]}}, employees)
    pattern = {"detail": {"containers": {"exitCode": [{"anything-but": 0}]}}}
    assert event_matches(pattern, {"detail": {"containers": [{"exitCode": 0}, {"exitCode": 2}]}})
    assert not event_matches(pattern, {"detail": {"containers": [{"exitCode": 0}, {"name": "no exit code"}]}})
    assert not event_matches(pattern, {"detail": {"containers": []}})
    assert event_matches({"detail": {"$or": [{"a": [1]}, {"b": [{"prefix": "x"}]}]}}, {"detail": {"b": "xy"}})
    assert not event_matches({"detail": {"$or": [{"a": [1]}, {"b": [{"prefix": "x"}]}]}}, {"detail": {"b": "yx"}})


# --- each rule can fail ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_graph() -> Graph:
    return build(VARIANTS[0])


def mutated(graph: Graph, type_: str, name: str, change: Callable[[dict], None]) -> Graph:
    """The graph with one resource's inputs changed (state kept)."""
    resources = replaced(graph.resources, type_, name, change)
    return dataclasses.replace(graph, run=ProgramRun(resources, graph.run.stack_outputs, graph.run.generated_secrets))


def edit_containers(change: Callable[[list[dict]], None]) -> Callable[[dict], None]:
    def edit(inputs: dict) -> None:
        definitions = json.loads(inputs["containerDefinitions"])
        change(definitions)
        inputs["containerDefinitions"] = json.dumps(definitions)
    return edit


def set_env(definitions: list[dict], marker: str, text: str) -> None:
    for definition in definitions:
        for item in definition.get("environment", []):
            if marker in item.get("value", ""):
                item["value"] = item["value"].replace(marker, text)


def without_dependency(graph: Graph, type_: str, name: str) -> Graph:
    target = next(r for r in graph.of_type(type_) if r.name == name)
    stripped = dataclasses.replace(target, dependencies=[])
    return dataclasses.replace(graph, run=ProgramRun([stripped if r.urn == target.urn else r for r in graph.resources],
                                                     graph.run.stack_outputs, graph.run.generated_secrets))


MUTATIONS = {
    "auto names": (auto_names_rule, lambda g: dataclasses.replace(g, run=ProgramRun(
        [dataclasses.replace(r, name=r.name + "-x" * 30) if r.name == "mlflow-server-task-role" else r
         for r in g.resources], g.run.stack_outputs, g.run.generated_secrets))),
    "zones": (zones_rule, lambda g: mutated(g, "aws:ec2/subnet:Subnet", g.of_type("aws:ec2/subnet:Subnet")[0].name,
                                            lambda i: i.update(availabilityZone="eu-west-1z"))),
    "listener replacement": (listener_replacement_rule, lambda g: dataclasses.replace(g, run=ProgramRun(
        [dataclasses.replace(r, delete_before_replace=False) for r in g.resources],
        g.run.stack_outputs, g.run.generated_secrets))),
    "inbound rules": (inbound_rules_rule, lambda g: dataclasses.replace(g, run=ProgramRun(
        g.resources + [dataclasses.replace(rule, urn=f"{rule.urn}-{index}") for index in range(61)
                       for rule in g.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")[:1]],
        g.run.stack_outputs, g.run.generated_secrets))),
    "names": (names_rule, lambda g: mutated(g, "aws:ecr/repository:Repository", "mlflow-server-image-repository",
                                            lambda i: i.update(name="mlflow-Prod/mlflow-server"))),
    "services after policies": (services_after_policies_rule,
                                lambda g: without_dependency(g, SERVICE, "mlflow-server")),
    "secret values": (secret_values_rule, lambda g: without_dependency(g, SERVICE, "mlflow-server")),
    "rollout timeout": (rollout_timeout_rule, lambda g: mutated(g, "aws:lb/targetGroup:TargetGroup",
                                                                "mlflow-platform-proxy-targets",
                                                                lambda i: i.update(deregistrationDelay=3600))),
    "idle timeout": (load_balancer_idle_rule, lambda g: mutated(g, "aws:lb/loadBalancer:LoadBalancer",
                                                                "mlflow-platform-load-balancer",
                                                                lambda i: i.update(idleTimeout=4001))),
    "service connect": (service_connect_rule, lambda g: mutated(g, SERVICE, "mlflow-server", lambda i: i[
        "serviceConnectConfiguration"]["services"][0].update(timeout={}))),
    "alarms": (alarm_rule, lambda g: mutated(g, ALARM, "mlflow-platform-alarm-unhealthy",
                                             lambda i: i.pop("treatMissingData"))),
    "alarm topic": (alarm_topic_rule, lambda g: mutated(g, "aws:sns/topic:Topic", "mlflow-platform-alarms",
                                                        lambda i: i.update(kmsMasterKeyId="alias/aws/sns"))),
    "proxy liveness": (proxy_liveness_rule, lambda g: mutated(g, "aws:lb/targetGroup:TargetGroup",
                                                              "mlflow-platform-proxy-targets",
                                                              lambda i: i["healthCheck"].update(path="/api/2.0/x"))),
    "fargate sizes": (fargate_size_rule, lambda g: mutated(g, TASK, "mlflow-server",
                                                           lambda i: i.update(cpu="3072"))),
    "rebalancing": (rebalancing_rule, lambda g: mutated(g, SERVICE, "mlflow-server",
                                                        lambda i: i.update(availabilityZoneRebalancing="ENABLED",
                                                                           deploymentMaximumPercent=100))),
    "spool": (spool_rule, lambda g: mutated(g, TASK, "mlflow-proxy", edit_containers(
        lambda d: set_env(d, "client_max_body_size ", "client_max_body_size 0; #")))),
    "snapshot waits for the instance": (snapshot_rule, lambda g: without_dependency(
        g, SNAPSHOT, g.of_type(SNAPSHOT)[0].name)),
    "snapshot timeout": (snapshot_rule, lambda g: dataclasses.replace(g, timeouts={
        urn: timeouts for urn, timeouts in g.timeouts.items() if urn != g.of_type(SNAPSHOT)[0].urn})),
}


@pytest.fixture(scope="module")
def direct_graph() -> Graph:
    return build(DIRECT)


def _server_env(change: Callable[[dict], None]) -> Callable[[dict], None]:
    def edit(definitions: list[dict]) -> None:
        for definition in definitions:
            if definition["name"] == "mlflow-server":
                env = {e["name"]: e["value"] for e in definition["environment"]}
                change(env)
                definition["environment"] = [{"name": k, "value": v} for k, v in env.items()]
    return edit_containers(edit)


def _policy(change: Callable[[dict], None]) -> Callable[[dict], None]:
    def edit(inputs: dict) -> None:
        document = json.loads(inputs["policy"])
        change(document)
        inputs["policy"] = json.dumps(document)
    return edit


DIRECT_MUTATIONS = {
    "global endpoint": (presigned_url_rule, lambda g: mutated(g, TASK, "mlflow-server", _server_env(
        lambda env: env.pop("MLFLOW_S3_ENDPOINT_URL")))),
    "another region's endpoint": (presigned_url_rule, lambda g: mutated(g, TASK, "mlflow-server", _server_env(
        lambda env: env.update(MLFLOW_S3_ENDPOINT_URL="https://s3.eu-west-1.amazonaws.com")))),
    "expected bucket owner": (presigned_url_rule, lambda g: mutated(g, TASK, "mlflow-server", _server_env(
        lambda env: env.update(MLFLOW_S3_EXPECTED_BUCKET_OWNER="123456789012")))),
    "a VPC-endpoint condition": (presigned_bucket_rule, lambda g: mutated(
        g, "aws:s3/bucketPolicy:BucketPolicy", "mlflow-artifacts-tls-only", _policy(
            lambda d: d["Statement"].append({"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                                             "Resource": "*",
                                             "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1"}}})))),
    "no abort for the role": (presigned_bucket_rule, lambda g: mutated(
        g, "aws:iam/rolePolicy:RolePolicy", "mlflow-server-access-0", _policy(
            lambda d: d["Statement"][1]["Action"].remove("s3:AbortMultipartUpload")))),
    "incomplete uploads kept": (presigned_bucket_rule, lambda g: mutated(
        g, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "mlflow-artifacts-lifecycle",
        lambda i: i.update(rules=[r for r in i["rules"] if "abortIncompleteMultipartUpload" not in r]))),
}


@pytest.mark.parametrize("rule", sorted(DIRECT_MUTATIONS))
def test_each_direct_transfer_rule_reports_a_broken_resource(direct_graph, rule):
    check, breaking = DIRECT_MUTATIONS[rule]
    assert not check(direct_graph)
    assert check(breaking(direct_graph)), f"the {rule} rule did not notice"


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_each_rule_reports_a_broken_resource(default_graph, rule):
    """Each rule finds a resource broken the way the cloud refuses (so no rule passes vacuously)."""
    check, breaking = MUTATIONS[rule]
    assert check(breaking(default_graph)), f"the {rule} rule did not notice"


@pytest.fixture(scope="module")
def gc_graph() -> Graph:
    return build(VARIANTS[1])


def _edit_pattern(change: Callable[[dict], None]) -> Callable[[dict], None]:
    def edit(inputs: dict) -> None:
        pattern = json.loads(inputs["eventPattern"])
        change(pattern)
        inputs["eventPattern"] = json.dumps(pattern)
    return edit


def _without_statement(sid: str) -> Callable[[dict], None]:
    def edit(inputs: dict) -> None:
        document = json.loads(inputs["policy"])
        document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != sid]
        inputs["policy"] = json.dumps(document)
    return edit


def _only_role_policy(g: Graph) -> str:
    return next(p.name for p in g.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.endswith("-scheduler"))


FAILED_JOB_MUTATIONS = {
    "no dead-letter queue": lambda g: mutated(g, SCHEDULE, g.of_type(SCHEDULE)[0].name,
                                              lambda i: i["target"].pop("deadLetterConfig")),
    "unencrypted queue": lambda g: mutated(g, QUEUE, g.of_type(QUEUE)[0].name,
                                           lambda i: i.pop("sqsManagedSseEnabled")),
    "no alarm on the queue": lambda g: mutated(g, ALARM, next(a.name for a in g.of_type(ALARM)
                                                              if a.name.endswith("-alarm-failed")),
                                               lambda i: i.update(alarmActions=[])),
    "the role may not dead-letter": lambda g: mutated(g, "aws:iam/rolePolicy:RolePolicy", _only_role_policy(g),
                                                      _without_statement("DeadLetter")),
    "EventBridge may not send": lambda g: mutated(g, "aws:sqs/queuePolicy:QueuePolicy",
                                                  g.of_type("aws:sqs/queuePolicy:QueuePolicy")[0].name,
                                                  _without_statement("FailedTaskEvents")),
    "a success alarms": lambda g: mutated(g, EVENT_RULE, g.of_type(EVENT_RULE)[0].name, _edit_pattern(
        lambda p: p["detail"]["$or"][0]["containers"].update(exitCode=[{"anything-but": 1}]))),
    "a failed start goes unseen": lambda g: mutated(g, EVENT_RULE, g.of_type(EVENT_RULE)[0].name, _edit_pattern(
        lambda p: p["detail"]["$or"].pop(1))),
    "no target": lambda g: dataclasses.replace(g, run=ProgramRun(
        [r for r in g.resources if r.type != EVENT_TARGET], g.run.stack_outputs, g.run.generated_secrets)),
}


@pytest.mark.parametrize("mutation", sorted(FAILED_JOB_MUTATIONS))
def test_the_failed_job_rule_reports_each_broken_link(gc_graph, mutation):
    """The graph with scheduled gc keeps the rule; each link broken alone breaks it."""
    assert not failed_job_rule(gc_graph)
    assert failed_job_rule(FAILED_JOB_MUTATIONS[mutation](gc_graph)), f"the rule did not notice: {mutation}"
