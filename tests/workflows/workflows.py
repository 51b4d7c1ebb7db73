"""Reading the GitHub workflows (.github/workflows) for the tests of this directory: the parsed
documents, their jobs and steps, the Pulumi steps, and broken copies (one pattern replaced) that show a
check can fail."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from tests.harness.program import REPO_ROOT

GITHUB = REPO_ROOT / ".github"
WORKFLOW_DIR = GITHUB / "workflows"
WORKFLOWS = {path.name: path for path in sorted(WORKFLOW_DIR.glob("*.yml"))}
PULUMI_ACTION = "pulumi/actions@"

Workflow = dict[str, Any]
Job = dict[str, Any]
Step = dict[str, Any]


def parse(text: str) -> Workflow:
    workflow = yaml.safe_load(text)
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as true
    return workflow


def load(name: str) -> Workflow:
    return parse(WORKFLOWS[name].read_text())


def load_all() -> dict[str, Workflow]:
    return {name: load(name) for name in WORKFLOWS}


def triggers(workflow: Workflow) -> set[str]:
    on = workflow["on"]
    return {on} if isinstance(on, str) else set(on)


def steps(workflow: Workflow) -> list[Step]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def jobs(workflows: dict[str, Workflow]) -> Iterator[tuple[str, str, Job]]:
    for name, workflow in workflows.items():
        for job_id, job in workflow["jobs"].items():
            yield name, job_id, job


def needs(job: Job) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def uses(step: Step, action: str) -> bool:
    return step.get("uses", "").startswith(action + "@")


def pulumi_steps(job: Job) -> list[Step]:
    return [step for step in job.get("steps", []) if step.get("uses", "").startswith(PULUMI_ACTION)]


# `pulumi <command>` where a shell runs a command: a line's start, or after `&&`, `||`, `;`, `|`, `{`,
# `(` or `$(` (not in a message's text, as drift.yml's issue body names `pulumi up`). `stack export`
# (a read of the state) is told apart from the other `stack` commands, some of which write.
SHELL_PULUMI = re.compile(r"(?:^|[;&|{(])\s*pulumi\s+(up|update|destroy|refresh|cancel|import|preview|state|"
                          r"stack\s+export|stack)\b", flags=re.MULTILINE)
READS = {"preview", "stack export"}


def shell_invocations(script: str, program: str = "pulumi") -> list[str]:
    """Each command line of `script` that runs `program`, its words joined by one space: line
    continuations joined, split at `&&`, `||`, `;`, `|`, braces, parentheses and line ends, and
    redirections such as `2>&1` left out. A flag added to a command changes its line here."""
    joined = re.sub(r"\\\n", " ", script)
    found = []
    for piece in re.split(r"&&|\|\||[;|{}()\n]", joined):
        words = [word for word in piece.split() if not re.fullmatch(r"\d*>>?&?\d*", word)]
        if words and words[0] == program:
            found.append(" ".join(words))
    return found


def pulumi_commands(job: Job) -> set[str]:
    """What the job's Pulumi steps run: `preview`, `up`, `refresh`, or `install` for the CLI alone; a
    shell step that runs `pulumi <command>` anywhere in its script counts too."""
    commands = {step.get("with", {}).get("command", "install") for step in pulumi_steps(job)}
    for step in job.get("steps", []):
        commands |= {re.sub(r"\s+", " ", command) for command in SHELL_PULUMI.findall(step.get("run", ""))}
    return commands


def applies(job: Job) -> bool:
    """The job changes resources: `pulumi up` (or its alias, or destroy)."""
    return bool(pulumi_commands(job) & {"up", "update", "destroy"})


def only_previews(job: Job) -> bool:
    """The job runs Pulumi (beyond installing the CLI), and only previews (reading the state besides)."""
    commands = pulumi_commands(job) - {"install"}
    return "preview" in commands and commands <= READS


def step_key(step: Step) -> str:
    """A step's name, or the action it uses (without the version) when it has none."""
    return step.get("name") or step.get("uses", "").split("@")[0] or step.get("run", "")[:40]


def step_named(job: Job, prefix: str) -> Step:
    [step] = [step for step in job["steps"] if step.get("name", "").startswith(prefix)]
    return step


def text(value: Any) -> str:
    """A job or step as text, for what it names anywhere (variables, identities)."""
    return yaml.safe_dump(value, width=1000)


def broken(workflows: dict[str, Workflow], name: str, pattern: str, replacement: str) -> dict[str, Workflow]:
    """The workflows with the first match of `pattern` in `name` replaced."""
    source, count = re.subn(pattern, replacement, WORKFLOWS[name].read_text(), count=1, flags=re.MULTILINE)
    assert count == 1, f"{pattern!r} is not in {name}"
    return {**workflows, name: parse(source)}


def broken_file(tmp_path: Path, name: str, pattern: str, replacement: str) -> Path:
    """A copy of a workflow with the first match of `pattern` replaced (SHAs and versions may change)."""
    source, count = re.subn(pattern, replacement, WORKFLOWS[name].read_text(), count=1, flags=re.MULTILINE)
    assert count == 1, f"{pattern!r} is not in {name}"
    copy = tmp_path / name
    copy.write_text(source)
    return copy
