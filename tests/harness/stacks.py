"""Helpers the test modules share to read the graphs the harness records (tests.harness.program) and
to build stack configs. Each was one test module's own and imported by others from it; here, no test
module imports another."""

from __future__ import annotations

import json
import shlex
from urllib.parse import quote, unquote

from tests.harness.program import REPO_ROOT, ProgramRun, Recorded, plain_strings, stack_file_config


# --- local (from test_local_stack.py) -------------------------------------------------------------

CONTAINER = "docker:index/container:Container"


def docker_env_of(container: Recorded) -> dict[str, str]:
    """The container's env as `docker inspect` shows it."""
    return dict(line.split("=", 1) for line in container.inputs.get("envs", []))


def env_of(container: Recorded) -> dict[str, str]:
    """The environment the container's process works with: its docker env, each secret NAME read
    back from the uploaded file its NAME_FILE names (as the images' entrypoints and the secret-env
    wrapper do)."""
    env, files = docker_env_of(container), uploads_of(container)
    for key in [key for key, path in env.items() if key.endswith("_FILE") and path in files]:
        env[key.removesuffix("_FILE")] = files[env.pop(key)]
    return env


def container(run: ProgramRun, name: str) -> Recorded:
    return run.one(CONTAINER, name)


def uploads_of(container: Recorded) -> dict[str, str]:
    return {upload["file"]: upload["content"] for upload in container.inputs.get("uploads", [])}


def secret_forms(value: str) -> set[str]:
    """A secret and the shapes it takes on its way into configs: URL-encoded, shell-quoted."""
    return {value, quote(value, safe=""), shlex.quote(value)}


def find_leaks(run: ProgramRun) -> list[str]:
    leaks = []
    for resource in run.resources:
        for where, raw in (("inputs", resource.raw_inputs), ("outputs", resource.outputs)):
            for path, text in plain_strings(raw):
                for secret in run.generated_secrets:
                    if any(form in text or form in unquote(text) for form in secret_forms(secret)):
                        leaks.append(f"{resource.type} {resource.name} {where}.{path}")
    for name, value in run.stack_outputs.items():
        for path, text in plain_strings(value, name):
            if any(secret in text or secret in unquote(text) for secret in run.generated_secrets):
                leaks.append(f"stack output {path}")
    return leaks


# --- aws (from test_aws_stack.py, test_aws_production.py) -----------------------------------------

def containers(run: ProgramRun, task_name: str) -> dict[str, dict]:
    task = run.one("aws:ecs/taskDefinition:TaskDefinition", task_name)
    return {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}


def policy_statements(resource: Recorded, key: str = "policy") -> list[dict]:
    return json.loads(resource.inputs[key])["Statement"]


def aws_config(**sections) -> dict:
    """Pulumi.aws.yaml with some sections' keys replaced (section -> {key: value})."""
    config = stack_file_config("aws")
    for section, values in sections.items():
        key = f"mlflow:{section}"
        current = json.loads(config[key]) if key in config else {}
        config[key] = json.dumps({**current, **values})
    return config


# --- azure (from test_azure_stack.py) -------------------------------------------------------------

def azure_config(**sections) -> dict:
    config = stack_file_config("azure")
    for section, values in sections.items():
        key = f"mlflow:{section}"
        current = json.loads(config[key]) if key in config else {}
        config[key] = json.dumps({**current, **values})
    return config


def app(run: ProgramRun, name: str) -> dict:
    return run.one("azure-native:app:ContainerApp", name).inputs


def identity(run: ProgramRun, who: str) -> Recorded:
    return run.one("azure-native:managedidentity:UserAssignedIdentity", f"mlflow-platform-{who}-identity")


# --- auth modes (from test_auth_modes.py) ---------------------------------------------------------

CLIENT_SECRET = "oidc-client-secret-7f3a9c1e"
OIDC = {"discoveryUrl": "https://login.example.com/realms/ml/.well-known/openid-configuration",
        "clientId": "mlflow-tracking", "clientSecret": CLIENT_SECRET, "adminGroup": "ml-admins",
        "userGroups": ["ml-team", "data-science"]}


def stack_config(stack: str, auth: dict) -> dict:
    config = stack_file_config(stack) if stack != "local" else {}
    if stack == "aws":  # the stack file's explicit 200 is the proxy mode's budget; leave the default
        database = json.loads(config["mlflow:database"])
        database.pop("maxConnections", None)
        config["mlflow:database"] = json.dumps(database)
    config["mlflow:auth"] = json.dumps(auth)
    return config


# --- the toy platform (from test_toy_platform.py) -------------------------------------------------

TOY = REPO_ROOT / "tests" / "components" / "toy_platform"
