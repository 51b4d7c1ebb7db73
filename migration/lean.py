"""Import MLflow for its SQL stores only, without its data-science stack, the way mlflow-skinny runs.

The tool needs MLflow for SQLAlchemy/Alembic work alone: creating the target schema, upgrading an old
source copy, and the probe after commit. None of that touches pandas, numpy, scipy or pyarrow, yet
`import mlflow` loads all four (datasets, model signatures), a large share of its import CPU (figures
in bench/README.md); on a small database that import is most of the tool's wall time. MLflow guards
those imports for mlflow-skinny, which ships without them, so they are hidden while MLflow is
imported; afterwards anything may import them as usual. Should an MLflow release need one of them at
import time, the import is simply repeated with nothing hidden.
"""

from __future__ import annotations

import importlib
import importlib.abc
import logging
import sys
import threading
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

DATA_STACK = frozenset({"pandas", "numpy", "scipy", "pyarrow"})
T = TypeVar("T")
_lock = threading.Lock()


class _Hide(importlib.abc.MetaPathFinder):
    """A meta path finder that makes the named top-level packages look absent."""

    def __init__(self, names: frozenset[str]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):  # noqa: ARG002 - the finder protocol
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden while MLflow is imported)",
                                      name=fullname)
        return None


def _forget_mlflow() -> None:
    for name in [n for n in sys.modules if n == "mlflow" or n.startswith("mlflow.")]:
        del sys.modules[name]


def run(importer: Callable[[], T], hidden: frozenset[str] = DATA_STACK) -> T:
    """Call `importer` (it imports MLflow modules) with `hidden` packages unavailable; on any failure,
    forget the MLflow modules it loaded and call it again with everything available."""
    with _lock:
        names = frozenset(n for n in hidden if n not in sys.modules)  # already loaded: nothing to save
        finder = _Hide(names)
        sys.meta_path.insert(0, finder)
        try:
            return importer()
        except Exception as exc:  # noqa: BLE001 - the plain import below reports a real failure
            log.debug("MLflow import without %s failed (%s: %s); importing it with them",
                      ", ".join(sorted(names)), type(exc).__name__, exc)
        finally:
            sys.meta_path.remove(finder)
        _forget_mlflow()
        return importer()


def import_modules(*modules: str, hidden: frozenset[str] = DATA_STACK) -> None:
    """Import MLflow modules (see `run`)."""

    def importer() -> None:
        for module in modules:
            importlib.import_module(module)

    run(importer, hidden)
