#!/usr/bin/env python
"""A laptop's MLflow moved into a stack (issue 27): this project's `python -m migration move` against
mlflow-export-import (PyPI), the tool MLflow users reach for. Wall time, and what each keeps.

    venv/bin/python bench/move.py --cache DIR [--repeat 3] [--tools export-import,move]
                                  [--transfer proxied] [--move-code /tmp/wt_move] [--export-import-threads]

The source (bench/move_source.py, made once under --cache and reused): MLflow 3.17.2's laptop defaults,
`sqlite:///mlflow.db` and ./mlruns, by default 200 runs, 100,000 metric values, about 1,020 artifacts and
1.02 GiB, three logged models registered as versions with aliases and one model registered from a run's
artifacts the MLflow 2 way.

For each repetition and each tool, in turn (the order alternates, so drift hits both alike): a fresh
rehearsal stack (rehearsal.launcher, as bench/artifacts.py starts it: PostgreSQL, moto as the S3 stand-in,
the schema and auth steps; then one MLflow server and its Nginx) rendered with `auth.mode: mlflow` and the
given `artifacts.transfer`; the tool runs once against it, timed (wall clock of its processes, nothing else
in the window); then, after each tool's last repetition (every one with --check-every: it downloads the
whole source through the stack, which takes longer than the move), the same checker reads the stack back
with MLflow's client through Nginx, as the stack's admin:

* runs and experiments: present with the source's ids? (a tool that makes new ones is matched by experiment
  and run name, so the rest can still be compared); start and end times equal; params equal; every metric
  value equal (key, step, timestamp, value of each, compared by count and digest); parent links resolve to
  the moved parent;
* artifacts: every run's tree downloaded through the stack; each file's size and sha256 against the
  source's;
* logged models (MLflow 3): present with the source's model id, their artifacts' sha256;
* the model registry: each version present, linked to the moved run (and logged model), its files as
  downloaded with `models:/<name>/<version>` equal to the source model's; each alias resolves to the
  version it named.

The tools:

* `mlflow-export-import` (--export-import-version, default 1.2.0, the newest on PyPI): `export-all` from
  the laptop into a local folder, then `import-all` into the stack, as its README has it; the time is
  both. The laptop is served by its own `mlflow server` over mlflow.db (started before the clock): the
  tool's model export calls the tracking URI's REST API with plain requests, which a sqlite:/// URI has
  not. It runs from its own virtualenv (--export-import-venv, made with MLflow 3.17.2 pinned if missing;
  it needs `tabulate`, which it imports but does not declare).
* `move` (issue 27): `python -m migration move mlflow.db --artifacts mlruns --to <tracking uri>
  --database-uri-env MOVE_DATABASE_URI --manifest WORK/move-manifest.sqlite` (a fresh resume manifest
  per repetition: its default, next to the source, would make the next one a resume) from --move-code (a
  checkout whose `migration` package has the command; skipped with a note when it has not), with the
  stack's admin in MLFLOW_TRACKING_USERNAME/PASSWORD and the stack's PostgreSQL URI in MOVE_DATABASE_URI
  (the rehearsal's database is on loopback, as the local stack's is from the server's network).

Printed: the source, the machine's load average (uptime) before and after each repetition, a table with
the median wall time and what each tool kept, then every repetition. Logs go to stderr; each tool's output
to a log file under the work directory (kept with --keep).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import move_source  # noqa: E402
from ops.archive import file_sha256  # noqa: E402
from rehearsal.launcher import RehearsalStack, Variant, check_prerequisites  # noqa: E402

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / "venv" / "bin" / "python"
EXPORT_IMPORT_VERSION = "1.2.0"
MLFLOW_VERSION = "3.17.2"
DATABASE_ENV = "MOVE_DATABASE_URI"
TOOLS = ("export-import", "move")
log = logging.getLogger("bench")


# --- the tools ------------------------------------------------------------------------------------


@dataclass
class ToolRun:
    tool: str
    transfer: str
    repetition: int
    seconds: float = float("nan")
    phases: dict[str, float] = field(default_factory=dict)
    returncode: int = 0
    failure: str = ""
    checks: dict[str, Any] = field(default_factory=dict)
    load_before: str = ""
    load_after: str = ""
    started: str = ""
    code: str = ""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHONPATH", "VIRTUAL_ENV"))}
    return {**env, **extra}


def timed(argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> tuple[float, int]:
    """Run one command to completion, its output to log_path; (wall seconds, return code)."""
    with open(log_path, "ab") as output:
        output.write(f"$ {' '.join(argv)}\n".encode())
        output.flush()
        started = time.perf_counter()
        result = subprocess.run(argv, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        return time.perf_counter() - started, result.returncode


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def ensure_export_import_venv(venv: Path, version: str) -> Path:
    """A virtualenv with mlflow-export-import==version and mlflow==3.17.2 (the server's), made if missing."""
    binary = venv / "bin" / "export-all"
    marker = venv / f".bench-mlflow-export-import-{version}"
    if binary.exists() and marker.exists():
        return venv
    log.warning("making %s (mlflow-export-import==%s, mlflow==%s) ...", venv, version, MLFLOW_VERSION)
    base = Path(os.path.realpath(VENV_PYTHON))
    subprocess.run([str(base), "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", f"mlflow-export-import=={version}",
                    f"mlflow=={MLFLOW_VERSION}", "tabulate"], check=True)
    marker.write_text("")
    return venv


class SourceServer:
    """The laptop's own `mlflow server` over its database (as `mlflow ui` serves it, from the source folder):
    export-import reads the source through MLflow's client *and* plain REST calls to the tracking URI (its
    registered model export calls /api/2.0/mlflow/registered-models/get with requests), so a `sqlite:///`
    tracking URI loses every model."""

    def __init__(self, mlflow_binary: Path, source: Path, log_path: Path):
        from rehearsal.ports import free_port

        self.port = free_port()
        self.argv = [str(mlflow_binary), "server", "--backend-store-uri", "sqlite:///mlflow.db", "--host",
                     "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        self.source, self.log_path = source, log_path
        self.process: Optional[subprocess.Popen] = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "SourceServer":
        from rehearsal.processes import http_status

        self.output = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, cwd=self.source, env=clean_env(), stdout=self.output,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while http_status(f"{self.uri}/health") != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the source's mlflow server did not start: {tail(self.log_path)}")
            time.sleep(0.25)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)  # its own session: uvicorn and its worker
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.output.close()


def run_export_import(args: argparse.Namespace, source: Path, variant: Variant, work: Path, run: ToolRun) -> None:
    """export-all from the laptop (its `mlflow server` over mlflow.db), then import-all into the stack: its
    README's two steps. The time is the two commands'; starting the laptop's server is not in it."""
    bin_dir = Path(args.export_import_venv) / "bin"
    export_dir = work / "export"
    threads = ["--use-threads", "True"] if args.export_import_threads else []
    log_path = work / "export-import.log"
    with SourceServer(bin_dir / "mlflow", source, work / "source-server.log") as laptop:
        exported, code = timed([str(bin_dir / "export-all"), "--output-dir", str(export_dir), *threads],
                               clean_env(MLFLOW_TRACKING_URI=laptop.uri), work, log_path)
    run.phases["export"] = exported
    if code:
        run.returncode, run.failure = code, f"export-all exited {code}: {tail(log_path, 4)}"
        run.seconds = exported
        return
    problems = [line for line in log_path.read_text(errors="replace").splitlines() if line.startswith("ERROR")]
    if problems:
        run.failure = f"export-all (exit 0) logged {len(problems)} errors, first: {problems[0][:300]}"
    imported, code = timed([str(bin_dir / "import-all"), "--input-dir", str(export_dir), *threads],
                           clean_env(**variant.client_env()), work, log_path)
    run.phases["import"] = imported
    run.seconds = exported + imported
    text = log_path.read_text(errors="replace")
    errors = [line for line in text.splitlines() if "Exception:" in line or line.startswith("ERROR")]
    if code or len(errors) > len(problems):
        run.returncode = code
        run.failure = (run.failure + " | " if run.failure else "") + f"import-all exited {code}: " + " | ".join(
            errors[len(problems):][:3])[-600:]
    shutil.rmtree(export_dir, ignore_errors=True)


def code_version(code: Path) -> str:
    """The checkout's commit (and whether its work tree differs from it); a `git archive` export names its commit
    in a .commit file."""
    if (code / ".commit").exists():
        return f"{code} {(code / '.commit').read_text().strip()}"
    commit = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no", "migration"],
                           capture_output=True, text=True).stdout.strip()
    return f"{code} {commit}{' + uncommitted changes' if dirty else ''}"


def move_available(code: Path) -> Optional[str]:
    """None when `python -m migration move --help` works from `code`, else why not."""
    result = subprocess.run([str(VENV_PYTHON), "-m", "migration", "move", "--help"], capture_output=True, text=True,
                            env=clean_env(PYTHONPATH=str(code)), cwd=code)
    if result.returncode != 0:
        return f"`python -m migration move --help` from {code} exited {result.returncode}: {result.stderr[-300:]}"
    return None


def run_move(args: argparse.Namespace, source: Path, stack: RehearsalStack, variant: Variant, work: Path,
             run: ToolRun) -> None:
    log_path = work / "move.log"
    shutil.rmtree(source / "mlflow.db.move", ignore_errors=True)  # its scratch copy from an earlier repetition
    env = clean_env(PYTHONPATH=str(args.move_code), **variant.client_env(), **{DATABASE_ENV: stack.backend_uri})
    argv = [str(VENV_PYTHON), "-m", "migration", "move", str(source / "mlflow.db"), "--artifacts",
            str(source / "mlruns"), "--to", variant.tracking_uri, "--database-uri-env", DATABASE_ENV,
            "--manifest", str(work / "move-manifest.sqlite"), *args.move_arg]
    run.seconds, run.returncode = timed(argv, env, work, log_path)
    if run.returncode:
        run.failure = f"move exited {run.returncode}: {tail(log_path, 6)}"[-600:]


# --- the checker ----------------------------------------------------------------------------------


def check(variant: Variant, manifest: dict[str, Any], work: Path, parallel: int) -> dict[str, Any]:
    """What the stack holds of the source, read with MLflow's client through Nginx as the stack's admin."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    os.environ.update(variant.client_env())
    uri = variant.tracking_uri
    client = MlflowClient(uri, registry_uri=uri)
    found: dict[str, Any] = {}

    experiments = client.search_experiments(view_type=ViewType.ALL)
    by_name = {e.name: e for e in experiments}
    source_experiments = [e for e in manifest["experiments"] if e["name"] != "Default"]
    found["experiments same id"] = sum(1 for e in source_experiments
                                       if by_name.get(e["name"]) and by_name[e["name"]].experiment_id == e["id"])
    found["experiments present"] = sum(1 for e in source_experiments if e["name"] in by_name)
    experiment_names = {e["id"]: e["name"] for e in manifest["experiments"]}
    target_runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL,
                                     max_results=50_000)
    target_names = {e.experiment_id: e.name for e in experiments}
    runs_by_id = {r.info.run_id: r for r in target_runs}
    runs_by_name = {(target_names[r.info.experiment_id], r.info.run_name): r for r in target_runs}
    mapping: dict[str, Any] = {}
    for source_run in manifest["runs"]:
        target = runs_by_id.get(source_run["run_id"]) or runs_by_name.get(
            (experiment_names[source_run["experiment_id"]], source_run["name"]))
        if target is not None:
            mapping[source_run["run_id"]] = target
    runs = manifest["runs"]
    found["runs"] = len(runs)
    found["runs present"] = len(mapping)
    found["runs same id"] = sum(1 for r in runs if r["run_id"] in runs_by_id)
    found["runs same experiment id"] = sum(1 for r in runs if r["run_id"] in mapping
                                           and mapping[r["run_id"]].info.experiment_id == r["experiment_id"])
    found["start and end times equal"] = sum(
        1 for r in runs if r["run_id"] in mapping and mapping[r["run_id"]].info.start_time == r["start_time"]
        and mapping[r["run_id"]].info.end_time == r["end_time"])
    found["params equal"] = sum(1 for r in runs if r["run_id"] in mapping
                                and mapping[r["run_id"]].data.params == r["params"])
    children = [r for r in runs if r["parent"]]
    found["parent links"] = f"{sum(1 for r in children if r['run_id'] in mapping and r['parent'] in mapping and mapping[r['run_id']].data.tags.get('mlflow.parentRunId') == mapping[r['parent']].info.run_id)}/{len(children)}"  # noqa: E501

    def metrics_of(source_run: dict[str, Any]) -> tuple[int, bool]:
        target = mapping[source_run["run_id"]]
        rows = [(m.key, m.step, m.timestamp, m.value) for key in target.data.metrics
                for m in client.get_metric_history(target.info.run_id, key)]
        count, digest = move_source.metric_digest(rows)
        return count, digest == source_run["metric_digest"]

    with ThreadPoolExecutor(parallel) as pool:
        metric_results = list(pool.map(metrics_of, [r for r in runs if r["run_id"] in mapping]))
    found["metric values"] = sum(r["metric_count"] for r in runs)
    found["metric values present"] = sum(count for count, _ in metric_results)
    found["runs with every metric value equal"] = sum(1 for _, equal in metric_results if equal)

    downloads = work / "check"

    def compare_tree(expected: dict[str, list[Any]], fetch: Callable[[Path], Optional[Path]],
                     ignore: tuple[str, ...] = ()) -> tuple[int, int, list[str]]:
        """(files equal, bytes equal, what differs) of a downloaded tree against the source's manifest."""
        folder = Path(tempfile.mkdtemp(dir=downloads))
        try:
            root = fetch(folder)
            actual = move_source.tree_manifest(root) if root is not None and root.exists() else {}
        except Exception as error:  # noqa: BLE001 - a tool that left the location unreadable
            shutil.rmtree(folder, ignore_errors=True)
            return 0, 0, [f"download failed: {str(error)[:160]}"]
        try:
            equal = [path for path, entry in expected.items() if actual.get(path) == entry]
            differ = [f"{path}: {'sha256 differs' if path in actual else 'missing'}"
                      for path in expected if path not in equal]
            differ += [f"{path}: not in the source" for path in actual if path not in expected and path not in ignore]
            return len(equal), sum(expected[path][0] for path in equal), differ
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    downloads.mkdir(parents=True, exist_ok=True)

    def artifacts_of(source_run: dict[str, Any]) -> tuple[int, int, list[str]]:
        if source_run["run_id"] not in mapping:
            return 0, 0, [f"run {source_run['name']} missing"]
        target_id = mapping[source_run["run_id"]].info.run_id
        return compare_tree(source_run["artifacts"],
                            lambda folder: Path(client.download_artifacts(target_id, "", str(folder))))

    with ThreadPoolExecutor(parallel) as pool:
        artifact_results = list(pool.map(artifacts_of, runs))
    differences = [d for _, _, ds in artifact_results for d in ds]

    models = manifest["logged_models"]
    model_results = []
    found["logged models"] = len(models)
    found["logged models same id"] = 0
    for model in models:
        try:
            target_model = client.get_logged_model(model["model_id"])
        except Exception:  # noqa: BLE001 - not there
            model_results.append((0, 0, [f"logged model {model['model_id']} missing"]))
            continue
        found["logged models same id"] += 1
        model_results.append(compare_tree(model["artifacts"], lambda folder, m=target_model: Path(
            mlflow.artifacts.download_artifacts(artifact_uri=m.artifact_location, dst_path=str(folder),
                                                tracking_uri=uri))))
    differences += [d for _, _, ds in model_results for d in ds]
    files = sum(len(r["artifacts"]) for r in runs) + sum(len(m["artifacts"]) for m in models)
    found["artifacts"] = files
    found["artifact bytes"] = sum(size for r in runs for size, _ in r["artifacts"].values()) + sum(
        size for m in models for size, _ in m["artifacts"].values())
    found["artifacts equal"] = sum(n for n, _, _ in artifact_results + model_results)
    found["artifact bytes equal"] = sum(b for _, b, _ in artifact_results + model_results)

    # The registry: each version, its links, its files through models:/, and the aliases.
    models_by_id = {m["model_id"]: m for m in models}
    runs_by_source_id = {r["run_id"]: r for r in runs}
    versions = manifest["model_versions"]
    found["model versions"] = len(versions)
    present = linked = bytes_equal = 0
    for version in versions:
        try:
            target_version = client.get_model_version(version["name"], str(version["version"]))
        except Exception:  # noqa: BLE001
            differences.append(f"model version {version['name']}/{version['version']} missing")
            continue
        present += 1
        moved_run = mapping.get(version["run_id"])
        model_ok = not version["model_id"] or move_source.model_id_of(
            target_version.model_id, target_version.source or "") == version["model_id"]
        if moved_run is not None and target_version.run_id == moved_run.info.run_id and model_ok:
            linked += 1
        else:
            differences.append(f"model version {version['name']}/{version['version']}: run {target_version.run_id}, "
                               f"model {target_version.model_id}, source {target_version.source}")
        if version["model_id"]:
            expected = models_by_id[version["model_id"]]["artifacts"]
        else:  # a model in the run's artifacts: the subtree the source names
            run_entry = runs_by_source_id[version["run_id"]]
            prefix = version["source"][len(run_entry["artifact_uri"]):].strip("/") + "/"
            expected = {path[len(prefix):]: entry for path, entry in run_entry["artifacts"].items()
                        if path.startswith(prefix)}
        equal, _, differ = compare_tree(expected, lambda folder, v=version: Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{v['name']}/{v['version']}", dst_path=str(folder), tracking_uri=uri)),
            ignore=("registered_model_meta",))  # MLflow writes it into every models:/ download
        if equal == len(expected) and not differ:
            bytes_equal += 1
        else:
            differences += [f"models:/{version['name']}/{version['version']}: {d}" for d in differ[:3]]
    found["model versions present"] = present
    found["model versions linked to the moved run and model"] = linked
    found["model versions whose files load equal"] = bytes_equal
    aliases = manifest["aliases"]
    resolved = 0
    for alias in aliases:
        try:
            target_version = client.get_model_version_by_alias(alias["name"], alias["alias"])
        except Exception:  # noqa: BLE001
            differences.append(f"alias {alias['name']}@{alias['alias']} missing")
            continue
        source_version = next(v for v in versions if v["name"] == alias["name"] and v["version"] == alias["version"])
        moved_run = mapping.get(source_version["run_id"])
        if int(target_version.version) == alias["version"] and moved_run is not None \
                and target_version.run_id == moved_run.info.run_id:
            resolved += 1
        else:
            differences.append(f"alias {alias['name']}@{alias['alias']} -> version {target_version.version}, "
                               f"run {target_version.run_id}")
    found["aliases"] = len(aliases)
    found["aliases resolve to the right version"] = resolved
    found["differences"] = differences
    shutil.rmtree(downloads, ignore_errors=True)
    return found


# --- the report -----------------------------------------------------------------------------------


def _of(checks: dict[str, Any], key: str, total_key: Optional[str] = None) -> str:
    if key not in checks:
        return "-"
    return f"{checks[key]:,}/{checks[total_key]:,}" if total_key else str(checks[key])


ROWS = [
    ("runs present", "runs present", "runs"),
    ("run ids equal to the source's", "runs same id", "runs"),
    ("experiment ids equal (runs; experiments)", None, None),
    ("start and end times equal", "start and end times equal", "runs"),
    ("params equal", "params equal", "runs"),
    ("metric values present", "metric values present", "metric values"),
    ("runs with every metric value equal", "runs with every metric value equal", "runs"),
    ("parent links to the moved parent", "parent links", None),
    ("artifacts with equal sha256", "artifacts equal", "artifacts"),
    ("logged models with the source's id", "logged models same id", "logged models"),
    ("model versions present", "model versions present", "model versions"),
    ("model versions linked to the moved run and model", "model versions linked to the moved run and model",
     "model versions"),
    ("model versions whose files (models:/name/version) are equal", "model versions whose files load equal",
     "model versions"),
    ("aliases resolving to the source's version", "aliases resolve to the right version", "aliases"),
]


def report(runs: list[ToolRun], manifest: dict[str, Any], args: argparse.Namespace, notes: list[str]) -> str:
    labels = sorted({f"{r.tool}: {r.code}" for r in runs})
    lines = [f"source: {move_source.summary(manifest)}",
             "tools: " + "; ".join(labels) + f" (mlflow {MLFLOW_VERSION} on both sides)",
             f"stack: rehearsal, auth.mode mlflow, fresh per tool and repetition; {os.cpu_count()} CPUs", ""]
    for transfer in args.transfer:
        columns = [tool for tool in args.tools if any(r.tool == tool and r.transfer == transfer for r in runs)]
        if not columns:
            continue
        header = f"| artifacts.transfer {transfer} | " + " | ".join(columns) + " |"
        lines += [header, "|" + " --- |" * (len(columns) + 1)]

        def of(tool: str, transfer: str = transfer) -> list[ToolRun]:
            return [r for r in runs if r.tool == tool and r.transfer == transfer]

        medians = {tool: statistics.median([r.seconds for r in of(tool)]) for tool in columns}
        cells = []
        for tool in columns:
            each = ", ".join(f"{r.seconds:.1f}" for r in of(tool))
            phases = ""
            if of(tool)[0].phases:
                phases = " (" + " + ".join(f"{name} {statistics.median([r.phases.get(name, 0) for r in of(tool)]):.1f}"
                                           for name in of(tool)[0].phases) + ")"
            cells.append(f"**{medians[tool]:.1f} s**{phases}; {len(of(tool))} run(s): {each}")
        lines.append("| wall time (median) | " + " | ".join(cells) + " |")
        if len(columns) == 2:
            lines.append(f"| speed-up (median against median) | | {medians[columns[0]] / medians[columns[1]]:.1f}x |")
        lines.append("| exit code (each repetition) | " + " | ".join(
            ", ".join(str(r.returncode) for r in of(tool)) for tool in columns) + " |")
        last = {tool: next((r.checks for r in reversed(of(tool)) if "runs" in r.checks), {}) for tool in columns}
        for label, key, total in ROWS:
            if key is None:
                cells = [f"{c.get('runs same experiment id', '-')}/{c.get('runs', '-')}; "
                         f"{c.get('experiments same id', '-')}/{c.get('experiments present', '-')}"
                         for c in last.values()]
            else:
                cells = [_of(c, key, total) for c in last.values()]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("| source database unchanged (every repetition) | " + " | ".join(
            "yes" if all(r.checks.get("source database unchanged") for r in of(tool)) else "no" for tool in columns)
            + " |")
        lines.append("| artifact bytes equal | " + " | ".join(
            f"{c.get('artifact bytes equal', 0) / MIB:,.1f} / {c.get('artifact bytes', 0) / MIB:,.1f} MiB"
            for c in last.values()) + " |")
        lines.append("")
    lines.append("every repetition (tool, transfer: wall s [phases], exit, load average before -> after; what "
                 "differed, first 8):")
    for run in runs:
        phases = " ".join(f"{k} {v:.1f}" for k, v in run.phases.items())
        lines.append(f"  {run.repetition + 1} {run.tool:<13} {run.transfer:<7}: {run.seconds:7.1f} s "
                     f"{('[' + phases + ']') if phases else ''} exit {run.returncode}, load {run.load_before} -> "
                     f"{run.load_after}")
        if run.failure:
            lines.append(f"      failure: {run.failure}")
        differences = run.checks.get("differences", [])
        if differences:
            lines.append(f"      {len(differences)} differences: " + "; ".join(differences[:8]))
    lines += ["", *notes]
    return "\n".join(lines)


def _load() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="where the source (and the tool's venv) is kept")
    move_source.add_arguments(parser)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma separated: export-import,move")
    parser.add_argument("--transfer", default="proxied", help="comma separated artifacts.transfer: proxied,direct")
    parser.add_argument("--move-code", type=Path, default=Path("/tmp/wt_move"),
                        help="a checkout whose migration package has the move command (PYTHONPATH)")
    parser.add_argument("--move-arg", action="append", default=[], help="one more argument for move (repeatable)")
    parser.add_argument("--export-import-version", default=EXPORT_IMPORT_VERSION)
    parser.add_argument("--export-import-venv", default=None, help="default: CACHE/export-import-venv")
    parser.add_argument("--export-import-threads", action="store_true", help="--use-threads True for both steps")
    parser.add_argument("--parallel", type=int, default=4, help="the checker's concurrent downloads")
    parser.add_argument("--export-import-repeat", type=int, default=None,
                        help="repetitions of export-import (default: --repeat; it is slow)")
    parser.add_argument("--results", type=Path, default=None,
                        help="a JSON-lines file: its earlier repetitions join the report, new ones are appended "
                             "(so the tools can be measured in separate invocations)")
    parser.add_argument("--report-only", action="store_true", help="print the report of --results, run nothing")
    parser.add_argument("--check-every", action="store_true",
                        help="run the checker after every repetition (default: after each tool's last one; "
                             "it downloads the whole source through the stack)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (tool logs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="bench: %(message)s")
    args.tools = [t for t in args.tools.split(",") if t]
    args.transfer = [t for t in args.transfer.split(",") if t]
    args.cache = args.cache.resolve()
    args.move_code = args.move_code.resolve()
    check_prerequisites()
    for name in list(os.environ):
        if name.startswith("MLFLOW_"):
            del os.environ[name]
    notes: list[str] = []
    source, manifest = move_source.ensure_source(args.cache, args, log=lambda m: log.warning("%s", m))
    runs: list[ToolRun] = []
    if args.results and args.results.exists():
        runs = [ToolRun(**json.loads(line)) for line in args.results.read_text().splitlines() if line.strip()]
    if args.report_only:
        args.tools = [t for t in TOOLS if any(r.tool == t for r in runs)]
        args.transfer = [t for t in ("proxied", "direct") if any(r.transfer == t for r in runs)]
        print(report(runs, manifest, args, notes), flush=True)
        return 0
    if "export-import" in args.tools:
        args.export_import_venv = str(ensure_export_import_venv(
            Path(args.export_import_venv or args.cache / "export-import-venv"), args.export_import_version))
    if "move" in args.tools:
        why = move_available(args.move_code)
        if why:
            notes.append(f"move not measured: {why}")
            args.tools.remove("move")
    args.code_label = {"export-import": f"mlflow-export-import {args.export_import_version}",
                       "move": f"migration move at {code_version(args.move_code)}"}
    database_sha = file_sha256(source / "mlflow.db")
    work = Path(tempfile.mkdtemp(prefix="bench-move-"))
    os.chmod(work, 0o755)  # the stacks live under it, and PostgreSQL runs as its own user
    measured = list(args.tools)
    repeats = {tool: args.repeat for tool in measured}
    if args.export_import_repeat is not None:
        repeats["export-import"] = args.export_import_repeat
    try:
        for repetition in range(max(repeats.values(), default=0)):
            order = measured if repetition % 2 == 0 else list(reversed(measured))
            for transfer in args.transfer:
                for tool in [t for t in order if repetition < repeats[t]]:
                    earlier = sum(1 for r in runs if r.tool == tool and r.transfer == transfer)
                    run = ToolRun(tool, transfer, earlier, started=time.strftime("%Y-%m-%d %H:%M:%S"),
                                  code=args.code_label[tool])
                    here = work / f"{tool}-{transfer}-{earlier + 1}"
                    here.mkdir(mode=0o755)
                    stack = RehearsalStack({"auth": {"mode": "mlflow"}, "artifacts": {"transfer": transfer}},
                                           base_dir=here / "stack")
                    try:
                        stack.start()
                        variant = stack.add_variant("default")
                        run.load_before = _load()
                        log.warning("repetition %d: %s (%s) ...", repetition + 1, tool, transfer)
                        if tool == "export-import":
                            run_export_import(args, source, variant, here, run)
                        else:
                            run_move(args, source, stack, variant, here, run)
                        run.load_after = _load()
                        log.warning("repetition %d: %s (%s) took %.1f s (exit %d), checking ...", repetition + 1,
                                    tool, transfer, run.seconds, run.returncode)
                        if args.check_every or repetition == repeats[tool] - 1:
                            run.checks = check(variant, manifest, here, args.parallel)
                        log.warning("checked: %s", json.dumps({k: v for k, v in run.checks.items()
                                                               if k != "differences"}))
                    finally:
                        stack.stop()
                    unchanged = file_sha256(source / "mlflow.db") == database_sha
                    run.checks["source database unchanged"] = unchanged
                    database_sha = file_sha256(source / "mlflow.db")
                    runs.append(run)
                    if args.results:
                        with open(args.results, "a") as handle:
                            handle.write(json.dumps(dataclasses.asdict(run)) + "\n")
        notes.append(f"load average (1/5/15 min) at the end: {_load()}")
        args.tools = [t for t in TOOLS if any(r.tool == t for r in runs)]
        args.transfer = [t for t in ("proxied", "direct") if any(r.transfer == t for r in runs)]
        print(report(runs, manifest, args, notes), flush=True)
    finally:
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
