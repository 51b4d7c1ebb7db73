"""The Alembic revisions that the installed MLflow knows, read from its migration scripts.

Parsing the scripts (instead of importing MLflow and Alembic) keeps the common case, a source already
at the head revision, free of MLflow's multi-second import.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_REVISION = re.compile(r"^revision\s*(?::\s*str\s*)?=\s*['\"]([0-9a-zA-Z_]+)['\"]", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]+)?=\s*(.+)$", re.MULTILINE)


def mlflow_package_dir() -> Path:
    spec = importlib.util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MLflow is not installed in this environment")
    return Path(list(spec.submodule_search_locations)[0])


def mlflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("mlflow", "mlflow-skinny"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return "unknown"


@dataclass(frozen=True)
class RevisionGraph:
    revisions: frozenset[str]
    heads: tuple[str, ...]

    @property
    def head(self) -> str:
        if len(self.heads) != 1:
            raise RuntimeError(f"installed MLflow has {len(self.heads)} migration heads: {self.heads}")
        return self.heads[0]


@lru_cache(maxsize=1)
def revision_graph() -> RevisionGraph:
    versions = mlflow_package_dir() / "store" / "db_migrations" / "versions"
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions.glob("*.py"):
        text = script.read_text(encoding="utf-8")
        rev = _REVISION.search(text)
        if not rev:
            continue
        revisions.add(rev.group(1))
        down = _DOWN.search(text)
        if down:
            parents.update(re.findall(r"['\"]([0-9a-zA-Z_]+)['\"]", down.group(1)))
    heads = tuple(sorted(revisions - parents))
    return RevisionGraph(frozenset(revisions), heads)
