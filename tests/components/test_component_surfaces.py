"""Every component registers exactly the outputs its class declares (a declared output that is never
registered, or a registered one nobody declared, misleads whoever reads the state or the schema)."""

import collections.abc
import inspect
import typing

import pulumi
import pytest

from components import ArtifactStore, MetadataStore, MlflowTrackingServer, ReverseProxy, TrackingServer
from components.platforms.aws import AwsPlatform
from components.platforms.azure import AzurePlatform
from components.platforms.local import LocalDockerPlatform
from tests.harness.program import ProgramRun, run_program, stack_file_config

CLASSES = {cls.__name__: cls for cls in (MlflowTrackingServer, MetadataStore, ArtifactStore, TrackingServer,
                                         ReverseProxy, LocalDockerPlatform, AwsPlatform, AzurePlatform)}


def annotations(cls: type) -> dict[str, typing.Any]:
    """The class's own annotations and its bases', up to Pulumi's (as Pulumi's analyzer reads them)."""
    found: dict[str, typing.Any] = {}
    for base in reversed(cls.__mro__):
        if base not in (object, pulumi.Resource, pulumi.ComponentResource):
            found.update(inspect.get_annotations(base, eval_str=True))
    return found


def declared(cls: type) -> tuple[set[str], set[str]]:
    """(always registered, registered when set): the class's annotated attributes."""
    always, optional = set(), set()
    for name, hint in annotations(cls).items():
        if name.startswith("_") or typing.get_origin(hint) is typing.ClassVar:
            continue
        is_optional = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
        (optional if is_optional else always).add(name)
    return always, optional


@pytest.fixture(scope="module", params=["local", "local-tls", "aws", "aws-https", "azure"])
def run(request) -> ProgramRun:
    stack = request.param.split("-")[0]
    config = stack_file_config(stack)
    if request.param == "local-tls":
        config["mlflow:proxy"] = '{"tls": "self-signed"}'
    if request.param == "aws-https":
        config["mlflow:aws"] = '{"region": "eu-west-1", "domain": "m.example.com", "hostedZoneId": "Z1"}'
    return run_program(config, stack=stack)


def test_each_component_registers_what_it_declares(run):
    components = [r for r in run.resources if not r.custom]
    assert {r.type.split(":")[-1] for r in components} >= {"MlflowTrackingServer", "MetadataStore", "ArtifactStore",
                                                          "TrackingServer", "ReverseProxy"}
    for component in components:
        always, optional = declared(CLASSES[component.type.split(":")[-1]])
        registered = set(component.outputs)
        assert always <= registered, f"{component.type}: declared, never registered: {always - registered}"
        assert registered <= always | optional, \
            f"{component.type}: registered, not declared: {registered - always - optional}"


def test_the_optional_outputs_follow_the_configuration(run):
    facade = run.one("mlflow:index:MlflowTrackingServer")
    proxy = run.one("mlflow:index:ReverseProxy")
    assert ("tls_certificate" in facade.outputs) == ("certificate_pem" in proxy.outputs)
    platform_outputs = {"load_balancer_dns_name", "log_group", "cluster"}
    assert (platform_outputs <= set(facade.outputs)) == bool(run.of_type("mlflow:index:AwsPlatform"))
    assert ("storage_account" in facade.outputs) == bool(run.of_type("mlflow:index:AzurePlatform"))
    assert set(facade.outputs) == set(run.stack_outputs), "the program exports exactly the component's outputs"


def test_declared_types_are_what_pulumi_can_register():
    """Only Outputs, plain data and maps of them: no dataclass or resource hides among the outputs."""
    for cls in CLASSES.values():
        for name, hint in annotations(cls).items():
            inner = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
            origin = typing.get_origin(inner) or inner
            assert origin in (pulumi.Output, collections.abc.Mapping, dict, list, str, int, bool), (cls.__name__, name)
