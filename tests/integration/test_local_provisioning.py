"""The `local` platform's database provisioning step, run for real against PostgreSQL.

The provisioning container runs `sh -c "... | psql -h /var/run/postgresql ..."` next to the
postgres container. Here the same command runs natively against a test cluster, with only the
socket directory mapped, and is then proven by logging in as the role it made.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import sqlalchemy

from components.config import DatabaseConfig
from components.platforms.base import DatabaseRequest
from components.platforms.local import POSTGRES_SOCKET_DIR, _provision_command
from rehearsal.postgres import PostgresCluster

HOSTILE_PASSWORD = "Aa1@:/?#%&+!*-_x'y\"z"
IMAGE_HBA = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
"""The official postgres image's pg_hba.conf: the socket trusted, TCP by password (scram for all hosts)."""


@pytest.fixture(scope="module")
def image_cluster():
    """A cluster of its own, authenticating as the image does (provisioning clears the superuser's
    password, which the shared cluster's other users log in with)."""
    from rehearsal.postgres import PostgresUnavailable

    try:
        cluster = PostgresCluster().init()
    except PostgresUnavailable as error:
        pytest.skip(str(error))
    (cluster.data_dir / "pg_hba.conf").write_text(IMAGE_HBA)
    cluster.start()
    yield cluster
    cluster.destroy()


def socket_psql(cluster: PostgresCluster, sql: str) -> str:
    """As the superuser over the trusted socket (as provisioning and ops reach it)."""
    result = subprocess.run([str(cluster.bindir / "psql"), "-h", str(cluster.socket_dir), "-p", str(cluster.port),
                             "-U", "postgres", "-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                            capture_output=True, text=True, env={**os.environ, "PGPASSWORD": ""})
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_provision(cluster: PostgresCluster, password: str, request: DatabaseRequest) -> subprocess.CompletedProcess:
    """With the password in a file only the step reads, as the platform uploads it (MLFLOW_DB_PASSWORD_FILE)."""
    command = [part.replace(POSTGRES_SOCKET_DIR, str(cluster.socket_dir)) for part in _provision_command(request)]
    password_file = cluster.socket_dir.parent / "provision-password"
    password_file.unlink(missing_ok=True)
    password_file.write_text(password)
    password_file.chmod(0o400)
    env = dict(os.environ, MLFLOW_DB_PASSWORD_FILE=str(password_file), PGPORT=str(cluster.port),
               PGPASSWORD=cluster.superuser_password, PATH=f"{cluster.bindir}:{os.environ['PATH']}")
    env.pop("MLFLOW_DB_PASSWORD", None)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_provisioning_creates_a_non_superuser_owner_and_is_idempotent(image_cluster):
    config = DatabaseConfig(name="mlflow_prov", username="mlflow_prov")
    request = DatabaseRequest(database=config.name, username=config.username, max_connections=100,
                              postgres_version="16")
    first = run_provision(image_cluster, HOSTILE_PASSWORD, request)
    assert first.returncode == 0, first.stderr
    assert HOSTILE_PASSWORD not in first.stdout + first.stderr, "the password must never be echoed"

    from components.render import backend_store_uri

    uri = backend_store_uri(config.username, HOSTILE_PASSWORD, "127.0.0.1", image_cluster.port, config.name)
    engine = sqlalchemy.create_engine(uri)
    with engine.connect() as connection:
        is_super = connection.execute(
            sqlalchemy.text("select rolsuper from pg_roles where rolname = current_user")).scalar()
        owner = connection.execute(sqlalchemy.text(
            "select pg_get_userbyid(datdba) from pg_database where datname = current_database()")).scalar()
        connection.execute(sqlalchemy.text("create table probe (id int)"))  # owner may create its schema
        connection.commit()
    engine.dispose()
    assert is_super is False and owner == config.username

    # A kept data volume meets newly generated passwords: running again rotates the password.
    second = run_provision(image_cluster, "Rotated@:/?#%-pass", request)
    assert second.returncode == 0, second.stderr
    with pytest.raises(sqlalchemy.exc.OperationalError):
        sqlalchemy.create_engine(uri).connect()
    rotated = backend_store_uri(config.username, "Rotated@:/?#%-pass", "127.0.0.1", image_cluster.port, config.name)
    with sqlalchemy.create_engine(rotated).connect() as connection:
        assert connection.execute(sqlalchemy.text("select count(*) from probe")).scalar() == 0


def test_provisioning_adds_the_auth_database_to_a_kept_volume(image_cluster):
    """Switching auth.mode to mlflow on a stack whose data volume exists: the next run of the step
    adds <name>_auth, owned by the same role, closed to everyone else; the tracking data stays."""
    from components.render import backend_store_uri

    tracking_only = DatabaseRequest(database="mlflow_grow", username="mlflow_grow", max_connections=100,
                                    postgres_version="16")
    assert run_provision(image_cluster, HOSTILE_PASSWORD, tracking_only).returncode == 0
    tracking = backend_store_uri("mlflow_grow", HOSTILE_PASSWORD, "127.0.0.1", image_cluster.port, "mlflow_grow")
    with sqlalchemy.create_engine(tracking).connect() as connection:
        connection.execute(sqlalchemy.text("create table runs_kept (id int)"))
        connection.execute(sqlalchemy.text("insert into runs_kept values (1)"))
        connection.commit()

    with_auth = DatabaseRequest(database="mlflow_grow", username="mlflow_grow", max_connections=100,
                                postgres_version="16", extra_databases=("mlflow_grow_auth",))
    for _ in range(2):  # and again: idempotent
        result = run_provision(image_cluster, HOSTILE_PASSWORD, with_auth)
        assert result.returncode == 0, result.stderr
    auth = backend_store_uri("mlflow_grow", HOSTILE_PASSWORD, "127.0.0.1", image_cluster.port, "mlflow_grow_auth")
    with sqlalchemy.create_engine(auth).connect() as connection:
        owner = connection.execute(sqlalchemy.text(
            "select pg_get_userbyid(datdba) from pg_database where datname = current_database()")).scalar()
        connection.execute(sqlalchemy.text("create table users (id int)"))
        connection.commit()
    assert owner == "mlflow_grow"
    with sqlalchemy.create_engine(tracking).connect() as connection:
        assert connection.execute(sqlalchemy.text("select count(*) from runs_kept")).scalar() == 1
    public = socket_psql(image_cluster, "select has_database_privilege('public', 'mlflow_grow_auth', 'CONNECT')")
    assert public.strip() == "f"


def test_provisioning_leaves_the_superuser_no_password_over_tcp(image_cluster):
    """A kept data volume keeps the superuser's FIRST password (the image applies POSTGRES_PASSWORD
    only when it initialises the volume): after provisioning no TCP login as the superuser works,
    with that password or any, while MLflow's role logs in and the socket (provisioning, ops) still
    reaches the superuser."""
    from components.render import backend_store_uri

    request = DatabaseRequest(database="mlflow_su", username="mlflow_su", max_connections=100, postgres_version="16")
    socket_psql(image_cluster, f"ALTER ROLE postgres PASSWORD '{image_cluster.superuser_password}'")  # as initialised
    first_password = image_cluster.uri("postgres")
    with sqlalchemy.create_engine(first_password).connect():
        pass  # usable over TCP before
    for _ in range(2):  # every run, idempotent
        result = run_provision(image_cluster, HOSTILE_PASSWORD, request)
        assert result.returncode == 0, result.stderr
    with pytest.raises(sqlalchemy.exc.OperationalError, match="password authentication failed"):
        sqlalchemy.create_engine(first_password).connect()
    mlflow = backend_store_uri("mlflow_su", HOSTILE_PASSWORD, "127.0.0.1", image_cluster.port, "mlflow_su")
    with sqlalchemy.create_engine(mlflow).connect() as connection:
        assert connection.execute(sqlalchemy.text("select current_user")).scalar() == "mlflow_su"
    assert socket_psql(image_cluster,
                       "select rolpassword is null from pg_authid where rolname = 'postgres'").strip() == "t"
