"""artifacts.transfer on the `local` graph (issue 26): direct makes MinIO answer at local.s3PublicHost on the
published port both on the stack's Docker network (a network alias, the same port inside the container) and
on the host, and the server signs for exactly that URL; the config refuses names the server cannot reach."""

from __future__ import annotations

import json

import pytest

from components import render
from components.config import ConfigError, parse_stack_config
from tests.harness.program import ProgramRun, run_program
from tests.harness.stacks import container, docker_env_of, env_of, find_leaks

MINIO = "mlflow-artifacts-minio"


def direct_config(**local) -> dict:
    return {"mlflow:artifacts": json.dumps({"transfer": "direct"}),
            "mlflow:local": json.dumps({"s3PublicHost": "minio.localhost", **local})}


@pytest.fixture(scope="module")
def direct() -> ProgramRun:
    return run_program(direct_config())


@pytest.fixture(scope="module")
def moved_port() -> ProgramRun:
    return run_program(direct_config(minioApiPort=9100, bindAddress="0.0.0.0"))


def aliases(run: ProgramRun, name: str) -> list[str]:
    [network] = container(run, name).inputs["networksAdvanced"]
    return network["aliases"]


def test_proxied_minio_is_minio_on_the_network_only(local_run):
    minio = container(local_run, MINIO).inputs
    assert aliases(local_run, MINIO) == ["minio"]
    assert minio["command"][:4] == ["server", "/data", "--address", ":9000"]
    assert docker_env_of(container(local_run, "mlflow-server"))["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"


def test_direct_minio_answers_at_the_public_name_on_the_network_and_the_host(direct):
    minio = container(direct, MINIO).inputs
    assert aliases(direct, MINIO) == ["minio", "minio.localhost"]
    assert minio["command"][:4] == ["server", "/data", "--address", ":9000"]
    assert {"ip": "127.0.0.1", "internal": 9000, "external": 9000} in minio["ports"]
    assert minio["healthcheck"]["tests"] == ["CMD", "mc", "ready", "local"]
    env = docker_env_of(container(direct, "mlflow-server"))
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio.localhost:9000"
    assert env[render.PRESIGNED_DOWNLOAD_TTL_ENV] == "300"


def test_on_another_host_port_minio_listens_on_that_port_inside_too(moved_port):
    """http://<name>:<port> must be MinIO both inside the network (the alias, the container's own port) and on
    the host (the published port): the two ports are one."""
    minio = container(moved_port, MINIO).inputs
    assert minio["command"][:4] == ["server", "/data", "--address", ":9100"]
    assert {"ip": "0.0.0.0", "internal": 9100, "external": 9100} in minio["ports"]
    # The image's `mc` alias `local` is localhost:9000; the probe names the moved port itself.
    assert minio["healthcheck"]["tests"] == ["CMD", "mc", "ready", "published"]
    assert "MC_HOST_published=http://127.0.0.1:9100" in minio["envs"]
    assert docker_env_of(container(moved_port, "mlflow-server"))["MLFLOW_S3_ENDPOINT_URL"] == \
        "http://minio.localhost:9100"
    # The provider still sets MinIO up through the published port.
    assert moved_port.one("pulumi:providers:minio").inputs["minioServer"] == "127.0.0.1:9100"


def test_the_scoped_user_gets_exactly_the_actions_mlflow_calls(direct):
    policy = json.loads(direct.one("minio:index/iamPolicy:IamPolicy", "mlflow-artifacts-policy").inputs["policy"])
    assert policy == render.artifact_bucket_policy("mlflow-artifacts")
    assert [s["Action"] for s in policy["Statement"]] == [
        ["s3:ListBucket"], ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]]


def test_the_proxy_passes_server_info(direct, local_run):
    def conf(run: ProgramRun) -> str:
        return next(u["content"] for u in container(run, "mlflow-proxy").inputs["uploads"]
                    if u["file"].endswith("nginx.conf"))

    assert "server-info" in conf(local_run) and "server-info" not in conf(direct)


def test_direct_changes_only_minio_the_server_and_the_proxy_and_adds_the_part_signer(local_run, direct):
    """The scoped user's policy is one in both modes (review of issue 26); direct adds the part signer (fourth cloud
    review)."""
    before = {r.urn: r for r in local_run.resources}
    after = {r.urn: r for r in direct.resources}
    assert {after[urn].name for urn in set(after) - set(before)} == set(PART_SIGNER_RESOURCES)
    assert set(before) <= set(after)
    changed = {r.name for urn, r in after.items() if urn in before and r.raw_inputs != before[urn].raw_inputs}
    assert changed == {MINIO, "mlflow-server", "mlflow-proxy"}


# --- the part URLs' signer (fourth cloud review of issue 26) ---------------------------------------------------

PART_SIGNER_RESOURCES = {
    "mlflow-artifacts-part-signer-policy": "minio:index/iamPolicy:IamPolicy",
    "mlflow-artifacts-part-signer-user": "minio:index/iamUser:IamUser",
    "mlflow-artifacts-part-signer-policy-attachment": "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment",
    "mlflow-artifacts-part-signer-secret-key": "random:index/randomPassword:RandomPassword",
}


def test_the_part_signer_exists_only_with_direct_transfers(local_run, direct):
    for name, type_token in PART_SIGNER_RESOURCES.items():
        assert [r.name for r in local_run.of_type(type_token) if r.name == name] == []
        direct.one(type_token, name)
    assert not set(render.PART_SIGNER_CREDENTIAL_ENVS) & set(env_of(container(local_run, "mlflow-server")))


def test_the_part_signer_may_upload_parts_and_read_nothing(direct):
    policy = json.loads(direct.one("minio:index/iamPolicy:IamPolicy", "mlflow-artifacts-part-signer-policy")
                        .inputs["policy"])
    assert policy == render.part_signer_bucket_policy("mlflow-artifacts")
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == ["s3:PutObject"]
    assert statement["Resource"] == ["arn:aws:s3:::mlflow-artifacts/*"]
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert not {"s3:GetObject", "s3:ListBucket", "s3:DeleteObject", "s3:*"} & actions
    prefixed = render.part_signer_bucket_policy("b", "mlflow")["Statement"][0]["Resource"]
    assert prefixed == ["arn:aws:s3:::b/mlflow/*"]
    user = direct.one("minio:index/iamUser:IamUser", "mlflow-artifacts-part-signer-user")
    attachment = direct.one("minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment",
                            "mlflow-artifacts-part-signer-policy-attachment")
    assert user.inputs["name"] == "mlflow-artifacts-mlflow-part-signer"
    assert attachment.inputs["userName"] == user.inputs["name"]
    assert attachment.inputs["policyName"] == "mlflow-artifacts-mlflow-part-signer"
    for item in (user, attachment):
        assert "pulumi:providers:minio" in item.provider
    assert user.input_is_secret("secret")


def test_the_server_gets_the_part_signers_key_as_secret_env_only(direct):
    server = container(direct, "mlflow-server")
    env = env_of(server)
    user = direct.one("minio:index/iamUser:IamUser", "mlflow-artifacts-part-signer-user")
    key_env, secret_env = render.PART_SIGNER_CREDENTIAL_ENVS
    assert env[key_env] == user.inputs["name"] and env[secret_env] == user.inputs["secret"]
    assert env[secret_env] in direct.generated_secrets
    # Loaded from files by the secret-env wrapper: not in docker's env, not on the command line, secret in state.
    docker_env = docker_env_of(server)
    assert key_env not in docker_env and secret_env not in docker_env
    assert docker_env[f"{key_env}_FILE"] == f"/run/secrets/{key_env}"
    assert {key_env, secret_env} <= set(server.inputs["entrypoints"])
    assert env[secret_env] not in json.dumps(server.inputs["command"])
    assert server.input_is_secret("uploads")
    assert not find_leaks(direct), find_leaks(direct)


def test_the_part_signers_key_is_the_servers_and_not_gcs():
    """gc starts no upload: it gets the artifact store's credentials only."""
    from components.config import ProxyConfig, ServerConfig

    names = set(render.PART_SIGNER_CREDENTIAL_ENVS)
    settings = render.tracking_server_settings(
        ServerConfig(), ProxyConfig(), ("mlflow.localhost",), image="i", artifacts_destination="s3://b/",
        artifact_secret_env_names=render.S3_CREDENTIAL_ENVS, part_signer_secret_env_names=tuple(names))
    assert names <= set(render.tracking_server_spec(settings).secret_env_names)
    assert names.isdisjoint(render.gc_spec(settings, "30d").secret_env_names)


# --- what the config refuses ----------------------------------------------------------------------

def refused(artifacts: dict, local: dict) -> str:
    with pytest.raises(ConfigError) as error:
        parse_stack_config({"artifacts": json.dumps(artifacts), "local": json.dumps(local)}, "Pulumi.local.yaml")
    return str(error.value)


def test_direct_without_a_public_host_is_refused():
    message = refused({"transfer": "direct"}, {})
    assert "artifacts.transfer direct needs local.s3PublicHost" in message and "minio.localhost" in message


def test_a_public_host_without_direct_is_refused():
    assert "only with artifacts.transfer direct" in refused({}, {"s3PublicHost": "minio.localhost"})


@pytest.mark.parametrize("host,fragment", [
    ("localhost", "with a dot"), ("localhost.localdomain", "names the container itself"),
    ("127.0.0.1", "not an address"), ("192.168.1.20", "not an address"), ("::1", "not an address"),
    ("minio", "with a dot"), ("postgres", "with a dot"), ("*.example.com", "with a dot"),
    ("http://minio.localhost", "without scheme or port"), ("minio.localhost:9000", "without scheme or port")])
def test_names_the_server_cannot_reach_minio_at_are_refused(host, fragment):
    message = refused({"transfer": "direct"}, {"s3PublicHost": host})
    assert "mlflow:local.s3PublicHost" in message and fragment in message, message


@pytest.mark.parametrize("api_port, console_port", [(9001, 9002), (9002, 9001), (9100, 9001)])
def test_minio_listens_on_two_ports_whatever_the_api_port(api_port, console_port):
    """Review of issue 26: minioApiPort 9001 rendered `--address :9001 --console-address :9001`, and MinIO
    refuses to start. The console listens inside on a port of its own, published on minioConsolePort."""
    run = run_program(direct_config(minioApiPort=api_port, minioConsolePort=console_port))
    minio = container(run, MINIO).inputs
    command = minio["command"]
    address, console = command[command.index("--address") + 1], command[command.index("--console-address") + 1]
    assert address == f":{api_port}" and console != address
    assert {"ip": "127.0.0.1", "internal": api_port, "external": api_port} in minio["ports"]
    assert {"ip": "127.0.0.1", "internal": int(console[1:]), "external": console_port} in minio["ports"]


def test_one_host_port_for_minios_api_and_console_is_refused():
    with pytest.raises(ConfigError, match="minioApiPort, local.minioConsolePort"):
        parse_stack_config({"artifacts": json.dumps({"transfer": "direct"}),
                            "local": json.dumps({"s3PublicHost": "minio.localhost", "minioApiPort": 9001})},
                           "Pulumi.local.yaml")
