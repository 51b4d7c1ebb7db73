"""The MLflow platform's promises as CrossGuard policies, for any program that uses its components.

Every policy is mandatory. This module only defines them (`POLICIES`); `__main__.py` hands them to
`PolicyPack`, which starts the analyzer server, so tests and other tools can import this module and
call `policy.validate(args, report_violation)` directly.

What a policy sees: a resource validation gets the resource's inputs, a stack validation every
resource's outputs (in a preview: inputs plus unknowns), both wrapped by pulumi_policy in proxies
that are `Mapping`/`Sequence` (not `dict`/`list`) and raise `UnknownValueError` on a value that is
not known yet. Pulumi secrets arrive unwrapped. A resource validation lets `UnknownValueError`
escape (the analyzer reports "can't run during preview" and runs the policy again at `pulumi up`);
a stack validation skips the one resource it cannot judge yet, so the others are still checked.
Numbers arrive as floats (the engine's property structs): a protocol may be -1.0.

Two policies take configuration (`--policy-pack-config`, handed over by the analyzer's `Configure`,
read with `args.get_config()`): `iam-least-privilege` (IAM_CONFIG_SCHEMA) and
`stateful-resources-protected` (PROTECTION_CONFIG_SCHEMA). Their defaults are the unconfigured
behaviour; a configuration the policy refuses raises PolicyConfigError, which fails the CLI's run.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

MANDATORY = EnforcementLevel.MANDATORY

# --- type tokens ---------------------------------------------------------------------------------

RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
RDS_CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
S3_BUCKETS = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_ENCRYPTION = frozenset({
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
})
S3_BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
S3_BUCKET_ACL = frozenset({"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"})
IAM_POLICY_DOCUMENTS = {  # type -> the property holding an identity policy document
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
    "aws:ssoadmin/permissionSetInlinePolicy:PermissionSetInlinePolicy": "inlinePolicy",
}
IAM_ROLE = "aws:iam/role:Role"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SECURITY_GROUP_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
ECS_TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
FLEXIBLE_SERVER = "azure-native:dbforpostgresql:Server"
FLEXIBLE_SERVER_DATABASE = "azure-native:dbforpostgresql:Database"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
BLOB_CONTAINER = "azure-native:storage:BlobContainer"
LOG_ANALYTICS_WORKSPACE = "azure-native:operationalinsights:Workspace"
CONTAINER_APPS = frozenset({"azure-native:app:ContainerApp", "azure-native:app:Job"})
DOCKER_CONTAINER = "docker:index/container:Container"
DOCKER_VOLUME = "docker:index/volume:Volume"
MINIO_BUCKET = "minio:index/s3Bucket:S3Bucket"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
NETWORK_SECURITY_GROUPS = frozenset({"azure-native:network:NetworkSecurityGroup",
                                     "azure:network/networkSecurityGroup:NetworkSecurityGroup"})
NETWORK_SECURITY_RULES = frozenset({"azure-native:network:SecurityRule",
                                    "azure:network/networkSecurityRule:NetworkSecurityRule"})
DATABASE_FIREWALL_MODULES = ("azure-native:dbforpostgresql:", "azure-native:dbformysql:", "azure-native:dbformariadb:",
                             "azure-native:sql:", "azure:postgresql/", "azure:mysql/", "azure:mariadb/", "azure:mssql/",
                             "azure:sql/")
"""Where a type whose name ends in FirewallRule (startIpAddress..endIpAddress) opens a database server."""
IAM_ATTACHING_MODULES = ("aws:iam/", "aws:ssoadmin/")
"""The modules whose resources attach managed policies by ARN (RolePolicyAttachment, Role.managedPolicyArns,
the *PolicyAttachmentsExclusive lists, PolicyAttachment, IAM Identity Center's ManagedPolicyAttachment)."""
TRUST_POLICY = {IAM_ROLE: "assumeRolePolicy"}
AZURE_ROLE_ASSIGNMENTS = frozenset({
    "azure-native:authorization:RoleAssignment",
    "azure-native:authorization:RoleAssignmentScheduleRequest",  # PIM: an active assignment
    "azure-native:authorization:RoleEligibilityScheduleRequest",  # PIM: an eligible one, activated at will
    "azure:authorization/assignment:Assignment",
})
AZURE_ROLE_DEFINITIONS = frozenset({"azure-native:authorization:RoleDefinition",
                                    "azure:authorization/roleDefinition:RoleDefinition"})

# --- facts the policies decide by ----------------------------------------------------------------

DATABASE_PORTS = {5432: "PostgreSQL", 3306: "MySQL", 1433: "SQL Server", 1521: "Oracle"}
"""The ports of the engines RDS runs; the components deploy PostgreSQL."""

ACTIONS_ONLY_ON_ANY_RESOURCE = frozenset(action.lower() for action in (
    # The execution roles log in to ECR before pulling the image (the pull itself is scoped).
    "ecr:GetAuthorizationToken",
    # ECS Exec (aws.execEnabled): Session Manager's channels for `aws ecs execute-command`.
    "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
    # Documented as taking only "*": ECS Exec's CloudWatch logging looks its log group up with the
    # first, metric publishers (scope them with the cloudwatch:namespace condition) need the second.
    "logs:DescribeLogGroups", "cloudwatch:PutMetricData",
))
"""IAM actions that have no resource-level permissions: AWS accepts them only with `Resource: "*"`."""

PRIVATE_NETWORKS = tuple(ipaddress.ip_network(network) for network in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # RFC 6598, shared address space
    "127.0.0.0/8", "::1/128",  # loopback
    "169.254.0.0/16", "fe80::/10",  # link-local
    "fc00::/7",  # unique local addresses (ULA)
))
"""The only source ranges that may reach a database port: a CIDR must lie wholly inside one of them."""
PRIVATE_SERVICE_TAGS = frozenset({"virtualnetwork", "azureloadbalancer"})
"""Azure NSG service tags that stand for private sources (the VNet and its peerings, the platform's probes).
Every other tag (Internet, *, AzureCloud, Storage, ...) names public addresses."""

ESCALATION_ACTIONS = frozenset(action.lower() for action in (
    "iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:AttachGroupPolicy",
    "iam:PutRolePolicy", "iam:PutUserPolicy", "iam:PutGroupPolicy",
    "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary",
    "iam:PutUserPermissionsBoundary", "iam:DeleteUserPermissionsBoundary",
    "iam:CreateAccessKey", "iam:CreateLoginProfile", "iam:UpdateLoginProfile", "iam:AddUserToGroup",
))
"""IAM actions that grant permissions or credentials: whoever holds one on any identity (its own role
included) can make itself an administrator. Refused whatever the Resource, also matched by wildcards
(iam:*, iam:Put*, iam:Attach*, *Policy, ...)."""
IDENTITY_SERVICES = frozenset({"iam", "sts", "kms", "organizations", "account", "sso", "sso-directory",
                               "identitystore", "secretsmanager"})
"""Services whose actions on every resource of an account hand out identities, credentials or keys: a
wildcard resource (arn:aws:iam::123456789012:role/*) is refused for them even with a Condition."""
_CONFIGURABLE_ACTION = re.compile(r"[A-Za-z0-9-]+:[A-Za-z0-9]+")
_LISTING_ACTION = re.compile(r"[a-z0-9-]+:(?:list|describe)[a-z0-9]*")

BROAD_MANAGED_POLICY_NAME = re.compile(r"admin|poweruser|fullaccess|readwrite", re.IGNORECASE)
"""AWS-managed policies that are broad by name: AdministratorAccess (and -Amplify, ...), *Administrator
(job functions, AWSSSOMasterAccountAdministrator), *AdminAccess, PowerUserAccess, *PowerUser,
IAMFullAccess and every other *FullAccess / *_FullAccess, SecretsManagerReadWrite. AWS-managed policies
are never scoped to the project's resources, so these mean "every resource of the account"."""
_AWS_MANAGED_POLICY_ARN = re.compile(r"arn:[^:]*:iam::aws:policy/(?P<path>.*)", re.IGNORECASE)

AZURE_PRIVILEGED_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
}
"""Azure's built-in privileged roles (the role definition GUIDs of
https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/privileged): all actions, or
the right to assign roles. Refused at subscription, management-group or root scope."""
AZURE_ROLE_ADMIN_ACTIONS = ("microsoft.authorization/roleassignments/write",
                            "microsoft.authorization/roledefinitions/write",
                            "microsoft.authorization/elevateaccess/action")
"""What a custom role must not be able to do above a resource group (besides all actions, "*")."""

PUBLIC_CANNED_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
MINIO_PUBLIC_ACLS = frozenset({"public", "public-read", "public-read-write"})
STRONG_S3_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
STRONG_TLS_VERSIONS = frozenset({"TLS1_2", "TLS1_3"})
KEEP_LABEL = ("org.mlflow-platform.data", "keep")
"""The label the local platform puts on a volume it creates with `retain_on_delete`: the policy API
does not pass that option on, so this label is the mark a policy can read."""
RUNTIME_MOUNT_PREFIXES = ("/run", "/var/run", "/tmp", "/dev")
"""Mount points that hold sockets and scratch files, never data."""

_SECRET_WORD_ENDINGS = ("PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "SECRETS", "TOKEN", "CREDENTIAL",
                        "CREDENTIALS", "APIKEY", "PRIVATEKEY", "ACCESSKEY", "SECRETKEY")
_SECRET_WORDS = frozenset({"KEY", "PWD", "PASS"})
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)
_CONNECTION_STRING_KEY = re.compile(r"(?:^|;)\s*(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd)"
                                    r"\s*=\s*[^;\s]", re.IGNORECASE)
_PRIVATE_KEY_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_API_VERSION = re.compile(r"/v\d{8}(?:preview)?(?=:)")


# --- reading properties ----------------------------------------------------------------------------

def normalized_type(resource_type: str) -> str:
    """`azure-native:dbforpostgresql/v20241101preview:Server` -> `azure-native:dbforpostgresql:Server`:
    azure-native also offers each resource under explicit API versions."""
    return _API_VERSION.sub("", resource_type)


def get(value: Any, *path: str | int, default: Any = None) -> Any:
    """The value at `path` inside nested mappings and sequences, or `default` where a step is missing."""
    for step in path:
        if isinstance(step, int):
            if not is_sequence(value) or not -len(value) <= step < len(value):
                return default
            value = value[step]
        else:
            if not isinstance(value, Mapping) or step not in value:
                return default
            value = value[step]
    return default if value is None else value


def is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def as_list(value: Any) -> list[Any]:
    """IAM and friends accept one item or a list of them: always a list."""
    if value is None:
        return []
    return list(value) if is_sequence(value) else [value]


def _without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects with one key twice (also "Action" and "action") are refused: which one would AWS read?"""
    seen: set[str] = set()
    for name, _ in pairs:
        if name.lower() in seen:
            raise ValueError(f"duplicate key {name!r}")
        seen.add(name.lower())
    return dict(pairs)


def _parse_document(value: Any) -> Any:
    """A document given as JSON text (what the providers take) or as an object; ValueError if unreadable."""
    if isinstance(value, str):
        return json.loads(value, object_pairs_hook=_without_duplicate_keys) if value.strip() else {}
    return {} if value is None else value


def document(value: Any) -> Mapping[str, Any]:
    """A policy document given as JSON text or as an object; {} where it cannot be read."""
    try:
        parsed = _parse_document(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, Mapping) else {}


def unreadable_document(value: Any) -> bool:
    """A policy document that is given but is no JSON object (AWS would refuse it, or read it otherwise)."""
    try:
        return not isinstance(_parse_document(value), Mapping)
    except ValueError:
        return True


def statements(policy_document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The statements of a document, one or a list, its element names matched without regard to case."""
    return [item for item in as_list(key(policy_document, "Statement")) if isinstance(item, Mapping)]


def key(mapping: Any, name: str) -> Any:
    """A mapping's value under `name`, matched without regard to case (IAM condition keys)."""
    if isinstance(mapping, Mapping):
        for candidate in mapping:
            if isinstance(candidate, str) and candidate.lower() == name.lower():
                return mapping[candidate]
    return None


def short_type(resource_type: str) -> str:
    return normalized_type(resource_type).rsplit(":", 1)[-1]


def label(resource_type: str, name: str) -> str:
    """How a message names a resource: its provider, kind and Pulumi name ("aws Instance 'mlflow-metadata'")."""
    return f"{resource_type.split(':', 1)[0]} {short_type(resource_type)} '{name}'"


def is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


# --- secrets in environment variables ----------------------------------------------------------

def looks_like_secret_name(name: str) -> bool:
    """An env var named like a secret: its last word is a secret word (..._PASSWORD, ..._SECRET_KEY,
    ..._TOKEN, a connection string). Names whose last word says the value only points at or
    describes a secret hold none: AWS_ACCESS_KEY_ID (an id), POSTGRES_PASSWORD_FILE (a path),
    *_SECRET_ARN, *_SECRETS_SHA256 (a digest), and AWS_DEFAULT_REGION or *_URL have no secret word."""
    words = [word for word in re.split(r"[^A-Z0-9]+", name.upper()) if word]
    if not words:
        return False
    if words[-2:] == ["CONNECTION", "STRING"] or words[-1] == "CONNECTIONSTRING":
        return True
    last = words[-1]
    return last in _SECRET_WORDS or last.endswith(_SECRET_WORD_ENDINGS)


def looks_like_secret_value(value: Any) -> bool:
    """A value that carries a credential whatever its name: a URL with a password, a connection
    string with a key or password, a PEM private key."""
    if not isinstance(value, str):
        return False
    return bool(_URL_WITH_PASSWORD.search(value) or _CONNECTION_STRING_KEY.search(value)
                or _PRIVATE_KEY_PEM.search(value))


def secret_env_entries(env: Iterable[tuple[str, Any]]) -> list[str]:
    """The names of the plain env entries that look like they hold a secret."""
    found = []
    for name, value in env:
        if value in (None, ""):
            continue
        if looks_like_secret_name(name) or looks_like_secret_value(value):
            found.append(name)
    return found


def _ecs_environment(props: Mapping[str, Any]) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    definitions = get(props, "containerDefinitions", default=[])
    if isinstance(definitions, str):
        try:
            definitions = json.loads(definitions)
        except ValueError:
            return
    for definition in as_list(definitions):
        if isinstance(definition, Mapping):
            yield (str(get(definition, "name", default="?")),
                   [(str(get(e, "name", default="")), get(e, "value"))
                    for e in as_list(get(definition, "environment"))])


def _docker_environment(props: Mapping[str, Any]) -> list[tuple[str, Any]]:
    entries = []
    for entry in as_list(get(props, "envs")):
        if isinstance(entry, str):
            name, _, value = entry.partition("=")
            entries.append((name, value))
    return entries


def _container_app_environment(props: Mapping[str, Any]) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    template = get(props, "template", default={})
    for container in [*as_list(get(template, "initContainers")), *as_list(get(template, "containers"))]:
        if isinstance(container, Mapping):
            yield (str(get(container, "name", default="?")),
                   [(str(get(e, "name", default="")), get(e, "value")) for e in as_list(get(container, "env"))
                    if isinstance(e, Mapping) and not get(e, "secretRef")])


def validate_container_env(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    if kind == ECS_TASK_DEFINITION:
        for container, env in _ecs_environment(props):
            for variable in secret_env_entries(env):
                report(f"{label(kind, name)}: container '{container}' has {variable} in plain `environment`, "
                       "visible to anyone who may describe the task definition. Store the value in Secrets Manager "
                       "(or SSM Parameter Store) and list it under the container's `secrets` with `valueFrom`.", None)
    elif kind == DOCKER_CONTAINER:
        for variable in secret_env_entries(_docker_environment(props)):
            report(f"{label(kind, name)} has {variable} in `envs`, which `docker inspect` shows to anyone with "
                   "access to the Docker API. Upload the value as a file (`uploads`, or a volume) and pass its "
                   f"path instead (e.g. {variable}_FILE where the image reads one).", None)
    elif kind in CONTAINER_APPS:
        for container, env in _container_app_environment(props):
            for variable in secret_env_entries(env):
                report(f"{label(kind, name)}: container '{container}' sets {variable} with a plain `value`, "
                       "shown in the app's template. Declare it in `configuration.secrets` (or as a Key Vault "
                       "reference) and set the env entry's `secretRef` instead.", None)


# --- databases -------------------------------------------------------------------------------------

def validate_database_not_public(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    if kind in (RDS_INSTANCE, RDS_CLUSTER, RDS_CLUSTER_INSTANCE) and is_true(get(props, "publiclyAccessible")):
        report(f"{label(kind, name)} is publicly accessible: set publiclyAccessible to false and reach it from "
               "inside the VPC (the server's security group, a one-off task).", None)
    elif kind == FLEXIBLE_SERVER:
        access = get(props, "network", "publicNetworkAccess")
        if access != "Disabled":
            report(f"{label(kind, name)} has network.publicNetworkAccess "
                   f"{access or 'unset (public unless the server is in a delegated subnet)'}: "
                   "set it to \"Disabled\" and put the server in a delegated subnet with a private DNS zone.", None)


def is_private_network(value: Any) -> bool:
    """Whether every address of a CIDR (or of one address) is private: RFC 1918, RFC 6598, loopback,
    link-local or ULA. What does not parse is not private."""
    try:
        network = ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        return False
    return any(network.version == private.version and network.subnet_of(private)
               for private in PRIVATE_NETWORKS)


def public_sources(sources: Iterable[Any]) -> list[str]:
    """The source CIDRs that admit any address outside the private ranges (0.0.0.0/0, 0.0.0.0/1,
    203.0.113.0/24, 2001:db8::/32, ::ffff:0:0/96, a typo that does not parse, ...)."""
    return [str(source) for source in sources if source not in (None, "") and not is_private_network(source)]


def _protocol(value: Any) -> str:
    """A protocol as the AWS API reads it: the engine's wire format makes numbers floats (-1.0, 6.0)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value))
    return "" if value is None else str(value).strip().lower()


def _ports_cover_database(protocol: Any, from_port: Any, to_port: Any) -> list[int]:
    """The database ports an AWS rule admits: all of them for protocol -1/all (or none given), the ones
    between fromPort and toPort for TCP (all of them when the range is missing or unreadable)."""
    protocol_name = _protocol(protocol)
    if protocol_name in ("-1", "all", ""):
        return sorted(DATABASE_PORTS)
    if protocol_name not in ("tcp", "6"):
        return []
    try:
        low, high = sorted((int(float(from_port)), int(float(to_port))))
    except (TypeError, ValueError):
        return sorted(DATABASE_PORTS)
    return [port for port in sorted(DATABASE_PORTS) if low <= port <= high]


def _azure_ports_cover_database(protocol: Any, ranges: Iterable[Any]) -> list[int]:
    """The database ports an NSG rule admits ("5432", "5000-6000", "*"; unreadable means all)."""
    if _protocol(protocol) not in ("tcp", "*", "", "any"):
        return []
    covered: set[int] = set()
    for port_range in ranges:
        text = str(port_range).strip()
        if text in ("*", ""):
            return sorted(DATABASE_PORTS)
        low, _, high = text.partition("-")
        try:
            first, last = sorted((int(low), int(high or low)))
        except ValueError:
            return sorted(DATABASE_PORTS)
        covered.update(port for port in DATABASE_PORTS if first <= port <= last)
    return sorted(covered)


def _public_nsg_sources(rule: Any) -> list[str]:
    prefixes = [*as_list(get(rule, "sourceAddressPrefix")), *as_list(get(rule, "sourceAddressPrefixes"))]
    prefixes = [prefix for prefix in prefixes if prefix not in (None, "")]
    if not prefixes:  # an application security group holds the VNet's own NICs; nothing at all means any
        return [] if as_list(get(rule, "sourceApplicationSecurityGroups")) else ["(no source: any)"]
    public = []
    for prefix in prefixes:
        text = str(prefix).strip()
        if text.lower() in PRIVATE_SERVICE_TAGS or is_private_network(text):
            continue
        public.append(text)
    return public


def _public_address_range(start: Any, end: Any) -> bool:
    """Whether startIpAddress..endIpAddress holds any non-private address (0.0.0.0..0.0.0.0 is Azure's
    "allow every Azure service", i.e. any tenant's resources)."""
    try:
        first, last = ipaddress.ip_address(str(start).strip()), ipaddress.ip_address(str(end).strip())
    except ValueError:
        return True
    if first.version != last.version:
        return True
    first, last = min(first, last), max(first, last)
    return not all(is_private_network(network) for network in ipaddress.summarize_address_range(first, last))


def _aws_ingress_rules(kind: str, props: Mapping[str, Any]) -> list[tuple[Any, Any, Any, list[Any]]]:
    """(protocol, from port, to port, source CIDRs) of each ingress rule an AWS resource declares."""
    rules: list[tuple[Any, Any, Any, list[Any]]] = []
    if kind in (SECURITY_GROUP, DEFAULT_SECURITY_GROUP):
        for rule in as_list(get(props, "ingress")):
            rules.append((get(rule, "protocol"), get(rule, "fromPort"), get(rule, "toPort"),
                          [*as_list(get(rule, "cidrBlocks")), *as_list(get(rule, "ipv6CidrBlocks"))]))
    elif kind == SECURITY_GROUP_RULE and str(get(props, "type", default="")).strip().lower() == "ingress":
        rules.append((get(props, "protocol"), get(props, "fromPort"), get(props, "toPort"),
                      [*as_list(get(props, "cidrBlocks")), *as_list(get(props, "ipv6CidrBlocks"))]))
    elif kind == SECURITY_GROUP_INGRESS_RULE:
        rules.append((get(props, "ipProtocol"), get(props, "fromPort"), get(props, "toPort"),
                      [*as_list(get(props, "cidrIpv4")), *as_list(get(props, "cidrIpv6"))]))
    return rules


def _is_database_firewall_rule(kind: str) -> bool:
    return kind.startswith(DATABASE_FIREWALL_MODULES) and kind.endswith("FirewallRule")


def _engines(ports: Iterable[int]) -> str:
    return ", ".join(f"{port} ({DATABASE_PORTS[port]})" for port in ports)


def validate_database_port_closed_to_internet(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    for protocol, from_port, to_port, cidrs in _aws_ingress_rules(kind, props):
        ports = _ports_cover_database(protocol, from_port, to_port)
        public = public_sources(cidrs)
        if ports and public:
            report(f"{label(kind, name)} admits {' and '.join(public)} to database port {_engines(ports)}: allow "
                   "only the security group of the tasks that use the database (referencedSecurityGroupId / "
                   "securityGroups), or a private CIDR (RFC 1918, 100.64.0.0/10, a ULA).", None)
    if kind in NETWORK_SECURITY_GROUPS or kind in NETWORK_SECURITY_RULES:
        rules = as_list(get(props, "securityRules")) if kind in NETWORK_SECURITY_GROUPS else [props]
        for rule in rules:
            if str(get(rule, "access", default="")).lower() == "deny" or \
                    str(get(rule, "direction", default="")).lower() == "outbound":
                continue
            ports = _azure_ports_cover_database(
                get(rule, "protocol"),
                [*as_list(get(rule, "destinationPortRange")), *as_list(get(rule, "destinationPortRanges"))]
                or ["*"])
            public = _public_nsg_sources(rule)
            if ports and public:
                report(f"{label(kind, name)}: rule '{get(rule, 'name', default=name)}' admits {' and '.join(public)} "
                       f"to database port {_engines(ports)}: allow only VirtualNetwork, the subnet of the apps, or "
                       "another private CIDR.", None)
    elif _is_database_firewall_rule(kind):
        start, end = get(props, "startIpAddress"), get(props, "endIpAddress")
        if _public_address_range(start, end):
            azure_services = " (Azure's \"allow all Azure services\": every tenant's resources)" \
                if str(start).strip() == str(end).strip() == "0.0.0.0" else ""
            report(f"{label(kind, name)} opens the database server to {start}-{end}{azure_services}: keep public "
                   "network access disabled and reach the server from its VNet; a firewall rule may only name "
                   "private addresses.", None)


# --- storage -----------------------------------------------------------------------------------------

def validate_storage_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    if kind in (RDS_INSTANCE, RDS_CLUSTER) and not is_true(get(props, "storageEncrypted")):
        report(f"{label(kind, name)} has unencrypted storage: set storageEncrypted to true (with kmsKeyId for your own "
               "key). RDS cannot encrypt an existing instance in place: restore an encrypted copy of a snapshot.", None)
    elif kind in S3_ENCRYPTION:
        if not _s3_rules_encrypt(get(props, "rules")):
            report(f"{label(kind, name)} sets no default encryption: give it a rule with "
                   "applyServerSideEncryptionByDefault.sseAlgorithm AES256 or aws:kms.", None)
    elif kind in S3_BUCKETS:
        inline = get(props, "serverSideEncryptionConfiguration")
        if inline is not None and not _s3_rules_encrypt(get(inline, "rule", default=get(inline, "rules"))):
            report(f"{label(kind, name)} has an inline serverSideEncryptionConfiguration without a default "
                   "algorithm: use AES256 or aws:kms (or a BucketServerSideEncryptionConfiguration).", None)
    elif kind == FLEXIBLE_SERVER:
        encryption = get(props, "dataEncryption")
        if encryption is not None:
            encryption_type = get(encryption, "type")
            key_uri = get(encryption, "primaryKeyURI", default=get(encryption, "primaryKeyUri"))
            if encryption_type not in (None, "SystemAssigned", "AzureKeyVault") or (
                    encryption_type == "AzureKeyVault"
                    and not (key_uri and get(encryption, "primaryUserAssignedIdentityId"))):
                report(f"{label(kind, name)} has dataEncryption {dict(encryption)}: leave it out (service-managed "
                       "keys) or use type \"AzureKeyVault\" with primaryKeyURI and primaryUserAssignedIdentityId.",
                       None)
    elif kind == STORAGE_ACCOUNT:
        encryption = get(props, "encryption")
        if encryption is not None:
            disabled = [service for service, setting in (get(encryption, "services", default={}) or {}).items()
                        if get(setting, "enabled") is False]
            key_source = get(encryption, "keySource")
            if disabled or key_source not in (None, "Microsoft.Storage", "Microsoft.Keyvault") or (
                    key_source == "Microsoft.Keyvault" and not get(encryption, "keyVaultProperties", "keyName")):
                report(f"{label(kind, name)} weakens its encryption "
                       f"({', '.join(disabled) or 'keySource ' + str(key_source)}): "
                       "leave `encryption` out (Microsoft-managed keys) or keep every service enabled, with keySource "
                       "Microsoft.Storage or Microsoft.Keyvault plus keyVaultProperties.", None)


def _s3_rules_encrypt(rules: Any) -> bool:
    algorithms = [get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in as_list(rules)]
    return bool(algorithms) and all(algorithm in STRONG_S3_ALGORITHMS for algorithm in algorithms)


def validate_storage_not_public(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    if kind == S3_PUBLIC_ACCESS_BLOCK:
        off = [flag for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
               if not is_true(get(props, flag))]
        if off:
            report(f"{label(kind, name)} leaves {', '.join(off)} off: set all four flags to true.", None)
    elif kind in S3_BUCKETS or kind in S3_BUCKET_ACL:
        acl = get(props, "acl")
        if acl in PUBLIC_CANNED_ACLS:
            report(f"{label(kind, name)} grants the canned ACL {acl}: use \"private\" (or no ACL with "
                   "BucketOwnerEnforced ownership) and share objects through presigned URLs or the server.", None)
    elif kind == MINIO_BUCKET:
        acl = get(props, "acl")
        if acl in MINIO_PUBLIC_ACLS:
            report(f"{label(kind, name)} has acl {acl}: set acl to \"private\"; the server reaches it with its own "
                   "bucket-scoped user.", None)
    elif kind == STORAGE_ACCOUNT:
        if get(props, "allowBlobPublicAccess") is not False:
            report(f"{label(kind, name)} does not forbid public blob access: set allowBlobPublicAccess to false.", None)
    elif kind == BLOB_CONTAINER:
        access = get(props, "publicAccess")
        if access not in (None, "None"):
            report(f"{label(kind, name)} has publicAccess {access}: set it to \"None\"; clients go through the "
                   "server, which reads the container with its managed identity.", None)


def denies_insecure_transport(policy_document: Mapping[str, Any]) -> bool:
    """A bucket policy statement that denies everyone every S3 action on the bucket's objects when
    `aws:SecureTransport` is false."""
    for statement in statements(policy_document):
        if get(statement, "Effect") != "Deny":
            continue
        principal = get(statement, "Principal")
        if not (principal == "*" or "*" in as_list(get(principal, "AWS"))):
            continue
        if not {"s3:*", "*"} & {str(action).lower() for action in as_list(get(statement, "Action"))}:
            continue
        if not any(str(resource) == "*" or str(resource).endswith("/*")
                   for resource in as_list(get(statement, "Resource"))):
            continue
        secure_transport = key(key(get(statement, "Condition"), "Bool"), "aws:SecureTransport")
        if any(str(value).lower() == "false" for value in as_list(secure_transport)):
            return True
    return False


def validate_storage_tls_only(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    tls_fix = ("add a statement {\"Effect\": \"Deny\", \"Principal\": \"*\", \"Action\": \"s3:*\", \"Resource\": "
               "[bucket ARN, bucket ARN + \"/*\"], \"Condition\": {\"Bool\": {\"aws:SecureTransport\": \"false\"}}}")
    if kind == S3_BUCKET_POLICY:
        if not denies_insecure_transport(document(get(props, "policy"))):
            report(f"{label(kind, name)} lets requests without TLS through (a bucket has only this one policy): "
                   f"{tls_fix}.", None)
    elif kind in S3_BUCKETS:
        inline = get(props, "policy")
        if inline and not denies_insecure_transport(document(inline)):
            report(f"{label(kind, name)} has an inline policy that lets requests without TLS through: {tls_fix}.", None)
    elif kind == STORAGE_ACCOUNT:
        problems = []
        if not is_true(get(props, "enableHttpsTrafficOnly")):
            problems.append("set enableHttpsTrafficOnly to true")
        if get(props, "minimumTlsVersion") not in STRONG_TLS_VERSIONS:
            problems.append(f"set minimumTlsVersion to \"TLS1_2\" (now {get(props, 'minimumTlsVersion') or 'unset'})")
        if problems:
            report(f"{label(kind, name)} accepts plain HTTP or old TLS: {'; '.join(problems)}.", None)


# --- IAM ---------------------------------------------------------------------------------------------

class PolicyConfigError(ValueError):
    """A `--policy-pack-config` value the policy refuses. The CLI checks the value against the policy's
    `config_schema` before it starts; this checks what a JSON schema cannot say (unknown keys, actions
    that must never be allowed on every resource). Raised, so `preview` and `up` fail rather than run
    with a configuration nobody meant."""


def _checked_config(config: Mapping[str, Any] | None, policy_name: str, schema: PolicyConfigSchema
                    ) -> Mapping[str, Any]:
    config = config or {}
    unknown = sorted(str(name) for name in config if name not in schema.properties)
    if unknown:
        raise PolicyConfigError(f"{policy_name}: unknown configuration {', '.join(unknown)} (it takes "
                                f"{', '.join(sorted(schema.properties))})")
    return config


IAM_CONFIG_SCHEMA = PolicyConfigSchema(properties={
    "allowedActionsOnAnyResource": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[A-Za-z0-9-]+:[A-Za-z0-9]+$"},
        "default": [],
        "description": "IAM actions (exact names, no wildcards) that may use Resource \"*\" besides the ones AWS "
                       "accepts only there. Actions of iam, sts, kms, organizations, account, sso, identitystore "
                       "and secretsmanager may not be listed (List*/Describe* aside).",
    },
})


def allowed_actions_on_any_resource(config: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The actions that may use Resource "*" (lower case): the built-in ones and the configured extras."""
    extra = _checked_config(config, "iam-least-privilege", IAM_CONFIG_SCHEMA).get("allowedActionsOnAnyResource", [])
    if not is_sequence(extra) or not all(isinstance(action, str) for action in extra):
        raise PolicyConfigError("iam-least-privilege: allowedActionsOnAnyResource must be a list of action names")
    allowed = set(ACTIONS_ONLY_ON_ANY_RESOURCE)
    for action in extra:
        name = action.strip()
        if not _CONFIGURABLE_ACTION.fullmatch(name):
            raise PolicyConfigError(f"iam-least-privilege: allowedActionsOnAnyResource names {action!r}: give exact "
                                    "action names (service:Action), no wildcards")
        service = name.split(":", 1)[0].lower()
        if service in IDENTITY_SERVICES and not _LISTING_ACTION.fullmatch(name.lower()):
            raise PolicyConfigError(f"iam-least-privilege: allowedActionsOnAnyResource may not name {name}: an "
                                    f"{service} action on every resource hands out identities, credentials or keys")
        allowed.add(name.lower())
    return frozenset(allowed)


def _identity_documents(kind: str, props: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(where, document as given) of each identity policy a resource carries."""
    if kind in IAM_POLICY_DOCUMENTS:
        prop = IAM_POLICY_DOCUMENTS[kind]
        return [(prop, get(props, prop))]
    if kind == IAM_ROLE:  # the trust policy (assumeRolePolicy) grants no actions: trust_problems judges it
        return [(f"inlinePolicies '{get(inline, 'name', default=index)}'", get(inline, "policy"))
                for index, inline in enumerate(as_list(get(props, "inlinePolicies")))]
    return []


def _iam_pattern(pattern: str) -> re.Pattern[str]:
    """An IAM wildcard pattern (`*` any characters, `?` one) as a case-insensitive regular expression."""
    return re.compile("".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern),
                      re.IGNORECASE | re.DOTALL)


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def _allows(statement: Mapping[str, Any]) -> bool:
    """Every statement but a Deny allows (an Effect AWS would refuse is judged as Allow)."""
    return str(key(statement, "Effect")).strip().lower() != "deny"


_NAME_FIRST_SERVICES = frozenset({"s3", "sns", "sqs", "codecommit", "execute-api"})
"""Services whose ARNs begin with the resource's name (arn:aws:s3:::bucket/key), not with its type."""


def resource_reach(resource: Any) -> str | None:
    """How far an IAM Resource pattern reaches: "any" (any account's resources: "*",
    "arn:aws:iam::*:*", "arn:aws:s3:::*", "arn:*"), "account" (every resource of a kind in one account:
    "arn:aws:iam::123456789012:role/*", "arn:aws:ecs:eu-west-1:123456789012:*"), or None (named
    resources, or names under a literal prefix: "arn:aws:s3:::bucket/*", "...:log-group:/mlflow/aws:*")."""
    text = str(resource).strip()
    if not _has_wildcard(text):
        return None
    parts = text.split(":", 5)
    if parts[0].lower() != "arn" or len(parts) < 6:  # "*", "arn:*", "arn:aws:iam::*" (a trailing * spans colons)
        return "any"
    _, partition, service, _region, account, resource_id = parts
    if _has_wildcard(partition) or _has_wildcard(service):
        return "any"
    if service.lower() in _NAME_FIRST_SERVICES:
        wild = resource_id == "" or resource_id[0] in "*?"
    else:  # type/name or type:name: a wildcard in the type, or right after it
        separator = re.search(r"[/:]", resource_id)
        kind_part = resource_id[:separator.start()] if separator else resource_id
        after = resource_id[separator.end():] if separator else ""
        wild = _has_wildcard(kind_part) or (separator is not None and (after == "" or after[0] in "*?"))
    if not wild:
        return None
    return "any" if account == "" or _has_wildcard(account) else "account"


def wildcard_problems(statement: Mapping[str, Any], allowed_on_any: frozenset[str] | None = None) -> list[str]:
    """What makes a statement broader than this project allows: NotAction/NotResource; an action of any
    service; an action (or wildcard) that grants permissions or credentials, whatever the resource; an
    action on every resource (only `allowed_on_any` on "*"; for iam, sts, kms and the like no account-wide
    wildcard either; others need a Condition on one)."""
    if not _allows(statement):
        return []
    allowed = ACTIONS_ONLY_ON_ANY_RESOURCE if allowed_on_any is None else allowed_on_any
    problems = []
    for negated in ("NotAction", "NotResource"):
        if key(statement, negated) is not None:
            problems.append(f"{negated} (allows everything not listed)")
    actions = [str(action).strip() for action in as_list(key(statement, "Action"))]
    any_service = [action for action in actions
                   if not action.partition(":")[1] or _has_wildcard(action.partition(":")[0])]
    if any_service:
        problems.append('Action "*"' if set(any_service) <= {"*", "*:*"}
                        else f"Action {', '.join(any_service)} (any service)")
    escalating = [action for action in actions if action not in any_service
                  and any(_iam_pattern(action).fullmatch(name) for name in ESCALATION_ACTIONS)]
    if escalating:
        problems.append(f"{', '.join(escalating)}, which can grant permissions or credentials to any identity "
                        "(its own role included)")
    reaches = {reach: str(resource).strip() for resource in reversed(as_list(key(statement, "Resource")))
               if (reach := resource_reach(resource))}
    rest = [action for action in actions if action not in any_service and action not in escalating]
    if "any" in reaches:
        broad = [action for action in rest if action.lower() not in allowed]
        if broad:
            problems.append(f'Resource "{reaches["any"]}" for {", ".join(broad)}')
    elif "account" in reaches:
        conditioned = bool(key(statement, "Condition"))
        broad = [action for action in rest if action.partition(":")[0].lower() in IDENTITY_SERVICES
                 or (not conditioned and action.lower() not in allowed)]
        if broad:
            problems.append(f'Resource "{reaches["account"]}" (every one in the account) for {", ".join(broad)}')
    return problems


def trust_problems(policy_document: Mapping[str, Any]) -> list[str]:
    """A trust policy (assumeRolePolicy) that lets anyone assume the role: Principal "*" (or {"AWS": "*"})
    without a Condition, or NotPrincipal."""
    problems = []
    for index, statement in enumerate(statements(policy_document)):
        if not _allows(statement):
            continue
        sid = key(statement, "Sid") or f"#{index}"
        if key(statement, "NotPrincipal") is not None:
            problems.append(f"statement {sid} trusts NotPrincipal (everyone not listed)")
        principal = key(statement, "Principal")
        principals = as_list(principal) if not isinstance(principal, Mapping) else \
            [value for values in principal.values() for value in as_list(values)]
        if any(str(value).strip() == "*" for value in principals) and not key(statement, "Condition"):
            problems.append(f"statement {sid} lets any principal of any account assume the role (Principal \"*\" "
                            "without a Condition)")
    return problems


def broad_managed_policy(arn: Any) -> str | None:
    """The name of an AWS-managed policy too broad to attach (any partition, any path), else None."""
    match = _AWS_MANAGED_POLICY_ARN.fullmatch(str(arn).strip())
    if not match:
        return None
    path = match.group("path")
    name = path.rsplit("/", 1)[-1]
    if BROAD_MANAGED_POLICY_NAME.search(name):
        return path
    if path.lower().startswith("job-function/") and name.lower() != "viewonlyaccess":
        return path  # the job-function policies are for people (Billing, DataScientist, SystemAdministrator, ...)
    return None


def _attached_policy_arns(kind: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(property, ARN) of each managed policy an IAM or IAM Identity Center resource attaches: every
    property named like *Arn(s) (policyArn, managedPolicyArns, policyArns, managedPolicyArn), not
    permissionsBoundary (a boundary only limits)."""
    if not kind.startswith(IAM_ATTACHING_MODULES):
        return
    for prop in list(props):
        lowered = str(prop).lower()
        if "arn" in lowered and "boundary" not in lowered:
            for value in as_list(get(props, prop)):
                yield str(prop), value


def azure_scope_above_resource_group(scope: Any) -> bool:
    """Whether a scope is a subscription, a management group or the root ("/"): anything but
    /subscriptions/<id>/resourceGroups/<name>[/...] (judged without regard to case)."""
    parts = [part for part in str(scope or "").strip().lower().split("/") if part]
    return not (len(parts) >= 4 and parts[0] == "subscriptions" and parts[2] == "resourcegroups")


def azure_privileged_role(props: Mapping[str, Any]) -> str | None:
    """The privileged built-in role a role assignment names (by definition id or, classic provider, by name)."""
    definition = str(get(props, "roleDefinitionId", default="")).strip().rstrip("/").rsplit("/", 1)[-1].lower()
    if definition in AZURE_PRIVILEGED_ROLES:
        return AZURE_PRIVILEGED_ROLES[definition]
    role_name = str(get(props, "roleDefinitionName", default="")).strip().lower()
    return next((name for name in AZURE_PRIVILEGED_ROLES.values() if name.lower() == role_name), None)


def _azure_admin_actions(props: Mapping[str, Any]) -> list[str]:
    """The actions of a custom role that amount to Owner or User Access Administrator: "*" (all actions
    or all data actions) and any pattern that covers assigning roles or writing role definitions."""
    found = []
    for permission in as_list(get(props, "permissions")):
        for field in ("actions", "dataActions"):
            for action in as_list(get(permission, field)):
                text = str(action).strip()
                if text == "*" or any(_iam_pattern(text).fullmatch(admin) for admin in AZURE_ROLE_ADMIN_ACTIONS):
                    found.append(text)
    return found


def validate_iam_least_privilege(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    allowed = allowed_actions_on_any_resource(args.get_config())
    for where, given in _identity_documents(kind, props):
        if unreadable_document(given):
            report(f"{label(kind, name)}: {where} is no JSON policy document the pack can read, so nothing it "
                   "allows can be checked: give a JSON object with a Statement list.", None)
            continue
        for index, statement in enumerate(statements(document(given))):
            problems = wildcard_problems(statement, allowed)
            if problems:
                sid = key(statement, "Sid") or f"#{index}"
                report(f"{label(kind, name)}: statement {sid} allows {'; '.join(problems)}. Name the actions and the "
                       "resource ARNs it needs; only actions without resource-level permissions "
                       f"({', '.join(sorted(allowed))}) may use Resource \"*\".", None)
    if kind in TRUST_POLICY:
        trust = get(props, TRUST_POLICY[kind])
        problems = ["it is no JSON policy document"] if unreadable_document(trust) else trust_problems(document(trust))
        if problems:
            report(f"{label(kind, name)}: its trust policy ({TRUST_POLICY[kind]}) {'; '.join(problems)}: name the "
                   "service or account principals, or add a Condition (aws:PrincipalOrgID, sts:ExternalId, ...).",
                   None)
    for prop, arn in _attached_policy_arns(kind, props):
        managed = broad_managed_policy(arn)
        if managed:
            report(f"{label(kind, name)} attaches the AWS-managed policy {managed} ({prop}), which allows far more "
                   "than the role needs on every resource of the account: attach a policy of your own that names "
                   "the actions and resource ARNs (AWS-managed service-role policies such as "
                   "AmazonECSTaskExecutionRolePolicy are fine).", None)
    if kind in AZURE_ROLE_ASSIGNMENTS:
        role = azure_privileged_role(props)
        scope = get(props, "scope", default="")
        if role and azure_scope_above_resource_group(scope):
            report(f"{label(kind, name)} grants {role} at {scope or '/'} (a subscription, management group or the "
                   "root): grant a narrower role (AcrPull, Storage Blob Data Contributor, ...) at the scope of the "
                   "one resource it needs.", None)
    elif kind in AZURE_ROLE_DEFINITIONS:
        # where it may be assigned; without assignableScopes, only where it is defined
        scopes = as_list(get(props, "assignableScopes")) or as_list(get(props, "scope"))
        above = [str(scope) for scope in scopes if azure_scope_above_resource_group(scope)]
        admin = _azure_admin_actions(props)
        if admin and above:
            report(f"{label(kind, name)} is a custom role with {', '.join(admin)} assignable at {', '.join(above)}: "
                   "name the actions it needs (no \"*\", no Microsoft.Authorization writes) or keep its "
                   "assignableScopes to a resource group.", None)


# --- logs ----------------------------------------------------------------------------------------------

def validate_log_retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    if kind in (LOG_GROUP, LOG_ANALYTICS_WORKSPACE):
        days = get(props, "retentionInDays")
        try:
            kept = days is not None and int(days) > 0
        except (TypeError, ValueError):
            kept = False
        if not kept:
            setting = "aws.logRetentionDays" if kind == LOG_GROUP else "azure.logRetentionDays"
            report(f"{label(kind, name)} keeps logs forever (retentionInDays {days if days is not None else 'unset'}): "
                   f"set retentionInDays to a number of days (this project: {setting}).", None)


# --- stack-wide promises ---------------------------------------------------------------------------------

def _known(resource: PolicyResource, *path: str) -> Any:
    """A property, or None while it is unknown (a preview before the value exists)."""
    try:
        return get(resource.props, *path)
    except UnknownValueError:
        return None


def _links(resource: PolicyResource, prop: str, targets: Mapping[str, PolicyResource],
           graph_has_dependencies: bool) -> set[str]:
    """The URNs among `targets` that `resource` points at with `prop`: the engine's property
    dependencies, else its dependencies, else equal values (a name or id known on both sides). A
    graph handed over without any dependencies (not the engine's) falls back to a shared parent."""
    by_property = {dependency.urn for dependency in resource.property_dependencies.get(prop, [])} & set(targets)
    if by_property:
        return by_property
    by_dependency = {dependency.urn for dependency in resource.dependencies} & set(targets)
    if by_dependency:
        return by_dependency
    value = _known(resource, prop)
    if value is not None:
        matched = {urn for urn, target in targets.items()
                   if value in (_known(target, "id"), _known(target, "bucket"), _known(target, "arn"))}
        if matched:
            return matched
    if not graph_has_dependencies and resource.parent is not None:
        return {urn for urn, target in targets.items()
                if target.parent is not None and target.parent.urn == resource.parent.urn}
    return set()


def _graph_has_dependencies(resources: Sequence[PolicyResource]) -> bool:
    return any(resource.dependencies or resource.property_dependencies for resource in resources)


def validate_s3_buckets_guarded(args: StackValidationArgs, report: ReportViolation) -> None:
    buckets = {r.urn: r for r in args.resources if normalized_type(r.resource_type) in S3_BUCKETS}
    if not buckets:
        return
    with_deps = _graph_has_dependencies(args.resources)
    guarded: dict[str, set[str]] = {urn: set() for urn in buckets}
    for urn, bucket in buckets.items():  # the inline forms
        if _known(bucket, "serverSideEncryptionConfiguration") is not None:
            guarded[urn].add("encryption")
        if _known(bucket, "policy"):
            guarded[urn].add("policy")
    for resource in args.resources:
        kind = normalized_type(resource.resource_type)
        guard = ("public access block" if kind == S3_PUBLIC_ACCESS_BLOCK else "encryption" if kind in S3_ENCRYPTION
                 else "policy" if kind == S3_BUCKET_POLICY else None)
        if guard:
            for urn in _links(resource, "bucket", buckets, with_deps):
                guarded[urn].add(guard)
    fixes = {"public access block": "a BucketPublicAccessBlock with all four flags true",
             "encryption": "a BucketServerSideEncryptionConfiguration (AES256 or aws:kms)",
             "policy": "a BucketPolicy that denies requests without TLS (aws:SecureTransport false)"}
    for urn, bucket in buckets.items():
        missing = [fix for guard, fix in fixes.items() if guard not in guarded[urn]]
        if missing:
            report(f"{label(bucket.resource_type, bucket.name)} lacks {'; '.join(missing)}. The ArtifactStore "
                   "component creates all three for its bucket; add the missing ones for this bucket.", urn)


STATEFUL_TYPES = {  # type -> what it keeps
    RDS_INSTANCE: "the tracking data (experiments, runs, models)",
    RDS_CLUSTER: "a database's data",
    "aws:s3/bucket:Bucket": "the artifacts",
    "aws:s3/bucketV2:BucketV2": "the artifacts",
    FLEXIBLE_SERVER: "the tracking data (experiments, runs, models)",
    FLEXIBLE_SERVER_DATABASE: "the tracking data (experiments, runs, models)",
    STORAGE_ACCOUNT: "the artifacts",
    BLOB_CONTAINER: "the artifacts",
}


def _volume_mounts(container: PolicyResource) -> Iterator[tuple[str, str]]:
    """(volume name, mount point) of each named volume a docker container mounts."""
    for volume in as_list(_known(container, "volumes")):
        name, path = _known_in(volume, "volumeName"), _known_in(volume, "containerPath")
        if name and path:
            yield str(name), str(path)
    for mount in as_list(_known(container, "mounts")):
        if _known_in(mount, "type") == "volume":
            name, path = _known_in(mount, "source"), _known_in(mount, "target")
            if name and path:
                yield str(name), str(path)


def _known_in(value: Any, *path: str) -> Any:
    try:
        return get(value, *path)
    except UnknownValueError:
        return None


def _is_data_mount(path: str) -> bool:
    return not any(path == prefix or path.startswith(prefix + "/") for prefix in RUNTIME_MOUNT_PREFIXES)


def _keep_labeled(volume: PolicyResource) -> bool:
    return any(_known_in(item, "label") == KEEP_LABEL[0] and _known_in(item, "value") == KEEP_LABEL[1]
               for item in as_list(_known(volume, "labels")))


PROTECTION_CONFIG_SCHEMA = PolicyConfigSchema(properties={
    "requireProtection": {
        "type": "boolean",
        "default": True,
        "description": "false: the stacks this configuration is used with (throw-away ones) may leave stateful "
                       "resources unprotected.",
    },
    "exemptStacks": {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "default": [],
        "description": "Stack names (shell-style patterns: pr-*) whose stateful resources need no protection; "
                       "matched against the stack name in the resources' URNs.",
    },
})


def stack_of(urn: str) -> str:
    """The stack name in a URN (urn:pulumi:<stack>::<project>::<type>::<name>), as the engine wrote it."""
    return urn.split("::", 1)[0].rsplit(":", 1)[-1]


def protection_required(config: Mapping[str, Any] | None, stack: str) -> bool:
    """Whether `stateful-resources-protected` holds on this stack under this configuration."""
    config = _checked_config(config, "stateful-resources-protected", PROTECTION_CONFIG_SCHEMA)
    required = config.get("requireProtection", True)
    exempt = config.get("exemptStacks", [])
    if not isinstance(required, bool):
        raise PolicyConfigError("stateful-resources-protected: requireProtection must be true or false")
    if not is_sequence(exempt) or not all(isinstance(pattern, str) and pattern.strip() for pattern in exempt):
        raise PolicyConfigError("stateful-resources-protected: exemptStacks must be a list of stack names")
    return required and not any(fnmatch.fnmatchcase(stack, pattern.strip()) for pattern in exempt)


def validate_stateful_resources_protected(args: StackValidationArgs, report: ReportViolation) -> None:
    stack = stack_of(args.resources[0].urn) if args.resources else ""
    if not protection_required(args.get_config(), stack):
        return
    for resource in args.resources:
        kind = normalized_type(resource.resource_type)
        if kind in STATEFUL_TYPES and not resource.opts.protect:
            report(f"{label(kind, resource.name)} keeps {STATEFUL_TYPES[kind]} but is not protected: create it with "
                   "ResourceOptions(protect=True) (this project: aws.protectResources / azure.protectResources), so "
                   "no `pulumi up` or `pulumi destroy` can delete it by accident.", resource.urn)
    volumes = {}
    for resource in args.resources:
        if normalized_type(resource.resource_type) == DOCKER_VOLUME:
            volumes[str(_known(resource, "name") or resource.name)] = resource
    data_volumes: dict[str, str] = {}
    for container in args.resources:
        if normalized_type(container.resource_type) == DOCKER_CONTAINER:
            for volume_name, path in _volume_mounts(container):
                if volume_name in volumes and _is_data_mount(path):
                    data_volumes.setdefault(volume_name, f"{container.name}:{path}")
    for volume_name, mounted_at in sorted(data_volumes.items()):
        volume = volumes[volume_name]
        if not volume.opts.protect and not _keep_labeled(volume):
            report(f"{label(volume.resource_type, volume.name)} holds data ({mounted_at}) but is neither protected "
                   "nor marked kept: create it with ResourceOptions(retain_on_delete=True) and the label "
                   f"{KEEP_LABEL[0]}={KEEP_LABEL[1]} (as the local platform does), or protect=True.", volume.urn)


# --- the policies ------------------------------------------------------------------------------------------

def _resource_policy(name: str, description: str, validate: Callable[[ResourceValidationArgs, ReportViolation], None],
                     config_schema: PolicyConfigSchema | None = None) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(name=name, description=description, validate=validate, enforcement_level=MANDATORY,
                                    config_schema=config_schema)


def _stack_policy(name: str, description: str, validate: Callable[[StackValidationArgs, ReportViolation], None],
                  config_schema: PolicyConfigSchema | None = None) -> StackValidationPolicy:
    return StackValidationPolicy(name=name, description=description, validate=validate, enforcement_level=MANDATORY,
                                 config_schema=config_schema)


database_not_public = _resource_policy(
    "database-not-public",
    "The metadata database is never reachable from the internet: RDS instances and clusters are not publicly "
    "accessible, PostgreSQL flexible servers have public network access disabled.",
    validate_database_not_public)

database_port_closed_to_internet = _resource_policy(
    "database-port-closed-to-internet",
    "No rule admits a non-private source (anything outside RFC 1918, 100.64.0.0/10, loopback, link-local, ULA) to a "
    "database port (5432 and the other RDS engines' ports, also through all-port and all-protocol rules): AWS "
    "security groups and their rule resources, Azure NSG rules, Azure database server firewall rules.",
    validate_database_port_closed_to_internet)

storage_encrypted = _resource_policy(
    "storage-encrypted",
    "Data at rest is encrypted: RDS storage, S3 default encryption, and no flexible server or storage account "
    "that disables or misconfigures its encryption.",
    validate_storage_encrypted)

storage_not_public = _resource_policy(
    "storage-not-public",
    "Artifacts are never public: S3 public access blocks have all four flags on, no public ACL on a bucket, "
    "storage accounts forbid public blob access, blob containers have publicAccess None.",
    validate_storage_not_public)

storage_tls_only = _resource_policy(
    "storage-tls-only",
    "Artifact storage accepts TLS only: S3 bucket policies deny requests with aws:SecureTransport false, "
    "storage accounts take HTTPS only with TLS 1.2 or later.",
    validate_storage_tls_only)

s3_buckets_guarded = _stack_policy(
    "s3-buckets-guarded",
    "Every S3 bucket of the stack has its public access block, default encryption and TLS-only bucket policy "
    "(the other policies check what each of them says).",
    validate_s3_buckets_guarded)

iam_least_privilege = _resource_policy(
    "iam-least-privilege",
    "No identity gets admin: no IAM statement with an action of any service, NotAction or NotResource, an action "
    "that grants permissions or credentials (iam:Put*, iam:Attach*, ...), or a wildcard resource except for the "
    "few actions AWS accepts only on \"*\"; no broad AWS-managed policy attached (AdministratorAccess, "
    "PowerUserAccess, *FullAccess, ...); no trust policy open to any principal; no Azure Owner, Contributor, User "
    "Access Administrator or RBAC Administrator above a resource group, no custom Azure role with \"*\" or role "
    "assignment rights assignable there.",
    validate_iam_least_privilege, IAM_CONFIG_SCHEMA)

logs_have_retention = _resource_policy(
    "logs-have-retention",
    "Logs expire: CloudWatch log groups and Log Analytics workspaces set retentionInDays.",
    validate_log_retention)

stateful_resources_protected = _stack_policy(
    "stateful-resources-protected",
    "What holds data survives a mistaken `pulumi up` or `destroy`: databases, buckets, storage accounts and "
    "containers are protected; docker volumes that hold a container's data are protected or kept on delete "
    "(configurable for throw-away stacks).",
    validate_stateful_resources_protected, PROTECTION_CONFIG_SCHEMA)

no_plaintext_secrets_in_container_env = _resource_policy(
    "no-plaintext-secrets-in-container-env",
    "No container gets a secret as a plain environment value: ECS task definitions use `secrets`, Container "
    "Apps use `secretRef`, docker containers get files; judged by the variable's name (PASSWORD, SECRET, "
    "TOKEN, KEY, ...) and by values that carry credentials (URLs with a password, connection strings, PEM keys).",
    validate_container_env)

POLICIES: list[Policy] = [
    database_not_public,
    database_port_closed_to_internet,
    storage_encrypted,
    storage_not_public,
    storage_tls_only,
    s3_buckets_guarded,
    iam_least_privilege,
    logs_have_retention,
    stateful_resources_protected,
    no_plaintext_secrets_in_container_env,
]
"""Every policy of the pack, all mandatory."""

PACK_NAME = "mlflow-platform"
PACK_DESCRIPTION = "The MLflow platform's promises: private databases, private encrypted TLS-only artifact storage, " \
                   "least-privilege IAM, logs that expire, protected state, no secrets in container env."

__all__ = ["POLICIES", "PACK_NAME", "PACK_DESCRIPTION", "ACTIONS_ONLY_ON_ANY_RESOURCE", "DATABASE_PORTS",
           "PolicyConfigError", "looks_like_secret_name", "looks_like_secret_value", "denies_insecure_transport",
           "wildcard_problems", "trust_problems", "resource_reach", "broad_managed_policy", "is_private_network",
           "allowed_actions_on_any_resource", "protection_required", "normalized_type"]
