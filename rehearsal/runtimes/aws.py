"""ECS (Fargate) as it runs the stack: each ECS service's `aws:ecs/taskDefinition:TaskDefinition`
containerDefinitions: the non-essential containers chained by `dependsOn: SUCCESS` run first, in that
order; `user` when set, else the image's default; `secrets[].valueFrom` resolved to the SecretVersion
whose Secret has that ARN (or, for RDS's own master-user secret, a stand-in value, see `RDS_MANAGED`);
the health check's URL. https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_definition_parameters.html
("user", "dependsOn", "secrets", "healthCheck")
"""

from __future__ import annotations

import json
from typing import Callable

from rehearsal.platform_graph import (
    GraphError,
    PlatformContainer,
    PlatformService,
    Probe,
    StandInDatabase,
    _probe_from_url,
    database_from_setup_step,
    image_default_user,
)

ARTIFACT_STAND_IN = "s3"
RDS_MANAGED = "rds!"
"""RDS keeps its master user's secret itself (manage_master_user_password): no SecretVersion in the
graph. Its JSON holds `username` (the instance's) and `password` (RDS generates it)."""


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
    from rehearsal.passwords import generate_password

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


def services(run) -> dict[str, PlatformService]:
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


def database(run, services: dict[str, PlatformService]) -> StandInDatabase:
    """RDS's master user (rds_superuser, no superuser), which the db-setup step connects as."""
    return database_from_setup_step(services)
