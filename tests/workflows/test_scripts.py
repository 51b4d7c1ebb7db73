"""The shell scripts of the workflows' steps, run as the runner runs them (`bash --noprofile --norc -eo
pipefail`), with stand-ins for `az`, `gh` and `pulumi` on PATH that record their arguments and answer
as the real ones would: the Azure state SAS, who gets a preview, the preview and its output, the
preview's comment, the code owners check on main, the plan on main and its summary (and the registry
token it replaces when asked, on the stack named), apply's checks of the plan file and of main's head,
the drift issue, the check that no apply runs (the runbook's unlock, deploy.yml's plan). Besides: the
check every job runs after its checkout, in real git repositories (a commit holding what .gitignore
leaves out fails it), and scripts/test with stand-ins for python3 and the system's tools (on CI it
makes ./venv afresh, never running a committed one). What GitHub, Azure and Pulumi then do with the
calls is not tested here (README: "What the tests prove").
"""

from __future__ import annotations

import hashlib
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

# A stand-in for `az`, `gh` and `pulumi`: records argv (one JSON list a line; the file `--input` names
# is read into the STAND_IN_INPUTS log), prints the canned answer for the first key of ANSWERS (JSON:
# {"substring of the joined arguments": "output"}) found in its arguments; an answer
# {"stdout": ..., "exit": n} also exits with n; {"file": path} prints that file (an output longer than
# an environment variable may hold); a list of answers gives them one a call, the last one again after.
STAND_IN = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
if "--input" in sys.argv:
    with open(sys.argv[sys.argv.index("--input") + 1]) as body, open(os.environ["STAND_IN_INPUTS"], "a") as log:
        log.write(json.dumps(body.read()) + "\\n")
joined = " ".join(sys.argv[1:])
for key, answer in json.loads(os.environ.get("ANSWERS", "{{}}")).items():
    if key in joined:
        if isinstance(answer, list):
            counter = os.environ["STAND_IN_LOG"] + "." + str(sorted(json.loads(os.environ["ANSWERS"])).index(key))
            calls = int(open(counter).read()) if os.path.exists(counter) else 0
            open(counter, "w").write(str(calls + 1))
            answer = answer[min(calls, len(answer) - 1)]
        if isinstance(answer, str):
            answer = {{"stdout": answer}}
        sys.stdout.write(open(answer["file"]).read() if "file" in answer else answer.get("stdout", ""))
        sys.exit(answer.get("exit", 0))
"""

SAS = "se=2031-01-01T00%3A00Z&sp=rl&sv=2022-11-02&sr=c&skoid=0000&sig=AbC%2Bdef%3D"


class Run:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name in ("az", "gh", "pulumi"):
            (self.bin / name).write_text(STAND_IN)
            (self.bin / name).chmod(0o755)
        self.runner_temp = tmp_path / "runner_temp"
        self.runner_temp.mkdir()
        self.files = {name: tmp_path / name
                      for name in ("log", "inputs", "GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
        for path in self.files.values():
            path.write_text("")

    def __call__(self, step: Step, answers: dict[str, Any] | None = None, cwd: Path = REPO_ROOT,
                 **env: str) -> subprocess.CompletedProcess:
        script = self.tmp_path / "step.sh"
        script.write_text(step["run"])
        environment = {"PATH": f"{self.bin}:{os.environ['PATH']}", "HOME": str(self.tmp_path),
                       "STAND_IN_LOG": str(self.files["log"]), "STAND_IN_INPUTS": str(self.files["inputs"]),
                       "ANSWERS": json.dumps(answers or {}), "RUNNER_TEMP": str(self.runner_temp),
                       **{name: str(path) for name, path in self.files.items() if name not in ("log", "inputs")},
                       **{name: value for name, value in step.get("env", {}).items() if "${{" not in str(value)},
                       **env}
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd,
                              env=environment, capture_output=True, text=True, timeout=60)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.files["log"].read_text().splitlines()]

    def inputs(self) -> list[str]:
        """The bodies handed to `gh api --input`, in order."""
        return [json.loads(line) for line in self.files["inputs"].read_text().splitlines()]

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


# --- the preview and its output ------------------------------------------------------------------------

PREVIEW = {"STACK": "aws", "BACKEND_URL": "s3://state?region=eu-west-1",
           "MESSAGE": "preview of abc123 (pull request 7)", "PULUMI_CONFIG_PASSPHRASE": "secret"}
PREVIEW_OUTPUT = "Previewing update (aws):\n  ~ aws:ecs/service:Service mlflow update [diff: ~taskDefinition]\n" \
                 "    taskDefinition: output<string>\nResources:\n    ~ 1 to update\n"


def test_the_preview_keeps_its_output_and_says_it_in_the_summary(run):
    result = run(preview_step("pulumi preview"), {"login": "Logged in\n", "preview": PREVIEW_OUTPUT}, **PREVIEW)
    assert result.returncode == 0, result.stdout + result.stderr
    [login, preview] = run.calls()
    assert login == ["pulumi", "login", "--non-interactive", "s3://state?region=eu-west-1"]
    arguments = " ".join(preview)
    for needed in ("preview --non-interactive", "--diff", "--stack aws", "--policy-pack policy", "--color never",
                   "--message preview of abc123 (pull request 7)"):
        assert needed in arguments, needed
    assert (run.runner_temp / "preview" / "output.txt").read_text() == "Logged in\n" + PREVIEW_OUTPUT
    summary = run.read("GITHUB_STEP_SUMMARY")
    assert "`pulumi preview` of `aws`: passed" in summary and "output&lt;string&gt;" in summary
    assert "output<string>" not in summary


@pytest.mark.parametrize("failing", ["login", "preview"])
def test_a_failed_preview_fails_the_step_and_keeps_the_reason(run, failing: str):
    answers = {"login": "Logged in\n", "preview": PREVIEW_OUTPUT}
    answers[failing] = {"stdout": "error: policy violation: mandatory\n", "exit": 255}
    result = run(preview_step("pulumi preview"), answers, **PREVIEW)
    assert result.returncode == 255
    assert "policy violation" in (run.runner_temp / "preview" / "output.txt").read_text()
    assert "failed (exit status 255)" in run.read("GITHUB_STEP_SUMMARY")
    assert len(run.calls()) == (1 if failing == "login" else 2)


# --- the preview on the pull request -------------------------------------------------------------------

COMMENT = {"STACK": "azure", "PROJECT": "mlflow", "REPOSITORY": "owner/repo", "PR_NUMBER": "7",
           "HEAD_SHA": "abc123", "RUN_ID": "99",
           "RUN_URL": "https://github.com/owner/repo/actions/runs/99/attempts/1", "GH_TOKEN": "t"}
BOT = "github-actions[bot]"


def comment_step() -> Step:
    return step_named(load("preview.yml")["jobs"]["comment"], "Say on the pull request")


def pulumi_actions_heading(stack: str) -> str:
    """pulumi/actions v7.0.0, src/libs/pr.ts: "#### :tropical_drink: `${command}` on ${projectName}/${stackName}",
    found again by that heading and "<summary>Pulumi report</summary>"."""
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["name"]
    return f"#### :tropical_drink: `preview` on {project}/{stack}"


def comments(*bodies: tuple[int, str, str]) -> str:
    """What `gh api --paginate .../comments --jq '.[] | {id, user: .user.login, body}'` prints."""
    return "".join(json.dumps({"id": number, "user": user, "body": body}) + "\n" for number, user, body in bodies)


def jobs_of_the_run(**conclusions: str | None) -> str:
    """What `gh api --paginate .../jobs --jq '.jobs[] | {name, conclusion}'` prints."""
    return "".join(json.dumps({"name": f"preview {stack}", "conclusion": conclusion}) + "\n"
                   for stack, conclusion in conclusions.items())


def answers_for(conclusion: str | None, *existing: tuple[int, str, str], head: str = "abc123") -> dict[str, str]:
    return {"pulls/7": head + "\n", "runs/99/jobs": jobs_of_the_run(aws="success", azure=conclusion),
            "issues/7/comments?per_page=100": comments(*existing)}


def writes(run: Run) -> list[tuple[str, str, str]]:
    """(method, path, body) of each write call."""
    calls = [call for call in run.calls() if "--method" in call]
    return [(call[call.index("--method") + 1], call[call.index("--method") + 2], json.loads(body)["body"])
            for call, body in zip(calls, run.inputs(), strict=True)]


def keep_output(run: Run, text: str) -> None:
    (run.runner_temp / "preview").mkdir(exist_ok=True)
    (run.runner_temp / "preview" / "output.txt").write_text(text)


GREEN = pulumi_actions_heading("azure") + "\n\n<details>\n<summary>Pulumi report</summary>\n<pre>ok</pre>"


def test_a_passed_preview_edits_the_stacks_comments_with_its_output(run):
    keep_output(run, PREVIEW_OUTPUT)
    other_stack = pulumi_actions_heading("aws") + "\n\n<details>\n<summary>Pulumi report</summary>"
    result = run(comment_step(), answers_for("success", (1, BOT, GREEN), (2, BOT, other_stack), (3, "someone", "LGTM"),
                                             (4, BOT, GREEN), (5, "someone", GREEN)), **COMMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every page of comments; then this stack's comments of this workflow only (not a person's copy).
    listing = [call for call in run.calls() if "issues/7/comments?per_page=100" in " ".join(call)]
    assert listing and listing[0][:3] == ["gh", "api", "--paginate"]
    assert [(method, path) for method, path, _ in writes(run)] == [
        ("PATCH", "repos/owner/repo/issues/comments/1"), ("PATCH", "repos/owner/repo/issues/comments/4")]
    body = writes(run)[0][2]
    # pulumi/actions' heading and summary: the comments it posted before are found the same way.
    assert body.startswith(pulumi_actions_heading("azure") + "\n") and "<summary>Pulumi report</summary>" in body
    assert "passed" in body and "abc123" in body and COMMENT["RUN_URL"] in body
    assert "taskDefinition: output&lt;string&gt;" in body and "<string>" not in body  # the output is text


@pytest.mark.parametrize("conclusion", ["failure", "cancelled", "timed_out", "skipped", "neutral", None])
def test_a_preview_that_failed_or_did_not_finish_says_so(run, conclusion: str | None):
    """A job GitHub cancelled at its timeout (or a cancelled run) is not `success` either, nor is one
    that did not run (`skipped`: no preview ran, whatever branch protection makes of the check)."""
    keep_output(run, "error: preview failed\n")
    result = run(comment_step(), answers_for(conclusion, (1, BOT, GREEN)), **COMMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    [(method, path, body)] = writes(run)
    assert (method, path) == ("PATCH", "repos/owner/repo/issues/comments/1")
    assert "failed" in body and "no preview of this pull request is current" in body and COMMENT["RUN_URL"] in body
    assert "error: preview failed" in body and (conclusion or "unfinished") in body


def test_a_preview_with_no_output_and_no_job_says_it_failed(run):
    answers = {**answers_for(None), "runs/99/jobs": jobs_of_the_run(aws="success")}
    result = run(comment_step(), answers, **COMMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    [(method, path, body)] = writes(run)
    assert (method, path) == ("POST", "repos/owner/repo/issues/7/comments")
    assert "failed** (not found)" in body and "(no output" in body


def test_a_run_a_newer_commit_superseded_leaves_the_comment_alone(run):
    """Its preview was cancelled because a newer commit's run replaced it: that run comments."""
    result = run(comment_step(), answers_for("cancelled", (1, BOT, GREEN), head="def456"), **COMMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert writes(run) == [] and [call[:3] for call in run.calls()] == [["gh", "api", "repos/owner/repo/pulls/7"]]


def test_a_long_output_is_trimmed_to_what_github_takes(run):
    keep_output(run, "x" * 100_000 + "\nResources:\n    ~ 1 to update\n")
    result = run(comment_step(), answers_for("success"), **COMMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    [(_, _, body)] = writes(run)
    assert len(body) < 65_536 and body.rstrip().endswith("~ 1 to update\n</pre>\n</details>".rstrip())
    assert "characters are left out" in body


def test_a_failing_call_fails_the_step(run):
    result = run(comment_step(), {**answers_for("success"), "pulls/7": {"stdout": "", "exit": 1}}, **COMMENT)
    assert result.returncode != 0 and writes(run) == []


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


# --- the runbook's check that no apply runs ----------------------------------------------------------------

def guard_step() -> Step:
    return step_named(load("runbook.yml")["jobs"]["runbook"], "No apply of the stack runs")


GUARD = {"STACK": "aws", "REPOSITORY": "owner/repo", "GH_TOKEN": "t", "GITHUB_RUN_ID": "99"}


def deploy_jobs(*jobs: tuple[str, str]) -> str:
    return "".join(json.dumps({"name": name, "status": status, "html_url": f"https://x/{name}/{status}"}) + "\n"
                   for name, status in jobs)


def test_unlock_goes_on_when_no_apply_of_the_stack_runs(run):
    answers = {"status=in_progress": "11\n", "status=waiting": "12\n", "status=queued": "",
               "runs/11/jobs": deploy_jobs(("test", "completed"), ("apply azure", "in_progress")),
               "runs/12/jobs": deploy_jobs(("apply aws", "waiting"))}
    result = run(guard_step(), answers, **GUARD)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = [call[3] for call in run.calls() if "workflows/deploy.yml/runs" in " ".join(call)]
    assert listed == [f"repos/owner/repo/actions/workflows/deploy.yml/runs?status={status}&per_page=100"
                      for status in ("in_progress", "queued", "waiting")]
    assert all(call[:3] == ["gh", "api", "--paginate"] for call in run.calls())


@pytest.mark.parametrize("status", ["in_progress", "queued"])
def test_unlock_refuses_while_an_apply_of_the_stack_runs_or_is_about_to(run, status: str):
    answers = {"status=in_progress": "11\n", "status=queued": "", "status=waiting": "",
               "runs/11/jobs": deploy_jobs(("apply azure", "waiting"), ("apply aws", status))}
    result = run(guard_step(), answers, **GUARD)
    assert result.returncode == 1 and f"https://x/apply aws/{status}" in result.stdout


def test_unlock_refuses_when_it_cannot_tell(run):
    result = run(guard_step(), {"status=queued": {"stdout": "", "exit": 1}}, **GUARD)
    assert result.returncode != 0


# --- the plan refuses beside an apply of its stack (review 4, finding 4) -----------------------------------

def plan_guard_step() -> Step:
    return step_named(load("deploy.yml")["jobs"]["plan"], "No apply of the stack runs")


def test_the_plan_checks_as_the_runbook_does():
    assert plan_guard_step()["run"] == guard_step()["run"]


@pytest.mark.parametrize("status", ["in_progress", "queued"])
def test_the_plan_refuses_while_an_apply_of_its_stack_runs_or_is_about_to(run, status: str):
    """An approved `apply aws` of an older run (or a re-run) that runs or waits for a runner: its `up`
    rewrites the checkpoint a preview would read."""
    answers = {"status=in_progress": "11\n99\n", "status=queued": "", "status=waiting": "",
               "runs/11/jobs": deploy_jobs(("apply azure", "completed"), ("apply aws", status))}
    result = run(plan_guard_step(), answers, **GUARD)
    assert result.returncode == 1
    assert "apply aws runs (or is about to): a plan now would be of the state that apply is still writing" \
        in result.stdout and f"https://x/apply aws/{status}" in result.stdout


def test_the_plan_goes_on_beside_an_apply_awaiting_approval_or_of_the_other_stack(run):
    """An apply nobody approved yet does not hold plans back (it would hold them for as long as it
    waits; approved later, it refuses unless its commit is main's head). This run's own jobs are not
    asked for: its applies need this plan."""
    answers = {"status=in_progress": "11\n99\n", "status=waiting": "12\n", "status=queued": "",
               "runs/11/jobs": deploy_jobs(("apply azure", "in_progress")),
               "runs/12/jobs": deploy_jobs(("apply aws", "waiting")),
               "runs/99/jobs": deploy_jobs(("apply aws", "queued"))}
    result = run(plan_guard_step(), answers, **GUARD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No apply of aws runs" in result.stdout
    assert not [call for call in run.calls() if "runs/99/jobs" in " ".join(call)]


def test_the_plan_refuses_when_it_cannot_tell(run):
    result = run(plan_guard_step(), {"status=in_progress": "11\n", "runs/11/jobs": {"stdout": "", "exit": 1}},
                 **GUARD)
    assert result.returncode != 0


# --- the plan on main, its file, and the newest commit --------------------------------------------------------

def deploy_step(job: str, name: str) -> Step:
    return step_named(load("deploy.yml")["jobs"][job], name)


def plan_environment(run: Run, stack: str = "aws", renew: str = "") -> dict[str, str]:
    """`renew`: `${{ inputs.renew-registry-token }}`, empty on a push, `none`, `aws` or `azure` from "Run
    workflow"."""
    return {"STACK": stack, "BACKEND_URL": "s3://state?region=eu-west-1", "MESSAGE": "plan of abc123 (push, run 5)",
            "PLAN": str(run.runner_temp / "plan" / f"{stack}.json"), "PULUMI_CONFIG_PASSPHRASE": "secret",
            "GITHUB_SHA": "abc123", "RENEW_REGISTRY_TOKEN": renew}


def save_plan(run: Run, content: bytes = b'{"resourcePlans": {}}', stack: str = "aws") -> str:
    """What `pulumi preview --save-plan` leaves (the stand-in writes no file); its sha256."""
    (run.runner_temp / "plan").mkdir(exist_ok=True)
    (run.runner_temp / "plan" / f"{stack}.json").write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def test_the_plan_saves_the_plan_and_shows_it_escaped_with_its_sha256(run):
    sha256 = save_plan(run)
    result = run(deploy_step("plan", "pulumi preview --save-plan"),
                 {"login": "Logged in\n", "stack export": STATE, "preview": PREVIEW_OUTPUT}, **plan_environment(run))
    assert result.returncode == 0, result.stdout + result.stderr
    [login, export, preview, export_again] = run.calls()
    assert export == export_again == ["pulumi", "stack", "export", "--stack", "aws"]
    assert login == ["pulumi", "login", "--non-interactive", "s3://state?region=eu-west-1"]
    assert preview[preview.index("--save-plan") + 1] == str(run.runner_temp / "plan" / "aws.json")
    assert "--policy-pack" in preview and preview[preview.index("--stack") + 1] == "aws"
    assert run.read("GITHUB_OUTPUT") == f"plan-sha256-aws={sha256}\n"
    summary = run.read("GITHUB_STEP_SUMMARY")
    assert f"sha256 `{sha256}`" in summary and "`abc123`: passed" in summary
    assert "output&lt;string&gt;" in summary and "output<string>" not in summary
    assert "left out" not in summary


@pytest.mark.parametrize("answer,status", [({"stdout": "error: policy violation\n", "exit": 255}, 255),
                                           ("Resources:\n    1 unchanged\n", 1)])
def test_a_failed_plan_fails_and_records_no_sha256(run, answer, status: int):
    """A failed preview, or one that wrote no plan file."""
    result = run(deploy_step("plan", "pulumi preview --save-plan"), {"login": "Logged in\n", "preview": answer},
                 **plan_environment(run))
    assert result.returncode == status
    assert run.read("GITHUB_OUTPUT") == ""
    summary = run.read("GITHUB_STEP_SUMMARY")
    assert f"failed (exit status {status}): no plan, nothing is applied" in summary


@pytest.mark.parametrize("workflow,job,name", [("deploy.yml", "plan", "pulumi preview --save-plan"),
                                               ("preview.yml", "preview", "pulumi preview")])
def test_a_long_output_keeps_its_end_within_githubs_limit(run, workflow: str, job: str, name: str):
    """GitHub takes 1 MiB of a step's summary: the escaped output's end, where the policy results and
    the counts are, with a note. Escaping first: 300,000 `<` are 1.2 MB once escaped."""
    save_plan(run)
    output = "<" * 300_000 + "\nPolicies:\n    ✅ mlflow@v0.1.0\nResources:\n    ~ 1 to update\n"
    (run.tmp_path / "long.txt").write_text(output)
    step = step_named(load(workflow)["jobs"][job], name)
    result = run(step, {"login": "Logged in\n", "preview": {"file": str(run.tmp_path / "long.txt")}},
                 **plan_environment(run))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = run.read("GITHUB_STEP_SUMMARY")
    assert len(summary.encode()) < 1_000_000 and "bytes of the output are left out" in summary
    assert summary.endswith("~ 1 to update\n</pre>\n") and "&lt;&lt;" in summary and "<<" not in summary


def plan_outputs(**sha256: str) -> str:
    """What `${{ toJSON(needs.plan.outputs) }}` hands the apply's check."""
    return json.dumps({f"plan-sha256-{stack}": value for stack, value in sha256.items()}, indent=2)


def test_apply_goes_on_with_the_file_the_plan_recorded(run):
    sha256 = save_plan(run, stack="azure")
    result = run(deploy_step("apply", "The plan is the one planned"), STACK="azure",
                 PLAN=str(run.runner_temp / "plan" / "azure.json"), GITHUB_SHA="abc123",
                 PLAN_OUTPUTS=plan_outputs(aws="0" * 64, azure=sha256))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"plan file sha256 `{sha256}`" in run.read("GITHUB_STEP_SUMMARY")


@pytest.mark.parametrize("recorded", ["other", "missing", "other stack's"])
def test_apply_refuses_another_plan_file(run, recorded: str):
    sha256 = save_plan(run, b"another plan")
    outputs = {"other": plan_outputs(aws="f" * 64, azure=sha256), "missing": plan_outputs(azure=sha256),
               "other stack's": plan_outputs(azure=sha256)}[recorded]
    result = run(deploy_step("apply", "The plan is the one planned"), STACK="aws",
                 PLAN=str(run.runner_temp / "plan" / "aws.json"), GITHUB_SHA="abc123", PLAN_OUTPUTS=outputs)
    assert result.returncode == 1 and "nothing is applied" in result.stdout
    assert run.read("GITHUB_STEP_SUMMARY") == ""


NEWEST = {"GITHUB_REPOSITORY": "owner/repo", "GITHUB_SHA": "abc123", "GH_TOKEN": "t"}


def test_apply_goes_on_when_its_commit_is_mains_head(run):
    result = run(deploy_step("apply", "The run's commit is the head of main"), {"git/ref/heads/main": "abc123\n"},
                 **NEWEST)
    assert result.returncode == 0, result.stdout + result.stderr
    # The branch's ref: `commits/main` would take a tag named `main` too (review 3, finding 4).
    assert run.calls() == [["gh", "api", "repos/owner/repo/git/ref/heads/main", "--jq", ".object.sha"]]


def test_apply_refuses_when_main_moved_on(run):
    """An older run (or a re-run of one) approved after a newer commit landed on main."""
    result = run(deploy_step("apply", "The run's commit is the head of main"), {"git/ref/heads/main": "def456\n"},
                 **NEWEST)
    assert result.returncode == 1
    assert "This run deploys abc123, but main is at def456 now" in result.stdout
    assert "approve the newest run of deploy.yml on main" in result.stdout


@pytest.mark.parametrize("answer", [{"stdout": "", "exit": 1}, ""])
def test_apply_refuses_when_it_cannot_tell(run, answer):
    result = run(deploy_step("apply", "The run's commit is the head of main"), {"git/ref/heads/main": answer},
                 **NEWEST)
    assert result.returncode != 0


# --- the registry token renewed ("Run workflow" with renew-registry-token) -----------------------------------

TOKEN_URN = ("urn:pulumi:aws::mlflow::mlflow:index:MlflowTrackingServer$mlflow:index:AwsPlatform"
             "$command:local:Command::mlflow-platform-registry-token")


def state(*resources: tuple[str, str]) -> str:
    """What `pulumi stack export` prints: (type, URN) of each resource."""
    return json.dumps({"version": 3, "deployment": {"resources": [
        {"urn": urn, "type": kind, "custom": True} for kind, urn in resources]}})


STATE = state(("pulumi:pulumi:Stack", "urn:pulumi:aws::mlflow::pulumi:pulumi:Stack::mlflow-aws"),
              ("command:local:Command", TOKEN_URN),
              ("command:local:Command", TOKEN_URN.replace("registry-token", "rollout-started")),
              ("aws:ecr/repository:Repository",
               TOKEN_URN.replace("$command:local:Command", "$aws:ecr/repository:Repository")))


@pytest.mark.parametrize("renew", ["", "none", "azure", "true", "AWS"])
def test_the_plan_reads_no_state_and_replaces_nothing_unless_asked(run, renew: str):
    """On a push (empty), with `none`, or with the other stack named: the aws leg replaces nothing."""
    save_plan(run)
    result = run(deploy_step("plan", "pulumi preview --save-plan"), {"stack export": STATE, "preview": PREVIEW_OUTPUT},
                 **plan_environment(run, renew=renew))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [call[1] for call in run.calls()] == ["login", "stack", "preview", "stack"]
    assert "--replace" not in run.calls()[2] and "registry-token" not in run.read("GITHUB_OUTPUT")


def test_renew_registry_token_replaces_the_one_command_the_state_holds(run):
    sha256 = save_plan(run)
    result = run(deploy_step("plan", "pulumi preview --save-plan"),
                 {"login": "Logged in\n", "stack export": STATE, "preview": PREVIEW_OUTPUT},
                 **plan_environment(run, renew="aws"))
    assert result.returncode == 0, result.stdout + result.stderr
    login, export, preview, export_again = run.calls()
    assert export == export_again == ["pulumi", "stack", "export", "--stack", "aws"]
    assert preview[1] == "preview" and preview[-2:] == ["--replace", TOKEN_URN] and preview.count("--replace") == 1
    assert run.read("GITHUB_OUTPUT") == f"plan-sha256-aws={sha256}\nregistry-token-urn-aws={TOKEN_URN}\n"
    summary = run.read("GITHUB_STEP_SUMMARY")
    assert f"it replaces `{TOKEN_URN}`" in summary and f"renew-registry-token: replacing {TOKEN_URN}" in summary


@pytest.mark.parametrize("resources,count", [
    ([("pulumi:pulumi:Stack", "urn:pulumi:aws::mlflow::pulumi:pulumi:Stack::mlflow-aws")], 0),
    ([("command:local:Command", TOKEN_URN),
      ("command:local:Command", TOKEN_URN.replace("mlflow-platform", "other"))], 2),
])
def test_renew_registry_token_refuses_none_or_several(run, resources, count: int):
    save_plan(run)
    result = run(deploy_step("plan", "pulumi preview --save-plan"),
                 {"login": "Logged in\n", "stack export": state(*resources), "preview": PREVIEW_OUTPUT},
                 **plan_environment(run, renew="aws"))
    assert result.returncode == 1
    assert [call[1] for call in run.calls()] == ["login", "stack"], "no preview, no plan"
    assert f"holds {count} registry token commands, not exactly one: nothing is planned" in result.stdout
    assert run.read("GITHUB_OUTPUT") == ""
    summary = run.read("GITHUB_STEP_SUMMARY")
    assert "failed (exit status 1): no plan, nothing is applied" in summary and "not exactly one" in summary


def test_renew_registry_token_fails_when_the_state_cannot_be_read(run):
    save_plan(run)
    result = run(deploy_step("plan", "pulumi preview --save-plan"),
                 {"login": "Logged in\n", "stack export": {"stdout": "", "exit": 255}, "preview": PREVIEW_OUTPUT},
                 **plan_environment(run, renew="aws"))
    assert result.returncode == 255 and [call[1] for call in run.calls()] == ["login", "stack"]
    assert "could not be read" in result.stdout and run.read("GITHUB_OUTPUT") == ""
    assert "failed (exit status 255): no plan" in run.read("GITHUB_STEP_SUMMARY")


@pytest.mark.parametrize("renew", ["", "aws"])
@pytest.mark.parametrize("after", ["changed", "unreadable"])
def test_a_state_written_while_it_was_planned_gives_no_plan(run, renew: str, after: str):
    """Workflow review 5, item 3: the step before sees only deploy.yml's applies; an `up` or `refresh` from a
    workstation or the runbook that writes the state during the preview made a plan of a state that is gone.
    The state is read before and after the preview; a difference (or no second read) plans nothing."""
    save_plan(run)
    second = state(("pulumi:pulumi:Stack", "urn:pulumi:aws::mlflow::pulumi:pulumi:Stack::mlflow-aws"),
                   ("command:local:Command", TOKEN_URN), ("aws:s3/bucketV2:BucketV2", "urn:pulumi:aws::b"))
    result = run(deploy_step("plan", "pulumi preview --save-plan"),
                 {"login": "Logged in\n", "preview": PREVIEW_OUTPUT,
                  "stack export": [STATE, second if after == "changed" else {"stdout": "", "exit": 255}]},
                 **plan_environment(run, renew=renew))
    assert result.returncode == 1, result.stdout + result.stderr
    assert [call[1] for call in run.calls()] == ["login", "stack", "preview", "stack"]
    assert "changed while it was planned" in result.stdout and run.read("GITHUB_OUTPUT") == ""
    assert "failed (exit status 1): no plan, nothing is applied" in run.read("GITHUB_STEP_SUMMARY")
    assert not (run.runner_temp / "state-before-plan.json").exists()


def test_apply_replaces_what_the_plan_replaced(run):
    sha256 = save_plan(run)
    outputs = json.dumps({"plan-sha256-aws": sha256, "registry-token-urn-aws": TOKEN_URN})
    result = run(deploy_step("apply", "The plan is the one planned"), STACK="aws",
                 PLAN=str(run.runner_temp / "plan" / "aws.json"), GITHUB_SHA="abc123", PLAN_OUTPUTS=outputs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert run.read("GITHUB_OUTPUT") == f"replace={TOKEN_URN}\n"
    assert f"replacing `{TOKEN_URN}` (renew-registry-token)" in run.read("GITHUB_STEP_SUMMARY")


def test_apply_replaces_nothing_when_the_plan_replaced_nothing(run):
    sha256 = save_plan(run)
    result = run(deploy_step("apply", "The plan is the one planned"), STACK="aws",
                 PLAN=str(run.runner_temp / "plan" / "aws.json"), GITHUB_SHA="abc123",
                 PLAN_OUTPUTS=plan_outputs(aws=sha256, azure="0" * 64))
    assert result.returncode == 0, result.stdout + result.stderr
    assert run.read("GITHUB_OUTPUT") == "replace=\n" and "replacing" not in run.read("GITHUB_STEP_SUMMARY")


@pytest.mark.parametrize("urn", [TOKEN_URN.replace("urn:pulumi:aws", "urn:pulumi:azure"),
                                 TOKEN_URN.replace("registry-token", "rollout-started"),
                                 TOKEN_URN.replace("$command:local:Command", "$aws:rds/instance:Instance"),
                                 TOKEN_URN.replace("mlflow-platform", "a,b-mlflow-platform"),
                                 TOKEN_URN.replace("mlflow-platform", "a b-mlflow-platform")])
def test_apply_refuses_to_replace_anything_else(run, urn: str):
    sha256 = save_plan(run)
    outputs = json.dumps({"plan-sha256-aws": sha256, "registry-token-urn-aws": urn})
    result = run(deploy_step("apply", "The plan is the one planned"), STACK="aws",
                 PLAN=str(run.runner_temp / "plan" / "aws.json"), GITHUB_SHA="abc123", PLAN_OUTPUTS=outputs)
    assert result.returncode == 1 and "nothing is applied" in result.stdout
    assert run.read("GITHUB_OUTPUT") == "" and run.read("GITHUB_STEP_SUMMARY") == ""


# --- the code owners check on main ------------------------------------------------------------------------

def codeowners_step() -> Step:
    return step_named(load("deploy.yml")["jobs"]["codeowners"], "CODEOWNERS names owners GitHub accepts")


CODEOWNERS_RUN = {"GITHUB_REPOSITORY": "owner/repo", "GITHUB_SHA": "abc123", "GH_TOKEN": "t"}


def checkout_with(tmp_path: Path, codeowners: str) -> Path:
    (tmp_path / "checkout" / ".github").mkdir(parents=True)
    (tmp_path / "checkout" / ".github" / "CODEOWNERS").write_text(codeowners)
    return tmp_path / "checkout"


def test_the_placeholder_fails_on_main(run):
    """The repository's own file names the placeholder: deploy.yml plans nothing until it is replaced."""
    result = run(codeowners_step(), {"codeowners/errors": ""}, **CODEOWNERS_RUN)
    assert result.returncode == 1 and "still names the placeholder @OWNER/" in result.stdout
    assert run.calls() == []


def test_owners_github_accepts_pass(run, tmp_path):
    source = (REPO_ROOT / ".github/CODEOWNERS").read_text().replace("@OWNER/platform-team", "@acme/platform")
    result = run(codeowners_step(), {"codeowners/errors": ""}, cwd=checkout_with(tmp_path, source), **CODEOWNERS_RUN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert run.calls() == [["gh", "api", "repos/owner/repo/codeowners/errors?ref=abc123", "--jq",
                            '.errors[] | "line \\(.line): \\(.kind): \\(.message)"']]


def test_an_owner_github_cannot_use_fails(run, tmp_path):
    source = (REPO_ROOT / ".github/CODEOWNERS").read_text().replace("@OWNER/platform-team", "@acme/no-such-team")
    errors = "line 18: Unknown owner: make sure @acme/no-such-team exists and has write access to the repository\n"
    result = run(codeowners_step(), {"codeowners/errors": errors}, cwd=checkout_with(tmp_path, source),
                 **CODEOWNERS_RUN)
    assert result.returncode == 1 and "GitHub cannot use every owner" in result.stdout
    assert "line 18: Unknown owner" in result.stdout


def test_codeowners_fails_when_github_cannot_tell(run, tmp_path):
    source = "/.github/ @acme/platform\n"
    result = run(codeowners_step(), {"codeowners/errors": {"stdout": "", "exit": 1}},
                 cwd=checkout_with(tmp_path, source), **CODEOWNERS_RUN)
    assert result.returncode != 0


# --- the commit holds nothing .gitignore ignores (review 4, finding 1) -----------------------------------------

def ignored_check_step() -> Step:
    return step_named(load("test.yml")["jobs"]["test"], "The commit holds nothing .gitignore ignores")


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd, check=True,
                   capture_output=True, env={"PATH": os.environ["PATH"], "HOME": str(cwd.parent)})


def repository(tmp_path: Path) -> Path:
    """A checkout with the repository's .gitignore and an ordinary file or two, committed."""
    checkout = tmp_path / "checkout"
    (checkout / "components").mkdir(parents=True)
    (checkout / ".gitignore").write_text((REPO_ROOT / ".gitignore").read_text())
    (checkout / "components" / "config.py").write_text("")
    (checkout / "README.md").write_text("")
    (checkout / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    git(checkout, "init", "-q")
    git(checkout, "add", ".")
    git(checkout, "commit", "-q", "-m", "base")
    return checkout


def test_a_clean_commit_passes_the_check(run, tmp_path):
    result = run(ignored_check_step(), cwd=repository(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("added", ["venv/bin/python", "venv/lib/python3.11/site-packages/x.pth",
                                   "policy/venv/bin/python", "components/__pycache__/config.cpython-311.pyc",
                                   "rehearsal/azurite/node_modules/.bin/azurite-blob", "pydantic.py",
                                   "venv (a link)", "policy/venv (a link)"])
def test_a_commit_holding_what_gitignore_leaves_out_fails_the_check(run, tmp_path, added: str):
    """Force-added (`git add -f`), or (pydantic.py) a root module with a .gitignore line of the pull
    request's own; a link named venv, which `venv/` does not match, is refused by its path."""
    checkout = repository(tmp_path)
    path = added.removesuffix(" (a link)")
    (checkout / path).parent.mkdir(parents=True, exist_ok=True)
    if added.endswith("(a link)"):
        (tmp_path / "elsewhere" / "bin").mkdir(parents=True)
        (checkout / path).symlink_to(tmp_path / "elsewhere")
    else:
        (checkout / path).write_text("import os\n")
    if path == "pydantic.py":
        with (checkout / ".gitignore").open("a") as gitignore:
            gitignore.write("pydantic.py\n")
        git(checkout, "add", ".gitignore")
    git(checkout, "add", "-f", path)
    result = run(ignored_check_step(), cwd=checkout)
    assert result.returncode == 1
    assert "::error::The commit holds files .gitignore ignores" in result.stdout
    assert path in result.stdout.splitlines()


def test_a_nested_gitignore_cannot_unhide_what_the_check_refuses(run, tmp_path):
    """Workflow review 5, item 2: `!*.pyc` in a nested .gitignore made a committed .pyc pass the commit's own
    rules; the fixed patterns still see it, and the nested .gitignore itself is listed."""
    checkout = repository(tmp_path)
    (checkout / "components" / ".gitignore").write_text("!*.pyc\n!__pycache__/\n")
    (checkout / "components" / "__pycache__").mkdir()
    (checkout / "components" / "__pycache__" / "config.cpython-311.pyc").write_bytes(b"\0")
    git(checkout, "add", "components")
    result = run(ignored_check_step(), cwd=checkout)
    assert result.returncode == 1, result.stdout
    listed = result.stdout.splitlines()
    assert "components/__pycache__/config.cpython-311.pyc" in listed and "components/.gitignore" in listed


@pytest.mark.parametrize("name", ["policy", "components/platforms"])
def test_a_tracked_link_is_refused(run, tmp_path, name: str):
    """A link (to a directory the commit does not hold, or outside the checkout) would run what review never saw."""
    checkout = repository(tmp_path)
    (checkout / name).parent.mkdir(parents=True, exist_ok=True)
    (checkout / name).symlink_to("/tmp")
    git(checkout, "add", name)
    result = run(ignored_check_step(), cwd=checkout)
    assert result.returncode == 1 and name in result.stdout.splitlines(), result.stdout


@pytest.mark.parametrize("edit", [("virtualenv: venv", "virtualenv: tools/env"), ("toolchain: pip", "toolchain: uv"),
                                  ("runtime:\n", "runtime:\n  name: nodejs\nignored:\n")])
def test_a_pulumi_runtime_other_than_pip_in_venv_is_refused(run, tmp_path, edit: tuple[str, str]):
    checkout = repository(tmp_path)
    pulumi_yaml = checkout / "Pulumi.yaml"
    text = pulumi_yaml.read_text()
    assert edit[0] in text
    pulumi_yaml.write_text(text.replace(edit[0], edit[1], 1))
    git(checkout, "commit", "-qam", "runtime")
    result = run(ignored_check_step(), cwd=checkout)
    assert result.returncode == 1 and "Pulumi.yaml (runtime)" in result.stdout.splitlines(), result.stdout


def test_a_second_runtime_key_is_refused(run, tmp_path):
    checkout = repository(tmp_path)
    with (checkout / "Pulumi.yaml").open("a") as pulumi_yaml:
        pulumi_yaml.write("runtime:\n  name: python\n  options:\n    virtualenv: elsewhere\n")
    git(checkout, "commit", "-qam", "runtime")
    result = run(ignored_check_step(), cwd=checkout)
    assert result.returncode == 1 and "Pulumi.yaml (runtime)" in result.stdout.splitlines(), result.stdout


def test_the_check_fails_outside_a_repository(run, tmp_path):
    (tmp_path / "copy").mkdir()
    result = run(ignored_check_step(), cwd=tmp_path / "copy")
    assert result.returncode != 0


# --- scripts/test on CI makes ./venv afresh (review 4, finding 1) ----------------------------------------------

# python3: `-m venv [--clear] <dir>` as venv does it (--clear empties the directory, a link's target
# too; a link left in place is refused), the new venv's python a FRESH_PYTHON; nothing else.
STAND_IN_PYTHON3 = f"""#!{sys.executable}
import json, os, shutil, sys
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps(["python3", *sys.argv[1:]]) + "\\n")
args = sys.argv[1:]
if args[:2] != ["-m", "venv"]:
    sys.exit("python3: not a stand-in call")
target = args[-1]
if "--clear" in args and os.path.isdir(target):
    for entry in os.listdir(target):
        path = os.path.join(target, entry)
        os.remove(path) if os.path.islink(path) or os.path.isfile(path) else shutil.rmtree(path)
if os.path.islink(target):
    sys.exit(f"Error: Unable to create directory {{target!r}}")
os.makedirs(os.path.join(target, "bin"), exist_ok=True)
shutil.copy(os.environ["FRESH_PYTHON"], os.path.join(target, "bin", "python"))
"""
# The python of a venv python3 made: uv's version, site-packages' path, success for the rest.
FRESH_PYTHON = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps(["fresh python", *sys.argv[1:]]) + "\\n")
if sys.argv[1:4] == ["-m", "uv", "--version"]:
    print("uv 0.13.9 (stand-in)")
elif sys.argv[1:2] == ["-c"]:
    print(os.environ["HOME"])
"""
# A pull request's own venv/bin/python: green, whatever it is asked.
COMMITTED_PYTHON = """#!/bin/sh
echo '["committed python"]' >> "$STAND_IN_LOG"
"""


class ScriptsTest:
    """A copy of scripts/test in a tree of its own, with python3, dpkg-query (every package installed) and
    an installed Azurite standing in."""

    def __init__(self, tmp_path: Path):
        self.root, self.bin, self.log = tmp_path / "checkout", tmp_path / "bin", tmp_path / "log"
        for directory in (self.root / "scripts", self.root / "rehearsal/azurite/node_modules/.bin", self.bin):
            directory.mkdir(parents=True)
        (self.root / "scripts" / "test").write_text((REPO_ROOT / "scripts" / "test").read_text())
        for path, text in {self.root / "scripts" / "test": None, self.bin / "python3": STAND_IN_PYTHON3,
                           self.bin / "dpkg-query": "#!/bin/sh\necho 'install ok installed'\n",
                           tmp_path / "fresh-python": FRESH_PYTHON,
                           self.root / "rehearsal/azurite/node_modules/.bin/azurite-blob": "#!/bin/sh\n"}.items():
            if text is not None:
                path.write_text(text)
            path.chmod(0o755)
        self.log.write_text("")
        self.env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(tmp_path), "STAND_IN_LOG": str(self.log),
                    "FRESH_PYTHON": str(tmp_path / "fresh-python")}

    def commit_a_venv(self) -> None:
        (self.root / "venv" / "bin").mkdir(parents=True)
        (self.root / "venv" / "bin" / "python").write_text(COMMITTED_PYTHON)
        (self.root / "venv" / "bin" / "python").chmod(0o755)

    def __call__(self, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.root / "scripts" / "test"), "-q"], cwd=self.root,
                              env={**self.env, **env}, capture_output=True, text=True, timeout=60)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def test_on_ci_scripts_test_makes_the_venv_afresh(tmp_path):
    """A pull request's own venv/bin/python (GitHub Actions sets CI=true) is never run: ./venv is made
    again with --clear, and the suite runs on the new one."""
    tree = ScriptsTest(tmp_path)
    tree.commit_a_venv()
    result = tree(CI="true")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = tree.calls()
    assert ["committed python"] not in calls
    assert calls[0] == ["python3", "-m", "venv", "--clear", "venv"]
    assert calls[-1][:3] == ["fresh python", "-m", "pytest"] and calls[-1][-1] == "-q"


def test_on_ci_a_link_named_venv_is_replaced_and_its_target_left_alone(tmp_path):
    """`venv --clear` would empty a link's target (a shared virtualenv, or anything the link names):
    the link goes first."""
    tree = ScriptsTest(tmp_path)
    (tmp_path / "shared" / "bin").mkdir(parents=True)
    (tmp_path / "shared" / "bin" / "python").write_text(COMMITTED_PYTHON)
    (tmp_path / "shared" / "bin" / "python").chmod(0o755)
    (tree.root / "venv").symlink_to(tmp_path / "shared")
    result = tree(CI="true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "shared" / "bin" / "python").read_text() == COMMITTED_PYTHON
    assert not (tree.root / "venv").is_symlink() and ["committed python"] not in tree.calls()


def test_off_ci_scripts_test_keeps_the_venv_it_finds(tmp_path):
    """A workstation's ./venv is kept (and so, there, whatever it holds is run)."""
    tree = ScriptsTest(tmp_path)
    tree.commit_a_venv()
    result = tree()
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [call for call in tree.calls() if call[0] == "python3"] and ["committed python"] in tree.calls()
