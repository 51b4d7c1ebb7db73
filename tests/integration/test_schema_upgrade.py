"""The rendered schema-upgrade step, run for real against PostgreSQL: replicas that start together
(the `aws` stack runs it as an init container in every task) must not fail each other."""

from __future__ import annotations

import os
import subprocess
import sys

from components import render
from migration.revisions import revision_graph


def test_concurrent_schema_upgrades_take_turns(postgres_cluster):
    uri = postgres_cluster.create_database("upgrade_race", owner="upgrader", owner_password="race-pass")
    script = render.SCHEMA_UPGRADE_SCRIPT
    env = {**os.environ, render.BACKEND_URI_ENV: uri}
    steps = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    for step in steps:
        _, err = step.communicate(timeout=300)  # reads both pipes: a full one cannot stall the step
        assert step.returncode == 0, err[-2000:]
    head = postgres_cluster.psql("SELECT version_num FROM alembic_version", "upgrade_race").strip()
    assert head == revision_graph().head
