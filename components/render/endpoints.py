"""Where the services listen and how users reach them: ports, host names, origins, the public URL,
the keep-alive chain from the load balancer down to the server, the self-signed certificate's names."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from components.config import ProxyConfig


def config_default(model: type, key: str):
    """A config key's default, from the one place defaults live: the config model (issue 24)."""
    return model.model_fields[key].default


MLFLOW_PORT = 5000
PROXY_HTTP_PORT = 8080
PROXY_HTTPS_PORT = 8443
# Answered by Nginx itself (liveness of the proxy); MLflow's /health is the readiness path.
PROXY_LIVENESS_PATH = "/nginx-health"
PROXY_CONNECT_TIMEOUT_SECONDS = 10
"""How long Nginx waits to connect to the server: a replica that does not accept within it is down
(the client gets 502 and retries), not slow."""
# Keep-alive chain: every hop keeps an idle connection open longer than the hop in front of it, so
# the front always closes first. Otherwise the back hop may close a connection just as the front
# sends a request on it, and the front answers 502 (AWS: "configure the idle timeout of your
# application to be larger than the idle timeout configured for the load balancer",
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-load-balancer-attributes.html#connection-idle-timeout).
KEEPALIVE_MARGIN_SECONDS = 60
"""How much longer a hop keeps an idle connection than the hop in front of it; also covers Container
Apps' ingress, which rounds its idle timeout up to whole minutes (at most 59 s more)."""
NGINX_DEFAULT_KEEPALIVE_SECONDS = 75
"""Nginx's own keepalive_timeout; never rendered lower (clients straight at Nginx, on `local`)."""


def allowed_hosts(hostnames: tuple[str, ...], public_port: int) -> tuple[str, ...]:
    """Host headers MLflow's middleware accepts. Nginx forwards `$host` (no port); the `host:port`
    forms cover clients that send the port, e.g. through a proxy that keeps it."""
    hosts: list[str] = []
    for name in hostnames:
        for candidate in (name, f"{name}:{public_port}"):
            if candidate not in hosts:
                hosts.append(candidate)
    return tuple(hosts)


def public_origins(hostnames: tuple[str, ...], scheme: str, public_port: int) -> tuple[str, ...]:
    """Browser origins of the UI, for --cors-allowed-origins (default ports written both ways)."""
    default_port = {"http": 80, "https": 443}[scheme]
    origins: list[str] = []
    for name in hostnames:
        origins.append(f"{scheme}://{name}:{public_port}")
        if public_port == default_port:
            origins.append(f"{scheme}://{name}")
    return tuple(origins)


def public_url(hostname: str, scheme: str, public_port: int, static_prefix: Optional[str]) -> str:
    """The tracking URI users set: scheme, first host name, port unless default, static prefix."""
    default_port = {"http": 80, "https": 443}[scheme]
    port = "" if public_port == default_port else f":{public_port}"
    return f"{scheme}://{hostname}{port}{static_prefix or ''}"


def nginx_keepalive_seconds(front_idle_timeout_seconds: Optional[int]) -> int:
    """Nginx's keepalive_timeout: longer than the idle timeout of what sits in front of it (the
    ALB's, the Container Apps ingress's), never below Nginx's own default."""
    if front_idle_timeout_seconds is None:
        return NGINX_DEFAULT_KEEPALIVE_SECONDS
    return max(NGINX_DEFAULT_KEEPALIVE_SECONDS, front_idle_timeout_seconds + KEEPALIVE_MARGIN_SECONDS)


def health_path(static_prefix: Optional[str]) -> str:
    """Under --static-prefix P only P/health is exempt from the host check."""
    return f"{static_prefix or ''}/health"


def public_scheme(proxy: "ProxyConfig") -> str:
    return "https" if proxy.tls != "off" else "http"


DEFAULT_METRICS_PORT = 9180


def certificate_names(hostnames) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the self-signed certificate for the public host names: addresses go
    to IP SANs, names to DNS SANs; 127.0.0.1 when no address is given, so a local client can connect."""
    def is_ip(host: str) -> bool:
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return False

    return [h for h in hostnames if not is_ip(h)], [h for h in hostnames if is_ip(h)] or ["127.0.0.1"]
