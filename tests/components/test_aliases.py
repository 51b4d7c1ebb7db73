"""Stacks made before MlflowTrackingServer existed keep their resources: every URN they hold is taken
over by a resource of today's program (moved under its component by an alias), none is replaced.

The old URNs were recorded from main at 61d3549 (fixtures/urns-before-facade.json), under the same
mocks, for these configurations. The engine's alias rules are emulated by harness.adopted_urns."""

import json
from pathlib import Path

import pytest

from tests.harness.program import REPO_ROOT, ProgramRun, adopted_urns, run_program, stack_file_config

BEFORE = json.loads((Path(__file__).parent / "fixtures" / "urns-before-facade.json").read_text())["urns"]
CERTIFICATE_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/01234567-89ab-cdef-0123-456789abcdef"


def _aws_with(**settings) -> dict:
    config = stack_file_config("aws")
    config["mlflow:aws"] = json.dumps({**json.loads(config["mlflow:aws"]), **settings})
    return config


VARIANTS = {
    "local": (lambda: stack_file_config("local"), "local"),
    "local-tls-bcrypt": (lambda: {**stack_file_config("local"),
                                  "mlflow:proxy": {"tls": "self-signed", "passwordHash": "bcrypt"}}, "local"),
    "aws": (lambda: stack_file_config("aws"), "aws"),
    "aws-https-zone": (lambda: _aws_with(domain="mlflow.example.com", hostedZoneId="Z0123456789ABCDEFGHIJ"), "aws"),
    "aws-certificate-arn": (lambda: _aws_with(domain="mlflow.example.com", certificateArn=CERTIFICATE_ARN), "aws"),
    "aws-existing-vpc": (lambda: _aws_with(vpcId="vpc-0123", publicSubnetIds=["subnet-a", "subnet-b"],
                                           privateSubnetIds=["subnet-c", "subnet-d"]), "aws"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_resource_of_an_existing_stack_is_taken_over(variant):
    make_config, stack = VARIANTS[variant]
    old_urns = set(BEFORE[variant])
    run = run_program(make_config(), stack=stack)
    claimed = adopted_urns(run, old_urns, stack)
    assert set(claimed) == old_urns, f"would be deleted and created anew: {sorted(old_urns - set(claimed))}"
    by_urn = {r.urn: r for r in run.resources}
    for old, new in claimed.items():
        assert old.split("::")[2].split("$")[-1] == by_urn[new].type, (old, new)
    # (Resources that did not exist before, the new components among them, are created.)
    created = {r.type for r in run.resources if r.urn not in claimed.values()}
    assert "mlflow:index:MlflowTrackingServer" in created
    moved = [urn for old, urn in claimed.items() if old != urn]
    assert len(moved) == len(old_urns), "every resource has a new URN under the component"


def test_without_the_aliases_the_old_resources_would_be_replaced(tmp_path):
    """Guard for the test above: the same component without `moved_from_top_level` adopts nothing."""
    program = tmp_path / "__main__.py"
    program.write_text((REPO_ROOT / "__main__.py").read_text().replace("moved_from_top_level=True",
                                                                       "moved_from_top_level=False"))
    run: ProgramRun = run_program(stack_file_config("local"), program=program)
    assert adopted_urns(run, set(BEFORE["local"]), "local") == {}
