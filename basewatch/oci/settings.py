"""What the registry client reads of one registry's settings.

The config file's `RegistrySettings` (basewatch.config) has these and more; the floor names
only what it reads, so it need not import the config.
"""
from __future__ import annotations

from typing import Protocol


class RegistrySettings(Protocol):
    """How to reach one registry, keyed by the host written in image references."""

    @property
    def host(self) -> str: ...
    @property
    def endpoint(self) -> str | None: ...  # http(s)://host[:port], without a trailing slash
    @property
    def engine_pulls_through_endpoint(self) -> bool: ...
    @property
    def max_requests_per_second(self) -> float | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def password_env(self) -> str | None: ...
