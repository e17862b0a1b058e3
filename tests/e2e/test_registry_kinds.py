"""Docker Hub and MCR bases, through local stand-ins behind the `endpoint` mapping.

docker.io is played by a registry in token-auth mode with its own token server (credentials from
the config's password_env), MCR by an anonymous one. Dockerfiles say `FROM node:20` and
`FROM mcr.microsoft.com/dotnet/aspnet:8.0`, as users write them: name normalisation, the bearer
token flow, and the engine pulling through the same mapping are all the real code paths.
"""
from __future__ import annotations

import asyncio

import pytest
import yaml

from basewatch.config import load_config
from basewatch.daemon import Daemon
from basewatch.models import RunStatus
from tests.support.token_server import TokenServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


async def test_docker_hub_and_mcr_bases_through_endpoint_mapping(
        tmp_path, start_registry, base_images, docker_host, monkeypatch):
    async with TokenServer(tmp_path / "tokens", users={"hubuser": "hubpass"}) as tokens:
        hub = start_registry(auth=tokens.registry_auth())
        mcr = start_registry()
        await asyncio.to_thread(base_images.client.login, username="hubuser", password="hubpass",
                                registry=hub.address)
        await asyncio.to_thread(base_images.build, f"{hub.address}/library/node:20",
                                {"/etc/release": "node 20\n"})
        await asyncio.to_thread(base_images.build, f"{mcr.address}/dotnet/aspnet:8.0",
                                {"/etc/release": "aspnet 8.0\n"})
        out = start_registry()

        apps = {"node-app": "FROM node:20\nRUN cp /etc/release /built-on\n",
                "dotnet-app": "FROM mcr.microsoft.com/dotnet/aspnet:8.0\n"
                              "RUN cp /etc/release /built-on\n"}
        for name, dockerfile in apps.items():
            (tmp_path / name).mkdir()
            (tmp_path / name / "Dockerfile").write_text(dockerfile)
        monkeypatch.setenv("HUB_PASSWORD", "hubpass")
        config = {
            "state_dir": "state", "listen": "127.0.0.1:0", "poll_interval": "1s",
            "registries": [
                {"host": "docker.io", "endpoint": f"http://{hub.address}",
                 "username": "hubuser", "password_env": "HUB_PASSWORD"},
                {"host": "mcr.microsoft.com", "endpoint": f"http://{mcr.address}"},
                {"host": out.address},
            ],
            "tasks": [{"name": name, "context": name, "image": f"{out.address}/{name}:latest"}
                      for name in apps],
        }
        (tmp_path / "basewatch.yml").write_text(yaml.safe_dump(config))
        daemon = Daemon(load_config(tmp_path / "basewatch.yml"), docker_host)
        await daemon.start()
        try:
            watched = {w.base: w for w in await daemon.store.graph.watched()}
            assert set(watched) == {"docker.io/library/node:20",
                                    "mcr.microsoft.com/dotnet/aspnet:8.0"}
            assert all(w.digest for w in watched.values()), "digests read at registration"
            anonymous = [scopes for user, scopes in tokens.requests if user is None]
            assert not anonymous, "the configured credentials are used for the token"

            await asyncio.to_thread(base_images.build, f"{hub.address}/library/node:20",
                                    {"/etc/release": "node 20 patched\n"})
            await asyncio.to_thread(base_images.build, f"{mcr.address}/dotnet/aspnet:8.0",
                                    {"/etc/release": "aspnet 8.0 patched\n"})

            async def both_done():
                runs = [await daemon.store.runs.list(task=name) for name in apps]
                return runs if all(r and r[0].status.finished for r in runs) else None

            for (run,) in await wait_for(both_done, 60, "both rebuilds"):
                assert run.status is RunStatus.SUCCEEDED, run.error
                built_on = await asyncio.to_thread(
                    base_images.read_file, f"{out.address}/{run.task}:latest", "/built-on")
                assert built_on.endswith("patched\n")
        finally:
            await daemon.stop()
