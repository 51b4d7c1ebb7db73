"""A reviewed plan can be applied: the program sends every resource the same inputs when it runs again on the
same state. `pulumi up --plan` (the deploy workflow's apply job) compares each resource's inputs with the
plan's and stops with "violates plan" at the first difference (pulumi/pulumi pkg/resource/deploy/plan.go;
pulumi/pulumi#17546 for a value read fresh at each run). Review 25: a fresh ECR token in every image's
inputs on aws, the program's own clock in the server app's tags on azure.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from tests.harness.program import REPO_ROOT, ProgramMocks, run_program, stack_file_config


def dockerfile_sources(dockerfile: Path) -> list[str]:
    """The build-context paths a Dockerfile's COPY and ADD instructions read (not `--from` stages)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() in ("COPY", "ADD") and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


class FreshEachCall(ProgramMocks):
    """An account whose look-ups of short-lived values (tokens) answer anew at every call, as the clouds do."""

    counter = itertools.count()

    def call(self, args):
        answer = super().call(args)
        if "Token" in args.token or "token" in args.token:
            outputs = answer[0] if isinstance(answer, tuple) else answer
            fresh = {key: f"{value}-{next(self.counter)}" if isinstance(value, str) else value
                     for key, value in outputs.items()}
            return (fresh, answer[1]) if isinstance(answer, tuple) else fresh
        return answer


def _inputs(stack: str) -> dict[str, str]:
    run = run_program(stack_file_config(stack), stack=stack, mocks=FreshEachCall())
    return {resource.urn: json.dumps(resource.raw_inputs, sort_keys=True, default=str) for resource in run.resources}


@pytest.mark.parametrize("stack", ["local", "aws", "azure"])
def test_the_program_sends_the_same_inputs_when_it_runs_again(stack):
    preview, up = _inputs(stack), _inputs(stack)
    assert preview.keys() == up.keys()
    changed = sorted(urn.rsplit("::", 1)[-1] for urn in preview if preview[urn] != up[urn])
    assert not changed, f"inputs that differ between a plan and its `up --plan`: {changed}"


def test_the_azure_rollout_time_is_taken_by_a_command_run_with_each_version():
    """The server app's rollout-started tag comes from a command's output, made anew only when the MLflow version
    changes (a preview leaves it unknown, which a plan accepts), not from the program's clock."""
    run = run_program(stack_file_config("azure"), stack="azure")
    [clock] = [c for c in run.of_type("command:local:Command") if c.inputs["create"].startswith("date -u ")]
    assert clock.inputs["triggers"] == [stack_file_config("azure")["mlflow:mlflowVersion"]]
    server = run.one("azure-native:app:ContainerApp", "mlflow-server")
    assert clock.urn in server.dependencies
    assert server.inputs["tags"]["mlflow-rollout-started"] == clock.state["stdout"].strip()


def test_every_path_the_server_image_copies_is_in_its_build_context():
    """Review 25 (aws 4 F1): the .dockerignore let only requirements.txt and migration/ into the context, so
    `COPY mlflow_guard ...` failed the build, and with it the first `up` of every stack (nothing here builds
    the image: docker-py applies the same rules)."""
    from components.platforms import base

    dockerfile = base.REPO_ROOT / "docker" / "mlflow" / "Dockerfile"
    sent = {str(path.relative_to(base.REPO_ROOT)) for path in base.build_context_files(base.REPO_ROOT, dockerfile)}
    for source in dockerfile_sources(dockerfile):
        assert any(name == source or name.startswith(source.rstrip("/") + "/") for name in sent), \
            f"{source} is copied by the Dockerfile but .dockerignore keeps it out of the build context"
    assert not [name for name in sent if "__pycache__" in name]


def test_the_push_token_is_asked_for_again_whenever_the_build_context_changes(tmp_path, monkeypatch):
    """The registry tokens (aws and azure) are renewed only when images_fingerprint changes, so it must cover
    every file the server image's build sees: mlflow_guard/ was copied but not counted, and a changed guard
    was then pushed with a token hours old (review 25); a changed .dockerignore changes the context too."""
    from components.platforms import base

    sources = dockerfile_sources(base.REPO_ROOT / "docker" / "mlflow" / "Dockerfile")
    assert {"migration", "mlflow_guard", "docker/mlflow/requirements.txt"} <= set(sources)
    for top in {"docker", *(source.split("/")[0] for source in sources)}:
        shutil.copytree(base.REPO_ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(base.REPO_ROOT / ".dockerignore", tmp_path / ".dockerignore")
    monkeypatch.setattr(base, "REPO_ROOT", tmp_path)
    for source in [*sources, "docker/mlflow/Dockerfile", ".dockerignore"]:
        path = tmp_path / source
        touched = path if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())[-1]
        before = base.images_fingerprint("3.17.2", ["nginx:1"])
        touched.write_bytes(touched.read_bytes() + b"\n")
        assert base.images_fingerprint("3.17.2", ["nginx:1"]) != before, f"{touched} is not counted"
        before = base.images_fingerprint("3.17.2", ["nginx:1"])
        touched.chmod(touched.stat().st_mode ^ 0o020)  # another umask's checkout: pulumi-docker builds again
        assert base.images_fingerprint("3.17.2", ["nginx:1"]) != before, f"{touched}'s mode is not counted"


def test_what_the_image_copies_is_readable_by_the_server_whatever_the_checkouts_umask():
    """Review 25 (aws 5 F3): COPY keeps the context's modes; a checkout made under umask 077 gave root-only files
    the server (uid 10001) could not import. A chmod after the last COPY, before the image drops root."""
    lines = [line.strip() for line in (REPO_ROOT / "docker" / "mlflow" / "Dockerfile").read_text().splitlines()]
    last_copy = max(i for i, line in enumerate(lines) if line.startswith("COPY ") and "/opt/mlflow-platform" in line)
    user = next(i for i, line in enumerate(lines) if line.startswith("USER "))
    assert any(line.startswith("RUN chmod -R a+rX") and "/opt/mlflow-platform" in line
               for line in lines[last_copy + 1:user]), "no chmod between the last COPY and USER"
