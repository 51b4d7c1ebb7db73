"""auth.mode mlflow, for real: MLflow's auth app (`--app-name basic-auth`) behind the rendered Nginx,
its users and permissions in a PostgreSQL database of their own, driven by the MLflow client.

The stack runs with `auth.defaultPermission: NO_PERMISSIONS` and two servers on one database and one
auth database (the second under server.staticPrefix and with artifacts.transfer direct: the proxied
prefixed server in this auth mode is test_18's and test_22's), as two replicas would share them. The admin
is the one the stack outputs (admin_username / admin_password); alice and bob are users it adds.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Iterator

import pytest
import requests

from components.render.proxy import unsupported_routes
from rehearsal.launcher import RehearsalStack, Variant
from tests.rehearsal.conftest import scenario_stack
from tests.rehearsal.direct import (CLIENT_ENV, DIRECT_SIZE, FAR_BELOW, create_upload, measured, presigned_download,
                                    random_file, refused_status, sha256)

PERMISSION_DENIED = 403


@pytest.fixture(scope="module")
def auth_stack() -> Iterator[RehearsalStack]:
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module", params=["default", "direct-prefix"])
def variant(request, auth_stack) -> Variant:
    return auth_stack.variants[request.param]


def _api(variant: Variant, path: str) -> str:
    """A URL through Nginx, as a client sees it (the public host name, the static prefix)."""
    return f"{variant.tracking_uri}{path}"


@pytest.fixture(scope="module")
def users(auth_stack) -> dict[str, tuple[str, str]]:
    """alice and bob, added by the admin through MLflow's AuthServiceClient (REST)."""
    from mlflow.server.auth.client import AuthServiceClient

    variant = auth_stack.variants["default"]
    created = {name: (name, secrets.token_urlsafe(18)) for name in ("alice", "bob")}
    with _as(variant, variant.username, variant.password):
        admin = AuthServiceClient(variant.tracking_uri)
        for username, password in created.values():
            admin.create_user(username, password)
    return created


@contextlib.contextmanager
def _as(variant: Variant, username: str, password: str):
    """The MLflow client acting as `username` (MLFLOW_TRACKING_USERNAME/PASSWORD, as users set them)."""
    from mlflow import MlflowClient

    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(MLFLOW_TRACKING_USERNAME=username, MLFLOW_TRACKING_PASSWORD=password)
    try:
        yield MlflowClient(tracking_uri=variant.tracking_uri)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def alices_experiment(auth_stack, users, tmp_path_factory) -> dict[str, str]:
    """alice's experiment with a run (a metric, an artifact) and a registered model."""
    variant = auth_stack.variants["default"]
    artifact = tmp_path_factory.mktemp("artifact") / "notes.txt"
    artifact.write_text("alice's notes\n")
    with _as(variant, *users["alice"]) as alice:
        experiment_id = alice.create_experiment(f"alice-{secrets.token_hex(4)}")
        run = alice.create_run(experiment_id)
        alice.log_metric(run.info.run_id, "loss", 0.25)
        alice.log_artifact(run.info.run_id, str(artifact))
        alice.set_terminated(run.info.run_id)
        model = f"alice-model-{secrets.token_hex(4)}"
        alice.create_registered_model(model)
    return {"experiment_id": experiment_id, "run_id": run.info.run_id, "model": model}


def _status(error: BaseException) -> int:
    from mlflow.exceptions import MlflowException, RestException

    assert isinstance(error, (MlflowException, RestException)), repr(error)
    return error.get_http_status_code()


# --- who may come in -----------------------------------------------------------------------------

ANONYMOUS_PATHS = [
    ("GET", "/api/2.0/mlflow/experiments/search?max_results=1"),
    ("POST", "/api/2.0/mlflow/experiments/create"),
    ("GET", "/api/2.0/mlflow/runs/get?run_id=0"),
    ("POST", "/api/2.0/mlflow/runs/search"),
    ("GET", "/api/2.0/mlflow/registered-models/search"),
    ("GET", "/api/2.0/mlflow/users/get?username=admin"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts?path=0"),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/planted.txt"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts/0/planted.txt"),
    ("POST", "/ajax-api/2.0/mlflow/experiments/search"),
    ("POST", "/graphql"),
    ("GET", "/"),
]
# (MLflow's auth app answers /api/3.0/mlflow/server-info without credentials: clients read the
# server's capabilities before they authenticate. It names no experiment, run or user.)


@pytest.mark.parametrize(("method", "path"), ANONYMOUS_PATHS)
def test_no_credentials_is_401_on_every_api_path(variant, method, path):
    response = requests.request(method, _api(variant, path), data=b"x" if method == "PUT" else None, timeout=30)
    assert response.status_code == 401, (method, path, response.status_code, response.text[:200])


# Routes MLflow's auth app leaves open on purpose: the probe, the server's capabilities (read by
# clients before they authenticate; no experiment, run or user in it) and the UI's static files.
OPEN_ROUTES = {"/health", "/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info"}
STATIC_FILES = "/static-files/"


def _every_route_mlflow_serves() -> list[tuple[str, str]]:
    """(method, path) for each route of the tracking server and of the auth app, variables filled."""
    import re

    import mlflow.server.auth.routes as auth_routes
    from mlflow.server import app

    routes = set()
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.add((method, re.sub(r"<[^>]+>", "0", rule.rule)))
    for name in dir(auth_routes):
        value = getattr(auth_routes, name)
        if name.isupper() and isinstance(value, str) and value.startswith("/"):
            routes.update({("GET", value), ("POST", value)})
    return sorted(routes)


def test_every_route_mlflow_serves_is_401_without_credentials(variant):
    """Not a hand-picked list: every route MLflow's own url_map and auth routes name, through Nginx."""
    routes = _every_route_mlflow_serves()
    assert len(routes) > 400, len(routes)
    # Nginx answers the routes that hand out presigned URLs 501 for everyone (MLflow's own "not supported",
    # render.proxy.unsupported_routes: all four when proxied, the two one-URL routes with direct transfers), before
    # MLflow's login: nothing is handed out, to nobody.
    proxied = variant.config.artifacts.transfer == "proxied"
    routes_501 = unsupported_routes(not proxied)
    unserved = re.compile(r"^(?:/ajax-api|/api)/2\.0/(?:" + "|".join(map(re.escape, routes_501)) + r")(?:/|$)")
    not_refused, answered_unserved = [], 0
    with requests.Session() as session:
        for method, path in routes:
            status = session.request(method, _api(variant, path), timeout=30).status_code
            if path in OPEN_ROUTES or path.startswith(STATIC_FILES):
                continue
            expected = 501 if unserved.match(path) else 401
            answered_unserved += expected == 501
            if status != expected:
                not_refused.append((method, path, status))
    assert not not_refused, not_refused
    assert answered_unserved >= 2 * len(routes_501), answered_unserved


def test_the_open_routes_name_no_data(variant, alices_experiment):
    info = requests.get(_api(variant, "/api/3.0/mlflow/server-info"), timeout=30)
    assert info.status_code == 200
    assert alices_experiment["experiment_id"] not in info.text and "alice" not in info.text
    assert requests.get(_api(variant, STATIC_FILES + "no-such-file.js"), timeout=30).status_code == 404


def test_wrong_password_and_unknown_user_are_401(variant, users):
    path = _api(variant, "/api/2.0/mlflow/experiments/search?max_results=1")
    assert requests.get(path, auth=(variant.username, variant.password + "x"), timeout=30).status_code == 401
    assert requests.get(path, auth=("mallory", users["bob"][1]), timeout=30).status_code == 401
    assert requests.get(path, auth=(users["bob"][0], users["alice"][1]), timeout=30).status_code == 401
    assert requests.get(path, auth=users["bob"], timeout=30).status_code == 200


def test_health_stays_open_for_probes(variant):
    root = requests.get(f"http://127.0.0.1:{variant.proxy.port}/health", timeout=30)
    assert root.status_code == 200


def test_nginx_checks_no_password_and_passes_the_header_on(variant):
    conf = (variant.proxy.workdir / "nginx.conf").read_text()
    assert "auth_basic_user_file" not in conf and 'auth_basic "' not in conf
    assert not (variant.proxy.workdir / "htpasswd").exists()


# --- what a user may do --------------------------------------------------------------------------

def test_bob_cannot_read_delete_or_write_alices_experiment_until_granted(auth_stack, users, alices_experiment):
    ids = alices_experiment
    for variant in auth_stack.variants.values():
        with _as(variant, *users["bob"]) as bob:
            for attempt in (lambda: bob.get_experiment(ids["experiment_id"]),
                            lambda: bob.get_run(ids["run_id"]),
                            lambda: bob.list_artifacts(ids["run_id"]),
                            lambda: bob.delete_experiment(ids["experiment_id"]),
                            lambda: bob.log_metric(ids["run_id"], "loss", 9.0),
                            lambda: bob.get_registered_model(ids["model"])):
                with pytest.raises(Exception) as refused:
                    attempt()
                assert _status(refused.value) == PERMISSION_DENIED
            searched = bob.search_experiments()
            assert ids["experiment_id"] not in {experiment.experiment_id for experiment in searched}
        # Downloading the artifact straight from the artifact route (under the prefix, the one Nginx
        # sends to the server's streaming router) is refused as well.
        artifact = requests.get(_api(variant, f"/api/2.0/mlflow-artifacts/artifacts/{ids['experiment_id']}/"
                                              f"{ids['run_id']}/artifacts/notes.txt"), auth=users["bob"], timeout=30)
        assert artifact.status_code == PERMISSION_DENIED
        assert requests.get(artifact.url, auth=users["alice"], timeout=30).text == "alice's notes\n"


def test_granted_read_lets_bob_read_but_not_delete_or_write(auth_stack, users, alices_experiment):
    ids = alices_experiment
    default = auth_stack.variants["default"]
    grant = requests.post(_api(default, "/api/3.0/mlflow/users/permissions/grant"), auth=users["alice"], timeout=30,
                          json={"username": "bob", "resource_type": "experiment",
                                "resource_id": ids["experiment_id"], "permission": "READ"})
    assert grant.status_code == 200, grant.text
    for variant in auth_stack.variants.values():  # both servers: the grant is in the shared database
        with _as(variant, *users["bob"]) as bob:
            assert bob.get_experiment(ids["experiment_id"]).experiment_id == ids["experiment_id"]
            assert bob.get_run(ids["run_id"]).data.metrics == {"loss": 0.25}
            assert [entry.path for entry in bob.list_artifacts(ids["run_id"])] == ["notes.txt"]
            local = bob.download_artifacts(ids["run_id"], "notes.txt")
            assert open(local).read() == "alice's notes\n"
            for attempt in (lambda: bob.delete_experiment(ids["experiment_id"]),
                            lambda: bob.log_metric(ids["run_id"], "loss", 9.0),
                            lambda: bob.set_experiment_tag(ids["experiment_id"], "owner", "bob")):
                with pytest.raises(Exception) as refused:
                    attempt()
                assert _status(refused.value) == PERMISSION_DENIED


def test_bob_cannot_grant_himself_more(auth_stack, users, alices_experiment):
    default = auth_stack.variants["default"]
    response = requests.post(_api(default, "/api/3.0/mlflow/users/permissions/grant"), auth=users["bob"], timeout=30,
                             json={"username": "bob", "resource_type": "experiment",
                                   "resource_id": alices_experiment["experiment_id"], "permission": "MANAGE"})
    assert response.status_code == PERMISSION_DENIED


def test_registered_model_permission_is_separate(auth_stack, users, alices_experiment):
    default = auth_stack.variants["default"]
    model = alices_experiment["model"]
    with _as(default, *users["bob"]) as bob:
        with pytest.raises(Exception) as refused:
            bob.get_registered_model(model)
        assert _status(refused.value) == PERMISSION_DENIED
    grant = requests.post(_api(default, "/api/3.0/mlflow/users/permissions/grant"), auth=users["alice"], timeout=30,
                          json={"username": "bob", "resource_type": "registered_model", "resource_id": model,
                                "permission": "READ"})
    assert grant.status_code == 200, grant.text
    with _as(default, *users["bob"]) as bob:
        assert bob.get_registered_model(model).name == model
        with pytest.raises(Exception) as refused:
            bob.delete_registered_model(model)
        assert _status(refused.value) == PERMISSION_DENIED


def test_bob_owns_what_he_creates(auth_stack, users):
    default = auth_stack.variants["default"]
    with _as(default, *users["bob"]) as bob:
        experiment_id = bob.create_experiment(f"bob-{secrets.token_hex(4)}")
        run = bob.create_run(experiment_id)
        bob.log_metric(run.info.run_id, "accuracy", 0.9)
        bob.delete_experiment(experiment_id)


# --- where it lives ------------------------------------------------------------------------------

def test_users_live_in_their_own_database_not_in_the_tracking_schema(auth_stack, users):
    postgres, database = auth_stack.postgres, auth_stack.base_config.database
    tracking_tables = postgres.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                                    database=database.name).split()
    auth_tables = postgres.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                                database=f"{database.name}_auth").split()
    assert "users" in auth_tables and "users" not in tracking_tables
    assert "experiments" in tracking_tables and "experiments" not in auth_tables
    owners = postgres.psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{database.name}_auth'")
    assert owners.split() == [database.username]
    names = postgres.psql("SELECT username FROM users ORDER BY username", database=f"{database.name}_auth").split()
    assert names == sorted([auth_stack.base_config.auth.admin_username, "alice", "bob"])


def test_a_restarted_server_keeps_users_and_permissions(auth_stack, users, alices_experiment):
    auth_stack.restart_server("default")
    default = auth_stack.variants["default"]
    with _as(default, *users["bob"]) as bob:
        assert bob.get_experiment(alices_experiment["experiment_id"]).name.startswith("alice-")
        with pytest.raises(Exception) as refused:
            bob.delete_experiment(alices_experiment["experiment_id"])
        assert _status(refused.value) == PERMISSION_DENIED
    assert requests.get(_api(default, "/api/2.0/mlflow/experiments/search?max_results=1"),
                        auth=("bob", "not-his-password"), timeout=30).status_code == 401


def test_the_next_deployment_gives_the_admin_back_the_password_pulumi_holds(auth_stack, users):
    """MLflow reads MLFLOW_AUTH_ADMIN_PASSWORD only when it creates the admin. Someone changes the
    admin's password through the API; the auth upgrade step every deployment (every task start)
    runs sets it back, so the stack's admin_password output is the one that works."""
    from mlflow.server.auth.client import AuthServiceClient

    default = auth_stack.variants["default"]
    search = _api(default, "/api/2.0/mlflow/experiments/search?max_results=1")
    changed = secrets.token_urlsafe(16)
    with _as(default, default.username, default.password):
        AuthServiceClient(default.tracking_uri).update_user_password(default.username, changed,
                                                                     current_password=default.password)
    assert requests.get(search, auth=(default.username, default.password), timeout=30).status_code == 401
    assert requests.get(search, auth=(default.username, changed), timeout=30).status_code == 200
    output = auth_stack.run_auth_upgrade()
    assert f"administrator {default.username} has the deployed password" in output
    assert default.password not in output
    assert requests.get(search, auth=(default.username, default.password), timeout=30).status_code == 200
    assert requests.get(search, auth=(default.username, changed), timeout=30).status_code == 401
    assert requests.get(search, auth=users["bob"], timeout=30).status_code == 200, "other users keep theirs"


# --- direct transfers (issue 26): the direct-prefix variant -------------------------------------------

@pytest.fixture(scope="module")
def alices_direct_run(auth_stack, users, tmp_path_factory) -> dict:
    """alice's experiment with a run holding an artifact above the client's multipart threshold, logged
    through the direct-prefix variant: its parts went to the bucket with the URLs the server signed."""
    variant = auth_stack.variants["direct-prefix"]
    source = tmp_path_factory.mktemp("direct") / "weights.bin"
    expected = random_file(source, DIRECT_SIZE)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CLIENT_ENV.items():
            patch.setenv(name, value)
        with _as(variant, *users["alice"]) as alice:
            experiment_id = alice.create_experiment(f"alice-direct-{secrets.token_hex(4)}")
            run_id = alice.create_run(experiment_id).info.run_id
            with measured(variant) as up:
                alice.log_artifact(run_id, str(source), artifact_path="big")
    assert up.transfer.routes() == {"POST mpu"}, up.transfer.log
    assert up.transfer.nginx_io_bytes < FAR_BELOW and up.transfer.server_peak_temp_bytes < FAR_BELOW
    return {"experiment_id": experiment_id, "run_id": run_id, "sha256": expected}


def test_direct_transfers_need_the_permission_mlflow_checks(auth_stack, users, alices_direct_run, tmp_path):
    """No permission: no upload credentials, no download URL (403 from MLflow's auth app); READ: a download
    URL, and the client downloads straight from the bucket, but still no upload credentials."""
    variant = auth_stack.variants["direct-prefix"]
    ids = (alices_direct_run["experiment_id"], alices_direct_run["run_id"])
    assert variant.config.server.static_prefix and variant.tracking_uri.endswith(variant.config.server.static_prefix)
    assert create_upload(variant, *ids, auth=users["bob"]).status_code == PERMISSION_DENIED
    assert presigned_download(variant, *ids, "big/weights.bin", auth=users["bob"]).status_code == PERMISSION_DENIED
    mine = tmp_path / "bob.bin"
    random_file(mine, DIRECT_SIZE)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CLIENT_ENV.items():
            patch.setenv(name, value)
        with _as(variant, *users["bob"]) as bob:
            with pytest.raises(Exception) as refused:
                bob.download_artifacts(ids[1], "big/weights.bin", str(tmp_path))
            assert _status(refused.value) == PERMISSION_DENIED
            with pytest.raises(Exception) as refused:
                bob.log_artifact(ids[1], str(mine), artifact_path="big")
            assert refused_status(refused.value) == PERMISSION_DENIED

        grant = requests.post(_api(variant, "/api/3.0/mlflow/users/permissions/grant"), auth=users["alice"],
                              timeout=30, json={"username": "bob", "resource_type": "experiment",
                                                "resource_id": ids[0], "permission": "READ"})
        assert grant.status_code == 200, grant.text
        assert presigned_download(variant, *ids, "big/weights.bin", auth=users["bob"]).status_code == 200
        assert create_upload(variant, *ids, auth=users["bob"]).status_code == PERMISSION_DENIED
        with _as(variant, *users["bob"]) as bob:
            with measured(variant) as down:
                local = bob.download_artifacts(ids[1], "big/weights.bin", str(tmp_path / "down"))
            assert sha256(Path(local)) == alices_direct_run["sha256"]
            with pytest.raises(Exception) as refused:
                bob.log_artifact(ids[1], str(mine), artifact_path="big")
            assert refused_status(refused.value) == PERMISSION_DENIED
    assert down.transfer.routes() == {"GET presigned"}, down.transfer.log
    assert down.transfer.nginx_io_bytes < FAR_BELOW and down.transfer.server_peak_temp_bytes < FAR_BELOW
