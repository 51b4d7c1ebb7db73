"""MLflow's garbage collection as a one-off step from the server's image (scheduled on aws and azure,
scripts/gc on local), and how it shares the maintenance lock with backup and restore."""

from __future__ import annotations

from components.image_scripts import image_script
from components.render.server import BACKEND_URI_ENV, JOB_EXECUTION_ENV, TrackingServerSettings, tracking_server_env
from components.spec import ContainerSpec


GC_LOCKED_EXIT = 75
"""EX_TEMPFAIL: the gc step found the maintenance lock held (a backup or restore is running); it
changed nothing and the next scheduled gc does the work."""
GC_LOCK_DATABASE = "postgres"
"""Where the maintenance lock lives (ops/lock.py): never the tracking database, which a restore renames."""
GC_LOCK_TOKEN_ENV = "MLFLOW_MAINTENANCE_LOCK_TOKEN"
"""Set (scripts/gc on the local stack): the gc step runs under the lock its tool holds, in the session
named `... lock <token>` (ops/lock.py), instead of taking it; it stops when that session loses it."""

# Upstream `mlflow gc` (mlflow/cli/__init__.py, _gc_tracking_resources, MLflow 3.17.2) hard-deletes
# every deleted experiment older than --older-than, and the ORM cascade (SqlRun.experiment,
# cascade="all") takes *all* its runs, also ones restored since (restore_run works inside a deleted
# experiment); it hard-deletes deleted runs, files included, that a registered model version's
# source or run_id still points at (the version stays READY, its files gone). The gc step hands
# MLflow's gc the ids it may touch instead: explicit lists (run_ids=[] means none; no experiments
# means skip_experiments), which upstream checks again (deleted, old enough) before deleting.

# MLflow 3.17.2's Blob repository refuses to delete a path holding no blob ("No such file or
# directory", mlflow/store/artifact/azure_blob_artifact_repo.py, delete_artifacts l.231-232; S3's
# deletes nothing quietly): through the artifacts server that is an HTTP 500, retried for minutes, and
# `mlflow gc` stops at the first deleted run that logged no artifact, every time it runs. So a run's
# artifacts are deleted only when the server lists some; a failure to list or delete still stops gc.
GC_SCRIPT = image_script("gc")

GC_HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def gc_spec(settings: TrackingServerSettings, older_than: str, timeout_seconds: int = 3600,
            name: str = "mlflow-gc") -> ContainerSpec:
    """`mlflow gc --older-than` as a one-off container from the server's image with the server's
    storage access and database URI: deleted runs' rows and artifacts go for good."""
    extra = ("--all-workspaces",) if settings.workspaces else ()
    env = {key: value for key, value in tracking_server_env(settings).items()
           if key.startswith(("MLFLOW_S3_", "AWS_", "AZURE_")) or key == "PYTHONUNBUFFERED"}
    # gc's client talks to its own artifacts server on loopback, whose storage SDK has retried
    # already: a 500 there is the store refusing, not the network. Fail within seconds instead of
    # MLflow's default backoff (minutes per run); the next scheduled gc takes it up again.
    env.update(GC_HTTP_RETRIES)
    # Its artifacts-only server runs no jobs; MLflow's default (true) would start seven huey consumers
    # that each import MLflow (~230 MiB apiece: past a 2 GiB task) and outlive the server's shutdown.
    env[JOB_EXECUTION_ENV] = "false"
    return ContainerSpec(
        name=name,
        image=settings.image,
        command=("python", "-c", GC_SCRIPT, settings.artifacts_destination, older_than, str(timeout_seconds), *extra),
        env=env,
        secret_env_names=(BACKEND_URI_ENV, *settings.artifact_secret_env_names),
        user="mlflow",
    )
