import os

import pytest

from rehearsal.postgres import PostgresCluster, PostgresUnavailable


@pytest.fixture(scope="session")
def postgres_cluster():
    try:
        cluster = PostgresCluster().start()
    except PostgresUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {error}")
        pytest.skip(str(error))
    yield cluster
    cluster.destroy()
