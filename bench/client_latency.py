#!/usr/bin/env python
"""Client latency of the rehearsal stack: the real MLflow client's `log_metric`, direct to the
MLflow server and through Nginx (the rendered nginx.conf and htpasswd).

    venv/bin/python bench/client_latency.py [--requests 200] [--writers 16] [--per-writer 40]

Starts the rehearsal stack (rehearsal.launcher, as scripts/rehearse does), then for each path:
the median and p95 of a sequential keep-alive client's log_metric, and the throughput of 16
concurrent writers (one run each). Results go to stdout, logs to stderr.

Direct requests carry `Host: localhost`, the Host Nginx forwards (the server's --allowed-hosts
hold the public names only). `--password-hash bcrypt|ssha` renders the stack with that
`proxy.passwordHash` (default: the config's, ssha), to compare the cost of the check Nginx does on
every request.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rehearsal.launcher import RehearsalStack, Variant, check_prerequisites  # noqa: E402

_DIRECT = {"on": False}


def _install_host_header() -> None:
    """Direct requests need the public Host (what Nginx sends); MLflow's header-provider hook."""
    from mlflow.tracking.request_header.abstract_request_header_provider import RequestHeaderProvider
    from mlflow.tracking.request_header.registry import _request_header_provider_registry

    class PublicHost(RequestHeaderProvider):
        def in_context(self) -> bool:
            return _DIRECT["on"]

        def request_headers(self) -> dict:
            return {"Host": "localhost"}

    _request_header_provider_registry.register(PublicHost)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def sequential(uri: str, count: int, warmup: int = 20) -> list[float]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(f"bench-seq-{time.time_ns()}")
    run_id = client.create_run(experiment_id).info.run_id
    for step in range(warmup):
        client.log_metric(run_id, "warmup", step, step=step)
    latencies = []
    for step in range(count):
        started = time.perf_counter()
        client.log_metric(run_id, "latency", step, step=step)
        latencies.append(time.perf_counter() - started)
    return latencies


def concurrent(uri: str, writers: int, per_writer: int) -> tuple[float, int, float]:
    """(requests per second, requests, seconds) for `writers` threads logging `per_writer` each."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(f"bench-conc-{time.time_ns()}")
    runs = [client.create_run(experiment_id).info.run_id for _ in range(writers)]
    barrier = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def work(run_id: str) -> None:
        barrier.wait()
        try:
            for step in range(per_writer):
                client.log_metric(run_id, "throughput", step, step=step)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(run_id,)) for run_id in runs]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} writers failed: {errors[0]!r}")
    total = writers * per_writer
    for run_id in runs:
        assert len(client.get_metric_history(run_id, "throughput")) == per_writer
    return total / elapsed, total, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential log_metric calls per path")
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers")
    parser.add_argument("--per-writer", type=int, default=40, help="log_metric calls per concurrent writer")
    parser.add_argument("--workers", type=int, default=None, help="server.workers (default: the config's)")
    parser.add_argument("--password-hash", choices=["bcrypt", "ssha"], default=None,
                        help="proxy.passwordHash to render with (default: the config's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="bench: %(message)s")
    check_prerequisites()

    os.environ["MLFLOW_HTTP_POOL_MAXSIZE"] = str(max(10, args.writers * 2))
    for name in list(os.environ):
        if name.startswith("MLFLOW_TRACKING_"):
            del os.environ[name]
    raw: dict = {"server": {"workers": args.workers}} if args.workers else {}
    if args.password_hash:
        raw["proxy"] = {"passwordHash": args.password_hash}
    stack = RehearsalStack(raw)
    try:
        stack.start()
        variant: Variant = stack.add_variant("default")
        os.environ["MLFLOW_TRACKING_USERNAME"] = variant.username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = variant.password
        _install_host_header()
        cfg = variant.config
        print(f"stack: mlflow server --workers {cfg.server.workers}, nginx worker_processes auto "
              f"({os.cpu_count()} CPUs), htpasswd {cfg.proxy.password_hash} (rendered)")
        print(f"{'path':<8} {'median ms':>10} {'p95 ms':>8} {'writers':>8} {'req/s':>8}")
        for label, uri in (("direct", variant.direct_uri), ("nginx", variant.tracking_uri)):
            _DIRECT["on"] = label == "direct"
            latencies = sequential(uri, args.requests)
            rate, _, _ = concurrent(uri, args.writers, args.per_writer)
            print(f"{label:<8} {statistics.median(latencies) * 1000:>10.1f} "
                  f"{_percentile(latencies, 0.95) * 1000:>8.1f} {args.writers:>8} {rate:>8.1f}", flush=True)
        _DIRECT["on"] = False
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
