"""Resources the program does not make, each added to a recorded graph: the ways around a policy an
attacker would try first (each must be rejected by that policy alone) and the near misses a team
legitimately writes (each must pass every policy). test_policies.py judges them with direct calls,
test_pack_server.py over the analyzer's gRPC interface, in the engine's wire format.

REJECTED_ROUND_2 and ACCEPTED_ROUND_2 are what a review fed the pack over gRPC (aws-native, vacuous
conditions, any-account patterns, escalation outside iam, protocol spellings, PIM, API version modules,
the classic azure provider, resource policies, secrets in DSNs and command lines) and the wrong
rejections it found, each generalised to the class it stands for. REJECTED_ROUND_3 and ACCEPTED_ROUND_3:
a second red team's (name wildcards after a fixed prefix, CloudFormation and ARM templates, the classic
provider's role/ module, OIDC subject prefixes, documents with a key twice, public-access grants,
case-duplicate ECS keys, secrets in health checks and headers, TLS denies that deny nothing, ACLs of
objects, published database ports) and its wrong rejections. REJECTED_ROUND_4 and ACCEPTED_ROUND_4: a third red
team's. REJECTED_ROUND_5 and ACCEPTED_ROUND_5: a fourth red team's (conditions that name nothing, actions that change
what runs under another role, the azuread provider, managed identities' credentials, prefix lists, secrets in JSON
and YAML values and in a name's middle, the Azure database servers not read before) and its wrong rejections (an NSG
rule from application security groups, RDS enhanced monitoring's role).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from policy import policies as pack
from tests.harness.program import SECRET_SIG, SIG_KEY, Recorded
from tests.policy.graphs import one

ACCOUNT = "123456789012"
SUBSCRIPTION = "/subscriptions/00000000-1111-2222-3333-444444444444"
RESOURCE_GROUP = f"{SUBSCRIPTION}/resourceGroups/mlflow-azure"
STORAGE_SCOPE = f"{RESOURCE_GROUP}/providers/Microsoft.Storage/storageAccounts/mlflowazurec2c037"
MANAGEMENT_GROUP = "/providers/Microsoft.Management/managementGroups/platform"
ROLES = {  # the built-in role definition GUIDs (learn.microsoft.com/azure/role-based-access-control/built-in-roles)
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Managed Identity Contributor": "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
    "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
    "Managed Identity Federated Identity Credential Contributor": "7e559ce2-48d7-4b27-9128-fa1b247f1308",
    "Key Vault Data Access Administrator": "8b54135c-b56d-4d72-a534-26097cfdc8d8",
    "Virtual Machine Data Access Administrator": "66f75aeb-eabe-4b70-9f1e-c350c4c9ad04",
    "Azure File Sync Administrator": "92b92042-07d9-4307-87f7-36a593fc5850",
    "Reservations Administrator": "a8889054-8d42-49c9-bc1c-52486c10e7cd",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
}
TEMPLATES = {  # stack -> a recorded resource whose parent, provider and stack an added one takes
    "aws": (pack.SECURITY_GROUP_INGRESS_RULE, "mlflow-platform-database-in-server"),
    "azure": ("azure-native:authorization:RoleAssignment", "mlflow-artifacts-server-access"),
    "local": ("docker:index/volume:Volume", "mlflow-metadata-socket"),
}

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
FIREWALL_RULE = "azure-native:dbforpostgresql:FirewallRule"
NSG_RULE = "azure-native:network:SecurityRule"
ECS_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    stack: str
    policy: Optional[str]
    """The policy that must reject the resource, or None: it must pass every policy."""
    type: str
    inputs: dict[str, Any]
    companions: tuple[tuple[str, dict[str, Any]], ...] = ()
    """Resources that come with it and pass every policy (an aws-native bucket's bucket policy), so a
    stack policy does not object to what the case leaves out on purpose."""


def _recorded(resources: list[Recorded], case: Case, type_: str, name: str, inputs: dict) -> Recorded:
    template = one(resources, *TEMPLATES[case.stack])
    urn = template.urn.rsplit("::", 2)[0] + f"::{type_}::{name}"
    return dataclasses.replace(template, type=type_, name=name, urn=urn, raw_inputs=inputs, protect=True,
                               dependencies=[])


def added(resources: list[Recorded], case: Case) -> Recorded:
    """The case's resource as the program would register it in the stack (protected, so only the
    property under test can offend)."""
    return _recorded(resources, case, case.type, f"case-{case.id}", case.inputs)


def companions(resources: list[Recorded], case: Case) -> list[Recorded]:
    return [_recorded(resources, case, type_, f"case-{case.id}-with-{index}", inputs)
            for index, (type_, inputs) in enumerate(case.companions)]


def document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any, resource: Any, **extra: Any) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def role_policy(*statements: dict) -> dict:
    return {"role": "mlflow-server-task-role-id", "policy": document(*statements)}


def sg_rule(protocol: Any = "tcp", from_port: Any = 5432, to_port: Any = 5432, **cidr: Any) -> dict:
    return {"ipProtocol": protocol, "fromPort": from_port, "toPort": to_port,
            "securityGroupId": "mlflow-platform-database-sg-id", **cidr}


def nsg_rule(source: str, port: str = "5432", access: str = "Allow", protocol: str = "Tcp") -> dict:
    return {"resourceGroupName": "mlflow-azure", "networkSecurityGroupName": "mlflow-db", "priority": 100,
            "direction": "Inbound", "access": access, "protocol": protocol, "sourceAddressPrefix": source,
            "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": port}


def assignment(role: str, scope: str) -> dict:
    return {"roleDefinitionId": f"{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{ROLES[role]}",
            "scope": scope, "principalId": "aefb7652-6736-ca9c-b9e6-685b57c1b926", "principalType": "ServicePrincipal"}


def role_definition(actions: list[str], *scopes: str) -> dict:
    """A custom role defined in the subscription (as most are), assignable at `scopes`."""
    return {"roleName": "mlflow-custom", "scope": SUBSCRIPTION, "assignableScopes": list(scopes),
            "permissions": [{"actions": actions, "notActions": []}]}


PORT = "database-port-closed-to-internet"
IAM = "iam-least-privilege"
PUBLIC = "database-not-public"

REJECTED = [
    # a database port opened to addresses outside the private ranges
    Case("sg-rule-lower-half-of-ipv4", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE, sg_rule(cidrIpv4="0.0.0.0/1")),
    Case("sg-rule-upper-half-of-ipv4", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE, sg_rule(cidrIpv4="128.0.0.0/1")),
    Case("sg-rule-public-range", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE, sg_rule(cidrIpv4="203.0.113.0/24")),
    Case("sg-rule-rfc1918-lookalike", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE, sg_rule(cidrIpv4="172.32.0.0/16")),
    Case("sg-rule-public-ipv6", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE, sg_rule(cidrIpv6="2001:db8::/32")),
    Case("sg-rule-ipv4-mapped-ipv6", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE, sg_rule(cidrIpv6="::ffff:0:0/96")),
    Case("sg-rule-every-tcp-port", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule("tcp", 0, 65535, cidrIpv4="198.51.100.7/32")),
    Case("sg-rule-ports-reversed", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule("TCP", 6000, 5000, cidrIpv4="198.51.100.7/32")),
    Case("sg-rule-protocol-minus-one-as-number", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule(-1, None, None, cidrIpv4="0.0.0.0/0")),
    Case("sg-rule-unreadable-cidr", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE, sg_rule(cidrIpv4="0.0.0.0/00")),
    Case("security-group-rule-protocol-all", "aws", PORT, pack.SECURITY_GROUP_RULE,
         {"type": "ingress", "protocol": "all", "fromPort": 0, "toPort": 0,
          "cidrBlocks": ["0.0.0.0/1", "128.0.0.0/1"], "securityGroupId": "mlflow-platform-database-sg-id"}),
    Case("default-security-group-inline", "aws", PORT, pack.DEFAULT_SECURITY_GROUP,
         {"vpcId": "vpc-1", "ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]}),
    Case("flexible-firewall-every-address", "azure", PORT, FIREWALL_RULE,
         {"resourceGroupName": "mlflow-azure", "serverName": "mlflow-metadata", "startIpAddress": "0.0.0.0",
          "endIpAddress": "255.255.255.255"}),
    Case("flexible-firewall-all-azure-services", "azure", PORT,
         "azure-native:dbforpostgresql/v20241101preview:FirewallRule",
         {"resourceGroupName": "mlflow-azure", "serverName": "mlflow-metadata", "startIpAddress": "0.0.0.0",
          "endIpAddress": "0.0.0.0"}),
    Case("classic-flexible-firewall-public-range", "azure", PORT,
         "azure:postgresql/flexibleServerFirewallRule:FlexibleServerFirewallRule",
         {"serverId": "x", "startIpAddress": "203.0.113.1", "endIpAddress": "203.0.113.9"}),
    Case("nsg-rule-from-internet", "azure", PORT, NSG_RULE, nsg_rule("Internet")),
    Case("nsg-rule-public-cidr-port-range", "azure", PORT, NSG_RULE, nsg_rule("0.0.0.0/1", port="5000-6000")),
    Case("nsg-inline-any-port", "azure", PORT, "azure-native:network:NetworkSecurityGroup",
         {"resourceGroupName": "mlflow-azure", "securityRules": [
             {"name": "open", "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "*",
              "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
              "destinationPortRange": "*"}]}),
    # a database reachable from the internet
    Case("rds-cluster-public", "aws", PUBLIC, pack.RDS_CLUSTER,
         {"engine": "aurora-postgresql", "storageEncrypted": True, "publiclyAccessible": True}),
    # admin through AWS-managed policies, in any partition and path, by any attaching resource
    Case("attach-administrator-access", "aws", IAM, ATTACHMENT,
         {"role": "mlflow-server-task-role-id", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
    Case("attach-power-user-govcloud", "aws", IAM, "aws:iam/userPolicyAttachment:UserPolicyAttachment",
         {"user": "ci", "policyArn": "arn:aws-us-gov:iam::aws:policy/PowerUserAccess"}),
    Case("attach-iam-full-access-china", "aws", IAM, "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
         {"group": "ops", "policyArn": "arn:aws-cn:iam::aws:policy/IAMFullAccess"}),
    Case("policy-attachment-s3-full-access", "aws", IAM, "aws:iam/policyAttachment:PolicyAttachment",
         {"roles": ["mlflow-server-task-role-id"], "policyArn": "arn:aws:iam::aws:policy/AmazonS3FullAccess"}),
    Case("attach-job-function", "aws", IAM, ATTACHMENT,
         {"role": "mlflow-server-task-role-id",
          "policyArn": "arn:aws:iam::aws:policy/job-function/SystemAdministrator"}),
    Case("attach-lambda-full-access-underscore", "aws", IAM, ATTACHMENT,
         {"role": "mlflow-server-task-role-id", "policyArn": "arn:aws:iam::aws:policy/AWSLambda_FullAccess"}),
    Case("exclusive-attachments-list", "aws", IAM,
         "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive",
         {"roleName": "mlflow-server-task-role", "policyArns": [
             "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
             "arn:aws:iam::aws:policy/AdministratorAccess"]}),
    Case("role-managed-policy-arns", "aws", IAM, pack.IAM_ROLE,
         {"assumeRolePolicy": json.dumps(ECS_TRUST), "managedPolicyArns": ["arn:aws:iam::aws:policy/PowerUserAccess"]}),
    Case("identity-center-admin", "aws", IAM, "aws:ssoadmin/managedPolicyAttachment:ManagedPolicyAttachment",
         {"instanceArn": "arn:aws:sso:::instance/ssoins-1", "permissionSetArn": "arn:aws:sso:::permissionSet/x",
          "managedPolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
    # admin through statements: escalation actions, wildcards in actions and resources
    Case("iam-star-on-every-iam-arn", "aws", IAM, "aws:iam/policy:Policy",
         {"policy": document(allow("iam:*", "arn:aws:iam::*:*"))}),
    Case("iam-put-star", "aws", IAM, "aws:iam/userPolicy:UserPolicy",
         {"user": "ci", "policy": document(allow(["iam:Put*"], "*"))}),
    Case("iam-attach-on-own-role", "aws", IAM, ROLE_POLICY,
         role_policy(allow("iam:AttachRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/mlflow-server-task-role"))),
    Case("iam-wildcard-matching-escalation", "aws", IAM, ROLE_POLICY,
         role_policy(allow("iam:*Policy", f"arn:aws:iam::{ACCOUNT}:role/mlflow-server-task-role"))),
    Case("passrole-upper-case-single-string", "aws", IAM, "aws:iam/groupPolicy:GroupPolicy",
         {"group": "ops", "policy": document(allow("IAM:PASSROLE", "*"))}),
    Case("passrole-every-role-of-the-account", "aws", IAM, ROLE_POLICY,
         role_policy(allow("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/*",
                           Condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}))),
    Case("sts-star", "aws", IAM, ROLE_POLICY, role_policy(allow("sts:*", "*"))),
    Case("kms-star-every-key", "aws", IAM, ROLE_POLICY, role_policy(allow("kms:*", "arn:aws:kms:*:*:key/*"))),
    Case("any-service-wildcard", "aws", IAM, ROLE_POLICY,
         role_policy(allow("i*:*", "arn:aws:s3:::mlflow-artifacts-20261126abcdef"))),
    Case("s3-every-bucket", "aws", IAM, ROLE_POLICY, role_policy(allow("s3:GetObject", "arn:aws:s3:::*/*"))),
    Case("lower-case-elements", "aws", IAM, ROLE_POLICY,
         {"role": "r", "policy": json.dumps({"version": "2012-10-17",
                                             "statement": [{"effect": "Allow", "action": "*", "resource": "*"}]})}),
    Case("duplicate-action-key", "aws", IAM, ROLE_POLICY,
         {"role": "r", "policy": '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
                                 '"Action": "s3:GetObject", "Action": "*", "Resource": "*"}]}'}),
    Case("unreadable-document", "aws", IAM, ROLE_POLICY, {"role": "r", "policy": "Allow * on *"}),
    Case("trust-any-principal", "aws", IAM, pack.IAM_ROLE,
         {"assumeRolePolicy": document({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})}),
    # admin through Azure RBAC, at or above a subscription
    Case("azure-owner-on-subscription", "azure", IAM, ROLE_ASSIGNMENT, assignment("Owner", SUBSCRIPTION)),
    Case("azure-contributor-on-management-group", "azure", IAM, "azure-native:authorization/v20220401:RoleAssignment",
         assignment("Contributor", MANAGEMENT_GROUP)),
    Case("azure-user-access-administrator-at-root", "azure", IAM, ROLE_ASSIGNMENT,
         assignment("User Access Administrator", "/")),
    Case("azure-rbac-administrator-upper-case", "azure", IAM, ROLE_ASSIGNMENT,
         {**assignment("Role Based Access Control Administrator", SUBSCRIPTION.upper() + "/"),
          "roleDefinitionId": assignment("Role Based Access Control Administrator", "/")["roleDefinitionId"].upper()}),
    Case("azure-pim-owner-request", "azure", IAM, "azure-native:authorization:RoleAssignmentScheduleRequest",
         {**assignment("Owner", SUBSCRIPTION), "requestType": "AdminAssign"}),
    Case("azure-classic-owner-by-name", "azure", IAM, "azure:authorization/assignment:Assignment",
         {"scope": SUBSCRIPTION, "roleDefinitionName": "owner", "principalId": "p"}),
    Case("azure-custom-role-star", "azure", IAM, ROLE_DEFINITION, role_definition(["*"], SUBSCRIPTION)),
    Case("azure-custom-role-assigns-roles", "azure", IAM, ROLE_DEFINITION,
         role_definition(["Microsoft.Authorization/*/write"], MANAGEMENT_GROUP)),
]

ACCEPTED = [
    Case("sg-rule-vnet-cidr", "aws", None, pack.SECURITY_GROUP_INGRESS_RULE, sg_rule(cidrIpv4="10.0.0.0/16")),
    Case("sg-rule-shared-address-space", "aws", None, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule(cidrIpv4="100.64.0.0/10")),
    Case("sg-rule-unique-local-ipv6", "aws", None, pack.SECURITY_GROUP_INGRESS_RULE, sg_rule(cidrIpv6="fd00:ab::/64")),
    Case("sg-rule-https-from-anywhere", "aws", None, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule("tcp", 443, 443, cidrIpv4="0.0.0.0/0")),
    Case("sg-rule-udp-from-anywhere", "aws", None, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule("udp", 0, 65535, cidrIpv4="0.0.0.0/0")),
    Case("flexible-firewall-private-range", "azure", None, FIREWALL_RULE,
         {"resourceGroupName": "mlflow-azure", "serverName": "mlflow-metadata", "startIpAddress": "10.0.0.1",
          "endIpAddress": "10.0.0.255"}),
    Case("nsg-rule-from-the-vnet", "azure", None, NSG_RULE, nsg_rule("VirtualNetwork")),
    Case("nsg-rule-deny-internet", "azure", None, NSG_RULE, nsg_rule("Internet", access="Deny")),
    Case("rds-cluster-instance-private", "aws", None, pack.RDS_CLUSTER_INSTANCE,
         {"clusterIdentifier": "c", "instanceClass": "db.r6g.large", "engine": "aurora-postgresql",
          "publiclyAccessible": False}),
    Case("attach-ecs-task-execution-policy", "aws", None, ATTACHMENT,
         {"role": "mlflow-server-execution-role-id",
          "policyArn": "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"}),
    Case("role-bounded-by-power-user", "aws", None, pack.IAM_ROLE,
         {"assumeRolePolicy": json.dumps(ECS_TRUST),
          "permissionsBoundary": "arn:aws:iam::aws:policy/PowerUserAccess"}),
    Case("named-role-key-and-secret", "aws", None, ROLE_POLICY, role_policy(
        allow("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/mlflow-server-task-role"),
        allow("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/mlflow-reader"),
        allow(["kms:Decrypt"], f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0123abcd-4567-89ef-0123-456789abcdef"),
        # a secret's name spelled out: its random suffix (-??????), or a path under a named folder; secret:mlflow-*
        # would be one of the 36 prefixes that reach every secret (REJECTED_ROUND_3, secrets-36-prefixes)
        allow("secretsmanager:GetSecretValue", [
            f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:mlflow-db-password-??????",
            f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:mlflow/*"]),
        # role/mlflow-* would reach every role an attacker names mlflow-...: for iam, sts and kms any
        # wildcard in the name is account-wide (REJECTED_ROUND_2, passrole-36-prefixes)
        allow("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/mlflow-server-task-role"))),
    Case("deny-iam-everywhere", "aws", None, ROLE_POLICY,
         role_policy({"Effect": "Deny", "Action": "iam:*", "Resource": "*"})),
    Case("trust-any-principal-of-the-organization", "aws", None, pack.IAM_ROLE,
         {"assumeRolePolicy": document({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole",
                                        "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}})}),
    Case("azure-blob-data-contributor-on-account", "azure", None, ROLE_ASSIGNMENT,
         assignment("Storage Blob Data Contributor", STORAGE_SCOPE)),
    Case("azure-reader-on-subscription", "azure", None, ROLE_ASSIGNMENT, assignment("Reader", SUBSCRIPTION)),
    Case("azure-custom-role-star-in-resource-group", "azure", None, ROLE_DEFINITION,
         role_definition(["*"], RESOURCE_GROUP)),
    Case("azure-custom-role-named-actions", "azure", None, ROLE_DEFINITION,
         role_definition(["Microsoft.Storage/storageAccounts/read", "*/read"], SUBSCRIPTION)),
]

# --- the second review's cases (fed to the pack over gRPC), each generalised to its class ------------------

STORAGE_PUBLIC, STORAGE_ENCRYPTED, TLS = "storage-not-public", "storage-encrypted", "storage-tls-only"
SECRETS, LOGS = "no-plaintext-secrets-in-container-env", "logs-have-retention"
ADMIN_DOCUMENT = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ADMIN_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"
OWNER_ID = f"{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{ROLES['Owner']}"
GITHUB = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
AUDIENCE = {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}
EKS = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"
NATIVE_BUCKET_NAME = "mlflow-native-artifacts"
TLS_DENY = {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{NATIVE_BUCKET_NAME}", f"arn:aws:s3:::{NATIVE_BUCKET_NAME}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
NATIVE_BUCKET_GUARDS = (("aws-native:s3:BucketPolicy", {"bucket": NATIVE_BUCKET_NAME, "policyDocument": {
    "Version": "2012-10-17", "Statement": [TLS_DENY]}}),)


def native_bucket(**changes: Any) -> dict:
    """An aws-native bucket with everything the pack asks for (its BucketPolicy is NATIVE_BUCKET_GUARDS)."""
    return {"bucketName": NATIVE_BUCKET_NAME,
            "publicAccessBlockConfiguration": {"blockPublicAcls": True, "blockPublicPolicy": True,
                                               "ignorePublicAcls": True, "restrictPublicBuckets": True},
            "bucketEncryption": {"serverSideEncryptionConfiguration": [
                {"serverSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}, "bucketKeyEnabled": True}]},
            **changes}


def trust(*statements: dict) -> dict:
    return {"assumeRolePolicy": document(*statements)}


def any_principal(condition: dict | None = None, action: str = "sts:AssumeRole") -> dict:
    return {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": action,
            **({"Condition": condition} if condition else {})}


def web_identity(provider: str, condition: dict) -> dict:
    return {"Effect": "Allow", "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition}


def resource_policy(*statements: dict) -> str:
    return document(*statements)


def open_to_anyone(action: Any, **extra: Any) -> dict:
    return {"Effect": "Allow", "Principal": "*", "Action": action, "Resource": "*", **extra}


def ecs(*containers: dict) -> dict:
    return {"family": "f", "containerDefinitions": json.dumps(
        [{"name": "mlflow", "image": "mlflow", **container} for container in containers])}


def env(**variables: str) -> list[dict]:
    return [{"name": name, "value": value} for name, value in variables.items()]


def app(*variables: dict, **container: Any) -> dict:
    return {"resourceGroupName": "mlflow-azure", "template": {"containers": [
        {"name": "mlflow", "image": "mlflow", "env": list(variables), **container}]}}


def classic_account(**changes: Any) -> dict:
    return {"resourceGroupName": "mlflow-azure", "accountTier": "Standard", "accountReplicationType": "LRS",
            "allowNestedItemsToBePublic": False, **changes}


def pim(type_: str, role: str = "Owner", scope: str = SUBSCRIPTION) -> Case:
    return Case(f"pim-{type_.rsplit(':', 1)[-1]}-{role.lower().replace(' ', '-')}", "azure", IAM, type_,
                {**assignment(role, scope), "principalId": "aefb7652-6736-ca9c-b9e6-685b57c1b926"})


REJECTED_ROUND_2 = [
    # 1. aws-native: the same promises under CloudFormation's names, documents as objects
    Case("native-role-managed-administrator", "aws", IAM, "aws-native:iam:Role",
         {"assumeRolePolicyDocument": ECS_TRUST, "managedPolicyArns": [ADMIN_POLICY]}),
    Case("native-role-inline-star", "aws", IAM, "aws-native:iam:Role",
         {"assumeRolePolicyDocument": ECS_TRUST, "policies": [{"policyName": "p", "policyDocument": ADMIN_DOCUMENT}]}),
    Case("native-role-policy-star", "aws", IAM, "aws-native:iam:RolePolicy",
         {"roleName": "r", "policyName": "p", "policyDocument": ADMIN_DOCUMENT}),
    Case("native-managed-policy-star", "aws", IAM, "aws-native:iam:ManagedPolicy",
         {"policyDocument": ADMIN_DOCUMENT, "roles": ["r"]}),
    Case("native-user-policy-iam-star-as-text", "aws", IAM, "aws-native:iam:UserPolicy",
         {"userName": "ci", "policyName": "p", "policyDocument": document(allow("iam:*", "*"))}),
    Case("native-group-power-user", "aws", IAM, "aws-native:iam:Group",
         {"managedPolicyArns": ["arn:aws:iam::aws:policy/PowerUserAccess"]}),
    Case("native-permission-set-administrator", "aws", IAM, "aws-native:sso:PermissionSet",
         {"instanceArn": "arn:aws:sso:::instance/ssoins-1", "name": "ops", "managedPolicies": [ADMIN_POLICY]}),
    Case("native-role-trust-any-principal", "aws", IAM, "aws-native:iam:Role",
         {"assumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [any_principal()]}}),
    Case("native-db-instance-public", "aws", PUBLIC, "aws-native:rds:DbInstance",
         {"engine": "postgres", "dbInstanceClass": "db.t4g.micro", "publiclyAccessible": True,
          "storageEncrypted": True}),
    Case("native-db-cluster-public-as-text", "aws", PUBLIC, "aws-native:rds:DbCluster",
         {"engine": "aurora-postgresql", "publiclyAccessible": "true", "storageEncrypted": True}),
    Case("native-db-instance-unencrypted", "aws", STORAGE_ENCRYPTED, "aws-native:rds:DbInstance",
         {"engine": "postgres", "dbInstanceClass": "db.t4g.micro", "storageEncrypted": False,
          "publiclyAccessible": False}),
    Case("native-db-cluster-encryption-unset", "aws", STORAGE_ENCRYPTED, "aws-native:rds:DbCluster",
         {"engine": "aurora-postgresql"}),
    Case("native-security-group-ingress", "aws", PORT, "aws-native:ec2:SecurityGroupIngress",
         {"groupId": "sg-1", "ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrIp": "0.0.0.0/0"}),
    Case("native-security-group-inline-all-protocols", "aws", PORT, "aws-native:ec2:SecurityGroup",
         {"groupDescription": "db", "securityGroupIngress": [{"ipProtocol": "-1", "cidrIp": "0.0.0.0/0"}]}),
    Case("native-security-group-inline-ipv6", "aws", PORT, "aws-native:ec2:SecurityGroup",
         {"groupDescription": "db", "securityGroupIngress": [
             {"ipProtocol": "6", "fromPort": 5000, "toPort": 6000, "cidrIpv6": "::/0"}]}),
    Case("native-bucket-public-access-block-off", "aws", STORAGE_PUBLIC, "aws-native:s3:Bucket",
         native_bucket(publicAccessBlockConfiguration={"blockPublicAcls": False, "blockPublicPolicy": False,
                                                       "ignorePublicAcls": False, "restrictPublicBuckets": False}),
         NATIVE_BUCKET_GUARDS),
    Case("native-bucket-public-read-acl", "aws", STORAGE_PUBLIC, "aws-native:s3:Bucket",
         native_bucket(accessControl="PublicRead"), NATIVE_BUCKET_GUARDS),
    Case("native-bucket-policy-without-tls-deny", "aws", TLS, "aws-native:s3:BucketPolicy",
         {"bucket": "b", "policyDocument": {"Version": "2012-10-17", "Statement": [
             {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/mlflow"}, "Action": "s3:GetObject",
              "Resource": "arn:aws:s3:::b/*"}]}}),
    Case("native-log-group-forever", "aws", LOGS, "aws-native:logs:LogGroup", {"logGroupName": "/mlflow/native"}),
    Case("native-task-definition-password", "aws", SECRETS, "aws-native:ecs:TaskDefinition",
         {"containerDefinitions": [{"name": "mlflow", "image": "mlflow", "environment": env(DB_PASSWORD="hunter2")}]}),
    Case("native-kms-key-policy-open", "aws", IAM, "aws-native:kms:Key",
         {"keyPolicy": {"Version": "2012-10-17", "Statement": [open_to_anyone("kms:*")]}}),
    Case("native-secret-resource-policy-open", "aws", IAM, "aws-native:secretsmanager:ResourcePolicy",
         {"secretId": "s", "resourcePolicy": {"Statement": [open_to_anyone("secretsmanager:GetSecretValue")]}}),
    # 2. a Condition counts only when it narrows the principals
    Case("trust-any-principal-secure-transport", "aws", IAM, pack.IAM_ROLE,
         trust(any_principal({"Bool": {"aws:SecureTransport": "true"}}))),
    Case("trust-any-principal-org-id-wildcard", "aws", IAM, pack.IAM_ROLE,
         trust(any_principal({"StringLike": {"aws:PrincipalOrgID": "*"}}))),
    Case("trust-any-principal-org-id-if-exists", "aws", IAM, pack.IAM_ROLE,
         trust(any_principal({"StringEqualsIfExists": {"aws:PrincipalOrgID": "o-abc123"}}))),
    Case("trust-any-principal-account-negated", "aws", IAM, pack.IAM_ROLE,
         trust(any_principal({"StringNotEquals": {"aws:PrincipalAccount": "999999999999"}}))),
    Case("trust-any-principal-for-all-values", "aws", IAM, pack.IAM_ROLE,
         trust(any_principal({"ForAllValues:StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}))),
    Case("trust-github-audience-only", "aws", IAM, pack.IAM_ROLE,
         trust(web_identity(GITHUB, {"StringEquals": AUDIENCE}))),
    Case("trust-github-any-repository", "aws", IAM, pack.IAM_ROLE,
         trust(web_identity(GITHUB, {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:*"},
                                     "StringEquals": AUDIENCE}))),
    Case("trust-eks-any-service-account", "aws", IAM, pack.IAM_ROLE,
         trust(web_identity(EKS, {"StringLike": {
             "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF:sub": "system:serviceaccount:*"}}))),
    Case("lambda-every-function-vacuous-condition", "aws", IAM, ROLE_POLICY, role_policy(
        allow("lambda:*", f"arn:aws:lambda:*:{ACCOUNT}:function:*",
              Condition={"Bool": {"aws:SecureTransport": "true"}}))),
    Case("send-command-every-instance-vacuous-condition", "aws", IAM, ROLE_POLICY, role_policy(
        allow("ssm:SendCommand", [f"arn:aws:ec2:*:{ACCOUNT}:instance/*", "arn:aws:ssm:*::document/AWS-RunShellScript"],
              Condition={"Bool": {"aws:SecureTransport": "true"}}))),
    Case("invoke-every-function-despite-resource-tag", "aws", IAM, ROLE_POLICY, role_policy(
        allow("lambda:InvokeFunction", f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:*",
              Condition={"StringEquals": {"aws:ResourceTag/team": "ml"}}))),
    # 3. any account, or near-account-wide names
    Case("assume-named-role-in-any-account", "aws", IAM, ROLE_POLICY,
         role_policy(allow("sts:AssumeRole", "arn:aws:iam::*:role/OrganizationAccountAccessRole"))),
    Case("assume-role-name-prefix", "aws", IAM, ROLE_POLICY,
         role_policy(allow("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/A*"))),
    Case("passrole-36-prefixes", "aws", IAM, ROLE_POLICY, role_policy(
        allow("iam:PassRole", [f"arn:aws:iam::{ACCOUNT}:role/{c}*" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]),
        allow(["lambda:CreateFunction", "lambda:InvokeFunction"], f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:x"))),
    Case("decrypt-key-id-prefix", "aws", IAM, ROLE_POLICY,
         role_policy(allow("kms:Decrypt", f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1*"))),
    Case("get-object-any-account-bucket", "aws", IAM, ROLE_POLICY,
         role_policy(allow("s3:GetObject", "arn:aws:s3:*:*:mlflow-artifacts/*"))),
    # 4. escalation outside iam's attach/put list, on named resources
    Case("sso-assign-permission-set", "aws", IAM, ROLE_POLICY, role_policy(allow(
        ["sso:CreateAccountAssignment", "sso:PutInlinePolicyToPermissionSet", "sso:AttachManagedPolicyToPermissionSet",
         "sso:ProvisionPermissionSet"],
        ["arn:aws:sso:::instance/ssoins-1", "arn:aws:sso:::permissionSet/ssoins-1/ps-1",
         f"arn:aws:sso:::account/{ACCOUNT}"]))),
    Case("identitystore-join-admin-group", "aws", IAM, ROLE_POLICY, role_policy(allow(
        "identitystore:CreateGroupMembership", "arn:aws:identitystore::123456789012:identitystore/d-1"))),
    Case("identity-provider-takeover", "aws", IAM, ROLE_POLICY, role_policy(allow(
        ["iam:UpdateSAMLProvider", "iam:AddClientIDToOpenIDConnectProvider",
         "iam:UpdateOpenIDConnectProviderThumbprint"],
        [f"arn:aws:iam::{ACCOUNT}:saml-provider/corp", GITHUB]))),
    Case("credentials-of-the-admin-user", "aws", IAM, ROLE_POLICY, role_policy(allow(
        ["iam:CreateServiceSpecificCredential", "iam:UpdateAccessKey", "iam:DeactivateMFADevice"],
        f"arn:aws:iam::{ACCOUNT}:user/admin"))),
    Case("s3-star-on-the-artifact-bucket", "aws", IAM, ROLE_POLICY, role_policy(allow(
        "s3:*", ["arn:aws:s3:::mlflow-artifacts-x", "arn:aws:s3:::mlflow-artifacts-x/*"]))),
    Case("key-policy-rewrite-on-a-named-key", "aws", IAM, ROLE_POLICY, role_policy(allow(
        ["kms:PutKeyPolicy", "kms:CreateGrant"], f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0123abcd"))),
    Case("secret-and-function-opened-to-anyone", "aws", IAM, ROLE_POLICY, role_policy(allow(
        ["secretsmanager:PutResourcePolicy", "lambda:AddPermission"],
        [f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:db-AbCdEf",
         f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:f"]))),
    # 5. protocol spellings (terraform-provider-aws's ProtocolForValue)
    Case("sg-rule-protocol-zero-padded", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule("006", cidrIpv4="0.0.0.0/0")),
    Case("sg-rule-protocol-number-as-float", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule(6.0, 5432.0, 5432.0, cidrIpv4="0.0.0.0/0")),
    Case("security-group-rule-protocol-plus-six", "aws", PORT, pack.SECURITY_GROUP_RULE,
         {"type": "ingress", "protocol": "+6", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["0.0.0.0/0"],
          "securityGroupId": "mlflow-platform-database-sg-id"}),
    Case("security-group-inline-protocol-minus-zero-one", "aws", PORT, pack.SECURITY_GROUP,
         {"vpcId": "vpc-1", "ingress": [{"protocol": "-01", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]}),
    Case("sg-rule-protocol-unknown-spelling", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule("tcp6", cidrIpv4="0.0.0.0/0")),
    # the VPC's own IPv6 range is global address space the rule cannot tell from any other (README)
    Case("sg-rule-vpc-own-ipv6-range", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule(cidrIpv6="2600:1f18:1234:5600::/56")),
    # 6. Azure PIM
    pim("azure-native:authorization:PimRoleEligibilitySchedule"),
    pim("azure-native:authorization:RoleEligibilityScheduleRequest", "User Access Administrator"),
    pim("azure:pim/activeRoleAssignment:ActiveRoleAssignment"),
    pim("azure:pim/eligibleRoleAssignment:EligibleRoleAssignment", "Contributor", MANAGEMENT_GROUP),
    pim("azure-native:authorization:RoleAssignmentSchedule"),
    # 7. any API version module, private previews included
    Case("privatepreview-server-public", "azure", PUBLIC, "azure-native:dbforpostgresql/v20210615privatepreview:Server",
         {"network": {"publicNetworkAccess": "Enabled"}}),
    Case("privatepreview-server-bogus-encryption", "azure", STORAGE_ENCRYPTED,
         "azure-native:dbforpostgresql/v20210615privatepreview:Server",
         {"network": {"publicNetworkAccess": "Disabled"}, "dataEncryption": {"type": "Bogus"}}),
    Case("privatepreview-firewall-every-address", "azure", PORT,
         "azure-native:dbforpostgresql/v20210615privatepreview:FirewallRule",
         {"resourceGroupName": "rg", "serverName": "s", "startIpAddress": "0.0.0.0",
          "endIpAddress": "255.255.255.255"}),
    Case("beta-role-assignment-owner", "azure", IAM, "azure-native:authorization/v20220401beta:RoleAssignment",
         assignment("Owner", SUBSCRIPTION)),
    # 8. the classic azure provider
    Case("classic-account-nested-items-public", "azure", STORAGE_PUBLIC, pack.CLASSIC_STORAGE_ACCOUNT,
         classic_account(allowNestedItemsToBePublic=True)),
    Case("classic-account-nested-items-default", "azure", STORAGE_PUBLIC, pack.CLASSIC_STORAGE_ACCOUNT,
         {"resourceGroupName": "mlflow-azure", "accountTier": "Standard", "accountReplicationType": "LRS"}),
    Case("classic-account-http", "azure", TLS, pack.CLASSIC_STORAGE_ACCOUNT,
         classic_account(httpsTrafficOnlyEnabled=False)),
    Case("classic-account-tls-1-0", "azure", TLS, pack.CLASSIC_STORAGE_ACCOUNT,
         classic_account(minTlsVersion="TLS1_0")),
    Case("classic-container-public", "azure", STORAGE_PUBLIC, pack.CLASSIC_STORAGE_CONTAINER,
         {"storageAccountName": "a", "containerAccessType": "container"}),
    Case("classic-flexible-server-public", "azure", PUBLIC, "azure:postgresql/flexibleServer:FlexibleServer",
         {"resourceGroupName": "rg", "publicNetworkAccessEnabled": True}),
    Case("classic-flexible-server-public-by-default", "azure", PUBLIC, "azure:postgresql/flexibleServer:FlexibleServer",
         {"resourceGroupName": "rg", "delegatedSubnetId": "subnet"}),
    Case("classic-cosmos-postgres-firewall", "azure", PORT,
         "azure:cosmosdb/postgresqlFirewallRule:PostgresqlFirewallRule",
         {"clusterId": "c", "startIpAddress": "0.0.0.0", "endIpAddress": "255.255.255.255"}),
    # 9. resource policies for any principal, and what the resource alone says about admins
    Case("key-policy-open", "aws", IAM, "aws:kms/key:Key", {"policy": resource_policy(open_to_anyone("kms:*"))}),
    Case("secret-policy-open", "aws", IAM, "aws:secretsmanager/secretPolicy:SecretPolicy",
         {"secretArn": "arn:aws:secretsmanager:eu-west-1:1:secret:db",
          "policy": resource_policy(open_to_anyone("secretsmanager:GetSecretValue"))}),
    Case("repository-policy-open-push", "aws", IAM, "aws:ecr/repositoryPolicy:RepositoryPolicy",
         {"repository": "mlflow", "policy": resource_policy(
             {"Effect": "Allow", "Principal": "*", "Action": ["ecr:PutImage", "ecr:UploadLayerPart"]})}),
    Case("queue-policy-open", "aws", IAM, "aws:sqs/queuePolicy:QueuePolicy",
         {"queueUrl": "q", "policy": resource_policy(open_to_anyone("sqs:*"))}),
    Case("topic-policy-open-vacuous-condition", "aws", IAM, "aws:sns/topicPolicy:TopicPolicy",
         {"arn": "t", "policy": resource_policy(
             open_to_anyone("sns:Publish", Condition={"Bool": {"aws:SecureTransport": "true"}}))}),
    Case("lambda-permission-any-principal", "aws", IAM, "aws:lambda/permission:Permission",
         {"action": "lambda:InvokeFunction", "function": "f", "principal": "*"}),
    Case("bucket-policy-public-read-beside-tls-deny", "aws", STORAGE_PUBLIC, pack.S3_BUCKET_POLICY,
         {"bucket": "existing-bucket", "policy": resource_policy(
             {**TLS_DENY, "Resource": ["arn:aws:s3:::existing-bucket", "arn:aws:s3:::existing-bucket/*"]},
             {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
              "Resource": "arn:aws:s3:::existing-bucket/*"})}),
    Case("minio-bucket-policy-anonymous", "local", STORAGE_PUBLIC, "minio:index/s3BucketPolicy:S3BucketPolicy",
         {"bucket": "mlflow", "policy": resource_policy(
             {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
              "Resource": ["arn:aws:s3:::mlflow/*"]})}),
    Case("minio-acl-public-write", "local", STORAGE_PUBLIC, pack.MINIO_BUCKET, {"bucket": "b", "acl": "public-write"}),
    Case("minio-console-admin-attached", "local", IAM, "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment",
         {"userName": "mlflow", "policyName": "consoleAdmin"}),
    Case("user-into-administrators", "aws", IAM, "aws:iam/userGroupMembership:UserGroupMembership",
         {"user": "ci", "groups": ["Administrators"]}),
    Case("access-key-for-the-admin-user", "aws", IAM, "aws:iam/accessKey:AccessKey", {"user": "admin"}),
    Case("attach-customer-policy-named-admin", "aws", IAM, ATTACHMENT,
         {"role": "r", "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/AdministratorAccess"}),
    # 10. credentials in DSNs, SAS URLs and command lines, wherever a container keeps its environment
    Case("ecs-env-query-string-password", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        MLFLOW_BACKEND_STORE_URI="postgresql://db.internal:5432/mlflow?user=mlflow&password=hunter2")})),
    Case("ecs-env-keyword-dsn", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        PG_DSN="host=db.internal user=mlflow password=hunter2 dbname=mlflow")})),
    Case("ecs-env-url-password-without-user", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        REDIS_URL="redis://:hunter2@cache:6379/0")})),
    Case("ecs-env-sas-url", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        MLFLOW_ARTIFACTS_URL="https://acct.blob.core.windows.net/mlflow?sv=2022-11-02&sp=rwdl&sig=AbCdEf%2Bsecret%3D")})),
    Case("ecs-env-keys-in-any-case", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"Environment": [
        {"Name": "DB_PASSWORD", "Value": "hunter2"}]})),
    Case("ecs-command-url-password", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"command": [
        "mlflow", "server", "--backend-store-uri", "postgresql://mlflow:hunter2@db:5432/mlflow"]})),
    Case("ecs-command-password-flag", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"command": [
        "psql", "--host", "db", "--password", "hunter2"]})),
    Case("ecs-entrypoint-shell-assignment", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"entryPoint": [
        "sh", "-c", "PGPASSWORD=hunter2 psql -h db -U mlflow"]})),
    Case("container-app-secret-sentinel-query-password", "azure", SECRETS, "azure-native:app:ContainerApp", app(
        {"name": "MLFLOW_BACKEND_STORE_URI",
         "value": {SIG_KEY: SECRET_SIG, "value": "postgresql://db/mlflow?password=hunter2"}})),
    Case("container-app-args-password", "azure", SECRETS, "azure-native:app:ContainerApp",
         app(args=["--db-password=hunter2"])),
    Case("container-group-plain-value", "azure", SECRETS, pack.CONTAINER_GROUP,
         {"resourceGroupName": "rg", "osType": "Linux", "containers": [
             {"name": "m", "image": "i", "environmentVariables": [{"name": "DB_PASSWORD", "value": "hunter2"}]}]}),
    Case("classic-container-app-plain-value", "azure", SECRETS, "azure:containerapp/app:App",
         {"template": {"containers": [{"name": "mlflow", "image": "i", "cpu": 0.5, "memory": "1Gi",
                                       "envs": [{"name": "DB_PASSWORD", "value": "hunter2"}]}]}}),
    Case("docker-env-lower-case-name", "local", SECRETS, pack.DOCKER_CONTAINER,
         {"image": "mlflow", "envs": ["db_password=hunter2"]}),
]

ACCEPTED_ROUND_2 = [
    # 11. the wrong rejections the review found
    Case("app-insights-connection-string", "azure", None, "azure-native:app:ContainerApp", app(
        {"name": "APPLICATIONINSIGHTS_CONNECTION_STRING",
         "value": "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                  "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"})),
    Case("credentials-file-path", "local", None, pack.DOCKER_CONTAINER,
         {"image": "mlflow", "envs": ["GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/gcp.json"]}),
    Case("storage-account-key-vault-any-case", "azure", None, pack.STORAGE_ACCOUNT,
         {"allowBlobPublicAccess": False, "enableHttpsTrafficOnly": True, "minimumTlsVersion": "TLS1_2",
          "encryption": {"keySource": "Microsoft.KeyVault",
                         "keyVaultProperties": {"keyName": "k", "keyVaultUri": "https://v.vault.azure.net"}}}),
    # near misses of the new rules
    Case("native-role-scoped", "aws", None, "aws-native:iam:Role",
         {"assumeRolePolicyDocument": ECS_TRUST,
          "managedPolicyArns": ["arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"],
          "policies": [{"policyName": "read", "policyDocument": {"Version": "2012-10-17", "Statement": [
              allow("s3:GetObject", "arn:aws:s3:::mlflow-artifacts/*")]}}]}),
    Case("native-db-instance-private-encrypted", "aws", None, "aws-native:rds:DbInstance",
         {"engine": "postgres", "dbInstanceClass": "db.t4g.micro", "publiclyAccessible": False,
          "storageEncrypted": True}),
    Case("native-aurora-instance-inherits-encryption", "aws", None, "aws-native:rds:DbInstance",
         {"engine": "aurora-postgresql", "dbInstanceClass": "db.r6g.large", "dbClusterIdentifier": "mlflow"}),
    Case("native-security-group-from-the-vpc", "aws", None, "aws-native:ec2:SecurityGroup",
         {"groupDescription": "db", "securityGroupIngress": [
             {"ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrIp": "10.0.0.0/16"},
             {"ipProtocol": "tcp", "fromPort": 5432, "toPort": 5432, "sourceSecurityGroupId": "sg-apps"}]}),
    Case("native-bucket-guarded", "aws", None, "aws-native:s3:Bucket", native_bucket(), NATIVE_BUCKET_GUARDS),
    Case("native-log-group-kept-a-month", "aws", None, "aws-native:logs:LogGroup",
         {"logGroupName": "/mlflow/native", "retentionInDays": 30}),
    Case("trust-any-principal-of-an-account", "aws", None, pack.IAM_ROLE,
         trust(any_principal({"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}))),
    # (trust-any-principal-with-external-id was accepted here: REJECTED_ROUND_4 refuses it, ExternalId names no one)
    Case("trust-github-one-repository", "aws", None, pack.IAM_ROLE, trust(web_identity(GITHUB, {
        "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                         "token.actions.githubusercontent.com:sub": "repo:example/mlflow-platform:environment:aws"}}))),
    Case("trust-github-one-organization", "aws", None, pack.IAM_ROLE, trust(web_identity(GITHUB, {
        "StringLike": {"token.actions.githubusercontent.com:sub": "repo:example/*"}}))),
    Case("trust-eks-one-service-account", "aws", None, pack.IAM_ROLE, trust(web_identity(EKS, {"StringEquals": {
        "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF:sub": "system:serviceaccount:mlflow:server"}}))),
    Case("trust-saml-provider", "aws", None, pack.IAM_ROLE, trust(
        {"Effect": "Allow", "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:saml-provider/corp"},
         "Action": "sts:AssumeRoleWithSAML",
         "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}}})),
    # function:mlflow-* is a name prefix an action that runs code may not use (REJECTED_ROUND_3); the versions
    # and aliases of one named function may
    Case("invoke-one-function-any-version", "aws", None, ROLE_POLICY,
         role_policy(allow("lambda:InvokeFunction", [f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:mlflow-gc",
                                                     f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:mlflow-gc:*"]))),
    Case("read-identity-center", "aws", None, ROLE_POLICY,
         role_policy(allow(["sso:Describe*", "sso:List*", "identitystore:Get*"], "arn:aws:sso:::instance/ssoins-1"))),
    Case("queue-policy-for-an-event-rule", "aws", None, "aws:sqs/queuePolicy:QueuePolicy",
         {"queueUrl": "q", "policy": resource_policy(open_to_anyone("sqs:SendMessage", Condition={
             "ArnEquals": {"aws:SourceArn": f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/mlflow-gc-failed"}}))}),
    Case("lambda-permission-for-one-bucket", "aws", None, "aws:lambda/permission:Permission",
         {"action": "lambda:InvokeFunction", "function": "f", "principal": "s3.amazonaws.com",
          "sourceArn": "arn:aws:s3:::mlflow-artifacts", "sourceAccount": ACCOUNT}),
    Case("bucket-policy-for-another-account-role", "aws", None, pack.S3_BUCKET_POLICY,
         {"bucket": "existing-bucket", "policy": resource_policy(
             {**TLS_DENY, "Resource": ["arn:aws:s3:::existing-bucket", "arn:aws:s3:::existing-bucket/*"]},
             {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:role/reader"},
              "Action": "s3:GetObject", "Resource": "arn:aws:s3:::existing-bucket/*"})}),
    Case("attach-customer-policy", "aws", None, ATTACHMENT,
         {"role": "r", "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/mlflow-artifacts-readwrite"}),
    Case("user-into-a-team-group", "aws", None, "aws:iam/userGroupMembership:UserGroupMembership",
         {"user": "ci", "groups": ["ml-team"]}),
    Case("sg-rule-protocol-udp-as-number", "aws", None, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule("17", 5432, 5432, cidrIpv4="0.0.0.0/0")),
    Case("azure-owner-on-a-resource-group-through-pim", "azure", None,
         "azure-native:authorization:PimRoleEligibilitySchedule",
         {**assignment("Owner", RESOURCE_GROUP), "principalId": "aefb7652-6736-ca9c-b9e6-685b57c1b926"}),
    Case("azure-policy-for-owner-activation", "azure", None,
         "azure-native:authorization:RoleManagementPolicyAssignment",
         {"scope": SUBSCRIPTION, "roleDefinitionId": OWNER_ID, "policyId": "p"}),
    Case("classic-account-private-blobs", "azure", None, pack.CLASSIC_STORAGE_ACCOUNT, classic_account()),
    Case("classic-flexible-server-private", "azure", None, "azure:postgresql/flexibleServer:FlexibleServer",
         {"resourceGroupName": "rg", "publicNetworkAccessEnabled": False, "delegatedSubnetId": "subnet"}),
    Case("ecs-env-dsn-without-password", "aws", None, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        PG_DSN="host=db.internal user=mlflow dbname=mlflow sslmode=require",
        MLFLOW_BACKEND_STORE_URI_PARAMS="postgresql://db.internal:5432/mlflow?sslmode=require")})),
    Case("ecs-command-reads-the-secret", "aws", None, pack.ECS_TASK_DEFINITION, ecs({"command": [
        "sh", "-c", "PGPASSWORD=\"$(cat /run/secrets/db)\" psql -h db -U mlflow --password-file /run/secrets/db"]})),
    Case("container-group-secure-value", "azure", None, pack.CONTAINER_GROUP,
         {"resourceGroupName": "rg", "osType": "Linux", "containers": [
             {"name": "m", "image": "i",
              "environmentVariables": [{"name": "DB_PASSWORD", "secureValue": "hunter2"}]}]}),
]

# --- the third review's cases (a second red team over gRPC), each generalised to its class ---------------

EVERY_NAME = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_+=.@-"
"""The first characters of every name: 36 (or 68) statements of name/<c>* reach every resource."""
BUCKET = "mlflow-artifacts-x"
BUCKET_GUARDS = (  # what s3-buckets-guarded wants beside a bucket case (each passes every policy)
    (pack.S3_PUBLIC_ACCESS_BLOCK, {"bucket": BUCKET, "blockPublicAcls": True, "blockPublicPolicy": True,
                                   "ignorePublicAcls": True, "restrictPublicBuckets": True}),
    ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
     {"bucket": BUCKET, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}),
    (pack.S3_BUCKET_POLICY, {"bucket": BUCKET, "policy": document(
        {**TLS_DENY, "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]})}),
)
BACKDOOR_ROLE = {"Type": "AWS::IAM::Role", "Properties": {
    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]},
    "ManagedPolicyArns": [ADMIN_POLICY],
    "Policies": [{"PolicyName": "all", "PolicyDocument": ADMIN_DOCUMENT}]}}
SCOPED_ROLE = {"Type": "AWS::IAM::Role", "Properties": {
    "AssumeRolePolicyDocument": ECS_TRUST,
    "ManagedPolicyArns": [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                                      "AmazonECSTaskExecutionRolePolicy"}],
    "Policies": [{"PolicyName": "read", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
        allow("s3:GetObject", {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}/*"})]}}]}}
CLOUDFORMATION_YAML = """AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Trusted:
    Type: String
    Default: "*"
Resources:
  Backdoor:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal:
              AWS: !Ref Trusted
            Action: sts:AssumeRole
      ManagedPolicyArns:
        - !Sub arn:${AWS::Partition}:iam::aws:policy/AdministratorAccess
"""
ROLE_ASSIGNMENTS_TYPE = "Microsoft.Authorization/roleAssignments"


def arm(*resources: dict, **parameters: Any) -> dict:
    return {"$schema": "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#",
            "contentVersion": "1.0.0.0", "parameters": {name: {"type": "string", "defaultValue": value}
                                                         for name, value in parameters.items()},
            "resources": list(resources)}


def arm_assignment(role_definition: str, **extra: Any) -> dict:
    return {"type": ROLE_ASSIGNMENTS_TYPE, "apiVersion": "2022-04-01", "name": "[guid(subscription().id, 'x')]",
            "properties": {"roleDefinitionId": role_definition, "principalId": "aefb7652-6736-ca9c-b9e6-685b57c1b926"},
            **extra}


def probe_app(*headers: dict) -> dict:
    return {"resourceGroupName": "mlflow-azure", "template": {"containers": [
        {"name": "mlflow", "image": "mlflow", "probes": [{"type": "Liveness", "httpGet": {
            "path": "/health", "port": 5000, "httpHeaders": list(headers)}}]}]}}


def tcp_app(ingress: dict) -> dict:
    return {"resourceGroupName": "mlflow-azure", "configuration": {"ingress": ingress},
            "template": {"containers": [{"name": "postgres", "image": "postgres:16"}]}}


def lighthouse(role: str) -> dict:
    return {"scope": SUBSCRIPTION, "properties": {
        "registrationDefinitionName": "ops", "managedByTenantId": "11111111-2222-3333-4444-555555555555",
        "authorizations": [{"principalId": "aefb7652-6736-ca9c-b9e6-685b57c1b926",
                            "roleDefinitionId": ROLES[role]}]}}


DUPLICATE_SID = '{"Version":"2012-10-17","Statement":[{"Sid":"a","Sid":"b","Effect":"Allow","Principal":"*",' \
                '"Action":"sqs:*","Resource":"*"}]}'

REJECTED_ROUND_3 = [
    # 1. a wildcard after a fixed prefix of the name reaches every resource: code on every instance and
    # database, every secret, parameter and bucket
    Case("send-command-every-instance-id", "aws", IAM, ROLE_POLICY, role_policy(allow(
        ["ssm:SendCommand", "ssm:StartSession"],
        [f"arn:aws:ec2:*:{ACCOUNT}:instance/i-*", "arn:aws:ssm:*::document/AWS-RunShellScript",
         "arn:aws:ssm:*::document/SSM-SessionManagerRunShell"]))),
    Case("connect-every-database-user", "aws", IAM, ROLE_POLICY,
         role_policy(allow("rds-db:connect", f"arn:aws:rds-db:*:{ACCOUNT}:dbuser:db-*/*"))),
    Case("connect-every-user-of-one-database", "aws", IAM, ROLE_POLICY,
         role_policy(allow("rds-db:connect", f"arn:aws:rds-db:eu-west-1:{ACCOUNT}:dbuser:db-ABCDEFGHIJKL/*"))),
    Case("ssh-key-to-every-instance-id", "aws", IAM, ROLE_POLICY, role_policy(allow(
        "ec2-instance-connect:SendSSHPublicKey", f"arn:aws:ec2:*:{ACCOUNT}:instance/i-*"))),
    Case("invoke-functions-under-a-prefix", "aws", IAM, ROLE_POLICY,
         role_policy(allow("lambda:InvokeFunction", f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:mlflow-*"))),
    Case("exec-into-every-cluster-prefix", "aws", IAM, ROLE_POLICY, role_policy(allow(
        "ecs:ExecuteCommand", f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task/mlflow*",
        Condition={"StringEquals": {"aws:ResourceTag/team": "ml"}}))),
    Case("secrets-36-prefixes", "aws", IAM, ROLE_POLICY, role_policy(allow(
        "secretsmanager:GetSecretValue", [f"arn:aws:secretsmanager:*:{ACCOUNT}:secret:{c}*" for c in EVERY_NAME]))),
    Case("secret-name-prefix", "aws", IAM, ROLE_POLICY, role_policy(allow(
        "secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:mlflow-*"))),
    Case("parameters-36-prefixes", "aws", IAM, ROLE_POLICY, role_policy(allow(
        "ssm:GetParameters", [f"arn:aws:ssm:*:{ACCOUNT}:parameter/{c}*" for c in EVERY_NAME[:36] + "/"]))),
    Case("every-bucket-by-36-prefixes", "aws", IAM, ROLE_POLICY, role_policy(allow(
        ["s3:GetObject", "s3:PutObject"], [f"arn:aws:s3:::{c}*" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]))),
    Case("bucket-name-prefix-objects", "aws", IAM, ROLE_POLICY,
         role_policy(allow("s3:PutObject", "arn:aws:s3:::mlflow-*/*"))),
    # 6. grants of public access, and credentials, outside the escalation list (also named like one)
    *(Case(f"grants-public-access-{action.replace(':', '-').lower()}", "aws", IAM, ROLE_POLICY,
           role_policy(allow(action, resource))) for action, resource in (
        ("sqs:SetQueueAttributes", f"arn:aws:sqs:eu-west-1:{ACCOUNT}:mlflow-gc"),
        ("sns:SetTopicAttributes", f"arn:aws:sns:eu-west-1:{ACCOUNT}:alerts"),
        ("rds:ModifyDBSnapshotAttribute", f"arn:aws:rds:eu-west-1:{ACCOUNT}:snapshot:mlflow-metadata-final"),
        ("rds:ModifyDBClusterSnapshotAttribute", f"arn:aws:rds:eu-west-1:{ACCOUNT}:cluster-snapshot:mlflow"),
        ("ec2:ModifySnapshotAttribute", "arn:aws:ec2:eu-west-1::snapshot/snap-0123"),
        ("ec2:ModifyImageAttribute", "arn:aws:ec2:eu-west-1::image/ami-0123"),
        ("s3:PutObjectAcl", "arn:aws:s3:::mlflow-artifacts-x/*"),
        ("s3:PutAccessPointPolicy", f"arn:aws:s3:eu-west-1:{ACCOUNT}:accesspoint/mlflow"),
        ("rds:ModifyDBInstance", f"arn:aws:rds:eu-west-1:{ACCOUNT}:db:mlflow-metadata"),
        ("kms:ReplicateKey", f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0123abcd"),
        ("glacier:SetVaultAccessPolicy", f"arn:aws:glacier:eu-west-1:{ACCOUNT}:vaults/mlflow"),
        ("ssm:ModifyDocumentPermission", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:document/mlflow-setup"),
        ("mediastore:PutContainerPolicy", f"arn:aws:mediastore:eu-west-1:{ACCOUNT}:container/mlflow"))),
    # 2. templates deployed by CloudFormation or ARM are read, their resources judged as their types
    Case("cloudformation-stack-json-backdoor-role", "aws", IAM, "aws:cloudformation/stack:Stack",
         {"name": "helper", "capabilities": ["CAPABILITY_IAM"],
          "templateBody": json.dumps({"Resources": {"Backdoor": BACKDOOR_ROLE}})}),
    Case("cloudformation-stack-yaml-short-tags", "aws", IAM, "aws:cloudformation/stack:Stack",
         {"name": "helper", "templateBody": CLOUDFORMATION_YAML}),
    Case("native-cloudformation-stack-backdoor-role", "aws", IAM, "aws-native:cloudformation:Stack",
         {"templateBody": json.dumps({"Resources": {"Backdoor": BACKDOOR_ROLE}})}),
    Case("cloudformation-stack-set-in-a-stack", "aws", IAM, "aws:cloudformation/stack:Stack",
         {"name": "helper", "templateBody": json.dumps({"Resources": {"Everywhere": {
             "Type": "AWS::CloudFormation::StackSet", "Properties": {
                 "StackSetName": "x", "PermissionModel": "SELF_MANAGED",
                 "TemplateBody": json.dumps({"Resources": {"Backdoor": BACKDOOR_ROLE}})}}}})}),
    Case("cloudformation-stack-template-url", "aws", IAM, "aws:cloudformation/stack:Stack",
         {"name": "helper", "templateUrl": "https://s3.amazonaws.com/bucket/backdoor.yaml"}),
    Case("cloudformation-stack-duplicate-key", "aws", IAM, "aws:cloudformation/stack:Stack",
         {"name": "helper", "templateBody": '{"Resources": {}, "Resources": {"Backdoor": '
                                            + json.dumps(BACKDOOR_ROLE) + "}}"}),
    Case("cloudformation-sam-function-administrator", "aws", IAM, "aws:cloudformation/stack:Stack",
         {"name": "helper", "templateBody": json.dumps({"Transform": "AWS::Serverless-2016-10-31", "Resources": {
             "Fn": {"Type": "AWS::Serverless::Function", "Properties": {
                 "Runtime": "python3.12", "Handler": "app.handler", "Policies": ["AdministratorAccess"]}}}})}),
    Case("cloudformation-public-database", "aws", PUBLIC, "aws:cloudformation/stack:Stack",
         {"name": "db", "templateBody": json.dumps({"Resources": {"Db": {"Type": "AWS::RDS::DBInstance", "Properties": {
             "Engine": "postgres", "DBInstanceClass": "db.t4g.micro", "StorageEncrypted": True,
             "PubliclyAccessible": {"Fn::If": ["Public", True, False]}}}}})}),
    Case("arm-public-flexible-server", "azure", PUBLIC, "azure-native:resources:Deployment",
         {"resourceGroupName": "mlflow-azure", "properties": {"mode": "Incremental", "template": arm({
             "type": "Microsoft.DBforPostgreSQL/flexibleServers", "apiVersion": "2024-08-01", "name": "db",
             "location": "westeurope", "properties": {"version": "16", "network": {
                 "publicNetworkAccess": "Enabled"}}})}}),
    Case("arm-subscription-deployment-owner", "azure", IAM, "azure-native:resources:DeploymentAtSubscriptionScope",
         {"location": "westeurope", "properties": {"mode": "Incremental", "template": arm(
             arm_assignment(OWNER_ID))}}),
    Case("arm-owner-by-parameter-in-an-expression", "azure", IAM,
         "azure-native:resources:DeploymentAtManagementGroupScope",
         {"groupId": "platform", "location": "westeurope", "properties": {"mode": "Incremental", "template": arm(
             arm_assignment("[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', parameters('role'))]"),
             role=ROLES["Owner"])}}),
    Case("arm-nested-deployment-to-a-subscription", "azure", IAM, "azure-native:resources:Deployment",
         {"resourceGroupName": "mlflow-azure", "properties": {"mode": "Incremental", "template": arm({
             "type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "up",
             "subscriptionId": "00000000-1111-2222-3333-444444444444", "location": "westeurope",
             "properties": {"mode": "Incremental", "template": arm(arm_assignment(ROLES["Contributor"]))}})}}),
    Case("classic-subscription-template-uaa", "azure", IAM,
         "azure:core/subscriptionTemplateDeployment:SubscriptionTemplateDeployment",
         {"location": "westeurope", "templateContent": json.dumps(arm(arm_assignment(
             f"/providers/Microsoft.Authorization/roleDefinitions/{ROLES['User Access Administrator']}")))}),
    Case("arm-custom-role-star", "azure", IAM, "azure-native:resources:DeploymentAtSubscriptionScope",
         {"location": "westeurope", "properties": {"mode": "Incremental", "template": arm({
             "type": "Microsoft.Authorization/roleDefinitions", "apiVersion": "2022-04-01", "name": "god",
             "properties": {"roleName": "god", "permissions": [{"actions": ["*"]}],
                            "assignableScopes": [SUBSCRIPTION]}})}}),
    Case("arm-template-link", "azure", IAM, "azure-native:resources:DeploymentAtSubscriptionScope",
         {"location": "westeurope", "properties": {"mode": "Incremental",
                                                   "templateLink": {"uri": "https://example.com/t.json"}}}),
    # 3. the classic provider's role/ module (before v3.0); PIM self-activation; an ARM-style id
    Case("classic-role-module-owner", "azure", IAM, "azure:role/assignment:Assignment",
         {"scope": SUBSCRIPTION, "roleDefinitionName": "Owner", "principalId": "p"}),
    Case("classic-role-module-custom-star", "azure", IAM, "azure:role/definition:Definition",
         {"name": "god", "scope": SUBSCRIPTION, "permissions": [{"actions": ["*"]}],
          "assignableScopes": [SUBSCRIPTION]}),
    Case("role-definition-id-with-api-version", "azure", IAM, ROLE_ASSIGNMENT,
         {**assignment("Owner", SUBSCRIPTION), "roleDefinitionId": OWNER_ID + "?api-version=2022-04-01"}),
    Case("custom-role-activates-itself-through-pim", "azure", IAM, ROLE_DEFINITION, role_definition(
        ["Microsoft.Authorization/roleAssignmentScheduleRequests/write",
         "Microsoft.Authorization/roleManagementPolicies/write"], SUBSCRIPTION)),
    Case("lighthouse-contributor-on-subscription", "azure", IAM,
         "azure-native:managedservices:RegistrationDefinition", lighthouse("Contributor")),
    # 4. an OIDC subject pattern that names no owner or namespace
    *(Case(f"trust-github-sub-{index}", "aws", IAM, pack.IAM_ROLE, trust(web_identity(GITHUB, {
        "StringLike": {"token.actions.githubusercontent.com:sub": sub}, "StringEquals": AUDIENCE})))
      for index, sub in enumerate(("r*", "repo*", "rep?:*", "repo:*/*", "repo:ex*"))),
    *(Case(f"trust-eks-sub-{index}", "aws", IAM, pack.IAM_ROLE, trust(web_identity(EKS, {"StringLike": {
        "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF:sub": sub}})))
      for index, sub in enumerate(("system:*", "system:serviceaccount*", "s*", "system:serviceaccount:ml*"))),
    Case("trust-github-workflow-any-owner", "aws", IAM, pack.IAM_ROLE, trust(web_identity(GITHUB, {
        "StringLike": {"token.actions.githubusercontent.com:job_workflow_ref": "*/.github/workflows/deploy.yml@*"},
        "StringEquals": AUDIENCE}))),
    Case("trust-google-any-client", "aws", IAM, pack.IAM_ROLE, trust(web_identity("accounts.google.com", {
        "StringLike": {"accounts.google.com:aud": "*.apps.googleusercontent.com"}}))),
    # 5. a resource policy that names a key twice is reported, not skipped
    Case("queue-policy-duplicate-sid", "aws", IAM, "aws:sqs/queuePolicy:QueuePolicy",
         {"queueUrl": "q", "policy": DUPLICATE_SID}),
    Case("key-policy-duplicate-version", "aws", IAM, "aws:kms/key:Key", {"policy": DUPLICATE_SID.replace(
        '"Version":"2012-10-17"', '"Version":"2012-10-17","Version":"2012-10-17"').replace('"Sid":"b",', "")}),
    Case("secret-policy-duplicate-sid", "aws", IAM, "aws:secretsmanager/secretPolicy:SecretPolicy",
         {"secretArn": "s", "policy": DUPLICATE_SID.replace("sqs:*", "secretsmanager:GetSecretValue")}),
    Case("native-policy-statement-in-two-cases", "aws", IAM, "aws-native:iam:ManagedPolicy",
         {"policyDocument": {"Version": "2012-10-17", "Statement": [allow("s3:GetObject", "arn:aws:s3:::b/*")],
                             "statement": [allow("*", "*")]}, "roles": ["r"]}),
    Case("topic-policy-statement-list-nested", "aws", IAM, "aws:sns/topicPolicy:TopicPolicy",
         {"arn": "t", "policy": json.dumps({"Version": "2012-10-17", "Statement": [[open_to_anyone("sns:*")]]})}),
    # 11. permissions for any principal
    Case("layer-permission-any-principal", "aws", IAM, "aws:lambda/layerVersionPermission:LayerVersionPermission",
         {"layerName": "l", "versionNumber": 1, "principal": "*", "action": "lambda:GetLayerVersion",
          "statementId": "s"}),
    Case("organization-resource-policy-any-principal", "aws", IAM, "aws:organizations/resourcePolicy:ResourcePolicy",
         {"content": document({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": [
             "organizations:CreatePolicy", "organizations:AttachPolicy"], "Resource": "*"})}),
    Case("event-bus-permission-any-principal", "aws", IAM, "aws:cloudwatch/eventPermission:EventPermission",
         {"principal": "*", "statementId": "all"}),
    # 7. ECS keys that differ only in case
    Case("ecs-environment-in-two-cases", "aws", SECRETS, pack.ECS_TASK_DEFINITION, {
        "family": "f", "containerDefinitions": '[{"name":"mlflow","image":"mlflow","Environment":[],'
                                              '"environment":[{"name":"DB_PASSWORD","value":"hunter2"}]}]'}),
    Case("ecs-env-entry-name-in-two-cases", "aws", SECRETS, pack.ECS_TASK_DEFINITION, {
        "family": "f", "containerDefinitions": '[{"name":"mlflow","image":"mlflow","environment":'
                                              '[{"Name":"X","name":"DB_PASSWORD","value":"hunter2"}]}]'}),
    Case("native-ecs-environment-in-two-cases", "aws", SECRETS, "aws-native:ecs:TaskDefinition", {
        "containerDefinitions": [{"name": "mlflow", "image": "mlflow", "Environment": [],
                                  "environment": env(DB_PASSWORD="hunter2")}]}),
    # 8. secret shapes: a password with a slash, health checks, probe headers, header lists
    Case("ecs-env-url-password-with-slash", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        MLFLOW_BACKEND_STORE_URI="postgresql://mlflow:hunter2/x@db.internal:5432/mlflow")})),
    Case("ecs-health-check-password", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"healthCheck": {"command": [
        "CMD-SHELL", "PGPASSWORD=hunter2 pg_isready -h db -U mlflow && curl -f http://admin:hunter2@localhost:5000/"]}})),
    Case("docker-health-check-password", "local", SECRETS, pack.DOCKER_CONTAINER, {"image": "postgres", "healthcheck": {
        "tests": ["CMD-SHELL", "PGPASSWORD=hunter2 pg_isready -U mlflow"]}}),
    Case("container-app-probe-basic-auth", "azure", SECRETS, "azure-native:app:ContainerApp",
         probe_app({"name": "Authorization", "value": "Basic YWRtaW46aHVudGVyMg=="})),
    Case("container-group-probe-api-key", "azure", SECRETS, pack.CONTAINER_GROUP, {
        "resourceGroupName": "rg", "osType": "Linux", "containers": [{"name": "m", "image": "i", "livenessProbe": {
            "httpGet": {"path": "/health", "port": 5000,
                        "httpHeaders": [{"name": "X-Api-Key", "value": "k3y-0123"}]}}}]}),
    Case("ecs-env-otel-bearer-header", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer glc_eyJvIjoiMTIzIn0=")})),
    Case("ecs-env-header-list-api-key", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        OTEL_EXPORTER_OTLP_HEADERS="x-tenant=ml,x-api-key=0123456789abcdef")})),
    # 9. a TLS-only Deny that denies nothing for everyone else; public grants on buckets and objects
    Case("tls-deny-narrowed-to-one-account", "aws", TLS, pack.S3_BUCKET_POLICY, {"bucket": BUCKET, "policy": document(
        {**TLS_DENY, "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
         "Condition": {"Bool": {"aws:SecureTransport": "false"},
                       "StringEquals": {"aws:PrincipalAccount": "999999999999"}}})}),
    Case("tls-deny-except-one-principal", "aws", TLS, pack.S3_BUCKET_POLICY, {"bucket": BUCKET, "policy": document(
        {**{name: value for name, value in TLS_DENY.items() if name != "Principal"},
         "NotPrincipal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]})}),
    Case("bucket-grants-all-users", "aws", STORAGE_PUBLIC, "aws:s3/bucket:Bucket", {"bucket": BUCKET, "grants": [
        {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers", "permissions": ["READ"]}]},
         BUCKET_GUARDS),
    Case("object-public-read", "aws", STORAGE_PUBLIC, "aws:s3/bucketObjectv2:BucketObjectv2",
         {"bucket": BUCKET, "key": "model.pkl", "acl": "public-read"}),
    Case("object-copy-grants-authenticated-users", "aws", STORAGE_PUBLIC, "aws:s3/objectCopy:ObjectCopy",
         {"bucket": BUCKET, "key": "model.pkl", "source": f"{BUCKET}/m.pkl", "grants": [
             {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
              "permissions": ["READ"]}]}),
    Case("account-public-access-block-off", "aws", STORAGE_PUBLIC,
         "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock",
         {"blockPublicAcls": False, "blockPublicPolicy": False, "ignorePublicAcls": False,
          "restrictPublicBuckets": False}),
    Case("access-point-block-off", "aws", STORAGE_PUBLIC, "aws:s3/accessPoint:AccessPoint", {
        "bucket": BUCKET, "name": "ap", "publicAccessBlockConfiguration": {"blockPublicPolicy": False}}),
    # 10. a database port published to the internet by a container platform
    Case("docker-postgres-published-on-every-address", "local", PORT, pack.DOCKER_CONTAINER,
         {"image": "postgres:16", "ports": [{"internal": 5432, "external": 5432}]}),
    Case("docker-mysql-published-on-a-public-address", "local", PORT, pack.DOCKER_CONTAINER,
         {"image": "mysql:8", "ports": [{"internal": 3306, "external": 13306, "ip": "203.0.113.7"}]}),
    Case("container-app-external-tcp-5432", "azure", PORT, "azure-native:app:ContainerApp", tcp_app(
        {"external": True, "transport": "Tcp", "targetPort": 5432, "exposedPort": 5432})),
    Case("container-app-additional-port-5432", "azure", PORT, "azure-native:app:ContainerApp", tcp_app(
        {"external": True, "transport": "http", "targetPort": 8080,
         "additionalPortMappings": [{"external": True, "targetPort": 5432}]})),
    Case("container-group-public-5432", "azure", PORT, pack.CONTAINER_GROUP, {
        "resourceGroupName": "rg", "osType": "Linux", "ipAddress": {"type": "Public", "ports": [{"port": 5432}]},
        "containers": [{"name": "db", "image": "postgres:16", "ports": [{"port": 5432}]}]}),
]

ACCEPTED_ROUND_3 = [
    # near misses of the name rules: the name spelled out up to a delimiter
    Case("scoped-names-after-a-spelled-out-name", "aws", None, ROLE_POLICY, role_policy(
        allow("ssm:GetParametersByPath", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/mlflow/*"),
        allow("rds-db:connect", f"arn:aws:rds-db:eu-west-1:{ACCOUNT}:dbuser:db-ABCDEFGHIJKL/mlflow"),
        allow("ssm:SendCommand", [f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/i-0123456789abcdef0",
                                  "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript"]),
        allow("ecs:ExecuteCommand", f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task/mlflow-aws/*"),
        allow(["s3:GetObject", "s3:PutObject"], "arn:aws:s3:::mlflow-artifacts-20261126abcdef/runs-*"))),
    Case("read-queue-and-snapshot-attributes", "aws", None, ROLE_POLICY, role_policy(allow(
        ["sqs:GetQueueAttributes", "rds:DescribeDBSnapshotAttributes", "s3:GetObjectAcl"],
        [f"arn:aws:sqs:eu-west-1:{ACCOUNT}:mlflow-gc", f"arn:aws:rds:eu-west-1:{ACCOUNT}:snapshot:mlflow",
         "arn:aws:s3:::mlflow-artifacts-x/*"]))),
    Case("scaling-and-lifecycle-policies", "aws", None, ROLE_POLICY, role_policy(allow(
        ["application-autoscaling:PutScalingPolicy", "ecr:PutLifecyclePolicy"],
        [f"arn:aws:application-autoscaling:eu-west-1:{ACCOUNT}:scalable-target/0123",
         f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/mlflow-aws/mlflow-server"]))),
    # templates whose resources keep the promises
    Case("cloudformation-stack-scoped-role", "aws", None, "aws:cloudformation/stack:Stack",
         {"name": "helper", "parameters": {"Bucket": "mlflow-artifacts-x"}, "templateBody": json.dumps({
             "Parameters": {"Bucket": {"Type": "String"}}, "Resources": {"TaskRole": SCOPED_ROLE},
             "Outputs": {"Arn": {"Value": {"Fn::GetAtt": ["TaskRole", "Arn"]}}}})}),
    Case("arm-resource-group-deployment-contributor", "azure", None, "azure-native:resources:Deployment",
         {"resourceGroupName": "mlflow-azure", "properties": {"mode": "Incremental", "template": arm(
             arm_assignment(f"[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
                            f"'{ROLES['Contributor']}')]"))}}),
    Case("arm-subscription-deployment-reader", "azure", None, "azure-native:resources:DeploymentAtSubscriptionScope",
         {"location": "westeurope", "properties": {"mode": "Incremental", "template": arm(
             arm_assignment(f"/providers/Microsoft.Authorization/roleDefinitions/{ROLES['Reader']}"))}}),
    # Azure near misses
    Case("classic-role-module-reader", "azure", None, "azure:role/assignment:Assignment",
         {"scope": SUBSCRIPTION, "roleDefinitionName": "Reader", "principalId": "p"}),
    Case("custom-role-reads-pim", "azure", None, ROLE_DEFINITION, role_definition(
        ["Microsoft.Authorization/roleAssignmentScheduleRequests/read"], SUBSCRIPTION)),
    Case("lighthouse-reader-on-subscription", "azure", None, "azure-native:managedservices:RegistrationDefinition",
         lighthouse("Reader")),
    # subjects spelled out
    Case("trust-eks-one-namespace", "aws", None, pack.IAM_ROLE, trust(web_identity(EKS, {"StringLike": {
        "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF:sub": "system:serviceaccount:mlflow:*"}}))),
    Case("trust-gitlab-one-group", "aws", None, pack.IAM_ROLE, trust(web_identity(
        f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.com",
        {"StringLike": {"gitlab.com:sub": "project_path:ml-platform/mlflow:ref_type:branch:ref:*"}}))),
    # 12. the wrong rejections the review found
    Case("google-trust-by-client-id", "aws", None, pack.IAM_ROLE, trust(web_identity("accounts.google.com", {
        "StringEquals": {"accounts.google.com:aud": "123456789-abc.apps.googleusercontent.com"}}))),
    Case("github-trust-by-workflow", "aws", None, pack.IAM_ROLE, trust(web_identity(GITHUB, {"StringEquals": {
        **AUDIENCE, "token.actions.githubusercontent.com:job_workflow_ref":
            "example/mlflow-platform/.github/workflows/deploy.yml@refs/heads/main"}}))),
    Case("jwt-public-key-pem", "aws", None, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        OIDC_JWT_PUBLIC_KEY="-----BEGIN PUBLIC KEY-----\nMFkwEwYH...\n-----END PUBLIC KEY-----",
        CA_BUNDLE_KEY="-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----")})),
    Case("tls-key-paths", "local", None, pack.DOCKER_CONTAINER, {"image": "nginx", "envs": [
        "NGINX_SSL_KEY=/run/secrets/tls.key", "SSL_CERT_KEY=/etc/nginx/tls/key.pem"]}),
    Case("flexible-server-system-managed-keys", "azure", None, pack.FLEXIBLE_SERVER,
         {"network": {"publicNetworkAccess": "Disabled"}, "dataEncryption": {"type": "SystemManaged"}}),
    Case("tls-deny-with-principal-list", "aws", None, pack.S3_BUCKET_POLICY, {"bucket": BUCKET, "policy": document(
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": ["*"]}, "Action": ["s3:*"],
         "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
         "Condition": {"Bool": {"aws:SecureTransport": False}}})}),
    Case("alb-log-bucket-policy", "aws", None, pack.S3_BUCKET_POLICY, {"bucket": "alb-logs", "policy": document(
        {**TLS_DENY, "Resource": ["arn:aws:s3:::alb-logs", "arn:aws:s3:::alb-logs/*"]},
        {"Effect": "Allow", "Principal": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
         "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::alb-logs/AWSLogs/{ACCOUNT}/*"})}),
    # near misses of the new secret shapes
    Case("health-checks-without-credentials", "aws", None, pack.ECS_TASK_DEFINITION, ecs({
        "environment": env(OTEL_EXPORTER_OTLP_HEADERS="x-tenant=ml-team", MLFLOW_URL="https://mlflow.example.com:443/"),
        "healthCheck": {"command": ["CMD-SHELL", "pg_isready -h db -U mlflow && curl -f http://localhost:5000/"]}})),
    Case("probe-with-a-plain-header", "azure", None, "azure-native:app:ContainerApp",
         probe_app({"name": "X-Probe", "value": "liveness"})),
    # permissions narrowed to an organization
    Case("layer-permission-for-the-organization", "aws", None,
         "aws:lambda/layerVersionPermission:LayerVersionPermission",
         {"layerName": "l", "versionNumber": 1, "principal": "*", "action": "lambda:GetLayerVersion",
          "statementId": "s", "organizationId": "o-abc123"}),
    Case("organization-resource-policy-for-the-organization", "aws", None,
         "aws:organizations/resourcePolicy:ResourcePolicy", {"content": document(
             {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "organizations:Describe*", "Resource": "*",
              "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}})}),
    # storage near misses
    Case("object-private", "aws", None, "aws:s3/bucketObjectv2:BucketObjectv2",
         {"bucket": BUCKET, "key": "model.pkl", "acl": "private"}),
    Case("account-public-access-block-on", "aws", None, "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock",
         {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
          "restrictPublicBuckets": True}),
    # database ports that stay private
    Case("docker-postgres-on-loopback", "local", None, pack.DOCKER_CONTAINER,
         {"image": "postgres:16", "ports": [{"internal": 5432, "external": 5432, "ip": "127.0.0.1"}]}),
    Case("container-app-internal-tcp-5432", "azure", None, "azure-native:app:ContainerApp", tcp_app(
        {"external": False, "transport": "tcp", "targetPort": 5432, "exposedPort": 5432})),
    Case("container-app-external-tcp-from-the-vnet", "azure", None, "azure-native:app:ContainerApp", tcp_app(
        {"external": True, "transport": "tcp", "targetPort": 5432, "exposedPort": 5432, "ipSecurityRestrictions": [
            {"name": "vnet", "action": "Allow", "ipAddressRange": "10.0.0.0/16"}]})),
]

# --- the fourth review's cases (a third red team over gRPC), each generalised to its class ----------------


def escaped(text: str, *names: str) -> str:
    """JSON text with these keys spelled with a \\u escape of their first letter (\\u0053tatement): every JSON
    reader decodes them to the same key."""
    for name in names:
        text = text.replace(f'"{name}"', f'"\\u{ord(name[0]):04x}{name[1:]}"')
    return text


def escaped_document(*statements: dict, keys: tuple[str, ...] = ("Statement",)) -> str:
    return escaped(document(*statements), *keys)


def stack(template: dict | str, **extra: Any) -> dict:
    """An aws:cloudformation/stack of this template (JSON text unless given as text)."""
    return {"name": "helper", "templateBody": template if isinstance(template, str) else json.dumps(template), **extra}


def db_instance(**properties: Any) -> dict:
    return {"Type": "AWS::RDS::DBInstance", "Properties": {
        "Engine": "postgres", "DBInstanceClass": "db.t4g.micro", "AllocatedStorage": "20", "StorageEncrypted": True,
        "DBSubnetGroupName": "mlflow-db-subnets", **properties}}


def role(*managed: Any, **properties: Any) -> dict:
    return {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": ECS_TRUST,
                                                     "ManagedPolicyArns": list(managed), **properties}}


def ingress(cidr: Any, port: int = 5432) -> dict:
    return {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
        "GroupId": "sg-db", "IpProtocol": "tcp", "FromPort": port, "ToPort": port, "CidrIp": cidr}}


def region_map(**values: dict) -> dict:
    """Mappings keyed by region: us-east-1 (the region the pack would have assumed) harmless, eu-west-1 not."""
    return {"Exposure": values}


def by_region(name: str) -> dict:
    return {"Fn::FindInMap": ["Exposure", {"Ref": "AWS::Region"}, name]}


def conditions(*names: str) -> dict:
    return {name: {"Fn::Equals": [{"Ref": "Env"}, name]} for name in names}


ENV_PARAMETER = {"Env": {"Type": "String", "Default": "dev"}}
MANAGED = "arn:aws:iam::aws:policy/"
TASK_EXECUTION_POLICY = f"{MANAGED}service-role/AmazonECSTaskExecutionRolePolicy"
PERMISSION_SET = "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-0123456789abcdef"
IDENTITY_CENTER = {"instanceArn": "arn:aws:sso:::instance/ssoins-1234567890abcdef",
                   "principalId": "94482488-3041-7026-18f5-000000000000", "principalType": "USER",
                   "targetId": ACCOUNT, "targetType": "AWS_ACCOUNT"}
ADMINISTRATORS_GROUP = "9067b8a2-0011-70c9-1f2b-000000000000"
ARM_ROLE_DEFINITIONS = "Microsoft.Authorization/roleDefinitions"


def arm_custom_role(permissions: Any, scopes: Any = "[subscription().id]") -> dict:
    return {"type": ARM_ROLE_DEFINITIONS, "apiVersion": "2022-04-01", "name": "[guid('ops')]",
            "properties": {"roleName": "mlflow-ops", "assignableScopes": as_scopes(scopes),
                           "permissions": permissions}}


def as_scopes(scopes: Any) -> Any:
    return [scopes] if isinstance(scopes, str) else scopes


def subscription_deployment(*resources: dict, **properties: Any) -> dict:
    return {"location": "westeurope", "properties": {"mode": "Incremental", "template": arm(*resources),
                                                     **properties}}


def container(**definition: Any) -> dict:
    return ecs({"image": "postgres:16", **definition})


def health(*command: str) -> dict:
    return container(healthCheck={"command": list(command)})


KMS_VIA_S3 = {"Sid": "ViaS3", "Effect": "Allow", "Principal": {"AWS": "*"},
              "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"], "Resource": "*",
              "Condition": {"StringEquals": {"kms:CallerAccount": ACCOUNT,
                                             "kms:ViaService": "s3.eu-west-1.amazonaws.com"}}}
KEY_ADMINS = {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
              "Action": "kms:*", "Resource": "*"}
PUBLIC_READ = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}
BUCKET_TLS_DENY = {**TLS_DENY, "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}

REJECTED_ROUND_4 = [
    # 1. a \u-escaped key hides nothing: JSON text is parsed and judged by what it holds, for every service
    Case("escaped-bucket-policy-public-read-beside-tls-deny", "aws", STORAGE_PUBLIC, pack.S3_BUCKET_POLICY,
         {"bucket": BUCKET, "policy": escaped_document(BUCKET_TLS_DENY, PUBLIC_READ)}),
    Case("escaped-key-policy-open", "aws", IAM, "aws:kms/key:Key",
         {"policy": document(open_to_anyone("kms:*")).replace('"Statement"', '"St\\u0061tement"')}),
    Case("escaped-secret-policy-open", "aws", IAM, "aws:secretsmanager/secretPolicy:SecretPolicy",
         {"secretArn": f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:mlflow-db-AbCdEf", "policy":
          escaped_document({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "secretsmanager:GetSecretValue",
                            "Resource": "*"})}),
    Case("escaped-queue-policy-open", "aws", IAM, "aws:sqs/queuePolicy:QueuePolicy",
         {"queueUrl": "https://sqs/q", "policy": escaped_document(open_to_anyone("sqs:*"))}),
    Case("escaped-topic-policy-open", "aws", IAM, "aws:sns/topicPolicy:TopicPolicy",
         {"arn": "t", "policy": escaped_document(open_to_anyone("sns:Publish"))}),
    Case("escaped-repository-policy-open-push", "aws", IAM, "aws:ecr/repositoryPolicy:RepositoryPolicy",
         {"repository": "mlflow", "policy": escaped_document({"Effect": "Allow", "Principal": "*", "Action": [
             "ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
             "ecr:BatchCheckLayerAvailability"]})}),
    Case("escaped-minio-bucket-policy-anonymous", "local", STORAGE_PUBLIC, "minio:index/s3BucketPolicy:S3BucketPolicy",
         {"bucket": "mlflow", "policy": escaped_document(
             {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": ["s3:GetObject"],
              "Resource": ["arn:aws:s3:::mlflow/*"]})}),
    Case("escaped-opensearch-domain-policy-open", "aws", IAM, "aws:opensearch/domainPolicy:DomainPolicy",
         {"domainName": "logs", "accessPolicies": escaped_document(open_to_anyone("es:*"))}),
    Case("escaped-backup-vault-policy-open", "aws", IAM, "aws:backup/vaultPolicy:VaultPolicy",
         {"backupVaultName": "v", "policy": escaped_document(open_to_anyone("backup:*"))}),
    *(Case(f"escaped-{type_.split(':')[1].replace('/', '-').lower()}-open", "aws", policy, type_,
           {**inputs, prop: escaped_document(open_to_anyone(action))})
      for type_, prop, action, policy, inputs in (
          ("aws:cloudwatch/logResourcePolicy:LogResourcePolicy", "policyDocument", "logs:PutLogEvents", IAM,
           {"policyName": "p"}),
          ("aws:efs/fileSystemPolicy:FileSystemPolicy", "policy", "elasticfilesystem:ClientMount", IAM,
           {"fileSystemId": "fs-1"}),
          ("aws:apigateway/restApiPolicy:RestApiPolicy", "policy", "execute-api:Invoke", IAM, {"restApiId": "a"}),
          ("aws:ecr/registryPolicy:RegistryPolicy", "policy", "ecr:ReplicateImage", IAM, {}),
          ("aws:cloudwatch/eventBusPolicy:EventBusPolicy", "policy", "events:PutEvents", IAM, {}),
          ("aws:dynamodb/resourcePolicy:ResourcePolicy", "policy", "dynamodb:GetItem", IAM, {"resourceArn": "t"}),
          ("aws:sqs/queue:Queue", "policy", "sqs:ReceiveMessage", IAM, {"name": "q"}),
          ("aws:sns/topic:Topic", "policy", "sns:Subscribe", IAM, {"name": "t"}),
          ("aws:secretsmanager/secret:Secret", "policy", "secretsmanager:GetSecretValue", IAM, {"name": "s"}),
          ("aws:kms/replicaKey:ReplicaKey", "policy", "kms:Decrypt", IAM, {"primaryKeyArn": "k"}),
          ("aws:s3control/accessPointPolicy:AccessPointPolicy", "policy", "s3:GetObject", STORAGE_PUBLIC,
           {"accessPointArn": f"arn:aws:s3:eu-west-1:{ACCOUNT}:accesspoint/mlflow"}),
          ("aws:codeartifact/repositoryPermissionsPolicy:RepositoryPermissionsPolicy", "policyDocument",
           "codeartifact:ReadFromRepository", IAM, {"domain": "d", "repository": "r"}))),
    Case("escaped-every-element", "aws", IAM, "aws:sqs/queuePolicy:QueuePolicy",
         {"queueUrl": "q", "policy": escaped_document(open_to_anyone("sqs:*"),
                                                      keys=("Statement", "Effect", "Principal", "Action"))}),
    Case("escaped-statement-named-twice", "aws", IAM, "aws:kms/key:Key", {"policy": (
        '{"Version": "2012-10-17", "Statement": [], "\\u0053tatement": '
        + json.dumps([open_to_anyone("kms:*")]) + "}")}),
    Case("escaped-document-inside-json-text", "aws", IAM, "aws:glue/resourcePolicy:ResourcePolicy",
         {"policy": json.dumps({"wrapper": {"deeper": json.loads(escaped_document(open_to_anyone("glue:*")))}})
          .replace('"Statement"', '"\\u0053tatement"')}),
    Case("byte-order-mark-before-a-key-policy", "aws", IAM, "aws:kms/key:Key",
         {"policy": "\ufeff" + document(open_to_anyone("kms:*"))}),
    Case("escaped-identity-policy-star", "aws", IAM, "aws:iam/policy:Policy",
         {"policy": escaped_document(allow("*", "*"), keys=("Statement", "Action", "Resource"))}),
    # 2. a template expanded from elsewhere (AWS::Include, a macro, a module, a SAM application) is not read
    Case("cloudformation-include-from-another-bucket", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {"Fn::Transform": {
            "Name": "AWS::Include", "Parameters": {"Location": "s3://someone-else/admin-role.yaml"}}}},
        capabilities=["CAPABILITY_AUTO_EXPAND", "CAPABILITY_NAMED_IAM"])),
    Case("cloudformation-macro-transform", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Transform": ["AdminMacro"], "Resources": {"Q": {"Type": "AWS::SQS::Queue"}}},
        capabilities=["CAPABILITY_AUTO_EXPAND"])),
    Case("cloudformation-macro-with-parameters", "aws", IAM, "aws-native:cloudformation:Stack", {"templateBody": {
        "Transform": [{"Name": "AdminMacro", "Parameters": {"x": "y"}}, "AWS::Serverless-2016-10-31"],
        "Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}}),
    Case("cloudformation-language-extensions", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Transform": "AWS::LanguageExtensions", "Resources": {"Fn::ForEach::Roles": [
            "Name", ["A"], {"${Name}": BACKDOOR_ROLE}]}})),
    Case("cloudformation-transform-in-properties", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"Fn::Transform": {
            "Name": "AWS::Include", "Parameters": {"Location": "s3://someone-else/role-properties.yaml"}}}}}})),
    Case("cloudformation-yaml-transform-tag", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        "Resources:\n  Role:\n    Type: AWS::IAM::Role\n    Properties:\n      !Transform\n"
        "        Name: AWS::Include\n        Parameters:\n          Location: s3://someone-else/p.yaml\n")),
    Case("cloudformation-module", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Admin": {"Type": "Example::Admin::Role::MODULE", "Properties": {}}}})),
    Case("cloudformation-sam-application", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"App": {
            "Type": "AWS::Serverless::Application", "Properties": {"Location": "https://example.com/admin.yaml"}}}})),
    Case("serverless-application-repository-app", "aws", IAM,
         "aws:serverlessrepository/cloudFormationStack:CloudFormationStack",
         {"applicationId": "arn:aws:serverlessrepo:us-east-1:210987654321:applications/admin-helper",
          "capabilities": ["CAPABILITY_IAM"]}),
    Case("service-catalog-product", "aws", IAM, "aws:servicecatalog/provisionedProduct:ProvisionedProduct",
         {"productId": "prod-abc", "provisioningArtifactName": "v1"}),
    Case("cloudformation-stack-set-macro", "aws", IAM, "aws:cloudformation/stackSet:StackSet",
         {"name": "everywhere", "templateBody": json.dumps({"Transform": "AdminMacro", "Resources": {}})}),
    # 3. RDS makes an instance or Multi-AZ cluster public by default where nothing sends publiclyAccessible false
    Case("native-db-instance-public-by-default", "aws", PUBLIC, pack.NATIVE_DB_INSTANCE,
         {"engine": "postgres", "dbInstanceClass": "db.t4g.micro", "allocatedStorage": "20", "storageEncrypted": True,
          "masterUsername": "mlflow", "manageMasterUserPassword": True, "dbSubnetGroupName": "mlflow-db-subnets"}),
    Case("native-db-cluster-multi-az-public-by-default", "aws", PUBLIC, pack.NATIVE_DB_CLUSTER,
         {"engine": "postgres", "dbClusterInstanceClass": "db.m6gd.large", "allocatedStorage": 100,
          "storageType": "io1", "iops": 1000, "storageEncrypted": True, "masterUsername": "mlflow",
          "manageMasterUserPassword": True, "dbSubnetGroupName": "mlflow-db-subnets"}),
    Case("native-read-replica-public-by-default", "aws", PUBLIC, pack.NATIVE_DB_INSTANCE,
         {"sourceDbInstanceIdentifier": "mlflow-metadata", "dbInstanceClass": "db.t4g.micro"}),
    Case("native-db-instance-public-as-text", "aws", PUBLIC, pack.NATIVE_DB_INSTANCE,
         {"engine": "postgres", "storageEncrypted": True, "publiclyAccessible": "yes"}),
    Case("rds-multi-az-cluster-public-by-default", "aws", PUBLIC, pack.RDS_CLUSTER,
         {"engine": "postgres", "dbClusterInstanceClass": "db.m6gd.large", "storageEncrypted": True,
          "allocatedStorage": 100, "iops": 1000, "storageType": "io1"}),
    Case("cloudformation-db-instance-public-by-default", "aws", PUBLIC, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Db": db_instance()}})),
    Case("cloudformation-multi-az-cluster-public-by-default", "aws", PUBLIC, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Db": {"Type": "AWS::RDS::DBCluster", "Properties": {
            "Engine": "mysql", "DBClusterInstanceClass": "db.m6gd.large", "StorageEncrypted": True}}}})),
    Case("cloudformation-db-public-from-ssm", "aws", PUBLIC, "aws:cloudformation/stack:Stack", stack(
        {"Parameters": {"Public": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/db/public"}},
         "Resources": {"Db": db_instance(PubliclyAccessible={"Ref": "Public"})}})),
    # 4. template functions judged on every value they may take, never as one value
    Case("cloudformation-public-by-region", "aws", PUBLIC, "aws:cloudformation/stack:Stack", stack(
        {"Mappings": region_map(**{"us-east-1": {"Public": "false"}, "eu-west-1": {"Public": "true"}}),
         "Resources": {"Db": db_instance(PubliclyAccessible=by_region("Public"))}})),
    Case("cloudformation-admin-policy-by-region", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Mappings": region_map(**{"us-east-1": {"Policy": TASK_EXECUTION_POLICY},
                                   "eu-west-1": {"Policy": f"{MANAGED}AdministratorAccess"}}),
         "Resources": {"Role": role(by_region("Policy"))}})),
    Case("cloudformation-cidr-by-account", "aws", PORT, "aws:cloudformation/stack:Stack", stack(
        {"Mappings": {"Networks": {ACCOUNT: {"Clients": "10.0.0.0/16"}, "210987654321": {"Clients": "0.0.0.0/0"}}},
         "Resources": {"In": ingress({"Fn::FindInMap": ["Networks", {"Ref": "AWS::AccountId"}, "Clients"]})}})),
    Case("cloudformation-map-key-by-stack-name", "aws", PORT, "aws:cloudformation/stack:Stack", stack(
        {"Mappings": {"Networks": {"stack": {"Clients": "10.0.0.0/16"}, "lab": {"Clients": "0.0.0.0/0"}}},
         "Resources": {"In": ingress({"Fn::FindInMap": ["Networks", {"Fn::Sub": "${AWS::StackName}"}, "Clients"]})}})),
    Case("cloudformation-map-key-the-map-lacks", "aws", PORT, "aws:cloudformation/stack:Stack", stack(
        {"Parameters": ENV_PARAMETER,
         "Mappings": {"Networks": {"prod": {"Clients": "10.0.0.0/16"}, "lab": {"Clients": "0.0.0.0/0"}}},
         "Resources": {"In": ingress({"Fn::FindInMap": ["Networks", {"Ref": "Env"}, "Clients"]})}})),
    Case("cloudformation-sixth-if-on-the-same-condition", "aws", PUBLIC, "aws:cloudformation/stack:Stack", stack(
        {"Parameters": ENV_PARAMETER, "Conditions": conditions("C"), "Resources": {"Db": db_instance(
            Tags=[{"Key": f"t{index}", "Value": {"Fn::If": ["C", "a", "b"]}} for index in range(5)],
            PubliclyAccessible={"Fn::If": ["C", True, False]})}})),
    Case("cloudformation-eleventh-condition", "aws", PUBLIC, "aws:cloudformation/stack:Stack", stack(
        {"Parameters": ENV_PARAMETER, "Conditions": conditions(*(f"C{index}" for index in range(11))),
         "Resources": {"Db": db_instance(
             Tags=[{"Key": f"t{index}", "Value": {"Fn::If": [f"C{index}", "a", "b"]}} for index in range(10)],
             PubliclyAccessible={"Fn::If": ["C10", False, True]})}})),
    Case("cloudformation-select-by-an-attribute", "aws", PUBLIC, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Db": db_instance(PubliclyAccessible={"Fn::Select": [
            {"Fn::GetAtt": ["Picker", "Index"]}, [False, True]]})}})),
    Case("cloudformation-imported-policy-arn", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Role": role({"Fn::ImportValue": "shared-policy-arn"})}})),
    Case("cloudformation-policy-arn-from-ssm", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Parameters": {"PolicyArn": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/iam/policy"}},
         "Resources": {"Role": role({"Ref": "PolicyArn"})}})),
    Case("cloudformation-policy-arn-from-a-custom-resource", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Picker": {"Type": "Custom::PolicyPicker", "Properties": {"ServiceToken": "arn:aws:lambda:x"}},
                       "Role": role({"Fn::GetAtt": ["Picker", "Arn"]})}})),
    Case("cloudformation-imported-principal", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": {"Fn::ImportValue": "trusted"}},
                           "Action": "sts:AssumeRole"}]}}}}})),
    Case("cloudformation-imported-resource-for-kms", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Policy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": {
            "Statement": [allow("kms:Decrypt", {"Fn::ImportValue": "key-arn"})]}}}}})),
    # 5. an ARM expression in a custom role's actions may be anything
    Case("arm-custom-role-create-array", "azure", IAM, "azure-native:resources:DeploymentAtSubscriptionScope",
         subscription_deployment(arm_custom_role([{"actions": "[createArray('*')]", "notActions": []}]))),
    Case("arm-custom-role-concat-role-assignments", "azure", IAM,
         "azure-native:resources:DeploymentAtSubscriptionScope", subscription_deployment(arm_custom_role([{
             "actions": ["Microsoft.Storage/storageAccounts/read",
                         "[concat('Microsoft.Authorization/', 'roleAssignments/write')]"]}]))),
    Case("arm-custom-role-permissions-from-an-expression", "azure", IAM,
         "azure-native:resources:DeploymentAtSubscriptionScope", subscription_deployment(arm_custom_role(
             "[json('[{\"actions\": [\"*\"]}]')]"))),
    Case("arm-custom-role-data-actions-expression", "azure", IAM,
         "azure-native:resources:DeploymentAtSubscriptionScope",
         subscription_deployment(arm_custom_role([{"actions": [], "dataActions": ["[variables('all')]"]}]))),
    Case("arm-parameters-link", "azure", IAM, "azure-native:resources:DeploymentAtSubscriptionScope",
         subscription_deployment(arm_assignment("[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
                                                "parameters('role'))]"),
                                 parametersLink={"uri": "https://example.com/parameters.json"})),
    Case("arm-nsg-rules-by-property-loop", "azure", PORT, "azure-native:resources:Deployment",
         {"resourceGroupName": "mlflow-azure", "properties": {"mode": "Incremental", "template": arm({
             "type": "Microsoft.Network/networkSecurityGroups", "apiVersion": "2023-09-01", "name": "db",
             "location": "westeurope", "properties": {"copy": [{"name": "securityRules", "count": 2, "input": {
                 "name": "[concat('open-', copyIndex('securityRules'))]", "properties": {
                     "priority": "[add(100, copyIndex('securityRules'))]", "direction": "Inbound",
                     "access": "Allow", "protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*",
                     "destinationAddressPrefix": "*", "destinationPortRange": "5432"}}}]}})}}),
    Case("blueprint-owner-artifact", "azure", IAM, "azure-native:blueprint:RoleAssignmentArtifact",
         {"blueprintName": "landing", "resourceScope": SUBSCRIPTION, "kind": "roleAssignment",
          "roleDefinitionId": OWNER_ID, "principalIds": ["aefb7652-6736-ca9c-b9e6-685b57c1b926"]}),
    Case("blueprint-template-artifact-owner", "azure", IAM, "azure-native:blueprint:TemplateArtifact",
         {"blueprintName": "landing", "resourceScope": SUBSCRIPTION, "kind": "template", "parameters": {},
          "template": arm(arm_assignment(OWNER_ID))}),
    Case("classic-management-group-template-owner", "azure", IAM,
         "azure:management/groupTemplateDeployment:GroupTemplateDeployment",
         {"managementGroupId": MANAGEMENT_GROUP, "location": "westeurope",
          "templateContent": json.dumps(arm(arm_assignment(OWNER_ID)))}),
    Case("owner-guid-without-hyphens", "azure", IAM, ROLE_ASSIGNMENT,
         {**assignment("Owner", SUBSCRIPTION), "roleDefinitionId": OWNER_ID.replace("-", "").replace(
             SUBSCRIPTION.replace("-", ""), SUBSCRIPTION)}),
    Case("arm-owner-guid-in-pieces", "azure", IAM, "azure-native:resources:DeploymentAtSubscriptionScope",
         subscription_deployment(arm_assignment("[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
                                                "concat('8e3af657-a8ff-443c-', 'a75c-2fe8c4bcb635'))]"))),
    Case("arm-owner-on-a-management-group-by-extension-syntax", "azure", IAM,
         "azure-native:resources:DeploymentAtTenantScope", {"location": "westeurope", "properties": {
             "mode": "Incremental", "template": arm({
                 "type": "Microsoft.Management/managementGroups/providers/roleAssignments",
                 "apiVersion": "2022-04-01", "name": "platform/Microsoft.Authorization/0f3b2c1d",
                 "properties": {"roleDefinitionId": OWNER_ID,
                                "principalId": "aefb7652-6736-ca9c-b9e6-685b57c1b926"}})}}),
    Case("arm-contributor-scoped-to-the-subscription-by-expression", "azure", IAM,
         "azure-native:resources:Deployment", {"resourceGroupName": "mlflow-azure", "properties": {
             "mode": "Incremental", "template": arm(arm_assignment(
                 f"[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{ROLES['Contributor']}')]",
                 scope="[subscription().id]"))}}),
    # 6. IAM Identity Center and the organization hand out what the resource does not show
    Case("identity-center-assignment-of-an-existing-permission-set", "aws", IAM,
         "aws:ssoadmin/accountAssignment:AccountAssignment", {**IDENTITY_CENTER, "permissionSetArn": PERMISSION_SET}),
    Case("native-identity-center-assignment", "aws", IAM, "aws-native:sso:Assignment",
         {**IDENTITY_CENTER, "permissionSetArn": PERMISSION_SET}),
    Case("identity-store-membership-of-administrators", "aws", IAM, "aws:identitystore/groupMembership:GroupMembership",
         {"identityStoreId": "d-1234567890", "groupId": ADMINISTRATORS_GROUP,
          "memberId": "94482488-3041-7026-18f5-000000000000"}),
    Case("native-identity-store-membership", "aws", IAM, "aws-native:identitystore:GroupMembership",
         {"identityStoreId": "d-1234567890", "groupId": ADMINISTRATORS_GROUP,
          "memberId": {"userId": "94482488-3041-7026-18f5-000000000000"}}),
    Case("delegated-administrator", "aws", IAM, "aws:organizations/delegatedAdministrator:DelegatedAdministrator",
         {"accountId": "210987654321", "servicePrincipal": "member.org.stacksets.cloudformation.amazonaws.com"}),
    Case("cloudformation-identity-center-assignment", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Assign": {"Type": "AWS::SSO::Assignment", "Properties": {
            "InstanceArn": IDENTITY_CENTER["instanceArn"], "PermissionSetArn": PERMISSION_SET,
            "PrincipalId": IDENTITY_CENTER["principalId"], "PrincipalType": "USER", "TargetId": ACCOUNT,
            "TargetType": "AWS_ACCOUNT"}}}})),
    # 7. AWS-managed policies reach every resource whatever their names say
    *(Case(f"attach-{policy.rsplit('/', 1)[-1].lower()}", "aws", IAM, ATTACHMENT,
           {"role": "mlflow-server-task-role-id", "policyArn": f"{MANAGED}{policy}"})
      for policy in ("ReadOnlyAccess", "AmazonS3ReadOnlyAccess", "service-role/AmazonEC2RoleforSSM",
                     "AmazonSSMReadOnlyAccess", "CloudWatchLogsReadOnlyAccess", "job-function/ViewOnlyAccess",
                     "SecurityAudit", "AmazonSSMManagedInstanceCore")),
    Case("native-role-read-only-access", "aws", IAM, "aws-native:iam:Role",
         {"assumeRolePolicyDocument": ECS_TRUST, "managedPolicyArns": [f"{MANAGED}ReadOnlyAccess"]}),
    Case("permission-set-read-only-access", "aws", IAM, "aws:ssoadmin/managedPolicyAttachment:ManagedPolicyAttachment",
         {"instanceArn": IDENTITY_CENTER["instanceArn"], "permissionSetArn": PERMISSION_SET,
          "managedPolicyArn": f"{MANAGED}AmazonS3ReadOnlyAccess"}),
    Case("attach-a-policy-by-name", "aws", IAM, ATTACHMENT, {"role": "r", "policyArn": "AdministratorAccess"}),
    Case("sam-read-only-access-by-name", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"Fn": {"Type": "AWS::Serverless::Function",
         "Properties": {"Runtime": "python3.12", "Handler": "app.handler", "Policies": ["ReadOnlyAccess"]}}}})),
    Case("sam-policy-template-every-bucket", "aws", IAM, "aws:cloudformation/stack:Stack", stack(
        {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"Fn": {"Type": "AWS::Serverless::Function",
         "Properties": {"Runtime": "python3.12", "Handler": "app.handler",
                        "Policies": [{"S3ReadPolicy": {"BucketName": "*"}}]}}}})),
    # 8. credentials on the command line and in health checks, as the shell splits them
    Case("ecs-command-keyword-dsn", "aws", SECRETS, pack.ECS_TASK_DEFINITION, container(command=[
        "psql", "host=db.internal user=mlflow password=hunter2 dbname=mlflow", "-c", "select 1"])),
    Case("ecs-command-ado-connection-string", "aws", SECRETS, pack.ECS_TASK_DEFINITION, container(command=[
        "sqlcmd-tool", "Server=db;Database=mlflow;User Id=mlflow;Password=hunter2"])),
    Case("ecs-health-check-curl-user-password", "aws", SECRETS, pack.ECS_TASK_DEFINITION, health(
        "CMD", "curl", "-fsS", "-u", "admin:hunter2", "http://localhost:5000/api/2.0/mlflow/experiments/search")),
    Case("ecs-health-check-curl-attached-user-password", "aws", SECRETS, pack.ECS_TASK_DEFINITION, health(
        "CMD-SHELL", "curl -fsS --user=admin:hunter2 http://localhost:5000/health")),
    Case("ecs-health-check-authorization-header", "aws", SECRETS, pack.ECS_TASK_DEFINITION, health(
        "CMD", "curl", "-fsS", "-H", "Authorization: Basic YWRtaW46aHVudGVyMg==", "http://localhost:5000/health")),
    Case("ecs-health-check-wget-bearer-header", "aws", SECRETS, pack.ECS_TASK_DEFINITION, health(
        "CMD-SHELL", "wget -qO- --header='Authorization: Bearer glpat-abcdef0123456789' http://localhost:5000/health")),
    Case("ecs-health-check-api-key-header", "aws", SECRETS, pack.ECS_TASK_DEFINITION, health(
        "CMD-SHELL", "curl -fsS -H 'X-Api-Key: k3y-0123' http://localhost:5000/health")),
    Case("docker-health-check-mysqladmin-password", "local", SECRETS, pack.DOCKER_CONTAINER, {
        "image": "mysql:8", "healthcheck": {"tests": ["CMD-SHELL", "mysqladmin ping -h localhost -uroot -phunter2"]}}),
    Case("ecs-health-check-redis-cli-password", "aws", SECRETS, pack.ECS_TASK_DEFINITION, health(
        "CMD", "redis-cli", "-a", "hunter2", "ping")),
    Case("container-app-sqlcmd-password", "azure", SECRETS, "azure-native:app:ContainerApp", app(command=[
        "/opt/mssql-tools18/bin/sqlcmd", "-S", "db", "-U", "sa", "-P", "hunter2", "-Q", "SELECT 1"])),
    Case("ecs-command-redis-requirepass", "aws", SECRETS, pack.ECS_TASK_DEFINITION, container(command=[
        "redis-server", "--requirepass", "hunter2"])),
    Case("ecs-shell-script-password-flag", "aws", SECRETS, pack.ECS_TASK_DEFINITION, container(command=[
        "sh", "-c", "mlflow db upgrade && exec psql --password hunter2 -h db"])),
    Case("container-group-exec-probe-api-key-header", "azure", SECRETS, pack.CONTAINER_GROUP, {
        "resourceGroupName": "rg", "osType": "Linux", "containers": [{"name": "m", "image": "i", "livenessProbe": {
            "exec": {"command": ["curl", "-fsS", "-H", "X-Api-Key: k3y-0123", "http://localhost:5000/health"]}}}]}),
    Case("jwk-private-key-in-env", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        OIDC_SIGNING_KEY='{"kty":"EC","crv":"P-256","x":"f83O","y":"x_FE","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7"}')})),
    # 9. a database's snapshot or an image shared with every AWS account
    Case("rds-snapshot-shared-with-every-account", "aws", PUBLIC, "aws:rds/snapshot:Snapshot",
         {"dbInstanceIdentifier": "mlflow-metadata", "dbSnapshotIdentifier": "s", "sharedAccounts": ["all"]}),
    Case("rds-cluster-snapshot-shared-with-every-account", "aws", PUBLIC, "aws:rds/clusterSnapshot:ClusterSnapshot",
         {"dbClusterIdentifier": "c", "dbClusterSnapshotIdentifier": "s", "sharedAccounts": [ACCOUNT, "ALL"]}),
    Case("rds-snapshot-copy-shared-with-every-account", "aws", PUBLIC, "aws:rds/snapshotCopy:SnapshotCopy",
         {"sourceDbSnapshotIdentifier": "s", "targetDbSnapshotIdentifier": "t", "sharedAccounts": ["all"]}),
    Case("image-launchable-by-every-account", "aws", STORAGE_PUBLIC,
         "aws:ec2/amiLaunchPermission:AmiLaunchPermission", {"imageId": "ami-0123", "group": "all"}),
    # 10. a key policy for any principal through a service is narrowed only by the caller's account
    Case("key-policy-via-service-any-account", "aws", IAM, "aws:kms/key:Key", {"policy": document(KEY_ADMINS, {
        **KMS_VIA_S3, "Condition": {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}})}),
    # the review's "reconsider": an external id beside Principal "*" names no account (it is in the repository)
    Case("trust-any-principal-with-external-id", "aws", IAM, pack.IAM_ROLE,
         trust(any_principal({"StringEquals": {"sts:ExternalId": "b1f4e0c2-mlflow"}}))),
    # 11. a Log Analytics workspace may leave its retention to Azure, not set one the pack cannot read
    Case("workspace-zero-days", "azure", LOGS, pack.LOG_ANALYTICS_WORKSPACE,
         {"resourceGroupName": "rg", "sku": {"name": "PerGB2018"}, "retentionInDays": 0}),
    # a database port published beyond the Db2 and the engines already named
    Case("sg-rule-db2-port", "aws", PORT, pack.SECURITY_GROUP_INGRESS_RULE,
         sg_rule("tcp", 50000, 50000, cidrIpv4="0.0.0.0/0")),
    Case("sql-ipv6-firewall-every-address", "azure", PORT, "azure-native:sql:IPv6FirewallRule",
         {"resourceGroupName": "rg", "serverName": "s", "startIPv6Address": "::", "endIPv6Address":
          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}),
]

ACCEPTED_ROUND_4 = [
    # 1. plain JSON with escapes in values only, and a JSON value that holds no document
    Case("queue-policy-escaped-values-only", "aws", None, "aws:sqs/queuePolicy:QueuePolicy",
         {"queueUrl": "q", "policy": escaped(document(open_to_anyone("sqs:SendMessage", Condition={"ArnEquals": {
             "aws:SourceArn": f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/mlflow-gc"}})), "Statement", "Condition")
          .replace("mlflow-gc", "mlflow-\\u0067c")}),
    Case("json-text-that-is-no-document", "aws", None, "aws:ssm/parameter:Parameter",
         {"type": "String", "value": '{"endpoints": ["a"], "note": "{{ not json }}"}'}),
    Case("braces-that-are-no-json", "aws", None, "aws:ssm/parameter:Parameter",
         {"type": "String", "value": "{{ mlflow.endpoint }} [statement: none]"}),
    # 2. SAM's own transform is read, not refused
    Case("sam-function-scoped-template", "aws", None, "aws:cloudformation/stack:Stack", stack(
        {"Transform": "AWS::Serverless-2016-10-31", "Resources": {"Fn": {"Type": "AWS::Serverless::Function",
         "Properties": {"Runtime": "python3.12", "Handler": "app.handler", "Policies": [
             "AWSLambdaBasicExecutionRole", {"S3ReadPolicy": {"BucketName": BUCKET}}]}}}})),
    # 3. the Aurora-cluster-member exception, an Aurora cluster (no publiclyAccessible), explicit false
    Case("native-aurora-cluster-without-the-flag", "aws", None, pack.NATIVE_DB_CLUSTER,
         {"engine": "aurora-postgresql", "storageEncrypted": True, "dbSubnetGroupName": "mlflow-db-subnets"}),
    Case("rds-aurora-cluster-without-the-flag", "aws", None, pack.RDS_CLUSTER,
         {"engine": "aurora-postgresql", "storageEncrypted": True, "dbSubnetGroupName": "mlflow-db-subnets"}),
    Case("native-multi-az-cluster-private", "aws", None, pack.NATIVE_DB_CLUSTER,
         {"engine": "postgres", "storageEncrypted": True, "publiclyAccessible": False}),
    Case("cloudformation-aurora-cluster-and-member", "aws", None, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Cluster": {"Type": "AWS::RDS::DBCluster", "Properties": {
            "Engine": "aurora-postgresql", "StorageEncrypted": True, "DBSubnetGroupName": "mlflow-db-subnets"}},
            "Member": {"Type": "AWS::RDS::DBInstance", "Properties": {
                "Engine": "aurora-postgresql", "DBInstanceClass": "db.r6g.large",
                "DBClusterIdentifier": {"Ref": "Cluster"}}}}})),
    # 4. every value a choice point may take keeps the promise; one condition correlates its Fn::Ifs
    Case("cloudformation-private-in-every-region", "aws", None, "aws:cloudformation/stack:Stack", stack(
        {"Mappings": region_map(**{"us-east-1": {"Public": "false", "Policy": TASK_EXECUTION_POLICY},
                                   "eu-west-1": {"Public": False, "Policy": TASK_EXECUTION_POLICY}}),
         "Resources": {"Db": db_instance(PubliclyAccessible=by_region("Public")),
                       "Role": role(by_region("Policy"))}})),
    Case("cloudformation-one-condition-for-engine-and-exposure", "aws", None, "aws:cloudformation/stack:Stack", stack(
        {"Parameters": ENV_PARAMETER, "Conditions": conditions("Aurora"), "Resources": {"Db": db_instance(
            Engine={"Fn::If": ["Aurora", "aurora-postgresql", "postgres"]},
            DBClusterIdentifier={"Fn::If": ["Aurora", "mlflow", {"Ref": "AWS::NoValue"}]},
            PubliclyAccessible={"Fn::If": ["Aurora", {"Ref": "AWS::NoValue"}, False]})}})),
    Case("cloudformation-many-conditions-all-private", "aws", None, "aws:cloudformation/stack:Stack", stack(
        {"Parameters": ENV_PARAMETER, "Conditions": conditions(*(f"C{index}" for index in range(12))),
         "Resources": {"Db": db_instance(
             Tags=[{"Key": f"t{index}", "Value": {"Fn::If": [f"C{index}", "a", "b"]}} for index in range(11)],
             PubliclyAccessible={"Fn::If": ["C11", False, "false"]})}})),
    Case("cloudformation-policy-of-the-template", "aws", None, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Read": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": {
            "Version": "2012-10-17", "Statement": [allow("s3:GetObject", f"arn:aws:s3:::{BUCKET}/*")]}}},
            "Role": role({"Ref": "Read"}, {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                                                      "AmazonECSTaskExecutionRolePolicy"})}})),
    # 5. a custom role's actions spelled out in an ARM template
    Case("arm-custom-role-named-actions", "azure", None, "azure-native:resources:DeploymentAtSubscriptionScope",
         subscription_deployment(arm_custom_role([{"actions": ["Microsoft.Storage/storageAccounts/read",
                                                               "Microsoft.Resources/subscriptions/resourceGroups/read"],
                                                   "notActions": []}], [SUBSCRIPTION]))),
    Case("arm-contributor-on-one-storage-account", "azure", None, "azure-native:resources:Deployment",
         {"resourceGroupName": "mlflow-azure", "properties": {"mode": "Incremental", "template": arm(arm_assignment(
             f"[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{ROLES['Contributor']}')]",
             scope="[resourceId('Microsoft.Storage/storageAccounts', 'mlflowazurec2c037')]"))}}),
    Case("blueprint-contributor-on-a-resource-group", "azure", None, "azure-native:blueprint:RoleAssignmentArtifact",
         {"blueprintName": "landing", "resourceScope": SUBSCRIPTION, "kind": "roleAssignment",
          "roleDefinitionId": f"{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/"
                              f"{ROLES['Contributor']}",
          "principalIds": ["aefb7652-6736-ca9c-b9e6-685b57c1b926"], "resourceGroup": "mlflow"}),
    # 7. the AWS-managed policies that only write telemetry or pull images
    *(Case(f"attach-{policy.rsplit('/', 1)[-1].lower()}", "aws", None, ATTACHMENT,
           {"role": "mlflow-server-task-role-id", "policyArn": f"{MANAGED}{policy}"})
      for policy in ("service-role/AWSLambdaBasicExecutionRole", "CloudWatchAgentServerPolicy",
                     "AWSXRayDaemonWriteAccess")),
    # 8. health checks that read their credential from the environment or a file
    Case("health-checks-reading-credentials", "aws", None, pack.ECS_TASK_DEFINITION, ecs(
        {"healthCheck": {"command": ["CMD-SHELL", 'mysqladmin ping -uroot -p"$MYSQL_ROOT_PASSWORD" && '
                                     'redis-cli -a "$REDIS_PASSWORD" ping && curl -fsS -u "admin:$ADMIN_PASSWORD" '
                                     '-H "Authorization: Bearer $TOKEN" --key client.key http://localhost:5000/']},
         "command": ["python", "-c", "import os, psycopg\npsycopg.connect(host='db', password=os.environ['PW'])"]})),
    Case("container-runs-as-uid-and-gid", "local", None, pack.DOCKER_CONTAINER,
         {"image": "mlflow", "command": ["gosu", "-u", "1000:1000", "mlflow", "server"]}),
    # 9. a snapshot shared with one named account
    Case("rds-snapshot-shared-with-one-account", "aws", None, "aws:rds/snapshot:Snapshot",
         {"dbInstanceIdentifier": "mlflow-metadata", "dbSnapshotIdentifier": "s", "sharedAccounts": ["210987654321"]}),
    # 10. AWS's own managed-key policy: any principal of this account, through S3
    Case("key-policy-via-s3-for-this-account", "aws", None, "aws:kms/key:Key",
         {"description": "artifacts", "policy": document(KEY_ADMINS, KMS_VIA_S3)}),
    # 11. a workspace that leaves its retention to Azure (30 days)
    Case("workspace-default-retention", "azure", None, pack.LOG_ANALYTICS_WORKSPACE,
         {"resourceGroupName": "rg", "sku": {"name": "PerGB2018"}}),
    # 12. public keys are no secrets: OpenSSH keys, JWKs without private members
    Case("public-keys-in-env", "aws", None, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        SSH_PUBLIC_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example",
        OIDC_PUBLIC_KEY='{"kty":"RSA","e":"AQAB","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1Wl"}',
        JWKS_KEY='{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",'
                 '"y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}')})),
    # an external id beside a named third-party account: the account is the principal
    Case("trust-third-party-account-with-external-id", "aws", None, pack.IAM_ROLE,
         trust({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
                "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "b1f4e0c2-mlflow"}}})),
    Case("sql-ipv6-firewall-private-range", "azure", None, "azure-native:sql:IPv6FirewallRule",
         {"resourceGroupName": "rg", "serverName": "s", "startIPv6Address": "fd00::",
          "endIPv6Address": "fd00::ffff"}),
]

# --- the fifth review's cases (a fourth red team over gRPC), each generalised to its class ----------------

REGION_ARN = f"us-east-1:{ACCOUNT}"
TEAM_TAG = {"StringEquals": {"aws:ResourceTag/team": "mlflow"}}
CLUSTER = f"arn:aws:ecs:{REGION_ARN}:cluster/mlflow-aws"
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
ENTRA_GROUP = "6f1c2c1e-0000-4c3b-9d1e-000000000001"
ENTRA_PRINCIPAL = "aefb7652-6736-ca9c-b9e6-685b57c1b926"
GRAPH_SERVICE_PRINCIPAL = "0c1d2e3f-0000-4000-8000-0000000000aa"
AZUREAD = "azuread:index/"
DATABASE_SECRET = json.dumps({"username": "mlflow", "password": "Hunter2-very-secret", "engine": "postgres",
                              "host": "db", "port": 5432})


def statement_on(actions: Any, resources: Any, condition: dict | None = None) -> dict:
    return role_policy(allow(actions, resources, **({"Condition": condition} if condition else {})))


def entra(type_: str) -> str:
    """The azuread provider's type token: DirectoryRoleAssignment -> azuread:index/directoryRoleAssignment:..."""
    return f"{AZUREAD}{type_[:1].lower()}{type_[1:]}:{type_}"


def prefix_list(*cidrs: str) -> dict:
    return {"name": "db-clients", "addressFamily": "IPv4", "maxEntries": 5,
            "entries": [{"cidr": cidr, "description": "clients"} for cidr in cidrs]}


def lightsail_ports(*cidrs: str, port: int = 5432) -> dict:
    return {"instanceName": "db", "portInfos": [{"protocol": "tcp", "fromPort": port, "toPort": port,
                                                 **({"cidrs": list(cidrs)} if cidrs else {})}]}


def classic_nsg_rule(**source: Any) -> dict:
    return {"resourceGroupName": "mlflow-azure", "networkSecurityGroupName": "mlflow-db", "name": "pg",
            "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp", "sourcePortRange": "*",
            "destinationPortRange": "5432", "destinationAddressPrefix": "*", **source}


APPLICATION_SECURITY_GROUP = f"{RESOURCE_GROUP}/providers/Microsoft.Network/applicationSecurityGroups/apps"
CONTAINER_DEFINITION_ENV = "DB_SECRET_JSON_VALUE"

REJECTED_ROUND_5 = [
    # 1. a condition narrows resources only by naming something the ARN does not: not the account or the
    # organization (which the ARN names, or more), not a value that is a wildcard after nothing spelled out
    *(Case(f"condition-{case_id}", "aws", IAM, ROLE_POLICY, statement_on(actions, resource, condition))
      for case_id, actions, resource, condition in (
          ("resource-account-every-parameter", ["ssm:GetParameters", "ssm:GetParameter", "ssm:GetParametersByPath"],
           f"arn:aws:ssm:{REGION_ARN}:parameter/*", {"StringEquals": {"aws:ResourceAccount": ACCOUNT}}),
          ("resource-account-every-function", ["lambda:GetFunction", "lambda:GetFunctionConfiguration"],
           f"arn:aws:lambda:{REGION_ARN}:function:*", {"StringEquals": {"aws:ResourceAccount": ACCOUNT}}),
          ("resource-org-id-every-table", ["dynamodb:Scan", "dynamodb:GetItem"],
           f"arn:aws:dynamodb:{REGION_ARN}:table/*", {"StringEquals": {"aws:ResourceOrgID": "o-abc123"}}),
          ("resource-org-paths-every-log", ["logs:GetLogEvents", "logs:FilterLogEvents"],
           f"arn:aws:logs:{REGION_ARN}:log-group:*", {"ForAnyValue:StringLike": {
               "aws:ResourceOrgPaths": "o-abc123/r-ab12/ou-ab12-11111111/"}}),
          ("resource-account-every-access-point", "s3:GetObject", f"arn:aws:s3:{REGION_ARN}:accesspoint/*",
           {"StringEquals": {"aws:ResourceAccount": ACCOUNT}}),
          ("service-account-key-every-access-point", "s3:GetObject", f"arn:aws:s3:{REGION_ARN}:accesspoint/*",
           {"StringEquals": {"s3:ResourceAccount": ACCOUNT}}),
          ("cluster-any-arn", "ecs:StopTask", f"arn:aws:ecs:{REGION_ARN}:task/*",
           {"ArnLike": {"ecs:cluster": "arn:*"}}),
          ("cluster-every-cluster", "ecs:StopTask", f"arn:aws:ecs:{REGION_ARN}:task/*",
           {"ArnLike": {"ecs:cluster": f"arn:aws:ecs:{REGION_ARN}:cluster/*"}}),
          ("cluster-name-prefix", "ecs:StopTask", f"arn:aws:ecs:{REGION_ARN}:task/*",
           {"ArnLike": {"ecs:cluster": f"arn:aws:ecs:{REGION_ARN}:cluster/m*"}}),
          ("tag-value-prefix", "dynamodb:GetItem", f"arn:aws:dynamodb:{REGION_ARN}:table/*",
           {"StringLike": {"aws:ResourceTag/team": "m*"}}),
          ("tag-value-any-of-them", "dynamodb:GetItem", f"arn:aws:dynamodb:{REGION_ARN}:table/*",
           {"StringEquals": {"aws:ResourceTag/team": ["mlflow", "*"]}}),
          ("service-key-true", "ec2:DeleteVolume", f"arn:aws:ec2:{REGION_ARN}:volume/*",
           {"StringEquals": {"ec2:Encrypted": "true"}}),
      )),
    Case("condition-resource-account-native-managed-policy", "aws", IAM, "aws-native:iam:ManagedPolicy",
         {"policyDocument": {"Version": "2012-10-17", "Statement": [
             {"Effect": "Allow", "Action": "ssm:GetParameter*", "Resource": f"arn:aws:ssm:*:{ACCOUNT}:parameter/*",
              "Condition": {"StringEquals": {"aws:ResourceAccount": ACCOUNT}}}]}}),
    Case("access-points-without-condition", "aws", IAM, ROLE_POLICY,
         statement_on("s3:GetObject", f"arn:aws:s3:{REGION_ARN}:accesspoint/*/object/*")),
    # 2. actions that run code, or change what later runs under another role, need the resource's name spelled out
    Case("change-sets-on-every-stack-by-first-letter", "aws", IAM, ROLE_POLICY, statement_on(
        ["cloudformation:CreateChangeSet", "cloudformation:ExecuteChangeSet"],
        [f"arn:aws:cloudformation:*:{ACCOUNT}:stack/{c}*/*" for c in EVERY_NAME[:52]])),
    *(Case(f"runs-code-{case_id}", "aws", IAM, ROLE_POLICY, statement_on(actions, resource, TEAM_TAG))
      for case_id, actions, resource in (
          ("stack-sets", ["cloudformation:UpdateStackSet", "cloudformation:CreateStackInstances"],
           f"arn:aws:cloudformation:{REGION_ARN}:stackset/*"),
          ("change-set-wildcard-action", "cloudformation:*ChangeSet", f"arn:aws:cloudformation:{REGION_ARN}:stack/*"),
          ("build-batches", "codebuild:StartBuildBatch", f"arn:aws:codebuild:{REGION_ARN}:project/*"),
          ("build-project-update", "codebuild:UpdateProject", f"arn:aws:codebuild:{REGION_ARN}:project/*"),
          ("build-start-wildcard", "codebuild:Start*", f"arn:aws:codebuild:{REGION_ARN}:project/*"),
          ("glue-jobs", ["glue:UpdateJob", "glue:StartJobRun"], f"arn:aws:glue:{REGION_ARN}:job/*"),
          ("launch-templates", ["ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate"],
           f"arn:aws:ec2:{REGION_ARN}:launch-template/*"),
          ("ssm-associations", "ssm:UpdateAssociation", f"arn:aws:ssm:{REGION_ARN}:association/*"),
          ("ssm-documents", "ssm:UpdateDocument", f"arn:aws:ssm:{REGION_ARN}:document/*"),
          ("batch-jobs", "batch:SubmitJob", f"arn:aws:batch:{REGION_ARN}:job-definition/*"),
          ("state-machines", "states:UpdateStateMachine", f"arn:aws:states:{REGION_ARN}:stateMachine:*"),
          ("auto-scaling-groups", "autoscaling:UpdateAutoScalingGroup",
           f"arn:aws:autoscaling:{REGION_ARN}:autoScalingGroup:*:autoScalingGroupName/*"),
          ("code-deploy-deployments", "codedeploy:CreateDeployment", f"arn:aws:codedeploy:{REGION_ARN}:*"),
      )),
    Case("runs-code-any-task-definition-in-one-cluster", "aws", IAM, ROLE_POLICY, statement_on(
        "ecs:RunTask", f"arn:aws:ecs:{REGION_ARN}:task-definition/*", {"ArnEquals": {"ecs:cluster": CLUSTER}})),
    # 3. the azuread provider: directory roles, Graph's privileged app roles, group memberships and PIM for groups
    Case("entra-global-administrator", "azure", IAM, entra("DirectoryRoleAssignment"),
         {"roleId": GLOBAL_ADMINISTRATOR, "principalObjectId": ENTRA_PRINCIPAL}),
    Case("entra-privileged-role-administrator-upper-case", "azure", IAM, entra("DirectoryRoleAssignment"),
         {"roleId": "E8611AB8-C189-46E8-94E1-60213AB1F814", "principalObjectId": ENTRA_PRINCIPAL,
          "directoryScopeId": "/"}),
    Case("entra-directory-role-by-object-id", "azure", IAM, entra("DirectoryRoleAssignment"),
         {"roleId": "1b4c0000-0000-4000-8000-00000000beef", "principalObjectId": ENTRA_PRINCIPAL}),
    Case("entra-directory-role-eligibility", "azure", IAM, entra("DirectoryRoleEligibilityScheduleRequest"),
         {"roleDefinitionId": GLOBAL_ADMINISTRATOR, "principalId": ENTRA_PRINCIPAL, "directoryScopeId": "/",
          "justification": "ops"}),
    Case("entra-directory-role-member", "azure", IAM, entra("DirectoryRoleMember"),
         {"roleObjectId": "1b4c0000-0000-4000-8000-00000000beef", "memberObjectId": ENTRA_PRINCIPAL}),
    Case("entra-administrative-unit-role-member", "azure", IAM, entra("AdministrativeUnitRoleMember"),
         {"roleObjectId": "1b4c0000-0000-4000-8000-00000000beef", "memberObjectId": ENTRA_PRINCIPAL,
          "administrativeUnitObjectId": "2c5d0000-0000-4000-8000-00000000beef"}),
    *(Case(f"entra-graph-{name.lower().replace('.', '-')}", "azure", IAM, entra("AppRoleAssignment"),
           {"appRoleId": role, "principalObjectId": ENTRA_PRINCIPAL, "resourceObjectId": GRAPH_SERVICE_PRINCIPAL})
      for name, role in (("RoleManagement.ReadWrite.Directory", "9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8"),
                         ("AppRoleAssignment.ReadWrite.All", "06b708a9-e830-4db3-a914-8e69da51d44f"),
                         ("Application.ReadWrite.All", "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9"),
                         ("GroupMember.ReadWrite.All", "dbaae8cf-10b5-4b86-a4a1-f871c94c6695"))),
    Case("arm-graph-app-role-assigned-to", "azure", IAM, "azure-native:resources:Deployment", {
        "resourceGroupName": "mlflow-azure", "properties": {"mode": "Incremental", "template": arm({
            "type": "Microsoft.Graph/appRoleAssignedTo@v1.0", "name": "grant",
            "appRoleId": "9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8", "principalId": ENTRA_PRINCIPAL,
            "resourceId": GRAPH_SERVICE_PRINCIPAL})}}),
    Case("entra-delegated-grant-as-any-user", "azure", IAM, entra("ServicePrincipalDelegatedPermissionGrant"),
         {"servicePrincipalObjectId": ENTRA_PRINCIPAL, "resourceServicePrincipalObjectId": GRAPH_SERVICE_PRINCIPAL,
          "claimValues": ["openid", "Directory.AccessAsUser.All"]}),
    Case("entra-group-member", "azure", IAM, entra("GroupMember"),
         {"groupObjectId": ENTRA_GROUP, "memberObjectId": ENTRA_PRINCIPAL}),
    Case("entra-pim-group-assignment", "azure", IAM, entra("PrivilegedAccessGroupAssignmentSchedule"),
         {"groupId": ENTRA_GROUP, "principalId": ENTRA_PRINCIPAL, "assignmentType": "member",
          "permanentAssignment": True}),
    Case("entra-pim-group-eligibility", "azure", IAM, entra("PrivilegedAccessGroupEligibilitySchedule"),
         {"groupId": ENTRA_GROUP, "principalId": ENTRA_PRINCIPAL, "assignmentType": "owner", "duration": "P30D"}),
    # 4. a managed identity's credentials or attachment, and the roles that grant roles, above a resource group
    *(Case(f"custom-role-{case_id}", "azure", IAM, ROLE_DEFINITION, role_definition(actions, scope))
      for case_id, actions, scope in (
          ("federated-credential-write",
           ["Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
            "Microsoft.ManagedIdentity/userAssignedIdentities/read"], SUBSCRIPTION),
          ("every-identity-action", ["Microsoft.ManagedIdentity/userAssignedIdentities/*"], MANAGEMENT_GROUP),
          ("identity-assign", ["Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action"], SUBSCRIPTION),
          ("managed-identity-provider", ["Microsoft.ManagedIdentity/*"], "/"),
      )),
    *(Case(f"assign-{role.lower().replace(' ', '-')}-{where}", "azure", IAM, ROLE_ASSIGNMENT, assignment(role, scope))
      for role, where, scope in (("Managed Identity Contributor", "subscription", SUBSCRIPTION),
                                 ("Key Vault Data Access Administrator", "subscription", SUBSCRIPTION),
                                 ("Managed Identity Operator", "management-group", MANAGEMENT_GROUP),
                                 ("Managed Identity Federated Identity Credential Contributor", "root", "/"),
                                 ("Virtual Machine Data Access Administrator", "subscription", SUBSCRIPTION),
                                 ("Azure File Sync Administrator", "subscription", SUBSCRIPTION),
                                 ("Reservations Administrator", "subscription", SUBSCRIPTION))),
    Case("classic-assign-managed-identity-contributor-by-name", "azure", IAM,
         "azure:authorization/assignment:Assignment",
         {"scope": SUBSCRIPTION, "roleDefinitionName": "Managed Identity Contributor", "principalId": ENTRA_PRINCIPAL}),
    Case("arm-key-vault-data-access-administrator-at-subscription", "azure", IAM,
         "azure-native:resources:DeploymentAtSubscriptionScope", subscription_deployment(arm_assignment(
             f"[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
             f"'{ROLES['Key Vault Data Access Administrator']}')]"))),
    # 5. a customer-managed prefix list holding a public CIDR (what a rule that references it admits)
    Case("prefix-list-every-address", "aws", PORT, "aws:ec2/managedPrefixList:ManagedPrefixList",
         prefix_list("10.0.0.0/16", "0.0.0.0/0")),
    Case("prefix-list-entry-every-address", "aws", PORT, "aws:ec2/managedPrefixListEntry:ManagedPrefixListEntry",
         {"prefixListId": "pl-0123456789abcdef0", "cidr": "0.0.0.0/0"}),
    Case("prefix-list-ipv6-every-address", "aws", PORT, "aws:ec2/managedPrefixList:ManagedPrefixList",
         {**prefix_list("::/0"), "addressFamily": "IPv6"}),
    Case("native-prefix-list-public-range", "aws", PORT, "aws-native:ec2:PrefixList",
         {"prefixListName": "db-clients", "addressFamily": "IPv4", "maxEntries": 5,
          "entries": [{"cidr": "203.0.113.0/24"}]}),
    Case("cloudformation-prefix-list-every-address", "aws", PORT, "aws:cloudformation/stack:Stack", stack(
        {"Resources": {"Clients": {"Type": "AWS::EC2::PrefixList", "Properties": {
            "PrefixListName": "db-clients", "AddressFamily": "IPv4", "MaxEntries": 5,
            "Entries": [{"Cidr": "0.0.0.0/0"}]}}}})),
    Case("lightsail-database-port-to-everyone-by-default", "aws", PORT,
         "aws:lightsail/instancePublicPorts:InstancePublicPorts", lightsail_ports()),
    Case("lightsail-database-port-to-every-address", "aws", PORT,
         "aws:lightsail/instancePublicPorts:InstancePublicPorts", lightsail_ports("0.0.0.0/0")),
    # 6. secrets in JSON and YAML values, and secret words anywhere in a name
    Case("env-json-database-secret", "aws", SECRETS, pack.ECS_TASK_DEFINITION,
         ecs({"environment": env(**{CONTAINER_DEFINITION_ENV: DATABASE_SECRET})})),
    Case("env-json-nested-credentials", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        MLFLOW_DB_CONFIG=json.dumps({"database": {"user": "mlflow",
                                                  "credentials": {"pass": "Hunter2-very-secret"}}}))})),
    Case("env-json-name-value-pairs", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        SETTINGS=json.dumps([{"name": "DB_HOST", "value": "db"}, {"name": "DB_PASSWORD", "value": "Hunter2"}]))})),
    Case("env-yaml-password", "aws", SECRETS, pack.ECS_TASK_DEFINITION,
         ecs({"environment": env(APP_SETTINGS="password: Hunter2-very-secret")})),
    Case("env-yaml-document", "local", SECRETS, pack.DOCKER_CONTAINER, {"image": "mlflow", "envs": [
        "MLFLOW_CONFIG=database:\n  host: db\n  api_key: 'k3y-0123456789'\n"]}),
    Case("env-ini-password-with-spaces", "azure", SECRETS, "azure-native:app:ContainerApp", app(
        {"name": "SETTINGS", "value": "[db]\nhost = db\nsecret_token = Hunter2-very-secret"})),
    Case("env-python-dict-text", "aws", SECRETS, pack.ECS_TASK_DEFINITION,
         ecs({"environment": env(DB="{'user': 'mlflow', 'password':'Hunter2'}")})),
    *(Case(f"env-name-{name.lower().replace('_', '-')}", "aws", SECRETS, pack.ECS_TASK_DEFINITION,
           ecs({"environment": env(**{name: "hunter2xx"})}))
      for name in ("PASSWORD_DB", "DB_PASSWORD_1", "dbPassword2", "SECRET_KEY_BASE", "API_TOKEN_VALUE", "AWS_CREDS")),
    Case("env-private-jwk-under-a-public-name", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        OIDC_PUBLIC_JWKS='{"keys": [{"kty": "oct", "k": "c2VjcmV0LXNpZ25pbmcta2V5"}]}')})),
    Case("env-aws-key-pair-in-a-value", "aws", SECRETS, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        CLOUD="AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")})),
    Case("env-github-token-in-a-value", "aws", SECRETS, "aws:lambda/function:Function", {
        "role": "r", "runtime": "python3.12", "handler": "h", "environment": {"variables": {
            "REPO": "https://github.com/example/mlflow", "GH": "ghp_0123456789abcdefghijABCDEFGHIJ012345"}}}),
    Case("command-json-credentials", "aws", SECRETS, pack.ECS_TASK_DEFINITION, container(command=[
        "mlflow-migrate", "--config", '{"db": {"user": "mlflow", "password": "Hunter2-very-secret"}}'])),
    # 7. every Azure database server type with a public endpoint
    Case("native-sql-server-public", "azure", PUBLIC, "azure-native:sql:Server",
         {"resourceGroupName": "rg", "administratorLogin": "a", "publicNetworkAccess": "Enabled"}),
    Case("native-sql-server-public-by-default", "azure", PUBLIC, "azure-native:sql/v20230801preview:Server",
         {"resourceGroupName": "rg", "administrators": {"azureADOnlyAuthentication": True}}),
    Case("native-sql-managed-instance-public-endpoint", "azure", PUBLIC, "azure-native:sql:ManagedInstance",
         {"resourceGroupName": "rg", "subnetId": "s", "publicDataEndpointEnabled": True}),
    Case("native-cosmos-postgres-coordinator-public", "azure", PUBLIC, "azure-native:dbforpostgresql:Cluster",
         {"resourceGroupName": "rg", "coordinatorEnablePublicIpAccess": True}),
    Case("native-cosmos-postgres-coordinator-public-by-default", "azure", PUBLIC,
         "azure-native:dbforpostgresql:ServerGroupCluster", {"resourceGroupName": "rg", "nodeCount": 0}),
    Case("native-cosmos-postgres-nodes-public", "azure", PUBLIC, "azure-native:dbforpostgresql:ServerGroupCluster",
         {"resourceGroupName": "rg", "coordinatorEnablePublicIpAccess": False, "nodeEnablePublicIpAccess": True}),
    Case("native-mariadb-public", "azure", PUBLIC, "azure-native:dbformariadb:Server",
         {"resourceGroupName": "rg", "properties": {"createMode": "Default", "publicNetworkAccess": "Enabled"}}),
    Case("native-mongo-cluster-public", "azure", PUBLIC, "azure-native:mongocluster:MongoCluster",
         {"resourceGroupName": "rg", "properties": {"publicNetworkAccess": "Enabled"}}),
    Case("classic-mysql-flexible-public-by-default", "azure", PUBLIC, "azure:mysql/flexibleServer:FlexibleServer",
         {"resourceGroupName": "rg", "administratorLogin": "a", "skuName": "B_Standard_B1s"}),
    Case("classic-mysql-single-server-public-by-default", "azure", PUBLIC, "azure:mysql/server:Server",
         {"resourceGroupName": "rg", "skuName": "GP_Gen5_2", "version": "8.0", "sslEnforcementEnabled": True}),
    Case("classic-mariadb-public-by-default", "azure", PUBLIC, "azure:mariadb/server:Server",
         {"resourceGroupName": "rg", "skuName": "B_Gen5_2", "version": "10.3", "sslEnforcementEnabled": True}),
    Case("classic-cosmos-postgres-public-by-default", "azure", PUBLIC,
         "azure:cosmosdb/postgresqlCluster:PostgresqlCluster", {"resourceGroupName": "rg", "nodeCount": 0}),
    Case("classic-sql-managed-instance-public-endpoint", "azure", PUBLIC,
         "azure:mssql/managedInstance:ManagedInstance",
         {"resourceGroupName": "rg", "subnetId": "s", "publicDataEndpointEnabled": True}),
    Case("arm-sql-server-public", "azure", PUBLIC, "azure-native:resources:Deployment", {
        "resourceGroupName": "mlflow-azure", "properties": {"mode": "Incremental", "template": arm({
            "type": "Microsoft.Sql/servers", "apiVersion": "2023-08-01", "name": "mlflow-sql",
            "properties": {"administratorLogin": "a", "publicNetworkAccess": "Enabled"}})}}),
    # managed policy ARNs named like an administrator's, however separated, in a path, outside the IAM modules
    Case("customer-policy-in-an-admin-path", "aws", IAM, ATTACHMENT,
         {"role": "mlflow-server-task-role-id", "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/admin/everything"}),
    Case("customer-policy-full-access-with-separators", "aws", IAM, ATTACHMENT,
         {"role": "mlflow-server-task-role-id", "policyArn": f"arn:aws:iam::{ACCOUNT}:policy/Ops_Full_Access"}),
    Case("eks-cluster-admin-access-policy", "aws", IAM, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
         {"clusterName": "c", "principalArn": f"arn:aws:iam::{ACCOUNT}:role/ci",
          "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
          "accessScope": {"type": "cluster"}}),
    Case("native-eks-access-entry-admin-policy", "aws", IAM, "aws-native:eks:AccessEntry",
         {"clusterName": "c", "principalArn": f"arn:aws:iam::{ACCOUNT}:role/ci", "accessPolicies": [
             {"policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy",
              "accessScope": {"type": "cluster"}}]}),
]

ACCEPTED_ROUND_5 = [
    # 1. conditions that name something: a tag's value, a cluster, a path spelled out to a `/`
    *(Case(f"condition-names-{case_id}", "aws", None, ROLE_POLICY, statement_on(actions, resource, condition))
      for case_id, actions, resource, condition in (
          ("a-tag-value", "dynamodb:GetItem", f"arn:aws:dynamodb:{REGION_ARN}:table/*", TEAM_TAG),
          ("a-tag-path", "dynamodb:GetItem", f"arn:aws:dynamodb:{REGION_ARN}:table/*",
           {"StringLike": {"aws:ResourceTag/path": "mlflow/*"}}),
          ("a-cluster", "ecs:StopTask", f"arn:aws:ecs:{REGION_ARN}:task/*", {"ArnEquals": {"ecs:cluster": CLUSTER}}),
          ("a-cluster-by-tag-true", "ecs:StopTask", f"arn:aws:ecs:{REGION_ARN}:task/*",
           {"StringEquals": {"aws:ResourceTag/mlflow": "true"}}),
          ("own-parameters-and-account", "ssm:GetParameters", f"arn:aws:ssm:{REGION_ARN}:parameter/mlflow/*",
           {"StringEquals": {"aws:ResourceAccount": ACCOUNT}}),
          ("one-access-point", "s3:GetObject", f"arn:aws:s3:{REGION_ARN}:accesspoint/mlflow/object/*", None),
      )),
    # 2. the same actions on resources whose names are spelled out
    *(Case(f"runs-code-on-{case_id}", "aws", None, ROLE_POLICY, statement_on(actions, resource))
      for case_id, actions, resource in (
          ("one-stack", ["cloudformation:CreateChangeSet", "cloudformation:ExecuteChangeSet"],
           f"arn:aws:cloudformation:{REGION_ARN}:stack/mlflow-helper/*"),
          ("one-project", ["codebuild:StartBuild", "codebuild:StartBuildBatch"],
           f"arn:aws:codebuild:{REGION_ARN}:project/mlflow-image"),
          ("one-job", ["glue:StartJobRun"], f"arn:aws:glue:{REGION_ARN}:job/mlflow-export"),
          ("one-task-family", ["ecs:RunTask"], f"arn:aws:ecs:{REGION_ARN}:task-definition/mlflow-gc:*"),
          ("one-launch-template", ["ec2:CreateLaunchTemplateVersion"],
           f"arn:aws:ec2:{REGION_ARN}:launch-template/lt-0123456789abcdef0"),
          ("one-auto-scaling-group", ["autoscaling:UpdateAutoScalingGroup"],
           f"arn:aws:autoscaling:{REGION_ARN}:autoScalingGroup:*:autoScalingGroupName/mlflow-workers"),
      )),
    # 3. azuread grants that hand out nothing of the directory
    Case("entra-graph-user-read-all", "azure", None, entra("AppRoleAssignment"),
         {"appRoleId": "df021288-bdef-4463-88db-98f22de89214", "principalObjectId": ENTRA_PRINCIPAL,
          "resourceObjectId": GRAPH_SERVICE_PRINCIPAL}),
    Case("entra-default-access-to-own-app", "azure", None, entra("AppRoleAssignment"),
         {"appRoleId": "00000000-0000-0000-0000-000000000000", "principalObjectId": ENTRA_PRINCIPAL,
          "resourceObjectId": "3d4e0000-0000-4000-8000-00000000beef"}),
    Case("entra-delegated-grant-sign-in", "azure", None, entra("ServicePrincipalDelegatedPermissionGrant"),
         {"servicePrincipalObjectId": ENTRA_PRINCIPAL, "resourceServicePrincipalObjectId": GRAPH_SERVICE_PRINCIPAL,
          "claimValues": ["openid", "profile", "User.Read"]}),
    # 4. identity and key vault roles at a resource group or one resource; a custom role that only reads identities
    Case("managed-identity-operator-on-a-resource-group", "azure", None, ROLE_ASSIGNMENT,
         assignment("Managed Identity Operator", RESOURCE_GROUP)),
    Case("key-vault-data-access-administrator-on-a-vault", "azure", None, ROLE_ASSIGNMENT, assignment(
        "Key Vault Data Access Administrator", f"{RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults/mlflow")),
    Case("key-vault-secrets-user-at-subscription", "azure", None, ROLE_ASSIGNMENT,
         assignment("Key Vault Secrets User", SUBSCRIPTION)),
    Case("custom-role-reads-identities", "azure", None, ROLE_DEFINITION,
         role_definition(["Microsoft.ManagedIdentity/userAssignedIdentities/read"], SUBSCRIPTION)),
    # 5. private prefix lists, and rules that reference a prefix list (judged where it is made)
    Case("prefix-list-private-ranges", "aws", None, "aws:ec2/managedPrefixList:ManagedPrefixList",
         prefix_list("10.0.0.0/16", "100.64.0.0/10")),
    Case("prefix-list-entry-private", "aws", None, "aws:ec2/managedPrefixListEntry:ManagedPrefixListEntry",
         {"prefixListId": "pl-0123456789abcdef0", "cidr": "192.168.0.0/24"}),
    Case("database-rule-from-a-prefix-list", "aws", None, pack.SECURITY_GROUP_INGRESS_RULE,
         {"securityGroupId": "mlflow-platform-database-sg-id", "ipProtocol": "tcp", "fromPort": 5432,
          "toPort": 5432, "prefixListId": "pl-0123456789abcdef0"}),
    Case("lightsail-database-port-private", "aws", None, "aws:lightsail/instancePublicPorts:InstancePublicPorts",
         lightsail_ports("10.0.0.0/16")),
    Case("lightsail-https-to-everyone", "aws", None, "aws:lightsail/instancePublicPorts:InstancePublicPorts",
         lightsail_ports(port=443)),
    # 6. structured values and names that hold no secret
    Case("env-structured-values-without-secrets", "aws", None, pack.ECS_TASK_DEFINITION, ecs({"environment": env(
        DB_CONFIG=json.dumps({"host": "db", "port": 5432, "user": "mlflow", "passwordFile": "/run/secrets/db",
                              "password": "${DB_PASSWORD}", "tokenUrl": "https://auth.example.com/token"}),
        TAGS=json.dumps([{"key": "team", "value": "mlflow"}, {"Key": "env", "Value": "prod"}]),
        LOGGING="version: 1\nformatters:\n  plain:\n    format: '%(message)s'\n",
        APP_SETTINGS="password: ${DB_PASSWORD}\nsecret: null",
        PASSWORD_MIN_LENGTH="12", DB_PASSWORD_FILE="/run/secrets/db", SECRET_NAME="mlflow/db",
        DB_SECRET_ARN=f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:mlflow-db-AbCdEf",
        TOKEN_EXPIRY_SECONDS="3600", KEY_VAULT_URI="https://mlflow.vault.azure.net/"),
        "command": ["sh", "-c", 'echo "$REGISTRY_PASSWORD" | docker login --password-stdin registry.example.com']})),
    # 7. the database servers with their public endpoints off
    Case("native-sql-server-private", "azure", None, "azure-native:sql:Server",
         {"resourceGroupName": "rg", "publicNetworkAccess": "Disabled"}),
    Case("native-cosmos-postgres-private", "azure", None, "azure-native:dbforpostgresql:Cluster",
         {"resourceGroupName": "rg", "coordinatorEnablePublicIpAccess": False}),
    Case("native-sql-managed-instance-private", "azure", None, "azure-native:sql:ManagedInstance",
         {"resourceGroupName": "rg", "subnetId": "s", "publicDataEndpointEnabled": False}),
    Case("classic-mysql-flexible-in-a-delegated-subnet", "azure", None, "azure:mysql/flexibleServer:FlexibleServer",
         {"resourceGroupName": "rg", "delegatedSubnetId": "subnet", "privateDnsZoneId": "zone"}),
    Case("classic-mysql-server-private", "azure", None, "azure:mysql/server:Server",
         {"resourceGroupName": "rg", "skuName": "GP_Gen5_2", "publicNetworkAccessEnabled": False}),
    Case("classic-cosmos-postgres-private", "azure", None, "azure:cosmosdb/postgresqlCluster:PostgresqlCluster",
         {"resourceGroupName": "rg", "coordinatorPublicIpAccessEnabled": False}),
    # 8. an NSG rule from application security groups (the VNet's own NICs), the classic provider's ids
    Case("classic-nsg-rule-from-application-security-groups", "azure", None,
         "azure:network/networkSecurityRule:NetworkSecurityRule",
         classic_nsg_rule(sourceApplicationSecurityGroupIds=[APPLICATION_SECURITY_GROUP])),
    Case("classic-nsg-inline-rule-from-application-security-groups", "azure", None,
         "azure:network/networkSecurityGroup:NetworkSecurityGroup",
         {"resourceGroupName": "mlflow-azure", "securityRules": [
             {k: v for k, v in classic_nsg_rule(sourceApplicationSecurityGroupIds=[APPLICATION_SECURITY_GROUP]).items()
              if k not in ("resourceGroupName", "networkSecurityGroupName")}]}),
    # 9. RDS enhanced monitoring's role (monitoringInterval > 0)
    Case("attach-rds-enhanced-monitoring-role", "aws", None, ATTACHMENT,
         {"role": "rds-monitoring", "policyArn": f"{MANAGED}service-role/AmazonRDSEnhancedMonitoringRole"}),
    Case("role-with-rds-enhanced-monitoring-role", "aws", None, pack.IAM_ROLE, {
        "assumeRolePolicy": document({"Effect": "Allow", "Principal": {"Service": "monitoring.rds.amazonaws.com"},
                                      "Action": "sts:AssumeRole"}),
        "managedPolicyArns": [f"{MANAGED}service-role/AmazonRDSEnhancedMonitoringRole"]}),
    Case("eks-view-access-policy-in-a-namespace", "aws", None,
         "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
         {"clusterName": "c", "principalArn": f"arn:aws:iam::{ACCOUNT}:role/ci",
          "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy",
          "accessScope": {"type": "namespace", "namespaces": ["mlflow"]}}),
]


CASES = REJECTED + REJECTED_ROUND_2 + REJECTED_ROUND_3 + REJECTED_ROUND_4 + REJECTED_ROUND_5 + ACCEPTED + \
    ACCEPTED_ROUND_2 + ACCEPTED_ROUND_3 + ACCEPTED_ROUND_4 + ACCEPTED_ROUND_5
