"""OTLP trace ingestion (`POST /v1/traces`) stays inside the experiment the auth app checked.

MLflow's auth app checks only the experiment in the `X-Mlflow-Experiment-Id` header, while the store
writes each span into the trace that already has its trace id, in that trace's own experiment (a
span with the same id replaces the old one), and links the batch to the run in `X-Mlflow-Run-Id`
without asking about that run. A trace id travels in every W3C `traceparent` header and READ shows
run ids: without this check, anyone allowed to write traces in one experiment could rewrite another
experiment's traces and link traces to another experiment's run (adversarial review, issue 29).
Spans carrying `mlflow.traceTag.mlflow.*` attributes (MLflow's own trace tags) are refused as well
(review 8). The body is parsed as mlflow.server.otel_api parses it; what it cannot parse is left to
MLflow, which refuses it with 400 and writes nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, NamedTuple, Optional

from mlflow.tracing.constant import SpanAttributeKey
from mlflow.tracing.utils.otlp import MLFLOW_EXPERIMENT_ID_HEADER, MLFLOW_RUN_ID_HEADER

PATH_SUFFIX = "/v1/traces"
DECOMPRESSED_ENCODINGS = {"gzip": 16 + 15, "deflate": 15}
"""zlib window bits of the encodings MLflow's handler decompresses (deflate also raw: -15)."""


class TooLarge(Exception):
    """The decompressed body would exceed the guard's limit (a few KB can inflate to gigabytes)."""


class Refused(Exception):
    """An export request the guard answers with 400 (its message says why)."""


class Unreadable(Refused):
    """A compressed body the guard does not read exactly as MLflow's handler would (it is refused:
    a second gzip member, which gzip.decompress reads and zlib stops before, hid spans)."""


def decompressed(body: bytes, content_encoding: str, limit: int) -> bytes:
    """The body as MLflow's handler decompresses it, refused past `limit` bytes (TooLarge) instead
    of inflated whole; ValueError for what MLflow cannot decompress either."""
    import zlib

    encoding = content_encoding.lower()
    if encoding not in DECOMPRESSED_ENCODINGS:
        raise ValueError(f"Content-Encoding {content_encoding!r}")
    for wbits in ((DECOMPRESSED_ENCODINGS[encoding], -15) if encoding == "deflate"
                  else (DECOMPRESSED_ENCODINGS[encoding],)):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit or inflater.unconsumed_tail:
            raise TooLarge()
        if inflater.unused_data:  # a second gzip member: MLflow's gzip.decompress reads it too
            raise ValueError("more than one compressed member")
        return out
    raise ValueError(f"not {encoding} data")


class Export(NamedTuple):
    trace_ids: set[str]
    """MLflow's trace ids of the spans, as the handler derives them"""
    reserved_tags: list[str]
    """span attributes `mlflow.traceTag.mlflow.*`: the store copies a root span's `mlflow.traceTag.<key>`
    attributes into the trace's tags unfiltered, so these would write the tags MLflow keeps for itself
    (where the spans and the archive are read from, `mlflow.user`); MLflow's own exporter never sends
    them (OtelSpanProcessor skips `mlflow.` tags)"""


RESERVED_TAG_ATTRIBUTE = SpanAttributeKey.TRACE_TAG_PREFIX + "mlflow."


def read_export(body: bytes, content_type: str, content_encoding: str, limit: int) -> Optional[Export]:
    """What an OTLP export request writes, read as MLflow's handler reads it; None when the body is not
    one (MLflow refuses it itself); TooLarge when it inflates past `limit`; Unreadable when its
    compression is not one stream the guard reads as MLflow does."""
    from google.protobuf.json_format import Parse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from mlflow.entities.span import Span
    from mlflow.server.otel_api import _convert_otlp_json_ids_to_base64

    media_type = content_type.split(";")[0].strip()
    if content_encoding:
        try:
            body = decompressed(body, content_encoding, limit)
        except ValueError as error:
            raise Unreadable(f"an OTLP body with Content-Encoding {content_encoding!r} that is not exactly one "
                             f"compressed stream ({error}): send one") from error
    try:
        request = ExportTraceServiceRequest()
        if media_type == "application/json":
            Parse(_convert_otlp_json_ids_to_base64(body), request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
        spans = [(span, resource_spans.resource) for resource_spans in request.resource_spans
                 for scope_spans in resource_spans.scope_spans for span in scope_spans.spans]
        return Export({Span.from_otel_proto(span, resource=resource).trace_id for span, resource in spans},
                      sorted({attribute.key for span, _ in spans for attribute in span.attributes
                              if attribute.key.startswith(RESERVED_TAG_ATTRIBUTE)}))
    except Exception:  # noqa: BLE001 - anything MLflow's handler would refuse as well
        return None


def _experiment_of_trace(store: Any, trace_id: str) -> Optional[str]:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    try:
        return store.get_trace_info(trace_id).experiment_id
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise


def _experiment_of_run(store: Any, run_id: str) -> Optional[str]:
    from mlflow.exceptions import MlflowException

    try:
        return store.get_run(run_id).info.experiment_id
    except MlflowException:
        return None


def problem(headers: dict[str, str], ids: Iterable[str], store: Callable[[], Any]) -> Optional[str]:
    """Why the export must be refused (403), or None. `headers`: lower-cased names."""
    experiment = headers.get(MLFLOW_EXPERIMENT_ID_HEADER, "")
    tracking = store()
    run_id = headers.get(MLFLOW_RUN_ID_HEADER)
    if run_id and _experiment_of_run(tracking, run_id) != experiment:
        return (f"run {run_id!r} is not in experiment {experiment!r} ({MLFLOW_EXPERIMENT_ID_HEADER}): traces are "
                "linked only to runs of the experiment they are written to")
    for trace_id in sorted(ids):
        owner = _experiment_of_trace(tracking, trace_id)
        if owner is not None and owner != experiment:
            return (f"trace {trace_id} belongs to another experiment than {experiment!r} "
                    f"({MLFLOW_EXPERIMENT_ID_HEADER}): spans are added only to traces of that experiment")
    return None
