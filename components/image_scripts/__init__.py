"""Python scripts that the deployments run inside the server's image, as `python -c <source>`.

Each one is a module of its own, so that linters and readers see it as code (issue 24: they were
f-strings in render.py). Their text is exactly what every platform puts in its containers' commands:
a changed byte changes every task definition and revision, and restarts the services on the next
`pulumi up`; tests/components/test_image_scripts.py checks that the names and keys they spell out are
render's. Never import them: they run when imported (they read sys.argv, take locks, start servers).
The `ops/` tools send their own modules (ops.objects, ops.quarantine, ...) the same way.
"""

from __future__ import annotations

from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parent


def script_source(module_file: str | Path) -> str:
    """A module's text as `python -c` runs it."""
    return Path(module_file).read_text(encoding="utf-8")


def image_script(name: str) -> str:
    """The text of the image script `name` (a module of this package: auth_upgrade, gc, ...)."""
    return script_source(SCRIPTS_DIR / f"{name}.py")
