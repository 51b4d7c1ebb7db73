"""artifacts.transfer direct on the azure stack's artifact store (issue 26): the server as the azure stack runs
it, with a user-assigned managed identity (AZURE_CLIENT_ID) and no storage key, Container Apps' identity
endpoint standing in (IDENTITY_ENDPOINT, IDENTITY_HEADER: rehearsal/managed_identity.py), and Azurite
with OAuth over HTTPS under the account's public name (reached through rehearsal/connect_proxy.py).

MLflow 3.17.2's Blob repository implements multipart upload only: holding a token credential it asks the
account for a user-delegation key and signs a SAS for each upload's blocks, which the client puts straight
into the container. Downloads stay proxied (server-info says so). Azurite 3.35 issues user-delegation keys
but knows SAS versions up to 2025-11-05, and the pinned SDK signs with 2026-10-06: a shim teaches it that
version's layout (rehearsal/azurite/sas_version_shim.js). The proxied azure variant (connection string) is
test_08_azure_blob's.
"""

from __future__ import annotations

import datetime
import urllib.parse
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import requests

from components import render
from rehearsal.launcher import RehearsalStack, Variant
from rehearsal.stand_ins import AZURITE_ACCOUNT_KEY
from tests.rehearsal.conftest import scenario_of, scenario_stack
from tests.rehearsal.direct import (
    CLIENT_ENV,
    DIRECT_SIZE,
    FAR_BELOW,
    MIB,
    create_upload,
    measured,
    random_file,
    sha256,
)

PREFIX = scenario_of(__file__).config["artifacts"]["prefix"]
DELEGATOR_MISSING_FILE = "rehearsal-delegator-missing"
"""Object ids Azurite refuses a user-delegation key, listed in its --location directory (rehearsal/azurite/
sas_version_shim.js)."""


@pytest.fixture(scope="module")
def azure_stack() -> Iterator[RehearsalStack]:
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module")
def azure(azure_stack) -> Variant:
    return azure_stack.variants["azure"]


def _network(stack: RehearsalStack) -> dict:
    """requests' arguments for the account's public name (what the client lines' HTTPS_PROXY and
    REQUESTS_CA_BUNDLE give the MLflow client)."""
    assert stack.storage_proxy and stack.azurite
    return {"proxies": {"https": stack.storage_proxy.url}, "verify": str(stack.azurite.trust_bundle), "timeout": 30}


@pytest.fixture(scope="module")
def run_ids(azure) -> tuple[str, str]:
    auth = (azure.username, azure.password)
    api = f"{azure.tracking_uri}/api/2.0/mlflow"
    experiment = requests.post(f"{api}/experiments/create", json={"name": f"azure-direct-{uuid.uuid4().hex[:8]}"},
                               auth=auth, timeout=30).json()["experiment_id"]
    run = requests.post(f"{api}/runs/create", json={"experiment_id": experiment}, auth=auth,
                        timeout=30).json()["run"]["info"]["run_id"]
    return experiment, run


def test_the_server_has_its_identity_and_no_key(azure_stack, azure):
    identity = azure_stack.identity
    assert identity is not None and azure_stack.azurite.identity
    spec = azure.server.spec
    assert spec.env[render.AZURE_CLIENT_ID_ENV] == identity.client_id
    assert spec.secret_env_names == (render.BACKEND_URI_ENV, render.SECRETS_KEK_ENV)
    env = azure.server.service.env
    assert not {name for name in env if name.startswith("AZURE_STORAGE")}
    assert env["IDENTITY_ENDPOINT"] == identity.endpoint and env["IDENTITY_HEADER"] == identity.header_secret
    destination = spec.command[spec.command.index("--artifacts-destination") + 1]
    assert destination == f"wasbs://{azure_stack.azurite.container}@{azure_stack.azurite.public_host}/{PREFIX}"
    for pid in azure.server.service.tree_pids():
        for part in ("cmdline", "environ"):
            assert AZURITE_ACCOUNT_KEY.encode() not in Path(f"/proc/{pid}/{part}").read_bytes(), (pid, part)
    info = requests.get(f"{azure.tracking_uri}/api/3.0/mlflow/server-info", auth=(azure.username, azure.password),
                        timeout=30).json()
    assert info["multipart_uploads_enabled"] is True and info["multipart_downloads_enabled"] is False


def test_uploads_go_straight_to_the_container_and_downloads_through_the_server(
        azure_stack, azure, client_for, report_figure, tmp_path):
    source = tmp_path / "weights.bin"
    expected = random_file(source, DIRECT_SIZE)
    with client_for(azure, **CLIENT_ENV) as client:
        experiment_id = client.create_experiment(f"azure-direct-big-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id
        with measured(azure) as up:
            client.log_artifact(run_id, str(source), artifact_path="big")
        with measured(azure) as down:
            local = Path(client.download_artifacts(run_id, "big/weights.bin", str(tmp_path / "down")))
        assert sha256(local) == expected
    upload, download = up.transfer, down.transfer
    assert upload.routes() == {"POST mpu"}, upload.log
    assert upload.nginx_io_bytes < FAR_BELOW and upload.server_peak_temp_bytes < FAR_BELOW, upload
    assert upload.logged_body_bytes < FAR_BELOW
    assert download.routes() == {"GET artifacts"}, download.log  # proxied: Blob has no presigned download
    (sent,) = [line.body_bytes_sent for line in download.log if "/mlflow-artifacts/artifacts/" in line.uri]
    assert sent >= DIRECT_SIZE  # (with the chunked encoding's framing)
    container = azure_stack.azurite.client().get_container_client(azure_stack.azurite.container)
    name = f"{PREFIX}/{experiment_id}/{run_id}/artifacts/big/weights.bin"
    assert container.get_blob_client(name).get_blob_properties().size == DIRECT_SIZE
    size = f"{DIRECT_SIZE // MIB} MiB"
    report_figure(f"azure direct upload of {size}", f"{upload.seconds:.1f}", "s")
    report_figure("azure direct upload: server CPU", f"{upload.server_cpu_seconds:.2f}", "s")
    report_figure("azure direct upload: Nginx read+written", f"{upload.nginx_io_bytes / MIB:.2f}", "MiB")
    report_figure(f"azure proxied download of {size}", f"{download.seconds:.1f}", "s")
    report_figure("azure proxied download: server CPU", f"{download.server_cpu_seconds:.2f}", "s")
    report_figure("azure proxied download: server peak temporary disk",
                  f"{download.server_peak_temp_bytes / MIB:.1f}", "MiB")


def test_the_upload_credential_is_a_user_delegation_sas_for_one_blob(azure_stack, azure, run_ids):
    identity = azure_stack.identity
    created = create_upload(azure, *run_ids, auth=(azure.username, azure.password))
    assert created.status_code == 200, created.text
    url = created.json()["credentials"][0]["url"]
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert parts.scheme == "https" and parts.netloc == azure_stack.azurite.public_host
    assert parts.path == f"/{azure_stack.azurite.container}/{PREFIX}/{run_ids[0]}/{run_ids[1]}/artifacts/big/x.bin"
    # Signed with a user-delegation key of the server's identity (skoid, sktid), not the account key.
    assert query["skoid"] == identity.principal_id and query["sktid"] == identity.tenant_id
    # Write only (mlflow_guard.artifacts: MLflow 3.17.2 signs read and write, which let a part URL read the blob),
    # and for this part's Put Block alone (signed request query parameters).
    assert query["sr"] == "b" and query["sp"] == "w" and query["srq"] == "comp,blockid"
    lifetime = (datetime.datetime.fromisoformat(query["se"].replace("Z", "+00:00"))
                - datetime.datetime.fromisoformat(query["st"].replace("Z", "+00:00")))
    assert lifetime <= datetime.timedelta(hours=1, minutes=5)

    network = _network(azure_stack)
    assert requests.put(url, data=b"x" * 1024, **network).status_code == 201
    tampered = [
        {**query, "sp": "rwd"},                                    # more rights than signed
        {**query, "se": "2099-01-01T00:00:00Z"},                    # a longer life than signed
        {**query, "skoid": str(uuid.uuid4())},                     # another identity's key
    ]
    for changed in tampered:
        forged = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(changed)))
        assert requests.put(forged, data=b"x", **network).status_code == 403, changed
    other_blob = urllib.parse.urlunsplit(parts._replace(path=parts.path.replace("x.bin", "y.bin")))
    assert requests.put(other_blob, data=b"x", **network).status_code == 403
    assert requests.put(urllib.parse.urlunsplit(parts._replace(query="comp=block&blockid=eA%3D%3D")),
                        data=b"x", **network).status_code in {401, 403}


def test_a_part_url_puts_its_own_block_and_nothing_else(azure_stack, azure, run_ids):
    """A write SAS for the blob let every part URL Put Blob over the committed artifact (or commit a block list) for
    its hour; each part's SAS now names its request's `comp` and `blockid` (srq), which Azure enforces."""
    created = create_upload(azure, *run_ids, auth=(azure.username, azure.password), num_parts=2)
    assert created.status_code == 200, created.text
    first, second = (urllib.parse.urlsplit(c["url"]) for c in created.json()["credentials"])
    query = urllib.parse.parse_qsl(first.query)
    network = _network(azure_stack)

    def with_query(changed: list[tuple[str, str]]) -> str:
        return urllib.parse.urlunsplit(first._replace(query=urllib.parse.urlencode(changed)))

    assert requests.put(urllib.parse.urlunsplit(first), data=b"1" * 100, **network).status_code == 201
    sas = [(k, v) for k, v in query if k not in {"comp", "blockid"}]
    other_block = dict(urllib.parse.parse_qsl(second.query))["blockid"]
    refused = {
        "Put Blob over the artifact": with_query(sas),
        "another block": with_query([("comp", "block"), ("blockid", other_block), *sas]),
        "Put Block List": with_query([("comp", "blocklist"), *sas]),
    }
    for name, url in refused.items():
        body = (b"<?xml version='1.0' encoding='utf-8'?><BlockList><Latest>"
                + dict(query)["blockid"].encode() + b"</Latest></BlockList>") if "List" in name else b"0" * 100
        # (Put Blob without x-ms-blob-type is a 400 before any authorization: Azure's order, and Azurite's)
        answer = requests.put(url, data=body, headers={"x-ms-blob-type": "BlockBlob"}, **network)
        assert answer.status_code == 403, (name, answer.status_code, answer.text[:300])
    container = azure_stack.azurite.client().get_container_client(azure_stack.azurite.container)
    blob = container.get_blob_client(f"{PREFIX}/{run_ids[0]}/{run_ids[1]}/artifacts/big/x.bin")
    assert not blob.exists()  # nothing committed: one uncommitted block


def test_a_refused_delegation_key_falls_back_to_proxied_uploads_with_a_warning(
        azure_stack, azure, client_for, tmp_path):
    """The server's identity without Storage Blob Delegator (or before the role propagated): the account refuses
    it a user-delegation key (403 AuthorizationPermissionMismatch, Azurite taught to: rehearsal/azurite), MLflow's
    client falls back to a proxied upload, the artifact arrives whole, and the server's log says why."""
    refusal = azure_stack.azurite.workdir / "data" / DELEGATOR_MISSING_FILE
    log = azure.server.service.log_path
    logged_before = log.stat().st_size
    source = tmp_path / "weights.bin"
    expected = random_file(source, DIRECT_SIZE)
    refusal.write_text(f"{azure_stack.identity.principal_id}\n")
    try:
        with client_for(azure, **CLIENT_ENV) as client:
            experiment_id = client.create_experiment(f"azure-no-delegator-{uuid.uuid4().hex[:8]}")
            run_id = client.create_run(experiment_id).info.run_id
            with measured(azure) as up:
                client.log_artifact(run_id, str(source), artifact_path="big")
            local = Path(client.download_artifacts(run_id, "big/weights.bin", str(tmp_path / "down")))
    finally:
        refusal.unlink()
    assert sha256(local) == expected
    upload = up.transfer
    assert upload.routes() == {"POST mpu", "PUT artifacts"}, upload.log  # asked, refused (501), then proxied
    assert [line.status for line in upload.log if "/mpu/create/" in line.uri] == [501], upload.log
    assert upload.server_peak_temp_bytes >= DIRECT_SIZE  # the bytes went through the server
    with open(log, "rb") as handle:
        handle.seek(logged_before)
        written = handle.read().decode(errors="replace")
    assert "direct uploads fall back to proxied" in written and "Storage Blob Delegator" in written, written[-3000:]
    container = azure_stack.azurite.client().get_container_client(azure_stack.azurite.container)
    blob = container.get_blob_client(f"{PREFIX}/{experiment_id}/{run_id}/artifacts/big/weights.bin")
    assert blob.get_blob_properties().size == DIRECT_SIZE
    # Given back, the role works again at once (nothing cached a refusal).
    again = create_upload(azure, experiment_id, run_id, auth=(azure.username, azure.password))
    assert again.status_code == 200, again.text


def test_nobody_else_gets_credentials(azure_stack, azure, run_ids):
    assert create_upload(azure, *run_ids).status_code == 401
    assert create_upload(azure, *run_ids, auth=(azure.username, azure.password + "x")).status_code == 401
    identity = azure_stack.identity
    query = {"api-version": "2019-08-01", "resource": "https://storage.azure.com", "client_id": identity.client_id}
    assert requests.get(identity.endpoint, params=query, headers={"X-IDENTITY-HEADER": "guess"},
                        timeout=30).status_code == 401
    other = {**query, "client_id": str(uuid.uuid4())}
    assert requests.get(identity.endpoint, params=other, headers={"X-IDENTITY-HEADER": identity.header_secret},
                        timeout=30).status_code == 400
    # The name leads to Azurite only: the proxy opens no tunnel anywhere else.
    with pytest.raises(requests.exceptions.ProxyError, match="403"):
        requests.get("https://example.com/", **_network(azure_stack))
