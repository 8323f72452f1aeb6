"""The deterministic Raft simulator: `raftflow sim` and the simulation tests."""

from raftflow.raft.sim.checker import LivenessViolation, SafetyChecker, SafetyViolation
from raftflow.raft.sim.schedule import FAULT_KINDS, Action, Fault, parse_fault_kinds, random_schedule
from raftflow.raft.sim.simulation import Operation, SimOptions, SimResult, Simulation, run

__all__ = [
    "FAULT_KINDS", "Action", "Fault", "LivenessViolation", "Operation", "SafetyChecker",
    "SafetyViolation", "SimOptions", "SimResult", "Simulation", "parse_fault_kinds",
    "random_schedule", "run",
]
