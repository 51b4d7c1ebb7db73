"""How pytest-xdist's workers share the suite (scripts/test runs it with `-n auto --dist loadfile
--no-loadscope-reorder`).

A module is one unit of work (`--dist loadfile`): its module-scoped servers (a rehearsal stack, a
PostgreSQL cluster) are built once, by the one worker that runs all of it. xdist hands the units out
in collection order; on the workers, this hook orders the modules longest first, so that the last
ones to start are short and the workers finish together, instead of one running a long rehearsal
module alone at the end while the other has nothing left. The order inside a module is kept.

The suites that start servers (tests/rehearsal, tests/migration, tests/policy, tests/workflows,
tests/integration) are marked
`slow`, so that `./scripts/test -m "not slow"` runs the others alone: the quick check while editing.

Figures the rehearsal measures (`report_figure`, a test's user properties) are printed here, in the
"rehearsal figures" section of the summary: from the tests' reports, which is how they reach the
controller from a worker.

The lengths are estimates, in seconds: the measured ones below for the long modules, the
directory's default for the others (a rehearsal module starts servers); a module missing or
mis-estimated here runs all the same, only perhaps later than ideal. To refresh: run
`scripts/test --junitxml=out.xml` and sum each module's test times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Seconds the long modules took in one run of the whole suite with two workers (the sum of their
# tests' times, JUnit's), on the idle 2-core development machine (2026-12-04, a clean clone): only
# their order and proportions mean something. test_13, 18, 20, 21, 22 and test_migrate: those figures
# scaled by how much less each took after the CI-time changes of 2026-12-05 (each module run alone,
# before and after side by side).
MEASURED_SECONDS: dict[str, float] = {
    "tests/rehearsal/test_13_backup_restore.py": 278.0,
    "tests/rehearsal/test_21_ops_interrupted.py": 248.0,
    "tests/migration/test_migrate.py": 183.0,
    # test_25 (issue 27): 130 s in a clean clone's run of 2026-12-05 where test_13 took 222 (278 above): scaled alike
    "tests/rehearsal/test_25_move.py": 163.0,
    "tests/rehearsal/test_12_day2.py": 115.0,
    "tests/rehearsal/test_09_mlflow_auth.py": 90.0,
    "tests/rehearsal/test_10_oidc.py": 88.0,
    "tests/rehearsal/test_15_platform_faithful.py": 87.0,
    "tests/rehearsal/test_22_authz_routes.py": 80.0,
    "tests/rehearsal/test_20_backup_gc_safety.py": 76.0,
    "tests/rehearsal/test_11_rehearse_cli.py": 68.0,
    "tests/rehearsal/test_06_restarts.py": 66.0,
    "tests/rehearsal/test_16_gc_blob.py": 60.0,
    "tests/rehearsal/test_04_artifacts.py": 59.0,
    "tests/rehearsal/test_14_mlflow_upgrade.py": 50.0,
    "tests/rehearsal/test_18_authz_bypasses.py": 41.0,
}

# The estimate for a module not measured above, by the directory it is in.
DEFAULT_SECONDS = {"tests/rehearsal": 40.0, "tests/migration": 10.0, "tests/integration": 5.0}
# Any other module: its number of tests times this.
SECONDS_PER_TEST = 0.1


# The directories under tests/ whose every test is marked `slow`.
SLOW_DIRECTORIES = ("rehearsal", "migration", "policy", "workflows", "integration")
TESTS = Path(__file__).resolve().parent


def pytest_itemcollected(item: pytest.Item) -> None:
    """Marks the slow suites' tests as they are collected: before `-m` deselects (in
    pytest_collection_modifyitems), on a worker as in a serial run."""
    path = item.path.resolve()
    if path.is_relative_to(TESTS) and path.relative_to(TESTS).parts[0] in SLOW_DIRECTORIES:
        item.add_marker(pytest.mark.slow)


def module_of(item: pytest.Item) -> str:
    """The unit of work of `--dist loadfile`: the test's file, as its node id spells it."""
    return item.nodeid.split("::", 1)[0]


def estimated_seconds(module: str, tests: int) -> float:
    if module in MEASURED_SECONDS:
        return MEASURED_SECONDS[module]
    directory = module.rpartition("/")[0]
    return DEFAULT_SECONDS.get(directory, tests * SECONDS_PER_TEST)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker only (a serial run keeps the usual order): longest modules first. Every
    worker sorts the same collection the same way, as xdist requires."""
    if not hasattr(config, "workerinput"):
        return
    first_index: dict[str, int] = {}
    tests: dict[str, int] = {}
    for index, item in enumerate(items):
        module = module_of(item)
        first_index.setdefault(module, index)
        tests[module] = tests.get(module, 0) + 1
    weight = {module: estimated_seconds(module, count) for module, count in tests.items()}
    items.sort(key=lambda item: (-weight[module_of(item)], first_index[module_of(item)]))


_FIGURES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A test's figures, from its last report (each phase's report carries all of them so far)."""
    if report.when == "teardown":
        _FIGURES.extend(f"{report.nodeid}: {name} = {value}" for name, value in report.user_properties)


def pytest_terminal_summary(terminalreporter) -> None:
    if _FIGURES:
        terminalreporter.section("rehearsal figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
