"""The scripts the deployments run in the server's image (components/image_scripts) spell out the
names and keys that components.render and the ops tools use elsewhere: each one must be render's (issue 24:
they were f-strings filled from these constants; now the modules hold the text itself)."""

from __future__ import annotations

import ast

import pytest

from components import render
from components.image_scripts import SCRIPTS_DIR, image_script

MAINTENANCE_KEY = render.MAINTENANCE_LOCK_KEY
SPELLED = {
    "auth_upgrade": [f"os.environ['{render.AUTH_DATABASE_URI_ENV}']", f"'{render.AUTH_ADMIN_USERNAME_ENV}'",
                     f"os.environ['{render.AUTH_ADMIN_PASSWORD_ENV}']",
                     f"pg_advisory_lock({render.AUTH_UPGRADE_LOCK_KEY})"],
    "schema_upgrade": [f"os.environ['{render.BACKEND_URI_ENV}']",
                       f"pg_advisory_lock({render.SCHEMA_UPGRADE_LOCK_KEY})"],
    "role_setup": [render.DB_ADMIN_PASSWORD_ENV, render.DB_ADMIN_USER_ENV, render.DB_EXTRA_NAMES_ENV,
                   render.DB_PASSWORD_ENV, *render.DB_SETUP_ENV, str(render.ROLE_SETUP_LOCK_KEY)],
    "gc": [f'os.environ["{render.BACKEND_URI_ENV}"]', f"os._exit({render.GC_LOCKED_EXIT})",
           f"sys.exit({render.GC_LOCKED_EXIT})", str(MAINTENANCE_KEY), str(MAINTENANCE_KEY >> 32),
           str(MAINTENANCE_KEY & 0xFFFFFFFF), repr(render.GC_LOCK_DATABASE)[1:-1],
           f'os.environ.get("{render.GC_LOCK_TOKEN_ENV}")'],
}


@pytest.mark.parametrize("name", sorted(SPELLED))
def test_each_script_spells_renders_names_and_keys(name):
    source = image_script(name)
    ast.parse(source)  # real Python, as `python -c` reads it
    missing = [text for text in SPELLED[name] if text not in source]
    assert not missing, f"components/image_scripts/{name}.py does not spell {missing} as components.render does"


def test_every_script_is_checked_and_served_as_render_serves_it():
    assert sorted(path.stem for path in SCRIPTS_DIR.glob("*.py") if path.stem != "__init__") == sorted(SPELLED)
    assert (render.AUTH_UPGRADE_SCRIPT, render.SCHEMA_UPGRADE_SCRIPT, render.ROLE_SETUP_SCRIPT, render.GC_SCRIPT) == \
        tuple(image_script(name) for name in ("auth_upgrade", "schema_upgrade", "role_setup", "gc"))
