"""The cloud platforms' role setup step (render.ROLE_SETUP_SCRIPT), run for real against PostgreSQL.

The database is set up the way RDS leaves it: its master user is no superuser (RDS gives it
CREATEROLE and CREATEDB through rds_superuser) and owns the database RDS created for it. The step
runs as the container runs it (`python -c SCRIPT` with the spec's env), and is proven by logging in as
the role it made, by MLflow's own schema creation, and by the statement log: the password must
reach neither a command line nor a logged statement.
"""

import os
import subprocess
import sys

import pytest
import sqlalchemy

from components import render
from rehearsal.postgres import PostgresCluster

HOSTILE_PASSWORD = "Aa1@:/?#%&+!*-_x'y\"z"
ADMIN, ADMIN_PASSWORD = "rds_like_master", "Master:/?#%-pass"


def run_setup(cluster: PostgresCluster, database: str, role: str, password: str) -> subprocess.CompletedProcess:
    spec = render.role_setup_spec("unused-image", "127.0.0.1", cluster.port, database, role, sslmode="disable")
    env = dict(os.environ, **spec.env)
    env.update({render.DB_PASSWORD_ENV: password, render.DB_ADMIN_USER_ENV: ADMIN,
                render.DB_ADMIN_PASSWORD_ENV: ADMIN_PASSWORD})
    command = [sys.executable, *spec.command[1:]]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def rds_like(postgres_cluster: PostgresCluster):
    """A master user as RDS makes it, owning the database RDS created, and a statement log."""
    cluster = postgres_cluster
    cluster.psql(f"CREATE ROLE {ADMIN} LOGIN CREATEROLE CREATEDB "
                 f"PASSWORD '{ADMIN_PASSWORD.replace(chr(39), chr(39) * 2)}'")
    cluster.psql(f"CREATE DATABASE mlflow_rds OWNER {ADMIN}")
    cluster.psql("ALTER SYSTEM SET log_statement = 'all'")
    cluster.psql("SELECT pg_reload_conf()")
    yield cluster
    cluster.psql("ALTER SYSTEM RESET log_statement")
    cluster.psql("SELECT pg_reload_conf()")


def test_role_setup_makes_a_non_superuser_owner_and_never_sends_the_password(rds_like):
    cluster = rds_like
    first = run_setup(cluster, "mlflow_rds", "mlflow_app", HOSTILE_PASSWORD)
    assert first.returncode == 0, first.stderr
    assert HOSTILE_PASSWORD not in first.stdout + first.stderr

    uri = render.backend_store_uri("mlflow_app", HOSTILE_PASSWORD, "127.0.0.1", cluster.port, "mlflow_rds")
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as connection:
        row = connection.execute(sqlalchemy.text(
            "select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = current_user")).one()
        owner = connection.execute(sqlalchemy.text(
            "select pg_get_userbyid(datdba) from pg_database where datname = current_database()")).scalar()
    engine.dispose()
    assert tuple(row) == (False, False, False) and owner == "mlflow_app"

    # MLflow creates its schema as that role (what the schema-upgrade step does next).
    upgrade = subprocess.run([sys.executable, "-c", render.SCHEMA_UPGRADE_SCRIPT], capture_output=True, text=True,
                             timeout=300, env=dict(os.environ, **{render.BACKEND_URI_ENV: uri}))
    assert upgrade.returncode == 0, upgrade.stderr[-2000:]
    with sqlalchemy.create_engine(uri).connect() as connection:
        assert connection.execute(sqlalchemy.text("select count(*) from alembic_version")).scalar() == 1

    log = cluster.log_file.read_text()
    assert "ALTER ROLE" in log and "SCRAM-SHA-256$" in log, "the statement log is on and saw the setup"
    assert HOSTILE_PASSWORD not in log and "x''y" not in log, "only a SCRAM verifier may reach the server"


def test_role_setup_runs_again_rotating_the_password_and_is_refused_a_wrong_admin_password(rds_like):
    cluster = rds_like
    assert run_setup(cluster, "mlflow_rds", "mlflow_app", HOSTILE_PASSWORD).returncode == 0
    rotated = "Rotated@:/?#%-pass"
    again = run_setup(cluster, "mlflow_rds", "mlflow_app", rotated)
    assert again.returncode == 0, again.stderr
    with pytest.raises(sqlalchemy.exc.OperationalError):
        old = render.backend_store_uri("mlflow_app", HOSTILE_PASSWORD, "127.0.0.1", cluster.port, "mlflow_rds")
        sqlalchemy.create_engine(old).connect()
    new = render.backend_store_uri("mlflow_app", rotated, "127.0.0.1", cluster.port, "mlflow_rds")
    sqlalchemy.create_engine(new).connect().close()

    spec = render.role_setup_spec("unused-image", "127.0.0.1", cluster.port, "mlflow_rds", "mlflow_app",
                                  sslmode="disable")
    env = dict(os.environ, **spec.env, **{render.DB_PASSWORD_ENV: rotated, render.DB_ADMIN_USER_ENV: ADMIN,
                                          render.DB_ADMIN_PASSWORD_ENV: "wrong"})
    refused = subprocess.run([sys.executable, *spec.command[1:]], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    assert rotated not in refused.stderr


def test_tasks_starting_together_take_turns(rds_like):
    cluster = rds_like
    spec = render.role_setup_spec("unused-image", "127.0.0.1", cluster.port, "mlflow_rds", "mlflow_together",
                                  sslmode="disable")
    env = dict(os.environ, **spec.env, **{render.DB_PASSWORD_ENV: "Together-1:/?#", render.DB_ADMIN_USER_ENV: ADMIN,
                                          render.DB_ADMIN_PASSWORD_ENV: ADMIN_PASSWORD})
    runs = [subprocess.Popen([sys.executable, *spec.command[1:]], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
    assert all(code == 0 for code, _ in results), results


@pytest.mark.parametrize("mode", ["mlflow", "oidc"])
def test_auth_database_made_by_tasks_together_and_upgraded_by_them_together(rds_like, mode):
    """auth.mode mlflow / oidc on a cloud: four tasks start at once; each sets the role up (creating
    <name>_auth once) and then runs the auth app's upgrade step on the empty database. Without the
    advisory lock, four concurrent upgrades of the plugin's (oidc) schema failed three of four here
    (MLflow's own auth schema survived it in that run); under the lock all succeed."""
    cluster = rds_like
    role, auth_database = f"mlflow_{mode}_auth_role", f"mlflow_rds_{mode}_auth"
    spec = render.role_setup_spec("unused-image", "127.0.0.1", cluster.port, "mlflow_rds", role, sslmode="disable",
                                  extra_databases=(auth_database,))
    env = dict(os.environ, **spec.env, **{render.DB_PASSWORD_ENV: HOSTILE_PASSWORD, render.DB_ADMIN_USER_ENV: ADMIN,
                                          render.DB_ADMIN_PASSWORD_ENV: ADMIN_PASSWORD})
    setups = [subprocess.Popen([sys.executable, *spec.command[1:]], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in setups]
    assert all(code == 0 for code, _ in results), results
    owner = cluster.psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{auth_database}'")
    assert owner.strip() == role
    assert cluster.psql(f"SELECT has_database_privilege('public', '{auth_database}', 'CONNECT')").strip() == "f"

    uri = render.backend_store_uri(role, HOSTILE_PASSWORD, "127.0.0.1", cluster.port, auth_database)
    command = [sys.executable, "-c", render.AUTH_UPGRADE_SCRIPT, render.AUTH_MIGRATIONS[mode]]
    upgrades = [subprocess.Popen(command, env=dict(os.environ, **{render.AUTH_DATABASE_URI_ENV: uri}),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(run.wait(timeout=300), run.stderr.read()[-2000:]) for run in upgrades]
    assert all(code == 0 for code, _ in results), results
    version_table = {"mlflow": "alembic_version_auth", "oidc": "alembic_version"}[mode]
    with sqlalchemy.create_engine(uri).connect() as connection:
        tables = set(sqlalchemy.inspect(connection).get_table_names())
        assert {"users", version_table} <= tables
        assert connection.execute(sqlalchemy.text(f"select count(*) from {version_table}")).scalar() == 1
