"""Every resource's inputs, as the engine would pass them to its provider, checked against that
provider's published schema. The mocks accept anything; a misspelt nested key (a `timeout` block in
snake_case, say) would only fail at `pulumi up`. The installed provider SDKs are generated from the
providers' schemas, property names and types included: the check reads them from there."""

import collections.abc
import enum
import importlib
import inspect
import json
import typing
from typing import Any

import pulumi
import pytest
from pulumi import _types

from tests.harness.program import ProgramRun, run_program, stack_file_config
from tests.harness.stacks import aws_config, azure_config

PROVIDER_SDKS = {"aws": "pulumi_aws", "docker": "pulumi_docker", "random": "pulumi_random", "tls": "pulumi_tls",
                 "minio": "pulumi_minio", "azure-native": "pulumi_azure_native", "command": "pulumi_command"}


def args_class(type_token: str) -> type:
    """The SDK's `<Resource>Args` for a type token (`aws:ecs/service:Service` -> pulumi_aws.ecs.ServiceArgs)."""
    package, module_path, name = type_token.split(":")
    if package == "pulumi":  # pulumi:providers:<package>
        return importlib.import_module(PROVIDER_SDKS[name]).ProviderArgs
    sdk = importlib.import_module(PROVIDER_SDKS[package])
    module, part = sdk, module_path.split("/")[0]
    if package == "azure-native" or package == "command":  # azure-native:<module>:<Name>, command:local:Command
        part = module_path
    if part != "index":
        module = getattr(sdk, part, None) or getattr(sdk, f"{part}_")
    # Where a nested type has the name `<Name>Args` already (pulumi_aws.s3.BucketVersioningArgs is
    # Bucket's inline `versioning`), the generator names the resource's own `<Name>InitArgs`.
    resource_module = importlib.import_module(getattr(module, name).__module__)
    return getattr(resource_module, f"{name}InitArgs", None) or getattr(resource_module, f"{name}Args")


def _plain(typ: Any) -> Any:
    """The type behind Optional / Input / Output wrappers."""
    typ = _types.unwrap_type(typ)
    if typing.get_origin(typ) is typing.Union:
        members = [m for m in typing.get_args(typ) if m is not type(None) and typing.get_origin(m) is not
                   collections.abc.Awaitable and typing.get_origin(m) is not pulumi.Output]
        if len(members) == 1:
            return _plain(members[0])
    return typ


def problems_of(value: Any, typ: Any, where: str) -> list[str]:
    typ = _plain(typ)
    origin = typing.get_origin(typ)
    if value is None or typ is Any:
        return []
    if _types.is_input_type(typ):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        known = _types.input_type_types(typ)
        found = []
        for key, item in value.items():
            if key not in known:
                found.append(f"{where}.{key}: no such property (has {sorted(known)})")
            else:
                found += problems_of(item, known[key], f"{where}.{key}")
        return found
    if origin in (collections.abc.Sequence, list, typing.Sequence):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        return [p for index, item in enumerate(value) for p in problems_of(item, typing.get_args(typ)[0],
                                                                           f"{where}[{index}]")]
    if origin in (collections.abc.Mapping, dict, typing.Mapping):
        if not isinstance(value, dict):
            return [f"{where}: expected a map, got {value!r}"]
        return [p for key, item in value.items() for p in problems_of(item, typing.get_args(typ)[1], f"{where}.{key}")]
    if inspect.isclass(typ) and issubclass(typ, enum.Enum):
        allowed = {member.value for member in typ}
        return [] if value in allowed else [f"{where}: {value!r} not one of {sorted(allowed)}"]
    if typ is bool:
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean, got {value!r}"]
    if typ in (int, float):
        return [] if isinstance(value, (int, float)) and not isinstance(value, bool) else [
            f"{where}: expected a number, got {value!r}"]
    if typ is str:
        return [] if isinstance(value, str) else [f"{where}: expected a string, got {value!r}"]
    return []  # assets, archives: not used here


def required_inputs(args: type) -> set[str]:
    names = _types.input_type_py_to_pulumi_names(args)
    parameters = inspect.signature(args.__init__).parameters.values()
    return {names[p.name] for p in parameters if p.default is inspect.Parameter.empty and p.name in names}


def schema_problems(run: ProgramRun) -> list[str]:
    found = []
    for resource in run.resources:
        if not resource.custom:
            continue
        args = args_class(resource.type)
        where = f"{resource.type} {resource.name}"
        if resource.type.startswith("pulumi:providers:"):
            # A provider's inputs reach it as strings (JSON for objects): only the names are checked.
            known = _types.input_type_types(args)
            found += [f"{where}.{key}: no such property" for key in resource.inputs if key not in known]
            continue
        found += problems_of(resource.inputs, args, where)
        missing = required_inputs(args) - set(resource.inputs)
        found += [f"{where}: required input {key} missing" for key in sorted(missing)]
    return found


VARIANTS = {
    "local": lambda: run_program(stack_file_config("local")),
    "local-tls": lambda: run_program({**stack_file_config("local"), "mlflow:proxy": {"tls": "self-signed"}}),
    "aws": lambda: run_program(aws_config(), stack="aws"),
    "aws-everything": lambda: run_program(aws_config(
        aws={"domain": "mlflow.example.com", "hostedZoneId": "Z0123456789", "allowPlainHttp": False,
             "alarmEmail": "ops@example.com", "execEnabled": True, "internal": True, "natGateways": "single",
             "wafAclArn": "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/m/1", "dbEngineVersion": "16.6",
             "dbInstanceClass": "db.t4g.medium"}, maintenance={"gcSchedule": "0 3 * * 1-5"}),
        stack="aws", parameters={"/mlflow-aws/mlflow/x": "3.16.0"}),
    "aws-existing-network": lambda: run_program(aws_config(aws={
        "vpcId": "vpc-1", "publicSubnetIds": ["subnet-a", "subnet-b"], "privateSubnetIds": ["subnet-c", "subnet-d"],
        "certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/01234567-89ab-cdef-0123-456789abcdef",
        "domain": "mlflow.example.com"}), stack="aws"),
    "azure": lambda: run_program(azure_config(), stack="azure"),
    "azure-everything": lambda: run_program(azure_config(
        azure={"domain": "mlflow.example.com", "premiumIngress": True, "internal": True, "resourceGroupName": "team",
               "certificateId": "/subscriptions/0/resourceGroups/team/providers/Microsoft.App/managedEnvironments/e/"
                                "certificates/mlflow",
               "dbSku": "Standard_D2ds_v5", "dbHighAvailability": "zone-redundant", "dbGeoRedundantBackup": True},
        proxy={"timeoutSeconds": 1800}, database={"maxConnections": 800}, maintenance={"gcSchedule": "0 3 * * *"}),
        stack="azure"),
    "azure-managed-certificate": lambda: run_program(azure_config(azure={"domain": "mlflow.example.com"}),
                                                     stack="azure"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_input_matches_the_providers_schema(variant):
    run = VARIANTS[variant]()
    assert len([r for r in run.resources if r.custom]) > 20
    found = schema_problems(run)
    assert not found, json.dumps(found, indent=1)


def test_the_check_finds_a_misspelt_nested_key():
    """Guard the guard: a nested key the schema lacks, a wrong type and a missing required input."""
    from pulumi_aws.ecs import ServiceArgs

    bad = {"name": "s", "serviceConnectConfiguration": {"enabled": True, "services": [
        {"portName": "http", "timeout": {"per_request_timeout_seconds": 0}}]}, "waitForSteadyState": "yes"}
    found = problems_of(bad, ServiceArgs, "service")
    assert any("timeout.per_request_timeout_seconds: no such property" in p for p in found), found
    assert any("waitForSteadyState: expected a boolean" in p for p in found), found
    from pulumi_aws.rds import SnapshotArgs

    assert required_inputs(SnapshotArgs) == {"dbInstanceIdentifier", "dbSnapshotIdentifier"}
