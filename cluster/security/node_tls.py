"""A node's TLS: the credentials of its two ports and of its own peer streams,
made from its checked certificate files and reloaded on SIGHUP.

The peer port demands a client certificate signed by the cluster's CA; the client
port asks for none (clients bring a token). A reload reads and checks the files
again; if they fail the checks, the node keeps serving with what it had and says
why. gRPC asks for the server's certificate at each new handshake
(`_Fetcher`), so a reload needs no restart and drops no connection; the node's
outbound peer streams are reopened with the new certificate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import grpc

from raftflow.cluster.security.pki import TlsFiles, TlsMaterial, load_node_material, node_id_of_uri

log = logging.getLogger("raftflow.tls")


class NodeTls:
    def __init__(self, files: TlsFiles, node_id: int) -> None:
        self.files = files
        self.node_id = node_id
        self.material = load_node_material(files, node_id)  # ConfigError before any port opens
        self.generation = 0
        self._lock = threading.Lock()  # gRPC's handshake threads read what reload() writes

    def server_credentials(self, *, require_client_certificate: bool) -> grpc.ServerCredentials:
        fetcher = _Fetcher(self)
        return grpc.dynamic_ssl_server_credentials(
            fetcher.current(), fetcher, require_client_authentication=require_client_certificate
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        m = self.material
        return grpc.ssl_channel_credentials(root_certificates=m.ca_pem, private_key=m.key_pem, certificate_chain=m.cert_pem)

    def channel(self, address: str, options: Sequence[tuple[str, object]]) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(address, self.channel_credentials(), options=options)

    def reload(self) -> TlsMaterial:
        """Read and check the files again; ConfigError (and no change) if they fail."""
        material = load_node_material(self.files, self.node_id)
        with self._lock:
            self.material = material
            self.generation += 1
        log.info("node %d reloaded its certificate %s (valid until %s)", self.node_id, self.files.cert,
                 material.not_after.isoformat())
        return material

    def _config(self) -> tuple[int, grpc.ServerCertificateConfiguration]:
        with self._lock:
            m, generation = self.material, self.generation
        return generation, grpc.ssl_server_certificate_configuration([(m.key_pem, m.cert_pem)], root_certificates=m.ca_pem)


class _Fetcher:
    """gRPC calls it at each handshake: a new configuration after a reload, else None."""

    def __init__(self, tls: NodeTls) -> None:
        self._tls = tls
        self._served = -1

    def current(self) -> grpc.ServerCertificateConfiguration:
        self._served, config = self._tls._config()
        return config

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        if self._tls.generation == self._served:
            return None
        return self.current()


def peer_node_ids(context) -> list[int]:
    """The node ids a call's client certificate names (raftflow://node/<id> URIs);
    empty when the call came without a certificate (the client port)."""
    auth = context.auth_context() or {}
    uris = set(auth.get("peer_uri", ())) | set(auth.get("x509_subject_alternative_name", ()))
    ids = (node_id_of_uri(uri.decode(errors="replace") if isinstance(uri, bytes) else uri) for uri in uris)
    return sorted({i for i in ids if i is not None})
