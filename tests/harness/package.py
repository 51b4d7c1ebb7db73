"""The Pulumi package's construct path as the engine drives it, and the checked-in schema (from
test_package.py; test_readme.py constructs the README's examples with them)."""

import json
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.provider.server import ProviderServicer
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _sync_await

from components.package import SCHEMA_PATH, component_provider
from tests.harness.program import REPO_ROOT

TYPE = "mlflow:index:MlflowTrackingServer"
CHECKED_IN = json.loads((REPO_ROOT / SCHEMA_PATH).read_text())


def construct_as_the_engine_asks(inputs: dict[str, Any], name: str = "mlflow") -> Any:
    """What the provider process does for a Construct request: decode the inputs the engine sent
    (ProviderServicer._construct_inputs), construct (ComponentProvider.construct: camelCase to
    Python names, enum values to members), and encode the state it answers with."""
    servicer = ProviderServicer(component_provider(), [], engine_address="")
    sent = _sync_await(rpc.serialize_properties(inputs, {}))
    received = _sync_await(ProviderServicer._construct_inputs(sent, {}))
    result = servicer.provider.construct(name, TYPE, received, pulumi.ResourceOptions())
    response = _sync_await(servicer._construct_response(result))
    return json_format.MessageToDict(response.state)
