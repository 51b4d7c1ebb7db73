"""What this project needs of its workflows' structure (issue #25): plan, then apply that plan behind
the stack's environment; tests before any deployment; read-only identities wherever nothing is
applied; no environment on pull requests; a failed preview said on the pull request; nightly drift
detection; the commit in every update's message; no concurrency setting that cancels an apply; the
Azure state reached through a bounded user-delegation SAS.

Each check returns the problems it finds. The real workflows have none; for each check, a broken copy
(one line changed, as a careless edit would) has at least one, so a clean result shows the check can
fail.
"""

from __future__ import annotations

import re
from typing import Callable

import pytest

from tests.workflows.workflows import (
    Workflow, applies, broken, jobs, load_all, needs, only_previews, pulumi_commands, pulumi_steps, step_named,
    text, triggers, uses)

Check = Callable[[dict[str, Workflow]], list[str]]
PULL_REQUEST_TRIGGERS = {"pull_request", "pull_request_target"}
TEST_COMMAND = "./scripts/test"


# --- the checks -----------------------------------------------------------------------------------

def plan_then_apply(workflows: dict[str, Workflow]) -> list[str]:
    """deploy.yml: `plan` previews with the policy pack and saves the plan, uploads it; `apply` needs
    `plan`, downloads that artifact to where the plan was written and runs `up` with the same file, for
    the same stack, behind the stack's environment."""
    problems = []
    deploy = workflows["deploy.yml"]["jobs"]
    plan, apply = deploy.get("plan"), deploy.get("apply")
    if plan is None or apply is None:
        return ["deploy.yml has no `plan` or no `apply` job"]
    if "plan" not in needs(apply):
        problems.append("apply does not need plan")
    if "environment" in plan:
        problems.append("plan has an environment")
    if apply.get("environment") != "${{ matrix.stack }}":
        problems.append("apply is not behind the stack's environment")
    if plan["strategy"]["matrix"]["stack"] != apply["strategy"]["matrix"]["stack"]:
        problems.append("plan and apply cover different stacks")
    [preview] = pulumi_steps(plan) or [{}]
    [up] = pulumi_steps(apply) or [{}]
    preview, up = preview.get("with", {}), up.get("with", {})
    if preview.get("command") != "preview" or up.get("command") != "up":
        problems.append(f"plan runs {preview.get('command')}, apply runs {up.get('command')}")
    plan_file = preview.get("plan")
    if not plan_file or up.get("plan") != plan_file:
        problems.append(f"up's plan {up.get('plan')!r} is not the preview's saved plan {plan_file!r}")
    if not (preview.get("stack-name") == up.get("stack-name") == "${{ matrix.stack }}"):
        problems.append("plan and apply name different stacks")
    if preview.get("policyPacks") != "policy" or up.get("policyPacks") != "policy":
        problems.append("the policy pack is not run by both")
    uploads = [step["with"] for step in plan["steps"] if uses(step, "actions/upload-artifact")]
    downloads = [step["with"] for step in apply["steps"] if uses(step, "actions/download-artifact")]
    if len(uploads) != 1 or len(downloads) != 1:
        return [*problems, f"{len(uploads)} uploads in plan, {len(downloads)} downloads in apply"]
    [upload], [download] = uploads, downloads
    if upload.get("name") != download.get("name") or "${{ matrix.stack }}" not in str(upload.get("name")):
        problems.append(f"artifact {upload.get('name')!r} uploaded, {download.get('name')!r} downloaded")
    if upload.get("path") != plan_file:
        problems.append(f"the artifact holds {upload.get('path')!r}, not the plan {plan_file!r}")
    if plan_file and plan_file.rsplit("/", 1)[0] != download.get("path"):
        problems.append(f"the plan is downloaded to {download.get('path')!r}, not where up reads {plan_file!r}")
    if upload.get("if-no-files-found") != "error" or not 1 <= int(upload.get("retention-days", 90)) <= 7:
        problems.append("the plan artifact may be missing or kept long")
    for step in apply["steps"]:
        if uses(step, "actions/checkout") and "ref" in step.get("with", {}):
            problems.append("apply checks out another commit than the one planned")
    for job_id, job in deploy.items():
        if applies(job) and job_id != "apply":
            problems.append(f"{job_id} applies without the plan")
    return problems


def deploys_need_the_tests(workflows: dict[str, Workflow]) -> list[str]:
    """Every job that applies needs (directly or through other jobs) a job that runs ./scripts/test,
    and nothing on that path runs when a job it needs failed."""
    problems = []
    for name, workflow in workflows.items():
        for job_id, job in workflow["jobs"].items():
            if not applies(job):
                continue
            seen, todo = set(), [job_id]
            while todo:
                current = todo.pop()
                if current in seen:
                    continue
                seen.add(current)
                condition = str(workflow["jobs"][current].get("if", ""))
                if re.search(r"always\(\)|failure\(\)|cancelled\(\)", condition):
                    problems.append(f"{name}: {current} runs when a job it needs did not succeed: {condition}")
                todo.extend(needs(workflow["jobs"][current]))
            testers = [other for other in seen - {job_id}
                       if any(step.get("run", "").strip() == TEST_COMMAND for step in workflow["jobs"][other]["steps"])]
            if not testers:
                problems.append(f"{name}: {job_id} applies without needing a job that runs {TEST_COMMAND}")
    return problems


def drift_detection(workflows: dict[str, Workflow]) -> list[str]:
    """drift.yml: on a schedule, each stack previewed with a refresh, expecting no changes; a failure
    opens or updates an issue."""
    workflow = workflows.get("drift.yml")
    if workflow is None:
        return ["no drift.yml"]
    problems = []
    if "schedule" not in triggers(workflow):
        problems.append("drift.yml runs on no schedule")
    [(job_id, job)] = workflow["jobs"].items()
    [step] = pulumi_steps(job) or [{}]
    inputs = step.get("with", {})
    if inputs.get("command") != "preview" or inputs.get("refresh") is not True \
            or inputs.get("expect-no-changes") is not True:
        problems.append(f"{job_id} does not preview with refresh and expect-no-changes: {inputs}")
    if job["strategy"]["matrix"]["stack"] != ["aws", "azure"]:
        problems.append("not every cloud stack is checked")
    reports = [step for step in job["steps"] if step.get("if") == "failure()" and "gh issue" in step.get("run", "")]
    if not reports:
        problems.append("no `if: failure()` step opens an issue")
    if job["permissions"].get("issues") != "write":
        problems.append("the job may not write issues")
    return problems


def no_environment_on_pull_requests(workflows: dict[str, Workflow]) -> list[str]:
    """A job behind an environment (whose OIDC subject the writing identities trust) never runs for a
    pull request: only on main, after review."""
    return [f"{name}: {job_id} has environment {job['environment']!r} and runs on pull requests"
            for name, job_id, job in jobs(workflows)
            if "environment" in job and triggers(workflows[name]) & PULL_REQUEST_TRIGGERS]


def read_only_identities(workflows: dict[str, Workflow]) -> list[str]:
    """Jobs that only preview have no environment and no deploy identity: the preview identities (the
    drift check's AWS refresh role, read-only too); jobs that apply or repair use the deploy ones."""
    problems = []
    for name, job_id, job in jobs(workflows):
        logins = [step for step in job.get("steps", [])
                  if uses(step, "aws-actions/configure-aws-credentials") or uses(step, "azure/login")]
        if not logins:
            continue
        aws = {step["with"]["role-to-assume"] for step in logins if "role-to-assume" in step["with"]}
        azure = {step["with"]["client-id"] for step in logins if "client-id" in step["with"]}
        arm = {step.get("env", {}).get("ARM_CLIENT_ID") for step in pulumi_steps(job) if "env" in step} - {None}
        if only_previews(job):
            allowed_aws = {"${{ vars.AWS_PREVIEW_ROLE_ARN }}"}
            if name == "drift.yml":
                allowed_aws.add("${{ vars.AWS_DRIFT_ROLE_ARN }}")
            if "environment" in job:
                problems.append(f"{name}: {job_id} only previews but has an environment")
            if "DEPLOY" in text(job):
                problems.append(f"{name}: {job_id} only previews but names a deploy identity")
            if not aws <= allowed_aws or azure | arm != {"${{ vars.AZURE_PREVIEW_CLIENT_ID }}"}:
                problems.append(f"{name}: {job_id} previews as {aws | azure | arm}")
        else:
            if "environment" not in job:
                problems.append(f"{name}: {job_id} writes without an environment")
            if aws != {"${{ vars.AWS_DEPLOY_ROLE_ARN }}"} or azure | arm != {"${{ vars.AZURE_DEPLOY_CLIENT_ID }}"}:
                problems.append(f"{name}: {job_id} writes as {aws | azure | arm}")
        if triggers(workflows[name]) & PULL_REQUEST_TRIGGERS and (
                aws != {"${{ vars.AWS_PREVIEW_ROLE_ARN }}"} or azure != {"${{ vars.AZURE_PREVIEW_CLIENT_ID }}"}):
            problems.append(f"{name}: {job_id} runs for pull requests as {aws | azure}")
    return problems


def failed_preview_said_on_the_pull_request(workflows: dict[str, Workflow]) -> list[str]:
    """preview.yml: after the preview, an `if: failure()` step edits pulumi/actions' comment (found by
    its heading and summary) or posts one, with the run's link."""
    [job] = workflows["preview.yml"]["jobs"].values()
    steps = job["steps"]
    preview_at = next((i for i, step in enumerate(steps) if step in pulumi_steps(job)), len(steps))
    problems = []
    candidates = [step for step in steps[preview_at + 1:] if step.get("if") == "failure()"]
    if not candidates:
        return ["no `if: failure()` step after the preview"]
    script = candidates[0].get("run", "")
    for needed in ("--method PATCH", "--method POST", "/comments", ":tropical_drink:",
                   "<summary>Pulumi report</summary>", "$RUN_URL"):
        if needed not in script:
            problems.append(f"the failure step's script lacks {needed!r}")
    if "github.run_id" not in candidates[0].get("env", {}).get("RUN_URL", ""):
        problems.append("the failure step does not link the run")
    if job["permissions"].get("pull-requests") != "write":
        problems.append("the job may not comment")
    return problems


def messages_name_the_commit(workflows: dict[str, Workflow]) -> list[str]:
    """Every Pulumi operation's message names the commit (the update history of a self-managed backend
    keeps the message)."""
    return [f"{name}: {job_id}: message {step['with'].get('message')!r}"
            for name, job_id, job in jobs(workflows) for step in pulumi_steps(job)
            if "command" in step.get("with", {}) and "${{ github.sha }}" not in str(step["with"].get("message"))]


def concurrency_never_cancels_an_apply(workflows: dict[str, Workflow]) -> list[str]:
    """A job that applies (or repairs a stack) is in a per-stack group that never cancels, and so is
    every other job of that group; the workflow around it has no cancelling group."""
    problems = []
    writers = [(name, job_id, job) for name, job_id, job in jobs(workflows)
               if applies(job) or pulumi_commands(job) & {"refresh", "cancel"}]
    groups = set()
    for name, job_id, job in writers:
        concurrency = job.get("concurrency")
        if not isinstance(concurrency, dict) or concurrency.get("cancel-in-progress") is not False:
            problems.append(f"{name}: {job_id} may be cancelled by a later run: {concurrency}")
            continue
        group = concurrency["group"]
        if re.search(r"github\.(sha|run_id|run_number|ref)\b", group) or "stack" not in group:
            problems.append(f"{name}: {job_id}'s group {group!r} is not one per stack")
        groups.add(re.sub(r"\$\{\{ (matrix|inputs)\.stack \}\}", "<stack>", group))
        workflow_concurrency = workflows[name].get("concurrency")
        if workflow_concurrency is not None and (not isinstance(workflow_concurrency, dict)
                                                 or workflow_concurrency.get("cancel-in-progress") is not False):
            problems.append(f"{name}: the workflow's concurrency may cancel {job_id}")
    for name, job_id, job in jobs(workflows):
        concurrency = job.get("concurrency")
        if isinstance(concurrency, dict) and concurrency.get("cancel-in-progress") is not False and re.sub(
                r"\$\{\{ (matrix|inputs)\.stack \}\}", "<stack>", str(concurrency.get("group"))) in groups:
            problems.append(f"{name}: {job_id} shares an apply's group and cancels")
    return problems


def azure_state_through_a_sas(workflows: dict[str, Workflow]) -> list[str]:
    """Every job that signs in to Azure and runs Pulumi mints a user-delegation SAS for the state
    container after the login and before Pulumi, masks it and hands it over as AZURE_STORAGE_SAS_TOKEN;
    read and list only for the read-only identities, valid as long as the job may run and not much
    longer. One script everywhere."""
    problems, scripts = [], set()
    for name, job_id, job in jobs(workflows):
        steps = job.get("steps", [])
        logins = [i for i, step in enumerate(steps) if uses(step, "azure/login")]
        if not logins or not pulumi_steps(job):
            continue
        sas = [i for i, step in enumerate(steps) if step.get("name", "").startswith("State container SAS")]
        first_pulumi = min(i for i, step in enumerate(steps) if step in pulumi_steps(job))
        if len(sas) != 1 or not logins[0] < sas[0] < first_pulumi:
            problems.append(f"{name}: {job_id}: no SAS between the Azure login and Pulumi")
            continue
        step = steps[sas[0]]
        script, env = step.get("run", ""), step.get("env", {})
        scripts.add(script)
        for needed in ("--as-user", "--auth-mode login", "::add-mask::$sas", "--expiry",
                       'AZURE_STORAGE_SAS_TOKEN=$sas" >> "$GITHUB_ENV"'):
            if needed not in script:
                problems.append(f"{name}: {job_id}: the SAS script lacks {needed!r}")
        writes = "DEPLOY" in text(job)
        if env.get("SAS_PERMISSIONS") != ("racwdl" if writes else "rl"):
            problems.append(f"{name}: {job_id}: SAS permissions {env.get('SAS_PERMISSIONS')!r}")
        hours = int(env.get("SAS_HOURS", "0"))
        if not job["timeout-minutes"] <= hours * 60 <= job["timeout-minutes"] + 60:
            problems.append(f"{name}: {job_id}: a SAS of {hours} h for a job of {job['timeout-minutes']} min")
        if env.get("BACKEND_URL") != "${{ vars.PULUMI_BACKEND_URL_AZURE }}":
            problems.append(f"{name}: {job_id}: the SAS is for {env.get('BACKEND_URL')!r}")
    if len(scripts) > 1:
        problems.append(f"{len(scripts)} different SAS scripts")
    return problems


def caches(workflows: dict[str, Workflow]) -> list[str]:
    """Jobs that run Pulumi on the program cache pip's downloads and the provider plugins, keyed on the
    pinned requirements."""
    problems = []
    for name, job_id, job in jobs(workflows):
        if not pulumi_steps(job) or not any("python -m venv venv" in step.get("run", "") for step in job["steps"]):
            continue
        python = [step.get("with", {}) for step in job["steps"] if uses(step, "actions/setup-python")]
        if not python or python[0].get("cache") != "pip" or "requirements.txt" not in python[0].get(
                "cache-dependency-path", ""):
            problems.append(f"{name}: {job_id}: no pip cache")
        plugins = [step.get("with", {}) for step in job["steps"] if uses(step, "actions/cache")]
        if not plugins or plugins[0].get("path") != "~/.pulumi/plugins" \
                or "hashFiles('requirements.txt'" not in plugins[0].get("key", ""):
            problems.append(f"{name}: {job_id}: no plugin cache keyed on requirements.txt")
    return problems


def runbook(workflows: dict[str, Workflow]) -> list[str]:
    """runbook.yml: by hand only, behind the stack's environment; unlock is `pulumi cancel`, refresh is
    `pulumi refresh`."""
    workflow = workflows.get("runbook.yml")
    if workflow is None:
        return ["no runbook.yml"]
    problems = []
    if triggers(workflow) != {"workflow_dispatch"}:
        problems.append(f"the runbook runs on {triggers(workflow)}")
    [job] = workflow["jobs"].values()
    if job.get("environment") != "${{ inputs.stack }}":
        problems.append("the runbook is not behind the stack's environment")
    if not {"cancel", "refresh"} <= pulumi_commands(job):
        problems.append(f"the runbook runs {pulumi_commands(job)}")
    cancel = step_named(job, "pulumi cancel")
    if "inputs.operation == 'unlock'" not in cancel.get("if", "") or "--yes" not in cancel["run"]:
        problems.append("unlock does not run `pulumi cancel --yes`")
    return problems


CHECKS: dict[str, Check] = {
    "plan_then_apply": plan_then_apply,
    "deploys_need_the_tests": deploys_need_the_tests,
    "drift_detection": drift_detection,
    "no_environment_on_pull_requests": no_environment_on_pull_requests,
    "read_only_identities": read_only_identities,
    "failed_preview_said_on_the_pull_request": failed_preview_said_on_the_pull_request,
    "messages_name_the_commit": messages_name_the_commit,
    "concurrency_never_cancels_an_apply": concurrency_never_cancels_an_apply,
    "azure_state_through_a_sas": azure_state_through_a_sas,
    "caches": caches,
    "runbook": runbook,
}


# --- the tests ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workflows() -> dict[str, Workflow]:
    return load_all()


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_the_workflows_pass(workflows, check: str):
    assert CHECKS[check](workflows) == []


# (check, workflow, pattern, replacement): one careless edit each check must catch.
BROKEN = [
    # plan, then apply that plan
    ("plan_then_apply", "deploy.yml", r"^    needs: plan$", "    needs: test"),
    ("plan_then_apply", "deploy.yml", r"(approved plan\)\n)          plan: .*\n", r"\1"),
    ("plan_then_apply", "deploy.yml",
     r"^          name: plan-\$\{\{ matrix.stack \}\}\n          path: \$\{\{ runner.temp \}\}/plan$",
     "          name: plan-aws\n          path: ${{ runner.temp }}/plan"),
    ("plan_then_apply", "deploy.yml", r"^          path: \$\{\{ runner.temp \}\}/plan$", "          path: plan"),
    ("plan_then_apply", "deploy.yml", r"^    environment: \$\{\{ matrix.stack \}\}$", "    environment: production"),
    ("plan_then_apply", "deploy.yml", r"^          retention-days: 3$", "          retention-days: 30"),
    # tests first
    ("deploys_need_the_tests", "deploy.yml", r"^    needs: test$", "    needs: []"),
    ("deploys_need_the_tests", "deploy.yml", r"^    needs: plan$", "    needs: plan\n    if: always()"),
    ("deploys_need_the_tests", "deploy.yml", r"^        run: ./scripts/test$", "        run: echo skipped"),
    # drift
    ("drift_detection", "drift.yml", r"^          refresh: true$", "          refresh: false"),
    ("drift_detection", "drift.yml", r"^          expect-no-changes: true\n", ""),
    ("drift_detection", "drift.yml", r"^  schedule:\n    - cron: .*\n", ""),
    ("drift_detection", "drift.yml", r"^      issues: write.*$", "      issues: read"),
    # environments stay off pull requests
    ("no_environment_on_pull_requests", "preview.yml", r"^    runs-on: ubuntu-24.04$",
     "    runs-on: ubuntu-24.04\n    environment: ${{ matrix.stack }}"),
    ("no_environment_on_pull_requests", "deploy.yml", r"^  workflow_dispatch:$",
     "  workflow_dispatch:\n  pull_request:"),
    # identities
    ("read_only_identities", "preview.yml", r"vars.AWS_PREVIEW_ROLE_ARN", "vars.AWS_DEPLOY_ROLE_ARN"),
    ("read_only_identities", "deploy.yml", r"client-id: \$\{\{ vars.AZURE_PREVIEW_CLIENT_ID \}\}",
     "client-id: ${{ vars.AZURE_DEPLOY_CLIENT_ID }}"),
    ("read_only_identities", "deploy.yml", r"^    needs: test$",
     "    needs: test\n    environment: ${{ matrix.stack }}"),
    ("read_only_identities", "drift.yml", r"ARM_CLIENT_ID: \$\{\{ vars.AZURE_PREVIEW_CLIENT_ID \}\}",
     "ARM_CLIENT_ID: ${{ vars.AZURE_DEPLOY_CLIENT_ID }}"),
    ("read_only_identities", "runbook.yml", r"vars.AWS_DEPLOY_ROLE_ARN", "vars.AWS_PREVIEW_ROLE_ARN"),
    # the failed preview said on the pull request
    ("failed_preview_said_on_the_pull_request", "preview.yml", r"^        if: failure\(\)$", "        if: always()"),
    ("failed_preview_said_on_the_pull_request", "preview.yml", r"--method PATCH", "--method GET"),
    ("failed_preview_said_on_the_pull_request", "preview.yml", r"^      pull-requests: write.*$",
     "      pull-requests: read"),
    # the commit in the message
    ("messages_name_the_commit", "deploy.yml", r"message: deploy \$\{\{ github.sha \}\}", "message: deploy"),
    ("messages_name_the_commit", "preview.yml", r"^          message: .*\n", ""),
    # concurrency
    ("concurrency_never_cancels_an_apply", "deploy.yml",
     r"(group: deploy-\$\{\{ matrix.stack \}\}\n      cancel-in-progress:) false", r"\1 true"),
    ("concurrency_never_cancels_an_apply", "deploy.yml", r"group: deploy-\$\{\{ matrix.stack \}\}$",
     "group: deploy-${{ matrix.stack }}-${{ github.sha }}"),
    ("concurrency_never_cancels_an_apply", "deploy.yml", r"^permissions: \{\}$",
     "permissions: {}\n\nconcurrency:\n  group: deploy\n  cancel-in-progress: true"),
    ("concurrency_never_cancels_an_apply", "runbook.yml", r"cancel-in-progress: false", "cancel-in-progress: true"),
    # the Azure state through a SAS
    ("azure_state_through_a_sas", "deploy.yml", r"SAS_PERMISSIONS: racwdl", "SAS_PERMISSIONS: rl"),
    ("azure_state_through_a_sas", "preview.yml", r"SAS_PERMISSIONS: rl", "SAS_PERMISSIONS: racwdl"),
    ("azure_state_through_a_sas", "deploy.yml", r'SAS_HOURS: "3"', 'SAS_HOURS: "168"'),
    ("azure_state_through_a_sas", "drift.yml", r'^          echo "::add-mask::\$sas"\n', ""),
    ("azure_state_through_a_sas", "runbook.yml", r" --as-user", ""),
    ("azure_state_through_a_sas", "preview.yml", r"^      - name: State container SAS", "      - name: A SAS"),
    # caches
    ("caches", "deploy.yml", r"^          cache: pip\n", ""),
    ("caches", "drift.yml", r"path: ~/.pulumi/plugins", "path: ~/.cache/pulumi"),
    # the runbook
    ("runbook", "runbook.yml", r"pulumi cancel --non-interactive --yes", "pulumi cancel --non-interactive"),
    ("runbook", "runbook.yml", r"^    environment: \$\{\{ inputs.stack \}\}\n", ""),
]


@pytest.mark.parametrize("check,name,pattern,replacement", BROKEN,
                         ids=[f"{check}-{index}" for index, (check, *_) in enumerate(BROKEN)])
def test_a_broken_copy_fails_the_check(workflows, check: str, name: str, pattern: str, replacement: str):
    assert CHECKS[check](broken(workflows, name, pattern, replacement)) != []


def test_every_check_is_shown_to_fail():
    assert {check for check, *_ in BROKEN} == set(CHECKS)
