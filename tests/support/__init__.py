"""Helpers shared by tests and benchmarks: synthetic image pushes, a registry token server."""
