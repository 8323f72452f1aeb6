"""Certificates and tokens: what `cluster up` makes, and the checks a node runs on
its files before it serves (each failure names the file and the rule)."""

import datetime
import os
import stat

import pytest

from raftflow.cluster.security import pki
from raftflow.cluster.security.credentials import Credentials
from raftflow.cluster.security.tokens import TokenError, new_token, parse_token, token_of_metadata
from raftflow.raft.config import ConfigError


def _write(directory, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _files(tmp_path, ca: pki.KeyPair, pair: pki.KeyPair, *, key: bytes | None = None) -> pki.TlsFiles:
    return pki.TlsFiles(
        _write(tmp_path, "ca.crt", ca.cert_pem), _write(tmp_path, "n.crt", pair.cert_pem),
        _write(tmp_path, "n.key", pair.key_pem if key is None else key),
    )


def test_node_uri_round_trip_and_refuses_lookalikes():
    assert pki.node_id_of_uri(pki.node_uri(7)) == 7
    for uri in ("raftflow://node/0", "raftflow://node/07", "raftflow://node/x", "raftflow://nodes/1",
                "spiffe://node/1", "raftflow://node/" + "9" * 19, "raftflow://node/-1"):
        assert pki.node_id_of_uri(uri) is None, uri


def test_a_node_certificate_passes_the_checks(tmp_path):
    ca = pki.new_authority("test CA")
    pair = pki.issue_node_certificate(ca, 2, ["127.0.0.1", "localhost"])
    material = pki.load_node_material(_files(tmp_path, ca, pair), 2)
    assert material.cert_pem == pair.cert_pem
    assert material.not_after > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=800)


@pytest.mark.parametrize("problem, match", [
    ("other node", r"names raftflow://node/3; node 2 needs one naming raftflow://node/2"),
    ("other CA", r"is not signed by the CA in tls_ca"),
    ("expired", r"expired at"),
    ("not yet valid", r"is not valid before"),
    ("wrong key", r"is not the key of tls_cert"),
    ("garbage cert", r"is not a PEM certificate"),
    ("garbage key", r"is not an unencrypted PEM private key"),
])
def test_a_node_refuses_to_start_on_a_bad_certificate(tmp_path, problem, match):
    ca = pki.new_authority("test CA")
    now = datetime.datetime.now(datetime.timezone.utc)
    pair = pki.issue_node_certificate(ca, 2, ["127.0.0.1"])
    key = None
    if problem == "other node":
        pair = pki.issue_node_certificate(ca, 3, ["127.0.0.1"])
    elif problem == "other CA":
        pair = pki.issue_node_certificate(pki.new_authority("another CA"), 2, ["127.0.0.1"])
    elif problem == "expired":
        pair = pki.issue_node_certificate(ca, 2, ["127.0.0.1"], not_before=now - datetime.timedelta(days=2),
                                          valid_for=datetime.timedelta(days=1))
    elif problem == "not yet valid":
        pair = pki.issue_node_certificate(ca, 2, ["127.0.0.1"], not_before=now + datetime.timedelta(days=1))
    elif problem == "wrong key":
        key = pki.issue_node_certificate(ca, 2, ["127.0.0.1"]).key_pem
    elif problem == "garbage cert":
        pair = pki.KeyPair(b"not a certificate", pair.key_pem)
    elif problem == "garbage key":
        key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ConfigError, match=match):
        pki.load_node_material(_files(tmp_path, ca, pair, key=key), 2)


def test_a_missing_file_is_named(tmp_path):
    files = pki.TlsFiles(str(tmp_path / "ca.crt"), str(tmp_path / "n.crt"), str(tmp_path / "n.key"))
    with pytest.raises(ConfigError, match=r"tls_ca .*ca.crt cannot be read"):
        pki.load_node_material(files, 1)


def test_create_local_makes_private_files(tmp_path):
    files = pki.create_local(str(tmp_path), "c-1", {1: ["127.0.0.1"], 2: ["127.0.0.1"]})
    tls = tmp_path / pki.TLS_DIR
    assert stat.S_IMODE(os.stat(tls).st_mode) == 0o700
    for name in os.listdir(tls):
        assert stat.S_IMODE(os.stat(tls / name).st_mode) == 0o600, name
    assert sorted(os.listdir(tls)) == ["ca.crt", "ca.key", "node-1.crt", "node-1.key", "node-2.crt", "node-2.key"]
    for node_id, node_files in files.items():
        pki.load_node_material(node_files, node_id)


def test_tokens_round_trip_and_name_what_is_wrong():
    token = new_token()
    assert parse_token(token.text) == token
    assert parse_token(" " + token.text + "\n") == token
    assert "secret" not in repr(token) or "..." in repr(token)
    assert token.text.split(".")[2] not in repr(token)
    for text, match in [
        ("hello", r"has 1 part"),
        ("rft2.abc.def", r"starts with 'rft2'"),
        ("rft1.a b.AAAA", r"token id is 'a b'; expected 1 to 64 characters"),
        ("rft1.abc.!!!!", r"not URL-safe base64"),
        ("rft1.abc.AAAA", r"secret is 3 bytes"),
    ]:
        with pytest.raises(TokenError, match=match):
            parse_token(text)


def test_the_token_is_read_from_call_metadata():
    assert token_of_metadata([("authorization", "Bearer rft1.x.y")]) == "rft1.x.y"
    assert token_of_metadata([("authorization", "bearer  rft1.x.y ")]) == "rft1.x.y"
    assert token_of_metadata([("other", "v")]) is None
    assert token_of_metadata(None) is None


def test_credentials_need_a_ca_unless_plaintext_is_asked_for(tmp_path):
    with pytest.raises(ConfigError, match="no CA certificate"):
        Credentials()
    with pytest.raises(ConfigError, match="not a raftflow token"):
        Credentials.plaintext("hunter2")
    assert Credentials.plaintext().insecure
    assert "..." in repr(Credentials.plaintext(new_token().text))
    assert Credentials.from_env({}) is None
    with pytest.raises(ConfigError, match="RAFTFLOW_CA_FILE is not"):
        Credentials.from_env({"RAFTFLOW_TOKEN": new_token().text})
    ca = pki.new_authority("test CA")
    path = _write(tmp_path, "ca.crt", ca.cert_pem)
    from_env = Credentials.from_env({"RAFTFLOW_CA_FILE": path})
    assert from_env.ca_pem == ca.cert_pem and from_env.token is None
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        Credentials.from_files(_write(tmp_path, "bad.crt", b"nope"))
