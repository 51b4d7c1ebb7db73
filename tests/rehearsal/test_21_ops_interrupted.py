"""Backup and restore interrupted at each step (issue 28): the crash-consistency harness.

One rehearsal stack (auth.mode mlflow) holds a state N; a backup of N is taken; the stack then moves
on to a state O (a new experiment, run and artifact, a run's tag and metric changed, a new model
version, a new user, a permission raised). The project's own backup and restore run in a child
process (tests/rehearsal/interrupt.py) whose steps (every command its StackAccess starts, every
server stop and start) are enumerated by one uninterrupted run; each case below then interrupts one
named step: SIGKILL of the tool before the step, a PostgreSQL restart (fast mode) while the step runs,
the step failing with ENOSPC, or (backup) a real full disk: a tiny tmpfs in a mount namespace of the
child's.

The invariants, checked after every interruption:
- the stack's data (both databases' rows, and the objects its runs refer to) is exactly O or exactly
  N, never neither (a database refusing connections counts only if the next run repairs it; O moved
  on also by rewriting an artifact N holds, so an upload over the stack's keys shows). Only a SIGKILL
  between the upload and the swap may leave O's databases with N's bytes (nothing of the tool runs):
  the rerun must then refuse naming `--put-back STAMP`, which gives back exactly O; a backup never
  changes the stack at all;
- the maintenance lock does not outlive a killed tool;
- nothing the tool printed is false ("not changed" only when nothing changed; success only when the
  data is N and the server runs); an interrupted backup never looks like a complete one;
- the same command run again completes: afterwards the data is N (restore) or the backup is whole
  (backup), the databases accept connections and the server is running.

Every failing invariant of a case is reported together, naming the step, the interruption and what
was found. Between restore cases the stack is put back to O from template databases and a copy of
the bucket (interrupt.put_back), outside the code under test.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from ops.archive import DUMP_FILES, MANIFEST, OBJECTS_FILE, Manifest, file_sha256, read_objects_tar
from rehearsal.launcher import RehearsalStack
from tests.rehearsal import interrupt
from tests.rehearsal.conftest import scenario_stack
from tests.rehearsal.interrupt import ENOSPC, GO, KILL, RESTART_POSTGRES, Harness, Outcome, Step, StackState, TinyDisk
from tests.rehearsal.test_13_backup_restore import RehearsalAccess, admin_client

ARTIFACT_BYTES = 256 * 1024
BACKUP_FILES = (DUMP_FILES["tracking"], DUMP_FILES["auth"], OBJECTS_FILE, MANIFEST)
"""In the order a backup writes them."""
TINY_DISK_SLACK_PAGES = 16


# --- the stack, its two states and the backup -------------------------------------------------------


@dataclass
class World:
    backup_dir: Path
    new: StackState
    """N: the state the backup holds"""
    old: StackState
    """O: the state the stack moved on to (what a restore --replace replaces)"""
    saved: interrupt.Saved


@pytest.fixture(scope="module")
def stack() -> Iterator[RehearsalStack]:
    with scenario_stack(__file__) as stack:
        yield stack


@pytest.fixture(scope="module")
def access(stack) -> RehearsalAccess:
    return RehearsalAccess(stack)


@pytest.fixture(scope="module")
def harness(access, tmp_path_factory) -> Harness:
    return Harness(access, tmp_path_factory.mktemp("children"))


def _log_state_n(stack: RehearsalStack, files: Path) -> dict[str, Any]:
    """Experiments, runs with metrics, params, tags and artifacts, a model version, a user with a permission."""
    from mlflow.server.auth.client import AuthServiceClient

    (files / "weights.bin").write_bytes(os.urandom(ARTIFACT_BYTES))
    (files / "notes.txt").write_text("grüße ✓\n")
    tag = uuid.uuid4().hex[:8]
    with admin_client(stack) as client:
        experiment = client.create_experiment(f"crash-{tag}", tags={"team": "rehearsal"})
        run = client.create_run(experiment, run_name="trained", tags={"stage": "dev"})
        run_id = run.info.run_id
        for step in range(20):
            client.log_metric(run_id, "loss", 1 / (step + 1), timestamp=1_700_000_000_000 + step, step=step)
        client.log_param(run_id, "lr", "0.01")
        client.log_artifacts(run_id, str(files))
        client.set_terminated(run_id, "FINISHED")
        model = f"crash-model-{tag}"
        client.create_registered_model(model)
        client.create_model_version(model, source=f"{run.info.artifact_uri}/weights.bin", run_id=run_id)
        auth = AuthServiceClient(stack.variants["default"].tracking_uri)
        auth.create_user("alice", f"alice-{uuid.uuid4().hex}")
        auth.grant_user_permission("alice", "experiment", str(experiment), "EDIT")
    return {"experiment": experiment, "run": run_id, "model": model}


def _move_on_to_state_o(stack: RehearsalStack, logged: dict[str, Any]) -> None:
    """What happens after the backup: every kind of data gains or changes something."""
    from mlflow.server.auth.client import AuthServiceClient

    with admin_client(stack) as client:
        later = client.create_experiment(f"after-backup-{uuid.uuid4().hex[:6]}")
        run_id = client.create_run(later, run_name="after").info.run_id
        client.log_metric(run_id, "m", 1.0, timestamp=1_700_000_100_000, step=0)
        client.log_text(run_id, "logged after the backup\n", "after.txt")
        client.set_tag(logged["run"], "stage", "prod")
        client.log_text(logged["run"], "rewritten after the backup\n", "notes.txt")  # a key both states hold
        client.log_metric(logged["run"], "loss", 0.01, timestamp=1_700_000_200_000, step=20)
        client.create_model_version(logged["model"], source=f"runs:/{run_id}/after.txt", run_id=run_id)
        auth = AuthServiceClient(stack.variants["default"].tracking_uri)
        auth.create_user("bob", f"bob-{uuid.uuid4().hex}")
        auth.revoke_user_permission("alice", "experiment", str(logged["experiment"]))
        auth.grant_user_permission("alice", "experiment", str(logged["experiment"]), "MANAGE")
        auth.grant_user_permission("bob", "experiment", str(later), "MANAGE")


@pytest.fixture(scope="module")
def world(stack, harness, tmp_path_factory) -> Iterator[World]:
    logged = _log_state_n(stack, tmp_path_factory.mktemp("files"))
    backup_dir = tmp_path_factory.mktemp("backups") / "n"
    taken = harness.run("backup", backup_dir)  # by the code under test (interrupt.CODE_UNDER_TEST_ENV)
    assert taken.exit_code == 0, taken.describe()
    new = interrupt.stack_state(stack)
    _move_on_to_state_o(stack, logged)
    old = interrupt.stack_state(stack)
    # The two states differ in every part the invariants compare, or comparing proves nothing.
    differences = old.differences(new)
    for part in ("tracking.runs", "tracking.metrics", "tracking.tags", "tracking.model_versions", "auth.users",
                 "permission", "artifact objects"):
        assert any(part in found for found in differences), (part, differences)
    assert [key for key in new.artifacts if key in old.artifacts and new.artifacts[key] != old.artifacts[key]], \
        "no key holds other bytes in the two states: an upload over the stack's keys would go unseen"
    saved = interrupt.save(stack)
    assert interrupt.stack_state(stack) == old, "saving the state changed it"
    yield World(backup_dir=backup_dir, new=new, old=old, saved=saved)
    interrupt.drop_saved(stack, saved)


# --- naming the steps -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """What the enumeration run saw before each step: which part of the stack has changed so far."""

    server_running: bool
    databases: dict[str, tuple[str, bool]]
    objects: dict[str, tuple[int, str]]


def _fingerprint(stack: RehearsalStack) -> Callable[[], Fingerprint]:
    return lambda: Fingerprint(stack.variants["default"].server.service.alive(), interrupt.databases(stack),
                               interrupt.bucket_objects(stack))


def _first(steps: list[Step], what: str, test: Callable[[int], bool]) -> int:
    for step in steps:
        if test(step.index):
            return step.index
    listing = "\n  ".join(step.summary for step in steps)
    raise AssertionError(f"the enumeration run has no step {what}; its steps:\n  {listing}")


def _runs(step: Step, kind: str, *words: str) -> bool:
    """`step` starts a `kind` command whose argv holds every one of `words` (python -c sources show by name)."""
    return step.kind == kind and all(word in step.argv for word in words)


def _pg_dump_of(steps: list[Step], database: str) -> int:
    return _first(steps, f"running pg_dump of {database}",
                  lambda k: _runs(steps[k], "postgres", "pg_dump") and database in steps[k].argv)


def restore_boundaries(outcome: Outcome, stack: RehearsalStack) -> dict[str, int]:
    """Named step indices of the enumeration run of `restore --replace`. "after X": the first step the
    tool asked for once X had happened; "during X": the step that did X (the one before)."""
    steps, seen = outcome.steps, outcome.observed
    base = seen[0]
    tracking = stack.base_config.database.name
    from components.config import auth_database_name

    auth = auth_database_name(tracking)
    after = {
        "server stopped": _first(steps, "after the server stopped", lambda k: not seen[k].server_running),
        "objects changed": _first(steps, "after the bucket changed", lambda k: seen[k].objects != base.objects),
        "tracking database replaced": _first(steps, f"after database {tracking} changed",
                                             lambda k: seen[k].databases.get(tracking) != base.databases[tracking]),
        "auth database replaced": _first(steps, f"after database {auth} changed",
                                         lambda k: seen[k].databases.get(auth) != base.databases[auth]),
    }
    named = {f"after {what}": index for what, index in after.items()}
    named.update({f"during {what}": index - 1 for what, index in after.items()})
    named["after the objects upload"] = _first(  # the keys both states hold now have the backup's bytes
        steps, "after the upload of the backup's objects",
        lambda k: k > 0 and _runs(steps[k - 1], "python", "ops/objects.py", "import"))
    named["at the scratch pg_restore"] = _first(
        steps, "running pg_restore --dbname",
        lambda k: _runs(steps[k], "postgres", "pg_restore", "--dbname"))
    named["at the last step"] = len(steps) - 1
    return named


def backup_boundaries(outcome: Outcome, stack: RehearsalStack) -> dict[str, int]:
    from components.config import auth_database_name

    steps, tracking = outcome.steps, stack.base_config.database.name
    return {
        "at the tracking pg_dump": _pg_dump_of(steps, tracking),
        "at the auth pg_dump": _pg_dump_of(steps, auth_database_name(tracking)),
        "at the objects export": _first(steps, "exporting the objects",
                                        lambda k: _runs(steps[k], "python", "ops/objects.py", "export")),
        "at the last step": len(steps) - 1,
    }


def _at(index: int, action: str) -> Callable[[Step], str]:
    return lambda step: action if step.index == index else GO


# --- checks -----------------------------------------------------------------------------------------------


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _claims_unchanged(printed: str) -> bool:
    return "not changed" in printed or "nothing was changed" in printed.lower()


def _traceback(printed: str) -> bool:
    return "Traceback (most recent call last)" in printed


class Findings:
    """Every failed invariant of one case, reported together."""

    def __init__(self, case: str):
        self.case = case
        self.problems: list[str] = []

    def check(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok

    def assert_none(self, *outcomes: Outcome) -> None:
        details = "\n".join(f"--- run {number}: {outcome.describe()}" for number, outcome in enumerate(outcomes, 1))
        assert not self.problems, f"{self.case}:\n- " + "\n- ".join(self.problems) + f"\n{details}"


def _refusing(stack: RehearsalStack) -> list[str]:
    """The stack's databases that are missing or refuse connections (datallowconn false)."""
    from components.config import auth_database_name

    tracking = stack.base_config.database.name
    found = interrupt.databases(stack)
    return [f"{name} ({'missing' if name not in found else 'datallowconn false'})"
            for name in (tracking, auth_database_name(tracking)) if name not in found or not found[name][1]]


def _which(stack: RehearsalStack, world: World) -> tuple[str, list[str]]:
    """("old"|"backup"|"neither"|"unreadable", what differs)."""
    if _refusing(stack):
        return "unreadable", _refusing(stack)
    state = interrupt.stack_state(stack)
    if state == world.old:
        return "old", []
    if state == world.new:
        return "backup", []
    return "neither", [f"differs from the old state in: {'; '.join(state.differences(world.old))}",
                       f"differs from the backup's in: {'; '.join(state.differences(world.new))}"]


def _server_running(stack: RehearsalStack) -> bool:
    return stack.variants["default"].server.service.alive()


# --- restore ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def restore_steps(stack, harness, world) -> dict[str, int]:
    """The uninterrupted restore --replace (it must end in N with the server running), its named steps."""
    outcome = harness.run("restore", world.backup_dir, replace=True, observe=_fingerprint(stack))
    try:
        assert outcome.exit_code == 0, outcome.describe()
        assert _server_running(stack) and _which(stack, world) == ("backup", []), \
            f"an uninterrupted restore --replace ends in {_which(stack, world)}:\n{outcome.describe()}"
        return restore_boundaries(outcome, stack)
    finally:
        interrupt.put_back(stack, world.saved)


# One per kind of state a restore can be stopped in (CI time: ~40 s each). Not here, as they repeat a
# state below: a kill at the last step (swapped, server stopped: "after tracking database replaced");
# a failure after the upload (the automatic put-back: test_13's Ctrl-C and lost-lock cases).
RESTORE_CASES = [
    (KILL, "after server stopped"),
    (KILL, "after objects changed"),
    (KILL, "after the objects upload"),
    (KILL, "after tracking database replaced"),
    (RESTART_POSTGRES, "during tracking database replaced"),
]


@pytest.mark.parametrize("action,boundary", RESTORE_CASES,
                         ids=[f"{action}-{boundary.replace(' ', '-')}" for action, boundary in RESTORE_CASES])
def test_restore_interrupted(stack, harness, world, restore_steps, action, boundary):
    index = restore_steps[boundary]
    _skip_a_step_already_covered(RESTORE_CASES, restore_steps, action, boundary)
    findings = Findings(f"restore --replace, {action} {boundary} (step #{index})")
    runs: list[Outcome] = []
    try:
        runs.append(harness.run("restore", world.backup_dir, _at(index, action), replace=True))
        which = _check_interrupted_restore(stack, world, harness, runs[0], findings)
        runs.append(harness.run("restore", world.backup_dir, replace=True))
        stamp = _put_back_named(runs[-1])
        findings.check(which != "neither" or stamp is not None,
                       "after the interruption the data is neither the old nor the backup's, and the rerun does "
                       "not name the --put-back that mends it: " + " / ".join(_which(stack, world)[1]))
        if stamp is not None:
            _check_put_back(stack, world, harness, runs, stamp, findings)
            runs.append(harness.run("restore", world.backup_dir, replace=True))
        _check_restore_rerun(stack, world, runs[-1], findings)
    finally:
        interrupt.put_back(stack, world.saved)
    findings.assert_none(*runs)


def _put_back_named(outcome: Outcome) -> Optional[str]:
    """The stamp a refused rerun names in `scripts/restore --put-back STAMP` (review 2, F1)."""
    found = re.search(r"scripts/restore --put-back (\d{8}T\d{6}Z)", outcome.stderr)
    return found.group(1) if found and outcome.exit_code not in (0, None) else None


def _check_put_back(stack: RehearsalStack, world: World, harness: Harness, runs: list[Outcome], stamp: str,
                    findings: Findings) -> None:
    """Only a killed run may leave a quarantine to put back; the command the refusal names gives the
    stack its own state again (its databases were never replaced), with the server running."""
    findings.check(runs[0].exit_code is None, "a restore that was not killed left a quarantine to put back")
    runs.append(harness.run("restore", world.backup_dir, argv=["--put-back", stamp]))
    findings.check(runs[-1].exit_code == 0, f"--put-back {stamp} failed: {_last_line(runs[-1].stderr)}")
    which, detail = _which(stack, world)
    findings.check(which == "old", f"after --put-back {stamp} the data is {which}, not the stack's own: "
                   + " / ".join(detail))


def _skip_a_step_already_covered(cases: list[tuple[str, str]], named: dict[str, int], action: str,
                                 boundary: str) -> None:
    """Two boundaries can be one step (a restore that replaces both databases in one transaction):
    the later case would repeat the earlier one exactly."""
    for other_action, other in cases[:cases.index((action, boundary))]:
        if other_action == action and named[other] == named[boundary]:
            pytest.skip(f"{boundary} is step #{named[boundary]}, the same step as {other!r}: covered by that case")


def _check_interrupted_restore(stack: RehearsalStack, world: World, harness: Harness, outcome: Outcome,
                               findings: Findings) -> str:
    """The invariants after the interrupted run; returns which state the data is in ("neither" is
    checked by the caller: only a killed run may leave it, mended by the --put-back the rerun names)."""
    if outcome.exit_code is None:
        holder = harness.wait_for_lock_release()
        findings.check(holder is None, f"the maintenance lock outlived the killed tool: still held by {holder}")
    which, detail = _which(stack, world)
    findings.check(which != "neither" or outcome.exit_code is None,
                   "after the interruption the data is neither the old nor the backup's: " + " / ".join(detail))
    printed = outcome.stderr
    if outcome.exit_code == 0:
        findings.check(which == "backup" and _server_running(stack),
                       f"the tool reported success but the data is {which} {detail} and the server is "
                       f"{'running' if _server_running(stack) else 'stopped'}")
        return which
    if outcome.exit_code is None:
        return which
    findings.check(not _traceback(printed), "the tool ended with a Python traceback, not a one-line error saying "
                   f"what changed: {_last_line(printed)}")
    findings.check(_server_running(stack), "the tool exited (it was not killed) and left the MLflow server stopped")
    if _claims_unchanged(printed):
        findings.check(which == "old", f"the tool printed {_last_line(printed)!r} but the data is {which}: "
                       + " / ".join(detail))
    return which


def _check_restore_rerun(stack: RehearsalStack, world: World, outcome: Outcome, findings: Findings) -> None:
    findings.check(outcome.exit_code == 0, f"the same restore --replace run again failed: {_last_line(outcome.stderr)}")
    if outcome.exit_code != 0:
        return
    findings.check(_server_running(stack), "after the rerun completed the MLflow server is not running")
    which, detail = _which(stack, world)
    findings.check(which == "backup", f"after the rerun completed the data is {which}, not the backup's: "
                   + " / ".join(detail))


# --- backup -----------------------------------------------------------------------------------------------


def _backup_problems(directory: Path, state: StackState) -> list[str]:
    """What is wrong with `directory` as a complete backup of a stack in `state` (nothing: [])."""
    try:
        manifest = Manifest.load(directory)
    except Exception as error:  # noqa: BLE001 - any failure to read it is the finding
        return [f"no readable manifest in the rerun's backup: {error}"]
    problems = [f"{db.file}: sha256 differs from the manifest's" for db in manifest.databases.values()
                if file_sha256(directory / db.file) != db.sha256]
    entries, sha256, _ = read_objects_tar(directory / manifest.objects.file)
    if entries != manifest.objects.entries or sha256 != manifest.objects.sha256:
        problems.append("objects.tar differs from the manifest's entries")
    for role, digests in (("tracking", state.tracking), ("auth", state.auth)):
        counted = manifest.databases[role].tables if role in manifest.databases else {}
        differ = sorted(table for table, (rows, _) in digests.items() if counted.get(table) != rows)
        if differ:
            problems.append(f"the {role} dump's rows differ from the stack's in {differ}")
    return problems


@pytest.fixture(scope="module")
def backup_steps(stack, harness, world, tmp_path_factory) -> dict[str, Any]:
    """The uninterrupted backup (it must be whole and leave the stack as it was), its named steps and
    the sizes of its files."""
    directory = tmp_path_factory.mktemp("enumeration") / "backup"
    outcome = harness.run("backup", directory, observe=_fingerprint(stack))
    assert outcome.exit_code == 0, outcome.describe()
    assert _backup_problems(directory, world.old) == []
    return {"named": backup_boundaries(outcome, stack),
            "sizes": {name: (directory / name).stat().st_size for name in BACKUP_FILES}}


def _check_stack_untouched(stack: RehearsalStack, world: World, server_pid: Optional[int], findings: Findings) -> None:
    which, detail = _which(stack, world)
    findings.check(which == "old", f"a backup changed the stack: its data is {which} {detail}")
    findings.check(stack.variants["default"].server.service.pid == server_pid and _server_running(stack),
                   "a backup stopped or restarted the MLflow server")


def _check_interrupted_backup(outcome: Outcome, directory: Path, findings: Findings) -> None:
    left = sorted(path.name for path in directory.iterdir()) if directory.is_dir() else []
    findings.check(MANIFEST not in left or outcome.exit_code == 0,
                   f"the interrupted backup left {left}: it looks like a complete backup")
    if outcome.exit_code not in (None, 0):
        findings.check(not _traceback(outcome.stderr),
                       f"the backup ended with a Python traceback, not a one-line error: {_last_line(outcome.stderr)}")


BACKUP_CASES = [
    (KILL, "at the tracking pg_dump"),
    (KILL, "at the auth pg_dump"),
    (KILL, "at the objects export"),
    (RESTART_POSTGRES, "at the tracking pg_dump"),
    (RESTART_POSTGRES, "at the auth pg_dump"),
    (ENOSPC, "at the objects export"),
]


@pytest.mark.parametrize("action,boundary", BACKUP_CASES,
                         ids=[f"{action}-{boundary.replace(' ', '-')}" for action, boundary in BACKUP_CASES])
def test_backup_interrupted(stack, harness, world, backup_steps, tmp_path, action, boundary):
    index = backup_steps["named"][boundary]
    _skip_a_step_already_covered(BACKUP_CASES, backup_steps["named"], action, boundary)
    findings = Findings(f"backup, {action} {boundary} (step #{index})")
    directory, server_pid = tmp_path / "backup", stack.variants["default"].server.service.pid
    first = harness.run("backup", directory, _at(index, action))
    if first.exit_code is None:
        holder = harness.wait_for_lock_release()
        findings.check(holder is None, f"the maintenance lock outlived the killed backup: still held by {holder}")
    _check_interrupted_backup(first, directory, findings)
    _check_stack_untouched(stack, world, server_pid, findings)
    rerun = harness.run("backup", directory)
    findings.check(rerun.exit_code == 0, f"the same backup run again (same directory) failed: "
                   f"{_last_line(rerun.stderr)}")
    if rerun.exit_code == 0:
        findings.problems += _backup_problems(directory, world.old)
    _check_stack_untouched(stack, world, server_pid, findings)
    findings.assert_none(first, rerun)


@pytest.mark.parametrize("full_at", BACKUP_FILES)
def test_backup_on_a_full_disk(stack, harness, world, backup_steps, tmp_path, full_at):
    """A tmpfs with room for the files before `full_at` and half of it: the disk fills while the backup
    writes `full_at`. Then the filler is deleted and the same command runs again in the same place."""
    if not interrupt.tmpfs_available(tmp_path / "probe"):
        pytest.fail("this machine cannot mount a tmpfs in a user namespace (unshare --user --mount): the full "
                    "disk cannot be simulated for real", pytrace=False)
    sizes = backup_steps["sizes"]
    before = BACKUP_FILES[:BACKUP_FILES.index(full_at)]
    free_pages = sum(interrupt.pages(sizes[name]) for name in before) + interrupt.pages(sizes[full_at]) // 2
    total_pages = sum(interrupt.pages(size) for size in sizes.values()) + TINY_DISK_SLACK_PAGES
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    disk = TinyDisk(mountpoint, total_pages * interrupt.TMPFS_PAGE, (total_pages - free_pages) * interrupt.TMPFS_PAGE)
    directory = mountpoint / "backup"
    findings = Findings(f"backup, the disk full while writing {full_at}")
    server_pid = stack.variants["default"].server.service.pid
    outcomes: list[Outcome] = []

    def inspect(child: interrupt.ChildRun, outcome: Outcome) -> None:
        seen = child.root / str(directory).lstrip("/")
        findings.check(outcome.exit_code != 0, f"the backup reported success on a full disk (free {free_pages} pages)")
        findings.check("No space left on device" in outcome.stderr,
                       f"the backup's error does not say the disk is full: {_last_line(outcome.stderr)!r}")
        _check_interrupted_backup(outcome, seen, findings)
        _check_stack_untouched(stack, world, server_pid, findings)
        rerun = child.again()
        outcomes.append(rerun)
        findings.check(rerun.exit_code == 0, "the same backup run again after space was freed failed: "
                       f"{_last_line(rerun.stderr)}")
        if rerun.exit_code == 0:
            findings.problems += _backup_problems(seen, world.old)

    outcomes.insert(0, harness.run("backup", directory, disk=disk, then=inspect))
    _check_stack_untouched(stack, world, server_pid, findings)
    findings.assert_none(*outcomes)
