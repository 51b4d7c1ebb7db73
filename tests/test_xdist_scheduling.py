"""tests/conftest.py under pytest-xdist, as scripts/test runs the suite (`--dist loadfile
--no-loadscope-reorder`): modules are handed out longest first, and the figures a worker's tests
measure still reach the summary the controller prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_CONFTEST = textwrap.dedent("""
    import tests.conftest as scheduling
    from tests.conftest import pytest_collection_modifyitems, pytest_runtest_logreport, pytest_terminal_summary  # noqa
    from tests.rehearsal.conftest import report_figure  # noqa: F401

    scheduling.MEASURED_SECONDS.update({"test_b_long.py": 300.0, "test_c_medium.py": 60.0})
""")

_MODULE = textwrap.dedent("""
    def test_one(report_figure):
        report_figure("{name} figure", 42, "MiB")

    def test_two():
        pass
""")


def _run(directory: Path, workers: str) -> str:
    for name in ("test_a_short.py", "test_b_long.py", "test_c_medium.py"):
        (directory / name).write_text(_MODULE.format(name=name))
    (directory / "conftest.py").write_text(_CONFTEST)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-n", workers,
                             "--dist", "loadfile", "--no-loadscope-reorder", "--rootdir", str(directory),
                             "--confcutdir", str(directory), str(directory)],
                            cwd=directory, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout


def test_a_worker_runs_the_longest_modules_first_keeping_each_modules_order(tmp_path):
    output = _run(tmp_path, "1")
    ran = re.findall(r"PASSED (test_\w+\.py::test_\w+)", output)
    assert ran == [f"{module}::{test}" for module in ("test_b_long.py", "test_c_medium.py", "test_a_short.py")
                   for test in ("test_one", "test_two")]


def test_figures_measured_on_workers_reach_the_summary(tmp_path):
    output = _run(tmp_path, "2")
    summary = output[output.index("rehearsal figures"):]
    for module in ("test_a_short.py", "test_b_long.py", "test_c_medium.py"):
        assert f"{module}::test_one: {module} figure = 42 MiB" in summary
