#!/usr/bin/env python
"""The laptop source of `bench/move.py` (issue 27): an MLflow 3.17.2 tracking store made by MLflow itself, with
MLflow's own defaults on a laptop (`sqlite:///mlflow.db` and `./mlruns`, artifact locations stored as absolute
paths), and a manifest of everything a move has to keep.

    venv/bin/python bench/move_source.py CACHE_DIR [--runs 200] [--metrics-per-run 500] [--files-per-run 5]
                                                   [--total-mib 1040]

What it holds (defaults): 200 runs in two experiments (one in five in the second; every tenth run of the
first a child of the run before it), each with 5 params, 2 tags, 500 metric values (5 keys x 100 steps, one
log_batch), fixed start and end times in the past, and 5 artifacts in a nested folder tree written to a
staging folder and logged with log_artifacts (a summary, a log, a plot, a CSV two folders down, a checkpoint
taking the rest of the run's share of --total-mib; the bytes are random, so nothing compresses). Then three
MLflow 3 logged models (`mlflow.pyfunc.log_model`, under mlruns/<experiment>/models/<model_id>/artifacts),
registered as versions 1-3 of `bench-model` with aliases `champion` (3) and `challenger` (2), and one model
saved into a run's artifacts the MLflow 2 way (`classic/`) registered from its run URI as `bench-classic`
version 1, alias `prod`. Both kinds of version are what a laptop of today holds.

The source is made once per set of parameters under CACHE_DIR/source-r<runs>-m<metrics>-f<files>-t<MiB>/
(mlflow.db, mlruns/, manifest.json; the manifest is written last and marks the source complete) and reused
by later runs. The manifest lists, per run, its ids, times, params, a digest of its metric values and every
artifact's size and sha256; per logged model and model version, their ids, links and artifacts' sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ops.archive import file_sha256  # noqa: E402

MIB = 1024 * 1024
BASE_TIME_MS = 1_780_000_000_000  # 2026-05-28: every start/end time is fixed, so a move that resets one shows
METRIC_KEYS = ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate")
EXPERIMENTS = ("laptop-train", "laptop-eval")
MODEL_NAME, CLASSIC_NAME = "bench-model", "bench-classic"
ALIASES = {MODEL_NAME: {"champion": 3, "challenger": 2}, CLASSIC_NAME: {"prod": 1}}


def source_dir(cache: Path, args: argparse.Namespace) -> Path:
    return cache / f"source-r{args.runs}-m{args.metrics_per_run}-f{args.files_per_run}-t{args.total_mib}"


def tree_manifest(root: Path) -> dict[str, list[Any]]:
    """{relative posix path: [size, sha256]} of every file under root."""
    return {path.relative_to(root).as_posix(): [path.stat().st_size, file_sha256(path)]
            for path in sorted(root.rglob("*")) if path.is_file()}


def metric_digest(rows: Iterable[tuple[str, int, int, float]]) -> tuple[int, str]:
    """(count, sha256) of a run's metric values as (key, step, timestamp, value), in a canonical order."""
    lines = sorted(f"{key}|{step}|{timestamp}|{float(value)!r}" for key, step, timestamp, value in rows)
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for offset in range(0, size, 8 * MIB):
            handle.write(os.urandom(min(8 * MIB, size - offset)))


def _run_files(staging: Path, index: int, files: int, share: int, rng: random.Random) -> None:
    """`files` artifacts of one run in a nested tree whose sizes add up to about `share` bytes."""
    small = [
        ("summary.json", lambda p: p.write_text(json.dumps({"run": index, "best_epoch": rng.randrange(100),
                                                            "notes": "x" * rng.randrange(500, 1500)}))),
        ("logs/train.log", lambda p: p.write_text("".join(f"epoch {e} loss {rng.random():.6f}\n"
                                                          for e in range(rng.randrange(400, 2000))))),
        ("plots/loss.png", lambda p: _write_random(p, rng.randrange(20_000, 200_000))),
        ("data/eval/predictions.csv", lambda p: _write_random(p, rng.randrange(50_000, 500_000))),
    ]
    written = 0
    for name, write in small[: max(0, files - 1)]:
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        written += path.stat().st_size
    for extra in range(max(0, files - 1 - len(small))):
        path = staging / "extra" / f"part-{extra:03d}.bin"
        _write_random(path, 4096)
        written += 4096
    if files:
        _write_random(staging / "checkpoints" / f"epoch_{rng.randrange(10, 99)}" / "weights.bin",
                      max(1, share - written))


def generate(target: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Make the source in `target` (must not exist) with MLflow's client, from `target` as working directory."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    target.mkdir(parents=True)
    previous = os.getcwd()
    os.chdir(target)  # the laptop: sqlite:///mlflow.db and ./mlruns, relative to where the user works
    try:
        mlflow.set_tracking_uri("sqlite:///mlflow.db")
        client = MlflowClient()
        rng = random.Random(27)
        experiments = [client.create_experiment(name) for name in EXPERIMENTS]
        share = args.total_mib * MIB // args.runs
        run_ids: list[str] = []
        staging_root = Path(tempfile.mkdtemp(prefix="staging-", dir=target.parent))
        try:
            for index in range(args.runs):
                experiment = experiments[1] if index % 5 == 4 else experiments[0]
                start = BASE_TIME_MS + index * 3_600_000 + rng.randrange(1000)
                tags = {"team": "laptop", "purpose": f"bench-{index % 3}"}
                if index % 10 == 8 and run_ids and experiment == experiments[0]:
                    tags["mlflow.parentRunId"] = run_ids[-1]
                run = client.create_run(experiment, start_time=start, tags=tags, run_name=f"run-{index:04d}")
                run_id = run.info.run_id
                steps = args.metrics_per_run // len(METRIC_KEYS)
                metrics = [Metric(key, rng.random() * (k + 1), start + step * 1000 + k, step)
                           for step in range(steps) for k, key in enumerate(METRIC_KEYS)]
                params = [Param(f"p{k}", str(rng.random())) for k in range(5)]
                for offset in range(0, len(metrics), 1000):
                    client.log_batch(run_id, metrics=metrics[offset:offset + 1000],
                                     params=params if offset == 0 else [], tags=[RunTag("seed", str(index))])
                staging = staging_root / run_id
                _run_files(staging, index, args.files_per_run, share, rng)
                client.log_artifacts(run_id, str(staging))
                shutil.rmtree(staging)
                client.set_terminated(run_id, "FINISHED", end_time=start + 1_800_000 + rng.randrange(1000))
                run_ids.append(run_id)
        finally:
            shutil.rmtree(staging_root, ignore_errors=True)
        _models(client, run_ids)
    finally:
        os.chdir(previous)
    return describe(target)


def _models(client: Any, run_ids: list[str]) -> None:
    import mlflow

    class Identity(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    requirements = [f"mlflow=={mlflow.__version__}"]
    for run_id in run_ids[-3:]:  # versions 1-3 of MODEL_NAME, MLflow 3 logged models
        run = client.get_run(run_id)
        with mlflow.start_run(run_id=run_id):
            mlflow.pyfunc.log_model(name="model", python_model=Identity(), pip_requirements=requirements,
                                    registered_model_name=MODEL_NAME)
        if run.info.status == "FINISHED":  # start_run(run_id) ends it again: keep the source's end time
            client.set_terminated(run_id, "FINISHED", end_time=run.info.end_time)
    classic_run = run_ids[len(run_ids) // 2]
    run = client.get_run(classic_run)
    with tempfile.TemporaryDirectory() as folder:  # the MLflow 2 way: a model in the run's artifacts
        mlflow.pyfunc.save_model(os.path.join(folder, "classic"), python_model=Identity(),
                                 pip_requirements=requirements)
        client.log_artifacts(classic_run, os.path.join(folder, "classic"), "classic")
    client.create_registered_model(CLASSIC_NAME)
    client.create_model_version(CLASSIC_NAME, f"{run.info.artifact_uri}/classic", classic_run)
    for name, aliases in ALIASES.items():
        for alias, version in aliases.items():
            client.set_registered_model_alias(name, alias, str(version))


def model_id_of(model_id: Any, source: str) -> Any:
    """A version's logged model: MLflow 3.17.2's SQL store keeps no model_id column for versions (the client
    returns None); the version's source, models:/<model_id>, names it."""
    if model_id:
        return model_id
    return source[len("models:/"):] if source.startswith("models:/m-") else None


def describe(target: Path) -> dict[str, Any]:
    """The manifest of a finished source, read back with MLflow's client (what the checker compares with)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(f"sqlite:///{target / 'mlflow.db'}")
    manifest: dict[str, Any] = {"mlflow": mlflow.__version__, "experiments": [], "runs": [], "logged_models": [],
                                "model_versions": [], "aliases": []}
    experiments = client.search_experiments(view_type=ViewType.ALL)
    for experiment in experiments:
        manifest["experiments"].append({"id": experiment.experiment_id, "name": experiment.name,
                                        "artifact_location": experiment.artifact_location})
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL,
                              max_results=50_000)
    for run in sorted(runs, key=lambda r: r.info.start_time):
        rows = [(m.key, m.step, m.timestamp, m.value) for key in run.data.metrics
                for m in client.get_metric_history(run.info.run_id, key)]
        count, digest = metric_digest(rows)
        manifest["runs"].append({
            "run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "name": run.info.run_name,
            "start_time": run.info.start_time, "end_time": run.info.end_time, "status": run.info.status,
            "parent": run.data.tags.get("mlflow.parentRunId"), "params": run.data.params,
            "metric_count": count, "metric_digest": digest, "artifact_uri": run.info.artifact_uri,
            "artifacts": tree_manifest(Path(run.info.artifact_uri))})
    for model in client.search_logged_models([e.experiment_id for e in experiments]):
        manifest["logged_models"].append({
            "model_id": model.model_id, "experiment_id": model.experiment_id, "run_id": model.source_run_id,
            "name": model.name, "artifact_location": model.artifact_location,
            "artifacts": tree_manifest(Path(model.artifact_location))})
    for registered in client.search_registered_models():
        for found in client.search_model_versions(f"name = '{registered.name}'"):
            version = client.get_model_version(found.name, found.version)  # search leaves model_id out
            manifest["model_versions"].append({
                "name": version.name, "version": int(version.version), "run_id": version.run_id,
                "model_id": model_id_of(version.model_id, version.source), "source": version.source})
        for alias, version in (registered.aliases or {}).items():
            manifest["aliases"].append({"name": registered.name, "alias": alias, "version": int(version)})
    files = [size for run in manifest["runs"] for size, _ in run["artifacts"].values()]
    files += [size for model in manifest["logged_models"] for size, _ in model["artifacts"].values()]
    manifest["totals"] = {"runs": len(manifest["runs"]), "experiments": len(experiments),
                          "metric_values": sum(r["metric_count"] for r in manifest["runs"]),
                          "artifacts": len(files), "artifact_bytes": sum(files),
                          "logged_models": len(manifest["logged_models"]),
                          "model_versions": len(manifest["model_versions"]), "aliases": len(manifest["aliases"]),
                          "database_bytes": (target / "mlflow.db").stat().st_size}
    return manifest


def ensure_source(cache: Path, args: argparse.Namespace, log: Any = print) -> tuple[Path, dict[str, Any]]:
    """The cached source for these parameters, made first if it is missing or incomplete."""
    target = source_dir(cache, args)
    manifest_path = target / "manifest.json"
    if manifest_path.exists():
        return target, json.loads(manifest_path.read_text())
    if target.exists():
        shutil.rmtree(target)  # an interrupted generation: the database's absolute paths pin the folder
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"making the laptop source in {target} (once) ...")
    manifest = generate(target, args)
    manifest["generated_seconds"] = round(time.perf_counter() - started, 1)
    manifest_path.write_text(json.dumps(manifest))
    log(f"source made in {manifest['generated_seconds']} s: {summary(manifest)}")
    return target, manifest


def summary(manifest: dict[str, Any]) -> str:
    t = manifest["totals"]
    return (f"{t['runs']} runs in {t['experiments']} experiments, {t['metric_values']:,} metric values, "
            f"{t['artifacts']:,} artifacts ({t['artifact_bytes'] / MIB:,.0f} MiB), {t['logged_models']} logged "
            f"models, {t['model_versions']} model versions, {t['aliases']} aliases, database "
            f"{t['database_bytes'] / MIB:.1f} MiB")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--metrics-per-run", type=int, default=500, help="metric values per run (5 keys)")
    parser.add_argument("--files-per-run", type=int, default=5, help="artifacts per run")
    parser.add_argument("--total-mib", type=int, default=1040, help="the runs' artifacts together")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache", type=Path)
    add_arguments(parser)
    args = parser.parse_args()
    target, manifest = ensure_source(args.cache.resolve(), args)
    print(f"{target}: {summary(manifest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
