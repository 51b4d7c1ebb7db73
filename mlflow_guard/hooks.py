"""Flask checks that run after the auth app's own (registered after it, so they see only requests
it let through), for what its validators allow and the project does not (issue 29 item 6)."""

from __future__ import annotations

from typing import Callable, Optional

from flask import Flask, Response, request

LINK_TRACES_TO_RUN = "/mlflow/traces/link-to-run"
LIST_USERS = "/mlflow/users/list"
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


def users_list_for_admins() -> Optional[Response]:
    """`users/list` (auth.mode mlflow): MLflow lets every user list every username; here only an
    admin, or an admin of a workspace (who assigns its roles), may."""
    if not _route().endswith(LIST_USERS):
        return None
    from mlflow.server.auth import authenticate_request, store

    authorization = authenticate_request()
    if isinstance(authorization, Response):
        return authorization
    user = store.get_user(authorization.username)
    if user.is_admin or store.list_workspace_admin_workspaces(user.id):
        return None
    return _forbidden("Permission denied: only an administrator lists the users")


def install(app: Flask, checks: tuple[Callable[[], Optional[Response]], ...]) -> None:
    """Append the checks to the app's before_request functions, after the auth app's."""
    for check in checks:
        app.before_request(check)
