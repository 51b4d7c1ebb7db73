"""The `local` program from Pulumi.local.yaml under recording mocks: the whole graph."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from urllib.parse import quote, unquote

import bcrypt
import pytest
import sqlalchemy

from components import render
from components.platforms import local
from tests.harness.program import REPO_ROOT, ProgramRun, Recorded, plain_strings, run_program
from tests.harness.stacks import CONTAINER, container, docker_env_of, env_of, find_leaks, secret_forms, uploads_of

VOLUME = "docker:index/volume:Volume"
COMPONENTS = {"mlflow:index:MetadataStore", "mlflow:index:ArtifactStore",
              "mlflow:index:TrackingServer", "mlflow:index:ReverseProxy"}


def secret_env_names(container: Recorded) -> list[str]:
    """The secrets the container's secret-env wrapper (its entrypoint) loads from files."""
    entrypoint = container.inputs["entrypoints"]
    assert entrypoint[:4] == ["sh", "-c", local.SECRET_ENV_WRAPPER, local.SECRET_ENV_WRAPPER_NAME], entrypoint[:4]
    assert entrypoint[-1] == "--"
    return entrypoint[4:-1]


# --- graph shape -------------------------------------------------------------------------------

def test_one_component_at_the_top_with_the_platform_and_four_components_under_it(local_run):
    top = [r for r in local_run.resources if r.parent.split("::")[-2] == "pulumi:pulumi:Stack"]
    assert [(r.type, r.name) for r in top] == [("mlflow:index:MlflowTrackingServer", "mlflow")]
    components = {r.type: r for r in local_run.resources if not r.custom}
    assert set(components) == COMPONENTS | {"mlflow:index:MlflowTrackingServer", "mlflow:index:LocalDockerPlatform"}
    for component in components.values():
        if component.type != "mlflow:index:MlflowTrackingServer":
            assert component.parent == top[0].urn, f"{component.name} should be a child of the MlflowTrackingServer"


def test_every_resource_has_a_component_parent(local_run):
    components = {r.urn: r.type for r in local_run.resources if not r.custom}
    for resource in local_run.resources:
        if resource.custom:
            assert resource.parent in components, f"{resource.type} {resource.name} has parent {resource.parent!r}"
    network = local_run.one("docker:index/network:Network")
    assert components[network.parent] == "mlflow:index:LocalDockerPlatform"


def test_expected_resources_per_component(local_run):
    def children(component_type: str) -> set[str]:
        parent = next(r.urn for r in local_run.resources if r.type == component_type)
        return {r.type for r in local_run.resources if r.parent == parent}

    assert {CONTAINER, VOLUME, "docker:index/remoteImage:RemoteImage",
            "random:index/randomPassword:RandomPassword"} <= children("mlflow:index:MetadataStore")
    assert {CONTAINER, VOLUME, "minio:index/s3Bucket:S3Bucket", "minio:index/iamUser:IamUser",
            "minio:index/iamPolicy:IamPolicy", "minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment",
            "pulumi:providers:minio"} <= children("mlflow:index:ArtifactStore")
    assert {CONTAINER, "docker:index/image:Image"} <= children("mlflow:index:TrackingServer")
    assert {CONTAINER, "random:index/randomPassword:RandomPassword",
            "docker:index/remoteImage:RemoteImage"} <= children("mlflow:index:ReverseProxy")


def test_private_bridge_network_and_every_container_on_it(local_run):
    network = local_run.one("docker:index/network:Network")
    assert network.inputs["driver"] == "bridge"
    for item in local_run.of_type(CONTAINER):
        if item.inputs.get("networkMode") == "none":
            assert "networksAdvanced" not in item.inputs, item.name
            continue
        assert [n["name"] for n in item.inputs["networksAdvanced"]] == [network.inputs["name"]], item.name
        assert "networkMode" not in item.inputs, "no container may join the host or default network"
    assert container(local_run, "mlflow-metadata-provision").inputs["networkMode"] == "none"


def test_only_proxy_and_minio_publish_ports_and_only_on_the_bind_address(local_run):
    published = {item.name: item.inputs.get("ports", []) for item in local_run.of_type(CONTAINER)}
    assert published["mlflow-metadata"] == [] or "ports" not in container(local_run, "mlflow-metadata").inputs
    assert not published.get("mlflow-server"), "the MLflow server must only be reachable through the proxy"
    # the public entry, and the metrics listener (observability.metricsPort), both on the bind address only
    assert [(p["internal"], p["external"], p["ip"]) for p in published["mlflow-proxy"]] == [
        (8080, 8080, "127.0.0.1"), (9180, 9180, "127.0.0.1")]
    assert {p["ip"] for p in published["mlflow-artifacts-minio"]} == {"127.0.0.1"}


def test_data_volumes_survive_destroy_and_are_not_replaced_by_edits(local_run):
    data_volumes = {v.inputs["name"]: v for v in local_run.of_type(VOLUME) if v.name.endswith("data")}
    assert set(data_volumes) == {"mlflow-local-pgdata", "mlflow-local-miniodata"}
    for volume in data_volumes.values():
        assert volume.retain_on_delete, f"{volume.name} must be retained on delete"
        assert {"name", "driver"} <= set(volume.ignore_changes), f"{volume.name} must not be replaced by edits"
    mounts = {m["volumeName"]: m["containerPath"] for m in container(local_run, "mlflow-metadata").inputs["volumes"]}
    assert mounts["mlflow-local-pgdata"] == "/var/lib/postgresql/data"
    mounts = {m["volumeName"]: m["containerPath"]
              for m in container(local_run, "mlflow-artifacts-minio").inputs["volumes"]}
    assert mounts["mlflow-local-miniodata"] == "/data"


def test_pinned_images(local_run):
    pulled = {image.inputs["name"] for image in local_run.of_type("docker:index/remoteImage:RemoteImage")}
    assert pulled == {"postgres:16.6-bookworm", "minio/minio:RELEASE.2025-04-22T22-12-26Z", "nginx:1.27.3-alpine"}
    for container_ in local_run.of_type(CONTAINER):
        assert not container_.inputs["image"].endswith(":latest")


def test_postgres_health_check_restart_and_max_connections(local_run):
    postgres = container(local_run, "mlflow-metadata")
    tests = postgres.inputs["healthcheck"]["tests"]
    assert tests[:2] == ["CMD", "pg_isready"]
    # Over TCP, where the image's temporary init server (socket only) cannot answer: healthy means
    # the final server, so provisioning never loses its session when the init server stops.
    assert tests[tests.index("-h") + 1] == "127.0.0.1"
    assert postgres.inputs["restart"] == "unless-stopped"
    assert postgres.inputs["wait"] is True
    assert postgres.inputs["command"] == ["postgres", "-c", "max_connections=100"]
    assert docker_env_of(postgres)["POSTGRES_PASSWORD_FILE"] == "/run/secrets/POSTGRES_PASSWORD"
    assert postgres.input_is_secret("uploads")


def test_application_role_is_provisioned_without_superuser_and_without_password_on_a_command_line(local_run):
    provision = container(local_run, "mlflow-metadata-provision")
    script = " ".join(provision.inputs["command"])
    assert "NOSUPERUSER" in script and "CREATE DATABASE" in script
    assert provision.inputs["attach"] is True and provision.inputs["mustRun"] is False
    assert "MLFLOW_DB_PASSWORD" in env_of(provision)
    assert '\\set app_password `cat "$MLFLOW_DB_PASSWORD_FILE"`' in script
    assert provision.input_is_secret("uploads")
    postgres = container(local_run, "mlflow-metadata")
    assert postgres.urn in provision.dependencies


def test_minio_bucket_private_and_server_user_scoped_to_the_bucket(local_run):
    bucket = local_run.one("minio:index/s3Bucket:S3Bucket")
    assert bucket.inputs["bucket"] == "mlflow-artifacts"
    assert bucket.inputs["acl"] == "private"
    assert not local_run.of_type("minio:index/s3BucketPolicy:S3BucketPolicy"), "no anonymous bucket policy"
    policy = json.loads(local_run.one("minio:index/iamPolicy:IamPolicy").inputs["policy"])
    resources = {res for statement in policy["Statement"] for res in statement["Resource"]}
    assert resources == {"arn:aws:s3:::mlflow-artifacts", "arn:aws:s3:::mlflow-artifacts/*"}
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert "s3:*" not in actions and not any(a.startswith("admin:") for a in actions)
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"} <= actions
    user = local_run.one("minio:index/iamUser:IamUser")
    attachment = local_run.one("minio:index/iamUserPolicyAttachment:IamUserPolicyAttachment")
    assert attachment.inputs["userName"] == user.inputs["name"]
    assert attachment.inputs["policyName"] == local_run.one("minio:index/iamPolicy:IamPolicy").inputs["name"]
    for item in (bucket, user, attachment):
        assert "pulumi:providers:minio" in item.provider, f"{item.name} must use the explicit MinIO provider"


def test_server_gets_the_scoped_key_not_minio_root(local_run):
    server_env = env_of(container(local_run, "mlflow-server"))
    minio_env = env_of(container(local_run, "mlflow-artifacts-minio"))
    user = local_run.one("minio:index/iamUser:IamUser")
    assert server_env["AWS_ACCESS_KEY_ID"] == user.inputs["name"]
    assert server_env["AWS_SECRET_ACCESS_KEY"] == user.inputs["secret"]
    assert server_env["AWS_ACCESS_KEY_ID"] != minio_env["MINIO_ROOT_USER"]
    assert server_env["AWS_SECRET_ACCESS_KEY"] != minio_env["MINIO_ROOT_PASSWORD"]
    assert "MINIO_ROOT_PASSWORD" not in server_env
    assert server_env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"


def test_server_image_built_from_the_dockerfile_with_pinned_mlflow(local_run):
    image = local_run.one("docker:index/image:Image")
    build = image.inputs["build"]
    assert (REPO_ROOT / build["dockerfile"]).resolve() == REPO_ROOT / "docker" / "mlflow" / "Dockerfile"
    assert (REPO_ROOT / build["context"]).resolve() == REPO_ROOT
    assert build["args"] == {"MLFLOW_VERSION": "3.17.2"}
    assert image.inputs["skipPush"] is True
    dockerfile = (REPO_ROOT / "docker" / "mlflow" / "Dockerfile").read_text()
    assert "USER mlflow" in dockerfile and "mlflow==${MLFLOW_VERSION}" in dockerfile
    pins = (REPO_ROOT / "docker" / "mlflow" / "requirements.txt").read_text().split()
    assert any(p.startswith("psycopg2-binary==") for p in pins) and any(p.startswith("boto3==") for p in pins)
    assert container(local_run, "mlflow-server").inputs["image"] == image.inputs["imageName"]


def test_schema_upgrade_finishes_before_the_server_starts(local_run):
    upgrade = container(local_run, "mlflow-server-db-upgrade")
    server = container(local_run, "mlflow-server")
    assert upgrade.inputs["attach"] is True, "pulumi must wait for the upgrade to exit"
    assert upgrade.inputs["mustRun"] is False
    assert "commands.main(['upgrade'" in upgrade.inputs["command"][-1]
    assert upgrade.urn in server.dependencies
    provision = container(local_run, "mlflow-metadata-provision")
    assert provision.urn in upgrade.dependencies, "the role must exist before the schema upgrade"


def test_server_arguments_security_middleware_and_no_secret_on_the_command_line(local_run):
    server = container(local_run, "mlflow-server")
    command = server.inputs["command"]
    assert set(secret_env_names(server)) == {render.BACKEND_URI_ENV, render.SECRETS_KEK_ENV, "AWS_ACCESS_KEY_ID",
                                             "AWS_SECRET_ACCESS_KEY"}
    # the Prometheus directory emptied first, then the server
    assert command[:5] == ["sh", "-c", render.METRICS_DIR_RESET, "sh", render.METRICS_DIR]
    command = command[5:]
    assert command[:2] == ["mlflow", "server"]
    assert command[command.index("--expose-prometheus") + 1] == render.METRICS_DIR
    assert "--disable-security-middleware" not in command
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert {"localhost", "127.0.0.1"} <= set(hosts) and "*" not in hosts
    assert command[command.index("--artifacts-destination") + 1] == "s3://mlflow-artifacts/"
    assert "--serve-artifacts" in command
    assert command[command.index("--workers") + 1] == "2"
    assert "--backend-store-uri" not in command
    joined = " ".join(command)
    assert "postgresql" not in joined and "@" not in joined
    env = env_of(server)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] == "4" and env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] == "4"
    assert server.input_is_secret("uploads")
    assert server.inputs["healthcheck"]["tests"][-1].endswith("'http://127.0.0.1:5000/health', timeout=4)")
    assert server.inputs["user"] == "mlflow"


def test_mlflow_secrets_are_encrypted_with_a_generated_key_and_the_ai_gateway_is_off(local_run):
    """Unset, MLflow encrypts the secrets it stores with a passphrase published in its source."""
    server = container(local_run, "mlflow-server")
    env = env_of(server)
    key = env["MLFLOW_CRYPTO_KEK_PASSPHRASE"]
    assert key in local_run.generated_secrets and len(key) == 48
    assert server.input_is_secret("uploads")
    assert local_run.one("random:index/randomPassword:RandomPassword", "mlflow-server-secrets-key").parent.endswith(
        "mlflow:index:TrackingServer::mlflow-server")
    assert env["MLFLOW_ENABLE_AI_GATEWAY"] == "false"


def test_backend_uri_names_the_driver_and_encodes_the_password(local_run):
    server = container(local_run, "mlflow-server")
    uri = env_of(server)["MLFLOW_BACKEND_STORE_URI"]
    assert uri.startswith("postgresql+psycopg2://mlflow:")
    parsed = sqlalchemy.engine.make_url(uri)
    password = local_run.one("random:index/randomPassword:RandomPassword", "mlflow-metadata-password")
    provision_password = env_of(container(local_run, "mlflow-metadata-provision"))["MLFLOW_DB_PASSWORD"]
    assert parsed.password == provision_password, "the URI must carry the role's password, decoded intact"
    assert any(ch in parsed.password for ch in "@:/?#%"), "the generated password should exercise encoding"
    assert (parsed.host, parsed.port, parsed.database) == ("postgres", 5432, "mlflow")
    assert password.additional_secret_outputs  # the provider marks result/bcryptHash secret


def test_nginx_renders_from_config_and_htpasswd_from_the_bcrypt_hash(local_run, local_config):
    proxy = container(local_run, "mlflow-proxy")
    files = uploads_of(proxy)
    conf = files["/etc/nginx/nginx.conf"]
    assert "client_max_body_size 0;" in conf and "proxy_request_buffering off;" in conf
    assert "proxy_set_header Host $host;" in conf
    assert "server mlflow-server:5000;" in conf
    assert "location = /health {\n            auth_basic off;" in conf
    htpasswd = files["/etc/nginx/htpasswd"]
    user, digest = htpasswd.strip().split(":", 1)
    assert user == "mlflow"
    password = local_run.output("password")
    assert ssha_verifies(password, digest), "htpasswd must verify the exported password"
    assert not ssha_verifies(password + "x", digest)
    salt = local_run.one("random:index/randomBytes:RandomBytes")
    assert salt.inputs["length"] >= 8 and salt.additional_secret_outputs
    assert proxy.input_is_secret("uploads")
    assert proxy.inputs["command"] == ["nginx", "-c", "/etc/nginx/nginx.conf", "-g", "daemon off;"]
    assert proxy.inputs["healthcheck"]["tests"][-1] == f"http://127.0.0.1:8080{render.PROXY_LIVENESS_PATH}"
    server = container(local_run, "mlflow-server")
    assert server.urn in proxy.dependencies


def ssha_verifies(password: str, stored: str) -> bool:
    """Check an {SSHA} hash the way nginx does (independently of render.ssha_hash)."""
    import base64
    import hashlib

    assert stored.startswith("{SSHA}")
    raw = base64.b64decode(stored[len("{SSHA}"):])
    digest, salt = raw[:20], raw[20:]
    return len(salt) >= 4 and hashlib.sha1(password.encode() + salt).digest() == digest


def test_bcrypt_htpasswd_when_configured(local_config):
    run = run_program({**local_config, "mlflow:proxy": {"passwordHash": "bcrypt"}})
    user, digest = uploads_of(container(run, "mlflow-proxy"))["/etc/nginx/htpasswd"].strip().split(":", 1)
    assert digest.startswith("$2a$") and bcrypt.checkpw(run.output("password").encode(), digest.encode())
    assert not run.of_type("random:index/randomBytes:RandomBytes")


# --- outputs and secrets -----------------------------------------------------------------------

def test_stack_outputs(local_run):
    assert local_run.output("tracking_uri") == "http://localhost:8080"
    assert local_run.output("username") == "mlflow"
    assert local_run.output("bucket") == "mlflow-artifacts"
    assert local_run.output("minio_console_url") == "http://127.0.0.1:9001"
    assert local_run.output_is_secret("password") and local_run.output_is_secret("client_env")
    assert local_run.output_is_secret("database_uri")
    assert local_run.output("database_uri") == env_of(container(local_run, "mlflow-server"))["MLFLOW_BACKEND_STORE_URI"]
    lines = local_run.output("client_env").splitlines()
    assert lines[0] == "export MLFLOW_TRACKING_URI=http://localhost:8080"
    assert lines[1] == "export MLFLOW_TRACKING_USERNAME=mlflow"
    assert shlex.split(lines[2]) == ["export", f"MLFLOW_TRACKING_PASSWORD={local_run.output('password')}"]


def test_secrets_stay_wrapped_even_where_the_engine_would_not_mark_them(local_config):
    """Like plain mocks (or a provider that forgets additional_secret_outputs): the program wraps
    every secret it passes on itself."""
    for sections in ({}, {"mlflow:proxy": {"tls": "self-signed"}}):
        run = run_program({**local_config, **sections}, emulate_secret_outputs=False)
        assert not find_leaks(run), find_leaks(run)


def test_no_generated_secret_in_plain_text_anywhere(local_run):
    assert len(local_run.generated_secrets) >= 5, "every password in the stack should be generated"
    leaks = find_leaks(local_run)
    assert not leaks, "plain-text secrets: " + ", ".join(leaks)


def test_the_leak_scan_finds_a_plain_secret(local_run):
    """Guard the guard: the scan above must see a secret that is not wrapped."""
    secret = local_run.generated_secrets[0]
    planted = {"command": ["echo", f"x{quote(secret, safe='')}y"]}
    hits = [path for path, text in plain_strings(planted)
            if any(form in text or form in unquote(text) for form in secret_forms(secret))]
    assert hits == ["command[1]"]


def test_component_outputs_keep_passwords_secret(local_run):
    metadata = local_run.one("mlflow:index:MetadataStore")
    proxy = local_run.one("mlflow:index:ReverseProxy")
    from tests.harness.program import is_secret_wrapper

    assert is_secret_wrapper(metadata.outputs["password"]) and is_secret_wrapper(metadata.outputs["connection_uri"])
    assert is_secret_wrapper(proxy.outputs["password"])
    assert not is_secret_wrapper(proxy.outputs["url"])


# --- secrets reach containers as files -----------------------------------------------------------

DOCKER_VISIBLE = ("envs", "command", "entrypoints", "labels", "healthcheck")
"""What `docker inspect` shows of a container (its config), secret in Pulumi's state or not."""


_VARIANTS: dict[str, ProgramRun] = {}


def local_variants(local_config) -> dict[str, ProgramRun]:
    """The default graph, TLS on, and the two auth apps' (each with its own secrets)."""
    if _VARIANTS:
        return _VARIANTS
    _VARIANTS.update({"default": run_program(local_config),
            "tls": run_program({**local_config, "mlflow:proxy": {"tls": "self-signed"}}),
            **{mode: run_program({**local_config, "mlflow:auth": {"mode": mode, **extra}}, secret_keys=["mlflow:auth"])
               for mode, extra in (("mlflow", {}), ("oidc", {"oidc": {
                   "discoveryUrl": "https://idp.example/.well-known/openid-configuration",
                   "clientId": "mlflow", "clientSecret": "oidc-client-secret-value"}}))}})
    return _VARIANTS


def test_no_secret_value_in_what_docker_inspect_shows(local_config):
    """Every generated secret (and its URL-encoded or quoted forms) is absent from every container's
    env, command, entrypoint, labels and health check, read unwrapped: a Pulumi secret in the state
    is still plain text in `docker inspect`."""
    for variant, run in local_variants(local_config).items():
        secrets = [*run.generated_secrets, "oidc-client-secret-value"]
        for item in run.of_type(CONTAINER):
            for key in DOCKER_VISIBLE:
                for path, text in plain_strings(item.inputs.get(key)):
                    found = [s for s in secrets
                             if any(form in text or form in unquote(text) for form in secret_forms(s))]
                    assert not found, f"{variant}: {item.name} {key}{path} shows a secret"


def test_each_secret_is_a_file_only_the_containers_user_reads(local_config):
    """Each NAME_FILE names an upload that holds the secret, mode 0400, owned by the uid the
    container's reader runs as; the uploads are a Pulumi secret."""
    owners = {"mlflow-metadata": "0", "mlflow-artifacts-minio": "0", "mlflow-metadata-provision": "999"}
    for variant, run in local_variants(local_config).items():
        with_files = {item.name for item in run.of_type(CONTAINER)
                      if "/run/secrets/" in " ".join(item.inputs.get("envs", []))}
        assert {"mlflow-metadata", "mlflow-artifacts-minio", "mlflow-metadata-provision", "mlflow-server",
                "mlflow-server-db-upgrade"} <= with_files, variant
        for item in run.of_type(CONTAINER):
            pointers = {k: v for k, v in docker_env_of(item).items() if k.endswith("_FILE")}
            secret_uploads = [u for u in item.inputs.get("uploads", []) if u["file"].startswith("/run/secrets/")]
            assert sorted(pointers.values()) == sorted(u["file"] for u in secret_uploads), f"{variant}: {item.name}"
            if not pointers:
                continue
            assert item.input_is_secret("uploads"), f"{variant}: {item.name}"
            owner = owners.get(item.name, local.IMAGE_USER_IDS["mlflow"])
            for upload in secret_uploads:
                assert (upload["permissions"], upload["owner"], upload["group"]) == ("0400", owner, owner), \
                    upload["file"]
                assert upload["content"], upload["file"]
            if item.inputs["image"].startswith("mlflow-platform/"):  # the server image: the wrapper loads them
                assert sorted(f"{name}_FILE" for name in secret_env_names(item)) == sorted(pointers)


def test_the_minio_root_credentials_and_the_postgres_superuser_password_are_files(local_run):
    minio_env = docker_env_of(container(local_run, "mlflow-artifacts-minio"))
    assert minio_env["MINIO_ROOT_USER_FILE"] == "/run/secrets/MINIO_ROOT_USER"  # absolute: MinIO reads it as is
    assert minio_env["MINIO_ROOT_PASSWORD_FILE"] == "/run/secrets/MINIO_ROOT_PASSWORD"
    minio = env_of(container(local_run, "mlflow-artifacts-minio"))
    provider = local_run.one("pulumi:providers:minio")
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (
        provider.inputs["minioUser"], provider.inputs["minioPassword"]), "the provider logs in as the files say"
    assert env_of(container(local_run, "mlflow-metadata"))["POSTGRES_PASSWORD"] in local_run.generated_secrets


def test_postgres_uid_follows_the_image_flavour():
    assert local.postgres_user_id("postgres:16.6-bookworm") == "999"
    assert local.postgres_user_id("registry.example:5000/postgres:16.6-alpine3.21") == "70"


# --- the secret-env wrapper, run for real -----------------------------------------------------------

HOSTILE = "p@ss:/?#%&+ $HOME `id` 'q' \"d\" \\ \n-x\n\n"
PRINT_ENV = ["python3", "-c", "import json, os; print(json.dumps({'env': dict(os.environ), 'pid': os.getpid()}))"]


def run_wrapped(tmp_path: Path, files: dict[str, str], names: list[str], command: list[str],
                env: dict[str, str] | None = None):
    import os
    import subprocess

    pointers = {}
    for name, content in files.items():
        path = tmp_path / name
        path.write_text(content)
        path.chmod(0o400)
        pointers[f"{name}_FILE"] = str(path)
    process = subprocess.Popen([*local.secret_env_entrypoint(names), *command],
                               env={"PATH": os.environ["PATH"], **pointers, **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=30)
    return process, out, err


def test_the_wrapper_exports_each_file_byte_for_byte_and_execs(tmp_path):
    process, out, err = run_wrapped(tmp_path, {"MLFLOW_BACKEND_STORE_URI": HOSTILE, "B": "plain"},
                                    ["MLFLOW_BACKEND_STORE_URI", "B"], PRINT_ENV)
    assert process.returncode == 0, err
    seen = json.loads(out)
    assert seen["env"]["MLFLOW_BACKEND_STORE_URI"] == HOSTILE and seen["env"]["B"] == "plain"
    assert not [key for key in seen["env"] if key.endswith("_FILE")], "the pointers are dropped"
    assert seen["pid"] == process.pid, "exec: the command replaces the shell (signals reach it)"
    assert HOSTILE.strip() not in err


def test_the_wrapper_passes_the_commands_arguments_and_exit_status(tmp_path):
    process, out, _ = run_wrapped(tmp_path, {"A": "x"}, ["A"],
                                  ["sh", "-c", 'echo "$A|$1|$2"; exit 7', "sh", "a b", "--"])
    assert (process.returncode, out) == (7, "x|a b|--\n")


@pytest.mark.parametrize(("files", "names", "command", "status", "message"), [
    ({}, ["A"], ["true"], 64, "A_FILE is not set"),
    ({"A": "x"}, ["A", "1BAD"], ["true"], 64, "not a variable name: 1BAD"),
    ({"A": "x"}, ["A", "B;rm"], ["true"], 64, "not a variable name: B;rm"),
    ({"A": "x"}, ["A"], [], 64, "no -- and command"),
])
def test_the_wrapper_refuses_what_it_cannot_do(tmp_path, files, names, command, status, message):
    process, out, err = run_wrapped(tmp_path, files, names, command)
    assert process.returncode == status and message in err and out == ""


def test_an_unreadable_file_stops_the_wrapper_before_the_command(tmp_path):
    process, out, err = run_wrapped(tmp_path, {}, ["A"], ["echo", "ran"], env={"A_FILE": str(tmp_path / "missing")})
    assert process.returncode == 66 and "cannot read" in err and out == ""
