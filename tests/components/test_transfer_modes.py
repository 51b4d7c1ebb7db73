"""artifacts.transfer (issue 26) in the rendered configuration: `proxied` renders exactly what the stack
rendered before the key existed; `direct` lets MLflow's server-info through unchanged (so clients use its
presigned multipart routes), pins the download URLs' lifetime, and puts the presigned route under the
artifact-path allow-list."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess

import pytest

from components import render
from components.config import ArtifactsConfig, ConfigError, ProxyConfig, ServerConfig, parse_stack_config

DIRECT = ArtifactsConfig(transfer="direct")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def server_settings(artifacts=None, **overrides) -> render.TrackingServerSettings:
    kwargs = {"artifacts": artifacts} if artifacts is not None else {}
    return render.tracking_server_settings(
        ServerConfig(**overrides), ProxyConfig(), ("mlflow.example.com",), image="img",
        artifacts_destination="s3://b/", s3_endpoint_url="http://minio.localhost:9000",
        artifact_secret_env_names=render.S3_CREDENTIAL_ENVS, **kwargs)


def proxy_settings(artifacts=None, prefix=None) -> render.ProxySettings:
    kwargs = {"artifacts": artifacts} if artifacts is not None else {}
    return render.proxy_settings(ProxyConfig(), ServerConfig(static_prefix=prefix), "mlflow-server:5000", **kwargs)


def test_proxied_is_the_default():
    assert ArtifactsConfig().transfer == "proxied"
    assert parse_stack_config({}, "Pulumi.local.yaml").artifacts.transfer == "proxied"


def test_a_wrong_transfer_names_the_key_and_the_allowed_values():
    with pytest.raises(ConfigError) as error:
        parse_stack_config({"artifacts": '{"transfer": "presigned"}'}, "Pulumi.local.yaml")
    assert "mlflow:artifacts.transfer: must be one of 'proxied' or 'direct' (got 'presigned')" in str(error.value)


def test_direct_needs_the_mlflow_whose_multipart_code_the_guard_repairs():
    """mlflow_guard/artifacts.py copies MLflow 3.17.2's multipart code; MLflow skips a plugin that does not import."""
    local = '{"s3PublicHost": "minio.localhost"}'
    with pytest.raises(ConfigError) as error:
        parse_stack_config({"mlflowVersion": "3.18.0", "artifacts": '{"transfer": "direct"}', "local": local},
                           "Pulumi.local.yaml")
    assert "artifacts.transfer direct needs mlflowVersion 3.17.2 (got 3.18.0)" in str(error.value)
    parse_stack_config({"mlflowVersion": "3.18.0"}, "Pulumi.local.yaml")  # proxied: any supported version
    parse_stack_config({"artifacts": '{"transfer": "direct"}', "local": local}, "Pulumi.local.yaml")


@pytest.mark.parametrize("prefix", [None, "/mlflow"])
def test_proxied_renders_what_the_stack_rendered_before(prefix):
    """The key at its default changes no byte: server env, command and nginx.conf."""
    assert server_settings(ArtifactsConfig()) == server_settings()
    assert not server_settings(ArtifactsConfig()).direct_transfers
    assert render.tracking_server_spec(server_settings(ArtifactsConfig())) == render.tracking_server_spec(
        server_settings())
    assert proxy_settings(ArtifactsConfig(), prefix) == proxy_settings(None, prefix)
    assert not proxy_settings(ArtifactsConfig(), prefix).direct_transfers
    conf = render.nginx_conf(proxy_settings(ArtifactsConfig(), prefix))
    assert conf.count("/3.0/mlflow/server-info {") == 2 and conf.count("multipart_uploads_enabled\":false") == 2


def test_direct_server_env_pins_the_download_url_lifetime_and_the_api_body_limit_and_nothing_else():
    proxied, direct = server_settings(), server_settings(DIRECT)
    assert direct.direct_transfers
    env = render.tracking_server_env(direct)
    assert env.pop(render.PRESIGNED_DOWNLOAD_TTL_ENV) == "300" == str(render.PRESIGNED_DOWNLOAD_TTL_SECONDS)
    # What Nginx takes of the request completing a direct upload (mlflow_guard.artifacts caps the parts by it).
    assert env.pop(render.API_BODY_LIMIT_ENV) == str(16 * 1024 * 1024)
    assert env == render.tracking_server_env(proxied)
    assert render.tracking_server_command(direct) == render.tracking_server_command(proxied)
    # The endpoint URLs are signed for is the platform's (s3_endpoint_url), never rewritten here.
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio.localhost:9000"
    # MLflow presigns upload parts with ExpectedBucketOwner as a signed header and hands clients no headers
    # (s3_artifact_repo.py create_multipart_upload): set, every direct upload would fail its signature.
    assert "MLFLOW_S3_EXPECTED_BUCKET_OWNER" not in env


@pytest.mark.parametrize("client_max_body_size, limit", [("0", 16 << 20), ("64g", 16 << 20), ("8m", 8 << 20)])
def test_the_servers_api_body_limit_is_the_one_nginx_renders(client_max_body_size, limit):
    """One source for both: a clientMaxBodySize below 16m lowers Nginx's API limit (proxy.api_body_limit), and the
    server's cap on parts with it."""
    proxy = ProxyConfig(client_max_body_size=client_max_body_size)
    settings = render.tracking_server_settings(ServerConfig(), proxy, ("h",), image="i", artifacts_destination="s3://b/",
                                               artifacts=DIRECT)
    assert render.tracking_server_env(settings)[render.API_BODY_LIMIT_ENV] == str(limit)
    conf = render.nginx_conf(render.proxy_settings(proxy, ServerConfig(), "s:5000", artifacts=DIRECT))
    assert f"        client_max_body_size {limit >> 20}m;\n        proxy_request_buffering off;" in conf


def _without_server_info(conf: str) -> str:
    return re.sub(r"        location = [^ ]*/3\.0/mlflow/server-info \{\n.*?\n        \}\n", "", conf, flags=re.S)


@pytest.mark.parametrize("prefix", [None, "/mlflow"])
def test_direct_nginx_passes_server_info_unchanged(prefix):
    proxied = render.nginx_conf(proxy_settings(None, prefix))
    direct = render.nginx_conf(proxy_settings(DIRECT, prefix))
    assert proxy_settings(DIRECT, prefix).direct_transfers
    assert "server-info" not in direct and "sub_filter" not in direct
    # Otherwise the same file: proxied adds the 501 answers on mpu/* and presigned/* (below); both answer the two
    # routes whose URL lifetime the request names.
    assert _without_unsupported(direct) == _without_unsupported(_without_server_info(proxied))
    answered = re.findall(r"api/2\\\.0/(\S+)\(\?:/\|\$\) \{\n(?:.*\n){2}            return 501", direct)
    assert sorted(answered) == sorted(render.proxy.ALWAYS_UNSUPPORTED), answered


@pytest.mark.parametrize("prefix", [None, "/mlflow"])
def test_direct_nginx_answers_the_one_url_presigning_routes_501(prefix):
    """Third cloud review of issue 26: presigned-upload-url and presigned-download-url sign one URL whose lifetime
    the request names (MLflow bounds it by S3's 7 days only; the download TTL the stack sets is overridden), the
    upload one a whole-object PUT past mlflow_guard.artifacts. Direct transfers keep 501 on them; mpu/* and
    presigned/* pass."""
    conf = render.nginx_conf(proxy_settings(DIRECT, prefix))
    answers = re.findall(r"location ~ (\S+) \{\n            types \{ \}\n            default_type application/json;\n"
                         r"            return 501 '([^']+)';", conf)
    root = f"{prefix}/" if prefix else "/"
    for api in ("api", "ajax-api"):
        for path, message in [("mlflow/artifacts/presigned-upload-url", "Presigned upload"),
                              ("mlflow/artifacts/presigned-download-url", "Presigned download")]:
            for uri in {f"{root}{api}/2.0/{path}", f"/{api}/2.0/{path}"}:
                [body] = [body for pattern, body in answers if re.search(pattern.replace("\\\\", "\\"), uri)]
                assert json.loads(body)["message"].startswith(message)
        for passed in ("mlflow-artifacts/mpu/create/1/x", "mlflow-artifacts/presigned/1/x"):
            assert not any(re.search(pattern.replace("\\\\", "\\"), f"{root}{api}/2.0/{passed}")
                           for pattern, _ in answers)


def _without_unsupported(conf: str) -> str:
    return re.sub(r"        location ~ [^ ]*presigned[^ ]*\(\?:/\|\$\) \{\n.*?\n        \}\n|"
                  r"        location ~ [^ ]*/mpu\(\?:/\|\$\) \{\n.*?\n        \}\n", "", conf, flags=re.S)


@pytest.mark.parametrize("prefix", [None, "/mlflow"])
def test_proxied_nginx_answers_the_presigning_routes_501_as_mlflow_does(prefix):
    """Review of issue 26: advertised off, the routes stayed reachable to a client that forces them (and on aws
    signed URLs for the global endpoint, past aws.allowedCidrs). MLflow's own unsupported answer makes the
    client fall back (tests/components/test_proxy_unsupported_presigned.py runs it through Nginx)."""
    conf = render.nginx_conf(proxy_settings(None, prefix))
    answers = re.findall(r"location ~ (\S+) \{\n            types \{ \}\n            default_type application/json;\n"
                         r"            return 501 '([^']+)';", conf)
    assert len(answers) == 4
    root = f"{prefix}/" if prefix else "/"
    for path, message in [("api/2.0/mlflow-artifacts/mpu/create/1/x", "Multipart upload"),
                          ("ajax-api/2.0/mlflow-artifacts/presigned/1/x", "Multipart download"),
                          ("api/2.0/mlflow/artifacts/presigned-upload-url", "Presigned upload"),
                          ("api/2.0/mlflow/artifacts/presigned-download-url", "Presigned download")]:
        for uri in {root + path, "/" + path}:
            [body] = [body for pattern, body in answers if re.search(pattern.replace("\\\\", "\\"), uri)]
            assert json.loads(body) == {"error_code": "NOT_IMPLEMENTED",
                                        "message": f"{message} is not supported for the current artifact repository"}
    assert not any(re.search(pattern, (root + "api/2.0/mlflow-artifacts/artifacts/1/x")) for pattern, _ in answers)


@pytest.mark.parametrize("prefix", [None, "/mlflow"])
@pytest.mark.parametrize("artifacts", [DIRECT, None], ids=["direct", "proxied"])
def test_the_presigned_route_is_under_the_artifact_path_allow_list(prefix, artifacts):
    """GET .../mlflow-artifacts/presigned/<path> signs a download URL for <path>: like the download route,
    <path> must start with an experiment id (or a workspace, then an id). In both modes (proxied answers 501
    after this check)."""
    conf = render.nginx_conf(proxy_settings(artifacts, prefix))
    route, well_formed = re.findall(r'if \(\$uri !?~ "([^"]+)"\)', conf)

    def refused(uri: str) -> bool:
        return bool(re.search(route, uri)) and not re.search(well_formed, uri)

    for root in ["", prefix] if prefix else [""]:
        for api in ("api", "ajax-api"):
            base = f"{root}/{api}/2.0/mlflow-artifacts"
            for path in ("/presigned/", "/presigned/file:", "/presigned/;", "/presigned/%2E", "/presigned/x/1/",
                         "/mpu/abort/;", "/artifacts/ "):
                assert refused(base + path), base + path
            for path in ("/presigned/1/abc/artifacts/model.pkl", "/presigned/workspaces/team/3/r/artifacts/x",
                         "/mpu/complete/4/r/artifacts/big.bin", "/artifacts"):
                assert not refused(base + path), base + path


@pytest.mark.parametrize("prefix", [None, "/mlflow"])
def test_direct_nginx_conf_passes_nginx_t(tmp_path, prefix):
    if NGINX is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (apt-get install nginx)")
        pytest.skip("nginx not installed: apt-get install nginx")
    paths = render.NginxPaths(config=str(tmp_path / "nginx.conf"), htpasswd=str(tmp_path / "htpasswd"),
                              pid=str(tmp_path / "nginx.pid"), temp_dir=str(tmp_path),
                              access_log=str(tmp_path / "a.log"), error_log=str(tmp_path / "e.log"))
    settings = dataclasses.replace(proxy_settings(DIRECT, prefix), paths=paths, listen_address="127.0.0.1",
                                   listen_port=18081, upstream="127.0.0.1:5000")
    (tmp_path / "nginx.conf").write_text(render.nginx_conf(settings))
    (tmp_path / "htpasswd").write_text("mlflow:{SSHA}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n")
    result = subprocess.run([NGINX, "-t", "-c", paths.config], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_mlflow_still_advertises_multipart_from_the_store_alone():
    """Direct mode renders nothing to switch multipart on: MLflow 3.17.2's server-info reports it from the
    artifact repository's type (S3: upload and download; Blob: upload only), and its client follows it."""
    import inspect

    from mlflow.server import handlers
    from mlflow.store.artifact.artifact_repo import MultipartDownloadMixin, MultipartUploadMixin
    from mlflow.store.artifact.azure_blob_artifact_repo import AzureBlobArtifactRepository
    from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

    source = inspect.getsource(handlers)
    assert "multipart_uploads_enabled = isinstance(artifact_repo, MultipartUploadMixin)" in source
    assert "multipart_downloads_enabled = isinstance(artifact_repo, MultipartDownloadMixin)" in source
    assert issubclass(S3ArtifactRepository, (MultipartUploadMixin,)) and issubclass(S3ArtifactRepository,
                                                                                      MultipartDownloadMixin)
    assert issubclass(AzureBlobArtifactRepository, MultipartUploadMixin)
    assert not issubclass(AzureBlobArtifactRepository, MultipartDownloadMixin)  # azure downloads stay proxied


def test_mlflow_auth_guards_the_multipart_and_presigned_routes():
    """Who may create an upload or get a download URL is MLflow's auth app's decision (mlflow/server/auth):
    the mpu routes as an update, the presigned route as a read of the experiment's artifacts, prefixed too."""
    from mlflow.server import auth

    for path in ("/api/2.0/mlflow-artifacts/mpu/create/1/r/artifacts/x", "/ajax-api/2.0/mlflow-artifacts/mpu/"
                 "complete/1/x", "/api/2.0/mlflow-artifacts/presigned/1/r/artifacts/x",
                 "/ajax-api/2.0/mlflow-artifacts/presigned/1/x"):
        assert auth._is_proxy_artifact_path(path), path
        assert not auth._is_native_fastapi_proxy_artifact_path(path, "POST")
    assert auth._get_proxy_artifact_validator("POST", {"artifact_path": "1/x"}) is \
        auth.validate_can_update_experiment_artifact_proxy
    assert auth._get_proxy_artifact_validator("GET", {"artifact_path": "1/x"}) is \
        auth.validate_can_read_experiment_artifact_proxy


def test_the_readme_table_of_largest_artifacts_states_the_configs_limits():
    """README, "Large artifacts": the proxied column is what the config model derives from each replica's disk."""
    from pathlib import Path

    from components.config import largest_transfer_mib, nginx_size
    from components.platforms.aws.config import AwsConfig
    from components.platforms.azure.config import AzureConfig

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("The largest artifact in each mode")[1].split("\n\n")[1]
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2] for line in table.splitlines()[2:]}
    assert set(rows) == {"local", "aws", "azure"}
    assert "unlimited" in rows["local"] and largest_transfer_mib("local", 1.0, None) is None
    aws = [nginx_size(largest_transfer_mib("aws", 1.0, AwsConfig(server_ephemeral_storage_gib=disk)))
           for disk in (None, 200)]
    assert f"`{aws[0]}`" in rows["aws"] and f"`{aws[1]}`" in rows["aws"], (aws, rows["aws"])
    for cpu in (0.25, 0.5, 1.0, 2.0):
        assert f"`{nginx_size(largest_transfer_mib('azure', cpu, AzureConfig()))}`" in rows["azure"], cpu
