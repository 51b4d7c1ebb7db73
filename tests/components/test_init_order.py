"""Every platform runs the server's steps in one order (issue 24): MLflow's role exists, then the
schema upgrade, then the auth app's upgrade (auth.mode mlflow and oidc), each to completion, and only
then the server (on local the platform's provisioning container makes the role; the clouds run the
server's role-setup step). Each platform says it its own way: Docker containers that depend on each other and
run attached (local), ECS `dependsOn` with condition SUCCESS (aws), Container Apps' init containers,
which run one after the other in their order (azure). Read from the recorded graphs
(tests/components/golden, which test_golden_graphs.py holds equal to what the program registers).

Not here: the native rehearsal (rehearsal/launcher.py) runs the same steps in code, in this order
(RehearsalStack._start_backends, before it starts a server); the platform-faithful one takes the order from these
graphs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
CASES = [(stack, mode) for stack in ("local", "aws", "azure") for mode in ("proxy", "mlflow", "oidc")]
ROLE, SCHEMA, AUTH, SERVER = "role", "schema upgrade", "auth upgrade", "server"
STEP_NAMES = {"mlflow-db-setup": ROLE, "mlflow-db-upgrade": SCHEMA, "mlflow-auth-db-upgrade": AUTH,
              "mlflow-server": SERVER, "postgres-provision": ROLE}


def _step(name: str) -> str:
    return STEP_NAMES[name.removeprefix("mlflow-local-") if name.startswith("mlflow-local-") else name]


def _local_order(resources: dict) -> list[str]:
    """The server container and the attached (run-to-completion) containers before it, ordered by
    their dependencies; every step must be a dependency of every later one and of the server."""
    containers = {urn: r for urn, r in resources.items()
                  if urn.split("::")[-2].endswith("docker:index/container:Container")}
    server = next(urn for urn, r in containers.items() if r["inputs"]["name"] == "mlflow-local-mlflow-server")
    steps = [urn for urn in containers[server]["dependencies"]
             if urn in containers and containers[urn]["inputs"].get("attach")]
    ordered = sorted(steps, key=lambda urn: len([d for d in containers[urn]["dependencies"] if d in steps]))
    for index, urn in enumerate(ordered):
        assert set(ordered[:index]) <= set(containers[urn]["dependencies"]), \
            f"{urn} does not wait for the steps before it"
    return [_step(containers[urn]["inputs"]["name"]) for urn in ordered] + [SERVER]


def _aws_order(resources: dict) -> list[str]:
    """The task definition's containers as ECS starts them: each after the one it depends on with SUCCESS."""
    task = next(r for urn, r in resources.items() if urn.endswith("ecs/taskDefinition:TaskDefinition::mlflow-server"))
    definitions = {d["name"]: d for d in json.loads(task["inputs"]["containerDefinitions"])}
    ordered: list[str] = []
    while len(ordered) < len(definitions):
        ready = [name for name, d in definitions.items() if name not in ordered
                 and all(dep["containerName"] in ordered and dep["condition"] == "SUCCESS"
                         for dep in d.get("dependsOn", []))]
        assert len(ready) == 1, f"not one container ready after {ordered}: {ready}"
        ordered.append(ready[0])
    assert [definitions[name]["essential"] for name in ordered] == [False] * (len(ordered) - 1) + [True]
    return [_step(name) for name in ordered]


def _azure_order(resources: dict) -> list[str]:
    app = next(r for urn, r in resources.items() if urn.endswith("app:ContainerApp::mlflow-server"))
    template = app["inputs"]["template"]
    assert [c["name"] for c in template["containers"]] == ["mlflow-server"]
    return [_step(c["name"]) for c in template.get("initContainers", [])] + [SERVER]


@pytest.mark.parametrize("stack, mode", CASES, ids=[f"{stack}-{mode}" for stack, mode in CASES])
def test_every_platform_runs_the_server_steps_in_one_order(stack, mode):
    resources = json.loads((GOLDEN / f"{stack}-{mode}.json").read_text())["resources"]
    order = {"local": _local_order, "aws": _aws_order, "azure": _azure_order}[stack](resources)
    assert order == [ROLE, SCHEMA, *([AUTH] if mode != "proxy" else []), SERVER]
