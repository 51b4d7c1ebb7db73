"""The `aws` platform against AWS's own rules (issue 23, aws items): what a type schema accepts but
AWS refuses or silently mishandles at `pulumi up`. Each rule names its source; the expected values
are written here from the documentation, not read back from the code under test."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from components.config import ConfigError, budget_replicas, parse_stack_config
from tests.harness import program as harness
from tests.harness.program import REPO_ROOT, ProgramRun, run_program
from tests.harness.stacks import aws_config

SERVER, PROXY = "mlflow-server", "mlflow-proxy"
VERSION_PARAMETER = "/mlflow-aws/mlflow/deployed-version"
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html
EC2_DESCRIPTION = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{0,255}$")
# https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html (DBInstanceIdentifier)
RDS_IDENTIFIER = re.compile(r"^(?!.*--)[a-z][a-z0-9-]{0,62}(?<!-)$")
# https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html (repositoryName)
ECR_REPOSITORY = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")


@pytest.fixture(scope="module")
def timeouts_and_run() -> tuple[dict, ProgramRun]:
    """The default graph, with each resource's custom timeouts (which the harness does not keep)."""
    seen: dict[str, dict] = {}
    original = harness.RecordingMonitor.RegisterResource

    def recording(self, request):
        seen[request.name] = {"create": request.customTimeouts.create, "update": request.customTimeouts.update}
        return original(self, request)

    harness.RecordingMonitor.RegisterResource = recording
    try:
        run = run_program(aws_config(observability={"prometheus": True}), stack="aws")
    finally:
        harness.RecordingMonitor.RegisterResource = original
    return seen, run


@pytest.fixture(scope="module")
def run(timeouts_and_run) -> ProgramRun:
    return timeouts_and_run[1]


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)m", duration)
    assert match, f"a duration in minutes, got {duration!r}"
    return int(match.group(1)) * 60


# --- aws 1: descriptions EC2 accepts ------------------------------------------------------------

def test_every_security_group_and_rule_description_is_one_ec2_accepts(run):
    """EC2 refuses an apostrophe in a description: the metrics-scraper group failed the first `up`."""
    groups = run.of_type("aws:ec2/securityGroup:SecurityGroup")
    assert len(groups) == 5, "the scraper's group is in this graph (observability.prometheus)"
    rules = [*run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"),
             *run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")]
    for item in [*groups, *rules]:
        description = item.inputs.get("description", "")
        assert EC2_DESCRIPTION.match(description), f"{item.name}: EC2 refuses {description!r}"


# --- aws 2: alarms reach the topic --------------------------------------------------------------

def test_the_alarm_topic_is_under_a_key_cloudwatch_may_use(run):
    """CloudWatch cannot publish to a topic under alias/aws/sns
    (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services)."""
    topic = run.one("aws:sns/topic:Topic").inputs
    key = run.one("aws:kms/key:Key")
    assert topic["kmsMasterKeyId"] == key.state["arn"] and not topic["kmsMasterKeyId"].startswith("alias/aws/")
    statements = json.loads(key.inputs["policy"])["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(cloudwatch) == 1 and set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert cloudwatch[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": harness.ProgramMocks.AWS_ACCOUNT}}
    assert key.inputs["enableKeyRotation"] is True


# --- aws 3 and 4: names that outlive the stack ------------------------------------------------------

def test_an_upgrade_snapshot_name_is_drawn_anew_with_each_snapshot():
    """Retained snapshots outlive the stack: a name built from the versions alone is taken again by a
    re-created stack or a second go-back (DBSnapshotAlreadyExists)."""
    upgrade = run_program(aws_config(), stack="aws", parameters={VERSION_PARAMETER: "3.16.0"})
    snapshot = upgrade.one("aws:rds/snapshot:Snapshot")
    [suffix] = [r for r in upgrade.of_type("random:index/randomId:RandomId") if r.name.endswith("-suffix")]
    assert snapshot.inputs["dbSnapshotIdentifier"].endswith(f"-{suffix.state['hex']}")
    assert not suffix.retain_on_delete and suffix.inputs["keepers"]["version"] == "3.17.2"
    assert suffix.inputs["keepers"]["instance"] == upgrade.one("aws:rds/instance:Instance").state["identifier"]
    assert RDS_IDENTIFIER.match(snapshot.inputs["dbSnapshotIdentifier"])


def test_a_restore_makes_a_new_instance_identifier_and_final_snapshot_name(run):
    """The second replacement of the database (a restore done twice) must not meet the first
    replacement's final snapshot: what names it changes whenever RDS makes a new instance."""
    restored = run_program(aws_config(aws={"dbRestoreSnapshot": "mlflow-aws-mlflow-3-16-0-to-3-17-2-abcd1234"}),
                           stack="aws")
    before = run.one("random:index/randomId:RandomId", "mlflow-metadata-final-snapshot").inputs["keepers"]
    after = restored.one("random:index/randomId:RandomId", "mlflow-metadata-final-snapshot").inputs["keepers"]
    assert before != after, "a new suffix (RandomId replaced) for the instance made from the snapshot"
    db = restored.one("aws:rds/instance:Instance").inputs
    hex_ = restored.one("random:index/randomId:RandomId", "mlflow-metadata-final-snapshot").state["hex"]
    assert RDS_IDENTIFIER.match(db["finalSnapshotIdentifier"]) and db["finalSnapshotIdentifier"].endswith(hex_)


def test_existing_instances_keep_their_identifier_prefix(run):
    """A changed `identifier` renames the RDS instance, and its endpoint with it, under a running
    server; `identifier_prefix` is what every existing stack's instance was made with."""
    db = run.one("aws:rds/instance:Instance").inputs
    assert db["identifierPrefix"] == "mlflow-aws-" and "identifier" not in db


# --- aws 5: image builds the same from every checkout ----------------------------------------------

def test_image_build_paths_are_relative_to_the_project(run):
    """An absolute context differs between a workstation and CI: `up` would rebuild and roll out."""
    for image in run.of_type("docker:index/image:Image"):
        build = image.inputs["build"]
        assert not Path(build["context"]).is_absolute() and not Path(build["dockerfile"]).is_absolute()
        assert (REPO_ROOT / build["dockerfile"]).is_file() and (REPO_ROOT / build["context"]).is_dir()


# --- aws 6: `pulumi up` waits longer than old tasks drain ----------------------------------------

def test_service_timeouts_outlast_the_drain_and_the_drain_fits_the_target_group(timeouts_and_run):
    """The ECS service's wait defaults to 20 minutes
    (https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/ecs_service#timeouts);
    a target group drains for at most 3600 s
    (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html#deregistration-delay)."""
    timeouts, run = timeouts_and_run
    delay = run.one("aws:lb/targetGroup:TargetGroup").inputs["deregistrationDelay"]
    assert delay == 900
    for service in (SERVER, PROXY):
        assert _seconds(timeouts[service]["update"]) >= 20 * 60 + (delay if service == PROXY else 0) + 120, service
        assert _seconds(timeouts[service]["create"]) >= 20 * 60, service


# --- aws 7: a rolled-back rollout fails `up` -----------------------------------------------------

def test_the_rollout_is_verified_before_the_version_is_recorded(run):
    """wait_for_steady_state succeeds after a circuit-breaker or alarm rollback: the primary
    deployment must run the new task definition with rolloutState COMPLETED
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Deployment.html)."""
    check = run.one("command:local:Command", f"{SERVER}-rollout-check")
    service = run.one("aws:ecs/service:Service", SERVER)
    task = run.one("aws:ecs/taskDefinition:TaskDefinition", SERVER)
    assert service.urn in check.dependencies
    triggers = check.inputs["triggers"]
    assert triggers[0] == task.state["arn"], "checked again with every new task definition"
    deployment = json.loads(triggers[1])
    assert deployment["connect"]["services"][0]["timeout"]["idle_timeout_seconds"] == 900, \
        "and with every change of the service's own deployment settings"
    assert (deployment["minimum"], deployment["maximum"]) == (
        service.inputs["deploymentMinimumHealthyPercent"], service.inputs["deploymentMaximumPercent"])
    assert check.inputs["environment"]["TASK_DEFINITION"] == task.state["arn"]
    script = check.inputs["create"]
    assert "describe-services" in script and "PRIMARY" in script and "COMPLETED" in script and "exit 1" in script
    assert check.urn in run.one("aws:ssm/parameter:Parameter").dependencies


def _run_rollout_check(tmp_path, answers: list[str], wait_seconds: int = 60) -> subprocess.CompletedProcess:
    """The recorded check's own script, run by sh with a stand-in `aws` that answers
    describe-services with `answers` in turn (the last one repeated)."""
    from components.platforms.aws.platform import VERIFY_ROLLOUT_SCRIPT

    (tmp_path / "answers").write_text("\n".join(answers) + "\n")
    fake = tmp_path / "aws"
    fake.write_text('#!/bin/sh\nn=$(cat "$0.count" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.count"\n'
                    'lines=$(wc -l < "$(dirname "$0")/answers")\n'
                    'i=$((n + 1)); [ "$i" -gt "$lines" ] && i=$lines\n'
                    'answer=$(sed -n "${i}p" "$(dirname "$0")/answers")\n'
                    '[ "$answer" = FAIL ] && { echo "ThrottlingException" >&2; exit 255; }\n'
                    'printf "%s\\n" "$answer" | tr "|" "\\t"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "AWS_REGION": "eu-west-1", "CLUSTER": "c", "SERVICE": "mlflow-server",
           "TASK_DEFINITION": "arn:td:2", "WAIT_SECONDS": str(wait_seconds), "POLL_SECONDS": "0"}
    return subprocess.run(["sh", "-c", VERIFY_ROLLOUT_SCRIPT], env=env, capture_output=True, text=True, timeout=30)


def test_the_rollout_check_waits_out_the_bake_time_and_fails_a_rollback(tmp_path):
    """ECS reports COMPLETED only after steady state and the alarms' bake time
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html): the
    check polls while IN_PROGRESS, fails at once on a rollback (another task definition primary),
    on FAILED, and when the rollout outlasts its wait."""
    done = _run_rollout_check(tmp_path, ["arn:td:2|IN_PROGRESS", "arn:td:2|IN_PROGRESS", "arn:td:2|COMPLETED"])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "aws.count").read_text().strip() == "3"
    for answers, message in ((["arn:td:2|IN_PROGRESS", "arn:td:1|IN_PROGRESS"], "rolled back"),
                             (["arn:td:2|FAILED"], "is FAILED")):
        (tmp_path / "aws.count").unlink()
        failed = _run_rollout_check(tmp_path, answers)
        assert failed.returncode == 1 and message in failed.stderr, failed.stderr
    (tmp_path / "aws.count").unlink()
    blip = _run_rollout_check(tmp_path, ["FAIL", "arn:td:2|COMPLETED"])
    assert blip.returncode == 0, "a failed describe-services call is one more poll, not a failed deploy"
    stuck = _run_rollout_check(tmp_path, ["arn:td:2|IN_PROGRESS"], wait_seconds=0)
    assert stuck.returncode == 1 and "still IN_PROGRESS" in stuck.stderr


# --- aws 3 F3: the snapshot before an upgrade waits for an instance RDS takes one of --------------

def _run_snapshot_ready(tmp_path, answers: list[str], now: str = "3 12 00", wait_seconds: int = 60
                        ) -> subprocess.CompletedProcess:
    """The recorded wait's own script, run by sh with a stand-in `aws` that answers describe-db-instances
    with `answers` in turn (status|backup window|maintenance window; the last repeated; FAIL: an error)
    and a stand-in `date` whose UTC weekday, hour and minute are `now` (1 = Monday)."""
    from components.platforms.aws.platform import DB_SNAPSHOT_READY_SCRIPT

    (tmp_path / "answers").write_text("\n".join(answers) + "\n")
    (tmp_path / "aws.count").unlink(missing_ok=True)
    fake = tmp_path / "aws"
    fake.write_text('#!/bin/sh\nn=$(cat "$0.count" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.count"\n'
                    'lines=$(wc -l < "$(dirname "$0")/answers")\n'
                    'i=$((n + 1)); [ "$i" -gt "$lines" ] && i=$lines\n'
                    'answer=$(sed -n "${i}p" "$(dirname "$0")/answers")\n'
                    '[ "$answer" = FAIL ] && { echo "Throttling" >&2; exit 255; }\n'
                    'printf "%s\\n" "$answer" | tr "|" "\\t"\n')
    clock = tmp_path / "date"
    clock.write_text('#!/bin/sh\ncase "$*" in *%s*) echo 1000000 ;; *) echo "$FAKE_NOW" ;; esac\n')
    for script in (fake, clock):
        script.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "AWS_REGION": "eu-west-1", "DB_INSTANCE": "mlflow-aws-x",
           "WAIT_SECONDS": str(wait_seconds), "POLL_SECONDS": "0", "FAKE_NOW": now}
    return subprocess.run(["sh", "-c", DB_SNAPSHOT_READY_SCRIPT], env=env, capture_output=True, text=True, timeout=30)


WINDOWS = "03:00-03:30|sun:05:00-sun:05:30"


def test_the_snapshot_waits_out_a_busy_instance(tmp_path):
    """CreateDBSnapshot needs `available` or `storage-optimization`
    (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSnapshot.html) and the provider
    does not retry it: the wait polls through backing-up and modifying until three polls in a row find the
    instance ready (the provider's own wait for an instance asks for 3), and a failed call is one more poll."""
    busy = _run_snapshot_ready(tmp_path, ["FAIL", f"backing-up|{WINDOWS}", f"modifying|{WINDOWS}",
                                          f"available|{WINDOWS}", f"modifying|{WINDOWS}", f"available|{WINDOWS}"])
    assert busy.returncode == 0, busy.stderr
    assert (tmp_path / "aws.count").read_text().strip() == "8", "three polls available in a row after the last blip"
    optimizing = _run_snapshot_ready(tmp_path, [f"storage-optimization|{WINDOWS}"])
    assert optimizing.returncode == 0 and (tmp_path / "aws.count").read_text().strip() == "3"
    stuck = _run_snapshot_ready(tmp_path, [f"backing-up|{WINDOWS}"], wait_seconds=0)
    assert stuck.returncode == 1 and "still backing-up after 0 s" in stuck.stderr
    for status in ("stopped", "incompatible-parameters", "storage-full"):
        gone = _run_snapshot_ready(tmp_path, [f"{status}|{WINDOWS}"])
        assert gone.returncode == 1 and f"is {status}: RDS takes no snapshot" in gone.stderr, status
        assert (tmp_path / "aws.count").read_text().strip() == "1", "no waiting on a state that never passes"


@pytest.mark.parametrize("now, windows, waits", [
    ("3 03 10", WINDOWS, True),                       # Wednesday 03:10, inside the daily backup window
    ("3 02 57", WINDOWS, True),                       # 3 minutes before it starts (a backup may start at once)
    ("3 02 50", WINDOWS, False),
    ("3 03 30", WINDOWS, False),                      # the window is over
    ("7 05 10", WINDOWS, True),                       # Sunday 05:10, inside the weekly maintenance window
    ("1 05 10", WINDOWS, False),                      # Monday 05:10
    ("6 23 58", "23:50-00:20|sat:23:30-sun:00:30", True),   # windows across midnight
    ("7 00 10", "23:50-00:20|mon:01:00-mon:01:30", True),
    ("7 00 25", "23:50-00:20|mon:01:00-mon:01:30", False),
    ("7 00 40", "02:00-02:30|sat:23:30-sun:00:30", False),
    ("3 03 10", "None|None", False),
])
def test_the_snapshot_is_not_asked_for_inside_the_backup_or_maintenance_window(tmp_path, now, windows, waits):
    """An automated backup starts at any time inside the backup window and puts the instance in
    `backing-up` (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_WorkingWithAutomatedBackups.BackupWindow.html),
    pending maintenance runs inside the maintenance window: an `available` instance there (or 5 minutes
    before) may be busy by the time the provider asks, so the wait goes on until the window is over."""
    result = _run_snapshot_ready(tmp_path, [f"available|{windows}"], now=now, wait_seconds=0 if waits else 60)
    if waits:
        assert result.returncode == 1 and "inside its backup window" in result.stderr, result.stderr
    else:
        assert result.returncode == 0, result.stderr


def test_the_snapshot_waits_for_the_instance_once_and_may_take_hours(timeouts_and_run):
    """The command runs before the snapshot, on the instance the snapshot names, once (a restore makes a new
    instance and no new snapshot: both ignore the change); the snapshot may take longer than the
    provider's 20 minutes (https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/db_snapshot#timeouts)."""
    timeouts, run = timeouts_and_run
    snapshot = run.one("aws:rds/snapshot:Snapshot")
    [ready] = [c for c in run.of_type("command:local:Command") if c.urn in snapshot.dependencies]
    assert ready.inputs["environment"]["DB_INSTANCE"] == snapshot.inputs["dbInstanceIdentifier"] == run.one(
        "aws:rds/instance:Instance").state["identifier"]
    assert ready.ignore_changes == ["environment"] and "dbInstanceIdentifier" in snapshot.ignore_changes
    assert timeouts[snapshot.name]["create"] == "4h"
    assert int(ready.inputs["environment"]["WAIT_SECONDS"]) >= 3600


# --- aws 8: the load balancer's idle timeout and proxy.timeoutSeconds ----------------------------

def test_the_load_balancer_idle_timeout_follows_proxy_timeout_seconds():
    slow = run_program(aws_config(proxy={"timeoutSeconds": 3600}), stack="aws")
    assert slow.one("aws:lb/loadBalancer:LoadBalancer").inputs["idleTimeout"] == 3600
    assert slow.one("aws:lb/targetGroup:TargetGroup").inputs["deregistrationDelay"] == 3600


@pytest.mark.parametrize("aws, proxy, message", [
    ({"loadBalancerIdleTimeoutSeconds": 600}, {"timeoutSeconds": 900},
     r"aws.loadBalancerIdleTimeoutSeconds 600 is shorter than proxy.timeoutSeconds 900"),
    ({}, {"timeoutSeconds": 5000}, r"proxy.timeoutSeconds 5000 exceeds .* at most 4000"),
])
def test_an_idle_timeout_shorter_than_the_proxy_timeout_is_refused(aws, proxy, message):
    """ALB's idle timeout is 1-4000 s
    (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout)."""
    with pytest.raises(ConfigError, match=message):
        parse_stack_config({"platform": "aws", "aws": {"allowPlainHttp": True, **aws}, "proxy": proxy}, "x")


# --- aws 9: liveness stays in Nginx ----------------------------------------------------------------

def test_the_load_balancer_checks_nginx_itself_never_mlflow(run):
    """ECS replaces a task its target group finds unhealthy: a check passed on to MLflow would replace
    every proxy whenever the server blips."""
    from components import render

    path = run.one("aws:lb/targetGroup:TargetGroup").inputs["healthCheck"]["path"]
    assert path == render.PROXY_LIVENESS_PATH != "/health"
    [proxy] = [c for c in json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition", PROXY).inputs[
        "containerDefinitions"]) if c["name"] == PROXY]
    assert proxy["healthCheck"]["command"][-1].endswith(path)


# --- aws 10: tasks start with their permissions ------------------------------------------------------

def test_each_service_waits_for_its_role_policies(run):
    for name in (SERVER, PROXY):
        service = run.one("aws:ecs/service:Service", name)
        policies = [p for p in run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.startswith(f"{name}-")
                    and "scheduler" not in p.name]
        assert policies and all(p.urn in service.dependencies for p in policies), name


# --- aws 11: the 5xx alarm treats missing data deliberately ----------------------------------------

def test_the_5xx_alarm_fills_its_denominator(run):
    """A metric with no datapoint makes the whole expression missing: every metric is FILLed
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html)."""
    [alarm] = [a for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
               if a.inputs["name"].endswith("http-5xx")]
    queries = {q["id"]: q for q in alarm.inputs["metricQueries"]}
    metrics = {key for key, q in queries.items() if "metric" in q}
    assert metrics == {"targets", "balancer", "requests"}
    expressions = " ".join(q["expression"] for q in queries.values() if "expression" in q)
    for key in metrics:
        assert f"FILL({key}, 0)" in expressions, f"{key} is not filled"
    [returned] = [q for q in queries.values() if q.get("returnData")]
    assert "IF(" in returned["expression"], "no division by a zero request count"


# --- aws 12: names and log groups ---------------------------------------------------------------

def test_rds_log_groups_get_a_retention_once_the_instance_exists(run):
    """RDS makes its export log groups itself, never to expire: a command after the instance makes
    each group if missing and sets its retention, again when the identifier or retention changes."""
    db = run.one("aws:rds/instance:Instance")
    [retention] = [c for c in run.of_type("command:local:Command") if c.name.endswith("-log-retention")]
    assert db.urn in retention.dependencies
    env = retention.inputs["environment"]
    assert env["RETENTION_DAYS"] == "30" and env["LOG_EXPORTS"].split() == db.inputs["enabledCloudwatchLogsExports"]
    script = retention.inputs["create"]
    assert "put-retention-policy" in script and '"/aws/rds/instance/$DB_INSTANCE/$log"' in script
    assert len(retention.inputs["triggers"]) == 2


def test_a_stack_name_aws_refuses_is_normalised_in_every_name():
    """Stack names may hold upper case and `_`; ECR and RDS refuse both."""
    odd = run_program(aws_config(), stack="Eu_Prod")
    for repository in odd.of_type("aws:ecr/repository:Repository"):
        assert ECR_REPOSITORY.match(repository.inputs["name"]) and "eu-prod" in repository.inputs["name"]
    assert RDS_IDENTIFIER.match(odd.one("aws:rds/instance:Instance").inputs["identifierPrefix"].rstrip("-"))
    assert odd.one("aws:sns/topic:Topic").inputs["name"] == "mlflow-eu-prod-alarms"


def test_the_bucket_prefix_fits_the_provider():
    """The provider appends 26 characters to bucket_prefix for a name of at most 63
    (https://registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/s3_bucket#bucket_prefix)."""
    long = run_program(aws_config(artifacts={"bucket": "a" * 50}), stack="aws")
    assert len(long.one("aws:s3/bucket:Bucket").inputs["bucketPrefix"]) <= 37


# --- config: what AWS refuses is refused at preview ----------------------------------------------

@pytest.mark.parametrize("sections, message", [
    ({"aws": {"region": "eu-west-9"}}, r"aws.region.*AWS region name, one of .*eu-west-1"),
    ({"server": {"cpu": 3}}, r"server.cpu must be a Fargate size"),
    ({"server": {"cpu": 1, "memoryMib": 1024}}, r"server.memoryMib 1024 is not a size Fargate pairs with server.cpu 1"),
    ({"aws": {"proxyCpu": 256, "proxyMemoryMib": 4096}}, r"aws.proxyMemoryMib 4096 .* aws.proxyCpu 0.25"),
    ({"server": {"replicas": 1, "maxReplicas": 3}, "database": {"maxConnections": 150}},
     r"6 server tasks .* = 288 connections exceeds"),
])
def test_values_aws_refuses_are_config_errors(sections, message):
    """Fargate's task sizes (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html);
    the regions (https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html)."""
    config = {"platform": "aws", **sections}
    config["aws"] = {"allowPlainHttp": True, **sections.get("aws", {})}
    with pytest.raises(ConfigError, match=message):
        parse_stack_config(config, "x")


def test_the_mirrored_nginx_repository_is_protected_like_the_servers(run):
    repositories = run.of_type("aws:ecr/repository:Repository")
    assert len(repositories) == 2 and all(r.protect for r in repositories)
    assert all(r.inputs["forceDelete"] is False for r in repositories)


# --- ECS surge and disk -----------------------------------------------------------------------------

def test_server_rollouts_run_no_more_tasks_than_the_connection_budget_counts(run):
    """ECS keeps minimumHealthyPercent (rounded up) running and starts up to maximumPercent (rounded
    down) (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service_definition_parameters.html):
    at every desired count the autoscaling may set, the tasks running at once stay within what the
    connection budget counted, and the rollout can still make progress (stop one, or start one)."""
    for replicas, max_replicas in ((2, 3), (1, 1), (1, 3), (3, 10)):
        config = aws_config(server={"replicas": replicas, "maxReplicas": max_replicas},
                            database={"maxConnections": 5000})
        graph = run if (replicas, max_replicas) == (2, 3) else run_program(config, stack="aws")
        service = graph.one("aws:ecs/service:Service", SERVER).inputs
        minimum, maximum = service["deploymentMinimumHealthyPercent"], service["deploymentMaximumPercent"]
        counted = budget_replicas(parse_stack_config({"platform": "aws", "server": {
            "replicas": replicas, "maxReplicas": max_replicas}, "database": {"maxConnections": 5000},
            "aws": {"allowPlainHttp": True}}, "x"))
        # ECS refuses zone rebalancing without room for an extra task
        # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-rebalancing.html).
        assert service["availabilityZoneRebalancing"] == ("ENABLED" if maximum > 100 else "DISABLED")
        for desired in range(replicas, max_replicas + 1):
            running_at_most = desired * maximum // 100
            kept = -(-desired * minimum // 100)
            assert running_at_most <= counted, (replicas, max_replicas, desired)
            assert kept < desired or running_at_most > desired, f"a rollout at {desired} tasks cannot move"


def test_the_server_task_gets_the_ephemeral_storage_asked_for(run):
    assert run.one("aws:ecs/taskDefinition:TaskDefinition", SERVER).inputs.get("ephemeralStorage") is None
    bigger = run_program(aws_config(aws={"serverEphemeralStorageGib": 60}), stack="aws")
    assert bigger.one("aws:ecs/taskDefinition:TaskDefinition", SERVER).inputs["ephemeralStorage"] == {"sizeInGib": 60}
    assert bigger.one("aws:ecs/taskDefinition:TaskDefinition", PROXY).inputs.get("ephemeralStorage") is None



def test_nginx_keeps_an_idle_connection_longer_than_the_load_balancer(run):
    """Each hop's idle timeout outlasts the one in front of it: Nginx closing a connection the load
    balancer still holds gives intermittent 502s (ALB: https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout)."""
    idle = run.one("aws:lb/loadBalancer:LoadBalancer").inputs["idleTimeout"]
    [proxy] = [c for c in json.loads(run.one("aws:ecs/taskDefinition:TaskDefinition", PROXY).inputs[
        "containerDefinitions"]) if c["name"] == PROXY]
    [conf] = [e["value"] for e in proxy["environment"] if e["value"].startswith("# Rendered by")]
    [keepalive] = re.findall(r"keepalive_timeout (\d+)s;", conf)
    assert int(keepalive) > idle == 900


# --- the port-80 listener when HTTPS is switched on or off ------------------------------------------

def test_switching_https_on_or_off_updates_the_port_80_listener_in_place():
    """ELB refuses a second listener on a port (DuplicateListener), and Pulumi creates a resource
    new to the program before deleting the one that left it: the port-80 listener of either mode
    must take over the other's (aliases), so that the switch is one ModifyListener
    (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateListener.html)."""
    plain = run_program(aws_config(aws={"allowPlainHttp": True}), stack="aws")
    https = run_program(aws_config(aws={"allowPlainHttp": False, "domain": "mlflow.example.com",
                                        "hostedZoneId": "Z0123456789"}), stack="aws")

    def port_80(run: ProgramRun) -> str:
        [listener] = [r for r in run.of_type("aws:lb/listener:Listener") if r.inputs["port"] == 80]
        return listener.urn

    for before, after in ((plain, https), (https, plain)):
        adopted = harness.adopted_urns(after, {r.urn for r in before.resources}, stack="aws")
        assert adopted.get(port_80(before)) == port_80(after), "the port-80 listener would be created anew"


def test_the_server_tasks_temporary_disk_is_watched(run):
    """Proxied transfers spool whole on the server task's ephemeral storage: an alarm before it fills."""
    [alarm] = [a for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.inputs["name"].endswith(
        "mlflow-server-temporary-disk")]
    queries = {q["id"]: q for q in alarm.inputs["metricQueries"]}
    assert queries["used"]["metric"]["metricName"] == "EphemeralStorageUtilized"
    assert queries["reserved"]["metric"]["metricName"] == "EphemeralStorageReserved"
    assert queries["used"]["metric"]["dimensions"]["ServiceName"] == SERVER
    assert alarm.inputs["threshold"] == 80 and alarm.inputs["alarmActions"]


def test_database_changes_apply_at_pulumi_up(run):
    """RDS queues a modification for the next maintenance window unless applyImmediately
    (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Overview.DBInstance.Modifying.html): `up`
    would report a class change done a week before it happens, and show it again every run."""
    assert run.one("aws:rds/instance:Instance").inputs["applyImmediately"] is True

