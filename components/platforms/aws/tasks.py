"""What an ECS task runs, as plain data: its container definitions and its roles' IAM documents.

No Pulumi here: the platform calls these inside `apply` with resolved values, and the unit tests
read the JSON they produce. Secret values never enter a definition: containers name their secrets
by ARN (`secrets`), and a label carries each value's SHA-256, so that a changed secret changes the
task definition and ECS starts tasks that read the new value (ECS reads secrets only at task start).
"""

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from components.platforms.containers import file_env_name, with_files
from components.spec import ContainerSpec

ECS_MAX_STOP_TIMEOUT_SECONDS = 120
DIGEST_LABEL_PREFIX = "org.mlflow-platform.secret-sha256."
ASSUME_ECS_TASKS = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}],
})
ECS_EXEC_STATEMENT = {
    # ECS Exec's channels (Session Manager); these actions have no resource-level permissions.
    "Sid": "EcsExec", "Effect": "Allow", "Resource": "*",
    "Action": ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
               "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"],
}


@dataclass(frozen=True)
class Container:
    """One container of a task, with where its secrets come from."""

    spec: ContainerSpec
    secret_names: Sequence[str] = ()
    """Env vars filled from Secrets Manager (value_from has the ARN or reference of each)."""


@dataclass(frozen=True)
class Task:
    """Everything a task's container definitions are rendered from (values resolved)."""

    service_name: str
    main: Container
    init: Sequence[Container] = ()
    """Run in order, each to completion (dependsOn SUCCESS), before the main container."""
    plain_files: Mapping[str, str] = field(default_factory=dict)
    runtime_paths: Sequence[str] = ()
    value_from: Mapping[str, str] = field(default_factory=dict)
    """Env var -> Secrets Manager ARN (or `arn:key::` for a value inside a JSON secret)."""
    digests: Mapping[str, str] = field(default_factory=dict)
    """Env var -> SHA-256 of the secret's value, for the secrets whose values the stack knows."""
    log_group: str = ""
    region: str = ""
    stop_timeout_seconds: int = ECS_MAX_STOP_TIMEOUT_SECONDS


def container_definitions(task: Task) -> list[dict]:
    def logging(prefix: str) -> dict:
        return {"logDriver": "awslogs", "options": {"awslogs-group": task.log_group, "awslogs-region": task.region,
                                                   "awslogs-stream-prefix": prefix}}

    def secrets(names: Sequence[str]) -> list[dict]:
        return [{"name": name, "valueFrom": task.value_from[name]} for name in names]

    def labels(names: Sequence[str]) -> dict:
        return {DIGEST_LABEL_PREFIX + name.lower(): task.digests[name] for name in names if name in task.digests}

    definitions: list[dict] = []
    for step in task.init:
        definitions.append({
            "name": step.spec.name, "image": step.spec.image, "essential": False,
            "command": list(step.spec.command), "user": step.spec.user,
            "environment": [{"name": k, "value": v} for k, v in step.spec.env.items()],
            "secrets": secrets(step.secret_names), "dockerLabels": labels(step.secret_names),
            "logConfiguration": logging(step.spec.name),
            "dependsOn": [{"containerName": definitions[-1]["name"], "condition": "SUCCESS"}] if definitions else [],
        })
    spec = task.main.spec
    files = [*task.plain_files, *task.runtime_paths]
    environment = {**spec.env, **{file_env_name(path): content for path, content in task.plain_files.items()}}
    main_secrets = [*task.main.secret_names, *[file_env_name(path) for path in task.runtime_paths]]
    main = {
        "name": task.service_name, "image": spec.image, "essential": True,
        "command": with_files(spec.command, files), "user": spec.user,
        "environment": [{"name": k, "value": v} for k, v in environment.items()],
        "secrets": secrets(main_secrets), "dockerLabels": labels(main_secrets),
        # The first port serves (Service Connect, the load balancer); others are internal (metrics).
        "portMappings": [{"containerPort": port, "protocol": "tcp", "name": "http", "appProtocol": "http"}
                         if index == 0 else {"containerPort": port, "protocol": "tcp", "name": f"port-{port}"}
                         for index, port in enumerate(spec.ports)],
        "logConfiguration": logging(task.service_name),
        "dependsOn": [{"containerName": definitions[-1]["name"], "condition": "SUCCESS"}] if definitions else [],
        # Time for requests in flight after SIGTERM (ECS allows at most 120 s on Fargate).
        "stopTimeout": task.stop_timeout_seconds,
    }
    if spec.health_check is not None:
        check = spec.health_check
        main["healthCheck"] = {"command": ["CMD", *check.command], "interval": check.interval_seconds,
                               "timeout": check.timeout_seconds, "retries": check.retries,
                               "startPeriod": check.start_period_seconds}
    return [*definitions, main]


def secret_arn(value_from: str) -> str:
    """The secret a `value_from` names (`arn`, or `arn:json-key:version-stage:version-id`)."""
    parts = value_from.split(":")
    return ":".join(parts[:7])


def execution_policy(log_group_arn: str, image_repository: Optional[str], value_from: Sequence[str]) -> str:
    """What the ECS agent may do for one service: pull that service's own image (when it lives in
    ECR), write to the stack's log group, read that service's secrets. ecr:GetAuthorizationToken has
    no resource-level permissions in IAM: it must name "*"."""
    secret_arns = sorted({secret_arn(item) for item in value_from})
    statements: list[dict] = []
    if image_repository:
        statements += [
            {"Sid": "RegistryLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
            {"Sid": "PullImage", "Effect": "Allow",
             "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
             "Resource": [image_repository]},
        ]
    statements.append({"Sid": "WriteLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                       "Resource": [f"{log_group_arn}:*"]})
    if secret_arns:
        statements.append({"Sid": "ReadSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                           "Resource": secret_arns})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


ASSUME_SCHEDULER = "scheduler.amazonaws.com"


def scheduler_assume_policy(account_id: str) -> str:
    """EventBridge Scheduler may assume the role, for schedules of this account only."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": ASSUME_SCHEDULER}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}}]})


def scheduler_policy(task_definition_arn: str, cluster_arn: str, pass_roles: Sequence[str],
                     dead_letter_queue_arn: str) -> str:
    """What a schedule may do: start that one task definition (any revision) in that one cluster,
    hand ECS the task's two roles, and put what it could not start in its dead-letter queue, nothing
    else. EventBridge Scheduler sends to the dead-letter queue with the schedule's execution role
    (https://docs.aws.amazon.com/scheduler/latest/UserGuide/configuring-schedule-dlq.html); the queue is
    encrypted with SQS's own key (SSE-SQS), which asks for no KMS permission."""
    family = task_definition_arn.rsplit(":", 1)[0]
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "RunTask", "Effect": "Allow", "Action": ["ecs:RunTask"], "Resource": [f"{family}:*"],
         "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}}},
        {"Sid": "PassTaskRoles", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": sorted(pass_roles),
         "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}},
        {"Sid": "DeadLetter", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": [dead_letter_queue_arn]},
    ]})


def failed_task_pattern(cluster_arn: str, task_definition_arn: str) -> dict:
    """The EventBridge pattern of a task of that task definition's family (any revision) in that cluster
    that stopped without success: a container that exited non-zero, or a task that never started
    (stopCode TaskFailedToStart: an image it could not pull, a secret it could not read; its containers
    then have no exit code). `anything-but` matches only a field that is there, so an exit code of 0
    (success) or none matches neither branch.
    The event: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_task_events.html
    (detail-type `ECS Task State Change`, `detail.containers[].exitCode`); stopCode:
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Task.html; `prefix`, `anything-but`
    and `$or`: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html"""
    family = task_definition_arn.rsplit(":", 1)[0]
    return {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"], "detail": {
        "clusterArn": [cluster_arn],
        "taskDefinitionArn": [{"prefix": f"{family}:"}],
        "lastStatus": ["STOPPED"],
        "$or": [{"containers": {"exitCode": [{"anything-but": 0}]}},
                {"stopCode": ["TaskFailedToStart"]}],
    }}


def failure_queue_policy(queue_arn: str, rule_arn: str) -> str:
    """The failure queue's own policy: EventBridge may send to it for that one rule only (an SQS
    target is authorized by the queue's policy, not by a role:
    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sqs-permissions).
    The scheduler's role sends its dead letters with its own identity policy (scheduler_policy)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "FailedTaskEvents", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
         "Action": "sqs:SendMessage", "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}},
    ]})


def alarm_topic_key_policy(partition: str, account_id: str) -> str:
    """The alarm topic's KMS key: the account administers it (a key no principal of the account may
    manage cannot be changed or deleted again), and CloudWatch alarms of this account, only them,
    may encrypt notifications to the topic with it. kms:Decrypt and kms:GenerateDataKey* are what
    CloudWatch needs to publish to an encrypted topic:
    https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services"""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministers", "Effect": "Allow",
         "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchAlarmsPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
    ]})
