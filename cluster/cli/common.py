"""What every `raftflow` subcommand shares: the endpoint and timeout options, the
client they make, and how an expected failure becomes one line on stderr.

Endpoints come from `--endpoints host:port,...`, else RAFTFLOW_ENDPOINTS, else the
cluster file in `--dir` (default ./.raftflow). Results go to stdout (`-o json` for
machine-readable output); a failure is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import sys

from raftflow.cluster.client import Client, InvalidArgument, RaftflowError, parse_endpoints
from raftflow.cluster.local import launcher
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


def client_for(args: argparse.Namespace) -> Client:
    return Client(endpoints(args), timeout=args.timeout)


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
