"""MLflow imported for its SQL stores without pandas, numpy, scipy and pyarrow (migration/lean.py).

Each case runs in a fresh interpreter: what an import loads is process-wide state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_probe_warm_up_loads_mlflow_stores_without_the_data_stack():
    got = _run("""
import json, sys
from migration.lean import DATA_STACK
from migration.probe import warm_up
warm_up()
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow import MlflowClient, set_experiment
print(json.dumps({"loaded": sorted(m for m in DATA_STACK if m in sys.modules),
                  "finders": [type(f).__name__ for f in sys.meta_path]}))
""")
    # a failure here means MLflow now needs one of them at import time: the fallback imports them
    # all, which works, but the saving this module exists for is gone
    assert got["loaded"] == []
    assert "_Hide" not in got["finders"]


def test_hidden_packages_are_importable_afterwards():
    got = _run("""
import json, sys
from migration import lean
lean.import_modules("mlflow.store.db.utils")
before = "pandas" in sys.modules
import pandas, numpy
print(json.dumps({"before": before, "pandas": pandas.__name__, "numpy": numpy.__name__}))
""")
    assert got == {"before": False, "pandas": "pandas", "numpy": "numpy"}


def test_falls_back_to_a_plain_import_when_mlflow_needs_a_hidden_package():
    # mlflow.store.db.utils imports alembic at module level: hiding it makes the first attempt fail
    got = _run("""
import json, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from migration import lean
attempts = []
def importer():
    attempts.append(1)
    import mlflow.store.db.utils as u
    return u._upgrade_db.__name__
name = lean.run(importer, hidden=frozenset({"alembic"}))
print(json.dumps({"attempts": len(attempts), "name": name, "alembic": "alembic" in sys.modules,
                  "finders": [type(f).__name__ for f in sys.meta_path]}))
""")
    assert got == {"attempts": 2, "name": "_upgrade_db", "alembic": True, "finders": got["finders"]}
    assert "_Hide" not in got["finders"]


def test_a_real_import_failure_is_still_raised():
    got = _run("""
import json
from migration import lean
try:
    lean.import_modules("mlflow.no_such_module_here")
except ModuleNotFoundError as exc:
    print(json.dumps({"error": exc.name}))
""")
    assert got == {"error": "mlflow.no_such_module_here"}
