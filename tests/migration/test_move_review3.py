"""`python -m migration move`, review 3: only MLflow's own folders are taken outside the artifact root, never $HOME
or / (F1); a rerun on a moved source keeps what differs on the stack (F2); a file swapped after the plan is not
sent (F3); the rewritten copy opens read-only (F4); the azure step waits for its job (F5); the manifest is always
locked (F6). Without servers."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from migration import cli
from migration.errors import MigrationError, RefusedError
from migration.manifest import Manifest
from migration.moveplan import StackLayout, plan_move
from migration.stack import StackContents
from tests.migration import test_move
from tests.migration.test_move import _laptop, _mover, _StackStub
from tests.migration.test_move_safety import _hold, _sqlite

fake_stack = test_move.fake_stack  # the stack's artifact store as a dict (a fixture)

RUN = "a" * 32


def _add(db: Path, sql: str, *rows) -> None:
    conn = sqlite3.connect(db)
    conn.executemany(sql, rows)
    conn.commit()
    conn.close()


# --- F1 ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """$HOME with a private key in it."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text("PRIVATE KEY\n")
    monkeypatch.setenv("HOME", str(home))
    return home


def test_outside_the_root_only_mlflows_own_folders_are_taken(tmp_path, home):
    """A crafted database names ~/.ssh, /, /etc, a folder of another run, or a well-shaped folder that is a link
    to $HOME: each refused and listed, nothing of them planned; MLflow's own shapes outside the root still move."""
    db, root = _laptop(tmp_path, str)
    elsewhere = tmp_path / "elsewhere"
    crafted = {"r1" * 16: "../.ssh", "r2" * 16: str(home / ".ssh"), "r3" * 16: "/", "r4" * 16: "/etc",
               "r5" * 16: str(elsewhere / "1" / RUN / "artifacts"),  # another run's folder shape
               "r6" * 16: f"file://{elsewhere}/1/{'r6' * 16}/artifacts"}  # shaped, but a link to $HOME
    (elsewhere / "1" / RUN / "artifacts").mkdir(parents=True)
    (elsewhere / "1" / RUN / "artifacts" / "x.txt").write_text("x")
    (elsewhere / "1" / ("r6" * 16)).mkdir(parents=True)
    (elsewhere / "1" / ("r6" * 16) / "artifacts").symlink_to(home)
    (home / "Downloads").mkdir()
    _add(db, "INSERT INTO runs VALUES (?, 1, ?)", *crafted.items())
    # a run (and its experiment) placed elsewhere by MLflow itself: `<experiment location>/<run id>/artifacts`
    good, good_model = "e" * 32, "m-" + "f" * 32
    _add(db, "INSERT INTO experiments VALUES (?, ?, ?, 'default')", (3, "custom", str(tmp_path / "data" / "x")),
         (4, "four", str(tmp_path / "other" / "4")))
    _add(db, "INSERT INTO runs VALUES (?, ?, ?)", (good, 3, str(tmp_path / "data" / "x" / good / "artifacts")))
    _add(db, "INSERT INTO logged_models VALUES (?, 4, ?, 2)",
         (good_model, str(tmp_path / "other" / "4" / "models" / good_model / "artifacts")))
    for folder in (tmp_path / "data/x" / good / "artifacts", tmp_path / "other/4/models" / good_model / "artifacts"):
        folder.mkdir(parents=True)
        (folder / "ok.txt").write_text("ok")

    (tmp_path.parent / ".ssh").mkdir(exist_ok=True)  # what `../.ssh` names from the database's folder
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    sources = {str(f.source) for f in plan.files}
    assert not [s for s in sources if "id_rsa" in s or "/etc/" in s or s.startswith(str(elsewhere))], sources
    refused = "\n".join(plan.outside_refused)
    for run_id in crafted:
        assert f"runs.artifact_uri {run_id}:" in refused, (run_id, refused)
    assert f"is or holds {home}" in refused and "not the folder MLflow writes for it" in refused
    assert f"3/{good}/artifacts/ok.txt" in {f.dest for f in plan.files}
    assert f"4/models/{good_model}/artifacts/ok.txt" in {f.dest for f in plan.files}
    assert len(plan.outside) == 4, plan.outside  # the run, the model and both experiments' folders

    # the preflight refuses, every one listed, and names every outside folder it takes
    buf = io.StringIO()
    move = _mover(tmp_path)
    move.reporter.quiet = False
    move.reporter.err = Console(file=buf, width=400)
    with pytest.raises(RefusedError) as caught:
        move._plan(db, db, None, StackLayout())
    assert caught.value.exit_code == 3 and "nothing was written" in caught.value.message
    assert all(run_id in caught.value.message for run_id in crafted)
    assert f"outside the artifact root, moved: runs.artifact_uri {good}: {tmp_path / 'data' / 'x' / good}" \
           in buf.getvalue()


def test_an_outside_experiment_folder_must_be_mlflows_and_never_home_or_the_root(tmp_path, home):
    db, root = _laptop(tmp_path, str)
    _add(db, "INSERT INTO experiments VALUES (?, ?, ?, 'default')", (5, "home", str(home)), (6, "top", "/"),
         (7, "up", str(tmp_path)), (8, "named", str(tmp_path / "exps" / "8")))
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    refused = "\n".join(plan.outside_refused)
    assert "experiments.artifact_location 5" in refused and "experiments.artifact_location 6" in refused
    assert "experiments.artifact_location 7" in refused  # the artifact root's parent
    assert "experiments.artifact_location 8" not in refused and any("location 8" in x for x in plan.outside)


@pytest.mark.parametrize("where", ["/", "home", "above home"])
def test_an_artifact_root_that_is_or_holds_home_or_slash_is_refused(tmp_path, home, where):
    """The default root is read from the database's locations: a crafted one must not make it / or $HOME."""
    db, _ = _laptop(tmp_path, str)
    root = {"/": Path("/"), "home": home, "above home": home.parent}[where]
    with pytest.raises(RefusedError, match="is or holds"):
        plan_move(db, root, StackLayout(), base=tmp_path)


# --- F2 ---------------------------------------------------------------------------------------------------------
def test_a_rerun_on_a_moved_source_keeps_what_differs_on_the_stack(tmp_path, fake_stack):
    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    assert _mover(tmp_path)._upload(_StackStub(), plan, manifest) == 4
    newer, lost = sorted(fake_stack)[:2]
    fake_stack[newer] = b"a newer version a user logged on the stack"
    del fake_stack[lost]
    rerun = _mover(tmp_path)
    assert rerun._upload(_StackStub(), plan, manifest) == 1, "only what the stack lacks"
    assert fake_stack[newer] == b"a newer version a user logged on the stack" and lost in fake_stack
    assert rerun.result.lost == [lost] and len(rerun.result.differs) == 1 and newer in rerun.result.differs[0]
    forced = _mover(tmp_path, overwrite=True)
    assert forced._upload(_StackStub(), plan, manifest) == 1
    assert fake_stack[newer] != b"a newer version a user logged on the stack" and not forced.result.differs
    manifest.close()


class _MovedStack:
    """A stack that holds the source already (its rows), its artifacts in `fake_stack`."""

    uri = "https://stack.example"

    def __init__(self, to):
        pass

    def layout(self):
        return StackLayout()

    def check_admin(self):
        return None

    def add_deleted_models(self, found, model_ids):  # the real stack finds none it did not list
        return None

    def contents(self, layout=None):
        return StackContents(experiments={"0": "Default", "1": "a", "2": "team"}, runs={RUN, "b" * 32},
                             logged_models={"m-" + "c" * 32}, traces={"tr-1"})


def test_the_cli_exits_3_on_files_that_differ_unless_overwrite(tmp_path, fake_stack, monkeypatch, capsys):
    import migration.source
    import migration.stack

    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    _mover(tmp_path)._upload(_StackStub(), plan, manifest)
    manifest.close()
    newer = sorted(fake_stack)[0]
    fake_stack[newer] = b"newer and longer"
    monkeypatch.setattr(migration.stack, "Stack", _MovedStack)
    monkeypatch.setattr(migration.source, "prepare_source", lambda path: SimpleNamespace(path=path, cleanup=lambda: 0))
    argv = ["move", str(db), "--to", "https://stack.example", "--artifacts", str(root), "-q"]
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert "1 file(s) of this source differ on the stack (another size, or another sha256 read back), kept" in err
    assert newer in err
    assert "--overwrite" in err and fake_stack[newer] == b"newer and longer"
    assert cli.main([*argv, "--overwrite"]) == 0 and fake_stack[newer] != b"newer and longer"
    # this CLI run's manifest (SOURCE.move/) never saw the move complete: "moved", not "repaired"
    assert "MLflow move: moved" in capsys.readouterr().out


# --- F3 ---------------------------------------------------------------------------------------------------------
def test_a_file_swapped_after_the_plan_is_not_sent(tmp_path, fake_stack):
    db, root = _laptop(tmp_path, str)
    art = root / "1" / RUN / "artifacts"
    (root / "shared").mkdir()
    (root / "shared" / "inside.txt").write_text("inside the root\n")
    (art / "linked").symlink_to(root / "shared")  # a link inside the root: planned, followed, sent
    secret = tmp_path / "secret"
    secret.write_text("PRIVATE KEY\n")
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    by_name = {f.source.name: f for f in plan.files}
    swapped, replaced = by_name["c.txt"], by_name["data.csv"]
    swapped.source.unlink()
    swapped.source.symlink_to(secret)  # after the plan: a link out of the root
    fresh = replaced.source.with_name("fresh")
    fresh.write_bytes(replaced.source.read_bytes())
    os.replace(fresh, replaced.source)  # another file (inode), same bytes
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    move = _mover(tmp_path)
    move.scratch = tmp_path / "scratch"
    move.scratch.mkdir()
    with pytest.raises(MigrationError, match="2 file[(]s[)] changed between the plan and their upload") as caught:
        move._upload(_StackStub(), plan, manifest)
    assert str(swapped.source) in caught.value.message and "a link now" in caught.value.message
    assert str(replaced.source) in caught.value.message and caught.value.exit_code == 1
    assert not [k for k, v in fake_stack.items() if b"PRIVATE" in v], "the secret never reaches the stack"
    assert swapped.dest not in fake_stack and replaced.dest not in fake_stack
    assert fake_stack[by_name["inside.txt"].dest] == b"inside the root\n" and len(fake_stack) == 3
    assert set(manifest.records()) == set(fake_stack), "the rest is recorded"
    assert list(move.scratch.iterdir()) == [], "no snapshot left"
    manifest.close()


# --- F4 ---------------------------------------------------------------------------------------------------------
def test_a_wal_source_gives_a_rewritten_copy_that_opens_read_only(tmp_path):
    src = tmp_path / "copy.db"
    conn = sqlite3.connect(src)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    conn.execute("CREATE TABLE runs (x)")
    conn.execute("INSERT INTO runs VALUES (1)")
    conn.commit()
    conn.close()
    target = tmp_path / "state" / "rewritten.db"
    _mover(tmp_path)._rewrite(src, SimpleNamespace(rewrites=[]), target)
    header = target.read_bytes()[:20]
    assert (header[18], header[19]) == (1, 1), "rollback-journal mode"
    assert sorted(p.name for p in target.parent.iterdir()) == ["rewritten.db"], "no -wal or -shm beside it"
    # as the local step mounts it: 0444, in a read-only directory, opened by another uid with ?mode=ro
    ro = Path(tempfile.mkdtemp(prefix="move-ro-"))
    try:
        (ro / "mlflow.db").write_bytes(target.read_bytes())
        os.chmod(ro / "mlflow.db", 0o444)
        os.chmod(ro, 0o555)
        # migration/sqlite.py connect_readonly's form, and SQLite's immutable one
        code = ("import sqlite3,sys\n"
                "print(sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True).execute('SELECT count(*) FROM runs')"
                ".fetchone()[0])\n"
                "print(sqlite3.connect(f'file:{sys.argv[1]}?immutable=1', uri=True)"
                ".execute('SELECT count(*) FROM runs').fetchone()[0])")
        python, nobody = sys.executable, None
        if os.geteuid() == 0:  # root writes anywhere: read as another uid, with a Python that uid may run
            python, nobody = shutil.which("python3", path="/usr/bin:/bin"), lambda: (os.setgid(65534),
                                                                                   os.setuid(65534))
            if python is None:
                pytest.skip("no system python3 to run as another uid")
        done = subprocess.run([python, "-c", code, str(ro / "mlflow.db")], capture_output=True, text=True,
                              cwd="/", preexec_fn=nobody)
        assert done.returncode == 0 and done.stdout.split() == ["1", "1"], done.stderr
    finally:
        os.chmod(ro, 0o755)
        for p in ro.iterdir():
            p.unlink()
        ro.rmdir()


# --- F5 ---------------------------------------------------------------------------------------------------------
STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$LOG"
case "$0 $*" in
  *pulumi*) echo value;;
  *"job start"*) echo exec-1;;
  *"execution show"*) n=$(cat "$COUNT" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$COUNT"
                      if [ $n -lt "${RUNS:-3}" ]; then echo Running; else echo "$FINAL"; fi;;
  *"containerapp show"*) echo '{}';;
  *jq*) cat > /dev/null; echo '{}';;
esac
"""


def run_azure_step(tmp_path: Path, final: str, runs: int = 3) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The printed azure step run by bash against stub az/pulumi/jq/sleep: the execution answers Running until
    the `runs`-th poll, then `final`; (the run, every stub call in order)."""
    from migration.move import _azure_step

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("az", "pulumi", "jq", "sleep"):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "log"
    step = _azure_step(Path("/home/me/p/mlflow.db.move/rewritten.db"), "dev", "0123456789ab")
    done = subprocess.run(["bash", "-c", step], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log),
                               "COUNT": str(tmp_path / "count"), "FINAL": final, "RUNS": str(runs)})
    return done, log.read_text().splitlines()


@pytest.mark.parametrize("final", ["Succeeded", "Failed"])
def test_the_azure_step_waits_for_its_job_and_deletes_only_after_success(tmp_path, final):
    done, calls = run_azure_step(tmp_path, final)
    start = next(i for i, c in enumerate(calls) if "job start" in c)
    polls = [i for i, c in enumerate(calls) if "job execution show" in c]
    assert len(polls) == 3 and all("--job-execution-name exec-1" in calls[i] for i in polls)
    assert [c for c in calls[start:] if c.startswith("sleep")] == ["sleep 10"] * 3
    deletes = [i for i, c in enumerate(calls) if " delete " in f"{c} "]
    if final == "Succeeded":
        assert len(deletes) == 2 and min(deletes) > max(polls) and "the database step committed" in done.stdout
    else:
        assert deletes == [], "nothing deleted after a failed job"
        assert "did not succeed (Failed): nothing was deleted" in done.stdout


# --- F6 ---------------------------------------------------------------------------------------------------------
def test_the_manifest_is_always_locked_wherever_it_lies(tmp_path, capsys):
    from migration.move import lock_paths

    state = tmp_path / "a.db.move"
    assert lock_paths(state, state / "manifest.sqlite") == [state / "lock", state / "manifest.sqlite.lock"]
    # source a's manifest lies in its own state folder; source b is given the same one
    _sqlite(tmp_path / "a.db")
    b = _sqlite(tmp_path / "b.db")
    holder = _hold(lock_paths(state, state / "shared.sqlite"))
    try:
        code = cli.main(["move", str(b), "--to", "http://127.0.0.1:9", "--manifest", str(state / "shared.sqlite")])
        err = capsys.readouterr().err
        assert code == 3 and f"(pid {holder.pid}; lock {state / 'shared.sqlite.lock'})" in err, err
    finally:
        holder.kill()
        holder.wait()
