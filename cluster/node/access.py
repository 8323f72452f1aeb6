"""Who may call what: a caller's bearer token becomes a `Principal` (its role and,
for a worker, its task queues), and every RPC names the permission it needs.

    role     may
    admin    everything: membership, faults, leadership transfer, state hash, tokens
    writer   read, write keys, start/signal/cancel/terminate workflows, register types
    reader   read keys, status, describe/list/history/wait workflows
    worker   status, poll and report on the task queues its token names

Tokens are checked against the replicated store (`Machine.auth`) as this node has
applied it, and the bootstrap admin token against `admin_token_sha256` in the
config. A missing or unknown token is UNAUTHENTICATED, with how to get one; a
token without the permission is PERMISSION_DENIED, naming the role and what it
lacks. Each refusal is counted (`refused`) and logged at most once a second per
kind, so a flood of bad calls cannot flood the log.

With `insecure = true` every caller is the admin: nothing is checked.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from raftflow.cluster.security.tokens import ADMIN_TOKEN_ID, TokenError, parse_token, token_of_metadata
from raftflow.statemachine.auth import AccessRole, TokenRecord, check_secret

log = logging.getLogger("raftflow.access")


class Permission(enum.Enum):
    STATUS = "see node status"
    READ = "read"
    WRITE = "write"
    WORK = "work on task queues"
    ADMIN = "administer the cluster"


GRANTS: dict[AccessRole, frozenset[Permission]] = {
    AccessRole.ADMIN: frozenset(Permission),
    AccessRole.WRITER: frozenset({Permission.STATUS, Permission.READ, Permission.WRITE}),
    AccessRole.READER: frozenset({Permission.STATUS, Permission.READ}),
    AccessRole.WORKER: frozenset({Permission.STATUS, Permission.WORK}),
}

HOW_TO_GET_ONE = (
    "the CLI reads a local cluster's admin token from <cluster dir>/tokens/admin.token; "
    "an admin issues others with `raftflow auth issue --role ROLE`; pass one as RAFTFLOW_TOKEN "
    "or Client(..., credentials=Credentials(..., token=...))"
)


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    role: AccessRole
    queues: frozenset[str]
    secret_sha256: bytes  # to notice a revoke (or a re-issue under the same id) mid-stream

    def may(self, permission: Permission, queue: str | None = None) -> bool:
        if permission not in GRANTS[self.role]:
            return False
        if permission is Permission.WORK and self.role is not AccessRole.ADMIN:
            return queue is not None and queue in self.queues
        return True


INSECURE = Principal("insecure", AccessRole.ADMIN, frozenset(), b"")


class AccessDenied(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Access:
    """`tokens(token_id)` looks a token up in the applied state; `now_ms()` is the
    time expiry is judged by (the node passes the later of the log's clock and its
    own)."""

    def __init__(
        self, *, enabled: bool, admin_secret_sha256: bytes | None,
        tokens: Callable[[str], TokenRecord | None], now_ms: Callable[[], int],
    ) -> None:
        self.enabled = enabled
        self._admin_sha256 = admin_secret_sha256
        self._tokens = tokens
        self._now_ms = now_ms
        self.refused: collections.Counter[str] = collections.Counter()  # "unauthenticated", "permission_denied"
        self._logged_at: dict[str, float] = {}

    @classmethod
    def insecure(cls) -> Access:
        """Nothing checked: every caller is the admin (a node run with --insecure)."""
        return cls(enabled=False, admin_secret_sha256=None, tokens=lambda token_id: None, now_ms=lambda: 0)

    def authenticate(self, metadata) -> Principal:
        """The principal a call's metadata shows; AccessDenied(UNAUTHENTICATED)."""
        if not self.enabled:
            return INSECURE
        text = token_of_metadata(metadata)
        if text is None:
            raise self._refuse("unauthenticated", grpc.StatusCode.UNAUTHENTICATED,
                               f"this cluster needs a bearer token on every call; {HOW_TO_GET_ONE}")
        try:
            token = parse_token(text)
        except TokenError as exc:
            raise self._refuse("unauthenticated", grpc.StatusCode.UNAUTHENTICATED, f"{exc}; {HOW_TO_GET_ONE}") from None
        digest = hashlib.sha256(token.secret).digest()
        if token.token_id == ADMIN_TOKEN_ID:
            if self._admin_sha256 is not None and hmac.compare_digest(digest, self._admin_sha256):
                return Principal(ADMIN_TOKEN_ID, AccessRole.ADMIN, frozenset(), digest)
        else:
            record = self._tokens(token.token_id)
            if record is not None and check_secret(record, token.secret, self._now_ms()):
                return Principal(record.token_id, record.role, frozenset(record.queues), digest)
        raise self._refuse(
            "unauthenticated", grpc.StatusCode.UNAUTHENTICATED,
            f"token {token.token_id} is not valid here (unknown, revoked, expired, or a wrong secret); {HOW_TO_GET_ONE}",
        )

    def still_valid(self, principal: Principal) -> bool:
        """False once the principal's token was revoked or expired (a long stream
        authenticated at its start checks this before each command)."""
        if principal.token_id == ADMIN_TOKEN_ID or not self.enabled:
            return True
        record = self._tokens(principal.token_id)
        if record is None or record.secret_sha256 != principal.secret_sha256:
            return False
        return not record.expires_ms or self._now_ms() < record.expires_ms

    def check(self, principal: Principal, permission: Permission, queue: str | None = None) -> None:
        """AccessDenied(PERMISSION_DENIED) unless the principal has `permission`."""
        if principal.may(permission, queue):
            return
        if permission is Permission.WORK and permission in GRANTS[principal.role]:
            allowed = ", ".join(sorted(principal.queues)) or "none"
            shown = repr(queue) if queue is None or len(queue) <= 80 else repr(queue[:80]) + "..."
            message = f"token {principal.token_id} (worker) may not use task queue {shown}; its queues: {allowed}"
        else:
            message = f"token {principal.token_id} (role {principal.role.value}) may not {permission.value}"
        raise self._refuse("permission_denied", grpc.StatusCode.PERMISSION_DENIED, message)

    def _refuse(self, kind: str, code: grpc.StatusCode, message: str) -> AccessDenied:
        self.refused[kind] += 1
        now = time.monotonic()
        if now - self._logged_at.get(kind, -1.0) >= 1.0:  # at most a line a second per kind
            self._logged_at[kind] = now
            log.warning("refused a call (%s, %d so far): %s", kind, self.refused[kind], message)
        return AccessDenied(code, message)
