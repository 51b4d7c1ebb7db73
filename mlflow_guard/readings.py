"""One request, one reading: MLflow's auth app and its handlers read each request separately; where
they could read it differently, the request is refused or passed on so both read the same, and the
auth app cannot authorize one object while the handler acts on another (review of issue 29).

- A header named twice: the auth app and the OTLP handler take the first copy, the WSGI bridge
  joins them, a dict takes the last.
- A DELETE or PATCH body that does not say it is JSON: the auth app then reads the query string
  (DELETE) or nothing, the handler reads the body as JSON whatever it says (get_json(force=True)).
  Such a request is passed on marked `Content-Type: application/json`, so the auth app reads the
  body the handler acts on (MLflow's own UI sends some DELETE bodies as text/plain).
- A request naming the run twice (JSON body, query string or form): the auth app reads `run_id` and
  falls back to `run_uuid`; the handler's parser also takes `runId` for `run_id` and acts on
  `run_id or run_uuid`, and upload-artifact writes to the query's `run_uuid` alone.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

READ_ONCE_HEADERS = frozenset({"authorization", "x-mlflow-authorization", "content-type", "content-encoding",
                               "x-mlflow-experiment-id", "x-mlflow-run-id", "x-mlflow-workspace"})
"""Headers the auth app or a handler reads a value from (MLflow 3.17.2: auth/__init__.py, otel_api.py,
workspace_helpers.py; x-mlflow-authorization: the gateway routes' credentials)."""
BODY_METHODS_READ_AS_JSON = frozenset({"DELETE", "PATCH"})
"""Methods whose body MLflow's handlers read as JSON without checking its Content-Type (POST and
PUT are refused by the handlers themselves unless application/json)."""
JSON_CONTENT_TYPE = (b"content-type", b"application/json")
RUN_FIELDS = ("run_id", "runId", "run_uuid", "runUuid")
"""The spellings of a request's run: the auth app reads the first and falls back to the third."""


def repeated_header(headers: Iterable[tuple[bytes, bytes]]) -> Optional[str]:
    seen: set[str] = set()
    for raw_name, _ in headers:
        name = raw_name.decode("latin-1").lower()
        if name in READ_ONCE_HEADERS and name in seen:
            return f"the {name} header is sent more than once: send it once"
        seen.add(name)
    return None


def is_json_type(content_type: str) -> bool:
    """Werkzeug's `Request.is_json`, which the auth app asks before reading a DELETE body."""
    mimetype = content_type.split(";")[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def read_as_json(method: str, headers: list[tuple[bytes, bytes]], body: bytes) -> list[tuple[bytes, bytes]]:
    """The headers with the Content-Type the handler reads the body as (BODY_METHODS_READ_AS_JSON)."""
    content_type = next((value.decode("latin-1") for name, value in headers if name.lower() == b"content-type"), "")
    if method not in BODY_METHODS_READ_AS_JSON or not body.strip() or is_json_type(content_type):
        return headers
    return [(name, value) for name, value in headers if name.lower() != b"content-type"] + [JSON_CONTENT_TYPE]


def run_fields_problem(document: Any) -> Optional[str]:
    """Every spelling of the run a JSON body uses must name the same run."""
    if not isinstance(document, dict):
        return None
    return _one_run([(field, document[field]) for field in RUN_FIELDS if field in document], "the body")


def run_pairs_problem(pairs: Iterable[tuple[str, str]], where: str) -> Optional[str]:
    """The same for a query string or a form body (upload-artifact takes `run_uuid` and `run_id`
    there: the auth app checked `run_id`, the handler wrote to `run_uuid`), every repeat included."""
    return _one_run([(key, value) for key, value in pairs if key in RUN_FIELDS], where)


def _one_run(named: list[tuple[str, Any]], where: str) -> Optional[str]:
    runs = {str(value) for _, value in named if value not in (None, "")}
    if len(runs) > 1:
        fields = ", ".join(dict.fromkeys(field for field, _ in named))
        return f"{where} names different runs in {fields}: name the run once, as run_id"
    return None
