"""What a cloud platform runs, read from the program's REGISTERED GRAPH (not from render.py).

`platform_graph("aws"|"azure")` runs the Pulumi program under the unit harness's recording mocks
(tests/unit/harness.py: every resource as the engine would register it, generated passwords
included) and reads, per service, the containers exactly as the cloud would receive them:

* azure: each `azure-native:app:ContainerApp`'s template (init containers in order, then the main
  container), plain env values, secret env by `secretRef` into `configuration.secrets`, probes.
  Container Apps has no run-as-user setting: every container runs as its IMAGE's default user.
  https://learn.microsoft.com/en-us/azure/container-apps/containers (no `user` field in the
  container spec; the image's USER applies)
* aws: each ECS service's `aws:ecs/taskDefinition:TaskDefinition` containerDefinitions: the
  non-essential containers chained by `dependsOn: SUCCESS` run first, in that order; `user` when
  set, else the image's default; `secrets[].valueFrom` resolved to the SecretVersion whose Secret
  has that ARN (or, for RDS's own master-user secret, a stand-in value, see `RDS_MANAGED`);
  the health check's URL. https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html
  ("user", "dependsOn", "secrets", "healthCheck")
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import urlparse

from components import render
from components.names import SERVER_IMAGE

PLATFORMS = ("aws", "azure")
# The images' default users (their Dockerfiles' USER): nginx:alpine has none (root; its workers
# drop to the compiled-in `nginx`, see rehearsal/image_bin/nginx), the server image ends with
# `USER mlflow` (uid 10001, docker/mlflow/Dockerfile).
IMAGE_DEFAULT_USERS = {"nginx": "root", SERVER_IMAGE: "mlflow"}
# What each image's WORKDIR is (the container's working directory and, for mlflow, HOME).
IMAGE_WORKDIRS = {"nginx": "/", SERVER_IMAGE: "/home/mlflow"}
RDS_MANAGED = "rds!"
"""RDS keeps its master user's secret itself (manage_master_user_password): no SecretVersion in the
graph. Its JSON holds `username` (the instance's) and `password` (RDS generates it)."""
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


@dataclass
class PlatformGraph:
    platform: str
    services: dict[str, PlatformService]
    tracking_uri: str
    username: Optional[str]
    password: Optional[str]
    bucket: str
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


# --- azure ---------------------------------------------------------------------------------------


def _azure_container(item: dict, secrets: dict[str, str]) -> PlatformContainer:
    plain, secret = {}, {}
    for entry in item.get("env", []):
        if "secretRef" in entry:
            if entry["secretRef"] not in secrets:
                raise GraphError(f"{item['name']}: env {entry['name']} refers to unknown secret {entry['secretRef']}")
            secret[entry["name"]] = secrets[entry["secretRef"]]
        else:
            plain[entry["name"]] = entry.get("value", "")
    probes = tuple(Probe(p["type"], p["httpGet"]["path"], int(p["httpGet"]["port"]))
                   for p in item.get("probes", []) if "httpGet" in p)
    return PlatformContainer(name=item["name"], image=item["image"], command=tuple(item.get("command", ())),
                             env=plain, secret_env=secret, user=image_default_user(item["image"]), probes=probes)


def azure_services(run) -> dict[str, PlatformService]:
    services = {}
    for app in run.of_type("azure-native:app:ContainerApp"):
        inputs = app.inputs
        secrets = {s["name"]: s["value"] for s in inputs["configuration"].get("secrets", [])}
        template = inputs["template"]
        init = tuple(_azure_container(item, secrets) for item in template.get("initContainers", []))
        (main,) = template["containers"]
        ingress = inputs["configuration"].get("ingress") or {}
        container = _azure_container(main, secrets)
        ports = (int(ingress["targetPort"]),) if ingress.get("targetPort") else ()
        container = PlatformContainer(**{**container.__dict__, "ports": ports})
        services[inputs["containerAppName"]] = PlatformService(inputs["containerAppName"], init, container)
    return services


# --- aws -----------------------------------------------------------------------------------------


def _aws_secret_resolver(run) -> Callable[[str], str]:
    """valueFrom -> the value ECS would inject: the SecretVersion of the Secret with that ARN, or
    a key of RDS's master-user secret (stand-in password, the instance's username)."""
    by_arn = {secret.state["arn"]: secret.state["id"] for secret in run.of_type("aws:secretsmanager/secret:Secret")}
    versions = {version.inputs["secretId"]: version.inputs["secretString"]
                for version in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    masters = {}
    for instance in run.of_type("aws:rds/instance:Instance"):
        for managed in instance.state.get("masterUserSecrets") or []:
            masters[managed["secretArn"]] = {"username": instance.inputs["username"],
                                             "password": _rds_master_password()}

    def resolve(value_from: str) -> str:
        parts = value_from.split(":")
        arn, key = ":".join(parts[:7]), (parts[7] if len(parts) > 7 else "")
        if arn in by_arn and by_arn[arn] in versions:
            value = versions[by_arn[arn]]
            return json.loads(value)[key] if key else value
        if arn in masters and RDS_MANAGED in arn:
            return masters[arn][key] if key else json.dumps(masters[arn])
        raise GraphError(f"no secret value in the graph for valueFrom {value_from!r}")

    return resolve


def _rds_master_password() -> str:
    from rehearsal.launcher import generate_password

    return generate_password()


def _aws_container(item: dict, resolve: Callable[[str], str]) -> PlatformContainer:
    probes: tuple[Probe, ...] = ()
    if item.get("healthCheck"):
        probe = _probe_from_url("Health", " ".join(item["healthCheck"]["command"]))
        probes = (probe,) if probe else ()
    return PlatformContainer(
        name=item["name"], image=item["image"], command=tuple(item.get("command") or ()),
        env={e["name"]: e["value"] for e in item.get("environment", [])},
        secret_env={s["name"]: resolve(s["valueFrom"]) for s in item.get("secrets", [])},
        user=item.get("user") or image_default_user(item["image"]), probes=probes,
        ports=tuple(int(p["containerPort"]) for p in item.get("portMappings", [])))


def _start_order(definitions: list[dict]) -> list[dict]:
    """The containers in the order ECS starts them: each after those it depends on (SUCCESS)."""
    by_name = {d["name"]: d for d in definitions}
    ordered: list[dict] = []

    def visit(definition: dict, path: tuple[str, ...] = ()) -> None:
        if definition in ordered:
            return
        if definition["name"] in path:
            raise GraphError(f"dependsOn cycle through {definition['name']}")
        for dependency in definition.get("dependsOn") or []:
            if dependency["condition"] != "SUCCESS":
                raise GraphError(f"{definition['name']}: dependsOn {dependency['condition']} is not rehearsed")
            visit(by_name[dependency["containerName"]], (*path, definition["name"]))
        ordered.append(definition)

    for definition in definitions:
        visit(definition)
    return ordered


def aws_services(run) -> dict[str, PlatformService]:
    resolve = _aws_secret_resolver(run)
    definitions = {td.state["arn"]: td for td in run.of_type("aws:ecs/taskDefinition:TaskDefinition")}
    services = {}
    for service in run.of_type("aws:ecs/service:Service"):
        task = definitions[service.inputs["taskDefinition"]]
        ordered = _start_order(json.loads(task.inputs["containerDefinitions"]))
        essential = [d for d in ordered if d.get("essential", True)]
        if len(essential) != 1 or ordered[-1] is not essential[0]:
            raise GraphError(f"{service.inputs['name']}: expected init containers, then one essential container")
        services[service.inputs["name"]] = PlatformService(
            service.inputs["name"], tuple(_aws_container(d, resolve) for d in ordered[:-1]),
            _aws_container(ordered[-1], resolve))
    return services


# --- both ----------------------------------------------------------------------------------------


def platform_graph(platform: str, config: Optional[dict[str, Any]] = None) -> PlatformGraph:
    """The platform's services as its stack file (or `config`, full keys) registers them."""
    from tests.unit.harness import run_program, stack_file_config

    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, got {platform!r}")
    run = run_program(config if config is not None else stack_file_config(platform), stack=platform)
    services = azure_services(run) if platform == "azure" else aws_services(run)
    outputs = {name: run.output(name) for name in run.stack_outputs}
    return PlatformGraph(platform=platform, services=services, tracking_uri=outputs["tracking_uri"],
                         username=outputs.get("username"), password=outputs.get("password"),
                         bucket=outputs["bucket"], stack_outputs=outputs)


def database_endpoint(service: PlatformService) -> tuple[str, int, str, str, str]:
    """(host, port, database, admin user, admin password) from the db-setup init container's env:
    what the stand-in database must answer to."""
    for step in service.init:
        env = {**step.env, **step.secret_env}
        if render.DB_ADMIN_USER_ENV in env:
            return (env["MLFLOW_DB_HOST"], int(env["MLFLOW_DB_PORT"]), env["MLFLOW_DB_NAME"],
                    env[render.DB_ADMIN_USER_ENV], env[render.DB_ADMIN_PASSWORD_ENV])
    raise GraphError(f"{service.name}: no init container sets the database up")
