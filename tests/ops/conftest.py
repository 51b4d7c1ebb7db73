import pytest

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
