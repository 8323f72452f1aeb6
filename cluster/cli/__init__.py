"""The `raftflow` command line."""

from raftflow.cluster.cli.main import main

__all__ = ["main"]
