"""The platform-faithful rehearsal: each container as the cloud runs it, taken from the registered graph.

`rehearsal.launcher` runs what components.render produces. A cloud runs something else: the platform's
wrapper around the command (components/platforms/containers.py `with_files`), under the user the
platform chooses (Container Apps: always the image's default; ECS: the task definition's `user`),
after its init containers. `PlatformRun` takes all of that from the graph (rehearsal.platform_graph)
and runs it natively, each container:

* with its exact command and env, its secret env as the platform injects it (values from the graph);
* as its platform's run-as user (`setpriv`; users `nginx` and `mlflow` are created if missing, as the
  images have them; root for a Container Apps proxy, whose Nginx workers then drop to the image's
  compiled-in `nginx`: rehearsal/image_bin/nginx stands in for the image's binary);
* in a mount namespace of its own (`unshare --mount`), as a container has: a private /tmp (where the
  platform writes its files: nothing is left on the machine, nothing is shared between containers),
  a private /home (the server image's /home/mlflow) and its own /etc/hosts naming the other services
  (Docker and the container platforms give each container its own /etc/hosts and DNS; the machine's
  /etc/hosts is never touched);
* init containers first, in order, each to completion; then the main container, ready when its
  probes answer.

Stand-ins (the only deviations, each named here): the database is a private PostgreSQL cluster
answering at the graph's host name and port (on a loopback address of its own, TLS on, the graph's
admin user and password, or the owner a platform makes itself; RDS's managed master password is
generated); the artifact store is moto or Azurite, as the platform's runtime says (aws: the task role
becomes a key pair holding the rendered bucket policy, with MLFLOW_S3_ENDPOINT_URL; azure: the managed
identity becomes AZURE_STORAGE_CONNECTION_STRING); the server's `--host 0.0.0.0` binds its own loopback address (the
upstream name resolves there) so that nothing off the machine reaches it; Nginx's `listen 8080`
and metrics port bind as rendered (so both must be free); the load balancer / Container Apps
ingress in front of the proxy is a small Nginx on a free loopback port that forwards with the
public host name as Host (what a client of the real endpoint sends).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from components import render
from components.names import PROXY_SERVICE, SERVER_IMAGE, SERVER_SERVICE
from rehearsal import launcher
from rehearsal.platform_graph import PlatformContainer, PlatformGraph, PlatformService, StandInDatabase
from rehearsal.ports import free_port
from rehearsal.postgres import PostgresCluster
from rehearsal.processes import (
    REPO_ROOT,
    VENV_BIN,
    ServerUnavailable,
    Service,
    StartupError,
    base_env,
    find_nginx,
    http_status,
    log_tail,
)
from rehearsal.stand_ins import AzuriteStandIn, S3StandIn, self_signed_certificate

log = logging.getLogger("rehearsal")

IMAGE_BIN = REPO_ROOT / "rehearsal" / "image_bin"
IMAGE_WORKER_USER = "nginx"  # nginx.org's packages: --user=nginx (rehearsal/image_bin/nginx)
# The images' users, as their Dockerfiles make them (nginx:alpine: uid 101; ours: uid 10001).
IMAGE_USERS = {"nginx": 101, "mlflow": 10001}
IMAGE_HOMES = {"root": "/root", "nginx": "/nonexistent", "mlflow": "/home/mlflow"}
STEP_TIMEOUT_SECONDS = 600
def kept_paths() -> list[str]:
    """What the images' programs are here (this checkout, its venv, the venv's interpreter): still
    visible where a container's private /tmp, /root or /home would hide them (a checkout under /tmp,
    pyenv's interpreter under /root, which a non-root user could not even traverse)."""
    paths = {os.path.realpath(path) for path in (REPO_ROOT, sys.prefix, sys.base_prefix)}
    return sorted(paths)


def container_setup(user: str, home: str) -> str:
    """The script run inside `unshare --mount --propagation private`, as root, with arguments
    (hosts file, working directory, argv...): the container's own /etc/hosts, a fresh /tmp (and
    /root for a non-root user, /home for an image whose home is there) showing only `kept_paths`,
    its working directory, then its user. Nothing is mounted outside this namespace."""
    targets = [("/tmp", "1777")]
    if user != "root":
        targets.append(("/root", "755"))  # the image's /root is 0700; the interpreter under it must be reachable
    if home.startswith("/home/"):
        targets.append(("/home", "755"))
    lines = ["set -eu", 'mount --bind "$1" /etc/hosts', "mount -t tmpfs -o mode=755 container-stage /mnt"]
    for index, (target, mode) in enumerate(targets):
        stage = f"/mnt/{index}"
        lines += [f"mkdir {stage}", f"mount -t tmpfs -o mode={mode} container{target.replace('/', '-')} {stage}"]
        for path in kept_paths():
            if path.startswith(target + "/"):
                inner = stage + path[len(target):]
                lines += [f'mkdir -p "{inner}"', f'mount --bind "{path}" "{inner}"']
        lines.append(f"mount --move {stage} {target}")
    lines.append("umount /mnt")
    if home.startswith("/home/"):
        lines += [f'mkdir -p "{home}"', f'chown "{user}:{user}" "{home}"']
    lines += ['cd "$2"', "shift 2", f'exec setpriv --reuid="{user}" --regid="{user}" --init-groups -- "$@"']
    return "; ".join(lines)


def check_platform_prerequisites(platform: str) -> None:
    """What a platform run needs beyond the rehearsal's servers: its artifact store's stand-in, root (it
    switches users and mounts a namespace per container), unshare and setpriv (util-linux)."""
    import importlib

    from components.platforms import PLATFORMS

    runtime = PLATFORMS[platform].rehearsal_runtime if platform in PLATFORMS else None
    if runtime is None:
        raise ValueError(f"the {platform!r} platform has no rehearsal runtime (components.platforms.PLATFORMS)")
    launcher.check_prerequisites(importlib.import_module(runtime).ARTIFACT_STAND_IN)
    problems = []
    if os.geteuid() != 0:
        problems.append("the platform run needs root: it runs each container as its platform's user "
                        "in a mount namespace of its own")
    for tool in ("unshare", "setpriv", "useradd"):
        if not shutil.which(tool):
            problems.append(f"{tool} not found (Debian's util-linux / passwd)")
    if problems:
        raise ServerUnavailable("; ".join(problems))


def ensure_user(name: str) -> None:
    """A system user (and group) as the image has it: the image's uid when this machine has it free."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    argv = ["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin"]
    uid = IMAGE_USERS.get(name)
    if uid is not None and not _uid_taken(uid):
        argv += ["--uid", str(uid)]
    subprocess.run([*argv, name], check=True, capture_output=True)
    log.info("created system user %s", name)


def _uid_taken(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


def _loopback_block() -> str:
    """A /24 of 127.0.0.0/8 of this run's own: services listen on their own addresses in it."""
    return f"127.{random.randint(64, 254)}.{random.randint(1, 254)}"


def image_env(container: PlatformContainer) -> dict[str, str]:
    """What the image provides besides the container's env: PATH (the image's programs mapped to
    local ones: rehearsal/image_bin, then this venv), HOME, locale, and the server image's ENV."""
    env = {"PATH": f"{IMAGE_BIN}:{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": IMAGE_HOMES.get(container.user, "/"), "LANG": "C.UTF-8"}
    if container.image_name == SERVER_IMAGE:
        # docker/mlflow/Dockerfile's ENV; PYTHONPATH holds the `migration` package there, the repo here.
        env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO_ROOT))
    return env


def bind_host(command: tuple[str, ...], address: str) -> tuple[str, ...]:
    """The server's command with `--host 0.0.0.0` bound to its own loopback address instead."""
    args = list(command)
    if "--host" not in args[:-1]:
        raise StartupError(f"the server's command has no --host: {command}")
    args[args.index("--host") + 1] = address
    return tuple(args)


class ContainerProcess:
    """One container: its command, as its user, in its own mount namespace, logging to a file."""

    def __init__(self, container: PlatformContainer, hosts_file: Path, workdir: Path,
                 extra_env: Optional[dict[str, str]] = None, command: Optional[tuple[str, ...]] = None):
        self.container = container
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        env = {**image_env(container), **container.env, **container.secret_env, **(extra_env or {})}
        home = env["HOME"]
        argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                container_setup(container.user, home), "sh", str(hosts_file), container.workdir,
                *(command or container.command)]
        self.log_path = workdir / f"{container.name}.log"
        self.service = Service(container.name, argv, env, self.log_path)

    def start(self) -> None:
        # The container writes /dev/stdout and /dev/stderr (Nginx reopens them by path): its own.
        self.log_path.touch()
        user = pwd.getpwnam(self.container.user)
        os.chown(self.log_path, user.pw_uid, user.pw_gid)
        self.service.start()

    def run_to_completion(self, timeout: float = STEP_TIMEOUT_SECONDS) -> None:
        self.start()
        assert self.service.process is not None
        try:
            code = self.service.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.service.stop()
            raise StartupError(f"init container {self.container.name} ran over {timeout}s:\n"
                               f"{log_tail(self.log_path)}") from None
        if code != 0:
            raise StartupError(f"init container {self.container.name} failed ({code}):\n{log_tail(self.log_path)}")
        log.info("init container %s completed", self.container.name)

    def wait_ready(self, address: str, timeout: float = 180.0) -> None:
        """Every HTTP probe of the container answers 200 (on the container's own address)."""
        deadline = time.monotonic() + timeout
        for probe in self.container.probes:
            url = f"http://{address}:{probe.port}{probe.path}"
            while http_status(url) != 200:
                if not self.service.alive():
                    raise StartupError(f"{self.container.name} exited:\n{log_tail(self.log_path)}")
                if time.monotonic() > deadline:
                    raise StartupError(f"{self.container.name}: {probe.kind} probe {url} not 200 after {timeout}s:\n"
                                       f"{log_tail(self.log_path)}")
                time.sleep(0.25)
        log.info("%s ready (%s)", self.container.name,
                 ", ".join(f"{p.kind} {p.path}:{p.port}" for p in self.container.probes) or "no probes")

    def stop(self) -> None:
        self.service.stop()

    def process_users(self) -> dict[int, tuple[str, str]]:
        """pid -> (user name, command line) of every process of the container."""
        found = {}
        for pid in self.service.tree_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
            found[pid] = (pwd.getpwuid(uid).pw_name, cmdline)
        return found


@dataclasses.dataclass
class PlatformDatabase(PostgresCluster):
    """The managed PostgreSQL as the graph names it: at (address, port), TLS on and required from
    TCP clients (rds.force_ssl on aws; the flexible server requires TLS by default)."""

    address: str = "127.0.0.1"

    def init(self) -> "PlatformDatabase":
        super().init()
        owner = os.stat(self.data_dir)
        certificate, key = self_signed_certificate((self.address,), 30)
        for name, content in (("server.crt", certificate), ("server.key", key)):
            path = self.data_dir / name
            path.write_text(content)
            os.chmod(path, 0o600)
            os.chown(path, owner.st_uid, owner.st_gid)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '{self.address}'\nssl = on\n")
        with open(self.data_dir / "pg_hba.conf", "a") as hba:
            hba.write("hostssl all all 127.0.0.0/8 scram-sha-256\n")
        return self

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = dict(os.environ, PGPASSWORD=self.superuser_password, PGSSLMODE="require")
        result = subprocess.run([str(self.bindir / "psql"), "-h", self.address, "-p", str(self.port), "-U",
                                 self.superuser, "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
                                capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout


def _listening(port: int) -> bool:
    """Something accepts connections on the loopback port (a port left in TIME_WAIT does not count)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class PlatformRun:
    """The platform's services from its graph, run as the platform runs them, against stand-ins."""

    def __init__(self, graph: PlatformGraph, base_dir: Optional[Path] = None, keep_files: bool = False):
        self.graph = graph
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix=f"mlflow-{graph.platform}-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        self.keep_files = keep_files
        block = _loopback_block()
        self.addresses = {SERVER_SERVICE: f"{block}.3", PROXY_SERVICE: f"{block}.4"}
        self.database_address = f"{block}.2"
        self.database: Optional[PlatformDatabase] = None
        self.s3: Optional[S3StandIn] = None
        self.azurite: Optional[AzuriteStandIn] = None
        self.containers: dict[str, ContainerProcess] = {}
        self.ingress: Optional[Service] = None
        self.ingress_port = free_port()
        self._stopped = False

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    def env_lines(self) -> str:
        return render.client_env_lines(self.tracking_uri, self.graph.username, self.graph.password, None)

    # -- lifecycle --

    def start(self) -> "PlatformRun":
        try:
            for user in self._image_users():
                ensure_user(user)
            server = self.graph.services[SERVER_SERVICE]
            self._start_database(self.graph.database)
            self._start_artifact_store()
            self._write_hosts()
            self._start_service(server, self._server_env(), bind_host(server.main.command,
                                                                      self.addresses[SERVER_SERVICE]))
            self._start_service(self.graph.services[PROXY_SERVICE])
            self._start_ingress()
        except BaseException:
            self.stop()
            raise
        return self

    def _image_users(self) -> set[str]:
        """The users the containers run as, and the nginx image's worker user (rehearsal/image_bin/nginx)."""
        containers = [c for s in self.graph.services.values() for c in (*s.init, s.main)]
        users = {c.user for c in containers} | {IMAGE_WORKER_USER for c in containers if c.image_name == "nginx"}
        return users - {"root"}

    def _start_database(self, database: StandInDatabase) -> None:
        self.database_host = database.host
        self.database = PlatformDatabase(base_dir=self.base_dir / "postgres", max_connections=300, port=database.port,
                                         address=self.database_address)
        self.database.start()
        # As the cloud leaves it: an admin that is no superuser (azure_pg_admin, rds_superuser) and its
        # database, or the owner the platform made and its databases.
        rights = " CREATEDB CREATEROLE" if database.creates_roles else ""
        self.database.psql(f'CREATE ROLE "{database.user}" LOGIN{rights} PASSWORD {_literal(database.password)}')
        for name in database.databases:
            self.database.psql(f'CREATE DATABASE "{name}" OWNER "{database.user}"')
        log.info("database stand-in for %s at %s:%s", database.host, self.database_address, database.port)

    def _start_artifact_store(self) -> None:
        if self.graph.artifact_stand_in == "s3":
            self.s3 = S3StandIn(self.base_dir / "s3", self.graph.bucket)
            self.s3.start()
        else:
            self.azurite = AzuriteStandIn(self.base_dir / "azurite", self.graph.bucket)
            self.azurite.start()

    def _server_env(self) -> dict[str, str]:
        """The artifact store's stand-in credentials, in place of the task role / managed identity."""
        if self.s3 is not None:
            key, secret = self.s3.server_credentials
            return {"MLFLOW_S3_ENDPOINT_URL": self.s3.endpoint, "AWS_ACCESS_KEY_ID": key,
                    "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1"}
        assert self.azurite is not None
        return {render.AZURE_CONNECTION_STRING_ENV: self.azurite.connection_string}

    def _write_hosts(self) -> None:
        self.hosts_file = self.base_dir / "hosts"
        lines = ["127.0.0.1 localhost", f"{self.database_address} {self.database_host}",
                 *(f"{address} {name}" for name, address in self.addresses.items())]
        self.hosts_file.write_text("\n".join(lines) + "\n")
        os.chmod(self.hosts_file, 0o644)

    def _start_service(self, service: PlatformService, extra_env: Optional[dict[str, str]] = None,
                       command: Optional[tuple[str, ...]] = None) -> None:
        if service.name != SERVER_SERVICE:  # it binds its ports as rendered (the server: an address of its own)
            taken = [port for port in service.main.ports if _listening(port)]
            if taken:
                raise StartupError(f"{service.name} listens on port(s) {taken} as rendered, and another process "
                                   "listens there already (another platform run?): its probes would answer for "
                                   "that one")
        workdir = self.base_dir / service.name
        for step in service.init:
            ContainerProcess(step, self.hosts_file, workdir).run_to_completion()
        main = ContainerProcess(service.main, self.hosts_file, workdir, extra_env, command)
        self.containers[service.name] = main
        main.start()
        main.wait_ready(self._probe_address(service.name))

    def _probe_address(self, name: str) -> str:
        """Where the platform's probe reaches the container: the server listens on its own address
        only; the proxy's Nginx listens as rendered (all addresses)."""
        return self.addresses[name] if name == SERVER_SERVICE else "127.0.0.1"

    def _start_ingress(self) -> None:
        """The load balancer / Container Apps ingress: forwards to the proxy's target port with the
        public host name as Host, streaming both ways."""
        proxy = self.graph.services[PROXY_SERVICE].main
        workdir = self.base_dir / "ingress"
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        os.chmod(workdir / "tmp", 0o1777)
        temp = "".join(f"    {kind}_temp_path {workdir}/tmp;\n" for kind in
                       ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = workdir / "nginx.conf"
        conf.write_text(
            f"daemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\nerror_log {workdir}/error.log warn;\n"
            "events { worker_connections 256; }\nhttp {\n    access_log off;\n" + temp +
            f"    server {{\n        listen 127.0.0.1:{self.ingress_port};\n        client_max_body_size 0;\n"
            "        proxy_request_buffering off;\n        proxy_buffering off;\n"
            "        proxy_read_timeout 3600s;\n        proxy_send_timeout 3600s;\n"
            "        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n"
            f"        proxy_set_header Host {self.graph.public_host};\n"
            f"        proxy_set_header X-Forwarded-Proto {self.graph.public_scheme};\n"
            "        proxy_set_header X-Forwarded-For $remote_addr;\n"
            f"        location / {{\n            proxy_pass http://127.0.0.1:{proxy.ports[0]};\n        }}\n"
            "    }\n}\n")
        self.ingress = Service("ingress", [find_nginx(), "-c", str(conf)],
                               base_env(workdir, workdir / "tmp"), workdir / "nginx.out", cwd=workdir)
        self.ingress.start()
        deadline = time.monotonic() + 30
        liveness = next((p.path for p in proxy.probes if p.kind in ("Liveness", "Health")), "/")
        while http_status(f"{self.tracking_uri}{liveness}") not in (200, 401):
            if not self.ingress.alive() or time.monotonic() > deadline:
                raise StartupError(f"the ingress stand-in did not start:\n{log_tail(workdir / 'error.log')}")
            time.sleep(0.1)
        log.info("ingress stand-in at %s (Host %s)", self.tracking_uri, self.graph.public_host)

    def nginx_users(self) -> dict[str, set[str]]:
        """The users of the proxy's Nginx processes: {"master": {...}, "worker": {...}}."""
        found: dict[str, set[str]] = {"master": set(), "worker": set()}
        for user, cmdline in self.containers[PROXY_SERVICE].process_users().values():
            for role in found:
                if cmdline.startswith(f"nginx: {role} process"):
                    found[role].add(user)
        return found

    def stop(self) -> None:
        """Stop everything this run started, in reverse order, by PID; remove its files. Each
        container's /tmp and /home vanish with its mount namespace."""
        if self._stopped:
            return
        self._stopped = True
        parts = [("ingress", self.ingress), *reversed(list(self.containers.items())),
                 ("s3", self.s3), ("azurite", self.azurite)]
        for name, part in parts:
            if part is None:
                continue
            try:
                part.stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("stopping %s", name)
        if self.database:
            try:
                self.database.stop("fast")
            except Exception:  # noqa: BLE001 - keep cleaning up
                log.exception("stopping postgres")
        if not self.keep_files:
            shutil.rmtree(self.base_dir, ignore_errors=True)
