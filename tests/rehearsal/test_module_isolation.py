"""Under pytest-xdist a worker runs the rehearsal modules it is handed in any order: what one module
leaves in the process (a stopped stack's MLFLOW_TRACKING_* variables, MLflow's registry URI, which
set_registry_uri exports and set_registry_uri(None) leaves behind) must not reach the next one.
Runs a two-module session with the rehearsal's conftest fixture, no servers needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STOPPED_STACK = "http://127.0.0.1:9/stopped-stack"

_CONFTEST = "from tests.rehearsal.conftest import module_leaves_environment_as_found  # noqa: F401\n"

# test_a: a module that leaves what test_12, test_16 and test_18 each once left behind.
_LEAKING_MODULE = textwrap.dedent(f"""
    import os
    import mlflow

    def test_leaves_a_stopped_stack_behind():
        os.environ.update(MLFLOW_TRACKING_URI="{STOPPED_STACK}", MLFLOW_TRACKING_USERNAME="alice")
        os.environ.pop("HOME")
        mlflow.set_tracking_uri("{STOPPED_STACK}")
        mlflow.set_registry_uri("{STOPPED_STACK}")
""")

_NEXT_MODULE = textwrap.dedent(f"""
    import os
    import mlflow
    from mlflow.tracking._model_registry.utils import get_registry_uri

    def test_sees_the_process_as_it_was():
        assert "MLFLOW_TRACKING_USERNAME" not in os.environ
        assert os.environ.get("MLFLOW_TRACKING_URI") != "{STOPPED_STACK}"
        assert os.environ.get("MLFLOW_REGISTRY_URI") != "{STOPPED_STACK}"
        assert mlflow.get_tracking_uri() != "{STOPPED_STACK}"
        assert get_registry_uri() != "{STOPPED_STACK}"
        assert "HOME" in os.environ
""")


def test_a_module_leaves_no_environment_or_mlflow_uri_to_the_next(tmp_path):
    for name, text in {"conftest.py": _CONFTEST, "test_a.py": _LEAKING_MODULE, "test_b.py": _NEXT_MODULE}.items():
        (tmp_path / name).write_text(text)
    env = {name: value for name, value in os.environ.items() if not name.startswith("MLFLOW_")}
    env.update(PYTHONPATH=str(REPO), HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                             "--rootdir", str(tmp_path), str(tmp_path / "test_a.py"), str(tmp_path / "test_b.py")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout
