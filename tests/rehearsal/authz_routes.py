"""Issue 29: every route MLflow 3.17.2 serves, with what user B may get from it about user A's data.

One entry per (method, rule) of MLflow's Flask `url_map` (the `/ajax-api/` form folded onto `/api/`:
both forms are sent), the auth app's own routes (auth.mode mlflow) and the FastAPI routers (by
family). test_22_authz_routes fails when MLflow serves a route this table does not name ("decide its
expected outcome here") and when the table names a route MLflow no longer serves.

Outcomes, for B, who has no permission on A's experiment E, A's registered model and A's prompt:
- READ: a read of A's object: B gets no 2xx and no byte of A's data; A (the control) gets a 2xx,
  which proves the request is well-formed and names an object that exists.
- DENY: like READ, without the control (the route needs a feature or payload the rehearsal lacks).
- WRITE: a change to A's object: B gets no 2xx (the write did not happen) and none of A's data.
- ADMIN: administrators only: B gets no 2xx.
- HIDDEN: any status (GraphQL answers 200 with errors), but none of A's data; A's answer holds it.
- FILTERED: B may call it (a search, a listing, his own objects): none of A's data in the answer.
- OFF: a feature the stack does not deploy (gateway, jobs, assistant, demo, workspaces): none of A's data.
- PUBLIC: open to everyone (health, version, server-info): a 2xx, none of A's data.

Templates: $exp (E's id), $exp_name, $run, $logged (logged model), $model (registered model),
$prompt, $trace, $assessment, $dataset, $alice (A's username), $bob (B's), $nonce (per request).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

READ, DENY, WRITE, ADMIN, HIDDEN, FILTERED, OFF, PUBLIC = (
    "read", "deny", "write", "admin", "hidden", "filtered", "off", "public")
REFUSED_OUTCOMES = {READ, DENY, WRITE, ADMIN}
"""Outcomes where any 2xx answer to B is a failure."""

ARTIFACT = "$exp/$run/artifacts/notes.txt"
PATH_VARIABLES = {"request_id": "$trace", "trace_id": "$trace", "model_id": "$logged", "assessment_id": "$assessment",
                  "dataset_id": "$dataset", "key": "secret", "tag_key": "secret", "artifact_path": ARTIFACT,
                  "workspace_name": "default", "issue_id": "iss-$nonce", "webhook_id": "wh-$nonce",
                  "job_id": "job-$nonce", "path": "x.js", "filename": "x.js"}
"""What fills each `<variable>` of a url_map rule (a route may override it with `path=`)."""


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    rule: str
    """The url_map rule, `/ajax-api/` spelled `/api/`."""
    outcome: str
    query: Optional[dict[str, Any]] = None
    body: Optional[dict[str, Any]] = None
    path: Optional[dict[str, str]] = None
    """Overrides of PATH_VARIABLES for this route."""
    marker: Optional[str] = None
    """What counts as A's data in the answer (default: the secret in every value A wrote)."""
    mode: Optional[str] = None
    """Only in this auth mode (the auth app's own routes exist in mode mlflow only)."""

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.rule


def folded(rule: str) -> str:
    """A url_map rule with its /ajax-api/ form folded onto /api/ (the table names both with one line)."""
    return re.sub(r"^/ajax-api/", "/api/", rule)


def R(method: str, rule: str, outcome: str, query: Optional[dict] = None, body: Optional[dict] = None,
      **extra: Any) -> Route:
    return Route(method, rule, outcome, query, body, **extra)


def _e(**body: Any) -> dict[str, Any]:
    """A JSON body naming E."""
    return {"experiment_id": "$exp", **body}


def _r(**body: Any) -> dict[str, Any]:
    """A JSON body naming A's run."""
    return {"run_id": "$run", **body}


def _m(**body: Any) -> dict[str, Any]:
    """A JSON body naming A's registered model."""
    return {"name": "$model", **body}


M2, M3 = "/api/2.0/mlflow", "/api/3.0/mlflow"
TRACE_LOCATION = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "$exp"}}
NEW_TRACE = {"trace": {"trace_info": {"trace_id": "tr-$nonce", "trace_location": TRACE_LOCATION,
                                      "request_time": "2024-01-01T00:00:00Z", "state": "OK"}}}
FEEDBACK = {"assessment": {"assessment_name": "bob", "trace_id": "$trace", "feedback": {"value": 1},
                           "source": {"source_type": "HUMAN", "source_id": "bob"}}}
TAG = {"key": "bob", "value": "1"}

_TRACKING = [
    R("GET", f"{M2}/experiments/get-by-name", READ, {"experiment_name": "$exp_name"}),
    R("POST", f"{M2}/experiments/create", FILTERED, body={"name": "bob-$nonce"}),
    R("POST", f"{M2}/experiments/search", FILTERED, body={"max_results": 1000}),
    R("GET", f"{M2}/experiments/search", FILTERED, {"max_results": 1000}),
    R("GET", f"{M2}/experiments/get", READ, {"experiment_id": "$exp"}),
    R("POST", f"{M2}/experiments/delete", WRITE, body=_e()),
    R("POST", f"{M2}/experiments/restore", WRITE, body=_e()),
    R("POST", f"{M2}/experiments/update", WRITE, body=_e(new_name="bob-$nonce")),
    R("POST", f"{M2}/experiments/set-experiment-tag", WRITE, body=_e(**TAG)),
    R("POST", f"{M2}/experiments/delete-experiment-tag", WRITE, body=_e(key="secret")),
    R("POST", f"{M2}/experiments/search-datasets", READ, body={"experiment_ids": ["$exp"]}),
    R("POST", "/api/2.0mlflow/experiments/search-datasets", OFF, body={"experiment_ids": ["$exp"]}),
    R("POST", f"{M2}/runs/create", WRITE, body=_e()),
    R("POST", f"{M2}/runs/create-promptlab-run", WRITE, body=_e(prompt_template="x", prompt_parameters=[])),
    R("POST", f"{M2}/runs/update", WRITE, body=_r(status="FAILED")),
    R("POST", f"{M2}/runs/delete", WRITE, body=_r()),
    R("POST", f"{M2}/runs/restore", WRITE, body=_r()),
    R("POST", f"{M2}/runs/log-metric", WRITE, body=_r(key="bob", value=1, timestamp=0)),
    R("POST", f"{M2}/runs/log-parameter", WRITE, body=_r(key="bob", value="1")),
    R("POST", f"{M2}/runs/set-tag", WRITE, body=_r(**TAG)),
    R("POST", f"{M2}/runs/delete-tag", WRITE, body=_r(key="note")),
    R("POST", f"{M2}/runs/log-batch", WRITE, body=_r(params=[TAG])),
    R("POST", f"{M2}/runs/log-model", WRITE, body=_r(model_json="{}")),
    R("POST", f"{M2}/runs/log-inputs", WRITE, body=_r(datasets=[])),
    R("POST", f"{M2}/runs/outputs", WRITE, body=_r(models=[{"model_id": "$logged", "step": 0}])),
    R("GET", f"{M2}/runs/get", READ, {"run_id": "$run"}),
    R("POST", f"{M2}/runs/search", FILTERED, body={"experiment_ids": ["$exp"]}),  # the auth app filters
    R("POST", f"{M2}/runs/search", FILTERED, body={"experiment_ids": ["0"], "filter": "attributes.run_id = '$run'"}),
    R("GET", f"{M2}/artifacts/list", READ, {"run_id": "$run"}, marker="notes.txt"),
    R("POST", f"{M2}/artifacts/presigned-upload-url", WRITE, body=_r(path="bob.txt")),
    R("POST", f"{M2}/artifacts/presigned-download-url", DENY, body=_r(path="notes.txt")),
    R("POST", f"{M2}/upload-artifact", WRITE, {"run_uuid": "$run", "path": "bob.txt"}, body={}),
    R("GET", f"{M2}/metrics/get-history", READ, {"run_id": "$run", "metric_key": "loss"}, marker="loss"),
    R("GET", f"{M2}/metrics/get-history-bulk", READ, {"run_id": "$run", "metric_key": "loss"}, marker="loss"),
    R("GET", f"{M2}/metrics/get-history-bulk-interval", READ, {"run_ids": "$run", "metric_key": "loss"},
      marker="loss"),
    R("GET", "/get-artifact", READ, {"run_uuid": "$run", "path": "notes.txt"}),
]

_TRACES = [
    R("GET", f"{M2}/unified-traces", DENY, {"experiment_id": "$exp"}),
    R("GET", f"{M2}/get-online-trace-details", DENY, {"trace_id": "$trace", "sql_warehouse_id": "x"}),
    R("POST", f"{M2}/traces", WRITE, body=_e(timestamp_ms=0)),
    R("GET", f"{M2}/traces", READ, {"experiment_ids": "$exp"}),
    R("PATCH", f"{M2}/traces/<request_id>", WRITE, body={"timestamp_ms": 1, "status": "OK"}),
    R("GET", f"{M2}/traces/<request_id>/info", READ),
    R("PATCH", f"{M2}/traces/<request_id>/tags", WRITE, body=TAG),
    R("DELETE", f"{M2}/traces/<request_id>/tags", WRITE, {"key": "secret"}),
    R("POST", f"{M2}/traces/link-to-run", WRITE, body=_r(trace_ids=["$trace"])),
    R("POST", f"{M2}/traces/link-prompts", WRITE, body={"trace_id": "$trace",
                                                        "prompt_versions": [{"name": "$prompt", "version": "1"}]}),
    R("POST", f"{M2}/traces/delete-traces", WRITE, body=_e(max_timestamp_millis=9999999999999, max_traces=1)),
    R("GET", f"{M2}/get-trace-artifact", READ, {"request_id": "$trace"}),
    R("GET", f"{M3}/get-trace-artifact", READ, {"request_id": "$trace"}),
    R("POST", f"{M3}/traces", WRITE, body=NEW_TRACE),
    R("GET", f"{M3}/traces/<trace_id>", READ),
    R("GET", f"{M3}/traces/get", READ, {"trace_id": "$trace"}),
    R("GET", f"{M3}/traces/batchGet", READ, {"trace_ids": "$trace"}),
    R("POST", f"{M3}/traces/batchGetInfos", READ, body={"trace_ids": ["$trace"]}),
    R("POST", f"{M3}/traces/search", READ, body={"locations": [TRACE_LOCATION]}),
    R("POST", f"{M3}/traces/search", FILTERED, body={"locations": [TRACE_LOCATION | {
        "mlflow_experiment": {"experiment_id": "0"}}], "filter": "trace.request_id = '$trace'"}),
    R("PATCH", f"{M3}/traces/<trace_id>/tags", WRITE, body=TAG),
    R("DELETE", f"{M3}/traces/<trace_id>/tags", WRITE, {"key": "secret"}),
    R("POST", f"{M3}/traces/delete-traces", WRITE, body=_e(max_timestamp_millis=9999999999999, max_traces=1)),
    R("POST", f"{M3}/traces/calculate-filter-correlation", DENY,
      body={"experiment_ids": ["$exp"], "filter_string1": "", "filter_string2": ""}),
    R("POST", f"{M3}/traces/metrics", DENY, body={"experiment_ids": ["$exp"], "view_type": "TRACES",
                                                 "metric_name": "trace_count", "aggregations": [{"type": "COUNT"}]}),
    R("GET", f"{M3}/traces/<trace_id>/assessments/<assessment_id>", READ),
    R("POST", f"{M3}/traces/<trace_id>/assessments", WRITE, body=FEEDBACK),
    R("PATCH", f"{M3}/traces/<trace_id>/assessments/<assessment_id>", WRITE,
      body={"assessment": {"rationale": "bob"}, "update_mask": "rationale"}),
    R("DELETE", f"{M3}/traces/<trace_id>/assessments/<assessment_id>", WRITE),
]

_LOGGED_MODELS = [
    R("POST", f"{M2}/logged-models", WRITE, body=_e(name="bob")),
    R("GET", f"{M2}/logged-models/<model_id>", READ),
    R("PATCH", f"{M2}/logged-models/<model_id>", WRITE, body={"status": "LOGGED_MODEL_READY"}),
    R("DELETE", f"{M2}/logged-models/<model_id>", WRITE),
    R("POST", f"{M2}/logged-models/search", FILTERED, body={"experiment_ids": ["$exp"]}),  # filtered
    R("PATCH", f"{M2}/logged-models/<model_id>/tags", WRITE, body={"tags": [TAG]}),
    R("DELETE", f"{M2}/logged-models/<model_id>/tags/<tag_key>", WRITE),
    R("POST", f"{M2}/logged-models/<model_id>/params", WRITE, body={"params": [TAG]}),
    R("GET", f"{M2}/logged-models/<model_id>/artifacts/directories", DENY, {"artifact_directory_path": ""}),
    R("GET", f"{M2}/logged-models/<model_id>/artifacts/files", DENY, {"artifact_file_path": "MLmodel"}),
]

_GENAI = [
    R("POST", f"{M3}/issues", WRITE, body=_e(name="bob", description="x")),
    R("PATCH", f"{M3}/issues/<issue_id>", OFF, body={"name": "bob"}),
    R("GET", f"{M3}/issues/<issue_id>", OFF),
    R("POST", f"{M3}/issues/search", FILTERED, body=_e()),
    R("POST", f"{M3}/issues/invoke", OFF, body=_e()),
    R("POST", f"{M3}/label-schemas/create", WRITE, body=_e(name="bob", type="FEEDBACK")),
    R("GET", f"{M3}/label-schemas/get", OFF, {"label_schema_id": "ls-$nonce"}),
    R("GET", f"{M3}/label-schemas/get-by-name", FILTERED, {"experiment_id": "$exp", "name": "x"}),
    R("GET", f"{M3}/label-schemas/list", FILTERED, {"experiment_id": "$exp"}),
    R("PATCH", f"{M3}/label-schemas/update", OFF, body={"label_schema_id": "ls-$nonce"}),
    R("DELETE", f"{M3}/label-schemas/delete", OFF, body={"label_schema_id": "ls-$nonce"}),
    R("POST", f"{M3}/datasets/create", WRITE, body={"name": "bob-$nonce", "experiment_ids": ["$exp"]}),
    R("GET", f"{M3}/datasets/<dataset_id>", READ),
    R("DELETE", f"{M3}/datasets/<dataset_id>", WRITE),
    R("POST", f"{M3}/datasets/search", FILTERED, body={"experiment_ids": ["$exp"]}),
    R("GET", f"{M3}/datasets/search", FILTERED, {"experiment_ids": "$exp"}),
    R("PATCH", f"{M3}/datasets/<dataset_id>/tags", WRITE, body={"tags": '{"bob": "1"}'}),
    R("DELETE", f"{M3}/datasets/<dataset_id>/tags/<key>", WRITE),
    R("POST", f"{M3}/datasets/<dataset_id>/records", WRITE, body={"records": '[{"inputs": {"q": "bob"}}]'}),
    R("GET", f"{M3}/datasets/<dataset_id>/records", READ),
    R("DELETE", f"{M3}/datasets/<dataset_id>/records", WRITE, body={"dataset_record_ids": ["x"]}),
    R("GET", f"{M3}/datasets/<dataset_id>/experiment-ids", READ, marker='["$exp"]'),
    R("POST", f"{M3}/datasets/<dataset_id>/add-experiments", WRITE, body={"experiment_ids": ["0"]}),
    R("POST", f"{M3}/datasets/<dataset_id>/remove-experiments", WRITE, body={"experiment_ids": ["$exp"]}),
    R("POST", f"{M3}/scorers/register", WRITE, body=_e(name="bob", serialized_scorer="{}")),
    R("GET", f"{M3}/scorers/list", FILTERED, {"experiment_id": "$exp"}),
    R("GET", f"{M3}/scorers/versions", FILTERED, {"experiment_id": "$exp", "name": "x"}),
    R("GET", f"{M3}/scorers/get", FILTERED, {"experiment_id": "$exp", "name": "x"}),
    R("DELETE", f"{M3}/scorers/delete", WRITE, body=_e(name="x")),
    R("POST", f"{M3}/scorer/invoke", OFF, body=_e()),
    R("GET", f"{M3}/scorers/online-configs", FILTERED, {"experiment_id": "$exp"}),
    R("PUT", f"{M3}/scorers/online-config", WRITE, body=_e(name="x")),
    R("POST", f"{M3}/genai/evaluate/invoke", OFF, body=_e()),
    R("POST", f"{M3}/prompt-optimization/jobs", WRITE, body=_e()),
    R("GET", f"{M3}/prompt-optimization/jobs/<job_id>", OFF),
    R("POST", f"{M3}/prompt-optimization/jobs/search", FILTERED, body=_e()),
    R("GET", f"{M3}/prompt-optimization/jobs/search", FILTERED, {"experiment_id": "$exp"}),
    R("POST", f"{M3}/prompt-optimization/jobs/<job_id>/cancel", OFF),
    R("DELETE", f"{M3}/prompt-optimization/jobs/<job_id>", OFF),
    R("GET", f"{M3}/jobs/<job_id>", OFF),
    R("PATCH", f"{M3}/jobs/cancel/<job_id>", OFF),
    R("POST", f"{M3}/review-queues/create", OFF, body={"name": "bob-$nonce"}),
    R("POST", f"{M3}/review-queues/get-or-create-user", OFF, body={}),
    R("GET", f"{M3}/review-queues/get", OFF, {"queue_id": "q-$nonce"}),
    R("GET", f"{M3}/review-queues/get-by-name", OFF, {"name": "x"}),
    R("GET", f"{M3}/review-queues/list", FILTERED),
    R("POST", f"{M3}/review-queues/update", OFF, body={"queue_id": "q-$nonce"}),
    R("POST", f"{M3}/review-queues/delete", OFF, body={"queue_id": "q-$nonce"}),
    R("POST", f"{M3}/review-queues/items/add", OFF, body={"queue_id": "q-$nonce", "trace_ids": ["$trace"]}),
    R("POST", f"{M3}/review-queues/items/remove", OFF, body={"queue_id": "q-$nonce"}),
    R("GET", f"{M3}/review-queues/items/list", OFF, {"queue_id": "q-$nonce"}),
    R("POST", f"{M3}/review-queues/items/set-status", OFF, body={"queue_id": "q-$nonce"}),
    R("POST", f"{M3}/demo/generate", ADMIN, body={}),  # the guard: admins only
    R("POST", f"{M3}/demo/delete", OFF, body={}),
    R("GET", f"{M3}/ui-telemetry", OFF),
    R("POST", f"{M3}/ui-telemetry", OFF, body={}),
]

_REGISTRY = [
    R("POST", f"{M2}/registered-models/create", FILTERED, body={"name": "bob-$nonce"}),
    R("POST", f"{M2}/registered-models/rename", WRITE, body=_m(new_name="bob-$nonce")),
    R("PATCH", f"{M2}/registered-models/update", WRITE, body=_m(description="bob")),
    R("DELETE", f"{M2}/registered-models/delete", WRITE, body=_m()),
    R("GET", f"{M2}/registered-models/get", READ, {"name": "$model"}),
    R("GET", f"{M2}/registered-models/get", READ, {"name": "$prompt"}),
    R("GET", f"{M2}/registered-models/search", FILTERED, {"filter": "name = '$model'"}),
    R("GET", f"{M2}/registered-models/search", FILTERED, {"filter": "name LIKE 'alice-%'"}),
    R("POST", f"{M2}/registered-models/get-latest-versions", READ, body=_m()),
    R("GET", f"{M2}/registered-models/get-latest-versions", READ, {"name": "$model"}),
    R("POST", f"{M2}/registered-models/set-tag", WRITE, body=_m(**TAG)),
    R("DELETE", f"{M2}/registered-models/delete-tag", WRITE, body=_m(key="secret")),
    R("POST", f"{M2}/registered-models/alias", WRITE, body=_m(alias="bob", version="1")),
    R("DELETE", f"{M2}/registered-models/alias", WRITE, body=_m(alias="champion")),
    R("GET", f"{M2}/registered-models/alias", READ, {"name": "$model", "alias": "champion"}),
    R("POST", f"{M2}/model-versions/create", WRITE, body=_m(source="models:/$logged")),
    R("PATCH", f"{M2}/model-versions/update", WRITE, body=_m(version="1", description="bob")),
    R("POST", f"{M2}/model-versions/transition-stage", WRITE,
      body=_m(version="1", stage="Archived", archive_existing_versions=False)),
    R("DELETE", f"{M2}/model-versions/delete", WRITE, body=_m(version="1")),
    R("GET", f"{M2}/model-versions/get", READ, {"name": "$model", "version": "1"}),
    R("GET", f"{M2}/model-versions/get", READ, {"name": "$prompt", "version": "1"}),
    R("GET", f"{M2}/model-versions/search", FILTERED, {"filter": "name = '$model'"}),
    R("GET", f"{M2}/model-versions/search", FILTERED, {"filter": "name = '$prompt'"}),
    R("GET", f"{M2}/model-versions/get-download-uri", READ, {"name": "$model", "version": "1"}, marker="$logged"),
    R("POST", f"{M2}/model-versions/set-tag", WRITE, body=_m(version="1", **TAG)),
    R("DELETE", f"{M2}/model-versions/delete-tag", WRITE, body=_m(version="1", key="secret")),
    R("GET", "/model-versions/get-artifact", DENY, {"name": "$model", "version": "1", "path": "MLmodel"}),
]

_ARTIFACTS = [
    R("GET", "/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>", READ),
    R("PUT", "/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>", WRITE,
      path={"artifact_path": "$exp/$run/artifacts/bob.txt"}),
    R("DELETE", "/api/2.0/mlflow-artifacts/artifacts/<path:artifact_path>", WRITE,
      path={"artifact_path": "$exp/$run/artifacts/bob.txt"}),
    R("GET", "/api/2.0/mlflow-artifacts/artifacts", READ, {"path": "$exp/$run/artifacts"}, marker="notes.txt"),
    R("POST", "/api/2.0/mlflow-artifacts/mpu/create/<path:artifact_path>", WRITE,
      body={"path": "bob.txt", "num_parts": 1}),
    R("POST", "/api/2.0/mlflow-artifacts/mpu/complete/<path:artifact_path>", WRITE,
      body={"path": "bob.txt", "upload_id": "x", "parts": []}),
    R("POST", "/api/2.0/mlflow-artifacts/mpu/abort/<path:artifact_path>", WRITE, body={"path": "bob.txt",
                                                                                       "upload_id": "x"}),
    R("GET", "/api/2.0/mlflow-artifacts/presigned/<path:artifact_path>", DENY),
]

_ADMIN_AND_OFF = [
    R("GET", f"{M3}/workspaces", OFF),
    R("POST", f"{M3}/workspaces", ADMIN, body={"name": "bob-$nonce"}),
    R("GET", f"{M3}/workspaces/<workspace_name>", OFF),
    R("PATCH", f"{M3}/workspaces/<workspace_name>", ADMIN, body={"description": "bob"}),
    R("DELETE", f"{M3}/workspaces/<workspace_name>", ADMIN),
    R("POST", f"{M2}/webhooks", ADMIN, body={"name": "bob", "url": "https://example.com",
                                              "events": [{"entity": "model_version", "action": "created"}]}),
    R("GET", f"{M2}/webhooks", ADMIN),
    R("GET", f"{M2}/webhooks/<webhook_id>", ADMIN),
    R("PATCH", f"{M2}/webhooks/<webhook_id>", ADMIN, body={"name": "bob"}),
    R("DELETE", f"{M2}/webhooks/<webhook_id>", ADMIN),
    R("POST", f"{M2}/webhooks/<webhook_id>/test", ADMIN, body={}),
    R("GET", f"{M3}/server-info", PUBLIC),
    R("GET", "/health", PUBLIC),
    R("GET", "/version", PUBLIC),
    R("GET", "/static-files/<path:path>", OFF),
    R("GET", "/build/<path:filename>", OFF),
    R("GET", "/", OFF),
]

_GATEWAY_RULES = [
    ("POST", "secrets/create"), ("GET", "secrets/get"), ("POST", "secrets/update"), ("DELETE", "secrets/delete"),
    ("GET", "secrets/list"), ("GET", "secrets/config"), ("POST", "endpoints/create"), ("GET", "endpoints/get"),
    ("POST", "endpoints/update"), ("DELETE", "endpoints/delete"), ("GET", "endpoints/list"),
    ("POST", "model-definitions/create"), ("GET", "model-definitions/get"), ("GET", "model-definitions/list"),
    ("POST", "model-definitions/update"), ("DELETE", "model-definitions/delete"), ("POST", "endpoints/models/attach"),
    ("POST", "endpoints/models/detach"), ("POST", "endpoints/bindings/create"), ("DELETE", "endpoints/bindings/delete"),
    ("GET", "endpoints/bindings/list"), ("POST", "endpoints/set-tag"), ("DELETE", "endpoints/delete-tag"),
    ("POST", "budgets/create"), ("GET", "budgets/get"), ("POST", "budgets/update"), ("DELETE", "budgets/delete"),
    ("GET", "budgets/list"), ("GET", "budgets/windows"), ("POST", "guardrails/create"), ("GET", "guardrails/get"),
    ("DELETE", "guardrails/delete"), ("GET", "guardrails/list"), ("POST", "guardrails/add-to-endpoint"),
    ("DELETE", "guardrails/remove-from-endpoint"), ("GET", "guardrails/list-for-endpoint"),
    ("PATCH", "guardrails/update-config"), ("GET", "supported-providers"), ("GET", "supported-models"),
    ("GET", "provider-config")]
_GATEWAY = [R(method, f"{M3}/gateway/{name}", OFF, body={} if method != "GET" else None)
            for method, name in _GATEWAY_RULES] + [R("GET", f"{M2}/gateway-proxy", OFF),
                                                   R("POST", f"{M2}/gateway-proxy", OFF, body={})]

GRAPHQL_QUERIES = {
    "experiment": ("query q($id: String) { mlflowGetExperiment(input: {experimentId: $id}) "
                   "{ experiment { name tags { key value } } } }", "$exp"),
    "run": ("query q($id: String) { mlflowGetRun(input: {runId: $id}) { run { data { params { key value } "
            "tags { key value } } } } }", "$run"),
    "runs": ("query q($id: String) { mlflowSearchRuns(input: {experimentIds: [$id]}) "
             "{ runs { data { params { key value } } } } }", "$exp"),
    "versions": ("query q($id: String) { mlflowSearchModelVersions(input: {filter: $id}) "
                 "{ modelVersions { name description } } }", "name = '$model'"),
}
_GRAPHQL = [R("POST", "/graphql", HIDDEN, body={"query": query, "variables": {"id": value}})
            for query, value in GRAPHQL_QUERIES.values()]
_GRAPHQL.append(R("GET", "/graphql", FILTERED,  # MLflow 3.17.2 answers GET /graphql 500 to everyone
                  {"query": '{ mlflowGetRun(input: {runId: "$run"}) { run { data { params { key value } } } } }'}))

_AUTH_APP = [R(method, rule, outcome, query, body, mode="mlflow") for method, rule, outcome, query, body in [
    ("GET", "/signup", OFF, None, None),
    ("POST", f"{M2}/users/create-ui", ADMIN, None, {"username": "eve-$nonce", "password": "x" * 16}),
    ("POST", f"{M2}/users/create", ADMIN, None, {"username": "eve-$nonce", "password": "x" * 16}),
    ("GET", f"{M2}/users/get", ADMIN, {"username": "$alice"}, None),
    ("GET", f"{M2}/users/current", FILTERED, None, None),
    ("GET", f"{M2}/users/list", FILTERED, None, None),
    ("PATCH", f"{M2}/users/update-password", ADMIN, None, {"username": "$alice", "password": "y" * 16}),
    ("PATCH", f"{M2}/users/update-admin", ADMIN, None, {"username": "$bob", "is_admin": True}),
    ("DELETE", f"{M2}/users/delete", ADMIN, None, {"username": "$alice"}),
    ("GET", f"{M3}/users/current/permissions", FILTERED, None, None),
    ("GET", f"{M3}/users/permissions/list", ADMIN, {"username": "$alice"}, None),
    ("POST", f"{M3}/users/permissions/grant", WRITE, None,
     {"username": "$bob", "resource_type": "experiment", "resource_id": "$exp", "permission": "MANAGE"}),
    ("POST", f"{M3}/users/permissions/revoke", WRITE, None,
     {"username": "$bob", "resource_type": "experiment", "resource_id": "$exp"}),
    ("GET", f"{M3}/users/permissions/get", ADMIN,
     {"username": "$alice", "resource_type": "experiment", "resource_id": "$exp"}, None),
    ("POST", f"{M3}/roles/create", ADMIN, None, {"name": "bob-$nonce", "workspace": "default"}),
    ("GET", f"{M3}/roles/get", ADMIN, {"role_id": "1"}, None),
    ("GET", f"{M3}/roles/list", ADMIN, {"workspace": "default"}, None),
    ("PATCH", f"{M3}/roles/update", ADMIN, None, {"role_id": "1", "name": "bob"}),
    ("DELETE", f"{M3}/roles/delete", ADMIN, None, {"role_id": "1"}),
    ("POST", f"{M3}/roles/permissions/add", ADMIN, None,
     {"role_id": "1", "resource_type": "experiment", "resource_pattern": "$exp", "permission": "MANAGE"}),
    ("DELETE", f"{M3}/roles/permissions/remove", ADMIN, None, {"role_permission_id": "1"}),
    ("GET", f"{M3}/roles/permissions/list", ADMIN, {"role_id": "1"}, None),
    ("PATCH", f"{M3}/roles/permissions/update", ADMIN, None, {"role_permission_id": "1", "permission": "MANAGE"}),
    ("POST", f"{M3}/roles/assign", ADMIN, None, {"username": "$bob", "role_id": "1"}),
    ("DELETE", f"{M3}/roles/unassign", ADMIN, None, {"username": "$alice", "role_id": "1"}),
    ("GET", f"{M3}/users/roles/list", ADMIN, {"username": "$alice"}, None),
    ("GET", f"{M3}/roles/users/list", ADMIN, {"role_id": "1"}, None),
]]

ROUTES: list[Route] = (_TRACKING + _TRACES + _LOGGED_MODELS + _GENAI + _REGISTRY + _ARTIFACTS + _ADMIN_AND_OFF
                       + _GATEWAY + _GRAPHQL + _AUTH_APP)

FASTAPI_FAMILIES = {
    "/gateway/": OFF,  # the AI gateway's invocation routes: no gateway endpoint is configured
    "/ajax-api/3.0/mlflow/assistant/": OFF,  # the UI's assistant (needs a provider): names no experiment
    "/api/3.0/mlflow/mcp-servers": OFF, "/ajax-api/3.0/mlflow/mcp-servers": OFF,  # MCP server registry
    "/api/2.0/mlflow-artifacts/artifacts/": READ, "/ajax-api/2.0/mlflow-artifacts/artifacts/": READ,  # as Flask's
    "/health": PUBLIC, "/api/3.0/mlflow/server-info": PUBLIC, "/ajax-api/3.0/mlflow/server-info": PUBLIC,
    "/v1/traces": WRITE,  # OTLP trace ingestion into an experiment (x-mlflow-experiment-id)
    "/ajax-api/3.0/jobs": OFF,  # background jobs (the UI's)
}
"""The FastAPI routes the server adds in front of Flask, by family (their requests are not swept:
the Flask routes above cover the same stores; the OTLP route is swept by OTLP_INGEST)."""

OTLP_INGEST = R("POST", "/v1/traces", WRITE)
"""An OTLP export into E (x-mlflow-experiment-id: E): B may not write traces into A's experiment."""

# --- id spellings and path tricks ---------------------------------------------------------------

SPELLINGS: dict[str, tuple[str, str]] = {
    "exp 0-padded": ("exp", "0{}"), "exp 00-padded": ("exp", "00{}"), "exp leading space": ("exp", " {}"),
    "exp trailing space": ("exp", "{} "), "exp plus sign": ("exp", "+{}"), "exp tab": ("exp", "{}\t"),
    "exp newline": ("exp", "{}\n"), "exp decimal": ("exp", "{}.0"),
    "run upper-case": ("run", "upper"), "run leading space": ("run", " {}"), "run trailing space": ("run", "{} "),
    "model trailing space": ("model", "{} "), "model upper-case": ("model", "upper"),
    "prompt trailing space": ("prompt", "{} "), "trace upper-case": ("trace", "upper"),
    "trace trailing space": ("trace", "{} "), "logged upper-case": ("logged", "upper"),
    "dataset trailing space": ("dataset", "{} "),
}
"""Another spelling of one of A's ids (the auth app compares text, the database numbers or
case-insensitively): each is applied to every REFUSED/HIDDEN route whose request names that id."""

PATH_TRICKS = {"double slash": lambda path: path.replace("/mlflow/", "//mlflow/", 1),
               "dot segment": lambda path: path.replace("/mlflow/", "/mlflow/./", 1),
               "trailing slash": lambda path: path + "/",
               "encoded slash": lambda path: path.replace("/mlflow/", "/mlflow%2F", 1)}
"""Other spellings of a route's path that Nginx or Werkzeug may read as the same route."""


def spell(value: str, how: str) -> str:
    return value.upper() if how == "upper" else how.format(value)
