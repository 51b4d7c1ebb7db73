"""What every platform renders between the hops: the keep-alive chain (each hop keeps an idle
connection open longer than the hop in front of it) and the proxied-transfer limit (the largest
request Nginx accepts fits on the server replica's temporary disk), checked on the recorded graphs.

Sources: AWS, "configure the idle timeout of your application to be larger than the idle timeout
configured for the load balancer" (otherwise 502s):
https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout;
Fargate task storage (20 GiB, image layers included):
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-task-storage.html;
Container Apps ephemeral storage by vCPUs (4 GiB at <= 1, 8 above):
https://learn.microsoft.com/en-us/azure/container-apps/storage-mounts#ephemeral-storage.
"""

from __future__ import annotations

import json
import re

import pytest

from components import config as config_module
from components.platforms.aws import config as aws_config
from components import render
from components.config import MIB, ConfigError, ServerConfig, parse_stack_config
from components.platforms.azure.config import AZURE_INGRESS_TIMEOUT_SECONDS
from tests.harness.cloud_rules import _blocks, artifact_body_size, directive, public_server_block
from tests.harness.program import ProgramRun, run_program, stack_file_config


def with_sections(stack: str, **sections: dict) -> dict:
    config = stack_file_config(stack)
    for section, values in sections.items():
        key = f"mlflow:{section}"
        config[key] = json.dumps({**(json.loads(config[key]) if key in config else {}), **values})
    return config


@pytest.fixture(scope="module")
def aws_run() -> ProgramRun:
    return run_program(stack_file_config("aws"), stack="aws")


@pytest.fixture(scope="module")
def azure_run() -> ProgramRun:
    return run_program(stack_file_config("azure"), stack="azure")


def _aws_containers(run: ProgramRun, task: str) -> dict[str, dict]:
    definition = run.one("aws:ecs/taskDefinition:TaskDefinition", task)
    return {c["name"]: c for c in json.loads(definition.inputs["containerDefinitions"])}


def _rendered_conf(values) -> str:
    [conf] = [value for value in values if isinstance(value, str) and value.startswith("# Rendered by components/")]
    return conf


def _keepalive(conf: str) -> int:
    [seconds] = re.findall(r"^\s*keepalive_timeout (\d+)s;$", conf, re.MULTILINE)
    return int(seconds)


def _body_limit_bytes(conf: str) -> int:
    """What one artifact upload may be."""
    return config_module.nginx_size_bytes(artifact_body_size(conf))


def _uvicorn_keep_alive(command: list[str]) -> int:
    opts = command[command.index("--uvicorn-opts") + 1].split()
    return int(opts[opts.index("--timeout-keep-alive") + 1])


# --- the keep-alive chain ------------------------------------------------------------------------

def test_aws_each_hop_outlasts_the_one_in_front(aws_run):
    """ALB idle < Nginx keepalive_timeout; Service Connect's Envoy idle < uvicorn's keep-alive."""
    alb_idle = aws_run.one("aws:lb/loadBalancer:LoadBalancer").inputs["idleTimeout"]
    proxy = _aws_containers(aws_run, "mlflow-proxy")["mlflow-proxy"]
    conf = _rendered_conf(e["value"] for e in proxy["environment"])
    assert _keepalive(conf) > alb_idle
    service = aws_run.one("aws:ecs/service:Service", "mlflow-server").inputs
    envoy_idle = service["serviceConnectConfiguration"]["services"][0]["timeout"]["idleTimeoutSeconds"]
    server = _aws_containers(aws_run, "mlflow-server")["mlflow-server"]
    assert _uvicorn_keep_alive(server["command"]) > envoy_idle


def test_azure_nginx_outlasts_the_ingress(azure_run):
    """The Container Apps ingress keeps an idle connection 240 s (premium ingress: its setting)."""
    proxy = azure_run.one("azure-native:app:ContainerApp", "mlflow-proxy").inputs
    conf = _rendered_conf(e.get("value") for e in proxy["template"]["containers"][0]["env"])
    assert _keepalive(conf) > AZURE_INGRESS_TIMEOUT_SECONDS
    server = azure_run.one("azure-native:app:ContainerApp", "mlflow-server").inputs["template"]["containers"][0]
    # the ingress before the server counts whole minutes: at most 59 s above proxy.timeoutSeconds
    assert _uvicorn_keep_alive(server["command"] + server.get("args", [])) > AZURE_INGRESS_TIMEOUT_SECONDS + 59


def test_local_nginx_keeps_its_default_with_no_hop_in_front():
    run = run_program(stack_file_config("local"), stack="local")
    [container] = [c for c in run.of_type("docker:index/container:Container") if c.name == "mlflow-proxy"]
    uploads = container.inputs.get("uploads") or []
    conf = _rendered_conf(upload.get("content") for upload in uploads)
    assert _keepalive(conf) == render.NGINX_DEFAULT_KEEPALIVE_SECONDS


@pytest.mark.parametrize("front,expected", [(None, 75), (10, 75), (240, 300), (900, 960), (4000, 4060)])
def test_nginx_keepalive_follows_the_hop_in_front(front, expected):
    settings = render.proxy_settings(config_module.ProxyConfig(), ServerConfig(), "up:5000",
                                     front_idle_timeout_seconds=front)
    assert _keepalive(render.nginx_conf(settings)) == expected


def test_uvicorn_keep_alive_outlasts_the_proxy_timeout():
    settings = render.tracking_server_settings(ServerConfig(), config_module.ProxyConfig(timeout_seconds=900),
                                               ("h",), image="i", artifacts_destination="s3://b/")
    assert _uvicorn_keep_alive(list(render.tracking_server_command(settings))) == 960


# --- proxied-transfer limits ----------------------------------------------------------------------

@pytest.mark.parametrize("raw,limit", [
    ({"platform": "aws", "aws": {"allowPlainHttp": True}}, "8g"),
    ({"platform": "aws", "aws": {"allowPlainHttp": True, "serverEphemeralStorageGib": 100}}, "48g"),
    ({"platform": "azure"}, "1536m"),
    ({"platform": "azure", "server": {"cpu": 0.25, "memoryMib": 512}}, "384m"),
    ({"platform": "azure", "server": {"cpu": 0.5, "memoryMib": 1024}}, "768m"),
    ({"platform": "azure", "server": {"cpu": 2, "memoryMib": 4096}}, "3g"),
    ({}, "0"),
])
def test_body_size_defaults_to_what_a_replica_can_spool(raw, limit):
    assert parse_stack_config(raw, "Pulumi.test.yaml").proxy.client_max_body_size == limit


@pytest.mark.parametrize("raw,allowed", [
    ({"platform": "aws", "aws": {"allowPlainHttp": True}, "proxy": {"clientMaxBodySize": "0"}}, "up to 8g"),
    ({"platform": "aws", "aws": {"allowPlainHttp": True}, "proxy": {"clientMaxBodySize": "9g"}}, "up to 8g"),
    ({"platform": "azure", "proxy": {"clientMaxBodySize": "0"}}, "up to 1536m"),
    ({"platform": "azure", "proxy": {"clientMaxBodySize": "2g"}}, "up to 1536m"),
    ({"platform": "azure", "proxy": {"clientMaxBodySize": "1537m"}}, "up to 1536m"),
])
def test_body_sizes_a_replica_cannot_hold_are_refused(raw, allowed):
    with pytest.raises(ConfigError) as error:
        parse_stack_config(raw, "Pulumi.test.yaml")
    message = str(error.value)
    assert "proxy.clientMaxBodySize" in message and allowed in message and "temporary disk" in message


def test_unlimited_bodies_stay_allowed_on_local():
    assert parse_stack_config({"proxy": {"clientMaxBodySize": "0"}},
                              "Pulumi.local.yaml").proxy.client_max_body_size == "0"


@pytest.mark.parametrize("stack,disk_gib", [("aws", 20 - aws_config.FARGATE_IMAGE_RESERVE_GIB), ("azure", 3)])
def test_the_rendered_limit_fits_the_replica_disk_twice(stack, disk_gib, aws_run, azure_run):
    """On the graph: what Nginx accepts, twice (an upload and a download at once), fits the replica's disk
    with room left for the rest: aws keeps the image's share, azure a quarter of the 4 GiB the replica has at
    1 vCPU (its writable layer and logs count against the same limit)."""
    if stack == "aws":
        proxy = _aws_containers(aws_run, "mlflow-proxy")["mlflow-proxy"]
        conf = _rendered_conf(e["value"] for e in proxy["environment"])
        task = aws_run.one("aws:ecs/taskDefinition:TaskDefinition", "mlflow-server").inputs
        assert "ephemeralStorage" not in task, "Fargate's default disk"
    else:
        proxy = azure_run.one("azure-native:app:ContainerApp", "mlflow-proxy").inputs
        conf = _rendered_conf(e.get("value") for e in proxy["template"]["containers"][0]["env"])
        server = azure_run.one("azure-native:app:ContainerApp", "mlflow-server").inputs["template"]["containers"][0]
        assert float(server["resources"]["cpu"]) <= 1
    limit = _body_limit_bytes(conf)
    assert 0 < limit and 2 * limit <= disk_gib * 1024 * MIB


def test_only_artifact_uploads_may_be_larger_than_api_bodies(local_run, aws_run, azure_run):
    """Review 24 (azure 3 F1), on each stack's recorded nginx.conf: the server's own limit is the API's, and a
    location with a larger one is an artifact file route that refuses a body with any method but PUT (the
    streaming router takes PUT; anything else is held in memory by MLflow's WSGI bridge).
    tests/components/test_proxy_body_limits.py runs the same against the real Nginx."""
    api = config_module.nginx_size_bytes(render.API_BODY_LIMIT)
    confs = {
        "local": _rendered_conf(upload.get("content") for upload in local_run.one(
            "docker:index/container:Container", "mlflow-proxy").inputs.get("uploads", [])),
        "aws": _rendered_conf(e["value"] for e in _aws_containers(
            aws_run, "mlflow-proxy")["mlflow-proxy"]["environment"]),
        "azure": _rendered_conf(e.get("value") for e in azure_run.one(
            "azure-native:app:ContainerApp", "mlflow-proxy").inputs["template"]["containers"][0]["env"]),
    }
    for stack, conf in confs.items():
        server = public_server_block(conf)
        assert 0 < config_module.nginx_size_bytes(directive(server, "client_max_body_size")) <= api, stack
        for header, body in _blocks(server, "location"):
            limit = directive(body, "client_max_body_size")
            if limit is None or 0 < config_module.nginx_size_bytes(limit) <= api:
                continue
            assert "mlflow-artifacts/artifacts/" in header and "if ($mlflow_unstreamed_body)" in body, (stack, header)
