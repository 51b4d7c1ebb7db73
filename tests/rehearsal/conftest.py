"""Fixtures of the data-plane rehearsal: one stack per test session (per pytest-xdist worker), variants
started on demand.

The stack (rehearsal.launcher.RehearsalStack) runs exactly what the components render, with real
PostgreSQL, Nginx, MLflow and an S3 stand-in on loopback ports. Everything it starts is stopped by
PID at session end, also when tests fail or the session is interrupted.

Figures the tests measure are collected with `report_figure` and printed in a "rehearsal figures"
section of the terminal summary (by tests/conftest.py), so they show in CI logs without `-s`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from typing import Iterator, Optional

import pytest

from rehearsal.launcher import RehearsalStack, Variant, check_prerequisites
from rehearsal.processes import ServerUnavailable

from rehearsal.scenarios import ONE_WORKER, STATIC_PREFIX, scenario_of  # noqa: F401 - the modules' names


# Set by pytest itself around every test phase: not a module's to restore.
PYTEST_OWN_VARIABLES = frozenset({"PYTEST_CURRENT_TEST"})


@pytest.fixture(scope="module", autouse=True)
def module_leaves_environment_as_found() -> Iterator[None]:
    """What a module leaves in os.environ or in MLflow's process-wide tracking and registry URIs
    (a stopped stack's MLFLOW_TRACKING_URI, credentials, MLFLOW_REGISTRY_URI) is undone when it
    ends. Under pytest-xdist a worker runs whichever modules it is handed, in any order, so no
    module may depend on, or be broken by, what another one set (test_9 failed after test_18)."""
    saved = dict(os.environ)
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    for name in set(os.environ) - set(saved) - PYTEST_OWN_VARIABLES:
        del os.environ[name]
    os.environ.update({name: value for name, value in saved.items() if name not in PYTEST_OWN_VARIABLES})


@pytest.fixture
def report_figure(request):
    """Record a measured figure: a JUnit property, and a line of the terminal summary (tests/conftest.py
    prints it from the test's report, which is how a pytest-xdist worker's figures reach it)."""

    def report(name: str, value, unit: str = "") -> None:
        request.node.user_properties.append((name, f"{value}{(' ' + unit) if unit else ''}"))

    return report


def require_servers(artifacts: str = "s3") -> None:
    """The rehearsal's prerequisites (`check_prerequisites`): in CI a missing one fails the tests,
    so the rehearsal can never pass there by not running; on a developer machine it skips them."""
    try:
        check_prerequisites(artifacts)
    except ServerUnavailable as error:
        if os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}:
            pytest.fail(f"the rehearsal needs real servers in CI: {error}", pytrace=False)
        pytest.skip(f"rehearsal skipped (developer machine without the servers): {error}")


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """A CI timeout sends SIGTERM: unwind like Ctrl-C so the servers are stopped, not orphaned."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        yield
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def running_stack(raw_config: Optional[dict] = None, artifacts: str = "s3",
                  **variants: dict) -> Iterator[RehearsalStack]:
    """A rehearsal stack with the given variants (name -> add_variant keywords; default: one
    "default"), stopped whatever happens, also on a CI timeout's SIGTERM."""
    require_servers(artifacts)
    logging.getLogger("rehearsal").setLevel(logging.INFO)
    with sigterm_unwinds():
        stack = RehearsalStack(raw_config, artifacts=artifacts)
        try:
            stack.start()
            for name, options in (variants or {"default": {}}).items():
                stack.add_variant(name, **options)
            yield stack
        finally:
            stack.stop()


@contextlib.contextmanager
def scenario_stack(module_file: str) -> Iterator[RehearsalStack]:
    """The stack of the scenario a test module runs (rehearsal/scenarios.py: `test_NN_<name>.py` is
    scenario NN), as `scripts/rehearse --scenario <name>` starts it."""
    import json

    scenario = scenario_of(module_file)
    assert scenario.stack == "own", f"{scenario.module} runs on the {scenario.stack} stack, not one of its own"
    with running_stack(json.loads(json.dumps(scenario.config)), artifacts=scenario.artifacts,
                       **{name: dict(options) for name, options in scenario.variants.items()}) as stack:
        yield stack


def shared_scenario_variants(stack: RehearsalStack, module_file: str) -> dict[str, Variant]:
    """The variants of a scenario that runs on the session's stack with a configuration of its own (e.g.
    artifacts.transfer direct): each of its `variants`, with its `config` over the stack's, added once."""
    import json

    scenario = scenario_of(module_file)
    assert scenario.stack == "shared", f"{scenario.module} runs on the {scenario.stack} stack"
    overrides = json.loads(json.dumps(scenario.config))
    for name, options in scenario.variants.items():
        if name not in stack.variants:
            stack.add_variant(name, **{**options, "overrides": {**overrides, **dict(options.get("overrides", {}))}})
    return {name: stack.variants[name] for name in scenario.variants}


@pytest.fixture(scope="session")
def rehearsal_stack() -> Iterator[RehearsalStack]:
    with running_stack() as stack:
        yield stack


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def default_variant(rehearsal_stack: RehearsalStack) -> Variant:
    return rehearsal_stack.variants["default"]


@pytest.fixture(scope="session")
def prefix_variant(rehearsal_stack: RehearsalStack) -> Variant:
    """A second server + Nginx rendered with server.staticPrefix=/mlflow (same database, bucket)."""
    return rehearsal_stack.variants.get("prefix") or rehearsal_stack.add_variant("prefix", static_prefix=STATIC_PREFIX)


@pytest.fixture(scope="session")
def tls_variant(rehearsal_stack: RehearsalStack) -> Variant:
    """A server + Nginx rendered with proxy.tls=self-signed."""
    return rehearsal_stack.variants.get("tls") or rehearsal_stack.add_variant("tls", tls=True)


@pytest.fixture(params=["default", "prefix"])
def any_variant(request) -> Variant:
    return request.getfixturevalue(f"{request.param}_variant")


@contextlib.contextmanager
def mlflow_client_for(variant: Variant, monkeypatch: pytest.MonkeyPatch, **extra_env: str):
    """Point the real MLflow client at a variant exactly as a user would: the stack's client env
    (MLFLOW_TRACKING_URI/USERNAME/PASSWORD[/SERVER_CERT_PATH]) and nothing else."""
    import mlflow
    from mlflow import MlflowClient

    for name in list(os.environ):
        if name.startswith(("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_")):
            monkeypatch.delenv(name)
    for name, value in {**variant.client_env(), **extra_env}.items():
        monkeypatch.setenv(name, value)
    mlflow.set_tracking_uri(variant.tracking_uri)
    try:
        yield MlflowClient(tracking_uri=variant.tracking_uri)
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)


@pytest.fixture
def client_for(monkeypatch):
    """`with client_for(variant) as client:` — the MLflow client configured from the stack's lines."""

    def make(variant: Variant, **extra_env: str):
        return mlflow_client_for(variant, monkeypatch, **extra_env)

    return make
