"""`python -m migration move`, review 2: one move of a source at a time and a rewritten copy of its own (F1); what a
failed database step calls orphaned (F2); the commit marked the moment it returns, interrupts told truthfully,
temporary copies removed on SIGTERM (F3); the printed one-off steps (F4, F5, hardening). Without servers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from fnmatch import fnmatch
from pathlib import Path
from types import SimpleNamespace

import pytest

from migration import cli
from migration.errors import Interrupted, RefusedError
from migration.manifest import Manifest
from migration.moveplan import StackLayout, plan_move
from migration.stack import StackContents
from tests.migration.test_move import _laptop, _mover

REPO = Path(__file__).resolve().parents[2]


def _sqlite(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    return path


def _hold(lock_paths: list[Path]) -> subprocess.Popen:
    """Another process holding the move's lock, as a running move does."""
    code = ("import sys,time;from pathlib import Path;from migration.move import MoveLock\n"
            "with MoveLock([Path(p) for p in sys.argv[1:]]):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, *map(str, lock_paths)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    return holder


# --- F1 ---------------------------------------------------------------------------------------------------------
def test_a_second_move_of_one_source_is_refused_while_the_first_runs(tmp_path, capsys):
    db = _sqlite(tmp_path / "mlflow.db")
    holder = _hold([tmp_path / "mlflow.db.move" / "lock"])
    try:
        code = cli.main(["move", str(db), "--to", "http://127.0.0.1:9"])
        err = capsys.readouterr().err
        assert code == 3, err
        assert f"another move of this source is running (pid {holder.pid}" in err and "nothing was written" in err
        # one manifest shared by two sources: the second is refused too (a lock next to the manifest)
        other = _sqlite(tmp_path / "other.db")
        holder2 = _hold([tmp_path / "other.db.move" / "lock.x", tmp_path / "shared" / "m.sqlite.lock"])
        try:
            code = cli.main(["move", str(other), "--to", "http://127.0.0.1:9",
                             "--manifest", str(tmp_path / "shared" / "m.sqlite")])
            err = capsys.readouterr().err
            assert code == 3 and f"(pid {holder2.pid}; lock {tmp_path / 'shared' / 'm.sqlite.lock'})" in err, err
        finally:
            holder2.kill()
            holder2.wait()
    finally:
        holder.kill()
        holder.wait()
    # the holder gone (killed: the kernel released its lock), the next move gets past the lock (to the stack)
    code = cli.main(["move", str(db), "--to", "http://127.0.0.1:9"])
    assert code == 1 and "cannot reach the stack" in capsys.readouterr().err


def test_the_rewritten_copy_is_never_shared_and_readable_by_the_container(tmp_path, monkeypatch):
    """Two rewrites at once each write a file of their own (B's copy never lands in A's), synced and renamed;
    rewritten.db is 0644 under umask 077 (the one-off container's uid reads it)."""
    from migration import move as move_module

    src = _sqlite(tmp_path / "copy.db")
    target = tmp_path / "state" / "rewritten.db"
    both = threading.Barrier(2, timeout=10)
    seen: list[Path] = []

    def rewrite(path, rewrites):
        seen.append(Path(path))
        both.wait()  # both copies written, neither rewritten nor renamed yet
        conn = sqlite3.connect(path)
        conn.execute("INSERT INTO t VALUES (?)", (str(path),))
        conn.commit()
        conn.close()

    monkeypatch.setattr(move_module, "apply_rewrites", rewrite)
    old = os.umask(0o077)
    try:
        threads = [threading.Thread(target=_mover(tmp_path)._rewrite, args=(src, SimpleNamespace(rewrites=[]), target))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.umask(old)
    assert len(set(seen)) == 2 and all(p.parent == target.parent and p != target for p in seen), seen
    assert sorted(p.name for p in target.parent.iterdir()) == ["rewritten.db"], "no partial file left"
    conn = sqlite3.connect(target)
    rows = conn.execute("SELECT x FROM t").fetchall()
    conn.close()
    assert len(rows) == 1 and rows[0][0] in {str(p) for p in seen}, "one whole rewrite, never a mix"
    assert target.stat().st_mode & 0o777 == 0o644


# --- F2 ---------------------------------------------------------------------------------------------------------
class _Listing:
    def __init__(self, contents):
        self.contents_now = contents

    def contents(self, layout=None):
        return self.contents_now


def test_after_a_failed_database_step_the_stack_is_listed_again(tmp_path):
    """Nothing was uploaded before the database step (the artifacts go after it): the message says nothing of this
    move was written, or that another move of this source committed meanwhile; never the migration's
    `--mode replace` (it empties the stack)."""
    from migration.move import _after_failed_database

    db, root = _laptop(tmp_path, str)
    plan = plan_move(db, root, StackLayout(), base=tmp_path)
    failed = RefusedError("target holds MLflow data besides the default experiment/workspace (runs: 1)",
                          hint="use --mode replace to empty the target's MLflow tables first")
    won = StackContents(experiments={"0": "Default", "1": "a", "2": "team"}, runs=set(plan.runs),
                        logged_models=set(plan.logged_models), traces=set(plan.traces))
    exc = _after_failed_database(failed, plan, _Listing(won), StackLayout())
    assert isinstance(exc, RefusedError) and "another move of this source committed" in str(exc)
    assert "sends the artifacts" in exc.hint and "--mode replace" not in str(exc)
    someone = StackContents(experiments={"0": "Default", "1": "x"}, runs={"e" * 32})
    exc = _after_failed_database(failed, plan, _Listing(someone), StackLayout())
    assert "nothing of this move was written" in exc.message and "--mode replace" not in str(exc)
    assert "move --check" in exc.hint and exc.exit_code == failed.exit_code
    assert not list(tmp_path.glob("*.move/orphans.txt"))


# --- F3 ---------------------------------------------------------------------------------------------------------
def _fake_migrate(monkeypatch, body):
    import migration.core

    monkeypatch.setattr(migration.core, "migrate", lambda opts, reporter: body(reporter))


def _summary_free(move):
    move.reporter.summary = lambda outcome: None
    return move


def test_sigint_is_held_across_the_commit_and_the_step_marked_the_moment_it_returns(tmp_path, monkeypatch):
    steps = []

    def body(reporter):
        with reporter.phase("copy and verify each table"):
            pass
        with reporter.phase("commit"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
            steps.append("commit finished")  # the interrupt did not cut the commit short
        steps.append("after the commit")  # never: the held interrupt is raised as the phase ends

    _fake_migrate(monkeypatch, body)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    move = _summary_free(_mover(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        move._database(tmp_path / "r.db", "postgresql://u@h/db", manifest)
    assert steps == ["commit finished"] and move.committed and manifest.step_done("database")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    manifest.close()


def test_ctrl_c_after_the_commit_keeps_the_mark_and_sigterm_before_it_rolls_back(tmp_path, monkeypatch):
    from migration.move import _sigterm_interrupts

    def probe_interrupted(reporter):
        with reporter.phase("commit"):
            pass
        raise KeyboardInterrupt  # Ctrl-C during the MLflow probe

    _fake_migrate(monkeypatch, probe_interrupted)
    manifest = Manifest(tmp_path / "m.sqlite", "https://stack.example")
    move = _summary_free(_mover(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        move._database(tmp_path / "r.db", "postgresql://u@h/db", manifest)
    assert move.committed and manifest.step_done("database")

    def terminated(reporter):
        with reporter.phase("copy and verify each table"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        with reporter.phase("commit"):
            pass

    _fake_migrate(monkeypatch, terminated)
    other = Manifest(tmp_path / "o.sqlite", "https://stack.example")
    move = _summary_free(_mover(tmp_path))
    with _sigterm_interrupts(), pytest.raises(Interrupted):
        move._database(tmp_path / "r.db", "postgresql://u@h/db", other)
    assert not move.committed and other.step_done("database") is None
    manifest.close()
    other.close()


@pytest.mark.parametrize("committed, held", [(True, True), (False, False), (False, None)])
def test_the_interrupt_message_tells_whether_the_database_step_committed(tmp_path, monkeypatch, capsys, committed,
                                                                         held):
    from migration.move import Move

    def run(self):
        self.committed, self.held = committed, held
        raise KeyboardInterrupt

    monkeypatch.setattr(Move, "run", run)
    out = tmp_path / "r.json"
    code = cli.main(["move", "mlflow.db", "--to", "https://stack.example", "--json", str(out)])
    err = capsys.readouterr().err
    data = json.loads(out.read_text())
    assert code == 130 and "rolled back" not in err.replace("rolled back, if it had started", "")
    if committed:
        assert "committed" in err and "rerun the same command" in err and data["status"] == "committed"
        assert data["interrupted"]
    elif held is False:
        assert "before the database step committed" in err and "nothing was written to the stack" in err
        assert data["status"] == "interrupted"
    else:  # interrupted before the stack was listed: whether an earlier run committed is not known
        assert "before the stack was listed" in err and "committed" not in err and data["status"] == "interrupted"


def test_sigterm_removes_the_temporary_copies(tmp_path):
    """A move stopped by SIGTERM (here: while the stack does not answer) unwinds: /tmp/mlflow-move-* is gone."""
    db, _ = _laptop(tmp_path, str)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    move = subprocess.Popen([sys.executable, "-m", "migration", "move", str(db), "--to",
                             f"http://127.0.0.1:{server.getsockname()[1]}", "-q"], cwd=REPO,
                            env={**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server.settimeout(60)
        conn, _ = server.accept()  # the move asks the stack: its temporary directory exists by now
        assert any(p.name.startswith("mlflow-move-") for p in tmp.iterdir())
        move.send_signal(signal.SIGTERM)
        out, err = move.communicate(timeout=60)
        conn.close()
    finally:
        server.close()
        if move.poll() is None:
            move.kill()
    assert move.returncode == 130, err
    assert [p.name for p in tmp.iterdir()] == [], "temporary copies left behind"


# --- F4, F5, hardening --------------------------------------------------------------------------------------------
def _step(kind: str, rewritten: Path, stack: str = "dev") -> str:
    from migration.move import MoveOptions, one_off_step

    return one_off_step(MoveOptions(source="./mlflow.db", to="https://stack.example", stack_kind=kind,
                                    pulumi_stack=stack), rewritten, token="0123456789ab")


def _proxy_allows(artifact_path: str) -> bool:
    """The proxy's allow-list for artifact routes (components/render/proxy.py), applied as Nginx applies it."""
    from components.render.proxy import _refuse_empty_artifact_path

    well_formed = re.search(r'if \(\$uri !~ "(.+)"\)', _refuse_empty_artifact_path("")).group(1)
    return re.search(well_formed, f"/api/2.0/mlflow-artifacts/artifacts/{artifact_path}") is not None


def test_the_aws_step_stages_where_the_task_role_reads_and_the_stack_never_serves():
    from components.render.storage import artifact_bucket_policy

    step = _step("aws", Path("/home/me/p/mlflow.db.move/rewritten.db"))
    assert 'KEY="${PREFIX:+$PREFIX/}.move/0123456789ab/mlflow.db"' in step and "import/mlflow.db" not in step
    for name in ("bucket", "cluster", "run_task_network"):
        assert f"pulumi stack output {name} -s dev" in step
    assert "pulumi config get --path mlflow:artifacts.prefix -s dev" in step
    assert 'aws s3 rm "s3://$BUCKET/$KEY"' in step and "noncurrent" in step and "expire-noncurrent-versions" in step
    assert '"MOVE_KEY", value: $k' in step and "$MLFLOW_BACKEND_STORE_URI" not in step
    for prefix in ("team/mlflow", ""):
        key = f"{prefix + '/' if prefix else ''}.move/0123456789ab/mlflow.db"
        allowed = artifact_bucket_policy("b", prefix)["Statement"][1]["Resource"][0]
        assert fnmatch(f"arn:aws:s3:::b/{key}", allowed), "the task role reads and writes it"
        assert not _proxy_allows(".move/0123456789ab/mlflow.db"), "never served: no experiment id first"
    assert _proxy_allows("1/abc/artifacts/x")  # the check itself works


def test_the_azure_step_is_a_job_made_from_a_spec_with_the_uri_as_its_secret():
    step = _step("azure", Path("/home/me/p/mlflow.db.move/rewritten.db"))
    assert "<" not in step.replace("<storage", "") and "containerapp exec" not in step and "--args" not in step
    for name in ("resource_group", "storage_account", "bucket"):
        assert f"pulumi stack output {name} -s dev" in step
    assert "az containerapp job create -g \"$RG\" -n mlflow-move-0123456789ab --yaml \"$SPEC\"" in step
    assert 'command: ["sh", "-c", $c]' in step and '"MLFLOW_BACKEND_STORE_URI", secretRef: "backend-uri"' in step
    assert 'SPEC="$(umask 077; mktemp)"' in step and 'rm -f "$SPEC"' in step
    assert "pulumi stack output database_uri --show-secrets -s dev | jq -Rn" in step, "the URI through a pipe"
    assert "az containerapp job start" in step and "az containerapp job delete" in step
    assert 'az storage blob delete --auth-mode login --account-name "$ACCOUNT"' in step
    assert 'KEY="${PREFIX:+$PREFIX/}.move/0123456789ab/mlflow.db"' in step


def test_the_local_step_names_come_from_the_stack_and_the_mount_takes_any_path():
    import shlex

    from ops.local_stack import ONEOFF_LABEL, ONEOFF_STACK_LABEL

    odd = Path("/home/me/a:b,c/mlflow.db.move/rewritten.db")
    step = _step("local", odd, stack="team")
    assert "3.17.2" not in step and "mlflow-local" not in step and " -v " not in step
    assert "pulumi stack output database_uri --show-secrets -s team" in step
    assert "docker inspect --format '{{.Image}}' mlflow-team-mlflow-server" in step
    command = step.split("oneoff.py", 1)[0].rsplit("\n", 1)[1] + "oneoff.py" + \
        step.split("oneoff.py", 1)[1].split("\nunset URI")[0]
    argv = shlex.split(command.replace('"$IMAGE"', "IMAGE"))
    assert argv[argv.index("--network") + 1] == "mlflow-team-net"
    assert f"{ONEOFF_LABEL}" in argv and f"{ONEOFF_STACK_LABEL}=mlflow-team" in argv
    mount = argv[argv.index("--mount") + 1]
    assert mount == f'type=bind,"src={odd}",dst=/data/mlflow.db,readonly'
    assert argv.index("--mount") < argv.index("IMAGE")
    plain = _step("local", Path("/home/me/p/rewritten.db"))
    assert "--mount type=bind,src=/home/me/p/rewritten.db,dst=/data/mlflow.db,readonly" in plain
