"""Issue 24's proof: a fourth platform from one folder (tests/components/toy_platform), registered by its
entry point with nothing changed under components/, goes through the registry, config validation and
its messages, the args generator and MlflowTrackingServer under the unit harness's mocks. It runs in
a child process: the registry reads the entry points when it is first imported."""

import json
import os
import subprocess
import sys

from tests.harness.program import REPO_ROOT
from tests.harness.stacks import TOY


def test_a_platform_from_one_folder_is_registered_validated_generated_and_deployed():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TOY), str(REPO_ROOT)])}
    result = subprocess.run([sys.executable, str(TOY / "check.py")], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["platforms"] == ["local", "aws", "azure", "toy"]
    assert seen["errors"] == ["mlflow:toy.regoin: unknown key (check the spelling; "
                              "see the config reference in README.md)",
                              "mlflow:toy.region: must be a lab region like lab-1 (got 'x')",
                              "mlflow: proxy.tls must be off on toy: its entry terminates TLS"]
    assert seen["max_connections"] == 300, "the toy's default for another section"
    assert sorted(seen["args"]) == sorted(["class Toy(TypedDict):", 'TOY = "toy"', "toy: NotRequired[Toy]"])
    assert [kind for kind in seen["types"] if kind.startswith("toy:")] == [
        "toy:index:Bucket", "toy:index:Database", "toy:index:Image", "toy:index:Platform", "toy:index:Service"]
    assert seen["roles"] == ["proxy", "server"] and seen["init_steps"] == ["mlflow-db-upgrade"]
    assert seen["owner_password_secret"], "the generated password reaches the toy's database as a secret"
    assert {"tracking_uri", "username", "password", "cluster"} <= set(seen["outputs"])


def test_without_the_folder_the_platform_is_unknown():
    code = "from components.platforms import PLATFORMS; print(list(PLATFORMS))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "['local', 'aws', 'azure']", result.stderr
