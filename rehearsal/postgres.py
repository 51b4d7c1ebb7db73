"""A throw-away PostgreSQL cluster (rehearsal, tests, bench): its own initdb, password auth, a free port.

Never the system cluster: tests must be able to restart, break and delete it. Binaries come from
Debian's `postgresql` package (`/usr/lib/postgresql/<major>/bin`) or whatever `pg_config` names.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from rehearsal.ports import free_port


class PostgresUnavailable(RuntimeError):
    """PostgreSQL server binaries are not installed on this machine."""


def find_postgres_bindir() -> Path:
    """Directory holding `initdb`, `pg_ctl` and `postgres`, newest major version first."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for bindir in reversed(candidates):
        if Path(bindir, "initdb").exists():
            return Path(bindir)
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if bindir and Path(bindir, "initdb").exists():
            return Path(bindir)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's `postgresql` package"
    )


def _demote_if_root() -> tuple[int, int] | None:
    """initdb refuses to run as root; run the cluster as `nobody` (or `postgres`) when we are root."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and no unprivileged user to own the cluster")


@dataclass
class PostgresCluster:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only."""

    superuser: str = "postgres"
    superuser_password: str = "test-superuser-password"
    max_connections: int = 200
    port: int = field(default_factory=free_port)
    base_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pgcluster-")))
    bindir: Path = field(default_factory=find_postgres_bindir)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        owner = _demote_if_root()
        kwargs: dict = {"capture_output": True, "text": True}
        if owner:
            kwargs["user"], kwargs["group"] = owner
        result = subprocess.run(list(args), **kwargs)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()}\n"
                f"{self.log_file.read_text() if self.log_file.exists() else ''}"
            )
        return result

    def init(self) -> "PostgresCluster":
        owner = _demote_if_root()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        if owner:
            os.chmod(self.base_dir, 0o755)
            for path in (self.base_dir, self.socket_dir, pwfile):
                os.chown(path, *owner)
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.data_dir),
            "-U", self.superuser,
            "--pwfile", str(pwfile),
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "-E", "UTF8",
            "--locale=C.UTF-8",
        )
        pwfile.unlink()
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                f"max_connections = {self.max_connections}\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        return self

    def start(self) -> "PostgresCluster":
        if not self.data_dir.exists():
            self.init()
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                  "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.data_dir.exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop",
                      check=False)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down for `down_seconds` (an outage), start again on the same port."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    @property
    def pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        if not pidfile.exists():
            return None
        return int(pidfile.read_text().splitlines()[0])

    def kill(self) -> None:
        """Hard stop, as a crash would (SIGKILL to the postmaster)."""
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = dict(os.environ, PGPASSWORD=self.superuser_password)
        result = subprocess.run(
            [str(self.bindir / "psql") if (self.bindir / "psql").exists() else "psql",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            capture_output=True, text=True, env=env,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str, owner: str | None = None, owner_password: str | None = None) -> str:
        """Create a database (and a login role owning it) and return its SQLAlchemy URI (psycopg2)."""
        user = owner or self.superuser
        password = owner_password or self.superuser_password
        if owner:
            self.psql(f"CREATE ROLE \"{owner}\" LOGIN PASSWORD '{password.replace(chr(39), chr(39) * 2)}'")
        self.psql(f'CREATE DATABASE "{name}" OWNER "{user}"')
        return self.uri(name, user, password)

    def uri(self, database: str, user: str | None = None, password: str | None = None,
            driver: str = "psycopg2") -> str:
        user = user or self.superuser
        password = password or self.superuser_password
        return (f"postgresql+{driver}://{quote(user, safe='')}:{quote(password, safe='')}"
                f"@127.0.0.1:{self.port}/{quote(database, safe='')}")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)
