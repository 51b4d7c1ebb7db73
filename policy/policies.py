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
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
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


def document(value: Any) -> Mapping[str, Any]:
    """A policy document given as JSON text (what the providers take) or as an object."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if value.strip() else {}
        except ValueError:
            return {}
        return parsed if isinstance(parsed, Mapping) else {}
    return value if isinstance(value, Mapping) else {}


def statements(policy_document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [item for item in as_list(get(policy_document, "Statement")) if isinstance(item, Mapping)]


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
    if kind in (RDS_INSTANCE, RDS_CLUSTER_INSTANCE) and is_true(get(props, "publiclyAccessible")):
        report(f"{label(kind, name)} is publicly accessible: set publiclyAccessible to false and reach it from "
               "inside the VPC (the server's security group, a one-off task).", None)
    elif kind == FLEXIBLE_SERVER:
        access = get(props, "network", "publicNetworkAccess")
        if access != "Disabled":
            report(f"{label(kind, name)} has network.publicNetworkAccess "
                   f"{access or 'unset (public unless the server is in a delegated subnet)'}: "
                   "set it to \"Disabled\" and put the server in a delegated subnet with a private DNS zone.", None)


def _ports_cover_database(protocol: Any, from_port: Any, to_port: Any) -> list[int]:
    if str(protocol).lower() in ("-1", "all"):
        return sorted(DATABASE_PORTS)
    if str(protocol).lower() not in ("tcp", "6"):
        return []
    try:
        low, high = int(from_port), int(to_port)
    except (TypeError, ValueError):
        return []
    return [port for port in sorted(DATABASE_PORTS) if low <= port <= high]


def _open_to_everyone(cidrs: Iterable[Any]) -> list[str]:
    """The CIDRs that admit every address (0.0.0.0/0, ::/0 and their equals)."""
    open_cidrs = []
    for cidr in cidrs:
        try:
            if ipaddress.ip_network(str(cidr), strict=False).prefixlen == 0:
                open_cidrs.append(str(cidr))
        except ValueError:
            continue
    return open_cidrs


def validate_database_port_closed_to_internet(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    rules: list[tuple[Any, Any, Any, list[Any]]] = []  # protocol, from, to, cidrs
    if kind == SECURITY_GROUP:
        for rule in as_list(get(props, "ingress")):
            rules.append((get(rule, "protocol"), get(rule, "fromPort"), get(rule, "toPort"),
                          [*as_list(get(rule, "cidrBlocks")), *as_list(get(rule, "ipv6CidrBlocks"))]))
    elif kind == SECURITY_GROUP_RULE and get(props, "type") == "ingress":
        rules.append((get(props, "protocol"), get(props, "fromPort"), get(props, "toPort"),
                      [*as_list(get(props, "cidrBlocks")), *as_list(get(props, "ipv6CidrBlocks"))]))
    elif kind == SECURITY_GROUP_INGRESS_RULE:
        rules.append((get(props, "ipProtocol"), get(props, "fromPort"), get(props, "toPort"),
                      [*as_list(get(props, "cidrIpv4")), *as_list(get(props, "cidrIpv6"))]))
    for protocol, from_port, to_port, cidrs in rules:
        ports = _ports_cover_database(protocol, from_port, to_port)
        open_cidrs = _open_to_everyone(cidrs)
        if ports and open_cidrs:
            engines = ", ".join(f"{port} ({DATABASE_PORTS[port]})" for port in ports)
            report(f"{label(kind, name)} admits {' and '.join(open_cidrs)} to database port {engines}: allow only "
                   "the security group of the tasks that use the database (referencedSecurityGroupId / "
                   "securityGroups), or a private CIDR.", None)


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

def _identity_documents(kind: str, props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if kind in IAM_POLICY_DOCUMENTS:
        return [document(get(props, IAM_POLICY_DOCUMENTS[kind]))]
    if kind == IAM_ROLE:  # inline policies only: the trust policy (assumeRolePolicy) grants no actions
        return [document(get(inline, "policy")) for inline in as_list(get(props, "inlinePolicies"))]
    return []


def wildcard_problems(statement: Mapping[str, Any]) -> list[str]:
    """What makes an Allow statement broader than this project allows."""
    if get(statement, "Effect") != "Allow":
        return []
    problems = []
    for negated in ("NotAction", "NotResource"):
        if get(statement, negated) is not None:
            problems.append(f"{negated} (allows everything not listed)")
    actions = [str(action) for action in as_list(get(statement, "Action"))]
    if any(action in ("*", "*:*") for action in actions):
        problems.append('Action "*"')
    if "*" in [str(resource) for resource in as_list(get(statement, "Resource"))]:
        scoped = [action for action in actions if action.lower() not in ACTIONS_ONLY_ON_ANY_RESOURCE]
        if scoped:
            problems.append(f'Resource "*" for {", ".join(scoped)}')
    return problems


def validate_iam_least_privilege(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, name = normalized_type(args.resource_type), args.name
    for policy_document in _identity_documents(kind, args.props):
        for index, statement in enumerate(statements(policy_document)):
            problems = wildcard_problems(statement)
            if problems:
                sid = get(statement, "Sid", default=f"#{index}")
                report(f"{label(kind, name)}: statement {sid} allows {'; '.join(problems)}. Name the actions and the "
                       "resource ARNs it needs; only actions without resource-level permissions "
                       f"({', '.join(sorted(ACTIONS_ONLY_ON_ANY_RESOURCE))}) may use Resource \"*\".", None)


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


def validate_stateful_resources_protected(args: StackValidationArgs, report: ReportViolation) -> None:
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

def _resource_policy(name: str, description: str, validate: Callable[[ResourceValidationArgs, ReportViolation], None]
                     ) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(name=name, description=description, validate=validate, enforcement_level=MANDATORY)


def _stack_policy(name: str, description: str, validate: Callable[[StackValidationArgs, ReportViolation], None]
                  ) -> StackValidationPolicy:
    return StackValidationPolicy(name=name, description=description, validate=validate, enforcement_level=MANDATORY)


database_not_public = _resource_policy(
    "database-not-public",
    "The metadata database is never reachable from the internet: RDS instances are not publicly accessible, "
    "PostgreSQL flexible servers have public network access disabled.",
    validate_database_not_public)

database_port_closed_to_internet = _resource_policy(
    "database-port-closed-to-internet",
    "No security group admits 0.0.0.0/0 or ::/0 to a database port (5432 and the other RDS engines' ports), "
    "whether the rule is inline or a rule resource of its own.",
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
    "No IAM policy allows Action \"*\", NotAction or NotResource, or Resource \"*\" except for the few actions "
    "AWS accepts only on \"*\" (ECR login, ECS Exec's channels, log group look-up, metric publishing).",
    validate_iam_least_privilege)

logs_have_retention = _resource_policy(
    "logs-have-retention",
    "Logs expire: CloudWatch log groups and Log Analytics workspaces set retentionInDays.",
    validate_log_retention)

stateful_resources_protected = _stack_policy(
    "stateful-resources-protected",
    "What holds data survives a mistaken `pulumi up` or `destroy`: databases, buckets, storage accounts and "
    "containers are protected; docker volumes that hold a container's data are protected or kept on delete.",
    validate_stateful_resources_protected)

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
           "looks_like_secret_name", "looks_like_secret_value", "denies_insecure_transport", "wildcard_problems",
           "normalized_type"]
