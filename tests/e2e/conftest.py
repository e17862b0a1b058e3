"""End-to-end fixtures: a docker SDK client on the real engine, and busybox base images."""
from __future__ import annotations

from pathlib import Path

import docker
import pytest
from busybox_images import BaseImages  # scripts/, put on sys.path by tests/conftest.py


@pytest.fixture(scope="session")
def docker_client(docker_host: str):
    client = docker.DockerClient(base_url=docker_host, version="auto", timeout=300)
    yield client
    client.close()


@pytest.fixture
def base_images(docker_client, tmp_path: Path) -> BaseImages:
    return BaseImages(docker_client, tmp_path / "base-images")
