"""Who may call what, checked without a cluster: every RPC names its permission,
each role has exactly the permissions docs/security.md lists, and a token is
judged against the replicated store (unknown, wrong secret, expired, revoked)."""

from __future__ import annotations

import hashlib
import inspect

import grpc
import pytest

from raftflow.cluster.node.access import GRANTS, Access, AccessDenied, Permission
from raftflow.cluster.node.services import AdminService, ClientService, WorkflowService
from raftflow.cluster.security.tokens import new_token
from raftflow.proto import admin_pb2_grpc, client_pb2_grpc, workflow_pb2_grpc
from raftflow.statemachine.auth import AccessRole, TokenRecord


@pytest.mark.parametrize("service, servicer", [
    (ClientService, client_pb2_grpc.ClientServicer),
    (AdminService, admin_pb2_grpc.AdminServicer),
    (WorkflowService, workflow_pb2_grpc.WorkflowsServicer),
])
def test_every_rpc_names_the_permission_it_needs(service, servicer):
    rpcs = [name for name, _ in inspect.getmembers(servicer, inspect.isfunction) if name[0].isupper()]
    assert rpcs
    missing = [name for name in rpcs if not isinstance(getattr(getattr(service, name), "permission", None), Permission)]
    assert missing == [], f"{service.__name__} serves {missing} without a permission check"


def test_the_roles_grant_what_the_docs_say():
    assert GRANTS[AccessRole.ADMIN] == frozenset(Permission)
    assert GRANTS[AccessRole.WRITER] == {Permission.STATUS, Permission.READ, Permission.WRITE}
    assert GRANTS[AccessRole.READER] == {Permission.STATUS, Permission.READ}
    assert GRANTS[AccessRole.WORKER] == {Permission.STATUS, Permission.WORK}


class Store:
    def __init__(self) -> None:
        self.records: dict[str, TokenRecord] = {}
        self.now_ms = 1_000

    def issue(self, role: AccessRole, queues=(), expires_ms: int = 0) -> str:
        token = new_token()
        self.records[token.token_id] = TokenRecord(
            token.token_id, role, tuple(queues), token.secret_sha256, "t", self.now_ms, expires_ms
        )
        return token.text

    def access(self, admin: str | None = None) -> Access:
        admin_hash = None
        if admin is not None:
            admin_hash = hashlib.sha256(_secret(admin)).digest()
        return Access(enabled=True, admin_secret_sha256=admin_hash, tokens=self.records.get, now_ms=lambda: self.now_ms)


def _secret(text: str) -> bytes:
    from raftflow.cluster.security.tokens import parse_token

    return parse_token(text).secret


def _bearer(text: str | None):
    return [] if text is None else [("authorization", f"Bearer {text}")]


def test_tokens_are_judged_against_the_store():
    store = Store()
    admin = new_token("admin").text
    access = store.access(admin)
    assert access.authenticate(_bearer(admin)).role is AccessRole.ADMIN
    reader = store.issue(AccessRole.READER)
    principal = access.authenticate(_bearer(reader))
    assert principal.role is AccessRole.READER and access.still_valid(principal)
    access.check(principal, Permission.READ)
    with pytest.raises(AccessDenied) as denied:
        access.check(principal, Permission.WRITE)
    assert denied.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert denied.value.message == f"token {principal.token_id} (role reader) may not write"
    for bad, what in [
        (None, "needs a bearer token"),
        ("not-a-token", "a token reads rft1"),
        (new_token().text, "is not valid here"),  # never issued
        (new_token(principal.token_id).text, "is not valid here"),  # a known id, a wrong secret
        (new_token("admin").text, "is not valid here"),  # the bootstrap id, a wrong secret
    ]:
        with pytest.raises(AccessDenied) as refused:
            access.authenticate(_bearer(bad))
        assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED and what in refused.value.message
        assert "raftflow auth issue" in refused.value.message
    assert access.refused == {"unauthenticated": 5, "permission_denied": 1}
    del store.records[principal.token_id]  # revoked
    assert not access.still_valid(principal)


def test_expiry_follows_the_logs_clock():
    store = Store()
    access = store.access()
    token = store.issue(AccessRole.WRITER, expires_ms=2_000)
    principal = access.authenticate(_bearer(token))
    store.now_ms = 2_000
    assert not access.still_valid(principal)
    with pytest.raises(AccessDenied, match="is not valid here"):
        access.authenticate(_bearer(token))


def test_a_worker_may_only_use_its_queues():
    store = Store()
    access = store.access()
    principal = access.authenticate(_bearer(store.issue(AccessRole.WORKER, queues=["billing", "refunds"])))
    access.check(principal, Permission.WORK, "billing")
    with pytest.raises(AccessDenied) as denied:
        access.check(principal, Permission.WORK, "shipping")
    assert denied.value.message.endswith("may not use task queue 'shipping'; its queues: billing, refunds")
    with pytest.raises(AccessDenied, match=r"\(role worker\) may not read"):
        access.check(principal, Permission.READ)


def test_insecure_access_lets_everyone_be_the_admin():
    access = Access.insecure()
    principal = access.authenticate([])
    for permission in Permission:
        access.check(principal, permission, "any queue")
    assert access.refused == {}
