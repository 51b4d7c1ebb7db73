"""Start the rendered local stack natively: PostgreSQL, an S3 (or Azure Blob) stand-in, MLflow, Nginx.
(The processes are rehearsal.processes', the stand-ins rehearsal.stand_ins'; this module is the stack.)

Everything the components render is used as is: the server's command and env come from
`render.tracking_server_spec`, the schema step from `render.schema_upgrade_spec`, nginx.conf and the
file list from `render.reverse_proxy_spec`, the htpasswd line from `render.htpasswd_line` (with the
hash scheme of `proxy.passwordHash`), the
database URI from `render.backend_store_uri`, the client lines from `render.client_env_lines`.
The only deviations from a container deployment:

* image paths are mapped to local binaries (`mlflow`/`python` -> this venv, `nginx` -> Debian's), and
  the image's PYTHONPATH (/opt/mlflow-platform: the migration tool, mlflow_guard and its entry points)
  to links into this repository (IMAGE_PLATFORM_LAYOUT);
* the server binds 127.0.0.1 on a free port instead of 0.0.0.0:5000 (`dataclasses.replace`);
* Nginx listens on 127.0.0.1:<port> and its file paths live in a temporary directory;
* the S3 endpoint is moto's server mode instead of MinIO, the database is a private initdb cluster; with
  artifacts.transfer direct the server signs for moto's loopback endpoint (reached by server and clients alike),
  and a config without local.s3PublicHost gets a placeholder (REHEARSAL_S3_PUBLIC_HOST) the rule asks for;
* with `artifacts="azurite"`, the azure stack's Blob container is Azurite's (the emulator, from
  rehearsal/azurite), reached with a connection string instead of the managed identity; with
  `artifacts.transfer: direct` the server has the identity as on the azure stack (AZURE_CLIENT_ID, no key)
  and Container Apps' identity endpoint is ManagedIdentityStandIn's (IDENTITY_ENDPOINT, IDENTITY_HEADER);
  Azurite then serves HTTPS with OAuth under the account's public name, which the server and the clients
  reach through StorageNameProxy (HTTPS_PROXY, REQUESTS_CA_BUNDLE: the network, not MLflow, is simulated);
* moto checks presigned URLs (rehearsal/moto_s3.py), which its own IAM check cannot read, and plays MinIO in
  letting unsigned x-amz-* headers act (store "minio": the server signs part URLs with the part signer's key);
* with `auth.mode: oidc` and no `auth.oidc.discoveryUrl`, the identity provider is
  oidc-provider-mock on a loopback port, with three users (OidcProviderStandIn);
* runtime files (the auth app's ini) are written under the work directory, and the env var that
  names the file points there.

Every process is started in its own process group and stopped by its PID (the group led by it),
in reverse order, by `RehearsalStack.stop()`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from components import render
from components.config import StackConfig, auth_database_name, parse_stack_config
from components.spec import ContainerSpec
from rehearsal.ports import bindable, free_port
from rehearsal.postgres import PostgresCluster, PostgresUnavailable
from rehearsal.passwords import generate_password, password_hash
from rehearsal.processes import (
    VENV_BIN,
    ServerUnavailable,
    Service,
    StartupError,
    base_env,
    find_nginx,
    http_status,
    image_binary,
    image_python_path,
    local_command,
    log_tail,
)
from rehearsal.stand_ins import (
    ARTIFACT_STORES,
    AZURITE_ACCOUNT,
    AzuriteStandIn,
    ManagedIdentityStandIn,
    OidcProviderStandIn,
    S3StandIn,
    StorageNameProxy,
    azurite_problems,
    self_signed_certificate,
)

log = logging.getLogger("rehearsal")


def check_prerequisites(artifacts: str = "s3") -> None:
    """Raise ServerUnavailable naming what is missing (PostgreSQL server binaries, Nginx, and the
    artifact store's stand-in: moto for `s3`; Node.js, Azurite and azure-storage-blob for `azurite`)."""
    from rehearsal.postgres import find_postgres_bindir

    if artifacts not in ARTIFACT_STORES:
        raise ValueError(f"artifacts must be one of {ARTIFACT_STORES}, got {artifacts!r}")
    problems = []
    try:
        find_postgres_bindir()
    except PostgresUnavailable as error:
        problems.append(str(error))
    try:
        find_nginx()
    except ServerUnavailable as error:
        problems.append(str(error))
    tools = ("mlflow", "moto_server") if artifacts == "s3" else ("mlflow",)
    for tool in tools:
        if not (VENV_BIN / tool).exists():
            problems.append(f"{VENV_BIN / tool} not found; install requirements-dev.txt into the venv")
    if artifacts == "azurite":
        problems += azurite_problems()
    if problems:
        raise ServerUnavailable("; ".join(problems))


# --- MLflow server -------------------------------------------------------------------------------


class TrackingServerProcess:
    """`mlflow server` from the TrackingServer component's rendered spec."""

    def __init__(self, name: str, settings: render.TrackingServerSettings, secret_env: Mapping[str, str],
                 workdir: Path, port: Optional[int] = None, runtime_files: Optional[Mapping[str, str]] = None,
                 platform_env: Optional[Mapping[str, str]] = None):
        """`platform_env`: what the platform, not the spec, puts into the container's environment (Container
        Apps' identity endpoint) and the rehearsal's network stand-in (a proxy for a public host name)."""
        self.name = name
        # The only deviations: bind loopback, a free port (the container's is 5000), runtime files
        # under the work directory.
        self.settings = dataclasses.replace(settings, bind_host="127.0.0.1", port=port or free_port())
        if settings.metrics_dir:  # one per server: the rehearsal runs several on one machine
            self.settings = dataclasses.replace(self.settings, metrics_dir=str(workdir / "prometheus"))
        self.spec = render.tracking_server_spec(self.settings)
        missing = set(self.spec.secret_env_names) ^ set(secret_env)
        if missing:
            raise ValueError(f"secret env does not match the spec's secret_env_names: {sorted(missing)}")
        runtime_files = dict(runtime_files or {})
        if set(runtime_files) != set(self.spec.runtime_file_paths):
            raise ValueError(f"runtime files {sorted(runtime_files)} != spec's {sorted(self.spec.runtime_file_paths)}")
        self.workdir = workdir
        home, tmp, files = workdir / "home", workdir / "tmp", workdir / "files"
        for path in (home, tmp, files):
            path.mkdir(parents=True, exist_ok=True)
        moved: dict[str, str] = {}
        for path, content in runtime_files.items():
            local = files / Path(path).name
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            moved[path] = str(local)
        plain = {key: moved.get(value, value) for key, value in self.spec.env.items()}
        env = {**base_env(home, tmp), "PYTHONPATH": image_python_path(workdir), **dict(platform_env or {}), **plain,
               **secret_env}
        self.tmp_dir = tmp
        """The server's TMPDIR (where MLflow spools proxied uploads and downloads)."""
        self.service = Service(name, local_command(self.spec.command), env, workdir / "server.log", cwd=home)

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        assert self.spec.health_check is not None
        return f"http://127.0.0.1:{self.spec.health_check.port}{self.spec.health_check.http_path}"

    def start(self, timeout: float = 180.0) -> None:
        self.service.start()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while http_status(self.health_url) != 200:
            if not self.service.alive():
                raise StartupError(f"{self.name} exited ({self.service.process.returncode}):\n"
                                   f"{log_tail(self.service.log_path)}")
            if time.monotonic() > deadline:
                raise StartupError(f"{self.name} not healthy after {timeout}s:\n{log_tail(self.service.log_path)}")
            time.sleep(0.25)
        log.info("%s healthy at %s", self.name, self.health_url)

    def stop(self) -> None:
        self.service.stop()

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


def run_schema_upgrade(settings: render.TrackingServerSettings, secret_env: Mapping[str, str], workdir: Path) -> str:
    """The one-off step the TrackingServer runs before the server (same command and env)."""
    return run_step(render.schema_upgrade_spec(settings), secret_env, workdir)


def run_step(spec: ContainerSpec, secret_env: Mapping[str, str], workdir: Path) -> str:
    """One of the TrackingServer's one-off steps, run to completion (its command and env)."""
    home, tmp = workdir / "home", workdir / "tmp"
    for path in (home, tmp):
        path.mkdir(parents=True, exist_ok=True)
    env = {**base_env(home, tmp), "PYTHONPATH": image_python_path(workdir), **spec.env,
           **{name: secret_env[name] for name in spec.secret_env_names}}
    result = subprocess.run(local_command(spec.command), env=env, cwd=home, capture_output=True, text=True,
                            timeout=600)
    (workdir / f"{spec.name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise StartupError(f"{spec.name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout + result.stderr


# --- Nginx ---------------------------------------------------------------------------------------


class ProxyProcess:
    """Nginx from the ReverseProxy component's rendered spec: its nginx.conf, its htpasswd line,
    its TLS files. Only paths, the listen address/port and the upstream are local."""

    def __init__(self, name: str, config: StackConfig, upstream: str, workdir: Path, listen_port: int,
                 htpasswd: Optional[str], tls_files: Optional[tuple[str, str]] = None):
        self.name = name
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)  # nginx workers run as nobody: they read htpasswd per request
        paths = render.NginxPaths(
            config=str(workdir / "nginx.conf"),
            htpasswd=str(workdir / "htpasswd"),
            certificate=str(workdir / "tls" / "server.crt"),
            private_key=str(workdir / "tls" / "server.key"),
            pid=str(workdir / "nginx.pid"),
            temp_dir=str(workdir / "tmp"),
            access_log=str(workdir / "access.log"),
            error_log=str(workdir / "error.log"),
        )
        settings = render.proxy_settings(config.proxy, config.server, upstream=upstream, paths=paths, auth=config.auth,
                                         observability=config.observability, hostnames=config.hostnames,
                                         artifacts=config.artifacts)
        self.settings = dataclasses.replace(settings, listen_port=listen_port, listen_address="127.0.0.1")
        if settings.metrics_port is not None:
            self.settings = dataclasses.replace(self.settings, metrics_port=free_port())
        self.spec = render.reverse_proxy_spec(self.settings, image=config.proxy.image)
        runtime: dict[str, tuple[str, int]] = {paths.htpasswd: (htpasswd, 0o644)} if htpasswd is not None else {}
        if tls_files:
            runtime[paths.certificate] = (tls_files[0], 0o644)
            runtime[paths.private_key] = (tls_files[1], 0o600)
        if set(runtime) != set(self.spec.runtime_file_paths):
            raise ValueError(f"runtime files {sorted(runtime)} != spec's {sorted(self.spec.runtime_file_paths)}")
        (workdir / "tmp").mkdir(exist_ok=True)
        os.chmod(workdir / "tmp", 0o755)
        for path, content in self.spec.files.items():
            Path(path).write_text(content)
        for path, (content, mode) in runtime.items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(content)
            os.chmod(path, mode)
        self.service = Service(name, local_command(self.spec.command), base_env(workdir, workdir / "tmp"),
                               workdir / "nginx.out", cwd=workdir)

    @property
    def port(self) -> int:
        return self.settings.listen_port

    @property
    def scheme(self) -> str:
        return "https" if self.settings.tls else "http"

    @property
    def metrics_url(self) -> Optional[str]:
        """The internal metrics listener (what a scraper on the stack's network reaches)."""
        return f"http://127.0.0.1:{self.settings.metrics_port}" if self.settings.metrics_port else None

    def test_config(self) -> None:
        result = subprocess.run([image_binary("nginx"), "-t", "-c", self.settings.paths.config],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise StartupError(f"nginx -t rejected the rendered config:\n{result.stderr}")

    def start(self, timeout: float = 30.0) -> None:
        self.test_config()
        self.service.start()
        context = ssl._create_unverified_context() if self.settings.tls else None
        url = f"{self.scheme}://127.0.0.1:{self.port}/health"
        deadline = time.monotonic() + timeout
        while http_status(url, context=context) != 200:
            if not self.service.alive() or time.monotonic() > deadline:
                raise StartupError(f"{self.name} did not become ready at {url}:\n{log_tail(self.service.log_path)}\n"
                                   f"{log_tail(Path(self.settings.paths.error_log))}")
            time.sleep(0.1)
        log.info("%s ready at %s", self.name, url)

    def stop(self) -> None:
        self.service.stop()


# --- the stack -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Variant:
    """One MLflow server + Nginx pair rendered from one stack config, sharing database and bucket."""

    name: str
    config: StackConfig
    server: TrackingServerProcess
    proxy: ProxyProcess
    username: Optional[str]
    password: Optional[str]
    """What the stack outputs as username/password: Nginx's user (auth.mode proxy), MLflow's admin
    (mlflow), none with single sign-on (oidc)."""
    certificate_path: Optional[str] = None
    network_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """What a client's environment needs to reach the artifact store's public name (the identity variant of
    the Blob stand-in: HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE); empty otherwise."""

    @property
    def tracking_uri(self) -> str:
        """What the stack outputs as `tracking_uri` (first host name, public port, prefix)."""
        return render.public_url(self.config.hostnames[0], render.public_scheme(self.config.proxy),
                                 self.proxy.port, self.config.server.static_prefix)

    @property
    def direct_uri(self) -> str:
        """The MLflow server itself, bypassing Nginx (benchmarks only)."""
        return f"{self.server.url}{self.config.server.static_prefix or ''}"

    def client_env(self) -> dict[str, str]:
        env = {"MLFLOW_TRACKING_URI": self.tracking_uri}
        if self.username is not None and self.password is not None:
            env.update(MLFLOW_TRACKING_USERNAME=self.username, MLFLOW_TRACKING_PASSWORD=self.password)
        if self.certificate_path:
            env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = self.certificate_path
        return {**env, **self.network_env}

    def env_lines(self) -> str:
        import shlex

        network = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in self.network_env.items())
        return render.client_env_lines(self.tracking_uri, self.username, self.password, self.certificate_path) + network


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


REHEARSAL_S3_PUBLIC_HOST = "minio.localhost"
"""local.s3PublicHost of a direct rehearsal config that names none (the local stack requires one with direct
transfers). The rehearsal's server signs for the S3 stand-in's loopback endpoint instead (as it always uses moto's
endpoint instead of http://minio:9000): an address the server and the clients both reach, which is what
s3PublicHost on minioApiPort stands for on a real local stack."""


def _section(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    return dict(json.loads(value) if isinstance(value, str) else value or {})


def with_s3_public_host(raw: dict[str, Any]) -> dict[str, Any]:
    """A direct config on the local platform without local.s3PublicHost gets REHEARSAL_S3_PUBLIC_HOST, so that
    `scripts/rehearse --set artifacts.transfer=direct` works as it stands."""
    if _section(raw, "artifacts").get("transfer") != "direct" or raw.get("platform", "local") != "local":
        return raw
    local = _section(raw, "local")
    if local.get("s3PublicHost"):
        return raw
    return {**raw, "local": {**local, "s3PublicHost": REHEARSAL_S3_PUBLIC_HOST}}


class RehearsalStack:
    """PostgreSQL + artifact store stand-in + schema upgrade, then any number of server/Nginx variants.

    `artifacts` picks the stand-in: "s3" (moto, the local stack's MinIO) or "azurite" (the azure
    stack's Blob container); every variant of a stack shares it."""

    def __init__(self, raw_config: Optional[Mapping[str, Any]] = None, base_dir: Optional[Path] = None,
                 keep_files: bool = False, artifacts: str = "s3"):
        if artifacts not in ARTIFACT_STORES:
            raise ValueError(f"artifacts must be one of {ARTIFACT_STORES}, got {artifacts!r}")
        self.artifacts = artifacts
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="mlflow-rehearsal-"))
        self.oidc: Optional[OidcProviderStandIn] = None
        self.raw_config = with_s3_public_host(self._with_identity_provider(dict(raw_config or {})))
        self.base_config = parse_stack_config(self.raw_config, "rehearsal config")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        self.keep_files = keep_files
        self.postgres: Optional[PostgresCluster] = None
        self.s3: Optional[S3StandIn] = None
        self.azurite: Optional[AzuriteStandIn] = None
        # The azure stack's identity (artifacts.transfer direct on Azurite): MLflow's Blob repository signs a
        # user-delegation SAS only when it holds a token credential, which a connection string is not.
        self.azure_identity = artifacts == "azurite" and self.base_config.artifacts.transfer == "direct"
        self.identity: Optional[ManagedIdentityStandIn] = None
        self.storage_proxy: Optional[StorageNameProxy] = None
        self.db_password = generate_password()
        self.secrets_key = generate_password(48)
        self.backend_uri = ""
        # The auth app's (auth.mode mlflow, oidc): its database's URI, the session key, the admin's password.
        self.auth_uri = ""
        self.session_key = generate_password(48)
        self.admin_password = generate_password()
        self.variants: dict[str, Variant] = {}
        self.lock = threading.RLock()
        self._stopped = False

    def _with_identity_provider(self, raw: dict[str, Any]) -> dict[str, Any]:
        """auth.mode oidc without a provider of the user's: oidc-provider-mock's URL, client and secret."""
        auth = raw.get("auth")
        if isinstance(auth, str):
            auth = json.loads(auth)
        if not isinstance(auth, Mapping) or auth.get("mode") != "oidc":
            return raw
        oidc = dict(auth.get("oidc") or {})
        if oidc.get("discoveryUrl"):
            return raw
        defaults = parse_stack_config({}, "defaults").auth.oidc
        user_groups = oidc.get("userGroups") or list(defaults.user_groups)
        self.oidc = OidcProviderStandIn(self.base_dir / "oidc", oidc.get("adminGroup") or defaults.admin_group,
                                        user_groups[0])
        oidc.update(discoveryUrl=self.oidc.discovery_url, clientId=oidc.get("clientId") or self.oidc.client_id,
                    clientSecret=self.oidc.client_secret)
        return {**raw, "auth": {**auth, "oidc": oidc}}

    # -- lifecycle --

    def start(self) -> "RehearsalStack":
        """Database, bucket and schema; variants are added with `add_variant`."""
        try:
            self._start_backends()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_backends(self) -> None:
        cfg = self.base_config
        started = time.monotonic()
        self.postgres = PostgresCluster(base_dir=self.base_dir / "postgres", max_connections=300)
        self.postgres.start()
        self.postgres.create_database(cfg.database.name, owner=cfg.database.username, owner_password=self.db_password)
        # As the local platform's provisioning step: nobody else may connect to the database.
        self.postgres.psql(f'REVOKE ALL ON DATABASE "{cfg.database.name}" FROM PUBLIC')
        self.backend_uri = render.backend_store_uri(cfg.database.username, self.db_password, "127.0.0.1",
                                                    self.postgres.port, cfg.database.name)
        log.info("postgres up on 127.0.0.1:%s (%.1fs)", self.postgres.port, time.monotonic() - started)
        self._start_artifact_store(cfg)
        log.info("%s stand-in up (%.1fs)", self.artifacts, time.monotonic() - started)
        run_schema_upgrade(self._settings(cfg), {render.BACKEND_URI_ENV: self.backend_uri},
                           self.base_dir / "schema-upgrade")
        log.info("schema upgraded (%.1fs)", time.monotonic() - started)
        if cfg.auth.mode != "proxy":
            self._start_auth(cfg)
            log.info("auth database ready for auth.mode %s (%.1fs)", cfg.auth.mode, time.monotonic() - started)

    def _start_auth(self, cfg: StackConfig) -> None:
        """The auth app's database beside the tracking one, owned by the same role (as the local
        platform's provisioning step makes it), its upgrade step, and the identity provider."""
        assert self.postgres is not None
        name = auth_database_name(cfg.database.name)
        self.postgres.psql(f'CREATE DATABASE "{name}" OWNER "{cfg.database.username}"')
        self.postgres.psql(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
        self.auth_uri = render.backend_store_uri(cfg.database.username, self.db_password, "127.0.0.1",
                                                 self.postgres.port, name)
        self.run_auth_upgrade(cfg)
        if self.oidc:
            self.oidc.start()

    def _start_artifact_store(self, cfg: StackConfig) -> None:
        """The bucket's (or container's) stand-in, assigned before it starts so a failed start is still stopped."""
        if self.artifacts == "azurite":
            self.azurite = AzuriteStandIn(self.base_dir / "azurite", cfg.artifacts.bucket, cfg.artifacts.prefix,
                                          identity=self.azure_identity)
            self.azurite.start()
            log.info("azurite blob endpoint %s, container %s", self.azurite.endpoint, self.azurite.container)
            if self.azure_identity:
                self.identity = ManagedIdentityStandIn(self.base_dir / "identity")
                self.identity.start()
                route = {f"{self.azurite.public_host}:443": ("127.0.0.1", self.azurite.port)}
                self.storage_proxy = StorageNameProxy(self.base_dir / "storage-proxy", route)
                self.storage_proxy.start()
                log.info("server identity %s (endpoint %s); %s through %s", self.identity.client_id,
                         self.identity.endpoint, self.azurite.public_host, self.storage_proxy.url)
        else:
            # The local stack's MinIO: unsigned x-amz-* headers act (rehearsal/moto_s3.py, store "minio").
            self.s3 = S3StandIn(self.base_dir / "s3", cfg.artifacts.bucket, cfg.artifacts.prefix, store="minio")
            self.s3.start()
            log.info("s3 endpoint %s, bucket %s", self.s3.endpoint, self.s3.bucket)

    def run_auth_upgrade(self, cfg: Optional[StackConfig] = None) -> str:
        """The TrackingServer's auth upgrade step, as every deployment (every task start) runs it."""
        cfg = cfg or self.base_config
        spec = render.auth_upgrade_spec(self._settings(cfg))
        values = {render.AUTH_DATABASE_URI_ENV: self.auth_uri, render.AUTH_ADMIN_PASSWORD_ENV: self.admin_password}
        return run_step(spec, {name: values[name] for name in spec.secret_env_names}, self.base_dir / "auth-upgrade")

    def _settings(self, cfg: StackConfig) -> render.TrackingServerSettings:
        """The server settings the stack's platform renders: S3 with MinIO's endpoint and key pair, or
        wasbs:// into Azurite's account with the connection string as the one artifact secret."""
        extra_env: dict[str, str] = {}
        if self.artifacts == "azurite":
            destination = render.blob_artifacts_destination(cfg.artifacts.bucket, AZURITE_ACCOUNT,
                                                            cfg.artifacts.prefix)
            endpoint, secret_names = None, (render.AZURE_CONNECTION_STRING_ENV,)
            if self.identity:  # as the azure platform's ObjectStoreEndpoint.env: the identity, no key
                secret_names, extra_env = (), {render.AZURE_CLIENT_ID_ENV: self.identity.client_id}
        else:
            assert self.s3 is not None
            destination = render.artifacts_destination(cfg.artifacts.bucket, cfg.artifacts.prefix)
            endpoint, secret_names = self.s3.endpoint, render.S3_CREDENTIAL_ENVS
        # As the local platform's ObjectStoreEndpoint.part_signer_credentials: direct transfers on MinIO only.
        signer_names = render.PART_SIGNER_CREDENTIAL_ENVS if self._part_signer(cfg) else ()
        return render.tracking_server_settings(
            cfg.server, cfg.proxy, cfg.hostnames,
            image=f"mlflow-platform/mlflow-server:{cfg.mlflow_version}",
            artifacts_destination=destination,
            s3_endpoint_url=endpoint,
            artifact_secret_env_names=secret_names,
            part_signer_secret_env_names=signer_names,
            extra_env=extra_env,
            auth=cfg.auth,
            observability=cfg.observability,
            artifacts=cfg.artifacts,
        )

    def _secret_env(self, cfg: StackConfig) -> dict[str, str]:
        """Values of the spec's secret env names (the platform's secret mechanism, here plain env)."""
        env = {render.BACKEND_URI_ENV: self.backend_uri, render.SECRETS_KEK_ENV: self.secrets_key}
        if cfg.auth.mode != "proxy":
            env[render.SESSION_KEY_ENVS[cfg.auth.mode]] = self.session_key
        if cfg.auth.mode == "mlflow":
            env[render.AUTH_ADMIN_PASSWORD_ENV] = self.admin_password
        if cfg.auth.mode == "oidc":
            assert cfg.auth.oidc.client_secret is not None
            env[render.OIDC_CLIENT_SECRET_ENV] = cfg.auth.oidc.client_secret
            env[render.OIDC_USERS_DB_URI_ENV] = self.auth_uri
        if self.artifacts == "azurite":
            assert self.azurite is not None
            if self.identity:
                return env
            return {**env, render.AZURE_CONNECTION_STRING_ENV: self.azurite.connection_string}
        assert self.s3 is not None
        key, secret = self.s3.credentials_for(direct=cfg.artifacts.transfer == "direct")
        env.update({"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})
        if self._part_signer(cfg):
            env.update(zip(render.PART_SIGNER_CREDENTIAL_ENVS, self.s3.part_signer_credentials))
        return env

    def _part_signer(self, cfg: StackConfig) -> bool:
        """Whether the server gets the part signer's key: the local platform gives it with direct transfers."""
        return self.artifacts == "s3" and cfg.artifacts.transfer == "direct"

    def add_variant(self, name: str = "default", *, static_prefix: Optional[str] = None, tls: bool = False,
                    port: Optional[int] = None, overrides: Optional[Mapping[str, Any]] = None) -> Variant:
        """Render a config (the stack's, with the public port set to a free loopback port and the
        given static prefix / TLS mode) and start its MLflow server and Nginx."""
        with self.lock:
            if name in self.variants:
                raise ValueError(f"variant {name!r} exists")
            if port is None:
                port = free_port()
            elif not bindable(port):
                raise StartupError(f"port {port} on 127.0.0.1 is in use")
            raw = _merge(self.raw_config, {"proxy": {"port": port, "tls": "self-signed" if tls else "off"}})
            if static_prefix:
                raw = _merge(raw, {"server": {"staticPrefix": static_prefix}})
            raw = with_s3_public_host(_merge(raw, dict(overrides or {})))
            cfg = parse_stack_config(raw, f"rehearsal config ({name})")
            workdir = self.base_dir / name
            runtime_files = {}
            if cfg.auth.mode == "mlflow":
                runtime_files[render.AUTH_CONFIG_PATH] = render.auth_config_ini(cfg.auth.default_permission,
                                                                                self.auth_uri)
            server = TrackingServerProcess(f"mlflow-server[{name}]", self._settings(cfg), self._secret_env(cfg),
                                           workdir / "server", runtime_files=runtime_files,
                                           platform_env={**self._identity_env(), **self.network_env()})
            tls_files = None
            certificate_path = None
            if tls:
                tls_files = self_signed_certificate(cfg.hostnames, cfg.proxy.certificate_validity_days)
                certificate_path = str(workdir / "mlflow-proxy.crt")  # what users save tls_certificate as
                Path(workdir).mkdir(parents=True, exist_ok=True)
                Path(certificate_path).write_text(tls_files[0])
            username: Optional[str] = None
            password: Optional[str] = None
            htpasswd = None
            if cfg.auth.mode == "proxy":
                username, password = cfg.proxy.username, generate_password()
                htpasswd = render.htpasswd_line(username, password_hash(cfg, password))
            elif cfg.auth.mode == "mlflow":
                username, password = cfg.auth.admin_username, self.admin_password
            proxy = ProxyProcess(f"nginx[{name}]", cfg, f"127.0.0.1:{server.port}", workdir / "nginx", port,
                                 htpasswd, tls_files)
            variant = Variant(name, cfg, server, proxy, username, password, certificate_path, self.network_env())
            self.variants[name] = variant
            server.start()
            proxy.start()
            return variant

    def _identity_env(self) -> dict[str, str]:
        return self.identity.container_env() if self.identity else {}

    def network_env(self) -> dict[str, str]:
        """The environment that makes the artifact store's public name reachable (servers and clients alike)."""
        if self.storage_proxy and self.azurite:
            return self.storage_proxy.env(self.azurite.trust_bundle)
        return {}

    def stop(self) -> None:
        """Stop everything this stack started, in reverse order, by PID; remove its files."""
        with self.lock:
            if self._stopped:
                return
            self._stopped = True
            for variant in reversed(list(self.variants.values())):
                for part in (variant.proxy, variant.server):
                    try:
                        part.stop()
                    except Exception:  # keep stopping the rest
                        log.exception("stopping %s", part)
            for name, store in (("s3", self.s3), ("storage name proxy", self.storage_proxy),
                                ("managed identity endpoint", self.identity), ("azurite", self.azurite),
                                ("oidc provider", self.oidc)):
                if store:
                    try:
                        store.stop()
                    except Exception:
                        log.exception("stopping %s", name)
            if self.postgres:
                try:
                    self.postgres.stop("fast")
                except Exception:
                    log.exception("stopping postgres")
            if not self.keep_files:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- faults --

    def restart_server(self, variant: str = "default", down_seconds: float = 0.0) -> None:
        with self.lock:
            self.variants[variant].server.restart(down_seconds)

    def restart_postgres(self, down_seconds: float = 0.0) -> None:
        assert self.postgres is not None
        with self.lock:
            self.postgres.restart(down_seconds)

    def supervise(self) -> list[str]:
        """Restart whatever died unexpectedly (the local platform's restart="unless-stopped").
        Returns what was restarted."""
        restarted: list[str] = []
        with self.lock:
            if self._stopped:
                return restarted
            if self.postgres and not _pid_alive(self.postgres.pid):
                log.warning("postgres is down; starting it again")
                self.postgres.start()
                restarted.append("postgres")
            if self.s3 and self.s3.service and self.s3.service.expected_running and not self.s3.service.alive():
                # moto keeps state in memory: a restarted moto has lost the bucket and the users.
                log.error("the S3 stand-in exited; its in-memory objects are lost (not restarted)")
                self.s3.service.expected_running = False
            helpers = (("managed identity endpoint", self.identity), ("storage name proxy", self.storage_proxy))
            for name, helper in helpers:
                if helper and _died(helper.service):  # stateless: started again on the same port
                    log.warning("%s exited; starting it again", name)
                    helper.start()
                    restarted.append(name)
            if self.azurite and _died(self.azurite.service):
                log.warning("Azurite exited; starting it again (blobs written in its last 5 s may be lost)")
                self.azurite.restart()
                restarted.append("azurite")
            for variant in self.variants.values():
                for part in (variant.server, variant.proxy):
                    if part.service.expected_running and not part.service.alive():
                        log.warning("%s exited (%s); starting it again", part.name, part.service.process.returncode)
                        part.service.stop(timeout=10)  # whatever it left behind in its group
                        part.start()
                        restarted.append(part.name)
        return restarted

    def describe(self) -> dict[str, Any]:
        """PIDs, ports and log files (no secrets)."""
        info: dict[str, Any] = {"base_dir": str(self.base_dir)}
        if self.postgres:
            info["postgres"] = {"port": self.postgres.port, "pid": self.postgres.pid,
                                "log": str(self.postgres.log_file)}
        if self.s3 and self.s3.service:
            info["s3"] = {"endpoint": self.s3.endpoint, "pid": self.s3.service.pid, "bucket": self.s3.bucket,
                          "log": str(self.s3.service.log_path)}
        if self.azurite and self.azurite.service:
            info["azurite"] = {"endpoint": self.azurite.endpoint, "pid": self.azurite.service.pid,
                               "container": self.azurite.container, "location": str(self.azurite.workdir / "data"),
                               "log": str(self.azurite.service.log_path)}
        if self.identity and self.identity.service and self.storage_proxy and self.storage_proxy.service:
            info["azure_identity"] = {"client_id": self.identity.client_id, "principal_id": self.identity.principal_id,
                                      "endpoint": self.identity.endpoint, "pid": self.identity.service.pid,
                                      "log": str(self.identity.service.log_path)}
            info["storage_name_proxy"] = {"url": self.storage_proxy.url, "routes": {
                name: f"{host}:{port}" for name, (host, port) in self.storage_proxy.routes.items()},
                "pid": self.storage_proxy.service.pid, "log": str(self.storage_proxy.service.log_path)}
        if self.oidc and self.oidc.service:
            info["oidc_provider"] = {"issuer": self.oidc.issuer, "discovery_url": self.oidc.discovery_url,
                                     "client_id": self.oidc.client_id, "pid": self.oidc.service.pid,
                                     "users": self.oidc.users, "log": str(self.oidc.service.log_path)}
        for name, variant in self.variants.items():
            info[name] = {
                "tracking_uri": variant.tracking_uri,
                "server": {"port": variant.server.port, "pid": variant.server.service.pid,
                           "log": str(variant.server.service.log_path),
                           "command": variant.server.spec.command},
                "nginx": {"port": variant.proxy.port, "pid": variant.proxy.service.pid,
                          "config": variant.proxy.settings.paths.config,
                          "error_log": variant.proxy.settings.paths.error_log,
                          "access_log": variant.proxy.settings.paths.access_log},
            }
        return info


def _died(service: Optional[Service]) -> bool:
    """Exited although it should be running (not stopped by the stack)."""
    return service is not None and service.expected_running and not service.alive()


def _pid_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
