"""ops.restore's database steps and ops.lock against a real scratch PostgreSQL (issue 28): long database
names, the all-or-none swap, databases left refusing connections, permission rows pruned, the
maintenance lock and its release when its holder is killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Sequence

import pytest

from ops import OpsError, RefusedError
from ops.access import Command, psql, work_session_env, work_session_name
from ops.lock import maintenance_lock
from ops.restore import DatabaseNames, plan_names, prune_permissions, repair_connections, replaced_prefix, swap
from tests.container_pipes import through_pipes

REPO = Path(__file__).resolve().parents[2]
STAMP = "20260101T000000Z"
LOCK_RELEASE_SECONDS = 20.0


class ScratchAccess:
    """ops.access.StackAccess reduced to what the database steps use: psql as the superuser, connected as
    `docker exec -i` connects it on the local stack (tests/container_pipes.py: a SIGTERM stops the client,
    not the command)."""

    description = "the scratch cluster"
    lock_token = None

    def __init__(self, cluster):
        self.cluster = cluster

    def postgres_command(self, argv: Sequence[str]) -> Command:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PGHOST": "127.0.0.1", "PGPORT": str(self.cluster.port),
               "PGUSER": self.cluster.superuser, "PGPASSWORD": self.cluster.superuser_password,
               **work_session_env(self.lock_token)}
        return Command(through_pipes([str(self.cluster.bindir / argv[0]), *argv[1:]], forward_sigterm=False), env,
                       hold=self.lock_token)

    def stop_orphaned_oneoffs(self) -> int:
        return 0  # the database steps start no one-off


@pytest.fixture(scope="module")
def access(postgres_cluster) -> ScratchAccess:
    return ScratchAccess(postgres_cluster)


def _databases(cluster) -> set[str]:
    return set(cluster.psql("SELECT datname FROM pg_database").split())


def _create(cluster, name: str, table: str) -> None:
    cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    cluster.psql(f'CREATE DATABASE "{name}"')
    cluster.psql(f"CREATE TABLE {table} (id int)", name)


def _tables(cluster, name: str) -> list[str]:
    return cluster.psql("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
                        "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'", name).strip().split(",")


@pytest.mark.parametrize("length", [52, 55, 58])
def test_long_database_names_get_distinct_scratch_and_replaced_names(access, postgres_cluster, length):
    """Issue 28 item 1: with a 52-58 character database.name the tracking and auth scratch copies got
    the same name; the auth restore dropped the tracking copy and the swap put auth tables in its place."""
    tracking = ("t" * length)[:length]
    auth = tracking + "_auth"
    plan = plan_names({"tracking": tracking, "auth": auth}, STAMP)
    names = [name for entry in plan.values() for name in (entry.target, entry.scratch, entry.replaced)]
    assert len(set(names)) == 6 and all(len(name.encode()) <= 63 for name in names)
    assert all(entry.replaced.startswith(replaced_prefix(entry.target)) for entry in plan.values())
    # The swap for real: the tracking name ends with tracking tables, the auth name with auth tables.
    for role, table in (("tracking", "experiments"), ("auth", "users")):
        _create(postgres_cluster, plan[role].target, f"old_{table}")
        _create(postgres_cluster, plan[role].scratch, table)
    replaced = swap(access, list(plan.values()), STAMP)
    assert _tables(postgres_cluster, tracking) == ["experiments"]
    assert _tables(postgres_cluster, auth) == ["users"]
    assert sorted(replaced) == sorted(entry.replaced for entry in plan.values())
    assert _tables(postgres_cluster, plan["tracking"].replaced) == ["old_experiments"]
    for entry in plan.values():
        for name in (entry.target, entry.replaced):
            postgres_cluster.psql(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_a_name_collision_is_refused_before_anything_changes():
    with pytest.raises(RefusedError, match="collide.*nothing was changed"):
        plan_names({"tracking": "mlflow", "auth": "mlflow__restoring"}, STAMP)


def test_the_swap_renames_all_databases_or_none(access, postgres_cluster):
    """The second rename fails (its scratch is missing): the first target must still be the old one,
    and no database is left refusing connections."""
    _create(postgres_cluster, "swap_t", "old_tracking")
    _create(postgres_cluster, "swap_t__restoring", "new_tracking")
    _create(postgres_cluster, "swap_a", "old_auth")
    plan = [DatabaseNames("swap_t", "swap_t__restoring", "swap_t__replaced_" + STAMP),
            DatabaseNames("swap_a", "swap_a__restoring", "swap_a__replaced_" + STAMP)]
    with pytest.raises(OpsError, match="swap_a__restoring"):
        swap(access, plan, STAMP)
    assert _tables(postgres_cluster, "swap_t") == ["old_tracking"]
    assert _tables(postgres_cluster, "swap_a") == ["old_auth"]
    assert "swap_t__replaced_" + STAMP not in _databases(postgres_cluster)
    assert postgres_cluster.psql("SELECT count(*) FROM pg_database WHERE NOT datallowconn AND datname LIKE 'swap%'"
                                 ).strip() == "0"


def test_the_swap_marks_the_databases_it_put_in_place_keeping_earlier_marks(access, postgres_cluster):
    """Review 4 F2: whether a stamp's swap happened was read from its replaced databases only; dropped
    by hand (or never there: the targets were missing), a completed restore looked killed before its
    swap, and the --put-back the tools then named put pre-restore bytes beside the backup's databases.
    The mark is written in the swap's transaction and carries the marks of what it replaced."""
    from ops.restore import _database_names, _swapped

    layout = type("Layout", (), {"database": "mark_t", "auth_database": "mark_t_auth"})()
    _create(postgres_cluster, "mark_t__restoring", "first")  # no target yet: nothing is replaced
    first = DatabaseNames("mark_t", "mark_t__restoring", "mark_t__replaced_" + STAMP)
    assert swap(access, [first], STAMP) == []
    later = "20270101T000000Z"
    _create(postgres_cluster, "mark_t__restoring", "second")
    assert swap(access, [DatabaseNames("mark_t", "mark_t__restoring", "mark_t__replaced_" + later)], later)
    postgres_cluster.psql('DROP DATABASE "mark_t__replaced_20270101T000000Z" WITH (FORCE)')  # a DBA frees space
    databases = _database_names(access)
    assert _swapped(layout, STAMP, databases) and _swapped(layout, later, databases), databases["mark_t"]
    assert not _swapped(layout, "20280101T000000Z", databases)
    assert _tables(postgres_cluster, "mark_t") == ["second"]
    postgres_cluster.psql('DROP DATABASE "mark_t" WITH (FORCE)')


def test_a_database_left_refusing_connections_is_repaired(access, postgres_cluster):
    _create(postgres_cluster, "refusing", "runs")
    postgres_cluster.psql('ALTER DATABASE "refusing" WITH ALLOW_CONNECTIONS false')
    said: list[str] = []
    repair_connections(access, ["refusing", "not_there"], said.append)
    assert postgres_cluster.psql("SELECT datallowconn FROM pg_database WHERE datname = 'refusing'").strip() == "t"
    assert said == ["database refusing refused connections (left by an interrupted restore): allowed them again"]


_AUTH_SCHEMA = """
CREATE TABLE users (id int PRIMARY KEY, username text);
CREATE TABLE roles (id int PRIMARY KEY, name text, workspace text);
CREATE TABLE role_permissions (id serial PRIMARY KEY, role_id int, resource_type text, resource_pattern text,
                               permission text);
CREATE TABLE experiment_permissions (id serial, experiment_id text, user_id int, permission text);
CREATE TABLE registered_model_permissions (id serial, name text, user_id int, permission text);
"""
"""The columns of MLflow 3.17's auth tables that the prune reads (mlflow/server/auth/db/models.py)."""


def test_permission_rows_of_objects_the_tracking_dump_lacks_are_pruned(access, postgres_cluster):
    """Issue 28 item 3: a grant written between the two dumps names an experiment the tracking dump
    does not hold; the restored sequence would hand that id to the next new experiment."""
    postgres_cluster.psql('DROP DATABASE IF EXISTS "prune_t" WITH (FORCE)')
    postgres_cluster.psql('CREATE DATABASE "prune_t"')
    postgres_cluster.psql("CREATE TABLE experiments (experiment_id int); INSERT INTO experiments VALUES (0), (1);"
                          "CREATE TABLE registered_models (name text); INSERT INTO registered_models VALUES "
                          "(E'tab\\there ✓');", "prune_t")
    postgres_cluster.psql('DROP DATABASE IF EXISTS "prune_a" WITH (FORCE)')
    postgres_cluster.psql('CREATE DATABASE "prune_a"')
    postgres_cluster.psql(_AUTH_SCHEMA + """
INSERT INTO role_permissions (role_id, resource_type, resource_pattern, permission) VALUES
  (1, 'experiment', '1', 'EDIT'), (1, 'experiment', '2', 'MANAGE'), (1, 'experiment', '*', 'READ'),
  (1, 'registered_model', E'tab\\there ✓', 'EDIT'), (1, 'prompt', 'gone', 'EDIT'), (1, 'workspace', 'default', 'USE');
INSERT INTO experiment_permissions (experiment_id, user_id, permission) VALUES ('1', 1, 'EDIT'), ('7', 1, 'MANAGE');
INSERT INTO registered_model_permissions (name, user_id, permission) VALUES ('gone', 1, 'EDIT');
""", "prune_a")
    assert prune_permissions(access, "prune_a", "prune_t") == {
        "experiment_permissions": 1, "registered_model_permissions": 1, "role_permissions": 2}
    kept = postgres_cluster.psql("SELECT string_agg(resource_type || ':' || resource_pattern, ',' ORDER BY id) "
                                 "FROM role_permissions", "prune_a").strip()
    assert kept == "experiment:1,experiment:*,registered_model:tab\there ✓,workspace:default"
    # No tracking data that the rows belong to (a backup without an auth dump): every row keyed by a
    # tracking object goes; the users and the '*' and workspace grants stay.
    assert prune_permissions(access, "prune_a", None) == {"experiment_permissions": 1, "role_permissions": 2}
    kept = postgres_cluster.psql("SELECT string_agg(resource_type || ':' || resource_pattern, ',' ORDER BY id) "
                                 "FROM role_permissions", "prune_a").strip()
    assert kept == "experiment:*,workspace:default"


_HOLDER_ACCESS = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from ops.access import Command
    from ops.lock import LockLost, maintenance_lock

    class Access:
        description = "the scratch cluster"
        lock_token = None
        def postgres_command(self, argv):
            return Command([{bindir!r} + "/" + argv[0], *argv[1:]], {env!r})
        def stop_orphaned_oneoffs(self):
            return 0
""")
"""A child process's prelude: the ops tools' lock on the scratch cluster (format: repo, bindir, env)."""

_HOLDER = _HOLDER_ACCESS + textwrap.dedent("""
    with maintenance_lock(Access(), "backup"):
        print("held", flush=True)
        time.sleep(600)
""")


def test_the_maintenance_lock_names_its_holder_and_dies_with_it(access, postgres_cluster):
    env = dict(access.postgres_command(["psql"]).env)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER.format(repo=str(REPO), bindir=str(postgres_cluster.bindir),
                                                                   env=env)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RefusedError, match=rf"mlflow-backup pid {holder.pid} on .* since .*Wait for it"):
            with maintenance_lock(access, "restore"):
                pytest.fail("the lock was taken twice")
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        deadline = time.monotonic() + LOCK_RELEASE_SECONDS
        while True:  # psql sees EOF on its stdin and ends the session: the lock goes with it
            try:
                with maintenance_lock(access, "restore"):
                    break
            except RefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        holder.kill()
        holder.wait()


_WORKING_HOLDER = _HOLDER_ACCESS + textwrap.dedent("""
    with maintenance_lock(Access(), "restore"):
        print("held", flush=True)
        started = time.monotonic()
        try:
            while time.monotonic() - started < 30:  # a long step: an upload
                time.sleep(0.1)
            print("finished its step without the lock", flush=True)
        except LockLost:
            print("stopped", flush=True)
""")


def test_a_lost_lock_stops_a_holder_started_with_sigusr1_blocked(access, postgres_cluster):
    """Review 10 of issue 28: the watch interrupts the main thread with SIGUSR1; a tool started with it
    blocked (a supervisor, a parent that blocked it before exec) kept the signal pending and finished
    its step without the lock. The watch unblocks it."""
    env = dict(access.postgres_command(["psql"]).env)
    holder = subprocess.Popen([sys.executable, "-c", _WORKING_HOLDER.format(
        repo=str(REPO), bindir=str(postgres_cluster.bindir), env=env)], stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1}))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        postgres_cluster.psql("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                              "WHERE application_name LIKE 'mlflow-restore pid%'")  # as a PostgreSQL restart does
        started = time.monotonic()
        assert holder.stdout.readline().strip() == "stopped"
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()


class _NoCommands:
    """A stack on which no command may run: --no-upgrade must start no upgrade step."""

    description = "a stack that runs nothing"

    def python_command(self, argv, env):
        raise AssertionError(f"a command ran: {argv[:2]}")

    def server_env(self):
        return {}


def test_no_upgrade_runs_no_step_and_says_the_server_stays_stopped(tmp_path):
    """Issue 28 item 6: rolling back restores the old image's schema; upgrading it to the running
    image's head (what restore did) made the rollback impossible."""
    from ops.access import StackLayout
    from ops.archive import ImageFacts, Manifest
    from ops.restore import _upgrade

    manifest = Manifest(created_at="2026-01-01T00:00:00Z", source="s", mlflow_version="3.1.0", schema_revision="old",
                        artifacts_destination="s3://b/", counts={}, databases={"auth": None}, objects=None)  # type: ignore[arg-type]
    facts = ImageFacts("3.17.2", {"tracking": {"revisions": ["old", "new"], "heads": ["new"]}})
    layout = StackLayout("mlflow", "mlflow", "postgresql://mlflow@db/mlflow", "s3://b/", "basic-auth")
    said: list[str] = []
    assert _upgrade(_NoCommands(), manifest, "old", facts, layout, False, said.append) is False
    assert said == ["--no-upgrade: the schema stays at the backup's revision old"]
    with pytest.raises(AssertionError, match="a command ran"):
        _upgrade(_NoCommands(), manifest, "old", facts, layout, True, said.append)


def test_a_lock_lost_to_a_postgresql_restart_is_noticed_before_the_swap(access, postgres_cluster):
    """Review of issue 28: a PostgreSQL restart ends the lock's session and releases the lock while the
    restore goes on; a gc or backup could then read the pre-restore database. The restore confirms
    the lock before swapping. (pg_terminate_backend ends the session as a restart does.)"""
    from ops.access import psql

    with maintenance_lock(access, "restore") as lock:
        lock.confirm("replacing the databases")  # held: nothing raised
        lock.unwatch()  # confirm is what is tested here: the watch would interrupt this test within a second
        psql(access, "postgres", "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                                 "WHERE application_name LIKE 'mlflow-restore pid%';\n")
        with maintenance_lock(access, "backup"):  # granted to another: the first one's session is gone
            pass
        with pytest.raises(OpsError, match="maintenance lock .* was lost .* before replacing the databases"):
            lock.confirm("replacing the databases")


def test_a_backup_with_users_is_refused_by_a_stack_without_an_auth_app():
    """Review of issue 28: restoring permissions into a stack that runs no auth app opened every
    experiment to whoever reaches the server, silently."""
    from ops.access import StackLayout
    from ops.archive import DatabaseBackup, ImageFacts, Manifest
    from ops.restore import check_schema

    auth = DatabaseBackup(file="auth-database.dump", name="mlflow_auth", schema_revision="a1", tables={}, bytes=1,
                          sha256="0", app="basic-auth")
    tracking = DatabaseBackup(file="database.dump", name="mlflow", schema_revision="t1", tables={}, bytes=1, sha256="0")
    manifest = Manifest(created_at="2026-01-01T00:00:00Z", source="s", mlflow_version="3.17.2", schema_revision="t1",
                        artifacts_destination="s3://b/", counts={}, databases={"tracking": tracking, "auth": auth},
                        objects=None)  # type: ignore[arg-type]
    facts = ImageFacts("3.17.2", {"tracking": {"revisions": ["t1"], "heads": ["t1"]},
                                  "basic-auth": {"revisions": ["a1"], "heads": ["a1"]}})
    without_auth = StackLayout("mlflow", "mlflow", "postgresql://mlflow@db/mlflow", "s3://b/", None)
    with pytest.raises(RefusedError, match="runs no auth app: every experiment would be open.*auth.mode to mlflow"):
        check_schema(_NoCommands(), manifest, facts, without_auth)
    check_schema(_NoCommands(), manifest, facts, StackLayout("mlflow", "mlflow", "postgresql://mlflow@db/mlflow",
                                                             "s3://b/", "basic-auth"))


def test_a_lock_lost_during_the_orphan_sweep_is_a_one_line_error_not_an_interrupt(postgres_cluster):
    """Review 21 F2: the watch started before the sweep of a killed tool's one-offs; a lock lost while
    `docker rm --force` took its time raised LockLost before the tool's `with` body had its lock: gc
    crashed on an assertion, backup said "interrupted". Now the sweep is not watched and the lock is
    confirmed after it: LockLostError, an OpsError with the lost-lock message."""
    from ops.lock import LockLostError, maintenance_lock

    class SlowSweep(ScratchAccess):
        lock_token = None

        def stop_orphaned_oneoffs(self) -> int:
            self.cluster.psql("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
                              "WHERE application_name LIKE 'mlflow-gc pid%'")  # as a PostgreSQL restart does
            time.sleep(2.5)  # past the watch's second
            return 0

    with pytest.raises(LockLostError,
                       match="maintenance lock of the scratch cluster was lost .* before its first step"):
        with maintenance_lock(SlowSweep(postgres_cluster), "gc"):
            pytest.fail("the body ran without the lock")


def test_a_lock_session_gone_quiet_is_ended_before_the_lock_is_taken_again(access, postgres_cluster, monkeypatch):
    """Review 23 F1: a lock session whose psql stopped answering counts as lost, but it stayed open and kept
    the lock: the retake was refused by this tool's own old session and blamed "another backup, restore or
    gc" (a restore then undid nothing). The retake ends this hold's own sessions first."""
    from ops import lock

    monkeypatch.setattr(lock, "CONFIRM_TIMEOUT_SECONDS", 2.0)
    token = "0123456789ab"
    held = lock.HeldLock(lock._take(access, "restore", token), access, "restore", token)
    quiet = held._process
    os.kill(quiet.pid, signal.SIGSTOP)  # neither answers nor exits
    try:
        assert not held.holds() and held.lost
        assert held.retake(), held.why_not_retaken
        assert held.holds()
        holders = postgres_cluster.psql("SELECT application_name FROM pg_locks l JOIN pg_stat_activity a ON "
                                        "a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted").split("\n")
        assert [name for name in holders if name.strip()] == [lock.application_name("restore", token)]
    finally:
        held.close()
        with contextlib.suppress(ProcessLookupError):  # the retake stopped it
            os.kill(quiet.pid, signal.SIGCONT)
            quiet.kill()


# --- review 23 F2: what a tool sent to PostgreSQL does not outlive the tool's say ------------------------


def _sessions(cluster, pattern: str) -> list[str]:
    """application_name of the sessions whose name matches the regular expression `pattern`."""
    return [name for name in cluster.psql("SELECT application_name FROM pg_stat_activity WHERE application_name ~ "
                                          f"'{pattern}'").splitlines() if name.strip()]


def _straggler(cluster, name: str, sql: Sequence[str]) -> subprocess.Popen:
    """A psql running `sql` in a session called `name`, with nobody left to stop it (a killed tool's
    script through `docker exec`), once PostgreSQL shows it."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PGHOST": "127.0.0.1", "PGPORT": str(cluster.port),
           "PGUSER": cluster.superuser, "PGPASSWORD": cluster.superuser_password, "PGAPPNAME": name}
    process = subprocess.Popen([str(cluster.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres",
                                *(arg for statement in sql for arg in ("-c", statement))], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while name not in _sessions(cluster, "."):
        assert process.poll() is None and time.monotonic() < deadline, "the straggler did not start"
        time.sleep(0.05)
    return process


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def test_an_interrupted_script_ends_before_the_tool_goes_on(access, postgres_cluster):
    """Review 23 F2: Ctrl-C stops the tool's client, but `docker exec` does not pass the signal on and a
    script already sent ran on in PostgreSQL (a DROP DATABASE after "interrupted", beside the restore's
    undo, after the lock was let go). The interrupted command's session is ended before `run` returns."""
    postgres_cluster.psql("DROP DATABASE IF EXISTS ran_on_after_interrupt")
    previous = signal.signal(signal.SIGUSR2, _interrupt)
    try:
        with maintenance_lock(access, "restore") as held:
            threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGUSR2)).start()
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                psql(access, "postgres", "SELECT pg_sleep(4);\nCREATE DATABASE ran_on_after_interrupt;\n")
            assert time.monotonic() - started < 4, "the tool went on at once"
            assert _sessions(postgres_cluster, f" work {held.token}$") == [], "nothing of the command runs on"
            assert held.holds()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    time.sleep(4)
    assert "ran_on_after_interrupt" not in _databases(postgres_cluster)


def test_the_next_holder_ends_the_scripts_a_killed_tool_left_running(access, postgres_cluster, monkeypatch, capsys):
    """Review 23 F2: a tool killed with kill -9 leaves its psql script running in the postgres container;
    the next holder ends the work sessions of other holds before it works, and only those: its own, and
    a session that is taking the lock (a tool about to be refused, not cut off), stay."""
    from ops import lock

    postgres_cluster.psql("DROP DATABASE IF EXISTS ran_on_after_kill")
    monkeypatch.setattr(lock.secrets, "token_hex", lambda size: "0123456789ab")
    killed = _straggler(postgres_cluster, "mlflow-ops pid 7 work fedcba987654",
                        ["SELECT pg_sleep(4)", "CREATE DATABASE ran_on_after_kill"])
    taking = _straggler(postgres_cluster, "mlflow-gc pid 8 on host lock 00000000000a", ["SELECT pg_sleep(30)"])
    own = _straggler(postgres_cluster, work_session_name("0123456789ab"), ["SELECT pg_sleep(30)"])
    try:
        with maintenance_lock(access, "restore"):
            assert killed.wait(10) != 0
            assert _sessions(postgres_cluster, "work fedcba987654$") == []
            assert taking.poll() is None and own.poll() is None
        assert "ended 1 database session(s) an earlier backup, restore or gc left running" in capsys.readouterr().err
        time.sleep(4)
        assert "ran_on_after_kill" not in _databases(postgres_cluster)
    finally:
        for process in (killed, taking, own):
            process.kill()
            process.wait()


def test_a_tool_that_fails_ends_its_own_sessions_before_it_lets_the_lock_go(access, postgres_cluster):
    """Review 23 F2: a one-off stopped by `docker rm --force` leaves its statement running in PostgreSQL
    (the server finishes it although its client is gone); the tool ends its hold's sessions on the way out."""
    with pytest.raises(RuntimeError):
        with maintenance_lock(access, "gc") as held:
            straggler = _straggler(postgres_cluster, work_session_name(held.token), ["SELECT pg_sleep(60)"])
            raise RuntimeError("the step failed")
    try:
        assert straggler.wait(10) != 0
        assert _sessions(postgres_cluster, f" work {held.token}$") == []
    finally:
        straggler.kill()
        straggler.wait()


_AUTH_TABLES = ("CREATE TABLE users (id serial, username text, password_hash text, is_admin bool); "
                "CREATE TABLE roles (id serial, workspace text, name text); "
                "CREATE TABLE user_role_assignments (user_id int, role_id int); "
                "CREATE TABLE role_permissions (role_id int, resource_type text, resource_pattern text, "
                "permission text);")


def test_user_names_holding_a_tab_or_a_newline_are_named_whole_and_no_hash_is_printed(access, postgres_cluster):
    """Review 24 F1: MLflow refuses only an empty user name; psql's tab-separated rows split a name holding a
    tab or a newline, so `--replace` named a cut-up name and printed a user's password hash as one, and said
    nothing of the other user it let in again. Every value now travels hex-encoded."""
    from ops.access import StackLayout
    from ops.restore import _say_re_enabled, _say_restored_access

    class Access(ScratchAccess):
        def server_env(self):
            return {}

    layout = StackLayout("tabnames", "mlflow", "postgresql://mlflow@db/tabnames", "s3://b/", "basic-auth")
    replaced = "tabnames_auth__replaced_20260101T000000Z"
    for database in (layout.auth_database, replaced):
        postgres_cluster.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        postgres_cluster.psql(f'CREATE DATABASE "{database}"')
        postgres_cluster.psql(_AUTH_TABLES, database)
    postgres_cluster.psql("INSERT INTO users (username, password_hash, is_admin) VALUES ('admin', 'h0', true), "
                          "('alice', 'h1', false)", replaced)
    postgres_cluster.psql("INSERT INTO users (username, password_hash, is_admin) VALUES ('admin', 'h0', true), "
                          "('alice', 'h1', false), (E'alice\\tops', 'pbkdf2:sha256:1000000$Zq3x$9f8e7d6c5b4a', true), "
                          "(E'admin\\nmallory', 'h3', false)", layout.auth_database)
    said: list[str] = []
    _say_re_enabled(Access(postgres_cluster), layout, "mlflow", replaced, said.append)
    _say_restored_access(Access(postgres_cluster), layout, "mlflow", said.append)
    assert len(said) == 2 and not any("pbkdf2" in message for message in said), said
    assert said[0].startswith("the restore lets in again what the scratch cluster had taken away since the backup: "
                              "users 'admin\\nmallory', 'alice\\tops' (deactivate"), said[0]
    assert said[1].startswith("the backup's users 'alice\\tops' are admins of the scratch cluster too"), said[1]


def test_a_client_that_dies_alone_has_its_script_ended_before_the_tool_goes_on(access, postgres_cluster):
    """Review 24 F2: the docker CLI of a psql script died without the tool being signalled (OOM, a killed
    CLI, a daemon restart): `run` saw a failed command and the tool went on to its undo and its message while
    the script ran on in PostgreSQL. A failed command's sessions are ended too."""
    postgres_cluster.psql("DROP DATABASE IF EXISTS ran_on_after_its_client")

    def kill_the_client() -> None:  # the docker-exec stand-in running the script, not the tool
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for entry in Path("/proc").iterdir():
                try:
                    argv = (entry / "cmdline").read_bytes().decode().split("\0")
                except (OSError, ValueError):
                    continue
                if argv[3:4] == ["exec"] and argv[-3:-1] == ["-f", "-"] and argv[-4:-3] == ["postgres"]:
                    time.sleep(1.0)
                    os.kill(int(entry.name), signal.SIGTERM)
                    return
            time.sleep(0.05)

    with maintenance_lock(access, "restore") as held:
        killer = threading.Thread(target=kill_the_client)
        killer.start()
        with pytest.raises(OpsError, match="psql on database postgres failed"):
            psql(access, "postgres", "SELECT pg_sleep(4);\nCREATE DATABASE ran_on_after_its_client;\n")
        killer.join()
        assert _sessions(postgres_cluster, f" work {held.token}$") == [], "nothing of the command runs on"
    time.sleep(4)
    assert "ran_on_after_its_client" not in _databases(postgres_cluster)
