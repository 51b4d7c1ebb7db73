"""The rehearsal's scenarios, in one place: what each one proves and the stack it runs on.

Scenario NN is `tests/rehearsal/test_NN_<name>.py` (numbered as pytest sorts them); a module that starts
a stack of its own takes it from here (`tests.rehearsal.conftest.scenario_stack`), and `scripts/rehearse
--scenario <name>` starts the same configuration by hand (its first server variant), to look at what a
test saw. `tests/rehearsal_unit/test_rehearsal_scenarios.py` checks that the list and the test files agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

STATIC_PREFIX = "/mlflow"
"""server.staticPrefix of the variants rendered under a prefix."""
ONE_WORKER = {"workers": 1}
"""`server:` of the modules that stop and start the server dozens of times, and of the authorization sweeps:
each uvicorn worker imports MLflow (seconds of CPU each start), and authorization, not the worker count, is
their subject."""
DEFAULT_AND_PREFIX = {"default": {}, "prefix": {"static_prefix": STATIC_PREFIX}}
DIRECT = {"artifacts": {"transfer": "direct"}}
"""artifacts.transfer direct (issue 26): clients move artifacts with presigned URLs, past Nginx and the server."""
DIRECT_ONE_WORKER = {**DIRECT, "server": ONE_WORKER}
"""A direct variant added beside a module's others: one uvicorn worker (its transfers, not the worker count, are
the subject; each worker costs an MLflow import at start)."""


@dataclass(frozen=True)
class Scenario:
    number: int
    name: str
    proves: str
    config: Mapping[str, Any] = field(default_factory=dict)
    """Stack configuration over the built-in defaults (the `mlflow:` keys of a stack file)."""
    artifacts: str = "s3"
    """The artifact store stand-in: s3 (the local and aws stacks) or azurite (the azure stack's Blob)."""
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"default": {}})
    """Server + Nginx pairs on the one database and bucket: name -> RehearsalStack.add_variant keywords."""
    stack: str = "own"
    """own: the module starts this stack; shared: the session's default stack (conftest.rehearsal_stack; a
    shared scenario with a config adds its variants to that stack with the config over the stack's:
    conftest.shared_scenario_variants); none: the module starts what it needs itself (a CLI, another
    platform's containers, an older MLflow)."""

    @property
    def module(self) -> str:
        return f"test_{self.number:02d}_{self.name}"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(1, "tracking", "tracking data round-trips through Nginx, MLflow and PostgreSQL; generated passwords "
             "full of URL-reserved characters work end to end", stack="shared"),
    Scenario(2, "auth", "basic auth at Nginx, /health open, MLflow's host check on behind it", stack="shared"),
    Scenario(3, "models", "a pyfunc model logged, loaded, registered and aliased through the proxy", stack="shared"),
    Scenario(4, "artifacts", "a 256 MiB artifact up and down through Nginx and MLflow, with and without the static "
             "prefix, the server's memory flat", stack="shared"),
    Scenario(5, "tls", "proxy.tls=self-signed: the component's certificate, the client trusting it", stack="shared"),
    Scenario(6, "restarts", "PostgreSQL and the server restart while a client logs: nothing lost", stack="shared"),
    Scenario(7, "workspaces", "a SQLite database kept in workspaces, migrated and served workspace by workspace",
             stack="shared"),
    Scenario(8, "azure_blob", "the azure stack's artifact store (Blob, Azurite standing in) through the proxy",
             config={"artifacts": {"prefix": "team/mlflow"}}, artifacts="azurite", variants={"azure": {}}),
    Scenario(9, "mlflow_auth", "auth.mode mlflow: MLflow's users and permissions behind Nginx; the prefixed "
             "server with direct transfers: no upload or download URL without the permission",
             config={"auth": {"mode": "mlflow", "defaultPermission": "NO_PERMISSIONS"}},
             variants={"default": {}, "direct-prefix": {"static_prefix": STATIC_PREFIX, "overrides": DIRECT}}),
    Scenario(10, "oidc", "auth.mode oidc: single sign-on against an OIDC provider stand-in; with direct transfers, "
             "upload credentials and download URLs only with the plugin's permission",
             config={"auth": {"mode": "oidc", "defaultPermission": "NO_PERMISSIONS"}, **DIRECT}),
    Scenario(11, "rehearse_cli", "scripts/rehearse as a user runs it, in every auth mode", stack="none"),
    Scenario(12, "day2", "Prometheus metrics, gc, the internal listener, with and without the static prefix",
             variants=DEFAULT_AND_PREFIX),
    Scenario(13, "backup_restore", "backup and restore (scripts/backup, scripts/restore) read back byte for byte",
             config={"auth": {"mode": "mlflow"}, "server": ONE_WORKER}),
    Scenario(14, "mlflow_upgrade", "an older MLflow's database through the schema upgrade; rolling back",
             stack="none"),
    Scenario(15, "platform_faithful", "each container as its platform runs it, from the registered graph",
             stack="none"),
    Scenario(16, "gc_blob", "gc on the azure stack's Blob store, run as the stack renders it",
             config={"server": ONE_WORKER}, artifacts="azurite", variants={"azure": {}}),
    Scenario(17, "keepalive", "the keep-alive chain: each hop outlasts the one in front", stack="shared"),
    Scenario(18, "authz_bypasses", "auth.mode mlflow: the artifact and registry bypasses closed",
             config={"auth": {"mode": "mlflow", "defaultPermission": "NO_PERMISSIONS"}, "server": ONE_WORKER},
             variants=DEFAULT_AND_PREFIX),
    Scenario(20, "backup_gc_safety", "backup and gc with unlucky timing: lock, consistent cut, kept runs",
             config={"auth": {"mode": "mlflow"}, "artifacts": {"prefix": "team"}, "server": ONE_WORKER}),
    Scenario(21, "ops_interrupted", "backup and restore interrupted at each step: nothing lost or half-done",
             config={"auth": {"mode": "mlflow"}, "server": ONE_WORKER}),
    Scenario(22, "authz_routes", "every route MLflow serves, as another user, refused where it must be",
             config={"auth": {"mode": "mlflow"}, "server": ONE_WORKER}, variants=DEFAULT_AND_PREFIX),
    Scenario(23, "direct_transfers", "artifacts.transfer direct on the S3 stand-in: artifacts above the client's "
             "multipart threshold go up and come down with presigned URLs, past Nginx and the server; anonymous, "
             "forged and expired requests refused", config=DIRECT_ONE_WORKER, variants={"direct": {}}, stack="shared"),
    Scenario(24, "azure_direct", "artifacts.transfer direct on the azure stack's Blob store: the server's managed "
             "identity (no key) signs user-delegation SAS for uploads straight to Azurite; downloads proxied",
             config={"artifacts": {"prefix": "team/mlflow", "transfer": "direct"}, "server": ONE_WORKER},
             artifacts="azurite",
             variants={"azure": {}}),
    Scenario(25, "move", "a laptop's MLflow (sqlite:///mlflow.db + ./mlruns, made by MLflow) moved into the stack "
             "in auth.mode mlflow by `python -m migration move`: artifacts byte for byte in the server's own layout, "
             "the registry alias loads, an interrupted move resumes; refusals",
             config={"auth": {"mode": "mlflow"}, "artifacts": {"prefix": "team"}, "server": ONE_WORKER}),
)

BY_NAME: dict[str, Scenario] = {scenario.name: scenario for scenario in SCENARIOS}


def scenario_of(module_file: str) -> Scenario:
    """The scenario a test module (its `__file__`) runs: `test_NN_<name>.py` is scenario NN, <name>."""
    stem = module_file.rsplit("/", 1)[-1].removesuffix(".py")
    found = [scenario for scenario in SCENARIOS if scenario.module == stem]
    if not found:
        raise LookupError(f"{stem} is no scenario in rehearsal/scenarios.py")
    return found[0]
