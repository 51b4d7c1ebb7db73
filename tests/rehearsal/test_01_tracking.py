"""Tracking data round-trips through Nginx, MLflow and PostgreSQL; the generated
passwords full of @:/?#%&+ work end to end (database URI encoding, htpasswd)."""

from __future__ import annotations

import time
import uuid

from mlflow.entities import Metric, Param, RunTag

from rehearsal.passwords import URL_RESERVED


def test_params_tags_metrics_and_log_batch_read_back_exactly(default_variant, client_for):
    with client_for(default_variant) as client:
        experiment_id = client.create_experiment(f"tracking-{uuid.uuid4().hex[:8]}", tags={"team": "rehearsal"})
        run = client.create_run(experiment_id, tags={"stage": "dev"}, run_name="round-trip")
        run_id = run.info.run_id
        now = int(time.time() * 1000)

        client.log_param(run_id, "learning_rate", "0.01")
        client.log_param(run_id, "unicode", "grüße ✓ @:/?#%&+")
        client.set_tag(run_id, "owner", "rehearsal")
        client.log_metric(run_id, "loss", 0.5, timestamp=now, step=0)
        client.log_metric(run_id, "loss", 0.25, timestamp=now + 1, step=1)
        client.log_metric(run_id, "precise", 1 / 3, timestamp=now, step=0)
        batch_metrics = [Metric("acc", i / 100, now + i, i) for i in range(100)]
        batch_params = [Param(f"p{i}", f"v{i}") for i in range(20)]
        batch_tags = [RunTag(f"t{i}", f"w{i}") for i in range(10)]
        client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags)
        client.set_terminated(run_id, "FINISHED")

        fetched = client.get_run(run_id)
        expected_params = {"learning_rate": "0.01", "unicode": "grüße ✓ @:/?#%&+",
                           **{f"p{i}": f"v{i}" for i in range(20)}}
        assert fetched.data.params == expected_params
        tags = fetched.data.tags
        assert tags["owner"] == "rehearsal" and tags["stage"] == "dev"
        assert {f"t{i}": f"w{i}" for i in range(10)}.items() <= tags.items()
        assert fetched.data.metrics == {"loss": 0.25, "precise": 1 / 3, "acc": 0.99}
        assert fetched.info.status == "FINISHED"

        loss = [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, "loss")]
        assert sorted(loss) == [(0, 0.5, now), (1, 0.25, now + 1)]
        acc = sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, "acc"))
        assert acc == [(m.step, m.value, m.timestamp) for m in batch_metrics]

        found = client.search_runs([experiment_id], filter_string="params.learning_rate = '0.01'")
        assert [r.info.run_id for r in found] == [run_id]
        assert client.get_experiment(experiment_id).tags["team"] == "rehearsal"


def test_generated_passwords_full_of_reserved_characters_work_end_to_end(rehearsal_stack, default_variant,
                                                                          client_for):
    # Both generated secrets hold every URL-reserved character.
    assert set(URL_RESERVED) <= set(rehearsal_stack.db_password)
    assert set(URL_RESERVED) <= set(default_variant.password)
    # The server got the database URI only through its environment, URL-encoded by render.
    server = default_variant.server
    assert rehearsal_stack.db_password not in " ".join(server.service.argv)
    assert rehearsal_stack.db_password not in server.service.env["MLFLOW_BACKEND_STORE_URI"]

    # htpasswd: the client authenticates with the raw password through Nginx ...
    marker = f"password-{uuid.uuid4().hex}"
    with client_for(default_variant) as client:
        experiment_id = client.create_experiment(marker)
        run_id = client.create_run(experiment_id).info.run_id
        client.log_param(run_id, "marker", marker)
        assert client.get_run(run_id).data.params["marker"] == marker

    # ... and the server wrote it to PostgreSQL as the mlflow role, whose password is that string.
    postgres = rehearsal_stack.postgres
    stored = postgres.psql(f"SELECT value FROM params WHERE run_uuid = '{run_id}' AND key = 'marker'",
                           database="mlflow").strip()
    assert stored == marker
    roles = postgres.psql("SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'mlflow'").split()
    assert roles == ["mlflow"]
    assert postgres.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mlflow'").strip() == "f"
