"""Dockerfile analysis: which images a Dockerfile's stages are built on, read as BuildKit reads
them. Imports only the floor (errors, textfiles, oci)."""
