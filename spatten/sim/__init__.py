"""Driving the simulator: input validation (inputs), child processes and signals (procs)."""
