"""README promises that are checked, not trusted."""

import json
import re
from pathlib import Path
from typing import Any

import yaml

from components.config import reference_table_markdown
from components.package import reference_markdown
from tests.harness.package import CHECKED_IN, TYPE, construct_as_the_engine_asks
from tests.harness.program import run_program, run_under_mocks

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def generated_table(marker: str) -> str:
    return README.split(f"<!-- {marker}:start -->\n")[1].split(f"\n<!-- {marker}:end -->")[0]


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", README, flags=re.MULTILINE | re.DOTALL)


def test_config_reference_table_matches_the_model():
    assert generated_table("config-reference") == reference_table_markdown(), "regenerate: ./scripts/generate-package"


def test_package_reference_table_matches_the_schema():
    expected = reference_markdown(CHECKED_IN)
    assert generated_table("package-reference") == expected, "regenerate: ./scripts/generate-package"


def test_readme_gives_the_two_commands_and_ci_calls_the_test_command():
    assert "./scripts/up-local" in README and "pulumi up -s local" in README
    assert "./scripts/test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci


# --- the examples of using the component from other languages -----------------------------------

def schema_inputs(properties: dict[str, Any], values: dict[str, Any], where: str = "") -> list[str]:
    """Problems of `values` against the schema's input properties (names, nesting, enum values)."""
    problems = []
    for key, value in values.items():
        prop = properties.get(key)
        if prop is None:
            problems.append(f"{where}{key}: no such input")
            continue
        target = CHECKED_IN["types"].get(prop.get("$ref", "").removeprefix("#/types/"))
        if target and target["type"] == "object":
            problems += schema_inputs(target["properties"], value, f"{where}{key}.")
        elif target and isinstance(value, str) and value not in {m["value"] for m in target["enum"]}:
            problems.append(f"{where}{key}: {value!r} is not one of the enum's values")
    return problems


def typescript_arguments(source: str) -> dict[str, Any]:
    """The object literal passed to `new mlflow.MlflowTrackingServer(name, {...})`, as a dict: keys
    nest as written; literal strings and numbers kept, other expressions as "<expr>"."""
    body = source[source.index("new mlflow.MlflowTrackingServer("):]
    body = body[body.index("{"):]
    root: dict[str, Any] = {}
    stack = [root]
    tokens = re.finditer(r'(\w+)\s*:\s*(\{|"[^"]*"|[\d.]+|[\w.]+)|(\})', body)
    for token in tokens:
        key, value, close = token.groups()
        if close:
            stack.pop()
            if not stack:
                break
        elif value == "{":
            stack[-1][key] = {}
            stack.append(stack[-1][key])
        else:
            stack[-1][key] = json.loads(value) if value[0] == '"' or value[0].isdigit() else "<expr>"
    return root


def test_the_typescript_example_uses_the_schemas_inputs_and_outputs():
    [source] = [block for block in code_blocks("typescript") if "MlflowTrackingServer" in block]
    arguments = typescript_arguments(source)
    resource = CHECKED_IN["resources"][TYPE]
    assert arguments["aws"]["hostedZoneId"] == "<expr>" and arguments["platform"] == "aws"
    problems = schema_inputs(resource["inputProperties"], arguments)
    assert not problems, problems
    used_outputs = set(re.findall(r"server\.(\w+)", source))
    assert used_outputs and used_outputs <= set(resource["properties"])
    # The literal values pass the component's own checks (the zone id stands for an Output).
    arguments["aws"]["hostedZoneId"] = "Z0123456789ABCDEFGHIJ"
    run = run_under_mocks(lambda: construct_as_the_engine_asks(arguments), stack="prod")
    assert run.one("aws:ecs/service:Service", "mlflow-server").inputs["desiredCount"] == 2


def test_the_yaml_example_uses_the_schemas_inputs_and_outputs():
    [source] = [block for block in code_blocks("yaml") if "runtime: yaml" in block]
    program = yaml.safe_load(source)
    [resource_name] = program["resources"]
    declared = program["resources"][resource_name]
    assert declared["type"] == TYPE
    assert "mlflow" in program["packages"] and program["packages"]["mlflow"].endswith("/provider")
    resource = CHECKED_IN["resources"][TYPE]
    assert not schema_inputs(resource["inputProperties"], declared["properties"])
    for expression in program["outputs"].values():
        name, output = re.fullmatch(r"\$\{(\w+)\.(\w+)\}", expression).groups()
        assert name == resource_name and output in resource["properties"], expression
    run = run_under_mocks(lambda: construct_as_the_engine_asks(declared["properties"]), stack="dev")
    assert run.result["trackingUri"] == "https://mlflow.internal.example:8443"
    assert run.result["tlsCertificate"].startswith("-----BEGIN CERTIFICATE-----")


def test_the_python_example_runs(tmp_path):
    [source] = [block for block in code_blocks("python") if "MlflowTrackingServer(" in block]
    program = tmp_path / "__main__.py"
    program.write_text(source)
    run = run_program({}, stack="prod", program=program)
    assert not run.of_type("aws:ec2/vpc:Vpc"), "the example uses the account's default VPC"
    subnet_group = run.one("aws:rds/subnetGroup:SubnetGroup")
    assert subnet_group.inputs["subnetIds"] == ["subnet-0default1", "subnet-0default2"]
    assert run.one("aws:lb/listener:Listener", "mlflow-platform-https").inputs["protocol"] == "HTTPS"
    assert run.output("tracking_uri") == "https://mlflow.example.com"
