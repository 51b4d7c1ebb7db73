"""Day-2 operations on a deployed stack: backup, restore (and garbage collection).

The logic is written once against `ops.access.StackAccess`, which says only how a command reaches
the stack's PostgreSQL server and its server image: `ops.local_stack.LocalAccess` for the `local`
stack (docker exec / docker run on the stack's network), a native one in the rehearsal tests.
Scripts that run *inside* the stack (`ops.objects`, `ops.mlflow_facts`) use only the standard
library and what the server image installs; they are sent as `python -c` source.
"""


class OpsError(RuntimeError):
    """An operation failed; the message is one line a user can act on (never a secret)."""

    exit_code = 1


class RefusedError(OpsError):
    """A precondition is not met (non-empty target, newer schema, corrupt backup); nothing was changed."""

    exit_code = 3
