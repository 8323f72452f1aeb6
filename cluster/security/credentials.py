"""What a client (the CLI, a worker, the Python client) shows a cluster: the CA it
trusts and the bearer token it carries, and the gRPC channels made from them.

`Credentials.from_cluster_dir(dir)` reads a local cluster's folder (what `cluster
up` wrote): DIR/tls/ca.crt and DIR/tokens/admin.token. `Credentials.from_env()`
reads RAFTFLOW_CA_FILE and RAFTFLOW_TOKEN (or RAFTFLOW_TOKEN_FILE): how a client on
another host is pointed at a cluster. `Credentials.plaintext()` is for a cluster
started with `--insecure`, and says so in its name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from raftflow.cluster.security.pki import TLS_DIR, load_ca
from raftflow.cluster.security.tokens import METADATA_KEY, TokenError, parse_token
from raftflow.raft.config import ConfigError

DEFAULT_CLUSTER_DIR = ".raftflow"  # where `raftflow cluster up` puts a local cluster
TOKENS_DIR = "tokens"
ADMIN_TOKEN_FILE = "admin.token"


@dataclass(frozen=True, slots=True)
class Credentials:
    """`ca_pem`: the CA certificate(s) that signed the nodes' certificates (None only
    when `insecure`). `token`: the bearer token's text, sent on every call."""

    ca_pem: bytes | None = None
    token: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if not self.insecure and self.ca_pem is None:
            raise ConfigError(
                "no CA certificate to check the nodes against: pass ca_file= (the cluster's tls/ca.crt), "
                "or Credentials.plaintext() for a cluster started with --insecure"
            )
        if self.token is not None:
            try:
                parse_token(self.token)
            except TokenError as exc:
                raise ConfigError(f"the token is not a raftflow token: {exc}") from None

    def __repr__(self) -> str:
        token = "..." if self.token else None
        return f"Credentials(tls={not self.insecure}, token={token})"

    @classmethod
    def plaintext(cls, token: str | None = None) -> Credentials:
        """No TLS: for a cluster started with `--insecure` only. Anyone on the
        network path reads and changes what is sent, token included."""
        return cls(None, token, insecure=True)

    @classmethod
    def from_files(cls, ca_file: str, token: str | None = None, token_file: str | None = None) -> Credentials:
        if token is None and token_file is not None:
            token = read_token_file(token_file)
        return cls(load_ca(ca_file), token)

    @classmethod
    def from_cluster_dir(cls, directory: str, token: str | None = None) -> Credentials:
        """A local cluster's CA and bootstrap admin token, as `cluster up` wrote
        them; plaintext if the cluster was made with --insecure (it has no tls/)."""
        ca_file = os.path.join(directory, TLS_DIR, "ca.crt")
        token_file = os.path.join(directory, TOKENS_DIR, ADMIN_TOKEN_FILE)
        if not os.path.exists(ca_file):
            if os.path.exists(token_file):  # never sent in the clear: a TLS cluster lost its CA file
                raise ConfigError(f"{directory} holds an admin token but no {TLS_DIR}/ca.crt to check the nodes with")
            return cls.plaintext(token)
        if token is None and os.path.exists(token_file):
            token = read_token_file(token_file)
        return cls(load_ca(ca_file), token)

    @classmethod
    def default(cls) -> Credentials:
        """What a client uses when given none: the environment's (from_env), else
        the local cluster in ./.raftflow (what `raftflow cluster up` made there),
        else plaintext with no token (a cluster started with --insecure)."""
        from_env = cls.from_env()
        if from_env is not None:
            return from_env
        if os.path.exists(os.path.join(DEFAULT_CLUSTER_DIR, "cluster.json")):
            return cls.from_cluster_dir(DEFAULT_CLUSTER_DIR)
        return cls.plaintext()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Credentials | None:
        """From RAFTFLOW_CA_FILE, RAFTFLOW_TOKEN / RAFTFLOW_TOKEN_FILE and
        RAFTFLOW_INSECURE=1; None when none of them is set."""
        env = os.environ if environ is None else environ
        ca_file = env.get("RAFTFLOW_CA_FILE")
        token = _env_token(env)
        if _env_insecure(env):
            return cls.plaintext(token)
        if ca_file is None and token is None:
            return None
        if ca_file is None:
            raise ConfigError("RAFTFLOW_TOKEN is set but RAFTFLOW_CA_FILE is not: name the cluster's CA certificate")
        return cls(load_ca(ca_file), token)

    @classmethod
    def resolve(
        cls, cluster_dir: str, *, ca_file: str | None = None, token_file: str | None = None, insecure: bool = False,
        environ: dict[str, str] | None = None,
    ) -> Credentials:
        """The CA and the token, each from its argument (the CLI's flags), else the
        environment, else the cluster folder: so RAFTFLOW_TOKEN with a local
        cluster's folder needs nothing more."""
        env = os.environ if environ is None else environ
        token = read_token_file(token_file) if token_file else _env_token(env)
        if insecure or _env_insecure(env):
            return cls.plaintext(token)
        ca_file = ca_file or env.get("RAFTFLOW_CA_FILE")
        if ca_file:
            return cls.from_files(ca_file, token)
        return cls.from_cluster_dir(cluster_dir, token)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((METADATA_KEY, f"Bearer {self.token}"),) if self.token else ()

    def channel(self, address: str, options: Sequence[tuple[str, object]]) -> grpc.aio.Channel:
        """A channel to `address` that carries the token on every call."""
        if self.insecure:
            channel = grpc.aio.insecure_channel(address, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=self.ca_pem)
            channel = grpc.aio.secure_channel(address, credentials, options=options)
        return _WithMetadata(channel, self.metadata) if self.token else channel


def _env_token(env) -> str | None:
    """RAFTFLOW_TOKEN, else the contents of RAFTFLOW_TOKEN_FILE, else None."""
    if env.get("RAFTFLOW_TOKEN"):
        return env["RAFTFLOW_TOKEN"]
    if env.get("RAFTFLOW_TOKEN_FILE"):
        return read_token_file(env["RAFTFLOW_TOKEN_FILE"])
    return None


def _env_insecure(env) -> bool:
    return env.get("RAFTFLOW_INSECURE") in ("1", "true", "yes")


def read_token_file(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as exc:
        raise ConfigError(f"token file {path} cannot be read: {exc.strerror}") from None


class _WithMetadata:
    """A channel whose every call carries `metadata` (the token): the stubs made on
    it need no change. (gRPC's client interceptors were tried first: on
    stream-stream calls the metadata they add is not sent.)"""

    def __init__(self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> None:
        self._channel = channel
        self._metadata = metadata

    def unary_unary(self, *args, **kwargs):
        return _Bound(self._channel.unary_unary(*args, **kwargs), self._metadata)

    def unary_stream(self, *args, **kwargs):
        return _Bound(self._channel.unary_stream(*args, **kwargs), self._metadata)

    def stream_unary(self, *args, **kwargs):
        return _Bound(self._channel.stream_unary(*args, **kwargs), self._metadata)

    def stream_stream(self, *args, **kwargs):
        return _Bound(self._channel.stream_stream(*args, **kwargs), self._metadata)

    def __getattr__(self, name: str):  # close, get_state, channel_ready, ...
        return getattr(self._channel, name)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self._channel.close()


class _Bound:
    def __init__(self, multicallable, metadata: tuple[tuple[str, str], ...]) -> None:
        self._multicallable = multicallable
        self._metadata = metadata

    def __call__(self, *args, metadata=None, **kwargs):
        return self._multicallable(*args, metadata=self._metadata + tuple(metadata or ()), **kwargs)
