"""Trajectory metrics: pure functions on numpy arrays, registered by name."""
