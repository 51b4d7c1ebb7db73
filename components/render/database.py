"""The steps that prepare the databases before the server starts (the schema upgrade, the auth app's
upgrade, MLflow's role on a managed server) and the advisory lock keys they and the ops tools take."""

from __future__ import annotations

from components.image_scripts import image_script
from components.render.auth import AUTH_ADMIN_PASSWORD_ENV, AUTH_ADMIN_USERNAME_ENV, AUTH_DATABASE_URI_ENV
from components.render.server import BACKEND_URI_ENV, TrackingServerSettings
from components.spec import ContainerSpec


# Each app migrates its own schema when a process starts; replicas (and the parent process and its
# workers) starting together on an empty database race. As for MLflow's schema, one step upgrades
# it first, under an advisory lock; the processes then find it at head. In mode mlflow the step
# also sets the admin's password to the one Pulumi generated (MLflow itself reads it only when it
# creates the admin), so the admin_password output stays true: after a password was changed
# through the API, or on a kept data volume under a new stack, as the role's own password is.
AUTH_MIGRATIONS = {"mlflow": "mlflow.server.auth.db.utils", "oidc": "mlflow_oidc_auth.db.utils"}
AUTH_UPGRADE_LOCK_KEY = 0x6D6C666C6F61  # "mlfloa"
AUTH_UPGRADE_SCRIPT = image_script("auth_upgrade")

# `mlflow db upgrade URL` takes the URI as an argument, which would put the password on a command
# line (visible in `ps` and `docker inspect`). Invoke the same click command from Python instead,
# reading the URI from the environment. Replicas starting together (a first deploy, a rolling MLflow
# upgrade on `aws`) each run this step, and two Alembic upgrades at once fail one of them: they take
# turns under a PostgreSQL advisory lock (held by a session of its own, released when the step ends),
# and the later ones find the schema at head and do nothing.
SCHEMA_UPGRADE_LOCK_KEY = 0x6D6C666C6F77  # "mlflow" in ASCII
SCHEMA_UPGRADE_SCRIPT = image_script("schema_upgrade")

# Where the database server is reached only from inside a private network and its admin user is
# not a superuser (RDS), MLflow's role is set up by this step, run first in the server's tasks with
# the admin's credentials (which the server itself never gets). Idempotent, like the `local`
# platform's provisioning container: creates the role once, sets its password on every run, hands
# it the database, and creates the role's other databases (DB_EXTRA_NAMES_ENV: the auth app's)
# where missing. The password is sent as a SCRAM verifier computed here, so even a statement log
# never holds it. Tasks starting together take turns under an advisory lock.
ROLE_SETUP_LOCK_KEY = 0x6D6C666C6F72  # "mlflor"
MAINTENANCE_LOCK_KEY = 0x6D6C666C6F6D  # "mlflom": backup, restore and gc never overlap on a stack
"""Taken (session-level, in the `postgres` database of the stack's server) by ops.backup,
ops.restore and the gc step; the holder names itself in application_name."""
DB_SETUP_ENV = ("MLFLOW_DB_HOST", "MLFLOW_DB_PORT", "MLFLOW_DB_NAME", "MLFLOW_DB_USER", "MLFLOW_DB_SSLMODE")
DB_EXTRA_NAMES_ENV = "MLFLOW_DB_EXTRA_NAMES"
DB_PASSWORD_ENV = "MLFLOW_DB_PASSWORD"
DB_ADMIN_USER_ENV = "MLFLOW_DB_ADMIN_USER"
DB_ADMIN_PASSWORD_ENV = "MLFLOW_DB_ADMIN_PASSWORD"
ROLE_SETUP_SCRIPT = image_script("role_setup")


def schema_upgrade_spec(settings: TrackingServerSettings, name: str = "mlflow-db-upgrade") -> ContainerSpec:
    """The one-off step that brings the schema to MLflow's Alembic head before any worker starts
    (several workers upgrading at once race; several of these steps take turns)."""
    return ContainerSpec(
        name=name,
        image=settings.image,
        command=("python", "-c", SCHEMA_UPGRADE_SCRIPT),
        env={"PYTHONUNBUFFERED": "1"},
        secret_env_names=(BACKEND_URI_ENV,),
        user="mlflow",
    )


def auth_upgrade_spec(settings: TrackingServerSettings, name: str = "mlflow-auth-db-upgrade") -> ContainerSpec:
    """The one-off step that brings the auth app's own schema to its head (modes mlflow, oidc)."""
    admin = settings.auth_mode == "mlflow"
    return ContainerSpec(
        name=name,
        image=settings.image,
        command=("python", "-c", AUTH_UPGRADE_SCRIPT, AUTH_MIGRATIONS[settings.auth_mode]),
        env={"PYTHONUNBUFFERED": "1", **({AUTH_ADMIN_USERNAME_ENV: settings.auth_admin_username} if admin else {})},
        secret_env_names=(AUTH_DATABASE_URI_ENV, *((AUTH_ADMIN_PASSWORD_ENV,) if admin else ())),
        user="mlflow",
    )


def role_setup_spec(image: str, host: str, port: int, database: str, username: str, sslmode: str = "require",
                    name: str = "mlflow-db-setup", extra_databases: tuple[str, ...] = ()) -> ContainerSpec:
    """The step that sets up MLflow's role with the database admin's credentials (see ROLE_SETUP_SCRIPT)."""
    extra = {DB_EXTRA_NAMES_ENV: ",".join(extra_databases)} if extra_databases else {}
    return ContainerSpec(
        name=name,
        image=image,
        command=("python", "-c", ROLE_SETUP_SCRIPT),
        env=dict(zip(DB_SETUP_ENV, (host, str(port), database, username, sslmode), strict=True))
        | extra | {"PYTHONUNBUFFERED": "1"},
        secret_env_names=(DB_PASSWORD_ENV, DB_ADMIN_USER_ENV, DB_ADMIN_PASSWORD_ENV),
        user="mlflow",
    )
