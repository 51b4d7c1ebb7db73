"""The whole resource graph of every stack, compared with the one recorded in tests/components/golden/.

Issue 24 (platforms as plug-ins) is a redesign that must change no behaviour: every URN, every input
(the rendered commands, configuration files, policies, environment), every option (protect, aliases,
dependencies, providers) and every stack output of the three stacks in each auth mode stay exactly
as recorded here. A change that is meant is recorded again, and reviewed as a diff of the JSON:

    UPDATE_GOLDEN=1 ./scripts/test tests/components/test_golden_graphs.py

The mocks answer deterministically (tests/harness/program.py seeds every generated value by the
resource's type and name), so the same program gives the same graph on every machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.harness.program import ProgramRun, is_secret_wrapper, run_program
from tests.harness.stacks import OIDC, stack_config

GOLDEN = Path(__file__).parent / "golden"
CASES = [(stack, mode) for stack in ("local", "aws", "azure") for mode in ("proxy", "mlflow", "oidc")]


DEPLOY_TIME_KEYS = frozenset({"mlflow-rollout-started"})
"""Values the program takes from the clock (azure: when a revision's rollout began): masked."""


def _plain(value: Any) -> Any:
    """Secrets kept visible as such: {"<secret>": value}."""
    if is_secret_wrapper(value):
        return {"<secret>": _plain(value["value"])}
    if isinstance(value, dict):
        return {key: "<deploy time>" if key in DEPLOY_TIME_KEYS else _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


CHECKOUT_DEPENDENT = "<images_fingerprint: the checkout's files and modes>"
"""The registry tokens' trigger: a digest of the image's build context, modes included (as pulumi-docker counts
them), so it differs between checkouts made under different umasks. Masked here; test_plan_stability.py tests it."""


def _inputs(resource) -> Any:
    inputs = _plain(resource.raw_inputs)
    if resource.type == "command:local:Command" and resource.name.endswith("-registry-token"):
        inputs = {**inputs, "triggers": [CHECKOUT_DEPENDENT]}
    return inputs


def graph(run: ProgramRun) -> dict:
    """What the engine would receive, by URN: inputs and options of every resource, and the outputs."""
    resources = {}
    for resource in sorted(run.resources, key=lambda recorded: recorded.urn):
        resources[resource.urn] = {
            "custom": resource.custom, "parent": resource.parent, "provider": resource.provider,
            "inputs": _inputs(resource), "protect": resource.protect,
            "retainOnDelete": resource.retain_on_delete, "ignoreChanges": sorted(resource.ignore_changes),
            "dependencies": sorted(resource.dependencies), "deletedWith": resource.deleted_with,
            "additionalSecretOutputs": sorted(resource.additional_secret_outputs),
            "aliases": _plain(resource.aliases),
        }
    return {"resources": resources, "outputs": _plain(run.stack_outputs)}


def _differences(recorded: Any, now: Any, path: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(now, dict):
        found = []
        for key in sorted(set(recorded) | set(now)):
            where = f"{path}[{key!r}]"
            if key not in now:
                found.append(f"{where}: gone")
            elif key not in recorded:
                found.append(f"{where}: new")
            else:
                found.extend(_differences(recorded[key], now[key], where))
        return found
    if recorded != now:
        return [f"{path}: {json.dumps(recorded)[:200]} -> {json.dumps(now)[:200]}"]
    return []


@pytest.mark.parametrize("stack, mode", CASES, ids=[f"{stack}-{mode}" for stack, mode in CASES])
def test_the_graph_is_the_recorded_one(stack, mode):
    auth = {"mode": mode, **({"oidc": OIDC} if mode == "oidc" else {})}
    now = json.loads(json.dumps(graph(run_program(stack_config(stack, auth), stack=stack,
                                                  secret_keys=["mlflow:auth"]))))
    path = GOLDEN / f"{stack}-{mode}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(path.read_text())
    differences = _differences(recorded, now)
    assert not differences, (f"{len(differences)} differences from {path.name} (if meant: UPDATE_GOLDEN=1, and "
                             "review the JSON diff):\n" + "\n".join(differences[:40]))
