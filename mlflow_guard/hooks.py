"""Flask checks that run after the auth app's own (registered after it, so they see only requests
it let through), for what its validators allow and the project does not (issue 29 item 6)."""

from __future__ import annotations

from typing import Any, Callable, Optional

from flask import Flask, Response, request

CREATE_EXPERIMENT = "/mlflow/experiments/create"
LINK_TRACES_TO_RUN = "/mlflow/traces/link-to-run"
START_TRACE_V3 = "/3.0/mlflow/traces"
_ROLES = "only an administrator reads roles; your own grants are at users/current/permissions"
ADMIN_ROUTES = {
    ("GET", "/mlflow/users/list"): "only an administrator lists the users",
    ("GET", "/mlflow/roles/get"): _ROLES,
    ("GET", "/mlflow/roles/list"): _ROLES,
    ("GET", "/mlflow/roles/permissions/list"): _ROLES,
    ("POST", "/mlflow/demo/generate"): "only an administrator generates demo data on this server",
}
"""(method, route suffix) the auth app lets every signed-in user call, for administrators only here
(auth.mode mlflow). users/list shows every username. MLflow 3.17.2 keeps each user's grants in a
role of its own (`__user_<id>__`) in workspace `default` and lets anyone holding a role there read
every role there: every user would read every other user's grants (experiment ids, model names).
demo/generate writes a demo experiment with runs, traces and prompts into the production stores."""
BAD_REQUEST = 400
FORBIDDEN = 403


def _forbidden(message: str) -> Response:
    return Response(message + "\n", status=FORBIDDEN, mimetype="text/plain")


def _route() -> str:
    return request.url_rule.rule if request.url_rule is not None else ""


def traces_stay_in_their_experiment() -> Optional[Response]:
    """`traces/link-to-run`: MLflow asks for EDIT on the run and only READ on the traces, so a reader
    links someone else's traces to their own run. Linking is allowed only when every trace lives in
    the run's experiment, where the EDIT already checked on the run is EDIT on the traces too.
    Read as the handler reads it (the protobuf message, either field spelling)."""
    if not _route().endswith(LINK_TRACES_TO_RUN) or request.method != "POST":
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.protos.service_pb2 import LinkTracesToRun
    from mlflow.server.handlers import _get_request_message, _get_tracking_store

    try:
        message = _get_request_message(LinkTracesToRun())
        store = _get_tracking_store()
        experiment_id = store.get_run(message.run_id).info.experiment_id
        elsewhere = [trace_id for trace_id in message.trace_ids
                     if store.get_trace_info(trace_id).experiment_id != experiment_id]
    except MlflowException:
        return None  # the handler answers with the same error
    if elsewhere:
        return _forbidden(f"Permission denied: traces {elsewhere} are not in the run's experiment; "
                          "a trace is linked only to a run of its own experiment")
    return None


def _started_trace_info() -> Optional[Any]:
    """The TraceInfo proto of a StartTraceV3 request, read as the handler reads it; None for another
    route or a body the handler refuses itself."""
    if request.method != "POST" or not _route().endswith(START_TRACE_V3):
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.protos.service_pb2 import StartTraceV3
    from mlflow.server.handlers import _get_request_message

    try:
        return _get_request_message(StartTraceV3()).trace.trace_info
    except MlflowException:
        return None  # the handler answers with the same error


def traces_start_in_their_own_experiment() -> Optional[Response]:
    """StartTraceV3 (`POST .../3.0/mlflow/traces`): MLflow's store merges a start for a trace id that
    exists into that trace, moving it (and its spans) to the experiment the auth app checked: bob
    took alice's trace into his experiment and read it (round-3 review). A trace id that exists
    elsewhere is refused, as is one of another shape than MLflow's (traces.TRACE_ID), which would
    name another trace's folder (`tr-<id>/`)."""
    info = _started_trace_info()
    if info is None:
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_tracking_store

    from mlflow_guard.traces import TRACE_ID

    if not TRACE_ID.fullmatch(info.trace_id):
        return Response(f"trace id {info.trace_id!r} is not of MLflow's shape "
                        "(tr- and 32 hex digits, or 32 hex digits)\n",
                        status=BAD_REQUEST, mimetype="text/plain")
    try:
        existing = _get_tracking_store().get_trace_info(info.trace_id).experiment_id
    except MlflowException:
        return None  # a new trace
    if existing != info.trace_location.mlflow_experiment.experiment_id:
        return _forbidden(f"Permission denied: trace {info.trace_id} exists in another experiment; "
                          "a trace is started only in its own experiment")
    return None


def trace_starts_keep_to_their_own_assessments() -> Optional[Response]:
    """StartTraceV3 carries the trace's assessments, written by id: MLflow's merge path (a second start of
    the same trace) writes an assessment over the row that already has its id, on whichever trace that
    row belongs to, and deleting an assessment makes the one it `overrides` valid again without asking
    which trace that is. Bob moved alice's assessment onto his own trace (destroying hers) and revived
    her overridden one (review 8). An assessment id that exists on another trace is refused, as is an
    `overrides` naming anything but an assessment of the same trace."""
    info = _started_trace_info()
    if info is None:
        return None
    assessments = list(info.assessments)
    if not assessments:
        return None
    named = {assessment.assessment_id for assessment in assessments if assessment.assessment_id}
    named |= {assessment.overrides for assessment in assessments if assessment.overrides}
    traces = _traces_of_assessments(named)
    own = {assessment.assessment_id for assessment in assessments if assessment.assessment_id}
    elsewhere = sorted(a for a in own if traces.get(a, info.trace_id) != info.trace_id)
    if elsewhere:
        return _forbidden(f"Permission denied: assessments {elsewhere} belong to another trace; a trace start "
                          "carries only its own trace's assessments")
    foreign = sorted(assessment.overrides for assessment in assessments if assessment.overrides
                     and assessment.overrides not in own and traces.get(assessment.overrides) != info.trace_id)
    if foreign:
        return _forbidden(f"Permission denied: an assessment overrides {foreign}, not an assessment of trace "
                          f"{info.trace_id}; an assessment overrides only one of its own trace")
    return None


def _traces_of_assessments(assessment_ids: set[str]) -> dict[str, str]:
    """assessment id -> the trace it is on, for those that exist (the server's SQL store)."""
    from mlflow.server.handlers import _get_tracking_store
    from mlflow.store.tracking.dbmodels.models import SqlAssessments

    if not assessment_ids:
        return {}
    with _get_tracking_store().ManagedSessionMaker() as session:
        rows = session.query(SqlAssessments.assessment_id, SqlAssessments.trace_id).filter(
            SqlAssessments.assessment_id.in_(sorted(assessment_ids))).all()
    return {assessment_id: trace_id for assessment_id, trace_id in rows}


TRACE_STARTS = {("POST", START_TRACE_V3), ("POST", "/2.0/mlflow/traces"),
                ("PATCH", "/2.0/mlflow/traces/<request_id>")}
"""StartTraceV3, and the 2.0 StartTrace and EndTrace: the routes that write a trace's tags in bulk."""


def _bulk_trace_tags() -> list[str]:
    """The tag keys a trace start or end asks to write, read as the handler reads them."""
    from mlflow.protos.service_pb2 import EndTrace, StartTrace, StartTraceV3
    from mlflow.server.handlers import _get_request_message

    if _route().endswith(START_TRACE_V3):
        return list(_get_request_message(StartTraceV3()).trace.trace_info.tags)
    message = _get_request_message(StartTrace() if request.method == "POST" else EndTrace())
    return [tag.key for tag in message.tags]


def traces_carry_no_system_tags() -> Optional[Response]:
    """The tags MLflow keeps for itself (where a trace's spans live, its archive's location) are
    refused on trace starts and ends as MLflow refuses them on the tag routes: bob started a trace
    whose archive location named alice's run folder (`...?/<his experiment>/traces/<id>/artifacts`)
    and read her spans through traces/get (review 7). traces.py checks every archive read as well."""
    if not any(request.method == method and _route().endswith(suffix) for method, suffix in TRACE_STARTS):
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import (MLFLOW_TRACE_ARCHIVAL_FAILURE, MLFLOW_TRACE_ARCHIVE_LOCATION,
                                          MLFLOW_TRACE_SPANS_LOCATION)

    try:
        keys = _bulk_trace_tags()
    except MlflowException:
        return None  # the handler answers with the same error
    reserved = sorted(set(keys) & {MLFLOW_TRACE_SPANS_LOCATION, MLFLOW_TRACE_ARCHIVE_LOCATION,
                                   MLFLOW_TRACE_ARCHIVAL_FAILURE})
    if reserved:
        return Response(f"tags {reserved} are MLflow's own: the server sets them, a client may not\n",
                        status=BAD_REQUEST, mimetype="text/plain")
    return None


def experiments_take_the_servers_location() -> Optional[Response]:
    """`experiments/create` with an `artifact_location` is refused, for every user: the server reads and
    writes a run's artifacts at `<experiment's location>/<run id>/artifacts` with its own storage
    credentials, so a chosen location let a user with no grant add files inside another user's run
    (`s3://<bucket>/<their experiment>/<their run>/artifacts`) or create files anywhere the server may
    write on its own disk (`file:///...`), through upload-artifact (review 6). Without one, the server
    gives the experiment `<artifacts destination>/<experiment id>`, the layout everything here assumes."""
    if request.method != "POST" or not _route().endswith(CREATE_EXPERIMENT):
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.protos.service_pb2 import CreateExperiment
    from mlflow.server.handlers import _get_request_message

    try:
        location = _get_request_message(CreateExperiment()).artifact_location
    except MlflowException:
        return None  # the handler answers with the same error
    if not location:
        return None
    return Response(f"artifact_location {location!r} refused: on this server every experiment's artifacts live "
                    "where the server puts them (<artifacts destination>/<experiment id>); create the experiment "
                    "without an artifact_location\n", status=BAD_REQUEST, mimetype="text/plain")


def administrators_only() -> Optional[Response]:
    """ADMIN_ROUTES: an admin, or an admin of a workspace (who assigns its roles), may; others get 403."""
    refusal = next((message for (method, suffix), message in ADMIN_ROUTES.items()
                    if request.method == method and _route().endswith(suffix)), None)
    if refusal is None:
        return None
    from mlflow.server.auth import authenticate_request, store

    authorization = authenticate_request()
    if isinstance(authorization, Response):
        return authorization
    user = store.get_user(authorization.username)
    if user.is_admin or store.list_workspace_admin_workspaces(user.id):
        return None
    return _forbidden(f"Permission denied: {refusal}")


def install(app: Flask, checks: tuple[Callable[[], Optional[Response]], ...]) -> None:
    """Append the checks to the app's before_request functions, after the auth app's."""
    for check in checks:
        app.before_request(check)
