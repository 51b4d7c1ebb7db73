"""The target schema: create it with MLflow when the target is empty, otherwise check its revision.

Creation runs inside the migration's own transaction (MLflow's `create_all` plus its Alembic upgrade,
through SQLAlchemy, on the very psycopg connection that later COPYs the rows), so a failed migration
leaves an empty target empty: PostgreSQL DDL is transactional.
"""

from __future__ import annotations

import logging

import psycopg

from migration.catalog import Catalog, read_catalog
from migration.errors import MigrationError, RefusedError
from migration.revisions import mlflow_version, revision_graph

log = logging.getLogger(__name__)


class _NoCommit(psycopg.Connection):
    """The same connection, while SQLAlchemy/Alembic drive it: commit() keeps our transaction open."""

    def commit(self) -> None:  # the migration commits once, after verification
        pass

    def rollback(self) -> None:  # SQLAlchemy rolls back on close; a real failure is rolled back by the caller
        pass

    def close(self) -> None:
        pass


def create_schema(conn: psycopg.Connection) -> None:
    """MLflow's schema (create_all of the initial models + Alembic upgrade to head) on `conn`, uncommitted."""
    from migration import lean

    lean.import_modules("mlflow.store.db.utils")
    import sqlalchemy
    from alembic import command
    from mlflow.store.db.utils import InitialBase, _get_alembic_config
    from sqlalchemy.pool import StaticPool

    original_class = conn.__class__
    conn.__class__ = _NoCommit
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: conn, poolclass=StaticPool, pool_reset_on_return=None
    )
    try:
        with engine.connect() as sa_conn:
            InitialBase.metadata.create_all(sa_conn)
            config = _get_alembic_config("postgresql+psycopg://")
            config.attributes["connection"] = sa_conn
            command.upgrade(config, "heads")
    finally:
        engine.dispose(close=False)
        conn.__class__ = original_class


def check_target(conn: psycopg.Connection, source_tables: set[str]) -> tuple[Catalog, bool]:
    """The target catalog, and whether the target is empty (MLflow's schema is to be created).

    A target with MLflow tables must be at the installed MLflow's head revision and hold every table
    the source has; anything else is refused before a row is written."""
    schema, may_create = conn.execute(
        "SELECT current_schema(), has_schema_privilege(current_schema(), 'CREATE')").fetchone()
    if schema is None:
        raise RefusedError(
            "the target's search_path names no schema that exists, so there is nowhere for MLflow's tables",
            hint="create that schema first (CREATE SCHEMA name AUTHORIZATION role), or correct "
                 "options=-csearch_path in the target URI",
        )
    graph = revision_graph()
    catalog = read_catalog(conn)
    present = source_tables & set(catalog.tables)
    if not present and not catalog.has_alembic:
        if not may_create:
            raise RefusedError(
                f"the target is empty, but its role may not create tables in schema {schema!r} for MLflow's schema",
                hint=f"GRANT CREATE ON SCHEMA {schema} TO the role, or migrate into a database the role owns",
            )
        return catalog, True
    if not catalog.has_alembic or catalog.revision is None:
        raise RefusedError(
            "target already holds some MLflow tables but no Alembic revision; it is not a schema this tool "
            "can trust",
            hint="point the migration at an empty database, or at one created by `mlflow db upgrade`",
        )
    if catalog.revision not in graph.revisions:
        raise RefusedError(
            f"target schema revision {catalog.revision} is unknown to the installed MLflow {mlflow_version()} "
            f"(head {graph.head}): the target was set up by a newer MLflow",
            hint="run the migration with the MLflow version the target server runs",
        )
    if catalog.revision != graph.head:
        raise RefusedError(
            f"target schema is at revision {catalog.revision}, but the installed MLflow {mlflow_version()} "
            f"writes revision {graph.head}",
            hint="upgrade the target first (`mlflow db upgrade TARGET`) or migrate into an empty database",
        )
    _require_tables(catalog, source_tables)
    return catalog, False


def create(conn: psycopg.Connection, source_tables: set[str]) -> Catalog:
    """Create MLflow's schema on the empty target (uncommitted) and return the new catalog."""
    log.info("target is empty: creating MLflow's schema (revision %s)", revision_graph().head)
    try:
        create_schema(conn)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy wraps the driver's error; report that one
        cause = getattr(exc, "orig", None)
        detail = ((cause.diag.message_primary or str(cause)) if isinstance(cause, psycopg.Error)
                  else f"{type(exc).__name__}: {exc}")
        raise MigrationError(f"MLflow could not create its schema on the target: {detail}; "
                             "nothing was committed") from exc
    catalog = read_catalog(conn)
    _require_tables(catalog, source_tables)
    return catalog


def _require_tables(catalog: Catalog, source_tables: set[str]) -> None:
    missing = sorted(source_tables - set(catalog.tables))
    if missing:
        raise RefusedError(f"target schema lacks tables the source has: {', '.join(missing)}")
