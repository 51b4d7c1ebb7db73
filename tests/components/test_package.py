"""The Pulumi package (provider/): its schema, its host program, and its construct path, which is
what a TypeScript, Go, C#, Java or YAML program runs through after `pulumi package add`."""

import json
import subprocess
import sys
from typing import Any

import pulumi
import pytest
from google.protobuf import empty_pb2

from components.package import PACKAGE_VERSION, SCHEMA_PATH, schema, schema_text
from tests.harness.package import CHECKED_IN, TYPE, construct_as_the_engine_asks
from tests.harness.program import (REPO_ROOT, ProgramRun, Recorded, is_secret_wrapper, run_program, run_under_mocks,
                                stack_file_config)
from tests.harness.stacks import find_leaks


def test_the_checked_in_schema_is_what_pulumis_analyzer_infers_from_the_code():
    assert (REPO_ROOT / SCHEMA_PATH).read_text() == schema_text(), "regenerate with ./scripts/generate-package"


def test_every_property_of_the_schema_has_a_type():
    """No `pulumi.json#/Any` and no object without a shape: every language gets typed arguments."""
    package = schema()
    problems: list[str] = []

    def check(where: str, prop: dict[str, Any]) -> None:
        ref = prop.get("$ref")
        if ref is not None:
            if not ref.startswith("#/types/") or ref[len("#/types/"):] not in package["types"]:
                problems.append(f"{where}: reference {ref}")
            return
        kind = prop.get("type")
        if kind in ("string", "integer", "number", "boolean"):
            return
        if kind == "array" and "items" in prop:
            check(f"{where}[]", prop["items"])
        elif kind == "object" and "additionalProperties" in prop:
            check(f"{where}{{}}", prop["additionalProperties"])
        else:
            problems.append(f"{where}: untyped {kind}")

    resource = package["resources"][TYPE]
    for section in ("inputProperties", "properties"):
        for key, prop in resource[section].items():
            check(f"{section}.{key}", prop)
    for name, type_ in package["types"].items():
        if type_["type"] == "object":
            assert type_["properties"], f"{name} has no properties"
            for key, prop in type_["properties"].items():
                check(f"{name}.{key}", prop)
        else:
            assert type_["type"] == "string" and type_["enum"], name
    assert not problems, problems
    assert "pulumi.json#/Any" not in json.dumps(package)
    assert list(package["resources"]) == [TYPE] and resource["isComponent"] is True
    assert resource["requiredInputs"] == [], "every input has the stack config's default"
    # username and password are unset with single sign-on (auth.mode oidc)
    assert set(resource["required"]) == {"trackingUri", "bucket", "clientEnv", "databaseUri"}


def test_inputs_are_the_stack_config_keys():
    """Each key of the stack config is an input of the same name; only infrastructure ids take Outputs."""
    from components.config import KNOWN_LATER_KEYS, field_reference

    package = CHECKED_IN
    inputs: dict[str, dict] = {}

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for key, prop in properties.items():
            target = package["types"].get(prop.get("$ref", "").removeprefix("#/types/"), {})
            if target.get("type") == "object":
                walk(target["properties"], f"{prefix}{key}.")
            else:
                inputs[prefix + key] = prop

    walk(package["resources"][TYPE]["inputProperties"], "")
    config_keys = [key.removeprefix("mlflow:") for key, *_ in field_reference()]
    assert list(inputs) == config_keys
    takes_outputs = {key for key, prop in inputs.items() if not prop.get("plain")}
    assert takes_outputs == set(KNOWN_LATER_KEYS)


def test_the_host_program_serves_the_schema_over_the_plugin_protocol(tmp_path):
    """provider/__main__.py as the Pulumi CLI starts it (engine address argument, another working
    directory): it prints its port and answers GetSchema and GetPluginInfo over gRPC."""
    import grpc
    from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

    host = subprocess.Popen([sys.executable, str(REPO_ROOT / "provider" / "__main__.py"), "127.0.0.1:1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        port = host.stdout.readline().decode().strip()
        assert port.isdigit(), host.stderr.read().decode()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            served = json.loads(stub.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=30).schema)
            info = stub.GetPluginInfo(empty_pb2.Empty(), timeout=30)
    finally:
        host.terminate()
        host.wait(timeout=30)
    assert served == CHECKED_IN
    assert info.version == PACKAGE_VERSION


# --- the construct path ------------------------------------------------------------------------

def stack_inputs(stack: str) -> dict[str, Any]:
    """A stack file's `mlflow:` settings as a consumer passes them: the keys are the inputs' names."""
    return {key.removeprefix("mlflow:"): json.loads(value) if value[:1] in "[{" else value
            for key, value in stack_file_config(stack).items()}


def comparable(resource: Recorded) -> tuple:
    """Everything the engine keeps of a resource, but the aliases only the repository's program adds."""
    return (resource.type, resource.parent, resource.custom, resource.raw_inputs, resource.protect,
            resource.retain_on_delete, resource.ignore_changes, sorted(resource.dependencies),
            resource.additional_secret_outputs, resource.provider)


@pytest.mark.parametrize("stack", ["local", "aws", "azure"])
def test_construct_path_builds_the_programs_graph(stack):
    constructed: ProgramRun = run_under_mocks(lambda: construct_as_the_engine_asks(stack_inputs(stack)), stack=stack)
    program = run_program(stack_file_config(stack), stack=stack)
    built = {r.urn: r for r in constructed.resources}
    expected = {r.urn: r for r in program.resources}
    assert set(built) == set(expected)
    different = [urn for urn in built if comparable(built[urn]) != comparable(expected[urn])]
    assert not different, different
    assert not find_leaks(constructed), find_leaks(constructed)

    state = constructed.result
    assert set(state) == {json_name(key) for key in program.stack_outputs}
    for key, value in program.stack_outputs.items():
        sent = state[json_name(key)]
        assert is_secret_wrapper(sent) == is_secret_wrapper(value), key
        assert unwrap_wire(sent) == (value["value"] if is_secret_wrapper(value) else value), key
    assert {key for key, value in state.items() if is_secret_wrapper(value)} == {"password", "clientEnv", "databaseUri"}


def json_name(python_name: str) -> str:
    head, *rest = python_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def unwrap_wire(value: Any) -> Any:
    return value["value"] if is_secret_wrapper(value) else value


def test_construct_with_enum_values_and_outputs_for_the_existing_network():
    """A consumer's Outputs (a VPC made in the same program) reach the resources; enum members work."""
    def body():
        vpc = pulumi.Output.from_input("vpc-0a1b2c")
        subnets = [pulumi.Output.from_input("subnet-1"), pulumi.Output.from_input("subnet-2")]
        return construct_as_the_engine_asks({
            "platform": "aws", "proxy": {"passwordHash": "bcrypt"},
            "aws": {"region": "eu-west-1", "vpcId": vpc, "publicSubnetIds": subnets, "privateSubnetIds": subnets,
                    "allowPlainHttp": True},
        })

    run = run_under_mocks(body, stack="aws")
    assert not run.of_type("aws:ec2/vpc:Vpc")
    assert run.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"] == ["subnet-1", "subnet-2"]
    assert run.one("aws:ec2/securityGroup:SecurityGroup", "mlflow-platform-database-sg").inputs["vpcId"] == "vpc-0a1b2c"
    assert not run.of_type("random:index/randomBytes:RandomBytes"), "bcrypt needs no salt of ours"


def test_construct_refuses_bad_inputs_naming_each_key():
    with pytest.raises(Exception) as caught:
        run_under_mocks(lambda: construct_as_the_engine_asks(
            {"server": {"workers": 0, "staticPrefix": "mlflow"}, "aws": {"certificateArn": "my-cert"}}))
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid arguments of MlflowTrackingServer 'mlflow':"
    # Numbers cross the wire as floats (Pulumi's provider leaves them so); the model takes 2.0 as 2.
    assert "  server.workers: must be >= 1 (got 0.0)" in lines
    assert any(line.startswith("  server.staticPrefix: must be a path like /mlflow") for line in lines)
    assert any(line.startswith("  aws.certificateArn: must be an ACM certificate ARN") for line in lines)


def test_construct_refuses_a_value_outside_an_enum_before_the_component_runs():
    """Pulumi's provider checks enum inputs itself, naming the property."""
    with pytest.raises(Exception) as caught:
        run_under_mocks(lambda: construct_as_the_engine_asks({"proxy": {"tls": "letsencrypt"}}))
    assert "proxy.tls" in str(caught.value) and "letsencrypt" in str(caught.value)
