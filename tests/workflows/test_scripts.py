"""The shell scripts of the workflows' steps, run as the runner runs them (`bash --noprofile --norc -eo
pipefail`), with stand-ins for `az` and `gh` on PATH that record their arguments and answer as the
real ones would: the Azure state SAS, who gets a preview, the failed preview's comment, the drift
issue. What GitHub and Azure then do with the calls is not tested here (README: "What the tests prove").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.program import REPO_ROOT
from tests.workflows.workflows import Step, load, step_named

# A stand-in for `az` and `gh`: records argv (one JSON list a line) and prints the canned answer for the
# first key of ANSWERS (JSON: {"substring of the joined arguments": "output"}) found in its arguments.
STAND_IN = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
joined = " ".join(sys.argv[1:])
for key, answer in json.loads(os.environ.get("ANSWERS", "{{}}")).items():
    if key in joined:
        sys.stdout.write(answer)
        break
"""

SAS = "se=2031-01-01T00%3A00Z&sp=rl&sv=2022-11-02&sr=c&skoid=0000&sig=AbC%2Bdef%3D"


class Run:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name in ("az", "gh"):
            (self.bin / name).write_text(STAND_IN)
            (self.bin / name).chmod(0o755)
        self.files = {name: tmp_path / name for name in ("log", "GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
        for path in self.files.values():
            path.write_text("")

    def __call__(self, step: Step, answers: dict[str, str] | None = None, **env: str) -> subprocess.CompletedProcess:
        script = self.tmp_path / "step.sh"
        script.write_text(step["run"])
        environment = {"PATH": f"{self.bin}:{os.environ['PATH']}", "HOME": str(self.tmp_path),
                       "STAND_IN_LOG": str(self.files["log"]), "ANSWERS": json.dumps(answers or {}),
                       **{name: str(path) for name, path in self.files.items() if name != "log"},
                       **{name: value for name, value in step.get("env", {}).items() if "${{" not in str(value)},
                       **env}
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=REPO_ROOT,
                              env=environment, capture_output=True, text=True, timeout=60)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.files["log"].read_text().splitlines()]

    def read(self, name: str) -> str:
        return self.files[name].read_text()


@pytest.fixture
def run(tmp_path) -> Run:
    return Run(tmp_path)


def preview_step(name: str) -> Step:
    return step_named(load("preview.yml")["jobs"]["preview"], name)


# --- the Azure state SAS --------------------------------------------------------------------------------

def sas_step(workflow: str = "deploy.yml", job: str = "apply") -> Step:
    return step_named(load(workflow)["jobs"][job], "State container SAS")


def test_the_sas_is_a_user_delegation_sas_for_the_state_container(run):
    before = datetime.now(timezone.utc)
    result = run(sas_step(), {"generate-sas": SAS + "\n"},
                 BACKEND_URL="azblob://mlflow-state?storage_account=mlflowstate1")
    assert result.returncode == 0, result.stderr
    [call] = run.calls()
    assert call[:4] == ["az", "storage", "container", "generate-sas"]
    arguments = dict(zip(call[4:], call[5:]))
    assert {"--as-user", "--https-only"} <= set(call) and arguments["--auth-mode"] == "login"
    assert (arguments["--account-name"], arguments["--name"], arguments["--permissions"]) == (
        "mlflowstate1", "mlflow-state", "racwdl")
    expiry = datetime.strptime(arguments["--expiry"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=timezone.utc)
    assert before + timedelta(hours=3) - timedelta(minutes=2) <= expiry <= before + timedelta(hours=3, minutes=2)
    # Masked before it is handed over, the signature also URL-decoded; the job's later steps get it.
    mask_lines = [line for line in result.stdout.splitlines() if line.startswith("::add-mask::")]
    assert mask_lines == [f"::add-mask::{SAS}", "::add-mask::AbC%2Bdef%3D", "::add-mask::AbC+def="]
    assert run.read("GITHUB_ENV") == f"AZURE_STORAGE_SAS_TOKEN={SAS}\n"
    assert SAS not in result.stdout.replace(f"::add-mask::{SAS}", "")


def test_the_preview_gets_a_read_only_sas_for_an_hour(run):
    result = run(sas_step("preview.yml", "preview"), {"generate-sas": "?" + SAS},
                 BACKEND_URL="azblob://state/sub?storage_account=acct")
    assert result.returncode == 0, result.stderr
    [call] = run.calls()
    arguments = dict(zip(call[4:], call[5:]))
    assert (arguments["--name"], arguments["--permissions"]) == ("state", "rl")
    assert run.read("GITHUB_ENV") == f"AZURE_STORAGE_SAS_TOKEN={SAS}\n"  # without az's leading `?`


@pytest.mark.parametrize("url", ["s3://mlflow-state", "azblob://mlflow-state", "azblob://?storage_account=acct"])
def test_a_backend_url_without_container_or_account_is_refused(run, url: str):
    result = run(sas_step(), {"generate-sas": SAS}, BACKEND_URL=url)
    assert result.returncode != 0 and "PULUMI_BACKEND_URL_AZURE must read" in result.stdout
    assert run.calls() == [] and run.read("GITHUB_ENV") == ""


@pytest.mark.parametrize("answer", ["", "a b", "one\ntwo"])
def test_no_usable_sas_fails_the_step(run, answer: str):
    result = run(sas_step(), {"generate-sas": answer}, BACKEND_URL="azblob://c?storage_account=a")
    assert result.returncode != 0 and run.read("GITHUB_ENV") == ""


# --- who gets a preview ----------------------------------------------------------------------------------

GATE = {"REPOSITORY": "owner/repo", "HEAD_REPOSITORY": "owner/repo", "PR_AUTHOR": "someone", "ACTOR": "someone",
        "PR_NUMBER": "7", "STACK": "aws", "GH_TOKEN": "token"}


def test_a_branch_of_the_repository_gets_a_preview(run):
    result = run(preview_step("Who gets a preview"), **GATE)
    assert result.returncode == 0 and run.read("GITHUB_OUTPUT") == "preview=true\n" and run.calls() == []


def test_a_fork_fails_the_check_with_the_reason(run):
    result = run(preview_step("Who gets a preview"), **{**GATE, "HEAD_REPOSITORY": "stranger/repo"})
    assert result.returncode != 0 and "fork" in result.stdout and run.read("GITHUB_OUTPUT") == ""


def test_dependabot_passes_without_a_preview_when_it_changes_only_github(run):
    files = ".github/workflows/preview.yml\n.github/workflows/deploy.yml\n"
    result = run(preview_step("Who gets a preview"), {"pulls/7/files": files},
                 **{**GATE, "PR_AUTHOR": "dependabot[bot]", "ACTOR": "dependabot[bot]"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert run.read("GITHUB_OUTPUT") == "preview=false\n"
    assert "No preview of `aws`" in run.read("GITHUB_STEP_SUMMARY")
    [call] = run.calls()
    assert call[:3] == ["gh", "api", "--paginate"] and "repos/owner/repo/pulls/7/files" in call[3]


def test_dependabot_changing_anything_else_fails(run):
    result = run(preview_step("Who gets a preview"), {"pulls/7/files": ".github/dependabot.yml\nrequirements.txt\n"},
                 **{**GATE, "PR_AUTHOR": "dependabot[bot]", "ACTOR": "dependabot[bot]"})
    assert result.returncode != 0 and "requirements.txt" in result.stdout and run.read("GITHUB_OUTPUT") == ""


@pytest.mark.parametrize("author,actor", [("dependabot[bot]", "maintainer"), ("someone", "dependabot[bot]")])
def test_only_a_run_dependabot_made_on_its_own_pull_request_skips(run, author: str, actor: str):
    """A maintainer's push to a Dependabot branch runs with this repository's secrets: it is previewed.
    Dependabot acting on someone else's pull request does not make it Dependabot's."""
    result = run(preview_step("Who gets a preview"), {"pulls/7/files": ".github/x.yml\n"},
                 **{**GATE, "PR_AUTHOR": author, "ACTOR": actor})
    assert result.returncode == 0 and run.read("GITHUB_OUTPUT") == "preview=true\n"


# --- the failed preview on the pull request ----------------------------------------------------------

FAILED = {"PREVIEWED": "true", "STACK": "azure", "REPOSITORY": "owner/repo", "PR_NUMBER": "7",
          "RUN_URL": "https://github.com/owner/repo/actions/runs/99/attempts/1", "SHA": "abc123", "GH_TOKEN": "t"}


def pulumi_actions_heading(stack: str) -> str:
    """pulumi/actions v7.0.0, src/libs/pr.ts: "#### :tropical_drink: `${command}` on ${projectName}/${stackName}",
    found again by that heading and "<summary>Pulumi report</summary>"."""
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["name"]
    return f"#### :tropical_drink: `preview` on {project}/{stack}"


def comments(*bodies: tuple[int, str]) -> str:
    return "".join(json.dumps({"id": number, "body": body}) + "\n" for number, body in bodies)


def posted_bodies(run: Run) -> list[tuple[str, str, str]]:
    """(method, path, body) of each write call."""
    writes = []
    for call in run.calls():
        if "--method" in call:
            body = call[call.index("-f") + 1].removeprefix("body=")
            writes.append((call[call.index("--method") + 1], call[call.index("--method") + 2], body))
    return writes


def test_a_failed_preview_replaces_every_comment_of_its_stack(run):
    green = pulumi_actions_heading("azure") + "\n\n<details>\n<summary>Pulumi report</summary>\n<pre>ok</pre>"
    other_stack = pulumi_actions_heading("aws") + "\n\n<details>\n<summary>Pulumi report</summary>"
    answers = {"issues/7/comments?per_page=100": comments((1, green), (2, other_stack), (3, "LGTM"), (4, green))}
    result = run(preview_step("Say on the pull request"), answers, **FAILED)
    assert result.returncode == 0, result.stdout + result.stderr
    writes = posted_bodies(run)
    assert [(method, path) for method, path, _ in writes] == [
        ("PATCH", "repos/owner/repo/issues/comments/1"), ("PATCH", "repos/owner/repo/issues/comments/4")]
    body = writes[0][2]
    # pulumi/actions finds it again (same heading, same summary) and edits it on the next green preview.
    assert body.startswith(pulumi_actions_heading("azure")) and "<summary>Pulumi report</summary>" in body
    assert "failed" in body and FAILED["RUN_URL"] in body and "abc123" in body
    assert FAILED["RUN_URL"] in run.read("GITHUB_STEP_SUMMARY")


def test_a_failed_first_preview_posts_a_comment(run):
    result = run(preview_step("Say on the pull request"), {"issues/7/comments?per_page=100": comments((3, "LGTM"))},
                 **FAILED)
    assert result.returncode == 0, result.stdout + result.stderr
    [(method, path, body)] = posted_bodies(run)
    assert (method, path) == ("POST", "repos/owner/repo/issues/7/comments") and FAILED["RUN_URL"] in body


def test_a_fork_run_leaves_the_comments_alone(run):
    result = run(preview_step("Say on the pull request"), **{**FAILED, "PREVIEWED": ""})
    assert result.returncode == 0 and run.calls() == []


# --- the drift issue ---------------------------------------------------------------------------------------

def drift_step() -> Step:
    return step_named(load("drift.yml")["jobs"]["drift"], "Open or update the drift issue")


DRIFT = {"STACK": "aws", "REPOSITORY": "owner/repo", "RUN_URL": "https://github.com/owner/repo/actions/runs/5/attempts/1",
         "SHA": "abc123", "GH_TOKEN": "t"}


def issues(*titles: tuple[int, str]) -> str:
    return json.dumps([{"number": number, "title": title} for number, title in titles])


def test_drift_opens_an_issue(run):
    result = run(drift_step(), {"issue list": issues((3, "Drift check failed: the azure stack"))}, **DRIFT)
    assert result.returncode == 0, result.stdout + result.stderr
    create = [call for call in run.calls() if call[1:3] == ["issue", "create"]]
    assert len(create) == 1 and "Drift check failed: the aws stack" in create[0]
    assert DRIFT["RUN_URL"] in create[0][create[0].index("--body") + 1]


def test_drift_comments_on_the_open_issue(run):
    answers = {"issue list": issues((3, "Drift check failed: the azure stack"),
                                    (8, "Drift check failed: the aws stack"))}
    result = run(drift_step(), answers, **DRIFT)
    assert result.returncode == 0, result.stdout + result.stderr
    writes: list[Any] = [call for call in run.calls() if call[1] == "issue" and call[2] != "list"]
    assert [call[2:4] for call in writes] == [["comment", "8"]]
