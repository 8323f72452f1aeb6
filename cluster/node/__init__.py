"""The node process: `NodeServer` wires a `RaftNode` (the asyncio driver around the
pure core) to its state machine, peer transport, log storage, workflow driver and
gRPC services; `serve(config)` runs one until SIGTERM."""

from raftflow.cluster.node.config import NodeConfig, load_config
from raftflow.cluster.node.errors import NodeError
from raftflow.cluster.node.raftnode import RaftNode
from raftflow.cluster.node.server import NodeServer, serve

__all__ = ["NodeConfig", "NodeError", "NodeServer", "RaftNode", "load_config", "serve"]
