"""What every `raftflow` subcommand shares: the endpoint and timeout options, the
client they make, and how an expected failure becomes one line on stderr.

Endpoints come from `--endpoints host:port,...`, else RAFTFLOW_ENDPOINTS, else the
cluster file in `--dir` (default ./.raftflow). Credentials (the CA to trust and the
bearer token) come from `--ca-file` / `--token-file` / `--insecure`, else
RAFTFLOW_CA_FILE / RAFTFLOW_TOKEN(_FILE) / RAFTFLOW_INSECURE, else the cluster
folder (its tls/ca.crt and tokens/admin.token). Results go to stdout (`-o json`
for machine-readable output); a failure is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import sys

from raftflow.cluster.client import Client, InvalidArgument, RaftflowError, parse_endpoints
from raftflow.cluster.local import launcher
from raftflow.cluster.security.credentials import Credentials
from raftflow.raft.config import ConfigError

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandFailed(Exception):
    """One line for stderr; the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def add_common(parser: argparse.ArgumentParser, *, output: bool = False) -> None:
    parser.add_argument("--dir", default=launcher.DEFAULT_DIR, help="cluster folder (default ./.raftflow)")
    parser.add_argument(
        "--endpoints", help="host:port,... of the nodes (default: RAFTFLOW_ENDPOINTS, else the cluster file in --dir)"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds a command may take, retries included")
    add_credentials(parser)
    if output:
        parser.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")


def endpoints(args: argparse.Namespace) -> list[str]:
    text = args.endpoints or os.environ.get("RAFTFLOW_ENDPOINTS")
    if text:
        try:
            return parse_endpoints(text)
        except InvalidArgument as exc:
            raise CommandFailed(str(exc), EXIT_USAGE) from None
    return launcher.ClusterFile.load(args.dir).endpoints


def add_credentials(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca-file", help="CA certificate the nodes are checked against (default: RAFTFLOW_CA_FILE, "
                        "else DIR/tls/ca.crt)")
    parser.add_argument("--token-file", help="file holding the bearer token (default: RAFTFLOW_TOKEN or "
                        "RAFTFLOW_TOKEN_FILE, else DIR/tokens/admin.token)")
    parser.add_argument("--insecure", action="store_true",
                        help="plaintext, for a cluster started with --insecure: no TLS, the token (if any) in the clear")


def credentials(args: argparse.Namespace) -> Credentials:
    """The CA and the token: --ca-file / --token-file / --insecure, else the
    environment, else the cluster folder in --dir (Credentials.resolve)."""
    return Credentials.resolve(
        args.dir, ca_file=getattr(args, "ca_file", None), token_file=getattr(args, "token_file", None),
        insecure=getattr(args, "insecure", False),
    )


def client_for(args: argparse.Namespace) -> Client:
    return Client(endpoints(args), timeout=args.timeout, credentials=credentials(args))


def run(args: argparse.Namespace) -> int:
    """Run a subcommand; expected failures become one line on stderr."""
    try:
        return args.func(args)
    except CommandFailed as exc:
        print(f"raftflow: {exc}", file=sys.stderr)
        return exc.code
    except InvalidArgument as exc:
        print(f"raftflow: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (RaftflowError, launcher.LauncherError, ConfigError) as exc:
        print(f"raftflow: {exc}", file=sys.stderr)
        return EXIT_FAILURE
