"""auth.mode oidc, for real: single sign-on with mlflow-oidc-auth behind the rendered Nginx, against
oidc-provider-mock (the rehearsal's stand-in for the company's identity provider), driven as a
browser would (authorization code flow with an HTTP client) and by the MLflow client with an
access token the plugin issued.

The rehearsal's provider knows alice (in auth.oidc.adminGroup), bob (in the first of
auth.oidc.userGroups) and eve (in neither). The stack runs with auth.defaultPermission
NO_PERMISSIONS, so a user sees what they were granted and what they created, nothing else.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import time
from typing import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from rehearsal.launcher import RehearsalStack, Variant
from tests.rehearsal.conftest import scenario_stack
from tests.rehearsal.direct import create_upload, presigned_download, route

# The plugin caches each permission decision for 30 s in every worker process (its default
# PERMISSION_CACHE_TTL_SECONDS); a grant reaches every worker within that.
PERMISSION_CACHE_SECONDS = 30


@pytest.fixture(scope="module")
def sso_stack() -> Iterator[RehearsalStack]:
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module")
def variant(sso_stack) -> Variant:
    return sso_stack.variants["default"]


def _url(variant: Variant, path: str) -> str:
    return f"{variant.tracking_uri}{path}"


def sign_in(variant: Variant, subject: str) -> tuple[requests.Session, str]:
    """A browser's sign-in: MLflow sends it to the provider, the user submits the provider's form,
    the provider sends it back to MLflow's /callback. Returns the session (its cookies) and where
    the callback sent it."""
    browser = requests.Session()
    to_provider = browser.get(_url(variant, "/login"), allow_redirects=False, timeout=30)
    assert to_provider.status_code == 302, to_provider.text[:300]
    authorize = to_provider.headers["Location"]
    query = parse_qs(urlparse(authorize).query)
    assert query["redirect_uri"] == [_url(variant, "/callback")], "the redirect URL derives from the public host name"
    assert query["client_id"] == [variant.config.auth.oidc.client_id]
    form = browser.get(authorize, timeout=30)
    assert form.status_code == 200 and 'name="sub"' in form.text
    back = browser.post(authorize, data={"sub": subject}, allow_redirects=False, timeout=30)
    assert back.status_code == 302 and back.headers["Location"].startswith(_url(variant, "/callback?code="))
    landed = browser.get(back.headers["Location"], allow_redirects=False, timeout=30)
    assert landed.status_code == 302, landed.text[:300]
    return browser, landed.headers["Location"]


@pytest.fixture(scope="module")
def alice(variant) -> requests.Session:
    session, _ = sign_in(variant, "alice")
    return session


@pytest.fixture(scope="module")
def bob(variant) -> requests.Session:
    session, _ = sign_in(variant, "bob")
    return session


@pytest.fixture(scope="module")
def alices_experiment(variant, alice) -> str:
    response = alice.post(_url(variant, "/api/2.0/mlflow/experiments/create"),
                          json={"name": f"alice-{secrets.token_hex(4)}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["experiment_id"]


@pytest.fixture(scope="module")
def bobs_token(variant, bob) -> str:
    """An access token bob makes for his scripts, from his signed-in session (the plugin's API)."""
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).isoformat()
    response = bob.post(_url(variant, "/api/2.0/mlflow/users/current/tokens"),
                        json={"name": f"ci-{secrets.token_hex(3)}", "expiration": expires}, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["token"]


# --- who may come in -----------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/2.0/mlflow/experiments/search?max_results=1"),
    ("POST", "/api/2.0/mlflow/experiments/create"),
    ("POST", "/api/2.0/mlflow/runs/search"),
    ("GET", "/api/2.0/mlflow/registered-models/search"),
    ("GET", "/api/2.0/mlflow/users"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts?path=0"),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/planted.txt"),
    ("POST", "/ajax-api/2.0/mlflow/experiments/search"),
    ("POST", "/graphql"),
])
def test_anonymous_requests_are_401(variant, method, path):
    response = requests.request(method, _url(variant, path), data=b"x" if method == "PUT" else None, timeout=30)
    assert response.status_code == 401, (method, path, response.status_code, response.text[:200])


def test_health_stays_open_and_nginx_checks_no_password(variant):
    assert requests.get(f"http://127.0.0.1:{variant.proxy.port}/health", timeout=30).status_code == 200
    conf = (variant.proxy.workdir / "nginx.conf").read_text()
    assert "auth_basic_user_file" not in conf


def test_admin_group_member_signs_in_as_admin(variant, alice):
    current = alice.get(_url(variant, "/api/2.0/mlflow/users/current"), timeout=30)
    assert current.status_code == 200
    assert current.json()["username"] == "alice@example.com" and current.json()["is_admin"] is True


def test_someone_outside_the_allowed_groups_is_refused(variant):
    session, landed = sign_in(variant, "eve")
    assert "error=User+is+not+allowed+to+login" in landed
    refused = session.get(_url(variant, "/api/2.0/mlflow/experiments/search?max_results=1"), timeout=30)
    assert refused.status_code == 401


def test_user_group_member_signs_in_without_admin_rights(variant, bob, alices_experiment):
    current = bob.get(_url(variant, "/api/2.0/mlflow/users/current"), timeout=30).json()
    assert current["username"] == "bob@example.com" and current["is_admin"] is False
    denied = bob.get(_url(variant, f"/api/2.0/mlflow/experiments/get?experiment_id={alices_experiment}"), timeout=30)
    assert denied.status_code == 403
    grant = bob.post(_url(variant,
                          f"/api/2.0/mlflow/permissions/users/bob@example.com/experiments/{alices_experiment}"),
                     json={"permission": "MANAGE"}, timeout=30)
    assert grant.status_code == 403, "a user may not grant himself access"


def test_admin_grants_read_and_the_user_can_read_but_not_delete(variant, alice, bob, alices_experiment):
    grant = alice.post(_url(variant,
                            f"/api/2.0/mlflow/permissions/users/bob@example.com/experiments/{alices_experiment}"),
                       json={"permission": "READ"}, timeout=30)
    assert grant.status_code in (200, 201), grant.text
    read = _url(variant, f"/api/2.0/mlflow/experiments/get?experiment_id={alices_experiment}")
    deadline = time.monotonic() + PERMISSION_CACHE_SECONDS + 10
    streak = 0
    while streak < 8:  # every worker answers 200 (a worker may hold a cached "no" for up to 30 s)
        streak = streak + 1 if bob.get(read, timeout=30).status_code == 200 else 0
        assert time.monotonic() < deadline, "the grant did not reach every worker"
        time.sleep(0.2 if streak else 1.0)
    delete = bob.post(_url(variant, "/api/2.0/mlflow/experiments/delete"),
                      json={"experiment_id": alices_experiment}, timeout=30)
    assert delete.status_code == 403


def test_sdk_logs_a_run_with_an_access_token(variant, bobs_token, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    for name in list(os.environ):
        if name.startswith("MLFLOW_TRACKING_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", variant.tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob@example.com")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", bobs_token)
    mlflow.set_tracking_uri(variant.tracking_uri)
    try:
        mlflow.set_experiment(f"bob-ci-{secrets.token_hex(4)}")
        with mlflow.start_run() as run:
            mlflow.log_param("lr", 0.01)
            mlflow.log_metric("loss", 0.5)
            mlflow.log_text("trained\n", "log.txt")
        client = MlflowClient(variant.tracking_uri)
        assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
        assert client.download_artifacts(run.info.run_id, "log.txt")
    finally:
        mlflow.set_tracking_uri(None)


def test_a_token_is_bound_to_its_user(variant, bobs_token):
    search = _url(variant, "/api/2.0/mlflow/experiments/search?max_results=1")
    assert requests.get(search, auth=("bob@example.com", bobs_token), timeout=30).status_code == 200
    assert requests.get(search, auth=("alice@example.com", bobs_token), timeout=30).status_code == 401
    assert requests.get(search, auth=("bob@example.com", bobs_token + "x"), timeout=30).status_code == 401


# --- direct transfers (issue 26) -----------------------------------------------------------------------

def _alices_run_with_notes(variant: Variant, alice: requests.Session) -> tuple[str, str]:
    experiment = alice.post(_url(variant, "/api/2.0/mlflow/experiments/create"),
                            json={"name": f"alice-transfer-{secrets.token_hex(4)}"}, timeout=30).json()["experiment_id"]
    run = alice.post(_url(variant, "/api/2.0/mlflow/runs/create"), json={"experiment_id": experiment},
                     timeout=30).json()["run"]["info"]["run_id"]
    put = alice.put(route(variant, "artifacts", experiment, run, "notes.txt"), data=b"alice's notes\n", timeout=30)
    assert put.status_code == 200, put.text[:300]
    return experiment, run


def test_upload_credentials_and_download_urls_follow_the_plugins_permissions(variant, alice, bob):
    """What artifacts.transfer direct hands out (multipart upload credentials, presigned download URLs) comes
    from MLflow's own routes, which mlflow-oidc-auth guards like the artifacts they name: nothing without a
    permission, a download URL but no upload with READ. The module's stack has artifacts.transfer direct: with
    proxied, Nginx answers these routes 501 for everyone (render.proxy.unsupported_routes; test_09 sweeps them)."""
    refused, readable = _alices_run_with_notes(variant, alice), _alices_run_with_notes(variant, alice)
    grant = alice.post(_url(variant, f"/api/2.0/mlflow/permissions/users/bob@example.com/experiments/{readable[0]}"),
                       json={"permission": "READ"}, timeout=30)
    assert grant.status_code in (200, 201), grant.text
    assert create_upload(variant, *refused, session=bob).status_code == 403
    assert presigned_download(variant, *refused, "notes.txt", session=bob).status_code == 403
    assert create_upload(variant, *readable, session=bob).status_code == 403
    url = presigned_download(variant, *readable, "notes.txt", session=bob)
    assert url.status_code == 200 and requests.get(url.json()["url"], timeout=30).text == "alice's notes\n"
    assert create_upload(variant, *refused, session=alice).status_code == 200
    assert presigned_download(variant, *refused, "notes.txt", session=alice).status_code == 200


# --- where it lives ------------------------------------------------------------------------------

def test_users_and_tokens_live_in_the_auth_database_and_survive_a_restart(sso_stack, variant, bobs_token,
                                                                          alices_experiment):
    postgres, database = sso_stack.postgres, sso_stack.base_config.database
    users = postgres.psql("SELECT username FROM users ORDER BY username", database=f"{database.name}_auth").split()
    assert {"alice@example.com", "bob@example.com"} <= set(users) and "eve@example.com" not in users
    tracking_tables = postgres.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                                    database=database.name).split()
    assert "users" not in tracking_tables and "user_tokens" not in tracking_tables
    sso_stack.restart_server("default")
    search = _url(variant, f"/api/2.0/mlflow/experiments/get?experiment_id={alices_experiment}")
    assert requests.get(search, auth=("bob@example.com", bobs_token), timeout=30).status_code == 200


# --- the project's guard in front of the plugin (issue 29) -----------------------------------------

def test_the_guard_stands_in_front_of_the_plugin(variant, alice, bob):
    """The same mlflow_guard as in auth.mode mlflow (the image registers it under `oidc-auth` too): an
    id in another spelling and two runs in one body are answered 400 before the plugin reads them; a
    DELETE body that is not JSON beside a decoy query is read as the JSON it is; alice's objects stay;
    an experiment's artifact_location is the server's to choose (review 6)."""
    experiment = alice.post(_url(variant, "/api/2.0/mlflow/experiments/create"),
                            json={"name": f"alice-guarded-{secrets.token_hex(4)}"}, timeout=30).json()["experiment_id"]
    run = alice.post(_url(variant, "/api/2.0/mlflow/runs/create"), json={"experiment_id": experiment},
                     timeout=30).json()["run"]["info"]["run_id"]
    model = f"alice-guarded-{secrets.token_hex(4)}"
    assert alice.post(_url(variant, "/api/2.0/mlflow/registered-models/create"), json={"name": model},
                      timeout=30).status_code == 200
    refused = [
        bob.get(_url(variant, "/api/2.0/mlflow/experiments/get"), params={"experiment_id": f"0{experiment}"},
                timeout=30),
        bob.post(_url(variant, "/api/2.0/mlflow/runs/set-tag"), timeout=30,
                 json={"run_uuid": "0" * 32, "runId": run, "key": "bob", "value": "1"}),
    ]
    for response in refused:
        assert response.status_code == 400, (response.request.method, response.request.url, response.text[:300])
    delete = bob.delete(_url(variant, "/api/2.0/mlflow/registered-models/delete"), params={"name": "bob-decoy"},
                        data=json.dumps({"name": model}), headers={"Content-Type": "text/plain"}, timeout=30)
    assert delete.status_code == 403, delete.text[:300]
    assert alice.get(_url(variant, "/api/2.0/mlflow/registered-models/get"), params={"name": model},
                     timeout=30).status_code == 200, "alice's model is still there"
    tags = alice.get(_url(variant, "/api/2.0/mlflow/runs/get"), params={"run_id": run}, timeout=30).json()
    assert "bob" not in {tag["key"] for tag in tags["run"]["data"].get("tags", [])}
    located = bob.post(_url(variant, "/api/2.0/mlflow/experiments/create"), timeout=30, json={
        "name": f"bob-located-{secrets.token_hex(4)}", "artifact_location": f"mlflow-artifacts:/{experiment}/{run}"})
    assert located.status_code == 400 and "artifact_location" in located.text, located.text[:300]


# --- offboarding (review 9) --------------------------------------------------------------------------

def test_offboarding_is_deactivation_in_the_plugin_not_removal_at_the_provider(sso_stack, variant, alice):
    """Reproduced (review 9): the plugin reads a user's groups and admin flag at sign-in only; its access
    tokens and sessions are checked against its own database. Removed from every allowed group at the
    provider, carol cannot sign in again, but her session and her token (up to a year) still work. What
    the README tells admins to do instead, deactivating her in the plugin, ends both at once."""
    provider = sso_stack.oidc
    carol = {"sub": "carol", "email": "carol@example.com", "name": "Carol User",
             "groups": [variant.config.auth.oidc.user_groups[0]]}
    assert requests.put(f"{provider.issuer}/users/carol", json=carol, timeout=30).status_code in (200, 201, 204)
    session, _ = sign_in(variant, "carol")
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=300)).isoformat()
    made = session.post(_url(variant, "/api/2.0/mlflow/users/current/tokens"),
                        json={"name": "laptop", "expiration": expires}, timeout=30)
    assert made.status_code == 201, made.text
    token = ("carol@example.com", made.json()["token"])
    search = _url(variant, "/api/2.0/mlflow/experiments/search?max_results=1")

    removed = {**carol, "groups": ["contractors"]}
    assert requests.put(f"{provider.issuer}/users/carol", json=removed, timeout=30).status_code in (200, 201, 204)
    _, landed = sign_in(variant, "carol")
    assert "error=User+is+not+allowed+to+login" in landed, "a new sign-in follows the provider at once"
    assert session.get(search, timeout=30).status_code == 200, "the plugin's session outlives the removal"
    assert requests.get(search, auth=token, timeout=30).status_code == 200, "so does her token"

    deactivated = alice.patch(_url(variant, "/api/2.0/mlflow/users/carol@example.com/active"),
                              json={"active": False}, timeout=30)
    assert deactivated.status_code == 200, deactivated.text[:300]
    assert session.get(search, timeout=30).status_code == 401
    assert requests.get(search, auth=token, timeout=30).status_code == 401


def test_a_restore_names_who_it_lets_in_again(sso_stack, tmp_path):
    """Review 19 F1: a user offboarded after a backup (deactivated, admin taken away, token deleted, as
    the README says) is active and admin again after a restore of that backup, token and all: the
    restore says so by name. Last in this module: the restore replaces the stack's data."""
    from ops.backup import backup
    from ops.restore import purge_replaced, restore
    from tests.rehearsal.interrupt import psql_rows
    from tests.rehearsal.test_13_backup_restore import RehearsalAccess

    def sql(script: str) -> list[list[str]]:
        return psql_rows(sso_stack, "mlflow_auth", script + "\n")

    access = RehearsalAccess(sso_stack)
    sql("INSERT INTO users (username, display_name, is_admin, active, created_at, updated_at) "
        "VALUES ('mallory', 'Mallory', true, true, now(), now());")
    sql("INSERT INTO user_tokens (user_id, name, token_hash, token_prefix, created_at, expires_at) SELECT id, 'ci', "
        "repeat('a', 64), 'abcd', now(), now() + interval '300 days' FROM users WHERE username = 'mallory';")
    sql("INSERT INTO scim_tokens (name, token_hash, token_prefix, created_at) "
        "VALUES ('provisioner', repeat('b', 64), 'efgh', now());")
    sql("INSERT INTO users (username, display_name, is_admin, active, created_at, updated_at) "
        "VALUES ('trent', 'Trent', false, true, now(), now());")
    sql("INSERT INTO user_tokens (user_id, name, token_hash, token_prefix, created_at, expires_at) "
        "SELECT id, 'leaked', repeat('c', 64), 'ijkl', now(), now() + interval '300 days' "
        "FROM users WHERE username = 'trent';")
    backup(access, tmp_path / "backup", say=lambda message: None)
    # Review 21 F1: trent's leaked token is deleted and he makes a new one; his new one must not hide the old one
    sql("DELETE FROM user_tokens WHERE name = 'leaked';")
    sql("INSERT INTO user_tokens (user_id, name, token_hash, token_prefix, created_at, expires_at) "
        "SELECT id, 'laptop', repeat('d', 64), 'mnop', now(), now() + interval '300 days' "
        "FROM users WHERE username = 'trent';")
    sql("UPDATE scim_tokens SET revoked_at = now() WHERE name = 'provisioner';")
    sql("UPDATE users SET active = false, is_admin = false WHERE username = 'mallory';")
    sql("DELETE FROM user_tokens WHERE user_id = (SELECT id FROM users WHERE username = 'mallory');")
    said: list[str] = []
    restore(access, tmp_path / "backup", replace=True, say=said.append)
    assert sql("SELECT active, is_admin FROM users WHERE username = 'mallory';") == [["t", "t"]]
    told = [line for line in said if "offboarded since the backup" in line]
    assert len(told) == 1, said
    admins, holders = re.search(r"now has the admins (.*) and the access tokens of (.*): a user", told[0]).groups()
    assert "mallory" in admins.split(", ") and "mallory" in holders.split(", "), told
    # Review 20 F1: with --replace, what was taken away since the backup is named against the replaced database
    again = [line for line in said if line.startswith("the restore lets in again")]
    assert again == ["the restore lets in again what the rehearsal stack had taken away since the backup: active users "
                     "mallory; access tokens of mallory (ci), trent (leaked); SCIM tokens provisioner (deactivate or "
                     "delete them again, change those passwords, if they should stay out)"], said
    purge_replaced(access, say=lambda message: None)
