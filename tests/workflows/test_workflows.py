"""The GitHub workflows (.github/workflows), checked offline: GitHub's schema (check-jsonschema's
vendored copy), zizmor's security audits, and what this project needs of them. Each outside check is
also fed a broken copy, so a clean result shows the check ran and can fail.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.program import REPO_ROOT
from tests.workflows.test_structure import IGNORED_CHECK
from tests.workflows.workflows import (
    GITHUB, WORKFLOWS, broken_file, jobs, load, load_all, pulumi_steps, step_named, steps)

BIN = Path(sys.executable).parent
PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s+(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>\S+)"
                         r"(?:\s+#\s*(?P<comment>\S+))?\s*$")


def tool(name: str, *args: str | Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    """A checker installed into the venv (requirements-dev.txt), run as a subprocess."""
    return subprocess.run([str(BIN / name), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def zizmor(*targets: Path) -> tuple[int, list[dict[str, Any]]]:
    """zizmor offline, at its strictest persona, with the repository's configuration."""
    result = tool("zizmor", "--offline", "--persona=auditor", "--format=json", "--config", GITHUB / "zizmor.yml",
                  *targets)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def pinned_version(requirements: str, package: str) -> str:
    for line in (REPO_ROOT / requirements).read_text().splitlines():
        if line.split("==")[0].strip() == package:
            return line.split("==", 1)[1].split("#")[0].strip()
    raise AssertionError(f"{package} is not pinned in {requirements}")


def broken_copy(tmp_path: Path, name: str, pattern: str, replacement: str) -> Path:
    return broken_file(tmp_path, name, pattern, replacement)


def test_the_workflows_exist():
    assert set(WORKFLOWS) == {"preview.yml", "deploy.yml", "test.yml", "drift.yml", "runbook.yml"}


# --- GitHub's schema ---------------------------------------------------------------------------------

def test_workflows_follow_githubs_schema():
    result = tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS.values())
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_configuration_follows_its_schema():
    result = tool("check-jsonschema", "--builtin-schema", "vendor.dependabot", GITHUB / "dependabot.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_an_unknown_key(tmp_path):
    broken = broken_copy(tmp_path, "preview.yml", r"^    runs-on:", "    runs_on:")
    result = tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", broken)
    assert result.returncode != 0
    assert "runs_on" in result.stdout + result.stderr


# --- zizmor -------------------------------------------------------------------------------------------

def test_zizmor_finds_nothing():
    """Everything it would report at any persona is fixed, or justified in .github/zizmor.yml."""
    returncode, findings = zizmor(GITHUB)
    assert (returncode, findings) == (0, []), json.dumps(findings, indent=1)[:3000]


@pytest.mark.parametrize("pattern,replacement,audit", [
    pytest.param(r"pulumi/actions@\S+ # \S+$", "pulumi/actions@v6", "unpinned-uses", id="unpinned-third-party-action"),
    pytest.param(r"actions/checkout@\S+ # \S+$", "actions/checkout@v6", "unpinned-uses", id="unpinned-github-action"),
    pytest.param(r"^          python -m venv --clear venv$",
                 "          echo \"${{ github.event.pull_request.title }}\"\n          python -m venv --clear venv",
                 "template-injection", id="pull-request-title-in-run"),
    pytest.param(r"^          persist-credentials: false$", "          fetch-depth: 1", "artipacked",
                 id="persisted-checkout-credentials"),
    pytest.param(r"^permissions: \{\}$", "permissions: write-all", "excessive-permissions", id="write-all"),
])
def test_zizmor_rejects_a_broken_copy(tmp_path, pattern: str, replacement: str, audit: str):
    returncode, findings = zizmor(broken_copy(tmp_path, "preview.yml", pattern, replacement))
    assert returncode != 0
    assert audit in {finding["ident"] for finding in findings}, [finding["ident"] for finding in findings]


# --- what this project needs of them ---------------------------------------------------------------------

def test_every_action_is_pinned_to_a_commit_with_its_version_named():
    """A tag can be moved to other code; a commit cannot. The comment tells Dependabot and readers the version."""
    pins: dict[str, set[str]] = {}
    for name, path in WORKFLOWS.items():
        for line in path.read_text().splitlines():
            if re.match(r"^\s*(?:-\s+)?uses:", line):
                match = PINNED_USES.match(line)
                assert match, f"{name}: {line.strip()}"
                assert re.fullmatch(r"[0-9a-f]{40}", match["ref"]), f"{name}: {line.strip()}"
                assert match["comment"] and re.fullmatch(r"v\d+(\.\d+){0,2}", match["comment"]), \
                    f"{name}: {line.strip()}"
                pins.setdefault(match["action"], set()).add(f"{match['ref']} {match['comment']}")
    assert {action for action, refs in pins.items() if len(refs) > 1} == set(), pins
    assert set(pins) == {"actions/checkout", "actions/setup-python", "pulumi/actions",
                         "actions/upload-artifact", "actions/download-artifact",
                         "aws-actions/configure-aws-credentials", "azure/login"}


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_least_privilege_and_no_persisted_credentials(name: str):
    workflow = load(name)
    assert workflow["permissions"] == {}, "nothing by default; each job names what it needs"
    for job_name, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict), job_name
        assert set(job["permissions"].values()) <= {"read", "write"}, job_name
        # Read the code where it is checked out; a job that checks out nothing has no `contents`.
        checks_out = any(step.get("uses", "").startswith("actions/checkout@") for step in job["steps"])
        assert job["permissions"].get("contents") == ("read" if checks_out else None), job_name
        assert "concurrency" in job or "concurrency" in workflow, job_name
    for step in steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
        assert "${{" not in step.get("run", ""), f"an expression in a shell script: {step.get('run')}"


def test_preview_runs_the_policy_pack_on_each_cloud_stack_of_a_pull_request():
    workflow = load("preview.yml")
    assert set(workflow["on"]) == {"pull_request"}
    job = workflow["jobs"]["preview"]
    assert job["name"] == "preview ${{ matrix.stack }}"  # the required checks `preview aws`, `preview azure`
    assert "if" not in job, "never skipped: a skipped required check counts as passed"
    assert job["strategy"]["matrix"]["stack"] == ["aws", "azure"]
    assert job["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "read"}
    assert job["concurrency"]["cancel-in-progress"] is True
    # The CLI from pulumi/actions (installed only: the action comments on nothing and runs nothing).
    [install] = pulumi_steps(job)
    assert install["with"] == {"pulumi-version": pinned_version("requirements.txt", "pulumi")}
    preview = step_named(job, "pulumi preview")
    assert preview["id"] == "preview"
    for needed in ('pulumi login --non-interactive "$BACKEND_URL"', "pulumi preview --non-interactive",
                   "--diff", '--stack "$STACK"', "--policy-pack policy", '--message "$MESSAGE"',
                   '2>&1 | tee "$output" || status=$?', 'exit "$status"', '>> "$GITHUB_STEP_SUMMARY"'):
        assert needed in preview["run"], needed
    assert preview["env"]["STACK"] == "${{ matrix.stack }}"
    assert preview["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    assert "vars." in preview["env"]["BACKEND_URL"]
    # Every step after the gate runs only when it lets the preview run.
    gate, *rest = job["steps"]
    assert gate["id"] == "gate"
    assert all("steps.gate.outputs.preview == 'true'" in step.get("if", "")
               or "steps.preview.outcome" in step.get("if", "") for step in rest)


def test_the_comment_job_names_the_project_as_pulumi_yaml_does():
    """The comment job checks out nothing: it has the project's name (in the comment's heading, as
    pulumi/actions wrote it) from its env."""
    comment = step_named(load("preview.yml")["jobs"]["comment"], "Say on the pull request")
    assert comment["env"]["PROJECT"] == yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["name"]


OWNER = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:/[A-Za-z0-9._-]+)?")
# The lines that leave a path unowned, as written: what nothing deploys, runs in CI or gates a
# deployment with. Everything else is owned, by the first line (`*`) at least.
UNOWNED = {"/bench/"}
# What a pull request could add to run its code in CI or in the deployment without a code owner's
# review, were it unowned (review 4, finding 1): its own virtualenv (a venv/bin/python that
# scripts/test used as it found it, a .pth that site-packages runs at start-up), bytecode, a root
# module ahead of the packages (Pulumi runs the program with the root first on sys.path), pytest's
# own configuration or a conftest, a .gitignore line (tests/workflows listed the root minus what it
# ignores), a new top-level directory.
ATTACK_PATHS = ("venv/bin/python", "venv/lib/python3.11/site-packages/x.pth", "policy/venv/bin/python",
                "rehearsal/azurite/node_modules/.bin/azurite-blob", "pydantic.py", "sitecustomize.py",
                "components/__pycache__/config.cpython-311.pyc", "x.pyc", "conftest.py", "pytest.ini",
                ".gitignore", "new-directory/x.py", ".github/CODEOWNERS")


def codeowners(source: str) -> list[tuple[str, list[str]]]:
    """(pattern, owners) of each line of a CODEOWNERS file, in order (comments and blank lines left out)."""
    lines = [line.split("#", 1)[0].split() for line in source.splitlines()]
    return [(pattern, owners) for pattern, *owners in filter(None, lines)]


def owned_by(owners: list[tuple[str, list[str]]], path: str) -> list[str]:
    """Who owns `path` (a path of the repository, relative, `/` separated), as GitHub reads CODEOWNERS
    (gitignore rules, the last matching line winning), for the forms used here: `*` everything,
    `/dir/` everything under a directory at the root, `/glob` a file at the root, `glob` a file's name
    anywhere."""
    found: list[str] = []
    for pattern, who in owners:
        if pattern.startswith("/") and pattern.endswith("/"):
            matches = path.startswith(pattern[1:])
        elif pattern.startswith("/"):
            matches = "/" not in path and fnmatch.fnmatchcase(path, pattern[1:])
        else:
            matches = "/" not in pattern and fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
        if matches:
            found = who
    return found


def tracked_paths() -> list[str]:
    """Every file of the repository, as `git ls-files` lists them: what .gitignore leaves out counts too
    (a pull request can force-add it, or add a .gitignore line for its own file). Without git (a copy
    of the tree), every file under the root but .git."""
    result = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z"], capture_output=True, text=True)
    if result.returncode == 0 and result.stdout:
        return [path for path in result.stdout.split("\0") if path]
    return [str(path.relative_to(REPO_ROOT)) for path in REPO_ROOT.rglob("*")
            if ".git" not in path.relative_to(REPO_ROOT).parts[:1] and not path.is_dir()]


def codeowners_problems(source: str, paths: list[str] | None = None) -> list[str]:
    """Branch protection's "Require review from Code Owners" needs an owner for every path that decides
    what CI runs, what gates a deployment and what is deployed, which is every path but UNOWNED: the
    first line is `*` with owners; every line names owners, each `@user` or `@org/team` (the
    placeholder @OWNER/platform-team is such a team: deploy.yml's `code owners`, not this test, refuses
    it on main), but the UNOWNED lines, which name none; every path of `paths` (the top-level entries
    of what git tracks, by default) and ATTACK_PATHS has an owner (README.md too: the tests run its
    example), bench/ none."""
    owners = codeowners(source)
    problems = []
    if not owners or owners[0][0] != "*" or not owners[0][1]:
        problems.append(f"the first line is {owners[:1]}, not `*` with owners")
    problems += [f"{pattern}: owners {who}" for pattern, who in owners
                 if (pattern in UNOWNED and who) or (pattern not in UNOWNED and not who)
                 or not all(OWNER.fullmatch(owner) for owner in who)]
    top_level = {path.split("/", 1)[0] + ("/x" if "/" in path else "") for path in
                 (tracked_paths() if paths is None else paths)}
    needed = set(ATTACK_PATHS) | {path for path in top_level
                                  if "/" + path.rsplit("/x", 1)[0] + ("/" if path.endswith("/x") else "")
                                  not in UNOWNED}
    problems += [f"{path}: no owner" for path in sorted(needed) if not owned_by(owners, path)]
    problems += [f"{path}: owned" for path in ("bench/README.md", "bench/x.py") if owned_by(owners, path)]
    return problems


def test_codeowners_covers_what_decides_ci_and_deployments():
    for path in (".github/workflows/deploy.yml", "docker/mlflow/Dockerfile", "mlflow_guard/__init__.py",
                 "migration/__main__.py", "ops/backup.py", "tests/conftest.py", "provider/__main__.py"):
        assert (REPO_ROOT / path).exists(), path
    assert codeowners_problems((GITHUB / "CODEOWNERS").read_text()) == []


def test_the_top_level_paths_are_what_git_tracks():
    """Not the root minus .gitignore's patterns (review 4, finding 1: a pull request's own .gitignore
    line took its file out of the check): the tracked files, ignored or not."""
    paths = tracked_paths()
    assert ".github/CODEOWNERS" in paths and ".gitignore" in paths and "README.md" in paths
    assert not [path for path in paths if path.split("/", 1)[0] in {"venv", ".git"}]


@pytest.mark.parametrize("edit", ["placeholder replaced", "users", "team and user"])
def test_codeowners_with_real_owners_passes(edit: str):
    """Replacing the placeholder, as README asks, keeps the tests green (review 3, finding 1)."""
    owner = {"placeholder replaced": "@acme/platform", "users": "@alice @bob-smith",
             "team and user": "@acme/ml.platform_team @alice"}[edit]
    source = (GITHUB / "CODEOWNERS").read_text().replace("@OWNER/platform-team", owner)
    assert all("@OWNER/" not in " ".join(who) for _, who in codeowners(source))
    assert codeowners_problems(source) == []


CATCH_ALL = "*                    @OWNER/platform-team\n"


@pytest.mark.parametrize("edit", ["no owner", "an email", "not an owner", "catch-all dropped", "catch-all narrowed",
                                  "catch-all last", "a later line unowns", "gitignore unowned", "venv unowned",
                                  "an unowned line owns"])
def test_codeowners_without_an_owner_for_a_path_fails(edit: str):
    source = (GITHUB / "CODEOWNERS").read_text()
    assert source.count(CATCH_ALL) == 1
    source = {"no owner": source.replace(CATCH_ALL, "*\n"),
              "an email": source.replace(CATCH_ALL, "* ops@example.com\n"),
              "not an owner": source.replace(CATCH_ALL, "* platform-team\n"),
              "catch-all dropped": source.replace(CATCH_ALL, ""),
              "catch-all narrowed": source.replace(CATCH_ALL, "*.py @OWNER/platform-team\n"),
              "catch-all last": source.replace(CATCH_ALL, "") + CATCH_ALL,
              "a later line unowns": source + "/docker/mlflow/\n",
              "gitignore unowned": source + "/.gitignore\n",
              "venv unowned": source + "venv/\n",
              "an unowned line owns": source.replace("/bench/\n", "/bench/ @OWNER/platform-team\n")}[edit]
    assert codeowners_problems(source) != []


def test_a_path_the_repository_ignores_still_needs_an_owner():
    """The CODEOWNERS of review 3 (one line per top-level directory, no catch-all) passed a check that
    skipped what .gitignore ignores; with the tracked paths of a pull request that force-adds a
    virtualenv and a root module, it fails."""
    before = "\n".join(f"{pattern} @OWNER/platform-team" for pattern in (
        "/.github/", "/.ci/", "/.dockerignore", "/policy/", "/scripts/", "/Pulumi*.yaml", "requirements*.txt",
        "/pyproject.toml", "/components/", "/provider/", "/__main__.py", "/docker/", "/mlflow_guard/", "/migration/",
        "/ops/", "/tests/", "/rehearsal/"))
    problems = codeowners_problems(before, paths=["components/config.py", "venv/bin/python", "pydantic.py"])
    assert "venv/x: no owner" in problems and "pydantic.py: no owner" in problems
    assert "the first line is [('/.github/', ['@OWNER/platform-team'])], not `*` with owners" in problems


def test_deploy_tests_plans_and_applies_main_behind_each_stacks_environment():
    workflow = load("deploy.yml")
    assert workflow["on"] == {"push": {"branches": ["main"]}, "workflow_dispatch": {"inputs": {
        "renew-registry-token": {"description": "The stack whose registry token command to replace (an expired ECR "
                                                "or ACR push token), or none", "type": "choice",
                                 "options": ["none", "aws", "azure"], "default": "none"}}}}
    test, plan, apply = (workflow["jobs"][job] for job in ("test", "plan", "apply"))
    assert test["if"] == "github.ref == 'refs/heads/main'" and test["name"] == "test"
    assert set(workflow["jobs"]) == {"test", "codeowners", "plan", "apply"}
    assert (plan.get("needs"), apply.get("needs")) == (["test", "codeowners"], "plan")
    assert "environment" not in plan and apply["environment"] == "${{ matrix.stack }}"
    assert apply["permissions"] == {"contents": "read", "id-token": "write"}
    assert plan["permissions"] == {"actions": "read", "contents": "read", "id-token": "write"}
    assert apply["concurrency"] == {"group": "deploy-${{ matrix.stack }}", "cancel-in-progress": False}
    # The plan runs the CLI in a shell step (pulumi/actions installs it), the apply through the action.
    assert [step["with"].get("command", "install") for job in (plan, apply) for step in pulumi_steps(job)] == [
        "install", "up"]
    assert plan["outputs"] == {f"{output}-{stack}": f"${{{{ steps.plan.outputs.{output}-{stack} }}}}"
                               for stack in ("aws", "azure") for output in ("plan-sha256", "registry-token-urn")}


def test_dependabot_updates_only_the_actions():
    """The preview lets a Dependabot pull request pass unpreviewed when it changes .github/ alone (its
    runs have no Actions secrets): that holds while Dependabot updates nothing else."""
    configuration = yaml.safe_load((GITHUB / "dependabot.yml").read_text())
    assert {update["package-ecosystem"] for update in configuration["updates"]} == {"github-actions"}


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml", "drift.yml", "runbook.yml"])
def test_the_cloud_jobs_sign_in_by_oidc_and_build_the_runtimes_venvs(name: str):
    """Pulumi.yaml and PulumiPolicy.yaml name `venv` virtualenvs; the clouds trust the job's OIDC token,
    no stored key; the CLI is the version the program's SDK pins."""
    workflow = load(name)
    for _, job_id, job in jobs({name: workflow}):
        if not pulumi_steps(job):
            continue
        job_steps = job["steps"]
        setup = next(step["run"] for step in job_steps if step.get("name") == "Create ./venv and policy/venv")
        assert "python -m venv --clear venv" in setup and "-r .github/locks/requirements.txt" in setup, job_id
        assert "python -m venv --clear policy/venv" in setup and "-r .github/locks/policy-requirements.txt" in setup, \
            job_id
        assert setup.count("--require-hashes") == 2, job_id
        aws = next(s for s in job_steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
        assert set(aws["with"]) <= {"role-to-assume", "aws-region", "role-duration-seconds"}
        azure = next(s for s in job_steps if s.get("uses", "").startswith("azure/login@"))
        assert set(azure["with"]) == {"client-id", "tenant-id", "subscription-id"}
        for step in pulumi_steps(job):
            assert step["with"]["pulumi-version"] == pinned_version("requirements.txt", "pulumi")
    assert not re.search(r"AWS_SECRET_ACCESS_KEY|AZURE_CREDENTIALS|client-secret|ARM_CLIENT_SECRET",
                         WORKFLOWS[name].read_text())


def test_the_test_workflow_runs_the_projects_test_command():
    workflow = load("test.yml")
    assert set(workflow["on"]) == {"pull_request"}
    assert [job["name"] for job in workflow["jobs"].values()] == ["test"]  # the required check `test`
    # The check that the commit holds nothing .gitignore ignores (test_structure.py), then the suite.
    assert [step["run"] for step in steps(workflow) if "run" in step] == [IGNORED_CHECK, "./scripts/test"]
    # deploy.yml's `test` job is the same job, with the same token: it reads the code, and gets no
    # OIDC token (the suite and its packages run there; review 2, M24).
    deploy_test = load("deploy.yml")["jobs"]["test"]
    assert deploy_test["permissions"] == workflow["jobs"]["test"]["permissions"] == {"contents": "read"}
    assert [{key: value for key, value in step.items() if key != "name"} for step in deploy_test["steps"]] == [
        {key: value for key, value in step.items() if key != "name"} for step in workflow["jobs"]["test"]["steps"]]


def test_every_workflow_is_checked():
    """The structural checks (test_structure.py) read every workflow; a new one joins them here."""
    assert set(load_all()) == set(WORKFLOWS)


def test_the_checkers_are_pinned_where_scripts_test_installs_them():
    for package in ("check-jsonschema", "zizmor", "pulumi-policy"):
        pinned_version("requirements-dev.txt", package)
    assert shutil.which("zizmor", path=str(BIN)) and shutil.which("check-jsonschema", path=str(BIN))


# --- zizmor's per-location ignores ------------------------------------------------------------------------

def test_zizmor_ignores_only_the_passphrase_of_the_jobs_without_an_environment():
    """.github/zizmor.yml ignores secrets-outside-env at single locations (file:line:column), never a
    whole file: each names a line that hands PULUMI_CONFIG_PASSPHRASE to a step of a job with no
    environment, the column of `secrets`, and every such line has its entry (a line moved by an edit
    fails here before zizmor reports it)."""
    config = yaml.safe_load((GITHUB / "zizmor.yml").read_text())
    ignores = config["rules"]["secrets-outside-env"]["ignore"]
    assert all(re.fullmatch(r"[\w.-]+\.yml:\d+:\d+", entry) for entry in ignores), ignores
    expected = set()
    for name, path in WORKFLOWS.items():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            if "secrets." not in line:
                continue
            assert line.strip() == "PULUMI_CONFIG_PASSPHRASE: ${{ secrets.PULUMI_CONFIG_PASSPHRASE }}", (name, line)
            # The job the line is in: the last `  <job>:` line above it.
            job_id = next(re.match(r"^  ([\w-]+):$", above)[1] for above in reversed(lines[:number])
                          if re.match(r"^  ([\w-]+):$", above))
            if "environment" not in load(name)["jobs"][job_id]:
                expected.add(f"{name}:{number}:{line.index('secrets.') + 1}")
    assert set(ignores) == expected and len(ignores) == len(expected)


# --- the hashed locks the cloud jobs install ---------------------------------------------------------------

LOCKS = {".github/locks/requirements.txt": "requirements.txt",
         ".github/locks/policy-requirements.txt": "policy/requirements.txt"}
LOCK_COMMAND = ("uv pip compile {source} --generate-hashes --python-version 3.11 --python-platform "
                "x86_64-manylinux_2_28 --only-binary :all: -o {lock}")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: str) -> dict[str, str]:
    """name -> version of each `name==version` line of a requirements file (comments and options left out)."""
    found = {}
    for line in (REPO_ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, version = line.split("==")
            found[normalized(name.split("[")[0])] = version.strip()
    return found


def lock_entries(lock: str) -> dict[str, tuple[str, list[str], list[str]]]:
    """name -> (version, sha256 hashes, what it is required by) of each entry of a uv-compiled lock."""
    entries, current = {}, None
    for line in (REPO_ROOT / lock).read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9][\w.-]*)==(\S+) \\$", line):
            current = normalized(match[1])
            entries[current] = (match[2], [], [])
        elif match := re.match(r"^    --hash=sha256:([0-9a-f]{64})(?: \\)?$", line):
            entries[current][1].append(match[1])
        elif match := re.match(r"^    #(?: via)?\s+(\S.*)$", line):
            if match[1] != "via":
                entries[current][2].append(match[1])
        elif line.strip() and not line.startswith("#"):
            raise AssertionError(f"{lock}: an unexpected line {line!r}")
    return entries


@pytest.mark.parametrize("lock,source", sorted(LOCKS.items()))
def test_each_lock_is_its_requirements_compiled_with_hashes(lock: str, source: str):
    """uv compiled the lock from the requirements file, as its header says: every pin of the
    requirements at the same version, every entry pinned with its files' sha256, and every entry
    required by the requirements file or by another entry. After a change to the requirements, run
    the header's command again (README: "Secrets and variables")."""
    header = (REPO_ROOT / lock).read_text().splitlines()[:2]
    assert header[1] == "#    " + LOCK_COMMAND.format(source=source, lock=lock), header
    entries = lock_entries(lock)
    assert {name: entries[name][0] for name in pins(source) if name in entries} == pins(source)
    for name, (_, hashes, via) in entries.items():
        assert hashes and via, name
        assert all(parent == f"-r {source}" or normalized(parent) in entries for parent in via), (name, via)


def test_the_locks_are_the_ones_the_cloud_jobs_install():
    """.github/locks/ holds these locks alone; test_structure.py (hashed_installs) holds that every
    job that runs Pulumi installs them, with --require-hashes."""
    assert set(LOCKS) == {str(path.relative_to(REPO_ROOT)) for path in (GITHUB / "locks").iterdir()}


@pytest.mark.parametrize("pin", ["pulumi-policy==1.22.0", None])
def test_a_lock_behind_its_requirements_fails(tmp_path, monkeypatch, pin: str | None):
    """A pin changed in policy/requirements.txt without compiling the lock again is caught (and the
    copy passes unchanged: the check reads the copies)."""
    (tmp_path / "policy").mkdir()
    (tmp_path / ".github" / "locks").mkdir(parents=True)
    source = (REPO_ROOT / "policy/requirements.txt").read_text()
    assert "pulumi-policy==1.21.0" in source
    (tmp_path / "policy/requirements.txt").write_text(source.replace("pulumi-policy==1.21.0",
                                                                     pin or "pulumi-policy==1.21.0"))
    (tmp_path / ".github/locks/policy-requirements.txt").write_text(
        (REPO_ROOT / ".github/locks/policy-requirements.txt").read_text())
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    check = lambda: test_each_lock_is_its_requirements_compiled_with_hashes(  # noqa: E731
        ".github/locks/policy-requirements.txt", "policy/requirements.txt")
    if pin is None:
        check()
    else:
        with pytest.raises(AssertionError):
            check()
