"""Build backends: each runs a run plan's steps somewhere (one folder per kind)."""
