"""mlflow_guard.otlp (issue 29, adversarial review): OTLP ingestion cannot write into another
experiment's trace nor link to another experiment's run. Against a real MLflow SQLite store with
traces MLflow itself logged; the requests are the ones the reviewer sent (JSON and protobuf)."""

from __future__ import annotations

import asyncio
import json

import pytest

from mlflow_guard import asgi

EXPERIMENT_HEADER = "x-mlflow-experiment-id"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Alice's experiment with a run and a trace; bob's experiment."""
    import mlflow
    from mlflow.server import handlers
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root = tmp_path_factory.mktemp("otlp")
    uri = f"sqlite:///{root}/mlflow.db"
    store = SqlAlchemyStore(uri, str(root / "artifacts"))
    alice = store.create_experiment("alice")
    bob = store.create_experiment("bob")
    run = store.create_run(alice, "alice", 0, [], "run")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(experiment_id=alice)
        with mlflow.start_span("alice-span") as span:
            trace_id = span.trace_id
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.tracking.fluent._active_experiment_id = None
    handlers._tracking_store = store  # what _get_tracking_store() hands the guard in the server
    yield {"alice": alice, "bob": bob, "run": run.info.run_id, "trace": trace_id}
    handlers._tracking_store = None


def _json_body(trace_hex: str, span_hex: str = "00000000000000aa") -> bytes:
    span = {"traceId": trace_hex, "spanId": span_hex, "name": "bob", "startTimeUnixNano": "1",
            "endTimeUnixNano": "2"}
    return json.dumps({"resourceSpans": [{"resource": {"attributes": []},
                                          "scopeSpans": [{"spans": [span]}]}]}).encode()


def _protobuf_body(trace_hex: str) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes.fromhex(trace_hex), bytes.fromhex("00000000000000bb"), "bob"
    span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    return request.SerializeToString()


def _send(body: bytes, content_type: str, headers: dict[str, str]) -> tuple[int, bool]:
    """(status, whether the wrapped app was reached)."""
    reached: list[bool] = []
    sent: list[dict] = []

    async def app(scope, receive, send):
        message = await receive()
        reached.append(message["body"] == body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    all_headers = {"content-type": content_type, "authorization": "Basic Ym9iOnNlY3JldA==", **headers}
    scope = {"type": "http", "method": "POST", "path": "/v1/traces", "query_string": b"",
             "headers": [(key.encode(), value.encode()) for key, value in all_headers.items()]}
    loop = asyncio.new_event_loop()  # not asyncio.run: the Pulumi tests after these use the main loop
    try:
        loop.run_until_complete(asgi.Guard(app)(scope, receive, send))
    finally:
        loop.close()
    return sent[0]["status"], bool(reached) and reached[0]


def _otel_hex(trace_id: str) -> str:
    return trace_id.removeprefix("tr-")


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_spans_for_another_experiments_trace_are_refused(world, encoding):
    trace_hex = _otel_hex(world["trace"])
    body, content_type = ((_json_body(trace_hex), "application/json") if encoding == "json"
                          else (_protobuf_body(trace_hex), "application/x-protobuf"))
    assert _send(body, content_type, {EXPERIMENT_HEADER: world["bob"]}) == (403, False)
    assert _send(body, content_type, {EXPERIMENT_HEADER: world["alice"]}) == (200, True)


def test_a_new_trace_in_ones_own_experiment_passes_unchanged(world):
    body = _json_body("0123456789abcdef0123456789abcdef")
    assert _send(body, "application/json", {EXPERIMENT_HEADER: world["bob"]}) == (200, True)


def test_linking_to_a_run_of_another_experiment_is_refused(world):
    body = _json_body("fedcba9876543210fedcba9876543210")
    headers = {EXPERIMENT_HEADER: world["bob"], "x-mlflow-run-id": world["run"]}
    assert _send(body, "application/json", headers) == (403, False)
    headers[EXPERIMENT_HEADER] = world["alice"]
    assert _send(body, "application/json", headers) == (200, True)


def test_a_body_mlflow_cannot_parse_is_left_to_mlflow(world):
    assert _send(b"not otlp", "application/json", {EXPERIMENT_HEADER: world["bob"]}) == (200, True)


# --- a trace's data is read from its own folder only (mlflow_guard.traces; round-2 review) ----------

@pytest.fixture
def guarded_locations(monkeypatch):
    """mlflow_guard.traces installed for one test (what it replaces is put back afterwards)."""
    from mlflow.server import handlers
    from mlflow.store.tracking import sqlalchemy_store

    from mlflow_guard import traces

    monkeypatch.setattr(handlers, "_HANDLER_BLOCKED_TRACE_TAGS", handlers._HANDLER_BLOCKED_TRACE_TAGS)
    for module in (handlers, sqlalchemy_store):
        for name in traces.LOCATION_READERS:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, getattr(module, name))
    traces.install()
    return handlers


def test_a_trace_tagged_with_another_traces_folder_is_not_read(world, guarded_locations):
    """Reproduced on the rehearsal stack: bob set mlflow.artifactLocation of his own trace to alice's
    trace folder and read her spans through get-trace-artifact."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_ARTIFACT_LOCATION

    handlers = guarded_locations
    store = handlers._get_tracking_store()
    alices = store.get_trace_info(world["trace"])
    assert handlers._get_trace_artifact_repo(alices) is not None, "a trace's own folder is read"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store.db_uri)
    try:
        mlflow.set_experiment(experiment_id=world["bob"])
        with mlflow.start_span("bob-span") as span:
            bobs_trace = span.trace_id
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.tracking.fluent._active_experiment_id = None
    store.set_trace_tag(bobs_trace, MLFLOW_ARTIFACT_LOCATION, alices.tags[MLFLOW_ARTIFACT_LOCATION])
    with pytest.raises(MlflowException, match="not the trace's own folder") as refused:
        handlers._get_trace_artifact_repo(store.get_trace_info(bobs_trace))
    assert refused.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(MlflowException, match="immutable"):
        handlers._validate_trace_tag_handler_mutation(MLFLOW_ARTIFACT_LOCATION, "set")
    handlers._validate_trace_tag_handler_mutation("note", "set")  # other tags stay writable


def test_an_archived_payload_is_read_only_from_its_own_trace_folder(world, guarded_locations):
    from mlflow.exceptions import MlflowException
    from mlflow.tracing.constant import TraceTagKey

    store = guarded_locations._get_tracking_store()
    trace = store.get_trace_info(world["trace"])
    own = f"s3://archive/{world['alice']}/traces/{trace.trace_id}/artifacts"
    trace.tags[TraceTagKey.ARCHIVE_LOCATION] = own
    assert guarded_locations.get_archive_uri_for_trace(trace) == own
    trace.tags[TraceTagKey.ARCHIVE_LOCATION] = f"s3://archive/{world['bob']}/traces/tr-{'c' * 32}/artifacts"
    with pytest.raises(MlflowException, match="not the trace's own folder"):
        guarded_locations.get_archive_uri_for_trace(trace)


def _start_trace_answer(trace_id: str, experiment_id: str):
    """hooks.traces_start_in_their_own_experiment on a StartTraceV3 request, as the server routes it."""
    from mlflow.server import app as flask_app

    from mlflow_guard import hooks

    body = {"trace": {"trace_info": {"trace_id": trace_id, "request_time": "2026-01-01T00:00:00Z", "state": "OK",
                                     "trace_location": {"type": "MLFLOW_EXPERIMENT",
                                                        "mlflow_experiment": {"experiment_id": experiment_id}}}}}
    with flask_app.test_request_context("/api/3.0/mlflow/traces", method="POST", json=body):
        return hooks.traces_start_in_their_own_experiment()


def test_a_trace_is_started_only_in_its_own_experiment(world):
    """Reproduced (round-3 review): bob's StartTraceV3 naming alice's trace id and his experiment moved
    her trace (and its spans) into his experiment; he read it, she no longer could."""
    refused = _start_trace_answer(world["trace"], world["bob"])
    assert refused is not None and refused.status_code == 403 and b"another experiment" in refused.data
    assert _start_trace_answer(world["trace"], world["alice"]) is None, "the client's own repeat in its experiment"
    assert _start_trace_answer("tr-" + "e" * 32, world["bob"]) is None, "a new trace"


@pytest.mark.parametrize("trace_id", ["tr-" + "a" * 32 + "/", "tr-../1", "TR-" + "a" * 32, "tr-" + "a" * 31])
def test_a_trace_id_of_another_shape_is_refused(world, trace_id):
    """`tr-<alice's id>/` joined to alice's folder under an experiment whose artifact_location bob chose."""
    refused = _start_trace_answer(trace_id, world["bob"])
    assert refused is not None and refused.status_code == 400 and b"MLflow's shape" in refused.data


def test_a_trace_of_another_id_shape_is_not_read_even_where_its_folder_matches(world, guarded_locations):
    """A trace `tr-<alice's id>/` (written before the start check existed) in an experiment whose
    artifact_location is alice's: its folder joins to hers, exactly as the store would compute it."""
    import types

    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_ARTIFACT_LOCATION

    store = guarded_locations._get_tracking_store()
    alices = store.get_trace_info(world["trace"])
    squatter = types.SimpleNamespace(trace_id=world["trace"] + "/", experiment_id=world["alice"],
                                     tags={MLFLOW_ARTIFACT_LOCATION: alices.tags[MLFLOW_ARTIFACT_LOCATION]})
    with pytest.raises(MlflowException, match="not the trace's own folder"):
        guarded_locations.get_artifact_uri_for_trace(squatter)


def test_spans_hidden_in_a_second_gzip_member_are_refused(world):
    """Round-4 review: zlib stopped after the first gzip member, MLflow's gzip.decompress read both,
    and bob's span landed in alice's trace. A body that is not exactly one stream is refused."""
    import gzip

    harmless = _protobuf_body("0123456789abcdef0123456789abcdef")
    hidden = _protobuf_body(_otel_hex(world["trace"]))
    headers = {EXPERIMENT_HEADER: world["bob"], "content-encoding": "gzip"}
    assert _send(gzip.compress(harmless) + gzip.compress(hidden), "application/x-protobuf", headers) == (400, False)
    assert _send(gzip.compress(hidden), "application/x-protobuf", headers) == (403, False)
    assert _send(gzip.compress(harmless), "application/x-protobuf", headers) == (200, True)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_spans_cannot_write_mlflows_own_trace_tags(world, encoding):
    """Review 8: the store copies a root span's `mlflow.traceTag.<key>` attributes into the trace's tags
    unfiltered; bob set spansLocation, archiveLocation (alice's trace folder) and mlflow.user=alice on his
    own traces. A user tag (what MLflow's own exporter sends) passes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from google.protobuf.json_format import MessageToJson

    def export(key: str) -> bytes:
        request = ExportTraceServiceRequest.FromString(_protobuf_body("abcdef0123456789abcdef0123456789"))
        attribute = request.resource_spans[0].scope_spans[0].spans[0].attributes.add()
        attribute.key, attribute.value.string_value = key, "alice"
        if encoding == "protobuf":
            return request.SerializeToString()
        document = json.loads(MessageToJson(request))  # ids as base64; MLflow's reader takes OTLP's hex
        span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        span["traceId"], span["spanId"] = "abcdef0123456789abcdef0123456789", "00000000000000bb"
        return json.dumps(document).encode()

    content_type = "application/json" if encoding == "json" else "application/x-protobuf"
    for reserved in ("mlflow.traceTag.mlflow.user", "mlflow.traceTag.mlflow.trace.spansLocation",
                     "mlflow.traceTag.mlflow.trace.archiveLocation"):
        assert _send(export(reserved), content_type, {EXPERIMENT_HEADER: world["bob"]}) == (400, False), reserved
    assert _send(export("mlflow.traceTag.team"), content_type, {EXPERIMENT_HEADER: world["bob"]}) == (200, True)


# --- a trace start carries only its own trace's assessments (review 8) -----------------------------

@pytest.fixture(scope="module")
def alices_assessment(world) -> str:
    from mlflow.entities.assessment import AssessmentSource, Feedback
    from mlflow.server import handlers

    feedback = Feedback(name="quality", value="BAD", trace_id=world["trace"],
                        source=AssessmentSource(source_type="HUMAN", source_id="alice"))
    return handlers._tracking_store.create_assessment(feedback).assessment_id


def _start_with_assessments(trace_id: str, experiment_id: str, *assessments: dict):
    """hooks.trace_starts_keep_to_their_own_assessments on a StartTraceV3 carrying `assessments`."""
    from mlflow.server import app as flask_app

    from mlflow_guard import hooks

    body = {"trace": {"trace_info": {"trace_id": trace_id, "request_time": "2026-01-01T00:00:00Z", "state": "OK",
                                     "trace_location": {"type": "MLFLOW_EXPERIMENT",
                                                        "mlflow_experiment": {"experiment_id": experiment_id}},
                                     "assessments": [{"trace_id": trace_id, "assessment_name": "quality",
                                                      "source": {"source_type": "HUMAN", "source_id": "bob"},
                                                      "create_time": "2026-01-01T00:00:00Z",
                                                      "last_update_time": "2026-01-01T00:00:00Z",
                                                      "feedback": {"value": "BOB-WROTE-THIS"}, **assessment}
                                                     for assessment in assessments]}}}
    with flask_app.test_request_context("/api/3.0/mlflow/traces", method="POST", json=body):
        return hooks.trace_starts_keep_to_their_own_assessments()


def test_a_trace_start_cannot_take_over_another_traces_assessment(world, alices_assessment):
    """Reproduced (review 8): bob's second start of his own trace carried alice's assessment id; the
    store's merge moved her assessment onto his trace with his value (hers was gone)."""
    bobs_trace = "tr-" + "b" * 32
    refused = _start_with_assessments(bobs_trace, world["bob"], {"assessment_id": alices_assessment})
    assert refused is not None and refused.status_code == 403 and b"another trace" in refused.data
    assert _start_with_assessments(world["trace"], world["alice"], {"assessment_id": alices_assessment}) is None, \
        "alice's client repeating her own trace's start"
    assert _start_with_assessments(bobs_trace, world["bob"], {"assessment_id": "a-" + "c" * 32}) is None, "a new one"
    assert _start_with_assessments(bobs_trace, world["bob"]) is None, "no assessment id: the server gives one"


def test_an_assessment_overrides_only_one_of_its_own_trace(world, alices_assessment):
    """Reproduced (review 8): bob's assessment `overrides` alice's; deleting his made hers valid again."""
    bobs_trace = "tr-" + "d" * 32
    refused = _start_with_assessments(bobs_trace, world["bob"], {"overrides": alices_assessment})
    assert refused is not None and refused.status_code == 403 and b"overrides" in refused.data
    missing = _start_with_assessments(bobs_trace, world["bob"], {"overrides": "a-" + "e" * 32})
    assert missing is not None and missing.status_code == 403
    assert _start_with_assessments(world["trace"], world["alice"], {"overrides": alices_assessment}) is None
    assert _start_with_assessments(bobs_trace, world["bob"], {"assessment_id": "a-" + "1" * 32},
                                   {"assessment_id": "a-" + "2" * 32, "overrides": "a-" + "1" * 32}) is None, \
        "one assessment of the start overriding another of the same start"
