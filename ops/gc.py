"""`scripts/gc`: MLflow's garbage collection for the `local` stack, as the cloud stacks schedule it.

The command is the stack's own (`render.gc_spec`): a one-off container from the server's image on
the stack's network, with the server's database URI and scoped MinIO key (passed by name, values
never on a command line), removing runs deleted longer ago than `--older-than` with their artifacts.
The local stack has no scheduler: run this from cron (README, "Garbage collection").

This tool takes the stack's maintenance lock (ops/lock.py), stops the one-offs a killed backup or
restore left running while it holds it, and runs the gc step under that same hold
(render.GC_LOCK_TOKEN_ENV): nothing can start or be orphaned between the sweep and the step (review 20,
F3a). Where a scheduler runs gc (aws, azure) the step takes the lock itself.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Optional, Sequence

from components import render
from components.names import SERVER_SERVICE
from ops import OpsError, RefusedError
from ops.access import (hang_up_and_terminate_as_interrupt, refuse_stores_elsewhere, run_process, server_option,
                        work_session_env)
from ops.local_stack import DEFAULT_PREFIX, LocalAccess, LocalStack
from ops.lock import LockLost, LockLostError, maintenance_lock


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
    held, code = None, None
    try:
        access = LocalAccess.find(args.prefix)
        spec, env = gc_spec_for(access.stack, args.older_than, args.timeout)
        with maintenance_lock(access, "gc") as held:  # stops a killed tool's one-offs first (review 18, F2)
            # Its database sessions are this hold's work sessions: a next holder ends them if this tool dies.
            command = access.stack.oneoff_command(
                spec.command, {**env, render.GC_LOCK_TOKEN_ENV: held.token, **work_session_env(held.token)}, held.token)
            # Its output (the runs removed) goes straight to the caller's terminal or cron mail.
            code = run_process(command.argv, command.env, stdin=subprocess.DEVNULL).returncode  # not the terminal's
        return code
    except KeyboardInterrupt as interrupt:  # the one-off was stopped (SIGTERM) and removed its container
        if code is not None:  # while the lock was let go, after the step had ended: its outcome stands (reviews 21, 22)
            return code
        if isinstance(interrupt, LockLost):
            assert held is not None  # watched only inside the `with` body
            print(f"gc: {held.lost_message('gc ended')}; the next gc does the rest", file=sys.stderr)
            return render.GC_LOCKED_EXIT
        print("gc: interrupted", file=sys.stderr)
        return 130
    except (RefusedError, LockLostError) as error:  # another holds the lock, or it went before the step started
        print(f"gc: {error}; nothing was deleted", file=sys.stderr)
        return render.GC_LOCKED_EXIT
    except OpsError as error:
        print(f"gc: {error}", file=sys.stderr)
        return error.exit_code

if __name__ == "__main__":
    sys.exit(main())
