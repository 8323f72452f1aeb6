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

Imports point one way: cli uses the others and nothing uses cli; demos and verify
use local and client; local uses client and node's config (to write node configs);
worker uses client; node and client use protocol. tests/test_layout.py checks that
cluster/ has no import cycle.
"""
