"""What every section of the stack configuration shares, the platforms' sections included: the
pydantic base (camelCase keys, frozen, unknown keys refused), keys whose value may be known later
(a `pulumi.Output`), and the value patterns more than one section checks.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from pulumi import Output
from pydantic import BaseModel, ConfigDict, WrapValidator
from pydantic.alias_generators import to_camel


class ConfigError(ValueError):
    """The stack config is invalid; the message has one line per problem."""


# nginx size syntax: a number with an optional k/m/g suffix; 0 means "no limit".
_BODY_SIZE = re.compile(r"^(0|[1-9][0-9]*[kKmMgG]?)$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$")
_STATIC_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
_BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IMAGE_REF = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9._-]+)*"
                        r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[0-9a-f]{64})?$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CIDR = re.compile(r"^((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)/([0-9]|[12][0-9]|3[0-2])$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")

def _known_later(value: Any, handler: Callable[[Any], Any]) -> Any:
    return value if isinstance(value, Output) else handler(value)


KnownLater = WrapValidator(_known_later)
"""Marks a key whose value may be a `pulumi.Output` (known only once another resource exists): the
type's own validation applies to plain values, the key's rules to an Output's value when known."""

def _when_known(value: Any, rule: Callable[[Any], Any], key: str) -> Any:
    """Apply a field's rule now, or to an Output's value once it is known (failing the deployment
    with the key named, as a config error would)."""
    if not isinstance(value, Output):
        return rule(value)

    def check(known: Any) -> Any:
        try:
            return rule(known)
        except ValueError as error:
            raise ConfigError(f"{key}: {error} (got {known!r})") from None

    return value.apply(check)


def _pinned_image(value: str) -> str:
    if not _IMAGE_REF.match(value) or value.endswith(":latest"):
        raise ValueError("must be an image reference pinned to a tag (not :latest), e.g. nginx:1.27.3-alpine")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


_CRON_FIELD = re.compile(r"^[A-Za-z0-9*,/?-]+$")


def cron_fields(expression: str) -> tuple[str, str, str, str, str]:
    """The five fields of a standard cron expression (minute hour day-of-month month day-of-week)."""
    fields = expression.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(field) for field in fields):
        raise ValueError("must be a cron expression of 5 fields (minute hour day-of-month month day-of-week), "
                         "e.g. '0 3 * * *' for 03:00 UTC daily")
    if "?" in expression:
        raise ValueError("use '*' rather than '?' (standard cron; the aws stack writes AWS's form itself)")
    if "/" in fields[4]:
        raise ValueError("day-of-week steps ('/') are not supported; list the days, e.g. MON,WED,FRI")
    minute, hour, day, month, weekday = fields
    return minute, hour, day, month, weekday


def cidr_list(value: tuple[str, ...]) -> tuple[str, ...]:
    """At least one IPv4 CIDR, each well formed (the platforms' allowedCidrs)."""
    bad = [cidr for cidr in value if not _CIDR.match(cidr)]
    if bad or not value:
        raise ValueError(f"must be IPv4 CIDRs like 203.0.113.0/24; not {bad}")
    return value


def dns_name(value: str) -> str:
    """A fully qualified DNS name (the platforms' domain)."""
    if not _HOSTNAME.match(value) or "." not in value:
        raise ValueError("must be a fully qualified DNS name like mlflow.example.com")
    return value
