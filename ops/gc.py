"""`scripts/gc`: MLflow's garbage collection for the `local` stack, as the cloud stacks schedule it.

The command is the stack's own (`render.gc_spec`): a one-off container from the server's image on
the stack's network, with the server's database URI and scoped MinIO key (passed by name, values
never on a command line), removing runs deleted longer ago than `--older-than` with their artifacts.
The local stack has no scheduler: run this from cron (README, "Garbage collection").
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from components import render
from components.names import SERVER_SERVICE
from ops import OpsError
from ops.access import hang_up_and_terminate_as_interrupt, refuse_stores_elsewhere, run_process, server_option
from ops.local_stack import DEFAULT_PREFIX, LocalStack


def gc_spec_for(stack: LocalStack, older_than: str, timeout_seconds: int):
    """The rendered gc step for a running local stack: its artifacts destination, workspaces flag
    and S3 endpoint are read from the server container's own command and environment."""
    command, env = stack.server_command(), stack.server_env()
    refuse_stores_elsewhere(command, stack.container(SERVER_SERVICE), env)
    destination = server_option(command, "--artifacts-destination")  # the last one, as click reads it
    if destination is None:
        raise OpsError(f"{stack.container(SERVER_SERVICE)} runs no `mlflow server --artifacts-destination`: "
                       "is it this project's server?")
    settings = render.TrackingServerSettings(
        image=stack.server_image(),
        artifacts_destination=destination,
        allowed_hosts=(), cors_allowed_origins=(),
        workspaces="--enable-workspaces" in command,
        s3_endpoint_url=env.get("MLFLOW_S3_ENDPOINT_URL"),
        artifact_secret_env_names=tuple(name for name in render.S3_CREDENTIAL_ENVS if name in env),
    )
    spec = render.gc_spec(settings, older_than, timeout_seconds)
    missing = [name for name in spec.secret_env_names if name not in env]
    if missing:
        raise OpsError(f"the server container has no {', '.join(missing)} in its environment")
    return spec, {**spec.env, **{name: env[name] for name in spec.secret_env_names}}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--older-than", default="30d",
                        help="remove runs deleted longer ago than this (mlflow gc's #d#h#m#s; default 30d)")
    parser.add_argument("--timeout", type=int, default=3600, help="stop a run longer than this many seconds")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"the stack's Docker name prefix ({DEFAULT_PREFIX})")
    args = parser.parse_args(argv)
    hang_up_and_terminate_as_interrupt()
    from components.config import MaintenanceConfig
    from pydantic import ValidationError

    try:
        MaintenanceConfig(gc_older_than=args.older_than)
    except ValidationError:
        print(f"gc: --older-than {args.older_than!r} must be an age like 30d or 12h30m", file=sys.stderr)
        return 2
    try:
        stack = LocalStack.find(args.prefix)
        stack.remove_leftover_oneoffs()
        # Before gc's own container takes the lock: a killed put-back's one-off must not copy back what gc
        # deletes (review 18, F2); only one-offs whose tool has exited, none a live tool's.
        orphans = stack.stop_running_oneoffs()
        if orphans:
            print(f"gc: stopped {len(orphans)} one-off(s) an earlier backup or restore left running "
                  "(that tool was killed before they ended)", file=sys.stderr)
        spec, env = gc_spec_for(stack, args.older_than, args.timeout)
        command = stack.oneoff_command(spec.command, env)
    except OpsError as error:
        print(f"gc: {error}", file=sys.stderr)
        return error.exit_code
    # Its output (the runs removed) goes straight to the caller's terminal or cron mail.
    try:
        return run_process(command.argv, command.env).returncode
    except KeyboardInterrupt:  # the one-off was stopped (SIGTERM) and removed its container
        print("gc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
