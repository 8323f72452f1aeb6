"""The one place raftflow's version is written (setup.cfg reads it from here)."""

__version__ = "0.1.0"
