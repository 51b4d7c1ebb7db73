"""A deployed `local` stack, found through the docker CLI (no Pulumi needed: its containers carry
everything the day-2 tools need).

The local platform names its Docker objects `<instance>-<stack>-<service>` (`mlflow-local-postgres`,
`mlflow-local-mlflow-server`, ...; see components/platforms/local/platform.py). The MLflow server container's
own configuration says where the data lives: its environment holds the database URI and the scoped
MinIO key, its command the artifacts destination. Commands reach the stack from inside: `docker
exec` into a container, or a one-off container from the server's image on the stack's network.
Secrets live in files, as the platform puts them: the server's env names each one's file
(`NAME_FILE=/run/secrets/NAME`), read back here with `docker cp` (a stopped server too); a one-off
container gets its variables the same way (ops/oneoff.py: files copied in before it starts, its
secret-env wrapper exports them), never on a command line nor in `docker inspect`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, Any, Mapping, Optional, Sequence, Union

from components.names import PROXY_SERVICE, SERVER_SERVICE
from components.platforms.local import IMAGE_USER_IDS, SECRETS_DIR, secret_env_entrypoint, secret_file_env
from ops import OpsError
from ops.access import Command, run_process, work_session_env

DEFAULT_PREFIX = "mlflow-local"
SERVICES = ("postgres", "minio", SERVER_SERVICE, PROXY_SERVICE)
"""Container name suffixes of the local platform's long-running services."""
REQUIRED_SERVICES = ("postgres", SERVER_SERVICE)
SERVER = SERVER_SERVICE
ONEOFF_USER = "mlflow"  # the server image's user (docker/mlflow/Dockerfile)
ONEOFF_LABEL = "org.mlflow-platform.ops=one-off"
ONEOFF_STACK_LABEL = "org.mlflow-platform.ops.stack"
"""`<label>=<prefix>`: which stack a one-off works on (stop_orphaned_oneoffs stops only that stack's)."""
ONEOFF_LOCK_LABEL = "org.mlflow-platform.ops.lock"
"""`<label>=<token>`: the maintenance lock hold (ops/lock.py) a one-off works under. A holder removes the
stack's running or created one-offs with another token (stop_orphaned_oneoffs): their tool holds no lock any
more, whichever host, container or pid namespace it ran in (review 18; review 20, F3a)."""
ONEOFF_HELPER = Path(__file__).with_name("oneoff.py")

Stdin = Union[None, bytes, IO[bytes]]


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def _find_docker() -> str:
    docker = shutil.which("docker")
    if not docker:
        raise OpsError("docker not found on PATH: the local stack's containers are reached with the docker CLI "
                       "(install Docker, or run this where the stack runs)")
    return docker


@dataclass
class LocalStack:
    """The local stack's containers, as `docker inspect` describes them."""

    prefix: str
    docker: str
    containers: dict[str, dict[str, Any]] = field(repr=False)
    """service -> `docker inspect` of its container (only the services found)."""
    network: str
    _secret_files: Optional[dict[str, str]] = field(default=None, repr=False)

    @classmethod
    def find(cls, prefix: str = DEFAULT_PREFIX) -> "LocalStack":
        """Inspect `<prefix>-<service>` for each service; one-line errors when docker or the stack's
        containers are missing."""
        docker = _find_docker()
        names = [f"{prefix}-{service}" for service in SERVICES]
        result = subprocess.run([docker, "inspect", "--type", "container", *names], capture_output=True, text=True)
        try:
            described = json.loads(result.stdout) if result.stdout.strip() else []
        except json.JSONDecodeError:
            described = []
        if result.returncode != 0 and not described and "no such" not in result.stderr.lower():
            raise OpsError(f"docker inspect failed: {_first_line(result.stderr) or f'exit status {result.returncode}'}")
        containers: dict[str, dict[str, Any]] = {}
        for item in described:
            name = str(item.get("Name", "")).lstrip("/")
            if name.startswith(prefix + "-") and name[len(prefix) + 1:] in SERVICES:
                containers[name[len(prefix) + 1:]] = item
        missing = [f"{prefix}-{service}" for service in REQUIRED_SERVICES if service not in containers]
        if missing:
            raise OpsError(
                f"no container {', '.join(missing)}: looked for the local stack's containers {prefix}-<service>; "
                f"is the stack up (pulumi up -s local)? For another instance or stack name pass --prefix "
                f"<instance>-<stack>, e.g. --prefix mlflow-dev")
        return cls(prefix=prefix, docker=docker, containers=containers,
                   network=_server_network(containers[SERVER], prefix))

    # --- what the containers say -----------------------------------------------------------------

    def container(self, service: str) -> str:
        """The Docker name of a service's container (which must exist)."""
        if service not in self.containers:
            raise OpsError(f"the local stack {self.prefix} has no container {self.prefix}-{service}")
        return f"{self.prefix}-{service}"

    def running(self, service: str) -> bool:
        return bool(self.containers.get(service, {}).get("State", {}).get("Running"))

    def server_image(self) -> str:
        """The image ID the server container runs (exact, even when its tag has moved since)."""
        return str(self.containers[SERVER]["Image"])

    def server_env(self) -> dict[str, str]:
        """The server's environment as its process sees it (secrets included: never print it):
        Config.Env, each `NAME_FILE` that points into /run/secrets replaced by NAME and the file's content."""
        env: dict[str, str] = {}
        for line in self.containers[SERVER].get("Config", {}).get("Env") or []:
            name, _, value = line.partition("=")
            env[name] = value
        prefix = SECRETS_DIR + "/"
        pointers = {key: value for key, value in env.items() if key.endswith("_FILE") and value.startswith(prefix)}
        if pointers:
            files = self._server_secret_files()
            for key, path in pointers.items():
                name = path.removeprefix(prefix)
                if name not in files:
                    raise OpsError(f"{self.container(SERVER)} has {key}={path} but no such file")
                del env[key]
                env[key.removesuffix("_FILE")] = files[name]
        return env

    def _server_secret_files(self) -> dict[str, str]:
        """/run/secrets of the server container (`docker cp` works on a stopped container too)."""
        if self._secret_files is None:
            source = f"{self.container(SERVER)}:{SECRETS_DIR}"
            result = subprocess.run([self.docker, "cp", source, "-"], capture_output=True)
            if result.returncode != 0:
                raise OpsError(f"docker cp {source} failed: {_first_line(result.stderr.decode(errors='replace'))}")
            files: dict[str, str] = {}
            with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
                for member in tar.getmembers():
                    extracted = tar.extractfile(member) if member.isfile() else None
                    if extracted is not None:
                        files[PurePosixPath(member.name).name] = extracted.read().decode()
            self._secret_files = files
        return self._secret_files

    def server_command(self) -> list[str]:
        config = self.containers[SERVER].get("Config", {})
        return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]

    # --- commands --------------------------------------------------------------------------------

    def exec_argv(self, service: str, argv: Sequence[str], *, user: Optional[str] = None,
                  env: Optional[Mapping[str, str]] = None) -> list[str]:
        """`docker exec -i [-e NAME=value...] [--user U] <container> argv...` (`env`: no secrets, they show
        in `docker inspect` and the process list)."""
        variables = [arg for name, value in sorted((env or {}).items()) for arg in ("-e", f"{name}={value}")]
        return [self.docker, "exec", "-i", *variables, *(["--user", user] if user else []), self.container(service),
                *argv]

    def oneoff_command(self, argv: Sequence[str], env: Mapping[str, str], lock_token: Optional[str] = None) -> Command:
        """A one-off container from the server's image on the stack's network, removed when done
        (ops/oneoff.py). Every variable reaches it as a file, as the platform hands the server its
        secrets: the values travel in the helper's environment only, the container's config holds
        `NAME_FILE` paths, its secret-env wrapper exports them before `argv` starts. No log driver:
        a tar streamed through stdout must not be kept again in the container's log file. Labelled with
        the maintenance lock hold it works under, if any (ONEOFF_LOCK_LABEL)."""
        names = sorted(env)
        bad = [name for name in names if not name.isidentifier() or not name.isascii()]
        if bad:
            raise ValueError(f"invalid environment variable names: {bad}")
        create = ["--rm", "-i", "--network", self.network, "--user", ONEOFF_USER,
                  "--log-driver", "none", "--label", ONEOFF_LABEL, "--label", f"{ONEOFF_STACK_LABEL}={self.prefix}",
                  *(["--label", f"{ONEOFF_LOCK_LABEL}={lock_token}"] if lock_token else [])]
        for name, path in secret_file_env(names).items():
            create += ["-e", f"{name}={path}"]
        create += [self.server_image(), *(secret_env_entrypoint(names) if names else []), *argv]
        helper = [sys.executable, str(ONEOFF_HELPER), self.docker, IMAGE_USER_IDS[ONEOFF_USER], ",".join(names), "--"]
        return Command([*helper, *create], {**os.environ, **env})

    def stop_orphaned_oneoffs(self, lock_token: str) -> list[str]:
        """With the maintenance lock hold `lock_token` taken: remove this stack's one-off containers
        (`docker rm --force`) that work under another hold, running or created (their tool holds no lock
        any more: killed with `kill -9`, it cannot stop its helper's container, and the helper may still
        create one; cut off by a PostgreSQL restart, it may not write), and those created without a hold
        and never started (an interrupt cut their helper short; each holds its secret files). Returns
        their ids. A running one-off started without a hold only reads (a restore's image facts) and is
        left alone (review 17, F2). Only under the lock: a tool refused by it touches nothing (review 22,
        F3: a refused gc removed a live restore's container between its create and its start)."""
        result = subprocess.run([self.docker, "ps", "--all", "--no-trunc", "--filter", f"label={ONEOFF_LABEL}",
                                 "--filter", f"label={ONEOFF_STACK_LABEL}={self.prefix}", "--filter", "status=running",
                                 "--filter", "status=created", "--format",
                                 f'{{{{.ID}}}}\t{{{{.Label "{ONEOFF_LOCK_LABEL}"}}}}\t{{{{.State}}}}'],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise OpsError(f"docker ps failed: {_first_line(result.stderr) or f'exit status {result.returncode}'}")
        orphans = []
        for line in result.stdout.splitlines():
            one_id, token, state = (line.split("\t") + ["", ""])[:3]
            token, state = token.strip(), state.strip()
            if one_id.strip() and (token not in ("", lock_token) or (not token and state == "created")):
                orphans.append(one_id.strip())
        if orphans:
            removed = subprocess.run([self.docker, "rm", "--force", *orphans], capture_output=True, text=True)
            # Gone already (ended, or removed by its own helper at that moment): gone is what was asked.
            failed = [line for line in removed.stderr.splitlines() if line.strip()
                      and "No such container" not in line and "is already in progress" not in line]
            if removed.returncode != 0 and failed:
                raise OpsError(f"stopping one-off containers an earlier tool left running failed: {failed[0]}")
        return orphans

    def exec(self, service: str, argv: Sequence[str], *, stdin: Stdin = None, stdout: Optional[IO[bytes]] = None,
             user: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run `argv` in a service's running container; stdout captured unless given, stderr captured."""
        return _run(self.exec_argv(service, argv, user=user), dict(os.environ), stdin, stdout)

    def run_oneoff(self, argv: Sequence[str], *, env: Mapping[str, str], stdin: Stdin = None,
                   stdout: Optional[IO[bytes]] = None) -> subprocess.CompletedProcess:
        """`docker run --rm -i --network <net> --user mlflow <server image> argv...` with `env`."""
        command = self.oneoff_command(argv, env)
        return _run(command.argv, dict(command.env), stdin, stdout)

    def stop(self, service: str, timeout_seconds: int = 30) -> bool:
        """`docker stop`; True when the container was running. (Its restart policy, unless-stopped,
        keeps it stopped until `start`.)"""
        was_running = self._state(service).get("Running", False)
        result = subprocess.run([self.docker, "stop", "--time", str(timeout_seconds), self.container(service)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise OpsError(f"docker stop {self.container(service)} failed: {_first_line(result.stderr)}")
        return bool(was_running)

    def start(self, service: str, timeout_seconds: float = 300.0) -> None:
        """`docker start`, then wait until its health check passes (or it runs, without one)."""
        name = self.container(service)
        result = subprocess.run([self.docker, "start", name], capture_output=True, text=True)
        if result.returncode != 0:
            raise OpsError(f"docker start {name} failed: {_first_line(result.stderr)}")
        deadline = time.monotonic() + timeout_seconds
        while True:
            state = self._state(service)
            health = (state.get("Health") or {}).get("Status")
            if state.get("Running") and health in (None, "healthy"):
                return
            if not state.get("Running") and state.get("Status") in ("exited", "dead"):
                raise OpsError(f"{name} exited (status {state.get('ExitCode')}) after starting: docker logs {name}")
            if time.monotonic() > deadline:
                raise OpsError(f"{name} not healthy after {timeout_seconds:.0f}s (health: {health}): "
                               f"docker logs {name}")
            time.sleep(1)

    def _state(self, service: str) -> dict[str, Any]:
        result = subprocess.run([self.docker, "inspect", "--type", "container", "--format", "{{json .State}}",
                                 self.container(service)], capture_output=True, text=True)
        if result.returncode != 0:
            raise OpsError(f"docker inspect {self.container(service)} failed: {_first_line(result.stderr)}")
        return json.loads(result.stdout)


def _server_network(server: Mapping[str, Any], prefix: str) -> str:
    """The stack's network, as the server container is attached to it (`<prefix>-net` by default)."""
    networks = list((server.get("NetworkSettings", {}).get("Networks") or {}).keys())
    if f"{prefix}-net" in networks:
        return f"{prefix}-net"
    if len(networks) == 1:
        return networks[0]
    raise OpsError(f"cannot tell the stack's network from {prefix}-{SERVER}'s networks "
                   f"({', '.join(networks) or 'none'}); expected {prefix}-net")


def _run(argv: list[str], env: dict[str, str], stdin: Stdin,
         stdout: Optional[IO[bytes]]) -> subprocess.CompletedProcess:
    return run_process(argv, env,
                       input=stdin if isinstance(stdin, bytes) else None,
                       stdin=None if isinstance(stdin, bytes) else (stdin if stdin is not None else subprocess.DEVNULL),
                       stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE)


class LocalAccess:
    """`ops.access.StackAccess` for the local stack: PostgreSQL's client tools in the postgres
    container (as `postgres` over the container's socket, which the official image trusts for local
    connections, so no password is needed or handled), Python in one-off containers from the
    server's image on the stack's network."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.description = f"the local stack {stack.prefix}"
        self.lock_token: Optional[str] = None
        if not stack.running("postgres"):
            name = stack.container("postgres")
            raise OpsError(f"{name} is not running (docker start {name})")

    @classmethod
    def find(cls, prefix: str = DEFAULT_PREFIX) -> "LocalAccess":
        """The stack's access for backup, restore and gc (leftover one-offs are removed once the lock is held)."""
        return cls(LocalStack.find(prefix))

    def postgres_command(self, argv: Sequence[str]) -> Command:
        return Command(self.stack.exec_argv("postgres", argv, user="postgres", env=work_session_env(self.lock_token)),
                       dict(os.environ), hold=self.lock_token)

    def python_command(self, argv: Sequence[str], env: Mapping[str, str]) -> Command:
        command = self.stack.oneoff_command(["python", *argv], {**env, **work_session_env(self.lock_token)},
                                            self.lock_token)
        return replace(command, hold=self.lock_token)

    def server_env(self) -> Mapping[str, str]:
        return self.stack.server_env()

    def server_command(self) -> Sequence[str]:
        return self.stack.server_command()

    def stop_server(self) -> bool:
        return self.stack.stop(SERVER)

    def start_server(self) -> None:
        self.stack.start(SERVER)

    def stop_orphaned_oneoffs(self) -> int:
        if self.lock_token is None:
            raise RuntimeError("stop_orphaned_oneoffs only with the maintenance lock held")
        return len(self.stack.stop_orphaned_oneoffs(self.lock_token))
