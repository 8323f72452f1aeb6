"""The error a node answers a request with (shared by node.py and workflows.py)."""

from __future__ import annotations

import grpc

from raftflow.raft.types import NONE


class NodeError(Exception):
    """A request this node cannot serve; `code` is the gRPC status to answer with."""

    def __init__(
        self, code: grpc.StatusCode, message: str, leader: int = NONE, leader_address: str = "",
        *, maybe_applied: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.leader = leader
        self.leader_address = leader_address
        self.maybe_applied = maybe_applied  # the command is in the log: it may still be applied
