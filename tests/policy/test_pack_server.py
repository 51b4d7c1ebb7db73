"""policy/ as the Pulumi CLI runs it: `python -u policy` starts the pack's gRPC analyzer, prints its
port, and answers the engine's calls. What the direct calls in test_policies.py cannot show: that
`PolicyPack(...)` accepts the policies, that they arrive mandatory, that they judge the engine's
wire format (property structs with secrets in Pulumi's sentinel, numbers as floats) the same way, and
that a `--policy-pack-config` file reaches them through `Configure` as the CLI sends it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import re
import select
import subprocess
import sys
from collections.abc import Iterator

import grpc
import jsonschema
import pytest
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy import policies as pack
from tests.harness.program import REPO_ROOT, SECRET_SIG, SIG_KEY, Recorded
from tests.policy.cases import CASES, PERMISSION_SET, TEMPLATES, Case, added, companions
from tests.policy.graphs import graph, one, without

START_TIMEOUT_SECONDS = 60


@contextlib.contextmanager
def started_pack() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
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


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """The pack as `--policy-pack policy` starts it, never configured (a CLI run without a config file
    that sets anything: the defaults)."""
    with started_pack() as stub:
        yield stub


@pytest.fixture(scope="module")
def configurable() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """A pack of its own for the configuration tests: each test configures it afresh."""
    with started_pack() as stub:
        yield stub


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


# --- the ways around the policies, in the engine's wire format --------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_an_added_resource_is_judged_over_grpc(analyzer, case: Case):
    """tests/policy/cases.py as Analyze gets them: each bypass is a mandatory violation of its policy, each
    legitimate near miss passes every policy."""
    resource = added(graph(case.stack).resources, case)
    for companion in companions(graph(case.stack).resources, case):
        assert analyze(analyzer, companion) == [], companion.name
    diagnostics = analyze(analyzer, resource)
    if case.policy is None:
        assert diagnostics == [], [d.message for d in diagnostics]
    else:
        assert diagnostics, f"{case.policy} let {case.id} through"
        for diagnostic in diagnostics:
            assert diagnostic.policyName == case.policy, diagnostic
            assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
            assert f"'{resource.name}'" in diagnostic.message


# --- configuration: what `--policy-pack-config` becomes ----------------------------------------------------

LEVELS = {"advisory": analyzer_pb2.ADVISORY, "mandatory": analyzer_pb2.MANDATORY,
          "disabled": analyzer_pb2.DISABLED, "remediate": analyzer_pb2.REMEDIATE}


class CliRefused(Exception):
    """What the CLI itself refuses before the pack hears of it."""


def cli_configure(stub: analyzer_pb2_grpc.AnalyzerStub, config_file: dict) -> None:
    """Configure the pack as the CLI does for `--policy-pack-config <file>` (pkg/engine/update.go,
    pkg/resource/analyzer/config.go, ReconcilePolicyPackConfig): every policy with its own enforcement
    level and its schema's defaults, "all"'s level over every policy's, the file's values over them (a string
    is an enforcement level, an object's "enforcementLevel" too), each policy's result validated against its
    schema; then one
    Configure call with all of them. A name that is no policy of the pack is handed over too
    (applyConfig keeps every name of the file), unvalidated; without an enforcement level of its own the
    CLI's Configure refuses it first ("invalid enforcement level \"\""), with one the pack gets it."""
    policy_config = {}
    known = set()
    spread = config_file.get("all")  # applyConfig: "all"'s level first goes to every policy
    spread = spread if isinstance(spread, str) else spread.get("enforcementLevel") if isinstance(spread, dict) else None
    for policy in stub.GetAnalyzerInfo(empty_pb2.Empty()).policies:
        schema = json_format.MessageToDict(policy.configSchema.properties) if policy.HasField("configSchema") else {}
        properties = {name: spec["default"] for name, spec in schema.items() if "default" in spec}
        level = LEVELS[spread] if spread in LEVELS else policy.enforcementLevel
        given = copy.deepcopy(config_file.get(policy.name))
        if isinstance(given, str):
            level = LEVELS[given]
        elif isinstance(given, dict):
            level = LEVELS[given.pop("enforcementLevel")] if "enforcementLevel" in given else level
            properties.update(given)
        if schema:
            jsonschema.validate(properties, {"type": "object", "properties": schema})
        policy_config[policy.name] = analyzer_pb2.PolicyConfig(enforcementLevel=level, properties=struct(properties))
        known.add(policy.name)
    for name, given in config_file.items():
        if name in known:
            continue
        given = copy.deepcopy(given) if isinstance(given, dict) else {"enforcementLevel": given}
        if given.get("enforcementLevel") not in LEVELS:
            raise CliRefused(f"invalid enforcement level for {name}")
        level = LEVELS[given.pop("enforcementLevel")]
        policy_config[name] = analyzer_pb2.PolicyConfig(enforcementLevel=level, properties=struct(given))
    stub.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=policy_config))


def test_the_pack_declares_its_config_schemas(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    schemas = {p.name: json_format.MessageToDict(p.configSchema.properties) for p in info.policies
               if p.HasField("configSchema")}
    assert info.supportsConfig
    assert schemas["iam-least-privilege"]["allowedActionsOnAnyResource"]["default"] == []
    assert schemas["stateful-resources-protected"]["requireProtection"]["default"] is True
    assert schemas["stateful-resources-protected"]["exemptStacks"]["default"] == []


def _with_statement(resource: Recorded, statement: dict) -> dict:
    properties = copy.deepcopy(resource.raw_inputs)
    policy = json.loads(properties["policy"])
    policy["Statement"].append(statement)
    properties["policy"] = json.dumps(policy)
    return properties


def test_the_allow_list_arrives_through_configure(configurable):
    access = one(graph("aws").resources, "aws:iam/rolePolicy:RolePolicy", "mlflow-server-access-0")
    describe = _with_statement(access, {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"})
    cli_configure(configurable, {"iam-least-privilege": {"allowedActionsOnAnyResource": ["ec2:DescribeInstances"]}})
    assert analyze(configurable, access, describe) == []
    cli_configure(configurable, {})
    [diagnostic] = analyze(configurable, access, describe)
    assert diagnostic.policyName == "iam-least-privilege" and diagnostic.enforcementLevel == analyzer_pb2.MANDATORY


def test_identity_center_allowances_arrive_through_configure(configurable):
    """The third red team's account assignment of an existing permission set: refused over gRPC, passed once the
    configuration lists that permission set (the CLI's schema checks its shape), refused again without it."""
    case = next(case for case in CASES if case.id == "identity-center-assignment-of-an-existing-permission-set")
    assignment = added(graph("aws").resources, case)
    cli_configure(configurable, {})
    [diagnostic] = analyze(configurable, assignment)
    assert diagnostic.policyName == "iam-least-privilege" and diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    cli_configure(configurable, {"iam-least-privilege": {"allowedPermissionSets": [PERMISSION_SET]}})
    assert analyze(configurable, assignment) == []
    with pytest.raises(jsonschema.ValidationError):
        cli_configure(configurable, {"iam-least-privilege": {"allowedPermissionSets": ["*"]}})
    cli_configure(configurable, {})
    assert [d.policyName for d in analyze(configurable, assignment)] == ["iam-least-privilege"]


def test_entra_allowances_arrive_through_configure(configurable):
    """The fourth red team's group membership (azuread): refused over gRPC, passed once the configuration lists the
    group (the CLI's schema takes group object ids only), refused again without it; Global Administrator stays
    refused when listed."""
    cases = {case.id: case for case in CASES}
    member = added(graph("azure").resources, cases["entra-group-member"])
    administrator = added(graph("azure").resources, cases["entra-global-administrator"])
    cli_configure(configurable, {})
    assert [d.policyName for d in analyze(configurable, member)] == ["iam-least-privilege"]
    cli_configure(configurable, {"iam-least-privilege": {
        "allowedEntraGroups": [member.raw_inputs["groupObjectId"]],
        "allowedDirectoryRoles": [administrator.raw_inputs["roleId"]]}})
    assert analyze(configurable, member) == []
    assert [d.policyName for d in analyze(configurable, administrator)] == ["iam-least-privilege"]
    with pytest.raises(jsonschema.ValidationError):
        cli_configure(configurable, {"iam-least-privilege": {"allowedEntraGroups": ["admins"]}})
    cli_configure(configurable, {})
    assert [d.policyName for d in analyze(configurable, member)] == ["iam-least-privilege"]


def test_an_exempt_stack_arrives_through_configure(configurable):
    resources = graph("aws").resources
    rds = one(resources, pack.RDS_INSTANCE, "mlflow-metadata")
    unprotected = [dataclasses.replace(r, protect=False) if r is rds else r for r in resources]
    for config in ({"stateful-resources-protected": {"exemptStacks": ["pr-*", "aws"]}},
                   {"stateful-resources-protected": {"requireProtection": False}}):
        cli_configure(configurable, config)
        assert analyze_stack(configurable, unprotected) == [], config
    cli_configure(configurable, {"stateful-resources-protected": {"exemptStacks": ["pr-*"]}})
    [diagnostic] = analyze_stack(configurable, unprotected)
    assert diagnostic.policyName == "stateful-resources-protected" and diagnostic.urn == rds.urn
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY


def test_a_refused_allow_list_fails_every_call(configurable):
    """The schema takes "iam:PassRole" (an exact name), the policy does not: Analyze errors, and the CLI
    stops the preview or update ("failed to run policy") instead of running with it."""
    cli_configure(configurable, {"iam-least-privilege": {"allowedActionsOnAnyResource": ["iam:PassRole"]}})
    rds = one(graph("aws").resources, pack.RDS_INSTANCE, "mlflow-metadata")
    with pytest.raises(grpc.RpcError):
        analyze(configurable, rds)
    with pytest.raises(jsonschema.ValidationError):  # a wildcard never reaches the pack: the CLI's schema check
        cli_configure(configurable, {"iam-least-privilege": {"allowedActionsOnAnyResource": ["ec2:*"]}})
    cli_configure(configurable, {})
    assert analyze(configurable, rds) == []


@pytest.mark.parametrize("action", ["ssm:SendCommand", "ec2-instance-connect:SendSSHPublicKey", "rds-db:connect",
                                    "lambda:UpdateFunctionCode", "ssm:StartSession"])
def test_an_allow_list_of_code_execution_fails_every_call(configurable, action: str):
    """The review's allow-list passed the CLI's schema (exact names) and then let a role run commands on every
    instance; the pack refuses it, so every Analyze errors and the CLI stops."""
    cli_configure(configurable, {"iam-least-privilege": {"allowedActionsOnAnyResource": [action]}})
    rds = one(graph("aws").resources, pack.RDS_INSTANCE, "mlflow-metadata")
    with pytest.raises(grpc.RpcError) as raised:
        analyze(configurable, rds)
    assert action in raised.value.details()
    cli_configure(configurable, {})
    assert analyze(configurable, rds) == []


@pytest.mark.parametrize("config_file", [{"stateful-resource-protected": "disabled"},
                                         {"stateful-resource-protected": {"enforcementLevel": "advisory",
                                                                          "requireProtection": False}}])
def test_a_configuration_for_a_policy_the_pack_lacks_fails_the_run(configurable, config_file: dict):
    """A typo in a policy's name would keep that policy unconfigured without a word (pulumi_policy stores what
    Configure names and reads only its own policies' entries): the pack refuses the call, the CLI stops."""
    with pytest.raises(grpc.RpcError) as raised:
        cli_configure(configurable, config_file)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "stateful-resource-protected" in raised.value.details()
    with pytest.raises(CliRefused):  # without a level of its own the CLI refuses it before the pack hears of it
        cli_configure(configurable, {"stateful-resource-protected": {"requireProtection": False}})
    cli_configure(configurable, {"all": "mandatory"})  # the CLI's name for every policy
    cli_configure(configurable, {})


@pytest.mark.parametrize("config_file", [{"iam-least-privilege": "advisory"}, {"iam-least-privilege": "disabled"},
                                         {"all": "disabled"}, {"all": {"enforcementLevel": "advisory"}},
                                         {"database-port-closed-to-internet": "remediate"},
                                         {"stateful-resources-protected": "advisory"}])
def test_a_configuration_that_lowers_a_policy_fails_the_run(configurable, config_file: dict):
    """pulumi_policy honours whatever level Configure sends: one line of a config file would switch a promise
    off. The pack refuses the call instead (the CLI stops the run), and its policies stay mandatory."""
    with pytest.raises(grpc.RpcError) as raised:
        cli_configure(configurable, config_file)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "mandatory" in raised.value.details()
    access = one(graph("aws").resources, "aws:iam/rolePolicy:RolePolicy", "mlflow-server-access-0")
    [diagnostic] = analyze(configurable, access, _with_statement(access, {"Effect": "Allow", "Action": "*",
                                                                          "Resource": "*"}))
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    cli_configure(configurable, {})


def test_the_teardown_exception_is_the_one_level_taken(configurable):
    """README, "The policy pack": a teardown from a workstation switches stateful-resources-protected off,
    with requireProtection: false or, the same, its level disabled; every other policy holds."""
    resources = graph("aws").resources
    rds = one(resources, pack.RDS_INSTANCE, "mlflow-metadata")
    unprotected = [dataclasses.replace(r, protect=False) if r is rds else r for r in resources]
    for config_file in ({"stateful-resources-protected": "disabled"},
                        {"stateful-resources-protected": {"requireProtection": False}}):
        cli_configure(configurable, config_file)
        assert analyze_stack(configurable, unprotected) == [], config_file
        [diagnostic] = analyze(configurable, rds, {**copy.deepcopy(rds.raw_inputs), "publiclyAccessible": True})
        assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    cli_configure(configurable, {})
    [diagnostic] = analyze_stack(configurable, unprotected)
    assert diagnostic.policyName == "stateful-resources-protected"


def test_a_tls_deny_for_another_bucket_is_a_stack_violation_over_grpc(analyzer):
    """The second red team's BucketPolicy whose TLS-only Deny names another bucket: with its bucket, in the
    stack AnalyzeStack gets, the bucket counts no TLS guard."""
    template = one(graph("aws").resources, *TEMPLATES["aws"])
    prefix = template.urn.rsplit("::", 2)[0]

    def recorded(type_: str, name: str, inputs: dict) -> Recorded:
        return dataclasses.replace(template, type=type_, name=name, urn=f"{prefix}::{type_}::{name}",
                                   raw_inputs=inputs, protect=True, dependencies=[])

    bucket = "mlflow-artifacts-x"
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    guards = [recorded(pack.S3_PUBLIC_ACCESS_BLOCK, "pab", {"bucket": bucket, **dict.fromkeys(
                  ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True)}),
              recorded("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                       "sse", {"bucket": bucket, "rules": [{"applyServerSideEncryptionByDefault": {
                           "sseAlgorithm": "AES256"}}]})]
    stack = [recorded("aws:s3/bucket:Bucket", "artifacts", {"bucket": bucket}), *guards]
    for covered, other in ((bucket, []), ("some-other-bucket", ["s3-buckets-guarded"])):
        policy = recorded(pack.S3_BUCKET_POLICY, "tls", {"bucket": bucket, "policy": json.dumps({
            "Version": "2012-10-17", "Statement": [{**deny, "Resource": [f"arn:aws:s3:::{covered}/*"]}]})})
        assert [d.policyName for d in analyze_stack(analyzer, [*stack, policy])] == other


def test_the_stack_policies_see_new_kinds_over_grpc(analyzer):
    """The review's AnalyzeStack: an unprotected server under a private-preview API version is reported; a
    volume mounted at /var/cache/nginx holds no data."""
    template = one(graph("azure").resources, *TEMPLATES["azure"])
    prefix = template.urn.rsplit("::", 2)[0]

    def recorded(type_: str, name: str, inputs: dict, protect: bool) -> Recorded:
        return dataclasses.replace(template, type=type_, name=name, urn=f"{prefix}::{type_}::{name}",
                                   raw_inputs=inputs, protect=protect, dependencies=[])

    server = recorded("azure-native:dbforpostgresql/v20210615privatepreview:Server", "metadata",
                      {"network": {"publicNetworkAccess": "Disabled"}}, False)
    [diagnostic] = analyze_stack(analyzer, [server])
    assert diagnostic.policyName == "stateful-resources-protected" and diagnostic.urn == server.urn
    cache = [recorded(pack.DOCKER_VOLUME, "nginx-cache", {"name": "nginx-cache"}, False),
             recorded(pack.DOCKER_CONTAINER, "nginx", {"image": "nginx", "volumes": [
                 {"volumeName": "nginx-cache", "containerPath": "/var/cache/nginx"}]}, True)]
    assert analyze_stack(analyzer, cache) == []


def readme_configs() -> list[dict]:
    """The `--policy-pack-config` examples of the README's "The policy pack"."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## The policy pack\n", 1)[1].split("\n## ", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.DOTALL)]


def test_the_readmes_config_examples_are_valid_and_keep_the_pack_mandatory(configurable):
    configs = readme_configs()
    assert configs, "the README shows no --policy-pack-config example"
    rds = one(graph("aws").resources, pack.RDS_INSTANCE, "mlflow-metadata")
    broken = {**copy.deepcopy(rds.raw_inputs), "publiclyAccessible": True}
    for config in configs:
        cli_configure(configurable, config)
        assert analyze_stack(configurable, graph("aws").resources) == []
        [diagnostic] = analyze(configurable, rds, broken)
        assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    cli_configure(configurable, {})
