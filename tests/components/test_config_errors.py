"""Malformed stack configs: each is refused before any resource exists, naming its key."""

from __future__ import annotations

import pulumi
import pytest

from components.config import ConfigError, StackConfig, budget_replicas, connections_needed, parse_stack_config
from tests.harness.program import run_program, unwrap

# (raw config without namespace, the key that must be named, a fragment of what is allowed)
MALFORMED = [
    ({"platfrom": "local"}, "mlflow:platfrom", "unknown key"),
    ({"platform": "gcp"}, "mlflow:platform", "'local', 'aws' or 'azure'"),
    ({"mlflowVersion": "latest"}, "mlflow:mlflowVersion", "exact version"),
    ({"mlflowVersion": "2.9.2"}, "mlflow:mlflowVersion", "3.17.0 or later"),
    ({"hostnames": []}, "mlflow:hostnames", "at least one host"),
    ({"hostnames": ["https://mlflow.example.com"]}, "mlflow:hostnames", "without scheme or port"),
    ({"hostnames": ["mlflow.example.com:8080"]}, "mlflow:hostnames", "without scheme or port"),
    ({"hostnames": "localhost"}, "mlflow:hostnames", "valid"),
    ({"server": {"workers": 0}}, "mlflow:server.workers", ">= 1"),
    ({"server": {"workers": "many"}}, "mlflow:server.workers", "integer"),
    ({"server": {"dbPoolSize": -1}}, "mlflow:server.dbPoolSize", ">= 1"),
    ({"server": {"dbMaxOverflow": -5}}, "mlflow:server.dbMaxOverflow", ">= 0"),
    ({"server": {"staticPrefix": "mlflow"}}, "mlflow:server.staticPrefix", "leading slash"),
    ({"server": {"staticPrefix": "/mlflow/"}}, "mlflow:server.staticPrefix", "no trailing slash"),
    ({"server": {"workerz": 2}}, "mlflow:server.workerz", "unknown key"),
    ({"server": {"workers": 32, "dbPoolSize": 50}}, "server.dbPoolSize", "exceeds database.maxConnections"),
    ({"proxy": {"port": 0}}, "mlflow:proxy.port", ">= 1"),
    ({"proxy": {"port": 70000}}, "mlflow:proxy.port", "<= 65535"),
    ({"proxy": {"port": "eighty"}}, "mlflow:proxy.port", "integer"),
    ({"proxy": {"tls": "letsencrypt"}}, "mlflow:proxy.tls", "'off' or 'self-signed'"),
    ({"proxy": {"clientMaxBodySize": "10 gigs"}}, "mlflow:proxy.clientMaxBodySize", "nginx size syntax"),
    ({"proxy": {"clientMaxBodySize": "-1"}}, "mlflow:proxy.clientMaxBodySize", "nginx size syntax"),
    ({"proxy": {"username": "ad:min"}}, "mlflow:proxy.username", "':'"),
    ({"proxy": {"timeoutSeconds": 1}}, "mlflow:proxy.timeoutSeconds", ">= 10"),
    ({"proxy": {"image": "nginx:latest"}}, "mlflow:proxy.image", "pinned to a tag"),
    ({"proxy": {"image": "nginx"}}, "mlflow:proxy.image", "pinned to a tag"),
    ({"database": {"name": "MLflow-DB"}}, "mlflow:database.name", "lower-case SQL identifier"),
    ({"database": {"username": "1user"}}, "mlflow:database.username", "lower-case SQL identifier"),
    ({"database": {"maxConnections": 5}}, "mlflow:database.maxConnections", ">= 25"),
    ({"database": {"postgresVersion": "9.6"}}, "mlflow:database.postgresVersion", "14, 15, 16, 17"),
    ({"artifacts": {"bucket": "My_Bucket"}}, "mlflow:artifacts.bucket", "S3 bucket name"),
    ({"artifacts": {"bucket": "192.168.1.1"}}, "mlflow:artifacts.bucket", "S3 bucket name"),
    ({"artifacts": {"prefix": "/runs/"}}, "mlflow:artifacts.prefix", "no leading or trailing slash"),
    ({"artifacts": {"transfer": "presigned"}}, "mlflow:artifacts.transfer", "'proxied' or 'direct'"),
    ({"local": {"bindAddress": "localhost"}}, "mlflow:local.bindAddress", "IPv4 address"),
    ({"local": {"minioApiPort": 8080}}, "proxy.port, local.minioApiPort", "must all differ"),
    ({"local": {"postgresImage": "postgres"}}, "mlflow:local.postgresImage", "pinned to a tag"),
    ({"server": "big"}, "mlflow:server", "valid dictionary"),
    # the aws stack
    ({"platform": "aws", "aws": {"region": "Europe (Ireland)"}}, "mlflow:aws.region", "AWS region name"),
    ({"platform": "aws", "aws": {"region": "eu-west"}}, "mlflow:aws.region", "AWS region name"),
    ({"platform": "aws", "aws": {"dbInstanceClass": "t3.micro"}}, "mlflow:aws.dbInstanceClass", "RDS instance class"),
    ({"platform": "aws", "aws": {"dbBackupRetentionDays": 0}}, "mlflow:aws.dbBackupRetentionDays", ">= 1"),
    ({"platform": "aws", "aws": {"dbBackupRetentionDays": 40}}, "mlflow:aws.dbBackupRetentionDays", "<= 35"),
    ({"platform": "aws", "aws": {"logRetentionDays": 8}}, "mlflow:aws.logRetentionDays",
     "CloudWatch's retention values"),
    ({"platform": "aws",
      "aws": {"certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"}},
     "mlflow:aws", "aws.certificateArn needs aws.domain"),
    ({"platform": "aws", "aws": {"certificateArn": "my-cert", "domain": "m.example.com"}}, "mlflow:aws.certificateArn",
     "ACM certificate ARN"),
    ({"platform": "aws", "aws": {"hostedZoneId": "Z123"}}, "mlflow:aws", "aws.hostedZoneId needs aws.domain"),
    ({"platform": "aws", "aws": {"domain": "https://mlflow.example.com"}}, "mlflow:aws.domain",
     "fully qualified DNS name"),
    ({"platform": "aws", "aws": {"vpcId": "vpc-1"}}, "mlflow:aws", "needs all of aws.vpcId"),
    ({"platform": "aws", "aws": {"region": "eu-west-1", "availabilityZones": ["us-east-1a", "us-east-1b"]}},
     "mlflow:aws", "must be in aws.region"),
    ({"platform": "aws", "aws": {"availabilityZones": ["us-east-1a"]}}, "mlflow:aws.availabilityZones", "at least two"),
    ({"platform": "aws", "aws": {"allowedCidrs": ["10.0.0.0/33"]}}, "mlflow:aws.allowedCidrs", "IPv4 CIDRs"),
    ({"platform": "aws", "aws": {"loadBalancerIdleTimeoutSeconds": 5000}}, "mlflow:aws.loadBalancerIdleTimeoutSeconds",
     "<= 4000"),
    ({"platform": "aws", "aws": {"proxyCpu": 300}}, "mlflow:aws.proxyCpu", "Fargate CPU value"),
    ({"platform": "aws", "aws": {"dbEngineVersion": "15.4"}}, "aws.dbEngineVersion '15.4'",
     "does not match database.postgresVersion"),
    ({"platform": "aws", "proxy": {"tls": "self-signed"}}, "proxy.tls", "the load balancer terminates TLS"),
    ({"platform": "aws", "aws": {"dbAllocatedStorageGb": 10}}, "mlflow:aws.dbAllocatedStorageGb", ">= 20"),
    ({"platform": "aws", "aws": {"vpcCidr": "10.0.0.0/24"}}, "mlflow:aws.vpcCidr", "/20 or larger"),
    ({"platform": "aws", "aws": {"bogus": True}}, "mlflow:aws.bogus", "unknown key"),
    # authentication
    ({"auth": {"mode": "ldap"}}, "mlflow:auth.mode", "'proxy', 'mlflow' or 'oidc'"),
    ({"auth": {"mode": "mlflow", "defaultPermission": "WRITE"}}, "mlflow:auth.defaultPermission",
     "'READ', 'USE', 'EDIT', 'MANAGE' or 'NO_PERMISSIONS'"),
    ({"auth": {"adminUsername": "the admin"}}, "mlflow:auth.adminUsername", "letters, digits"),
    ({"auth": {"mode": "oidc"}}, "mlflow:auth", "auth.oidc.discoveryUrl, auth.oidc.clientId, auth.oidc.clientSecret"),
    ({"auth": {"mode": "oidc", "oidc": {"clientId": "x", "clientSecret": "y"}}}, "mlflow:auth",
     "needs auth.oidc.discoveryUrl"),
    ({"auth": {"oidc": {"discoveryUrl": "https://login.example.com/"}}}, "mlflow:auth.oidc.discoveryUrl",
     "/.well-known/openid-configuration"),
    ({"auth": {"oidc": {"discoveryUrl": "http://idp.example.com/.well-known/openid-configuration"}}},
     "mlflow:auth.oidc.discoveryUrl", "must use https"),
    ({"auth": {"oidc": {"userGroups": []}}}, "mlflow:auth.oidc.userGroups", "non-empty list"),
    ({"auth": {"oidc": {"adminGroup": "a,b"}}}, "mlflow:auth.oidc.adminGroup", "without commas"),
    ({"auth": {"oidc": {"scopes": ["email", "profile"]}}}, "mlflow:auth.oidc.scopes", "must include openid"),
    ({"auth": {"oidc": {"clientSecrett": "x"}}}, "mlflow:auth.oidc.clientSecrett", "unknown key"),
    ({"auth": {"mode": "oidc", "oidc": {"discoveryUrl": "https://i.example.com/.well-known/openid-configuration",
                                        "clientId": "x", "clientSecret": "y"}}, "server": {"staticPrefix": "/mlflow"}},
     "server.staticPrefix", "sign-in routes"),
    ({"auth": {"mode": "mlflow"}, "database": {"name": "m" * 60}}, "database.name", "at most 58 characters"),
    ({"auth": {"mode": "mlflow"}, "server": {"workers": 4, "dbPoolSize": 6, "dbMaxOverflow": 6}},
     "x 3 engines x", "exceeds database.maxConnections"),
]


@pytest.mark.parametrize("raw,key,allowed", MALFORMED, ids=[f"{m[1]}:{i}" for i, m in enumerate(MALFORMED)])
def test_malformed_config_names_its_key_the_stack_file_and_what_is_allowed(raw, key, allowed):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw, "Pulumi.local.yaml")
    message = str(caught.value)
    assert message.startswith("invalid stack configuration in Pulumi.local.yaml:")
    assert key in message, message
    assert allowed in message, message


def test_at_least_twenty_malformed_configs():
    assert len(MALFORMED) >= 20


def test_one_line_per_problem():
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({"server": {"workers": 0, "dbPoolSize": -1}, "proxy": {"tls": "yes"}, "bogus": 1},
                           "Pulumi.local.yaml")
    lines = str(caught.value).splitlines()[1:]
    assert len(lines) == 4, lines
    assert {line.split(":")[1] for line in lines} == {"server.workers", "server.dbPoolSize", "proxy.tls", "bogus"}


def test_structured_values_arrive_as_json_text_like_the_engine_sends_them():
    config = parse_stack_config({"server": '{"workers": 3}', "proxy": '{"port": 9443, "tls": "self-signed"}',
                                 "platform": "local"}, "Pulumi.local.yaml")
    assert config.server.workers == 3 and config.proxy.port == 9443 and config.proxy.tls == "self-signed"


def test_no_config_at_all_gives_working_local_defaults():
    config = parse_stack_config({}, "Pulumi.local.yaml")
    assert config == StackConfig()
    assert config.platform == "local" and config.proxy.client_max_body_size == "0"
    assert connections_needed(config.server, budget_replicas(config)) <= config.database.max_connections - 10


def test_program_stops_before_registering_any_resource():
    from tests.harness import program as harness

    captured = {}
    original = harness.RecordingMonitor.__init__

    def keep(self, mocks, *args):
        original(self, mocks, *args)
        captured["monitor"] = self

    harness.RecordingMonitor.__init__ = keep
    try:
        with pytest.raises(pulumi.RunError) as caught:
            run_program({"mlflow:proxy": {"port": 0, "tls": "maybe"}, "mlflow:server": {"workers": -1}})
    finally:
        harness.RecordingMonitor.__init__ = original
    message = str(caught.value)
    assert "Pulumi.local.yaml" in message
    assert "mlflow:proxy.port" in message and "mlflow:proxy.tls" in message and "mlflow:server.workers" in message
    assert captured["monitor"].recorded == {}, "no resource may be registered when the config is invalid"


OIDC = {"mode": "oidc", "oidc": {"discoveryUrl": "https://login.example.com/.well-known/openid-configuration",
                                  "clientId": "mlflow", "clientSecret": "plain-text-client-secret"}}


def test_a_client_secret_in_plain_text_is_refused_without_echoing_it():
    with pytest.raises(pulumi.RunError) as caught:
        run_program({"mlflow:auth": OIDC})
    message = str(caught.value)
    assert message.startswith("invalid stack configuration in Pulumi.local.yaml:")
    assert "mlflow:auth.oidc.clientSecret: is stored in plain text" in message
    assert "pulumi config set --secret --path mlflow:auth.oidc.clientSecret" in message
    assert "plain-text-client-secret" not in message


def test_a_secret_client_secret_is_accepted_and_stays_secret():
    run = run_program({"mlflow:auth": OIDC}, secret_keys=["mlflow:auth"])
    server = run.one("docker:index/container:Container", "mlflow-server")
    assert server.input_is_secret("uploads")
    files = {u["file"]: u["content"] for u in unwrap(server.raw_inputs["uploads"])}
    assert files["/run/secrets/OIDC_CLIENT_SECRET"] == "plain-text-client-secret"
    assert "OIDC_CLIENT_SECRET_FILE=/run/secrets/OIDC_CLIENT_SECRET" in unwrap(server.raw_inputs["envs"])
    assert "plain-text-client-secret" not in str(unwrap(server.raw_inputs["envs"]))


def test_unknown_platform_value_in_program_is_a_run_error():
    with pytest.raises(Exception) as caught:
        run_program({"mlflow:platform": "kubernetes"})
    assert isinstance(caught.value, pulumi.RunError), type(caught.value)
    assert "mlflow:platform" in str(caught.value) and "'local', 'aws' or 'azure'" in str(caught.value)


# Role names MLflow's own role may not take: the `local` superuser (MLflow would run as it), names
# PostgreSQL reserves (https://www.postgresql.org/docs/current/sql-createrole.html), RDS's own roles
# (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Appendix.PostgreSQL.CommonDBATasks.Roles.html) and
# Azure's (https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/how-to-create-users).
RESERVED_ROLES = ["postgres", "public", "pg_monitor", "rds_superuser", "rdsadmin", "azure_pg_admin", "azuresu"]
UNSAFE_PREFIXES = ["/mlflow/..", "/..", "/a/./b", "/a//b", "//mlflow", "/ml flow", "/mlflow;", "/ml%2e%2e", "/m$host"]


@pytest.mark.parametrize("role", RESERVED_ROLES)
def test_database_username_refuses_superuser_and_reserved_roles(role):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({"database": {"username": role}}, "Pulumi.local.yaml")
    message = str(caught.value)
    assert "mlflow:database.username: must not be a superuser or reserved role" in message
    assert "postgres" in message and "rds*" in message and "azure_*" in message


@pytest.mark.parametrize("prefix", UNSAFE_PREFIXES)
def test_static_prefix_refuses_traversal_empty_segments_and_unsafe_characters(prefix):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({"server": {"staticPrefix": prefix}}, "Pulumi.local.yaml")
    message = str(caught.value)
    assert "mlflow:server.staticPrefix" in message and "no '.' or '..' segments" in message
    assert "letters, digits, . _ ~ - only" in message


@pytest.mark.parametrize("prefix", ["/mlflow", "/team-a/mlflow", "/ml.flow/v1.2", "/~user/mlflow_2"])
def test_static_prefix_accepts_safe_paths(prefix):
    assert parse_stack_config({"server": {"staticPrefix": prefix}}, "Pulumi.local.yaml").server.static_prefix == prefix


@pytest.mark.parametrize("username", ["mlflow", "mlflow_tracking", "postgresql_user", "azure"])
def test_database_username_accepts_ordinary_roles(username):
    assert parse_stack_config({"database": {"username": username}}, "Pulumi.local.yaml").database.username == username


# Prefixes MLflow's auth app (and mlflow-oidc-auth) lets through without authentication, matched
# with str.startswith: a static prefix starting with one would open every route under it.
AUTH_EXEMPT_PREFIXES = ["/health", "/healthcare", "/health/mlflow", "/static", "/static-files", "/staticky",
                        "/favicon.ico", "/metrics", "/metricsapp", "/docs", "/redoc", "/openapi.json", "/login",
                        "/callback", "/oidc/static", "/oidc/ui", "/scim/v2", "/slo", "/saml/metadata", "/providers"]


@pytest.mark.parametrize("auth", [{}, {"auth": {"mode": "mlflow"}}])
@pytest.mark.parametrize("prefix", AUTH_EXEMPT_PREFIXES)
def test_static_prefix_refuses_what_the_auth_apps_exempt(prefix, auth):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({"server": {"staticPrefix": prefix}, **auth}, "Pulumi.local.yaml")
    message = str(caught.value)
    assert "mlflow:server.staticPrefix: must not start with '/" in message, message
    assert "without authentication" in message and "every route under the prefix" in message
    assert len(message.strip().splitlines()[-1]) > 40 and "\n" not in message.split("server.staticPrefix")[1]


@pytest.mark.parametrize("prefix", ["/mlflow", "/healt", "/my-health", "/statik", "/api-mlflow", "/favicon", "/doc",
                                    "/slot", "/provider", "/providers2", "/oidc", "/scim", "/team/health",
                                    "/statistics"])
def test_static_prefix_accepts_near_misses_of_the_exemptions(prefix):
    assert parse_stack_config({"server": {"staticPrefix": prefix}}, "Pulumi.local.yaml").server.static_prefix == prefix
