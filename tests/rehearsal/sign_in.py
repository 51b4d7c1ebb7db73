"""Cheaper sign-ins for the rehearsal's auth.mode mlflow modules whose subject is not the password check.

MLflow's auth app checks the basic-auth password of every request against the user's stored hash, and
MLflow (werkzeug's default) stores scrypt hashes: 60-90 ms of the server's CPU per request on a CI core,
most of the server's time in the modules that send hundreds of requests (the authorization sweeps, the
bypasses, gc and backup). `cheap_hashes` stores a one-round PBKDF2 hash of the same password instead:
werkzeug's check_password_hash, which MLflow calls, reads the method from the hash, so every request
still signs in for real (a wrong password is still refused) with the password the module holds, and
everything after the sign-in (authorization, handlers) is unchanged. Sign-ins against scrypt hashes
(what MLflow writes for users it creates, and the deployed admin's) are test_09's subject.
"""

from __future__ import annotations

from typing import Iterable

from components.config import auth_database_name
from rehearsal.launcher import RehearsalStack

CHEAP_METHOD = "pbkdf2:sha256:1"


def cheap_hashes(stack: RehearsalStack, users: Iterable[tuple[str, str]]) -> None:
    """(username, password) pairs: each user's stored hash becomes a one-round PBKDF2 hash of that password."""
    from werkzeug.security import generate_password_hash

    assert stack.postgres is not None
    for username, password in users:
        digest = generate_password_hash(password, method=CHEAP_METHOD)
        updated = stack.postgres.psql(f"UPDATE users SET password_hash = '{digest}' WHERE username = '{username}'",
                                      auth_database_name(stack.base_config.database.name))
        assert updated.strip() == "UPDATE 1", f"no user {username} in the auth database: {updated!r}"
