"""AWS's rules for the names and descriptions the `aws` stack sets, each with its source, and the
functions that make `<instance>-<stack>` fit them. A Pulumi stack name may hold upper-case letters,
`_` and `.` (`Prod`, `eu_prod`), which ECR, RDS and others refuse: every physical name the stack
sets starts from `prefix()`, never from the raw stack name.

Plain data and pure functions: the unit tests check every recorded graph against these rules.
"""

import re

# EC2 CreateSecurityGroup `GroupDescription` (and the rules' descriptions): up to 255 characters of
# a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=&;{}!$* (no apostrophe, no quote):
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html
EC2_DESCRIPTION = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{0,255}$")

# RDS DBInstanceIdentifier: 1-63 letters, digits or hyphens, first a letter, no two consecutive
# hyphens, not ending with one; a DBSnapshotIdentifier the same up to 255:
# https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html
# https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSnapshot.html
RDS_IDENTIFIER = re.compile(r"^(?!.*--)[a-zA-Z][a-zA-Z0-9-]*(?<!-)$")
RDS_INSTANCE_MAX = 63
# identifier_prefix: the provider appends a 26-character unique suffix to an identifier of at most 63
# https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/db_instance#identifier_prefix
RDS_IDENTIFIER_PREFIX_MAX = RDS_INSTANCE_MAX - 26
RDS_SNAPSHOT_MAX = 255

# ECR repository names: lower-case components joined by `/`, each [a-z0-9]+ with single . _ - between,
# 2-256 characters: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html
ECR_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")

# S3 bucket_prefix: the provider appends a 26-character unique suffix to a bucket name of at most
# 63, so the prefix may hold at most 37 (terraform-provider-aws, `bucket_prefix`):
# https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/s3_bucket#bucket_prefix
S3_BUCKET_PREFIX_MAX = 37

# EventBridge Scheduler schedule names: 1-64 of [0-9a-zA-Z-_.]:
# https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html
SCHEDULE_NAME = re.compile(r"^[0-9a-zA-Z_.-]{1,64}$")

# SQS queue names: 1-80 of letters, digits, `-` and `_`:
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html
SQS_QUEUE_NAME_MAX = 80

# EventBridge rule names: 1-64 of letters, digits, `.`, `-` and `_`:
# https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html
EVENT_RULE_NAME_MAX = 64

# SNS topic names: 1-256 of letters, digits, `_` and `-`:
# https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html
SNS_TOPIC = re.compile(r"^[a-zA-Z0-9_-]{1,256}$")

# ECS cluster names and task definition families: up to 255 letters, digits, `-` and `_`:
# https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateCluster.html
# https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RegisterTaskDefinition.html
ECS_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")

# Cloud Map HTTP namespace names: up to 1024 of letters, digits, `-`, `_` and `.`, starting with a
# letter or digit: https://docs.aws.amazon.com/cloud-map/latest/api/API_CreateHttpNamespace.html
NAMESPACE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,1023}$")

# Secrets Manager secret names: letters, digits and /_+=.@- (the name prefix gets a suffix of AWS's):
# https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html
SECRET_NAME = re.compile(r"^[a-zA-Z0-9/_+=.@-]{1,512}$")

# CloudWatch Logs log group names: 1-512 of letters, digits and _-./#:
# https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html
LOG_GROUP = re.compile(r"^[a-zA-Z0-9_\-./#]{1,512}$")

# Load balancer and target group `name_prefix`: at most 6 characters (the provider's rule; names
# are letters, digits and hyphens): https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/lb#name_prefix
LB_NAME_PREFIX = re.compile(r"^[a-zA-Z0-9-]{1,6}$")

# What every name above accepts: lower-case letters, digits and single hyphens, starting with a letter.
_NOT_ALLOWED = re.compile(r"[^a-z0-9]+")


def prefix(instance: str, stack: str) -> str:
    """`<instance>-<stack>` lower-cased, every run of other characters one hyphen, starting with a
    letter: valid in every name above (`Prod` -> `prod`, `eu_prod` -> `eu-prod`)."""
    text = _NOT_ALLOWED.sub("-", f"{instance}-{stack}".lower()).strip("-")
    return text if text[:1].isalpha() else f"m-{text}"


def fit(name: str, limit: int) -> str:
    """`name` cut to `limit` characters, never ending with a hyphen."""
    return name[:limit].rstrip("-")


def suffixed(name: str, suffix: str, limit: int) -> str:
    """`name` cut to leave room for `-<suffix>` within `limit` characters, then the suffix: what the
    name is for stays readable whatever the length of `<instance>-<stack>`."""
    return f"{fit(name, limit - len(suffix) - 1)}-{suffix}"


def ec2_description(text: str) -> str:
    """`text` unchanged when EC2 accepts it as a description; a plain error at preview otherwise
    (rather than an InvalidParameterValue half-way through `pulumi up`)."""
    if not EC2_DESCRIPTION.match(text):
        raise ValueError(f"EC2 refuses this description (allowed: a-zA-Z0-9 ._-:/()#,@[]+=&;{{}}!$*): {text!r}")
    return text


# A resource given no name is named by Pulumi: its logical name, "-" and 7 random characters
# (pulumi/sdk, resource.NewUniqueHex); one that would be too long is refused before anything is created.
# IAM role names are 1-64 characters (https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html),
# and the provider's `name_prefix` at most 38, to which it adds 26 (terraform-provider-aws, iam_role:
# roleNamePrefixMaxLen = 64 - id.UniqueIDSuffixLength).
AUTONAME_SUFFIX = 8
IAM_ROLE_NAME_MAX = 64
IAM_ROLE_NAME_PREFIX_MAX = IAM_ROLE_NAME_MAX - 26


def iam_role_naming(logical_name: str) -> dict:
    """The naming arguments of an IAM role: none (Pulumi's auto-name, as every stack that deployed had it)
    while the logical name leaves room for Pulumi's suffix, else a `name_prefix` cut from it (a long
    MlflowTrackingServer name: `<instance>-server-gc-scheduler-role` passed 64 from 31 characters on)."""
    if len(logical_name) + AUTONAME_SUFFIX <= IAM_ROLE_NAME_MAX:
        return {}
    return {"name_prefix": fit(logical_name, IAM_ROLE_NAME_PREFIX_MAX - 1) + "-"}
