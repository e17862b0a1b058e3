"""The address rule: listed hosts anywhere, unlisted ones only at public addresses."""
from __future__ import annotations

import ipaddress

import pytest

from basewatch.netpolicy import (AddressRefused, HostPolicy, host_matches, is_internal,
                                 literal_address)


def test_host_matches_takes_names_and_star_dot_domains():
    allowed = ["git.example.com", "*.corp.example", "10.0.0.7", "fd00::7"]
    assert host_matches("git.example.com", allowed)
    assert host_matches("Git.Example.com", allowed)
    assert host_matches("build.eu.corp.example", allowed)
    assert host_matches("[fd00::7]", allowed)
    assert not host_matches("corp.example", allowed)
    assert not host_matches("evilcorp.example", allowed)
    assert not host_matches("example.com", allowed)
    assert not host_matches("git.example.com", [])


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.0.0.4", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "fe80::1", "fd00::1", "100.64.0.1", "0.0.0.0", "::", "224.0.0.1", "::ffff:127.0.0.1",
    "::ffff:169.254.169.254"])
def test_internal_addresses(address):
    assert is_internal(literal_address(address))


@pytest.mark.parametrize("address", ["1.1.1.1", "140.82.112.3", "2606:4700::1111"])
def test_public_addresses(address):
    assert not is_internal(ipaddress.ip_address(address))


def test_literal_address():
    assert literal_address("[::1]") == ipaddress.ip_address("::1")
    assert literal_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert literal_address("example.com") is None


def test_a_listed_host_passes_wherever_it_is():
    policy = HostPolicy(("127.0.0.1", "git.internal"), only_listed=True)
    policy.check_host("127.0.0.1")
    policy.check_url("http://git.internal:8080/app.tar.gz")
    assert policy.allowed_addresses("git.internal", ["10.0.0.5"]) == ["10.0.0.5"]


def test_only_listed_refuses_every_other_host():
    policy = HostPolicy.for_contexts(["127.0.0.1"])
    with pytest.raises(AddressRefused, match=r"^localhost is not in the daemon's "
                                             r"allowed_context_hosts \(127.0.0.1\)$"):
        policy.check_url("http://localhost:9/x.tar.gz")
    with pytest.raises(AddressRefused, match="example.com is not in"):
        policy.check_host("example.com")


def test_without_a_list_only_public_addresses_pass():
    policy = HostPolicy.for_contexts(None)
    policy.check_host("example.com")  # its addresses are checked when it is resolved
    with pytest.raises(AddressRefused, match=r"^127.0.0.2 is a loopback address, which the "
                                             "daemon contacts only for hosts listed in its "
                                             "allowed_context_hosts$"):
        policy.check_url("http://127.0.0.2/x.tar.gz")
    with pytest.raises(AddressRefused, match="169.254.169.254 is a link-local address"):
        policy.check_host("169.254.169.254")
    assert policy.allowed_addresses("mixed.example", ["10.0.0.1", "1.1.1.1"]) == ["1.1.1.1"]
    with pytest.raises(AddressRefused, match="^rebind.example resolves to 10.0.0.1, a private "
                                             "address, which the daemon contacts only"):
        policy.allowed_addresses("rebind.example", ["10.0.0.1"])


def test_only_http_urls():
    with pytest.raises(AddressRefused, match="file:// is not http"):
        HostPolicy().check_url("file:///etc/passwd")


async def test_resolve_checks_the_addresses_a_name_has():
    policy = HostPolicy(setting="registries")
    with pytest.raises(AddressRefused, match="^localhost resolves to .*, a loopback address"):
        await policy.resolve("localhost", 80)
    assert await HostPolicy(("localhost",)).resolve("localhost", 80)
    with pytest.raises(AddressRefused, match="cannot resolve no-such-host.invalid"):
        await policy.resolve("no-such-host.invalid", 80)


async def test_the_resolver_refuses_what_the_policy_refuses():
    resolver = HostPolicy().resolver()
    try:
        with pytest.raises(AddressRefused, match="localhost resolves to"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
    resolver = HostPolicy(("localhost",)).resolver()
    try:
        assert {info["host"] for info in await resolver.resolve("localhost", 80)} <= {
            "127.0.0.1", "::1"}
    finally:
        await resolver.close()
