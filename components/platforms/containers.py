"""What both clouds' container services lack, done the same way for each: files written from env
vars before the real command (no file uploads on ECS or Container Apps), and digests of secret
values, so that a changed secret changes what the service runs (both read secrets only when a
container starts)."""

import hashlib
from typing import Any, Mapping, Optional, Sequence

import pulumi
import pulumi_command as command


def file_env_name(path: str) -> str:
    return "MLFLOW_PLATFORM_FILE_" + hashlib.sha256(path.encode()).hexdigest()[:10].upper()


def with_files(command: Sequence[str], paths: Sequence[str], user: Optional[str] = None) -> list[str]:
    """Write each file from its env var (plain or secret), drop the var, then exec the real
    command. Contents never appear on a command line.

    Files are written under `umask 077`. Where the platform starts the wrapper as root although the
    container's program drops to `user` (Container Apps has no run-as-user; Nginx's master stays root
    and its workers, user `nginx`, open htpasswd at request time), the files and the directories
    created for them go to that user's group, read-only (0640, directories 0750): never world
    readable, never writable by the workers. Started as `user` already (an ECS task definition's
    `user`), the files are that user's own 0600 and nothing changes."""
    if not paths:
        return list(command)
    # One command per step (not `a && b`): `set -e` ignores a failure anywhere but last in such a list.
    steps = ["set -eu", "umask 077"]
    if user is None:
        steps += [f'mkdir -p "{directory}"'
                  for directory in dict.fromkeys(path.rsplit("/", 1)[0] or "/" for path in paths)]
        for path in paths:
            steps += [f'printf "%s" "${file_env_name(path)}" > "{path}"', f"unset {file_env_name(path)}"]
    else:
        steps += [f'G=""; if [ "$(id -u)" = 0 ]; then G="{_group_of(user)}"; fi',
                  'share() { if [ -n "$G" ]; then chgrp "$G" "$1"; chmod g+rX "$1"; fi; }']
        steps += [f'if [ ! -d "{directory}" ]; then mkdir "{directory}"; share "{directory}"; fi'
                  for directory in _directories(paths)]
        for path in paths:
            steps += [f'printf "%s" "${file_env_name(path)}" > "{path}"', f'share "{path}"',
                      f"unset {file_env_name(path)}"]
    steps.append('exec "$@"')
    return ["sh", "-c", "; ".join(steps), "sh", *command]


def _group_of(user: str) -> str:
    """The shell expression of `user`'s group: the given one of `uid:gid`, else the user's primary group."""
    return user.split(":", 1)[1] if ":" in user else f"$(id -g {user})"


def _directories(paths: Sequence[str]) -> list[str]:
    """Every directory the files need, parents first (without `/`)."""
    directories: list[str] = []
    for path in paths:
        parts = path.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            directory = "/" + "/".join(parts[:depth])
            if directory not in directories:
                directories.append(directory)
    return directories


def secret_digest(value: str) -> str:
    """A secret's SHA-256. Every secret here is generated (32+ random characters) or a hash of one,
    so its digest tells nothing about it."""
    return hashlib.sha256(value.encode()).hexdigest()


def output_dict(values: Mapping[str, pulumi.Input[Any]]) -> pulumi.Output[dict[str, Any]]:
    """Output.all(**values), also for no values (Output.all() alone gives a list)."""
    return pulumi.Output.all(**values) if values else pulumi.Output.from_input({})


def registry_token(resource: dict, login_command: pulumi.Input[str], images: str) -> pulumi.Output[str]:
    """A push token for the stack's registry, printed by `login_command` on the machine running `pulumi up`:
    asked for again only when `images` (images_fingerprint) changes, so a plan and its `up --plan` send the
    same input (pulumi/pulumi#17546); never shown, kept secret in the state. `resource`: the command's name
    and options (its platform's `_shared`)."""
    login = command.local.Command(**resource, create=login_command, triggers=[images], logging="none")
    return pulumi.Output.secret(login.stdout.apply(lambda out: out.strip() if out else out))
