import pytest

from tests.unit.harness import ProgramRun, run_program, stack_file_config


@pytest.fixture(scope="session")
def local_config() -> dict:
    return stack_file_config("local")


@pytest.fixture(scope="session")
def local_run(local_config) -> ProgramRun:
    """The `local` program as `pulumi up -s local` runs it, from Pulumi.local.yaml."""
    return run_program(local_config)


OPS_BUCKET = "mlflow-artifacts"
"""The bucket of the `s3` fixture (moto), named as the stacks name it."""


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 with the ops tools' bucket, for ops.objects and ops.quarantine."""
    from moto import mock_aws

    from ops import objects

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = objects._client()
        client.create_bucket(Bucket=OPS_BUCKET)
        yield client
