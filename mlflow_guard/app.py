"""The apps `mlflow server --app-name basic-auth | oidc-auth` runs in this image.

The image registers these factories under MLflow's own app names (the `mlflow.app` entry points of
mlflow_guard/dist-info, on PYTHONPATH, which Python searches before site-packages, so
`mlflow.server._find_app` finds them first). Keeping the names keeps what `mlflow server` does for
them (the basic-auth admin bootstrap before the workers start, the job runners' gateway token) and
what the day-2 tools read from the command line (ops/: `--app-name` names the auth database's
history). Each factory builds the auth app exactly as MLflow or the plugin does, appends the
project's Flask checks after the auth app's own, and puts the Guard in front.
"""

from __future__ import annotations

from mlflow_guard import hooks, traces
from mlflow_guard.asgi import Guard


def basic_auth() -> Guard:
    """MLflow's auth app (auth.mode mlflow), guarded."""
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app

    inner = create_app()
    traces.install()
    hooks.install(flask_app, (hooks.traces_stay_in_their_experiment, hooks.traces_start_in_their_own_experiment,
                              hooks.trace_starts_keep_to_their_own_assessments,
                              hooks.experiments_take_the_servers_location, hooks.traces_carry_no_system_tags,
                              hooks.administrators_only))
    return Guard(inner)


def oidc_auth() -> Guard:
    """mlflow-oidc-auth's app (auth.mode oidc), guarded. Its users list is its own FastAPI route,
    open to every signed-in user by the plugin's design (README, Security model)."""
    from mlflow.server import app as flask_app
    from mlflow_oidc_auth.app import app as inner

    traces.install()
    hooks.install(flask_app, (hooks.traces_stay_in_their_experiment, hooks.traces_start_in_their_own_experiment,
                              hooks.trace_starts_keep_to_their_own_assessments,
                              hooks.experiments_take_the_servers_location, hooks.traces_carry_no_system_tags))
    return Guard(inner)
