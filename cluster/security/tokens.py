"""Bearer tokens: their text, and how a caller's token is found.

A token reads `rft1.<id>.<secret>`: the id is public (it names the token in `auth
list` and in logs), the secret is 32 random bytes in URL-safe base64. The cluster
keeps only the secret's SHA-256, replicated in the log (`raftflow auth issue`), so
neither the log nor a snapshot holds a token anyone can use. The one exception is
the bootstrap admin token of `cluster up`: its id is `admin`, and the nodes know
its hash from their config (`admin_token_sha256`), so it works before anything is
in the log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

from raftflow.statemachine import auth

PREFIX = "rft1"
ADMIN_TOKEN_ID = "admin"  # the bootstrap token's id; `auth issue` cannot take it
METADATA_KEY = "authorization"  # gRPC metadata: "Bearer <token>"
SECRET_BYTES = 32


class TokenError(ValueError):
    """Text that is not a token; the message says what is wrong (never the secret)."""


@dataclass(frozen=True, slots=True)
class Token:
    token_id: str
    secret: bytes

    @property
    def text(self) -> str:
        return f"{PREFIX}.{self.token_id}.{base64.urlsafe_b64encode(self.secret).rstrip(b'=').decode()}"

    @property
    def secret_sha256(self) -> bytes:
        return hashlib.sha256(self.secret).digest()

    def __repr__(self) -> str:  # never print the secret by accident
        return f"Token({self.token_id!r}, secret=...)"


def new_token(token_id: str | None = None) -> Token:
    """A fresh token; its id is random unless given."""
    token_id = token_id if token_id is not None else secrets.token_hex(6)
    check_token_id(token_id)
    return Token(token_id, secrets.token_bytes(SECRET_BYTES))


def check_token_id(token_id: str) -> None:
    """The replicated store's rule for a token id (statemachine/auth.py), as a TokenError."""
    auth.check_token_id(token_id, "token id", TokenError)


def parse_token(text: str) -> Token:
    """`rft1.<id>.<secret>` -> Token; TokenError naming the part that is wrong."""
    text = text.strip()
    parts = text.split(".")
    if len(parts) != 3:
        raise TokenError(f"a token reads {PREFIX}.<id>.<secret>; this one has {len(parts)} part(s)")
    if parts[0] != PREFIX:
        raise TokenError(f"a token starts with {PREFIX}.; this one starts with {parts[0][:8]!r}")
    check_token_id(parts[1])
    try:
        secret = base64.b64decode(parts[2] + "=" * (-len(parts[2]) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise TokenError(f"token {parts[1]}: its secret is not URL-safe base64") from None
    if len(secret) != SECRET_BYTES:
        raise TokenError(f"token {parts[1]}: its secret is {len(secret)} bytes; tokens carry {SECRET_BYTES}")
    return Token(parts[1], secret)


def token_of_metadata(metadata) -> str | None:
    """The token text in a call's metadata, or None if it carries none."""
    for key, value in metadata or ():
        if key == METADATA_KEY:
            if isinstance(value, bytes):
                value = value.decode(errors="replace")
            scheme, _, rest = value.partition(" ")
            return rest.strip() if scheme.lower() == "bearer" else value
    return None
