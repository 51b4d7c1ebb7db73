"""Container Apps as it runs the stack: each `azure-native:app:ContainerApp`'s template (init
containers in order, then the main container), plain env values, secret env by `secretRef` into
`configuration.secrets`, probes. Container Apps has no run-as-user setting: every container runs as
its IMAGE's default user. https://learn.microsoft.com/en-us/azure/container-apps/containers (no `user`
field in the container spec; the image's USER applies)
"""

from __future__ import annotations

from rehearsal.platform_graph import (
    GraphError, PlatformContainer, PlatformService, Probe, StandInDatabase, database_from_setup_step,
    image_default_user,
)

ARTIFACT_STAND_IN = "azurite"


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


def services(run) -> dict[str, PlatformService]:
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


def database(run, services: dict[str, PlatformService]) -> StandInDatabase:
    """The flexible server's admin (azure_pg_admin, no superuser), which the db-setup step connects as."""
    return database_from_setup_step(services)
