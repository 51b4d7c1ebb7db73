"""MlflowTrackingServer: a whole MLflow deployment as one component whose arguments are plain data.

It is the package's public face: `pulumi package add <repo>/provider` hands it to programs in any
Pulumi language, and this repository's own program creates one from the stack config. Its arguments
are the stack config's keys (`mlflow_tracking_server_args.py`, generated from `config.py`) and are
validated by the same pydantic model, with the same messages, before anything is created. It builds
the chosen platform and the four components under itself.

This module is read by Pulumi's component analyzer: no `from __future__ import annotations`.
"""

from enum import Enum
from typing import Any, Optional

import pulumi
from pydantic.alias_generators import to_camel

from components import render
from components.artifact_store import ArtifactStore
from components.config import KNOWN_LATER_KEYS, ConfigError, StackConfig, auth_database_name, validate_settings
from components.metadata_store import MetadataStore
from components.mlflow_tracking_server_args import MlflowTrackingServerArgs
from components.platforms import PLATFORMS
from components.platforms.base import Platform, moved_from_top
from components.reverse_proxy import ReverseProxy
from components.tracking_server import TrackingServer

CERTIFICATE_FILE = "mlflow-proxy.crt"
"""Where `client_env` expects the self-signed certificate (README: save it there)."""


class MlflowTrackingServer(pulumi.ComponentResource):
    """A production MLflow tracking server: PostgreSQL, a private artifact store, Nginx (auth, TLS)."""

    # Pulumi's analyzer copies these docstrings into the package schema as they are: one line each.

    tracking_uri: pulumi.Output[str]
    """The URL clients set as MLFLOW_TRACKING_URI."""
    username: Optional[pulumi.Output[str]]
    """The user name clients set as MLFLOW_TRACKING_USERNAME (auth.mode proxy: Nginx's user; mlflow: the admin)."""
    password: Optional[pulumi.Output[str]]
    """The generated password clients set as MLFLOW_TRACKING_PASSWORD (secret; auth.mode proxy, mlflow)."""
    admin_username: Optional[pulumi.Output[str]]
    """MLflow's administrator, who adds users and grants permissions (auth.mode mlflow)."""
    admin_password: Optional[pulumi.Output[str]]
    """The administrator's generated password (secret; auth.mode mlflow)."""
    bucket: pulumi.Output[str]
    """The artifact bucket."""
    client_env: pulumi.Output[str]
    """Shell lines exporting the client settings, for `eval` (secret)."""
    database_uri: pulumi.Output[str]
    """The metadata database's SQLAlchemy URI, for one-off jobs such as the SQLite migration (secret)."""
    tls_certificate: Optional[pulumi.Output[str]]
    """The proxy's self-signed certificate, for clients to trust (with `proxy.tls: self-signed`)."""
    minio_console_url: Optional[pulumi.Output[str]]
    """MinIO's web console (`local`)."""
    db_endpoint: Optional[pulumi.Output[str]]
    """The database's `host:port` (clouds)."""
    database_host: Optional[pulumi.Output[str]]
    """The database's host name inside the cloud network (clouds)."""
    storage_account: Optional[pulumi.Output[str]]
    """The storage account holding the artifact container (`azure`)."""
    resource_group: Optional[pulumi.Output[str]]
    """The resource group of the stack (`azure`)."""
    load_balancer_dns_name: Optional[pulumi.Output[str]]
    """The load balancer's DNS name, to point a domain at (`aws`)."""
    log_group: Optional[pulumi.Output[str]]
    """The CloudWatch log group of the containers (`aws`)."""
    cluster: Optional[pulumi.Output[str]]
    """The ECS cluster (`aws`)."""
    alarm_topic: Optional[pulumi.Output[str]]
    """The SNS topic the alarms notify; subscribe to it (`aws`)."""
    run_task_network: Optional[pulumi.Output[str]]
    """`--network-configuration` for one-off tasks beside the server: migration, gc (`aws`; README)."""
    warning: Optional[pulumi.Output[str]]
    """Set when the deployment works but should not stay as it is (plain HTTP on `aws`)."""
    metrics_scraper_security_group: Optional[pulumi.Output[str]]
    """The security group a Prometheus scraper joins to reach the proxies' metrics port (`aws`)."""
    domain_verification_id: Optional[pulumi.Output[str]]
    """The value of the TXT record `asuid.<domain>` Azure checks before it binds the domain (`azure` with a domain)."""

    def __init__(self, name: str, args: MlflowTrackingServerArgs, opts: Optional[pulumi.ResourceOptions] = None,
                 *, moved_from_top_level: bool = False):
        """Physical names (containers, volumes, AWS resources) start with `<name>-<stack>`.

        `moved_from_top_level` is for stacks this repository's program made before this component
        existed, when the four components and the platform's shared resources sat at the top of the
        tree: with it, `pulumi up` moves each under this component instead of replacing it. Only one
        MlflowTrackingServer per stack may set it (its program sets it; other programs need not).
        """
        config = settings_from_args(name, args)  # before anything is registered
        super().__init__("mlflow:index:MlflowTrackingServer", name, None, opts)

        def part(old_name: str) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, aliases=moved_from_top(old_name, moved_from_top_level))

        platform = _platform(f"{name}-platform", config, name, pulumi.ResourceOptions(parent=self),
                             moved_from_top_level)
        auth_database = auth_database_name(config.database.name) if config.auth.mode != "proxy" else None
        metadata = MetadataStore(f"{name}-metadata", {"platform": platform, "database": config.database,
                                                      "auth_database": auth_database}, part("metadata"))
        artifacts = ArtifactStore(f"{name}-artifacts", {"platform": platform, "artifacts": config.artifacts},
                                  part("artifacts"))
        server = TrackingServer(f"{name}-server", {
            "platform": platform, "metadata_store": metadata, "artifact_store": artifacts,
            "server": config.server, "proxy": config.proxy, "mlflow_version": config.mlflow_version,
            "auth": config.auth, "observability": config.observability, "maintenance": config.maintenance,
            "artifacts": config.artifacts,
        }, part("server"))
        proxy = ReverseProxy(f"{name}-proxy", {
            "platform": platform, "tracking_server": server, "proxy": config.proxy, "server": config.server,
            "image": config.proxy.image, "auth": config.auth, "observability": config.observability,
            "artifacts": config.artifacts,
        }, part("proxy"))

        self.tracking_uri = proxy.url
        self.admin_username = server.admin_username
        self.admin_password = server.admin_password
        self.username = proxy.username if config.auth.mode == "proxy" else server.admin_username
        self.password = proxy.password if config.auth.mode == "proxy" else server.admin_password
        self.bucket = artifacts.bucket
        self.database_uri = metadata.connection_uri
        self.tls_certificate = proxy.certificate_pem
        certificate_file = CERTIFICATE_FILE if proxy.certificate_pem is not None else None
        self.client_env = pulumi.Output.secret(pulumi.Output.all(proxy.url, self.username, self.password).apply(
            lambda parts: render.client_env_lines(parts[0], parts[1], parts[2], certificate_file)))
        self.minio_console_url = artifacts.console_url
        self.db_endpoint = metadata.endpoint
        self.database_host = metadata.host if metadata.endpoint is not None else None
        self.storage_account = artifacts.account_name
        self.resource_group = platform.user_outputs.resource_group
        self.load_balancer_dns_name = platform.user_outputs.load_balancer_dns_name
        self.log_group = platform.user_outputs.log_group
        self.cluster = platform.user_outputs.cluster
        self.alarm_topic = platform.user_outputs.alarm_topic
        self.run_task_network = platform.user_outputs.run_task_network
        self.warning = platform.user_outputs.warning
        self.metrics_scraper_security_group = platform.user_outputs.metrics_scraper_security_group
        self.domain_verification_id = platform.user_outputs.domain_verification_id
        self.register_outputs(self.outputs())

    def outputs(self) -> dict[str, pulumi.Output]:
        """Every output that is set, by name (the stack outputs of this repository's program)."""
        names = ("tracking_uri", "username", "password", "admin_username", "admin_password", "bucket", "client_env",
                 "database_uri", "tls_certificate", "minio_console_url", "db_endpoint", "database_host",
                 "storage_account", "resource_group",
                 "load_balancer_dns_name", "log_group", "cluster", "alarm_topic", "run_task_network", "warning",
                 "metrics_scraper_security_group", "domain_verification_id")
        return {key: getattr(self, key) for key in names if getattr(self, key) is not None}


def settings_from_args(name: str, args: Any) -> StackConfig:
    """MlflowTrackingServer's arguments validated by the stack config's model: `pulumi.RunError`
    with one line per bad key (in camelCase, as the package schema spells it)."""
    problems: list[str] = []
    values = _plain(args, "", problems)
    heading = f"invalid arguments of MlflowTrackingServer {name!r}:"
    if problems:
        raise pulumi.RunError("\n".join([heading, *problems]))
    try:
        return validate_settings(values, heading)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None


def _plain(value: Any, key: str, problems: list[str]) -> Any:
    """Arguments as the config model takes them: enum members as their values, a list holding
    Outputs as one Output; an Output only where the key accepts one (KNOWN_LATER_KEYS)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {item: _plain(inner, f"{key}.{to_camel(item)}" if key else to_camel(item), problems)
                for item, inner in value.items()}
    later = key in KNOWN_LATER_KEYS
    if isinstance(value, (list, tuple)):
        if later and any(isinstance(item, pulumi.Output) for item in value):
            return pulumi.Output.all(*value)
        return [_plain(item, key, problems) for item in value]
    if isinstance(value, pulumi.Output) and not later:
        problems.append(f"  {key}: must be a plain value, known before any resource is created (it decides which "
                        f"resources exist); only {', '.join(KNOWN_LATER_KEYS)} take an Output")
    return value


def _platform(name: str, config: StackConfig, instance: str, opts: pulumi.ResourceOptions,
              moved_from_top_level: bool) -> Platform:
    """The chosen platform's component (components.platforms.PLATFORMS). Only its module is imported, so
    `local` never loads a cloud SDK."""
    plugin = PLATFORMS[config.platform]
    moved = {"moved_from_top_level": moved_from_top_level} if plugin.moved_from_top_level else {}
    return plugin.component_class()(name, config, instance, opts, **moved)
