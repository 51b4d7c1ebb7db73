"""policy/ as the Pulumi CLI runs it: `python -u policy` starts the pack's gRPC analyzer, prints its
port, and answers the engine's calls. What the direct calls in test_policies.py cannot show: that
`PolicyPack(...)` accepts the policies, that they arrive mandatory, and that they judge the engine's
wire format (property structs with secrets in Pulumi's sentinel) the same way.
"""

from __future__ import annotations

import copy
import select
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy import policies as pack
from tests.policy.graphs import graph, one, without
from tests.harness.program import REPO_ROOT, SECRET_SIG, SIG_KEY, Recorded

START_TIMEOUT_SECONDS = 60


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    process = subprocess.Popen([sys.executable, "-u", str(REPO_ROOT / "policy")], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_SECONDS)
        port = process.stdout.readline().strip() if ready else ""
        if not port.isdigit():
            process.kill()
            pytest.fail(f"the pack did not start: {port!r} {process.communicate(timeout=10)[1]}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def struct(properties: dict) -> struct_pb2.Struct:
    return json_format.ParseDict(properties, struct_pb2.Struct())


def options(resource: Recorded) -> analyzer_pb2.AnalyzerResourceOptions:
    return analyzer_pb2.AnalyzerResourceOptions(protect=resource.protect, parent=resource.parent)


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, resource: Recorded, properties: dict | None = None
            ) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    request = analyzer_pb2.AnalyzeRequest(type=resource.type, name=resource.name, urn=resource.urn,
                                          properties=struct(resource.raw_inputs if properties is None else properties),
                                          options=options(resource))
    return list(stub.Analyze(request).diagnostics)


def analyze_stack(stub: analyzer_pb2_grpc.AnalyzerStub, resources: list[Recorded]
                  ) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    request = analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(type=r.type, name=r.name, urn=r.urn, properties=struct(r.raw_inputs),
                                      options=options(r), parent=r.parent, dependencies=r.dependencies)
        for r in resources])
    return list(stub.AnalyzeStack(request).diagnostics)


def test_the_pack_serves_every_policy_as_mandatory(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == pack.PACK_NAME
    assert {p.name: p.enforcementLevel for p in info.policies} == {
        p.name: analyzer_pb2.MANDATORY for p in pack.POLICIES}


@pytest.mark.parametrize("stack", ["local", "aws", "azure"])
def test_the_engine_format_of_the_graphs_passes(analyzer, stack: str):
    """Each resource as Analyze gets it (secrets wrapped), then the stack as AnalyzeStack gets it."""
    resources = graph(stack).resources
    for resource in resources:
        assert analyze(analyzer, resource) == [], resource.name
    assert analyze_stack(analyzer, resources) == []


def test_a_broken_resource_is_a_mandatory_violation_over_grpc(analyzer):
    rds = one(graph("aws").resources, pack.RDS_INSTANCE, "mlflow-metadata")
    broken = copy.deepcopy(rds.raw_inputs)
    broken["publiclyAccessible"] = True
    [diagnostic] = analyze(analyzer, rds, broken)
    assert diagnostic.policyName == "database-not-public"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert "'mlflow-metadata'" in diagnostic.message


def test_a_missing_guard_is_a_stack_violation_on_the_bucket(analyzer):
    resources = without(graph("aws").resources, pack.S3_PUBLIC_ACCESS_BLOCK)
    [diagnostic] = analyze_stack(analyzer, resources)
    assert diagnostic.policyName == "s3-buckets-guarded"
    assert diagnostic.urn == one(resources, "aws:s3/bucket:Bucket").urn


def test_a_secret_env_in_a_local_container_is_reported_through_the_secret_sentinel(analyzer):
    """The local containers get their secrets as files (`uploads`, a secret input; `envs` holds only the
    NAME_FILE paths), so the real graph passes (test_the_engine_format_of_the_graphs_passes). Planted
    back into `envs` inside Pulumi's secret sentinel, as the engine sends a secret input, a password is
    unwrapped by the analyzer and judged as `docker inspect` would show it."""
    postgres = one(graph("local").resources, pack.DOCKER_CONTAINER, "mlflow-metadata")
    assert postgres.input_is_secret("uploads") and analyze(analyzer, postgres) == []
    password = next(upload["content"] for upload in postgres.inputs["uploads"]
                    if upload["file"] == "/run/secrets/POSTGRES_PASSWORD")
    planted = copy.deepcopy(postgres.raw_inputs)
    planted["envs"] = {SIG_KEY: SECRET_SIG, "value": [*postgres.inputs["envs"], f"POSTGRES_PASSWORD={password}"]}
    [diagnostic] = analyze(analyzer, postgres, planted)
    assert diagnostic.policyName == "no-plaintext-secrets-in-container-env"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert "has POSTGRES_PASSWORD in `envs`" in diagnostic.message and password not in diagnostic.message


def pins(path: str) -> dict[str, str]:
    lines = (REPO_ROOT / path).read_text().splitlines()
    return dict(line.split("==", 1) for line in (line.split("#")[0].strip() for line in lines) if "==" in line)


def test_the_pack_runs_in_its_own_virtualenv_with_the_programs_versions():
    """The CLI creates policy/venv from policy/requirements.txt (PulumiPolicy.yaml's runtime options):
    pulumi must be the version the program runs, pulumi-policy the one these tests ran."""
    manifest = yaml.safe_load((REPO_ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    pack_pins = pins("policy/requirements.txt")
    assert pack_pins == {"pulumi-policy": pins("requirements-dev.txt")["pulumi-policy"],
                         "pulumi": pins("requirements.txt")["pulumi"]}
