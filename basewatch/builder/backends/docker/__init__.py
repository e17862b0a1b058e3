"""The Docker Engine backend: pulls, base leases, builds, pushes and index assembly."""
