"""Every exception the tool raises on purpose, one type per meaning.

Errors meant for a person derive from MigrationError: a message, an optional hint, and the exit code
to leave with (cli.py prints them, masked). The others are signals that a caller acts on and that
never reach the user as they are.
"""

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
    """Bad arguments: a SOURCE that is no SQLite file, a TARGET that is no PostgreSQL URI."""

    exit_code = EXIT_USAGE


class RefusedError(MigrationError):
    """A precondition is not met (newer source, user data in the target, ...); nothing was written."""

    exit_code = EXIT_REFUSED


class VerificationError(MigrationError):
    """The read-back checksums differ even after a careful second copy; rolled back."""

    exit_code = EXIT_VERIFY


class ProbeError(MigrationError):
    """Committed and verified, but MLflow does not work on the target."""

    exit_code = EXIT_PROBE


class ForeignKeyBroken(MigrationError):
    """A re-created foreign key does not hold: the source has rows without their parent row."""


class ValueRefused(MigrationError):
    """PostgreSQL refused a value even after every value of the table was checked and converted: final."""

    def __init__(self, table: str, reason: str, context: str = "", detail: str = ""):
        nul = "0x00" in reason
        hint = (" (PostgreSQL's text cannot hold the NUL character that SQLite kept: --replace-nul replaces each "
                "with U+FFFD, or change those values in a copy of the source)" if nul else "")
        super().__init__(f"PostgreSQL refused a value of {table}: {reason}{context}{detail}{hint}; "
                         "nothing was committed")
        self.table = table
        self.reason = reason
        self.context = context
        self.nul = nul


class StringTooLong(ValueRefused):
    """PostgreSQL refused a string longer than its varchar column (SQLite never checks lengths): the run
    rolls back and tries once more with the columns widened that the source's strings exceed."""


class ConversionError(ValueError):
    """A value that the careful path cannot convert to its column's type; reported as the table's error."""


class FastPathRefused(Exception):
    """A value the fast path cannot send (a reader met an unexpected type, or PostgreSQL refused the data):
    the table is rolled back to its savepoint and copied again with every value checked."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Interrupted(BaseException):
    """SIGTERM: unwinds like KeyboardInterrupt, so that the transaction is rolled back."""
