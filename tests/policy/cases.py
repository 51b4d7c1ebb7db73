"""Resources the program does not make, each added to a recorded graph: the ways around a policy an
attacker would try first (each must be rejected by that policy alone) and the near misses a team
legitimately writes (each must pass every policy). test_policies.py judges them with direct calls,
test_pack_server.py over the analyzer's gRPC interface, in the engine's wire format.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from policy import policies as pack
from tests.harness.program import Recorded
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
}
TEMPLATES = {  # stack -> a recorded resource whose parent, provider and stack an added one takes
    "aws": (pack.SECURITY_GROUP_INGRESS_RULE, "mlflow-platform-database-in-server"),
    "azure": ("azure-native:authorization:RoleAssignment", "mlflow-artifacts-server-access"),
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


def added(resources: list[Recorded], case: Case) -> Recorded:
    """The case's resource as the program would register it in the stack (protected, so only the
    property under test can offend)."""
    template = one(resources, *TEMPLATES[case.stack])
    name = f"case-{case.id}"
    urn = template.urn.rsplit("::", 2)[0] + f"::{case.type}::{name}"
    return dataclasses.replace(template, type=case.type, name=name, urn=urn, raw_inputs=case.inputs, protect=True,
                               dependencies=[])


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
        allow("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:mlflow-*"),
        allow("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/mlflow-*"))),
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

CASES = REJECTED + ACCEPTED
