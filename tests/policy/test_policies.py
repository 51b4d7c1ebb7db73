"""The policy pack (policy/policies.py) over the program's own graphs, without the Pulumi CLI.

Two halves, each necessary: every policy passes every resource of the local, aws and azure graphs
(also with auth.mode mlflow and oidc, and with ECS Exec on), so the pack can guard CI without
blocking the program; and for every policy a recorded resource with one property flipped is
rejected, with a message naming that resource, so a pass means something.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

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
from tests.policy.graphs import Violation, check, graph, one, policy_named, replaced, without
from tests.harness.program import Recorded

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
    ("iam-role-inline-policy", "aws", "iam-least-privilege",
     edit(pack.IAM_ROLE, "mlflow-server-task-role",
          set_path("inlinePolicies", [{"name": "all", "policy": json.dumps(
              {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})}])),
     "mlflow-server-task-role"),
    ("log-group-forever", "aws", "logs-have-retention",
     edit(LOG_GROUP, "mlflow-platform-logs", drop("retentionInDays")), "mlflow-platform-logs"),
    ("log-group-zero-days", "aws", "logs-have-retention",
     edit(LOG_GROUP, "mlflow-platform-logs", set_path("retentionInDays", 0)), "mlflow-platform-logs"),
    ("workspace-forever", "azure", "logs-have-retention",
     edit(pack.LOG_ANALYTICS_WORKSPACE, "mlflow-platform-logs", drop("retentionInDays")), "mlflow-platform-logs"),
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
])
def test_secret_looking_names(name: str, secret: bool):
    assert pack.looks_like_secret_name(name) is secret


@pytest.mark.parametrize("value,secret", [
    ("postgresql+psycopg2://mlflow:p%40ss@postgres:5432/mlflow", True),
    ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==;EndpointSuffix=core.windows.net", True),
    ("-----BEGIN EC PRIVATE KEY-----\nMHc...\n-----END EC PRIVATE KEY-----", True),
    ("http://minio:9000", False), ("https://login.example.com/realms/ml/.well-known/openid-configuration", False),
    ("s3://mlflow-artifacts/", False), ("user@example.com", False),
])
def test_secret_looking_values(value: str, secret: bool):
    assert pack.looks_like_secret_value(value) is secret


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


def test_azure_api_version_modules_are_the_same_kinds():
    """azure-native publishes each resource under explicit API versions too; the policies see through them."""
    assert pack.normalized_type("azure-native:dbforpostgresql/v20241101preview:Server") == pack.FLEXIBLE_SERVER
    assert pack.normalized_type("azure-native:storage/v20230501:StorageAccount") == pack.STORAGE_ACCOUNT


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
