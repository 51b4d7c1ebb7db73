"""Run a one-off container whose variables arrive as files, never as docker env.

    python ops/oneoff.py DOCKER OWNER NAMES -- CREATE_ARGS...

NAMES (comma-separated) are variables of this process's own environment (ops.local_stack puts them
there, as it used to for the docker CLI). Each becomes the file /run/secrets/NAME (mode 0400, owned
by uid OWNER) in the container that `docker create CREATE_ARGS...` makes; `docker cp` puts them in
before it starts, so `docker inspect` shows only the paths (`NAME_FILE`) the container's secret-env
wrapper reads. Then `docker start --attach --interactive`: stdin, stdout and stderr pass straight
through, and the exit status is the container's. The container is removed whatever happens: SIGINT,
SIGTERM and SIGHUP become an exception here (Python's defaults would end the process on the last
two without its `finally`, leaving a created container that holds the secret files), and the
removal itself ignores them. Callers start this in its own session and answer their own interrupt
with SIGTERM and a bounded wait (ops.access.run_process). A container created by a `docker create`
cut short before its id came back is removed by the next backup, restore or gc once it holds the lock
(ops.local_stack.LocalStack.stop_orphaned_oneoffs).

Only the standard library: it runs as a script, outside the package.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time

SECRETS_DIR = "run/secrets"  # components.platforms.local.SECRETS_DIR, relative to the container's root
FILE_MODE = 0o400
DIR_MODE = 0o755
DOCKER_FAILED = 125  # what `docker run` exits with when docker itself fails
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class DockerFailed(Exception):
    pass


class Interrupted(BaseException):
    """One of INTERRUPTS arrived (a BaseException, like KeyboardInterrupt: nothing may swallow it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def _handle_interrupts(handler) -> None:
    for signum in INTERRUPTS:
        signal.signal(signum, handler)


def secrets_tar(values: dict[str, str], owner: int) -> bytes:
    """A tar of /run/secrets/<NAME> files, each readable by `owner` only."""
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directory = tarfile.TarInfo(SECRETS_DIR)
        directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, DIR_MODE, now
        tar.addfile(directory)
        for name, value in sorted(values.items()):
            data = value.encode()
            info = tarfile.TarInfo(f"{SECRETS_DIR}/{name}")
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), FILE_MODE, owner, owner, now
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _docker(argv: list[str], what: str, env: dict[str, str], stdin: bytes = b"") -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, env=env)
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
        raise DockerFailed(f"{what} failed: {lines[-1] if lines else f'exit status {result.returncode}'}")
    return result.stdout.decode().strip()


def run(docker: str, owner: int, names: list[str], create_args: list[str], tool: int) -> int:
    values = {name: os.environ[name] for name in names}
    # docker's own processes get none of the values (nothing for them to leak into a container).
    env = {key: value for key, value in os.environ.items() if key not in values}
    container = ""
    try:
        container = _docker([docker, "create", *create_args], "docker create", env)
        _docker([docker, "cp", "-", f"{container}:/"], "docker cp", env, secrets_tar(values, owner))
        # Its tool killed meanwhile (this helper, in a session of its own, outlives it): its lock is gone and
        # the next holder may be at work; one created before that is swept by that holder (review 21, F3).
        if os.getppid() != tool:
            raise DockerFailed("the tool that started this one-off has exited: not started")
        return subprocess.run([docker, "start", "--attach", "--interactive", container], env=env).returncode
    finally:
        if container:
            _handle_interrupts(signal.SIG_IGN)  # a second interrupt must not cut the removal short
            subprocess.run([docker, "rm", "--force", container], capture_output=True, env=env)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[3] != "--":
        print("usage: oneoff.py DOCKER OWNER NAMES -- CREATE_ARGS...", file=sys.stderr)
        return 2
    docker, owner, names = argv[0], int(argv[1]), [name for name in argv[2].split(",") if name]
    missing = [name for name in names if name not in os.environ]
    if missing:
        print(f"oneoff: {', '.join(missing)} not in the environment", file=sys.stderr)
        return 2
    _handle_interrupts(_raise_interrupted)
    tool = os.getppid()
    try:
        return run(docker, owner, names, argv[4:], tool)
    except DockerFailed as error:
        print(f"oneoff: {error}", file=sys.stderr)
        return DOCKER_FAILED
    except Interrupted as interrupted:
        print(f"oneoff: interrupted ({signal.Signals(interrupted.signum).name}); container removed", file=sys.stderr)
        return 128 + interrupted.signum


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
