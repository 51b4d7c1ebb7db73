"""PostgreSQL and the MLflow server restart while a client is logging; with
retries nothing is lost and the same client carries on."""

from __future__ import annotations

import threading
import time
import uuid

from mlflow.exceptions import MlflowException

RESTART_AFTER = 100


class MetricWriter(threading.Thread):
    """Logs `count` metrics one request at a time, like a training loop; every call is retried
    (the client's own retries first, then this loop) with the same timestamp, so a retry of a
    request that did land is a no-op rather than a second point."""

    def __init__(self, client, run_id: str, count: int, key: str = "loss", deadline_seconds: float = 180):
        super().__init__(daemon=True)
        self.client, self.run_id, self.count, self.key = client, run_id, count, key
        self.deadline = time.monotonic() + deadline_seconds
        self.base_ts = int(time.time() * 1000)
        self.logged = 0
        self.outer_retries = 0
        self.errors: list[str] = []
        self.slowest = 0.0
        self.progress = threading.Event()

    def run(self) -> None:
        for step in range(self.count):
            started = time.monotonic()
            while True:
                try:
                    self.client.log_metric(self.run_id, self.key, step * 0.5, timestamp=self.base_ts + step, step=step)
                    break
                except (MlflowException, OSError) as error:  # exhausted client retries
                    self.outer_retries += 1
                    self.errors.append(type(error).__name__ + ": " + str(error)[:200])
                    if time.monotonic() > self.deadline:
                        return
                    time.sleep(0.5)
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.logged = step + 1
            if self.logged >= RESTART_AFTER:
                self.progress.set()


def _client_env():
    # A client configured for outages: more, faster retries than the default budget.
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def _assert_all_points(client, run_id: str, writer: MetricWriter) -> None:
    history = client.get_metric_history(run_id, writer.key)
    points = sorted((m.step, m.value, m.timestamp) for m in history)
    expected = [(step, step * 0.5, writer.base_ts + step) for step in range(writer.count)]
    assert points == expected, f"{len(points)} points stored, {writer.count} expected"


def _log_across_restart(client, run_id: str, count: int, pid, restart) -> tuple["MetricWriter", float]:
    """Log `count` metrics while `restart()` replaces the process `pid()` names; every point must arrive.
    Returns the writer (for its figures) and how long the restart took."""
    writer = MetricWriter(client, run_id, count)
    writer.start()
    assert writer.progress.wait(60), "the writer did not get going"
    old_pid = pid()
    started = time.monotonic()
    restart()
    outage = time.monotonic() - started
    writer.join(240)
    assert not writer.is_alive()
    assert pid() != old_pid
    assert writer.logged == count, writer.errors[-3:]
    _assert_all_points(client, run_id, writer)
    return writer, outage


def test_postgres_restart_while_logging_500_metrics(rehearsal_stack, default_variant, client_for, report_figure):
    with client_for(default_variant, **_client_env()) as client:
        experiment_id = client.create_experiment(f"pg-restart-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id
        writer, outage = _log_across_restart(client, run_id, 500, lambda: rehearsal_stack.postgres.pid,
                                             lambda: rehearsal_stack.restart_postgres(down_seconds=3))
        # The same client keeps working.
        client.set_tag(run_id, "after", "restart")
        assert client.get_run(run_id).data.tags["after"] == "restart"
    report_figure("postgres outage", f"{outage:.1f}", "s")
    report_figure("slowest log_metric across the outage", f"{writer.slowest:.1f}", "s")
    report_figure("calls that exhausted the client's retries", writer.outer_retries)


def test_mlflow_server_restart_while_logging(rehearsal_stack, default_variant, client_for, report_figure):
    server = default_variant.server
    with client_for(default_variant, **_client_env()) as client:
        experiment_id = client.create_experiment(f"server-restart-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_param(run_id, "before", "restart")
        writer, outage = _log_across_restart(client, run_id, 300, lambda: server.service.pid,
                                             lambda: rehearsal_stack.restart_server("default", down_seconds=2))
        run = client.get_run(run_id)
        assert run.data.params == {"before": "restart"}
        client.set_terminated(run_id)
        assert client.get_run(run_id).info.status == "FINISHED"
    report_figure("mlflow server down (stop, 2 s, start until healthy)", f"{outage:.1f}", "s")
    report_figure("slowest log_metric across the restart", f"{writer.slowest:.1f}", "s")
    report_figure("calls that exhausted the client's retries", writer.outer_retries)
