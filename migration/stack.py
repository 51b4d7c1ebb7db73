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


class Unreachable(MigrationError):
    """No answer from the stack: nothing was written."""


@dataclass
class StackContents:
    experiments: dict[str, str] = field(default_factory=dict)  # id -> name, deleted ones included
    runs: set[str] = field(default_factory=set)  # of the source's experiments that the stack holds
    registered_models: list[str] = field(default_factory=list)


class Stack:
    def __init__(self, tracking_uri: str):
        from mlflow.utils.credentials import get_default_host_creds

        if not tracking_uri.startswith(("http://", "https://")):
            raise UsageError(f"--to must be the stack's tracking URI (http:// or https://), got "
                                 f"{mask_uri(tracking_uri)!r}")
        self.uri = tracking_uri.rstrip("/")
        self.creds = get_default_host_creds(self.uri)

    def call(self, endpoint: str, method: str = "GET", **kwargs) -> dict:
        import requests
        from mlflow.utils.rest_utils import http_request

        key = "params" if method == "GET" else "json"
        try:
            resp = http_request(self.creds, endpoint, method, max_retries=0, backoff_factor=0, timeout=TIMEOUT,
                                **({key: kwargs} if kwargs else {}))
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

    def contents(self, source_experiments: list[str]) -> StackContents:
        found = StackContents()
        token = None
        while True:
            body = {"max_results": 1000, "view_type": "ALL", **({"page_token": token} if token else {})}
            page = self.call("/api/2.0/mlflow/experiments/search", "POST", **body)
            for exp in page.get("experiments", []):
                found.experiments[str(exp["experiment_id"])] = exp.get("name", "")
            token = page.get("next_page_token")
            if not token:
                break
        present = [e for e in source_experiments if e in found.experiments]
        for start in range(0, len(present), 100):
            token = None
            while True:
                body = {"experiment_ids": present[start:start + 100], "max_results": 1000, "run_view_type": "ALL",
                        **({"page_token": token} if token else {})}
                page = self.call("/api/2.0/mlflow/runs/search", "POST", **body)
                found.runs.update(r["info"]["run_id"] for r in page.get("runs", []))
                token = page.get("next_page_token")
                if not token:
                    break
        page = self.call("/api/2.0/mlflow/registered-models/search", "GET", max_results="1000")
        found.registered_models = [m["name"] for m in page.get("registered_models", [])]
        return found


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
