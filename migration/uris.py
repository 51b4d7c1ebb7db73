"""Source and target locations: parsing, normalising, and masking passwords in anything printed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from migration.errors import UsageError

_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg", "postgresql+psycopg2cffi"}


def source_path(source: str) -> Path:
    """A SQLite file path from a path or a `sqlite:///relative` / `sqlite:////absolute` URI."""
    if source.startswith("sqlite:"):
        if source in ("sqlite://", "sqlite:///:memory:") or not source.startswith("sqlite:///"):
            raise UsageError(f"SOURCE must name a SQLite file, got {source!r}")
        raw = source[len("sqlite:///"):]
        raw = raw.split("?", 1)[0]
        path = Path(unquote(raw))
    else:
        path = Path(source)
    path = path.expanduser()
    if not path.is_file():
        raise UsageError(f"source database {str(path)!r} does not exist or is not a file")
    with open(path, "rb") as handle:
        if handle.read(16) != _SQLITE_MAGIC:
            raise UsageError(f"source {str(path)!r} is not a SQLite database")
    return path.resolve()


@dataclass(frozen=True)
class Target:
    """A PostgreSQL target: the URI as MLflow should see it, and a libpq conninfo for psycopg 3."""

    uri: str  # SQLAlchemy URI handed to MLflow (driver kept as the user gave it)
    conninfo: str  # plain postgresql:// URI for libpq / psycopg 3
    password: str | None

    @property
    def masked(self) -> str:
        return mask_uri(self.uri)

    @property
    def secrets(self) -> list[str]:
        if not self.password:
            return []
        return sorted({self.password, quote(self.password, safe=""), quote(self.password)}, key=len, reverse=True)


def parse_target(target: str) -> Target:
    parts = urlsplit(target)
    scheme = parts.scheme.lower()
    if scheme not in _PG_SCHEMES:
        raise UsageError(
            f"TARGET must be a PostgreSQL URI (postgresql://, postgresql+psycopg2://, postgresql+psycopg://), "
            f"got {mask_uri(target)!r}"
        )
    uri = target
    if scheme == "postgres":  # SQLAlchemy does not know the short scheme
        uri = "postgresql" + target[len(parts.scheme):]
    conninfo = "postgresql" + target[len(parts.scheme):]
    password = unquote(parts.password) if parts.password else None
    return Target(uri=uri, conninfo=conninfo, password=password)


_URI_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<tail>@)", re.IGNORECASE)


def mask_uri(uri: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`."""
    return _URI_PASSWORD.sub(lambda m: m.group("head") + "***" + m.group("tail"), uri)


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Mask passwords in any text: URI passwords, `password=...` conninfo fields, and known secrets."""
    text = mask_uri(text)
    text = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.IGNORECASE)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
