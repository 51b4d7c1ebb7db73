"""The recorded graphs of the program, handed to the policies the way the analyzer hands them over.

`run_program` (tests/harness/program.py) records what the engine would store for each resource: its raw
inputs (secrets still wrapped in Pulumi's sentinel), options, parent and dependencies. The analyzer
(pulumi_policy's `_PolicyAnalyzerServicer`) turns the engine's property struct into policy input with
`deserialize_properties` (which unwraps secrets) and `unknown_checking_proxy` (Mapping/Sequence proxies
that raise on unknowns); the helpers here do exactly that, so a policy that only works on plain dicts,
or that trips over a secret, fails here as it would under the CLI.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

from policy import policies as pack
from tests.harness.program import ProgramRun, Recorded, run_program, stack_file_config

OIDC = {"discoveryUrl": "https://login.example.com/realms/ml/.well-known/openid-configuration",
        "clientId": "mlflow-tracking", "clientSecret": "oidc-client-secret-7f3a9c1e", "adminGroup": "ml-admins",
        "userGroups": ["ml-team"]}


@dataclasses.dataclass(frozen=True)
class Violation:
    policy: str
    message: str
    urn: Optional[str]


def _config(stack: str, auth_mode: str, aws_settings: Optional[dict[str, Any]] = None) -> dict[str, str]:
    config = stack_file_config(stack)
    if auth_mode != "proxy":
        if stack == "aws":  # the stack file's 200 connections budget the proxy mode; take the default
            database = json.loads(config["mlflow:database"])
            database.pop("maxConnections", None)
            config["mlflow:database"] = json.dumps(database)
        config["mlflow:auth"] = json.dumps({"mode": auth_mode, **({"oidc": OIDC} if auth_mode == "oidc" else {})})
    if aws_settings:
        config["mlflow:aws"] = json.dumps({**json.loads(config["mlflow:aws"]), **aws_settings})
    return config


@functools.lru_cache(maxsize=None)
def graph(stack: str, auth_mode: str = "proxy", exec_enabled: bool = False, gc_schedule: bool = False) -> ProgramRun:
    """The program's graph for a stack file, as `pulumi up -s <stack>` would register it (with
    `gc_schedule`: mlflow gc scheduled, its scheduler role, task definition or job)."""
    config = _config(stack, auth_mode, {"execEnabled": True} if exec_enabled else None)
    if gc_schedule:
        config["mlflow:maintenance"] = json.dumps({"gcSchedule": "15 3 * * *"})
    return run_program(config, stack=stack, secret_keys=["mlflow:auth"] if auth_mode != "proxy" else ())


def props_of(resource: Recorded, use_state: bool = False) -> Any:
    """What the analyzer hands a policy: the engine's properties, deserialized, behind unknown-checking proxies."""
    raw = resource.state if use_state else resource.raw_inputs
    return unknown_checking_proxy(deserialize_properties(copy.deepcopy(raw)))


def options_of(resource: Recorded) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=resource.protect, ignore_changes=list(resource.ignore_changes), delete_before_replace=None,
        aliases=[], custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(resource.additional_secret_outputs), parent=resource.parent or None)


def resource_args(resource: Recorded, config: Optional[Mapping[str, Any]] = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(resource.type, props_of(resource), resource.urn, resource.name, options_of(resource),
                                  None, config)


def stack_args(resources: Sequence[Recorded], use_state: bool = False, with_dependencies: bool = True,
               config: Optional[Mapping[str, Any]] = None) -> StackValidationArgs:
    """The stack as AnalyzeStack sees it: parents and dependencies resolved to the resources themselves."""
    by_urn = {r.urn: PolicyResource(r.type, props_of(r, use_state), r.urn, r.name, options_of(r), None, None, [], {})
              for r in resources}
    for recorded in resources:
        resource = by_urn[recorded.urn]
        resource.parent = by_urn.get(recorded.parent)
        if with_dependencies:
            resource.dependencies = [by_urn[urn] for urn in recorded.dependencies if urn in by_urn]
    return StackValidationArgs(list(by_urn.values()), config)


def check(resources: Sequence[Recorded], policies: Sequence[Policy] = tuple(pack.POLICIES), use_state: bool = False,
          with_dependencies: bool = True, config: Optional[Mapping[str, Mapping[str, Any]]] = None) -> list[Violation]:
    """Every violation the policies report on these resources (resource policies per resource,
    stack policies once over all of them), each policy given its part of `config` (the
    `--policy-pack-config` file's object, as `Configure` hands it over) as the analyzer gives it."""
    found: list[Violation] = []
    for policy in policies:
        def report(message: str, urn: Optional[str] = None, name: str = policy.name) -> None:
            found.append(Violation(name, message, urn))

        if isinstance(policy, ResourceValidationPolicy):
            for resource in resources:
                def report_on(message: str, urn: Optional[str] = None, own_urn: str = resource.urn) -> None:
                    report(message, own_urn)  # the analyzer files a resource policy's report under the resource

                policy.validate(resource_args(resource, (config or {}).get(policy.name)), report_on)
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(stack_args(resources, use_state, with_dependencies, (config or {}).get(policy.name)),
                            report)
        else:  # pragma: no cover - the pack has only these two kinds
            raise TypeError(policy)
    return found


def replaced(resources: Sequence[Recorded], type_: str, name: str, change: Callable[[dict], Any] = lambda _: None,
             protect: Optional[bool] = None) -> list[Recorded]:
    """The graph with one resource swapped for a changed copy: `change` edits its (plain) inputs."""
    target = one(resources, type_, name)
    inputs = copy.deepcopy(target.inputs)
    change(inputs)
    changed = dataclasses.replace(target, raw_inputs=inputs, protect=target.protect if protect is None else protect)
    return [changed if r.urn == target.urn else r for r in resources]


def without(resources: Sequence[Recorded], type_: str) -> list[Recorded]:
    return [r for r in resources if r.type != type_]


def one(resources: Sequence[Recorded], type_: str, name: Optional[str] = None) -> Recorded:
    found = [r for r in resources if r.type == type_ and (name is None or r.name == name)]
    assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r.name for r in found]}"
    return found[0]


def policy_named(name: str) -> Policy:
    return next(policy for policy in pack.POLICIES if policy.name == name)
