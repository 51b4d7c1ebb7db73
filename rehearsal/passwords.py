"""Passwords as the components generate them (pulumi-random's RandomPassword with the components'
alphabet), and their htpasswd hashes as the ReverseProxy renders them."""

from __future__ import annotations

import secrets
import string

from components import render
from components.config import StackConfig
from components.names import URI_PASSWORD_SPECIALS

# The generated passwords use the components' alphabet (MetadataStore / ReverseProxy
# override_special) and always contain every URL-reserved character that could break a URI.
PASSWORD_SPECIALS = URI_PASSWORD_SPECIALS
URL_RESERVED = "@:/?#%&+"


def generate_password(length: int = 32) -> str:
    """Like pulumi-random's RandomPassword with override_special, but guaranteed to hold each of
    @:/?#%&+ (the characters that break URIs and htpasswd handling when not encoded)."""
    alphabet = string.ascii_letters + string.digits + PASSWORD_SPECIALS
    chars = list(URL_RESERVED)
    for pool in (string.ascii_uppercase, string.ascii_lowercase, string.digits):
        chars += [secrets.choice(pool) for _ in range(2)]
    while len(chars) < length:
        chars.append(secrets.choice(alphabet))
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def password_hash(cfg: StackConfig, password: str) -> str:
    """The htpasswd hash the ReverseProxy renders for `cfg.proxy.passwordHash`: render.ssha_hash with
    8 random bytes of salt (pulumi-random's RandomBytes), or bcrypt as pulumi-random makes it."""
    if cfg.proxy.password_hash == "ssha":
        return render.ssha_hash(password, secrets.token_bytes(8))
    return bcrypt_hash(password)


def bcrypt_hash(password: str) -> str:
    """What pulumi-random's RandomPassword.bcrypt_hash holds: bcrypt, $2a$, cost 10."""
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(10, prefix=b"2a")).decode()
