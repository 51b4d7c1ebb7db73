"""Day-2 operations under mocks: Prometheus metrics on an internal listener only, and `mlflow gc` on a
schedule (EventBridge Scheduler + an ECS task on aws, a Container Apps job on azure) with the
server's own image, identity and database secret, and roles that may do that one thing."""

import json

import pytest

from components import render
from components.config import ConfigError, parse_stack_config
from components.platforms.aws.config import aws_schedule_expression
from tests.harness.program import ProgramRun, is_secret_wrapper, run_program, stack_file_config
from tests.harness.stacks import (aws_config, azure_config, container, containers, find_leaks, identity,
                                  policy_statements, uploads_of)

GC = {"gcSchedule": "15 3 * * *", "gcOlderThan": "14d"}


@pytest.fixture(scope="module")
def aws_gc() -> ProgramRun:
    return run_program(aws_config(maintenance=GC), stack="aws")


@pytest.fixture(scope="module")
def azure_gc() -> ProgramRun:
    return run_program(azure_config(maintenance=GC), stack="azure")


# --- metrics -------------------------------------------------------------------------------------

def _server_blocks(conf: str) -> list[str]:
    return conf.split("    server {")[1:]


def test_local_metrics_reach_the_host_only_on_the_bind_address(local_run):
    proxy = container(local_run, "mlflow-proxy")
    conf = uploads_of(proxy)["/etc/nginx/nginx.conf"]
    public, internal = _server_blocks(conf)
    assert "location = /metrics {\n            return 404;" in public, "the public entry refuses /metrics"
    assert "listen 9180;" in internal and "stub_status;" in internal
    assert "proxy_pass http://mlflow_upstream/metrics;" in internal
    # MLflow's host check: the Host Nginx sends for /metrics is one of the server's --allowed-hosts
    host = internal.split("proxy_set_header Host ")[1].split(";")[0]
    server_command = container(local_run, "mlflow-server").inputs["command"]
    assert host in server_command[server_command.index("--allowed-hosts") + 1].split(",")
    assert {"internal": 9180, "external": 9180, "ip": "127.0.0.1"} in [
        {k: p[k] for k in ("internal", "external", "ip")} for p in proxy.inputs["ports"]]


def test_metrics_off_leaves_no_listener_no_exporter_no_port():
    config = {**stack_file_config("local"), "mlflow:observability": json.dumps({"prometheus": False})}
    run = run_program(config)
    proxy = container(run, "mlflow-proxy")
    conf = uploads_of(proxy)["/etc/nginx/nginx.conf"]
    assert len(_server_blocks(conf)) == 1 and "stub_status" not in conf
    assert "location = /metrics {\n            return 404;" in conf, "refused on the public entry either way"
    assert [p["internal"] for p in proxy.inputs["ports"]] == [8080]
    command = container(run, "mlflow-server").inputs["command"]
    assert command[:2] == ["mlflow", "server"] and "--expose-prometheus" not in command


def test_the_metrics_port_must_not_collide():
    with pytest.raises(ConfigError, match="observability.metricsPort"):
        parse_stack_config({"observability": {"metricsPort": 9000}}, "Pulumi.local.yaml")
    with pytest.raises(ConfigError, match="metricsPort must differ from proxy.port"):
        parse_stack_config({"platform": "aws", "aws": {"allowPlainHttp": True},
                            "observability": {"metricsPort": 8080}}, "Pulumi.aws.yaml")


def test_aws_metrics_only_for_the_scraper_group(aws_gc):
    [proxy_task] = [c for name, c in containers(aws_gc, "mlflow-proxy").items() if name == "mlflow-proxy"]
    assert [m["containerPort"] for m in proxy_task["portMappings"]] == [8080, 9180]
    scraper = aws_gc.one("aws:ec2/securityGroup:SecurityGroup", "mlflow-platform-metrics-scraper-sg")
    proxy_sg = aws_gc.one("aws:ec2/securityGroup:SecurityGroup", "mlflow-platform-proxy-sg")
    rules = [r for r in aws_gc.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
             if r.inputs.get("fromPort") == 9180]
    assert [(r.inputs["securityGroupId"], r.inputs.get("referencedSecurityGroupId"), r.inputs.get("cidrIpv4"))
            for r in rules] == [(proxy_sg.state["id"], scraper.state["id"], None)]
    assert aws_gc.output("metrics_scraper_security_group") == scraper.state["id"]
    # the load balancer forwards to the public port only
    target = aws_gc.one("aws:lb/targetGroup:TargetGroup").inputs
    assert target["port"] == 8080


def test_azure_metrics_port_inside_the_environment_only(azure_gc):
    ingress = azure_gc.one("azure-native:app:ContainerApp", "mlflow-proxy").inputs["configuration"]["ingress"]
    assert ingress["additionalPortMappings"] == [{"external": False, "targetPort": 9180, "exposedPort": 9180}]


# --- gc on aws -----------------------------------------------------------------------------------

def test_no_schedule_no_gc_resources():
    run = run_program(aws_config(), stack="aws")
    assert not run.of_type("aws:scheduler/schedule:Schedule")
    assert not [t for t in run.of_type("aws:ecs/taskDefinition:TaskDefinition") if "gc" in t.name]


def test_aws_gc_task_runs_the_rendered_gc_with_the_servers_image_roles_and_database_secret(aws_gc):
    [gc] = containers(aws_gc, "mlflow-server-gc").values()
    server = containers(aws_gc, "mlflow-server")["mlflow-server"]
    assert gc["image"] == server["image"], "the server's image, by digest"
    assert gc["command"][:3] == ["python", "-c", render.GC_SCRIPT]
    assert gc["command"][3:] == [server["command"][server["command"].index("--artifacts-destination") + 1], "14d",
                                 "3600"]
    assert {s["name"]: s["valueFrom"] for s in gc["secrets"]} == {
        render.BACKEND_URI_ENV: {s["name"]: s["valueFrom"] for s in server["secrets"]}[render.BACKEND_URI_ENV]}
    assert gc["user"] == "mlflow" and "portMappings" in gc and gc["portMappings"] == []
    task = aws_gc.one("aws:ecs/taskDefinition:TaskDefinition", "mlflow-server-gc").inputs
    server_task = aws_gc.one("aws:ecs/taskDefinition:TaskDefinition", "mlflow-server").inputs
    assert (task["taskRoleArn"], task["executionRoleArn"]) == (server_task["taskRoleArn"],
                                                               server_task["executionRoleArn"])
    assert task["family"] == "mlflow-aws-mlflow-gc"


def test_aws_schedule_runs_it_in_the_servers_network_in_utc(aws_gc):
    schedule = aws_gc.one("aws:scheduler/schedule:Schedule").inputs
    assert schedule["scheduleExpression"] == "cron(15 3 * * ? *)" and schedule["scheduleExpressionTimezone"] == "UTC"
    assert schedule["flexibleTimeWindow"] == {"mode": "OFF"}
    target = schedule["target"]
    assert target["arn"] == aws_gc.one("aws:ecs/cluster:Cluster").state["arn"]
    ecs = target["ecsParameters"]
    assert ecs["taskDefinitionArn"] == aws_gc.one("aws:ecs/taskDefinition:TaskDefinition",
                                                  "mlflow-server-gc").state["arn"]
    server = aws_gc.one("aws:ecs/service:Service", "mlflow-server").inputs["networkConfiguration"]
    assert ecs["networkConfiguration"] == {"subnets": server["subnets"], "securityGroups": server["securityGroups"],
                                           "assignPublicIp": False}
    assert ecs["launchType"] == "FARGATE" and ecs["taskCount"] == 1


def test_aws_scheduler_role_may_start_that_task_pass_its_two_roles_and_dead_letter_only(aws_gc):
    role = aws_gc.one("aws:iam/role:Role", "mlflow-server-gc-scheduler-role")
    [trust] = policy_statements(role, "assumeRolePolicy")
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    assert aws_gc.one("aws:scheduler/schedule:Schedule").inputs["target"]["roleArn"] == role.state["arn"]
    statements = {s["Sid"]: s for s in policy_statements(aws_gc.one("aws:iam/rolePolicy:RolePolicy",
                                                                    "mlflow-server-gc-scheduler"))}
    task_arn = aws_gc.one("aws:ecs/taskDefinition:TaskDefinition", "mlflow-server-gc").state["arn"]
    assert statements["RunTask"]["Action"] == ["ecs:RunTask"]
    assert statements["RunTask"]["Resource"] == [task_arn.rsplit(":", 1)[0] + ":*"]
    assert statements["RunTask"]["Condition"] == {
        "ArnEquals": {"ecs:cluster": aws_gc.one("aws:ecs/cluster:Cluster").state["arn"]}}
    server_task = aws_gc.one("aws:ecs/taskDefinition:TaskDefinition", "mlflow-server").inputs
    assert statements["PassTaskRoles"]["Resource"] == sorted([server_task["taskRoleArn"],
                                                              server_task["executionRoleArn"]])
    assert statements["PassTaskRoles"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    # Its dead letters go to the gc's failure queue, with the role's own identity
    # (https://docs.aws.amazon.com/scheduler/latest/UserGuide/configuring-schedule-dlq.html).
    queue = aws_gc.one("aws:sqs/queue:Queue")
    assert statements["DeadLetter"]["Action"] == ["sqs:SendMessage"]
    assert statements["DeadLetter"]["Resource"] == [queue.state["arn"]]
    assert set(statements) == {"RunTask", "PassTaskRoles", "DeadLetter"}


def test_aws_gc_leaks_no_secret(aws_gc):
    assert not find_leaks(aws_gc), find_leaks(aws_gc)


@pytest.mark.parametrize(("cron", "aws"), [
    ("0 3 * * *", "cron(0 3 * * ? *)"),
    ("30 2 * * 0,6", "cron(30 2 ? * 1,7 *)"),  # standard cron counts SUN=0, AWS SUN=1
    ("0 3 * * 1-5", "cron(0 3 ? * 2-6 *)"),
    ("0 4 1 * *", "cron(0 4 1 * ? *)"),
    ("*/30 * * * MON", "cron(*/30 * ? * MON *)"),
])
def test_cron_in_aws_form(cron, aws):
    assert aws_schedule_expression(cron) == aws


@pytest.mark.parametrize(("section", "stack", "message"), [
    ({"gcSchedule": "0 3 * *"}, "aws", "5 fields"),
    ({"gcSchedule": "0 3 1 * MON"}, "aws", "both a day of the month and a day of the week"),
    ({"gcSchedule": "0 3 ? * *"}, "aws", "'\\*' rather than '\\?'"),
    ({"gcSchedule": "0 3 * * */2"}, "azure", "day-of-week steps"),
    ({"gcOlderThan": "30 days"}, "aws", "#d#h#m#s"),
    ({"gcSchedule": "0 3 * * *"}, "local", "no scheduler; run scripts/gc from cron"),
])
def test_maintenance_config_errors(section, stack, message):
    raw = {"platform": stack, "maintenance": section}
    if stack == "aws":
        raw["aws"] = {"allowPlainHttp": True}
    with pytest.raises(ConfigError, match=message) as error:
        parse_stack_config(raw, f"Pulumi.{stack}.yaml")
    assert "maintenance." in str(error.value)


# --- gc on azure ---------------------------------------------------------------------------------

def test_azure_gc_job_on_a_schedule_as_the_server_identity(azure_gc):
    job = azure_gc.one("azure-native:app:Job")
    inputs = job.inputs
    server = azure_gc.one("azure-native:app:ContainerApp", "mlflow-server").inputs
    assert inputs["environmentId"] == server["managedEnvironmentId"]
    config = inputs["configuration"]
    assert config["triggerType"] == "Schedule" and config["replicaTimeout"] == 3600
    assert config["scheduleTriggerConfig"] == {"cronExpression": "15 3 * * *", "parallelism": 1,
                                               "replicaCompletionCount": 1}
    server_identity = identity(azure_gc, "server").state["id"]
    assert inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [server_identity]}
    assert config["registries"] == [{"server": server["configuration"]["registries"][0]["server"],
                                     "identity": server_identity}]
    [gc] = inputs["template"]["containers"]
    main = server["template"]["containers"][0]
    assert gc["image"] == main["image"] and gc["command"][:3] == ["python", "-c", render.GC_SCRIPT]
    assert gc["command"][3].startswith("wasbs://") and gc["command"][4:6] == ["14d", "3600"]
    env = {e["name"]: e for e in gc["env"]}
    assert env["AZURE_CLIENT_ID"]["value"] == identity(azure_gc, "server").state["clientId"]
    assert "value" not in env[render.BACKEND_URI_ENV] and env[render.BACKEND_URI_ENV]["secretRef"]
    # only the database URI in the job's secret store, as a secret
    assert [s["name"] for s in config["secrets"]] == [env[render.BACKEND_URI_ENV]["secretRef"]]
    assert all(is_secret_wrapper(item["value"]) for item in job.raw_inputs["configuration"]["secrets"])
    assert not find_leaks(azure_gc), find_leaks(azure_gc)
