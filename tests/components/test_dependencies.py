"""What the Pulumi program imports is what its virtualenv gets: Pulumi (and CI's plan and apply jobs) build
`./venv` from requirements.txt alone, while the tests run in a venv with the development requirements too, where
a missing pin goes unnoticed. Review 25 (aws 5 F1): `docker` (docker-py) was imported by the platforms but
installed only through mlflow in development, so every aws and azure preview failed at the first import.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata

from packaging.requirements import Requirement

from tests.harness.program import REPO_ROOT

PROGRAM_SOURCES = [REPO_ROOT / "__main__.py", *sorted((REPO_ROOT / "components").rglob("*.py"))]
LOCAL_PACKAGES = {path.name for path in REPO_ROOT.iterdir() if (path / "__init__.py").is_file()}


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for path in PROGRAM_SOURCES:
        if "image_scripts" in path.parts:
            continue  # run inside the server image, not by the program
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _requirement_name(line: str) -> str:
    return re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _closure(roots: set[str]) -> set[str]:
    """The distributions `roots` install here, with what they require on this machine (no extras)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_requirement_name(requirement.name))
    return seen


def test_every_package_the_program_imports_is_installed_by_requirements_txt():
    pinned = {_requirement_name(line) for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith(("#", "-"))}
    installed = _closure(pinned)
    distributions = metadata.packages_distributions()
    missing = {}
    for name in sorted(_imported_top_levels() - set(sys.stdlib_module_names) - LOCAL_PACKAGES - {"__future__"}):
        owners = {owner.lower().replace("_", "-") for owner in distributions.get(name, [])}
        if not owners & installed:
            missing[name] = sorted(owners) or ["(not installed at all)"]
    assert not missing, f"imported by the program but not installed from requirements.txt: {missing}"
