"""Watching base images: references, Dockerfile analysis, digest polling."""
