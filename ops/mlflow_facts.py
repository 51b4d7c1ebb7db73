"""Which MLflow the server image holds and which schema revisions it knows (its Alembic histories:
the tracking schema's and each auth app's). Runs in the server's image (a one-off container on the
local stack), sent as `python -c` source; prints one JSON object.

A dump whose revision is not in these histories was written by a newer MLflow: the server would
refuse to start on it, and there is no way down but a backup taken before the upgrade.
"""

import importlib.metadata
import importlib.util
import json
import os
import re
import sys

MIGRATIONS = {
    "tracking": ("mlflow", ("store", "db_migrations")),
    "basic-auth": ("mlflow", ("server", "auth", "db", "migrations")),
    "oidc-auth": ("mlflow_oidc_auth", ("db", "migrations")),
}
"""history name -> (package, its Alembic script directory); the auth ones are keyed by --app-name."""


def _version() -> str:
    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise SystemExit("mlflow_facts: MLflow is not installed in this image")


_REVISION = re.compile(r"""^revision\s*(?::[^=]+)?=\s*['"]([0-9A-Za-z_]+)['"]""", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]+)?=\s*(.+)$", re.MULTILINE)


def _history(package: str, parts: tuple) -> dict:
    """Read from the migration scripts' `revision =` / `down_revision =` lines, as Alembic does, but
    without importing each script (which imports MLflow and SQLAlchemy: seconds instead of ms)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return {}
    versions = os.path.join(list(spec.submodule_search_locations)[0], *parts, "versions")
    if not os.path.isdir(versions):
        return {}
    revisions, parents = set(), set()
    for name in sorted(os.listdir(versions)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(versions, name), encoding="utf-8") as script:
            text = script.read()
        revision = _REVISION.search(text)
        if revision is None:
            continue
        revisions.add(revision.group(1))
        down = _DOWN.search(text)
        if down:
            parents.update(re.findall(r"""['"]([0-9A-Za-z_]+)['"]""", down.group(1)))
    return {"revisions": sorted(revisions), "heads": sorted(revisions - parents)}


def facts() -> dict:
    histories = {name: _history(package, parts) for name, (package, parts) in MIGRATIONS.items()}
    return {"mlflow_version": _version(), "histories": {name: h for name, h in histories.items() if h}}


if __name__ == "__main__":
    json.dump(facts(), sys.stdout)
    sys.stdout.write("\n")
