"""What a platform runs, read from the program's REGISTERED GRAPH (not from components.render).

`platform_graph(name)` runs the Pulumi program under the unit harness's recording mocks
(tests/harness/program.py: every resource as the engine would register it, generated passwords
included) and asks the platform's rehearsal runtime (its registry entry's `rehearsal_runtime`, see
rehearsal/runtimes/__init__.py) for the containers exactly as that platform would receive them,
the database its stand-in must be, and which artifact store stand-in serves it. The types here are
what every runtime returns; rehearsal.platform_run runs them.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urlparse

from components import render
from components.names import SERVER_IMAGE

# The images' default users (their Dockerfiles' USER): nginx:alpine has none (root; its workers
# drop to the compiled-in `nginx`, see rehearsal/image_bin/nginx), the server image ends with
# `USER mlflow` (uid 10001, docker/mlflow/Dockerfile).
IMAGE_DEFAULT_USERS = {"nginx": "root", SERVER_IMAGE: "mlflow"}
# What each image's WORKDIR is (the container's working directory and, for mlflow, HOME).
IMAGE_WORKDIRS = {"nginx": "/", SERVER_IMAGE: "/home/mlflow"}
HEALTH_URL = re.compile(r"https?://[^/\s:'\"]+:(\d+)(/[^\s'\"]*)")


class GraphError(RuntimeError):
    """The graph lacks what the platform run needs (a renamed resource, an unresolvable secret)."""


@dataclass(frozen=True)
class Probe:
    kind: str
    """Liveness, Readiness, Startup (Container Apps) or Health (ECS's one container health check)."""
    path: str
    port: int


@dataclass(frozen=True)
class PlatformContainer:
    name: str
    image: str
    command: tuple[str, ...]
    env: dict[str, str]
    secret_env: dict[str, str]
    user: str
    probes: tuple[Probe, ...] = ()
    ports: tuple[int, ...] = ()

    @property
    def image_name(self) -> str:
        """The repository's last path segment without tag or digest: `nginx`, `mlflow-server`."""
        return self.image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]

    @property
    def workdir(self) -> str:
        return IMAGE_WORKDIRS.get(self.image_name, "/")


@dataclass(frozen=True)
class PlatformService:
    name: str
    init: tuple[PlatformContainer, ...]
    main: PlatformContainer


@dataclass(frozen=True)
class StandInDatabase:
    """The managed PostgreSQL the graph points at, as its stand-in must be before any container runs."""

    host: str
    port: int
    databases: tuple[str, ...]
    user: str
    password: str
    creates_roles: bool
    """True: `user` is the platform's admin (CREATEROLE, no superuser: azure_pg_admin, rds_superuser) and
    the init containers make MLflow's role; False: the platform made `user` the databases' owner itself."""


@dataclass
class PlatformGraph:
    platform: str
    services: dict[str, PlatformService]
    tracking_uri: str
    username: Optional[str]
    password: Optional[str]
    bucket: str
    database: StandInDatabase
    artifact_stand_in: str
    """"s3" (moto) or "azurite": what stands in for the platform's artifact store."""
    stack_outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def public_host(self) -> str:
        return urlparse(self.tracking_uri).hostname or ""

    @property
    def public_scheme(self) -> str:
        return urlparse(self.tracking_uri).scheme


def image_default_user(image: str) -> str:
    name = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    if name not in IMAGE_DEFAULT_USERS:
        raise GraphError(f"no known default user for image {image!r}: add it to IMAGE_DEFAULT_USERS")
    return IMAGE_DEFAULT_USERS[name]


def _probe_from_url(kind: str, text: str) -> Optional[Probe]:
    found = HEALTH_URL.search(text)
    return Probe(kind, found.group(2), int(found.group(1))) if found else None


# --- every platform --------------------------------------------------------------------------------


def rehearsed_platforms() -> tuple[str, ...]:
    """The registered platforms that have a rehearsal runtime (components.platforms.PLATFORMS)."""
    from components.platforms import PLATFORMS

    return tuple(name for name, plugin in PLATFORMS.items() if plugin.rehearsal_runtime)


def platform_graph(platform: str, config: Optional[dict[str, Any]] = None) -> PlatformGraph:
    """The platform's services as its stack file (or `config`, full keys) registers them."""
    from components.platforms import PLATFORMS
    from tests.harness.program import run_program, stack_file_config

    if platform not in rehearsed_platforms():
        raise ValueError(f"platform must be one of {rehearsed_platforms()}, got {platform!r}")
    runtime = importlib.import_module(str(PLATFORMS[platform].rehearsal_runtime))
    if config is None:
        config = runtime.stack_config() if hasattr(runtime, "stack_config") else stack_file_config(platform)
    run = run_program(config, stack=platform)
    services = runtime.services(run)
    outputs = {name: run.output(name) for name in run.stack_outputs}
    return PlatformGraph(platform=platform, services=services, tracking_uri=outputs["tracking_uri"],
                         username=outputs.get("username"), password=outputs.get("password"),
                         bucket=outputs["bucket"], database=runtime.database(run, services),
                         artifact_stand_in=runtime.ARTIFACT_STAND_IN, stack_outputs=outputs)


def database_from_setup_step(services: dict[str, PlatformService]) -> StandInDatabase:
    """Where the database setup init container (render.ROLE_SETUP_SCRIPT, run as the platform's admin)
    connects: the admin the stand-in must have, and its database."""
    for service in services.values():
        for step in service.init:
            env = {**step.env, **step.secret_env}
            if render.DB_ADMIN_USER_ENV in env:
                return StandInDatabase(host=env["MLFLOW_DB_HOST"], port=int(env["MLFLOW_DB_PORT"]),
                                       databases=(env["MLFLOW_DB_NAME"],), user=env[render.DB_ADMIN_USER_ENV],
                                       password=env[render.DB_ADMIN_PASSWORD_ENV], creates_roles=True)
    raise GraphError("no init container sets the database up")
