"""The `aws` program from Pulumi.aws.yaml under recording mocks: graph, exposure, IAM, secrets."""

from __future__ import annotations

import json
import subprocess
import sys

import pulumi
import pytest

from tests.harness.program import REPO_ROOT, ProgramRun, is_secret_wrapper, run_program, stack_file_config
from tests.harness.stacks import containers, policy_statements

COMPONENTS = {"mlflow:index:MetadataStore", "mlflow:index:ArtifactStore",
              "mlflow:index:TrackingServer", "mlflow:index:ReverseProxy"}


@pytest.fixture(scope="module")
def aws_config() -> dict:
    return stack_file_config("aws")


@pytest.fixture(scope="module")
def aws_run(aws_config) -> ProgramRun:
    return run_program(aws_config, stack="aws")


@pytest.fixture(scope="module")
def aws_https_run(aws_config) -> ProgramRun:
    config = dict(aws_config)
    settings = json.loads(config["mlflow:aws"])
    settings.update(domain="mlflow.example.com", hostedZoneId="Z0123456789ABCDEFGHIJ", deletionProtection=False,
                    finalSnapshot=False, protectResources=False, dbMultiAz=True)
    config["mlflow:aws"] = json.dumps(settings)
    config["mlflow:server"] = json.dumps({**json.loads(config["mlflow:server"]), "replicas": 2})
    config["mlflow:database"] = json.dumps({**json.loads(config["mlflow:database"]), "maxConnections": 200})
    return run_program(config, stack="aws")


# --- shape -------------------------------------------------------------------------------------

def test_components_and_parenting(aws_run):
    components = {r.urn: r.type for r in aws_run.resources if not r.custom}
    assert set(components.values()) == COMPONENTS | {"mlflow:index:MlflowTrackingServer", "mlflow:index:AwsPlatform"}
    for item in aws_run.resources:
        if item.custom:
            assert item.parent in components, f"{item.type} {item.name} must belong to a component"
    assert components[aws_run.one("aws:rds/instance:Instance").parent] == "mlflow:index:MetadataStore"
    assert components[aws_run.one("aws:s3/bucket:Bucket").parent] == "mlflow:index:ArtifactStore"
    assert components[aws_run.one("aws:ecs/service:Service", "mlflow-server").parent] == "mlflow:index:TrackingServer"
    assert components[aws_run.one("aws:ecs/service:Service", "mlflow-proxy").parent] == "mlflow:index:ReverseProxy"
    for shared in ("aws:ec2/vpc:Vpc", "aws:ecs/cluster:Cluster", "aws:lb/loadBalancer:LoadBalancer",
                   "pulumi:providers:aws"):
        assert components[aws_run.one(shared).parent] == "mlflow:index:AwsPlatform", shared
    logs = aws_run.one("aws:cloudwatch/logGroup:LogGroup", "mlflow-platform-logs")
    assert components[logs.parent] == "mlflow:index:AwsPlatform"
    assert {components[r.parent] for r in aws_run.of_type("aws:ec2/securityGroup:SecurityGroup")} == {
        "mlflow:index:AwsPlatform"}


def test_every_aws_resource_uses_the_stack_provider_in_the_configured_region(aws_run):
    provider = aws_run.one("pulumi:providers:aws")
    assert provider.inputs["region"] == "eu-west-1"
    for item in aws_run.resources:
        if item.custom and item.type.startswith("aws:"):
            assert item.provider.startswith(provider.urn), f"{item.type} {item.name} uses the default provider"


def test_vpc_with_public_and_private_subnets_in_two_zones(aws_run):
    subnets = aws_run.of_type("aws:ec2/subnet:Subnet")
    public = [s for s in subnets if s.name.startswith("mlflow-platform-public-")]
    private = [s for s in subnets if s.name.startswith("mlflow-platform-private-")]
    assert {s.inputs["availabilityZone"] for s in public} == {"eu-west-1a", "eu-west-1b"}
    assert {s.inputs["availabilityZone"] for s in private} == {"eu-west-1a", "eu-west-1b"}
    assert all(not s.inputs.get("mapPublicIpOnLaunch") for s in subnets)
    private_routes = aws_run.one("aws:ec2/routeTable:RouteTable", "mlflow-platform-private-routes")
    assert [r.get("natGatewayId") for r in private_routes.inputs["routes"]] == ["mlflow-platform-nat-id"], \
        "private subnets route via NAT"


def test_rds_private_encrypted_backed_up_and_protected(aws_run):
    db = aws_run.one("aws:rds/instance:Instance")
    inputs = db.inputs
    assert inputs["engine"] == "postgres"
    assert inputs["publiclyAccessible"] is False and inputs["storageEncrypted"] is True
    assert inputs["backupRetentionPeriod"] == 7 and inputs["deletionProtection"] is True
    assert inputs["skipFinalSnapshot"] is False and inputs["finalSnapshotIdentifier"].startswith("mlflow-aws-final-")
    assert inputs["instanceClass"] == "db.t4g.small" and inputs["multiAz"] is False
    assert db.protect, "the database must be protected against accidental deletion"
    assert "password" not in inputs and inputs["manageMasterUserPassword"] is True, "RDS keeps the master password"
    assert inputs["username"] == "mlflow_admin"
    assert inputs["vpcSecurityGroupIds"] == ["mlflow-platform-database-sg-id"]
    subnet_group = aws_run.one("aws:rds/subnetGroup:SubnetGroup")
    assert sorted(subnet_group.inputs["subnetIds"]) == ["mlflow-platform-private-eu-west-1a-id",
                                                        "mlflow-platform-private-eu-west-1b-id"]
    parameters = {p["name"]: p["value"]
                  for p in aws_run.one("aws:rds/parameterGroup:ParameterGroup").inputs["parameters"]}
    assert parameters == {"max_connections": "200", "rds.force_ssl": "1"}


def test_s3_bucket_private_encrypted_versioned_tls_only(aws_run):
    bucket = aws_run.one("aws:s3/bucket:Bucket")
    assert bucket.protect and bucket.inputs["forceDestroy"] is False
    block = aws_run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(block[key] is True
               for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    sse = aws_run.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")
    assert aws_run.one("aws:s3/bucketVersioning:BucketVersioning").inputs["versioningConfiguration"]["status"] \
        == "Enabled"
    assert aws_run.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs["rule"]["objectOwnership"] \
        == "BucketOwnerEnforced"
    [statement] = policy_statements(aws_run.one("aws:s3/bucketPolicy:BucketPolicy"))
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    lifecycle = aws_run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    assert {"expire-noncurrent-versions", "abort-incomplete-uploads"} == {rule["id"] for rule in lifecycle}
    assert not [r for r in aws_run.of_type("aws:s3/bucketPolicy:BucketPolicy")
                for s in policy_statements(r) if s["Effect"] == "Allow" and s.get("Principal") == "*"]


def test_ecr_repository_scans_on_push_and_the_image_is_pushed_there(aws_run):
    repository = aws_run.one("aws:ecr/repository:Repository", "mlflow-server-image-repository")
    assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True} and repository.protect
    image = aws_run.one("docker:index/image:Image", "mlflow-server-image")
    assert image.inputs["imageName"].startswith(
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlflow-aws/mlflow-server:")
    assert image.inputs["build"]["args"] == {"MLFLOW_VERSION": "3.17.2"}
    assert is_secret_wrapper(image.raw_inputs["registry"]["password"]), "the registry token must stay secret"
    server = containers(aws_run, "mlflow-server")["mlflow-server"]
    assert server["image"].split("@")[0].startswith(image.inputs["imageName"].rsplit(":", 1)[0])
    assert "@sha256:" in server["image"], "tasks run the pushed digest"


def test_fargate_services_in_private_subnets_without_public_ips(aws_run):
    for name in ("mlflow-server", "mlflow-proxy"):
        service = aws_run.one("aws:ecs/service:Service", name).inputs
        assert service["launchType"] == "FARGATE"
        network = service["networkConfiguration"]
        assert network["assignPublicIp"] is False
        assert sorted(network["subnets"]) == ["mlflow-platform-private-eu-west-1a-id",
                                              "mlflow-platform-private-eu-west-1b-id"]
        assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    proxy = aws_run.one("aws:ecs/service:Service", "mlflow-proxy").inputs
    assert (proxy["loadBalancers"][0]["containerPort"] == 8080
            and proxy["loadBalancers"][0]["containerName"] == "mlflow-proxy")
    server = aws_run.one("aws:ecs/service:Service", "mlflow-server").inputs
    assert not server.get("loadBalancers"), "the MLflow server is reachable only through the proxy"
    alias = server["serviceConnectConfiguration"]["services"][0]["clientAlias"][0]
    assert alias == {"port": 5000, "dnsName": "mlflow-server"}


def test_role_setup_then_schema_upgrade_run_before_the_server_in_the_same_task(aws_run):
    defs = containers(aws_run, "mlflow-server")
    assert list(defs) == ["mlflow-db-setup", "mlflow-db-upgrade", "mlflow-server"]
    setup, upgrade, server = defs.values()
    assert setup["essential"] is False and upgrade["essential"] is False
    assert setup["dependsOn"] == []
    assert upgrade["dependsOn"] == [{"containerName": "mlflow-db-setup", "condition": "SUCCESS"}]
    assert server["dependsOn"] == [{"containerName": "mlflow-db-upgrade", "condition": "SUCCESS"}]
    assert "commands.main(['upgrade'" in upgrade["command"][-1]
    assert [s["name"] for s in upgrade["secrets"]] == ["MLFLOW_BACKEND_STORE_URI"]
    # The setup logs in as the RDS master, whose credentials RDS keeps: referenced, never copied.
    master = aws_run.one("aws:rds/instance:Instance").state["masterUserSecrets"][0]["secretArn"]
    setup_secrets = {s["name"]: s["valueFrom"] for s in setup["secrets"]}
    assert setup_secrets["MLFLOW_DB_ADMIN_USER"] == f"{master}:username::"
    assert setup_secrets["MLFLOW_DB_ADMIN_PASSWORD"] == f"{master}:password::"
    assert setup_secrets["MLFLOW_DB_PASSWORD"].startswith("arn:aws:secretsmanager:") and master not in setup_secrets[
        "MLFLOW_DB_PASSWORD"]
    setup_env = {e["name"]: e["value"] for e in setup["environment"]}
    assert setup_env["MLFLOW_DB_USER"] == "mlflow" and setup_env["MLFLOW_DB_SSLMODE"] == "require"
    assert setup_env["MLFLOW_DB_HOST"].endswith(".rds.amazonaws.com")
    assert master not in json.dumps(server), "the MLflow server never gets the master's credentials"


def test_server_gets_the_db_uri_from_secrets_manager_and_no_static_keys(aws_run):
    server = containers(aws_run, "mlflow-server")["mlflow-server"]
    env = {e["name"]: e["value"] for e in server["environment"]}
    assert "MLFLOW_BACKEND_STORE_URI" not in env
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
    secrets = {s["name"]: s["valueFrom"] for s in server["secrets"]}
    assert set(secrets) == {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_CRYPTO_KEK_PASSPHRASE"}
    assert all(arn.startswith("arn:aws:secretsmanager:") for arn in secrets.values())
    version = aws_run.one("aws:secretsmanager/secretVersion:SecretVersion", "mlflow-server-mlflow-backend-store-uri")
    assert version.input_is_secret("secretString")
    assert version.inputs["secretString"].startswith("postgresql+psycopg2://mlflow:"), \
        "MLflow's own role, not the master"
    # MLflow's secrets (AI Gateway keys) are encrypted with the stack's generated key, not MLflow's default
    key = aws_run.one("aws:secretsmanager/secretVersion:SecretVersion", "mlflow-server-mlflow-crypto-kek-passphrase")
    generated = aws_run.one("random:index/randomPassword:RandomPassword", "mlflow-server-secrets-key")
    assert generated.inputs["length"] == 48 and generated.additional_secret_outputs
    assert key.input_is_secret("secretString") and key.inputs["secretString"] in aws_run.generated_secrets
    assert len(key.inputs["secretString"]) == 48
    assert env["MLFLOW_ENABLE_AI_GATEWAY"] == "false", "MLflow's AI Gateway stays off unless the config enables it"
    assert "--disable-security-middleware" not in server["command"]
    hosts = server["command"][server["command"].index("--allowed-hosts") + 1].split(",")
    assert hosts[0].endswith(".elb.amazonaws.com"), "allowed hosts come from the load balancer's DNS name"
    assert server["healthCheck"]["command"][-1].endswith("'http://127.0.0.1:5000/health', timeout=4)")


def test_proxy_runs_the_rendered_config_with_htpasswd_from_secrets_manager(aws_run):
    proxy = containers(aws_run, "mlflow-proxy")["mlflow-proxy"]
    env = {e["name"]: e["value"] for e in proxy["environment"]}
    [conf] = [value for value in env.values() if value.startswith("# Rendered by components/render.py")]
    assert "server mlflow-server:5000;" in conf and "client_max_body_size 8g;" in conf  # Pulumi.aws.yaml
    assert "auth_basic_user_file /tmp/mlflow-platform/htpasswd;" in conf
    assert not [v for v in env.values() if v.startswith("mlflow:$2")], "htpasswd must not be plain env"
    assert len(proxy["secrets"]) == 1
    script = proxy["command"][2]
    assert "/tmp/mlflow-platform/htpasswd" in script and proxy["command"][4:] == [
        "nginx", "-c", "/tmp/mlflow-platform/nginx.conf", "-g", "daemon off;"]


def test_task_role_only_has_the_buckets_object_actions(aws_run):
    bucket_name = aws_run.output("bucket")
    task_roles = {r.urn for r in aws_run.of_type("aws:iam/role:Role") if r.name.endswith("task-role")}
    policies = [p for p in aws_run.of_type("aws:iam/rolePolicy:RolePolicy")
                if p.name.startswith("mlflow-server-access")]
    assert len(policies) == 1
    for statement in policy_statements(policies[0]):
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert set(resources) <= {f"arn:aws:s3:::{bucket_name}", f"arn:aws:s3:::{bucket_name}/*"}, resources
        assert all(action.startswith("s3:") and "*" not in action for action in statement["Action"])
    assert not [p for p in aws_run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.startswith("mlflow-proxy-access")]
    assert not aws_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"), "no broad managed policies"
    assert not aws_run.of_type("aws:iam/accessKey:AccessKey"), "no static AWS keys"
    assert task_roles


def test_no_wildcard_iam_beyond_the_registry_login(aws_run):
    for policy in aws_run.of_type("aws:iam/rolePolicy:RolePolicy"):
        for statement in policy_statements(policy):
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(a.endswith(":*") or a == "*" for a in actions), (policy.name, actions)
            if "*" in resources:
                assert actions == ["ecr:GetAuthorizationToken"], (policy.name, statement)
    execution = [p for p in aws_run.of_type("aws:iam/rolePolicy:RolePolicy") if p.name == "mlflow-server-execution"][0]
    reads = [s for s in policy_statements(execution) if s.get("Sid") == "ReadSecrets"][0]
    assert all(arn.startswith("arn:aws:secretsmanager:") for arn in reads["Resource"])


def test_security_groups_open_to_the_world_only_on_the_load_balancer(aws_run):
    for rule in aws_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        if rule.inputs.get("cidrIpv4") == "0.0.0.0/0":
            assert (rule.inputs["securityGroupId"] == "mlflow-platform-load-balancer-sg-id"
                    and rule.inputs["fromPort"] in (80, 443)), rule.name
    database_in = [r.inputs for r in aws_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                   if r.inputs["securityGroupId"] == "mlflow-platform-database-sg-id"]
    assert database_in == [{"securityGroupId": "mlflow-platform-database-sg-id", "ipProtocol": "tcp", "fromPort": 5432,
                            "toPort": 5432, "referencedSecurityGroupId": "mlflow-platform-server-sg-id"}]
    server_in = [r.inputs for r in aws_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                 if r.inputs["securityGroupId"] == "mlflow-platform-server-sg-id"]
    assert [r["referencedSecurityGroupId"] for r in server_in] == ["mlflow-platform-proxy-sg-id"]
    for rule in aws_run.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"):
        if rule.inputs.get("cidrIpv4") == "0.0.0.0/0":
            assert rule.inputs["fromPort"] == 443, rule.name


def test_load_balancer_http_with_a_warning_when_no_domain(aws_run):
    lb = aws_run.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb["internal"] is False and lb["idleTimeout"] == 900 and lb["dropInvalidHeaderFields"] is True
    assert sorted(lb["subnets"]) == ["mlflow-platform-public-eu-west-1a-id", "mlflow-platform-public-eu-west-1b-id"]
    assert [listener.inputs["protocol"] for listener in aws_run.of_type("aws:lb/listener:Listener")] == ["HTTP"]
    assert "plain HTTP" in aws_run.output("warning")
    target = aws_run.one("aws:lb/targetGroup:TargetGroup").inputs
    assert target["healthCheck"]["path"] == "/nginx-health" and target["targetType"] == "ip"
    assert aws_run.output("tracking_uri").startswith("http://mlflow-mlflow-platform-load-balancer-") 


def test_https_with_acm_certificate_when_a_domain_and_zone_are_configured(aws_https_run):
    run = aws_https_run
    listeners = {listener.inputs["protocol"]: listener.inputs for listener in run.of_type("aws:lb/listener:Listener")}
    assert listeners["HTTPS"]["port"] == 443 and listeners["HTTPS"]["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert listeners["HTTP"]["defaultActions"][0]["type"] == "redirect"
    assert run.one("aws:acm/certificate:Certificate").inputs["domainName"] == "mlflow.example.com"
    assert run.output("tracking_uri") == "https://mlflow.example.com"
    assert "warning" not in run.stack_outputs
    server = containers(run, "mlflow-server")["mlflow-server"]
    hosts = server["command"][server["command"].index("--allowed-hosts") + 1]
    assert hosts == "mlflow.example.com,mlflow.example.com:443"
    db = run.one("aws:rds/instance:Instance")
    assert db.inputs["multiAz"] is True and db.inputs["skipFinalSnapshot"] is True and not db.protect
    assert run.one("aws:ecs/service:Service", "mlflow-server").inputs["desiredCount"] == 2
    ingress_ports = {r.inputs["fromPort"]
                     for r in run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                     if r.inputs.get("cidrIpv4") == "0.0.0.0/0"}
    assert ingress_ports == {80, 443}


def test_outputs(aws_run):
    assert aws_run.output("username") == "mlflow" and aws_run.output_is_secret("password")
    assert aws_run.output("bucket") == "mlflow-artifacts-20261126abcdef"
    assert aws_run.output("db_endpoint").endswith(".rds.amazonaws.com:5432")
    assert aws_run.output("log_group") == "/mlflow/aws"
    assert {group.inputs["retentionInDays"] for group in aws_run.of_type("aws:cloudwatch/logGroup:LogGroup")} == {30}
    assert aws_run.output_is_secret("client_env")


def test_no_generated_secret_in_plain_text_anywhere(aws_run, aws_https_run):
    from tests.harness.stacks import find_leaks

    for run in (aws_run, aws_https_run):
        assert len(run.generated_secrets) >= 3
        assert not find_leaks(run), find_leaks(run)


def test_secrets_stay_wrapped_even_where_the_engine_would_not_mark_them(aws_config):
    from tests.harness.stacks import find_leaks

    run = run_program(aws_config, stack="aws", emulate_secret_outputs=False)
    assert not find_leaks(run), find_leaks(run)


def test_existing_vpc_is_used_instead_of_creating_one(aws_config):
    config = dict(aws_config)
    settings = json.loads(config["mlflow:aws"])
    settings.update(vpcId="vpc-0123", publicSubnetIds=["subnet-a", "subnet-b"],
                    privateSubnetIds=["subnet-c", "subnet-d"])
    config["mlflow:aws"] = json.dumps(settings)
    run = run_program(config, stack="aws")
    assert not run.of_type("aws:ec2/vpc:Vpc") and not run.of_type("aws:ec2/natGateway:NatGateway")
    assert run.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"] == ["subnet-c", "subnet-d"]
    assert run.one("aws:lb/loadBalancer:LoadBalancer").inputs["subnets"] == ["subnet-a", "subnet-b"]


def test_local_stack_never_imports_the_aws_sdk():
    code = (
        "import sys; from tests.harness.program import run_program, stack_file_config; "
        "run_program(stack_file_config('local')); "
        "print('pulumi_aws' in sys.modules, 'pulumi_azure_native' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_each_execution_role_may_pull_only_its_own_services_image(aws_run):
    """No hidden platform state: the server's role pulls the server's repository, the proxy's the
    repository holding the stack's copy of Nginx; neither may pull the other's."""
    repositories = {r.state["arn"]: r.state["repositoryUrl"] for r in aws_run.of_type("aws:ecr/repository:Repository")}
    roles = {r.state["arn"]: r for r in aws_run.of_type("aws:iam/role:Role")}
    policies = {p.inputs["role"]: p for p in aws_run.of_type("aws:iam/rolePolicy:RolePolicy")}
    checked = 0
    for task in aws_run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        images = {c["image"] for c in json.loads(task.inputs["containerDefinitions"])}
        role = roles[task.inputs["executionRoleArn"]]
        statements = policy_statements(policies[role.state["id"]])
        pulled = [arn for s in statements if s.get("Sid") == "PullImage" for arn in s["Resource"]]
        own = {arn for arn, url in repositories.items() if any(image.startswith(url + ":") for image in images)}
        assert len(own) == 1 and set(pulled) == own, (task.name, pulled, images)
        assert any(s.get("Sid") == "RegistryLogin" for s in statements), task.name
        checked += 1
    assert checked == 2 and len(repositories) == 2, "the server's image and the copy of Nginx"


def test_an_existing_network_may_come_from_outputs_and_is_checked_once_known(tmp_path):
    """The ids of existing infrastructure take Outputs (another resource's); a bad one still fails,
    naming the key, once its value is known."""
    from tests.harness.program import run_under_mocks

    def program(certificate_arn: str):
        def body():
            from components import MlflowTrackingServer

            known_later = pulumi.Output.from_input
            server = MlflowTrackingServer("mlflow", {"platform": "aws", "aws": {
                "region": "eu-west-1", "vpc_id": known_later("vpc-1"), "domain": "mlflow.example.com",
                "public_subnet_ids": known_later(["subnet-a", "subnet-b"]),
                "private_subnet_ids": [known_later("subnet-c"), "subnet-d"],
                "certificate_arn": known_later(certificate_arn)}})
            return server.tracking_uri
        return body

    good = "arn:aws:acm:eu-west-1:123456789012:certificate/01234567-89ab-cdef-0123-456789abcdef"
    run = run_under_mocks(program(good), stack="aws")
    assert run.result == "https://mlflow.example.com"
    assert run.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"] == ["subnet-c", "subnet-d"]
    assert run.one("aws:lb/listener:Listener", "mlflow-platform-https").inputs["certificateArn"] == good
    with pytest.raises(Exception, match=r"aws\.certificateArn: must be an ACM certificate ARN.*\(got 'my-cert'\)"):
        run_under_mocks(program("my-cert"), stack="aws")


def test_an_output_where_a_key_shapes_the_graph_is_refused_by_name():
    from tests.harness.program import run_under_mocks

    def body():
        from components import MlflowTrackingServer

        MlflowTrackingServer("mlflow", {"server": {"replicas": pulumi.Output.from_input(2)}})

    with pytest.raises(Exception) as caught:
        run_under_mocks(body)
    assert "server.replicas: must be a plain value, known before any resource is created" in str(caught.value)
