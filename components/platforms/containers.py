"""What both clouds' container services lack, done the same way for each: files written from env
vars before the real command (no file uploads on ECS or Container Apps), and digests of secret
values, so that a changed secret changes what the service runs (both read secrets only when a
container starts)."""

import hashlib
from typing import Any, Mapping, Sequence

import pulumi


def file_env_name(path: str) -> str:
    return "MLFLOW_PLATFORM_FILE_" + hashlib.sha256(path.encode()).hexdigest()[:10].upper()


def with_files(command: Sequence[str], paths: Sequence[str]) -> list[str]:
    """Write each file from its env var (plain or secret), drop the var, then exec the real
    command. Contents never appear on a command line."""
    if not paths:
        return list(command)
    steps = ["set -eu", "umask 077"]
    for path in paths:
        variable = file_env_name(path)
        directory = path.rsplit("/", 1)[0] or "/"
        steps.append(f'mkdir -p "{directory}" && printf "%s" "${variable}" > "{path}" && unset {variable}')
    steps.append('exec "$@"')
    return ["sh", "-c", "; ".join(steps), "sh", *command]


def secret_digest(value: str) -> str:
    """A secret's SHA-256. Every secret here is generated (32+ random characters) or a hash of one,
    so its digest tells nothing about it."""
    return hashlib.sha256(value.encode()).hexdigest()


def output_dict(values: Mapping[str, pulumi.Input[Any]]) -> pulumi.Output[dict[str, Any]]:
    """Output.all(**values), also for no values (Output.all() alone gives a list)."""
    return pulumi.Output.all(**values) if values else pulumi.Output.from_input({})
