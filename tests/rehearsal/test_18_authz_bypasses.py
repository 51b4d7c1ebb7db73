"""Issue 29, the first bypasses closed, for real (auth.mode mlflow, alice and bob as in test_9, a
server with and one without server.staticPrefix, behind the rendered Nginx):

- a model version whose source is a storage URI is refused, so bob cannot read alice's artifacts
  through his own model version (GET /model-versions/get-artifact reads with the server's
  credentials); what MLflow's clients register (runs:/, a logged model, a prompt) still works;
- the artifact download route with an empty artifact path (which downloads the whole bucket to the
  server's disk) is refused by Nginx in every spelling, while listing, upload and download of real
  artifacts still work.
- (mlflow_guard, in front of the auth app) an experiment id in any spelling but MLflow's is answered 400
  in query strings, JSON bodies, trace locations and GraphQL; the internal listener scrapes /metrics
  and the public one does not; a reader cannot link someone else's trace to their own run; only an
  admin lists the users.
(The static prefixes the auth apps exempt are refused by the config: tests/components/test_config_errors.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from typing import Iterator

import pytest
import requests

from components import render
from rehearsal.launcher import RehearsalStack, Variant
from tests.rehearsal.conftest import scenario_stack
from tests.rehearsal.sign_in import cheap_hashes

NOTES = "alice's notes\n"


@pytest.fixture(scope="module")
def auth_stack() -> Iterator[RehearsalStack]:
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module", params=["default", "prefix"])
def variant(request, auth_stack) -> Variant:
    return auth_stack.variants[request.param]


@pytest.fixture(scope="module")
def unprefixed(auth_stack) -> Variant:
    """For checks of the guard's hooks on MLflow's own routes (trace links, trace tags, trace starts)
    and of what clients register: the static prefix changes nothing there (Nginx and the guard's
    route matching under a prefix are tested with `variant`), and a [prefix] run costs CI ~15 s each."""
    return auth_stack.variants["default"]


@pytest.fixture(scope="module")
def users(auth_stack) -> dict[str, tuple[str, str]]:
    from mlflow.server.auth.client import AuthServiceClient

    variant = auth_stack.variants["default"]
    created = {name: (name, secrets.token_urlsafe(18)) for name in ("alice", "bob")}
    with _as(variant, variant.username, variant.password):
        admin = AuthServiceClient(variant.tracking_uri)
        for username, password in created.values():
            admin.create_user(username, password)
    # this module's ~500 requests are about what each user may do, not the password check (test_09's)
    cheap_hashes(auth_stack, [*created.values(), (variant.username, variant.password)])
    return created


@contextlib.contextmanager
def _as(variant: Variant, username: str, password: str):
    """The MLflow client (and the fluent API) acting as `username` against `variant`."""
    import mlflow
    from mlflow import MlflowClient

    # set_registry_uri also exports MLFLOW_REGISTRY_URI, which set_registry_uri(None) leaves behind:
    # restored here, or later modules' clients would send registry calls to this module's stopped stack.
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {key: os.environ.get(key) for key in keys}
    os.environ.update(MLFLOW_TRACKING_USERNAME=username, MLFLOW_TRACKING_PASSWORD=password,
                      MLFLOW_TRACKING_URI=variant.tracking_uri)
    mlflow.set_tracking_uri(variant.tracking_uri)
    mlflow.set_registry_uri(variant.tracking_uri)
    try:
        yield MlflowClient(tracking_uri=variant.tracking_uri, registry_uri=variant.tracking_uri)
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def alices(auth_stack, users, tmp_path_factory) -> dict[str, str]:
    variant = auth_stack.variants["default"]
    artifact = tmp_path_factory.mktemp("alice") / "notes.txt"
    artifact.write_text(NOTES)
    with _as(variant, *users["alice"]) as alice:
        experiment_id = alice.create_experiment(f"alice-{secrets.token_hex(4)}")
        run = alice.create_run(experiment_id)
        alice.log_artifact(run.info.run_id, str(artifact))
        alice.set_terminated(run.info.run_id)
    return {"experiment_id": experiment_id, "run_id": run.info.run_id}


def _url(variant: Variant, path: str, prefixed: bool = True) -> str:
    """Through Nginx: under the variant's static prefix, or (prefixed=False) at the root."""
    root = (variant.tracking_uri if prefixed
            else variant.tracking_uri.removesuffix(variant.config.server.static_prefix or ""))
    return f"{root}{path}"


# --- model version sources (item 1) --------------------------------------------------------------

def _storage_sources(variant: Variant, experiment_id: str) -> list[str]:
    destination = variant.server.settings.artifacts_destination.rstrip("/")
    return [f"{destination}/{experiment_id}", f"{destination}/{experiment_id}/",
            "wasbs://artifacts@account.blob.core.windows.net/" + experiment_id, f"file:///tmp/{experiment_id}",
            f"/tmp/{experiment_id}"]


def test_bob_cannot_register_a_storage_uri_nor_read_alices_artifact_through_it(variant, users, alices):
    model = f"bob-model-{secrets.token_hex(4)}"
    create = _url(variant, "/api/2.0/mlflow/model-versions/create")
    assert requests.post(_url(variant, "/api/2.0/mlflow/registered-models/create"), json={"name": model},
                         auth=users["bob"], timeout=30).status_code == 200
    for source in _storage_sources(variant, alices["experiment_id"]):
        response = requests.post(create, json={"name": model, "source": source}, auth=users["bob"], timeout=30)
        assert response.status_code == 400, (source, response.status_code, response.text[:300])
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE", response.text[:300]
    # and so there is no version through which the server would read alice's file for him
    path = f"{alices['run_id']}/artifacts/notes.txt"
    artifact = requests.get(_url(variant, "/api/2.0/mlflow/model-versions/get-artifact"), auth=users["bob"],
                            params={"name": model, "version": "1", "path": path}, timeout=30)
    assert artifact.status_code != 200 and NOTES not in artifact.text, (artifact.status_code, artifact.text[:300])


def test_what_mlflow_clients_register_still_works(unprefixed, users, tmp_path):
    """register_model("runs:/...") on a run holding an MLmodel (source mlflow-artifacts:/...), a logged
    model's registration (models:/m-...), a runs:/ registration of a logged model, and a prompt."""
    import mlflow
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    suffix = secrets.token_hex(4)
    with _as(unprefixed, *users["bob"]) as bob:
        experiment_id = bob.create_experiment(f"bob-{suffix}")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            logged = mlflow.pyfunc.log_model(name="echo", python_model=Echo(), pip_requirements=[],
                                             registered_model_name=f"bob-logged-{suffix}")
            # an MLmodel directory logged as plain artifacts (older clients, hand-made models)
            folder = tmp_path / "plain"
            folder.mkdir()
            (folder / "MLmodel").write_text("flavors: {}\n")
            mlflow.log_artifacts(str(folder), artifact_path="plain")
        by_log = bob.get_model_version(f"bob-logged-{suffix}", "1")
        assert by_log.source == f"models:/{logged.model_id}", by_log.source
        by_run = mlflow.register_model(f"runs:/{run.info.run_id}/echo", f"bob-runs-{suffix}")
        assert by_run.source.startswith("models:/m-"), by_run.source
        plain = mlflow.register_model(f"runs:/{run.info.run_id}/plain", f"bob-plain-{suffix}")
        assert plain.source.startswith("mlflow-artifacts:/"), plain.source
        copied = bob.copy_model_version(f"models:/bob-runs-{suffix}/1", f"bob-copy-{suffix}")
        assert copied.source.startswith("models:/"), copied.source
        # the registered model's artifacts are readable by their owner through the version
        loaded = mlflow.pyfunc.load_model(f"models:/bob-logged-{suffix}/1")
        assert list(loaded.predict([1, 2])) == [1, 2]
        prompt = mlflow.genai.register_prompt(name=f"bob-prompt-{suffix}", template="Hello {{name}}")
        assert prompt.version == 1
        assert mlflow.genai.load_prompt(f"prompts:/bob-prompt-{suffix}/1").format(name="x") == "Hello x"


# --- the empty artifact path (item 4) ------------------------------------------------------------

# Every path MLflow reads as empty (or as no experiment) must be refused: a URI scheme (`file:` becomes
# ""), `;` and `?` (urlparse drops empty parameters and queries), spaces and control characters
# (stripped), repeated percent-decoding (found by two reviews).
EMPTY_PATH_SPELLINGS = ["artifacts/", "artifacts//", "artifacts/./", "artifacts/%2E", "artifacts/%2e/",
                        "artifacts/.%2F", "artifacts/file:", "artifacts/file://", "artifacts/fil%65:",
                        "artifacts/file%3A", "artifacts/file%253A", "artifacts/%252E", "artifacts/%252e/",
                        "artifacts/FILE:", "artifacts/;", "artifacts/%3B", "artifacts/%3F", "artifacts/%20",
                        "artifacts/%09", "artifacts/%0C", "artifacts/x", "mpu/create/;"]
REFUSED = "an artifact path starts with its experiment id\n"


@pytest.mark.parametrize("prefixed", [True, False])
def test_nginx_refuses_the_download_route_with_an_empty_artifact_path(variant, users, alices, prefixed):
    if not prefixed and not variant.config.server.static_prefix:
        pytest.skip("no prefix: the prefixed case is the same URL")
    refused = []
    for api in ("api", "ajax-api"):
        for spelling in EMPTY_PATH_SPELLINGS:
            url = _url(variant, f"/{api}/2.0/mlflow-artifacts/{spelling}", prefixed)
            response = requests.get(url, params={"path": alices["experiment_id"]}, auth=users["alice"], timeout=30)
            if not (response.status_code == 400 and response.text == REFUSED):
                refused.append((url, response.status_code, response.text[:120]))
    assert not refused, refused


def test_listing_upload_and_download_still_work(variant, users, alices, tmp_path):
    ids = alices
    listing = requests.get(_url(variant, "/api/2.0/mlflow-artifacts/artifacts"), auth=users["alice"], timeout=30,
                           params={"path": f"{ids['experiment_id']}/{ids['run_id']}/artifacts"})
    assert listing.status_code == 200, listing.text[:300]
    assert "notes.txt" in [entry["path"] for entry in listing.json()["files"]]
    body = secrets.token_bytes(1 << 20)
    target = f"/api/2.0/mlflow-artifacts/artifacts/{ids['experiment_id']}/{ids['run_id']}/artifacts/{variant.name}.bin"
    assert requests.put(_url(variant, target), data=body, auth=users["alice"], timeout=60).status_code == 200
    assert requests.get(_url(variant, target), auth=users["alice"], timeout=60).content == body
    odd = target.replace(".bin", ";v=1 .bin")  # `;` and a space inside a real path pass the allow-list
    assert requests.put(_url(variant, odd), data=body, auth=users["alice"], timeout=60).status_code == 200
    assert requests.get(_url(variant, odd), auth=users["alice"], timeout=60).content == body
    with _as(variant, *users["alice"]) as alice:
        names = sorted(entry.path for entry in alice.list_artifacts(ids["run_id"]))
        assert "notes.txt" in names and f"{variant.name}.bin" in names
        assert open(alice.download_artifacts(ids["run_id"], "notes.txt", str(tmp_path))).read() == NOTES


# --- experiment locations (review 6) ---------------------------------------------------------------

def test_nobody_chooses_where_an_experiments_artifacts_live(variant, users, alices):
    """Reproduced (review 6): bob created an experiment whose location was alice's run folder
    (`s3://<bucket>/<her experiment>/<her run>/artifacts`), then upload-artifact to his own run wrote a
    file inside her run with the server's credentials; a `file:` location wrote on the server's disk.
    Every location is refused on experiments/create, for admins too; without one it works as before."""
    destination = variant.server.settings.artifacts_destination.rstrip("/")
    run_folder = f"{destination}/{alices['experiment_id']}/{alices['run_id']}/artifacts"
    locations = [run_folder, f"mlflow-artifacts:/{alices['experiment_id']}", "file:///tmp/bob",
                 f"mlflow-artifacts:/{alices['experiment_id']}/../{alices['experiment_id']}"]
    for api in ("api", "ajax-api"):
        url = _url(variant, f"/{api}/2.0/mlflow/experiments/create")
        for who in (users["bob"], (variant.username, variant.password)):
            for location in locations:
                response = requests.post(url, auth=who, timeout=30, json={
                    "name": f"located-{secrets.token_hex(4)}", "artifact_location": location})
                assert response.status_code == 400 and "artifact_location" in response.text, (
                    api, who[0], location, response.status_code, response.text[:300])
    plain = requests.post(_url(variant, "/api/2.0/mlflow/experiments/create"), auth=users["bob"], timeout=30,
                          json={"name": f"bob-plain-{secrets.token_hex(4)}"})
    assert plain.status_code == 200, plain.text[:300]
    with _as(variant, *users["bob"]) as bob:
        experiment = bob.get_experiment(plain.json()["experiment_id"])
    assert experiment.artifact_location.endswith(f"/{experiment.experiment_id}"), experiment.artifact_location


# --- experiment ids in one spelling (item 3) -----------------------------------------------------

ID_SPELLINGS = ["01", "001", " 1", "+1", "1.0", "1_0"]


def _spell(experiment_id: str, spelling: str) -> str:
    """`spelling` (written for experiment 1) applied to the experiment's real id."""
    return spelling.replace("1", experiment_id, 1) if spelling != "1_0" else f"{experiment_id}_0"


def test_an_experiment_id_in_another_spelling_is_refused_where_mlflow_reads_ids(variant, users, alices):
    """The auth app compares ids as text and the database as numbers: the guard in front of the auth
    app answers 400 to every other spelling, so both read the same id; MLflow's own spelling works."""
    experiment_id, alice = alices["experiment_id"], users["alice"]
    graphql = "{ mlflowGetExperiment(input: {experimentId: %s}) { experiment { name } } }"
    requests_by_spelling = {
        "get": lambda eid: requests.get(_url(variant, "/api/2.0/mlflow/experiments/get"),
                                        params={"experiment_id": eid}, auth=alice, timeout=30),
        "search": lambda eid: requests.post(_url(variant, "/ajax-api/2.0/mlflow/runs/search"),
                                            json={"experiment_ids": [eid]}, auth=alice, timeout=30),
        "traces": lambda eid: requests.post(_url(variant, "/api/3.0/mlflow/traces/search"),
                                            json={"locations": [{"mlflow_experiment": {"experiment_id": eid}}]},
                                            auth=alice, timeout=30),
        "graphql": lambda eid: requests.post(_url(variant, "/graphql"), json={"query": graphql % json.dumps(eid)},
                                             auth=alice, timeout=30),
    }
    wrong = []
    for name, send in requests_by_spelling.items():
        canonical = send(experiment_id)
        if canonical.status_code != 200 or "errors\": [" in canonical.text:
            wrong.append((name, experiment_id, canonical.status_code, canonical.text[:200]))
        for spelling in ID_SPELLINGS:
            response = send(_spell(experiment_id, spelling))
            if response.status_code != 400 or "not written as MLflow writes it" not in response.text:
                wrong.append((name, spelling, response.status_code, response.text[:200]))
    assert not wrong, wrong


# --- metrics in auth.mode mlflow (item 5) ---------------------------------------------------------

def test_the_internal_listener_scrapes_mlflow_and_nobody_else_does(variant, users):
    requests.get(_url(variant, "/api/2.0/mlflow/experiments/search"), params={"max_results": 1}, auth=users["bob"],
                 timeout=30)  # one request counted, whatever ran before
    scraped = requests.get(f"{variant.proxy.metrics_url}/metrics", timeout=30)
    assert scraped.status_code == 200 and "mlflow_http_request_total" in scraped.text, scraped.text[:300]
    mark = {render.METRICS_SCRAPE_HEADER: render.METRICS_SCRAPE_HEADER_VALUE}
    for path in ("/metrics", f"{variant.config.server.static_prefix or ''}/metrics"):
        public = requests.get(f"http://127.0.0.1:{variant.proxy.port}{path}", headers=mark, auth=users["bob"],
                              timeout=30)
        assert public.status_code == 404 and "mlflow_http_request" not in public.text, (path, public.status_code)
    # straight to MLflow (Host as the proxy sends it), unmarked: the auth app asks who is asking
    direct = requests.get(f"{variant.server.url}/metrics", headers={"Host": variant.proxy.settings.metrics_host},
                          timeout=30)
    assert direct.status_code == 401 and "mlflow_http_request" not in direct.text, direct.status_code


# --- the narrow guards of item 6 -----------------------------------------------------------------

def _alices_trace(variant: Variant, users, experiment_id: str) -> str:
    import mlflow

    with _as(variant, *users["alice"]):
        mlflow.set_experiment(experiment_id=experiment_id)
        with mlflow.start_span(name="alice-span") as span:
            span.set_inputs({"secret": "alice"})
        mlflow.flush_trace_async_logging()
        return span.trace_id


def test_a_reader_cannot_link_someone_elses_trace_to_their_own_run(unprefixed, users, alices):
    """MLflow asks READ on the trace; the project asks that the trace live in the run's experiment
    (EDIT on the run is then EDIT on the trace)."""
    from mlflow.server.auth.client import AuthServiceClient

    trace_id = _alices_trace(unprefixed, users, alices["experiment_id"])
    with _as(unprefixed, unprefixed.username, unprefixed.password):
        AuthServiceClient(unprefixed.tracking_uri).grant_user_permission("bob", "experiment", alices["experiment_id"],
                                                                         "READ")
    link = _url(unprefixed, "/api/2.0/mlflow/traces/link-to-run")
    with _as(unprefixed, *users["bob"]) as bob:
        own = bob.create_run(bob.create_experiment(f"bob-link-{secrets.token_hex(4)}"))
        assert bob.get_trace(trace_id).info.trace_id == trace_id  # bob reads it: READ was granted
    response = requests.post(link, json={"run_id": own.info.run_id, "trace_ids": [trace_id]}, auth=users["bob"],
                             timeout=30)
    assert response.status_code == 403 and "not in the run's experiment" in response.text, response.text[:300]
    with _as(unprefixed, *users["alice"]) as alice:  # within one experiment, linking still works
        run = alice.create_run(alices["experiment_id"])
    ok = requests.post(link, json={"run_id": run.info.run_id, "trace_ids": [trace_id]}, auth=users["alice"], timeout=30)
    assert ok.status_code == 200, ok.text[:300]


def test_only_an_admin_lists_the_users(variant, users):
    url = _url(variant, "/api/2.0/mlflow/users/list")
    assert requests.get(url, auth=users["bob"], timeout=30).status_code == 403
    listed = requests.get(url, auth=(variant.username, variant.password), timeout=30)
    assert listed.status_code == 200 and "bob" in listed.text, listed.text[:300]


def test_only_an_admin_reads_roles_and_each_user_reads_their_own_grants(variant, users, alices):
    """MLflow 3.17.2 lets everyone holding a role in workspace `default` (every user: their grants
    are a role of their own there) read every role, with every other user's grants."""
    admin = (variant.username, variant.password)
    with _as(variant, *users["bob"]) as bob:  # his own experiment gives bob a role in `default`
        bob.create_experiment(f"bob-roles-{variant.name}-{secrets.token_hex(4)}")
    roles = requests.get(_url(variant, "/api/3.0/mlflow/roles/list"), params={"workspace": "default"},
                         auth=admin, timeout=30)
    assert roles.status_code == 200 and roles.json().get("roles"), roles.text[:300]
    role_id = roles.json()["roles"][0]["id"]
    for path, params in (("roles/list", {"workspace": "default"}), ("roles/get", {"role_id": role_id}),
                         ("roles/permissions/list", {"role_id": role_id})):
        response = requests.get(_url(variant, f"/api/3.0/mlflow/{path}"), params=params, auth=users["bob"], timeout=30)
        assert response.status_code == 403 and "users/current/permissions" in response.text, (path, response.text[:300])
        assert requests.get(_url(variant, f"/api/3.0/mlflow/{path}"), params=params, auth=admin,
                            timeout=30).status_code == 200, path
    own = requests.get(_url(variant, "/api/3.0/mlflow/users/current/permissions"), auth=users["bob"], timeout=30)
    assert own.status_code == 200, own.text[:300]


# --- one request, one reading (review of issue 29: the auth app and the handler read differently) --

def _raw(variant: Variant, method: str, path: str, auth, headers: list[tuple[str, str]],
         body: bytes) -> tuple[int, str]:
    """A request with exactly these headers (repeats kept, which `requests` cannot send), through Nginx."""
    import base64
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(_url(variant, path))
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.putrequest(method, url.path + (f"?{url.query}" if url.query else ""))
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        for name, value in [("Authorization", f"Basic {token}"), ("Content-Length", str(len(body))), *headers]:
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def bobs(auth_stack, users) -> dict[str, str]:
    variant = auth_stack.variants["default"]
    with _as(variant, *users["bob"]) as bob:
        experiment_id = bob.create_experiment(f"bob-{secrets.token_hex(4)}")
        return {"experiment_id": experiment_id, "run_id": bob.create_run(experiment_id).info.run_id}


def test_a_delete_cannot_name_one_model_in_its_query_and_another_in_its_body(variant, users):
    """Reproduced: bob's DELETE ?name=<his model> with a text/plain body {"name": <alice's>}: the auth
    app read the query, the handler deleted alice's model (and her MANAGE grant with it). Now the auth
    app reads the body the handler acts on, and refuses; bob's own text/plain DELETE still works."""
    tag = secrets.token_hex(4)
    with _as(variant, *users["alice"]) as alice:
        alices_model = alice.create_registered_model(f"alice-kept-{tag}").name
    with _as(variant, *users["bob"]) as bob:
        bobs_model = bob.create_registered_model(f"bob-decoy-{tag}").name
    body = json.dumps({"name": alices_model}).encode()
    for headers in ([("Content-Type", "text/plain")], []):
        status, text = _raw(variant, "DELETE", f"/api/2.0/mlflow/registered-models/delete?name={bobs_model}",
                            users["bob"], headers, body)
        assert status == 403, (headers, status, text[:300])
    with _as(variant, *users["alice"]) as alice:
        assert alice.get_registered_model(alices_model).name == alices_model, "alice's model is still there"
    status, text = _raw(variant, "DELETE", "/api/2.0/mlflow/registered-models/delete", users["bob"],
                        [("Content-Type", "text/plain;charset=UTF-8")], json.dumps({"name": bobs_model}).encode())
    assert status == 200, ("as MLflow's UI sends some DELETEs", status, text[:300])


def test_a_body_cannot_authorize_one_run_and_write_to_another(variant, users, alices, bobs):
    """Reproduced: {"run_uuid": <bob's run>, "runId": <alice's run>}: the auth app checked run_uuid,
    the handler wrote to runId."""
    url = _url(variant, "/api/2.0/mlflow/runs/log-parameter")
    for field in ("runId", "run_id"):
        body = {"run_uuid": bobs["run_id"], field: alices["run_id"], "key": "bob-was-here", "value": "1"}
        response = requests.post(url, json=body, auth=users["bob"], timeout=30)
        assert response.status_code in (400, 403) and "bob-was-here" not in response.text, (field, response.text[:300])
    with _as(variant, *users["alice"]) as alice:
        assert "bob-was-here" not in alice.get_run(alices["run_id"]).data.params
    own = requests.post(url, json={"run_uuid": bobs["run_id"], "key": "mine", "value": "1"}, auth=users["bob"],
                        timeout=30)
    assert own.status_code == 200, own.text[:300]


def test_otlp_headers_sent_twice_are_refused(auth_stack, variant, users, alices, bobs):
    """Reproduced: X-Mlflow-Experiment-Id: <bob's> then <alice's>: the auth app checked the first, the
    guard compared alice's trace with the last, and bob's span replaced alice's."""
    trace_id = _alices_trace(variant, users, alices["experiment_id"])
    span = {"traceId": trace_id.removeprefix("tr-"), "spanId": "00000000000000aa", "name": "bob-span",
            "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    body = json.dumps({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [span]}]}]})
    for name, values in (("X-Mlflow-Experiment-Id", (bobs["experiment_id"], alices["experiment_id"])),
                         ("X-Mlflow-Run-Id", (alices["run_id"], bobs["run_id"]))):
        headers = [("Content-Type", "application/json"), ("X-Mlflow-Experiment-Id", bobs["experiment_id"])]
        headers = [header for header in headers if header[0] != name] + [(name, value) for value in values]
        status, text = _raw(variant, "POST", "/v1/traces", users["bob"], headers, body.encode())
        assert status == 400 and "more than once" in text, (name, status, text[:300])
    with _as(variant, *users["alice"]) as alice:
        names = [item.name for item in alice.get_trace(trace_id).data.spans]
    assert names == ["alice-span"], names


def test_an_upload_cannot_authorize_one_run_and_write_to_another(variant, users, alices, bobs):
    """Reproduced: upload-artifact?run_id=<bob's run>&run_uuid=<alice's run>&path=notes.txt: the auth app
    checked run_id, the handler overwrote alice's notes.txt (it writes to run_uuid)."""
    response = requests.post(_url(variant, "/ajax-api/2.0/mlflow/upload-artifact"), data=b"OVERWRITTEN-BY-BOB",
                             params={"run_id": bobs["run_id"], "run_uuid": alices["run_id"], "path": "notes.txt"},
                             auth=users["bob"], timeout=30)
    assert response.status_code == 400 and "names different runs" in response.text, response.text[:300]
    with _as(variant, *users["alice"]) as alice:
        assert alice.download_artifacts(alices["run_id"], "notes.txt") and NOTES == open(
            alice.download_artifacts(alices["run_id"], "notes.txt")).read()


def test_a_trace_pointed_at_someone_elses_trace_folder_is_not_read(unprefixed, users, alices, bobs):
    """Reproduced: bob tagged his own trace mlflow.artifactLocation=<alice's trace folder> and read her
    spans through get-trace-artifact (the server reads with its own storage credentials)."""
    import mlflow

    alices_trace = _alices_trace(unprefixed, users, alices["experiment_id"])
    with _as(unprefixed, *users["alice"]) as alice:
        folder = alice.get_trace(alices_trace).info.tags["mlflow.artifactLocation"]
    with _as(unprefixed, *users["bob"]):
        mlflow.set_experiment(experiment_id=bobs["experiment_id"])
        with mlflow.start_span(name="bob-span") as span:
            span.set_inputs({"mine": "bob"})
        mlflow.flush_trace_async_logging()
    tag = requests.patch(_url(unprefixed, f"/api/2.0/mlflow/traces/{span.trace_id}/tags"), auth=users["bob"],
                         timeout=30, json={"key": "mlflow.artifactLocation", "value": folder})
    assert tag.status_code == 400 and "immutable" in tag.text, tag.text[:300]
    for api in ("2.0", "3.0"):
        own = requests.get(_url(unprefixed, f"/ajax-api/{api}/mlflow/get-trace-artifact"),
                           params={"request_id": span.trace_id}, auth=users["bob"], timeout=30)
        assert own.status_code == 200 and "alice" not in own.text, (api, own.status_code, own.text[:300])


def test_a_trace_cannot_be_started_over_someone_elses_trace(unprefixed, users, alices, bobs):
    """Reproduced: bob's StartTraceV3 with alice's trace id and his experiment moved her trace into his
    experiment (MLflow's store merges a start for an existing id); he read her spans, she got 403."""
    alices_trace = _alices_trace(unprefixed, users, alices["experiment_id"])
    url = _url(unprefixed, "/api/3.0/mlflow/traces")

    def start(trace_id: str) -> requests.Response:
        location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": bobs["experiment_id"]}}
        return requests.post(url, auth=users["bob"], timeout=30, json={"trace": {"trace_info": {
            "trace_id": trace_id, "trace_location": location, "request_time": "2026-01-01T00:00:00Z", "state": "OK"}}})

    taken = start(alices_trace)
    assert taken.status_code == 403 and "another experiment" in taken.text, taken.text[:300]
    assert start(alices_trace + "/").status_code == 400, "another spelling of her id (her folder, joined)"
    with _as(unprefixed, *users["alice"]) as alice:
        assert alice.get_trace(alices_trace).info.experiment_id == alices["experiment_id"]
    assert start("tr-" + secrets.token_hex(16)).status_code == 200, "a new trace of bob's own"


def test_a_trace_cannot_name_where_its_spans_are_read_from(unprefixed, users, alices, bobs):
    """Reproduced (review 7): bob started a trace in his experiment with MLflow's own tags
    `mlflow.trace.spansLocation: ARCHIVE_REPO` and `mlflow.trace.archiveLocation:
    <alice's run folder>?/<his experiment>/traces/<his trace>/artifacts`; traces/get then read her
    `traces.pb`. Those tags are refused on StartTraceV3 and on the 2.0 start and end routes."""
    trace_id = "tr-" + secrets.token_hex(16)
    folder = f"{unprefixed.server.settings.artifacts_destination.rstrip('/')}/{alices['experiment_id']}/" \
             f"{alices['run_id']}/artifacts"
    tags = {"mlflow.trace.spansLocation": "ARCHIVE_REPO",
            "mlflow.trace.archiveLocation": f"{folder}?/{bobs['experiment_id']}/traces/{trace_id}/artifacts"}
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": bobs["experiment_id"]}}
    v3 = requests.post(_url(unprefixed, "/api/3.0/mlflow/traces"), auth=users["bob"], timeout=30, json={
        "trace": {"trace_info": {"trace_id": trace_id, "trace_location": location, "state": "OK",
                                 "request_time": "2026-01-01T00:00:00Z", "tags": tags}}})
    assert v3.status_code == 400 and "MLflow's own" in v3.text, v3.text[:300]
    as_list = [{"key": key, "value": value} for key, value in tags.items()]
    v2 = requests.post(_url(unprefixed, "/api/2.0/mlflow/traces"), auth=users["bob"], timeout=30,
                       json={"experiment_id": bobs["experiment_id"], "timestamp_ms": 1, "tags": as_list})
    assert v2.status_code == 400 and "MLflow's own" in v2.text, v2.text[:300]
    started = requests.post(_url(unprefixed, "/api/2.0/mlflow/traces"), auth=users["bob"], timeout=30,
                            json={"experiment_id": bobs["experiment_id"], "timestamp_ms": 1})
    assert started.status_code == 200, started.text[:300]
    request_id = started.json()["trace_info"]["request_id"]
    ended = requests.patch(_url(unprefixed, f"/api/2.0/mlflow/traces/{request_id}"), auth=users["bob"], timeout=30,
                           json={"timestamp_ms": 2, "status": "OK", "tags": as_list})
    assert ended.status_code == 400 and "MLflow's own" in ended.text, ended.text[:300]
    plain = requests.post(_url(unprefixed, "/api/3.0/mlflow/traces"), auth=users["bob"], timeout=30, json={
        "trace": {"trace_info": {"trace_id": trace_id, "trace_location": location, "state": "OK",
                                 "request_time": "2026-01-01T00:00:00Z", "tags": {"team": "bob"}}}})
    assert plain.status_code == 200, plain.text[:300]


def test_a_trace_start_cannot_take_over_or_revive_someone_elses_assessment(unprefixed, users, alices, bobs):
    """Reproduced (review 8): StartTraceV3 carries assessments written by id. Bob's second start of his
    own trace carried alice's assessment id (read with READ on her trace): the store's merge moved her
    assessment onto his trace with his value, hers was gone. His assessment `overrides` her overridden
    one; deleting his made hers valid again. Both are refused; his own assessments still pass."""
    import mlflow
    from mlflow.entities.assessment import AssessmentSource

    alices_trace = _alices_trace(unprefixed, users, alices["experiment_id"])
    with _as(unprefixed, *users["alice"]):
        first = mlflow.log_feedback(trace_id=alices_trace, name="quality", value="BAD",
                                    source=AssessmentSource(source_type="HUMAN", source_id="alice"))
        mlflow.override_feedback(trace_id=alices_trace, assessment_id=first.assessment_id, value="GOOD")
    bobs_trace = "tr-" + secrets.token_hex(16)
    url = _url(unprefixed, "/api/3.0/mlflow/traces")

    def start(**assessment: str) -> requests.Response:
        location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": bobs["experiment_id"]}}
        carried = [{"trace_id": bobs_trace, "assessment_name": "quality", "feedback": {"value": "BOB-WROTE-THIS"},
                    "source": {"source_type": "HUMAN", "source_id": "bob"}, "create_time": "2026-01-01T00:00:00Z",
                    "last_update_time": "2026-01-01T00:00:00Z", **assessment}] if assessment else []
        return requests.post(url, auth=users["bob"], timeout=30, json={"trace": {"trace_info": {
            "trace_id": bobs_trace, "trace_location": location, "request_time": "2026-01-01T00:00:00Z",
            "state": "OK", "assessments": carried}}})

    assert start().status_code == 200
    taken = start(assessment_id=first.assessment_id)
    assert taken.status_code == 403 and "another trace" in taken.text, taken.text[:300]
    revived = start(overrides=first.assessment_id)
    assert revived.status_code == 403 and "overrides" in revived.text, revived.text[:300]
    with _as(unprefixed, *users["alice"]) as alice:
        kept = alice.get_trace(alices_trace).info.assessments
        assert {(a.assessment_id, a.valid) for a in kept if a.assessment_id == first.assessment_id} == \
            {(first.assessment_id, False)}, kept
    assert start(assessment_id="a-" + secrets.token_hex(16)).status_code == 200, "bob's own assessment"
