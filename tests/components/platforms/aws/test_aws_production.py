"""The `aws` stack reviewed as it will run for years: transfers that are not cut, upgrades that can be
undone, secrets that reach running tasks, two of everything, alarms, the database role, the image
source and the exposure (one test or more per point of the review, against the graph under mocks)."""

import hashlib
import json

import pytest

from components.config import ConfigError, parse_stack_config
from tests.harness.program import ProgramRun, Recorded, run_program
from tests.harness.stacks import aws_config, containers, policy_statements

SERVER, PROXY = "mlflow-server", "mlflow-proxy"
VERSION_PARAMETER = "/mlflow-aws/mlflow/deployed-version"


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program(aws_config(), stack="aws")


def service(run: ProgramRun, name: str) -> dict:
    return run.one("aws:ecs/service:Service", name).inputs


# --- 1. transfers longer than 15 s ------------------------------------------------------------

def test_service_connect_never_cuts_a_slow_transfer(run):
    """Envoy's default 15 s per-request timeout would end any long artifact transfer."""
    [connected] = service(run, SERVER)["serviceConnectConfiguration"]["services"]
    assert connected["timeout"] == {"perRequestTimeoutSeconds": 0, "idleTimeoutSeconds": 900}
    slower = run_program(aws_config(proxy={"timeoutSeconds": 3600}), stack="aws")
    [connected] = service(slower, SERVER)["serviceConnectConfiguration"]["services"]
    assert connected["timeout"]["idleTimeoutSeconds"] == 3600, "as long as Nginx waits"


# --- 2. RDS minor upgrades --------------------------------------------------------------------

def test_rds_follows_the_major_version_and_its_own_minor_upgrades(run):
    db = run.one("aws:rds/instance:Instance").inputs
    assert db["engineVersion"] == "16" and db["autoMinorVersionUpgrade"] is True
    assert db["allowMajorVersionUpgrade"] is False


def test_a_pinned_minor_version_turns_automatic_minor_upgrades_off():
    pinned = run_program(aws_config(aws={"dbEngineVersion": "16.6"}), stack="aws")
    db = pinned.one("aws:rds/instance:Instance").inputs
    assert db["engineVersion"] == "16.6" and db["autoMinorVersionUpgrade"] is False
    with pytest.raises(ConfigError, match="aws.dbEngineVersion"):
        parse_stack_config({"platform": "aws", "aws": {"dbEngineVersion": "16", "allowPlainHttp": True}}, "x")


# --- 3. MLflow upgrades that can be undone ------------------------------------------------------

def test_a_new_mlflow_version_waits_for_a_snapshot_and_never_rolls_back_by_itself():
    upgrade = run_program(aws_config(), stack="aws", parameters={VERSION_PARAMETER: "3.16.0"})
    snapshot = upgrade.one("aws:rds/snapshot:Snapshot")
    suffix = upgrade.one("random:index/randomId:RandomId", "mlflow-server-schema-before-3-17-2-suffix").state["hex"]
    assert snapshot.inputs["dbSnapshotIdentifier"] == f"mlflow-aws-mlflow-3-16-0-to-3-17-2-{suffix}"
    assert snapshot.inputs["dbInstanceIdentifier"] == upgrade.one("aws:rds/instance:Instance").state["identifier"]
    assert snapshot.retain_on_delete, "the next version's snapshot must not delete this one"
    assert {"dbSnapshotIdentifier", "dbInstanceIdentifier"} <= set(snapshot.ignore_changes), "taken once"
    server = upgrade.one("aws:ecs/service:Service", SERVER)
    assert snapshot.urn in server.dependencies, "the rollout waits for the snapshot"
    assert server.inputs["deploymentCircuitBreaker"] == {"enable": True, "rollback": False}
    assert server.inputs["alarms"]["rollback"] is False
    assert server.inputs["waitForSteadyState"] is True, "pulumi up fails when the rollout fails"
    recorded = upgrade.one("aws:ssm/parameter:Parameter")
    assert (recorded.inputs["name"], recorded.inputs["value"]) == (VERSION_PARAMETER, "3.17.2")
    check = upgrade.one("command:local:Command", "mlflow-server-rollout-check")
    assert check.urn in recorded.dependencies and server.urn in check.dependencies, \
        "the version is recorded once the rollout is done and verified"


def test_the_same_version_may_roll_back_and_the_first_deploy_takes_a_baseline(run):
    same = run_program(aws_config(), stack="aws", parameters={VERSION_PARAMETER: "3.17.2"})
    assert service(same, SERVER)["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service(same, PROXY)["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    first = run.one("aws:rds/snapshot:Snapshot")
    assert first.inputs["dbSnapshotIdentifier"].startswith("mlflow-aws-mlflow-3-17-2-first-")
    assert first.name == same.one("aws:rds/snapshot:Snapshot").name, "one snapshot resource per version"
    assert service(run, PROXY)["waitForSteadyState"] is True


# --- 4. secrets that roll -----------------------------------------------------------------------

def test_each_secret_value_is_in_its_task_definition_as_a_digest(run):
    versions = {v.name: v.inputs["secretString"] for v in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    checked = 0
    for task_name in (SERVER, PROXY):
        for definition in containers(run, task_name).values():
            for secret in definition["secrets"]:
                if ":secret:rds!" in secret["valueFrom"]:
                    continue  # RDS's own master secret: RDS rotates it, the setup step reads it at start
                [value] = [value for name, value in versions.items()
                           if secret["valueFrom"].endswith(f":secret:{name}-AbCdEf")]
                label = definition["dockerLabels"][f"org.mlflow-platform.secret-sha256.{secret['name'].lower()}"]
                assert label == hashlib.sha256(value.encode()).hexdigest(), (task_name, secret["name"])
                assert value not in json.dumps(definition)
                checked += 1
    assert checked == 5, "setup: db password; upgrade: db uri; server: db uri, kek; proxy: htpasswd"


def test_a_changed_secret_changes_the_task_definition():
    def proxy_definition(password_hash: str) -> str:
        program = run_program(aws_config(proxy={"passwordHash": password_hash}), stack="aws")
        return program.one("aws:ecs/taskDefinition:TaskDefinition", PROXY).inputs["containerDefinitions"]

    # Same password, another hash of it: only the secret's value differs, and the definition with it.
    assert proxy_definition("ssha") != proxy_definition("bcrypt"), "a new htpasswd line deploys new tasks"


# --- 5. two of everything, autoscaling ----------------------------------------------------------

def test_two_tasks_of_each_service_spread_over_two_zones(run):
    for name in (SERVER, PROXY):
        inputs = service(run, name)
        assert inputs["desiredCount"] == 2
        assert len(inputs["networkConfiguration"]["subnets"]) == 2
    assert service(run, PROXY)["desiredCount"] == 2
    more = run_program(aws_config(aws={"proxyReplicas": 3}), stack="aws")
    assert service(more, PROXY)["desiredCount"] == 3 and service(more, SERVER)["desiredCount"] == 2


def test_the_server_scales_on_cpu_up_to_max_replicas(run):
    target = run.one("aws:appautoscaling/target:Target").inputs
    assert (target["minCapacity"], target["maxCapacity"]) == (2, 3)
    assert target["resourceId"] == "service/mlflow-aws/mlflow-server"
    policy = run.one("aws:appautoscaling/policy:Policy").inputs
    configuration = policy["targetTrackingScalingPolicyConfiguration"]
    assert configuration["targetValue"] == 60
    assert configuration["predefinedMetricSpecification"]["predefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert "desiredCount" in run.one("aws:ecs/service:Service", SERVER).ignore_changes, "autoscaling owns the count"
    fixed = run_program(aws_config(server={"maxReplicas": 2}), stack="aws")
    assert not fixed.of_type("aws:appautoscaling/target:Target")
    assert not fixed.one("aws:ecs/service:Service", SERVER).ignore_changes


def test_the_connection_budget_counts_the_autoscaling_ceiling():
    with pytest.raises(ConfigError, match=r"10 server tasks .*server.maxReplicas.* = 480 connections exceeds"):
        parse_stack_config({"platform": "aws", "server": {"maxReplicas": 10}, "aws": {"allowPlainHttp": True}}, "x")
    with pytest.raises(ConfigError, match="server.maxReplicas must be >= server.replicas"):
        parse_stack_config({"platform": "aws", "server": {"replicas": 3, "maxReplicas": 2},
                            "aws": {"allowPlainHttp": True}}, "x")


def test_a_nat_gateway_per_zone_each_zone_routing_through_its_own(run):
    nats = {n.name: n for n in run.of_type("aws:ec2/natGateway:NatGateway")}
    assert len(nats) == 2
    subnets = {s.state["id"]: s.inputs["availabilityZone"] for s in run.of_type("aws:ec2/subnet:Subnet")}
    routes = {r.state["id"]: r.inputs["routes"][0].get("natGatewayId")
              for r in run.of_type("aws:ec2/routeTable:RouteTable")}
    nat_zone = {n.state["id"]: subnets[n.inputs["subnetId"]] for n in nats.values()}
    for association in run.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation"):
        nat = routes[association.inputs["routeTableId"]]
        if nat is not None:
            assert nat_zone[nat] == subnets[association.inputs["subnetId"]]
    single = run_program(aws_config(aws={"natGateways": "single"}), stack="aws")
    assert len(single.of_type("aws:ec2/natGateway:NatGateway")) == 1


# --- 6. deploys do not kill transfers in flight -------------------------------------------------

def test_tasks_leaving_keep_their_transfers(run):
    assert run.one("aws:lb/targetGroup:TargetGroup").inputs["deregistrationDelay"] == 900
    for name in (SERVER, PROXY):
        assert containers(run, name)[name]["stopTimeout"] == 120, "the most ECS allows"


# --- 7. the database role ------------------------------------------------------------------------

def test_mlflow_is_not_the_master_and_rds_is_observed(run):
    db = run.one("aws:rds/instance:Instance").inputs
    assert db["username"] == "mlflow_admin" and db["manageMasterUserPassword"] is True and "password" not in db
    uri = run.one("aws:secretsmanager/secretVersion:SecretVersion", "mlflow-server-mlflow-backend-store-uri")
    assert uri.inputs["secretString"].startswith("postgresql+psycopg2://mlflow:")
    assert db["enabledCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    # RDS for PostgreSQL has Performance Insights on every class, db.t4g.small included
    # (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PerfInsights.Overview.Engines.html).
    assert db["performanceInsightsEnabled"] is True and db["performanceInsightsRetentionPeriod"] == 7
    off = run_program(aws_config(aws={"dbPerformanceInsights": False}), stack="aws")
    assert off.one("aws:rds/instance:Instance").inputs["performanceInsightsEnabled"] is False
    with pytest.raises(ConfigError, match="aws.dbMasterUsername must differ"):
        parse_stack_config({"platform": "aws", "aws": {"dbMasterUsername": "mlflow", "allowPlainHttp": True}}, "x")


def test_the_final_snapshot_name_is_unique_to_the_instance(run):
    suffix = run.one("random:index/randomId:RandomId", "mlflow-metadata-final-snapshot")
    db = run.one("aws:rds/instance:Instance").inputs
    assert db["finalSnapshotIdentifier"] == f"mlflow-aws-final-{suffix.state['hex']}"


# --- 8. alarms --------------------------------------------------------------------------------

def alarms(run: ProgramRun) -> dict[str, Recorded]:
    return {a.inputs["name"].removeprefix("mlflow-aws-"): a
            for a in run.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}


def test_alarms_watch_errors_health_database_and_tasks_and_notify_the_topic(run):
    found = alarms(run)
    assert set(found) == {"http-5xx", "unhealthy-proxy-targets", "database-cpu", "database-free-storage",
                          "database-connections", "mlflow-server-tasks-below-desired",
                          "mlflow-proxy-tasks-below-desired", "mlflow-server-temporary-disk"}
    topic = run.one("aws:sns/topic:Topic")
    for alarm in found.values():
        assert alarm.inputs["alarmActions"] == [topic.state["arn"]] == alarm.inputs["okActions"]
    assert found["database-connections"].inputs["threshold"] == 160, "80% of max_connections 200"
    assert found["database-free-storage"].inputs["threshold"] == 2 * 1024 ** 3, "10% of 20 GiB"
    [rate] = [q for q in found["http-5xx"].inputs["metricQueries"] if q.get("returnData")]
    assert "HTTPCode" not in rate["expression"] and "/ served" in rate["expression"]
    assert not run.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert run.output("alarm_topic") == topic.state["arn"]


def test_an_alarm_email_is_subscribed_and_the_5xx_alarm_stops_rollouts():
    subscribed = run_program(aws_config(aws={"alarmEmail": "mlops@example.com"}), stack="aws")
    subscription = subscribed.one("aws:sns/topicSubscription:TopicSubscription").inputs
    assert (subscription["protocol"], subscription["endpoint"]) == ("email", "mlops@example.com")
    for name in (SERVER, PROXY):
        assert service(subscribed, name)["alarms"]["alarmNames"] == ["mlflow-aws-http-5xx"]
        assert service(subscribed, name)["alarms"]["enable"] is True


# --- 9. the Nginx image --------------------------------------------------------------------------

def test_nginx_runs_from_a_scanned_copy_in_the_stacks_registry_by_digest(run):
    repository = run.one("aws:ecr/repository:Repository", "mlflow-proxy-image-repository")
    assert (repository.inputs["name"] == "mlflow-aws/nginx"
            and repository.inputs["imageScanningConfiguration"]["scanOnPush"])
    copy = run.one("docker:index/image:Image", "mlflow-proxy-image").inputs
    assert copy["build"]["args"] == {"IMAGE": "nginx:1.27.3-alpine"} and copy["build"]["dockerfile"].endswith(
        "docker/mirror/Dockerfile")
    image = containers(run, PROXY)[PROXY]["image"]
    assert image.startswith(repository.state["repositoryUrl"] + ":1.27.3-alpine@sha256:")


# --- 10. a way in for operations -------------------------------------------------------------------

def test_ecs_exec_is_off_unless_asked_and_then_only_on_the_server():
    assert service(run_program(aws_config(), stack="aws"), SERVER)["enableExecuteCommand"] is False
    on = run_program(aws_config(aws={"execEnabled": True}), stack="aws")
    assert service(on, SERVER)["enableExecuteCommand"] is True and service(on, PROXY)["enableExecuteCommand"] is False
    [exec_policy] = [p for p in on.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "mlflow-server-exec"]
    assert {a for s in policy_statements(exec_policy) for a in s["Action"]} == {
        "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel"}


def test_the_run_task_network_output_places_one_off_tasks_beside_the_server(run):
    network = json.loads(run.output("run_task_network"))["awsvpcConfiguration"]
    assert network["securityGroups"] == ["mlflow-platform-server-sg-id"] and network["assignPublicIp"] == "DISABLED"
    assert network["subnets"] == service(run, SERVER)["networkConfiguration"]["subnets"]


# --- 11. exposure --------------------------------------------------------------------------------

def test_plain_http_only_on_purpose():
    config = aws_config()
    settings = json.loads(config["mlflow:aws"])
    del settings["allowPlainHttp"]
    with pytest.raises(ConfigError, match="set aws.domain with aws.hostedZoneId or aws.certificateArn, or "
                                          "aws.allowPlainHttp: true"):
        parse_stack_config({key.removeprefix("mlflow:"): value for key, value in
                            {**config, "mlflow:aws": json.dumps(settings)}.items()}, "Pulumi.aws.yaml")


def test_an_internal_load_balancer_sits_in_the_private_subnets():
    internal = run_program(aws_config(aws={"internal": True}), stack="aws")
    balancer = internal.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert balancer["internal"] is True
    assert balancer["subnets"] == service(internal, SERVER)["networkConfiguration"]["subnets"]


def test_a_waf_acl_guards_the_load_balancer():
    acl = "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/mlflow/0123abcd"
    guarded = run_program(aws_config(aws={"wafAclArn": acl}), stack="aws")
    association = guarded.one("aws:wafv2/webAclAssociation:WebAclAssociation").inputs
    assert association["webAclArn"] == acl
    assert association["resourceArn"] == guarded.one("aws:lb/loadBalancer:LoadBalancer").state["arn"]
    with pytest.raises(ConfigError, match="aws.wafAclArn"):
        parse_stack_config({"platform": "aws", "aws": {"wafAclArn": "acl-1", "allowPlainHttp": True}}, "x")


def test_going_back_restores_the_snapshot_into_the_database():
    restored = run_program(aws_config(aws={"dbRestoreSnapshot": "mlflow-aws-mlflow-3-16-0-to-3-17-2"}), stack="aws")
    db = restored.one("aws:rds/instance:Instance").inputs
    assert db["snapshotIdentifier"] == "mlflow-aws-mlflow-3-16-0-to-3-17-2"
    with pytest.raises(ConfigError, match="aws.dbRestoreSnapshot"):
        parse_stack_config({"platform": "aws", "aws": {"dbRestoreSnapshot": "3.16 snapshot", "allowPlainHttp": True}},
                           "x")
