"""Issue 29, the authorization regression suite: every route MLflow serves, as user B, against user A's
data of every kind, through the real Nginx, in auth.mode mlflow (with and without server.staticPrefix).

A (alice) owns an experiment E with a run (a param, a metric, a tag, an artifact), a logged model, a
registered model with a version and an alias, a trace with an assessment, a prompt and an evaluation
dataset; every value she wrote carries SECRET. B (bob) first has no grant (what he may do then
follows the stack's deployed auth.defaultPermission, NO_PERMISSIONS), then READ on another experiment
of A's and an explicit DENY on E, the model and the prompt. Each (route, method) of
authz_routes.ROUTES is sent in every form MLflow serves (/api/, /ajax-api/), then with every id
spelling of authz_routes.SPELLINGS, the path tricks and the body tricks (a text/plain body beside a
query naming B's own objects; `runId` beside B's `run_uuid`), concurrently; a failing test lists every
offending request at once. B's, A's and the admin's passwords get a one-round hash (tests/rehearsal/
sign_in.py) so that the ~3,800 requests spend their time on authorization, not on scrypt.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import re
import secrets
import string
import threading
import time
from typing import Any, Iterator, Optional

import pytest
import requests

from rehearsal.launcher import RehearsalStack, Variant
from tests.rehearsal import authz_routes as table
from tests.rehearsal.conftest import scenario_stack
from tests.rehearsal.sign_in import cheap_hashes
from tests.rehearsal.test_18_authz_bypasses import _as

SECRET = f"alice-secret-{secrets.token_hex(6)}"
WORKERS = 16
ALLOWS_READING = {"READ", "USE", "EDIT", "MANAGE"}
ALLOWS_WRITING = {"EDIT", "MANAGE"}
GRANT = "/api/3.0/mlflow/users/permissions/grant"
DENY = "DENY"  # MLflow 3.17.2's explicit deny (its grant API takes DENY, not NO_PERMISSIONS)
TIMEOUT_SECONDS = 15


# --- the table against what MLflow serves (no stack) ---------------------------------------------

def _flask_routes() -> set[tuple[str, str]]:
    """(method, rule) of MLflow's Flask url_map, as served (both /api/ and /ajax-api/ forms)."""
    from mlflow.server import app

    return {(method, rule.rule) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def _auth_app_paths() -> set[str]:
    """Every path MLflow's auth app names (its own routes and the Flask routes it guards), folded."""
    import mlflow.server.auth.routes as routes

    return {table.folded(value) for name, value in vars(routes).items()
            if name.isupper() and isinstance(value, str) and value.startswith("/")}


def _fastapi_paths() -> set[str]:
    """The routes of the FastAPI routers the server mounts in front of Flask."""
    from mlflow.server.fastapi_app import create_fastapi_app

    paths = set()
    for route in create_fastapi_app().routes:
        if hasattr(route, "original_router"):
            paths.update(route.include_context.prefix + sub.path for sub in route.original_router.routes)
    return paths


def test_the_table_names_every_route_mlflow_serves_and_no_other():
    named = {route.key for route in table.ROUTES}
    served = {(method, table.folded(rule)) for method, rule in _flask_routes()}
    missing = sorted(served - named)
    gone = sorted({route.key for route in table.ROUTES if route.mode is None} - served)
    auth_named = {route.rule for route in table.ROUTES}
    auth_missing = sorted(_auth_app_paths() - auth_named)
    families_missing = sorted(path for path in _fastapi_paths() if not path.startswith(tuple(table.FASTAPI_FAMILIES)))
    problems = ([f"route {method} {rule} added by a new MLflow: decide its expected outcome in authz_routes.py"
                 for method, rule in missing + [("?", path) for path in auth_missing + families_missing]]
                + [f"route {method} {rule} is in authz_routes.py but MLflow no longer serves it: remove it"
                   for method, rule in gone])
    assert not problems, "\n".join(problems)


# --- the stack, the users, alice's data ----------------------------------------------------------

@pytest.fixture(scope="module")
def stack() -> Iterator[RehearsalStack]:
    """auth.mode mlflow with the deployed default permission (not set here), two servers (one under a prefix),
    one uvicorn worker each (ONE_WORKER: authorization, not the worker count, is the subject)."""
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module")
def users(stack) -> dict[str, tuple[str, str]]:
    admin = stack.variants["default"]
    created = {name: (name, secrets.token_urlsafe(18)) for name in ("alice", "bob")}
    for username, password in created.values():
        response = requests.post(f"{admin.tracking_uri}/api/2.0/mlflow/users/create", timeout=30,
                                 auth=(admin.username, admin.password),
                                 json={"username": username, "password": password})
        assert response.status_code == 200, response.text
    cheap_hashes(stack, [*created.values(), (admin.username, admin.password)])
    return created


@pytest.fixture(scope="module")
def ids(stack, users, tmp_path_factory) -> dict[str, str]:
    """alice's data of every kind, SECRET in every value she writes."""
    import mlflow
    import mlflow.genai.datasets

    variant = stack.variants["default"]
    nonce = secrets.token_hex(4)
    notes = tmp_path_factory.mktemp("alice") / "notes.txt"
    notes.write_text(f"{SECRET}\n")
    with _as(variant, *users["alice"]) as alice:
        experiment = alice.create_experiment(f"alice-{nonce}", tags={"secret": SECRET})
        opened = alice.create_experiment(f"alice-open-{nonce}", tags={"open": "yes"})
        run = alice.create_run(experiment, tags={"note": SECRET}).info.run_id
        alice.log_param(run, "p", SECRET)
        alice.log_metric(run, "loss", 0.25)
        alice.log_artifact(run, str(notes))
        logged = alice.create_logged_model(experiment, name="alice-model", source_run_id=run,
                                           params={"p": SECRET}, tags={"t": SECRET}).model_id
        model = f"alice-registered-{nonce}"
        alice.create_registered_model(model, tags={"secret": SECRET}, description=SECRET)
        version = alice.create_model_version(model, f"models:/{logged}", run_id=run, description=SECRET,
                                             model_id=logged)
        alice.set_registered_model_alias(model, "champion", version.version)
        mlflow.set_experiment(experiment_id=experiment)
        with mlflow.start_span("alice-span") as span:
            span.set_inputs({"question": SECRET})
            span.set_outputs({"answer": SECRET})
        mlflow.flush_trace_async_logging()
        trace = mlflow.get_last_active_trace_id()
        assessment = mlflow.log_feedback(trace_id=trace, name="quality", value=SECRET, rationale=SECRET).assessment_id
        prompt = f"alice-prompt-{nonce}"
        mlflow.genai.register_prompt(name=prompt, template=f"{SECRET} {{{{name}}}}")
        dataset = mlflow.genai.datasets.create_dataset(name=f"alice-ds-{nonce}", experiment_id=[experiment],
                                                       tags={"secret": SECRET})
        dataset.merge_records([{"inputs": {"question": SECRET}, "expectations": {"answer": SECRET}}])
    with _as(variant, *users["bob"]) as bob:  # bob's own objects, the decoys of the body tricks
        bobs_experiment = bob.create_experiment(f"bob-{nonce}")
        bobs_run = bob.create_run(bobs_experiment).info.run_id
        bobs_model = bob.create_registered_model(f"bob-registered-{nonce}").name
    return {"exp": experiment, "exp_name": f"alice-{nonce}", "opened": opened, "run": run, "logged": logged,
            "model": model, "prompt": prompt, "trace": trace, "assessment": assessment, "dataset": dataset.dataset_id,
            "alice": "alice", "bob": "bob", "bob_exp": bobs_experiment, "bob_run": bobs_run, "bob_model": bobs_model}


# --- probes --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Probe:
    route: table.Route
    variant: str
    url: str
    spelling: str
    auth: tuple[str, str]
    query: Optional[dict[str, Any]]
    body: Optional[dict[str, Any]]
    marker: str
    control: bool = False
    """alice's own request (READ: must succeed; HIDDEN: must hold her data)."""
    headers: Optional[dict[str, str]] = None
    content: Optional[bytes] = None
    """A raw body (sent instead of `body` as JSON) with the Content-Type in `headers`."""
    on_decoys: bool = False
    """The request names B's own objects where the handler reads: B may succeed (on his own objects);
    acting on A's instead shows in alice_unchanged."""


def _fill(value: Any, ids: dict[str, str]) -> Any:
    """Templates ($exp, ...) filled in strings, dicts and lists; $nonce fresh for each request."""
    if isinstance(value, str):
        return string.Template(value).safe_substitute(ids, nonce=secrets.token_hex(4))
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    return value


def _path(route: table.Route) -> str:
    variables = {**table.PATH_VARIABLES, **(route.path or {})}
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda match: variables[match.group(1)], route.rule)


def _forms(route: table.Route, served: set[tuple[str, str]]) -> list[str]:
    """The rule as served: its /api/ form and its /ajax-api/ form, where MLflow serves each."""
    ajax = re.sub(r"^/api/", "/ajax-api/", route.rule)
    if route.mode:  # the auth app registers both forms of each of its routes
        return [route.rule, ajax] if ajax != route.rule else [route.rule]
    return [rule for rule in dict.fromkeys([route.rule, ajax]) if (route.method, rule) in served]


def _names(route: table.Route, field: str) -> bool:
    text = json.dumps([route.query, route.body, _path(route)])
    return re.search(rf"\${field}\b", text) is not None


def probes(variant: Variant, ids: dict[str, str], users: dict, routes: list[table.Route], spellings: bool,
           mode: str = "mlflow") -> list[Probe]:
    """Every request of the sweep: each route in each served form as bob; with `spellings`, each id
    spelling and path trick on the /api/ form; alice's control requests."""
    served = _flask_routes()
    made = []

    def add(route: table.Route, rule_path: str, spelling: str, values: dict[str, str], auth, control=False):
        path = _fill(rule_path, values)
        made.append(Probe(route, variant.name, f"{variant.tracking_uri}{path}", spelling, auth,
                          _fill(route.query, values), _fill(route.body, values),
                          _fill(route.marker or SECRET, ids), control))

    for route in routes:
        if route.mode not in (None, mode):
            continue
        paths = [_path(dataclasses.replace(route, rule=rule)) for rule in _forms(route, served)]
        for path in paths:
            add(route, path, "as named", ids, users["bob"])
        checked = route.outcome in table.REFUSED_OUTCOMES | {table.HIDDEN}
        if checked and route.outcome in (table.READ, table.HIDDEN):
            add(route, paths[0], "as named (alice)", ids, users["alice"], control=True)
        if not (spellings and checked):
            continue
        for name, (field, how) in table.SPELLINGS.items():
            if _names(route, field):
                add(route, paths[0], name, {**ids, field: table.spell(ids[field], how)}, users["bob"])
        if route.outcome == table.READ and paths[0].startswith("/api/"):
            for name, trick in table.PATH_TRICKS.items():
                add(route, trick(paths[0]), name, ids, users["bob"])
        made.extend(_body_tricks(route, variant, paths[0], ids, users["bob"]))
    otlp = Probe(table.OTLP_INGEST, variant.name, f"{variant.tracking_uri}/v1/traces", "as named", users["bob"],
                 None, None, SECRET, headers={"x-mlflow-experiment-id": ids["exp"],
                                              "Content-Type": "application/x-protobuf"})
    return made + [otlp]


def _body_tricks(route: table.Route, variant: Variant, path: str, ids: dict[str, str], auth) -> list[Probe]:
    """Requests the auth app could read differently from the handler (review of issue 29): alice's
    body sent as text/plain with bob's objects in the query (the auth app reads a DELETE's query
    when its body is not JSON), the reverse (bob's objects in a JSON body, alice's in the query), a
    body naming bob's run as run_uuid and alice's as runId, and a query naming alice's run beside bob's
    under the other name (upload-artifact writes to run_uuid, the auth app checks run_id)."""
    if route.outcome not in table.REFUSED_OUTCOMES:
        return []
    url = f"{variant.tracking_uri}{path}"
    query = _fill(route.query or {}, ids)
    made = [Probe(route, variant.name, url, f"{field} beside a decoy {decoy}", auth, {**query, decoy: ids["bob_run"]},
                  _fill(route.body, ids), SECRET)
            for field, decoy in (("run_uuid", "run_id"), ("run_id", "run_uuid")) if field in query]
    if route.body is None:
        return made
    body = _fill(route.body, ids)
    decoys = _fill(route.body, {**ids, "exp": ids["bob_exp"], "run": ids["bob_run"], "model": ids["bob_model"]})
    query = {key: value for key, value in decoys.items() if isinstance(value, str)}
    made += [Probe(route, variant.name, url, "text/plain body, decoy query", auth, query, None, SECRET,
                   headers={"Content-Type": "text/plain"}, content=json.dumps(body).encode()),
             Probe(route, variant.name, url, "decoy JSON body, A's query", auth,
                   {key: value for key, value in body.items() if isinstance(value, str)}, decoys, SECRET,
                   on_decoys=True)]
    if "run_id" in body:
        aliased = {**{key: value for key, value in body.items() if key != "run_id"},
                   "runId": body["run_id"], "run_uuid": ids["bob_run"]}
        made.append(Probe(route, variant.name, url, "runId beside a decoy run_uuid", auth, None, aliased, SECRET))
    return made


_SESSIONS = threading.local()


def _send(probe: Probe) -> requests.Response:
    """The probe's answer; a request that hangs is answered 599 (a route B can make hang is an offence)."""
    session = getattr(_SESSIONS, "session", None) or requests.Session()
    _SESSIONS.session = session
    data = probe.content if probe.content is not None else (b"" if probe.headers else None)
    try:
        return session.request(probe.route.method, probe.url, params=probe.query, json=probe.body, auth=probe.auth,
                               headers=probe.headers, data=data, timeout=TIMEOUT_SECONDS, allow_redirects=False)
    except requests.RequestException as error:
        hung = requests.Response()
        hung.status_code, hung._content = 599, f"no answer: {type(error).__name__}".encode()
        return hung


def _offence(probe: Probe, response: requests.Response, readable: bool, writable: bool) -> Optional[str]:
    """What is wrong with this answer, or None."""
    outcome, status = probe.route.outcome, response.status_code
    leaked = len(response.content) if probe.marker in response.text else 0
    succeeded = 200 <= status < 300
    if probe.control:
        works = succeeded if outcome == table.READ else leaked > 0
        return None if works else "alice's own request failed (fix the table's request)"
    if outcome in (table.READ, table.DENY, table.HIDDEN, table.FILTERED) and readable:
        return None  # the deployed default lets every user read (checked in phase 2 with an explicit deny)
    if outcome == table.WRITE and writable:
        return None
    if status == 599:
        return f"no answer in {TIMEOUT_SECONDS} s"
    if leaked:
        return f"leaked {leaked} bytes"
    if outcome in table.REFUSED_OUTCOMES and succeeded and not probe.on_decoys:
        return "answered 2xx (allowed)"
    if outcome == table.PUBLIC and not succeeded:
        return "a public route refused"
    return None


def sweep(made: list[Probe], readable: bool = False, writable: bool = False) -> list[str]:
    """Send every probe (reads first, then writes), concurrently; every offence, one line each."""
    offences = []
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        for writes in (False, True):
            group = [probe for probe in made if (probe.route.outcome == table.WRITE) == writes]
            for probe, response in zip(group, pool.map(_send, group)):
                problem = _offence(probe, response, readable, writable)
                if problem:
                    offences.append(f"[{probe.variant}] {probe.route.method} {probe.url} ({probe.spelling}) "
                                    f"{response.status_code}: {problem}: {response.text[:160]!r}")
    return sorted(offences)


ALICES_OBJECTS = {
    "experiment": ("/api/2.0/mlflow/experiments/get", {"experiment_id": "$exp"}),
    "run": ("/api/2.0/mlflow/runs/get", {"run_id": "$run"}),
    "metric history": ("/api/2.0/mlflow/metrics/get-history", {"run_id": "$run", "metric_key": "loss"}),
    "artifacts": ("/api/2.0/mlflow/artifacts/list", {"run_id": "$run"}),
    "logged model": ("/api/2.0/mlflow/logged-models/$logged", None),
    "registered model": ("/api/2.0/mlflow/registered-models/get", {"name": "$model"}),
    "model version": ("/api/2.0/mlflow/model-versions/get", {"name": "$model", "version": "1"}),
    "alias": ("/api/2.0/mlflow/registered-models/alias", {"name": "$model", "alias": "champion"}),
    "prompt": ("/api/2.0/mlflow/registered-models/get", {"name": "$prompt"}),
    "trace": ("/api/3.0/mlflow/traces/$trace", None),
    "assessment": ("/api/3.0/mlflow/traces/$trace/assessments/$assessment", None),
    "dataset": ("/api/3.0/mlflow/datasets/$dataset", None),
    "dataset records": ("/api/3.0/mlflow/datasets/$dataset/records", None),
    "experiment's runs": ("/api/2.0/mlflow/runs/search", {"experiment_ids": "$exp"}),
}
"""What A has, read by the admin before and after a sweep: a write B got through changes one of these
(a tag, a param, a name, a deleted state, a last-updated time), whichever route and spelling did it."""


def alices_objects(variant: Variant, ids: dict[str, str]) -> dict[str, str]:
    snapshot = {}
    for name, (path, query) in ALICES_OBJECTS.items():
        method, body = ("POST", _fill({"experiment_ids": [ids["exp"]]}, ids)) if name == "experiment's runs" else (
            "GET", None)
        response = requests.request(method, f"{variant.tracking_uri}{_fill(path, ids)}", timeout=30, json=body,
                                    params=None if body else _fill(query, ids),
                                    auth=(variant.username, variant.password))
        snapshot[name] = f"{response.status_code} {response.text}"
    return snapshot


def alice_unchanged(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [f"alice's {name} changed during the sweep:\n  before {before[name][:300]!r}\n  after  {after[name][:300]!r}"
            for name in before if before[name] != after[name]]


def _grant(variant: Variant, username: str, resource_type: str, resource_id: str, permission: str) -> None:
    response = requests.post(f"{variant.tracking_uri}{GRANT}", auth=(variant.username, variant.password), timeout=30,
                             json={"username": username, "resource_type": resource_type,
                                   "resource_id": resource_id, "permission": permission})
    assert response.status_code == 200, (resource_type, resource_id, permission, response.text[:300])


# --- the sweeps ----------------------------------------------------------------------------------

def test_without_a_grant_bob_gets_what_the_default_permission_gives(stack, ids, users, report_figure):
    default = stack.base_config.auth.default_permission
    started = time.monotonic()
    made = [probe for variant in stack.variants.values()
            for probe in probes(variant, ids, users, table.ROUTES, spellings=False)]
    before = alices_objects(stack.variants["default"], ids)
    offences = sweep(made, readable=default in ALLOWS_READING, writable=default in ALLOWS_WRITING)
    if default not in ALLOWS_WRITING:
        offences += alice_unchanged(before, alices_objects(stack.variants["default"], ids))
    report_figure(f"no-grant sweep (default {default})", f"{len(made)} requests in "
                  f"{time.monotonic() - started:.1f}", "s")
    assert not offences, f"{len(offences)} offences:\n" + "\n".join(offences)


@pytest.fixture(scope="module")
def denied(stack, ids) -> dict[str, str]:
    """bob: READ on alice's other experiment; an explicit DENY on E, her model and her prompt."""
    variant = stack.variants["default"]
    _grant(variant, "bob", "experiment", ids["opened"], "READ")
    _grant(variant, "bob", "experiment", ids["exp"], DENY)
    for name in (ids["model"], ids["prompt"]):
        _grant(variant, "bob", "registered_model", name, DENY)
    return ids


def test_a_denied_experiment_stays_denied_in_every_spelling(stack, denied, users, report_figure):
    started = time.monotonic()
    made = [probe for variant in stack.variants.values()
            for probe in probes(variant, denied, users, table.ROUTES, spellings=True)]
    before = alices_objects(stack.variants["default"], denied)
    offences = sweep(made) + alice_unchanged(before, alices_objects(stack.variants["default"], denied))
    report_figure("denied sweep with spellings", f"{len(made)} requests in {time.monotonic() - started:.1f}", "s")
    assert not offences, f"{len(offences)} offences:\n" + "\n".join(offences)


def test_the_granted_experiment_is_readable_and_not_writable(stack, denied, users):
    for variant in stack.variants.values():
        read = requests.get(f"{variant.tracking_uri}/api/2.0/mlflow/experiments/get", auth=users["bob"],
                            params={"experiment_id": denied["opened"]}, timeout=30)
        assert read.status_code == 200 and "alice-open-" in read.text, (variant.name, read.status_code, read.text[:200])
        write = requests.post(f"{variant.tracking_uri}/api/2.0/mlflow/experiments/set-experiment-tag",
                              auth=users["bob"], timeout=30,
                              json={"experiment_id": denied["opened"], "key": "bob", "value": "1"})
        assert write.status_code == 403, (variant.name, write.status_code, write.text[:200])
