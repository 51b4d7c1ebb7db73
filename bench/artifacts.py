#!/usr/bin/env python
"""Artifact transfers through the rehearsal stack, proxied against direct (issue 26): aggregate throughput
and what the MLflow server spends, measured with the real MLflow client in separate processes.

    venv/bin/python bench/artifacts.py [--clients 8] [--size-mib 256] [--single-mib 1024] [--repeat 3]

One rehearsal stack (rehearsal.launcher, as scripts/rehearse starts it: PostgreSQL, the S3 stand-in, the
schema step) with two server + Nginx pairs rendered from the same config but artifacts.transfer: `proxied`
(the default) and `direct`. For each repetition and each mode, in turn (so drift hits both alike):

* `--clients` client processes each upload a `--size-mib` artifact (log_artifact) at the same moment, and
  when all are done each downloads its own (download_artifacts);
* one client uploads, then downloads, a `--single-mib` artifact.

Every download's sha256 is compared with the source's. For each phase: aggregate MB/s (bytes moved by all
clients / wall time from the start signal to the last client's end; MB = 10^6 bytes), the CPU seconds of
the server's process tree (uvicorn and its workers, from /proc), its peak RSS, the peak size of its TMPDIR
(where MLflow spools proxied uploads and downloads), and the CPU seconds of the S3 stand-in and of Nginx.
Medians of the repetitions are printed side by side, then every repetition. Logs go to stderr.

The clients set MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE (--threshold-mib, 64 MiB by default; MLflow's
default is 500 MiB, so a 256 MiB artifact would otherwise go through the server even in direct mode) and
MLFLOW_HTTP_REQUEST_TIMEOUT=900 (a proxied download of a large artifact first lands whole on the server's
disk, and its first byte comes after that). Both in both modes: proxied clients are told by server-info
that multipart is off and ignore the threshold.

The S3 stand-in is moto by default: Python, in one process, holding objects in memory and spooled
temporary files. On two cores it is the bottleneck of the direct path (the bytes still cross a Python
process, moto's instead of MLflow's): the figures compare the two paths on this stand-in, not S3's
throughput. `--s3 s3rver` measures against s3rver 3.7.1 instead (Node.js, objects in files; from npm:
`cd bench/s3rver && npm ci`), a second stand-in with other costs. It checks no signatures and no policies
(it accepted a tampered presigned URL and an unsigned GET): for the benchmark only, never the rehearsal.
MinIO, the stand-in the local stack really runs, has no binary on PyPI, npm or Debian.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ops.archive import file_sha256  # noqa: E402
from rehearsal.launcher import RehearsalStack, Variant, check_prerequisites  # noqa: E402
from rehearsal.usage import TreeUsage  # noqa: E402

MIB = 1024 * 1024
MB = 1000 * 1000
MODES = ("proxied", "direct")
log = logging.getLogger("bench")




def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for offset in range(0, size, 8 * MIB):
            chunk = os.urandom(min(8 * MIB, size - offset))
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


# --- the s3rver stand-in (--s3 s3rver) -----------------------------------------------------------------

S3RVER = Path(__file__).resolve().parent / "s3rver" / "node_modules" / "s3rver" / "bin" / "s3rver.js"


class S3rverStandIn:
    """s3rver in place of moto, with what RehearsalStack reads of an S3 stand-in (endpoint, bucket, keys,
    service, client); its one account (S3RVER) is the server's and the admin's."""

    def __init__(self, workdir: Path, bucket: str, prefix: str = ""):
        from rehearsal.ports import free_port

        self.workdir = workdir
        self.bucket = bucket
        self.prefix = prefix
        self.port = free_port()
        self.service: Any = None
        self.admin_credentials = self.server_credentials = ("S3RVER", "S3RVER")

    def credentials_for(self, direct: bool) -> tuple[str, str]:
        return self.server_credentials

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3rverStandIn":
        from rehearsal.processes import Service, StartupError, base_env, find_node, http_status, log_tail

        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [find_node(), str(S3RVER), "-d", str(self.workdir / "data"), "-a", "127.0.0.1", "-p", str(self.port),
                "-s", "--no-vhost-buckets", "--configure-bucket", self.bucket]
        self.service = Service("s3 (s3rver)", argv, base_env(self.workdir, self.workdir), self.workdir / "s3rver.log",
                               cwd=self.workdir)
        self.service.start()
        deadline = time.monotonic() + 60
        while http_status(f"{self.endpoint}/{self.bucket}") is None:
            if not self.service.alive() or time.monotonic() > deadline:
                raise StartupError(f"s3rver did not start:\n{log_tail(self.service.log_path)}")
            time.sleep(0.2)
        return self

    def client(self, service: str, credentials: Any = None) -> Any:
        import boto3
        from botocore.config import Config

        key, secret = credentials or self.admin_credentials
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=key,
                            aws_secret_access_key=secret, config=Config(s3={"addressing_style": "path"}))

    def stop(self) -> None:
        if self.service:
            self.service.stop()


class S3rverStack(RehearsalStack):
    """The rehearsal stack with s3rver as its S3 stand-in (the bench's --s3 s3rver)."""

    def _start_artifact_store(self, cfg: Any) -> None:
        self.s3 = S3rverStandIn(self.base_dir / "s3", cfg.artifacts.bucket, cfg.artifacts.prefix)  # type: ignore
        self.s3.start()


# --- a client process ------------------------------------------------------------------------------


def client_process(index: int, env: dict, workdir: str, commands: Any, results: Any) -> None:
    """One MLflow client: `("run", experiment_id)` makes a run; `("up", path)` logs the file into it;
    `("down", name)` downloads it, checks nothing (the parent compares sha256) and removes it."""
    os.environ.update(env)
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run_id = ""
    results.put(("ready", index, 0.0, ""))
    while True:
        command, argument = commands.get()
        if command == "stop":
            return
        started = time.perf_counter()
        try:
            if command == "run":
                run_id = client.create_run(argument).info.run_id
                answer = run_id
            elif command == "up":
                client.log_artifact(run_id, argument, artifact_path="bench")
                answer = ""
            elif command == "down":
                local = Path(client.download_artifacts(run_id, f"bench/{argument}", tempfile.mkdtemp(dir=workdir)))
                answer = file_sha256(local)
                shutil.rmtree(local.parent)
            else:
                raise ValueError(command)
            results.put((command, index, time.perf_counter() - started, answer))
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            results.put(("error", index, 0.0, f"{command}: {error!r}"))


class Clients:
    """`count` client processes pointed at one variant, as its users are (its client lines)."""

    def __init__(self, variant: Variant, count: int, workdir: Path, threshold: int):
        context = multiprocessing.get_context("spawn")
        env = {**variant.client_env(), "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(threshold),
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "900"}
        self.results = context.Queue()
        self.queues = [context.Queue() for _ in range(count)]
        self.processes = [context.Process(target=client_process, args=(i, env, str(workdir), self.queues[i],
                                                                        self.results), daemon=True)
                          for i in range(count)]
        for process in self.processes:
            process.start()
        self._collect("ready", count)

    def _collect(self, command: str, count: int) -> list[tuple]:
        answers = []
        while len(answers) < count:
            answer = self.results.get(timeout=3600)
            if answer[0] == "error":
                raise RuntimeError(f"client {answer[1]}: {answer[3]}")
            assert answer[0] == command, answer
            answers.append(answer)
        return sorted(answers, key=lambda a: a[1])

    def all(self, count: int, command: str, argument: Any) -> list[tuple]:
        for queue in self.queues[:count]:
            queue.put((command, argument))
        return self._collect(command, count)

    def stop(self) -> None:
        for queue in self.queues:
            queue.put(("stop", None))
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.kill()


# --- measuring -------------------------------------------------------------------------------------


@dataclass
class Phase:
    mode: str
    case: str
    direction: str
    moved_bytes: int
    seconds: float
    server_cpu: float
    server_peak_rss: int
    server_peak_temp: int
    s3_cpu: float
    nginx_cpu: float

    @property
    def mb_per_second(self) -> float:
        return self.moved_bytes / MB / self.seconds


@dataclass
class Results:
    phases: list[Phase] = field(default_factory=list)

    def of(self, mode: str, case: str, direction: str) -> list[Phase]:
        return [p for p in self.phases if (p.mode, p.case, p.direction) == (mode, case, direction)]


def measure(stack: RehearsalStack, variant: Variant, clients: Clients, count: int, source: Path, expected: str,
            mode: str, case: str, results: Results) -> None:
    """One round of `case`: a new run per client, all upload at once, then all download at once."""
    experiment = clients_experiment(variant, f"bench-{mode}-{case}-{time.time_ns()}")
    clients.all(count, "run", experiment)
    trees = {"server": variant.server.service, "nginx": variant.proxy.service, "s3": stack.s3.service}
    for direction, command, argument in (("up", "up", str(source)), ("down", "down", source.name)):
        with TreeUsage(trees, temp_dirs={"server": variant.server.tmp_dir}) as usage:
            answers = clients.all(count, command, argument)
        if direction == "down":
            wrong = [a[1] for a in answers if a[3] != expected]
            if wrong:
                raise RuntimeError(f"{mode} {case}: clients {wrong} downloaded bytes whose sha256 differs")
        phase = Phase(mode, case, direction, count * source.stat().st_size, usage.seconds,
                      usage.cpu_seconds("server"), usage.peak_rss("server"), usage.peak_temp("server"),
                      usage.cpu_seconds("s3"), usage.cpu_seconds("nginx"))
        results.phases.append(phase)
        log.warning("%s %s %s: %.1f MB/s in %.1f s, server %.1f CPU-s, peak RSS %.0f MiB, peak temp %.0f MiB, "
                    "s3 stand-in %.1f CPU-s, nginx %.1f CPU-s", mode, case, direction, phase.mb_per_second,
                    phase.seconds, phase.server_cpu, phase.server_peak_rss / MIB, phase.server_peak_temp / MIB,
                    phase.s3_cpu, phase.nginx_cpu)
    empty_bucket(stack)


def clients_experiment(variant: Variant, name: str) -> str:
    import requests

    response = requests.post(f"{variant.tracking_uri}/api/2.0/mlflow/experiments/create", json={"name": name},
                             auth=(variant.username, variant.password), timeout=60)
    response.raise_for_status()
    return response.json()["experiment_id"]


def empty_bucket(stack: RehearsalStack) -> None:
    """The stand-in holds objects in memory and spooled files: free them between rounds."""
    s3 = stack.s3.client("s3")
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=stack.s3.bucket):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=stack.s3.bucket, Delete={"Objects": keys})


# --- report ----------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: Results, cases: list[tuple[str, int]], args: argparse.Namespace, load: tuple) -> str:
    lines = [f"S3 stand-in {args.s3}; load average before {load[0]}, after {load[1]} (2 cores); "
             f"repetitions {args.repeat}; client threshold {args.threshold_mib} MiB; medians:", ""]
    header = ("| case | direction | proxied MB/s | direct MB/s | ratio | server CPU-s proxied | direct | ratio | "
              "server peak RSS MiB proxied | direct | server peak temp MiB proxied | direct | "
              "S3 stand-in CPU-s proxied | direct |")
    lines += [header, "|" + " --- |" * (header.count("|") - 1)]
    for case, _ in cases:
        for direction in ("up", "down"):
            p, d = results.of("proxied", case, direction), results.of("direct", case, direction)
            mp, md = _median([x.mb_per_second for x in p]), _median([x.mb_per_second for x in d])
            cp, cd = _median([x.server_cpu for x in p]), _median([x.server_cpu for x in d])
            lines.append(
                f"| {case} | {direction} | {mp:.1f} | {md:.1f} | {md / mp:.2f}x | {cp:.1f} | {cd:.2f} | "
                f"{(cd / cp if cp else float('nan')):.3f} | "
                f"{_median([x.server_peak_rss / MIB for x in p]):.0f} | "
                f"{_median([x.server_peak_rss / MIB for x in d]):.0f} | "
                f"{_median([x.server_peak_temp / MIB for x in p]):.0f} | "
                f"{_median([x.server_peak_temp / MIB for x in d]):.0f} | "
                f"{_median([x.s3_cpu for x in p]):.1f} | {_median([x.s3_cpu for x in d]):.1f} |")
    lines += ["", "every repetition (mode case direction: MB/s, seconds, server CPU-s, peak RSS MiB, peak temp MiB, "
              "S3 stand-in CPU-s, Nginx CPU-s):"]
    for phase in results.phases:
        lines.append(f"  {phase.mode:<7} {phase.case:<12} {phase.direction:<4}: {phase.mb_per_second:7.1f} MB/s "
                     f"{phase.seconds:6.1f} s  server {phase.server_cpu:6.2f} CPU-s {phase.server_peak_rss / MIB:5.0f} "
                     f"MiB RSS {phase.server_peak_temp / MIB:6.0f} MiB temp  s3 {phase.s3_cpu:6.1f}  "
                     f"nginx {phase.nginx_cpu:5.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent client processes")
    parser.add_argument("--size-mib", type=int, default=256, help="each concurrent client's artifact")
    parser.add_argument("--single-mib", type=int, default=1024, help="the single client's artifact (0: skip)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threshold-mib", type=int, default=64, help="MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE")
    parser.add_argument("--workers", type=int, default=None, help="server.workers (default: the config's)")
    parser.add_argument("--dir", default=None, help="where the source and downloaded files go (default: a temp dir)")
    parser.add_argument("--s3", choices=["moto", "s3rver"], default="moto",
                        help="the S3 stand-in: moto (the rehearsal's) or s3rver (bench/s3rver, npm ci)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="bench: %(message)s")
    check_prerequisites()
    if args.s3 == "s3rver" and not S3RVER.exists():
        print(f"bench: {S3RVER} not found; install it: cd bench/s3rver && npm ci --ignore-scripts", file=sys.stderr)
        return 2
    for name in list(os.environ):
        if name.startswith("MLFLOW_"):
            del os.environ[name]

    workdir = Path(tempfile.mkdtemp(prefix="bench-artifacts-", dir=args.dir))
    cases = [(f"{args.clients}x{args.size_mib}MiB", args.size_mib * MIB)]
    if args.single_mib:
        cases.append((f"1x{args.single_mib}MiB", args.single_mib * MIB))
    sources = {}
    for case, size in cases:
        path = workdir / f"{case}.bin"
        sources[case] = (path, random_file(path, size))
    load_before = os.getloadavg()
    raw: dict = {"server": {"workers": args.workers}} if args.workers else {}
    stack = (S3rverStack if args.s3 == "s3rver" else RehearsalStack)(raw)
    clients: dict[str, Clients] = {}
    results = Results()
    try:
        stack.start()
        variants = {"proxied": stack.add_variant("proxied"),
                    "direct": stack.add_variant("direct", overrides={"artifacts": {"transfer": "direct"}})}
        cfg = variants["proxied"].config
        print(f"stack: mlflow server --workers {cfg.server.workers} (each mode its own server and Nginx, one "
              f"PostgreSQL, one S3 stand-in: {args.s3}); {os.cpu_count()} CPUs", flush=True)
        for mode in MODES:
            clients[mode] = Clients(variants[mode], args.clients, workdir, args.threshold_mib * MIB)
        for repetition in range(args.repeat):
            for mode in (MODES if repetition % 2 == 0 else tuple(reversed(MODES))):
                for case, _ in cases:
                    count = args.clients if case.startswith(f"{args.clients}x") else 1
                    path, expected = sources[case]
                    measure(stack, variants[mode], clients[mode], count, path, expected, mode, case, results)
        print(report(results, cases, args, (_load(load_before), _load(os.getloadavg()))), flush=True)
    finally:
        for group in clients.values():
            group.stop()
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _load(values: tuple) -> str:
    return "/".join(f"{value:.1f}" for value in values)


if __name__ == "__main__":
    sys.exit(main())
