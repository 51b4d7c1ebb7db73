"""The MLflow platform program: validate the stack config, wire the four components, export."""

import pulumi

from components import ArtifactStore, MetadataStore, ReverseProxy, TrackingServer, render
from components.stack import load_stack_config, make_platform

config = load_stack_config()
platform = make_platform(config)

metadata = MetadataStore("metadata", {"platform": platform, "database": config.database})
artifacts = ArtifactStore("artifacts", {"platform": platform, "artifacts": config.artifacts})
server = TrackingServer("server", {
    "platform": platform,
    "metadata_store": metadata,
    "artifact_store": artifacts,
    "server": config.server,
    "proxy": config.proxy,
    "mlflow_version": config.mlflow_version,
})
proxy = ReverseProxy("proxy", {
    "platform": platform,
    "tracking_server": server,
    "proxy": config.proxy,
    "server": config.server,
    "image": config.proxy.image,
})

CERTIFICATE_FILE = "mlflow-proxy.crt"
pulumi.export("tracking_uri", proxy.url)
pulumi.export("username", proxy.username)
pulumi.export("password", proxy.password)
pulumi.export("bucket", artifacts.bucket)
# For one-off jobs on the platform's network, e.g. `python -m migration` (README); secret.
pulumi.export("database_uri", metadata.connection_uri)
if artifacts.console_url is not None:
    pulumi.export("minio_console_url", artifacts.console_url)
for key, value in platform.stack_outputs().items():
    pulumi.export(key, value)
if proxy.certificate_pem is not None:
    pulumi.export("tls_certificate", proxy.certificate_pem)
# Paste with: eval "$(pulumi stack output client_env --show-secrets)"
pulumi.export("client_env", pulumi.Output.secret(pulumi.Output.all(proxy.url, proxy.username, proxy.password).apply(
    lambda parts: render.client_env_lines(
        parts[0], parts[1], parts[2], CERTIFICATE_FILE if proxy.certificate_pem is not None else None))))
