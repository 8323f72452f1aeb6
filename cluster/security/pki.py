"""Certificates: a cluster's own CA, a certificate per node, and the checks a node
runs on its certificate before it serves.

A node's certificate names the node twice over: the URI `raftflow://node/<id>` in
its subject alternative names (what peers check: a batch claiming to come from
node 2 must arrive on a connection whose certificate says node 2), and the hosts it
is reached at (DNS names or IP addresses: what clients and peers check when they
connect). It is good for both ends of a connection (server and client auth): a
node accepts its peers' streams and opens its own.

`cluster up` makes all of this for a local cluster (`create_local`); on real
hosts an operator brings certificates from their own CA, with the same URI
(docs/security.md says how).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftflow.raft.config import ConfigError
from raftflow.raft.fs import makedirs_private, write_private

NODE_URI_PREFIX = "raftflow://node/"
CA_VALIDITY = datetime.timedelta(days=3650)
NODE_VALIDITY = datetime.timedelta(days=825)  # what public CAs allowed for server certificates
TLS_DIR = "tls"  # in a local cluster's folder


def node_uri(node_id: int) -> str:
    return f"{NODE_URI_PREFIX}{node_id}"


def node_id_of_uri(uri: str) -> int | None:
    """The node id in `raftflow://node/<id>`, or None if `uri` is not one."""
    if not uri.startswith(NODE_URI_PREFIX):
        return None
    text = uri[len(NODE_URI_PREFIX):]
    if not text.isdigit() or text.startswith("0") or len(text) > 18:
        return None
    return int(text)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_authority(name: str, *, valid_for: datetime.timedelta = CA_VALIDITY) -> KeyPair:
    """A self-signed CA that can sign node certificates (and nothing below them)."""
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks of other hosts may lag a little
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def issue_node_certificate(
    ca: KeyPair, node_id: int, hosts: Iterable[str], *,
    valid_for: datetime.timedelta = NODE_VALIDITY, not_before: datetime.datetime | None = None,
) -> KeyPair:
    """Node `node_id`'s certificate, signed by `ca`, for the `hosts` it is reached at."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = _new_key()
    start = not_before or _now() - datetime.timedelta(minutes=5)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(node_uri(node_id))]
    for host in dict.fromkeys(hosts):
        names.append(_host_name(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"raftflow node {node_id}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False  # type: ignore[arg-type]
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


# --- the checks a node runs on its own files before it serves ---------------------------


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where a node's TLS material is (NodeConfig's tls_ca, tls_cert, tls_key)."""

    ca: str
    cert: str
    key: str


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """The files' bytes, checked: what the gRPC credentials are made from."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    not_after: datetime.datetime


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None


def load_node_material(files: TlsFiles, node_id: int, *, now: datetime.datetime | None = None) -> TlsMaterial:
    """Read and check node `node_id`'s CA, certificate and key; a ConfigError names
    the file and the rule: a certificate that is not PEM, not signed by the CA, not
    valid now, not node `node_id`'s, or a key that is not the certificate's."""
    ca_pem, cert_pem, key_pem = _read(files.ca, "tls_ca"), _read(files.cert, "tls_cert"), _read(files.key, "tls_key")
    try:
        ca = x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise ConfigError(f"tls_ca {files.ca} holds no PEM certificate") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ConfigError(f"tls_cert {files.cert} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"tls_key {files.key} is not an unencrypted PEM private key: {exc}") from None
    if not any(_signed_by(cert, authority) for authority in ca):
        raise ConfigError(f"tls_cert {files.cert} is not signed by the CA in tls_ca {files.ca}")
    now = now or _now()
    if now < cert.not_valid_before_utc:
        raise ConfigError(f"tls_cert {files.cert} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    if now >= cert.not_valid_after_utc:
        raise ConfigError(f"tls_cert {files.cert} expired at {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    ids = certificate_node_ids(cert)
    if ids != [node_id]:
        names = ", ".join(node_uri(i) for i in ids) or "no raftflow://node/<id> URI"
        raise ConfigError(f"tls_cert {files.cert} names {names}; node {node_id} needs one naming {node_uri(node_id)}")
    if key.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ConfigError(f"tls_key {files.key} is not the key of tls_cert {files.cert}")
    return TlsMaterial(ca_pem, cert_pem, key_pem, cert.not_valid_after_utc)


def _signed_by(cert: x509.Certificate, authority: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def certificate_node_ids(cert: x509.Certificate) -> list[int]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    ids = (node_id_of_uri(uri) for uri in san.get_values_for_type(x509.UniformResourceIdentifier))
    return sorted(i for i in ids if i is not None)


def load_ca(path: str) -> bytes:
    """The CA certificate(s) a client trusts, checked to be PEM."""
    pem = _read(path, "CA file")
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigError(f"CA file {path} holds no PEM certificate") from None
    return pem


# --- a local cluster's files ------------------------------------------------------------


def local_paths(cluster_dir: str, node_id: int) -> TlsFiles:
    tls = os.path.join(cluster_dir, TLS_DIR)
    return TlsFiles(os.path.join(tls, "ca.crt"), os.path.join(tls, f"node-{node_id}.crt"), os.path.join(tls, f"node-{node_id}.key"))


def create_local(cluster_dir: str, cluster_id: str, hosts: dict[int, list[str]]) -> dict[int, TlsFiles]:
    """A new CA in CLUSTER_DIR/tls and a certificate for each node (id -> the hosts
    it is reached at). The folder is 0700 and every file 0600; the CA's key stays
    beside them so that the cluster can issue certificates to nodes it adds."""
    directory = os.path.join(cluster_dir, TLS_DIR)
    makedirs_private(directory)
    ca = new_authority(f"raftflow CA for {cluster_id}")
    write_private(os.path.join(directory, "ca.crt"), ca.cert_pem)
    write_private(os.path.join(directory, "ca.key"), ca.key_pem)
    files = {}
    for node_id, node_hosts in hosts.items():
        pair = issue_node_certificate(ca, node_id, node_hosts)
        paths = local_paths(cluster_dir, node_id)
        write_private(paths.cert, pair.cert_pem)
        write_private(paths.key, pair.key_pem)
        files[node_id] = paths
    return files

