"""`engines:` in the config: addresses (tcp, ssh, unix), TLS only where it means something,
names, platforms; how the docker SDK is set up for each; what /healthz and /metrics show."""
from __future__ import annotations

from pathlib import Path

import paramiko
import pytest
import yaml
from prometheus_client import generate_latest

from basewatch.builder.backends.docker.docker_engine import (
    DockerEngine,
    _CancellableAPIClient,
    client_options,
)
from basewatch.builder.backends.docker.engine import EngineTLS
from basewatch.config import Config, EngineSettings, checked_engine_host, load_config
from basewatch.daemon import Daemon
from basewatch.errors import ConfigError, EngineError
from basewatch.health import HostState, health_report
from basewatch.metrics import Metrics


def load(tmp_path: Path, engines) -> Config:
    path = tmp_path / "basewatch.yml"
    path.write_text(yaml.safe_dump({"engines": engines}))
    return load_config(path)


def problem(tmp_path: Path, engines) -> str:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, engines)
    [line] = str(refused.value).splitlines()
    return line.split(": ", 1)[1]


@pytest.mark.parametrize("host", [
    "unix:///var/run/docker.sock", "tcp://127.0.0.1:2375", "tcp://build1.example.com:2376",
    "ssh://builder@build2.example.com", "ssh://builder@build2.example.com:2222",
    "ssh://build2.example.com", "tcp://[::1]:2376"])
def test_engine_addresses_docker_host_writes(host):
    assert checked_engine_host(host) == host


@pytest.mark.parametrize("host, message", [
    ("http://build1:2376", "is not tcp://host:port, ssh://user@host or unix:///path"),
    ("build1:2376", "is not tcp://host:port, ssh://user@host or unix:///path"),
    ("tcp://build1", "is not tcp://host:port (Docker's TLS port is 2376)"),
    ("tcp://me@build1:2376", "is not tcp://host:port"),
    ("tcp://build1:99999", "the port is not a number from 1 to 65535"),
    ("tcp://build1:2376/path", "is not tcp://host:port"),
    ("ssh://builder:secret@build2", "no password in it; ssh uses its keys"),
    ("ssh://", "is not ssh://user@host[:port]"),
    ("unix://relative.sock", "is not unix:///absolute/path/to/docker.sock"),
])
def test_engine_addresses_refused(host, message):
    with pytest.raises(ValueError) as refused:
        checked_engine_host(host)
    assert message in str(refused.value)


def test_engines_in_the_config_file(tmp_path):
    config = load(tmp_path, [
        {"name": "local", "host": "unix:///var/run/docker.sock"},
        {"name": "remote", "host": "tcp://build1.example.com:2376", "max_concurrent_runs": 4,
         "platforms": "linux/amd64,linux/arm64/v8",
         "tls": {"ca": "engines/ca.pem", "cert": "engines/cert.pem", "key": "/etc/key.pem"}},
        {"name": "arm", "host": "ssh://builder@arm.example.com", "platforms": ["linux/arm64"]}])
    local, remote, arm = config.engines
    assert (local.max_concurrent_runs, local.platforms, local.tls) == (2, None, None)
    assert remote.platforms == ["linux/amd64", "linux/arm64"]
    assert remote.tls.ca == tmp_path / "engines" / "ca.pem", "relative to the config file"
    assert remote.tls.key == Path("/etc/key.pem")
    assert arm.platforms == ["linux/arm64"]
    assert load(tmp_path, None).engines is None, "absent: the local engine, as before"


def test_engine_settings_refused(tmp_path):
    tls = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}
    assert "needs tls: {ca, cert, key}" in problem(
        tmp_path, [{"name": "a", "host": "tcp://build1.example.com:2376"}])
    assert "only a tcp:// engine takes it (ssh:// is secured by ssh)" in problem(
        tmp_path, [{"name": "a", "host": "ssh://b@build1", "tls": tls}])
    assert "duplicate engine name: a" in problem(
        tmp_path, [{"name": "a", "host": "unix:///a.sock"}, {"name": "a", "host": "unix:///b"}])
    assert "List should have at least 1 item" in problem(tmp_path, [])
    assert "is not a build engine name" in problem(tmp_path, [{"name": "a b", "host": "unix:///s"}])
    assert "windows images cannot be built" in problem(
        tmp_path, [{"name": "a", "host": "unix:///s", "platforms": ["windows/amd64"]}])
    assert "greater than or equal to 1" in problem(
        tmp_path, [{"name": "a", "host": "unix:///s", "max_concurrent_runs": 0}])
    # Plain tcp on loopback only: an engine on this host, behind its own firewall.
    assert load(tmp_path, [{"name": "a", "host": "tcp://127.0.0.1:2375"}]).engines


def test_tls_engines_verify_against_their_own_ca(tmp_path, monkeypatch):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("")
    tls = EngineTLS(tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    options = client_options("tcp://build1.example.com:2376", tls)
    assert options["tls"].ca_cert == str(tls.ca)
    assert options["tls"].cert == (str(tls.cert), str(tls.key))
    assert client_options("unix:///var/run/docker.sock", None) == {}
    client = _CancellableAPIClient(base_url="tcp://build1.example.com:2376", version="1.41",
                                   **options)
    assert client.base_url == "https://build1.example.com:2376"
    # requests lets these replace a session's CA; the engine's own must stay.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    settings = client.merge_environment_settings(client.base_url, {}, False, None, None)
    assert settings["verify"] == str(tls.ca)
    client.close()


def test_ssh_engines_go_through_paramiko_with_the_users_ssh_setup(monkeypatch):
    connected = []

    def connect(self, **params):
        connected.append(params)
        raise paramiko.SSHException("Server 'build2.example.com' not found in known_hosts")

    monkeypatch.setattr(paramiko.SSHClient, "connect", connect)
    with pytest.raises(EngineError) as unreachable:
        DockerEngine("ssh://builder@build2.example.com:2222").ping()
    assert connected[0]["hostname"] == "build2.example.com"
    assert (connected[0]["port"], connected[0]["username"]) == (2222, "builder")
    assert str(unreachable.value) == (
        "cannot reach the Docker Engine at ssh://builder@build2.example.com:2222: "
        "Server 'build2.example.com' not found in known_hosts")


async def test_a_missing_tls_file_stops_the_daemon_at_start(tmp_path):
    config = Config(state_dir=tmp_path / "state", listen="127.0.0.1:0", engines=[
        EngineSettings(name="remote", host="tcp://build1.example.com:2376",
                       tls={"ca": tmp_path / "ca.pem", "cert": tmp_path / "c.pem",
                            "key": tmp_path / "k.pem"})])
    with pytest.raises(ConfigError) as refused:
        await Daemon(config).start()
    assert str(refused.value).splitlines() == [
        f"engines[0].tls.{key}: {tmp_path / name}: no such file"
        for key, name in (("ca", "ca.pem"), ("cert", "c.pem"), ("key", "k.pem"))]


def test_healthz_and_metrics_show_each_engine():
    engines = {"one": {"state": "up", "runs": 1, "max_concurrent_runs": 1, "platforms": None},
               "two": {"state": "down", "runs": 0, "max_concurrent_runs": 2, "platforms": None,
                       "error": "connection refused"}}
    report = health_report(HostState(None, None), [], 0, (), engines=engines)
    assert report["status"] == "degraded" and report["engines"] == engines
    engines["two"] = {**engines["one"], "runs": 0}
    assert health_report(HostState(None, None), [], 0, (), engines=engines)["status"] == "ok"
    assert "engines" not in health_report(HostState(None, None), [], 0, ())

    metrics = Metrics()
    metrics.watch_engines(lambda: engines)
    engines["two"] = {"state": "down", "runs": 0}
    text = generate_latest(metrics.registry).decode()
    assert 'basewatch_engine_up{engine="one"} 1.0' in text
    assert 'basewatch_engine_up{engine="two"} 0.0' in text
    assert 'basewatch_engine_runs{engine="one"} 1.0' in text


async def test_check_config_reports_missing_tls_files(tmp_path):
    from basewatch.config_check import check_config

    (tmp_path / "ca.pem").write_text("")
    path = tmp_path / "basewatch.yml"
    path.write_text(yaml.safe_dump({"engines": [{
        "name": "remote", "host": "tcp://build1.example.com:2376",
        "tls": {"ca": "ca.pem", "cert": "tls/cert.pem", "key": "tls/key.pem"}}]}))
    report = await check_config(path, environ={})
    assert report.problems == [
        f"{path}: engines[0].tls.cert: {tmp_path / 'tls' / 'cert.pem'}: no such file",
        f"{path}: engines[0].tls.key: {tmp_path / 'tls' / 'key.pem'}: no such file"]


async def test_a_daemon_with_a_pool_runs_as_many_runs_as_its_engines_have_slots(
        tmp_path, monkeypatch):
    from tests.support.inprocess_daemon import running_daemon

    engines = [EngineSettings(name="a", host=f"unix://{tmp_path}/a.sock", max_concurrent_runs=1),
               EngineSettings(name="b", host=f"unix://{tmp_path}/b.sock", max_concurrent_runs=3)]
    async with running_daemon(tmp_path, monkeypatch, engines=engines) as daemon:
        assert daemon.queue._concurrency == 4
        report = await daemon.health()
        assert report["status"] == "degraded"
        assert report["engine"].startswith("no build engine answers: a: cannot reach the "
                                           f"Docker Engine at unix://{tmp_path}/a.sock")
        assert {name: (state["state"], state["runs"]) for name, state
                in report["engines"].items()} == {"a": ("down", 0), "b": ("down", 0)}
        text = generate_latest(daemon.metrics.registry).decode()
        assert 'basewatch_engine_up{engine="b"} 0.0' in text
