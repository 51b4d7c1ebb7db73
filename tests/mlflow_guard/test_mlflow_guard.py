"""mlflow_guard (issue 29): experiment ids in MLflow's spelling only, wherever a request names them;
the internal listener's scrape; the image and the rehearsal register the guarded apps under MLflow's
own app names. (Through real Nginx and MLflow: tests/rehearsal/test_18_authz_bypasses.py.)"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_guard import asgi, ids
from rehearsal import processes

REPO = Path(__file__).resolve().parents[2]


def _run(coroutine):
    """On a loop of its own, left unset: asyncio.run would unset the main thread's loop, which the
    Pulumi tests after these still use."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()
SPELLINGS = ["01", "001", " 1", "1 ", "+1", "-1", "1.0", "1_0", "١", "0x1", "1e0"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_other_spelling_is_refused_wherever_an_id_is_named(spelling):
    assert ids.check_query_string(f"experiment_ids=1&experiment_ids={spelling}".encode()) is not None
    assert ids.check_query_string(f"experimentId={spelling}".encode()) is not None
    body = json.dumps({"trace": {"trace_info": {"trace_location": {"mlflow_experiment": {"experiment_id": spelling}}}}})
    assert ids.check_body("/api/3.0/mlflow/traces", "application/json", body.encode()) is not None
    assert ids.check_body("/x", "text/plain", json.dumps(json.dumps({"experiment_id": spelling})).encode()) is not None
    form = f"experiment_id={spelling}".encode()
    assert ids.check_body("/x", ids.FORM_TYPE, form) is not None
    assert ids.check_header([(b"X-MLflow-Experiment-Id", spelling.encode())]) is not None


@pytest.mark.parametrize("value", ["0", "1", "42", "", None])
def test_mlflows_own_spelling_passes(value):
    document = {"experiment_ids": [value], "experiment_id": value, "run_id": "01"}
    assert ids.check_body("/api/2.0/mlflow/runs/search", "application/json", json.dumps(document).encode()) is None


def test_json_numbers_and_objects_are_refused():
    for value in (1, 1.0, True, {"id": "1"}):
        assert ids.check_json({"experiment_id": value}) is not None


@pytest.mark.parametrize("query,variables", [
    ('{ mlflowGetExperiment(input: {experimentId: "01"}) { experiment { name } } }', None),
    ('{ mlflowSearchRuns(input: {experimentIds: ["1", "01"]}) { runs { info { runId } } } }', None),
    ('query q($x: String) { mlflowGetExperiment(input: {experimentId: $x}) { experiment { name } } }', {"x": " 1"}),
    ('query q($x: String = "01") { mlflowGetExperiment(input: {experimentId: $x}) { experiment { name } } }', {}),
])
def test_graphql_ids_in_the_query_text_and_through_variables(query, variables):
    body = json.dumps({"query": query, "variables": variables}).encode()
    assert ids.check_body("/graphql", "application/json", body) is not None
    canonical = json.dumps({"query": re.sub(r'"0?1"| 1', '"1"', query), "variables": {"x": "1"}}).encode()
    assert ids.check_body("/graphql", "application/json", canonical) is None


def test_the_artifact_paths_first_segment():
    route = "/api/2.0/mlflow-artifacts/artifacts"
    assert ids.check_artifact_path(f"{route}/01/run/artifacts/x", b"") is not None
    assert ids.check_artifact_path(f"{route}/workspaces/team/007/run", b"") is not None
    assert ids.check_artifact_path(route, b"path=01/run/artifacts") is not None
    assert ids.check_artifact_path(f"{route}/1/run/artifacts/01", b"path=1/run") is None


# --- the ASGI guard ------------------------------------------------------------------------------

class _Recorder:
    """The inner app: records what reached it."""

    def __init__(self):
        self.bodies: list[bytes] = []
        self.content_types: list[bytes] = []

    async def __call__(self, scope, receive, send):
        self.bodies.append(await asgi.read_body(receive))
        self.content_types.append(b",".join(value for name, value in scope["headers"] if name == b"content-type"))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


CREDENTIALS = (b"authorization", b"Basic Ym9iOnNlY3JldA==")
"""Any credentials: the guard reads only bodies of requests that carry some (the auth app checks them)."""


def _call(guard, path: str, body: bytes = b"", query: bytes = b"", headers=(), method: str = "POST",
          content_type: bytes = b"application/json"):
    chunks = [body[:3], body[3:]]
    sent: list[dict] = []

    async def receive():
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query,
             "headers": [(b"content-type", content_type)] * bool(content_type) + list(headers or [CREDENTIALS])}
    _run(guard(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_the_guard_refuses_before_the_auth_app_and_replays_what_it_read():
    inner = _Recorder()
    guard = asgi.Guard(inner)
    good = json.dumps({"experiment_ids": ["1"]}).encode()
    assert _call(guard, "/api/2.0/mlflow/runs/search", good) == (204, b"")
    assert inner.bodies == [good]
    status, body = _call(guard, "/api/2.0/mlflow/runs/search", json.dumps({"experiment_ids": ["01"]}).encode())
    assert status == 400 and json.loads(body)["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'01'" in json.loads(body)["message"]
    assert _call(guard, "/api/2.0/mlflow/experiments/get", query=b"experiment_id=%2B1")[0] == 400
    assert len(inner.bodies) == 1


def test_a_delete_or_patch_body_reaches_the_auth_app_as_the_json_the_handler_reads():
    """Review of issue 29: the auth app read ?name=<bob's model> from the query of a text/plain DELETE,
    the handler deleted the body's <alice's model> (it reads DELETE bodies as JSON whatever they say).
    Marked JSON, the body is what the auth app reads too (MLflow's UI sends such text/plain DELETEs)."""
    inner, path = _Recorder(), "/api/2.0/mlflow/registered-models/delete"
    body = json.dumps({"name": "alice-model"}).encode()
    for method, content_type in (("DELETE", b"text/plain;charset=UTF-8"), ("DELETE", b""), ("PATCH", b"text/plain"),
                                 ("DELETE", b"application/json"), ("DELETE", b"application/merge-patch+json")):
        assert _call(asgi.Guard(inner), path, body, b"name=bob-model", method=method,
                     content_type=content_type)[0] == 204
    assert inner.content_types == [b"application/json"] * 4 + [b"application/merge-patch+json"]
    assert inner.bodies == [body] * 5
    _call(asgi.Guard(inner), path, b"", b"name=bob-model", method="DELETE", content_type=b"text/plain")
    _call(asgi.Guard(inner), path, body, method="POST", content_type=b"text/plain")
    assert inner.content_types[-2:] == [b"text/plain", b"text/plain"], "no body, or a POST: left as sent"


@pytest.mark.parametrize("fields", [{"run_uuid": "bob", "runId": "alice"}, {"run_uuid": "bob", "run_id": "alice"},
                                    {"runUuid": "bob", "runId": "alice"}])
def test_a_body_naming_two_runs_is_refused(fields):
    """Review of issue 29: the auth app checked run_uuid (bob's), the handler wrote to runId (alice's)."""
    inner = _Recorder()
    status, answer = _call(asgi.Guard(inner), "/api/2.0/mlflow/runs/log-parameter",
                           json.dumps({**fields, "key": "k", "value": "v"}).encode())
    assert status == 400 and "names different runs" in json.loads(answer)["message"] and not inner.bodies
    same = json.dumps({"run_uuid": "bob", "run_id": "bob", "key": "k", "value": "v"}).encode()
    assert _call(asgi.Guard(inner), "/api/2.0/mlflow/runs/log-parameter", same)[0] == 204


@pytest.mark.parametrize("header", [b"x-mlflow-experiment-id", b"X-Mlflow-Run-Id", b"content-type", b"authorization"])
def test_a_header_mlflow_reads_is_refused_when_sent_twice(header):
    """Review of issue 29: the guard's OTLP check read the last X-Mlflow-Experiment-Id, MLflow the first."""
    inner = _Recorder()
    twice = ([CREDENTIALS, (header, b"2"), (header, b"1")] if header != b"authorization"
             else [(header, b"2"), (header, b"1")])
    status, answer = _call(asgi.Guard(inner), "/v1/traces", b"\x0a\x00", headers=twice, content_type=b"")
    assert status == 400 and "more than once" in json.loads(answer)["message"] and not inner.bodies
    assert _call(asgi.Guard(inner), "/v1/traces", b"",
                 headers=[CREDENTIALS, (b"x-other", b"1"), (b"x-other", b"2")])[0] == 204


def test_artifact_uploads_stream_on_unread():
    inner = _Recorder()
    payload = b'{"experiment_id": "01"}'  # a file's content, not a request naming an experiment
    assert _call(asgi.Guard(inner), "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/f.json", payload)[0] == 204
    assert inner.bodies == [payload]


def test_the_scrape_is_answered_only_when_the_internal_listener_marks_it(tmp_path, monkeypatch):
    from prometheus_client import Counter, values

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: 7))
    Counter("guard_test_requests", "a worker's counter", registry=None).inc(3)
    inner = _Recorder()
    guard = asgi.Guard(inner)
    marked = [(asgi.SCRAPE_HEADER.encode(), asgi.SCRAPE_HEADER_VALUE.encode())]
    status, body = _run(_get(guard, "/metrics", marked))
    assert status == 200 and b"guard_test_requests_total 3.0" in body
    assert _run(_get(guard, "/metrics", []))[0] == 204  # to the auth app, which asks for credentials
    assert _run(_get(guard, "/metrics/", marked))[0] == 204


async def _get(guard, path, headers):
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await guard({"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": headers},
                receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


# --- the image's layout --------------------------------------------------------------------------

def test_the_dockerfile_copies_the_layout_the_rehearsal_links():
    dockerfile = (REPO / "docker/mlflow/Dockerfile").read_text()
    copied = dict((target.removeprefix("/opt/mlflow-platform/"), source)
                  for source, target in re.findall(r"^COPY (\S+) (/opt/mlflow-platform/\S+)$", dockerfile, re.M))
    assert copied == processes.IMAGE_PLATFORM_LAYOUT
    assert "PYTHONPATH=/opt/mlflow-platform" in dockerfile


def test_mlflow_server_finds_the_guarded_apps_under_its_own_names(tmp_path):
    """What `mlflow server --app-name ...` resolves with the image's PYTHONPATH (a fresh interpreter:
    entry points are read from sys.path at startup)."""
    code = ("from mlflow.server import _find_app, _is_factory\n"
            "print([(_find_app(n), _is_factory(_find_app(n))) for n in ('basic-auth', 'oidc-auth')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": processes.image_python_path(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str([("mlflow_guard.app:basic_auth", True), ("mlflow_guard.app:oidc_auth", True)])


# --- what an anonymous or oversized request costs (round-2 review of issue 29) ----------------------

class _FirstChunk:
    """The inner app: records the first body message it receives (the guard replays a body it read
    as one message; a body it left unread arrives in the client's own chunks)."""

    def __init__(self):
        self.first: list[bytes] = []

    async def __call__(self, scope, receive, send):
        self.first.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize("path", ["/api/2.0/mlflow/runs/search", "/v1/traces"])
def test_an_anonymous_body_goes_to_the_auth_app_unparsed(path, monkeypatch):
    """Reproduced: an anonymous 50 MB JSON body made a worker parse it (1 GB) and die, a 1 MB gzip on
    /v1/traces inflated to 2 GB, both before the auth app answered 401."""
    parsed = []
    monkeypatch.setattr(asgi, "_body_problem", lambda *args: parsed.append(args))
    monkeypatch.setattr(asgi.otlp, "read_export", lambda *args: parsed.append(args))
    inner, body = _FirstChunk(), b"[" + b"[]," * 1000 + b"[]]"
    assert _call(asgi.Guard(inner), path, body, headers=[(b"x-nothing", b"1")])[0] == 401
    assert inner.first == [body] and not parsed, "the guard parsed the body of a request without credentials"


@pytest.mark.parametrize("path", ["/api/2.0/mlflow/runs/search", "/v1/traces"])
def test_an_anonymous_body_past_the_limit_or_the_budget_never_reaches_the_bridge(path, monkeypatch):
    """Review 24 (azure 3 F1): MLflow's bridge to its Flask routes holds a body whole before the auth app
    answers 401 (an anonymous 600 MiB POST cost 900 MB): the guard receives it within its bounds first."""
    monkeypatch.setattr(asgi, "MAX_INSPECTED_BODY_BYTES", 1000)
    inner = _FirstChunk()
    anonymous = [(b"x-nothing", b"1")]
    assert _call(asgi.Guard(inner), path, b"\0" * 5000, headers=anonymous)[0] == 413 and not inner.first
    assert _call(asgi.Guard(inner), path, b"{}", headers=[*anonymous, (b"content-length", b"5000")])[0] == 413
    monkeypatch.setattr(asgi, "BUFFER_BUDGET_BYTES", 2)  # spent by the body's first message
    assert _call(asgi.Guard(inner), path, b"\0" * 100, headers=anonymous)[0] == 503 and not inner.first


def test_a_body_past_the_limit_is_answered_413_unparsed(monkeypatch):
    monkeypatch.setattr(asgi, "MAX_INSPECTED_BODY_BYTES", 1000)
    inner = _FirstChunk()
    status, answer = _call(asgi.Guard(inner), "/api/2.0/mlflow/runs/search", b"[" + b"[]," * 400 + b"[]]")
    assert status == 413 and "artifact routes" in json.loads(answer)["message"] and not inner.first
    declared = [CREDENTIALS, (b"content-length", b"5000")]
    assert _call(asgi.Guard(inner), "/api/2.0/mlflow/runs/search", b"{}", headers=declared)[0] == 413


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_an_otlp_body_that_inflates_past_the_limit_is_answered_413(monkeypatch, encoding):
    import gzip
    import zlib

    monkeypatch.setattr(asgi, "MAX_INSPECTED_BODY_BYTES", 1 << 20)
    bomb = (gzip.compress if encoding == "gzip" else zlib.compress)(b"\0" * (8 << 20))
    inner = _FirstChunk()
    status, _ = _call(asgi.Guard(inner), "/v1/traces", bomb, content_type=b"application/x-protobuf",
                      headers=[CREDENTIALS, (b"content-encoding", encoding.encode())])
    assert status == 413 and not inner.first and len(bomb) < 20_000


@pytest.mark.parametrize("query", [b"run_id=bob&run_uuid=alice", b"run_uuid=alice&run_id=bob",
                                   b"run_id=bob&run_id=alice"])
def test_a_query_naming_two_runs_is_refused(query):
    """Reproduced: upload-artifact?run_id=<bob's>&run_uuid=<alice's>: the auth app checked run_id,
    the handler wrote alice's artifact (it reads run_uuid)."""
    inner = _Recorder()
    status, answer = _call(asgi.Guard(inner), "/ajax-api/2.0/mlflow/upload-artifact", b"payload", query)
    assert status == 400 and "names different runs" in json.loads(answer)["message"] and not inner.bodies
    assert _call(asgi.Guard(inner), "/ajax-api/2.0/mlflow/upload-artifact", b"x", b"run_uuid=bob&run_id=bob")[0] == 204
    form = _call(asgi.Guard(inner), "/api/2.0/mlflow/runs/set-tag", b"run_id=bob&run_uuid=alice",
                 content_type=b"application/x-www-form-urlencoded")
    assert form[0] == 400


def test_upload_artifact_streams_on_unread_past_the_body_limit(monkeypatch):
    """Round-3 review: a 17 MB upload-artifact got 413; its run is in the query, which is checked."""
    monkeypatch.setattr(asgi, "MAX_INSPECTED_BODY_BYTES", 1000)
    inner, payload = _FirstChunk(), b"\0" * 5000
    assert _call(asgi.Guard(inner), "/ajax-api/2.0/mlflow/upload-artifact", payload, b"run_uuid=bob&path=f.bin",
                 content_type=b"application/octet-stream")[0] == 401
    assert inner.first == [payload[:3]], "read by the guard"


@pytest.mark.parametrize("prefix", ["/mlflow-artifacts", "/ml/api/2.0/mlflow-artifacts"])
def test_a_static_prefix_naming_the_file_routes_does_not_switch_the_body_checks_off(monkeypatch, prefix):
    """Round-4 review: the file routes were found by substring, so server.staticPrefix /mlflow-artifacts
    let every JSON body past the id and run checks."""
    monkeypatch.setenv(asgi.STATIC_PREFIX_ENV, prefix)
    inner = _Recorder()
    assert _call(asgi.Guard(inner), f"{prefix}/api/2.0/mlflow/runs/create", b'{"experiment_id": "01"}')[0] == 400
    assert _call(asgi.Guard(inner), f"{prefix}/api/2.0/mlflow/runs/set-tag",
                 b'{"run_id": "a", "run_uuid": "b"}')[0] == 400
    upload = b'{"experiment_id": "01"}'  # a file's bytes, streamed on unread under the prefix and at the root
    for path in (f"{prefix}/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/f.json",
                 "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/f.json",
                 f"{prefix}/ajax-api/2.0/mlflow/upload-artifact"):
        assert _call(asgi.Guard(inner), path, upload)[0] == 204, path
    assert inner.bodies == [upload] * 3


def test_at_most_two_bodies_are_parsed_at_once(monkeypatch):
    """Round-4 review: any credential header, valid or not, made the guard parse a body (hundreds of MB
    for a 15 MiB JSON); parses are limited per worker so such requests queue instead of adding up."""
    import threading
    import time

    running, peak, lock = [0], [0], threading.Lock()
    real = asgi._body_problem

    def slow(scope, body):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return real(scope, body)

    monkeypatch.setattr(asgi, "_body_problem", slow)
    guard, sent = asgi.Guard(_Recorder()), []

    async def one():
        chunks = [b"{}"]

        async def receive():
            return {"type": "http.request", "body": chunks.pop() if chunks else b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/api/2.0/mlflow/runs/search", "query_string": b"",
                 "headers": [CREDENTIALS, (b"content-type", b"application/json")]}
        await guard(scope, receive, send)

    async def many():
        await asyncio.gather(*(one() for _ in range(8)))

    _run(many())
    assert peak[0] == asgi.MAX_CONCURRENT_PARSES and len([m for m in sent if m.get("status") == 204]) == 8


def test_bodies_held_by_slow_clients_stay_within_the_workers_budget(monkeypatch):
    """Round-5 review: with a fake credential, connections that send all but the last bytes of a
    12 MB body each kept it in the worker (8 connections: +117 MiB). Past the budget, further bodies
    are answered 503 at once; a finished body releases its share."""
    monkeypatch.setattr(asgi, "BUFFER_BUDGET_BYTES", 10_000)
    statuses: list[int] = []
    release = None

    async def one(stall: bool):
        parts = [b"[" + b"1," * 2000, b"1]"]

        async def receive():
            if len(parts) == 1 and stall:
                await release.wait()
            return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

        async def send(message):
            if "status" in message:
                statuses.append(message["status"])

        scope = {"type": "http", "method": "POST", "path": "/api/2.0/mlflow/runs/log-batch", "query_string": b"",
                 "headers": [CREDENTIALS, (b"content-type", b"application/json")]}
        await asgi.Guard(_Recorder())(scope, receive, send)

    async def scenario():
        nonlocal release
        release = asyncio.Event()
        stalled = [asyncio.ensure_future(one(True)) for _ in range(4)]
        await asyncio.sleep(0.05)
        await one(False)  # the budget is spent by the stalled bodies: 503 at once
        release.set()
        await asyncio.gather(*stalled)
        await one(False)  # the stalled bodies finished: room again

    _run(scenario())
    assert statuses.count(503) >= 2 and statuses[-1] == 204, statuses


@pytest.mark.parametrize("location, read", [
    ("s3://b/archive/7/traces/tr-{id}/artifacts", True),
    ("s3://b/1/run/artifacts?/7/traces/tr-{id}/artifacts", False),
    ("s3://b/1/run/artifacts#/7/traces/tr-{id}/artifacts", False),
    ("file:///srv/x%3F/7/traces/tr-{id}/artifacts", False),
    ("s3://b/archive/1/../7/traces/tr-{id}/artifacts", False),
])
def test_an_archive_is_read_only_from_the_traces_own_folder(location, read):
    """Review 7: the archive check compared the end of the string; a `?` or `#` put that end in the
    query or fragment, which the storage code ignores, and the server read another folder's traces.pb."""
    from types import SimpleNamespace

    from mlflow_guard import traces

    trace_id = "0123456789abcdef" * 2
    info = SimpleNamespace(experiment_id="7", trace_id=f"tr-{trace_id}", request_id=f"tr-{trace_id}")
    checked = traces._checked_archive_location(lambda _: location.format(id=trace_id))
    if read:
        assert checked(info) == location.format(id=trace_id)
    else:
        with pytest.raises(Exception, match="trace"):
            checked(info)
