"""The ASGI layer in front of the auth app: refuses non-canonical experiment ids before the auth
app reads them (ids.py) and requests it would read differently from the handler (readings.py), and
answers the internal listener's Prometheus scrape, which the auth app would refuse with 401 (it asks
every path but its exemptions for credentials)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import weakref
from typing import Any, Awaitable, Callable, Optional

from mlflow_guard import ids, otlp, readings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

METRICS_PATH = "/metrics"
SCRAPE_HEADER = "x-mlflow-platform-listener"
SCRAPE_HEADER_VALUE = "internal"
"""Set by Nginx's internal metrics listener only; its public listener clears it on every request
(components/render/proxy.py), so a scrape answered here came through the internal listener."""
METRICS_DIR_ENVS = ("prometheus_multiproc_dir", "PROMETHEUS_MULTIPROC_DIR")
"""Where `mlflow server --expose-prometheus` has its workers write their counters."""
STREAMED_ROUTES = re.compile(r"/(?:ajax-)?api/2\.0/(?:mlflow-artifacts/.*|mlflow/upload-artifact)", re.DOTALL)
"""File transfers, below the static prefix or at the root (Nginx sends downloads and uploads to the
unprefixed streaming router): streamed on unread, their ids are in the path or the query, which are
checked. Matched from the start of the route, so no prefix containing these words switches the body
checks off. OTLP protobuf is read for its trace ids (otlp.py), JSON API bodies for their ids."""
STATIC_PREFIX_ENV = "_MLFLOW_STATIC_PREFIX"
"""What `mlflow server --static-prefix` exports to its workers."""
OTLP_TRACES_PATH = "/v1/traces"
BAD_REQUEST = 400
FORBIDDEN = 403
TOO_LARGE = 413
SERVICE_UNAVAILABLE = 503
MAX_INSPECTED_BODY_BYTES = 16 * 1024 * 1024
"""The largest API request body (after decompression, for OTLP) the guard reads into memory, before
the auth app has authenticated anyone: parsed JSON takes about 20 times its size. MLflow's own
requests are far smaller (log-batch: 1,000 values); files go to the artifact routes, which are
streamed on unread. Larger bodies are answered 413."""
CREDENTIAL_HEADERS = ("authorization", "x-mlflow-authorization", "cookie")
"""A request without either is answered 401 by the auth app, so the guard never parses its body (nobody
anonymous makes a worker parse); it still receives it within its budget, as MLflow's bridge would hold it."""


def _header(scope: Scope, name: str) -> str:
    for key, value in scope.get("headers", ()):
        if key.decode("latin-1").lower() == name:
            return value.decode("latin-1")
    return ""


def _metrics_dir() -> Optional[str]:
    for name in METRICS_DIR_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def is_internal_scrape(scope: Scope) -> bool:
    return (scope["path"] == METRICS_PATH and scope["method"] == "GET"
            and _header(scope, SCRAPE_HEADER) == SCRAPE_HEADER_VALUE and _metrics_dir() is not None)


def render_metrics() -> tuple[bytes, str]:
    """Every worker's counters added up, as MLflow's own /metrics does (prometheus_client's
    multiprocess collector over the shared directory)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_metrics_dir())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _route_below_prefix(path: str) -> str:
    prefix = os.environ.get(STATIC_PREFIX_ENV, "").rstrip("/")
    return path[len(prefix):] if prefix and path.startswith(prefix + "/") else path


def _inspects_body(path: str) -> bool:
    return STREAMED_ROUTES.fullmatch(_route_below_prefix(path)) is None and not path.endswith(OTLP_TRACES_PATH)


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def refuse(send: Send, message: str) -> None:
    """MLflow's own error shape, so clients show the message."""
    body = json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": message}).encode()
    await _respond(send, BAD_REQUEST, body, "application/json")


class BodyTooLarge(Exception):
    pass


class Busy(Exception):
    """The worker's budget for bodies being received is spent (BUFFER_BUDGET_BYTES)."""


BUFFER_BUDGET_BYTES = 64 * 1024 * 1024
"""Bytes of bodies a server worker holds while their clients are still sending them. A client that
sends all but the last bytes keeps its body in memory; past this budget further bodies are answered
503 at once (nobody waits on a slow client), so held memory stays bounded whoever sends them."""
_RECEIVING: "weakref.WeakKeyDictionary[Any, list[int]]" = weakref.WeakKeyDictionary()


async def read_body(receive: Receive, limit: Optional[int] = None) -> Optional[bytes]:
    """The whole body (the handlers read these JSON bodies whole too); None if the client left;
    BodyTooLarge past `limit` bytes; Busy when the worker's receiving budget is spent."""
    chunks, size = [], 0
    receiving = _RECEIVING.setdefault(asyncio.get_running_loop(), [0])
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            receiving[0] += len(chunks[-1])
            if limit is not None and size > limit:
                raise BodyTooLarge()
            if not message.get("more_body"):
                return b"".join(chunks)
            if receiving[0] > BUFFER_BUDGET_BYTES:
                raise Busy()
    finally:
        receiving[0] -= size


MAX_CONCURRENT_PARSES = 2
"""Bodies parsed at once per server worker: parsed JSON or OTLP takes many times the body's size,
and a credential header (which the auth app checks only after the guard) is no proof of an account."""
_PARSES: "weakref.WeakKeyDictionary[Any, asyncio.Semaphore]" = weakref.WeakKeyDictionary()


def _parsing() -> asyncio.Semaphore:
    """The worker's parse slots (one semaphore per event loop)."""
    return _PARSES.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(MAX_CONCURRENT_PARSES))


def _carries_credentials(scope: Scope) -> bool:
    return any(_header(scope, name) for name in CREDENTIAL_HEADERS)


def _declared_too_large(scope: Scope) -> bool:
    declared = _header(scope, "content-length")
    return declared.isdigit() and int(declared) > MAX_INSPECTED_BODY_BYTES


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the client's later messages."""
    sent = False

    async def _receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return _receive


class Guard:
    """Wraps the auth app's ASGI app (what `mlflow server --app-name ...` runs under uvicorn)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if is_internal_scrape(scope):
            from starlette.concurrency import run_in_threadpool

            body, content_type = await run_in_threadpool(render_metrics)
            return await _respond(send, 200, body, content_type)
        query_string, headers = scope.get("query_string", b""), scope.get("headers", ())
        problem = (readings.repeated_header(headers)
                   or readings.run_pairs_problem(ids.query_pairs(query_string), "the query string")
                   or _message(ids.check_query_string(query_string) or ids.check_header(headers)
                               or ids.check_artifact_path(scope["path"], query_string)))
        inspects_body = _inspects_body(scope["path"])
        reads_body = inspects_body or scope["path"].endswith(otlp.PATH_SUFFIX)
        if problem is None and reads_body and not _carries_credentials(scope):
            # The auth app answers 401 without parsing, but MLflow's bridge to its Flask routes holds the whole
            # body first (mlflow/server/fastapi_app.py): received here within the worker's budget (413, 503
            # past it), never parsed (review 24, azure 3 F1).
            if _declared_too_large(scope):
                return await _too_large(send)
            body = await _read_within_bounds(receive, send)
            return None if body is None else await self.app(scope, replaying(body, receive), send)
        if problem is None and reads_body and _declared_too_large(scope):
            return await _too_large(send)
        if problem is None and inspects_body:
            body = await _read_within_bounds(receive, send)
            if body is None:
                return None  # answered (413, 503), or the client left
            from starlette.concurrency import run_in_threadpool

            async with _parsing():
                problem = await run_in_threadpool(_body_problem, scope, body)  # off the event loop
            receive = replaying(body, receive)
            scope = dict(scope, headers=readings.read_as_json(scope["method"], list(headers), body))
        if problem is not None:
            return await refuse(send, problem)
        if scope["method"] == "POST" and scope["path"].endswith(otlp.PATH_SUFFIX):
            body = await _read_within_bounds(receive, send)
            if body is None:
                return None  # answered (413, 503), or the client left
            receive = replaying(body, receive)
            try:
                async with _parsing():
                    why = await _otlp_problem(scope, body)
            except otlp.TooLarge:
                return await _too_large(send)
            except otlp.Refused as refused:
                return await refuse(send, str(refused))
            if why is not None:
                return await _respond(send, FORBIDDEN, json.dumps(
                    {"error_code": "PERMISSION_DENIED", "message": why}).encode(), "application/json")
        return await self.app(scope, receive, send)


async def _read_within_bounds(receive: Receive, send: Send) -> Optional[bytes]:
    """The body, or None when it was answered 413 or 503 instead, or the client left."""
    try:
        return await read_body(receive, MAX_INSPECTED_BODY_BYTES)
    except BodyTooLarge:
        await _too_large(send)
    except Busy:
        await _busy(send)
    return None


async def _busy(send: Send) -> None:
    await _respond(send, SERVICE_UNAVAILABLE, json.dumps(
        {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "the server is receiving too many request bodies at "
         "once: retry"}).encode(), "application/json")


async def _too_large(send: Send) -> None:
    message = (f"a request body of more than {MAX_INSPECTED_BODY_BYTES // (1024 * 1024)} MiB to MLflow's API: "
               "send files through the artifact routes (mlflow-artifacts)")
    await _respond(send, TOO_LARGE, json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": message}).encode(),
                   "application/json")


def _message(problem: Optional[ids.Problem]) -> Optional[str]:
    return problem.message() if problem is not None else None


def _body_problem(scope: Scope, body: bytes) -> Optional[str]:
    content_type = _header(scope, "content-type")
    form = ids.is_form(content_type) and readings.run_pairs_problem(ids.query_pairs(body), "the form body")
    return (form or _message(ids.check_body(scope["path"], content_type, body))
            or readings.run_fields_problem(ids.parse_json_body(body)))


def _tracking_store() -> Any:
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store()


async def _otlp_problem(scope: Scope, body: bytes) -> Optional[str]:
    """otlp.problem, off the event loop (it reads the database)."""
    from starlette.concurrency import run_in_threadpool

    headers: dict[str, str] = {}
    for key, value in scope.get("headers", ()):  # the first copy, as MLflow reads it (repeats are refused)
        headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    found = await run_in_threadpool(otlp.read_export, body, headers.get("content-type", ""),
                                    headers.get("content-encoding", ""), MAX_INSPECTED_BODY_BYTES)
    if found is None:
        return None  # not an OTLP request MLflow accepts: it refuses it with 400 itself
    if found.reserved_tags:
        raise otlp.Refused(f"span attributes {found.reserved_tags} would write MLflow's own trace tags: the "
                              "server sets them, a client may not")
    return await run_in_threadpool(otlp.problem, headers, found.trace_ids, _tracking_store)
