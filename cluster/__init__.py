"""Everything around the pure core, one sub-package per role:

- `protocol`: what a node and its callers agree on beyond the .proto files (gRPC
  settings, error metadata, workflow message conversion, fault plans);
- `node`: the node process (RaftNode's asyncio driver, peer transport, gRPC
  services, the workflow leader duties, the server that wires them);
- `client`: the client SDK (`Client`, `AsyncClient`, `client.workflows`);
- `worker`: activity workers (`Worker`, `activity`);
- `local`: a local cluster on one machine (launcher, network fault plans);
- `verify`: checking a running cluster (nemesis, linearizability checker);
- `demos`: the narrated demos;
- `cli`: the `raftflow` command line.

Dependencies point one way: cli -> demos -> verify -> local -> worker -> client ->
protocol, and node -> protocol; nothing imports cli.
"""
