"""Platform-neutral, plain-data descriptions of what runs: a container's image, command, env, ports.

Components build these with `components.render`; platforms turn them into a docker.Container, an ECS task
or a Container App. Because they are plain data, the rehearsal tests run the very same command and
env natively. Secrets are never in a spec: it names the secret env vars and secret files, and the
platform receives their values separately as secret Outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional


@dataclass(frozen=True)
class HealthCheck:
    """A health probe: an HTTP path on a container port, and the in-container command that checks it.

    `http_path` (and `command`) are the liveness check: a failure restarts the container, so for a
    proxy it must answer locally, never through to what the proxy fronts (a server blip would
    otherwise restart every proxy and cut every transfer). `readiness_path` may go further: a
    failure only takes the replica out of load balancing."""

    command: tuple[str, ...]
    http_path: str
    port: int
    interval_seconds: int = 10
    timeout_seconds: int = 5
    retries: int = 6
    start_period_seconds: int = 30
    readiness_path: Optional[str] = None
    """Where a platform with separate readiness probes checks that the replica can serve (None: `http_path`)."""

    @property
    def ready_path(self) -> str:
        return self.readiness_path or self.http_path


@dataclass(frozen=True)
class ContainerSpec:
    """What one container runs. Everything here is safe to show: no secret values."""

    name: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env_names: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    """Path -> content of non-secret files the container needs (e.g. nginx.conf)."""
    runtime_file_paths: tuple[str, ...] = ()
    """Paths of files whose content is only known at deploy time (htpasswd, TLS key and certificate);
    the platform receives their content separately, as secret Outputs where it is secret."""
    health_check: Optional[HealthCheck] = None
    user: Optional[str] = None

    def __post_init__(self) -> None:
        overlap = set(self.env) & set(self.secret_env_names)
        if overlap:
            raise ValueError(f"{self.name}: env vars both plain and secret: {sorted(overlap)}")
        overlap_files = set(self.files) & set(self.runtime_file_paths)
        if overlap_files:
            raise ValueError(f"{self.name}: files both rendered and runtime: {sorted(overlap_files)}")
