"""What this project needs of its workflows' structure (issue #25): plan, then apply that plan behind
the stack's environment, and nothing else: the same commit, backend, CLI and environment in both,
the plan file the plan job recorded, only on the newest commit of main (the branch's ref, never a
name a tag could answer); no plan while an apply of its stack runs; a registry token renewed only on
the stack named, by replacing the one command its state holds, in the plan and in its apply alike;
tests, and code owners GitHub accepts, before any deployment; no commit that holds what .gitignore
leaves out (a virtualenv of its own), and virtualenvs made afresh;
read-only identities wherever nothing is applied, the drift check's its own; no environment on pull
requests; the required checks of a pull request on every one of them (no path filter), the test run
of a superseded commit cancelled; the preview said on the pull request by a job that runs none of its
code, a failed or unfinished one too, in order; daily drift detection that reports a hung check; the
commit in every update's
message; no concurrency setting that cancels an apply; the Azure state reached through a bounded
user-delegation SAS and AWS sessions as long as their jobs; no cache where credentials are, packages
from hashed locks; every action's inputs, every Pulumi step's environment and every condition as
written here; nothing that lets a failure pass.

Each check returns the problems it finds. The real workflows have none; for each check, a broken copy
(one line changed, as a careless edit would) has at least one, so a clean result shows the check can
fail.
"""

from __future__ import annotations

import re
from typing import Callable

import pytest

from tests.workflows.workflows import (
    SHELL_PULUMI, Workflow, applies, broken, jobs, load_all, needs, only_previews, pulumi_commands,
    pulumi_steps, shell_invocations, step_key, step_named, text, triggers, uses)

Check = Callable[[dict[str, Workflow]], list[str]]
PULL_REQUEST_TRIGGERS = {"pull_request", "pull_request_target"}
TEST_COMMAND = "./scripts/test"


# --- the checks -----------------------------------------------------------------------------------

# The plan job runs the CLI in a shell step (its summary is escaped, kept from its end); what it runs,
# word for word, and where it writes the plan.
BACKEND = "${{ matrix.stack == 'aws' && vars.PULUMI_BACKEND_URL_AWS || vars.PULUMI_BACKEND_URL_AZURE }}"
PLAN_FILE = "${{ runner.temp }}/plan/${{ matrix.stack }}.json"
# The state is read (`stack export`) for the registry token's URN only with renew-registry-token; the
# preview's `"$@"` is empty, or `--replace <that URN>` (registry_token_renewal).
PLAN_COMMANDS = ['pulumi login --non-interactive "$BACKEND_URL"',
                 'pulumi stack export --stack "$STACK" "$state"',
                 'pulumi preview --non-interactive --color never --suppress-progress --diff --stack "$STACK" '
                 '--policy-pack policy --message "$MESSAGE" --save-plan "$PLAN" "$@"',
                 'pulumi stack export --stack "$STACK" "$state.after"']  # the state before and after the preview
# The plan step's environment that stands in for the action's inputs (stack-name, cloud-url, message,
# plan, replace); the rest is what Pulumi reads, the same in `up` but for the identity and the fresh
# Azure CLI login's variables (FRESH_LOGIN_ENV: the program's `az` commands run in `up` alone, and
# only there MLFLOW_FRESH_AZ_LOGIN=1 asks the program for the fresh login).
PLAN_INPUTS_ENV = {"STACK", "BACKEND_URL", "MESSAGE", "PLAN", "RENEW_REGISTRY_TOKEN"}
DEPLOY_CLIENT = "${{ vars.AZURE_DEPLOY_CLIENT_ID }}"
FRESH_LOGIN_OPT_IN = "MLFLOW_FRESH_AZ_LOGIN"
FRESH_LOGIN_ENV = {"AZURE_CLIENT_ID": DEPLOY_CLIENT, "AZURE_TENANT_ID": "${{ vars.AZURE_TENANT_ID }}",
                   "AZURE_SUBSCRIPTION_ID": "${{ vars.AZURE_SUBSCRIPTION_ID }}", FRESH_LOGIN_OPT_IN: "1"}
RENEW_INPUT = "renew-registry-token"
REPLACE_INPUT = "${{ steps.planned.outputs.replace }}"


def plan_then_apply(workflows: dict[str, Workflow]) -> list[str]:
    """deploy.yml: `plan` previews with the policy pack and saves the plan (a shell step running
    exactly PLAN_COMMANDS), uploads it; `apply` needs `plan`, downloads that artifact to where the plan
    was written and runs `up` with the same file, for the same stack, behind the stack's environment,
    with the same backend, CLI version and environment as the plan (the identity aside)."""
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
    previews = [step for step in plan["steps"] if shell_invocations(step.get("run", ""))]
    installs, ups = pulumi_steps(plan), pulumi_steps(apply)
    if len(previews) != 1 or len(installs) != 1 or set(installs[0].get("with", {})) != {"pulumi-version"} \
            or len(ups) != 1:
        return [*problems, f"plan has {len(previews)} shell steps running Pulumi and {len(installs)} Pulumi "
                           f"steps (the CLI's install alone), apply {len(ups)} Pulumi steps"]
    [preview], [install], [up] = previews, installs, ups
    env, inputs = preview.get("env", {}), up.get("with", {})
    if (preview.get("name"), preview.get("id")) != ("pulumi preview --save-plan", "plan"):
        problems.append(f"the plan step is {preview.get('name')!r} (id {preview.get('id')!r})")
    if shell_invocations(preview["run"]) != PLAN_COMMANDS:
        problems.append(f"plan runs {shell_invocations(preview['run'])}, not {PLAN_COMMANDS}")
    if inputs.get("command") != "up":
        problems.append(f"apply runs {inputs.get('command')}")
    if env.get("PLAN") != PLAN_FILE or inputs.get("plan") != PLAN_FILE:
        problems.append(f"up's plan {inputs.get('plan')!r} is not the preview's saved plan {env.get('PLAN')!r}")
    if not (env.get("STACK") == inputs.get("stack-name") == "${{ matrix.stack }}"):
        problems.append("plan and apply name different stacks")
    if inputs.get("policyPacks") != "policy":
        problems.append("the policy pack is not run by apply")
    # The same backend, CLI and environment: an apply that reads another state, runs another CLI or
    # is told something else (PULUMI_*, ARM_*) applies what nobody planned.
    if not (env.get("BACKEND_URL") == inputs.get("cloud-url") == BACKEND):
        problems.append(f"plan's backend {env.get('BACKEND_URL')!r}, apply's {inputs.get('cloud-url')!r}, "
                        f"not both {BACKEND!r}")
    if install["with"].get("pulumi-version") != inputs.get("pulumi-version"):
        problems.append(f"plan runs the CLI {install['with'].get('pulumi-version')!r}, apply "
                        f"{inputs.get('pulumi-version')!r}")
    planned_env = {key: value for key, value in env.items() if key not in PLAN_INPUTS_ENV}
    if up.get("env", {}) != {**planned_env, "ARM_CLIENT_ID": DEPLOY_CLIENT, **FRESH_LOGIN_ENV}:
        problems.append(f"up's environment {up.get('env', {})} is not the plan's {planned_env} "
                        "(but for ARM_CLIENT_ID, the deploy identity, and the fresh CLI login's AZURE_*)")
    if inputs.get("replace") != REPLACE_INPUT:
        problems.append(f"up replaces {inputs.get('replace')!r}, not what the plan replaced ({REPLACE_INPUT})")
    uploads = [step["with"] for step in plan["steps"] if uses(step, "actions/upload-artifact")]
    downloads = [step["with"] for step in apply["steps"] if uses(step, "actions/download-artifact")]
    if len(uploads) != 1 or len(downloads) != 1:
        return [*problems, f"{len(uploads)} uploads in plan, {len(downloads)} downloads in apply"]
    [upload], [download] = uploads, downloads
    if upload.get("name") != download.get("name") or "${{ matrix.stack }}" not in str(upload.get("name")):
        problems.append(f"artifact {upload.get('name')!r} uploaded, {download.get('name')!r} downloaded")
    if upload.get("path") != PLAN_FILE:
        problems.append(f"the artifact holds {upload.get('path')!r}, not the plan {PLAN_FILE!r}")
    if PLAN_FILE.rsplit("/", 1)[0] != download.get("path"):
        problems.append(f"the plan is downloaded to {download.get('path')!r}, not where up reads {PLAN_FILE!r}")
    if upload.get("if-no-files-found") != "error" or not 1 <= int(upload.get("retention-days", 90)) <= 7:
        problems.append("the plan artifact may be missing or kept long")
    for job_id, job in deploy.items():
        if applies(job) and job_id != "apply":
            problems.append(f"{job_id} applies without the plan")
        # Pulumi runs in the plan step above and in apply's action step, whose inputs are checked
        # (action_inputs), nowhere else.
        for step in job.get("steps", []):
            # IGNORED_CHECK reads Pulumi.yaml (its text is pinned: committed_ignored_files_refused)
            if step is not preview and step.get("run") != IGNORED_CHECK and re.search(
                    r"\bpulumi\b", step.get("run", "").replace("urn:pulumi:", ""), flags=re.IGNORECASE):
                problems.append(f"{job_id}: a shell step runs Pulumi: {step_key(step)!r}")
    if pulumi_commands(apply) != {"up"} or "plan" not in inputs:
        problems.append(f"apply runs {sorted(pulumi_commands(apply))}, not one `up` with the plan")
    return problems


RENEW_LOOKUP = 'select(.type == "command:local:Command" and (.urn | endswith("-registry-token"))) | .urn\''
URN_PATTERN = 'urn:pulumi:"$STACK"::*::*command:local:Command::*-registry-token)'


def registry_token_renewal(workflows: dict[str, Workflow]) -> list[str]:
    """deploy.yml: "Run workflow" takes one input, renew-registry-token, a choice of `none` (the
    default) or one of the plan's stacks (no string: nobody types a URN), which reaches the plan step
    alone. Only on the leg it names does that step read the state, and it replaces the one
    `command:local:Command` whose URN ends in `-registry-token` (zero or several: no plan), records
    that URN as its output and shows it in its summary. `apply`'s plan check reads
    that output alone into `replace` (a URN of the stack's registry token command, else nothing is
    applied), which its `up` takes: Pulumi fails an `up --plan` that does not replace what the plan
    replaces. Nothing else runs Pulumi with --replace or --target-replace."""
    problems = []
    workflow = workflows["deploy.yml"]
    dispatch = (workflow["on"].get("workflow_dispatch") if isinstance(workflow["on"], dict) else None) or {}
    inputs = dispatch.get("inputs") or {}
    renew = inputs.get(RENEW_INPUT) or {}
    stacks = workflow["jobs"]["plan"]["strategy"]["matrix"]["stack"]
    if set(inputs) != {RENEW_INPUT} or renew.get("type") != "choice" or renew.get("default") != "none" \
            or renew.get("options") != ["none", *stacks] or set(renew) != {"description", "type", "options", "default"}:
        problems.append(f"deploy.yml's workflow_dispatch takes {inputs}, not the choice {RENEW_INPUT} "
                        f"of none or a stack alone")
    read = re.findall(r"(?:github\.event\.)?inputs(?:\.[\w-]+|\[)", text(workflow))
    if read != [f"inputs.{RENEW_INPUT}"]:
        problems.append(f"deploy.yml reads {read}, not inputs.{RENEW_INPUT} once")
    plan, apply = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    [preview] = [step for step in plan["steps"] if step.get("id") == "plan"] or [{}]
    script = preview.get("run", "")
    if preview.get("env", {}).get("RENEW_REGISTRY_TOKEN") != f"${{{{ inputs.{RENEW_INPUT} }}}}" \
            or preview.get("env", {}).get("STACK") != "${{ matrix.stack }}":
        problems.append("the plan step does not take renew-registry-token and its stack")
    if script.count("$RENEW_REGISTRY_TOKEN") != 1:
        problems.append("the plan step reads renew-registry-token more than once")
    for needed in ('if [ "$status" -eq 0 ] && [ "$RENEW_REGISTRY_TOKEN" = "$STACK" ]; then', RENEW_LOOKUP,
                   '[ "$count" -ne 1 ]', 'urn="$urns"', 'set -- --replace "$urn"',
                   'echo "registry-token-urn-$STACK=$urn" >> "$GITHUB_OUTPUT"', "it replaces \\`$urn\\`"):
        if needed not in script:
            problems.append(f"the plan step lacks {needed!r}")
    [check] = [step for step in apply["steps"] if step.get("name") == "The plan is the one planned"] or [{}]
    script = check.get("run", "")
    if check.get("id") != "planned":
        problems.append(f"apply's plan check has id {check.get('id')!r}, not planned")
    for needed in ('urn="$(printf \'%s\' "$PLAN_OUTPUTS" | jq -r --arg key "registry-token-urn-$STACK" '
                   '\'.[$key] // empty\')"', URN_PATTERN, '*,* | *[[:space:]]*)',
                   'echo "replace=$urn" >> "$GITHUB_OUTPUT"'):
        if needed not in script:
            problems.append(f"apply's plan check lacks {needed!r}")
    ups = pulumi_steps(apply)
    if [step.get("with", {}).get("replace") for step in ups] != [REPLACE_INPUT]:
        problems.append(f"apply's up does not replace {REPLACE_INPUT}")
    for name, job_id, job in jobs(workflows):
        for step in job.get("steps", []):
            for flag in re.findall(r"--(?:target-)?replace\b", step.get("run", "")):
                if step is not preview or flag != "--replace" or step.get("run", "").count(flag) != 1:
                    problems.append(f"{name}: {job_id}: {step_key(step)!r} runs {flag}")
            if "replace" in step.get("with", {}) and step not in ups:
                problems.append(f"{name}: {job_id}: {step_key(step)!r} replaces")
    return problems


def codeowners_checked_on_main(workflows: dict[str, Workflow]) -> list[str]:
    """deploy.yml: `code owners`, on main, before any plan (`plan` needs it), fails while
    .github/CODEOWNERS names the placeholder @OWNER/... on a line that is not a comment, or while
    GitHub lists errors of the file at the run's commit (an owner it cannot use asks no review)."""
    deploy = workflows["deploy.yml"]["jobs"]
    job = deploy.get("codeowners")
    if job is None:
        return ["deploy.yml has no `codeowners` job"]
    problems = []
    if "codeowners" not in needs(deploy["plan"]):
        problems.append("plan does not need codeowners")
    if job.get("if") != ON_MAIN or "environment" in job or job.get("permissions") != {"contents": "read"}:
        problems.append(f"codeowners: if {job.get('if')!r}, permissions {job.get('permissions')}")
    runs = [step for step in job["steps"] if "run" in step and step.get("name") != IGNORED_CHECK_NAME]
    if len(runs) != 1 or "if" in runs[0] or runs[0].get("env") != {"GH_TOKEN": "${{ github.token }}"}:
        return [*problems, "codeowners does not run one unconditional check with the job's token"]
    script = runs[0]["run"]
    for needed in ("grep -nE '^[^#]*@OWNER/' .github/CODEOWNERS; then",
                   'gh api "repos/$GITHUB_REPOSITORY/codeowners/errors?ref=$GITHUB_SHA"', ".errors[]",
                   'if [ -n "$errors" ]; then'):
        if needed not in script:
            problems.append(f"the codeowners check lacks {needed!r}")
    if script.count("exit 1") != 2:
        problems.append("the codeowners check does not fail on both")
    return problems


def pull_request_checks(workflows: dict[str, Workflow]) -> list[str]:
    """test.yml and preview.yml run on every pull request to main: exactly `pull_request` with
    `branches: [main]` (a `paths`, `paths-ignore` or `types` filter leaves a pull request without its
    required checks). A newer commit cancels test.yml's run and the preview of the older one; the
    comments never cancel one another (their group keeps them in order: a cancelled newer comment
    would leave an older verdict standing)."""
    problems = []
    for name in ("test.yml", "preview.yml"):
        if workflows[name]["on"] != {"pull_request": {"branches": ["main"]}}:
            problems.append(f"{name} runs on {workflows[name]['on']}")
    number = "${{ github.event.pull_request.number }}"
    expected = {("test.yml", None): (f"test-{number}", True),
                ("preview.yml", "preview"): (f"preview-${{{{ matrix.stack }}}}-{number}", True),
                ("preview.yml", "comment"): (f"preview-comment-${{{{ matrix.stack }}}}-{number}", False)}
    for (name, job_id), (group, cancels) in expected.items():
        concurrency = (workflows[name] if job_id is None else workflows[name]["jobs"][job_id]).get("concurrency")
        if concurrency != {"group": group, "cancel-in-progress": cancels}:
            problems.append(f"{name}: {job_id or 'the workflow'}'s concurrency {concurrency}, not {group!r} "
                            f"with cancel-in-progress {cancels}")
    return problems


def checkouts_take_the_runs_commit(workflows: dict[str, Workflow]) -> list[str]:
    """Every checkout takes the run's own commit of this repository: no `ref`, no `repository`, no
    other input than `persist-credentials` (a plan of `main` and an apply of the run's commit would be
    of different code than the run's tests and its reviewed change)."""
    return [f"{name}: {job_id}: the checkout takes {sorted(step.get('with', {}))}"
            for name, job_id, job in jobs(workflows) for step in job.get("steps", [])
            if uses(step, "actions/checkout") and set(step.get("with", {})) != {"persist-credentials"}]


def apply_takes_the_planned_file_on_the_newest_commit(workflows: dict[str, Workflow]) -> list[str]:
    """`plan` records its plan file's sha256 as a job output per stack and prints it in its summary;
    `apply` checks the downloaded file against it before anything else signs in, and right before
    `up` refuses unless the run's commit is still the head of main (an older run, or a re-run of one,
    would apply older code over newer)."""
    deploy = workflows["deploy.yml"]["jobs"]
    plan, apply = deploy["plan"], deploy["apply"]
    problems = []
    stacks = plan["strategy"]["matrix"]["stack"]
    expected_outputs = {f"{output}-{stack}": f"${{{{ steps.plan.outputs.{output}-{stack} }}}}"
                        for stack in stacks for output in ("plan-sha256", "registry-token-urn")}
    if plan.get("outputs") != expected_outputs:
        problems.append(f"plan's outputs {plan.get('outputs')}, not {expected_outputs}")
    planned = [step for step in plan["steps"] if step.get("id") == "plan"]
    script = planned[0].get("run", "") if len(planned) == 1 else ""
    for needed in ('sha256="$(sha256sum "$PLAN"', 'echo "plan-sha256-$STACK=$sha256" >> "$GITHUB_OUTPUT"',
                   "sha256 \\`$sha256\\`", ">> \"$GITHUB_STEP_SUMMARY\""):
        if needed not in script:
            problems.append(f"the plan step lacks {needed!r}")
    steps = apply["steps"]
    names = [step.get("name") for step in steps]
    at = {name: names.index(name) for name in ("The plan is the one planned", "The run's commit is the head of main")
          if name in names}
    download = next((i for i, step in enumerate(steps) if uses(step, "actions/download-artifact")), None)
    logins = [i for i, step in enumerate(steps)
              if uses(step, "aws-actions/configure-aws-credentials") or uses(step, "azure/login")]
    up = next((i for i, step in enumerate(steps) if step in pulumi_steps(apply)), None)
    if len(at) != 2 or download is None or up is None or not logins:
        return [*problems, f"apply lacks a step: {sorted(at)}, download {download}, up {up}"]
    check, newest = at["The plan is the one planned"], at["The run's commit is the head of main"]
    if not download < check < min(logins):
        problems.append("apply does not check the plan file right after downloading it, before signing in")
    if newest != up - 1:
        problems.append("the check that the run's commit is main's head is not right before up")
    for index in (check, newest):
        if "if" in steps[index]:
            problems.append(f"{names[index]!r} runs only {steps[index]['if']!r}")
    env, script = steps[check].get("env", {}), steps[check].get("run", "")
    if env != {"STACK": "${{ matrix.stack }}", "PLAN": PLAN_FILE, "PLAN_OUTPUTS": "${{ toJSON(needs.plan.outputs) }}"}:
        problems.append(f"the plan check reads {env}")
    for needed in ('jq -r --arg key "plan-sha256-$STACK" \'.[$key] // empty\'', 'sha256="$(sha256sum "$PLAN"',
                   'if [ -z "$planned" ] || [ "$sha256" != "$planned" ]; then', "exit 1",
                   'sha256 \\`$sha256\\`', '>> "$GITHUB_STEP_SUMMARY"'):
        if needed not in script:
            problems.append(f"the plan check lacks {needed!r}")
    env, script = steps[newest].get("env", {}), steps[newest].get("run", "")
    if env != {"GH_TOKEN": "${{ github.token }}"}:
        problems.append(f"the newest-commit check reads {env}")
    # The branch's ref: `commits/main` takes any name, and a tag `main` would answer for the branch.
    for needed in ('head="$(gh api "repos/$GITHUB_REPOSITORY/git/ref/heads/main" --jq .object.sha)"',
                   'if [ -z "$head" ] || [ "$head" != "$GITHUB_SHA" ]; then', "exit 1"):
        if needed not in script:
            problems.append(f"the newest-commit check lacks {needed!r}")
    if "commits/" in script:
        problems.append("the newest-commit check asks commits/<name>, which a tag can answer")
    if apply["permissions"].get("contents") != "read":
        problems.append("apply's token may not read main's head")
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
    """drift.yml: every day, each stack previewed with a refresh, expecting no changes; a failure
    opens or updates an issue."""
    workflow = workflows.get("drift.yml")
    if workflow is None:
        return ["no drift.yml"]
    problems = []
    # One cron that fires every day: minute and hour fixed, every day of every month (a cron for the
    # 31st of February is valid and never fires).
    schedule = workflow["on"].get("schedule") if isinstance(workflow["on"], dict) else None
    crons = [entry.get("cron", "") for entry in schedule or []]
    fields = crons[0].split() if len(crons) == 1 else []
    if len(fields) != 5 or not (fields[0].isdigit() and int(fields[0]) < 60 and fields[1].isdigit()
                                and int(fields[1]) < 24) or fields[2:] != ["*", "*", "*"]:
        problems.append(f"drift.yml does not run daily: schedule {schedule}")
    [(job_id, job)] = workflow["jobs"].items()
    [step] = pulumi_steps(job) or [{}]
    inputs = step.get("with", {})
    if inputs.get("command") != "preview" or inputs.get("refresh") is not True \
            or inputs.get("expect-no-changes") is not True:
        problems.append(f"{job_id} does not preview with refresh and expect-no-changes: {inputs}")
    if job["strategy"]["matrix"]["stack"] != ["aws", "azure"]:
        problems.append("not every cloud stack is checked")
    # failure() is false for a job cancelled at its timeout: a hung check would open no issue.
    reports = [step for step in job["steps"]
               if step.get("if") == "always() && !success()" and "gh issue" in step.get("run", "")]
    if not reports or job["steps"][-1] is not reports[0]:
        problems.append("the last step is not an `if: always() && !success()` step that opens an issue")
    if job["permissions"].get("issues") != "write":
        problems.append("the job may not write issues")
    return problems


def no_environment_on_pull_requests(workflows: dict[str, Workflow]) -> list[str]:
    """A job behind an environment (whose OIDC subject the writing identities trust) never runs for a
    pull request: only on main, after review."""
    return [f"{name}: {job_id} has environment {job['environment']!r} and runs on pull requests"
            for name, job_id, job in jobs(workflows)
            if "environment" in job and triggers(workflows[name]) & PULL_REQUEST_TRIGGERS]


PREVIEW_IDENTITIES = {"${{ vars.AWS_PREVIEW_ROLE_ARN }}", "${{ vars.AZURE_PREVIEW_CLIENT_ID }}"}
DRIFT_IDENTITIES = {"${{ vars.AWS_DRIFT_ROLE_ARN }}", "${{ vars.AZURE_DRIFT_CLIENT_ID }}"}
DEPLOY_IDENTITIES = {"${{ vars.AWS_DEPLOY_ROLE_ARN }}", "${{ vars.AZURE_DEPLOY_CLIENT_ID }}"}


def read_only_identities(workflows: dict[str, Workflow]) -> list[str]:
    """Jobs that only preview have no environment and no deploy identity: the preview identities, and
    the drift check its own refresh identities (they read more, the Azure one the apps' logs and
    images: runs on main only trust them); jobs that apply or repair use the deploy ones."""
    problems = []
    for name, job_id, job in jobs(workflows):
        logins = [step for step in job.get("steps", [])
                  if uses(step, "aws-actions/configure-aws-credentials") or uses(step, "azure/login")]
        if not logins:
            continue
        aws = {step["with"]["role-to-assume"] for step in logins if "role-to-assume" in step["with"]}
        azure = {step["with"]["client-id"] for step in logins if "client-id" in step["with"]}
        arm = {step.get("env", {}).get(variable) for step in job["steps"]
               for variable in ("ARM_CLIENT_ID", "AZURE_CLIENT_ID")} - {None}
        identities = aws | azure | arm
        if only_previews(job):
            expected = DRIFT_IDENTITIES if name == "drift.yml" else PREVIEW_IDENTITIES
            if "environment" in job:
                problems.append(f"{name}: {job_id} only previews but has an environment")
            if "DEPLOY" in text(job):
                problems.append(f"{name}: {job_id} only previews but names a deploy identity")
            if identities != expected or len(aws) != 1 or len(azure | arm) != 1:
                problems.append(f"{name}: {job_id} previews as {identities}, not {expected}")
        else:
            if "environment" not in job:
                problems.append(f"{name}: {job_id} writes without an environment")
            if identities != DEPLOY_IDENTITIES or len(aws) != 1 or len(azure | arm) != 1:
                problems.append(f"{name}: {job_id} writes as {identities}")
        if name != "drift.yml" and "DRIFT" in text(job):
            problems.append(f"{name}: {job_id} names a drift identity")
        if triggers(workflows[name]) & PULL_REQUEST_TRIGGERS and identities != PREVIEW_IDENTITIES:
            problems.append(f"{name}: {job_id} runs for pull requests as {identities}")
    return problems


def aws_sessions_last_the_job(workflows: dict[str, Workflow]) -> list[str]:
    """An AWS session lasts as long as its job may run (GitHub cancels the job at timeout-minutes):
    `role-duration-seconds` (one hour when not given) at least 60 x timeout-minutes, and given
    explicitly for the deploy role. Credentials that lapse mid-`up` leave a half-made update."""
    problems = []
    for name, job_id, job in jobs(workflows):
        for step in job.get("steps", []):
            if not uses(step, "aws-actions/configure-aws-credentials"):
                continue
            inputs = step.get("with", {})
            seconds = int(inputs.get("role-duration-seconds", 3600))
            if seconds < 60 * job["timeout-minutes"] or seconds > 43200:
                problems.append(f"{name}: {job_id}: a session of {seconds} s for a job of {job['timeout-minutes']} min")
            if "DEPLOY" in inputs.get("role-to-assume", "") and "role-duration-seconds" not in inputs:
                problems.append(f"{name}: {job_id}: the deploy role's session length is not set")
    return problems


def preview_said_on_the_pull_request(workflows: dict[str, Workflow]) -> list[str]:
    """preview.yml: the job that runs the pull request's code holds no token that writes on GitHub and
    keeps its output in the artifact `preview-<stack>`; a `comment` job, after it whatever its end
    (`always()`), checks out and runs nothing of the pull request, reads that artifact and the
    preview's result, leaves the comment alone when a newer commit superseded the run, and edits
    (every page of comments) or posts the stack's comment with the run's link."""
    workflow = workflows["preview.yml"]
    preview, comment = workflow["jobs"].get("preview"), workflow["jobs"].get("comment")
    if preview is None or comment is None:
        return ["preview.yml has no `preview` or no `comment` job"]
    problems = []
    if any(value == "write" for scope, value in preview["permissions"].items() if scope != "id-token"):
        problems.append(f"the preview job may write: {preview['permissions']}")
    for step in preview["steps"]:
        if step.get("id") != "gate" and re.search(r"github\.token|secrets\.GITHUB_TOKEN", text(step)):
            problems.append(f"a GitHub token reaches {step_key(step)!r}, beside the pull request's code")
        if uses(step, "pulumi/actions") and "command" in step.get("with", {}):
            problems.append("pulumi/actions runs the preview: its output leaves only through a step output")
    run_preview = [step for step in preview["steps"] if "preview" in SHELL_PULUMI.findall(step.get("run", ""))]
    uploads = [step.get("with", {}) for step in preview["steps"] if uses(step, "actions/upload-artifact")]
    if len(run_preview) != 1 or '| tee "$output"' not in run_preview[0].get("run", "") \
            or len(uploads) != 1 or uploads[0].get("name") != "preview-${{ matrix.stack }}" \
            or uploads[0].get("path") != "${{ runner.temp }}/preview/output.txt" \
            or 'output="$RUNNER_TEMP/preview/output.txt"' not in run_preview[0].get("run", ""):
        problems.append("the preview's output is not kept in the artifact preview-<stack>")
    if needs(comment) != ["preview"] or not str(comment.get("if", "")).startswith("always() && "):
        problems.append(f"the comment job does not follow every preview: needs {needs(comment)}, "
                        f"if {comment.get('if')!r}")
    if comment["permissions"] != {"actions": "read", "pull-requests": "write"}:
        problems.append(f"the comment job's permissions: {comment['permissions']}")
    if comment["strategy"]["matrix"]["stack"] != preview["strategy"]["matrix"]["stack"]:
        problems.append("the comment job covers other stacks than the preview")
    downloads = [step.get("with", {}) for step in comment["steps"] if uses(step, "actions/download-artifact")]
    runs = [step for step in comment["steps"] if "run" in step]
    others = [step_key(step) for step in comment["steps"]
              if not uses(step, "actions/download-artifact") and "run" not in step]
    if others or len(runs) != 1 or downloads != [{"pattern": "preview-${{ matrix.stack }}",
                                                  "path": "${{ runner.temp }}/preview"}]:
        problems.append(f"the comment job does more than download the output and comment: {others}, "
                        f"{len(runs)} scripts, downloads {downloads}")
        return problems
    script, env = runs[0]["run"], runs[0].get("env", {})
    for needed in ('gh api "repos/$REPOSITORY/pulls/$PR_NUMBER" --jq .head.sha', '[ "$head" != "$HEAD_SHA" ]',
                   "actions/runs/$RUN_ID/jobs?filter=latest", '"preview $STACK"', '= "success" ]',
                   'gh api --paginate "repos/$REPOSITORY/issues/$PR_NUMBER/comments?per_page=100"',
                   '.user == "github-actions[bot]"', "--method PATCH", "--method POST", ":tropical_drink:",
                   "<summary>Pulumi report</summary>", "$RUN_URL", '$RUNNER_TEMP/preview/output.txt',
                   "s/</\\&lt;/g"):
        if needed not in script:
            problems.append(f"the comment script lacks {needed!r}")
    if env.get("HEAD_SHA") != "${{ github.event.pull_request.head.sha }}" or "github.run_id" not in env.get(
            "RUN_URL", "") or env.get("RUN_ID") != "${{ github.run_id }}":
        problems.append("the comment job does not know the run's head commit, the run or its link")
    for name, workflow_ in workflows.items():
        if not triggers(workflow_) & PULL_REQUEST_TRIGGERS:
            continue
        for job_id, job in workflow_["jobs"].items():
            checks_out = any(uses(step, "actions/checkout") for step in job.get("steps", []))
            writes = {scope for scope, value in job.get("permissions", {}).items()
                      if value == "write" and scope != "id-token"}
            if checks_out and writes:
                problems.append(f"{name}: {job_id} runs the pull request's code and may write {sorted(writes)}")
    return problems


def messages_name_the_commit(workflows: dict[str, Workflow]) -> list[str]:
    """Every Pulumi operation's message names the commit (the update history of a self-managed backend
    keeps the message): the action's `message`, or the shell's `--message "$MESSAGE"`."""
    problems = [f"{name}: {job_id}: message {step['with'].get('message')!r}"
                for name, job_id, job in jobs(workflows) for step in pulumi_steps(job)
                if "command" in step.get("with", {}) and "${{ github.sha }}" not in str(step["with"].get("message"))]
    for name, job_id, job in jobs(workflows):
        for step in job.get("steps", []):
            if set(SHELL_PULUMI.findall(step.get("run", ""))) & {"preview", "up", "update", "refresh", "destroy"} and (
                    '--message "$MESSAGE"' not in step["run"]
                    or "${{ github.sha }}" not in str(step.get("env", {}).get("MESSAGE"))):
                problems.append(f"{name}: {job_id}: {step_key(step)!r} runs Pulumi without the commit in its message")
    return problems


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
    """No cache is restored, but pip's downloads in a pull request's preview, where each file is
    checked against the locks' sha256: any job on main (deploy.yml's `test` runs the whole suite and
    the packages it installs) can write entries that main's later jobs, and pull requests' runs, read.
    No plugins cache anywhere (plugins are not checked against anything)."""
    problems = []
    for name, job_id, job in jobs(workflows):
        for step in job.get("steps", []):
            inputs = step.get("with", {})
            if uses(step, "actions/cache") or step.get("uses", "").startswith("actions/cache/"):
                problems.append(f"{name}: {job_id}: restores a cache ({step_key(step)!r})")
            if uses(step, "actions/setup-python") and set(inputs) - {"python-version"}:
                pr_preview = (name, job_id) == ("preview.yml", "preview") and set(triggers(workflows[name])) <= \
                    PULL_REQUEST_TRIGGERS
                if not pr_preview or inputs.get("cache") != "pip" or inputs.get("cache-dependency-path", "").split() \
                        != LOCKS or set(inputs) != {"python-version", "cache", "cache-dependency-path"}:
                    problems.append(f"{name}: {job_id}: setup-python takes {sorted(inputs)}")
    return problems


LOCKS = [".github/locks/requirements.txt", ".github/locks/policy-requirements.txt"]
VENVS = """python -m venv --clear venv
venv/bin/python -m pip install --disable-pip-version-check -q --require-hashes --only-binary :all: \\
  --no-deps -r .github/locks/requirements.txt
python -m venv --clear policy/venv
policy/venv/bin/python -m pip install --disable-pip-version-check -q --require-hashes --only-binary :all: \\
  --no-deps -r .github/locks/policy-requirements.txt
"""


def hashed_installs(workflows: dict[str, Workflow]) -> list[str]:
    """Every job that runs Pulumi builds ./venv and policy/venv from the hashed locks (.github/locks/,
    in step with requirements.txt: test_workflows.py), wheels only, nothing resolved, with exactly
    VENVS: `--clear`, so nothing of a virtualenv the checkout brings is kept; nothing else there runs
    pip."""
    problems = []
    for name, job_id, job in jobs(workflows):
        if not pulumi_steps(job):
            continue
        builds = [step for step in job["steps"] if step.get("name") == "Create ./venv and policy/venv"]
        if len(builds) != 1 or builds[0].get("run") != VENVS:
            problems.append(f"{name}: {job_id}: the virtualenvs are not built with exactly VENVS")
        for step in job["steps"]:
            # IGNORED_CHECK names pip as Pulumi.yaml's toolchain (its text is pinned)
            if step not in builds and step.get("run") != IGNORED_CHECK and re.search(r"\bpip\b|\buv\b",
                                                                                     step.get("run", "")):
                problems.append(f"{name}: {job_id}: {step_key(step)!r} runs pip")
    return problems


IGNORED_CHECK_NAME = "The commit holds nothing .gitignore ignores"
IGNORED_CHECK = (
    'set -euo pipefail\n'
    "# .gitignore's own rules, then the same kinds by fixed patterns (a nested .gitignore's `!*.pyc` cannot\n"
    "# hide them), the paths the jobs build, tracked links, nested .gitignore files, and Pulumi.yaml's runtime\n"
    "# (the program runs in ./venv, made by pip, nothing else).\n"
    'ignored="$(git ls-files -ci --exclude-standard\n'
    "  git ls-files -ci -x venv/ -x __pycache__/ -x '*.pyc' -x '*.pth' -x '*.egg-info/' -x build/ -x node_modules/\n"
    '  git ls-files -- venv policy/venv rehearsal/azurite/node_modules\n'
    "  git ls-files -s | { grep '^120000 ' || true; } | cut -f2-\n"
    "  git ls-files -- '*/.gitignore'\n"
    '  runtime="$(sed -n \'/^runtime:/,/^[^ ]/p\' Pulumi.yaml | sed \'$d\')"\n'
    "  expected=$'runtime:\\n  name: python\\n  options:\\n    toolchain: pip\\n    virtualenv: venv'\n"
    '  [ "$runtime" = "$expected" ] && [ "$(grep -c \'^runtime:\' Pulumi.yaml)" = 1 ] '
    '|| echo "Pulumi.yaml (runtime)")"\n'
    'if [ -n "$ignored" ]; then\n'
    '  echo "::error::The commit holds files .gitignore ignores (or a nested .gitignore, a link, files where the jobs '
    'build virtualenvs and packages, a Pulumi.yaml runtime other than pip in ./venv): nothing runs. Remove them '
    '(git rm -r --cached <path>)."\n'
    '  printf \'%s\\n\' "$ignored"\n'
    '  exit 1\n'
    'fi\n')


def committed_ignored_files_refused(workflows: dict[str, Workflow]) -> list[str]:
    """Every job that checks out the code runs IGNORED_CHECK right after the checkout, under the same
    condition, before anything else: a commit that holds what .gitignore leaves out (a venv/bin/python
    or a site-packages .pth of its own, a root module the commit ignores) or anything at the paths the
    jobs build (venv, policy/venv, Azurite's node_modules: a link there escapes `venv/`) fails the job
    before any of its code runs. The test job's scripts/test then makes ./venv afresh on CI."""
    problems = []
    for name, job_id, job in jobs(workflows):
        steps = job.get("steps", [])
        checkouts = [i for i, step in enumerate(steps) if uses(step, "actions/checkout")]
        checks = [i for i, step in enumerate(steps) if step.get("name") == IGNORED_CHECK_NAME]
        if not checkouts:
            if checks:
                problems.append(f"{name}: {job_id} checks a commit it does not check out")
            continue
        if len(checkouts) != 1 or checks != [checkouts[0] + 1]:
            problems.append(f"{name}: {job_id}: {IGNORED_CHECK_NAME!r} is not right after the checkout")
            continue
        checkout, check = steps[checkouts[0]], steps[checks[0]]
        if check.get("run") != IGNORED_CHECK or set(check) != {"name", "run"} | ({"if"} & set(checkout)) \
                or check.get("if") != checkout.get("if"):
            problems.append(f"{name}: {job_id}: {IGNORED_CHECK_NAME!r} is not IGNORED_CHECK under the "
                            f"checkout's condition ({sorted(check)})")
    return problems


GUARD_NAME = "No apply of the stack runs"
GUARD_NEEDS = ("actions/workflows/deploy.yml/runs?status=$status", "for status in in_progress queued waiting",
               '[ "$run" != "$GITHUB_RUN_ID" ] || continue', "jobs?filter=latest", '"apply $STACK"',
               '.status == "in_progress" or .status == "queued"', "$REFUSED", "exit 1")


def no_plan_beside_an_apply(workflows: dict[str, Workflow]) -> list[str]:
    """deploy.yml's `plan` refuses while an `apply <stack>` of another run runs or was approved and
    waits for a runner (a preview takes no lock, and would read a state that apply is half-way
    through writing): the runbook's own check (the same script), right before the preview, with no
    condition, the job's token reading the runs' jobs (`actions: read`)."""
    plan = workflows["deploy.yml"]["jobs"]["plan"]
    problems = []
    steps = plan["steps"]
    guards = [i for i, step in enumerate(steps) if step.get("name") == GUARD_NAME]
    previews = [i for i, step in enumerate(steps) if step.get("id") == "plan"]
    if len(guards) != 1 or len(previews) != 1 or guards[0] != previews[0] - 1:
        return [f"plan has no {GUARD_NAME!r} right before its preview"]
    guard = steps[guards[0]]
    [runbook_guard] = [step for step in workflows["runbook.yml"]["jobs"]["runbook"]["steps"]
                       if step.get("name") == GUARD_NAME] or [{}]
    if guard.get("run") != runbook_guard.get("run"):
        problems.append("plan's check that no apply runs is not the runbook's")
    for needed in GUARD_NEEDS:
        if needed not in guard.get("run", ""):
            problems.append(f"plan's check that no apply runs lacks {needed!r}")
    env = guard.get("env", {})
    if "if" in guard or set(env) != {"STACK", "REPOSITORY", "REFUSED", "GH_TOKEN"} \
            or env.get("STACK") != "${{ matrix.stack }}" or env.get("REPOSITORY") != "${{ github.repository }}" \
            or env.get("GH_TOKEN") != "${{ github.token }}" or "${{" in env.get("REFUSED", "${{"):
        problems.append(f"plan's check that no apply runs: if {guard.get('if')!r}, env {env}")
    if plan["permissions"].get("actions") != "read":
        problems.append("plan may not read the runs' jobs")
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
    # Its own group: in the apply's, a dispatch replaces an apply awaiting approval and waits forever
    # behind one nobody approves. So unlock itself refuses while an apply of the stack runs.
    apply_group = workflows["deploy.yml"]["jobs"]["apply"]["concurrency"]["group"].replace("matrix.", "inputs.")
    if job["concurrency"]["group"] == apply_group:
        problems.append("the runbook shares the apply's concurrency group")
    guard = [i for i, step in enumerate(job["steps"]) if step.get("name") == "No apply of the stack runs"]
    at = job["steps"].index(cancel)
    if guard != [at - 1] or job["steps"][at - 1].get("if") != "inputs.operation == 'unlock'":
        problems.append("unlock is not right after a check that no apply runs")
    else:
        script = job["steps"][at - 1]["run"]
        for needed in GUARD_NEEDS:
            if needed not in script:
                problems.append(f"the check that no apply runs lacks {needed!r}")
    if job["permissions"].get("actions") != "read":
        problems.append("the runbook may not read the apply's runs")
    return problems


# The inputs of every step of these actions, by (workflow, job, step name or action): an input added
# (`target`, `exclude`, `replace`, `policyPackConfigs`, `continue-on-error`, `github-token`, `run-id`,
# `comment-on-pr`, ...) or one dropped is a change that must be made here too, on purpose.
PULUMI_RUN = {"command", "stack-name", "pulumi-version", "cloud-url", "message", "comment-on-summary", "diff"}
UPLOAD = {"name", "path", "if-no-files-found", "retention-days", "overwrite"}
ACTION_INPUTS: dict[tuple[str, str, str], set[str]] = {
    ("preview.yml", "preview", "Install the Pulumi CLI"): {"pulumi-version"},
    ("preview.yml", "preview", "Keep the output for the comment"): UPLOAD,
    ("preview.yml", "comment", "actions/download-artifact"): {"pattern", "path"},
    ("deploy.yml", "plan", "Install the Pulumi CLI"): {"pulumi-version"},
    ("deploy.yml", "plan", "actions/upload-artifact"): UPLOAD,
    ("deploy.yml", "apply", "actions/download-artifact"): {"name", "path"},
    ("deploy.yml", "apply", "pulumi up --plan"): PULUMI_RUN | {"plan", "policyPacks", "replace"},
    ("drift.yml", "drift", "pulumi preview --refresh --expect-no-changes"):
        PULUMI_RUN | {"refresh", "expect-no-changes", "policyPacks"},
    ("runbook.yml", "runbook", "Install the Pulumi CLI"): {"pulumi-version"},
    ("runbook.yml", "runbook", "pulumi refresh"): PULUMI_RUN,
}
CHECKED_ACTIONS = ("pulumi/actions", "actions/upload-artifact", "actions/download-artifact")


def action_inputs(workflows: dict[str, Workflow]) -> list[str]:
    """Every step of pulumi/actions, upload-artifact and download-artifact takes exactly the inputs
    ACTION_INPUTS lists for it."""
    problems, seen = [], set()
    for name, job_id, job in jobs(workflows):
        for step in job.get("steps", []):
            if not any(uses(step, action) for action in CHECKED_ACTIONS):
                continue
            key = (name, job_id, step_key(step))
            if key in seen:
                problems.append(f"{name}: {job_id}: two steps {key[2]!r}")
            seen.add(key)
            inputs, expected = set(step.get("with", {})), ACTION_INPUTS.get(key)
            if expected is None:
                problems.append(f"{name}: {job_id}: {key[2]!r} is not in ACTION_INPUTS")
            elif inputs != expected:
                problems.append(f"{name}: {job_id}: {key[2]!r} takes {sorted(inputs - expected)} more, "
                                f"{sorted(expected - inputs)} less")
    problems += [f"{name}: {job_id}: no step {step!r}" for name, job_id, step in sorted(set(ACTION_INPUTS) - seen)]
    return problems


# What each step that runs Pulumi has in its environment, by (workflow, job, step name): a variable
# added (PULUMI_SKIP_CHECKPOINTS, PULUMI_EXPERIMENTAL, PULUMI_BACKEND_URL, ...) or dropped is a change
# made here too, on purpose. Nothing sets variables for a whole job or workflow, and only the SAS
# steps write $GITHUB_ENV (the SAS alone), so a step's `env` is all it gets beyond the runner's own.
ARM = {"ARM_USE_OIDC", "ARM_CLIENT_ID", "ARM_TENANT_ID", "ARM_SUBSCRIPTION_ID"}
PASSPHRASE = {"PULUMI_CONFIG_PASSPHRASE"}
PULUMI_ENV: dict[tuple[str, str, str], set[str]] = {
    ("preview.yml", "preview", "pulumi preview"): {"STACK", "BACKEND_URL", "MESSAGE"} | PASSPHRASE | ARM,
    ("deploy.yml", "plan", "pulumi preview --save-plan"): PLAN_INPUTS_ENV | PASSPHRASE | ARM,
    ("deploy.yml", "apply", "pulumi up --plan"): PASSPHRASE | ARM | set(FRESH_LOGIN_ENV),
    ("drift.yml", "drift", "pulumi preview --refresh --expect-no-changes"): PASSPHRASE | ARM,
    ("runbook.yml", "runbook", "pulumi cancel, then the pending operations"): {"STACK", "BACKEND_URL"} | PASSPHRASE,
    ("runbook.yml", "runbook", "pulumi refresh"): PASSPHRASE | ARM,
}
PINNED_VALUES = {"PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}", "ARM_USE_OIDC": "true",
                 "ARM_TENANT_ID": "${{ vars.AZURE_TENANT_ID }}",
                 "ARM_SUBSCRIPTION_ID": "${{ vars.AZURE_SUBSCRIPTION_ID }}", **FRESH_LOGIN_ENV,
                 "RENEW_REGISTRY_TOKEN": f"${{{{ inputs.{RENEW_INPUT} }}}}"}
SAS_HANDOVER = 'echo "AZURE_STORAGE_SAS_TOKEN=$sas" >> "$GITHUB_ENV"'


def pulumi_environments(workflows: dict[str, Workflow]) -> list[str]:
    """Every step that runs Pulumi (an action step with a command, a shell step running the CLI) has
    exactly the environment PULUMI_ENV lists for it, with PINNED_VALUES' values; no workflow or job
    sets `env`; only the SAS steps write $GITHUB_ENV or $GITHUB_PATH, with SAS_HANDOVER alone."""
    problems, seen = [], set()
    for name, workflow in workflows.items():
        if "env" in workflow:
            problems.append(f"{name} sets env for every job: {workflow['env']}")
    for name, job_id, job in jobs(workflows):
        if "env" in job:
            problems.append(f"{name}: {job_id} sets env for every step: {job['env']}")
        for step in job.get("steps", []):
            script = step.get("run", "")
            handover = [line.strip() for line in script.splitlines() if re.search(r"GITHUB_ENV|GITHUB_PATH", line)]
            if handover and (handover != [SAS_HANDOVER] or not step.get("name", "").startswith("State container SAS")):
                problems.append(f"{name}: {job_id}: {step_key(step)!r} writes {handover}")
            runs = shell_invocations(script) or (uses(step, "pulumi/actions") and "command" in step.get("with", {}))
            if not runs:
                continue
            key = (name, job_id, step_key(step))
            seen.add(key)
            env = step.get("env", {})
            if key not in PULUMI_ENV:
                problems.append(f"{key}: runs Pulumi and is not in PULUMI_ENV")
            elif set(env) != PULUMI_ENV[key]:
                problems.append(f"{key}: env {sorted(set(env) - PULUMI_ENV[key])} more, "
                                f"{sorted(PULUMI_ENV[key] - set(env))} less")
            problems += [f"{key}: {variable}={env[variable]!r}" for variable, value in PINNED_VALUES.items()
                         if variable in env and env[variable] != value]
    problems += [f"{key}: no such step" for key in sorted(set(PULUMI_ENV) - seen)]
    # The fresh Azure CLI login is asked for in apply's `up` alone (anywhere else the program's `az`
    # commands keep the CLI's login).
    opt_ins = [(name, job_id, step_key(step)) for name, job_id, job in jobs(workflows)
               for step in job.get("steps", []) if FRESH_LOGIN_OPT_IN in text(step)]
    if opt_ins != [("deploy.yml", "apply", "pulumi up --plan")]:
        problems.append(f"{FRESH_LOGIN_OPT_IN} is set in {opt_ins}, not in apply's up alone")
    return problems


def nothing_continues_on_error(workflows: dict[str, Workflow]) -> list[str]:
    """No job or step has `continue-on-error` (any value), and no action is given such an input: a
    failed test, plan, preview or drift check must fail its job and what needs it."""
    problems = []
    for name, job_id, job in jobs(workflows):
        if "continue-on-error" in job:
            problems.append(f"{name}: {job_id} continues on error")
        for step in job.get("steps", []):
            if "continue-on-error" in step or "continue-on-error" in step.get("with", {}):
                problems.append(f"{name}: {job_id}: {step_key(step)!r} continues on error")
    return problems


# Every `if:` of every job (step None) and step, as written: a condition edited anywhere (an
# `&& false` added, a `failure()` for an `always() && !success()`) is a change made here too.
PREVIEWED = "steps.gate.outputs.preview == 'true'"
ON_MAIN = "github.ref == 'refs/heads/main'"
CONDITIONS: dict[tuple[str, str, str | None], str] = {
    ("deploy.yml", "test", None): ON_MAIN,
    ("deploy.yml", "codeowners", None): ON_MAIN,
    ("deploy.yml", "plan", "AWS credentials (OIDC, the read-only preview role)"): "matrix.stack == 'aws'",
    ("deploy.yml", "plan", "Azure login (OIDC, the read-only preview identity)"): "matrix.stack == 'azure'",
    ("deploy.yml", "plan", "State container SAS (user delegation, read-only)"): "matrix.stack == 'azure'",
    ("deploy.yml", "apply", "AWS credentials (OIDC, the deployment role)"): "matrix.stack == 'aws'",
    ("deploy.yml", "apply", "Azure login (OIDC, the deployment identity)"): "matrix.stack == 'azure'",
    ("deploy.yml", "apply", "State container SAS (user delegation, read-write)"): "matrix.stack == 'azure'",
    ("drift.yml", "drift", None): ON_MAIN,
    ("drift.yml", "drift", "AWS credentials (OIDC, the read-only refresh role)"): "matrix.stack == 'aws'",
    ("drift.yml", "drift", "Azure login (OIDC, the read-only refresh identity)"): "matrix.stack == 'azure'",
    ("drift.yml", "drift", "State container SAS (user delegation, read-only)"): "matrix.stack == 'azure'",
    ("drift.yml", "drift", "Open or update the drift issue"): "always() && !success()",
    ("preview.yml", "preview", "actions/checkout"): PREVIEWED,
    ("preview.yml", "preview", "The commit holds nothing .gitignore ignores"): PREVIEWED,
    ("preview.yml", "preview", "actions/setup-python"): PREVIEWED,
    ("preview.yml", "preview", "Create ./venv and policy/venv"): PREVIEWED,
    ("preview.yml", "preview", "AWS credentials (OIDC, the read-only preview role)"):
        f"{PREVIEWED} && matrix.stack == 'aws'",
    ("preview.yml", "preview", "Azure login (OIDC, the read-only preview identity)"):
        f"{PREVIEWED} && matrix.stack == 'azure'",
    ("preview.yml", "preview", "State container SAS (user delegation, read-only)"):
        f"{PREVIEWED} && matrix.stack == 'azure'",
    ("preview.yml", "preview", "Install the Pulumi CLI"): PREVIEWED,
    ("preview.yml", "preview", "pulumi preview"): PREVIEWED,
    ("preview.yml", "preview", "Keep the output for the comment"):
        "${{ !cancelled() && (steps.preview.outcome == 'success' || steps.preview.outcome == 'failure') }}",
    ("preview.yml", "comment", None): "always() && github.event.pull_request.head.repo.full_name == github.repository"
                                      " && github.actor != 'dependabot[bot]'",
    ("runbook.yml", "runbook", None): ON_MAIN,
    ("runbook.yml", "runbook", "AWS credentials (OIDC, the deployment role)"): "inputs.stack == 'aws'",
    ("runbook.yml", "runbook", "Azure login (OIDC, the deployment identity)"): "inputs.stack == 'azure'",
    ("runbook.yml", "runbook", "State container SAS (user delegation, read-write)"): "inputs.stack == 'azure'",
    ("runbook.yml", "runbook", "Install the Pulumi CLI"): "inputs.operation == 'unlock'",
    ("runbook.yml", "runbook", "No apply of the stack runs"): "inputs.operation == 'unlock'",
    ("runbook.yml", "runbook", "pulumi cancel, then the pending operations"): "inputs.operation == 'unlock'",
    ("runbook.yml", "runbook", "pulumi refresh"): "inputs.operation == 'refresh'",
}


def conditions_as_written(workflows: dict[str, Workflow]) -> list[str]:
    """Every job's and step's `if:` equals CONDITIONS' (none where CONDITIONS has none)."""
    problems, seen = [], set()
    for name, job_id, job in jobs(workflows):
        for key, item in [((name, job_id, None), job)] + [((name, job_id, step_key(step)), step)
                                                             for step in job.get("steps", [])]:
            if key in seen:
                problems.append(f"{key}: twice")
            seen.add(key)
            if item.get("if") != CONDITIONS.get(key):
                problems.append(f"{key}: if {item.get('if')!r}, not {CONDITIONS.get(key)!r}")
    problems += [f"{key}: no such job or step" for key in set(CONDITIONS) - seen]
    return problems


CHECKS: dict[str, Check] = {
    "plan_then_apply": plan_then_apply,
    "checkouts_take_the_runs_commit": checkouts_take_the_runs_commit,
    "apply_takes_the_planned_file_on_the_newest_commit": apply_takes_the_planned_file_on_the_newest_commit,
    "registry_token_renewal": registry_token_renewal,
    "codeowners_checked_on_main": codeowners_checked_on_main,
    "pull_request_checks": pull_request_checks,
    "aws_sessions_last_the_job": aws_sessions_last_the_job,
    "hashed_installs": hashed_installs,
    "pulumi_environments": pulumi_environments,
    "deploys_need_the_tests": deploys_need_the_tests,
    "drift_detection": drift_detection,
    "no_environment_on_pull_requests": no_environment_on_pull_requests,
    "read_only_identities": read_only_identities,
    "preview_said_on_the_pull_request": preview_said_on_the_pull_request,
    "messages_name_the_commit": messages_name_the_commit,
    "concurrency_never_cancels_an_apply": concurrency_never_cancels_an_apply,
    "azure_state_through_a_sas": azure_state_through_a_sas,
    "caches": caches,
    "runbook": runbook,
    "committed_ignored_files_refused": committed_ignored_files_refused,
    "no_plan_beside_an_apply": no_plan_beside_an_apply,
    "action_inputs": action_inputs,
    "nothing_continues_on_error": nothing_continues_on_error,
    "conditions_as_written": conditions_as_written,
}


# --- the tests ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workflows() -> dict[str, Workflow]:
    return load_all()


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_the_workflows_pass(workflows, check: str):
    assert CHECKS[check](workflows) == []


# apply's download of the plan (name and path), to add an input after
DOWNLOAD_PLAN = r"^(          name: plan-\$\{\{ matrix.stack \}\}\n          path: \$\{\{ runner.temp \}\}/plan)$"

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
    ("deploys_need_the_tests", "deploy.yml", r"^    needs: \[test, codeowners\]$", "    needs: [codeowners]"),
    ("deploys_need_the_tests", "deploy.yml", r"^    needs: plan$", "    needs: plan\n    if: always()"),
    ("deploys_need_the_tests", "deploy.yml", r"^        run: ./scripts/test$", "        run: echo skipped"),
    # drift
    ("drift_detection", "drift.yml", r"^          refresh: true$", "          refresh: false"),
    ("drift_detection", "drift.yml", r"^          expect-no-changes: true\n", ""),
    ("drift_detection", "drift.yml", r"^  schedule:\n    - cron: .*\n", ""),
    ("drift_detection", "drift.yml", r"^      issues: write.*$", "      issues: read"),
    ("drift_detection", "drift.yml", r"^        if: always\(\) && !success\(\)$", "        if: failure()"),
    # environments stay off pull requests
    ("no_environment_on_pull_requests", "preview.yml", r"^    runs-on: ubuntu-24.04$",
     "    runs-on: ubuntu-24.04\n    environment: ${{ matrix.stack }}"),
    ("no_environment_on_pull_requests", "deploy.yml", r"^  workflow_dispatch:$",
     "  workflow_dispatch:\n  pull_request:"),
    # identities
    ("read_only_identities", "preview.yml", r"vars.AWS_PREVIEW_ROLE_ARN", "vars.AWS_DEPLOY_ROLE_ARN"),
    ("read_only_identities", "deploy.yml", r"client-id: \$\{\{ vars.AZURE_PREVIEW_CLIENT_ID \}\}",
     "client-id: ${{ vars.AZURE_DEPLOY_CLIENT_ID }}"),
    ("read_only_identities", "deploy.yml", r"^    needs: \[test, codeowners\]$",
     "    needs: [test, codeowners]\n    environment: ${{ matrix.stack }}"),
    ("read_only_identities", "drift.yml", r"ARM_CLIENT_ID: \$\{\{ vars.AZURE_DRIFT_CLIENT_ID \}\}",
     "ARM_CLIENT_ID: ${{ vars.AZURE_DEPLOY_CLIENT_ID }}"),
    # finding 1 of review 2: the drift check back on the pull requests' preview identity
    ("read_only_identities", "drift.yml", r"client-id: \$\{\{ vars.AZURE_DRIFT_CLIENT_ID \}\}",
     "client-id: ${{ vars.AZURE_PREVIEW_CLIENT_ID }}"),
    ("read_only_identities", "preview.yml", r"client-id: \$\{\{ vars.AZURE_PREVIEW_CLIENT_ID \}\}",
     "client-id: ${{ vars.AZURE_DRIFT_CLIENT_ID }}"),
    ("read_only_identities", "runbook.yml", r"vars.AWS_DEPLOY_ROLE_ARN", "vars.AWS_PREVIEW_ROLE_ARN"),
    # the preview said on the pull request, by a job that runs none of its code
    ("preview_said_on_the_pull_request", "preview.yml", r"^      pull-requests: read.*$", "      pull-requests: write"),
    ("preview_said_on_the_pull_request", "preview.yml", r"^(      - name: pulumi preview\n        id: preview\n.*\n"
     r"        env:\n)", r"\1          GH_TOKEN: ${{ github.token }}\n"),
    ("preview_said_on_the_pull_request", "preview.yml", r"^    if: always\(\) && ", "    if: success() && "),
    ("preview_said_on_the_pull_request", "preview.yml", r"^    needs: preview\n", ""),
    ("preview_said_on_the_pull_request", "preview.yml", r"^      actions: read.*\n", "      actions: write\n"),
    ("preview_said_on_the_pull_request", "preview.yml", r"^(    steps:\n)(      # Nothing when the preview saved)",
     r"\1      - uses: actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # v6.0.2\n"
     r"        with:\n          persist-credentials: false\n\n\2"),
    ("preview_said_on_the_pull_request", "preview.yml", r"--method PATCH", "--method GET"),
    ("preview_said_on_the_pull_request", "preview.yml", r"gh api --paginate (\"repos/\$REPOSITORY/issues)",
     r"gh api \1"),
    ("preview_said_on_the_pull_request", "preview.yml", r'if \[ "\$head" != "\$HEAD_SHA" \]; then', "if false; then"),
    ("preview_said_on_the_pull_request", "preview.yml", r"\.user == \"github-actions\[bot\]\" and ", ""),
    ("preview_said_on_the_pull_request", "preview.yml", r"HEAD_SHA: \$\{\{ github.event.pull_request.head.sha \}\}",
     "HEAD_SHA: ${{ github.sha }}"),
    ("preview_said_on_the_pull_request", "preview.yml", r"name: preview-\$\{\{ matrix.stack \}\}",
     "name: output-${{ matrix.stack }}"),
    # the commit in the message
    ("messages_name_the_commit", "deploy.yml", r"message: deploy \$\{\{ github.sha \}\}", "message: deploy"),
    ("messages_name_the_commit", "preview.yml", r"^          MESSAGE: .*\n", ""),
    ("messages_name_the_commit", "preview.yml", r' --message "\$MESSAGE"', ""),
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
    # caches: none where credentials are, pip's (hash-checked) alone in the pull request's preview
    ("caches", "deploy.yml", r"^(  plan:\n(?:.*\n)*?          python-version: \"3.11\"\n)",
     r"\1          cache: pip\n"),
    ("caches", "drift.yml", r"^(      - name: Create ./venv and policy/venv\n)",
     r"      - uses: actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae # v5.0.5\n        with:\n"
     r"          path: ~/.pulumi/plugins\n          key: plugins\n\n\1"),
    ("caches", "preview.yml", r"^            \.github/locks/requirements\.txt$", "            requirements.txt"),
    # packages from the hashed locks
    ("hashed_installs", "runbook.yml", r"--require-hashes ", ""),
    ("hashed_installs", "deploy.yml", r"-r \.github/locks/requirements\.txt", "-r requirements.txt"),
    ("hashed_installs", "drift.yml", r"^(      - name: pulumi preview --refresh)",
     r"      - run: venv/bin/python -m pip install pulumi-aws\n\n\1"),
    # the runbook
    ("runbook", "runbook.yml", r"pulumi cancel --non-interactive --yes", "pulumi cancel --non-interactive"),
    ("runbook", "runbook.yml", r"^    environment: \$\{\{ inputs.stack \}\}\n", ""),
    ("runbook", "runbook.yml", r"group: runbook-\$\{\{ inputs.stack \}\}", "group: deploy-${{ inputs.stack }}"),
    ("runbook", "runbook.yml", r"^      - name: No apply of the stack runs$", "      - name: Say what runs"),
    ("runbook", "runbook.yml", r"for status in in_progress queued waiting", "for status in in_progress"),
    # M1: a shell `pulumi up` in apply beside the plan's step; any shell Pulumi in deploy.yml
    ("plan_then_apply", "deploy.yml", r"^(      - name: pulumi up --plan\n)",
     r"      - name: up\n        run: pulumi up --yes --skip-preview --stack aws\n\n\1"),
    ("plan_then_apply", "deploy.yml", r"^        run: mkdir -p \"\$RUNNER_TEMP/plan\"$",
     '        run: mkdir -p "$RUNNER_TEMP/plan" && venv/bin/pulumi stack export > /dev/null'),
    # M2, M6, M9: an input more on an artifact step or a Pulumi step
    ("action_inputs", "deploy.yml", DOWNLOAD_PLAN, r"\1\n          run-id: ${{ github.event.inputs.run }}"),
    ("action_inputs", "deploy.yml", DOWNLOAD_PLAN, r"\1\n          github-token: ${{ github.token }}"),
    ("action_inputs", "deploy.yml", r"^(          policyPacks: policy)$",
     r"\1\n          policyPackConfigs: policy-config.json"),
    ("action_inputs", "deploy.yml", r"^(          message: deploy .*)$",
     r"\1\n          exclude: urn:pulumi:aws::mlflow::aws:rds/instance:Instance::mlflow-db"),
    ("action_inputs", "deploy.yml", r"^(          message: deploy .*)$",
     r"\1\n          target: urn:pulumi:aws::mlflow::aws:ecs/service:Service::mlflow"),
    ("action_inputs", "preview.yml", r"^(          pattern: preview-.*)$",
     r"\1\n          run-id: ${{ github.run_id }}"),
    ("action_inputs", "drift.yml", r"^          expect-no-changes: true\n", ""),
    # M3, M7, M8: a failure that passes
    ("nothing_continues_on_error", "deploy.yml", r"^(    name: test\n)", r"\1    continue-on-error: true\n"),
    ("nothing_continues_on_error", "preview.yml", r"^(      - name: pulumi preview\n)",
     r"\1        continue-on-error: true\n"),
    ("nothing_continues_on_error", "drift.yml", r"^(      - name: pulumi preview --refresh --expect-no-changes\n)",
     r"\1        continue-on-error: true\n"),
    ("nothing_continues_on_error", "deploy.yml", r"^(          message: deploy .*)$",
     r"\1\n          continue-on-error: true"),
    # review 2, M1: the plan checks out main, not the run's commit; any ref or repository anywhere
    ("checkouts_take_the_runs_commit", "deploy.yml",
     r"(  plan:\n(?:.*\n)*?      - uses: actions/checkout@\S+ # v6.0.2\n        with:\n)", r"\1          ref: main\n"),
    ("checkouts_take_the_runs_commit", "runbook.yml", r"^          persist-credentials: false$",
     "          persist-credentials: false\n          repository: someone/fork"),
    # review 2, M3: apply's backend, CLI or environment not the plan's
    ("plan_then_apply", "deploy.yml", r"(command: up\n(?:.*\n)*?          cloud-url: ).*",
     r"\1${{ vars.PULUMI_BACKEND_URL_AZURE }}"),
    ("plan_then_apply", "deploy.yml", r"(command: up\n(?:.*\n)*?          pulumi-version: ).*", r"\g<1>3.271.0"),
    ("plan_then_apply", "deploy.yml", r"(approved plan\)\n(?:.*\n)*?          ARM_TENANT_ID: ).*",
     r"\1${{ vars.OTHER_TENANT_ID }}"),
    ("plan_then_apply", "deploy.yml", r"(--save-plan \"\$PLAN\")", r"\1 --target-dependents"),
    # review 2, M25: a variable more in the up step's environment, or for the whole job
    ("pulumi_environments", "deploy.yml", r"(deploy \$\{\{ github.sha \}\}(?:.*\n)*?        env:\n)",
     r'\1          PULUMI_SKIP_CHECKPOINTS: "true"\n'),
    ("pulumi_environments", "runbook.yml", r"^(    runs-on: ubuntu-24.04\n)",
     r'\1    env:\n      PULUMI_EXPERIMENTAL: "true"\n'),
    ("pulumi_environments", "deploy.yml", r"^(          echo \"main is still at \$GITHUB_SHA.\")$",
     r'\1\n          echo "PULUMI_SKIP_CHECKPOINTS=true" >> "$GITHUB_ENV"'),
    ("pulumi_environments", "preview.yml", r"^          MESSAGE: (.*)$",
     r"          MESSAGE: \1\n          PULUMI_BACKEND_URL: file:///tmp"),
    # review 2, M4: the deploy role's session shorter than apply may run
    ("aws_sessions_last_the_job", "deploy.yml", r"          role-duration-seconds: 7200\n", ""),
    ("aws_sessions_last_the_job", "runbook.yml", r"^    timeout-minutes: 60$", "    timeout-minutes: 90"),
    # review 2, M2: a drift cron that never fires, or not every day
    ("drift_detection", "drift.yml", r'cron: "17 3 \* \* \*"', 'cron: "0 0 31 2 *"'),
    ("drift_detection", "drift.yml", r'cron: "17 3 \* \* \*"', 'cron: "17 3 * * 1"'),
    # review 2, findings 4 and 8: the plan file and the newest commit
    ("apply_takes_the_planned_file_on_the_newest_commit", "deploy.yml",
     r'if \[ -z "\$planned" \] \|\| \[ "\$sha256" != "\$planned" \]; then', "if false; then"),
    ("apply_takes_the_planned_file_on_the_newest_commit", "deploy.yml", r"^      plan-sha256-azure: .*\n", ""),
    ("apply_takes_the_planned_file_on_the_newest_commit", "deploy.yml", r"git/ref/heads/main\" --jq \.object\.sha",
     'commits/$GITHUB_SHA" --jq .sha'),
    # review 3, finding 4: `commits/main` takes a tag named `main` as readily as the branch
    ("apply_takes_the_planned_file_on_the_newest_commit", "deploy.yml", r"git/ref/heads/main\" --jq \.object\.sha",
     'commits/main" --jq .sha'),
    ("apply_takes_the_planned_file_on_the_newest_commit", "deploy.yml", r"git/ref/heads/main\" --jq \.object\.sha",
     'commits/heads/main" --jq .sha'),
    ("apply_takes_the_planned_file_on_the_newest_commit", "deploy.yml",
     r"^(      - name: The run's commit is the head of main\n)", r"\1        if: github.event_name == 'push'\n"),
    # M5: a condition edited
    ("conditions_as_written", "preview.yml", r"^(      - name: pulumi preview\n        id: preview\n        if: .*)$",
     r"\1 && false"),
    ("conditions_as_written", "deploy.yml", r"^(    needs: plan)$", r"\1\n    if: github.actor == 'someone'"),
    ("conditions_as_written", "drift.yml", r"^        if: matrix.stack == 'aws'$", "        if: false"),
    # review 3, finding 2: a registry token renewed by a URN someone types, or replaced in the plan alone
    ("registry_token_renewal", "deploy.yml", r"^(      renew-registry-token:\n)",
     r"      urn:\n        description: the URN to replace\n        type: string\n\1"),
    ("registry_token_renewal", "deploy.yml", r"^(          replace: ).*$", r"\1${{ github.event.inputs.urn }}"),
    ("registry_token_renewal", "deploy.yml", r"^          replace: .*\n", ""),
    ("plan_then_apply", "deploy.yml", r"^          replace: .*\n", ""),
    ("registry_token_renewal", "deploy.yml", r"^(        type: )choice$", r"\1string"),
    ("registry_token_renewal", "deploy.yml", r'set -- --replace "\$urn"', 'set -- --replace "$RENEW_REGISTRY_TOKEN"'),
    ("registry_token_renewal", "deploy.yml", r'\[ "\$count" -ne 1 \]', '[ "$count" -lt 1 ]'),
    ("registry_token_renewal", "deploy.yml", r' and \(\.urn \| endswith\("-registry-token"\)\)', ""),
    ("registry_token_renewal", "deploy.yml", r'^          echo "replace=\$urn" >> "\$GITHUB_OUTPUT"$',
     '          echo "replace=" >> "$GITHUB_OUTPUT"'),
    ("registry_token_renewal", "deploy.yml", r"^(          RENEW_REGISTRY_TOKEN: ).*$", r"\1'true'"),
    ("registry_token_renewal", "deploy.yml", r'(--save-plan "\$PLAN" "\$@")', r'\1 --replace "$urn"'),
    # review 3, finding 3: the fresh Azure CLI login's variables missing from up, or another identity's
    ("plan_then_apply", "deploy.yml", r"^          AZURE_CLIENT_ID: .*\n", ""),
    ("read_only_identities", "deploy.yml", r"^(          AZURE_CLIENT_ID: ).*$",
     r"\1${{ vars.AZURE_PREVIEW_CLIENT_ID }}"),
    ("pulumi_environments", "deploy.yml", r"^(          AZURE_TENANT_ID: ).*$", r"\1${{ vars.OTHER_TENANT_ID }}"),
    # review 3, finding 1: the code owners check off main, after the plan, or passing the placeholder
    ("codeowners_checked_on_main", "deploy.yml", r"^    needs: \[test, codeowners\]$", "    needs: test"),
    ("codeowners_checked_on_main", "deploy.yml", r"grep -nE '\^\[\^#\]\*@OWNER/' \.github/CODEOWNERS; then",
     "false; then"),
    ("codeowners_checked_on_main", "deploy.yml", r"\?ref=\$GITHUB_SHA", ""),
    ("conditions_as_written", "deploy.yml", r"^(    name: code owners\n)    if: .*\n", r"\1"),
    # review 3, finding 7: a required check filtered by path, a superseded test run kept, a comment cancelled
    ("pull_request_checks", "test.yml", r"branches: \[main\]",
     "branches: [main]\n    paths-ignore: ['**.md', '.github/**']"),
    ("pull_request_checks", "preview.yml", r"branches: \[main\]", "branches: [main]\n    paths: ['components/**']"),
    ("pull_request_checks", "preview.yml", r"(preview-comment-.*\n      cancel-in-progress: )false", r"\1true"),
    ("pull_request_checks", "test.yml", r"cancel-in-progress: true", "cancel-in-progress: false"),
    ("pull_request_checks", "test.yml", r"^  pull_request:\n", "  pull_request:\n    types: [opened]\n"),
    # review 4, finding 1: a commit's own virtualenv (or a module .gitignore hides) run in CI
    ("committed_ignored_files_refused", "drift.yml",
     r"^      - name: The commit holds nothing \.gitignore ignores\n(?:.*\n)*?          fi\n\n", ""),
    ("committed_ignored_files_refused", "test.yml", r"git ls-files -ci --exclude-standard\n *", ""),
    ("committed_ignored_files_refused", "deploy.yml",
     r"\n *git ls-files -- venv policy/venv rehearsal/azurite/node_modules", ""),
    # workflow review 5, item 2: what the commit's own .gitignore rules cannot vouch for
    ("committed_ignored_files_refused", "test.yml", r"\n *git ls-files -ci -x venv/.*", ""),
    ("committed_ignored_files_refused", "preview.yml", r"\n *git ls-files -s \|.*", ""),
    ("committed_ignored_files_refused", "drift.yml", r"\n *git ls-files -- '\*/\.gitignore'", ""),
    ("committed_ignored_files_refused", "runbook.yml", r"virtualenv: venv'", "virtualenv: '"),
    ("committed_ignored_files_refused", "preview.yml",
     r"^(      - name: The commit holds nothing \.gitignore ignores\n)        if: .*\n", r"\1"),
    ("committed_ignored_files_refused", "runbook.yml", r"(--cached <path>\)\.\"\n(?:.*\n))            exit 1\n", r"\1"),
    ("committed_ignored_files_refused", "deploy.yml",
     r"(  apply:\n(?:.*\n)*?)      # Nothing \.gitignore leaves out(?:.*\n)*?          fi\n\n", r"\1"),
    ("hashed_installs", "deploy.yml", r"python -m venv --clear venv", "python -m venv venv"),
    ("hashed_installs", "preview.yml", r"python -m venv --clear policy/venv", "python -m venv policy/venv"),
    # review 4, finding 2: the fresh Azure CLI login asked for beyond apply's up, or not there
    ("pulumi_environments", "deploy.yml", r'^          MLFLOW_FRESH_AZ_LOGIN: "1"\n', ""),
    ("pulumi_environments", "drift.yml", r'^(          ARM_USE_OIDC: "true"\n)',
     r'\1          MLFLOW_FRESH_AZ_LOGIN: "1"\n'),
    ("pulumi_environments", "runbook.yml", r"^(          REFUSED: .*\n)", r'\1          MLFLOW_FRESH_AZ_LOGIN: "1"\n'),
    # review 4, finding 3: the renewal for both stacks, or on a push
    ("registry_token_renewal", "deploy.yml", r"options: \[none, aws, azure\]", "options: [none, both, aws, azure]"),
    ("registry_token_renewal", "deploy.yml", r"default: none", "default: aws"),
    ("registry_token_renewal", "deploy.yml", r'\[ "\$RENEW_REGISTRY_TOKEN" = "\$STACK" \]',
     '[ "$RENEW_REGISTRY_TOKEN" != "none" ]'),
    ("registry_token_renewal", "deploy.yml", r'\[ "\$RENEW_REGISTRY_TOKEN" = "\$STACK" \]',
     '[ -n "$RENEW_REGISTRY_TOKEN" ]'),
    ("registry_token_renewal", "deploy.yml", r"^(          STACK: \$\{\{ matrix.stack \}\}\n          BACKEND_URL)",
     r"          STACK: aws\n          BACKEND_URL"),
    # review 4, finding 4: a plan beside a running apply of its stack
    ("no_plan_beside_an_apply", "deploy.yml", r"^      actions: read # whether an apply.*\n", ""),
    ("no_plan_beside_an_apply", "deploy.yml", r'^              \[ "\$run" != "\$GITHUB_RUN_ID" \] \|\| continue\n', ""),
    ("no_plan_beside_an_apply", "deploy.yml", r'\.status == "in_progress" or \.status == "queued"',
     '.status == "in_progress"'),
    ("no_plan_beside_an_apply", "deploy.yml", r"^      - name: No apply of the stack runs$",
     "      - name: Say what runs"),
    ("no_plan_beside_an_apply", "deploy.yml", r"^(      - name: No apply of the stack runs\n)",
     r"\1        if: github.event_name == 'push'\n"),
    ("no_plan_beside_an_apply", "deploy.yml", r"^(          REFUSED: ).*$",
     r"\1${{ github.event.head_commit.message }}"),
    ("runbook", "runbook.yml", r'^              \[ "\$run" != "\$GITHUB_RUN_ID" \] \|\| continue\n', ""),
]


@pytest.mark.parametrize("check,name,pattern,replacement", BROKEN,
                         ids=[f"{check}-{index}" for index, (check, *_) in enumerate(BROKEN)])
def test_a_broken_copy_fails_the_check(workflows, check: str, name: str, pattern: str, replacement: str):
    assert CHECKS[check](broken(workflows, name, pattern, replacement)) != []


def test_every_check_is_shown_to_fail():
    assert {check for check, *_ in BROKEN} == set(CHECKS)
