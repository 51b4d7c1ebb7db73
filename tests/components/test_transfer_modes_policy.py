"""The policy pack (policy/policies.py) over the graphs of artifacts.transfer direct (issue 26): the wider
reach of the store (an S3 endpoint clients use, client networks in an Azure storage firewall, a delegation
role, MinIO under a public name) must break none of its rules."""

from __future__ import annotations

import json

import pytest

from tests.harness.program import run_program
from tests.harness.stacks import aws_config, azure_config
from tests.policy.graphs import check

CONFIGS = {
    "local": lambda: {"mlflow:artifacts": json.dumps({"transfer": "direct"}),
                      "mlflow:local": json.dumps({"s3PublicHost": "minio.localhost"})},
    "aws": lambda: aws_config(artifacts={"transfer": "direct"}),
    "azure": lambda: azure_config(artifacts={"transfer": "direct"},
                                  azure={"storageClientCidrs": ["203.0.113.0/24", "198.51.100.7"]}),
}


@pytest.mark.parametrize("stack", sorted(CONFIGS))
def test_the_direct_graph_passes_every_policy(stack):
    run = run_program(CONFIGS[stack](), stack=stack)
    violations = check(run.resources)
    assert violations == [], "\n".join(f"{v.policy}: {v.message}" for v in violations)
