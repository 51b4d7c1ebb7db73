"""TrackingServer: the MLflow server, its image, and the schema upgrade that runs before it."""

from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_random as random

from components import render
from components.artifact_store import ArtifactStore
from components.config import (ArtifactsConfig, AuthConfig, MaintenanceConfig, ObservabilityConfig, ProxyConfig,
                               ServerConfig)
from components.metadata_store import MetadataStore
from components.names import SERVER_SERVICE
from components.platforms.base import InitStep, Platform, ScheduledJob, SecretRef, ServiceRequest


class TrackingServerArgs(TypedDict):
    platform: Platform
    """Where the server runs."""
    metadata_store: MetadataStore
    """The PostgreSQL database (its connection_uri reaches the server as a secret env var)."""
    artifact_store: ArtifactStore
    """The bucket the server proxies artifacts to, and the credentials scoped to it."""
    server: ServerConfig
    """Workers, pool sizes, static prefix, job runners."""
    proxy: ProxyConfig
    """Timeouts for slow transfers (the public names, scheme and port come from the platform)."""
    mlflow_version: str
    """MLflow version installed in the image."""
    auth: NotRequired[AuthConfig]
    """Who checks users: Nginx (proxy: nothing here), MLflow's auth app (mlflow) or single sign-on
    (oidc); the latter two need the metadata store's auth database."""
    observability: NotRequired[ObservabilityConfig]
    """Prometheus metrics (on unless switched off): the server exposes /metrics to the proxy's internal listener."""
    maintenance: NotRequired[MaintenanceConfig]
    """`mlflow gc` on a schedule (maintenance.gcSchedule), where the platform has a scheduler."""
    artifacts: NotRequired[ArtifactsConfig]
    """artifacts.transfer: with direct, clients move large artifacts with URLs the server signs for the
    artifact store's endpoint (make the ArtifactStore with the same config)."""


class TrackingServer(pulumi.ComponentResource):
    """`mlflow server` with proxied artifacts, the security middleware configured (never disabled),
    pools sized under the database's max_connections, and `mlflow db upgrade` as its own step that
    finishes before any worker starts (after the role setup, where the platform needs one). The
    server starts once both stores are complete; a new MLflow version waits for the platform's
    schema guard (a database snapshot on AWS)."""

    internal_url: pulumi.Output[str]
    """Where the platform's other services reach the server (the proxy's upstream)."""
    admin_username: Optional[pulumi.Output[str]]
    admin_password: Optional[pulumi.Output[str]]
    """The auth app's administrator and its generated password (secret), with auth.mode mlflow."""

    def __init__(self, name: str, args: TrackingServerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlflow:index:TrackingServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        platform = args["platform"]
        metadata = args["metadata_store"]
        artifacts = args["artifact_store"]
        auth = args.get("auth") or AuthConfig()
        observability = args.get("observability") or ObservabilityConfig()
        maintenance = args.get("maintenance") or MaintenanceConfig()
        transfers = args.get("artifacts") or ArtifactsConfig()
        if auth.mode != "proxy" and metadata.auth_connection_uri is None:
            raise ValueError(f"auth.mode {auth.mode} needs a MetadataStore made with an auth_database")

        image = platform.server_image(f"{name}-image", args["mlflow_version"], child)
        public = platform.public_entry()
        settings = pulumi.Output.all(
            image.reference, artifacts.artifact_root, artifacts.endpoint_url, public.hostnames,
            pulumi.Output.all(**artifacts.server_env) if artifacts.server_env else {},
        ).apply(lambda parts: render.tracking_server_settings(
            args["server"], args["proxy"], tuple(parts[3]),
            image=parts[0], artifacts_destination=parts[1], s3_endpoint_url=parts[2],
            artifact_secret_env_names=tuple(artifacts.server_credentials),
            part_signer_secret_env_names=tuple(artifacts.part_signer_credentials),
            extra_env=parts[4], scheme=public.scheme, port=public.port, auth=auth, observability=observability,
            artifacts=transfers,
        ))

        backend = {render.BACKEND_URI_ENV: metadata.connection_uri}
        steps = [InitStep("mlflow-db-upgrade", settings.apply(render.schema_upgrade_spec), backend)]
        if metadata.admin_credentials is not None or metadata.admin_password is not None:
            steps.insert(0, _role_setup(image.reference, metadata))
        # Generated even while the AI Gateway is off: switching it on later then finds a key that stays
        # (a new one would leave stored secrets undecryptable).
        secrets_key = random.RandomPassword(f"{name}-secrets-key", length=48, special=False, opts=child)
        secret_env = {**backend, render.SECRETS_KEK_ENV: secrets_key.result, **artifacts.server_credentials,
                      **artifacts.part_signer_credentials}
        runtime_files: dict[str, pulumi.Output[str]] = {}
        self.admin_username = self.admin_password = None
        if auth.mode != "proxy":
            auth_uri = metadata.auth_connection_uri
            assert auth_uri is not None
            upgrade_env = {render.AUTH_DATABASE_URI_ENV: auth_uri}
            session_key = random.RandomPassword(f"{name}-session-key", length=48, special=False, opts=child)
            secret_env[render.SESSION_KEY_ENVS[auth.mode]] = session_key.result
            if auth.mode == "mlflow":
                admin = random.RandomPassword(f"{name}-admin-password", length=32, special=False, opts=child)
                upgrade_env[render.AUTH_ADMIN_PASSWORD_ENV] = admin.result
            steps.append(InitStep("mlflow-auth-db-upgrade", settings.apply(render.auth_upgrade_spec), upgrade_env))
        if auth.mode == "mlflow":
            secret_env[render.AUTH_ADMIN_PASSWORD_ENV] = admin.result
            runtime_files[render.AUTH_CONFIG_PATH] = pulumi.Output.secret(auth_uri.apply(
                lambda uri: render.auth_config_ini(auth.default_permission, uri)))
            self.admin_username = pulumi.Output.from_input(auth.admin_username)
            self.admin_password = pulumi.Output.secret(admin.result)
        elif auth.mode == "oidc":
            secret_env[render.OIDC_USERS_DB_URI_ENV] = auth_uri
            secret_env[render.OIDC_CLIENT_SECRET_ENV] = pulumi.Output.secret(auth.oidc.client_secret)
        version = args["mlflow_version"]
        guard = platform.guard_schema_upgrade(f"{name}-schema", metadata.instance_id, version, child)
        service = platform.run_service(
            name,
            ServiceRequest(
                service_name=SERVER_SERVICE,
                role="server",
                spec=settings.apply(render.tracking_server_spec),
                image_repository=image.repository,
                secret_env=secret_env,
                runtime_files=runtime_files,
                init=steps,
                access_policies=[artifacts.server_policy] if artifacts.server_policy is not None else [],
                rollback=guard.rollback_safe,
                jobs=_gc_jobs(settings, maintenance),
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[metadata, artifacts, *guard.before]),
        )
        platform.record_deployed_version(f"{name}-deployed", version, service, child)
        self.internal_url = service.internal_url
        outputs = {"internal_url": self.internal_url}
        if self.admin_username is not None:
            outputs.update(admin_username=self.admin_username, admin_password=self.admin_password)
        self.register_outputs(outputs)


def _gc_jobs(settings: pulumi.Output[render.TrackingServerSettings], maintenance: MaintenanceConfig
             ) -> list[ScheduledJob]:
    """`mlflow gc` on maintenance.gcSchedule; none without one."""
    if maintenance.gc_schedule is None:
        return []
    spec = settings.apply(lambda s: render.gc_spec(s, maintenance.gc_older_than, maintenance.gc_timeout_seconds))
    return [ScheduledJob("mlflow-gc", spec, maintenance.gc_schedule, maintenance.gc_timeout_seconds)]


def _role_setup(image: pulumi.Output[str], metadata: MetadataStore) -> InitStep:
    """Sets MLflow's role up with the database admin's credentials (render.ROLE_SETUP_SCRIPT): from
    the secret the platform keeps them in, or the admin password Pulumi generated."""
    extra = metadata.auth_database if metadata.auth_database is not None else ""
    spec = pulumi.Output.all(image, metadata.host, metadata.port, metadata.database, metadata.username, extra).apply(
        lambda parts: render.role_setup_spec(parts[0], parts[1], int(parts[2]), parts[3], parts[4],
                                             extra_databases=(parts[5],) if parts[5] else ()))
    secret_env = {render.DB_PASSWORD_ENV: metadata.password}
    credentials = metadata.admin_credentials
    if credentials is not None:
        return InitStep("mlflow-db-setup", spec, secret_env, secret_refs={
            render.DB_ADMIN_USER_ENV: SecretRef(credentials, "username"),
            render.DB_ADMIN_PASSWORD_ENV: SecretRef(credentials, "password"),
        })
    return InitStep("mlflow-db-setup", spec, {**secret_env, render.DB_ADMIN_USER_ENV: metadata.admin_username,
                                              render.DB_ADMIN_PASSWORD_ENV: metadata.admin_password})
