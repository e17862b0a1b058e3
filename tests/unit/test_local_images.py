"""scripts/local_images.py's pure parts: which wheels pip is asked for, and what the registry
image's root holds."""
from __future__ import annotations

import io
import tarfile

import local_images  # scripts/, put on sys.path by tests/conftest.py
import pytest

STATUS = """\
Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u14

Package: python3
Status: install ok installed
Architecture: amd64
Version: 3.11.2-1+b1
"""


def _rootfs(tmp_path, status: str):
    path = tmp_path / "rootfs.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("./var/lib/dpkg/status")
        info.size = len(status.encode())
        archive.addfile(info, io.BytesIO(status.encode()))
    return path


def test_the_wheels_are_the_bases_python_and_glibc_whatever_runs_pip(tmp_path):
    target = local_images.base_target(_rootfs(tmp_path, STATUS))
    assert target == local_images.Target("3.11", (2, 36), "x86_64")
    options = target.pip_options()
    assert options[:4] == ["--python-version", "3.11", "--implementation", "cp"]
    platforms = options[5::2]
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux_2_5_x86_64" in platforms
    assert {"manylinux2014_x86_64", "manylinux1_x86_64"} <= set(platforms)
    assert "manylinux_2_37_x86_64" not in platforms


def test_a_root_without_python_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="no python3"):
        local_images.base_target(_rootfs(tmp_path, STATUS.split("\n\n")[0]))


@pytest.mark.skipif(not local_images.REGISTRY_BINARY.exists(), reason="no docker-registry")
def test_the_registry_root_holds_the_binary_its_libraries_and_a_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with tarfile.open(local_images.registry_rootfs()) as archive:
        names = set(archive.getnames())
        config = archive.extractfile("etc/docker/registry/config.yml").read().decode()
    assert {"bin/registry", "tmp", "var/lib/registry"} <= names
    assert any(name.endswith("libc.so.6") for name in names)
    assert "rootdirectory: /var/lib/registry" in config and "addr: :5000" in config
