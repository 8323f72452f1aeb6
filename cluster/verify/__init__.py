"""Checking a running cluster: the nemesis (faults under client load), the
linearizability checker behind `raftflow check`, and its history generator."""
