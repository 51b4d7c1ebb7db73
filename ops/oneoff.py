"""Run a one-off container whose variables arrive as files, never as docker env.

    python ops/oneoff.py DOCKER OWNER NAMES -- CREATE_ARGS...

NAMES (comma-separated) are variables of this process's own environment (ops.local_stack puts them
there, as it used to for the docker CLI). Each becomes the file /run/secrets/NAME (mode 0400, owned
by uid OWNER) in the container that `docker create CREATE_ARGS...` makes; `docker cp` puts them in
before it starts, so `docker inspect` shows only the paths (`NAME_FILE`) the container's secret-env
wrapper reads. Then `docker start --attach --interactive`: stdin, stdout and stderr pass straight
through, and the exit status is the container's. The container is removed whatever happens.

Only the standard library: it runs as a script, outside the package.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time

SECRETS_DIR = "run/secrets"  # components.platforms.local.SECRETS_DIR, relative to the container's root
FILE_MODE = 0o400
DIR_MODE = 0o755
DOCKER_FAILED = 125  # what `docker run` exits with when docker itself fails


class DockerFailed(Exception):
    pass


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


def run(docker: str, owner: int, names: list[str], create_args: list[str]) -> int:
    values = {name: os.environ[name] for name in names}
    # docker's own processes get none of the values (nothing for them to leak into a container).
    env = {key: value for key, value in os.environ.items() if key not in values}
    container = _docker([docker, "create", *create_args], "docker create", env)
    try:
        _docker([docker, "cp", "-", f"{container}:/"], "docker cp", env, secrets_tar(values, owner))
        return subprocess.run([docker, "start", "--attach", "--interactive", container], env=env).returncode
    finally:
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
    try:
        return run(docker, owner, names, argv[4:])
    except DockerFailed as error:
        print(f"oneoff: {error}", file=sys.stderr)
        return DOCKER_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
