"""The rehearsal's scenario list (rehearsal/scenarios.py) and its test modules agree: scenario NN is
tests/rehearsal/test_NN_<name>.py, a module with a stack of its own takes it from the list, and every
scenario's configuration is one the stack accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.config import parse_stack_config
from rehearsal.launcher import with_s3_public_host
from rehearsal.scenarios import BY_NAME, SCENARIOS, scenario_of
from rehearsal.stand_ins import ARTIFACT_STORES

REHEARSAL_TESTS = Path(__file__).resolve().parents[1] / "rehearsal"


def test_every_rehearsal_module_is_a_scenario_and_every_scenario_a_module():
    modules = sorted(path.stem for path in REHEARSAL_TESTS.glob("test_[0-9][0-9]_*.py"))
    assert modules == [scenario.module for scenario in SCENARIOS], "rehearsal/scenarios.py and tests/rehearsal differ"
    assert [s.number for s in SCENARIOS] == sorted({s.number for s in SCENARIOS}), "numbered once, in order"
    assert len(BY_NAME) == len(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.module)
def test_each_module_runs_its_scenarios_stack(scenario):
    text = (REHEARSAL_TESTS / f"{scenario.module}.py").read_text()
    assert scenario_of(str(REHEARSAL_TESTS / f"{scenario.module}.py")) is scenario
    own = "scenario_stack(__file__)" in text
    assert own == (scenario.stack == "own"), f"{scenario.module}: its stack is {scenario.stack!r} in the list"
    assert not re.search(r"\brunning_stack\(", text), "a stack of its own comes from the list (scenario_stack)"
    if scenario.stack == "shared":
        assert re.search(r"\b(rehearsal_stack|default_variant|tls_variant|prefix_variant)\b", text)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.module)
def test_each_scenarios_configuration_is_valid(scenario):
    assert scenario.artifacts in ARTIFACT_STORES and scenario.variants
    config = {key: dict(value) for key, value in scenario.config.items()}
    if config.get("auth", {}).get("mode") == "oidc":  # the rehearsal starts an identity provider and names it
        config["auth"]["oidc"] = {"discoveryUrl": "http://127.0.0.1:1/.well-known/openid-configuration",
                                  "clientId": "mlflow", "clientSecret": "stand-in"}
    parse_stack_config(with_s3_public_host(config), f"scenario {scenario.name}")  # (as the rehearsal completes it)
    for name, options in scenario.variants.items():  # a variant's own overrides, over the scenario's
        overrides = {key: dict(value) for key, value in dict(options.get("overrides", {})).items()}
        merged = {key: {**config.get(key, {}), **overrides.get(key, {})} for key in {*config, *overrides}}
        parse_stack_config(with_s3_public_host(merged), f"scenario {scenario.name}, variant {name}")


def test_a_module_outside_the_list_is_named_in_the_error():
    with pytest.raises(LookupError, match="test_99_nothing is no scenario"):
        scenario_of("tests/rehearsal/test_99_nothing.py")
