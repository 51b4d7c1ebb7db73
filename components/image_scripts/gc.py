import re
import sys
import sqlalchemy


def first_line(error):
    return (str(getattr(error, "orig", None) or error).strip().splitlines() or [type(error).__name__])[0]


LOCK_SQL = ("FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = 28012 AND l.objid = 1718382445 AND l.objsubid = 1")


def lock_session(uri):
    # Backup, restore and gc never overlap (issue 28): the key ops/lock.py takes, in a session of
    # database postgres on the same server that stays open until this process ends (also
    # when it is killed: PostgreSQL then ends the session and releases the lock).
    url = sqlalchemy.engine.make_url(uri).set(database="postgres")
    try:
        session = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool).connect()
        session.execute(sqlalchemy.text("SET application_name = 'mlflow-gc'"))
        session.commit()
    except sqlalchemy.exc.SQLAlchemyError as error:
        sys.exit(f"gc: could not reach database postgres of the tracking database's server for the maintenance "
                 f"lock ({first_line(error)}); nothing was deleted")
    return session


def ask(session, sql, **params):
    # One answer, its transaction ended at once: the session idles outside one (a session-level
    # advisory lock outlives the rollback).
    try:
        return session.execute(sqlalchemy.text(sql), params).scalar()
    finally:
        session.rollback()


def refuse_held(session):
    holder = session.execute(sqlalchemy.text(
        "SELECT coalesce(a.application_name, ''), a.pid, to_char(a.backend_start AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') " + LOCK_SQL)).first()
    name, pid, since = holder if holder else ("a session that has just ended", "?", None)
    print(f"gc: another backup, restore or gc is running on this stack: {name or 'an unnamed session'} "
          f"(PostgreSQL backend pid {pid}{', since ' + since if since else ''}) holds its maintenance lock. "
          "Nothing was deleted; the next scheduled gc does the work (or run gc again once it has finished)",
          file=sys.stderr, flush=True)
    sys.exit(75)


def take_maintenance_lock(uri):
    # The lock is this step's own: taken in its session, held until it ends. Returns a check: does it still hold it?
    session = lock_session(uri)
    try:
        taken = session.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(120312342277997)")).scalar()
        session.commit()
    except sqlalchemy.exc.SQLAlchemyError as error:
        sys.exit(f"gc: could not take the maintenance lock ({first_line(error)}); nothing was deleted")
    if not taken:
        refuse_held(session)
    return lambda: ask(session, "SELECT count(*) > 0 " + LOCK_SQL + " AND l.pid = pg_backend_pid()")


def follow_maintenance_lock(uri, token):
    # scripts/gc on the local stack takes the lock itself, stops the one-offs a killed tool left running
    # while it holds it, and starts this step under it (review 20, F3a): the lock must be held, for
    # the whole step, by the session its tool named `... lock <token>`. Returns that check.
    if not re.fullmatch("[0-9a-f]{12}", token):
        sys.exit(f"gc: {token!r} is not a maintenance lock's token; nothing was deleted")
    session = lock_session(uri)

    def held():
        return ask(session, "SELECT count(*) > 0 " + LOCK_SQL + " AND a.application_name LIKE :name",
                   name="% lock " + token)

    if not held():
        print(f"gc: the maintenance lock it was started under (lock {token}) is not held any more (its tool "
              "stopped?): nothing was deleted", file=sys.stderr, flush=True)
        sys.exit(75)
    return held


def watch_maintenance_lock(held, on_lost, every=1.0):
    # A PostgreSQL restart ends the lock's session without telling this process, and a backup or restore
    # may take the lock then: every `every` seconds `held()` asks whether the lock is still held as it was,
    # and when it is not, on_lost() (gc stops at once instead of deleting beside a restore; review 6, F3).
    import threading
    import time

    def watching():
        while True:
            time.sleep(every)
            try:
                still = held()
            except Exception:  # noqa: BLE001 - a session that cannot answer holds nothing
                still = False
            if not still:
                on_lost()
                return

    threading.Thread(target=watching, name="maintenance-lock-watch", daemon=True).start()


import mlflow.cli
from mlflow.entities import LifecycleStage, ViewType
from mlflow.utils.time import get_current_time_millis

_gc_tracking_resources = mlflow.cli._gc_tracking_resources


def rows(store, sql):
    with store.engine.connect() as connection:
        return connection.execute(sqlalchemy.text(sql)).all()


def versions_by_run(store):
    # Live model versions (a deleted one is marked Deleted_Internal) -> the runs and logged models each
    # points at: its run_id, and an id as a segment of its source or storage location (runs:/<id>/...,
    # models:/<model id>, <artifact root>/<id>/..., .../models/<model id>/artifacts).
    found = {}
    for name, version, source, location, run_id in rows(
            store, "SELECT name, version, source, storage_location, run_id FROM model_versions "
                   "WHERE current_stage <> 'Deleted_Internal'"):
        for run in {run_id, *re.split(r"[/:]", source or ""), *re.split(r"[/:]", location or "")} - {None, ""}:
            found.setdefault(run, []).append(f"{name!r} version {version}")
    return found


def deleted_experiments(store, older_than, time_delta):
    threshold = get_current_time_millis() - time_delta
    found, token = [], None
    while True:
        page = store.search_experiments(view_type=ViewType.DELETED_ONLY, page_token=token,
                                        filter_string=f"last_update_time < {threshold}" if older_than else None)
        found += [experiment.experiment_id for experiment in page]
        token = page.token
        if not token:
            return found


def guarded_gc(**options):
    store = options["backend_store"]
    runs = options["run_ids"]
    runs = list(runs if runs is not None else store._get_deleted_runs(older_than=options["time_delta"]))
    experiments = [] if options["skip_experiments"] else list(
        options["experiment_ids"] or deleted_experiments(store, options["older_than"], options["time_delta"]))
    pointed_at = versions_by_run(store)
    kept_runs = {run: pointed_at[run] for run in runs if run in pointed_at}
    for run, versions in sorted(kept_runs.items()):
        print(f"gc: kept run {run} (deleted, but registered model {', '.join(versions)} points at it: its "
              "artifacts would go while the version stays READY). Delete the model version (or restore the "
              "run); a later gc collects it.", flush=True)
    held = {}
    for experiment_id, run, stage in rows(store, "SELECT r.experiment_id, r.run_uuid, r.lifecycle_stage FROM runs r "
                                                 "JOIN experiments e ON e.experiment_id = r.experiment_id "
                                                 "WHERE e.lifecycle_stage = 'deleted'"):
        if stage != LifecycleStage.DELETED or run in pointed_at:
            held.setdefault(str(experiment_id), []).append(run)
    for experiment_id, model in rows(store, "SELECT m.experiment_id, m.model_id FROM logged_models m "
                                            "JOIN experiments e ON e.experiment_id = m.experiment_id "
                                            "WHERE e.lifecycle_stage = 'deleted'"):
        if model in pointed_at:
            held.setdefault(str(experiment_id), []).append(model)
    for experiment_id in sorted(set(experiments) & set(held), key=int):
        print(f"gc: kept experiment {experiment_id} (deleted, but it holds runs or logged models "
              f"{', '.join(sorted(held[experiment_id]))} that are active or that a model version points at: "
              "MLflow's gc would hard-delete them with it). "
              "Delete or move those runs, or restore the experiment; a later gc collects it.", flush=True)
    models = options["logged_model_ids"]
    models = [] if options["skip_logged_models"] else list(
        models if models is not None else store._get_deleted_logged_models(older_than=options["time_delta"]))
    kept_models = {model: pointed_at[model] for model in models if model in pointed_at}
    for model, versions in sorted(kept_models.items()):
        print(f"gc: kept logged model {model} (deleted, but registered model {', '.join(versions)} points at it: "
              "its files would go while the version stays READY). Delete the model version (or restore the "
              "logged model); a later gc collects it.", flush=True)
    experiments = [experiment for experiment in experiments if experiment not in held]
    _gc_tracking_resources(**{**options, "run_ids": [run for run in runs if run not in kept_runs],
                              "logged_model_ids": [model for model in models if model not in kept_models],
                              "experiment_ids": experiments or None,
                              "skip_experiments": options["skip_experiments"] or not experiments})


mlflow.cli._gc_tracking_resources = guarded_gc
import os, signal, socket, subprocess, sys, threading, time, urllib.request
from mlflow.cli import cli
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
destination, older_than, timeout, *extra = sys.argv[1:]
lock_token = os.environ.get("MLFLOW_MAINTENANCE_LOCK_TOKEN")
lock_held = (follow_maintenance_lock(os.environ["MLFLOW_BACKEND_STORE_URI"], lock_token) if lock_token
             else take_maintenance_lock(os.environ["MLFLOW_BACKEND_STORE_URI"]))
server = None


def kill_server():
    # The whole session: `mlflow server` runs uvicorn as a child, which would outlive its parent's SIGKILL
    # and keep this step's output open (a container's end takes it anyway; a native run waits for ever).
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def lock_lost():
    print("gc: the maintenance lock was lost (PostgreSQL restarted?" + (" The tool holding it for this step stopped?"
          if lock_token else "") + "): stopped, so that it cannot overlap a backup or restore; the next scheduled "
          "gc does the rest", file=sys.stderr, flush=True)
    if server is not None:
        kill_server()
    os._exit(75)


watch_maintenance_lock(lock_held, lock_lost)
_delete_artifacts = MlflowArtifactsRepository.delete_artifacts


def delete_artifacts(self, artifact_path=None):
    if not self.list_artifacts(artifact_path):
        print(f"gc: no artifacts at {self.artifact_uri}", flush=True)
        return
    _delete_artifacts(self, artifact_path)


MlflowArtifactsRepository.delete_artifacts = delete_artifacts
# MLflow's gc deletes a run's proxied artifacts (mlflow-artifacts:/ URIs) through a server's HTTP
# API. It gets one of its own here, artifacts only, on loopback, with this task's storage access:
# no credentials of any MLflow user, and the serving replicas are left alone. On a free port: where
# loopback is shared (containers of one task, several gc runs on one host) a fixed one could reach
# another gc's server, on another store.
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = str(probe.getsockname()[1])
url = "http://127.0.0.1:" + port
server = subprocess.Popen(["mlflow", "server", "--artifacts-only", "--serve-artifacts", "--artifacts-destination",
                           destination, "--host", "127.0.0.1", "--port", port, "--workers", "1"],
                          # not its business
                          env={k: v for k, v in os.environ.items() if k != "MLFLOW_BACKEND_STORE_URI"},
                          start_new_session=True)


def give_up():  # not every scheduler stops a run that hangs (ECS does not)
    print(f"gc: stopped after {timeout} s", file=sys.stderr, flush=True)
    kill_server()
    os._exit(124)


watchdog = threading.Timer(float(timeout), give_up)
watchdog.daemon = True
watchdog.start()
try:
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                sys.exit("gc: the artifacts server exited before it served")
            time.sleep(0.5)
    else:
        sys.exit("gc: the artifacts server did not answer in 120 s")
    # The backend URI stays in this process (no command line shows it).
    cli.main(["gc", "--backend-store-uri", os.environ["MLFLOW_BACKEND_STORE_URI"], "--tracking-uri", url,
              "--older-than", older_than, *extra], prog_name="mlflow", standalone_mode=False)
finally:  # gc's own outcome stands: a slow artifacts server shutdown must not turn it into a failure
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    kill_server()  # what is left of it
