"""The `local` platform: Docker containers on one machine, on a private bridge network.

PostgreSQL and MinIO keep their data in named volumes that survive `pulumi destroy`; only Nginx
publishes a port to users (MinIO's API and console are published on the bind address too, because
the pulumi-minio provider and the console are used from the host; with artifacts.transfer direct the
clients use MinIO's API too, at local.s3PublicHost). Imports only pulumi-docker,
pulumi-minio and pulumi-random.
"""

import json
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

import pulumi
import pulumi_docker as docker
import pulumi_minio as minio
import pulumi_random as random

from components import render
from components.config import StackConfig
from components.names import URI_PASSWORD_SPECIALS
from components.platforms.local.config import LocalConfig
from components.platforms.base import (
    DatabaseEndpoint,
    DatabaseRequest,
    Image,
    InitStep,
    ObjectStoreEndpoint,
    ObjectStoreRequest,
    PlatformOutputs,
    PublicEntry,
    SchemaGuard,
    ServiceEndpoint,
    ServiceRequest,
    moved_from_top,
    server_image_build,
)
from components.spec import ContainerSpec

POSTGRES_SOCKET_DIR = "/var/run/postgresql"
MINIO_API_PORT = 9000
MINIO_CONSOLE_PORT = 9001

# --- secrets reach containers as files, never as docker env ---------------------------------------
# `docker inspect` (and anyone in the docker group) reads a container's env; a file uploaded into the
# container before it starts is read by the container's own user only. Each secret NAME becomes the
# file SECRETS_DIR/NAME (mode 0400, owned by the user the container runs as) and the plain env
# NAME_FILE=<path>. The official postgres image reads POSTGRES_PASSWORD_FILE itself
# (https://hub.docker.com/_/postgres, "Docker Secrets"); MinIO reads MINIO_ROOT_USER_FILE and
# MINIO_ROOT_PASSWORD_FILE as an absolute path or a name under /run/secrets, and silently skips a
# missing file (readFromSecret in https://github.com/minio/minio/blob/master/cmd/common-main.go;
# https://github.com/minio/docs/issues/1499). Containers from the server image get SECRET_ENV_WRAPPER.
SECRETS_DIR = "/run/secrets"
SECRET_FILE_MODE = "0400"
ROOT_UID = "0"  # postgres' and MinIO's entrypoints start as root and read their *_FILE before dropping
# Upload owners are numeric: the provider resolves names in the Pulumi host's user database, not the image's
# (https://www.pulumi.com/registry/packages/docker/api-docs/container/#containerupload).
IMAGE_USER_IDS = {
    "mlflow": "10001",  # the server image: docker/mlflow/Dockerfile, useradd --uid 10001 mlflow
    # The proxy (render.reverse_proxy_spec runs it as `nginx`, master and workers alike): the official
    # nginx images create nginx with uid/gid 101 in every flavour ("addgroup -g 101 -S nginx && adduser
    # ... -u 101" in https://github.com/nginxinc/docker-nginx/blob/master/stable/alpine-slim/Dockerfile;
    # "--gid 101 ... --uid 101" in .../stable/debian/Dockerfile).
    "nginx": "101",
}
# The official postgres images' `postgres` user (https://github.com/docker-library/postgres: the
# Debian Dockerfiles create it with uid 999, the Alpine ones with uid 70).
POSTGRES_UIDS = {"alpine": "70", "debian": "999"}
SECRET_ENV_WRAPPER_NAME = "secret-env"
# `sh -c SECRET_ENV_WRAPPER secret-env NAME... -- COMMAND...`: exports each NAME from the file its
# NAME_FILE names (byte for byte: a trailing newline is kept), drops NAME_FILE, then execs COMMAND.
# The values never appear in the container's config, its command line or `docker inspect`.
SECRET_ENV_WRAPPER = r"""while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
  case $1 in ''|[0-9]*|*[!A-Za-z0-9_]*) echo "secret-env: not a variable name: $1" >&2; exit 64;; esac
  eval "file=\${$1_FILE-}"
  [ -n "$file" ] || { echo "secret-env: $1_FILE is not set" >&2; exit 64; }
  value=$(cat -- "$file" && echo x) || { echo "secret-env: cannot read $file for $1" >&2; exit 66; }
  export "$1=${value%x}"
  unset "$1_FILE"
  shift
done
[ "$#" -gt 1 ] || { echo "secret-env: no -- and command after the names" >&2; exit 64; }
shift
exec "$@"
"""


def secret_file_path(name: str) -> str:
    return f"{SECRETS_DIR}/{name}"


def secret_file_env(names: Iterable[str]) -> dict[str, str]:
    """The plain env that points each secret's reader at its file: NAME_FILE=/run/secrets/NAME."""
    return {f"{name}_FILE": secret_file_path(name) for name in names}


def secret_env_entrypoint(names: Sequence[str]) -> list[str]:
    """The argv before a command that runs it behind SECRET_ENV_WRAPPER, which loads `names` from
    their files first. As a container's entrypoint (the server image has none of its own), it keeps
    the container's command the spec's own."""
    return ["sh", "-c", SECRET_ENV_WRAPPER, SECRET_ENV_WRAPPER_NAME, *names, "--"]


def image_user_id(user: Optional[str]) -> str:
    """The numeric uid of a container user of the server or proxy image (the owner of its secret files)."""
    if user is None or user == "root":
        return ROOT_UID
    if user.isdigit():
        return user
    if user not in IMAGE_USER_IDS:
        raise ValueError(f"no known uid for container user {user!r}: add it to IMAGE_USER_IDS (its secret files "
                         "must be owned by it)")
    return IMAGE_USER_IDS[user]


def postgres_user_id(image: str) -> str:
    return POSTGRES_UIDS["alpine" if "alpine" in image.rsplit(":", 1)[-1] else "debian"]


def _secret_uploads(secret: Mapping[str, pulumi.Input[str]],
                    owner: pulumi.Input[str]) -> pulumi.Output[list[docker.ContainerUploadArgs]]:
    """One file per secret, readable by `owner` only; the list is a secret (and so is its state)."""
    uploads = pulumi.Output.all(owner, pulumi.Output.all(**secret)).apply(lambda parts: [
        _private_upload(secret_file_path(name), value, parts[0]) for name, value in sorted(parts[1].items())
    ])
    return pulumi.Output.secret(uploads)


def _private_upload(path: str, content: str, owner: str) -> docker.ContainerUploadArgs:
    """A file only uid `owner` (and its group, of the same number) reads: SECRET_FILE_MODE."""
    return docker.ContainerUploadArgs(file=path, content=content, owner=owner, group=owner,
                                      permissions=SECRET_FILE_MODE)


def _service_files(spec: ContainerSpec, runtime: Mapping[str, str]) -> list[docker.ContainerUploadArgs]:
    """The spec's rendered files as the image's defaults leave them (nginx.conf: no secret), and the
    runtime files (htpasswd, TLS key and certificate, MLflow's auth config with its database URI) readable
    by the container's own user only: Nginx runs as `nginx`, so its master reads the key and its
    workers the htpasswd as that one uid."""
    owner = image_user_id(spec.user)
    return [*(docker.ContainerUploadArgs(file=path, content=content) for path, content in spec.files.items()),
            *(_private_upload(path, content, owner) for path, content in runtime.items())]

# Runs in a one-off container sharing the PostgreSQL socket volume (local trust auth on the
# socket), so it needs no superuser password. Idempotent: creates the role and database once and
# sets the role's password on every run, so a data volume kept from an earlier stack (destroyed,
# then brought up again with newly generated passwords) keeps working. psql itself reads the
# password from the file its MLFLOW_DB_PASSWORD_FILE names; it never appears on a command line or
# in the environment. The superuser (the session's CURRENT_USER, `postgres`) loses its password on every
# run: the image set it from POSTGRES_PASSWORD only when it initialised the kept volume, nothing uses
# it (this step and ops/ use the socket), and with none no TCP login as the superuser can succeed
# (scram-sha-256 fails for a role without a password), whichever password was generated first.
_PROVISION_PASSWORD_NAME = "MLFLOW_DB_PASSWORD"
POSTGRES_HEALTH_HOST = "127.0.0.1"
_PROVISION_ROLE_SQL = (r"""
\set ON_ERROR_STOP on
\set app_password `cat "$MLFLOW_DB_PASSWORD_FILE"`
SELECT format('CREATE ROLE %I LOGIN', :'app_user') """
                       r"""WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_user') \gexec
ALTER ROLE :"app_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
ALTER ROLE CURRENT_USER PASSWORD NULL;
""")
# One per database the role owns (the tracking one, `app_db`, then DatabaseRequest.extra_databases).
_PROVISION_DATABASE_SQL = (r"""SELECT format('CREATE DATABASE %I OWNER %I', :'app_db', :'app_user') """
                           r"""WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'app_db') \gexec
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
GRANT ALL ON DATABASE :"app_db" TO :"app_user";
""")


def _provision_command(request: DatabaseRequest) -> list[str]:
    variables = {"app_db": request.database}
    for index, database in enumerate(request.extra_databases, 1):
        variables[f"extra_db_{index}"] = database
    sql = _PROVISION_ROLE_SQL + "".join(_PROVISION_DATABASE_SQL.replace("app_db", variable) for variable in variables)
    script = sql.replace("'", "'\\''")
    options = " ".join(f"-v {variable}={database}" for variable, database in variables.items())
    return [
        "sh", "-c",
        f"until pg_isready -q -h {POSTGRES_SOCKET_DIR} -U postgres; do sleep 1; done; "
        f"printf '%s' '{script}' | psql -h {POSTGRES_SOCKET_DIR} -U postgres -d postgres "
        f"-v app_user={request.username} {options}",
    ]


def _duration(seconds: int) -> str:
    return f"{seconds}s"


def _env_lines(plain: Mapping[str, str], secret_names: Iterable[str] = ()) -> list[str]:
    """Docker env as `KEY=value` lines: plain values, and for each secret only where its file is."""
    return [f"{key}={value}" for key, value in {**plain, **secret_file_env(secret_names)}.items()]


class LocalDockerPlatform(pulumi.ComponentResource):
    """Realizes databases, buckets and services as Docker resources on one private network, the
    platform's own resource. Docker names start with `<instance>-<stack>`, `instance` being the
    MlflowTrackingServer's name."""

    network_name: pulumi.Output[str]

    runtime_file_dir = "/etc/nginx"
    # URL-reserved characters on purpose: the URI must survive them (render.backend_store_uri encodes).
    database_password_specials = URI_PASSWORD_SPECIALS

    def __init__(self, name: str, config: StackConfig, instance: str,
                 opts: Optional[pulumi.ResourceOptions] = None, *, moved_from_top_level: bool = False):
        super().__init__("mlflow:index:LocalDockerPlatform", name, None, opts)
        self.settings = config.local
        self.hostnames = list(config.hostnames)
        self.proxy = config.proxy
        self.prefix = f"{instance}-{pulumi.get_stack()}"
        self.network = docker.Network(
            f"{name}-network",
            name=f"{self.prefix}-net",
            driver="bridge",
            attachable=False,
            opts=pulumi.ResourceOptions(parent=self, aliases=moved_from_top("network", moved_from_top_level)),
        )
        self.network_name = self.network.name
        self.user_outputs = PlatformOutputs()
        self.register_outputs({"network_name": self.network_name})

    # --- helpers -----------------------------------------------------------------------------

    def _image(self, name: str, reference: str, opts: pulumi.ResourceOptions) -> docker.RemoteImage:
        return docker.RemoteImage(name, name=reference, keep_locally=True, opts=opts)

    def _volume(self, name: str, volume_name: str, opts: pulumi.ResourceOptions) -> docker.Volume:
        """A named volume that outlives the stack: kept on destroy, never replaced by an edit."""
        return docker.Volume(
            name,
            name=volume_name,
            labels=[docker.VolumeLabelArgs(label="org.mlflow-platform.data", value="keep")],
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                retain_on_delete=True,
                ignore_changes=["name", "driver", "driverOpts", "labels"],
            )),
        )

    def _network(self, alias: str) -> list[docker.ContainerNetworksAdvancedArgs]:
        return [docker.ContainerNetworksAdvancedArgs(name=self.network.name, aliases=[alias])]

    @property
    def _host_address(self) -> str:
        """Where the host reaches published ports (the provider, the console, users)."""
        return "127.0.0.1" if self.settings.bind_address == "0.0.0.0" else self.settings.bind_address

    # --- Platform interface ---------------------------------------------------------------------

    def postgres_database(self, name: str, request: DatabaseRequest, owner_password: pulumi.Output[str],
                          opts: pulumi.ResourceOptions) -> DatabaseEndpoint:
        image = self._image(f"{name}-image", self.settings.postgres_image, opts)
        data = self._volume(f"{name}-data", f"{self.prefix}-pgdata", opts)
        sockets = docker.Volume(f"{name}-socket", name=f"{self.prefix}-pgsocket", opts=opts)
        superuser_password = random.RandomPassword(f"{name}-superuser-password", length=32, special=False, opts=opts)
        alias = "postgres"
        server = docker.Container(
            name,
            name=f"{self.prefix}-postgres",
            image=image.image_id,
            command=["postgres", "-c", f"max_connections={request.max_connections}"],
            envs=_env_lines({"POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres"}, ["POSTGRES_PASSWORD"]),
            uploads=_secret_uploads({"POSTGRES_PASSWORD": superuser_password.result}, ROOT_UID),
            volumes=[
                docker.ContainerVolumeArgs(volume_name=data.name, container_path="/var/lib/postgresql/data"),
                docker.ContainerVolumeArgs(volume_name=sockets.name, container_path=POSTGRES_SOCKET_DIR),
            ],
            networks_advanced=self._network(alias),
            # Over TCP: the image's temporary init server listens on the socket only, so a socket check
            # could pass during initialisation and provisioning would lose its session when it stops.
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "pg_isready", "-q", "-h", POSTGRES_HEALTH_HOST, "-U", "postgres"],
                interval="5s", timeout="5s", retries=12, start_period="20s",
            ),
            restart="unless-stopped",
            wait=True,
            wait_timeout=180,
            opts=opts,
        )
        _run_to_completion(
            f"{name}-provision",
            name=f"{self.prefix}-postgres-provision",
            image=image.image_id,
            command=_provision_command(request),
            envs=_env_lines({}, [_PROVISION_PASSWORD_NAME]),
            uploads=_secret_uploads({_PROVISION_PASSWORD_NAME: owner_password},
                                    postgres_user_id(self.settings.postgres_image)),
            volumes=[docker.ContainerVolumeArgs(volume_name=sockets.name, container_path=POSTGRES_SOCKET_DIR)],
            user="postgres",
            network_mode="none",  # it talks to PostgreSQL over the shared socket only
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[server])),
        )
        return DatabaseEndpoint(host=pulumi.Output.from_input(alias), port=pulumi.Output.from_input(5432))

    def object_store(self, name: str, request: ObjectStoreRequest,
                     opts: pulumi.ResourceOptions) -> ObjectStoreEndpoint:
        image = self._image(f"{name}-minio-image", self.settings.minio_image, opts)
        data = self._volume(f"{name}-minio-data", f"{self.prefix}-miniodata", opts)
        # The root user name is half of the root credential: kept secret like the password.
        root_user = random.RandomString(f"{name}-minio-root-user", length=16, special=False, upper=False,
                                        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                                            additional_secret_outputs=["result"])))
        root_password = random.RandomPassword(f"{name}-minio-root-password", length=40, special=False, opts=opts)
        alias = "minio"
        bind = self.settings.bind_address
        api = _minio_api(self.settings, request.direct)
        server = docker.Container(
            f"{name}-minio",
            name=f"{self.prefix}-minio",
            image=image.image_id,
            command=["server", "/data", "--address", f":{api.port}",
                     "--console-address", f":{api.console_port}"],
            envs=_env_lines({"MINIO_BROWSER_REDIRECT": "off", **api.env}, ["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"]),
            uploads=_secret_uploads({"MINIO_ROOT_USER": root_user.result, "MINIO_ROOT_PASSWORD": root_password.result},
                                    ROOT_UID),
            volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path="/data")],
            ports=[
                docker.ContainerPortArgs(internal=api.port, external=self.settings.minio_api_port, ip=bind),
                docker.ContainerPortArgs(internal=api.console_port, external=self.settings.minio_console_port,
                                         ip=bind),
            ],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=self.network.name,
                                                                    aliases=[alias, *api.aliases])],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "mc", "ready", api.health_alias], interval="5s", timeout="5s", retries=12,
                start_period="10s",
            ),
            restart="unless-stopped",
            wait=True,
            wait_timeout=180,
            opts=opts,
        )
        # The provider talks to MinIO through the published port, as root, only to set up the
        # bucket and the scoped user; the MLflow server never sees the root credentials.
        provider = minio.Provider(
            f"{name}-minio-provider",
            minio_server=f"{self._host_address}:{self.settings.minio_api_port}",
            minio_user=pulumi.Output.secret(root_user.result),
            minio_password=pulumi.Output.secret(root_password.result),
            minio_ssl=False,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[server])),
        )
        on_minio = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=provider))
        bucket = minio.S3Bucket(f"{name}-bucket", bucket=request.bucket, acl="private", opts=on_minio)
        policy = minio.IamPolicy(
            f"{name}-policy",
            name=f"{request.bucket}-mlflow-server",
            policy=bucket.bucket.apply(lambda b: json.dumps(render.artifact_bucket_policy(b, request.prefix))),
            opts=on_minio,
        )
        user_secret = random.RandomPassword(f"{name}-server-secret-key", length=40, special=False, opts=opts)
        user = minio.IamUser(f"{name}-server-user", name=f"{request.bucket}-mlflow-server",
                             secret=pulumi.Output.secret(user_secret.result), opts=on_minio)
        minio.IamUserPolicyAttachment(f"{name}-server-policy", user_name=user.name,
                                                   policy_name=policy.name, opts=on_minio)
        part_signer: dict[str, pulumi.Output[str]] = {}
        if request.direct:
            # The part URLs' signer: a key that uploads parts and reads nothing, so a part URL sent back as an
            # UploadPartCopy (an unsigned x-amz-copy-source, which MinIO accepts) cannot read another experiment's
            # object (render.storage.part_signer_bucket_policy: the sources). Its keys reach the server as secret
            # env, like the server user's (files behind SECRET_ENV_WRAPPER; secret in state).
            signer_policy = minio.IamPolicy(
                f"{name}-part-signer-policy",
                name=f"{request.bucket}-mlflow-part-signer",
                policy=bucket.bucket.apply(lambda b: json.dumps(render.part_signer_bucket_policy(b, request.prefix))),
                opts=on_minio,
            )
            signer_secret = random.RandomPassword(f"{name}-part-signer-secret-key", length=40, special=False,
                                                  opts=opts)
            signer = minio.IamUser(f"{name}-part-signer-user", name=f"{request.bucket}-mlflow-part-signer",
                                   secret=pulumi.Output.secret(signer_secret.result), opts=on_minio)
            minio.IamUserPolicyAttachment(f"{name}-part-signer-policy-attachment", user_name=signer.name,
                                          policy_name=signer_policy.name, opts=on_minio)
            access_key_env, secret_key_env = render.PART_SIGNER_CREDENTIAL_ENVS
            part_signer = {access_key_env: pulumi.Output.secret(signer.name),
                           secret_key_env: pulumi.Output.secret(signer_secret.result)}
        return ObjectStoreEndpoint(
            bucket=bucket.bucket,
            artifact_root=bucket.bucket.apply(lambda b: render.artifacts_destination(b, request.prefix)),
            endpoint_url=pulumi.Output.from_input(api.endpoint_url),
            console_url=pulumi.Output.from_input(f"http://{self._host_address}:{self.settings.minio_console_port}"),
            credentials={
                "AWS_ACCESS_KEY_ID": pulumi.Output.secret(user.name),
                "AWS_SECRET_ACCESS_KEY": pulumi.Output.secret(user_secret.result),
            },
            part_signer_credentials=part_signer,
        )

    def server_image(self, name: str, mlflow_version: str, opts: pulumi.ResourceOptions) -> Image:
        source = server_image_build()
        image = docker.Image(
            name,
            image_name=f"mlflow-platform/mlflow-server:{mlflow_version}",
            build=docker.DockerBuildArgs(
                context=source.context,
                dockerfile=source.dockerfile,
                args={"MLFLOW_VERSION": mlflow_version},
            ),
            skip_push=True,
            opts=opts,
        )
        return Image(reference=image.image_name)

    def public_image(self, name: str, reference: str, opts: pulumi.ResourceOptions) -> Image:
        return Image(reference=self._image(name, reference, opts).image_id)

    def public_entry(self) -> PublicEntry:
        return PublicEntry(hostnames=pulumi.Output.from_input(self.hostnames),
                           scheme="https" if self.proxy.tls != "off" else "http", port=self.proxy.port)

    def _run_init(self, name: str, init: InitStep, opts: pulumi.ResourceOptions) -> docker.Container:
        if init.secret_refs:
            raise ValueError(f"{init.service_name}: the local platform holds no secrets of its own to refer to")
        spec = init.spec
        return _run_to_completion(
            name,
            name=f"{self.prefix}-{init.service_name}",
            image=spec.apply(lambda s: s.image),
            entrypoints=secret_env_entrypoint(sorted(init.secret_env)) if init.secret_env else None,
            command=spec.apply(lambda s: list(s.command)),
            envs=spec.apply(lambda s: _env_lines(s.env, sorted(init.secret_env))),
            uploads=_secret_uploads(init.secret_env, spec.apply(lambda s: image_user_id(s.user))),
            user=spec.apply(lambda s: s.user),
            networks_advanced=self._network(init.service_name),
            opts=opts,
        )

    def run_service(self, name: str, request: ServiceRequest, opts: pulumi.ResourceOptions) -> ServiceEndpoint:
        # request.access_policies: nothing to attach here; the store's credentials are already scoped keys.
        # request.image_repository: Docker needs no pull permission.
        # request.rollback: a container is replaced in place; there is no rollout to roll back.
        spec, service_name = request.spec, request.service_name
        for init in request.init:  # each one-off container waits for the one before
            step = self._run_init(f"{name}-{init.service_name.removeprefix('mlflow-')}", init, opts)
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[step]))
        runtime_files = request.runtime_files
        files = pulumi.Output.all(spec, pulumi.Output.all(**runtime_files) if runtime_files else {}).apply(
            lambda parts: _service_files(parts[0], parts[1]))
        uploads = files
        if request.secret_env:
            secret_files = _secret_uploads(request.secret_env, spec.apply(lambda s: image_user_id(s.user)))
            uploads = pulumi.Output.secret(pulumi.Output.all(files, secret_files).apply(
                lambda parts: [*parts[0], *parts[1]]))
        if request.jobs:
            raise ValueError("the local platform has no scheduler: run scheduled jobs from cron (scripts/gc)")
        ports: list[docker.ContainerPortArgs] = []
        if request.public:
            ports = [docker.ContainerPortArgs(internal=spec.apply(lambda s: s.ports[0]), external=self.proxy.port,
                                              ip=self.settings.bind_address)]
        if request.metrics_port is not None:  # for a scraper on this host (or the bind address's network)
            ports.append(docker.ContainerPortArgs(internal=request.metrics_port, external=request.metrics_port,
                                                  ip=self.settings.bind_address))
        docker.Container(
            name,
            name=f"{self.prefix}-{service_name}",
            image=spec.apply(lambda s: s.image),
            entrypoints=secret_env_entrypoint(sorted(request.secret_env)) if request.secret_env else None,
            command=spec.apply(lambda s: list(s.command)),
            envs=spec.apply(lambda s: _env_lines(s.env, sorted(request.secret_env))),
            user=spec.apply(lambda s: s.user),
            uploads=uploads,
            ports=ports,
            networks_advanced=self._network(service_name),
            healthcheck=spec.apply(_healthcheck),
            restart="unless-stopped",
            wait=True,
            wait_timeout=300,
            opts=opts,
        )
        return ServiceEndpoint(internal_url=spec.apply(lambda s: f"http://{service_name}:{s.ports[0]}"))

    def guard_schema_upgrade(self, name: str, database_instance: Optional[pulumi.Output[str]],
                             mlflow_version: str, opts: pulumi.ResourceOptions) -> SchemaGuard:
        # The data volume is the database; README: back it up before changing mlflow:mlflowVersion.
        return SchemaGuard()

    def record_deployed_version(self, name: str, mlflow_version: str, rollout: ServiceEndpoint,
                                opts: pulumi.ResourceOptions) -> None:
        return None


@dataclass(frozen=True)
class MinioApi:
    """Where MinIO's S3 API listens and the name the server signs URLs for."""

    port: int
    endpoint_url: str
    aliases: tuple[str, ...] = ()
    """Names of MinIO on the stack's network besides `minio`."""
    env: Mapping[str, str] = field(default_factory=dict)
    health_alias: str = "local"
    """The `mc` alias the health check probes (the image's own `local` is http://localhost:9000)."""

    @property
    def console_port(self) -> int:
        """The console's port inside the container: any but the API's, which with direct transfers follows
        local.minioApiPort. MinIO refuses to start when --address and --console-address name one port
        (minioApiPort 9001 rendered both as :9001, review of issue 26); the host ports are checked apart
        (local.consistent: minioApiPort and minioConsolePort must differ)."""
        return MINIO_CONSOLE_PORT if self.port != MINIO_CONSOLE_PORT else MINIO_API_PORT


HEALTH_ALIAS = "published"


def _minio_api(settings: LocalConfig, direct: bool) -> MinioApi:
    """Proxied: MinIO's API on MINIO_API_PORT, signed for http://minio:9000, which only the stack's containers
    reach. Direct (artifacts.transfer direct): the server must sign for an address the clients reach and it
    reaches too (SigV4 signs the Host header, so the URL cannot be rewritten on its way): local.s3PublicHost on
    local.minioApiPort. MinIO gets the name as a network alias (the server resolves it through Docker's DNS) and
    listens on that port inside its container too, so http://<host>:<port> is MinIO on the network and, through
    the published port, on the host (README, "Direct artifact transfers")."""
    if not direct:
        return MinioApi(MINIO_API_PORT, f"http://minio:{MINIO_API_PORT}")
    host, port = settings.s3_public_host, settings.minio_api_port
    assert host is not None  # local.consistent refuses direct without it
    # `mc ready` takes an alias from MC_HOST_<alias> when its config has none of that name; without keys it
    # probes anonymously (minio/mc cmd/config.go, mustGetHostConfig and parseEnvURLStr).
    moved = port != MINIO_API_PORT
    return MinioApi(port, f"http://{host}:{port}", aliases=(host,),
                    env={f"MC_HOST_{HEALTH_ALIAS}": f"http://127.0.0.1:{port}"} if moved else {},
                    health_alias=HEALTH_ALIAS if moved else "local")


def _run_to_completion(resource_name: str, **container_args) -> docker.Container:
    """A container pulumi waits for until it exits (attach), before its dependents start; a
    non-zero exit fails the deployment."""
    return docker.Container(resource_name, attach=True, must_run=False, logs=True, restart="no", **container_args)


def _healthcheck(spec: ContainerSpec) -> Optional[docker.ContainerHealthcheckArgs]:
    check = spec.health_check
    if check is None:
        return None
    return docker.ContainerHealthcheckArgs(
        tests=["CMD", *check.command],
        interval=_duration(check.interval_seconds),
        timeout=_duration(check.timeout_seconds),
        retries=check.retries,
        start_period=_duration(check.start_period_seconds),
    )
