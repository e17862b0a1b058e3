"""Watching base images: digest polling, fan-out, registry notifications, registration."""
