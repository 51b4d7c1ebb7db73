"""After the commit, prove that MLflow itself works on the target.

Run in a child process that starts importing MLflow (slow) while the migration runs, and receives
the target URI on stdin once the data is committed (never on its command line). It goes through
MLflow's public client and fluent API, the way a user would: set_experiment + start_run + logging a
NaN metric, a registered model and a model version, then removes everything it created.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from migration.source import DEFAULT_WORKSPACE, WORKDIR_PREFIX
from migration.uris import redact


@dataclass
class ProbeResult:
    ok: bool
    seconds: float
    detail: str
    experiment_id: str | None = None


class Probe:
    """The probe child process (started early, told to run after commit)."""

    def __init__(self) -> None:
        # named like the source copy's directory: a killed migration's leftovers are swept together
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-probe-")
        self._stderr = open(os.path.join(self._tmp.name, "stderr.log"), "w+b")
        env = dict(os.environ)
        env.setdefault("MLFLOW_TRACKING_URI", "")
        env.pop("MLFLOW_TRACKING_URI")
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # the tool's own probe is no usage to report
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(__file__)),
                                                           env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "migration.probe", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=self._tmp.name, env=env,
        )

    def run(self, uri: str, secrets: list[str], workspaces: bool = False, timeout: float = 180.0) -> ProbeResult:
        """`workspaces`: the data uses MLflow workspaces besides default; probe with them enabled."""
        started = time.perf_counter()
        try:
            out, _ = self.proc.communicate((json.dumps({"uri": uri, "workspaces": workspaces}) + "\n").encode(),
                                           timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return ProbeResult(False, time.perf_counter() - started, f"MLflow probe timed out after {timeout:.0f} s")
        lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("{")]
        if not lines:
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace").strip().splitlines()[-15:]
            return ProbeResult(False, time.perf_counter() - started,
                               redact("MLflow probe crashed:\n" + "\n".join(err), secrets))
        data = json.loads(lines[-1])
        return ProbeResult(bool(data["ok"]), time.perf_counter() - started, redact(data["detail"], secrets),
                           data.get("experiment_id"))

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def close(self) -> None:
        self.cancel()
        self._stderr.close()
        self._tmp.cleanup()


def _probe(uri: str, workspaces: bool = False) -> dict:
    """`workspaces`: the data uses MLflow workspaces besides default, so MLflow must run with them."""
    import math
    import uuid

    if workspaces:
        os.environ["MLFLOW_ENABLE_WORKSPACES"] = "true"
    import mlflow
    from mlflow import MlflowClient

    tag = uuid.uuid4().hex[:12]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    steps: list[str] = []
    exp_id = run_id = None
    model = f"migration-probe-{tag}"
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        if _workspaces_enabled():
            # MLflow then requires an active workspace: the probe works in the default one
            mlflow.set_workspace(DEFAULT_WORKSPACE)
        exp = mlflow.set_experiment(f"migration-probe-{tag}")
        if exp is None or exp.name != f"migration-probe-{tag}":
            raise AssertionError(f"set_experiment returned {exp!r}")
        exp_id = exp.experiment_id
        if client.get_experiment_by_name(exp.name).experiment_id != exp_id:
            raise AssertionError("the new experiment is not found by its name")
        steps.append(f"created experiment {exp_id}")
        with mlflow.start_run() as run:
            run_id = run.info.run_id
            mlflow.log_param("probe", "1")
            mlflow.log_metric("probe_nan", float("nan"))
            mlflow.log_metric("probe_value", 1.5, step=3)
        got = client.get_run(run_id)
        if got.info.experiment_id != exp_id:
            raise AssertionError(f"run landed in experiment {got.info.experiment_id}, not {exp_id}")
        if not math.isnan(got.data.metrics["probe_nan"]) or got.data.metrics["probe_value"] != 1.5:
            raise AssertionError(f"metrics read back wrong: {got.data.metrics}")
        steps.append("created a run with a NaN metric")
        client.create_registered_model(model)
        mv = client.create_model_version(model, source=f"{got.info.artifact_uri}/model", run_id=run_id)
        client.set_registered_model_alias(model, "probe", mv.version)
        if client.get_model_version_by_alias(model, "probe").version != mv.version:
            raise AssertionError("model alias does not resolve")
        steps.append(f"registered model version {mv.version}")
    except Exception as exc:  # noqa: BLE001
        result = {"ok": False, "detail": f"MLflow failed on the target after {'; '.join(steps) or 'start'}: "
                                         f"{type(exc).__name__}: {exc}", "experiment_id": exp_id}
    else:
        result = {"ok": True, "detail": "; ".join(steps), "experiment_id": exp_id}
    cleanup = []
    try:
        try:
            client.delete_registered_model(model)
        except Exception:  # noqa: BLE001 - may not exist
            pass
        store = client._tracking_client.store
        if run_id:
            store._hard_delete_run(run_id)
        if exp_id:
            client.delete_experiment(exp_id)  # hard deletion only takes deleted experiments
            store._hard_delete_experiment(exp_id)
            _give_back_experiment_id(store.engine, int(exp_id))
        cleanup.append("probe removed")
    except Exception as exc:  # noqa: BLE001
        cleanup.append(f"could not remove the probe experiment {exp_id}: {exc}")
    result["detail"] += "; " + "; ".join(cleanup)
    return result


def _workspaces_enabled() -> bool:
    try:
        from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
    except ImportError:  # an MLflow without workspaces
        return False
    return bool(MLFLOW_ENABLE_WORKSPACES.get())


def _give_back_experiment_id(engine, exp_id: int) -> None:
    """The probe's experiment took an id from the sequence the migration had set to max+1: set it back,
    unless someone else has drawn an id since (PostgreSQL only; other dialects have no such sequence)."""
    if engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    with engine.begin() as conn:
        seq = conn.execute(text("SELECT pg_get_serial_sequence('experiments', 'experiment_id')")).scalar()
        if seq and conn.execute(text(f"SELECT last_value FROM {seq}")).scalar() == exp_id:
            conn.execute(text("SELECT setval(:seq, (SELECT COALESCE(max(experiment_id), 0) + 1 FROM experiments), "
                              "false)"), {"seq": seq})


def warm_up() -> None:
    """Import what the probe's first calls would import lazily, and parse the migration scripts once.
    MLflow is imported without its data-science stack (migration/lean.py)."""
    from migration import lean

    os.environ.setdefault("MLFLOW_ENABLE_WORKSPACES", "false")
    lean.run(_import_probe_modules)
    import mlflow.store.db.utils as db_utils

    # Each store checks the schema revision by parsing every migration script; do it once, now.
    if not getattr(db_utils._get_latest_schema_revision, "_migration_cached", False):
        head = db_utils._get_latest_schema_revision()
        cached = lambda: head  # noqa: E731
        cached._migration_cached = True
        db_utils._get_latest_schema_revision = cached


def _import_probe_modules() -> None:
    import mlflow  # noqa: F401
    from mlflow import MlflowClient  # noqa: F401
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as _R  # noqa: F401
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as _T  # noqa: F401
    import mlflow.store.db.utils  # noqa: F401

    for dialect in ("sqlalchemy.dialects.postgresql.psycopg", "sqlalchemy.dialects.postgresql.psycopg2"):
        try:  # the driver imports of the first engine, done before the go
            __import__(dialect)
            __import__(dialect.rsplit(".", 1)[1])
        except ImportError:
            pass

    for module in ("git", "psycopg2.extras", "mlflow.tracking.context.registry", "mlflow.tracing.processor",
                   "mlflow.tracing.export", "mlflow.store.workspace_aware_mixin", "opentelemetry.sdk.metrics"):
        try:  # imported lazily by the probe's first calls (start_run resolves git context tags)
            __import__(module)
        except Exception:  # noqa: BLE001 - only a warm-up
            pass


class InProcessProbe:
    """The same probe, run in this process: for a migration that imported MLflow anyway (it created the
    target schema), a second interpreter importing it again would only cost CPU the copy needs."""

    def __init__(self) -> None:
        self._warm: threading.Thread | None = None

    def start_warm_up(self) -> None:
        """Call after the reader processes are forked (an import in a thread must not meet a fork)."""
        if self._warm is not None:  # a second attempt of the migration
            return
        self._warm = threading.Thread(target=warm_up, name="probe-warm-up", daemon=True)
        self._warm.start()

    def run(self, uri: str, secrets: list[str], workspaces: bool = False, timeout: float = 180.0) -> ProbeResult:
        import logging

        started = time.perf_counter()
        if self._warm is not None:
            self._warm.join(timeout)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            data = _probe(uri, workspaces)
        except Exception as exc:  # noqa: BLE001
            data = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        finally:
            logging.disable(previous)
        return ProbeResult(bool(data["ok"]), time.perf_counter() - started, redact(data["detail"], secrets),
                           data.get("experiment_id"))

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    import logging

    from migration.lifetime import die_with_parent

    go0 = time.perf_counter()
    gc.disable()  # a short-lived process: importing ~1,700 modules, collections only cost (migration/collector.py)
    if len(sys.argv) > 1:
        die_with_parent(int(sys.argv[1]))
    logging.disable(logging.WARNING)
    # Importing MLflow costs seconds of CPU. At the lowest priority it only takes what the migration
    # leaves idle; if it is not done by the commit it finishes then, which costs less than competing
    # with the readers and the index builds for the two cores.
    try:
        os.nice(19)
    except OSError:
        pass
    warm_up()  # while the migration runs; the URI comes only after the commit

    ready = time.perf_counter()
    line = sys.stdin.readline()
    if not line.strip():
        return
    request = json.loads(line)
    go = time.perf_counter()
    try:
        result = _probe(request["uri"], bool(request.get("workspaces")))
    except Exception as exc:  # noqa: BLE001
        result = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    result["child"] = {"ready": ready - go0, "waited": go - ready, "probe": time.perf_counter() - go}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # Done: skip the interpreter's shutdown (MLflow's atexit hooks and background threads take up to
    # a second); the probe's work is committed and PostgreSQL closes the connections with the socket.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
