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

Which providers: the AWS provider (`aws:`) and AWS Cloud Control (`aws-native:`, CloudFormation's
property names in camel case, policy documents as objects), azure-native (any API version module,
`/v20210615privatepreview` included) and the classic azure provider (`azure:`), docker and MinIO. Where
a policy document can sit on a resource the pack has no table for, `iam-least-privilege` still finds it
(any property holding an object with a `Statement`, or JSON text of one: every string that starts with `{`
or `[` is parsed, so `"\\u0053tatement"` is a Statement as it is to AWS) and judges it. A CloudFormation stack or
an ARM deployment has every resource of its template judged by every resource policy as the type it
stands for (`template_resources`, `_with_templates`).

Two policies take configuration (`--policy-pack-config`, handed over by the analyzer's `Configure`,
read with `args.get_config()`): `iam-least-privilege` (IAM_CONFIG_SCHEMA) and
`stateful-resources-protected` (PROTECTION_CONFIG_SCHEMA). Their defaults are the unconfigured
behaviour; a configuration the policy refuses raises PolicyConfigError, which fails the CLI's run.
A configuration naming a policy the pack does not have, or lowering a policy's enforcement level, is
refused by `Configure` itself (`unknown_policy_names`, `refused_enforcement_levels`, wired in
`__main__.py`).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import yaml  # PyYAML: a dependency of pulumi (policy/requirements.txt pins pulumi)

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
NATIVE_DB_INSTANCE = "aws-native:rds:DbInstance"
NATIVE_DB_CLUSTER = "aws-native:rds:DbCluster"
PUBLICLY_ACCESSIBLE_DATABASES = frozenset({RDS_INSTANCE, RDS_CLUSTER, RDS_CLUSTER_INSTANCE, NATIVE_DB_INSTANCE,
                                           NATIVE_DB_CLUSTER, "aws:lightsail/database:Database",
                                           "aws:redshift/cluster:Cluster", "aws-native:redshift:Cluster"})
"""The types whose `publiclyAccessible` gives a database a public endpoint."""
S3_BUCKETS = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
NATIVE_BUCKET = "aws-native:s3:Bucket"
ALL_S3_BUCKETS = S3_BUCKETS | {NATIVE_BUCKET}
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_PUBLIC_ACCESS_BLOCKS = frozenset({S3_PUBLIC_ACCESS_BLOCK, "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock",
                                     "aws-native:s3:AccountPublicAccessBlock"})
S3_ENCRYPTION = frozenset({
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
})
S3_BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
S3_BUCKET_POLICIES = {S3_BUCKET_POLICY: "policy", "aws-native:s3:BucketPolicy": "policyDocument"}
"""The types that are a bucket's one bucket policy -> the property holding it."""
S3_BUCKET_ACL = frozenset({"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"})
IAM_POLICY_DOCUMENTS = {  # type -> the property holding an identity policy document
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
    "aws:ssoadmin/permissionSetInlinePolicy:PermissionSetInlinePolicy": "inlinePolicy",
    "aws-native:iam:RolePolicy": "policyDocument",
    "aws-native:iam:UserPolicy": "policyDocument",
    "aws-native:iam:GroupPolicy": "policyDocument",
    "aws-native:iam:ManagedPolicy": "policyDocument",
    "aws-native:iam:Policy": "policyDocument",
    "aws-native:sso:PermissionSet": "inlinePolicy",
    "minio:index/iamPolicy:IamPolicy": "policy",
    "minio:index/iamGroupPolicy:IamGroupPolicy": "policy",
}
IAM_INLINE_POLICY_LISTS = {  # type -> (list property, its items' document property, their name property)
    "aws:iam/role:Role": ("inlinePolicies", "policy", "name"),
    "aws-native:iam:Role": ("policies", "policyDocument", "policyName"),
    "aws-native:iam:User": ("policies", "policyDocument", "policyName"),
    "aws-native:iam:Group": ("policies", "policyDocument", "policyName"),
}
IAM_ROLE = "aws:iam/role:Role"
NATIVE_IAM_ROLE = "aws-native:iam:Role"
TRUST_POLICY = {IAM_ROLE: "assumeRolePolicy", NATIVE_IAM_ROLE: "assumeRolePolicyDocument"}
IAM_ATTACHING_MODULES = ("aws:iam/", "aws:ssoadmin/", "aws-native:iam:", "aws-native:sso:")
"""The modules whose resources attach managed policies by ARN (RolePolicyAttachment, Role.managedPolicyArns,
the *PolicyAttachmentsExclusive lists, PolicyAttachment, IAM Identity Center's ManagedPolicyAttachment,
aws-native's Role/User/Group managedPolicyArns and PermissionSet managedPolicies)."""
GROUP_MEMBERSHIPS = {  # type -> the property naming the groups a user is put in
    "aws:iam/userGroupMembership:UserGroupMembership": "groups",
    "aws:iam/groupMembership:GroupMembership": "group",
    "aws-native:iam:User": "groups",
    "aws-native:iam:UserToGroupAddition": "groupName",
}
USER_CREDENTIALS = {  # type -> the property naming the user a long-lived credential is made for
    "aws:iam/accessKey:AccessKey": "user",
    "aws:iam/userLoginProfile:UserLoginProfile": "user",
    "aws:iam/serviceSpecificCredential:ServiceSpecificCredential": "userName",
    "aws:iam/signingCertificate:SigningCertificate": "userName",
    "aws:iam/sshKey:SshKey": "username",
    "aws-native:iam:AccessKey": "userName",
}
PRINCIPAL_PERMISSIONS = {  # type -> the properties that narrow its `principal` "*" to named accounts
    "aws:lambda/permission:Permission": ("sourceAccount", "sourceArn", "principalOrgId"),
    "aws-native:lambda:Permission": ("sourceAccount", "sourceArn", "principalOrgId"),
    "aws:lambda/layerVersionPermission:LayerVersionPermission": ("organizationId",),
    "aws-native:lambda:LayerVersionPermission": ("organizationId",),
    "aws:cloudwatch/eventPermission:EventPermission": ("condition",),
    "aws-native:events:EventBusPolicy": ("condition",),
}
"""Resources that let a principal (`*` for anyone) call a function, use a layer or put events on a bus."""
UNREADABLE_POLICY = ("is JSON text or an object the pack cannot read as a policy document (not JSON, a key named "
                     "twice in any case, a statement that is no object), so nothing it allows can be checked and "
                     "AWS may read it otherwise: give one JSON object with a Statement list and each key once.")
MINIO_POLICY_ATTACHMENTS = frozenset({"minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment",
                                      "minio:index/iamGroupPolicyAttachment:IamGroupPolicyAttachment"})
MINIO_BUILT_IN_POLICIES = frozenset({"consoleadmin", "diagnostics", "readonly", "readwrite", "writeonly"})
"""MinIO's built-in policies: each reaches every bucket (or the server's administration)."""
FILTER_POLICY_MODULES = ("aws:organizations/policy:", "aws-native:organizations:Policy", "aws:ec2/vpcEndpoint",
                         "aws-native:ec2:VpcEndpoint")
"""Types whose documents only limit what others may do (SCPs, RCPs, VPC endpoint policies): an "Allow *"
there grants nothing, so the generic document search leaves them alone. Not the organization's resource
policy (aws:organizations/resourcePolicy), which lets other accounts administer it."""
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SECURITY_GROUP_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
NATIVE_SECURITY_GROUP = "aws-native:ec2:SecurityGroup"
NATIVE_SECURITY_GROUP_INGRESS = "aws-native:ec2:SecurityGroupIngress"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
LOG_GROUPS = frozenset({LOG_GROUP, "aws-native:logs:LogGroup"})
ECS_TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ECS_TASK_DEFINITIONS = frozenset({ECS_TASK_DEFINITION, "aws-native:ecs:TaskDefinition"})
LAMBDA_FUNCTIONS = frozenset({"aws:lambda/function:Function", "aws-native:lambda:Function"})
FLEXIBLE_SERVER = "azure-native:dbforpostgresql:Server"
FLEXIBLE_SERVER_DATABASE = "azure-native:dbforpostgresql:Database"
AZURE_NATIVE_DATABASE_SERVERS = {  # type -> where its public network access is set ("Disabled" keeps it private)
    FLEXIBLE_SERVER: ("network", "publicNetworkAccess"),
    "azure-native:dbformysql:Server": ("network", "publicNetworkAccess"),
    "azure-native:dbforpostgresql:SingleServer": ("properties", "publicNetworkAccess"),
    "azure-native:dbformysql:SingleServer": ("properties", "publicNetworkAccess"),
    "azure-native:dbformariadb:Server": ("properties", "publicNetworkAccess"),
    "azure-native:sql:Server": ("publicNetworkAccess",),  # Azure SQL's default: Enabled
    "azure-native:mongocluster:MongoCluster": ("properties", "publicNetworkAccess"),
    "azure-native:documentdb:MongoCluster": ("properties", "publicNetworkAccess"),
    "azure-native:cosmosdb:MongoCluster": ("properties", "publicNetworkAccess"),
}
"""Also read one level up or down (an ARM template's `properties` are folded into their parents)."""
AZURE_DATABASE_PUBLIC_FLAGS = {  # type -> ((flag, its default when unset), ...): public where a flag is true
    "azure-native:dbforpostgresql:Cluster": (("coordinatorEnablePublicIpAccess", True),
                                             ("nodeEnablePublicIpAccess", False)),
    "azure-native:dbforpostgresql:ServerGroupCluster": (("coordinatorEnablePublicIpAccess", True),
                                                        ("nodeEnablePublicIpAccess", False)),
    "azure-native:dbforpostgresql:ServerGroup": (("coordinatorEnablePublicIpAccess", True),
                                                 ("nodeEnablePublicIpAccess", False)),
    "azure:cosmosdb/postgresqlCluster:PostgresqlCluster": (("coordinatorPublicIpAccessEnabled", True),
                                                           ("nodePublicIpAccessEnabled", False)),
    "azure-native:sql:ManagedInstance": (("publicDataEndpointEnabled", False),),
    "azure:mssql/managedInstance:ManagedInstance": (("publicDataEndpointEnabled", False),),
}
"""Database servers whose public endpoint is a boolean: Cosmos DB for PostgreSQL's coordinator (public unless it says
false) and worker nodes, a SQL managed instance's public data endpoint."""
CLASSIC_DATABASE_SERVERS = frozenset({
    "azure:postgresql/flexibleServer:FlexibleServer", "azure:postgresql/server:Server", "azure:mssql/server:Server",
    "azure:mysql/server:Server", "azure:mariadb/server:Server",
})
"""Classic azure servers with `publicNetworkAccessEnabled` (the provider's default: true)."""
CLASSIC_MYSQL_FLEXIBLE_SERVER = "azure:mysql/flexibleServer:FlexibleServer"
"""Public unless it is in a delegated subnet (`delegatedSubnetId`) or says `publicNetworkAccess: Disabled`."""
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
CLASSIC_STORAGE_ACCOUNT = "azure:storage/account:Account"
BLOB_CONTAINER = "azure-native:storage:BlobContainer"
CLASSIC_STORAGE_CONTAINER = "azure:storage/container:Container"
LOG_ANALYTICS_WORKSPACE = "azure-native:operationalinsights:Workspace"
CONTAINER_APPS = frozenset({"azure-native:app:ContainerApp", "azure-native:app:Job"})
CLASSIC_CONTAINER_APPS = frozenset({"azure:containerapp/app:App", "azure:containerapp/job:Job"})
CONTAINER_GROUP = "azure-native:containerinstance:ContainerGroup"
CLASSIC_CONTAINER_GROUP = "azure:containerservice/group:Group"
DOCKER_CONTAINER = "docker:index/container:Container"
DOCKER_VOLUME = "docker:index/volume:Volume"
MINIO_BUCKET = "minio:index/s3Bucket:S3Bucket"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
PREFIX_LISTS = frozenset({"aws:ec2/managedPrefixList:ManagedPrefixList", "aws-native:ec2:PrefixList"})
PREFIX_LIST_ENTRY = "aws:ec2/managedPrefixListEntry:ManagedPrefixListEntry"
"""Customer-managed prefix lists: a security group rule (prefixListIds, prefixListId, sourcePrefixListId) admits
every CIDR its list holds, which the rule does not show."""
LIGHTSAIL_PORTS = {"aws:lightsail/instancePublicPorts:InstancePublicPorts": ("portInfos",),
                   "aws-native:lightsail:Instance": ("networking", "ports")}
"""Where a Lightsail instance's firewall opens ports (its own security group)."""
NETWORK_SECURITY_GROUPS = frozenset({"azure-native:network:NetworkSecurityGroup",
                                     "azure:network/networkSecurityGroup:NetworkSecurityGroup"})
NETWORK_SECURITY_RULES = frozenset({"azure-native:network:SecurityRule",
                                    "azure:network/networkSecurityRule:NetworkSecurityRule"})
DATABASE_FIREWALL_MODULES = ("azure-native:dbforpostgresql:", "azure-native:dbformysql:", "azure-native:dbformariadb:",
                             "azure-native:sql:", "azure-native:documentdb:", "azure:postgresql/", "azure:mysql/",
                             "azure:mariadb/", "azure:mssql/", "azure:sql/", "azure:cosmosdb/")
"""Where a type whose name ends in FirewallRule (startIpAddress..endIpAddress) opens a database server
(also Cosmos DB for PostgreSQL's cluster firewall, classic `cosmosdb/postgresqlFirewallRule`)."""
AZURE_ROLE_ASSIGNMENTS = frozenset({
    "azure-native:authorization:RoleAssignment",
    "azure-native:authorization:RoleAssignmentScheduleRequest",  # PIM: an active assignment
    "azure-native:authorization:RoleEligibilityScheduleRequest",  # PIM: an eligible one, activated at will
    "azure-native:authorization:PimRoleEligibilitySchedule",  # PIM: an eligible one
    "azure-native:authorization:RoleAssignmentSchedule",
    "azure-native:authorization:RoleEligibilitySchedule",
    "azure:authorization/assignment:Assignment",
    "azure:pim/activeRoleAssignment:ActiveRoleAssignment",
    "azure:pim/eligibleRoleAssignment:EligibleRoleAssignment",
    "azure:role/assignment:Assignment",  # the classic provider before v3.0 named its module role/
    "azure-native:blueprint:RoleAssignmentArtifact",  # assigned with its blueprint, at a subscription
})
BLUEPRINT_ROLE_ASSIGNMENT = "azure-native:blueprint:RoleAssignmentArtifact"
AZURE_RBAC_MODULES = ("azure-native:authorization:", "azure:authorization/", "azure:pim/", "azure:role/")
"""Where any other type that grants a role at a scope would be (a newer name for the same thing)."""
AZURE_ROLE_DEFINITIONS = frozenset({"azure-native:authorization:RoleDefinition",
                                    "azure:authorization/roleDefinition:RoleDefinition",
                                    "azure:role/definition:Definition"})
AZURE_DELEGATIONS = frozenset({"azure-native:managedservices:RegistrationDefinition",
                               "azure:lighthouse/definition:Definition"})
"""Azure Lighthouse: roles a definition hands another tenant's principals on the scope it is assigned to."""

# --- facts the policies decide by ----------------------------------------------------------------

DATABASE_PORTS = {5432: "PostgreSQL", 3306: "MySQL", 1433: "SQL Server", 1521: "Oracle", 50000: "Db2"}
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

CONFIGURABLE_NON_LISTING_ACTIONS = frozenset(action.lower() for action in (
    "cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:GetMetricWidgetImage",
    "cloudwatch:PutMetricData", "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
    "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries", "tag:GetResources", "tag:GetTagKeys",
    "tag:GetTagValues", "ecr:GetAuthorizationToken",
))
"""What the allow-list takes besides METADATA_ACTIONS: telemetry and tag actions that read or write
nothing of anyone's data, credentials or code."""

METADATA_ACTIONS = frozenset(action.lower() for action in (
    # EC2 and VPC: the network and the instances as inventory (not DescribeInstanceAttribute: user data)
    "ec2:DescribeInstances", "ec2:DescribeInstanceStatus", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
    "ec2:DescribeVpcs", "ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules", "ec2:DescribeRouteTables",
    "ec2:DescribeRegions", "ec2:DescribeAvailabilityZones", "ec2:DescribeVpcEndpoints", "ec2:DescribeTags",
    "ec2:DescribeImages", "ec2:DescribeVolumes", "ec2:DescribeSnapshots", "ec2:DescribeAddresses",
    # ECS (not DescribeTaskDefinition: it returns the containers' environment)
    "ecs:ListClusters", "ecs:DescribeClusters", "ecs:ListServices", "ecs:DescribeServices", "ecs:ListTasks",
    "ecs:DescribeTasks", "ecs:ListTaskDefinitions", "ecs:ListTaskDefinitionFamilies", "ecs:ListContainerInstances",
    "ecs:DescribeContainerInstances",
    # load balancers, autoscaling, ECR
    "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTags",
    "autoscaling:DescribeAutoScalingGroups", "application-autoscaling:DescribeScalableTargets",
    "application-autoscaling:DescribeScalingPolicies", "ecr:DescribeRepositories", "ecr:DescribeImages",
    "ecr:ListImages",
    # databases, storage and queues as inventory
    "rds:DescribeDBInstances", "rds:DescribeDBClusters", "rds:DescribeDBSnapshots", "rds:DescribeDBClusterSnapshots",
    "rds:DescribeDBEngineVersions", "rds:ListTagsForResource", "s3:ListAllMyBuckets", "sns:ListTopics",
    "sqs:ListQueues",
    # monitoring
    "cloudwatch:DescribeAlarms", "cloudwatch:ListMetrics", "logs:DescribeLogGroups", "logs:DescribeLogStreams",
    # identity inventory: names, never secrets (ListSecrets and DescribeParameters give no values)
    "iam:ListRoles", "iam:ListPolicies", "iam:ListUsers", "iam:ListGroups", "iam:ListAccountAliases",
    "iam:ListInstanceProfiles", "kms:ListKeys", "kms:ListAliases", "secretsmanager:ListSecrets",
    "ssm:DescribeParameters", "acm:ListCertificates", "route53:ListHostedZones", "servicediscovery:ListNamespaces",
    "servicediscovery:ListServices", "cloudformation:ListStacks",
))
"""The Describe/List actions the allow-list takes: metadata only. A verb says too little: lambda:ListFunctions
returns every function's environment, ec2:DescribeInstanceAttribute user data, cognito-idp:DescribeUserPoolClient
a client secret, elasticbeanstalk:DescribeConfigurationSettings and amplify:ListApps environment variables,
ecs:DescribeTaskDefinition the containers' environment."""

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
    # IAM: attach or write policies, trust, boundaries; remove the policies or boundaries that deny
    "iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:AttachGroupPolicy",
    "iam:PutRolePolicy", "iam:PutUserPolicy", "iam:PutGroupPolicy",
    "iam:DetachRolePolicy", "iam:DetachUserPolicy", "iam:DetachGroupPolicy",
    "iam:DeleteRolePolicy", "iam:DeleteUserPolicy", "iam:DeleteGroupPolicy",
    "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary",
    "iam:PutUserPermissionsBoundary", "iam:DeleteUserPermissionsBoundary", "iam:AddUserToGroup",
    "iam:TagRole", "iam:UntagRole", "iam:TagUser", "iam:UntagUser",  # attribute-based access decides by tags
    # IAM credentials for another identity, or its MFA removed
    "iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:CreateLoginProfile", "iam:UpdateLoginProfile",
    "iam:CreateServiceSpecificCredential", "iam:ResetServiceSpecificCredential",
    "iam:UpdateServiceSpecificCredential", "iam:UploadSSHPublicKey", "iam:UpdateSSHPublicKey",
    "iam:UploadSigningCertificate", "iam:UpdateSigningCertificate",
    "iam:DeactivateMFADevice", "iam:DeleteVirtualMFADevice", "iam:EnableMFADevice", "iam:ResyncMFADevice",
    # IAM federation: whoever changes an identity provider signs in as any role that trusts it
    "iam:CreateSAMLProvider", "iam:UpdateSAMLProvider", "iam:CreateOpenIDConnectProvider",
    "iam:AddClientIDToOpenIDConnectProvider", "iam:UpdateOpenIDConnectProviderThumbprint",
    # resource policies and grants that open a key, a secret, a function or a bucket to anyone
    "kms:PutKeyPolicy", "kms:CreateGrant", "secretsmanager:PutResourcePolicy",
    "lambda:AddPermission", "lambda:AddLayerVersionPermission", "lambda:CreateFunctionUrlConfig",
    "lambda:UpdateFunctionUrlConfig", "ecr:SetRepositoryPolicy", "sqs:AddPermission", "sns:AddPermission",
    "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:PutBucketAcl", "s3:PutBucketPublicAccessBlock",
    "s3:DeletePublicAccessBlock", "s3:PutAccountPublicAccessBlock", "s3:PutBucketOwnershipControls",
    "s3:PutObjectAcl", "s3:PutObjectVersionAcl", "s3:PutAccessPointPolicy", "s3:PutAccessPointPolicyForObjectLambda",
    "s3:PutAccessPointPublicAccessBlock", "s3:PutMultiRegionAccessPointPolicy", "s3express:PutBucketPolicy",
    "kms:ReplicateKey",  # takes the replica's key policy
    # queue and topic attributes hold their resource policy
    "sqs:SetQueueAttributes", "sns:SetTopicAttributes",
    # snapshots and images shared with every account ("all"), a database made public or its master password reset
    "rds:ModifyDBSnapshotAttribute", "rds:ModifyDBClusterSnapshotAttribute", "ec2:ModifySnapshotAttribute",
    "ec2:ModifyImageAttribute", "ec2:ModifyFpgaImageAttribute", "redshift:AuthorizeSnapshotAccess",
    "rds:ModifyDBInstance", "rds:ModifyDBCluster", "redshift:ModifyCluster",
    # other resource policies and shares
    "logs:PutResourcePolicy", "ecr:PutRegistryPolicy", "ecr-public:SetRepositoryPolicy", "events:PutPermission",
    "glacier:SetVaultAccessPolicy", "elasticfilesystem:PutFileSystemPolicy", "backup:PutBackupVaultAccessPolicy",
    "apigateway:UpdateRestApiPolicy", "es:UpdateDomainConfig", "es:UpdateElasticsearchDomainConfig",
    "dynamodb:PutResourcePolicy", "glue:PutResourcePolicy", "kinesis:PutResourcePolicy", "ssm:PutResourcePolicy",
    "ssm:ModifyDocumentPermission", "codeartifact:PutRepositoryPermissionsPolicy",
    "codeartifact:PutDomainPermissionsPolicy", "cloudtrail:PutResourcePolicy", "ram:CreateResourceShare",
    "ram:AssociateResourceShare", "iot:AttachPolicy", "iot:AttachPrincipalPolicy",
))
"""Actions that grant permissions or credentials, or open a resource to anyone: whoever holds one on any
identity or resource (its own role included) can make itself (or everyone) more powerful. Refused
whatever the Resource, also matched by wildcards (iam:*, iam:Put*, s3:*, kms:*, *Policy, ...). An action
named like one (GRANTING_ACTION_NAME) counts too."""
GRANTING_ACTION_NAME = re.compile(
    r"(?:put|set|add|update|create|modify|replicate|attach)\w*(?:resourcepolicy|accesspolicy|accesspointpolicy\w*|"
    r"permissionspolicy|bucketpolicy|keypolicy|repositorypolicy|registrypolicy|containerpolicy|filesystempolicy|"
    r"acl|permission|permissions|snapshotattribute|imageattribute)")
"""The verbs of actions that write a resource policy, an ACL, a permission for other accounts, or who may
use a snapshot or image (logs:PutResourcePolicy, glacier:SetVaultAccessPolicy, s3:PutObjectAcl,
ssm:ModifyDocumentPermission, rds:ModifyDBSnapshotAttribute, ...), besides the ones ESCALATION_ACTIONS names."""
ADMINISTRATION_SERVICES = frozenset({"sso", "sso-directory", "identitystore", "identitystore-auth", "organizations"})
"""Services whose every action but a read (Get*, List*, Describe*, Search*) administers identities or
accounts (IAM Identity Center's account assignments and permission sets, its users and groups, the
organization's accounts and SCPs): refused whatever the Resource."""
_READ_VERBS = ("get", "list", "describe", "search", "batchget", "batchdescribe", "lookup")
CODE_EXECUTION_ACTIONS = frozenset(action.lower() for action in (
    # Lambda: invoke a function, or change the code, layers or environment it runs with under its role
    "lambda:InvokeFunction", "lambda:InvokeFunctionUrl", "lambda:InvokeAsync", "lambda:CreateFunction",
    "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration", "lambda:PublishLayerVersion",
    "lambda:UpdateAlias",
    # SSM: commands, sessions, automations, and the associations, documents and maintenance window tasks that
    # run them later on every instance they target
    "ssm:SendCommand", "ssm:StartSession", "ssm:ResumeSession", "ssm:StartAutomationExecution",
    "ssm:StartChangeRequestExecution", "ssm:CreateAssociation", "ssm:CreateAssociationBatch",
    "ssm:UpdateAssociation", "ssm:StartAssociationsOnce", "ssm:UpdateDocument", "ssm:UpdateDocumentDefaultVersion",
    "ssm:RegisterTaskWithMaintenanceWindow", "ssm:UpdateMaintenanceWindowTask",
    # shells and logins on instances, containers and databases
    "ec2-instance-connect:SendSSHPublicKey", "ec2-instance-connect:SendSerialConsoleSSHPublicKey",
    "ec2-instance-connect:OpenTunnel", "ecs:ExecuteCommand", "rds-db:connect",
    # EC2: user data, and the launch templates (their user data, their instance profile) an Auto Scaling group
    # launches from, or which one it launches from
    "ec2:ModifyInstanceAttribute", "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate",
    "autoscaling:UpdateAutoScalingGroup",
    # ECS and Batch: a task or job with its command overridden runs as the task's or job's role; a service
    # switched to another task definition runs that
    "ecs:RunTask", "ecs:StartTask", "ecs:CreateService", "ecs:UpdateService", "batch:SubmitJob",
    # CodeBuild: a build (its buildspec can be overridden) runs as the project's service role, and so does a
    # project whose buildspec, image or source is changed
    "codebuild:StartBuild", "codebuild:StartBuildBatch", "codebuild:RetryBuild", "codebuild:RetryBuildBatch",
    "codebuild:UpdateProject", "codebuild:CreateWebhook", "codebuild:UpdateWebhook",
    # CloudFormation: a stack's, change set's or stack set's template runs with the stack's service role (or the
    # stack set's administration and execution roles), and registered types run handlers
    "cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:CreateChangeSet",
    "cloudformation:ExecuteChangeSet", "cloudformation:CreateStackSet", "cloudformation:UpdateStackSet",
    "cloudformation:CreateStackInstances", "cloudformation:UpdateStackInstances",
    "cloudformation:ImportStacksToStackSet", "cloudformation:RegisterType", "cloudformation:ActivateType",
    "cloudformation:SetTypeDefaultVersion",
    # Glue: jobs, sessions and development endpoints run scripts as their role; triggers and workflows start jobs
    "glue:CreateDevEndpoint", "glue:UpdateDevEndpoint", "glue:CreateJob", "glue:UpdateJob", "glue:StartJobRun",
    "glue:UpdateJobFromSourceControl", "glue:CreateSession", "glue:RunStatement", "glue:CreateTrigger",
    "glue:UpdateTrigger", "glue:StartTrigger", "glue:StartWorkflowRun",
    # SageMaker notebooks: a browser session on the instance, or the lifecycle script it runs at start
    "sagemaker:CreatePresignedNotebookInstanceUrl", "sagemaker:CreatePresignedDomainUrl",
    "sagemaker:UpdateNotebookInstance", "sagemaker:UpdateNotebookInstanceLifecycleConfig",
    # other workflows, deployments and builds whose definition runs with their own role or an instance's
    "states:UpdateStateMachine", "codepipeline:UpdatePipeline", "elasticmapreduce:AddJobFlowSteps",
    "codedeploy:CreateDeployment", "elasticbeanstalk:UpdateEnvironment", "datapipeline:PutPipelineDefinition",
    "imagebuilder:StartImagePipelineExecution", "amplify:StartJob", "amplify:UpdateApp", "airflow:CreateCliToken",
    "airflow:CreateWebLoginToken",
))
"""Actions that run code (or open a shell, or log in to a database) in what they name, or change what runs later
under another identity's role (a change set, a stack set, a build project, a Glue job, a launch template, an SSM
association): each reaches the role of whatever it runs, so its resources are held to the spelled-out name
(resource_reach(..., names=True)), with or without a Condition: a tag or a cluster says nothing of which roles the
resources it matches run as."""
IDENTITY_SERVICES = frozenset({"iam", "sts", "kms", "organizations", "account", "sso", "sso-directory",
                               "identitystore", "secretsmanager"})
"""Services whose actions on every resource of an account hand out identities, credentials or keys: a
wildcard resource (arn:aws:iam::123456789012:role/*) is refused for them even with a Condition."""
NAME_WILDCARD_SERVICES = frozenset({"iam", "sts", "kms", "rds-db"})
"""ARN services where any wildcard in the resource (role/A*, user/?dmin, key/1*, dbuser:db-*/*) reaches as far
as role/*: an attacker chooses the names (36 statements of role/a* .. role/9* cover every role), KMS key ids
and RDS resource ids are random, and a database user is an identity."""
NAMED_RESOURCE_TYPES = frozenset({("secretsmanager", "secret"), ("ssm", "parameter")})
"""(service, resource type) whose names a wildcard may follow only when the name is spelled out up to a `/`
or `:` (secret:mlflow/*, parameter/mlflow/*) or the wildcard is Secrets Manager's random suffix
(secret:mlflow-db-??????): secret:a* .. secret:9* (36 statements) reach every secret of the account. Actions
that run code (CODE_EXECUTION_ACTIONS) are held to the same rule on every resource (instance/i-*,
function:mlflow-*), and an S3 bucket name may hold no wildcard at all (bucket names are global)."""
PRINCIPAL_CONDITION_KEYS = frozenset(name.lower() for name in (
    "aws:PrincipalOrgID", "aws:PrincipalAccount", "aws:PrincipalArn", "kms:CallerAccount",
    "aws:SourceAccount", "aws:SourceArn", "aws:SourceOrgID",
))
"""Condition keys that narrow "any principal" to named accounts, an organization or one caller (with a
positive operator and literal values): kms:CallerAccount names the caller's account as aws:PrincipalAccount
does (AWS's own managed-key policies use it with kms:ViaService). Any other condition (aws:SecureTransport,
aws:CurrentTime, kms:ViaService, ...) holds for anyone, and so does sts:ExternalId: beside Principal "*" it
is a shared string, kept in the program, its state and the CI logs, that any account which reads it can
send; it narrows nothing but a named account principal, which needs no narrowing."""
_RESOURCE_ACCOUNT_VARIABLES = frozenset({"${aws:resourceaccount}", "${aws:resourceorgid}"})
_POSITIVE_OPERATORS = frozenset({"stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike"})
_CONFIGURABLE_ACTION = re.compile(r"[A-Za-z0-9-]+:[A-Za-z0-9]+")

NARROW_AWS_MANAGED_POLICY_NAMES = (
    "service-role/AmazonECSTaskExecutionRolePolicy",  # pull images, write the task's logs, on "*"
    "service-role/AWSLambdaBasicExecutionRole",  # create and write log streams
    "service-role/AWSLambdaVPCAccessExecutionRole",  # the function's network interfaces, and its logs
    "CloudWatchAgentServerPolicy",  # metrics and logs, the agent's own AmazonCloudWatch-* parameters
    "AWSXRayDaemonWriteAccess",  # trace segments and telemetry
    "service-role/AmazonRDSEnhancedMonitoringRole",  # RDS's OS metrics into its RDSOSMetrics log group, nothing else
)
NARROW_AWS_MANAGED_POLICIES = frozenset(name.rsplit("/", 1)[-1].lower() for name in NARROW_AWS_MANAGED_POLICY_NAMES)
"""Their names: a policy's name is unique in its account whatever its path (SAM's Policies name them so)."""
"""The AWS-managed policies that may be attached: service-role policies that write telemetry or pull images and
read or change nothing else. Every other AWS-managed policy is refused, whatever its name: they are never
scoped to the project's resources, and a harmless name says nothing of what they reach (ReadOnlyAccess and
AmazonS3ReadOnlyAccess read every bucket's objects, AmazonEC2RoleforSSM puts and gets objects in every bucket
and runs commands, AmazonSSMReadOnlyAccess reads every parameter, CloudWatchLogsReadOnlyAccess every log,
ViewOnlyAccess lists every function's environment), besides the broad names (AdministratorAccess, *FullAccess,
PowerUserAccess, the job-function policies, ...). Attach a policy of your own that names the ARNs instead."""
ADMIN_NAME = re.compile(r"admin|poweruser|fullaccess|fullcontrol|superuser|breakglass", re.IGNORECASE)
"""A name that says it administers: customer-managed policies, groups and users named so are judged by it (read
without separators: Power_User, Full-Access, super user, break.glass)."""


def _admin_named(name: Any) -> bool:
    return bool(ADMIN_NAME.search(re.sub(r"[^a-z0-9]", "", str(name).lower())))


_POLICY_ARN = re.compile(r"arn:[^:]*:iam:[^:]*:(?P<account>[^:]*):policy/(?P<path>.*)", re.IGNORECASE | re.DOTALL)

AZURE_PRIVILEGED_ROLES = {
    # all actions ("*"), or the right to assign any role
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168": "Role Based Access Control Administrator",
    "32e6a4ec-6095-4e37-b54b-12aa350ba81f": "Service Group Contributor",
    # the rest of Microsoft's privileged administrator roles, and the roles that assign roles (limited by an ABAC
    # condition to some roles, which themselves read data or log in to machines) or make an identity's tokens
    # anyone's: write a managed identity's federated credentials, or attach it to a resource one controls
    "92b92042-07d9-4307-87f7-36a593fc5850": "Azure File Sync Administrator",
    "a8889054-8d42-49c9-bc1c-52486c10e7cd": "Reservations Administrator",
    "76cc9ee4-d5d3-4a45-a930-26add3d73475": "Access Review Operator Service Role",
    "8b54135c-b56d-4d72-a534-26097cfdc8d8": "Key Vault Data Access Administrator",
    "66f75aeb-eabe-4b70-9f1e-c350c4c9ad04": "Virtual Machine Data Access Administrator",
    "95de85bd-744d-4664-9dde-11430bc34793": "Azure Container Storage Owner",
    "95dd08a6-00bd-4661-84bf-f6726f83a4d0": "Azure Container Storage Contributor",
    "bda0d508-adf1-4af0-9c28-88919fc3ae06": "Azure Stack HCI Administrator",
    "5a382001-fe36-41ff-bba4-8bf06bd54da9": "Azure Sphere Owner",
    "0f641de8-0b88-4198-bdef-bd8b45ceba96": "Defender for Storage Scanner Operator",
    "8480c0f0-4509-4229-9339-7c10018cb8c4": "Defender CSPM Storage Scanner Operator",
    "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59": "Managed Identity Contributor",
    "f1a07417-d97a-45cb-824c-7a7467783830": "Managed Identity Operator",
    "7e559ce2-48d7-4b27-9128-fa1b247f1308": "Managed Identity Federated Identity Credential Contributor",
}
"""Azure's built-in roles that are an administrator's or can make one (the role definition GUIDs of
https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/privileged and
https://learn.microsoft.com/azure/role-based-access-control/built-in-roles): all actions, the right to assign roles
(also one limited by a condition to some roles), or to a managed identity's tokens (its federated credentials, or
attaching it to a resource). Refused at subscription, management-group or root scope."""
AZURE_ROLE_ADMIN_ACTIONS = ("microsoft.authorization/roleassignments/write",
                            "microsoft.authorization/roledefinitions/write",
                            "microsoft.authorization/elevateaccess/action",
                            "microsoft.authorization/roleassignmentschedulerequests/write",
                            "microsoft.authorization/roleeligibilityschedulerequests/write",
                            "microsoft.authorization/rolemanagementpolicies/write",
                            "microsoft.authorization/rolemanagementpolicyassignments/write",
                            "microsoft.managedidentity/userassignedidentities/federatedidentitycredentials/write",
                            "microsoft.managedidentity/userassignedidentities/assign/action")
"""What a custom role must not be able to do above a resource group (besides all actions, "*"): assign roles, write
role definitions, elevate, or assign itself a role through PIM (a schedule request, or the management policy that
decides what an activation needs); or take over any managed identity there (what it holds is anyone's): write its
federated identity credentials (a token from an issuer and subject of one's choosing signs in as it), or attach it
to a resource one controls. `userAssignedIdentities/*` and `Microsoft.ManagedIdentity/*` cover both."""
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)

STRONG_S3_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
STRONG_TLS_VERSIONS = frozenset({"TLS1_2", "TLS1_3"})
PUBLIC_ACL_GROUPS = ("acs.amazonaws.com/groups/global/allusers", "acs.amazonaws.com/groups/global/authenticatedusers")
KEEP_LABEL = ("org.mlflow-platform.data", "keep")
"""The label the local platform puts on a volume it creates with `retain_on_delete`: the policy API
does not pass that option on, so this label is the mark a policy can read."""
RUNTIME_MOUNT_PREFIXES = ("/run", "/var/run", "/tmp", "/var/tmp", "/dev", "/var/cache", "/var/lock")
"""Mount points that hold sockets, caches and scratch files, never data (also any `.cache` directory)."""

_SECRET_WORD_ENDINGS = ("PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "SECRETS", "TOKEN", "CREDENTIAL",
                        "CREDENTIALS", "APIKEY", "PRIVATEKEY", "ACCESSKEY", "SECRETKEY")
_SECRET_WORDS = frozenset({"KEY", "PWD", "PASS", "CREDS", "CRED"})
_DESCRIBING_WORDS = frozenset({
    "ID", "IDS", "ARN", "ARNS", "FILE", "FILES", "PATH", "PATHS", "DIR", "NAME", "NAMES", "REF", "URI", "URL", "URLS",
    "ENDPOINT", "HOST", "PORT", "SHA", "SHA1", "SHA256", "SHA512", "DIGEST", "CHECKSUM", "VERSION", "LENGTH", "LEN",
    "TTL", "EXPIRY", "EXPIRES", "EXPIRATION", "LIFETIME", "TIMEOUT", "TYPE", "KIND", "ALGORITHM", "ALG", "FORMAT",
    "ENCODING", "HEADER", "FIELD", "PARAM", "PARAMETER", "PREFIX", "ENABLED", "DISABLED", "ENABLE", "DISABLE",
    "REQUIRED", "MODE", "POLICY", "ROTATION", "STDIN", "FD", "ENV", "VAR", "CMD", "COMMAND", "PROVIDER", "LOCATION",
    "REGION", "AUDIENCE", "ISSUER", "SCOPE", "SCOPES", "COUNT", "SIZE", "BITS", "LIMIT", "MIN", "MAX", "DAYS",
    "SECONDS", "HOURS", "MINUTES", "INTERVAL", "ALIAS", "PAIR", "HINT", "LABEL", "TAG", "TAGS", "ROLE", "METHOD",
    "MANAGER", "BACKEND", "STORE", "VAULT", "SERVICE", "CACHE",
})
"""Words that, after a name's last secret word, say its value points at or describes a secret rather than holds
one (DB_PASSWORD_FILE, AWS_ACCESS_KEY_ID, TOKEN_URL, PASSWORD_MIN_LENGTH, SECRET_NAME, --password-stdin)."""
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:(?![0-9]+(?:/|$))[^\s@]+@", re.IGNORECASE)
"""scheme://user:password@ and scheme://:password@ (Redis, AMQP), also a password with a `/` in it, as
SQLAlchemy and libpq read one (postgresql://mlflow:hunter2/x@db/mlflow); not host:port/path@..."""
_AUTHORIZATION_VALUE = re.compile(r"(?:^|[\s=:,;\"'])(?:basic|bearer|token|digest)\s+"
                                  r"(?=[a-z0-9+/=._~-]*[0-9+/=._~-])[a-z0-9+/=._~-]{8,}", re.IGNORECASE)
"""An HTTP Authorization value (`Basic YWRtaW46aHVudGVyMg==`, `Bearer glc_eyJ...`), also inside a header list
(OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer ...)."""
_KEYED_VALUE = re.compile(r"(?:^|[\s,;&])([A-Za-z][\w.-]*)=([^\s,;&]+)")
"""key=value inside a value (a header list, a shell line): a secret-named key with a literal value is a secret."""
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
_PUBLIC_PEM_LABELS = frozenset({"PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE", "TRUSTED CERTIFICATE",
                                "X509 CRL", "CERTIFICATE REQUEST"})
_URL_QUERY_SECRET = re.compile(r"[?&](?:password|passwd|pwd|pass|secret|client_secret|sig|signature|token|"
                               r"access_token|api_key|apikey|x-amz-signature|x-amz-security-token|"
                               r"sharedaccesssignature)=[^&#\s]", re.IGNORECASE)
"""A credential in a URL's query: libpq/JDBC `?password=`, a SAS token's `sig=`, a presigned URL's signature."""
_CONNECTION_STRING_KEY = re.compile(r"(?:^|;)\s*(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd)"
                                    r"\s*=\s*[^;\s]", re.IGNORECASE)
_KEYWORD_DSN_PASSWORD = re.compile(r"(?:^|\s)(?:password|passwd|pwd)\s*=\s*(?:'[^']+'|\"[^\"]+\"|[^\s'\"])",
                                   re.IGNORECASE)
"""libpq's keyword/value form: `host=db user=mlflow password=...`."""
_AZURE_SECRET_KEY = re.compile(r"(?:^|;)\s*(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*[^;\s]",
                               re.IGNORECASE)
_PRIVATE_KEY_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_KNOWN_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?:(?:AKIA|ASIA)[0-9A-Z]{16}[^A-Za-z0-9/+=]{1,3}[A-Za-z0-9/+=]{40}"
                          r"(?![A-Za-z0-9/+=])|"
                          r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20}|"
                          r"xox[abposr]-[A-Za-z0-9-]{10,}|sk_live_[A-Za-z0-9]{24,}|AIza[0-9A-Za-z_-]{35})")
"""Credentials whose shape says what they are, whatever their name: an AWS access key id with its secret beside it,
GitHub, GitLab, Slack, Stripe and Google API tokens."""
_HARMLESS_CONNECTION_KEYS = frozenset({"instrumentationkey", "ingestionendpoint", "liveendpoint",
                                       "profilerendpoint", "snapshotendpoint", "applicationid", "endpointsuffix",
                                       "location", "authorization", "aadaudience"})
"""The keys of an Application Insights connection string, which Microsoft says is no secret."""
_KEY_FILE_NAME = re.compile(r"[\w.@+-]+\.(?:pem|key|crt|cer|der|p12|pfx|jks|json)", re.IGNORECASE)
"""A key or credentials file's name in the working directory (tls.key, client.pem, gcp.json)."""
_FILE_PATH = re.compile(r"(?:/|\./|\.\./|~/)[\w.@+-]+(?:/[\w.@+-]+)*/?")
_SHELL_ASSIGNMENT = re.compile(r"(?:^|[\s;&|(])(?:export\s+)?([A-Z][A-Z0-9_]*)=([^\s;&|)]+)")
_COMMAND_FLAG = re.compile(r"(?:^|\s)--?([A-Za-z][\w-]*)=([^\s'\"][^\s]*)")
_API_VERSION = re.compile(r"/v\d{8}[a-z]*(?=:)")


# --- reading properties ----------------------------------------------------------------------------

def normalized_type(resource_type: str) -> str:
    """`azure-native:dbforpostgresql/v20210615privatepreview:Server` -> `azure-native:dbforpostgresql:Server`:
    azure-native also offers each resource under explicit API versions (v20241101preview, v20220401,
    v20210615privatepreview, ...)."""
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


def case_duplicate_key(value: Any, depth: int = 0) -> str | None:
    """A key an object (at any depth) holds twice in different case ("Statement" and "statement",
    "Environment" and "environment"), or None. Readers differ on which one counts (the pack's `key` took the
    first, Go's encoding/json the last), so the pack refuses such a value."""
    if depth > 20:
        return None
    if isinstance(value, Mapping):
        seen: set[str] = set()
        for name in value:
            lowered = str(name).lower()
            if lowered in seen:
                return str(name)
            seen.add(lowered)
        for name in value:
            found = case_duplicate_key(value[name], depth + 1)
            if found:
                return found
    elif is_sequence(value):
        for item in value:
            found = case_duplicate_key(item, depth + 1)
            if found:
                return found
    return None


def _parse_document(value: Any) -> Any:
    """A document given as JSON text (what the providers take) or as an object; ValueError if unreadable
    (not JSON, a key twice in any case, a statement that is no object)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value, object_pairs_hook=_without_duplicate_keys) if value.strip() else {}
        except RecursionError:
            raise ValueError("nested too deep") from None
    else:
        parsed = {} if value is None else value
        duplicate = case_duplicate_key(parsed)
        if duplicate:
            raise ValueError(f"duplicate key {duplicate!r}")
    if isinstance(parsed, Mapping) and not all(isinstance(item, Mapping)
                                               for item in as_list(key(parsed, "Statement"))):
        raise ValueError("a statement that is no object")
    return parsed


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
    """A mapping's value under `name`, matched without regard to case (IAM elements and condition keys,
    ECS container definitions, which the AWS API reads without regard to case too)."""
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
    """True as the providers read a boolean (Go's strconv.ParseBool: true, "true", "TRUE", "1", "t", 1)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1
    return isinstance(value, str) and value.strip().lower() in ("true", "1", "t")


def is_false(value: Any) -> bool:
    """False as the providers read a boolean (false, "false", "0", "f", 0)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value == 0
    return isinstance(value, str) and value.strip().lower() in ("false", "0", "f")


def _known_in(value: Any, *path: str | int) -> Any:
    """A nested value, or None while it is unknown (the generic searches skip what a preview cannot know)."""
    try:
        return get(value, *path)
    except UnknownValueError:
        return None


def _items(value: Any) -> list[Any]:
    """The known items of a list (or the one value), skipping the unknown ones."""
    try:
        if not is_sequence(value):
            return [] if value is None else [value]
        found = []
        for index in range(len(value)):
            try:
                found.append(value[index])
            except UnknownValueError:
                continue
        return found
    except UnknownValueError:
        return []


# --- secrets in environment variables ----------------------------------------------------------

def _name_words(name: str) -> list[str]:
    """A name's words in upper case: split at anything but letters and digits, at a camelCase step and between
    letters and digits (dbPassword1 -> DB, PASSWORD, 1; MLFLOW_TRACKING_TOKEN -> MLFLOW, TRACKING, TOKEN)."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])", "_", str(name))
    return [word for word in re.split(r"[^A-Z0-9]+", spaced.upper()) if word]


def _is_secret_word(words: Sequence[str], index: int) -> bool:
    word = words[index]
    return word in _SECRET_WORDS or word.endswith(_SECRET_WORD_ENDINGS) or word == "CONNECTIONSTRING" or \
        (word == "STRING" and index > 0 and words[index - 1] == "CONNECTION")


def looks_like_secret_name(name: str) -> bool:
    """A name that says it holds a secret: a secret word anywhere in it (..._PASSWORD, PASSWORD_DB, DB_PASSWORD_1,
    ..._SECRET_KEY, ..._TOKEN, SECRET_KEY_BASE, a connection string), unless a word after the last one says the
    value only points at or describes a secret (_DESCRIBING_WORDS): AWS_ACCESS_KEY_ID (an id),
    POSTGRES_PASSWORD_FILE (a path), *_SECRET_ARN, *_SECRETS_SHA256 (a digest), TOKEN_URL, PASSWORD_MIN_LENGTH.
    AWS_DEFAULT_REGION or *_URL have no secret word."""
    words = _name_words(name)
    found = [index for index in range(len(words)) if _is_secret_word(words, index)]
    return bool(found) and not any(word in _DESCRIBING_WORDS for word in words[found[-1] + 1:])


def looks_like_secret_value(value: Any) -> bool:
    """A value that carries a credential whatever its name: a URL with a password (also `://:pw@`), a
    credential in a URL's query (`?password=`, a SAS token's `sig=`), a connection string with a key or
    password, libpq's `password=` keyword, a PEM private key, an HTTP Authorization value (`Basic ...`,
    `Bearer ...`), a secret-named key with a literal value inside it (`x-api-key=...`, `PGPASSWORD=...`), also as
    JSON (`{"username": "mlflow", "password": "..."}`, at any depth, or as a name/value pair) or in YAML's,
    a header's or an INI file's `password: ...` / `password = ...`."""
    if not isinstance(value, str):
        return False
    return bool(_URL_WITH_PASSWORD.search(value) or _URL_QUERY_SECRET.search(value)
                or _CONNECTION_STRING_KEY.search(value) or _KEYWORD_DSN_PASSWORD.search(value)
                or _PRIVATE_KEY_PEM.search(value) or _AUTHORIZATION_VALUE.search(value) or _KNOWN_TOKEN.search(value)
                or any(looks_like_secret_name(match.group(1)) and _literal_argument(match.group(2))
                       and not _harmless_connection_string(value) for match in _KEYED_VALUE.finditer(value))
                or _structured_secret(value))


_YAML_KEYED_VALUE = re.compile(r"""(?:^|[\s,;{\[(])(?:(["'])([A-Za-z_][\w.-]*)\1[ \t]*[:=][ \t]*|"""
                               r"""([A-Za-z_][\w.-]*)[ \t]*(?::[ \t]+|[ \t]=[ \t]*))["']?([^\s"',;}\]#]+)""")
"""`key: value` (YAML, a header line), `"key": value` or `'key':value` (JSON-like text that is no JSON), and
`key = value` (INI, TOML): a value after a secret-named key. Not `arn:...:secret:name` (no space after the colon)."""
_NO_VALUES = frozenset({"null", "none", "nil", "~", "true", "false", "yes", "no", "''", '""'})


def _secret_field(name: Any, value: Any) -> bool:
    """A field of a structured value that holds a secret: a secret-named key (not the bare `key` of a key/value
    pair) with a literal string or number (not a reference, `$X`, a file path, a public key, null)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not isinstance(name, str):
        return False
    text = str(value).strip()
    return bool(text) and _name_words(name) != ["KEY"] and looks_like_secret_name(name) and \
        text.lower() not in _NO_VALUES and _literal_argument(text) and not _names_a_file(name, text) and \
        not _public_pem(text) and not _harmless_connection_string(text)


def _secret_in_structure(value: Any, depth: int = 0) -> bool:
    """A secret anywhere in parsed JSON: a secret-named field with a literal value, or a name/value pair whose name
    is secret-named ({"name": "DB_PASSWORD", "value": "..."}, {"Key": "password", "Value": "..."})."""
    if depth > 12:
        return False
    if isinstance(value, Mapping):
        if isinstance(value.get("kty"), str) and {str(member).lower() for member in value} & _JWK_PRIVATE_MEMBERS:
            return True  # a JWK with its private (or symmetric) key material
        named = next((value[field] for field in value if str(field).lower() in ("name", "key")), None)
        given = next((value[field] for field in value if str(field).lower() == "value"), None)
        if isinstance(named, str) and _secret_field(named, given):
            return True
        return any(_secret_field(field, item) or _secret_in_structure(item, depth + 1) for field, item in value.items())
    if is_sequence(value):
        return any(_secret_in_structure(item, depth + 1) for item in value)
    if isinstance(value, str) and _json_text(value):  # JSON text inside JSON
        return _structured_secret(value, depth + 1)
    return False


def _structured_secret(text: str, depth: int = 0) -> bool:
    """JSON text (an object or a list) that holds a secret field, or text with a secret-named `key: value` or
    `key = value` (YAML, INI, a header line, JSON-like text)."""
    if depth > 4:
        return False
    if _json_text(text):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = None
        if parsed is not None and _secret_in_structure(parsed, depth):
            return True
    return any(_secret_field(match.group(2) or match.group(3), match.group(4).strip("'\""))
               for match in _YAML_KEYED_VALUE.finditer(text))


_OPENSSH_PUBLIC_KEY = re.compile(r"(?:ssh-(?:rsa|dss|ed25519|ed448)|ecdsa-sha2-nistp(?:256|384|521)|"
                                 r"sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)(?:-cert-v01@openssh\.com)?"
                                 r"\s+AAAA[A-Za-z0-9+/]+={0,3}(?:\s+\S.*)?")
"""One line of an OpenSSH public key (authorized_keys, known keys): its type, its base64 blob, a comment."""
_JWK_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"})
"""The members of a JWK that hold private (or symmetric: `k`) key material (RFC 7518 section 6, RFC 8037)."""


def _public_pem(value: Any) -> bool:
    """Public keys or certificates only, no secret: PEM text of public keys and certificates (an OIDC
    verifier's key, a CA bundle), OpenSSH public keys (`ssh-ed25519 AAAA... comment`, one a line), a JWK
    or JWK set whose every key has a `kty` and none of the private members (`d`, `p`, `q`, ..., a symmetric
    key's `k`)."""
    if not isinstance(value, str):
        return False
    labels = _PEM_BLOCK.findall(value)
    if labels:
        return all(label.strip() in _PUBLIC_PEM_LABELS for label in labels)
    lines = [line.strip() for line in value.strip().splitlines() if line.strip()]
    if lines and all(_OPENSSH_PUBLIC_KEY.fullmatch(line) for line in lines):
        return True
    try:
        parsed = json.loads(value, object_pairs_hook=_without_duplicate_keys) if _json_text(value) else None
    except (ValueError, RecursionError):
        return False
    keys = as_list(get(parsed, "keys")) if isinstance(parsed, Mapping) and "keys" in parsed else [parsed]
    return bool(keys) and all(
        isinstance(jwk, Mapping) and isinstance(jwk.get("kty"), str)
        and not {str(member).lower() for member in jwk} & _JWK_PRIVATE_MEMBERS for jwk in keys)


def _harmless_connection_string(value: Any) -> bool:
    """An Application Insights connection string (InstrumentationKey=...;IngestionEndpoint=...): Microsoft
    documents it as no secret (it only lets one send telemetry)."""
    if not isinstance(value, str) or "=" not in value:
        return False
    names = [part.split("=", 1)[0].strip().lower() for part in value.split(";") if part.strip()]
    return bool(names) and all(name in _HARMLESS_CONNECTION_KEYS for name in names)


def _names_a_file(name: str, value: Any) -> bool:
    """*_CREDENTIALS, *_KEY and the like holding a file path (GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/gcp.json,
    NGINX_SSL_KEY=/run/secrets/tls.key): the convention for these names is a path to the file, not its content.
    Not *_PASSWORD, *_TOKEN or *_SECRET: a value of those is the secret (their files go in *_FILE)."""
    words = [word for word in re.split(r"[^A-Z0-9]+", name.upper()) if word]
    return bool(words) and words[-1] in ("CREDENTIAL", "CREDENTIALS", "KEY", "PRIVATEKEY", "CERT", "CERTKEY") \
        and isinstance(value, str) and bool(_FILE_PATH.fullmatch(value.strip())
                                            or _KEY_FILE_NAME.fullmatch(value.strip()))


def secret_env_entries(env: Iterable[tuple[str, Any]]) -> list[str]:
    """The names of the plain env entries that look like they hold a secret."""
    found = []
    for name, value in env:
        if value in (None, ""):
            continue
        by_name = looks_like_secret_name(name) and not _harmless_connection_string(value) \
            and not _names_a_file(name, value) and not _public_pem(value)
        if by_name or looks_like_secret_value(value):
            found.append(name)
    return found


_SHELL_SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", "\n"})
_USER_PASSWORD_FLAGS = frozenset({"-u", "--user", "-U", "--proxy-user", "-a", "--auth", "--basic-auth"})
"""Flags whose value may be `user:password` (curl's -u/--user/-U/--proxy-user, httpie's -a/--auth)."""
_USER_PASSWORD = re.compile(r"[^:\s]*:(?P<password>.+)")
_CLIENT_PASSWORD_FLAGS = (  # a client (its program's name) -> its short password flag, attached to it only
    (re.compile(r"(?:mysql|mariadb)[\w-]*"), "-p", True),  # -pSECRET (a separate word after -p is no password)
    (re.compile(r"redis-cli"), "-a", False),
    (re.compile(r"mongo|mongosh"), "-p", False),
    (re.compile(r"sshpass"), "-p", False),
    (re.compile(r"sqlcmd"), "-P", False),
)
"""Database and shell clients that take a password with a short flag: `mysqladmin ping -uroot -phunter2`,
`redis-cli -a hunter2 ping`, `sqlcmd -U sa -P hunter2`, `sshpass -p hunter2 ssh ...`."""
_SECRET_FLAGS = frozenset({"requirepass", "masterauth", "storepass", "keypass", "srcstorepass", "deststorepass",
                           "passin", "passout", "pass", "oauth2-bearer"})
"""Flags that take a secret though their names end in no secret word (redis-server, keytool, openssl, curl)."""
_HEADER_FLAGS = frozenset({"-H", "--header", "--headers", "--proxy-header"})
_HEADER_LINE = re.compile(r"\s*([A-Za-z][\w-]*)\s*:\s*(\S.*)")


def _shell_words(item: str) -> list[str]:
    """An argument as the shell would split it (`sh -c "..."`, CMD-SHELL), quotes removed; `;`, `&&`, `|`
    apart. Text the shell could not split is split at whitespace."""
    if not re.search(r"[\s;&|()'\"]", item):
        return [item]
    try:
        lexer = shlex.shlex(item, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        return list(lexer)
    except ValueError:
        return item.split()


_SCRIPT_INTERPRETER = re.compile(r"(?:python|pypy|node|deno|bun|ruby|perl|php|pwsh|powershell|java|jshell|lua)"
                                 r"[\d.]*(?:\.exe)?", re.IGNORECASE)
_SCRIPT_FLAGS = frozenset({"-c", "-e", "--eval", "-E", "-Command", "--command", "-r"})
"""`python -c CODE`, `node -e CODE`, ...: the argument after such a flag is a program, whose `password=...` is
a keyword argument or an assignment, not a value (a shell's `-c` script is split into words instead)."""


def _script_arguments(items: Sequence[str]) -> set[int]:
    """The indexes of the arguments that are another language's code (after `python -c`, `node -e`, ...)."""
    scripts = set()
    for index, item in enumerate(items[:-1]):
        if item.strip() in _SCRIPT_FLAGS and any(
                _SCRIPT_INTERPRETER.fullmatch(posixpath.basename(previous.strip())) for previous in items[:index]):
            scripts.add(index + 1)
    return scripts


def _credential_in_value(item: str, keyed: bool = True) -> bool:
    """A value that carries a credential whatever surrounds it: a URL with a password, a credential in a
    URL's query, an Azure account key or SAS, a PEM private key, an HTTP Authorization value, or (`keyed`:
    not inside another language's code) a secret-named key with a literal value (libpq's `password=...`, a
    connection string's `Password=...`, `x-api-key=...`)."""
    if _URL_WITH_PASSWORD.search(item) or _URL_QUERY_SECRET.search(item) or _AZURE_SECRET_KEY.search(item) \
            or _PRIVATE_KEY_PEM.search(item) or _KNOWN_TOKEN.search(item) \
            or (keyed and _AUTHORIZATION_VALUE.search(item)):
        return True
    if not keyed or _harmless_connection_string(item):
        return False
    return any(looks_like_secret_name(match.group(1)) and _literal_argument(match.group(2))
               for match in _KEYED_VALUE.finditer(item)) or _structured_secret(item)


def secret_arguments(arguments: Iterable[Any]) -> list[str]:
    """What in a container's command, entrypoint or args (or a health check's command) carries a credential,
    the arguments read both as the words a program gets (exec form) and as the shell splits each (`sh -c`,
    CMD-SHELL): a value that does (_credential_in_value: a URL with a password, a DSN's or connection
    string's password, an Authorization value, ...), a secret-named flag with its value (`--password hunter2`,
    `--db-password=hunter2`, `--requirepass hunter2`), a shell assignment (`PGPASSWORD=hunter2 psql`),
    `user:password` after curl's or httpie's user flag (`-u admin:hunter2`), a client's short password flag
    (`mysqladmin -phunter2`, `redis-cli -a hunter2`, `sqlcmd -P hunter2`), a credential header
    (`-H "Authorization: Basic ..."`, `--header='X-Api-Key: ...'`). Values that read a variable or a file
    (`$X`, `$(cat ...)`) are none: a script may pass a secret on. Another language's code (`python -c`) is
    searched for the value shapes only."""
    found: list[str] = []
    items = [item for item in arguments if isinstance(item, str)]
    scripts = _script_arguments(items)
    flagged: set[int] = set()

    def flag(index: int, what: str) -> None:
        if index not in flagged:
            flagged.add(index)
            found.append(f"{what} (argument {index + 1})")

    for index, item in enumerate(items):
        if _credential_in_value(item, keyed=index not in scripts):
            flag(index, "a value with a credential")
        for pattern in (_COMMAND_FLAG, _SHELL_ASSIGNMENT):
            for match in pattern.finditer(item):
                if looks_like_secret_name(match.group(1)) and _literal_argument(match.group(2)):
                    flag(index, f"{match.group(1)}=")
    exec_form = [(index, item) for index, item in enumerate(items) if index not in scripts]
    shell_form = [(index, word) for index, item in exec_form for word in _shell_words(item)]
    for words in (exec_form, shell_form):
        for index, what in _secret_words(words):
            flag(index, what)
    return found


def _secret_words(words: Sequence[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """(argument index, what) of each credential a command's words pass: see secret_arguments."""
    programs: list[str] = []  # the names of the words since the last `;`, `&&`, `|`
    for position, (index, word) in enumerate(words):
        following, following_index = words[position + 1][::-1] if position + 1 < len(words) else ("", index)
        if word in _SHELL_SEPARATORS:
            programs = []
            continue
        programs.append(posixpath.basename(word.strip()))
        name, equals, attached = word.partition("=")
        value, value_index = (attached, index) if equals else (following, following_index)
        option = re.fullmatch(r"--?([A-Za-z][\w-]*)", name)
        if option and not option.group(1).lower().startswith("no-") and (
                looks_like_secret_name(option.group(1)) or option.group(1).lower() in _SECRET_FLAGS) \
                and _literal_argument(value) and not _names_a_file(option.group(1), value) \
                and not value.strip().lower().startswith(("env:", "file:", "fd:", "stdin")):
            yield value_index, name
        if name in _USER_PASSWORD_FLAGS:
            user, user_index = value, value_index
        elif word[:2] in ("-u", "-U") and len(word) > 2 and word[2] != "-":  # curl -uadmin:hunter2
            user, user_index = word[2:], index
        else:
            user = ""
        match = _USER_PASSWORD.fullmatch(user.strip())
        if match and _literal_argument(match.group("password")) and not re.fullmatch(r"[0-9]+:[0-9]+", user.strip()):
            yield user_index, f"{name if name in _USER_PASSWORD_FLAGS else word[:2]} user:password"
        for pattern, short, attached_only in _CLIENT_PASSWORD_FLAGS:
            if not any(pattern.fullmatch(program) for program in programs[:-1]):
                continue
            if word.startswith(short) and len(word) > len(short) and _literal_argument(word[len(short):]):
                yield index, f"{short}<password>"
            elif word == short and not attached_only and _literal_argument(following):
                yield following_index, f"{short} <password>"
        if name in _HEADER_FLAGS:
            header = _HEADER_LINE.fullmatch(value)
            if header and secret_headers([(header.group(1), header.group(2))]) and \
                    _literal_argument(header.group(2).split()[-1]):
                yield value_index, f"{name} {header.group(1)}"


def _literal_argument(value: str) -> bool:
    text = value.strip().strip("'\"")
    return bool(text) and not text.startswith(("-", "$", "`", "(", "<")) and not _FILE_PATH.fullmatch(text)


def _entries(items: Any, name_key: str = "name", value_key: str = "value",
             secret_keys: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(name, value) of a list of {name, value} entries (keys matched without regard to case); entries
    that reference a secret (`secretRef`, `secretName`, `valueFrom`) give no plain value."""
    entries = []
    for entry in as_list(items):
        if isinstance(entry, Mapping):
            if any(key(entry, secret) for secret in secret_keys):
                continue
            entries.append((str(key(entry, name_key) or ""), key(entry, value_key)))
    return entries


def _mapping_entries(mapping: Any) -> list[tuple[str, Any]]:
    return [(str(name), mapping[name]) for name in mapping] if isinstance(mapping, Mapping) else []


def _arguments(container: Any, *fields: str) -> list[Any]:
    arguments: list[Any] = []
    for field in fields:
        value = key(container, field)
        arguments.extend(as_list(value) if is_sequence(value) else [value] if isinstance(value, str) else [])
    return arguments


class _Container:
    """One container's plain environment and command line, wherever a resource keeps them; its health
    checks' commands and headers (`source`: the mapping that defines the container)."""

    def __init__(self, name: str, env: list[tuple[str, Any]], arguments: list[Any], where: str, fix: str,
                 source: Any = None) -> None:
        self.name, self.env, self.arguments, self.where, self.fix = name, env, arguments, where, fix
        self.probe_arguments, self.headers = _probe_parts(source)


_PROBE_KEY = re.compile(r"probe|healthcheck", re.IGNORECASE)
_PROBE_COMMANDS = frozenset({"command", "commands", "exec", "tests", "test"})


def _probe_parts(value: Any, in_probe: bool = False, depth: int = 0) -> tuple[list[Any], list[tuple[str, Any]]]:
    """The command lines and HTTP headers of a container's health checks and probes, wherever they sit
    (ECS healthCheck.command, docker healthcheck.tests, Container Apps probes[].httpGet.httpHeaders, a
    container group's livenessProbe.exec.command and httpGet.httpHeaders, the classic providers' lists)."""
    arguments: list[Any] = []
    headers: list[tuple[str, Any]] = []
    if depth > 8:
        return arguments, headers
    if isinstance(value, Mapping):
        for name in list(value):
            item = _known_in(value, name)
            lowered = str(name).lower()
            probe = in_probe or bool(_PROBE_KEY.search(lowered))
            if probe and lowered in _PROBE_COMMANDS and is_sequence(item):
                arguments.extend(entry for entry in _items(item) if isinstance(entry, str))
            elif probe and lowered.endswith(("headers", "header")):
                headers.extend(_mapping_entries(item) if isinstance(item, Mapping) else _entries(item))
            else:
                more_arguments, more_headers = _probe_parts(item, probe, depth + 1)
                arguments += more_arguments
                headers += more_headers
    elif is_sequence(value):
        for item in _items(value):
            more_arguments, more_headers = _probe_parts(item, in_probe, depth + 1)
            arguments += more_arguments
            headers += more_headers
    return arguments, headers


def secret_headers(headers: Iterable[tuple[str, Any]]) -> list[str]:
    """The names of the HTTP headers a probe sends that carry a credential: Authorization, Cookie and the
    like, a secret-named one (X-Api-Key), or a value shaped like a credential."""
    found = []
    for name, value in headers:
        if value in (None, ""):
            continue
        if name.strip().lower() in _SECRET_HEADERS or looks_like_secret_name(name) or looks_like_secret_value(value):
            found.append(name)
    return found


_ECS_FIX = ("Store the value in Secrets Manager (or SSM Parameter Store) and list it under the container's "
            "`secrets` with `valueFrom`.")
_APP_FIX = ("Declare it in `configuration.secrets` (or as a Key Vault reference) and set the env entry's "
            "`secretRef` instead.")


def _containers(kind: str, props: Mapping[str, Any]) -> Iterator[_Container]:
    if kind in ECS_TASK_DEFINITIONS:
        definitions = _container_definitions(props)
        for definition in as_list(definitions):
            if isinstance(definition, Mapping):
                yield _Container(str(key(definition, "name") or "?"), _entries(key(definition, "environment")),
                                 _arguments(definition, "command", "entryPoint"),
                                 "in plain `environment`, visible to anyone who may describe the task definition",
                                 _ECS_FIX, definition)
    elif kind == DOCKER_CONTAINER:
        env = []
        for entry in as_list(get(props, "envs")):
            if isinstance(entry, str):
                variable, _, value = entry.partition("=")
                env.append((variable, value))
        yield _Container("", env, _arguments(props, "command", "entrypoints"),
                         "in `envs`, which `docker inspect` shows to anyone with access to the Docker API",
                         "Upload the value as a file (`uploads`, or a volume) and pass its path instead "
                         "(e.g. NAME_FILE where the image reads one).", props)
    elif kind in CONTAINER_APPS or kind in CLASSIC_CONTAINER_APPS:
        template = get(props, "template", default={})
        env_field, secret_keys = ("env", ("secretRef",)) if kind in CONTAINER_APPS else ("envs", ("secretName",))
        for container in [*as_list(key(template, "initContainers")), *as_list(key(template, "containers"))]:
            if isinstance(container, Mapping):
                yield _Container(str(key(container, "name") or "?"),
                                 _entries(key(container, env_field), secret_keys=secret_keys),
                                 _arguments(container, "command", "args"),
                                 "with a plain `value`, shown in the app's template", _APP_FIX, container)
    elif kind == CONTAINER_GROUP:
        for container in [*as_list(get(props, "initContainers")), *as_list(get(props, "containers"))]:
            if isinstance(container, Mapping):
                yield _Container(str(key(container, "name") or "?"),
                                 _entries(key(container, "environmentVariables")),
                                 _arguments(container, "command"),
                                 "with a plain `value`, which anyone who may read the container group sees",
                                 "Set it as `secureValue` (or mount a secret volume) instead.", container)
    elif kind == CLASSIC_CONTAINER_GROUP:
        for container in [*as_list(get(props, "initContainers")), *as_list(get(props, "containers"))]:
            if isinstance(container, Mapping):
                yield _Container(str(key(container, "name") or "?"),
                                 _mapping_entries(key(container, "environmentVariables")),
                                 _arguments(container, "commands"),
                                 "in `environmentVariables`, which anyone who may read the container group sees",
                                 "Move it to `secureEnvironmentVariables` instead.", container)
    elif kind in LAMBDA_FUNCTIONS:
        yield _Container("", _mapping_entries(get(props, "environment", "variables")), [],
                         "in `environment.variables`, which anyone who may read the function's configuration sees",
                         "Read it from Secrets Manager or SSM Parameter Store at start instead.")


def _container_definitions(props: Mapping[str, Any]) -> Any:
    """An ECS task definition's containerDefinitions (JSON text or a list); ValueError where the pack cannot
    read them: not JSON, or a key twice in any case ("Environment" and "environment"; ECS reads keys without
    regard to case, and which one it takes the pack cannot know)."""
    definitions = get(props, "containerDefinitions", default=[])
    if isinstance(definitions, str):
        return json.loads(definitions, object_pairs_hook=_without_duplicate_keys) if definitions.strip() else []
    duplicate = case_duplicate_key(definitions)
    if duplicate:
        raise ValueError(f"duplicate key {duplicate!r}")
    return definitions


def validate_container_env(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    if kind in ECS_TASK_DEFINITIONS:
        try:
            _container_definitions(props)
        except ValueError as error:
            report(f"{label(kind, name)}: its containerDefinitions cannot be read ({error}): a key named twice in "
                   "any case (\"Environment\" and \"environment\", \"Name\" and \"name\") may be read either "
                   "way, so the environment cannot be checked. Give each key once.", None)
            return
    for container in _containers(kind, props):
        owner = f"{label(kind, name)}: container '{container.name}'" if container.name else label(kind, name)
        for variable in secret_env_entries(container.env):
            report(f"{owner} has {variable} {container.where}. {container.fix}", None)
        found = secret_arguments(container.arguments)
        if found:
            report(f"{owner} passes a credential on its command line ({'; '.join(found)}), which anyone who may "
                   f"read the definition sees: pass it in a secret env variable or a file instead. {container.fix}",
                   None)
        found = secret_arguments(container.probe_arguments)
        if found:
            report(f"{owner} passes a credential in its health check's command ({'; '.join(found)}), which anyone "
                   "who may read the definition sees: read it from the environment (a secret variable) or a file "
                   f"in the check instead. {container.fix}", None)
        headers = secret_headers(container.headers)
        if headers:
            report(f"{owner} sends {', '.join(headers)} with a credential in a probe's HTTP headers, which anyone "
                   "who may read the definition sees: probe an endpoint that needs no credential (a health path "
                   "the server leaves open).", None)


# --- databases -------------------------------------------------------------------------------------

def _public_by_default(kind: str, props: Mapping[str, Any]) -> bool:
    """An RDS instance or Multi-AZ cluster that does not say publiclyAccessible false where nothing sends it
    for it: aws-native (Cloud Control) and CloudFormation templates send nothing when it is left out, nor does
    the AWS provider for a cluster (its instances' default is false). AWS's CreateDBInstance (and
    CreateDBCluster, RestoreDBInstanceFromDBSnapshot, CreateDBInstanceReadReplica) then decide
    (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html, PubliclyAccessible,
    "Default"): without DBSubnetGroupName, public if the default VPC has an internet gateway; with one, public
    if its subnets' VPC has an internet gateway. Not an aws-native instance of an Aurora cluster
    (dbClusterIdentifier), which older revisions of the same page documented as private by default, nor an
    Aurora cluster, which takes no publiclyAccessible (its instances do)."""
    if is_false(get(props, "publiclyAccessible")):
        return False
    if kind == NATIVE_DB_INSTANCE:
        return not get(props, "dbClusterIdentifier")
    if kind in (NATIVE_DB_CLUSTER, RDS_CLUSTER):
        return not str(get(props, "engine", default="")).strip().lower().startswith("aurora")
    return False


SHARED_SNAPSHOTS = {  # type -> the property that lists the accounts it is shared with
    "aws:rds/snapshot:Snapshot": "sharedAccounts",
    "aws:rds/clusterSnapshot:ClusterSnapshot": "sharedAccounts",
    "aws:rds/snapshotCopy:SnapshotCopy": "sharedAccounts",
    "aws:rds/clusterSnapshotCopy:ClusterSnapshotCopy": "sharedAccounts",
}


def validate_database_not_public(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    if kind in PUBLICLY_ACCESSIBLE_DATABASES and is_true(get(props, "publiclyAccessible")):
        report(f"{label(kind, name)} is publicly accessible: set publiclyAccessible to false and reach it from "
               "inside the VPC (the server's security group, a one-off task).", None)
    elif kind in PUBLICLY_ACCESSIBLE_DATABASES and _public_by_default(kind, props):
        report(f"{label(kind, name)} leaves publiclyAccessible {get(props, 'publiclyAccessible', default='unset')}: "
               "nothing sends false for it, and RDS makes it public when its subnets' VPC (or the default VPC) has "
               "an internet gateway. Set publiclyAccessible to false.", None)
    elif kind in SHARED_SNAPSHOTS:
        shared = [str(account) for account in as_list(get(props, SHARED_SNAPSHOTS[kind]))
                  if str(account).strip().lower() == "all"]
        if shared:
            report(f"{label(kind, name)} shares the database's snapshot with every AWS account "
                   f"({SHARED_SNAPSHOTS[kind]} {shared[0]}): anyone can restore a copy of the database. Name the "
                   "accounts that need it.", None)
    elif kind in AZURE_NATIVE_DATABASE_SERVERS:
        path = AZURE_NATIVE_DATABASE_SERVERS[kind]
        access = next((value for value in (get(props, *path), get(props, path[-1]), get(props, "properties", *path))
                       if value is not None), None)
        if str(access or "").strip().lower() != "disabled":
            where = ".".join(path)
            report(f"{label(kind, name)} has {where} "
                   f"{access or 'unset (public unless the server is in a delegated subnet)'}: "
                   "set it to \"Disabled\" and put the server in a delegated subnet with a private DNS zone (or reach "
                   "it through a private endpoint).", None)
    elif kind in AZURE_DATABASE_PUBLIC_FLAGS:
        for flag, default in AZURE_DATABASE_PUBLIC_FLAGS[kind]:
            value = next((item for item in (get(props, flag), get(props, "properties", flag)) if item is not None),
                         None)
            if default if value is None else not is_false(value):
                report(f"{label(kind, name)} has {flag} {value if value is not None else 'unset (public by default)'}: "
                       f"set it to false and reach the server through a private endpoint.", None)
    elif kind in CLASSIC_DATABASE_SERVERS:
        if not is_false(get(props, "publicNetworkAccessEnabled")):
            report(f"{label(kind, name)} has publicNetworkAccessEnabled "
                   f"{get(props, 'publicNetworkAccessEnabled', default='unset (the provider defaults to true)')}: "
                   "set it to false and reach the server from its VNet (a delegated subnet or a private "
                   "endpoint).", None)
    elif kind == CLASSIC_MYSQL_FLEXIBLE_SERVER:
        access = get(props, "publicNetworkAccess")
        if not get(props, "delegatedSubnetId") and str(access or "").strip().lower() != "disabled" and \
                not is_false(get(props, "publicNetworkAccessEnabled")):
            report(f"{label(kind, name)} has publicNetworkAccess {access or 'unset'} and no delegatedSubnetId: the "
                   "server has a public endpoint. Put it in a delegated subnet (delegatedSubnetId, privateDnsZoneId) "
                   "or set publicNetworkAccess to \"Disabled\" and reach it through a private endpoint.", None)


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


_PROTOCOL_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", -1: "all"}


def _protocol(value: Any) -> str:
    """A protocol as terraform-provider-aws's ProtocolForValue reads it (and EC2 after it): lower case;
    "-1" and "all" are every protocol; a name is kept; a number (strconv.Atoi: a sign and leading zeros
    allowed, "006", "+6", "-01") becomes its name (6 tcp, 17 udp, 1 icmp, 58 icmpv6, -1 all). The engine's
    wire format makes numbers floats (-1.0, 6.0)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        number = int(value) if float(value).is_integer() else None
        return _PROTOCOL_NAMES.get(number, str(number)) if number is not None else str(value)
    text = "" if value is None else str(value).strip().lower()
    if re.fullmatch(r"[+-]?[0-9]+", text):
        return _PROTOCOL_NAMES.get(int(text), str(int(text)))
    return text


def _ports_cover_database(protocol: Any, from_port: Any, to_port: Any) -> list[int]:
    """The database ports an AWS rule admits: all of them for every protocol (-1, all, or none given) and
    for a protocol spelled in a way the pack does not know, the ones between fromPort and toPort for TCP
    (all of them when the range is missing or unreadable), none for another protocol (udp, icmp, 17, 50)."""
    protocol_name = _protocol(protocol)
    if protocol_name in ("udp", "icmp", "icmpv6") or protocol_name.isdigit():
        return []
    if protocol_name != "tcp":  # all, -1, none given, or a spelling the pack cannot read
        return sorted(DATABASE_PORTS)
    try:
        low, high = sorted((int(float(from_port)), int(float(to_port))))
    except (TypeError, ValueError):
        return sorted(DATABASE_PORTS)
    return [port for port in sorted(DATABASE_PORTS) if low <= port <= high]


def _azure_ports_cover_database(protocol: Any, ranges: Iterable[Any]) -> list[int]:
    """The database ports an NSG rule admits ("5432", "5000-6000", "*"; unreadable means all); protocols
    other than Udp, Icmp, Esp and Ah (Tcp, *, Any, a spelling the pack does not know) can carry TCP."""
    if str(protocol or "").strip().lower() in ("udp", "icmp", "esp", "ah"):
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
        groups = [*as_list(get(rule, "sourceApplicationSecurityGroups")),  # azure-native: [{id}]
                  *as_list(get(rule, "sourceApplicationSecurityGroupIds"))]  # the classic provider: [id]
        return [] if [group for group in groups if group not in (None, "", {})] else ["(no source: any)"]
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
    elif kind in (NATIVE_SECURITY_GROUP, NATIVE_SECURITY_GROUP_INGRESS):  # CloudFormation's names
        for rule in (as_list(get(props, "securityGroupIngress")) if kind == NATIVE_SECURITY_GROUP else [props]):
            rules.append((get(rule, "ipProtocol"), get(rule, "fromPort"), get(rule, "toPort"),
                          [*as_list(get(rule, "cidrIp")), *as_list(get(rule, "cidrIpv6"))]))
    elif kind in LIGHTSAIL_PORTS:  # an instance's firewall: no cidrs means every address (Lightsail's default)
        for rule in as_list(get(props, *LIGHTSAIL_PORTS[kind])):
            sources = [*as_list(get(rule, "cidrs")), *as_list(get(rule, "ipv6Cidrs"))]
            aliases = [f"cidrListAliases {alias}" for alias in as_list(get(rule, "cidrListAliases"))]
            rules.append((get(rule, "protocol"), get(rule, "fromPort"), get(rule, "toPort"),
                          [*sources, *aliases] or ["0.0.0.0/0 (no cidrs: Lightsail's default)"]))
    return rules


def _prefix_list_cidrs(kind: str, props: Mapping[str, Any]) -> list[Any]:
    """The CIDRs a customer-managed prefix list (either provider) or one of its entries holds."""
    if kind == PREFIX_LIST_ENTRY:
        return as_list(get(props, "cidr"))
    if kind in PREFIX_LISTS:
        return [get(entry, "cidr") for entry in as_list(get(props, "entries"))]
    return []


def _is_database_firewall_rule(kind: str) -> bool:
    """A database server's inbound firewall rule (not SQL's outbound rules, which name FQDNs)."""
    return kind.startswith(DATABASE_FIREWALL_MODULES) and kind.endswith("FirewallRule") and "Outbound" not in kind


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
                   "securityGroups / sourceSecurityGroupId), or a private CIDR (RFC 1918, 100.64.0.0/10, a ULA). "
                   "A VPC's own IPv6 range is public address space the rule cannot tell from any other: reference "
                   "the security group instead.", None)
    public = public_sources(_prefix_list_cidrs(kind, props))
    if public:
        report(f"{label(kind, name)} holds {' and '.join(public)}, which every security group rule that references the "
               "prefix list admits (a database's rule on 5432 shows only the list's id): keep a prefix list to private "
               "CIDRs (RFC 1918, 100.64.0.0/10, a ULA), and reach a database from its clients' security group.", None)
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
        start = get(props, "startIpAddress", default=get(props, "startIPv6Address"))
        end = get(props, "endIpAddress", default=get(props, "endIPv6Address"))
        if _public_address_range(start, end):
            azure_services = " (Azure's \"allow all Azure services\": every tenant's resources)" \
                if str(start).strip() == str(end).strip() == "0.0.0.0" else ""
            report(f"{label(kind, name)} opens the database server to {start}-{end}{azure_services}: keep public "
                   "network access disabled and reach the server from its VNet; a firewall rule may only name "
                   "private addresses.", None)
    for where, port in _published_database_ports(kind, props):
        report(f"{label(kind, name)} publishes database port {_engines([port])} to the internet ({where}): keep "
               "the database unpublished and reach it from its private network (docker: a network, or "
               "127.0.0.1; Container Apps: internal ingress or ipSecurityRestrictions of private ranges; a "
               "container group: a private IP address).", None)


def _port(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _database_port(*values: Any) -> int | None:
    return next((port for value in values if (port := _port(value)) in DATABASE_PORTS), None)


def _only_private_sources(restrictions: Any) -> bool:
    """Container Apps ipSecurityRestrictions that admit private ranges only (Allow rules, each private)."""
    rules = [rule for rule in as_list(restrictions) if isinstance(rule, Mapping)]
    allowed = [rule for rule in rules if str(get(rule, "action", default="Allow")).strip().lower() == "allow"]
    return bool(allowed) and all(is_private_network(get(rule, "ipAddressRange")) for rule in allowed)


def _published_database_ports(kind: str, props: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(where, port) of each database port a container platform publishes beyond its private network: a docker
    container's port bound to every address (no `ip`, 0.0.0.0, ::) or a public one, a swarm service's
    published port, a Container App's external TCP ingress (and its additional port mappings) not limited to
    private ranges, a container group's public IP address."""
    found: list[tuple[str, int]] = []
    if kind == DOCKER_CONTAINER:
        for entry in as_list(get(props, "ports")):
            port = _database_port(get(entry, "internal"), get(entry, "external"))
            address = str(get(entry, "ip", default="0.0.0.0")).strip() or "0.0.0.0"
            if port and str(get(entry, "protocol", default="tcp")).strip().lower() != "udp" \
                    and not is_private_network(address):
                found.append((f"ports: {address}:{get(entry, 'external', default=port)}", port))
    elif kind == "docker:index/service:Service":
        for entry in as_list(get(props, "endpointSpec", "ports")):
            port = _database_port(get(entry, "targetPort"), get(entry, "publishedPort"))
            if port and str(get(entry, "protocol", default="tcp")).strip().lower() != "udp":
                found.append((f"endpointSpec.ports: {get(entry, 'publishedPort', default=port)}", port))
    elif kind in CONTAINER_APPS or kind in CLASSIC_CONTAINER_APPS:
        native = kind in CONTAINER_APPS
        ingress = get(props, "configuration", "ingress") if native else get(props, "ingress")
        if isinstance(ingress, Mapping) and not _only_private_sources(get(ingress, "ipSecurityRestrictions")):
            mappings = []
            if str(get(ingress, "transport", default="")).strip().lower() == "tcp":
                mappings.append(("ingress", ingress, "external" if native else "externalEnabled"))
            mappings += [(f"ingress.additionalPortMappings[{index}]", mapping, "external")
                         for index, mapping in enumerate(as_list(get(ingress, "additionalPortMappings")))]
            for where, mapping, external in mappings:
                port = _database_port(get(mapping, "targetPort"), get(mapping, "exposedPort"))
                if port and is_true(get(mapping, external)):
                    found.append((f"{where}, external TCP", port))
    elif kind == CONTAINER_GROUP:
        address = get(props, "ipAddress")
        if str(get(address, "type", default="")).strip().lower() == "public":
            for entry in as_list(get(address, "ports")):
                port = _database_port(get(entry, "port"))
                if port and str(get(entry, "protocol", default="tcp")).strip().lower() != "udp":
                    found.append(("ipAddress type Public", port))
    elif kind == CLASSIC_CONTAINER_GROUP:
        if str(get(props, "ipAddressType", default="Public")).strip().lower() == "public":
            entries = as_list(get(props, "exposedPorts")) or [
                port for container in as_list(get(props, "containers")) for port in as_list(get(container, "ports"))]
            for entry in entries:
                port = _database_port(get(entry, "port"))
                if port and str(get(entry, "protocol", default="TCP")).strip().lower() != "udp":
                    found.append(("ipAddressType Public", port))
    return found


# --- storage -----------------------------------------------------------------------------------------

_NATIVE_INSTANCE_INHERITS_ENCRYPTION = ("dbClusterIdentifier", "sourceDbInstanceIdentifier", "sourceDbiResourceId",
                                        "dbSnapshotIdentifier", "sourceDbInstanceAutomatedBackupsArn",
                                        "dbClusterSnapshotIdentifier")
_NATIVE_CLUSTER_INHERITS_ENCRYPTION = ("snapshotIdentifier", "sourceDbClusterIdentifier", "sourceDbClusterResourceId")


def _storage_unencrypted(kind: str, props: Mapping[str, Any]) -> bool:
    """An RDS instance or cluster whose storage is not encrypted. aws-native (CloudFormation) inherits the
    setting from the cluster, snapshot or source it is made from (and refuses it set): those are judged
    only when they say false."""
    encrypted = get(props, "storageEncrypted")
    if is_true(encrypted):
        return False
    inherits = _NATIVE_INSTANCE_INHERITS_ENCRYPTION if kind == NATIVE_DB_INSTANCE else \
        _NATIVE_CLUSTER_INHERITS_ENCRYPTION if kind == NATIVE_DB_CLUSTER else ()
    if any(get(props, prop) for prop in inherits):
        return is_false(encrypted)
    return True


def validate_storage_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    if kind in (RDS_INSTANCE, RDS_CLUSTER, NATIVE_DB_INSTANCE, NATIVE_DB_CLUSTER):
        if _storage_unencrypted(kind, props):
            report(f"{label(kind, name)} has unencrypted storage: set storageEncrypted to true (with kmsKeyId for "
                   "your own key). RDS cannot encrypt an existing instance in place: restore an encrypted copy of a "
                   "snapshot.", None)
    elif kind in S3_ENCRYPTION:
        if not _s3_rules_encrypt(get(props, "rules")):
            report(f"{label(kind, name)} sets no default encryption: give it a rule with "
                   "applyServerSideEncryptionByDefault.sseAlgorithm AES256 or aws:kms.", None)
    elif kind in S3_BUCKETS:
        inline = get(props, "serverSideEncryptionConfiguration")
        if inline is not None and not _s3_rules_encrypt(get(inline, "rule", default=get(inline, "rules"))):
            report(f"{label(kind, name)} has an inline serverSideEncryptionConfiguration without a default "
                   "algorithm: use AES256 or aws:kms (or a BucketServerSideEncryptionConfiguration).", None)
    elif kind == NATIVE_BUCKET:
        encryption = get(props, "bucketEncryption")
        if encryption is not None:
            rules = as_list(get(encryption, "serverSideEncryptionConfiguration"))
            algorithms = [get(rule, "serverSideEncryptionByDefault", "sseAlgorithm") for rule in rules]
            if not algorithms or not all(str(algorithm) in STRONG_S3_ALGORITHMS for algorithm in algorithms):
                report(f"{label(kind, name)} has a bucketEncryption without a default algorithm: give each rule "
                       "serverSideEncryptionByDefault.sseAlgorithm AES256 or aws:kms.", None)
    elif kind == FLEXIBLE_SERVER:
        encryption = get(props, "dataEncryption")
        if encryption is not None:
            encryption_type = str(get(encryption, "type", default="")).strip().lower()
            key_uri = get(encryption, "primaryKeyURI", default=get(encryption, "primaryKeyUri"))
            if encryption_type not in ("", "systemassigned", "systemmanaged", "azurekeyvault") or (
                    encryption_type == "azurekeyvault"
                    and not (key_uri and get(encryption, "primaryUserAssignedIdentityId"))):
                report(f"{label(kind, name)} has dataEncryption {dict(encryption)}: leave it out (service-managed "
                       "keys) or use type \"AzureKeyVault\" with primaryKeyURI and primaryUserAssignedIdentityId.",
                       None)
    elif kind == STORAGE_ACCOUNT:
        encryption = get(props, "encryption")
        if encryption is not None:
            disabled = [service for service, setting in (get(encryption, "services", default={}) or {}).items()
                        if is_false(get(setting, "enabled"))]
            key_source = get(encryption, "keySource")
            source = str(key_source or "").strip().lower()  # Azure reads the enum without regard to case
            if disabled or source not in ("", "microsoft.storage", "microsoft.keyvault") or (
                    source == "microsoft.keyvault" and not get(encryption, "keyVaultProperties", "keyName")):
                report(f"{label(kind, name)} weakens its encryption "
                       f"({', '.join(disabled) or 'keySource ' + str(key_source)}): "
                       "leave `encryption` out (Microsoft-managed keys) or keep every service enabled, with keySource "
                       "Microsoft.Storage or Microsoft.Keyvault plus keyVaultProperties.", None)


def _s3_rules_encrypt(rules: Any) -> bool:
    algorithms = [get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in as_list(rules)]
    return bool(algorithms) and all(str(algorithm) in STRONG_S3_ALGORITHMS for algorithm in algorithms)


def public_acl(acl: Any) -> bool:
    """A canned ACL that grants anyone (or any AWS account) access, however it is spelled: public-read,
    public-read-write, authenticated-read (AWS), PublicRead, PublicReadWrite, AuthenticatedRead
    (CloudFormation), public, public-write (MinIO)."""
    normalized = re.sub(r"[^a-z]", "", str(acl or "").lower())
    return normalized.startswith(("public", "authenticated"))


def _public_grants(value: Any, depth: int = 0) -> list[str]:
    """The public groups (AllUsers, AuthenticatedUsers) an ACL grants anything, wherever the grant stands
    (a BucketAcl's accessControlPolicy.grants, a Bucket's or ObjectCopy's `grants`, a `grantRead` header
    value): any string naming the group's URI."""
    found: list[str] = []
    if depth > 6:
        return found
    if isinstance(value, str):  # not a policy document: a Deny on s3:x-amz-grant-read names the groups too
        lowered = value.lower()
        if not _looks_like_document(value):
            found += [group.rsplit("/", 1)[-1] for group in PUBLIC_ACL_GROUPS if group in lowered]
    elif isinstance(value, Mapping):
        if key(value, "Statement") is not None:
            return found
        for name in list(value):
            found += _public_grants(_known_in(value, name), depth + 1)
    elif is_sequence(value):
        for item in _items(value):
            found += _public_grants(item, depth + 1)
    return sorted(set(found))


def _storage_module(kind: str) -> bool:
    """Object storage: S3 (either provider) and MinIO, whose bucket policies `storage-not-public` judges."""
    return kind.startswith(("aws:s3/", "aws:s3control/", "aws-native:s3:", "aws-native:s3express:", "minio:"))


def validate_storage_not_public(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    if kind in S3_PUBLIC_ACCESS_BLOCKS:  # a bucket's, or the account's (the provider's defaults are false)
        off = [flag for flag in flags if not is_true(get(props, flag))]
        if off:
            report(f"{label(kind, name)} leaves {', '.join(off)} off: set all four flags to true.", None)
    elif kind == NATIVE_BUCKET:
        block = get(props, "publicAccessBlockConfiguration")
        off = [flag for flag in flags if not is_true(get(block, flag))] if block is not None else []
        if off:
            report(f"{label(kind, name)} leaves publicAccessBlockConfiguration {', '.join(off)} off: set all four "
                   "flags to true.", None)
    elif _storage_module(kind):  # an access point's block (each flag defaults to true)
        block = get(props, "publicAccessBlockConfiguration")
        off = [flag for flag in flags if is_false(get(block, flag))] if isinstance(block, Mapping) else []
        if off:
            report(f"{label(kind, name)} turns publicAccessBlockConfiguration {', '.join(off)} off: leave all four "
                   "flags on.", None)
    if _storage_module(kind):  # canned ACLs and grants of buckets, objects and copies (S3 either provider, MinIO)
        for prop in ("acl", "accessControl"):
            acl = get(props, prop)
            if public_acl(acl):
                report(f"{label(kind, name)} grants the canned ACL {acl} ({prop}): use \"private\" (or no ACL with "
                       "BucketOwnerEnforced ownership) and share objects through presigned URLs or the server.", None)
        grantees = _public_grants(props)
        if grantees:
            report(f"{label(kind, name)} grants {', '.join(grantees)} access in its ACL: grant only the bucket owner "
                   "and share objects through presigned URLs or the server.", None)
    if kind == "aws:ec2/amiLaunchPermission:AmiLaunchPermission" and \
            str(get(props, "group", default="")).strip().lower() == "all":
        report(f"{label(kind, name)} makes the image public (group all): any AWS account can launch it and read "
               "its disks. Name the accounts, the organization or the OU that need it.", None)
    if kind == STORAGE_ACCOUNT:
        if not is_false(get(props, "allowBlobPublicAccess")):
            report(f"{label(kind, name)} does not forbid public blob access: set allowBlobPublicAccess to false.", None)
    elif kind == CLASSIC_STORAGE_ACCOUNT:
        if not is_false(get(props, "allowNestedItemsToBePublic")):
            report(f"{label(kind, name)} does not forbid public blob access: set allowNestedItemsToBePublic to false "
                   "(the provider's default is true).", None)
    elif kind == BLOB_CONTAINER:
        access = get(props, "publicAccess")
        if str(access or "none").strip().lower() != "none":
            report(f"{label(kind, name)} has publicAccess {access}: set it to \"None\"; clients go through the "
                   "server, which reads the container with its managed identity.", None)
    elif kind == CLASSIC_STORAGE_CONTAINER:
        access = get(props, "containerAccessType")
        if str(access or "private").strip().lower() != "private":
            report(f"{label(kind, name)} has containerAccessType {access}: set it to \"private\"; clients go through "
                   "the server.", None)
    if _storage_module(kind):
        for where, policy_document in _policy_documents(kind, props):
            if policy_document is None:
                report(f"{label(kind, name)}: {where} {UNREADABLE_POLICY}", None)
                continue
            for problem in open_principal_problems(policy_document):
                report(f"{label(kind, name)}: {where} {problem}: name the principals that need the bucket (the "
                       "server's role or user), or add a condition on aws:PrincipalAccount / aws:PrincipalOrgID; a "
                       "TLS-only Deny beside it does not make an Allow for \"*\" private.", None)


def _bucket_name(value: Any) -> str:
    """The bucket a bucket policy is for (its `bucket`, a name; an ARN read as its name)."""
    text = str(value or "").strip()
    return text.split(":::", 1)[1].split("/", 1)[0] if text.lower().startswith("arn:") and ":::" in text else text


def _covers_objects_of(resource: Any, bucket: str) -> bool:
    """Whether a Resource pattern covers every object of `bucket` (any bucket's when the bucket is not known)."""
    text = str(resource).strip()
    if not bucket:
        return text == "*" or text.endswith("/*")
    normalized = re.sub(r"^arn:[^:*?]+:", "arn:aws:", text, flags=re.IGNORECASE)
    return bool(_iam_pattern(normalized).fullmatch(f"arn:aws:s3:::{bucket}/any/key")) and \
        bool(_iam_pattern(normalized).fullmatch(f"arn:aws:s3:::{bucket}/k"))


def denies_insecure_transport(policy_document: Mapping[str, Any], bucket: str = "") -> bool:
    """A bucket policy statement that denies everyone every S3 action on the bucket's objects (`bucket`'s,
    when known) when `aws:SecureTransport` is false, and only on that condition: another key beside it
    (aws:PrincipalAccount, ...) or a NotPrincipal would leave everyone else's plain requests through."""
    for statement in statements(policy_document):
        if str(key(statement, "Effect")).strip().lower() != "deny" or key(statement, "NotPrincipal") is not None \
                or key(statement, "NotResource") is not None or key(statement, "NotAction") is not None:
            continue
        principal = key(statement, "Principal")
        if not (principal == "*" or "*" in [str(value).strip() for value in as_list(key(principal, "AWS"))]):
            continue
        if not {"s3:*", "*"} & {str(action).strip().lower() for action in as_list(key(statement, "Action"))}:
            continue
        if not any(_covers_objects_of(resource, bucket) for resource in as_list(key(statement, "Resource"))):
            continue
        condition = key(statement, "Condition")
        if not isinstance(condition, Mapping) or len(condition) != 1:
            continue
        operator, block = next(iter(condition.items()))
        if str(operator).strip().lower() != "bool" or not isinstance(block, Mapping) or len(block) != 1:
            continue
        condition_key, values = next(iter(block.items()))
        if str(condition_key).strip().lower() == "aws:securetransport" and as_list(values) and \
                all(str(value).strip().lower() == "false" for value in as_list(values)):
            return True
    return False


def validate_storage_tls_only(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    tls_fix = ("add a statement {\"Effect\": \"Deny\", \"Principal\": \"*\", \"Action\": \"s3:*\", \"Resource\": "
               "[bucket ARN, bucket ARN + \"/*\"], \"Condition\": {\"Bool\": {\"aws:SecureTransport\": \"false\"}}}")
    if kind in S3_BUCKET_POLICIES:
        if not denies_insecure_transport(document(get(props, S3_BUCKET_POLICIES[kind]))):
            report(f"{label(kind, name)} lets requests without TLS through (a bucket has only this one policy): "
                   f"{tls_fix}, with no other condition.", None)
    elif kind in S3_BUCKETS:
        inline = get(props, "policy")
        if inline and not denies_insecure_transport(document(inline), _bucket_name(get(props, "bucket"))):
            report(f"{label(kind, name)} has an inline policy that lets requests without TLS through: {tls_fix}.", None)
    elif kind == STORAGE_ACCOUNT:
        problems = []
        if not is_true(get(props, "enableHttpsTrafficOnly")):
            problems.append("set enableHttpsTrafficOnly to true")
        if str(get(props, "minimumTlsVersion")) not in STRONG_TLS_VERSIONS:
            problems.append(f"set minimumTlsVersion to \"TLS1_2\" (now {get(props, 'minimumTlsVersion') or 'unset'})")
        if problems:
            report(f"{label(kind, name)} accepts plain HTTP or old TLS: {'; '.join(problems)}.", None)
    elif kind == CLASSIC_STORAGE_ACCOUNT:  # the classic provider's defaults are HTTPS only and TLS 1.2
        problems = [f"set {prop} to true" for prop in ("httpsTrafficOnlyEnabled", "enableHttpsTrafficOnly")
                    if is_false(get(props, prop))]
        tls = get(props, "minTlsVersion")
        if tls is not None and str(tls) not in STRONG_TLS_VERSIONS:
            problems.append(f"set minTlsVersion to \"TLS1_2\" (now {tls})")
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


_GUID_PATTERN = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"

IAM_CONFIG_SCHEMA = PolicyConfigSchema(properties={
    "allowedActionsOnAnyResource": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[A-Za-z0-9-]+:[A-Za-z0-9]+$"},
        "default": [],
        "description": "IAM actions (exact names, no wildcards) that may use Resource \"*\" besides the ones AWS "
                       "accepts only there: the metadata reads of the pack's list (ec2:DescribeInstances, "
                       "ecs:ListClusters, iam:ListRoles, ...; not every Describe or List: lambda:ListFunctions "
                       "returns secrets) and a few telemetry ones (cloudwatch:GetMetricData, xray:PutTraceSegments, "
                       "tag:GetResources, ...). Nothing that runs code, mints or reads credentials or secrets, or "
                       "changes a resource may be listed.",
    },
    "allowedPermissionSets": {
        "type": "array",
        "items": {"type": "string", "pattern": "^arn:[a-z-]+:sso:::permissionSet/[A-Za-z0-9-]+/ps-[A-Za-z0-9]+$"},
        "default": [],
        "description": "IAM Identity Center permission sets (exact ARNs) an account assignment may hand out. Without "
                       "it every account assignment is refused: an assignment of an existing permission set "
                       "(AdministratorAccess) makes anyone an administrator, and the pack cannot read what a "
                       "permission set it does not create holds.",
    },
    "allowedIdentityStoreGroups": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[A-Za-z0-9-]+$"},
        "default": [],
        "description": "Identity store group ids a group membership may add users to. Without it every membership "
                       "is refused: a group's id says nothing of the permission sets assigned to it.",
    },
    "allowedDelegatedAdministratorServices": {
        "type": "array",
        "items": {"type": "string", "pattern": "^[a-z0-9.-]+\\.amazonaws\\.com$"},
        "default": [],
        "description": "Service principals (guardduty.amazonaws.com) for which an organization may make a member "
                       "account a delegated administrator. Without it every delegation is refused.",
    },
    "allowedDirectoryRoles": {
        "type": "array",
        "items": {"type": "string", "pattern": _GUID_PATTERN},
        "default": [],
        "description": "Entra ID directory roles (template or object ids) a directory role assignment, eligibility or "
                       "membership (the azuread provider) may grant. Without it every one is refused: a role's id "
                       "(an activated role's object id, a custom role's) says nothing of what it holds. The roles "
                       "Microsoft labels privileged (Global Administrator, Privileged Role Administrator, ...) are "
                       "refused even when listed.",
    },
    "allowedEntraGroups": {
        "type": "array",
        "items": {"type": "string", "pattern": _GUID_PATTERN},
        "default": [],
        "description": "Entra ID group object ids a group membership or a PIM group assignment or eligibility (the "
                       "azuread provider) may add members or owners to. Without it every one is refused: a group's id "
                       "says nothing of the directory roles, Azure roles or app roles it holds.",
    },
})

IDENTITY_CENTER_GRANTS = {  # type -> (the property naming what it grants, the configuration that may allow it)
    "aws:ssoadmin/accountAssignment:AccountAssignment": ("permissionSetArn", "allowedPermissionSets"),
    "aws-native:sso:Assignment": ("permissionSetArn", "allowedPermissionSets"),
    "aws:identitystore/groupMembership:GroupMembership": ("groupId", "allowedIdentityStoreGroups"),
    "aws-native:identitystore:GroupMembership": ("groupId", "allowedIdentityStoreGroups"),
    "aws:organizations/delegatedAdministrator:DelegatedAdministrator": (
        "servicePrincipal", "allowedDelegatedAdministratorServices"),
}
"""Resources that grant people or accounts what a permission set, a group or a delegation holds, which the
resource itself does not show: refused unless the configuration names what they grant."""
ENTRA_GRANTS = {  # azuread type -> (the properties naming what it grants, the configuration that may allow it)
    "azuread:index/directoryRoleAssignment:DirectoryRoleAssignment": (("roleId",), "allowedDirectoryRoles"),
    "azuread:index/directoryRoleEligibilityScheduleRequest:DirectoryRoleEligibilityScheduleRequest": (
        ("roleDefinitionId",), "allowedDirectoryRoles"),
    "azuread:index/directoryRoleMember:DirectoryRoleMember": (("roleObjectId",), "allowedDirectoryRoles"),
    "azuread:index/administrativeUnitRoleMember:AdministrativeUnitRoleMember": (
        ("roleObjectId",), "allowedDirectoryRoles"),
    "azuread:index/groupMember:GroupMember": (("groupObjectId",), "allowedEntraGroups"),
    "azuread:index/privilegedAccessGroupAssignmentSchedule:PrivilegedAccessGroupAssignmentSchedule": (
        ("groupId",), "allowedEntraGroups"),
    "azuread:index/privilegedAccessGroupEligibilitySchedule:PrivilegedAccessGroupEligibilitySchedule": (
        ("groupId",), "allowedEntraGroups"),
}
"""The azuread provider's grants of a directory role, or of a group's membership or ownership (directly or through
PIM), whose id says nothing of what it holds: refused unless the configuration lists it (allowedDirectoryRoles,
allowedEntraGroups), as IDENTITY_CENTER_GRANTS are. A privileged directory role is refused even when listed."""
ENTRA_MODULE = "azuread:"

ENTRA_PRIVILEGED_ROLES = {
    # https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference ("privileged")
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
    "7be44c8a-adaf-4e2a-84d6-ab2649e08a13": "Privileged Authentication Administrator",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": "Application Administrator",
    "cf1c38e5-3621-4004-a7cb-879624dced7c": "Application Developer",
    "158c047a-c907-4556-b7ef-446551a6b5f7": "Cloud Application Administrator",
    "c4e39bd9-1100-46d3-8c65-fb160da0071f": "Authentication Administrator",
    "25a516ed-2fa0-40ea-a2d0-12923a21473a": "Authentication Extensibility Administrator",
    "ecb2c6bf-0ab6-418e-bd87-7986f8d63bbe": "Attribute Provisioning Administrator",
    "422218e4-db15-4ef9-bbe0-8afb41546d79": "Attribute Provisioning Reader",
    "aaf43236-0c0d-4d5f-883a-6955382ac081": "B2C IEF Keyset Administrator",
    "7698a772-787b-4ac8-901f-60d6b08affd2": "Cloud Device Administrator",
    "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9": "Conditional Access Administrator",
    "9360feb5-f418-4baa-8175-e2a00bac4301": "Directory Writers",
    "8329153b-31d0-4727-b945-745eb3bc5f31": "Domain Name Administrator",
    "be2f45a1-457d-42af-a067-6ec1fa63bc45": "External Identity Provider Administrator",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451": "Global Reader",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8": "Helpdesk Administrator",
    "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2": "Hybrid Identity Administrator",
    "3a2c62db-5318-420d-8d74-23affee5d9d5": "Intune Administrator",
    "59d46f88-662b-457b-bceb-5c3809e5908f": "Lifecycle Workflows Administrator",
    "4ba39ca4-527c-499a-b93d-d9b492c50246": "Partner Tier1 Support",
    "e00e864a-17c5-4a4b-9c06-f5b95a8d5bd8": "Partner Tier2 Support",
    "966707d0-3269-4727-9be2-8c3a10f19b9d": "Password Administrator",
    "194ae4cb-b126-40b2-bd5b-6091b380977d": "Security Administrator",
    "5f2222b1-57c3-48ba-8ad5-d4759f1fde6f": "Security Operator",
    "5d6b6bb7-de71-4623-b4af-96380a352509": "Security Reader",
    "fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator",
    "d29b2b05-8046-44ba-8758-1e26182fcf32": "Directory Synchronization Accounts",
}
"""The Entra ID directory roles Microsoft labels privileged (their template ids): never granted by the stack, whatever
the configuration lists."""
GRAPH_PRIVILEGED_APP_ROLES = {
    # Microsoft Graph application permissions (its app roles' ids, the same in every tenant) that take over the
    # directory or its identities: assign roles or app roles, write applications' credentials, groups, users'
    # authentication methods and passwords, Conditional Access, PIM, domains and federation
    "9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8": "RoleManagement.ReadWrite.Directory",
    "06b708a9-e830-4db3-a914-8e69da51d44f": "AppRoleAssignment.ReadWrite.All",
    "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9": "Application.ReadWrite.All",
    "dd199f4a-f148-40a4-a2ec-f0069cc799ec": "RoleAssignmentSchedule.ReadWrite.Directory",
    "fee28b28-e1f3-4841-818e-2704dc62245f": "RoleEligibilitySchedule.ReadWrite.Directory",
    "41202f2c-f7ab-45be-b001-85c9728b9d69": "PrivilegedAssignmentSchedule.ReadWrite.AzureADGroup",
    "618b6020-bca8-4de6-99f6-ef445fa4d857": "PrivilegedEligibilitySchedule.ReadWrite.AzureADGroup",
    "2f6817f8-7b12-4f0f-bc18-eeaf60705a9e": "PrivilegedAccess.ReadWrite.AzureADGroup",
    "7e05723c-0bb0-42da-be95-ae9f08a6e53c": "Domain.ReadWrite.All",
    "ab43b826-2c7a-4aff-9ecd-d0629d0ca6a9": "ADSynchronization.ReadWrite.All",
    "9acd699f-1e81-4958-b001-93b1d2506e19": "EntitlementManagement.ReadWrite.All",
    "292d869f-3427-49a8-9dab-8c70152b74e9": "Organization.ReadWrite.All",
    "a402ca1c-2696-4531-972d-6e5ee4aa11ea": "Policy.ReadWrite.PermissionGrant",
    "b38dcc4d-a239-4ed6-aa84-6c65b284f97c": "RoleManagementPolicy.ReadWrite.AzureADGroup",
    "31e08e0a-d3f7-4ca2-ac39-7343fb83e8ad": "RoleManagementPolicy.ReadWrite.Directory",
    "29c18626-4985-4dcd-85c0-193eef327366": "Policy.ReadWrite.AuthenticationMethod",
    "8e8e4742-1d95-4f68-9d56-6ee75648c72a": "DelegatedPermissionGrant.ReadWrite.All",
    "01c0a623-fc9b-48e9-b794-0756f8e8f067": "Policy.ReadWrite.ConditionalAccess",
    "9241abd9-d0e6-425a-bd4f-47ba86e767a4": "DeviceManagementConfiguration.ReadWrite.All",
    "e330c4f0-4170-414e-a55a-2f022ec2b57b": "DeviceManagementRBAC.ReadWrite.All",
    "19dbc75e-c2e2-444c-a770-ec69d8559fc7": "Directory.ReadWrite.All",
    "62a82d76-70ea-41e2-9197-370581804d09": "Group.ReadWrite.All",
    "dbaae8cf-10b5-4b86-a4a1-f871c94c6695": "GroupMember.ReadWrite.All",
    "50483e42-d915-4231-9639-7fdb7fd190e5": "UserAuthenticationMethod.ReadWrite.All",
    "56760768-b641-451f-8906-e1b8ab31bca7": "User-PasswordProfile.ReadWrite.All",
    "5eb59dd3-1da2-4329-8733-9dabdc435916": "AdministrativeUnit.ReadWrite.All",
    "741f803b-c850-494e-b5df-cde7c675a1ca": "User.ReadWrite.All",
    "89c8469c-83ad-45f7-8ff2-6e3d4285709e": "ServicePrincipalEndpoint.ReadWrite.All",
}
"""An app role assignment (azuread appRoleAssignment) of one of these makes the principal a directory administrator
in all but name; refused whatever the configuration says. A delegated permission grant is judged by the same names
(with Directory.AccessAsUser.All), its claimValues."""
GRAPH_PRIVILEGED_SCOPES = frozenset(name.lower() for name in (*GRAPH_PRIVILEGED_APP_ROLES.values(),
                                                              "Directory.AccessAsUser.All"))


def _verb(action: str) -> str:
    return action.partition(":")[2].lower()


def _read_only(action: str) -> bool:
    """An action (or pattern) that can only read: its verb spelled out up to a read verb before any
    wildcard (Get*, ListRoles, Describe*; not *, G*, *Get)."""
    literal = re.split(r"[*?]", _verb(action), maxsplit=1)[0]
    return literal.startswith(_READ_VERBS)


def allowed_actions_on_any_resource(config: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The actions that may use Resource "*" (lower case): the built-in ones and the configured extras,
    which may only be METADATA_ACTIONS or CONFIGURABLE_NON_LISTING_ACTIONS."""
    extra = _checked_config(config, "iam-least-privilege", IAM_CONFIG_SCHEMA).get("allowedActionsOnAnyResource", [])
    if not is_sequence(extra) or not all(isinstance(action, str) for action in extra):
        raise PolicyConfigError("iam-least-privilege: allowedActionsOnAnyResource must be a list of action names")
    allowed = set(ACTIONS_ONLY_ON_ANY_RESOURCE)
    for action in extra:
        name = action.strip()
        if not _CONFIGURABLE_ACTION.fullmatch(name):
            raise PolicyConfigError(f"iam-least-privilege: allowedActionsOnAnyResource names {action!r}: give exact "
                                    "action names (service:Action), no wildcards")
        lowered = name.lower()
        if lowered not in METADATA_ACTIONS and lowered not in CONFIGURABLE_NON_LISTING_ACTIONS:
            raise PolicyConfigError(
                f"iam-least-privilege: allowedActionsOnAnyResource may not name {name}: on every resource it could "
                "run code, open a session or a database login, mint or read credentials or secrets (a Describe or "
                "List action may: lambda:ListFunctions returns the functions' environment), or change resources. "
                "Only the metadata reads of the pack's list (policy/policies.py, METADATA_ACTIONS: "
                "ec2:DescribeInstances, ecs:ListClusters, ...) and "
                + ", ".join(sorted(CONFIGURABLE_NON_LISTING_ACTIONS))
                + " may be listed; scope the others to the ARNs they need.")
        if _escalates(lowered) or _executes_code(lowered):
            raise PolicyConfigError(f"iam-least-privilege: allowedActionsOnAnyResource may not name {name}")
        allowed.add(lowered)
    return frozenset(allowed)


def identity_center_allowances(config: Mapping[str, Any] | None = None) -> dict[str, frozenset[str]]:
    """The permission sets, identity store groups, delegated administrator services, Entra ID directory roles and
    groups the configuration allows (each exact; the CLI's schema checks their shape, this that they are lists of
    names)."""
    config = _checked_config(config, "iam-least-privilege", IAM_CONFIG_SCHEMA)
    allowances = {}
    for setting in ("allowedPermissionSets", "allowedIdentityStoreGroups", "allowedDelegatedAdministratorServices",
                    "allowedDirectoryRoles", "allowedEntraGroups"):
        values = config.get(setting, [])
        if not is_sequence(values) or not all(isinstance(value, str) and value.strip() for value in values):
            raise PolicyConfigError(f"iam-least-privilege: {setting} must be a list of exact names")
        if any(_has_wildcard(value) for value in values):
            raise PolicyConfigError(f"iam-least-privilege: {setting} takes exact names, no wildcards")
        allowances[setting] = frozenset(value.strip().lower() for value in values)
    return allowances


def _inline_documents(kind: str, props: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(where, document as given) of each identity policy a resource carries."""
    if kind in IAM_POLICY_DOCUMENTS:
        prop = IAM_POLICY_DOCUMENTS[kind]
        return [(prop, get(props, prop))]
    if kind in IAM_INLINE_POLICY_LISTS:  # a role's trust policy grants no actions: trust_problems judges it
        prop, document_prop, name_prop = IAM_INLINE_POLICY_LISTS[kind]
        return [(f"{prop} '{get(inline, name_prop, default=index)}'", get(inline, document_prop))
                for index, inline in enumerate(as_list(get(props, prop)))]
    return []


def _iam_pattern(pattern: str) -> re.Pattern[str]:
    """An IAM wildcard pattern (`*` any characters, `?` one) as a case-insensitive regular expression."""
    return re.compile("".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern),
                      re.IGNORECASE | re.DOTALL)


def _matches_any(pattern: str, names: Iterable[str]) -> bool:
    compiled = _iam_pattern(pattern)
    return any(compiled.fullmatch(name) for name in names)


def _escalates(action: str) -> bool:
    """Whether an action (or a pattern) can grant permissions, credentials or public access: one of
    ESCALATION_ACTIONS, or anything but a read in an ADMINISTRATION_SERVICES service."""
    service = action.partition(":")[0].strip().lower()
    granting = not _has_wildcard(action) and bool(GRANTING_ACTION_NAME.fullmatch(_verb(action.strip())))
    return _matches_any(action, ESCALATION_ACTIONS) or granting or \
        (service in ADMINISTRATION_SERVICES and not _read_only(action))


def _executes_code(action: str) -> bool:
    return _matches_any(action, CODE_EXECUTION_ACTIONS)


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def _allows(statement: Mapping[str, Any]) -> bool:
    """Every statement but a Deny allows (an Effect AWS would refuse is judged as Allow)."""
    return str(key(statement, "Effect")).strip().lower() != "deny"


_NAME_FIRST_SERVICES = frozenset({"s3", "sns", "sqs", "codecommit", "execute-api"})
"""Services whose ARNs begin with the resource's name (arn:aws:s3:::bucket/key), not with its type."""
_SECRETS_MANAGER_SUFFIX = re.compile(r"[^*?]*[^*?/:-]-\?{6}")
"""secret:<name>-??????: the six random characters Secrets Manager appends to a secret's name."""


def _spelled_out(name: str, service: str) -> bool:
    """A resource name that says what it reaches: no wildcard, or one only after the name spelled out up
    to a `/` or `:` (function:mlflow-gc:*, task/mlflow/*, parameter/mlflow/*, bucket/prefix/*), or Secrets
    Manager's random suffix (secret:mlflow-db-??????). Not i-*, db-*, a*, mlflow-*."""
    if not _has_wildcard(name):
        return True
    if service == "secretsmanager" and _SECRETS_MANAGER_SUFFIX.fullmatch(name):
        return True
    literal = re.split(r"[*?]", name, maxsplit=1)[0]
    return bool(re.search(r"[^/:][/:]$", literal))


def resource_reach(resource: Any, names: bool = False) -> str | None:
    """How far an IAM Resource pattern reaches: "any" (any account's resources: "*", "arn:aws:iam::*:*",
    "arn:aws:s3:::*", "arn:*", any ARN whose account is a wildcard, whatever names it:
    "arn:aws:iam::*:role/OrganizationAccountAccessRole", and any wildcard in an S3 bucket's name:
    "arn:aws:s3:::a*", bucket names being global), "account" (every resource of a kind in one account:
    "arn:aws:iam::123456789012:role/*", "arn:aws:ecs:eu-west-1:123456789012:*"; for iam, sts, kms and rds-db
    any wildcard in the name: role/A*, role/mlflow-*, key/1*, dbuser:db-*/*; for secrets and SSM parameters
    a wildcard before the name is spelled out, NAMED_RESOURCE_TYPES: secret:a*, parameter/a*; with `names`,
    as for actions that run code, the same on every resource: instance/i-*, function:mlflow-*), or None
    (named resources, or names under a literal prefix: "arn:aws:s3:::bucket/*",
    "...:log-group:/mlflow/aws:*", "...:function:mlflow-*" without `names`)."""
    text = str(resource).strip()
    if not _has_wildcard(text):
        return None
    parts = text.split(":", 5)
    if parts[0].lower() != "arn" or len(parts) < 6:  # "*", "arn:*", "arn:aws:iam::*" (a trailing * spans colons)
        return "any"
    _, partition, service, _region, account, resource_id = parts
    if _has_wildcard(partition) or _has_wildcard(service) or _has_wildcard(account):
        return "any"
    service = service.lower()
    if service == "autoscaling":  # autoScalingGroup:<uuid>:autoScalingGroupName/<name>: the name says which
        resource_id = re.sub(r"^(autoScalingGroup|launchConfiguration):[^:/]*:(?:autoScalingGroupName|"
                             r"launchConfigurationName)/", r"\1/", resource_id, flags=re.IGNORECASE)
    if service == "s3" and account == "":  # arn:aws:s3:::bucket[/key]: a bucket's name is global
        wild = _has_wildcard(resource_id.split("/", 1)[0]) or resource_id == ""
    elif service in _NAME_FIRST_SERVICES and not (service == "s3" and account):  # an access point has a type
        wild = resource_id == "" or resource_id[0] in "*?" or (names and not _spelled_out(resource_id, service))
    elif service in NAME_WILDCARD_SERVICES:
        wild = _has_wildcard(resource_id)
    else:  # type/name or type:name: a wildcard in the type, or right after it
        separator = re.search(r"[/:]", resource_id)
        kind_part = resource_id[:separator.start()] if separator else resource_id
        after = resource_id[separator.end():] if separator else ""
        wild = _has_wildcard(kind_part) or (separator is not None and (after == "" or after[0] in "*?"))
        if not wild and (names or (service, kind_part.lower()) in NAMED_RESOURCE_TYPES):
            wild = not _spelled_out(after, service)
    if not wild:
        return None
    return "any" if account == "" else "account"


def _positive_operator(operator: Any) -> bool:
    """A condition operator that holds only when the key is present and matches: String/Arn Equals or Like
    (also ForAnyValue:), not a negation, not ...IfExists, not ForAllValues: (true without the key)."""
    text = str(operator).strip().lower()
    if text.startswith("foranyvalue:"):
        text = text[len("foranyvalue:"):]
    return text in _POSITIVE_OPERATORS


def _literal_values(values: Any, partial_wildcards: bool = False) -> bool:
    """Condition values that name something: non-empty, no wildcard (with `partial_wildcards`: not only
    wildcards), no policy variable but ${aws:ResourceAccount} / ${aws:ResourceOrgID}."""
    items = as_list(values)
    if not items:
        return False
    for value in items:
        text = str(value).strip()
        if not text or ("${" in text and text.lower() not in _RESOURCE_ACCOUNT_VARIABLES):
            return False
        if (re.fullmatch(r"[*?]+", text) if partial_wildcards else _has_wildcard(text)):
            return False
    return True


def narrowing_condition_keys(condition: Any) -> list[str]:
    """The keys of a Condition that narrow "any principal" (PRINCIPAL_CONDITION_KEYS) with a positive
    operator and literal values. Conditions are ANDed, so one is enough."""
    found = []
    if isinstance(condition, Mapping):
        for operator, block in condition.items():
            if _positive_operator(operator) and isinstance(block, Mapping):
                found += [str(name) for name, values in block.items()
                          if str(name).strip().lower() in PRINCIPAL_CONDITION_KEYS and _literal_values(values)]
    return found


_ACCOUNT_KEY = re.compile(r"[^:]*:(?:\w*account(?:id)?|\w*orgid|\w*orgpaths|\w*region|partition)", re.IGNORECASE)
"""Condition keys that name an account, an organization or a region (aws:ResourceAccount, aws:ResourceOrgID,
aws:ResourceOrgPaths, s3:ResourceAccount, ec2:Region, ...): what an ARN already names, or more."""


def _names_resources(value: Any) -> bool:
    """A condition value that names resources: no wildcard; or an ARN pattern that names them as an action that
    runs code needs (resource_reach(..., names=True): cluster/prod, not cluster/*, cluster/prod-*, arn:*); or any
    other value spelled out up to a `/` or `:` before its wildcard (team/*, not d*, team*). No policy variable."""
    text = str(value).strip()
    if not text or "${" in text:
        return False
    if not _has_wildcard(text):
        return True
    if text.lower().startswith("arn:"):
        return resource_reach(text, names=True) is None
    return _spelled_out(text, "")


def _narrows_resources(condition: Any) -> bool:
    """A Condition that limits which resources an identity statement reaches to something its ARN does not
    already name: a positive operator on a service's own key (ecs:cluster, iam:PassedToService, ...) or on
    aws:ResourceTag/..., every value of which names something (_names_resources: a literal value, or a pattern
    spelled out up to a `/` or `:`). Keys that name the account, organization or region (aws:ResourceAccount,
    aws:ResourceOrgID, aws:ResourceOrgPaths, s3:ResourceAccount, ...) narrow nothing the ARN does not, nor does a
    service key's true or false (ec2:Encrypted: every encrypted volume); global request keys (aws:SecureTransport,
    aws:CurrentTime, aws:SourceIp, ...) hold for any resource."""
    if isinstance(condition, Mapping):
        for operator, block in condition.items():
            if not (_positive_operator(operator) and isinstance(block, Mapping)):
                continue
            for name, values in block.items():
                lowered = str(name).strip().lower()
                resource_key = (not lowered.startswith("aws:") or lowered.startswith("aws:resourcetag/")) \
                    and ":" in lowered and not _has_wildcard(lowered) and not _ACCOUNT_KEY.fullmatch(lowered)
                tag = "resourcetag/" in lowered
                if resource_key and as_list(values) and all(
                        _names_resources(value) and (tag or str(value).strip().lower() not in ("true", "false"))
                        for value in as_list(values)):
                    return True
    return False


def wildcard_problems(statement: Mapping[str, Any], allowed_on_any: frozenset[str] | None = None) -> list[str]:
    """What makes a statement broader than this project allows: NotAction/NotResource; an action of any
    service; an action (or wildcard) that grants permissions, credentials or public access, whatever the
    resource; an action on every resource (only `allowed_on_any` on "*" or any account; for iam, sts, kms
    and the like no account-wide wildcard either, nor for actions that run code; others need a Condition
    on a resource key)."""
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
    escalating = [action for action in actions if action not in any_service and _escalates(action)]
    if escalating:
        problems.append(f"{', '.join(escalating)}, which can grant permissions, credentials or public access to "
                        "any identity or resource (its own role included)")
    resources = as_list(key(statement, "Resource"))
    rest = [action for action in actions if action not in any_service and action not in escalating]
    running = [action for action in rest if _executes_code(action)]
    for names, judged in ((False, [action for action in rest if action not in running]), (True, running)):
        reaches = {reach: str(resource).strip() for resource in reversed(resources)
                   if (reach := resource_reach(resource, names))}
        if "any" in reaches:
            broad = [action for action in judged if action.lower() not in allowed]
            if broad:
                problems.append(f'Resource "{reaches["any"]}" for {", ".join(broad)}')
        elif "account" in reaches:
            narrowed = _narrows_resources(key(statement, "Condition"))
            broad = [action for action in judged if action.partition(":")[0].lower() in IDENTITY_SERVICES
                     or names or (not narrowed and action.lower() not in allowed)]
            if broad:
                why = ": a wildcard before the name is spelled out" if names else ""
                problems.append(f'Resource "{reaches["account"]}" (every one in the account{why}) for '
                                f'{", ".join(broad)}')
    return problems


def _principal_values(principal: Any) -> dict[str, list[str]]:
    """A Principal element as {type: [values]} ("*" alone counts as {"*": ["*"]})."""
    if isinstance(principal, Mapping):
        return {str(kind): [str(value).strip() for value in as_list(values)] for kind, values in principal.items()}
    return {"*": [str(value).strip() for value in as_list(principal)]} if principal is not None else {}


def _any_principal(principal: Any) -> bool:
    """Principal "*", {"AWS": "*"}, or any value with a wildcard (AWS allows none but "*" itself)."""
    return any(_has_wildcard(value) for values in _principal_values(principal).values() for value in values)


def open_principal_problems(policy_document: Mapping[str, Any]) -> list[str]:
    """What in a resource or trust policy lets anyone in: an Allow for any principal without a condition
    that narrows it to named accounts, an organization or one caller (narrowing_condition_keys), or an
    Allow with NotPrincipal."""
    problems = []
    for index, statement in enumerate(statements(policy_document)):
        if not _allows(statement):
            continue
        sid = key(statement, "Sid") or f"#{index}"
        if key(statement, "NotPrincipal") is not None:
            problems.append(f"statement {sid} allows NotPrincipal (everyone not listed)")
        if _any_principal(key(statement, "Principal")) and not narrowing_condition_keys(key(statement, "Condition")):
            actions = ", ".join(str(action) for action in as_list(key(statement, "Action"))) or "its actions"
            problems.append(f"statement {sid} allows any principal of any account ({actions}) without a condition "
                            "that names the accounts (aws:PrincipalOrgID, aws:PrincipalAccount, aws:SourceArn, "
                            "kms:CallerAccount, ... with a literal value; sts:ExternalId names no account)")
    return problems


_EXACT = None
_GITHUB_SUBJECT = re.compile(r"repo:[^/:*?]+/|(?:[a-z_]+:[^:*?]*:)*?(?:repository_owner|repository_owner_id|"
                             r"repository_id):[^:*?]+:|(?:[a-z_]+:[^:*?]*:)*?repository:[^/:*?]+/", re.IGNORECASE)
"""What a GitHub `sub` pattern must spell out before a wildcard: repo:OWNER/ (or, in a customised subject,
repository_owner:OWNER:, repository_owner_id:ID:, repository_id:ID:, repository:OWNER/)."""
_OWNER_PATH = re.compile(r"[^/*?]+/")
_EKS_SUBJECT = re.compile(r"system:serviceaccount:[^:*?]+:", re.IGNORECASE)
_TWO_SEGMENTS = re.compile(r"[^/:*?]+[/:][^/:*?]+[/:]")
"""Any other provider: a `sub` pattern must spell out two segments before a wildcard (GitLab's
project_path:group/..., Terraform Cloud's organization:org:...)."""
_OIDC_CLAIMS: dict[str, dict[str, re.Pattern[str] | None]] = {
    # provider -> condition claim -> what a pattern of it must spell out before a wildcard (None: no wildcard)
    "github": {"sub": _GITHUB_SUBJECT, "job_workflow_ref": _OWNER_PATH, "repository": _OWNER_PATH,
               "repository_owner": _EXACT, "repository_owner_id": _EXACT, "repository_id": _EXACT},
    "eks": {"sub": _EKS_SUBJECT},
    "accounts.google.com": {"sub": _EXACT, "aud": _EXACT, "oaud": _EXACT},
    "cognito-identity.amazonaws.com": {"sub": _EXACT, "aud": _EXACT},
    "graph.facebook.com": {"sub": _EXACT, "id": _EXACT},
    "www.amazon.com": {"sub": _EXACT, "user_id": _EXACT},
}
"""The claims that name who may assume a role trusted by an identity provider: GitHub's sub or the
repository claims (job_workflow_ref: OWNER/REPO/.github/workflows/...@ref), EKS's service account, a Google
app's client id (aud) or user (sub), Cognito's identity pool (aud). Others: `sub` (_TWO_SEGMENTS)."""
_EKS_PROVIDER = re.compile(r"oidc\.eks\.[^/]+\.amazonaws\.com(?:\.cn)?/id/[^/]+", re.IGNORECASE)


def _oidc_provider(federated: str) -> str | None:
    """The host (and path) an OIDC Federated principal names, which its condition keys begin with
    (token.actions.githubusercontent.com, oidc.eks.<region>.amazonaws.com/id/<id>, accounts.google.com,
    cognito-identity.amazonaws.com); None for a SAML provider."""
    text, marker = federated.strip(), ":oidc-provider/"
    lowered = text.lower()
    if marker in lowered:
        return text[lowered.index(marker) + len(marker):]
    if lowered.startswith("arn:"):
        return None
    return text if "." in text else None


def _oidc_claims(provider: str) -> dict[str, re.Pattern[str] | None]:
    lowered = provider.strip().lower()
    if lowered.startswith("token.actions.githubusercontent.com"):  # also an enterprise's own issuer path
        return _OIDC_CLAIMS["github"]
    if _EKS_PROVIDER.fullmatch(lowered):
        return _OIDC_CLAIMS["eks"]
    return _OIDC_CLAIMS.get(lowered, {"sub": _TWO_SEGMENTS})


def _names_subject(value: Any, prefix: re.Pattern[str] | None) -> bool:
    """A claim value that names its subjects: spelled out, or a pattern whose literal start matches `prefix`
    (GitHub's repo:OWNER/, EKS's system:serviceaccount:NAMESPACE:); never a bare wildcard (r*, repo*,
    rep?:*, system:*, s*) or a policy variable."""
    text = str(value).strip()
    if not text or "${" in text:
        return False
    literal = re.split(r"[*?]", text, maxsplit=1)[0]
    if literal == text:
        return True
    return prefix is not None and prefix.match(literal) is not None


def _oidc_problems(statement: Mapping[str, Any], sid: str) -> list[str]:
    problems = []
    for federated in _principal_values(key(statement, "Principal")).get("Federated", []):
        provider = _oidc_provider(federated)
        if provider is None:
            continue
        claims = {f"{provider}:{claim}".lower(): prefix for claim, prefix in _oidc_claims(provider).items()}
        narrowed = False
        condition = key(statement, "Condition")
        if isinstance(condition, Mapping):
            for operator, block in condition.items():
                if _positive_operator(operator) and isinstance(block, Mapping):
                    narrowed = narrowed or any(
                        str(name).strip().lower() in claims and as_list(values)
                        and all(_names_subject(value, claims[str(name).strip().lower()]) for value in as_list(values))
                        for name, values in block.items())
        if not narrowed:
            names = " or ".join(f"{provider}:{claim}" for claim in _oidc_claims(provider))
            problems.append(f"statement {sid} trusts the identity provider {provider} without a condition on "
                            f"{names} naming the subjects (any repository, workload or user it issues tokens for "
                            "could assume the role; a pattern must spell out the owner or namespace: "
                            "repo:OWNER/..., system:serviceaccount:NAMESPACE:...)")
    return problems


def trust_problems(policy_document: Mapping[str, Any]) -> list[str]:
    """A trust policy (assumeRolePolicy) that lets anyone assume the role: Principal "*" (or {"AWS": "*"})
    without a condition on PRINCIPAL_CONDITION_KEYS, NotPrincipal, or an OIDC provider (GitHub Actions,
    EKS, Google, ...) trusted without a `sub` condition that names the subjects."""
    problems = open_principal_problems(policy_document)
    for index, statement in enumerate(statements(policy_document)):
        if _allows(statement):
            problems += _oidc_problems(statement, str(key(statement, "Sid") or f"#{index}"))
    return problems


def broad_managed_policy(arn: Any) -> str | None:
    """The name of a managed policy too broad to attach (any partition), else None: every AWS-managed one
    but NARROW_AWS_MANAGED_POLICIES (their path and name exactly, in any case), or a customer-managed one
    whose name or path says it administers (ADMIN_NAME: policy/OpsFullAccess, policy/admin/everything)."""
    match = _POLICY_ARN.fullmatch(str(arn).strip())
    if not match:
        return None
    path = match.group("path")
    name = path.rsplit("/", 1)[-1]
    if match.group("account").strip().lower() != "aws":
        return path if _admin_named(path) else None
    return None if name.strip().lower() in NARROW_AWS_MANAGED_POLICIES else path


def _attached_policy_arns(kind: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(property, ARN) of each managed policy an IAM or IAM Identity Center resource attaches: every
    property named like *Arn(s) (policyArn, managedPolicyArns, policyArns, managedPolicyArn) and
    aws-native's managedPolicies, not permissionsBoundary (a boundary only limits). In a CloudFormation
    template's AWS::Serverless::* resource, `Policies` names AWS-managed policies by name
    (AdministratorAccess) and SAM's policy templates by key (S3FullAccessPolicy)."""
    if kind.startswith("aws-native:serverless:"):
        for item in as_list(get(props, "policies")):
            if isinstance(item, str):
                text = item.strip()
                yield "policies", text if text.lower().startswith("arn:") else f"arn:aws:iam::aws:policy/{text}"
        return
    if not kind.startswith(IAM_ATTACHING_MODULES):
        return
    for prop in list(props):
        lowered = str(prop).lower()
        if ("arn" in lowered or lowered == "managedpolicies") and "boundary" not in lowered:
            for value in as_list(get(props, prop)):
                yield str(prop), value


_AWS_MANAGED_ARN = re.compile(r"arn:[^:]*:[^:]*:[^:]*:aws:[^/]*policy/(?P<path>.+)", re.IGNORECASE | re.DOTALL)
"""An AWS-managed policy of any service (arn:aws:iam::aws:policy/..., arn:aws:eks::aws:cluster-access-policy/...)."""


def _admin_policy_references(value: Any, where: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """(property, ARN) of every policy ARN named like an administrator's (AmazonEKSClusterAdminPolicy,
    AdministratorAccess, a customer's OpsFullAccess) in a property named like *PolicyArn(s) of a resource outside
    the IAM modules (an EKS access policy association or access entry, a Roles Anywhere profile, ...)."""
    if depth > 4:
        return
    if isinstance(value, Mapping):
        for name in list(value):
            item = _known_in(value, name)
            path = f"{where}.{name}" if where else str(name)
            if "policyarn" in str(name).lower():
                for arn in _items(item):
                    match = _AWS_MANAGED_ARN.fullmatch(str(arn).strip()) or _POLICY_ARN.fullmatch(str(arn).strip())
                    if match and _admin_named(match.group("path")):
                        yield path, str(arn)
            else:
                yield from _admin_policy_references(item, path, depth + 1)
    elif is_sequence(value):
        for index, item in enumerate(_items(value)):
            yield from _admin_policy_references(item, f"{where}[{index}]", depth + 1)


_BROAD_POLICY_TEMPLATE_NAME = re.compile(r"admin|poweruser|fullaccess|readwrite", re.IGNORECASE)


def _broad_policy_templates(kind: str, props: Mapping[str, Any]) -> list[str]:
    """The SAM policy templates (`Policies: [{S3ReadPolicy: {BucketName: ...}}]`) of an AWS::Serverless::*
    resource that are too broad: named so (S3FullAccessPolicy, ...), or given a parameter with a wildcard
    (BucketName "*" reads every bucket) or none at all."""
    if not kind.startswith("aws-native:serverless:"):
        return []
    found = []
    for item in as_list(get(props, "policies")):
        if not isinstance(item, Mapping) or key(item, "Statement") is not None:
            continue
        for template_name in list(item):
            parameters = item[template_name]
            values = [value for value in (parameters.values() if isinstance(parameters, Mapping) else [])]
            if _BROAD_POLICY_TEMPLATE_NAME.search(str(template_name)) or any(
                    not isinstance(value, str) or not value.strip() or _has_wildcard(value) for value in values):
                found.append(f"{template_name} {dict(parameters) if isinstance(parameters, Mapping) else ''}".strip())
    return found


_POLICY_ARN_PROPERTIES = frozenset({"policyarn", "policyarns", "managedpolicyarn", "managedpolicyarns",
                                    "managedpolicies", "policies"})
"""Properties that hold only managed policy ARNs (or, in a SAM resource, names): a value there that is no
policy ARN is one the pack cannot tell."""


def _customer_policy_references(kind: str, props: Mapping[str, Any]) -> list[str]:
    """The names of customer-managed policies an IAM Identity Center permission set references by name."""
    if not kind.startswith(("aws:ssoadmin/", "aws-native:sso:")):
        return []
    names = []
    for prop in ("customerManagedPolicyReference", "customerManagedPolicyReferences"):
        for reference in as_list(get(props, prop)):
            names.append(str(get(reference, "name", default="")))
    return [name for name in names if _admin_named(name)]


def azure_scope_above_resource_group(scope: Any) -> bool:
    """Whether a scope is a subscription, a management group or the root ("/"): anything but
    /subscriptions/<id>/resourceGroups/<name>[/...] (judged without regard to case; ".." is above)."""
    parts = [part for part in str(scope or "").strip().lower().split("/") if part]
    return ".." in parts or not (len(parts) >= 4 and parts[0] == "subscriptions" and parts[2] == "resourcegroups")


def azure_privileged_role(props: Mapping[str, Any]) -> str | None:
    """The privileged built-in role a role assignment names (by definition id or, classic provider, by name)."""
    return azure_privileged_role_id(get(props, "roleDefinitionId", default="")) or \
        azure_privileged_role_name(get(props, "roleDefinitionName", default=""))


def azure_privileged_role_id(definition: Any) -> str | None:
    """The privileged built-in role a role definition id names, wherever its GUID stands in it (a full id,
    the GUID alone, in braces, without its hyphens, with `?api-version=...`, inside an ARM expression, in
    pieces an expression concatenates): its 32 hex digits anywhere in the id's hex digits."""
    text = str(definition or "").lower()
    for guid in _GUID.findall(text):
        if guid in AZURE_PRIVILEGED_ROLES:
            return AZURE_PRIVILEGED_ROLES[guid]
    digits = re.sub(r"[^0-9a-f]", "", text)
    return next((role for guid, role in AZURE_PRIVILEGED_ROLES.items() if guid.replace("-", "") in digits), None)


def azure_privileged_role_name(name: Any) -> str | None:
    role_name = " ".join(str(name or "").split()).lower()
    return next((role for role in AZURE_PRIVILEGED_ROLES.values() if role.lower() == role_name), None)


def _entra_privileged_role(role: Any) -> str | None:
    """The privileged Entra ID directory role a role id names (its template id, wherever it stands in the value)."""
    text = str(role or "").lower()
    return next((name for guid, name in ENTRA_PRIVILEGED_ROLES.items() if guid in text), None)


def _blueprint_scope(props: Mapping[str, Any]) -> str:
    """Where a blueprint's role assignment artifact grants its role: the resource group it names (a
    placeholder of the blueprint), else the subscription the blueprint is assigned to."""
    group = get(props, "resourceGroup")
    return f"/subscriptions/(the blueprint's)/resourceGroups/{group}" if isinstance(group, str) and group.strip() \
        else "/subscriptions/(the subscription the blueprint is assigned to)"


def _is_azure_role_assignment(kind: str) -> bool:
    """A type that grants a role at a scope: AZURE_ROLE_ASSIGNMENTS, or another RBAC or PIM type named like
    one (an assignment, eligibility or schedule; not a policy, definition, deny assignment or lock)."""
    if kind in AZURE_ROLE_ASSIGNMENTS:
        return True
    if kind in AZURE_ROLE_DEFINITIONS or not kind.startswith(AZURE_RBAC_MODULES):
        return False
    name = kind.rsplit(":", 1)[-1]
    return bool(re.search(r"Assignment|Eligib|Schedule", name)) and \
        not re.search(r"Policy|Definition|Management|Deny|Lock|Review", name)


def _azure_admin_actions(props: Mapping[str, Any]) -> list[str]:
    """The actions of a custom role that amount to Owner or User Access Administrator: "*" (all actions
    or all data actions), any pattern that covers assigning roles or writing role definitions, and any ARM
    expression the pack does not work out (`[createArray('*')]`, `[concat('Microsoft.Authorization/', ...)]`,
    a whole permission or list given by one), which may be either."""
    found = []
    for permission in as_list(get(props, "permissions")):
        if not isinstance(permission, Mapping):  # an ARM expression the pack cannot work out: it may be anything
            found.append(str(permission))
            continue
        for field in ("actions", "dataActions"):
            for action in as_list(get(permission, field)):
                text = str(action).strip()
                if text == "*" or _arm_expression(text) or \
                        any(_azure_action_pattern(text).fullmatch(admin) for admin in AZURE_ROLE_ADMIN_ACTIONS):
                    found.append(text)
    return found


def _azure_action_pattern(action: str) -> re.Pattern[str]:
    """An Azure RBAC action pattern as a case-insensitive regular expression: `*` any characters, and a `/*/` segment
    also none (Managed Identity Operator's `userAssignedIdentities/*/assign/action` is
    `userAssignedIdentities/assign/action`)."""
    parts = re.split(r"(/\*/|\*)", action)
    return re.compile("".join("/(?:.*/)?" if part == "/*/" else ".*" if part == "*" else re.escape(part)
                              for part in parts), re.IGNORECASE | re.DOTALL)


def _arm_expression(value: Any) -> bool:
    """An ARM template expression left unresolved (`[createArray('*')]`, `[concat(...)]`): the pack does not
    evaluate it, so it stands for any value (`[[` escapes a literal `[`)."""
    return isinstance(value, str) and value.strip().startswith("[") and not value.strip().startswith("[[")


_JSON_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_MAX_DOCUMENT_DEPTH = 20


def _json_text(value: Any) -> bool:
    """Text a JSON reader may take for an object or a list: `{` or `[` first (after whitespace or a BOM)."""
    return isinstance(value, str) and value.lstrip().lstrip("\ufeff").lstrip().startswith(("{", "["))


def _names_statement(text: str) -> bool:
    """Whether JSON text names a Statement key, however JSON spells it: every JSON reader decodes
    `"\\u0053tatement"` or `"St\\u0061tement"` to Statement, so the raw text is read with its escapes decoded."""
    decoded = _JSON_UNICODE_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text)
    return bool(re.search(r'"\s*statement\s*"\s*:', decoded, re.IGNORECASE))


def _looks_like_document(text: str) -> bool:
    """JSON text that names a Statement (escapes decoded): a policy document's, not a value to search for
    other shapes (an ACL's grantee URIs)."""
    return _json_text(text) and _names_statement(text)


def _documents_in(value: Any, where: str, depth: int = 0) -> Iterator[tuple[str, Mapping[str, Any] | None]]:
    """(where, document) of every policy document inside a value: an object with a Statement, or one inside
    JSON text (every string that starts with `{` or `[` is parsed, and what it holds decides, never its raw
    spelling); None for one the pack cannot read (JSON text that names a Statement but does not parse or
    names a key twice, an object with a key twice in any case). Unknown values (a preview) are skipped."""
    if depth > _MAX_DOCUMENT_DEPTH:
        return
    if isinstance(value, str):
        if not _json_text(value):
            return
        try:
            parsed = _parse_document(value)
        except ValueError:
            if _names_statement(value):
                yield where, None
            return
        yield from _documents_in(parsed, where, depth + 1)
        return
    if isinstance(value, Mapping):
        try:
            if key(value, "Statement") is not None:
                yield where, None if unreadable_document(value) else value
                return
        except UnknownValueError:
            return
        for name in list(value):
            try:
                item = value[name]
            except UnknownValueError:
                continue
            yield from _documents_in(item, f"{where}.{name}" if where else str(name), depth + 1)
    elif is_sequence(value):
        for index, item in enumerate(_items(value)):
            yield from _documents_in(item, f"{where}[{index}]", depth + 1)


def _policy_documents(kind: str, props: Mapping[str, Any], skip: Iterable[str] = ()
                      ) -> Iterator[tuple[str, Mapping[str, Any] | None]]:
    """The policy documents a resource holds in properties other than `skip` (resource policies: a key
    policy, a queue or topic policy, a secret's, a repository's, a bucket's, ...); None for one the pack
    cannot read."""
    if kind.startswith(FILTER_POLICY_MODULES):
        return
    skipped = set(skip)
    for name in list(props):
        if name in skipped:
            continue
        try:
            value = props[name]
        except UnknownValueError:
            continue
        yield from _documents_in(value, str(name))


def _admin_names(values: Iterable[Any]) -> list[str]:
    return [str(value) for value in values if _admin_named(value)]


def validate_iam_least_privilege(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind, props, name = normalized_type(args.resource_type), args.props, args.name
    allowed = allowed_actions_on_any_resource(args.get_config())
    allowances = identity_center_allowances(args.get_config())
    fix = ("Name the actions and the resource ARNs it needs; only actions without resource-level permissions "
           f"({', '.join(sorted(allowed))}) may use Resource \"*\".")
    identity = _inline_documents(kind, props)
    for where, given in identity:
        if unreadable_document(given):
            report(f"{label(kind, name)}: {where} is no JSON policy document the pack can read, so nothing it "
                   "allows can be checked: give a JSON object with a Statement list.", None)
            continue
        for index, statement in enumerate(statements(document(given))):
            problems = wildcard_problems(statement, allowed)
            if problems:
                sid = key(statement, "Sid") or f"#{index}"
                report(f"{label(kind, name)}: {where} statement {sid} allows {'; '.join(problems)}. {fix}", None)
    if kind in TRUST_POLICY:
        trust = get(props, TRUST_POLICY[kind])
        problems = ["it is no JSON policy document"] if unreadable_document(trust) else trust_problems(document(trust))
        if problems:
            report(f"{label(kind, name)}: its trust policy ({TRUST_POLICY[kind]}) {'; '.join(problems)}: name the "
                   "service or account principals (a third party's account with sts:ExternalId), or add a "
                   "condition on aws:PrincipalOrgID or aws:PrincipalAccount (a literal value), and for an identity "
                   "provider its `sub`.", None)
    elif not identity and not _storage_module(kind):
        # Any other resource: its resource policies (KMS key, secret, queue, topic, repository, ...) may not
        # open it to any principal, and an identity statement found anywhere is held to the same rules.
        for where, policy_document in _policy_documents(kind, props, skip=_template_properties(kind, props)):
            if policy_document is None:
                report(f"{label(kind, name)}: {where} {UNREADABLE_POLICY}", None)
                continue
            for problem in open_principal_problems(policy_document):
                report(f"{label(kind, name)}: {where} {problem}: name the principals (accounts, roles, services) "
                       "that need it.", None)
            for index, statement in enumerate(statements(policy_document)):
                if key(statement, "Principal") is None and key(statement, "NotPrincipal") is None:
                    problems = wildcard_problems(statement, allowed)
                    if problems:
                        sid = key(statement, "Sid") or f"#{index}"
                        report(f"{label(kind, name)}: {where} statement {sid} allows {'; '.join(problems)}. {fix}",
                               None)
    if kind in LINKED_TEMPLATE_KINDS:
        report(f"{label(kind, name)} deploys {LINKED_TEMPLATE_KINDS[kind]}, a template the pack cannot read, so "
               "nothing it deploys can be checked (a role, a policy, a public database): deploy the template "
               "inline (a CloudFormation stack with templateBody) instead.", None)
    for problem in template_resources(kind, props)[1]:
        report(f"{label(kind, name)}: {problem}, so nothing it deploys can be checked (a role, a policy, a role "
               "assignment): give the template inline (templateBody, template, templateContent) as one JSON or "
               "YAML object with each key once.", None)
    if kind in PRINCIPAL_PERMISSIONS:
        principal = str(get(props, "principal", default="")).strip()
        narrowing = [prop for prop in PRINCIPAL_PERMISSIONS[kind] if prop != "condition"
                     and _literal_values(get(props, prop))]
        if "condition" in PRINCIPAL_PERMISSIONS[kind] and \
                str(get(props, "condition", "key", default="")).strip().lower() in PRINCIPAL_CONDITION_KEYS and \
                _literal_values(get(props, "condition", "value")):
            narrowing.append("condition")
        if (not principal or _has_wildcard(principal)) and get(props, "statement") is None and not narrowing:
            report(f"{label(kind, name)} lets any principal of any account use it "
                   f"({get(props, 'action', default='its action')}): name the service or account principal, or set "
                   f"{' / '.join(PRINCIPAL_PERMISSIONS[kind])}.", None)
    for prop, arn in _attached_policy_arns(kind, props):
        managed = broad_managed_policy(arn)
        if managed is None and str(prop).lower() in _POLICY_ARN_PROPERTIES and \
                not _POLICY_ARN.fullmatch(str(arn).strip()):
            report(f"{label(kind, name)} attaches {arn!r} ({prop}), which the pack cannot tell for a managed policy "
                   "(in a template: a value from another stack, an SSM parameter or a custom resource, which may "
                   "be AdministratorAccess): give the policy's ARN.", None)
        if managed:
            report(f"{label(kind, name)} attaches the managed policy {managed} ({prop}): an AWS-managed policy "
                   "reaches every resource of the account whatever its name says (ReadOnlyAccess reads every "
                   "bucket's objects), and one of your own named like an administrator's is judged by that name. "
                   "Attach a policy of your own that names the actions and resource ARNs (of AWS's, only "
                   f"{', '.join(sorted(NARROW_AWS_MANAGED_POLICY_NAMES))} may be attached).", None)
    if not kind.startswith(IAM_ATTACHING_MODULES):
        for prop, arn in _admin_policy_references(props):
            report(f"{label(kind, name)} attaches {arn} ({prop}), a managed policy named like an administrator's: "
                   "associate a policy that grants what it needs (an EKS view or edit policy scoped to a namespace, a "
                   "policy of your own that names the actions and resources).", None)
    for template in _broad_policy_templates(kind, props):
        report(f"{label(kind, name)} uses the SAM policy template {template}, which by its name or a wildcard "
               "parameter reaches every resource of a kind: use a narrower template with the resource named.", None)
    for reference in _customer_policy_references(kind, props):
        report(f"{label(kind, name)} references the customer-managed policy {reference}, named like an "
               "administrator's: reference a policy that names the actions and resource ARNs.", None)
    if kind in GROUP_MEMBERSHIPS:
        groups = _admin_names(as_list(get(props, GROUP_MEMBERSHIPS[kind])))
        if groups:
            report(f"{label(kind, name)} puts a user into {', '.join(groups)}, a group named like administrators': "
                   "grant the user a policy that names what it needs instead.", None)
    if kind in IDENTITY_CENTER_GRANTS:
        prop, setting = IDENTITY_CENTER_GRANTS[kind]
        granted = get(props, prop, default="")
        if str(granted).strip().lower() not in allowances[setting]:
            report(f"{label(kind, name)} grants {prop} {granted or '(none)'}, which the iam-least-privilege "
                   f"configuration does not list ({setting}): an Identity Center assignment or group membership "
                   "hands out whatever that permission set or group holds (AdministratorAccess), and a delegated "
                   "administrator runs a service for the organization; the resource does not show which. List it "
                   "in the configuration once it is reviewed.", None)
    if kind in ENTRA_GRANTS:
        props_named, setting = ENTRA_GRANTS[kind]
        granted = next((get(props, prop) for prop in props_named if get(props, prop)), "")
        granted_id = str(granted).strip().lower()
        privileged = _entra_privileged_role(granted) if setting == "allowedDirectoryRoles" else None
        if privileged:
            report(f"{label(kind, name)} grants the Entra ID directory role {privileged} ({granted}), which Microsoft "
                   "labels privileged (it administers the tenant's identities, roles, applications or sign-in): grant "
                   "an application the Graph permission or Azure role it needs on its own resources instead.", None)
        elif granted_id not in allowances[setting]:
            what = "directory role" if setting == "allowedDirectoryRoles" else "group"
            report(f"{label(kind, name)} grants the Entra ID {what} {granted or '(none)'}, which the "
                   f"iam-least-privilege configuration does not list ({setting}): a {what}'s id says nothing of "
                   "what it holds (a role-assignable group with Global Administrator, an Azure Owner assignment, "
                   "an activated role's object id). List it in the configuration once it is reviewed.", None)
    if kind == "azuread:index/appRoleAssignment:AppRoleAssignment":
        role = GRAPH_PRIVILEGED_APP_ROLES.get(str(get(props, "appRoleId", default="")).strip().lower())
        if role:
            report(f"{label(kind, name)} assigns the Microsoft Graph application permission {role}, which lets its "
                   "principal take over the directory (assign itself roles or app roles, add credentials to any "
                   "application, change groups, users or sign-in policies): grant a narrower permission "
                   "(User.Read.All, Group.Read.All, ...) or an Azure role on the resources it needs.", None)
    elif kind == "azuread:index/servicePrincipalDelegatedPermissionGrant:ServicePrincipalDelegatedPermissionGrant":
        scopes = sorted({scope for value in as_list(get(props, "claimValues")) for scope in str(value).split()
                         if scope.lower() in GRAPH_PRIVILEGED_SCOPES})
        if scopes:
            report(f"{label(kind, name)} consents to {', '.join(scopes)} on behalf of "
                   f"{'one user' if get(props, 'userObjectId') else 'every user'}, which lets the application act as "
                   "a directory administrator whenever an administrator signs in to it: consent to narrower "
                   "permissions.", None)
    if kind in USER_CREDENTIALS:
        users = _admin_names([get(props, USER_CREDENTIALS[kind], default="")])
        if users:
            report(f"{label(kind, name)} makes a long-lived credential for {', '.join(users)}, a user named like an "
                   "administrator: use a role (OIDC in CI, IAM Identity Center for people) instead.", None)
    if kind in MINIO_POLICY_ATTACHMENTS:
        policy_name = str(get(props, "policyName", default="")).strip()
        if policy_name.lower() in MINIO_BUILT_IN_POLICIES or _admin_named(policy_name):
            report(f"{label(kind, name)} attaches MinIO's {policy_name} policy, which reaches every bucket (or "
                   "administers the server): attach a policy of your own scoped to the bucket.", None)
    if _is_azure_role_assignment(kind):
        role = azure_privileged_role(props)
        scope = _blueprint_scope(props) if kind == BLUEPRINT_ROLE_ASSIGNMENT else get(props, "scope", default="")
        if role and azure_scope_above_resource_group(scope):
            report(f"{label(kind, name)} grants {role} at {scope or '/'} (a subscription, management group or the "
                   "root): grant a narrower role (AcrPull, Storage Blob Data Contributor, ...) at the scope of the "
                   "one resource it needs.", None)
    elif kind in AZURE_DELEGATIONS:
        scope = get(props, "scope", default="")
        roles = sorted({role for authorization in [
            *as_list(get(props, "authorizations")), *as_list(get(props, "eligibleAuthorizations")),
            *as_list(get(props, "properties", "authorizations")),
            *as_list(get(props, "properties", "eligibleAuthorizations"))]
            if (role := azure_privileged_role_id(get(authorization, "roleDefinitionId")))})
        if roles and azure_scope_above_resource_group(scope):
            report(f"{label(kind, name)} hands another tenant's principals {', '.join(roles)} at {scope or '/'} (a "
                   "subscription, management group or the root): delegate a narrower role, or at a resource "
                   "group.", None)
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
    if kind in LOG_GROUPS or kind == LOG_ANALYTICS_WORKSPACE:
        days = get(props, "retentionInDays")
        if days is None and kind == LOG_ANALYTICS_WORKSPACE:
            return  # Azure keeps a workspace's data 30 days unless told otherwise; a CloudWatch log group, forever
        try:
            kept = days is not None and not isinstance(days, bool) and float(days).is_integer() and int(days) > 0
        except (TypeError, ValueError, OverflowError):
            kept = False
        if not kept:
            setting = "aws.logRetentionDays" if kind in LOG_GROUPS else "azure.logRetentionDays"
            what = "keeps logs forever" if days is None else "sets no retention the pack can read"
            report(f"{label(kind, name)} {what} (retentionInDays {days if days is not None else 'unset'}): "
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
                   if value in (_known(target, "id"), _known(target, "bucket"), _known(target, "arn"),
                                _known(target, "bucketName"))}
        if matched:
            return matched
    if not graph_has_dependencies and resource.parent is not None:
        return {urn for urn, target in targets.items()
                if target.parent is not None and target.parent.urn == resource.parent.urn}
    return set()


def _graph_has_dependencies(resources: Sequence[PolicyResource]) -> bool:
    return any(resource.dependencies or resource.property_dependencies for resource in resources)


def _denies_insecure_transport_to(policy: PolicyResource, kind: str, bucket: PolicyResource) -> bool:
    """Whether a bucket policy guards this bucket: its TLS-only Deny covers this bucket's objects, where both
    are known (a Deny that names only another bucket guards nothing here; storage-tls-only sees the policy
    without its bucket's name). A policy with no TLS-only Deny at all counts: storage-tls-only refuses it."""
    given = _known(policy, S3_BUCKET_POLICIES[kind])
    if given is None or not denies_insecure_transport(document(given)):
        return True
    name = _known(bucket, "bucket") or _known(bucket, "bucketName")
    return denies_insecure_transport(document(given), _bucket_name(name) if isinstance(name, str) else "")


def validate_s3_buckets_guarded(args: StackValidationArgs, report: ReportViolation) -> None:
    buckets = {r.urn: r for r in args.resources if normalized_type(r.resource_type) in ALL_S3_BUCKETS}
    if not buckets:
        return
    with_deps = _graph_has_dependencies(args.resources)
    guarded: dict[str, set[str]] = {urn: set() for urn in buckets}
    for urn, bucket in buckets.items():  # the inline forms (the AWS provider's, CloudFormation's)
        if _known(bucket, "serverSideEncryptionConfiguration") is not None or \
                _known(bucket, "bucketEncryption") is not None:
            guarded[urn].add("encryption")
        if _known(bucket, "publicAccessBlockConfiguration") is not None:
            guarded[urn].add("public access block")
        if _known(bucket, "policy"):
            guarded[urn].add("policy")
    for resource in args.resources:
        kind = normalized_type(resource.resource_type)
        guard = ("public access block" if kind == S3_PUBLIC_ACCESS_BLOCK else "encryption" if kind in S3_ENCRYPTION
                 else "policy" if kind in S3_BUCKET_POLICIES else None)
        if guard:
            for urn in _links(resource, "bucket", buckets, with_deps):
                if guard != "policy" or _denies_insecure_transport_to(resource, kind, buckets[urn]):
                    guarded[urn].add(guard)
    tls = "a BucketPolicy that denies requests without TLS (aws:SecureTransport false) on this bucket's objects"
    fixes = {"public access block": "a BucketPublicAccessBlock with all four flags true",
             "encryption": "a BucketServerSideEncryptionConfiguration (AES256 or aws:kms)", "policy": tls}
    native_fixes = {"public access block": "a publicAccessBlockConfiguration with all four flags true",
                    "encryption": "a bucketEncryption (AES256 or aws:kms)", "policy": tls}
    for urn, bucket in buckets.items():
        kind_fixes = native_fixes if normalized_type(bucket.resource_type) == NATIVE_BUCKET else fixes
        missing = [fix for guard, fix in kind_fixes.items() if guard not in guarded[urn]]
        if missing:
            report(f"{label(bucket.resource_type, bucket.name)} lacks {'; '.join(missing)}. The ArtifactStore "
                   "component creates all three for its bucket; add the missing ones for this bucket.", urn)


STATEFUL_TYPES = {  # type -> what it keeps
    RDS_INSTANCE: "the tracking data (experiments, runs, models)",
    RDS_CLUSTER: "a database's data",
    NATIVE_DB_INSTANCE: "a database's data",
    NATIVE_DB_CLUSTER: "a database's data",
    "aws:s3/bucket:Bucket": "the artifacts",
    "aws:s3/bucketV2:BucketV2": "the artifacts",
    NATIVE_BUCKET: "the artifacts",
    FLEXIBLE_SERVER: "the tracking data (experiments, runs, models)",
    FLEXIBLE_SERVER_DATABASE: "the tracking data (experiments, runs, models)",
    "azure:postgresql/flexibleServer:FlexibleServer": "the tracking data (experiments, runs, models)",
    "azure:postgresql/flexibleServerDatabase:FlexibleServerDatabase": "the tracking data (experiments, runs, models)",
    STORAGE_ACCOUNT: "the artifacts",
    BLOB_CONTAINER: "the artifacts",
    CLASSIC_STORAGE_ACCOUNT: "the artifacts",
    CLASSIC_STORAGE_CONTAINER: "the artifacts",
}


def _keeps_data(kind: str, resource: PolicyResource) -> bool:
    """An aws-native instance of an Aurora cluster keeps nothing of its own (the cluster does)."""
    return kind in STATEFUL_TYPES and not (kind == NATIVE_DB_INSTANCE and _known(resource, "dbClusterIdentifier"))


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


def _is_data_mount(path: str) -> bool:
    normalized = posixpath.normpath("/" + path.lstrip("/"))  # /var/cache/../lib/data is /var/lib/data
    return not any(normalized == prefix or normalized.startswith(prefix + "/") for prefix in RUNTIME_MOUNT_PREFIXES) \
        and ".cache" not in normalized.split("/")


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
        if _keeps_data(kind, resource) and not resource.opts.protect:
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


# --- templates: CloudFormation stacks and ARM deployments ----------------------------------------------

TEMPLATE_MODULES = ("aws:cloudformation/", "aws-native:cloudformation:", "azure-native:resources:", "azure:core/",
                    "azure:management/groupTemplateDeployment:", "azure-native:blueprint:")
"""Where a resource deploys a template of its own (CloudFormation stacks and stack sets, ARM deployments,
deployment stacks and template specs): the pack reads the template and judges each resource in it as the
type it stands for (AWS::IAM::Role as aws-native:iam:Role, Microsoft.Authorization/roleAssignments as
azure-native:authorization:RoleAssignment, ...), by every resource policy."""
LINKED_TEMPLATE_KINDS = {  # type -> what it deploys
    "aws:serverlessrepository/cloudFormationStack:CloudFormationStack": "a Serverless Application Repository app",
    "aws:servicecatalog/provisionedProduct:ProvisionedProduct": "a Service Catalog product",
    "aws-native:servicecatalog:CloudFormationProvisionedProduct": "a Service Catalog product",
}
"""Resources that deploy a CloudFormation template kept elsewhere (an application, a product): linked, as a
stack's templateUrl is, and refused the same way."""
_TEMPLATE_TEXT_PROPERTIES = frozenset({"templatebody", "template", "templatecontent", "maintemplate"})
_TEMPLATE_LINK_PROPERTIES = frozenset({"templateurl", "templatelink", "templatespecversionid", "templatespecid",
                                       "templates3url", "parameterslink"})
"""Where a deployment takes its template, or an ARM deployment its parameters (parametersLink: the template's
role, scope or CIDR parameters would be what the pack cannot see), from a link."""
_ARM_TYPE_NAMES = {  # ARM type (lower case) -> the azure-native type whose checks it takes, where not regular
    "microsoft.dbforpostgresql/flexibleservers": FLEXIBLE_SERVER,
    "microsoft.dbforpostgresql/flexibleservers/firewallrules": "azure-native:dbforpostgresql:FirewallRule",
    "microsoft.dbforpostgresql/flexibleservers/databases": FLEXIBLE_SERVER_DATABASE,
    "microsoft.dbformysql/flexibleservers": "azure-native:dbformysql:Server",
    "microsoft.dbformysql/flexibleservers/firewallrules": "azure-native:dbformysql:FirewallRule",
    "microsoft.dbforpostgresql/servers": "azure-native:dbforpostgresql:SingleServer",
    "microsoft.dbformysql/servers": "azure-native:dbformysql:SingleServer",
    "microsoft.storage/storageaccounts/blobservices/containers": BLOB_CONTAINER,
    "microsoft.app/containerapps": "azure-native:app:ContainerApp",
    "microsoft.dbforpostgresql/servergroupsv2": "azure-native:dbforpostgresql:Cluster",
    "microsoft.documentdb/mongoclusters": "azure-native:documentdb:MongoCluster",
    "microsoft.graph/approleassignedto": "azuread:index/appRoleAssignment:AppRoleAssignment",  # Bicep's Graph extension
}
_ARM_RENAMED_PROPERTIES = {STORAGE_ACCOUNT: {"supportsHttpsTrafficOnly": "enableHttpsTrafficOnly"}}
"""ARM property names azure-native renames."""
_CFN_PSEUDO_PARAMETERS = {"AWS::Partition": "aws", "AWS::AccountId": "123456789012", "AWS::Region": "us-east-1",
                          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "stack", "AWS::StackId": "stack",
                          "AWS::NotificationARNs": []}
_MAX_TEMPLATE_DEPTH = 4
_MAX_VARIANTS = 256
"""A template resource is judged in every combination of its choice points (its conditions' branches, the
values of a map lookup keyed by the region, ...) up to 256 combinations; beyond, every alternative of every
choice point at least once (every leaf, _CloudFormation.every_leaf), not every combination."""
_MAX_CHOICE_POINTS = 200


class TemplateResource:
    """A resource a template deploys, as the pack judges it: the type it stands for and its properties in
    that type's names."""

    def __init__(self, where: str, kind: str, props: Mapping[str, Any]) -> None:
        self.where, self.kind, self.props = where, kind, props


class _CloudFormationLoader(yaml.SafeLoader):
    """CloudFormation's YAML: its short tags (!Ref, !Sub, !GetAtt, ...) read as the JSON form; a key twice
    (in any case) refused, as JSON text's is."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key_node, _ in node.value:
            name = str(self.construct_object(key_node, deep=deep)).lower()
            if name in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {name!r}", key_node.start_mark)
            seen.add(name)
        return super().construct_mapping(node, deep)


def _cloudformation_tag(loader: yaml.SafeLoader, suffix: str, node: Any) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _cloudformation_tag)


def _parse_template(value: Any) -> Any:
    """A template given as JSON text, YAML text (CloudFormation's) or an object; ValueError where the pack
    cannot read it (neither, a key twice in any case, YAML aliases, which CloudFormation does not take)."""
    try:
        return _parse_template_text(value)
    except RecursionError:
        raise ValueError("nested too deep") from None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _parse_template_text(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            return json.loads(text, object_pairs_hook=_without_duplicate_keys)
        try:
            if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
                raise ValueError("YAML aliases")
            parsed = yaml.load(text, Loader=_CloudFormationLoader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as error:
            raise ValueError(f"neither JSON nor YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(parsed, Mapping):
            raise ValueError("no object")
        return parsed
    duplicate = case_duplicate_key(value)
    if duplicate:
        raise ValueError(f"duplicate key {duplicate!r}")
    return value


def _camel(name: str) -> str:
    """CloudFormation's property name as aws-native spells it: PubliclyAccessible -> publiclyAccessible,
    DBClusterIdentifier -> dbClusterIdentifier, SSEAlgorithm -> sseAlgorithm (names that are no identifier,
    such as environment variables, are kept)."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name):
        return name
    run = re.match(r"[A-Z]*", name).group()  # type: ignore[union-attr]
    if not run:
        return name
    if len(run) == len(name):
        return name.lower()
    if len(run) > 1 and name[len(run)].islower():
        return run[:-1].lower() + name[len(run) - 1:]
    return run.lower() + name[len(run):]


def _pascal(name: str) -> str:
    """CloudFormation's type name as aws-native spells it: DBInstance -> DbInstance, VPCEndpoint -> VpcEndpoint."""
    camel = _camel(name)
    return camel[:1].upper() + camel[1:]


def _camel_keys(value: Any, depth: int = 0) -> Any:
    """Every property name in aws-native's spelling, except inside policy documents (IAM's own names)."""
    if depth > 30:
        return value
    if isinstance(value, Mapping):
        if key(value, "Statement") is not None:
            return value
        return {_camel(str(name)): _camel_keys(item, depth + 1) for name, item in value.items()}
    if is_sequence(value):
        return [_camel_keys(item, depth + 1) for item in value]
    return value


class _Deployed(str):
    """A value the deployment decides, read as its stand-in text (a pseudo parameter's us-east-1, a resource's
    Ref or attribute): never a key the pack may look up in a map, since the deployed value may be another."""


class _Outside(_Deployed):
    """A value from outside the template the pack cannot tell at all: another stack's export (Fn::ImportValue),
    an SSM parameter's value, a custom resource's Ref or attribute, a function the pack does not work out. It
    may be anything, "*" included, and so is judged as "*" (_fail_closed)."""


def _tainted(text: str, parts: Iterable[Any]) -> str:
    """Text made of parts keeps what the least known of them is."""
    parts = list(parts)
    if any(isinstance(part, _Outside) for part in parts):
        return _Outside(text)
    if any(isinstance(part, _Deployed) for part in parts):
        return _Deployed(text)
    return text


def _fail_closed(value: Any, depth: int = 0) -> Any:
    """A resolved template value with every value from outside it (_Outside) as "*": an imported or SSM value
    could be any principal, action, resource, CIDR or policy, so the policies judge the widest."""
    if depth > 40:
        return value
    if isinstance(value, _Outside):
        return "*"
    if isinstance(value, Mapping):
        return {name: _fail_closed(item, depth + 1) for name, item in value.items()}
    if is_sequence(value):
        return [_fail_closed(item, depth + 1) for item in value]
    return value


class _CloudFormation:
    """Reads a CloudFormation template's intrinsic functions far enough to judge it: parameters (the stack's
    values, else their defaults; an SSM parameter type's value is from outside), pseudo parameters, Ref and
    Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap. Where a value depends on what the
    pack cannot fix, it is a choice point with alternatives (`variants` judges every combination): an Fn::If
    (per condition: CloudFormation gives a condition one value in the whole template), a map lookup keyed by a
    value only the deployment knows (the region, the account, a resource's attribute) or by a key the map
    lacks (every value the map has there), an Fn::Select whose index it cannot read (every item)."""

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
        self.template, self.values = template, {}
        self.resources = _mapping(get(template, "Resources"))
        self.assignment: dict[Any, int] = {}
        self.fallback = 0
        self.found: dict[Any, int] = {}
        for name, spec in _mapping(get(template, "Parameters")).items():
            value = parameters.get(name, get(spec, "Default"))
            kind = str(get(spec, "Type", default=""))
            if "AWS::SSM::Parameter::Value" in kind:  # the parameter names an SSM parameter; its value is read then
                value = _Outside(f"(the value of SSM parameter {value})")
            elif isinstance(value, str) and "list" in kind.lower():
                value = [item.strip() for item in value.split(",")]
            self.values[str(name)] = value if value is not None else str(name)

    def choose(self, point: Any, count: int) -> int:
        """The alternative this variant takes at a choice point with `count` alternatives."""
        self.found.setdefault(point, count)
        return min(self.assignment.get(point, self.fallback), count - 1)

    def resolved(self, given: Any, assignment: Mapping[Any, int], fallback: int = 0) -> tuple[Any, dict[Any, int]]:
        self.assignment, self.fallback, self.found = dict(assignment), fallback, {}
        return self.resolve(given), self.found

    def variants(self, given: Any) -> list[Any]:
        """`given` resolved in every combination of its choice points, up to _MAX_VARIANTS combinations;
        beyond that every alternative of every choice point at least once (every leaf), not every combination."""
        complete: list[Any] = []
        pending: list[dict[Any, int]] = [{}]
        while pending:
            assignment = pending.pop()
            resolved, found = self.resolved(given, assignment)
            open_points = [point for point in found if point not in assignment]
            if not open_points:
                complete.append(resolved)
                continue
            point = open_points[0]
            if len(complete) + len(pending) + found[point] > _MAX_VARIANTS:
                return _unique(self.every_leaf(given))
            pending += [{**assignment, point: choice} for choice in reversed(range(found[point]))]
        return _unique(complete)

    def every_leaf(self, given: Any) -> list[Any]:
        """Variants that between them take every alternative of every choice point: all points at their
        first, second, ... alternative, and each point at each alternative with the others at their first or
        second (so a point met only inside another's second branch is taken at each of its own)."""
        found: dict[Any, int] = {}
        variants: list[Any] = []
        fallback, widest = 0, 1
        while fallback < widest:
            resolved, more = self.resolved(given, {}, fallback)
            variants.append(resolved)
            found.update({point: count for point, count in more.items() if point not in found})
            widest = max([widest, *found.values()])
            fallback += 1
        done: set[Any] = set()
        while len(done) < len(found) and len(done) < _MAX_CHOICE_POINTS:
            point = next(point for point in found if point not in done)
            done.add(point)
            for choice in range(found[point]):
                for fallback in (0, 1):
                    resolved, more = self.resolved(given, {point: choice}, fallback)
                    variants.append(resolved)
                    found.update({other: count for other, count in more.items() if other not in found})
        return variants

    def ref(self, name: Any) -> Any:
        text = str(name)
        if text in _CFN_PSEUDO_PARAMETERS:
            value = _CFN_PSEUDO_PARAMETERS[text]
            return _Deployed(value) if isinstance(value, str) else value
        if text == "AWS::NoValue":
            return None
        if text in self.values:
            return self.values[text]
        return self.attribute(text, "")

    def attribute(self, logical: str, attribute: str) -> Any:
        """A resource's Ref or attribute: a managed policy of the template by its ARN (the policy itself is
        judged by its statements); another AWS resource's value is the deployment's; a custom resource's (or a
        nested stack's, a module's, a registry type's) may be anything."""
        resource_type = str(get(self.resources.get(logical), "Type", default=""))
        if resource_type == "AWS::IAM::ManagedPolicy" and attribute in ("", "PolicyArn"):
            policy_name = get(self.resources[logical], "Properties", "ManagedPolicyName")
            return f"arn:aws:iam::123456789012:policy/{policy_name if isinstance(policy_name, str) else logical}"
        text = f"{logical}.{attribute}" if attribute else logical
        if resource_type.startswith("AWS::") and not resource_type.startswith("AWS::CloudFormation::") \
                and not resource_type.endswith("::MODULE"):
            return _Deployed(text)
        return _Outside(text)

    def substitute(self, text: str, variables: Mapping[str, Any]) -> str:
        parts: list[Any] = []

        def one(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                value = self.resolve(variables[name])
            elif "." in name and name.split(".", 1)[0] not in _CFN_PSEUDO_PARAMETERS:
                value = self.attribute(*name.split(".", 1))
            else:
                value = self.ref(name)
            parts.append(value)
            return value if isinstance(value, str) else ",".join(map(str, as_list(value)))
        return _tainted(re.sub(r"\$\{(?!!)([^}]*)\}", one, text), parts)

    def resolve(self, value: Any, depth: int = 0) -> Any:
        if depth > 20:
            return value
        if isinstance(value, Mapping) and len(value) == 1:
            (function, argument), = value.items()
            function = str(function)
            if function == "Ref":
                return self.ref(argument)
            if function.startswith("Fn::") or function == "Condition":
                return self.function(function, argument, depth)
        if isinstance(value, Mapping):
            resolved = {name: self.resolve(item, depth + 1) for name, item in value.items()}
            return {name: item for name, item in resolved.items() if item is not None}
        if is_sequence(value):
            return [item for item in (self.resolve(item, depth + 1) for item in value) if item is not None]
        return value

    def function(self, function: str, argument: Any, depth: int) -> Any:
        if function == "Fn::If" and is_sequence(argument) and len(argument) == 3:
            condition, *branches = argument
            return self.resolve(branches[self.choose(("Fn::If", str(condition)), 2)], depth + 1)
        argument = argument if function == "Fn::Sub" else self.resolve(argument, depth + 1)
        items = as_list(argument)
        if function == "Fn::Sub":
            text, variables = (items[0], items[1] if len(items) > 1 and isinstance(items[1], Mapping) else {}) \
                if is_sequence(argument) else (argument, {})
            return self.substitute(str(text), variables)
        if function == "Fn::Join" and len(items) == 2:
            return _tainted(str(items[0]).join(str(item) for item in as_list(items[1])), [items[0], *as_list(items[1])])
        if function == "Fn::Select" and len(items) == 2:
            index, choices = _port(items[0]), as_list(items[1])
            if index is not None and -len(choices) <= index < len(choices) and not isinstance(items[0], _Deployed):
                return choices[index]
            if not choices:
                return _Outside(f"Fn::Select({json.dumps(items, default=str)[:80]})")
            return choices[self.choose(("Fn::Select", json.dumps(items, default=str)), len(choices))]
        if function == "Fn::Split" and len(items) == 2 and isinstance(items[1], str):
            return [_tainted(part, [items[1]]) for part in items[1].split(str(items[0]))]
        if function == "Fn::FindInMap" and len(items) >= 3:
            return self.find_in_map(items[:3])
        if function in ("Fn::Base64", "Fn::ToJsonString"):
            return argument if function == "Fn::Base64" else json.dumps(argument, default=str)
        if function == "Fn::GetAtt" and items:
            return self.attribute(str(items[0]), ".".join(str(item) for item in items[1:]))
        return _Outside(f"{function}({json.dumps(argument, default=str)[:80]})")

    def find_in_map(self, keys: list[Any]) -> Any:
        """A map lookup: a key the deployment decides (the region, a resource's attribute, an SSM value) or one
        the map lacks stands for every key of the map at that level; every value found is an alternative."""
        candidates: list[Any] = [_mapping(get(self.template, "Mappings"))]
        for lookup in keys:
            found = []
            for level in candidates:
                if not isinstance(level, Mapping):
                    continue
                matching = [name for name in level if str(name) == str(lookup)]
                if isinstance(lookup, (str, int, float)) and not isinstance(lookup, _Deployed) and matching:
                    found.append(level[matching[0]])
                else:
                    found += list(level.values())
            candidates = found
        if not candidates:
            return _Outside(f"Fn::FindInMap({json.dumps(keys, default=str)[:80]})")
        if len(candidates) == 1:
            return candidates[0]
        return candidates[self.choose(("Fn::FindInMap", json.dumps(keys, default=str)), len(candidates))]


def _unique(variants: list[Any]) -> list[Any]:
    seen: set[str] = set()
    unique = []
    for variant in variants:
        fingerprint = json.dumps(variant, sort_keys=True, default=str)
        if fingerprint not in seen:
            seen.add(fingerprint)
            unique.append(variant)
    return unique


def _cloudformation_expansions(template: Mapping[str, Any]) -> list[str]:
    """What in a CloudFormation template is expanded from elsewhere, which the pack cannot read: a macro or
    AWS::Include (a top-level Transform other than SAM's, any Fn::Transform), a module, a SAM application
    (a template at a location)."""
    found = []
    for item in as_list(key(template, "Transform")):
        transform = get(item, "Name") if isinstance(item, Mapping) else item
        if str(transform).strip() != "AWS::Serverless-2016-10-31":
            found.append(f"the Transform {transform}")
    if _has_key(template, "fn::transform"):
        found.append("Fn::Transform (AWS::Include or a macro)")
    for logical, resource in _mapping(key(template, "Resources")).items():
        resource_type = str(get(resource, "Type", default=""))
        if resource_type.endswith("::MODULE") or resource_type == "AWS::Serverless::Application":
            found.append(f"resource {logical} ({resource_type})")
    return found


def _has_key(value: Any, name: str, depth: int = 0) -> bool:
    if depth > 40:
        return False
    if isinstance(value, Mapping):
        return any(str(item).strip().lower() == name or _has_key(value[item], name, depth + 1) for item in value)
    if is_sequence(value):
        return any(_has_key(item, name, depth + 1) for item in value)
    return False


def _cloudformation_resources(template: Mapping[str, Any], parameters: Mapping[str, Any], where: str
                              ) -> list[TemplateResource]:
    reader = _CloudFormation(template, parameters)
    found = []
    resources = get(template, "Resources", default={})
    for logical, resource in (resources.items() if isinstance(resources, Mapping) else []):
        resource_type = str(get(resource, "Type", default=""))
        parts = resource_type.split("::")
        if len(parts) != 3 or parts[0] not in ("AWS", "Alexa"):  # Custom::..., modules
            continue
        kind = f"aws-native:{parts[1].lower()}:{_pascal(parts[2])}"
        variants = reader.variants(get(resource, "Properties", default={}))
        for index, resolved in enumerate(variants):  # every combination of its choice points
            props = _camel_keys(_fail_closed(resolved))
            branch = f", variant {index + 1} of {len(variants)}" if len(variants) > 1 else ""
            found.append(TemplateResource(f"{where} resource {logical} ({resource_type}{branch})", kind,
                                          props if isinstance(props, Mapping) else {}))
    return found


def _arm_resolve(value: Any, parameters: Mapping[str, Any], variables: Mapping[str, Any], depth: int = 0) -> Any:
    """An ARM template's values with parameters('x') and variables('x') put in: a whole expression becomes the
    value, one inside a longer expression its quoted text (enough to find a role definition's GUID)."""
    if depth > 20:
        return value
    if isinstance(value, str) and value.startswith("[") and not value.startswith("[["):
        whole = re.fullmatch(r"\[\s*(parameters|variables)\(\s*'([^']*)'\s*\)\s*\]", value, re.IGNORECASE)
        if whole:
            table = parameters if whole.group(1).lower() == "parameters" else variables
            return _arm_resolve(table.get(whole.group(2), value), parameters, variables, depth + 1)

        def inner(match: re.Match[str]) -> str:
            table = parameters if match.group(1).lower() == "parameters" else variables
            found = table.get(match.group(2))
            return f"'{found}'" if isinstance(found, (str, int, float)) else match.group(0)
        return re.sub(r"(parameters|variables)\(\s*'([^']*)'\s*\)", inner, value, flags=re.IGNORECASE)
    if isinstance(value, Mapping):
        return {name: _arm_resolve(item, parameters, variables, depth + 1) for name, item in value.items()}
    if is_sequence(value):
        return [_arm_resolve(item, parameters, variables, depth + 1) for item in value]
    return value


def _flatten_properties(value: Any, depth: int = 0) -> Any:
    """ARM's `properties` objects folded into their parents, as azure-native's inputs have them."""
    if depth > 30:
        return value
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for name, item in value.items():
            if str(name).lower() == "properties" and isinstance(item, Mapping):
                flat.update({inner: _flatten_properties(nested, depth + 1) for inner, nested in item.items()})
            else:
                flat.setdefault(str(name), _flatten_properties(item, depth + 1))
        return flat
    if is_sequence(value):
        return [_flatten_properties(item, depth + 1) for item in value]
    return value


def _arm_kind(resource_type: str) -> str | None:
    """The azure-native type an ARM type stands for; an extension resource in the older syntax
    (`Microsoft.Management/managementGroups/providers/roleAssignments`) as the extension's own type."""
    lowered = resource_type.strip().lower()
    if lowered.split("@", 1)[0] in _ARM_TYPE_NAMES:  # an extension's type carries its version (`...@v1.0`)
        return _ARM_TYPE_NAMES[lowered.split("@", 1)[0]]
    if "/providers/" in lowered:
        extension = resource_type.strip()[lowered.rindex("/providers/") + len("/providers/"):]
        if "/" not in extension.strip("/") and extension.strip("/"):
            resource_type = f"Microsoft.Authorization/{extension.strip('/')}" if extension.lower().startswith(
                ("role", "deny", "lock", "policy")) else resource_type
    namespace, _, path = resource_type.strip().partition("/")
    if not path or not namespace.lower().startswith("microsoft."):
        return None
    last = path.rsplit("/", 1)[-1]
    singular = last[:-1] if last.endswith("s") else last
    return f"azure-native:{namespace.split('.', 1)[1].lower()}:{singular[:1].upper()}{singular[1:]}"


def _arm_parameter_values(parameters: Any) -> dict[str, Any]:
    """A deployment's parameters ({"name": {"value": ...}}, or JSON text of them)."""
    if isinstance(parameters, str):
        try:
            parameters = json.loads(parameters) if parameters.strip() else {}
        except ValueError:
            return {}
    parameters = get(parameters, "parameters", default=parameters)
    return {str(name): get(spec, "value") for name, spec in parameters.items()} \
        if isinstance(parameters, Mapping) else {}


def _arm_resources(template: Mapping[str, Any], given: Mapping[str, Any], scope: str, where: str,
                   depth: int = 0) -> tuple[list[TemplateResource], list[str]]:
    """The resources of an ARM template deployed at `scope` (a path, or a stand-in above a resource group),
    nested deployments and child resources included."""
    found: list[TemplateResource] = []
    problems: list[str] = []
    if depth > _MAX_TEMPLATE_DEPTH:
        return found, [f"{where} nests deployments deeper than the pack reads"]
    parameters = {str(name): get(spec, "defaultValue") for name, spec in _mapping(get(template, "parameters")).items()}
    parameters.update({name: value for name, value in given.items() if value is not None})
    variables = dict(_mapping(get(template, "variables")))
    variables = {name: _arm_resolve(value, parameters, variables) for name, value in variables.items()}
    resources = get(template, "resources", default=[])
    listed = list(resources.items()) if isinstance(resources, Mapping) else list(enumerate(as_list(resources)))
    queue = [(str(name), resource, "") for name, resource in listed]
    while queue:
        name, resource, parent_type = queue.pop(0)
        if not isinstance(resource, Mapping) or is_true(get(resource, "existing")):  # a reference, not deployed
            continue
        resource = _arm_resolve(resource, parameters, variables)
        resource_type = str(get(resource, "type", default=""))
        if parent_type and "/" not in resource_type.split("/", 1)[-1] and not resource_type.lower().startswith(
                "microsoft."):
            resource_type = f"{parent_type}/{resource_type}"
        label_ = f"{where} resource {get(resource, 'name', default=name)} ({resource_type})"
        queue += [(f"{name}/{index}", child, resource_type)
                  for index, child in enumerate(as_list(get(resource, "resources")))]
        if resource_type.lower() == "microsoft.resources/deployments":
            nested_scope = _nested_deployment_scope(resource, scope)
            inner = get(resource, "properties", "template")
            if get(resource, "properties", "templateLink") is not None and inner is None:
                problems.append(f"{label_} links its template (templateLink), which the pack cannot read")
                continue
            if get(resource, "properties", "parametersLink") is not None:
                problems.append(f"{label_} links its parameters (parametersLink), which the pack cannot read")
                continue
            if isinstance(inner, Mapping):
                more, more_problems = _arm_resources(
                    inner, _arm_parameter_values(get(resource, "properties", "parameters", default={})),
                    nested_scope, label_, depth + 1)
                found += more
                problems += more_problems
            continue
        kind = _arm_kind(resource_type)
        if kind is None:
            continue
        props = _flatten_properties({name: value for name, value in resource.items() if name != "resources"})
        loops = props.get("copy")
        for loop in (loops if is_sequence(loops) else []):  # property iteration: `input` once stands for each item
            if isinstance(loop, Mapping) and isinstance(get(loop, "name"), str) and get(loop, "input") is not None:
                props.setdefault(str(loop["name"]), [get(loop, "input")])
        for old, new in _ARM_RENAMED_PROPERTIES.get(kind, {}).items():
            if old in props and new not in props:
                props[new] = props.pop(old)
        props["scope"] = _arm_resource_scope(resource_type, get(resource, "scope"), scope)
        if _is_azure_role_assignment(kind) and azure_scope_above_resource_group(props["scope"]) and \
                not _GUID.search(str(get(props, "roleDefinitionId", default=""))) and \
                not get(props, "roleDefinitionName"):
            problems.append(f"{label_} assigns a role the pack cannot tell ({get(props, 'roleDefinitionId')}) above "
                            "a resource group")
        found.append(TemplateResource(label_, kind, props))
    return found, problems


_ABOVE_SCOPE_EXPRESSION = re.compile(r"\[\s*(?:subscription\(\s*\)\.id|managementgroup\(|tenant\(|"
                                     r"format\(\s*'/providers/microsoft\.management|"
                                     r"concat\(\s*'/providers/microsoft\.management|'/subscriptions/[^/']*'\s*\])",
                                     re.IGNORECASE)
_ABOVE_EXTENSION_PARENTS = ("microsoft.management/managementgroups/", "microsoft.resources/subscriptions/",
                            "microsoft.subscription/")


def _arm_resource_scope(resource_type: str, explicit: Any, scope: str) -> str:
    """Where an ARM template's resource applies (what an extension resource such as a role assignment grants
    on): its `scope` when that is a path, a subscription, management group or the tenant when its `scope`
    expression names one or the older extension syntax hangs it on one, else where the deployment deploys
    (a resource's own scope is narrower still)."""
    if isinstance(explicit, str) and explicit.strip().startswith("/"):
        return explicit
    if isinstance(explicit, str) and _ABOVE_SCOPE_EXPRESSION.match(explicit.strip()):
        return _ABOVE_A_RESOURCE_GROUP
    lowered = resource_type.strip().lower()
    if "/providers/" in lowered and lowered.startswith(_ABOVE_EXTENSION_PARENTS):
        return _ABOVE_A_RESOURCE_GROUP
    return scope


def _nested_deployment_scope(resource: Mapping[str, Any], scope: str) -> str:
    """Where a nested Microsoft.Resources/deployments deploys: its `scope`, a resource group it names, a
    subscription it names, else where its parent deploys."""
    explicit = get(resource, "scope")
    if isinstance(explicit, str) and explicit.startswith("/"):
        return explicit
    if get(resource, "resourceGroup"):
        return f"/subscriptions/{get(resource, 'subscriptionId', default='0')}/resourceGroups/" \
               f"{get(resource, 'resourceGroup')}"
    if get(resource, "subscriptionId"):
        return f"/subscriptions/{get(resource, 'subscriptionId')}"
    if explicit:
        return _ABOVE_A_RESOURCE_GROUP
    return scope


_ABOVE_A_RESOURCE_GROUP = "/(the deployment's scope: a subscription, management group or the root)"


def _deployment_scope(kind: str, props: Mapping[str, Any]) -> str:
    """Where an ARM deployment deploys its template: a resource group's path, the scope it names, or a
    stand-in above a resource group (a subscription's, management group's, the tenant's deployment; a
    template spec, deployed anywhere)."""
    short = kind.rsplit(":", 1)[-1].lower()
    group = f"/subscriptions/(the deployment's)/resourceGroups/{get(props, 'resourceGroupName', default='(its)')}"
    if kind.startswith("azure-native:resources:"):
        if short == "deploymentatscope":
            return str(get(props, "scope", default="")) or _ABOVE_A_RESOURCE_GROUP
        if short in ("deployment", "deploymentstackatresourcegroup"):
            return group
        if "tenant" in short:
            return "/"
        return _ABOVE_A_RESOURCE_GROUP
    if short in ("resourcegrouptemplatedeployment", "templatedeployment"):
        return group
    if kind.startswith("azure-native:blueprint:") and get(props, "resourceGroup"):
        return f"/subscriptions/(the blueprint's)/resourceGroups/{get(props, 'resourceGroup')}"
    return _ABOVE_A_RESOURCE_GROUP


def _template_properties(kind: str, props: Mapping[str, Any]) -> set[str]:
    """The properties of a resource that hold (or link) a template, which the template reading judges."""
    if not kind.startswith(TEMPLATE_MODULES):
        return set()
    names = _TEMPLATE_TEXT_PROPERTIES | _TEMPLATE_LINK_PROPERTIES | {"properties", "linkedtemplates"}
    return {str(name) for name in props if str(name).lower() in names}


def template_resources(kind: str, props: Mapping[str, Any], where: str = "its template"
                       ) -> tuple[list[TemplateResource], list[str]]:
    """The resources a CloudFormation stack or stack set, or an ARM deployment, deployment stack or
    template spec deploys (an ARM template's nested deployments included; a CloudFormation stack set in a
    template is itself such a resource), and what in them the pack cannot read (a template it is only
    linked to, text that is no JSON or YAML object, a key twice in any case)."""
    found: list[TemplateResource] = []
    problems: list[str] = []
    if not kind.startswith(TEMPLATE_MODULES):
        return found, problems
    scopes = [props, get(props, "properties", default={})]
    templates = []
    for holder in scopes:
        if not isinstance(holder, Mapping):
            continue
        for name in list(holder):
            lowered = str(name).lower()
            value = holder[name]
            if lowered in _TEMPLATE_LINK_PROPERTIES and value not in (None, "", {}):
                what = f"{where}'s parameters are" if lowered == "parameterslink" else f"{where} is"
                problems.append(f"{what} linked ({name}), not given: the pack cannot read them")
            elif lowered in _TEMPLATE_TEXT_PROPERTIES and value not in (None, "", {}):
                templates.append((f"{where} ({name})", value))
            elif lowered == "linkedtemplates":
                templates += [(f"{where} (linkedTemplates[{index}])", get(linked, "template"))
                              for index, linked in enumerate(as_list(value)) if get(linked, "template")]
    for label_, given in templates:
        try:
            template = _parse_template(given)
        except ValueError as error:
            problems.append(f"{label_} cannot be read ({error})")
            continue
        if not isinstance(template, Mapping):
            problems.append(f"{label_} is no object")
            continue
        if kind.startswith(("aws:cloudformation/", "aws-native:cloudformation:")):
            problems += [f"{label_} uses {expansion}, which CloudFormation expands from elsewhere (a macro's "
                         "function, an S3 location, the registry): the pack cannot read what it deploys"
                         for expansion in _cloudformation_expansions(template)]
            parameters = get(props, "parameters", default={})
            if is_sequence(parameters):  # aws-native StackSet: [{parameterKey, parameterValue}]
                parameters = {str(get(item, "parameterKey")): get(item, "parameterValue") for item in parameters}
            more = _cloudformation_resources(template, dict(parameters) if isinstance(parameters, Mapping) else {},
                                             label_)
            more_problems: list[str] = []
        else:
            given_parameters = _arm_parameter_values(
                get(props, "parameters", default=get(props, "properties", "parameters",
                                                     default=get(props, "parametersContent", default={}))))
            more, more_problems = _arm_resources(template, given_parameters, _deployment_scope(kind, props), label_)
        problems += more_problems
        found += more
    return found, problems


def _with_templates(validate: Callable[[ResourceValidationArgs, ReportViolation], None]
                    ) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    """A resource policy that also judges every resource a template of the resource deploys, as the type it
    stands for (and a template such a resource deploys in turn); its reports name the deploying resource."""
    def run(args: ResourceValidationArgs, report: ReportViolation, depth: int = 0) -> None:
        validate(args, report)
        kind = normalized_type(args.resource_type)
        if not kind.startswith(TEMPLATE_MODULES) or depth > _MAX_TEMPLATE_DEPTH:
            return
        resources, _ = template_resources(kind, args.props)
        for resource in resources:
            def report_in(message: str, urn: str | None = None, where: str = resource.where) -> None:
                report(f"{label(kind, args.name)} deploys {where}: {message}", None)

            run(ResourceValidationArgs(resource.kind, resource.props, args.urn, args.name, args.opts, args.provider,
                                       args.get_config()), report_in, depth + 1)
    return run


# --- the policies ------------------------------------------------------------------------------------------

def _resource_policy(name: str, description: str, validate: Callable[[ResourceValidationArgs, ReportViolation], None],
                     config_schema: PolicyConfigSchema | None = None) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(name=name, description=description, validate=_with_templates(validate),
                                    enforcement_level=MANDATORY, config_schema=config_schema)


def _stack_policy(name: str, description: str, validate: Callable[[StackValidationArgs, ReportViolation], None],
                  config_schema: PolicyConfigSchema | None = None) -> StackValidationPolicy:
    return StackValidationPolicy(name=name, description=description, validate=validate, enforcement_level=MANDATORY,
                                 config_schema=config_schema)


database_not_public = _resource_policy(
    "database-not-public",
    "The metadata database is never reachable from the internet: RDS instances and clusters (the AWS provider's "
    "and aws-native's) are not publicly accessible, and say so where RDS would make them public by default "
    "(aws-native, CloudFormation, Multi-AZ clusters); no database snapshot is shared with every account; "
    "PostgreSQL, MySQL, MariaDB, SQL and Cosmos DB for PostgreSQL servers on Azure (azure-native, any API version, "
    "and the classic provider) have public network access disabled.",
    validate_database_not_public)

database_port_closed_to_internet = _resource_policy(
    "database-port-closed-to-internet",
    "No rule admits a non-private source (anything outside RFC 1918, 100.64.0.0/10, loopback, link-local, ULA) to a "
    "database port (5432 and the other RDS engines' ports, also through all-port and all-protocol rules, however "
    "the protocol is spelled): AWS security groups and their rule resources (also aws-native's), Lightsail ports, "
    "Azure NSG rules, Azure database server firewall rules; no prefix list holds a non-private CIDR; no docker "
    "container, Container App or container group publishes a database port to the internet.",
    validate_database_port_closed_to_internet)

storage_encrypted = _resource_policy(
    "storage-encrypted",
    "Data at rest is encrypted: RDS storage, S3 default encryption (either provider), and no flexible server or "
    "storage account that disables or misconfigures its encryption.",
    validate_storage_encrypted)

storage_not_public = _resource_policy(
    "storage-not-public",
    "Artifacts are never public: S3 public access blocks (a bucket's, the account's) have all four flags on, no "
    "public ACL or grant on a bucket or object (S3, MinIO), no bucket policy that allows any principal, storage "
    "accounts forbid public blob access, blob containers are private; no image is launchable by every account.",
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
    "that grants permissions, credentials or public access (iam:Put*, iam:Attach*, sso:*, kms:PutKeyPolicy, "
    "s3:PutBucketPolicy, ...), or a wildcard resource except for the few actions AWS accepts only on \"*\"; no "
    "AWS-managed policy attached but the few that only write telemetry or pull images (ReadOnlyAccess reads every "
    "bucket), nor a customer-managed one named like an administrator's; no Identity Center assignment, identity "
    "store membership or delegated administrator the configuration does not list, nor an Entra ID directory role, "
    "group membership or PIM group assignment, nor a Graph app role that takes over the directory; no trust or "
    "resource policy open to any principal, no OIDC trust without a subject; no Azure Owner, Contributor, User Access "
    "Administrator or RBAC Administrator (nor another role that grants roles or a managed identity's tokens) above a "
    "resource group (also through PIM or Lighthouse), no custom Azure role with \"*\", role assignment or managed "
    "identity credential rights assignable there; the same inside CloudFormation and ARM templates.",
    validate_iam_least_privilege, IAM_CONFIG_SCHEMA)

logs_have_retention = _resource_policy(
    "logs-have-retention",
    "Logs expire: CloudWatch log groups set retentionInDays; Log Analytics workspaces keep Azure's 30 days or set "
    "a number of days.",
    validate_log_retention)

stateful_resources_protected = _stack_policy(
    "stateful-resources-protected",
    "What holds data survives a mistaken `pulumi up` or `destroy`: databases, buckets, storage accounts and "
    "containers are protected; docker volumes that hold a container's data are protected or kept on delete "
    "(configurable for throw-away stacks).",
    validate_stateful_resources_protected, PROTECTION_CONFIG_SCHEMA)

no_plaintext_secrets_in_container_env = _resource_policy(
    "no-plaintext-secrets-in-container-env",
    "No container gets a secret as a plain environment value or on its command line: ECS task definitions use "
    "`secrets`, Container Apps `secretRef`, container groups `secureValue`, docker containers get files; judged by "
    "the variable's name (PASSWORD, SECRET, TOKEN, KEY, ...) and by values that carry credentials (URLs with a "
    "password, DSNs, SAS tokens, connection strings, PEM keys, Authorization values); nor in a health check's "
    "command or a probe's headers.",
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



def unknown_policy_names(names: Iterable[str]) -> list[str]:
    """The names in a `--policy-pack-config` that are no policy of this pack. The CLI hands every name of
    the file to `Configure` (pkg/resource/analyzer/config.go, applyConfig), validates only the pack's own,
    and pulumi_policy stores the rest unread: a typo would keep the policy it meant unconfigured. "all" is
    the CLI's name for every policy."""
    known = {policy.name for policy in POLICIES} | {"all"}
    return sorted(str(name) for name in names if name not in known)


TEARDOWN_EXCEPTION = ("stateful-resources-protected", "disabled")
"""The one enforcement level a configuration may set besides mandatory: a teardown from a workstation
(README, "The policy pack"), the same as the policy's `requireProtection: false`."""


def refused_enforcement_levels(levels: Mapping[str, str]) -> list[str]:
    """What in a `Configure` call's enforcement levels (policy name or "all" -> "mandatory", "advisory",
    "disabled", "remediate") the pack refuses: anything but mandatory, besides TEARDOWN_EXCEPTION. pulumi_policy
    honours whatever level it is sent, and the CLI spreads "all" over every policy (applyConfig), so
    `"iam-least-privilege": "advisory"` or `"all": "disabled"` would switch the pack's promises off."""
    refused = []
    for name, level in sorted(levels.items()):
        level = str(level).strip().lower()
        if level != "mandatory" and (str(name), level) != TEARDOWN_EXCEPTION:
            refused.append(f"{name} to {level}")
    return refused


__all__ = ["POLICIES", "PACK_NAME", "PACK_DESCRIPTION", "ACTIONS_ONLY_ON_ANY_RESOURCE", "DATABASE_PORTS",
           "PolicyConfigError", "looks_like_secret_name", "looks_like_secret_value", "denies_insecure_transport",
           "wildcard_problems", "trust_problems", "resource_reach", "broad_managed_policy", "is_private_network",
           "allowed_actions_on_any_resource", "protection_required", "normalized_type",
           "open_principal_problems", "narrowing_condition_keys", "secret_arguments", "public_acl",
           "unknown_policy_names", "refused_enforcement_levels", "identity_center_allowances",
           "NARROW_AWS_MANAGED_POLICIES", "template_resources"]
