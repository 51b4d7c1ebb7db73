"""Errors the tool reports to the user, each with its own exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # anything unexpected, or the target refused the data; target unchanged
EXIT_USAGE = 2  # bad arguments (argparse uses 2 as well)
EXIT_REFUSED = 3  # a precondition is not met (newer source, user data in target, ...); nothing written
EXIT_VERIFY = 4  # verification failed before commit; target unchanged (rolled back)
EXIT_PROBE = 5  # data committed and verified, but MLflow could not work with the target


class MigrationError(Exception):
    """A failure with a message meant for a person, and the exit code to leave with."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(MigrationError):
    exit_code = EXIT_USAGE


class RefusedError(MigrationError):
    exit_code = EXIT_REFUSED


class VerificationError(MigrationError):
    exit_code = EXIT_VERIFY


class ProbeError(MigrationError):
    exit_code = EXIT_PROBE
