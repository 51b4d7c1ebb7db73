"""How the toy platform runs what it registers (its PlatformPlugin's `rehearsal_runtime`; the contract
is rehearsal/runtimes/__init__.py): each `toy:index:Service`'s containers in order, init containers
first, each as its `user` or else its image's default user, its secret env from the service's
`secrets`, its health check an HTTP GET. Its database is made with its owner by the platform."""

from __future__ import annotations

import json

from rehearsal.platform_graph import PlatformContainer, PlatformService, Probe, StandInDatabase, image_default_user

ARTIFACT_STAND_IN = "s3"


def stack_config() -> dict[str, str]:
    """A toy stack as its users would configure it (there is no Pulumi.toy.yaml in the project)."""
    return {"mlflow:platform": "toy", "mlflow:toy": json.dumps({"region": "lab-2"}),
            "mlflow:hostnames": json.dumps(["mlflow.toy.example"])}


def services(run) -> dict[str, PlatformService]:
    found = {}
    for service in run.of_type("toy:index:Service"):
        inputs = service.inputs
        secrets = inputs["secrets"]
        containers = [PlatformContainer(
            name=item["name"], image=item["image"], command=tuple(item["command"]), env=dict(item["env"]),
            secret_env={name: secrets[name] for name in item["secretEnv"]},
            user=item["user"] or image_default_user(item["image"]), ports=tuple(int(port) for port in item["ports"]),
            probes=(Probe("Health", item["healthCheck"]["path"], int(item["healthCheck"]["port"])),)
            if item["healthCheck"] else ()) for item in inputs["containers"]]
        found[inputs["serviceName"]] = PlatformService(inputs["serviceName"], tuple(containers[:-1]), containers[-1])
    return found


def database(run, services: dict[str, PlatformService]) -> StandInDatabase:
    inputs = run.one("toy:index:Database").inputs
    return StandInDatabase(host=inputs["host"], port=int(inputs["port"]),
                           databases=(inputs["name"], *inputs["extraDatabases"]),
                           user=inputs["owner"], password=inputs["ownerPassword"], creates_roles=False)
