"""The policy pack (policy/policies.py) over the program's own graphs, without the Pulumi CLI.

Two halves, each necessary: every policy passes every resource of the local, aws and azure graphs
(also with auth.mode mlflow and oidc, and with ECS Exec on), so the pack can guard CI without
blocking the program; and for every policy a recorded resource with one property flipped is
rejected, with a message naming that resource, so a pass means something. Besides: the ways around
the policies an attacker would try (tests/policy/cases.py, resources the program does not make) are
rejected, near misses a team legitimately writes pass, and the policies' configuration
(`--policy-pack-config`) widens only what it says.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

import jsonschema
import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from policy import policies as pack
from tests.harness.program import Recorded
from tests.policy.cases import (
    ADMINISTRATORS_GROUP,
    CASES,
    NATIVE_BUCKET_GUARDS,
    NATIVE_BUCKET_NAME,
    PERMISSION_SET,
    REJECTED,
    REJECTED_ROUND_2,
    REJECTED_ROUND_3,
    REJECTED_ROUND_4,
    REJECTED_ROUND_5,
    ROLES,
    SUBSCRIPTION,
    TEMPLATES,
    Case,
    added,
    companions,
    native_bucket,
)
from tests.policy.graphs import Violation, check, graph, one, policy_named, replaced, without

POLICY_NAMES = [policy.name for policy in pack.POLICIES]

VARIANTS = {  # id -> (stack, auth mode, ECS Exec on[, mlflow gc scheduled])
    "local": ("local", "proxy", False), "aws": ("aws", "proxy", False), "azure": ("azure", "proxy", False),
    "local-mlflow": ("local", "mlflow", False), "aws-mlflow": ("aws", "mlflow", False),
    "azure-mlflow": ("azure", "mlflow", False), "local-oidc": ("local", "oidc", False),
    "aws-oidc": ("aws", "oidc", False), "azure-oidc": ("azure", "oidc", False),
    "aws-exec": ("aws", "proxy", True),
    "aws-gc": ("aws", "proxy", False, True), "azure-gc": ("azure", "proxy", False, True),
}


def resources_of(variant: str) -> list[Recorded]:
    return graph(*VARIANTS[variant]).resources


def real_graph_cases() -> list:
    cases = []
    for variant in VARIANTS:
        for name in POLICY_NAMES:
            cases.append(pytest.param(variant, name, id=f"{variant}-{name}"))
    return cases


# --- the pack --------------------------------------------------------------------------------------

def test_every_policy_is_mandatory_named_once_and_explained():
    """The CLI blocks a preview only on mandatory violations; a reviewer reads the description."""
    assert len(set(POLICY_NAMES)) == len(POLICY_NAMES) == 10
    for policy in pack.POLICIES:
        assert policy.enforcement_level is EnforcementLevel.MANDATORY, policy.name
        assert len(policy.description) > 60, policy.name


# --- the program keeps its promises ------------------------------------------------------------------

@pytest.mark.parametrize("variant,policy_name", real_graph_cases())
def test_the_programs_graph_passes(variant: str, policy_name: str):
    """Each policy over the whole graph of a stack (inputs, as resource validations and a preview see them)."""
    violations = check(resources_of(variant), [policy_named(policy_name)])
    assert violations == [], "\n".join(v.message for v in violations)


@pytest.mark.parametrize("stack", ["local", "aws", "azure"])
def test_stack_policies_pass_on_provider_outputs_too(stack: str):
    """AnalyzeStack gets outputs, not inputs; the stack policies must hold on those as well."""
    stack_policies = [policy for policy in pack.POLICIES if isinstance(policy, StackValidationPolicy)]
    assert {policy.name for policy in stack_policies} == {"s3-buckets-guarded", "stateful-resources-protected"}
    assert check(resources_of(stack), stack_policies, use_state=True) == []


@pytest.mark.parametrize("stack", ["local", "aws", "azure"])
def test_stack_policies_pass_on_a_graph_handed_over_without_dependencies(stack: str):
    """A host that leaves dependencies out (not the engine) still links each bucket to its guards."""
    stack_policies = [policy_named("s3-buckets-guarded"), policy_named("stateful-resources-protected")]
    assert check(resources_of(stack), stack_policies, with_dependencies=False) == []
    if stack == "aws":
        unguarded = without(resources_of("aws"), pack.S3_PUBLIC_ACCESS_BLOCK)
        assert [v.policy for v in check(unguarded, stack_policies, with_dependencies=False)] == ["s3-buckets-guarded"]


def test_the_aws_graph_exercises_the_exceptions():
    """Zero violations mean something only if the graph holds the cases the policies let through:
    an IAM statement on Resource "*" (ECR login, ECS Exec) and an internet ingress to a non-database port."""
    star_actions = set()
    for resource in resources_of("aws-exec"):
        if resource.type == "aws:iam/rolePolicy:RolePolicy":
            for statement in json.loads(resource.inputs["policy"])["Statement"]:
                if statement.get("Resource") == "*":
                    star_actions.update(statement["Action"])
    assert {"ecr:GetAuthorizationToken", "ssmmessages:OpenDataChannel"} <= star_actions
    assert any(r.inputs.get("cidrIpv4") == "0.0.0.0/0" and r.inputs.get("fromPort") == 80
               for r in resources_of("aws") if r.type == pack.SECURITY_GROUP_INGRESS_RULE)


def test_the_local_data_volumes_are_recognized_by_their_mounts():
    """The pgdata and miniodata volumes count as data (kept by their label); the socket volume does not."""
    resources = resources_of("local")
    for volume in ("mlflow-metadata-data", "mlflow-artifacts-minio-data"):
        unlabeled = replaced(resources, pack.DOCKER_VOLUME, volume, lambda inputs: inputs.pop("labels"))
        assert [v.policy for v in check(unlabeled, [policy_named("stateful-resources-protected")])] == [
            "stateful-resources-protected"], volume
        protected = replaced(resources, pack.DOCKER_VOLUME, volume, lambda inputs: inputs.pop("labels"), protect=True)
        assert check(protected, [policy_named("stateful-resources-protected")]) == []
    socket = replaced(resources, pack.DOCKER_VOLUME, "mlflow-metadata-socket",
                      lambda inputs: inputs.pop("labels", None))
    assert check(socket, [policy_named("stateful-resources-protected")]) == []


# --- and each policy rejects a broken copy -------------------------------------------------------------

Mutation = Callable[[list[Recorded]], list[Recorded]]


def edit(type_: str, name: str, change: Callable[[dict], object] = lambda _: None, protect: bool | None = None
         ) -> Mutation:
    return lambda resources: replaced(resources, type_, name, change, protect)


def set_path(*path_and_value: object) -> Callable[[dict], None]:
    *path, value = path_and_value

    def change(inputs: dict) -> None:
        target = inputs
        for step in path[:-1]:
            target = target.setdefault(step, {}) if isinstance(step, str) else target[step]
        target[path[-1]] = value
    return change


def drop(key: str) -> Callable[[dict], None]:
    return lambda inputs: inputs.pop(key)


def edit_json(key: str, change: Callable[[Any], None]) -> Callable[[dict], None]:
    """Change a JSON document held as text (IAM policies, ECS container definitions)."""
    def apply(inputs: dict) -> None:
        parsed = json.loads(inputs[key])
        change(parsed)
        inputs[key] = json.dumps(parsed)
    return apply


def add_statement(statement: dict) -> Callable[[dict], None]:
    return edit_json("policy", lambda doc: doc["Statement"].append(statement))


def tls_statement_change(change: Callable[[dict], Any]) -> Callable[[dict], None]:
    return edit_json("policy", lambda doc: change(doc["Statement"][0]))


def ecs_env(container: str, name: str, value: str) -> Callable[[dict], None]:
    def change(definitions: list[dict]) -> None:
        target = next(d for d in definitions if d["name"] == container)
        target["environment"].append({"name": name, "value": value})
    return edit_json("containerDefinitions", change)


def container_app_value_instead_of_secret_ref(variable: str) -> Callable[[dict], None]:
    def change(inputs: dict) -> None:
        for entry in inputs["template"]["containers"][0]["env"]:
            if entry["name"] == variable:
                entry.pop("secretRef")
                entry["value"] = "postgresql+psycopg2://mlflow:s3cret@db.example.com:5432/mlflow"
    return change


def add_resource(type_: str, name: str, template_type: str, template_name: str, inputs: dict) -> Mutation:
    """A resource of a kind the program does not make, built from a recorded one (its parent and options)."""
    def mutate(resources: list[Recorded]) -> list[Recorded]:
        template = one(resources, template_type, template_name)
        urn = template.urn.rsplit("::", 2)[0] + f"::{type_}::{name}"
        return [*resources, dataclasses.replace(template, type=type_, name=name, urn=urn, raw_inputs=inputs)]
    return mutate


RDS, SG_IN, BUCKET = pack.RDS_INSTANCE, pack.SECURITY_GROUP_INGRESS_RULE, "aws:s3/bucket:Bucket"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
ROLE_POLICY, LOG_GROUP, TASK = "aws:iam/rolePolicy:RolePolicy", pack.LOG_GROUP, pack.ECS_TASK_DEFINITION
SERVER, ACCOUNT, CONTAINER = pack.FLEXIBLE_SERVER, pack.STORAGE_ACCOUNT, pack.BLOB_CONTAINER
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
OPEN_DB_RULE = {"fromPort": 5432, "toPort": 5432, "ipProtocol": "tcp", "cidrIpv4": "0.0.0.0/0",
                "securityGroupId": "mlflow-platform-database-sg-id"}

MUTATIONS: list[tuple[str, str, str, Mutation, str]] = [  # id, stack, policy, mutation, resource named
    ("rds-public", "aws", "database-not-public", edit(RDS, "mlflow-metadata", set_path("publiclyAccessible", True)),
     "mlflow-metadata"),
    ("flexible-server-public", "azure", "database-not-public",
     edit(SERVER, "mlflow-metadata", set_path("network", "publicNetworkAccess", "Enabled")), "mlflow-metadata"),
    ("flexible-server-no-network", "azure", "database-not-public", edit(SERVER, "mlflow-metadata", drop("network")),
     "mlflow-metadata"),
    ("ingress-rule-any-ipv4", "aws", "database-port-closed-to-internet",
     edit(SG_IN, "mlflow-platform-database-in-server",
          lambda i: (i.pop("referencedSecurityGroupId"), i.update(cidrIpv4="0.0.0.0/0"))),
     "mlflow-platform-database-in-server"),
    ("ingress-rule-any-ipv6", "aws", "database-port-closed-to-internet",
     edit(SG_IN, "mlflow-platform-database-in-server",
          lambda i: (i.pop("referencedSecurityGroupId"), i.update(cidrIpv6="::/0"))),
     "mlflow-platform-database-in-server"),
    ("ingress-rule-public-range", "aws", "database-port-closed-to-internet",
     edit(SG_IN, "mlflow-platform-database-in-server",
          lambda i: (i.pop("referencedSecurityGroupId"), i.update(cidrIpv4="203.0.113.0/24"))),
     "mlflow-platform-database-in-server"),
    ("ingress-rule-all-protocols-half-the-internet", "aws", "database-port-closed-to-internet",
     edit(SG_IN, "mlflow-platform-lb-in-80-0", lambda i: i.update(ipProtocol="-1", cidrIpv4="128.0.0.0/1")),
     "mlflow-platform-lb-in-80-0"),
    ("ingress-rule-all-ports", "aws", "database-port-closed-to-internet",
     edit(SG_IN, "mlflow-platform-lb-in-80-0", lambda i: i.update(ipProtocol="-1", fromPort=0, toPort=0)),
     "mlflow-platform-lb-in-80-0"),
    ("security-group-inline-ingress", "aws", "database-port-closed-to-internet",
     edit(pack.SECURITY_GROUP, "mlflow-platform-database-sg",
          set_path("ingress", [{"protocol": "tcp", "fromPort": 5400, "toPort": 5500, "cidrBlocks": ["0.0.0.0/0"]}])),
     "mlflow-platform-database-sg"),
    ("security-group-rule", "aws", "database-port-closed-to-internet",
     add_resource(pack.SECURITY_GROUP_RULE, "mlflow-db-from-anywhere", SG_IN, "mlflow-platform-database-in-server",
                  {"type": "ingress", "protocol": "tcp", "fromPort": 5432, "toPort": 5432,
                   "ipv6CidrBlocks": ["::/0"], "securityGroupId": "mlflow-platform-database-sg-id"}),
     "mlflow-db-from-anywhere"),
    ("rds-unencrypted", "aws", "storage-encrypted", edit(RDS, "mlflow-metadata", set_path("storageEncrypted", False)),
     "mlflow-metadata"),
    ("s3-no-default-algorithm", "aws", "storage-encrypted",
     edit(SSE, "mlflow-artifacts-encryption", set_path("rules", [{"bucketKeyEnabled": True}])),
     "mlflow-artifacts-encryption"),
    ("flexible-server-key-vault-without-key", "azure", "storage-encrypted",
     edit(SERVER, "mlflow-metadata", set_path("dataEncryption", {"type": "AzureKeyVault"})), "mlflow-metadata"),
    ("storage-account-blob-encryption-off", "azure", "storage-encrypted",
     edit(ACCOUNT, "mlflow-artifacts", set_path("encryption", {"keySource": "Microsoft.Storage",
                                                               "services": {"blob": {"enabled": False}}})),
     "mlflow-artifacts"),
    ("public-access-block-flag-off", "aws", "storage-not-public",
     edit(pack.S3_PUBLIC_ACCESS_BLOCK, "mlflow-artifacts-public-access", set_path("restrictPublicBuckets", False)),
     "mlflow-artifacts-public-access"),
    ("bucket-public-acl", "aws", "storage-not-public", edit(BUCKET, "mlflow-artifacts", set_path("acl", "public-read")),
     "mlflow-artifacts"),
    ("blob-public-access-allowed", "azure", "storage-not-public",
     edit(ACCOUNT, "mlflow-artifacts", set_path("allowBlobPublicAccess", True)), "mlflow-artifacts"),
    ("container-public", "azure", "storage-not-public",
     edit(CONTAINER, "mlflow-artifacts-container", set_path("publicAccess", "Blob")), "mlflow-artifacts-container"),
    ("minio-bucket-public", "local", "storage-not-public",
     edit(pack.MINIO_BUCKET, "mlflow-artifacts-bucket", set_path("acl", "public-read")), "mlflow-artifacts-bucket"),
    ("bucket-policy-without-condition", "aws", "storage-tls-only",
     edit(pack.S3_BUCKET_POLICY, "mlflow-artifacts-tls-only", tls_statement_change(lambda s: s.pop("Condition"))),
     "mlflow-artifacts-tls-only"),
    ("bucket-policy-bucket-arn-only", "aws", "storage-tls-only",
     edit(pack.S3_BUCKET_POLICY, "mlflow-artifacts-tls-only",
          tls_statement_change(lambda s: s.update(Resource=s["Resource"][0]))), "mlflow-artifacts-tls-only"),
    ("storage-account-http", "azure", "storage-tls-only",
     edit(ACCOUNT, "mlflow-artifacts", set_path("enableHttpsTrafficOnly", False)), "mlflow-artifacts"),
    ("storage-account-tls-1-0", "azure", "storage-tls-only",
     edit(ACCOUNT, "mlflow-artifacts", set_path("minimumTlsVersion", "TLS1_0")), "mlflow-artifacts"),
    ("bucket-without-public-access-block", "aws", "s3-buckets-guarded",
     lambda resources: without(resources, pack.S3_PUBLIC_ACCESS_BLOCK), "mlflow-artifacts"),
    ("bucket-without-encryption", "aws", "s3-buckets-guarded", lambda resources: without(resources, SSE),
     "mlflow-artifacts"),
    ("bucket-without-policy", "aws", "s3-buckets-guarded",
     lambda resources: without(resources, pack.S3_BUCKET_POLICY), "mlflow-artifacts"),
    ("iam-action-star", "aws", "iam-least-privilege",
     edit(ROLE_POLICY, "mlflow-server-access-0",
          add_statement({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::mlflow-artifacts-x"})),
     "mlflow-server-access-0"),
    ("iam-resource-star", "aws", "iam-least-privilege",
     edit(ROLE_POLICY, "mlflow-server-access-0",
          add_statement({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"})), "mlflow-server-access-0"),
    ("iam-not-action", "aws", "iam-least-privilege",
     edit(ROLE_POLICY, "mlflow-server-execution",
          add_statement({"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::x"})),
     "mlflow-server-execution"),
    ("iam-role-managed-administrator-access", "aws", "iam-least-privilege",
     edit(pack.IAM_ROLE, "mlflow-server-task-role",
          set_path("managedPolicyArns", ["arn:aws:iam::aws:policy/AdministratorAccess"])), "mlflow-server-task-role"),
    ("iam-role-inline-iam-star-on-iam-arns", "aws", "iam-least-privilege",
     edit(pack.IAM_ROLE, "mlflow-server-task-role",
          set_path("inlinePolicies", [{"name": "iam", "policy": json.dumps(
              {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iam:*"],
                                                      "Resource": "arn:aws:iam::*:*"}]})}])),
     "mlflow-server-task-role"),
    ("iam-passrole-on-star", "aws-gc", "iam-least-privilege",
     edit(ROLE_POLICY, "mlflow-server-gc-scheduler",
          edit_json("policy", lambda doc: doc["Statement"][1].update(Resource="*"))), "mlflow-server-gc-scheduler"),
    ("role-assignment-owner-on-subscription", "azure", "iam-least-privilege",
     edit(ROLE_ASSIGNMENT, "mlflow-artifacts-server-access", lambda inputs: inputs.update(
         roleDefinitionId=inputs["roleDefinitionId"].rsplit("/", 1)[0] + "/" + ROLES["Owner"], scope=SUBSCRIPTION)),
     "mlflow-artifacts-server-access"),
    ("iam-role-inline-policy", "aws", "iam-least-privilege",
     edit(pack.IAM_ROLE, "mlflow-server-task-role",
          set_path("inlinePolicies", [{"name": "all", "policy": json.dumps(
              {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})}])),
     "mlflow-server-task-role"),
    ("log-group-forever", "aws", "logs-have-retention",
     edit(LOG_GROUP, "mlflow-platform-logs", drop("retentionInDays")), "mlflow-platform-logs"),
    ("log-group-zero-days", "aws", "logs-have-retention",
     edit(LOG_GROUP, "mlflow-platform-logs", set_path("retentionInDays", 0)), "mlflow-platform-logs"),
    ("workspace-zero-days", "azure", "logs-have-retention",
     edit(pack.LOG_ANALYTICS_WORKSPACE, "mlflow-platform-logs", set_path("retentionInDays", 0)),
     "mlflow-platform-logs"),
    ("rds-unprotected", "aws", "stateful-resources-protected", edit(RDS, "mlflow-metadata", protect=False),
     "mlflow-metadata"),
    ("bucket-unprotected", "aws", "stateful-resources-protected", edit(BUCKET, "mlflow-artifacts", protect=False),
     "mlflow-artifacts"),
    ("flexible-server-unprotected", "azure", "stateful-resources-protected",
     edit(SERVER, "mlflow-metadata", protect=False), "mlflow-metadata"),
    ("flexible-database-unprotected", "azure", "stateful-resources-protected",
     edit(pack.FLEXIBLE_SERVER_DATABASE, "mlflow-metadata-database", protect=False), "mlflow-metadata-database"),
    ("storage-account-unprotected", "azure", "stateful-resources-protected",
     edit(ACCOUNT, "mlflow-artifacts", protect=False), "mlflow-artifacts"),
    ("container-unprotected", "azure", "stateful-resources-protected",
     edit(CONTAINER, "mlflow-artifacts-container", protect=False), "mlflow-artifacts-container"),
    ("docker-data-volume-not-kept", "local", "stateful-resources-protected",
     edit(pack.DOCKER_VOLUME, "mlflow-metadata-data", drop("labels")), "mlflow-metadata-data"),
    ("ecs-password-in-environment", "aws", "no-plaintext-secrets-in-container-env",
     edit(TASK, "mlflow-server", ecs_env("mlflow-server", "MLFLOW_TRACKING_PASSWORD", "hunter2hunter2")),
     "mlflow-server"),
    ("ecs-uri-with-password", "aws", "no-plaintext-secrets-in-container-env",
     edit(TASK, "mlflow-proxy", ecs_env("mlflow-proxy", "UPSTREAM", "https://mlflow:hunter2@mlflow-server:5000")),
     "mlflow-proxy"),
    ("container-app-value-not-secret-ref", "azure", "no-plaintext-secrets-in-container-env",
     edit("azure-native:app:ContainerApp", "mlflow-server",
          container_app_value_instead_of_secret_ref("MLFLOW_BACKEND_STORE_URI")), "mlflow-server"),
    ("docker-env-password", "local", "no-plaintext-secrets-in-container-env",
     edit(pack.DOCKER_CONTAINER, "mlflow-proxy", set_path("envs", ["NGINX_ADMIN_PASSWORD=hunter2hunter2"])),
     "mlflow-proxy"),
]


@pytest.mark.parametrize("stack,policy_name,mutation,resource_name",
                         [pytest.param(*case[1:], id=case[0]) for case in MUTATIONS])
def test_a_broken_copy_is_rejected_by_its_policy(stack: str, policy_name: str, mutation: Mutation,
                                                 resource_name: str):
    """Only the flipped property's policy objects, and its message names the resource (and how to fix it)."""
    before = check(resources_of(stack))
    new = [v for v in check(mutation(resources_of(stack))) if v not in before]
    assert new, f"{policy_name} let the broken copy of {resource_name} through"
    for violation in new:
        assert violation.policy == policy_name, violation
        assert f"'{resource_name}'" in violation.message, violation.message


def test_every_policy_has_a_broken_copy_it_rejects():
    assert {case[2] for case in MUTATIONS} == set(POLICY_NAMES)


# --- ... and lets legitimate variants through -------------------------------------------------------------

def _inline_encryption(resources: list[Recorded]) -> list[Recorded]:
    """The bucket's default encryption inline instead of a resource of its own."""
    rule = {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
    return replaced(without(resources, SSE), BUCKET, "mlflow-artifacts",
                    set_path("serverSideEncryptionConfiguration", {"rule": rule}))


LEGITIMATE: list[tuple[str, str, str, Mutation]] = [  # id, stack, the policy it nearly offends, mutation
    ("rds-on-another-port", "aws", "database-not-public", edit(RDS, "mlflow-metadata", set_path("port", 15432))),
    ("database-port-from-the-vpc-cidr", "aws", "database-port-closed-to-internet",
     edit(SG_IN, "mlflow-platform-database-in-server",
          lambda i: (i.pop("referencedSecurityGroupId"), i.update(cidrIpv4="10.0.0.0/16")))),
    ("s3-encrypted-with-a-kms-key", "aws", "storage-encrypted",
     edit(SSE, "mlflow-artifacts-encryption", set_path("rules", [{"applyServerSideEncryptionByDefault": {
         "sseAlgorithm": "aws:kms", "kmsMasterKeyId": "arn:aws:kms:eu-west-1:123456789012:key/k"},
         "bucketKeyEnabled": True}]))),
    ("bucket-acl-private", "aws", "storage-not-public", edit(BUCKET, "mlflow-artifacts", set_path("acl", "private"))),
    ("storage-account-tls-1-3", "azure", "storage-tls-only",
     edit(ACCOUNT, "mlflow-artifacts", set_path("minimumTlsVersion", "TLS1_3"))),
    ("bucket-encryption-inline", "aws", "s3-buckets-guarded", _inline_encryption),
    ("blob-data-contributor-on-the-storage-account", "azure", "iam-least-privilege",
     edit(ROLE_ASSIGNMENT, "mlflow-artifacts-server-access",
          lambda inputs: inputs.update(scope=inputs["scope"].split("/blobServices/")[0]))),
    ("log-group-ten-years", "aws", "logs-have-retention",
     edit(LOG_GROUP, "mlflow-platform-logs", set_path("retentionInDays", 3653))),
    ("workspace-azure-default-retention", "azure", "logs-have-retention",  # Azure keeps a workspace's data 30 days
     edit(pack.LOG_ANALYTICS_WORKSPACE, "mlflow-platform-logs", drop("retentionInDays"))),
    ("socket-volume-not-kept", "local", "stateful-resources-protected",
     edit(pack.DOCKER_VOLUME, "mlflow-metadata-socket", lambda inputs: inputs.pop("labels", None))),
    ("ecs-secret-arn-in-environment", "aws", "no-plaintext-secrets-in-container-env",
     edit(TASK, "mlflow-server", ecs_env("mlflow-server", "MLFLOW_DB_SECRET_ARN",
                                         "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"))),
]


@pytest.mark.parametrize("stack,mutation", [pytest.param(case[1], case[3], id=case[0]) for case in LEGITIMATE])
def test_a_legitimate_variant_passes_every_policy(stack: str, mutation: Mutation):
    assert check(mutation(resources_of(stack))) == []


def test_every_policy_has_a_legitimate_variant_it_accepts():
    assert {case[2] for case in LEGITIMATE} == set(POLICY_NAMES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_an_added_resource_is_judged_by_its_policy_alone(case: Case):
    """tests/policy/cases.py: each way around a policy is rejected by that policy, with a message naming
    the resource; each legitimate near miss passes every policy."""
    resources = resources_of(case.stack)
    resource = added(resources, case)
    found = check([*resources, resource, *companions(resources, case)])
    if case.policy is None:
        assert found == [], "\n".join(v.message for v in found)
    else:
        assert found, f"{case.policy} let {case.id} through"
        for violation in found:
            assert violation.policy == case.policy and f"'{resource.name}'" in violation.message, violation


def test_the_bypasses_cover_the_new_kinds_of_resource():
    """The rejected cases reach every kind of resource the issue names, not only the program's own."""
    kinds = {pack.normalized_type(case.type) for case in REJECTED + REJECTED_ROUND_2}
    assert {"aws-native:iam:Role", "aws-native:iam:RolePolicy", "aws-native:iam:ManagedPolicy",
            "aws-native:rds:DbInstance", "aws-native:rds:DbCluster", "aws-native:ec2:SecurityGroup",
            "aws-native:ec2:SecurityGroupIngress", "aws-native:s3:Bucket", "aws-native:s3:BucketPolicy",
            "aws-native:sso:PermissionSet", "azure-native:authorization:PimRoleEligibilitySchedule",
            "azure:pim/activeRoleAssignment:ActiveRoleAssignment",
            "azure:pim/eligibleRoleAssignment:EligibleRoleAssignment",
            "azure:storage/account:Account", "azure:storage/container:Container",
            "azure:postgresql/flexibleServer:FlexibleServer",
            "azure:cosmosdb/postgresqlFirewallRule:PostgresqlFirewallRule", "aws:kms/key:Key",
            "aws:secretsmanager/secretPolicy:SecretPolicy", "aws:ecr/repositoryPolicy:RepositoryPolicy",
            "aws:sqs/queuePolicy:QueuePolicy", "aws:lambda/permission:Permission",
            "minio:index/s3BucketPolicy:S3BucketPolicy", "azure-native:containerinstance:ContainerGroup",
            "azure:containerapp/app:App"} <= kinds
    assert {"aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws:iam/policyAttachment:PolicyAttachment",
            "aws:iam/userPolicyAttachment:UserPolicyAttachment", "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
            pack.IAM_ROLE, ROLE_ASSIGNMENT, "azure-native:authorization:RoleDefinition",
            "azure:authorization/assignment:Assignment", pack.SECURITY_GROUP_INGRESS_RULE, pack.SECURITY_GROUP_RULE,
            "azure-native:dbforpostgresql:FirewallRule"} <= kinds


def test_the_third_round_covers_templates_and_the_platforms_that_publish_ports():
    kinds = {pack.normalized_type(case.type) for case in REJECTED_ROUND_3}
    assert {"aws:cloudformation/stack:Stack", "aws-native:cloudformation:Stack",
            "azure-native:resources:DeploymentAtSubscriptionScope", "azure-native:resources:Deployment",
            "azure:core/subscriptionTemplateDeployment:SubscriptionTemplateDeployment",
            "azure:role/assignment:Assignment", "azure:role/definition:Definition",
            "aws:lambda/layerVersionPermission:LayerVersionPermission",
            "aws:organizations/resourcePolicy:ResourcePolicy",
            "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock", "aws:s3/bucketObjectv2:BucketObjectv2",
            pack.DOCKER_CONTAINER, "azure-native:app:ContainerApp", pack.CONTAINER_GROUP} <= kinds


def test_the_fourth_round_covers_every_resource_policy_service_and_the_new_kinds():
    """Escaped keys for each kind of resource policy; Identity Center, snapshots, images, blueprints."""
    kinds = {pack.normalized_type(case.type) for case in REJECTED_ROUND_4}
    escaped = {pack.normalized_type(case.type) for case in REJECTED_ROUND_4 if case.id.startswith("escaped-")}
    assert {pack.S3_BUCKET_POLICY, "aws:kms/key:Key", "aws:secretsmanager/secretPolicy:SecretPolicy",
            "aws:sqs/queuePolicy:QueuePolicy", "aws:sns/topicPolicy:TopicPolicy",
            "aws:ecr/repositoryPolicy:RepositoryPolicy", "minio:index/s3BucketPolicy:S3BucketPolicy",
            "aws:opensearch/domainPolicy:DomainPolicy", "aws:backup/vaultPolicy:VaultPolicy"} <= escaped
    assert set(pack.IDENTITY_CENTER_GRANTS) <= kinds
    assert {"aws:rds/snapshot:Snapshot", "aws:ec2/amiLaunchPermission:AmiLaunchPermission", pack.RDS_CLUSTER,
            "azure-native:blueprint:RoleAssignmentArtifact", "azure-native:blueprint:TemplateArtifact",
            "aws:cloudformation/stackSet:StackSet"} <= kinds


def test_a_template_resource_is_judged_in_every_combination_of_its_conditions():
    """Conditions, not Fn::Ifs, are the choice points (one condition has one value in the whole template); a
    map lookup keyed by the region takes every region's value; past 256 combinations every branch is still
    judged once."""
    template = {"Parameters": {"Env": {"Type": "String", "Default": "dev"}},
                "Mappings": {"M": {"us-east-1": {"V": "a"}, "eu-west-1": {"V": "b"}, "ap-south-1": {"V": "c"}}},
                "Resources": {"R": {"Type": "AWS::SQS::Queue", "Properties": {
                    "One": {"Fn::If": ["C", 1, 2]}, "Same": {"Fn::If": ["C", 3, 4]}, "Other": {"Fn::If": ["D", 5, 6]},
                    "Region": {"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, "V"]}}}}}
    found, problems = pack.template_resources("aws:cloudformation/stack:Stack", {"templateBody": json.dumps(template)})
    assert problems == []
    combinations = {(r.props["one"], r.props["same"], r.props["other"], r.props["region"]) for r in found}
    assert combinations == {(one, one + 2, other, region) for one in (1, 2) for other in (5, 6)
                            for region in "abc"}
    many = {"Resources": {"R": {"Type": "AWS::SQS::Queue", "Properties": {
        f"P{index}": {"Fn::If": [f"C{index}", index, -index]} for index in range(12)}}}}
    found, _ = pack.template_resources("aws:cloudformation/stack:Stack", {"templateBody": json.dumps(many)})
    assert len(found) <= 256
    for index in range(12):
        assert {r.props[f"p{index}"] for r in found} == {index, -index}


def test_a_tls_deny_for_another_bucket_guards_nothing():
    """A BucketPolicy sees its bucket's id, not the name in its ARNs (the mocks' ids differ from AWS's, where
    they are the name): the stack policy, which has the bucket, sees a TLS-only Deny that names only another
    bucket and counts no TLS guard for this one."""
    name = "mlflow-artifacts-20261126abcdef"

    def deny_elsewhere(properties: dict) -> dict:
        policy = json.loads(properties["policy"])
        policy["Statement"][0]["Resource"] = ["arn:aws:s3:::some-other-bucket", "arn:aws:s3:::some-other-bucket/*"]
        return {**properties, "policy": json.dumps(policy)}

    policy = one(resources_of("aws"), pack.S3_BUCKET_POLICY, "mlflow-artifacts-tls-only")
    elsewhere = dataclasses.replace(policy, raw_inputs=deny_elsewhere(policy.raw_inputs),
                                    state=deny_elsewhere(policy.state))
    resources = [elsewhere if r.urn == policy.urn else r for r in resources_of("aws")]
    stack = [policy_named("s3-buckets-guarded")]
    assert check(resources_of("aws"), stack, use_state=True) == []
    [violation] = check(resources, stack, use_state=True)  # outputs: the bucket's name is known
    assert "denies requests without TLS" in violation.message and violation.urn.endswith("::mlflow-artifacts")
    assert check(resources, [policy_named("storage-tls-only")]) == []  # alone it names a bucket, and denies
    assert pack.denies_insecure_transport(json.loads(policy.inputs["policy"]), name)
    assert not pack.denies_insecure_transport(json.loads(elsewhere.inputs["policy"]), name)


def test_a_template_the_pack_cannot_read_is_reported():
    """YAML aliases (CloudFormation takes none), a key twice, text that is no object: reported, not skipped."""
    for body in ("a: &x [1]\nb: *x\n", "Resources: {}\nresources: {}\n", "[1, 2]", "{not json"):
        _, problems = pack.template_resources("aws:cloudformation/stack:Stack", {"templateBody": body})
        assert problems and "cannot be read" in problems[0], body


def test_stack_violations_point_at_the_resource():
    """A stack policy's report carries the URN, so the CLI shows it against the resource."""
    resources = edit(RDS, "mlflow-metadata", protect=False)(resources_of("aws"))
    [violation] = check(resources, [policy_named("stateful-resources-protected")])
    assert violation.urn == one(resources, RDS, "mlflow-metadata").urn


# --- what the policies decide by ------------------------------------------------------------------------

@pytest.mark.parametrize("name,secret", [
    ("POSTGRES_PASSWORD", True), ("MINIO_ROOT_PASSWORD", True), ("AWS_SECRET_ACCESS_KEY", True),
    ("MLFLOW_FLASK_SERVER_SECRET_KEY", True), ("MLFLOW_CRYPTO_KEK_PASSPHRASE", True), ("OIDC_CLIENT_SECRET", True),
    ("MLFLOW_TRACKING_TOKEN", True), ("AZURE_STORAGE_CONNECTION_STRING", True), ("OPENAI_APIKEY", True),
    ("db_password", True),
    ("AWS_ACCESS_KEY_ID", False), ("AWS_DEFAULT_REGION", False), ("POSTGRES_PASSWORD_FILE", False),
    ("MLFLOW_PLATFORM_SECRETS_SHA256", False), ("AZURE_CLIENT_ID", False), ("MLFLOW_DB_SECRET_ARN", False),
    ("MINIO_ROOT_USER", False), ("MLFLOW_S3_ENDPOINT_URL", False), ("TOKEN_URL", False),
    # review 5: a secret word anywhere, unless a later word says the value points at or describes one
    ("PASSWORD_DB", True), ("DB_PASSWORD_1", True), ("dbPassword2", True), ("SECRET_KEY_BASE", True),
    ("AWS_CREDS", True), ("mlflowApiKey", True),
    ("PASSWORD_MIN_LENGTH", False), ("SECRET_NAME", False), ("dbPasswordFile", False), ("KEY_VAULT_URI", False),
    ("TOKEN_EXPIRY_SECONDS", False), ("password-stdin", False), ("PASSWORDLESS_LOGIN", False),
])
def test_secret_looking_names(name: str, secret: bool):
    assert pack.looks_like_secret_name(name) is secret


@pytest.mark.parametrize("value,secret", [
    ("postgresql+psycopg2://mlflow:p%40ss@postgres:5432/mlflow", True),
    ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==;EndpointSuffix=core.windows.net", True),
    ("-----BEGIN EC PRIVATE KEY-----\nMHc...\n-----END EC PRIVATE KEY-----", True),
    ("http://minio:9000", False), ("https://login.example.com/realms/ml/.well-known/openid-configuration", False),
    ("s3://mlflow-artifacts/", False), ("user@example.com", False),
    ("postgresql://db:5432/mlflow?user=mlflow&password=hunter2", True), ("redis://:hunter2@cache:6379/0", True),
    ("host=db user=mlflow password=hunter2 dbname=mlflow", True), ("host=db password='hunter 2'", True),
    ("https://a.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig=AbC%2B", True), ("Server=db;Pwd=hunter2", True),
    ("host=db user=mlflow dbname=mlflow sslmode=require", False), ("http://[::1]:8080/path", False),
    ("postgresql://db:5432/mlflow?sslmode=require", False), ("postgresql://db:5432/mlflow", False),
    # review 5: JSON and YAML values, INI lines, tokens whose shape says what they are
    ('{"username": "mlflow", "password": "Hunter2-very-secret", "engine": "postgres"}', True),
    ('[{"name": "DB_PASSWORD", "value": "x1"}]', True), ('{"a": "{\\"token\\": \\"t0k3n\\"}"}', True),
    ("password: Hunter2-very-secret", True), ("db:\n  api_key: 'k3y-0123'", True), ("secret_token = abc123", True),
    ("{'user': 'mlflow', 'password':'Hunter2'}", True),
    ("AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", True),
    ('{"host": "db", "port": 5432, "passwordFile": "/run/secrets/db", "password": "${DB_PASSWORD}"}', False),
    ('[{"key": "team", "value": "mlflow"}]', False), ("password: ${DB_PASSWORD}\nsecret: null", False),
    ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlflow-db-AbCdEf", False), ("AKIAIOSFODNN7EXAMPLE", False),
    ("format: '%(asctime)s %(message)s'", False),
])
def test_secret_looking_values(value: str, secret: bool):
    assert pack.looks_like_secret_value(value) is secret


@pytest.mark.parametrize("name,value,secret", [
    ("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=0000;IngestionEndpoint=https://x.in.ai.azure.com/;"
                                              "LiveEndpoint=https://x.livediagnostics.monitor.azure.com/", False),
    ("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=0000;AccountKey=abc==", True),
    ("AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==", True),
    ("GOOGLE_APPLICATION_CREDENTIALS", "/run/secrets/gcp.json", False),
    ("AWS_SHARED_CREDENTIALS", "./config/credentials", False),
    ("GOOGLE_APPLICATION_CREDENTIALS", '{"type": "service_account", "private_key": "x"}', True),
    ("DB_PASSWORD", "/run/secrets/db", True),  # a password variable holds the password, whatever it looks like
])
def test_secret_env_entries_by_name_and_value(name: str, value: str, secret: bool):
    assert (pack.secret_env_entries([(name, value)]) == [name]) is secret


@pytest.mark.parametrize("arguments,secret", [
    (["mlflow", "server", "--backend-store-uri", "postgresql://mlflow:hunter2@db:5432/mlflow"], True),
    (["psql", "--password", "hunter2"], True), (["app", "--db-password=hunter2"], True),
    (["sh", "-c", "PGPASSWORD=hunter2 psql -h db"], True), (["sh", "-c", "export API_TOKEN=abc123; run"], True),
    (["sh", "-c", "az storage blob list --connection-string 'AccountName=a;AccountKey=abc=='"], True),
    (["python", "-c", "store.update_user(admin, password=password)\npassword = os.environ['X']"], False),
    (["sh", "-c", 'PGPASSWORD="$(cat /run/secrets/db)" psql -h db'], False),
    (["app", "--password-file", "/run/secrets/db"], False), (["app", "--key", "/etc/tls/key.pem"], False),
    (["mlflow", "server", "--host", "0.0.0.0", "--artifacts-destination", "s3://bucket/"], False),
    (["app", "--config", '{"db": {"password": "hunter2"}}'], True),
    (["sh", "-c", 'echo "$PW" | docker login --password-stdin registry.example.com'], False),
])
def test_secrets_on_a_command_line(arguments: list[str], secret: bool):
    assert bool(pack.secret_arguments(arguments)) is secret


@pytest.mark.parametrize("protocol,ports", [
    ("tcp", [5432]), ("TCP", [5432]), ("6", [5432]), ("006", [5432]), ("+6", [5432]), (6.0, [5432]), (6, [5432]),
    ("-1", "all"), ("-01", "all"), (-1.0, "all"), ("all", "all"), ("ALL", "all"), (None, "all"),
    ("tcp6", "all"), ("6.0", "all"),  # spellings the pack cannot read count as every protocol
    ("udp", []), ("17", []), ("icmp", []), ("1", []), ("58", []), ("50", []),
])
def test_protocol_spellings_as_the_aws_provider_reads_them(protocol, ports):
    covered = pack._ports_cover_database(protocol, 5432, 5432)
    assert covered == (sorted(pack.DATABASE_PORTS) if ports == "all" else ports)


@pytest.mark.parametrize("condition,narrows", [
    ({"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}, True),
    ({"StringEquals": {"AWS:PRINCIPALACCOUNT": 123456789012}}, True),
    ({"ForAnyValue:StringEquals": {"aws:PrincipalOrgID": ["o-abc123", "o-def456"]}}, True),
    ({"ArnEquals": {"aws:SourceArn": "arn:aws:events:eu-west-1:123456789012:rule/r"}}, True),
    ({"StringEquals": {"aws:PrincipalAccount": "${aws:ResourceAccount}"}}, True),
    ({"Bool": {"aws:SecureTransport": "true"}}, False), ({"StringLike": {"aws:PrincipalOrgID": "*"}}, False),
    ({"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/x"}}, False),
    ({"StringEqualsIfExists": {"aws:PrincipalOrgID": "o-abc123"}}, False),
    ({"ForAllValues:StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}, False),
    ({"StringNotEquals": {"aws:PrincipalAccount": "999999999999"}}, False),
    ({"StringEquals": {"aws:PrincipalAccount": "${aws:PrincipalAccount}"}}, False),
    ({"StringEquals": {"aws:PrincipalOrgID": []}}, False), ({"StringEquals": {"aws:username": "admin"}}, False),
    ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, False),
])
def test_only_conditions_that_name_the_principals_narrow_any_principal(condition: dict, narrows: bool):
    assert bool(pack.narrowing_condition_keys(condition)) is narrows


@pytest.mark.parametrize("acl,public", [
    ("public-read", True), ("public-read-write", True), ("authenticated-read", True), ("PublicRead", True),
    ("PublicReadWrite", True), ("AuthenticatedRead", True), ("public-write", True), ("public", True),
    ("PUBLIC_READ", True), ("private", False), ("Private", False), ("BucketOwnerFullControl", False),
    ("log-delivery-write", False), (None, False),
])
def test_public_acls_however_spelled(acl, public: bool):
    assert pack.public_acl(acl) is public


def test_unknown_policy_names_in_a_configuration():
    assert pack.unknown_policy_names(["all", "iam-least-privilege", "stateful-resource-protected"]) == [
        "stateful-resource-protected"]
    assert pack.unknown_policy_names(POLICY_NAMES) == []


@pytest.mark.parametrize("statement,problems", [
    ({"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"}, []),
    ({"Effect": "Allow", "Action": "ECR:GetAuthorizationToken", "Resource": ["*"]}, []),
    ({"Effect": "Deny", "Action": "*", "Resource": "*"}, []),
    ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}, ['Resource "*" for s3:GetObject']),
    ({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b/*"}, ['Action "*"']),
    ({"Effect": "Allow", "NotResource": "arn:aws:s3:::b", "Action": "s3:GetObject"},
     ["NotResource (allows everything not listed)"]),
])
def test_iam_statements(statement: dict, problems: Sequence[str]):
    assert pack.wildcard_problems(statement) == list(problems)


@pytest.mark.parametrize("statement,offends", [
    ({"Effect": "Allow", "Action": "iam:*", "Resource": "arn:aws:iam::*:*"}, True),
    ({"Effect": "Allow", "Action": "iam:Pass*", "Resource": "*"}, True),
    ({"Effect": "Allow", "Action": "iam:Pass*", "Resource": "arn:aws:iam::123456789012:role/mlflow-task"}, False),
    ({"Effect": "Allow", "Action": "iam:Put*", "Resource": "arn:aws:iam::123456789012:role/mlflow-task"}, True),
    ({"Effect": "Allow", "Action": "iam:Create*", "Resource": "arn:aws:iam::123456789012:user/ci"}, True),
    ({"Effect": "Allow", "Action": "iam:Get*", "Resource": "arn:aws:iam::123456789012:role/mlflow-task"}, False),
    ({"Effect": "Allow", "Action": "sts:*", "Resource": "arn:aws:iam::123456789012:role/mlflow-reader"}, False),
    ({"Effect": "Allow", "Action": "sts:*", "Resource": ["arn:aws:iam::123456789012:role/x", "*"]}, True),
    ({"Effect": "Allow", "Action": "kms:*", "Resource": "arn:aws:kms:eu-west-1:123456789012:key/*"}, True),
    ({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:r*"}, True),
    ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:*"}, True),
    ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::mlflow-artifacts/*"}, False),
    ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:dynamodb:eu-west-1:123456789012:table/*"},
     True),
    ({"Effect": "Allow", "Action": "ecs:StopTask", "Resource": "arn:aws:ecs:eu-west-1:123456789012:*",
      "Condition": {"ArnEquals": {"ecs:cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/c"}}}, False),
    # review 5: running a task runs code as its role, so it needs the task definition's name whatever the condition
    ({"Effect": "Allow", "Action": "ecs:RunTask", "Resource": "arn:aws:ecs:eu-west-1:123456789012:*",
      "Condition": {"ArnEquals": {"ecs:cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/c"}}}, True),
    ({"Effect": "Allow", "Action": "ecs:RunTask", "Resource": "arn:aws:ecs:eu-west-1:123456789012:task-definition/gc:*",
      "Condition": {"ArnEquals": {"ecs:cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/c"}}}, False),
    # a condition narrows only by naming something: not the account or organization, not a bare wildcard
    ({"Effect": "Allow", "Action": "ecs:StopTask", "Resource": "arn:aws:ecs:eu-west-1:123456789012:*",
      "Condition": {"ArnLike": {"ecs:cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/*"}}}, True),
    ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:dynamodb:eu-west-1:123456789012:table/*",
      "Condition": {"StringEquals": {"aws:ResourceAccount": "123456789012"}}}, True),
    ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:dynamodb:eu-west-1:123456789012:table/*",
      "Condition": {"StringEquals": {"aws:ResourceTag/team": "mlflow"}}}, False),
    ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:dynamodb:eu-west-1:123456789012:table/*",
      "Condition": {"StringLike": {"aws:ResourceTag/team": "m*"}}}, True),
    ({"Effect": "Allow", "Action": "*:Get*", "Resource": "arn:aws:s3:::b/*"}, True),
    ({"effect": "allow", "action": "*", "resource": "*"}, True),
    ({"Effect": "Deny", "Action": "iam:*", "Resource": "*"}, False),
])
def test_iam_wildcards_and_escalation(statement: dict, offends: bool):
    assert bool(pack.wildcard_problems(statement)) is offends


@pytest.mark.parametrize("resource,reach", [
    ("*", "any"), ("arn:*", "any"), ("arn:aws:iam::*:*", "any"), ("arn:aws:iam::*", "any"), ("arn:aws:s3:::*", "any"),
    ("arn:aws:*:eu-west-1:123456789012:x", "any"), ("arn:aws:iam::123456789012:role/*", "account"),
    ("arn:aws:iam::123456789012:*", "account"), ("arn:aws:iam::123456789012:r?le/x", "account"),
    ("arn:aws:iam::123456789012:role/mlflow-*", "account"), ("arn:aws:iam::123456789012:role/A*", "account"),
    ("arn:aws:iam::*:role/OrganizationAccountAccessRole", "any"),
    ("arn:aws:kms:eu-west-1:123456789012:key/1*", "account"), ("arn:aws:lambda:*:123456789012:function:*", "account"),
    ("arn:aws:lambda:eu-west-1:123456789012:function:mlflow-*", None),
    ("ARN:AWS:IAM::123456789012:ROLE/*", "account"), ("arn:aws:s3:::mlflow-artifacts/*", None),
    ("arn:aws:logs:eu-west-1:123456789012:log-group:/mlflow/aws:*", None),
    ("arn:aws:sns:eu-west-1:1:alarms-*", None),
    # a wildcard before a secret's, a parameter's or a database user's name is spelled out reaches them all; a
    # wildcard in a bucket's name reaches any account's buckets (REJECTED_ROUND_3)
    ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlflow-*", "account"),
    ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:a*", "account"),
    ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:*/db", "account"),
    ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlflow-db-??????", None),
    ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlflow/*", None),
    ("arn:aws:ssm:eu-west-1:123456789012:parameter/a*", "account"),
    ("arn:aws:ssm:eu-west-1:123456789012:parameter/mlflow/*", None),
    ("arn:aws:rds-db:eu-west-1:123456789012:dbuser:db-*/*", "account"),
    ("arn:aws:rds-db:eu-west-1:123456789012:dbuser:db-ABCDEFGHIJKL/*", "account"),
    ("arn:aws:rds-db:eu-west-1:123456789012:dbuser:db-ABCDEFGHIJKL/mlflow", None),
    ("arn:aws:s3:::a*", "any"), ("arn:aws:s3:::mlflow-*/*", "any"), ("arn:aws:s3:::mlflow-artifacts/runs-*", None),
    ("arn:aws:ec2:eu-west-1:123456789012:instance/i-*", None),
    # an S3 access point's ARN names its type first, as other services' do (review 5)
    ("arn:aws:s3:eu-west-1:123456789012:accesspoint/*", "account"),
    ("arn:aws:s3:eu-west-1:123456789012:accesspoint/mlflow/object/*", None),
])
def test_how_far_a_resource_pattern_reaches(resource: str, reach: str | None):
    assert pack.resource_reach(resource) == reach


@pytest.mark.parametrize("resource,reach", [
    ("arn:aws:ec2:eu-west-1:123456789012:instance/i-*", "account"),
    ("arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0", None),
    ("arn:aws:lambda:eu-west-1:123456789012:function:mlflow-*", "account"),
    ("arn:aws:lambda:eu-west-1:123456789012:function:mlflow-gc:*", None),
    ("arn:aws:ecs:eu-west-1:123456789012:task/mlflow*", "account"),
    ("arn:aws:ecs:eu-west-1:123456789012:task/mlflow-aws/*", None),
    ("arn:aws:ssm:eu-west-1::document/AWS-*", "any"), ("arn:aws:ssm:eu-west-1::document/AWS-RunShellScript", None),
    # an Auto Scaling group's ARN holds a random id before its name: the name says which group (review 5)
    ("arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/mlflow", None),
    ("arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/*", "account"),
    ("arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/ml*", "account"),
])
def test_how_far_a_pattern_reaches_for_actions_that_run_code(resource: str, reach: str | None):
    """Actions that run code hold every resource to the spelled-out name: instance/i-* is every instance."""
    assert pack.resource_reach(resource, names=True) == reach


@pytest.mark.parametrize("arn,broad", [
    ("arn:aws:iam::aws:policy/AdministratorAccess", True), ("arn:aws-us-gov:iam::aws:policy/PowerUserAccess", True),
    ("arn:aws-cn:iam::aws:policy/IAMFullAccess", True), ("arn:aws:iam::aws:policy/AdministratorAccess-Amplify", True),
    ("arn:aws:iam::aws:policy/job-function/SystemAdministrator", True),
    ("arn:aws:iam::aws:policy/job-function/DataScientist", True),
    ("arn:aws:iam::aws:policy/AWSCodeBuildAdminAccess", True),
    ("arn:aws:iam::aws:policy/AWSLambda_FullAccess", True), ("arn:aws:iam::aws:policy/SecretsManagerReadWrite", True),
    ("arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser", True),
    ("arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy", False),
    ("arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy", False),
    ("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole", False),
    ("arn:aws:iam::123456789012:policy/mlflow-server", False),
    # harmless names that reach every bucket, parameter, log or function environment of the account (review 4)
    ("arn:aws:iam::aws:policy/job-function/ViewOnlyAccess", True), ("arn:aws:iam::aws:policy/ReadOnlyAccess", True),
    ("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess", True),
    ("arn:aws:iam::aws:policy/service-role/AmazonEC2RoleforSSM", True),
    ("arn:aws:iam::aws:policy/AmazonSSMReadOnlyAccess", True),
    ("arn:aws:iam::aws:policy/CloudWatchLogsReadOnlyAccess", True),
    ("arn:aws:iam::AWS:policy/SomePolicyAWSAddsTomorrow", True),
])
def test_broad_aws_managed_policies(arn: str, broad: bool):
    """Every AWS-managed policy but the few that only write telemetry or pull images (NARROW_AWS_MANAGED_POLICIES)
    is broad, whatever its name; a customer-managed one is judged by its name."""
    assert bool(pack.broad_managed_policy(arn)) is broad


@pytest.mark.parametrize("cidr,private", [
    ("10.0.0.0/16", True), ("172.16.0.0/12", True), ("192.168.1.0/24", True), ("100.64.0.0/10", True),
    ("127.0.0.1/32", True), ("169.254.169.254/32", True), ("fd00::/8", True), ("fe80::/64", True), ("::1/128", True),
    ("0.0.0.0/0", False), ("0.0.0.0/1", False), ("128.0.0.0/1", False), ("10.0.0.0/7", False),
    ("172.32.0.0/16", False), ("100.128.0.0/16", False), ("203.0.113.0/24", False), ("::/0", False),
    ("2001:db8::/32", False), ("::ffff:0:0/96", False), ("not-a-cidr", False),
])
def test_private_networks(cidr: str, private: bool):
    assert pack.is_private_network(cidr) is private


# --- configuration (--policy-pack-config) ---------------------------------------------------------------

DESCRIBE = {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}


def test_the_configurable_policies_declare_schemas_whose_defaults_keep_todays_behaviour():
    schemas = {policy.name: policy.config_schema for policy in pack.POLICIES if policy.config_schema}
    assert set(schemas) == {"iam-least-privilege", "stateful-resources-protected"}
    for name, schema in schemas.items():
        defaults = {prop: spec["default"] for prop, spec in schema.properties.items()}
        jsonschema.validate(defaults, {"type": "object", "properties": schema.properties})
        if name == "iam-least-privilege":
            assert pack.allowed_actions_on_any_resource(defaults) == pack.ACTIONS_ONLY_ON_ANY_RESOURCE
        else:
            assert pack.protection_required(defaults, "aws") and pack.protection_required(None, "aws")


def test_an_allow_listed_action_may_use_resource_star():
    resources = edit(ROLE_POLICY, "mlflow-server-access-0", add_statement(DESCRIBE))(resources_of("aws"))
    iam = [policy_named("iam-least-privilege")]
    assert [v.policy for v in check(resources, iam)] == ["iam-least-privilege"]
    allowed = {"iam-least-privilege": {"allowedActionsOnAnyResource": ["ec2:DescribeInstances"]}}
    assert check(resources, iam, config=allowed) == []
    other = edit(ROLE_POLICY, "mlflow-server-access-0", add_statement({**DESCRIBE, "Action": "ec2:TerminateInstances"}))
    assert [v.policy for v in check(other(resources_of("aws")), iam, config=allowed)] == ["iam-least-privilege"]


@pytest.mark.parametrize("config", [
    *({"allowedActionsOnAnyResource": [action]}
      for action in ("ec2:*", "*", "iam:PassRole", "sts:AssumeRole", "kms:Decrypt", "secretsmanager:GetSecretValue")),
    {"allowedActionsOnAnyResource": "ec2:DescribeInstances"},
    {"allowedActionsOnAnyResourse": ["ec2:DescribeInstances"]},
])
def test_the_allow_list_refuses_wildcards_identity_actions_and_typos(config: dict):
    """A wildcard or an identity action on every resource would be the bypass itself; a typo would
    silently keep a team's exception off. All fail the run instead."""
    with pytest.raises(pack.PolicyConfigError):
        check(resources_of("aws"), [policy_named("iam-least-privilege")], config={"iam-least-privilege": config})


def test_the_allow_list_takes_listing_actions_of_identity_services():
    assert "iam:listroles" in pack.allowed_actions_on_any_resource({"allowedActionsOnAnyResource": ["iam:ListRoles"]})


@pytest.mark.parametrize("action", [
    "ssm:SendCommand", "ssm:StartSession", "ec2-instance-connect:SendSSHPublicKey", "rds-db:connect",
    "lambda:UpdateFunctionCode", "lambda:InvokeFunction", "ecs:ExecuteCommand", "s3:GetObject", "ssm:GetParameters",
    "ec2:TerminateInstances", "s3:PutBucketPolicy", "sso:CreateAccountAssignment", "lambda:GetFunction",
])
def test_the_allow_list_refuses_code_execution_credentials_and_changes(action: str):
    """Only reads of metadata (Describe*, List*) and a few telemetry actions may go on every resource: the
    review's allow-list (SendCommand, SendSSHPublicKey, rds-db:connect, ...) would have been the bypass."""
    with pytest.raises(pack.PolicyConfigError, match=action):
        pack.allowed_actions_on_any_resource({"allowedActionsOnAnyResource": [action]})


@pytest.mark.parametrize("action", [
    "lambda:ListFunctions", "ec2:DescribeInstanceAttribute", "cognito-idp:DescribeUserPoolClient",
    "elasticbeanstalk:DescribeConfigurationSettings", "amplify:ListApps", "ecs:DescribeTaskDefinition",
    "ec2:DescribeLaunchTemplateVersions", "iam:ListAccessKeys",
])
def test_the_allow_list_refuses_listings_that_return_secrets(action: str):
    """A Describe or List verb says nothing of what comes back (the review's allow-list: environment variables,
    user data, client secrets): only the pack's list of metadata reads is taken."""
    with pytest.raises(pack.PolicyConfigError, match=action):
        pack.allowed_actions_on_any_resource({"allowedActionsOnAnyResource": [action]})


def test_the_allow_list_takes_reads_of_metadata_and_telemetry():
    allowed = pack.allowed_actions_on_any_resource({"allowedActionsOnAnyResource": [
        "ec2:DescribeInstances", "ecs:ListClusters", "cloudwatch:GetMetricData", "xray:PutTraceSegments"]})
    assert {"ec2:describeinstances", "ecs:listclusters", "cloudwatch:getmetricdata", "xray:puttracesegments"} <= allowed


IDENTITY_CENTER_CASES = {case.id: case for case in REJECTED_ROUND_4 if case.type in pack.IDENTITY_CENTER_GRANTS}
IDENTITY_CENTER_CONFIG = {"iam-least-privilege": {
    "allowedPermissionSets": [PERMISSION_SET], "allowedIdentityStoreGroups": [ADMINISTRATORS_GROUP],
    "allowedDelegatedAdministratorServices": ["member.org.stacksets.cloudformation.amazonaws.com"]}}


@pytest.mark.parametrize("case_id", sorted(IDENTITY_CENTER_CASES))
def test_identity_center_grants_pass_only_when_configured(case_id: str):
    """An account assignment, identity store membership or delegated administrator is refused unless the
    configuration lists what it grants (the permission set, the group, the service); listing another one does
    not let it through."""
    case = IDENTITY_CENTER_CASES[case_id]
    resources = [*resources_of("aws"), added(resources_of("aws"), case)]
    iam = [policy_named("iam-least-privilege")]
    assert [v.policy for v in check(resources, iam)] == ["iam-least-privilege"]
    assert check(resources, iam, config=IDENTITY_CENTER_CONFIG) == []
    other = {"iam-least-privilege": {
        "allowedPermissionSets": ["arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-ffffffffffffffff"],
        "allowedIdentityStoreGroups": ["another-group"],
        "allowedDelegatedAdministratorServices": ["guardduty.amazonaws.com"]}}
    assert [v.policy for v in check(resources, iam, config=other)] == ["iam-least-privilege"]


ENTRA_CASES = {case.id: case for case in REJECTED_ROUND_5 if case.type in pack.ENTRA_GRANTS}


@pytest.mark.parametrize("case_id", sorted(ENTRA_CASES))
def test_entra_grants_pass_only_when_configured(case_id: str):
    """A directory role assignment, eligibility or membership, a group membership or a PIM group assignment (the
    azuread provider) is refused unless the configuration lists the role or group; a role Microsoft labels
    privileged (Global Administrator) stays refused when listed."""
    case = ENTRA_CASES[case_id]
    resources = [*resources_of("azure"), added(resources_of("azure"), case)]
    iam = [policy_named("iam-least-privilege")]
    assert [v.policy for v in check(resources, iam)] == ["iam-least-privilege"]
    prop, setting = next((prop, setting) for props, setting in [pack.ENTRA_GRANTS[case.type]] for prop in props
                         if prop in case.inputs)
    configured = check(resources, iam, config={"iam-least-privilege": {setting: [case.inputs[prop]]}})
    privileged = setting == "allowedDirectoryRoles" and str(case.inputs[prop]).lower() in pack.ENTRA_PRIVILEGED_ROLES
    assert [v.policy for v in configured] == (["iam-least-privilege"] if privileged else [])
    other = {"iam-least-privilege": {setting: ["00000000-1111-4222-8333-444444444444"]}}
    assert [v.policy for v in check(resources, iam, config=other)] == ["iam-least-privilege"]


def test_the_fifth_round_covers_the_new_kinds():
    kinds = {pack.normalized_type(case.type) for case in REJECTED_ROUND_5}
    assert set(pack.ENTRA_GRANTS) <= kinds
    assert {"azuread:index/appRoleAssignment:AppRoleAssignment", pack.PREFIX_LIST_ENTRY, *pack.PREFIX_LISTS,
            "azure-native:sql:Server", "azure-native:dbforpostgresql:Cluster", "azure-native:dbformariadb:Server",
            "azure:mysql/flexibleServer:FlexibleServer", "azure:mysql/server:Server",
            "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"} <= kinds


@pytest.mark.parametrize("config", [{"allowedPermissionSets": "arn:aws:sso:::permissionSet/ssoins-1/ps-1"},
                                    {"allowedIdentityStoreGroups": ["*"]},
                                    {"allowedDelegatedAdministratorServices": [""]},
                                    {"allowedEntraGroups": ["6f1c2c1e-*"]}, {"allowedDirectoryRoles": "x"}])
def test_a_broken_identity_center_allowance_fails_the_run(config: dict):
    with pytest.raises(pack.PolicyConfigError):
        pack.identity_center_allowances(config)


@pytest.mark.parametrize("config,required", [
    (None, True), ({}, True), ({"requireProtection": True}, True), ({"requireProtection": False}, False),
    ({"exemptStacks": ["aws"]}, False), ({"exemptStacks": ["a?s"]}, False), ({"exemptStacks": ["pr-*", "dev"]}, True),
    ({"exemptStacks": ["AWS"]}, True), ({"requireProtection": True, "exemptStacks": []}, True),
])
def test_protection_can_be_switched_off_for_throw_away_stacks(config: dict | None, required: bool):
    resources = edit(RDS, "mlflow-metadata", protect=False)(resources_of("aws"))
    found = check(resources, [policy_named("stateful-resources-protected")],
                  config={"stateful-resources-protected": config} if config is not None else None)
    assert [v.policy for v in found] == (["stateful-resources-protected"] if required else [])


def test_an_exempt_stack_leaves_its_docker_volumes_unkept_too():
    resources = edit(pack.DOCKER_VOLUME, "mlflow-metadata-data", drop("labels"))(resources_of("local"))
    config = {"stateful-resources-protected": {"exemptStacks": ["local"]}}
    assert check(resources, [policy_named("stateful-resources-protected")], config=config) == []


@pytest.mark.parametrize("config", [{"requireProtection": "no"}, {"exemptStacks": "aws"}, {"exemptStacks": [""]},
                                    {"requireProtecton": False}])
def test_a_broken_protection_config_fails_the_run(config: dict):
    with pytest.raises(pack.PolicyConfigError):
        check(resources_of("aws"), [policy_named("stateful-resources-protected")],
              config={"stateful-resources-protected": config})


@pytest.mark.parametrize("levels,refused", [
    ({policy.name: "mandatory" for policy in pack.POLICIES}, []),
    ({"all": "mandatory"}, []),
    ({"stateful-resources-protected": "disabled"}, []),  # the documented teardown exception
    ({"iam-least-privilege": "advisory"}, ["iam-least-privilege to advisory"]),
    ({"iam-least-privilege": "disabled"}, ["iam-least-privilege to disabled"]),
    ({"database-not-public": "remediate"}, ["database-not-public to remediate"]),
    ({"stateful-resources-protected": "advisory"}, ["stateful-resources-protected to advisory"]),
    ({"all": "disabled"}, ["all to disabled"]),
    ({"all": "advisory", "storage-not-public": "disabled"}, ["all to advisory", "storage-not-public to disabled"]),
])
def test_only_mandatory_levels_are_taken(levels: dict, refused: list):
    """pulumi_policy honours any enforcement level Configure sends; the pack refuses all but mandatory (and
    stateful-resources-protected disabled, the same as its requireProtection: false, for a teardown)."""
    assert pack.refused_enforcement_levels(levels) == refused


def test_the_stack_is_read_from_the_urns():
    assert pack.stack_of("urn:pulumi:pr-42::mlflow::aws:rds/instance:Instance::db") == "pr-42"
    assert {pack.stack_of(r.urn) for r in resources_of("azure")} == {"azure"}


def test_azure_api_version_modules_are_the_same_kinds():
    """azure-native publishes each resource under explicit API versions too; the policies see through them."""
    assert pack.normalized_type("azure-native:dbforpostgresql/v20241101preview:Server") == pack.FLEXIBLE_SERVER
    assert pack.normalized_type("azure-native:storage/v20230501:StorageAccount") == pack.STORAGE_ACCOUNT
    assert pack.normalized_type("azure-native:dbforpostgresql/v20210615privatepreview:Server") == pack.FLEXIBLE_SERVER
    assert pack.normalized_type("azure-native:authorization/v20220401beta:RoleAssignment") == ROLE_ASSIGNMENT


def _stack(stack: str, *resources: tuple[str, str, dict, bool]) -> list[Recorded]:
    """A stack of resources the program does not make: (type, name, inputs, protected)."""
    template = one(resources_of(stack), *TEMPLATES[stack])
    prefix = template.urn.rsplit("::", 2)[0]
    return [dataclasses.replace(template, type=type_, name=name, urn=f"{prefix}::{type_}::{name}", raw_inputs=inputs,
                                protect=protect, dependencies=[]) for type_, name, inputs, protect in resources]


def test_what_keeps_data_is_protected_under_any_api_version_and_provider():
    """The review's AnalyzeStack: an unprotected server under a private-preview API version, an aws-native
    database and a classic storage account are each reported; an Aurora instance (its cluster keeps the data)
    is not."""
    resources = _stack("azure", ("azure-native:dbforpostgresql/v20210615privatepreview:Server", "metadata",
                                 {"network": {"publicNetworkAccess": "Disabled"}}, False),
                       (pack.CLASSIC_STORAGE_ACCOUNT, "artifacts", {"allowNestedItemsToBePublic": False}, False),
                       (pack.NATIVE_DB_INSTANCE, "db", {"storageEncrypted": True}, False),
                       (pack.NATIVE_DB_INSTANCE, "aurora-1", {"dbClusterIdentifier": "c"}, False))
    found = check(resources, [policy_named("stateful-resources-protected")])
    assert sorted(v.urn.rsplit("::", 1)[-1] for v in found) == ["artifacts", "db", "metadata"]


def test_a_cache_mount_holds_no_data():
    """/var/cache/nginx (and any .cache directory) is a cache: its volume need not be kept; /data is data."""
    for path, data in (("/var/cache/nginx", False), ("/home/app/.cache/pip", False), ("/var/tmp/x", False),
                       ("/var/cache/../lib/data", True), ("/data", True), ("/var/lib/postgresql/data", True)):
        resources = _stack("local", (pack.DOCKER_VOLUME, "v", {"name": "v"}, False),
                           (pack.DOCKER_CONTAINER, "c", {"image": "nginx", "volumes": [
                               {"volumeName": "v", "containerPath": path}]}, True))
        found = check(resources, [policy_named("stateful-resources-protected")])
        assert bool(found) is data, path


def test_an_aws_native_bucket_needs_its_guards_too():
    bucket = (pack.NATIVE_BUCKET, "bucket", native_bucket(), True)
    guards = [(type_, f"guard-{index}", inputs, True) for index, (type_, inputs) in enumerate(NATIVE_BUCKET_GUARDS)]
    guarded = [policy_named("s3-buckets-guarded")]
    assert check(_stack("aws", bucket, *guards), guarded) == []
    [violation] = check(_stack("aws", bucket), guarded)
    assert "BucketPolicy" in violation.message and violation.urn.endswith("::bucket")
    bare = (pack.NATIVE_BUCKET, "bucket", {"bucketName": NATIVE_BUCKET_NAME}, True)
    [violation] = check(_stack("aws", bare, *guards), guarded)
    assert "publicAccessBlockConfiguration" in violation.message and "bucketEncryption" in violation.message


# --- previews: values that are not known yet -------------------------------------------------------------

def _options(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def test_a_resource_policy_defers_an_unknown_value_to_the_update():
    """The analyzer turns UnknownValueError into "can't run during preview" and runs the policy again
    at `pulumi up`; swallowing it would pass a resource nobody checked."""
    args = ResourceValidationArgs(RDS, unknown_checking_proxy({"publiclyAccessible": UNKNOWN_BOOLEAN_VALUE}),
                                  "urn:pulumi:aws::mlflow::aws:rds/instance:Instance::db", "db", _options(), None)
    reported: list[str] = []
    with pytest.raises(UnknownValueError):
        pack.database_not_public.validate(args, lambda message, urn: reported.append(message))
    assert reported == []


def test_a_preview_links_a_bucket_to_guards_whose_bucket_id_is_unknown():
    """In a first preview the bucket's id is unknown: the engine's property dependencies still link them."""
    def resource(type_: str, name: str, props: dict, deps: dict | None = None) -> PolicyResource:
        urn = f"urn:pulumi:aws::mlflow::{type_}::{name}"
        return PolicyResource(type_, unknown_checking_proxy(props), urn, name, _options(protect=True), None, None, [],
                              deps or {})

    bucket = resource(BUCKET, "artifacts", {"bucketPrefix": "a-", "id": UNKNOWN_STRING_VALUE})
    guards = [resource(pack.S3_PUBLIC_ACCESS_BLOCK, "pab", {"bucket": UNKNOWN_STRING_VALUE}, {"bucket": [bucket]}),
              resource(SSE, "sse", {"bucket": UNKNOWN_STRING_VALUE}, {"bucket": [bucket]}),
              resource(pack.S3_BUCKET_POLICY, "tls", {"bucket": UNKNOWN_STRING_VALUE, "policy": UNKNOWN_STRING_VALUE},
                       {"bucket": [bucket]})]
    found: list[Violation] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append(Violation(pack.s3_buckets_guarded.name, message, urn))

    pack.s3_buckets_guarded.validate(StackValidationArgs([bucket, *guards]), report)
    assert found == []
    pack.s3_buckets_guarded.validate(StackValidationArgs([bucket, *guards[1:]]), report)
    assert [v.urn for v in found] == [bucket.urn] and "BucketPublicAccessBlock" in found[0].message
