"""Per-column conversion of SQLite values to the target column's type.

SQLite stores whatever it is given (booleans are 0/1 integers, a JSON column may hold a number, a
text column may hold a blob). The fast path passes values straight to COPY; a column only gets a
Python converter when a cheap SQL check finds values of an unexpected storage class in the range
being copied. Date columns always convert (SQLite keeps them as text).
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any, Callable

from migration.errors import ConversionError

# SQL predicate (per category) that is true for a value needing conversion; {c} is the quoted column.
ANOMALY_SQL = {
    "text": "typeof({c}) NOT IN ('text', 'null')",
    "int": "typeof({c}) NOT IN ('integer', 'null')",
    "float": "typeof({c}) NOT IN ('real', 'integer', 'null')",
    "bool": "NOT ({c} IS NULL OR (typeof({c}) = 'integer' AND {c} IN (0, 1)))",
    "bytea": "typeof({c}) NOT IN ('blob', 'null')",
    "timestamp": "typeof({c}) NOT IN ('text', 'null')",
}
ALWAYS_CONVERT = {"date"}


def _to_text(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConversionError(f"blob value is not UTF-8 text ({exc})") from exc
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _to_int(v: Any) -> Any:
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, (str, bytes)):
        text = v.decode() if isinstance(v, bytes) else v
        try:
            return int(text.strip())
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = math.nan
            if f.is_integer():
                return int(f)
    raise ConversionError(f"{v!r} is not an integer")


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "infinity": math.inf,
               "+infinity": math.inf, "-infinity": -math.inf}


def _to_float(v: Any) -> Any:
    if v is None or isinstance(v, float):
        return v
    if isinstance(v, int):
        return float(v)
    if isinstance(v, (str, bytes)):
        text = (v.decode() if isinstance(v, bytes) else v).strip()
        if text.lower() in _NON_FINITE:
            return _NON_FINITE[text.lower()]
        try:
            return float(text)
        except ValueError:
            pass
    raise ConversionError(f"{v!r} is not a number")


_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off"}


def _to_bool(v: Any) -> Any:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return bool(v)
    if isinstance(v, (str, bytes)):
        text = (v.decode() if isinstance(v, bytes) else v).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ConversionError(f"{v!r} is not a boolean")


def _to_bytes(v: Any) -> Any:
    if v is None or isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    return str(v).encode("ascii")


def _to_date(v: Any) -> Any:
    if v is None or isinstance(v, datetime.date):
        return v
    if isinstance(v, str):
        text = v.strip()
        try:
            return datetime.date.fromisoformat(text[:10])
        except ValueError:
            try:
                return datetime.datetime.fromisoformat(text).date()
            except ValueError:
                pass
    raise ConversionError(f"{v!r} is not a date")


def _to_timestamp(v: Any) -> Any:
    if v is None or isinstance(v, datetime.datetime):
        return v
    if isinstance(v, str):
        try:
            return datetime.datetime.fromisoformat(v.strip())
        except ValueError:
            pass
    raise ConversionError(f"{v!r} is not a timestamp")


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "text": _to_text, "int": _to_int, "float": _to_float, "bool": _to_bool, "bytea": _to_bytes,
    "date": _to_date, "timestamp": _to_timestamp,
}


@dataclass(frozen=True)
class ArtifactRewrite:
    old: str
    new: str

    @classmethod
    def parse(cls, spec: str) -> "ArtifactRewrite":
        if "=" not in spec:
            raise ValueError(f"--rewrite-artifact-root expects OLD=NEW, got {spec!r}")
        old, new = spec.split("=", 1)
        if not old or not new:
            raise ValueError(f"--rewrite-artifact-root expects non-empty OLD and NEW, got {spec!r}")
        return cls(old, new)

    def prefixes(self) -> list[str]:
        olds = [self.old]
        if self.old.startswith("/"):
            olds.append("file://" + self.old)
        elif self.old.startswith("file://"):
            olds.append(self.old[len("file://"):])
        return olds

    def apply(self, value: str) -> str | None:
        for old in self.prefixes():
            if value.startswith(old):
                rest = value[len(old):]
                if old.endswith("/") or not rest or rest[0] in "/?#":
                    new = self.new.rstrip("/") if (rest.startswith("/") and not old.endswith("/")) else self.new
                    return new + rest
        return None


# (table, column) holding artifact locations; trace_tags holds one under a known key.
ARTIFACT_COLUMNS = {
    "experiments": ["artifact_location"],
    "runs": ["artifact_uri"],
    "logged_models": ["artifact_location"],
    "model_versions": ["source", "storage_location"],
    "workspaces": ["default_artifact_root"],
}
TAG_ARTIFACT_COLUMNS = {"trace_tags": ("key", "value", "mlflow.artifactLocation")}


def rewrite_value(rules: tuple[ArtifactRewrite, ...], value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for rule in rules:
        out = rule.apply(value)
        if out is not None:
            return out
    return value
