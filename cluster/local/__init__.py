"""A cluster on this machine: the launcher behind `raftflow cluster up` and `node
start|stop|kill`, and the network fault plans behind `raftflow partition`."""
