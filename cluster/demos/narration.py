"""What the narrated demos share: a timeline printer and starting a cluster."""

from __future__ import annotations

import time

from raftflow.cluster.client import Client
from raftflow.cluster.local import launcher


class Narrator:
    """Prints each line with the seconds since the demo began."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"{time.monotonic() - self.started:7.3f}s  {text}", flush=True)


def start_cluster(t: Narrator, cluster: launcher.ClusterFile, client: Client) -> int:
    """Start every node, say so, wait for the first leader; its id."""
    for m in cluster.members:
        launcher.start_node(cluster, m)
    t.say(f"started 3 nodes in {cluster.dir}: " + ", ".join(f"node {m.id} at {m.address}" for m in cluster.members))
    leader = leader_of(cluster, client)
    t.say(f"node {leader} was elected leader")
    return leader


def leader_of(cluster: launcher.ClusterFile, client: Client, exclude: frozenset[int] = frozenset()) -> int:
    return launcher.wait_for_leader(cluster, lambda e: client.cluster_status(timeout=0.5), timeout=20, exclude=exclude)
