"""Run with this folder on PYTHONPATH (tests/components/test_toy_platform.py): what the registry, the config,
the args generator and MlflowTrackingServer under mocks make of the toy platform, as JSON."""

import json

from components.args_source import args_module_source
from components.config import ConfigError, parse_stack_config
from components.platforms import PLATFORMS
from tests.harness.program import is_secret_wrapper, run_program

errors = []
for raw in ({"platform": "toy", "toy": {"regoin": "lab-2"}}, {"platform": "toy", "toy": {"region": "x"}},
            {"platform": "toy", "proxy": {"tls": "self-signed"}}):
    try:
        parse_stack_config(raw, "Pulumi.toy.yaml")
        errors.append(None)
    except ConfigError as error:
        errors.append(str(error).splitlines()[-1].strip())
config = parse_stack_config({"platform": "toy", "toy": {"region": "lab-2"}}, "Pulumi.toy.yaml")
run = run_program({"mlflow:platform": "toy", "mlflow:toy": json.dumps({"region": "lab-2"})}, stack="toy")
services = {item.name: item.raw_inputs for item in run.of_type("toy:index:Service")}
database = run.one("toy:index:Database").raw_inputs
print(json.dumps({
    "platforms": list(PLATFORMS), "errors": errors, "max_connections": config.database.max_connections,
    "args": [line.strip() for line in args_module_source().splitlines() if line.startswith("class Toy(")
             or line.strip() in ('TOY = "toy"', "toy: NotRequired[Toy]")],
    "types": sorted({item.type for item in run.resources}),
    "roles": sorted(inputs["role"] for inputs in services.values()),
    "init_steps": sorted(step for inputs in services.values() for step in inputs["initSteps"]),
    "owner_password_secret": is_secret_wrapper(database["ownerPassword"]),
    "outputs": sorted(run.stack_outputs),
}))
