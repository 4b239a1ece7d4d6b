"""Timing: walking each rank's op list (analytical mode; the SimPy engine grows here)."""
