"""Upgrading MLflow: a database written by an older MLflow goes through the stack's schema-upgrade
step (`render.schema_upgrade_spec`, run as the TrackingServer runs it) and is then served.

The stack starts as usual (its PostgreSQL database and MLflow's role, the upgrade step on the empty
database). The database is then dropped and made again as provisioning makes it (owned by MLflow's
role, closed to PUBLIC), and MLflow 2.16.2, from a side virtualenv the test builds and caches under
the temporary directory, writes a deployment's data into it directly (tests/rehearsal/old_mlflow).
The upgrade step alone brings it to the current MLflow's Alembic head (no server runs before it);
the server then serves every experiment, run, metric history (NaN, infinities and -0.0 included),
dataset input, model version and alias through the rendered Nginx, and takes new data; running the
step again (as every deployment does) changes nothing.

The side virtualenv needs PyPI: unreachable, the test fails in CI and is skipped elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from components import render
from rehearsal.launcher import RehearsalStack, run_schema_upgrade
from tests.rehearsal.conftest import require_servers, sigterm_unwinds

OLD_VERSION = "2.16.2"
OLD_REVISION = "4465047574b1"  # MLflow 2.16.2's Alembic head
# Known to install on Python 3.11 (tests/migration/fixtures/README.md), plus the PostgreSQL driver.
OLD_PINS = (f"mlflow-skinny=={OLD_VERSION}", "sqlalchemy<2.1", "alembic<1.17", "sqlparse", "psycopg2-binary")
WRITER = Path(__file__).parent / "old_mlflow" / "write_tracking_data.py"
PYPI_PROBE = "https://pypi.org/simple/mlflow-skinny/"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in {"", "0", "false", "no"}


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen(PYPI_PROBE, timeout=15):
            return True
    except OSError:
        return False


def old_mlflow_python() -> Path:
    """The side virtualenv's interpreter, built once per pin set and Python and then reused. It is
    built under another name and renamed when complete, so an interrupted install is never reused."""
    key = hashlib.sha256("\n".join((sys.version, *OLD_PINS)).encode()).hexdigest()[:10]
    venv = Path(tempfile.gettempdir()) / f"mlflow-old-venv-{OLD_VERSION}-{key}"
    if (venv / "bin" / "python").exists():
        return venv / "bin" / "python"
    building = Path(tempfile.mkdtemp(prefix=f"{venv.name}.building-", dir=venv.parent))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, capture_output=True, timeout=120)
        install = subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "--quiet",
                                  "--disable-pip-version-check", *OLD_PINS],
                                 capture_output=True, text=True, timeout=600)
        if install.returncode != 0:
            detail = (install.stdout + install.stderr)[-3000:]
            if _pypi_reachable():
                pytest.fail(f"pip could not install MLflow {OLD_VERSION} ({' '.join(OLD_PINS)}):\n{detail}",
                            pytrace=False)
            message = f"PyPI is unreachable: cannot install MLflow {OLD_VERSION} into a side virtualenv"
            if _in_ci():
                pytest.fail(f"the upgrade rehearsal needs PyPI in CI: {message}\n{detail}", pytrace=False)
            pytest.skip(f"upgrade rehearsal skipped: {message}")
        try:
            building.rename(venv)
        except OSError:  # another session finished first: use its
            pass
        return venv / "bin" / "python"
    finally:
        shutil.rmtree(building, ignore_errors=True)


def alembic_head() -> str:
    """The head of the current MLflow's own migration scripts (what the server expects)."""
    import mlflow.store.db_migrations
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(Path(mlflow.store.db_migrations.__file__).parent)).get_current_head()


def revision(stack: RehearsalStack) -> str:
    assert stack.postgres is not None
    return stack.postgres.psql("SELECT version_num FROM alembic_version",
                               database=stack.base_config.database.name).strip()


def schema_fingerprint(stack: RehearsalStack) -> str:
    """Every table's columns and types, and every index, of the public schema (changes if the step
    migrates anything)."""
    assert stack.postgres is not None
    return stack.postgres.psql(
        "SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ',' "
        "ORDER BY table_name, column_name) FROM information_schema.columns WHERE table_schema = 'public' "
        "UNION ALL SELECT string_agg(indexdef, ',' ORDER BY indexdef) FROM pg_indexes WHERE schemaname = 'public'",
        database=stack.base_config.database.name)


def recreate_empty_database(stack: RehearsalStack) -> None:
    """The stack's database as provisioning leaves it, but empty (no schema yet)."""
    assert stack.postgres is not None
    name, role = stack.base_config.database.name, stack.base_config.database.username
    stack.postgres.psql(f'DROP DATABASE "{name}"')
    stack.postgres.psql(f'CREATE DATABASE "{name}" OWNER "{role}"')
    stack.postgres.psql(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')


def write_with_old_mlflow(python: Path, backend_uri: str, workdir: Path) -> dict:
    """Run the writer in the side virtualenv against the database (as MLflow's role); what it wrote."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "OLD_MLFLOW_DB_URI": backend_uri}
    result = subprocess.run([str(python), str(WRITER)], env=env, cwd=workdir, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"MLflow {OLD_VERSION} could not write:\n{result.stderr[-4000:]}"
    written = json.loads(result.stdout.strip().splitlines()[-1])
    assert written["mlflow_version"] == OLD_VERSION
    return written


def same_float(a: float, b: float) -> bool:
    """Equal, with NaN equal to NaN and the sign of zero kept."""
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


def test_database_of_an_older_mlflow_is_upgraded_and_served(client_for, report_figure):
    require_servers()
    started = time.monotonic()
    python = old_mlflow_python()
    report_figure(f"side virtualenv with MLflow {OLD_VERSION} ready", round(time.monotonic() - started, 1), "s")
    head = alembic_head()
    assert head != OLD_REVISION
    logging.getLogger("rehearsal").setLevel(logging.INFO)
    with sigterm_unwinds():
        stack = RehearsalStack()
        try:
            stack.start()
            assert revision(stack) == head  # the step ran at start, on the empty database
            recreate_empty_database(stack)
            written = write_with_old_mlflow(python, stack.backend_uri, stack.base_dir / "old-mlflow")
            assert revision(stack) == OLD_REVISION

            # No server runs on the old schema here: MLflow 3.17.2's store, finding tables missing,
            # would upgrade it itself at first use, in every worker at once (the race the step's
            # advisory lock exists for), and the step would have nothing left to do.

            settings = stack._settings(stack.base_config)  # what the stack's own start runs the step with
            secret_env = {render.BACKEND_URI_ENV: stack.backend_uri}
            upgrading = time.monotonic()
            first = run_schema_upgrade(settings, secret_env, stack.base_dir / "upgrade-1")
            report_figure(f"schema upgrade from MLflow {OLD_VERSION}", round(time.monotonic() - upgrading, 1), "s")
            assert revision(stack) == head, first
            upgraded_schema = schema_fingerprint(stack)

            variant = stack.add_variant("default")
            with client_for(variant) as client:
                check_served(client, written)
                # Still a working store: the old run takes more data, a new run can be made.
                old_run = next(iter(written["runs"]))
                client.log_metric(old_run, "after_upgrade", 1.0, step=7)
                assert client.get_metric_history(old_run, "after_upgrade")[0].value == 1.0
                client.set_terminated(client.create_run(written["experiment"]["id"]).info.run_id)

                # Every deployment runs the step again: at head it does nothing, the server is undisturbed.
                second = run_schema_upgrade(settings, secret_env, stack.base_dir / "upgrade-2")
                assert revision(stack) == head, second
                assert schema_fingerprint(stack) == upgraded_schema
                assert len(client.search_runs([written["experiment"]["id"]])) == len(written["runs"]) + 1
        finally:
            stack.stop()
    report_figure("old database upgraded and served, in all", round(time.monotonic() - started, 1), "s")


def check_served(client, written: dict) -> None:
    """Everything the old MLflow wrote, read back through the stack by the current MLflow client."""
    experiment = written["experiment"]
    served = client.get_experiment(experiment["id"])
    assert served.name == experiment["name"]
    assert served.lifecycle_stage == "active"
    assert {k: served.tags.get(k) for k in experiment["tags"]} == experiment["tags"]
    assert client.get_experiment_by_name(experiment["name"]).experiment_id == experiment["id"]
    assert {e.experiment_id for e in client.search_experiments()} >= {"0", experiment["id"]}

    runs = {run.info.run_id: run for run in client.search_runs([experiment["id"]])}
    assert set(runs) == set(written["runs"])
    for run_id, old in written["runs"].items():
        run = client.get_run(run_id)
        assert (run.info.status, run.info.start_time, run.info.end_time) == (
            old["status"], old["start_time"], old["end_time"]), run_id
        assert run.data.params == old["params"]
        assert {k: run.data.tags.get(k) for k in old["tags"]} == old["tags"]
        assert set(run.data.metrics) == set(old["metrics"])
        for key, history in old["metrics"].items():
            served_history = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))
            assert len(served_history) == len(history), (run_id, key)
            for (step, timestamp, value), (old_step, old_timestamp, old_value) in zip(served_history, sorted(history),
                                                                                      strict=True):
                assert (step, timestamp) == (old_step, old_timestamp), (run_id, key)
                assert same_float(value, old_value), (run_id, key, step, value, old_value)
        assert sorted([d.dataset.name, d.dataset.digest, [t.value for t in d.tags]]
                      for d in run.inputs.dataset_inputs) == sorted(old["datasets"])
    assert any(math.isnan(value) for run in written["runs"].values() for _, _, value in run["metrics"]["loss"])

    model = written["model"]
    registered = client.get_registered_model(model["name"])
    assert registered.tags == model["tags"]
    # (2.16.2's store gave the alias's version as an int, the REST API gives a string.)
    assert registered.aliases == {alias: str(v) for alias, v in model["aliases"].items()} == {"champion": "2"}
    for number, old in model["versions"].items():
        version = client.get_model_version(model["name"], number)
        assert (version.run_id, version.source, version.tags) == (old["run_id"], old["source"], old["tags"])
    assert client.get_model_version_by_alias(model["name"], "champion").version == "2"
    assert {v.version for v in client.search_model_versions(f"name = '{model['name']}'")} == set(model["versions"])
