"""components.render on its own: pure functions, checked against the tools that consume their output
(SQLAlchemy's URL parser, bcrypt, nginx -t, the shell)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

import bcrypt
import pytest
import sqlalchemy

from components import render
from components.config import ProxyConfig, ServerConfig, StackConfig

HOSTILE = "p@ss:/?#%&+ w[]rd"


def settings(**overrides) -> render.TrackingServerSettings:
    base = render.tracking_server_settings(
        ServerConfig(), ProxyConfig(), ("mlflow.example.com",), image="img", artifacts_destination="s3://b/",
        s3_endpoint_url="http://minio:9000", artifact_secret_env_names=render.S3_CREDENTIAL_ENVS)
    return dataclasses.replace(base, **overrides)


@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_backend_uri_round_trips_a_hostile_password(driver):
    uri = render.backend_store_uri("ml user", HOSTILE, "db.internal", 5432, "mlflow", driver=driver)
    parsed = sqlalchemy.engine.make_url(uri)
    assert parsed.drivername == f"postgresql+{driver}"
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "ml user", HOSTILE, "db.internal", 5432, "mlflow")


def test_htpasswd_line_verifies_the_password():
    digest = bcrypt.hashpw(HOSTILE.encode(), bcrypt.gensalt(4, prefix=b"2a")).decode()
    line = render.htpasswd_line("mlflow", digest)
    user, stored = line.rstrip("\n").split(":", 1)
    assert user == "mlflow" and bcrypt.checkpw(HOSTILE.encode(), stored.encode())
    assert not bcrypt.checkpw(b"wrong", stored.encode())


def test_ssha_hash_is_nginx_ssha_and_salted():
    import base64
    import hashlib

    first, second = render.ssha_hash(HOSTILE, b"salt1234"), render.ssha_hash(HOSTILE, b"other567")
    assert first != second, "the salt must change the hash"
    raw = base64.b64decode(first.removeprefix("{SSHA}"))
    assert raw[20:] == b"salt1234" and raw[:20] == hashlib.sha1(HOSTILE.encode() + b"salt1234").digest()
    assert render.htpasswd_line("mlflow", first) == f"mlflow:{first}\n"
    with pytest.raises(ValueError):
        render.ssha_hash("x", b"ab")


@pytest.mark.parametrize("user,digest", [("a:b", "$2a$04$abc"), ("", "$2a$04$abc"), ("mlflow", "plaintext")])
def test_htpasswd_line_refuses_bad_input(user, digest):
    with pytest.raises(ValueError):
        render.htpasswd_line(user, digest)


def test_allowed_hosts_and_origins_follow_the_host_names_and_port():
    assert render.allowed_hosts(("a.example", "10.0.0.5"), 8443) == ("a.example", "a.example:8443", "10.0.0.5",
                                                                     "10.0.0.5:8443")
    assert render.public_origins(("a.example",), "https", 443) == ("https://a.example:443", "https://a.example")
    assert render.public_url("a.example", "https", 443, "/mlflow") == "https://a.example/mlflow"
    assert render.public_url("localhost", "http", 8080, None) == "http://localhost:8080"


def test_server_command_keeps_security_on_and_secrets_off_the_command_line():
    spec = render.tracking_server_spec(settings())
    command = spec.command
    assert "--disable-security-middleware" not in command
    assert command[command.index("--allowed-hosts") + 1] == "mlflow.example.com,mlflow.example.com:8080"
    assert command[command.index("--cors-allowed-origins") + 1] == "http://mlflow.example.com:8080"
    assert "--backend-store-uri" not in command and "--static-prefix" not in command
    assert spec.secret_env_names == (render.BACKEND_URI_ENV, render.SECRETS_KEK_ENV,
                                     "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    assert render.SECRETS_KEK_ENV == "MLFLOW_CRYPTO_KEK_PASSPHRASE"  # the name MLflow reads its key from
    assert not set(spec.env) & set(spec.secret_env_names)
    assert spec.env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert spec.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert spec.env["MLFLOW_ENABLE_AI_GATEWAY"] == "false"
    enabled = render.tracking_server_settings(
        ServerConfig.model_validate({"aiGateway": True}), ProxyConfig(), ("mlflow.example.com",), image="img",
        artifacts_destination="s3://b/")
    assert render.tracking_server_spec(enabled).env["MLFLOW_ENABLE_AI_GATEWAY"] == "true"


def test_static_prefix_moves_the_health_probe_and_adds_the_flag():
    spec = render.tracking_server_spec(settings(static_prefix="/mlflow"))
    assert spec.command[spec.command.index("--static-prefix") + 1] == "/mlflow"
    assert spec.health_check.http_path == "/mlflow/health"
    assert "/mlflow/health" in spec.health_check.command[-1]


def test_workspaces_flag_only_when_configured():
    assert "--enable-workspaces" not in render.tracking_server_spec(settings()).command
    enabled = render.tracking_server_settings(
        ServerConfig.model_validate({"workspaces": True}), ProxyConfig(), ("mlflow.example.com",), image="img",
        artifacts_destination="s3://b/")
    assert "--enable-workspaces" in render.tracking_server_spec(enabled).command


def test_job_execution_and_pool_sizes_reach_the_env():
    env = render.tracking_server_env(settings(job_execution=True, db_pool_size=7, db_max_overflow=0))
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"
    assert env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] == "7" and env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] == "0"


def test_schema_upgrade_reads_the_uri_from_the_environment_only():
    spec = render.schema_upgrade_spec(settings())
    assert spec.secret_env_names == (render.BACKEND_URI_ENV,)
    assert "://" not in " ".join(spec.command), "no URI on the command line"
    assert f"os.environ['{render.BACKEND_URI_ENV}']" in spec.command[-1]


def test_schema_upgrade_script_really_upgrades_a_database(tmp_path):
    """Run the exact script against SQLite: the URI comes only from the environment."""
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = render.schema_upgrade_spec(settings())
    result = subprocess.run([sys.executable, *spec.command[1:]], env={**os.environ, render.BACKEND_URI_ENV: uri},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as connection:
        version = connection.execute(sqlalchemy.text("select version_num from alembic_version")).scalar()
    from mlflow.store.db.utils import _get_latest_schema_revision

    assert version == _get_latest_schema_revision()


def proxy(**overrides) -> render.ProxySettings:
    return dataclasses.replace(render.proxy_settings(ProxyConfig(), ServerConfig(), "mlflow-server:5000"), **overrides)


def test_nginx_conf_defaults():
    conf = render.nginx_conf(proxy())
    for line in ("client_max_body_size 0;", "proxy_request_buffering off;", "proxy_set_header Host $host;",
                 "listen 8080;", "server mlflow-server:5000;", "proxy_read_timeout 900s;",
                 "auth_basic_user_file /etc/nginx/htpasswd;"):
        assert line in conf, line
    assert "keepalive " not in conf.split("upstream mlflow_upstream")[1].split("}")[0], "no upstream keepalive"
    assert "ssl_certificate" not in conf
    health = conf.split("location = /health {")[1].split("}")[0]
    assert "auth_basic off;" in health and "rewrite ^ /health break;" in health


def test_nginx_conf_body_size_and_timeouts_from_config():
    conf = render.nginx_conf(render.proxy_settings(ProxyConfig(client_max_body_size="512m", timeout_seconds=60),
                                                   ServerConfig(), "up:5000"))
    assert "client_max_body_size 512m;" in conf and "proxy_send_timeout 60s;" in conf


def test_nginx_conf_tls():
    settings_ = render.proxy_settings(ProxyConfig(tls="self-signed"), ServerConfig(), "up:5000")
    conf = render.nginx_conf(settings_)
    assert settings_.listen_port == 8443 and "listen 8443 ssl;" in conf
    assert "ssl_certificate /etc/nginx/tls/server.crt;" in conf and "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    spec = render.reverse_proxy_spec(settings_, "nginx:1.27.3-alpine")
    assert set(spec.runtime_file_paths) == {"/etc/nginx/htpasswd", "/etc/nginx/tls/server.crt",
                                            "/etc/nginx/tls/server.key"}
    assert "--no-check-certificate" in spec.health_check.command


def test_nginx_conf_static_prefix_rewrites_artifacts_to_the_streaming_route():
    conf = render.nginx_conf(proxy(static_prefix="/mlflow"))
    assert "rewrite ^ /mlflow/health break;" in conf
    artifacts = conf.split("location /mlflow/api/2.0/mlflow-artifacts/ {")[1]
    files = artifacts.split(r"location ~ ^/mlflow/api/2\.0/mlflow-artifacts/artifacts/. {")[1]
    # only file GET/PUT go to the unprefixed streaming route; listing, DELETE, multipart stay prefixed
    assert "if ($request_method ~ ^(GET|PUT)$) {" in files
    assert r"rewrite ^/mlflow(/api/2\.0/mlflow-artifacts/.*)$ $1 break;" in files
    assert "location = /mlflow/health {\n            auth_basic off;" in conf


@pytest.mark.parametrize("prefix", [None, "/mlflow"])
def test_locations_inherit_the_forwarded_headers(prefix):
    """A proxy_set_header inside a location would drop every server-level one (Host included,
    which MLflow's host check needs): all of them live at server level only."""
    conf = render.nginx_conf(proxy(static_prefix=prefix))
    public = conf.split("    server {")[1]  # the second server is the metrics listener
    server_level = public.split("location ")[0]
    # 7 incl. the cleared scrape mark
    assert public.count("proxy_set_header") == server_level.count("proxy_set_header") == 7


def test_server_info_rewrite_keeps_artifact_transfers_proxied():
    conf = render.nginx_conf(proxy())
    for api in ("api", "ajax-api"):
        block = conf.split(f"location = /{api}/3.0/mlflow/server-info {{")[1].split("}")[0]
        assert """sub_filter '"multipart_downloads_enabled":true' '"multipart_downloads_enabled":false';""" in block
        assert """sub_filter '"multipart_uploads_enabled":true' '"multipart_uploads_enabled":false';""" in block


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


@pytest.mark.parametrize("variant", [{}, {"static_prefix": "/mlflow"}, {"tls": True}, {"client_max_body_size": "10g"},
                                     {"keepalive_timeout_seconds": 960}])
def test_rendered_nginx_conf_passes_nginx_t(tmp_path, variant):
    if NGINX is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (apt-get install nginx)")
        pytest.skip("nginx not installed: apt-get install nginx")
    paths = render.NginxPaths(config=str(tmp_path / "nginx.conf"), htpasswd=str(tmp_path / "htpasswd"),
                              certificate=str(tmp_path / "server.crt"), private_key=str(tmp_path / "server.key"),
                              pid=str(tmp_path / "nginx.pid"), temp_dir=str(tmp_path),
                              access_log=str(tmp_path / "a.log"), error_log=str(tmp_path / "e.log"))
    settings_ = proxy(paths=paths, listen_address="127.0.0.1", listen_port=18080, upstream="127.0.0.1:5000", **variant)
    (tmp_path / "nginx.conf").write_text(render.nginx_conf(settings_))
    (tmp_path / "htpasswd").write_text(render.htpasswd_line("mlflow", bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode()))
    if variant.get("tls"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-subj", "/CN=localhost", "-keyout", paths.private_key, "-out", paths.certificate,
                        "-days", "1"],
                       check=True, capture_output=True)
    result = subprocess.run([NGINX, "-t", "-c", paths.config], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_client_env_lines_quote_for_the_shell():
    lines = render.client_env_lines("https://m.example", "mlflow", "a'b c$d", "mlflow-proxy.crt")
    result = subprocess.run(["bash", "-c", lines + 'printf "%s|" "$MLFLOW_TRACKING_URI" "$MLFLOW_TRACKING_USERNAME" '
                             '"$MLFLOW_TRACKING_PASSWORD" "$MLFLOW_TRACKING_SERVER_CERT_PATH"'],
                            capture_output=True, text=True)
    assert result.stdout == "https://m.example|mlflow|a'b c$d|mlflow-proxy.crt|"


def test_bucket_policy_is_scoped_to_the_bucket_and_prefix():
    policy = render.artifact_bucket_policy("bkt", "team/a")
    resources = [r for s in policy["Statement"] for r in s["Resource"]]
    assert resources == ["arn:aws:s3:::bkt", "arn:aws:s3:::bkt/team/a/*"]
    assert policy["Statement"][0]["Condition"] == {"StringLike": {"s3:prefix": ["team/a/*"]}}
    assert render.artifacts_destination("bkt", "team/a") == "s3://bkt/team/a"
    assert render.artifacts_destination("bkt") == "s3://bkt/"


def test_bucket_policy_is_the_actions_mlflow_calls_in_every_transfer_mode():
    """Review of issue 26: proxied stacks also had s3:GetBucketLocation, s3:ListBucketMultipartUploads and
    s3:ListMultipartUploadParts, which neither MLflow nor the gc, backup and restore one-offs call."""
    assert [s["Action"] for s in render.artifact_bucket_policy("bkt")["Statement"]] == [
        ["s3:ListBucket"], ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]]


def test_defaults_render_without_error():
    config = StackConfig()
    assert render.proxy_settings(config.proxy, config.server, "x:1").listen_port == render.PROXY_HTTP_PORT


def test_certificate_names_split_addresses_from_names():
    assert render.certificate_names(["mlflow.example", "10.1.2.3", "::1", "localhost"]) == \
        (["mlflow.example", "localhost"], ["10.1.2.3", "::1"])
    assert render.certificate_names(["localhost"]) == (["localhost"], ["127.0.0.1"])


# --- model version sources (issue 29, item 1) -----------------------------------------------------

SOURCE_REGEX_ENV = "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX"
# What MLflow 3.17.2's own clients send as a model version's source: register_model("runs:/...")
# (the run's artifact URI when it holds an MLmodel, else models:/<logged model id>), log_model's
# registration (models:/m-...), copy_model_version (models:/name/version), the UI (a logged model's
# mlflow-artifacts:/ location), and prompts (mlflow/prompt/constants.py placeholders).
CLIENT_SOURCES = ["runs:/0123abcd/model", "models:/m-0123abcd", "models:/my-model/3", "models:/my-model@champion",
                  "mlflow-artifacts:/1/0123abcd/artifacts/model", "mlflow-artifacts:/1/models/m-0123/artifacts",
                  "dummy-source", "prompt-template"]
# Storage every stack uses, and everything else the server would read with its own credentials.
REFUSED_SOURCES = ["s3://mlflow-artifacts/1", "s3://mlflow-artifacts/1/abc/artifacts/notes.txt", "S3://b/1",
                   "wasbs://artifacts@acct.blob.core.windows.net/1", "abfss://artifacts@acct.dfs.core.windows.net/1",
                   "https://acct.blob.core.windows.net/artifacts/1", "http://minio:9000/b/1", "file:///etc",
                   "/etc/passwd", "relative/path", "gs://b/1", "hdfs://n/1", "mlflow-artifacts://evil.example/1",
                   "models://host/m", "runs://host/r", " models:/m-1", "x-models:/m-1", "dummy-source/../x",
                   "dummy-source\n", "prompt-template-s3://b/1", "MODELS:/m-1", ""]


def test_model_version_source_regex_is_set_on_every_platform():
    """One place (tracking_server_env) sets it, so every stack's server has it."""
    for extra in ({}, {"AWS_DEFAULT_REGION": "eu-west-1"}, {render.AZURE_CLIENT_ID_ENV: "id"}):
        for mode in ("proxy", "mlflow", "oidc"):
            env = render.tracking_server_env(settings(extra_env=extra, auth_mode=mode))
            assert env[SOURCE_REGEX_ENV] == render.MODEL_VERSION_SOURCE_REGEX


@pytest.mark.parametrize("source", CLIENT_SOURCES)
def test_model_version_source_regex_accepts_what_mlflow_clients_send(source):
    import re

    assert re.search(render.tracking_server_env(settings())[SOURCE_REGEX_ENV], source), source


@pytest.mark.parametrize("source", REFUSED_SOURCES)
def test_model_version_source_regex_refuses_storage_uris_and_paths(source):
    import re

    assert not re.search(render.tracking_server_env(settings())[SOURCE_REGEX_ENV], source), source


def test_mlflow_checks_the_regex_before_it_detects_a_prompt():
    """The regex applies to prompt versions too (it is checked first): the placeholders must pass it."""
    import inspect

    from mlflow.prompt.constants import _PROMPT_SOURCE_PLACEHOLDERS
    from mlflow.server import handlers

    body = inspect.getsource(handlers._create_model_version)
    assert body.index("MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX") < body.index("_is_prompt_request")
    assert "re.search(regex, request_message.source)" in body
    import re

    assert all(re.search(render.MODEL_VERSION_SOURCE_REGEX, source) for source in _PROMPT_SOURCE_PLACEHOLDERS)


# --- the empty artifact path (issue 29, item 4) ---------------------------------------------------

@pytest.mark.parametrize("prefix", [None, "/mlflow"])
def test_nginx_refuses_the_download_route_with_an_empty_artifact_path(prefix):
    """An allow-list: on MLflow's artifact routes the path must start with an experiment id (or a
    workspace, then an id) and hold no `%` after Nginx's decoding; every spelling MLflow reads as empty
    fails it, in both API forms, with and without the prefix; the list route and real paths pass."""
    import re as regex

    conf = render.nginx_conf(proxy(static_prefix=prefix))
    route, well_formed = regex.findall(r'if \(\$uri !?~ "([^"]+)"\)', conf)

    def refused(uri: str) -> bool:
        return bool(regex.search(route, uri)) and not regex.search(well_formed, uri)

    for root in ["", prefix] if prefix else [""]:
        for api in ("api", "ajax-api"):
            base = f"{root}/{api}/2.0/mlflow-artifacts"
            for path in ("/artifacts/", "/artifacts/file:", "/artifacts/;", "/artifacts/ ", "/artifacts/\t",
                         "/artifacts/%2E", "/artifacts/x/1/", "/artifacts/1x", "/artifacts/1/%2E", "/mpu/create/;"):
                assert refused(base + path), base + path
            for path in ("/artifacts", "/artifacts/1/abc/artifacts/model.pkl", "/artifacts/1/r/artifacts/a;b c",
                         "/artifacts/workspaces/team/3/x", "/artifacts/12/", "/artifacts/12",
                         "/mpu/create/4/r/artifacts/big.bin"):
                assert not refused(base + path), base + path