"""`python -m migration move`, review 15 (issue 27): an empty artifact file (MLflow's server lists it without a size)
no longer fails every run; files in a named workspace carry that workspace on every artifact call (the server
refuses a `workspaces/<w>/` path otherwise); a laptop whose project folder moved is refused, or read from
--artifacts, instead of "moved" with no file sent. The reviewer's repros, turned to assert the fix."""

from __future__ import annotations

import concurrent.futures
import shutil

from migration import cli
from migration.manifest import Manifest
from migration.moveplan import StackLayout, plan_move
from tests.migration import test_move, test_move_review5
from tests.migration.test_move import _everything, _laptop, _mover, _StackStub

fake_stack = test_move.fake_stack  # fixtures
stack = test_move_review5.stack
RUN = "a" * 32


def test_an_empty_file_moves_and_checks(tmp_path, fake_stack):
    db, root = _laptop(tmp_path, str)
    (root / "1" / RUN / "artifacts" / "code").mkdir()
    (root / "1" / RUN / "artifacts" / "code" / "__init__.py").write_bytes(b"")
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    assert _mover(tmp_path)._upload(_StackStub(), plan, manifest) == 5
    assert fake_stack[f"1/{RUN}/artifacts/code/__init__.py"] == b""
    again = _mover(tmp_path)
    assert again._upload(_StackStub(), plan, manifest) == 0 and again.result.skipped == 5
    _mover(tmp_path)._finish(_StackStub(), plan, manifest, True, _everything(plan))
    manifest.close()


def test_a_named_workspaces_calls_carry_it_in_their_own_thread(tmp_path):
    from mlflow.utils.workspace_context import get_request_workspace

    from migration import move as move_module

    class Repo:
        def __init__(self, uri, tracking_uri):
            pass

        def list_artifacts(self, path=None):
            return get_request_workspace()

    repos = move_module._Repos("https://stack.example")
    real = move_module._Repository
    move_module._Repository = Repo
    try:
        team, _ = repos.get("workspaces/team-a/7/" + RUN + "/artifacts")
        default, _ = repos.get("workspaces/default/8/" + RUN + "/artifacts")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            seen = list(pool.map(lambda r: r.list_artifacts(), [team, default, team, default]))
    finally:
        move_module._Repository = real
    assert seen == ["team-a", None, "team-a", None], "each call its own workspace, none leaking into another"
    assert get_request_workspace() is None


def test_a_moved_project_folder_is_refused_or_read_from_artifacts(tmp_path, stack, capsys):
    db, root = _laptop(tmp_path, str)
    moved_to = tmp_path / "elsewhere" / "mlruns"
    moved_to.parent.mkdir()
    shutil.move(str(root), str(moved_to))  # `mv ~/proj ~/work/proj`: the rows keep the old absolute paths
    argv = ["move", str(db), "--to", "https://stack.example", "-q", "--database-uri-env", "STACK_DB"]
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "does not exist" in err and "--artifacts" in err and stack.files == {} and not stack.seen
    assert cli.main([*argv, "--artifacts", str(moved_to)]) == 0, capsys.readouterr().err
    assert len(stack.files) == 4 and stack.files[f"1/{RUN}/artifacts/data.csv"] == b"x,y\n"
