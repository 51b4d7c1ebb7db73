"""ReverseProxy: Nginx in front of the server: basic auth, optional TLS, large streaming uploads."""

import base64
from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from components import render
from components.config import ArtifactsConfig, AuthConfig, ObservabilityConfig, ProxyConfig, ServerConfig
from components.names import PROXY_SERVICE, URI_PASSWORD_SPECIALS
from components.platforms.base import Platform, ServiceRequest
from components.tracking_server import TrackingServer


class ReverseProxyArgs(TypedDict):
    platform: Platform
    """Where the proxy runs."""
    tracking_server: TrackingServer
    """The upstream."""
    proxy: ProxyConfig
    """Port, TLS mode, user name, body size limit, timeouts."""
    server: ServerConfig
    """The upstream's static prefix (health and artifact routes depend on it)."""
    image: str
    """Pinned Nginx image."""
    auth: NotRequired[AuthConfig]
    """With auth.mode proxy (the default) Nginx checks one generated user; otherwise MLflow's auth
    app checks every request and Nginx passes the Authorization header on."""
    observability: NotRequired[ObservabilityConfig]
    """The internal metrics listener (observability.metricsPort) unless metrics are off."""
    artifacts: NotRequired[ArtifactsConfig]
    """artifacts.transfer: with direct, MLflow's server-info passes unchanged (clients then use presigned URLs)."""


class ReverseProxy(pulumi.ComponentResource):
    """The one public entry point. Users set `url` as MLFLOW_TRACKING_URI and, with auth.mode proxy,
    `username`/`password` as MLFLOW_TRACKING_USERNAME/PASSWORD; `/health` stays open for probes.
    Nginx starts once the server is up."""

    url: pulumi.Output[str]
    username: Optional[pulumi.Output[str]]
    password: Optional[pulumi.Output[str]]
    """The one user Nginx checks (auth.mode proxy); None where MLflow checks users itself."""
    certificate_pem: Optional[pulumi.Output[str]]
    """The self-signed certificate clients must trust, with `proxy.tls: self-signed`."""

    def __init__(self, name: str, args: ReverseProxyArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlflow:index:ReverseProxy", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = args["proxy"]
        platform = args["platform"]
        public = platform.public_entry()

        paths = render.NginxPaths.under(platform.runtime_file_dir)
        runtime_files: dict[str, pulumi.Output[str]] = {}
        auth = args.get("auth") or AuthConfig()
        self.username = self.password = None
        if auth.mode == "proxy":
            self.username, self.password, runtime_files[paths.htpasswd] = self._basic_auth_user(name, config, child)
        self.certificate_pem = None
        if config.tls == "self-signed":
            key = tls.PrivateKey(f"{name}-tls-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            certificate = tls.SelfSignedCert(
                f"{name}-tls-certificate",
                private_key_pem=pulumi.Output.secret(key.private_key_pem),
                subject=tls.SelfSignedCertSubjectArgs(common_name=public.hostnames.apply(lambda h: h[0]),
                                                      organization="MLflow platform"),
                dns_names=public.hostnames.apply(lambda hosts: render.certificate_names(hosts)[0]),
                ip_addresses=public.hostnames.apply(lambda hosts: render.certificate_names(hosts)[1]),
                validity_period_hours=24 * config.certificate_validity_days,
                early_renewal_hours=24 * 30,
                allowed_uses=["key_encipherment", "digital_signature", "server_auth"],
                opts=child,
            )
            self.certificate_pem = certificate.cert_pem
            runtime_files[paths.certificate] = certificate.cert_pem
            runtime_files[paths.private_key] = pulumi.Output.secret(key.private_key_pem)

        image = platform.public_image(f"{name}-image", args["image"], child)
        upstream = args["tracking_server"].internal_url.apply(lambda url: url.split("://", 1)[1])
        observability = args.get("observability") or ObservabilityConfig()
        artifacts = args.get("artifacts") or ArtifactsConfig()
        spec = pulumi.Output.all(upstream, image.reference, public.hostnames).apply(
            lambda parts: render.reverse_proxy_spec(render.proxy_settings(
                config, args["server"], parts[0], paths, auth, observability, tuple(parts[2]),
                front_idle_timeout_seconds=public.idle_timeout_seconds, artifacts=artifacts), parts[1]))
        platform.run_service(
            name,
            ServiceRequest(service_name=PROXY_SERVICE, role="proxy", spec=spec, image_repository=image.repository,
                           runtime_files=runtime_files, public=True,
                           metrics_port=observability.metrics_port if observability.prometheus else None),
            pulumi.ResourceOptions(parent=self, depends_on=[args["tracking_server"]]),
        )
        self.url = public.hostnames.apply(
            lambda hosts: render.public_url(hosts[0], public.scheme, public.port, args["server"].static_prefix))
        outputs = {"url": self.url}
        if self.username is not None:
            outputs.update(username=self.username, password=self.password)
        if self.certificate_pem is not None:
            outputs["certificate_pem"] = self.certificate_pem
        self.register_outputs(outputs)

    def _basic_auth_user(self, name: str, config: ProxyConfig, child: pulumi.ResourceOptions
                         ) -> tuple[pulumi.Output[str], pulumi.Output[str], pulumi.Output[str]]:
        """The one generated user: name, password (secret) and its htpasswd line (secret)."""
        generated = random.RandomPassword(f"{name}-password", length=32, special=True,
                                          override_special=URI_PASSWORD_SPECIALS, min_special=2, opts=child)
        if config.password_hash == "ssha":
            salt = random.RandomBytes(f"{name}-htpasswd-salt", length=8, opts=child)
            digest = pulumi.Output.all(generated.result, salt.base64).apply(
                lambda parts: render.ssha_hash(parts[0], base64.b64decode(parts[1])))
        else:
            digest = generated.bcrypt_hash
        htpasswd = pulumi.Output.secret(digest.apply(lambda value: render.htpasswd_line(config.username, value)))
        return pulumi.Output.from_input(config.username), pulumi.Output.secret(generated.result), htpasswd
