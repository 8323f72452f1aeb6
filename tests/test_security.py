"""Authentication and authorization end to end, on real node processes: TLS on
both ports, tokens per role and task queue, revoking and expiry, the certificate
checks a node runs before it serves, reloading certificates on SIGHUP, and the
explicit plaintext mode. Each refusal is checked for its status and its message,
and that it changed nothing."""

from __future__ import annotations

import datetime
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import grpc
import pytest
from cryptography import x509

from procnet import ProcCluster, sync_channel, wait_until
from raftflow import (
    AccessRole,
    Client,
    Credentials,
    FailedPrecondition,
    PermissionDenied,
    PeerFault,
    Unauthenticated,
    Unavailable,
)
from raftflow.cluster.local import launcher
from raftflow.cluster.security import pki
from raftflow.cluster.security.tokens import new_token
from raftflow.proto import client_pb2, client_pb2_grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    c = ProcCluster(str(tmp_path_factory.mktemp("secured") / "c"), 3)
    c.start()
    c.wait_leader()
    yield c
    c.close()


def client_with(c: ProcCluster, token: str | None, **options) -> Client:
    options.setdefault("timeout", 5.0)
    return Client(c.cluster.endpoints, credentials=Credentials(c.cluster.credentials().ca_pem, token), **options)


def test_no_token_or_a_bad_one_is_unauthenticated_and_says_how_to_get_one(secured):
    for token in (None, new_token().text):  # none, and one the cluster never issued
        with client_with(secured, token) as client:
            with pytest.raises(Unauthenticated) as err:
                client.put("k", b"v")
            assert "raftflow auth issue" in str(err.value)
            with pytest.raises(Unauthenticated):
                client.get("k")
    forged_admin = new_token("admin").text  # the bootstrap id with a wrong secret
    with client_with(secured, forged_admin) as client, pytest.raises(Unauthenticated, match="token admin is not valid"):
        client.status(secured.address(1))
    assert secured.client.get("k").kv is None  # nothing was written
    refused = sum(s.calls_refused.get("unauthenticated", 0) for _, s in secured.client.cluster_status())
    assert refused >= 5  # counted where they were refused, whichever node that was


def test_each_role_may_do_what_it_says_and_nothing_more(secured):
    admin = secured.client
    reader = admin.issue_token(AccessRole.READER, name="dashboards").token
    writer = admin.issue_token("writer", name="orders service").token
    admin.put("shared", b"v1")
    with client_with(secured, reader) as client:
        assert client.get("shared").value == b"v1"
        assert client.status(secured.address(1)).id == 1
        with pytest.raises(PermissionDenied, match=r"\(role reader\) may not write"):
            client.put("shared", b"by a reader")
        with pytest.raises(PermissionDenied, match="may not administer"):
            client.state_hash(secured.address(1))
        with pytest.raises(PermissionDenied, match="may not administer"):
            client.list_tokens()
    with client_with(secured, writer) as client:
        assert client.put("shared", b"v2").succeeded
        assert client.get("shared").value == b"v2"
        with pytest.raises(PermissionDenied, match=r"\(role writer\) may not administer"):
            client.set_faults(secured.address(1), [PeerFault(2, drop_out=True)], replace=True)
        with pytest.raises(PermissionDenied):
            client.transfer_leader(1)
        with pytest.raises(PermissionDenied):
            client.issue_token("admin")  # no way up
        with pytest.raises(PermissionDenied):
            client.revoke_token("admin")
        with pytest.raises(PermissionDenied):
            client.workflows.poll("payments", wait=0)
    assert admin.get("shared").value == b"v2"
    assert all(not s.faults for _, s in admin.cluster_status())  # the refused fault changed nothing


def test_a_worker_token_is_limited_to_its_queues(secured):
    admin = secured.client
    admin.workflows.register({
        "name": "billing", "version": 1,
        "steps": [{"type": "activity", "name": "charge", "activity": "charge", "task_queue": "billing", "input": "$input"}],
    })
    admin.workflows.start("billing", workflow_id="bill-1", input={"card": "4111 1111 1111 1111"})
    billing = admin.issue_token(AccessRole.WORKER, queues=["billing"], name="billing workers").token
    other = admin.issue_token(AccessRole.WORKER, queues=["shipping"], name="shipping workers").token
    with client_with(secured, other) as client:
        with pytest.raises(PermissionDenied, match=r"may not use task queue 'billing'; its queues: shipping"):
            client.workflows.poll("billing", wait=0)
        with pytest.raises(PermissionDenied):
            client.workflows.describe("bill-1")  # a worker reads no workflows
        with pytest.raises(PermissionDenied):
            client.put("k", b"v")
    with client_with(secured, billing) as client:
        (task,) = client.workflows.poll("billing", wait=5)
        assert task.input == {"card": "4111 1111 1111 1111"}
    # The shipping worker cannot report on the billing task, even knowing its token.
    with client_with(secured, other) as client:
        with pytest.raises(PermissionDenied, match=f"may not report on task {task.task_id}: it is not on one of its task queues$"):
            client.workflows.complete_activity(task.task_id, task.attempt, {"charged": True})
    assert admin.workflows.describe("bill-1").status.value == "running"
    with client_with(secured, billing) as client:
        # (task id, attempt) alone, or with a guessed secret, is not the task token.
        for guess in (b"", bytes(16)):
            with pytest.raises(FailedPrecondition, match="another secret: the task token is not the one given"):
                client.workflows.complete_activity(task.task_id, task.attempt, {"charged": "forged"}, secret=guess)
        assert len(task.secret) == 16 and "secret" not in repr(task)  # never printed in a log by accident
        client.workflows.complete_activity(task.task_id, task.attempt, {"charged": True}, secret=task.secret)
        # Reported again, the task is gone: stale, as for any token (a worker takes
        # that as "the attempt is no longer wanted"), not a permission error.
        with pytest.raises(FailedPrecondition, match="is not a started task.s current attempt"):
            client.workflows.heartbeat_activity(task.task_id, task.attempt, None, secret=task.secret)
    done = admin.workflows.wait("bill-1", timeout=10)
    assert done.status.value == "completed" and done.result == {"charged": True}


def test_a_revoked_token_stops_working_even_on_an_open_stream(secured):
    admin = secured.client
    issued = admin.issue_token(AccessRole.WRITER, name="to be revoked")
    assert issued.info.token_id in {t.token_id for t in admin.list_tokens()}
    with client_with(secured, issued.token) as client:
        client.put("revocable", b"1")  # the stream to the leader is open now
        assert admin.revoke_token(issued.info.token_id) is True
        with pytest.raises(Unauthenticated, match="revoked or expired"):  # on the stream it opened before
            client.put("revocable", b"2")
    assert admin.get("revocable").value == b"1"
    assert admin.revoke_token(issued.info.token_id) is False  # revoking again: nothing there
    assert issued.info.token_id not in {t.token_id for t in admin.list_tokens()}


def test_an_expired_token_is_refused_even_by_an_idle_cluster(secured):
    admin = secured.client
    now_ms = int(time.time() * 1000)
    issued = admin.issue_token(AccessRole.READER, expires_ms=now_ms + 300)
    with client_with(secured, issued.token) as client:
        assert client.get("clock").kv is None  # valid now
        def refused() -> bool:  # nothing is written meanwhile: the log's clock stands still
            try:
                client.get("clock")
            except Unauthenticated as exc:
                return "not valid here" in str(exc) or "revoked or expired" in str(exc)
            return False
        deadline = time.monotonic() + 10
        while not refused():
            assert time.monotonic() < deadline, "the token did not expire"


def test_tokens_are_replicated_to_every_node(secured):
    admin = secured.client
    issued = admin.issue_token(AccessRole.READER, name="replicated")
    secured.wait_converged()
    for m in secured.cluster.members:
        with Client([m.address], credentials=Credentials(secured.cluster.credentials().ca_pem, issued.token)) as one:
            assert one.get("shared", consistency="stale").node_id == m.id


def test_a_client_that_trusts_another_ca_is_told_so(secured):
    other = pki.new_authority("some other CA")
    with Client(secured.cluster.endpoints, credentials=Credentials(other.cert_pem), timeout=2.0,
                no_leader_timeout=1.0) as client:
        with pytest.raises(Unavailable, match="not signed by the CA this client was given"):
            client.put("k", b"v")
    with Client(secured.cluster.endpoints, credentials=Credentials.plaintext(), timeout=2.0,
                no_leader_timeout=1.0) as client:
        with pytest.raises(Unavailable, match="closes plaintext connections"):
            client.put("k", b"v")


def test_the_cli_issues_lists_and_revokes_tokens(secured):
    env = {**os.environ, "RAFTFLOW_ENDPOINTS": ",".join(secured.cluster.endpoints)}
    env.pop("RAFTFLOW_TOKEN", None)

    def cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess:
        run_env = {**env, **({"RAFTFLOW_TOKEN": token} if token else {})}
        return subprocess.run([sys.executable, "-m", "raftflow", *args, "--dir", secured.cluster.dir],
                              capture_output=True, text=True, timeout=60, env=run_env, stdin=subprocess.DEVNULL)

    issued = cli("auth", "issue", "--role", "reader", "--name", "cli reader")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    token_id = token.split(".")[1]
    listed = cli("auth", "list")
    assert token_id in listed.stdout and "cli reader" in listed.stdout
    denied = cli("kv", "put", "x", "y", token=token)
    assert denied.returncode == 1 and denied.stderr.strip() == f"raftflow: token {token_id} (role reader) may not write"
    assert cli("partition", "isolate", "1", token=token).stderr.strip().endswith("fault injection needs an admin token")
    bad = cli("auth", "issue", "--role", "worker")
    assert bad.returncode == 2 and "needs at least one --queue" in bad.stderr
    assert cli("auth", "revoke", token_id).stdout.strip() == f"token {token_id} revoked"
    gone = cli("auth", "revoke", token_id)
    assert gone.returncode == 1 and "no token" in gone.stderr


# --- certificates ---------------------------------------------------------------------


def _server_certificate(address: str) -> x509.Certificate:
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def _ca(directory: str) -> pki.KeyPair:
    tls = os.path.join(directory, pki.TLS_DIR)
    with open(os.path.join(tls, "ca.crt"), "rb") as cert, open(os.path.join(tls, "ca.key"), "rb") as key:
        return pki.KeyPair(cert.read(), key.read())


def test_sighup_reloads_the_certificate_without_a_restart(tmp_path):
    c = ProcCluster(str(tmp_path / "c"), 3)
    try:
        c.start()
        c.wait_leader()
        member = c.cluster.member(1)
        before = _server_certificate(member.address).serial_number
        files = pki.local_paths(c.cluster.dir, 1)
        # A bad file first: the node keeps serving with the old certificate.
        with open(files.cert, "rb") as f:
            good = f.read()
        pki.write_private(files.cert, b"garbage")
        os.kill(member.pid, signal.SIGHUP)
        wait_until(lambda: "kept its certificate" in open(member.log).read(), 10, "the node to refuse the bad file")
        assert _server_certificate(member.address).serial_number == before
        pki.write_private(files.cert, good)
        renewed = pki.issue_node_certificate(_ca(c.cluster.dir), 1, ["127.0.0.1", "localhost"])
        pki.write_private(files.cert, renewed.cert_pem)
        pki.write_private(files.key, renewed.key_pem)
        os.kill(member.pid, signal.SIGHUP)
        expected = x509.load_pem_x509_certificate(renewed.cert_pem).serial_number
        wait_until(lambda: _server_certificate(member.address).serial_number == expected, 10,
                   "new handshakes to present the new certificate")
        assert launcher.process_alive(member.pid)
        c.client.put("after-reload", b"ok")
        hashes = c.wait_converged()  # node 1's peer streams reopened with the new certificate
        assert len(set(hashes.values())) == 1
    finally:
        c.close()


def _node_run(config: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raftflow", "node", "run", "--config", config],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_a_node_will_not_start_with_another_nodes_or_an_expired_certificate(tmp_path):
    cluster = launcher.create(str(tmp_path / "c"), 3)
    files = pki.local_paths(cluster.dir, 1)
    two = pki.local_paths(cluster.dir, 2)
    with open(two.cert, "rb") as cert, open(two.key, "rb") as key:
        pki.write_private(files.cert, cert.read())
        pki.write_private(files.key, key.read())
    result = _node_run(cluster.member(1).config)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"raftflow: node 1: tls_cert {files.cert} names raftflow://node/2; node 1 needs one naming raftflow://node/1"
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = pki.issue_node_certificate(_ca(cluster.dir), 1, ["127.0.0.1"], not_before=now - datetime.timedelta(days=3),
                                         valid_for=datetime.timedelta(days=1))
    pki.write_private(files.cert, expired.cert_pem)
    pki.write_private(files.key, expired.key_pem)
    result = _node_run(cluster.member(1).config)
    assert result.returncode == 2 and "expired at" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(os.path.join(cluster.member(1).data_dir, "raftflow.meta"))  # nothing was started


def test_an_insecure_cluster_is_plaintext_and_says_so(tmp_path):
    c = ProcCluster(str(tmp_path / "c"), 1, insecure=True)
    try:
        c.start()
        c.wait_leader()
        assert not os.path.exists(os.path.join(c.cluster.dir, pki.TLS_DIR))
        with Client(c.cluster.endpoints, credentials=Credentials.plaintext()) as client:
            assert client.put("k", b"v").succeeded
            status = client.status(c.address(1))
        assert status.insecure and status.address == status.peer_address
        with open(c.cluster.member(1).log) as log:
            assert "runs with --insecure: no TLS and no tokens" in log.read()
    finally:
        c.close()


def test_no_token_can_push_out_or_use_another_tokens_session(tmp_path):
    """The issue's row: 1,000 OpenSession calls evicted another client's session."""
    c = ProcCluster(str(tmp_path / "c"), 1, max_sessions=50, max_sessions_per_owner=5)
    try:
        c.start()
        c.wait_leader()
        victim = c.client.issue_token(AccessRole.WRITER, name="victim").token
        flooder = c.client.issue_token(AccessRole.WRITER, name="flooder").token
        def put(channel, session: int, seq: int, key: str):
            command = client_pb2.Command(request_id=seq, session_id=session, seq=seq, ack_floor=seq)
            command.put.key, command.put.value = key, b"v"
            return client_pb2_grpc.ClientStub(channel).Execute(command, timeout=5)

        with sync_channel(c.address(1), token=victim) as mine, sync_channel(c.address(1), token=flooder) as theirs:
            stub = client_pb2_grpc.ClientStub(theirs)
            session = client_pb2_grpc.ClientStub(mine).OpenSession(client_pb2.OpenSessionRequest(), timeout=5).session_id
            put(mine, session, 1, "mine-1")
            for _ in range(200):
                stub.OpenSession(client_pb2.OpenSessionRequest(), timeout=5)
            assert put(mine, session, 2, "mine-2").code == 0  # the victim's session and seq go on
            with pytest.raises(grpc.RpcError) as err:
                put(theirs, session, 3, "theirs")
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert f"session {session} belongs to another token" in err.value.details()
        assert c.client.status(c.address(1)).id == 1
    finally:
        c.close()
