"""A trace's data is read only from the trace's own folder (round-2 review of issue 29).

MLflow reads a trace's spans and attachments from the location in its `mlflow.artifactLocation`
tag, with the server's own storage credentials, and its handlers let any user who may edit a trace
set that tag (they refuse only the archive tags). Bob pointed the tag of his own trace at alice's
trace folder and read her spans through get-trace-artifact. So: the tag cannot be set or deleted
through the tag routes (as MLflow already refuses for the archive tags), and whatever wrote it,
the server reads trace data only from where its store puts it:
`<experiment artifact location>/traces/<trace id>/artifacts`, and archived payloads only from
`<archive root>/<experiment id>/traces/<trace id>/artifacts`, for trace ids of MLflow's own shape.
"""

from __future__ import annotations

import re
from typing import Any, Callable
from urllib.parse import urlsplit

TRACE_ID = re.compile(r"(?:tr-)?[0-9a-f]{32}")
"""The trace ids MLflow makes: `tr-` and the OpenTelemetry trace id in hex (V3), or 32 hex digits
(V2 request ids, in older databases). A client may send any string to StartTraceV3, and
`tr-<someone's id>/` would join to someone else's folder."""
LOCATION_READERS = ("get_artifact_uri_for_trace", "get_archive_uri_for_trace")
"""The functions MLflow 3.17.2 resolves a trace's storage location with, by the name each module
that reads trace data imports them under."""


def _trace_id(trace_info: Any) -> str:
    return getattr(trace_info, "trace_id", None) or trace_info.request_id


def expected_artifact_location(trace_info: Any) -> str:
    from mlflow.server.handlers import _get_tracking_store
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.utils.uri import append_to_uri_path

    experiment = _get_tracking_store().get_experiment(trace_info.experiment_id)
    return append_to_uri_path(experiment.artifact_location, SqlAlchemyStore.TRACE_FOLDER_NAME, _trace_id(trace_info),
                              SqlAlchemyStore.ARTIFACTS_FOLDER_NAME)


def _refused(trace_info: Any, location: str) -> Exception:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

    return MlflowException(f"trace {_trace_id(trace_info)}'s data location {location!r} is not the trace's own "
                           "folder: it is not read", error_code=PERMISSION_DENIED)


def _checked_artifact_location(read: Callable[[Any], str]) -> Callable[[Any], str]:
    def checked(trace_info: Any) -> str:
        location = read(trace_info)
        if (not TRACE_ID.fullmatch(_trace_id(trace_info))
                or location.rstrip("/") != expected_artifact_location(trace_info).rstrip("/")):
            raise _refused(trace_info, location)
        return location

    return checked


def _checked_archive_location(read: Callable[[Any], str]) -> Callable[[Any], str]:
    def checked(trace_info: Any) -> str:
        location = read(trace_info)
        own = f"/{trace_info.experiment_id}/traces/{_trace_id(trace_info)}/artifacts"
        if (not TRACE_ID.fullmatch(_trace_id(trace_info)) or not location.rstrip("/").endswith(own)
                or any(sign in location for sign in "?#%") or ".." in urlsplit(location).path.split("/")):
            raise _refused(trace_info, location)  # review 7: `<anywhere>?/<exp>/traces/<id>/artifacts`
        return location

    return checked


def install() -> None:
    """In the server process, before it serves: refuse the tag on MLflow's tag routes, and check
    every location read in the modules that read trace data."""
    from mlflow.server import handlers
    from mlflow.store.tracking import sqlalchemy_store
    from mlflow.utils.mlflow_tags import MLFLOW_ARTIFACT_LOCATION

    handlers._HANDLER_BLOCKED_TRACE_TAGS = frozenset(handlers._HANDLER_BLOCKED_TRACE_TAGS | {MLFLOW_ARTIFACT_LOCATION})
    for module in (handlers, sqlalchemy_store):
        for name, wrap in zip(LOCATION_READERS, (_checked_artifact_location, _checked_archive_location)):
            if hasattr(module, name) and not getattr(getattr(module, name), "guarded", False):
                checked = wrap(getattr(module, name))
                checked.guarded = True  # type: ignore[attr-defined]
                setattr(module, name, checked)
