"""The stack, through its own API only (it works where the database is not reachable): reachable, the
credentials accepted, how it names artifact locations, and what it already holds.

Credentials are MLflow's own environment variables (MLFLOW_TRACKING_USERNAME/PASSWORD, MLFLOW_TRACKING_TOKEN,
MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_INSECURE_TLS), read by MLflow's `get_default_host_creds`:
never an argument, never printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migration.errors import MigrationError, RefusedError, UsageError
from migration.moveplan import StackLayout
from migration.uris import mask_uri

TIMEOUT = 30
PAGE = 1000
WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"  # mlflow/utils/workspace_utils.py, WORKSPACE_HEADER_NAME


def normalise_stack_uri(uri: str) -> str:
    """The stack's key (manifest rows, printed steps): `scheme://host[:port]/path`, scheme and host lowercased,
    default port and trailing slash dropped. Credentials in the URI are refused: they would be printed, kept in
    every manifest row and seen in the process list; MLflow's variables carry them."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--to must be the stack's tracking URI (http:// or https://), got {mask_uri(uri)!r}")
    if "@" in parts.netloc:
        raise UsageError("--to must not carry credentials (user:password@host): set MLFLOW_TRACKING_USERNAME and "
                         "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment instead")
    if parts.query or parts.fragment:
        raise UsageError("--to is the stack's tracking URI without a query or fragment (?... or #...)")
    try:
        port = parts.port
    except ValueError:
        raise UsageError("--to names an invalid port") from None
    host = (parts.hostname or "").lower()
    if not host:
        raise UsageError("--to names no host")
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


class Unreachable(MigrationError):
    """No answer from the stack: nothing was written."""


@dataclass
class StackContents:
    """What the stack holds, in every workspace (experiment 0 included), deleted experiments, runs and traces
    included; deleted logged models are not (MLflow 3.17.2's logged-model search never returns them: the move
    knows its own from the laptop's rows, MovePlan.deleted_models)."""

    experiments: dict[str, str] = field(default_factory=dict)  # id -> name
    runs: set[str] = field(default_factory=set)
    logged_models: set[str] = field(default_factory=set)
    traces: set[str] = field(default_factory=set)
    registered_models: list[str] = field(default_factory=list)
    workspaces: list[str] = field(default_factory=list)  # searched ([] for a stack without workspaces)
    owner: dict[str, str] = field(default_factory=dict)  # run, logged model or trace id -> its experiment id
    created: dict[str, int] = field(default_factory=dict)  # experiment id -> creation_time (ms), as the server says
    location: dict[str, str] = field(default_factory=dict)  # run or logged model id -> its artifact location


class Stack:
    def __init__(self, tracking_uri: str):
        from mlflow.utils.credentials import get_default_host_creds

        self.uri = normalise_stack_uri(tracking_uri)
        self.creds = get_default_host_creds(self.uri)

    def call(self, endpoint: str, method: str = "GET", workspace: str | None = None, **kwargs) -> dict:
        import requests
        from mlflow.utils.rest_utils import http_request

        key = "params" if method == "GET" else "json"
        headers = {WORKSPACE_HEADER: workspace} if workspace else None
        try:
            resp = http_request(self.creds, endpoint, method, max_retries=0, backoff_factor=0, timeout=TIMEOUT,
                                extra_headers=headers, **({key: kwargs} if kwargs else {}))
        except requests.exceptions.RequestException as exc:
            raise Unreachable(f"cannot reach the stack at {mask_uri(self.uri)}: {type(exc).__name__}") from exc
        except Exception as exc:  # noqa: BLE001 - MLflow wraps connection failures in its own exception
            raise Unreachable(f"cannot reach the stack at {mask_uri(self.uri)}: {_first_line(exc)}") from exc
        if resp.status_code in (401, 403):
            raise RefusedError(f"the stack at {mask_uri(self.uri)} refused the credentials ({resp.status_code} on "
                               f"{endpoint}); nothing was written",
                               hint="set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) "
                                    "to the stack's admin account")
        if resp.status_code == 404 and "RESOURCE_DOES_NOT_EXIST" in resp.text:
            return {"_missing": True}
        if resp.status_code != 200:
            raise Unreachable(f"the stack at {mask_uri(self.uri)} answered {resp.status_code} on {endpoint}: "
                              f"{_first_line(resp.text)[:200]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise Unreachable(f"the stack at {mask_uri(self.uri)} answered {endpoint} with something other than "
                              "MLflow's JSON (is --to the tracking URI, with its path prefix?)") from exc

    def layout(self) -> StackLayout:
        """How the server names locations: its default experiment's location is `<root>/0`, or
        `<root>/workspaces/default/0` when it runs with workspaces."""
        exp = self.call("/api/2.0/mlflow/experiments/get", experiment_id="0").get("experiment")
        location = (exp or {}).get("artifact_location", "")
        if not location.startswith("mlflow-artifacts:"):
            raise RefusedError(f"the stack does not serve artifacts through MLflow (its default experiment's location "
                               f"is {location!r}, not mlflow-artifacts:/...): a move needs `mlflow server "
                               "--serve-artifacts`, as every stack of this project runs")
        head = location.rstrip("/").removesuffix("/0")
        if head.endswith("/workspaces/default"):
            return StackLayout(root=head.removesuffix("/workspaces/default") or "mlflow-artifacts:", workspaces=True)
        return StackLayout(root=head if head != "mlflow-artifacts:" else "mlflow-artifacts:", workspaces=False)

    def check_admin(self) -> str | None:
        """auth.mode mlflow: whether the account is an admin (a move writes artifacts of experiments that exist
        on the stack only after the database step, which only an admin may). None where no such API exists."""
        import os

        username = os.environ.get("MLFLOW_TRACKING_USERNAME")
        if not username:
            return None
        from mlflow.utils.rest_utils import http_request

        try:
            resp = http_request(self.creds, "/api/2.0/mlflow/users/get", "GET", params={"username": username},
                                max_retries=0, backoff_factor=0, timeout=TIMEOUT)
        except Exception:  # noqa: BLE001 - best effort; the uploads would be refused clearly anyway
            return None
        if resp.status_code != 200:
            return None
        try:
            user = resp.json().get("user", {})
        except ValueError:
            return None
        if user.get("is_admin") is False:
            raise RefusedError(f"the account {username!r} is not an admin of the stack (auth.mode mlflow): a move "
                               "writes the artifacts of experiments the stack does not hold yet; nothing was written",
                               hint="run the move with the stack's admin account (pulumi stack output admin_username, "
                                    "admin_password)")
        return username

    def contents(self, layout: StackLayout | None = None) -> StackContents:
        """Everything the stack holds that a move cares about, in every workspace when it runs with them
        (each searched with MLflow's workspace header; experiment ids are unique across workspaces)."""
        found = StackContents()
        if layout is not None and layout.workspaces:
            page = self.call("/api/3.0/mlflow/workspaces", "GET")
            found.workspaces = sorted({w["name"] for w in page.get("workspaces", [])} | {"default"})
        for workspace in found.workspaces or [None]:
            self._contents_of(found, workspace)
        return found

    def _contents_of(self, found: StackContents, workspace: str | None) -> None:
        ids: list[str] = []
        for exp in self._pages("/api/2.0/mlflow/experiments/search", "experiments", workspace,
                               max_results=PAGE, view_type="ALL"):
            found.experiments[str(exp["experiment_id"])] = exp.get("name", "")
            if exp.get("creation_time"):
                found.created[str(exp["experiment_id"])] = int(exp["creation_time"])
            ids.append(str(exp["experiment_id"]))
        for start in range(0, len(ids), 100):
            chunk = ids[start:start + 100]
            for r in self._pages("/api/2.0/mlflow/runs/search", "runs", workspace, experiment_ids=chunk,
                                 max_results=PAGE, run_view_type="ALL"):
                found.runs.add(r["info"]["run_id"])
                found.owner[r["info"]["run_id"]] = str(r["info"].get("experiment_id", ""))
                found.location[r["info"]["run_id"]] = r["info"].get("artifact_uri", "")
            for m in self._pages("/api/2.0/mlflow/logged-models/search", "models", workspace, experiment_ids=chunk,
                                 max_results=100):
                self._add_model(found, m["info"])
            locations = [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": e}} for e in chunk]
            for t in self._pages("/api/3.0/mlflow/traces/search", "traces", workspace, locations=locations,
                                 max_results=100):
                found.traces.add(t["trace_id"])
                found.owner[t["trace_id"]] = str(
                    (t.get("trace_location") or {}).get("mlflow_experiment", {}).get("experiment_id", ""))
        found.registered_models += [m["name"] for m in self._pages(
            "/api/2.0/mlflow/registered-models/search", "registered_models", workspace, get=True,
            max_results=str(PAGE))]

    @staticmethod
    def _add_model(found: StackContents, info: dict) -> None:
        found.logged_models.add(info["model_id"])
        found.owner[info["model_id"]] = str(info.get("experiment_id", ""))
        found.location[info["model_id"]] = info.get("artifact_uri", "")  # LoggedModelInfo's name for it

    def add_deleted_models(self, found: StackContents, model_ids) -> None:
        """Logged models the search cannot list (MLflow 3.17.2 never returns deleted ones), asked one by one
        with `allow_deleted=true` (GetLoggedModel honours it): a model deleted on either side after the move is
        still the stack's row; one it does not have at all stays absent."""
        for model_id in sorted(set(model_ids) - found.logged_models):
            for workspace in found.workspaces or [None]:
                got = self.call(f"/api/2.0/mlflow/logged-models/{model_id}", workspace=workspace,
                                allow_deleted="true")
                if got.get("model", {}).get("info"):
                    self._add_model(found, got["model"]["info"])
                    break

    def _pages(self, endpoint: str, key: str, workspace: str | None, get: bool = False, **body):
        token = None
        while True:
            page = self.call(endpoint, "GET" if get else "POST", workspace=workspace,
                             **body, **({"page_token": token} if token else {}))
            yield from page.get(key, [])
            token = page.get("next_page_token")
            if not token:
                return


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
