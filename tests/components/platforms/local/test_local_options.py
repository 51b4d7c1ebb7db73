"""The `local` program with each option switched: what reaches nginx, the server and the outputs."""

from __future__ import annotations

import pytest

from components import render
from tests.harness.program import ProgramRun, is_secret_wrapper, run_program
from tests.harness.stacks import container, env_of, uploads_of


def run_with(local_config: dict, **sections) -> ProgramRun:
    config = dict(local_config)
    for key, value in sections.items():
        config[f"mlflow:{key}"] = value
    return run_program(config)


@pytest.fixture(scope="module")
def prefixed(local_config):
    return run_with(local_config, server={"staticPrefix": "/mlflow"})


@pytest.fixture(scope="module")
def tls(local_config):
    return run_with(local_config, proxy={"tls": "self-signed", "port": 8443},
                    hostnames=["mlflow.internal.example", "10.1.2.3"])


def test_static_prefix_reaches_server_nginx_and_tracking_uri(prefixed):
    command = container(prefixed, "mlflow-server").inputs["command"]
    assert command[command.index("--static-prefix") + 1] == "/mlflow"
    assert "/mlflow/health" in container(prefixed, "mlflow-server").inputs["healthcheck"]["tests"][-1]
    conf = uploads_of(container(prefixed, "mlflow-proxy"))["/etc/nginx/nginx.conf"]
    assert "location /mlflow/api/2.0/mlflow-artifacts/ {" in conf
    assert "rewrite ^ /mlflow/health break;" in conf
    assert prefixed.output("tracking_uri") == "http://localhost:8080/mlflow"
    assert prefixed.output("client_env").splitlines()[0] == "export MLFLOW_TRACKING_URI=http://localhost:8080/mlflow"


def test_tls_self_signed_certificate_for_the_host_names(tls):
    key = tls.one("tls:index/privateKey:PrivateKey")
    assert (key.inputs["algorithm"], key.inputs["ecdsaCurve"]) == ("ECDSA", "P256")
    certificate = tls.one("tls:index/selfSignedCert:SelfSignedCert")
    assert certificate.inputs["dnsNames"] == ["mlflow.internal.example"]
    assert certificate.inputs["ipAddresses"] == ["10.1.2.3"]
    assert "server_auth" in certificate.inputs["allowedUses"]
    assert is_secret_wrapper(certificate.raw_inputs["privateKeyPem"])
    proxy = container(tls, "mlflow-proxy")
    files = uploads_of(proxy)
    assert files["/etc/nginx/tls/server.key"].startswith("-----BEGIN EC PRIVATE KEY-----")
    assert files["/etc/nginx/tls/server.crt"].startswith("-----BEGIN CERTIFICATE-----")
    assert proxy.input_is_secret("uploads")
    assert "listen 8443 ssl;" in files["/etc/nginx/nginx.conf"]
    assert [(p["internal"], p["external"]) for p in proxy.inputs["ports"]] == [(8443, 8443), (9180, 9180)]
    assert tls.output("tracking_uri") == "https://mlflow.internal.example:8443"
    assert tls.output("tls_certificate").startswith("-----BEGIN CERTIFICATE-----")
    assert "export MLFLOW_TRACKING_SERVER_CERT_PATH=mlflow-proxy.crt" in tls.output("client_env")


def test_the_proxys_htpasswd_and_tls_files_are_readable_by_nginx_only(local_run, tls):
    """The proxy runs as `nginx` (render.reverse_proxy_spec; uid/gid 101 in the official nginx images),
    master and workers alike: the master reads the TLS key and certificate, the workers the htpasswd on
    each request, so 0400 owned by 101 is the tightest mode that still serves. nginx.conf holds no secret
    and keeps the image's default mode."""
    for run, private in ((local_run, ["/etc/nginx/htpasswd"]),
                         (tls, ["/etc/nginx/htpasswd", "/etc/nginx/tls/server.crt", "/etc/nginx/tls/server.key"])):
        proxy = container(run, "mlflow-proxy")
        assert proxy.inputs["user"] == "nginx" and proxy.input_is_secret("uploads")
        modes = {u["file"]: (u.get("permissions"), u.get("owner"), u.get("group")) for u in proxy.inputs["uploads"]}
        assert modes == {"/etc/nginx/nginx.conf": (None, None, None),
                         **{path: ("0400", "101", "101") for path in private}}


def test_the_servers_auth_config_is_readable_by_mlflow_only(local_config):
    """auth.mode mlflow: MLflow's auth config holds the auth database's URI (its password): a file
    only the server's user (10001, docker/mlflow/Dockerfile) reads."""
    server = container(run_with(local_config, auth={"mode": "mlflow"}), "mlflow-server")
    config = [u for u in server.inputs["uploads"] if u["file"] == render.AUTH_CONFIG_PATH]
    assert [(u["permissions"], u["owner"], u["group"]) for u in config] == [("0400", "10001", "10001")]
    assert "mlflow_auth" in config[0]["content"] and server.input_is_secret("uploads")


def test_tls_host_names_become_allowed_hosts_and_origins(tls):
    command = container(tls, "mlflow-server").inputs["command"]
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert hosts == ["mlflow.internal.example", "mlflow.internal.example:8443", "10.1.2.3", "10.1.2.3:8443"]
    origins = command[command.index("--cors-allowed-origins") + 1].split(",")
    assert origins == ["https://mlflow.internal.example:8443", "https://10.1.2.3:8443"]


def test_body_size_and_timeouts(local_config):
    run = run_with(local_config, proxy={"clientMaxBodySize": "2g", "timeoutSeconds": 120})
    conf = uploads_of(container(run, "mlflow-proxy"))["/etc/nginx/nginx.conf"]
    assert "client_max_body_size 2g;" in conf and "proxy_read_timeout 120s;" in conf
    command = container(run, "mlflow-server").inputs["command"]
    keep_alive = int(command[command.index("--uvicorn-opts") + 1].removeprefix("--timeout-keep-alive "))
    assert keep_alive > 120, "uvicorn must keep a connection longer than Nginx may leave it idle"


def test_workers_pools_jobs_and_max_connections(local_config):
    run = run_with(local_config, server={"workers": 4, "dbPoolSize": 3, "dbMaxOverflow": 2, "jobExecution": True},
                   database={"maxConnections": 200})
    server = container(run, "mlflow-server")
    command = server.inputs["command"]
    assert command[command.index("--workers") + 1] == "4"
    env = env_of(server)
    assert (env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"], env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"]) == ("3", "2")
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"
    assert container(run, "mlflow-metadata").inputs["command"] == ["postgres", "-c", "max_connections=200"]


def test_bucket_prefix_and_name(local_config):
    run = run_with(local_config, artifacts={"bucket": "team-ml", "prefix": "mlflow"})
    command = container(run, "mlflow-server").inputs["command"]
    assert command[command.index("--artifacts-destination") + 1] == "s3://team-ml/mlflow"
    import json

    policy = json.loads(run.one("minio:index/iamPolicy:IamPolicy").inputs["policy"])
    assert policy["Statement"][1]["Resource"] == ["arn:aws:s3:::team-ml/mlflow/*"]
    assert run.output("bucket") == "team-ml"


def test_bind_address_for_a_team_host(local_config):
    run = run_with(local_config, local={"bindAddress": "0.0.0.0"})
    assert {p["ip"] for p in container(run, "mlflow-proxy").inputs["ports"]} == {"0.0.0.0"}
    provider = run.one("pulumi:providers:minio")
    assert provider.inputs["minioServer"] == "127.0.0.1:9000"


def test_no_config_at_all_works():
    run = run_program({})
    assert run.output("tracking_uri") == "http://localhost:8080"
    assert len(run.of_type("docker:index/container:Container")) == 6


def test_stack_file_is_what_the_defaults_are(local_config):
    """Pulumi.local.yaml documents the defaults; it must not drift from the model."""
    from components.config import CONFIG_NAMESPACE, StackConfig, parse_stack_config

    raw = {key.split(":", 1)[1]: value for key, value in local_config.items() if key.startswith(CONFIG_NAMESPACE + ":")}
    assert parse_stack_config(raw, "Pulumi.local.yaml") == StackConfig()
