"""The azure stack's artifact store. Azure Blob, with Azurite standing in for the
storage account: the server rendered with the wasbs:// destination and the connection string as its
one artifact secret (where the real stack uses a managed identity), driven through Nginx by the real
MLflow client. Its own stack, module-scoped: the session's stack stores artifacts in S3."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import requests

from components import render
from ops.archive import file_sha256
from rehearsal.launcher import RehearsalStack, Variant
from rehearsal.stand_ins import AZURITE_ACCOUNT, AZURITE_ACCOUNT_KEY
from tests.rehearsal.conftest import scenario_of, scenario_stack
from tests.rehearsal.test_02_auth import SEARCH
from tests.rehearsal.test_04_artifacts import (
    ARTIFACT_SIZE,
    MIB,
    RSS_GROWTH_LIMIT,
    RssSampler,
    big_file,  # noqa: F401  (a fixture, requested by name)
)

PREFIX = scenario_of(__file__).config["artifacts"]["prefix"]


@pytest.fixture(scope="module")
def azure_stack() -> Iterator[RehearsalStack]:
    """PostgreSQL, Azurite with the private container, schema upgrade, one server + Nginx."""
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module")
def azure_variant(azure_stack: RehearsalStack) -> Variant:
    return azure_stack.variants["azure"]


def _url(variant: Variant, path: str) -> str:
    return f"http://127.0.0.1:{variant.proxy.port}{path}"


def _container(stack: RehearsalStack):
    assert stack.azurite is not None
    return stack.azurite.client().get_container_client(stack.azurite.container)


def test_server_is_rendered_for_blob_storage_with_the_key_only_in_its_env(azure_stack, azure_variant):
    spec = azure_variant.server.spec
    command = list(spec.command)
    destination = command[command.index("--artifacts-destination") + 1]
    assert destination == f"wasbs://{azure_stack.azurite.container}@{AZURITE_ACCOUNT}.blob.core.windows.net/{PREFIX}"
    assert spec.secret_env_names == (render.BACKEND_URI_ENV, render.SECRETS_KEK_ENV,
                                     render.AZURE_CONNECTION_STRING_ENV)
    env = azure_variant.server.service.env
    assert env[render.AZURE_CONNECTION_STRING_ENV] == azure_stack.azurite.connection_string
    assert f"BlobEndpoint=http://127.0.0.1:{azure_stack.azurite.port}/{AZURITE_ACCOUNT};" in \
        env[render.AZURE_CONNECTION_STRING_ENV]
    assert not {"MLFLOW_S3_ENDPOINT_URL", *render.S3_CREDENTIAL_ENVS} & set(env)
    assert azure_stack.s3 is None
    # The key is in no process's command line (server, its workers, Azurite) and in no log.
    services = [azure_variant.server.service, azure_variant.proxy.service, azure_stack.azurite.service]
    for service in services:
        for pid in service.tree_pids():
            assert AZURITE_ACCOUNT_KEY.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    logs = [service.log_path for service in services] + [Path(azure_variant.proxy.settings.paths.error_log)]
    for log_path in logs:
        assert AZURITE_ACCOUNT_KEY not in log_path.read_text(errors="replace"), log_path


def test_params_metrics_and_tags_read_back(azure_variant, client_for):
    with client_for(azure_variant) as client:
        experiment_id = client.create_experiment(f"azure-tracking-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id, tags={"stage": "dev"}).info.run_id
        now = int(time.time() * 1000)
        client.log_param(run_id, "learning_rate", "0.01")
        client.set_tag(run_id, "owner", "rehearsal")
        client.log_metric(run_id, "loss", 0.5, timestamp=now, step=0)
        client.log_metric(run_id, "loss", 0.25, timestamp=now + 1, step=1)
        fetched = client.get_run(run_id)
        assert fetched.data.params == {"learning_rate": "0.01"}
        assert fetched.data.tags["owner"] == "rehearsal" and fetched.data.tags["stage"] == "dev"
        assert fetched.data.metrics == {"loss": 0.25}
        history = sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, "loss"))
        assert history == [(0, 0.5, now), (1, 0.25, now + 1)]
        assert client.get_experiment(experiment_id).artifact_location == f"mlflow-artifacts:/{experiment_id}"


def test_basic_auth_guards_everything_but_health(azure_variant):
    no_credentials = requests.get(_url(azure_variant, SEARCH), timeout=10)
    assert no_credentials.status_code == 401
    wrong = requests.get(_url(azure_variant, SEARCH), auth=(azure_variant.username, azure_variant.password + "x"),
                         timeout=10)
    assert wrong.status_code == 401
    right = requests.get(_url(azure_variant, SEARCH), auth=(azure_variant.username, azure_variant.password),
                         timeout=10)
    assert right.status_code == 200 and "experiments" in right.json()
    health = requests.get(_url(azure_variant, "/health"), timeout=10)
    assert health.status_code == 200 and health.text == "OK"


def test_256_mib_artifact_round_trip_lands_in_the_container_under_the_prefix(
        azure_stack, azure_variant, big_file, client_for, report_figure, tmp_path):  # noqa: F811
    source, expected_sha = big_file
    services = {"mlflow server": azure_variant.server.service, "nginx": azure_variant.proxy.service,
                "azurite": azure_stack.azurite.service}
    with client_for(azure_variant) as client:
        experiment_id = client.create_experiment(f"azure-artifacts-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id

        started = time.monotonic()
        with RssSampler(services) as upload:
            client.log_artifact(run_id, str(source), artifact_path="big")
        upload_seconds = time.monotonic() - started
        assert {f.path: f.file_size for f in client.list_artifacts(run_id, "big")} == {"big/weights.bin": ARTIFACT_SIZE}

        started = time.monotonic()
        with RssSampler(services) as download:
            local = Path(client.download_artifacts(run_id, "big/weights.bin", str(tmp_path)))
        download_seconds = time.monotonic() - started
        assert local.stat().st_size == ARTIFACT_SIZE and file_sha256(local) == expected_sha

    # The bytes are in Azurite's container, under the configured prefix, as the experiment's run.
    blob_name = f"{PREFIX}/{experiment_id}/{run_id}/artifacts/big/weights.bin"
    blobs = {blob.name: blob.size for blob in _container(azure_stack).list_blobs(name_starts_with=f"{PREFIX}/")}
    assert blobs[blob_name] == ARTIFACT_SIZE
    assert [name for name in _container(azure_stack).list_blob_names() if not name.startswith(f"{PREFIX}/")] == []
    started = time.monotonic()
    digest = hashlib.sha256()
    for chunk in _container(azure_stack).download_blob(blob_name).chunks():
        digest.update(chunk)
    assert digest.hexdigest() == expected_sha
    blob_read_seconds = time.monotonic() - started

    report_figure("azure 256 MiB upload", f"{upload_seconds:.1f}", "s")
    report_figure("azure 256 MiB download", f"{download_seconds:.1f}", "s")
    report_figure("azure 256 MiB blob read straight from Azurite", f"{blob_read_seconds:.1f}", "s")
    for name in services:
        report_figure(f"azure upload peak RSS growth of {name}", f"{upload.growth(name) / MIB:.1f}", "MiB")
        report_figure(f"azure download peak RSS growth of {name}", f"{download.growth(name) / MIB:.1f}", "MiB")
    for name in ("mlflow server", "nginx"):
        assert upload.growth(name) < RSS_GROWTH_LIMIT, f"{name} grew {upload.growth(name) / MIB:.0f} MiB on upload"


def test_artifact_listing_and_download_of_a_tree(azure_stack, azure_variant, client_for, tmp_path):
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "nested" / "b.json").write_text('{"b": 1}')
    with client_for(azure_variant) as client:
        experiment_id = client.create_experiment(f"azure-small-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_artifacts(run_id, str(source), artifact_path="files")
        assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id, "files")] == [
            ("files/a.txt", False), ("files/nested", True)]
        assert [f.path for f in client.list_artifacts(run_id, "files/nested")] == ["files/nested/b.json"]
        local = Path(client.download_artifacts(run_id, "files", str(tmp_path / "dst")))
        assert (local / "a.txt").read_text() == "alpha"
        assert (local / "nested" / "b.json").read_text() == '{"b": 1}'
    run_prefix = f"{PREFIX}/{experiment_id}/{run_id}/artifacts/files/"
    assert sorted(_container(azure_stack).list_blob_names(name_starts_with=run_prefix)) == [
        f"{run_prefix}a.txt", f"{run_prefix}nested/b.json"]


def test_container_is_private(azure_stack):
    container = _container(azure_stack)
    assert container.get_container_properties().public_access is None
    anonymous = requests.get(f"{azure_stack.azurite.endpoint}/{azure_stack.azurite.container}",
                             params={"restype": "container", "comp": "list"}, timeout=10)
    assert anonymous.status_code in {401, 403, 404} and "<Blob>" not in anonymous.text
