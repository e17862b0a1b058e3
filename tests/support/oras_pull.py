"""Pull an artifact back with oras-py, the standard ORAS client, as a user of the archive would."""
from __future__ import annotations

import asyncio
from pathlib import Path

import oras.provider


async def oras_pull(reference: str, outdir: Path, *, username: str | None = None,
                    password: str | None = None, auth: str = "token") -> list[Path]:
    """The files `oras pull <reference>` writes into `outdir` (a plain-HTTP registry), logged in
    as `username` when given; `auth` is oras' backend, "basic" for an htpasswd registry."""
    def pull() -> list[str]:
        registry = oras.provider.Registry(insecure=True, auth_backend=auth)
        if username is not None and password is not None:
            registry.auth.set_basic_auth(username, password)
        try:
            return registry.pull(target=reference, outdir=str(outdir))
        finally:
            registry.session.close()

    return [Path(file) for file in await asyncio.to_thread(pull)]
