"""The Pulumi package this repository publishes: MlflowTrackingServer, its schema as Pulumi's own
analyzer infers it (checked in as provider/schema.json), and the README's reference of its inputs
and outputs, generated from that schema."""

import json
from typing import Any

from pulumi.provider.experimental.component import ComponentProvider

from components.mlflow_tracking_server import MlflowTrackingServer

PACKAGE_NAME = "mlflow"
PACKAGE_VERSION = "0.1.0"
SCHEMA_PATH = "provider/schema.json"


def component_provider() -> ComponentProvider:
    """The provider `provider/__main__.py` serves: what `pulumi package add` talks to."""
    return ComponentProvider([MlflowTrackingServer], PACKAGE_NAME, version=PACKAGE_VERSION)


def schema() -> dict[str, Any]:
    return json.loads(component_provider().schema)


def schema_text() -> str:
    """provider/schema.json's content."""
    return json.dumps(schema(), indent=2) + "\n"


def reference_markdown(package: dict[str, Any]) -> str:
    """Every input (nested types flattened to dotted keys) and output of MlflowTrackingServer."""
    resource = package["resources"][f"{PACKAGE_NAME}:index:MlflowTrackingServer"]
    lines = ["| input | type | description |", "|---|---|---|"]

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for key, prop in properties.items():
            nested = _nested_object(package, prop)
            if nested is not None:
                walk(nested["properties"], f"{prefix}{key}.")
                continue
            takes_output = "" if prop.get("plain") else ", or an Output"
            lines.append(f"| `{prefix}{key}` | {_type_of(package, prop)}{takes_output} | "
                         f"{_one_line(prop.get('description'))} |")

    walk(resource["inputProperties"], "")
    lines += ["", "| output | type | description |", "|---|---|---|"]
    required = set(resource.get("required", []))
    for key, prop in resource["properties"].items():
        always = "" if key in required else " (when set)"
        lines.append(f"| `{key}` | {_type_of(package, prop)}{always} | {_one_line(prop.get('description'))} |")
    return "\n".join(lines)


def _nested_object(package: dict[str, Any], prop: dict[str, Any]) -> Any:
    ref = prop.get("$ref", "")
    if ref.startswith("#/types/"):
        target = package["types"][ref[len("#/types/"):]]
        if target["type"] == "object":
            return target
    return None


def _type_of(package: dict[str, Any], prop: dict[str, Any]) -> str:
    ref = prop.get("$ref", "")
    if ref.startswith("#/types/"):
        target = package["types"][ref[len("#/types/"):]]
        return "one of " + ", ".join(f"`{member['value']}`" for member in target["enum"])
    if prop["type"] == "array":
        return f"list of {_type_of(package, prop['items'])}s"
    return prop["type"]


def _one_line(text: Any) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")
