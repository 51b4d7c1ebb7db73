"""Issue 29, the authorization regression suite, first part: the route table (authz_routes.py) names
every route MLflow 3.17.2 serves (its Flask url_map in both /api/ and /ajax-api/ forms, the auth
app's own routes, the FastAPI routers by family) with B's expected outcome, and a route a new MLflow
adds fails here until someone decides its outcome. The sweep that sends each route as B against A's
data (branch wip/authz-sweep) is not finished: it stays off main until it completes in CI time.
"""

from __future__ import annotations

import secrets


from tests.rehearsal import authz_routes as table

SECRET = f"alice-secret-{secrets.token_hex(6)}"
WORKERS = 16
ALLOWS_READING = {"READ", "USE", "EDIT", "MANAGE"}
ALLOWS_WRITING = {"EDIT", "MANAGE"}
GRANT = "/api/3.0/mlflow/users/permissions/grant"
DENY = "DENY"  # MLflow 3.17.2's explicit deny (its grant API takes DENY, not NO_PERMISSIONS)
TIMEOUT_SECONDS = 15


# --- the table against what MLflow serves (no stack) ---------------------------------------------

def _flask_routes() -> set[tuple[str, str]]:
    """(method, rule) of MLflow's Flask url_map, as served (both /api/ and /ajax-api/ forms)."""
    from mlflow.server import app

    return {(method, rule.rule) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def _auth_app_paths() -> set[str]:
    """Every path MLflow's auth app names (its own routes and the Flask routes it guards), folded."""
    import mlflow.server.auth.routes as routes

    return {table.folded(value) for name, value in vars(routes).items()
            if name.isupper() and isinstance(value, str) and value.startswith("/")}


def _fastapi_paths() -> set[str]:
    """The routes of the FastAPI routers the server mounts in front of Flask."""
    from mlflow.server.fastapi_app import create_fastapi_app

    paths = set()
    for route in create_fastapi_app().routes:
        if hasattr(route, "original_router"):
            paths.update(route.include_context.prefix + sub.path for sub in route.original_router.routes)
    return paths


def test_the_table_names_every_route_mlflow_serves_and_no_other():
    named = {route.key for route in table.ROUTES}
    served = {(method, table.folded(rule)) for method, rule in _flask_routes()}
    missing = sorted(served - named)
    gone = sorted({route.key for route in table.ROUTES if route.mode is None} - served)
    auth_named = {route.rule for route in table.ROUTES}
    auth_missing = sorted(_auth_app_paths() - auth_named)
    families_missing = sorted(path for path in _fastapi_paths() if not path.startswith(tuple(table.FASTAPI_FAMILIES)))
    problems = ([f"route {method} {rule} added by a new MLflow: decide its expected outcome in authz_routes.py"
                 for method, rule in missing + [("?", path) for path in auth_missing + families_missing]]
                + [f"route {method} {rule} is in authz_routes.py but MLflow no longer serves it: remove it"
                   for method, rule in gone])
    assert not problems, "\n".join(problems)
