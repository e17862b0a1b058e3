"""Which hosts and addresses the daemon may contact because of what a user wrote.

One rule covers context URLs sent through the API, the registries a Dockerfile names and the
token realms and redirects those registries name: a loopback, link-local, private or otherwise
non-public address is contacted only for a host the config lists. A name is resolved once and
the connection goes to the address that was checked, so a name cannot pass the check and then
resolve somewhere else (DNS rebinding).

Imported by the CLI's side too: aiohttp is imported only where a resolver is made.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from basewatch.errors import BasewatchError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(BasewatchError):
    """A host, or an address it resolves to, that the daemon may not contact."""


def host_matches(host: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Whether `host` is one of `patterns`: a name or address, or `*.domain` for any host
    under it."""
    host = host.lower().strip("[]")
    return any(host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
               for pattern in patterns)


def literal_address(host: str) -> Address | None:
    """`host` as an IP address when it is one (`[::1]` too), else None."""
    try:
        address = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return None
    # ::ffff:127.0.0.1 is 127.0.0.1 to the kernel; Python 3.11 calls it global.
    return address.ipv4_mapped or address if address.version == 6 else address


def is_internal(address: Address) -> bool:
    """Loopback, link-local, private, shared (CGNAT), reserved, unspecified or multicast:
    anything but a public unicast address."""
    return not address.is_global or address.is_multicast


def describe(address: Address) -> str:
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    return "not a public address"


@dataclass(frozen=True)
class HostPolicy:
    """The hosts the config lists, and whether an unlisted host is refused outright.

    A listed host is contacted wherever it is; an unlisted one (when allowed at all) only at
    public addresses.
    """

    listed: tuple[str, ...] = ()  # names, addresses, *.domain
    only_listed: bool = False
    setting: str = "allowed_context_hosts"  # where the config lists hosts, for messages

    @classmethod
    def for_contexts(cls, allowed_context_hosts: list[str] | None) -> "HostPolicy":
        """The rule for context URLs: `allowed_context_hosts` when set, else any public host."""
        return cls(tuple(allowed_context_hosts or ()), allowed_context_hosts is not None)

    def is_listed(self, host: str) -> bool:
        return host_matches(host, self.listed)

    def check_host(self, host: str) -> None:
        """Refuse an unlisted host (when only listed ones may be contacted), and an unlisted
        address that is not public; a name's addresses are checked when it is resolved."""
        if self.is_listed(host):
            return
        if self.only_listed:
            raise AddressRefused(f"{host} is not in the daemon's {self.setting} "
                                 f"({', '.join(self.listed) or 'none'})")
        address = literal_address(host)
        if address is not None and is_internal(address):
            raise AddressRefused(f"{host} is {describe(address)}, which the daemon contacts "
                                 f"only for hosts listed in its {self.setting}")

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            raise AddressRefused(f"{parts.scheme}:// is not http(s)")
        if not parts.hostname:
            raise AddressRefused("the URL names no host")
        self.check_host(parts.hostname)

    def allowed_addresses(self, host: str, addresses: list[str]) -> list[str]:
        """Those of `host`'s `addresses` that may be contacted; AddressRefused when none."""
        if self.is_listed(host):
            return addresses
        allowed = [a for a in addresses if not is_internal(_address(a))]
        if not allowed and addresses:
            first = _address(addresses[0])
            raise AddressRefused(f"{host} resolves to {first}, {describe(first)}, which the "
                                 f"daemon contacts only for hosts listed in its {self.setting}")
        return allowed

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of `host` that may be contacted, resolved once, to connect to."""
        self.check_host(host)
        if (literal := literal_address(host)) is not None:
            return [str(literal)]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise AddressRefused(f"cannot resolve {host}: {exc.strerror}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        return self.allowed_addresses(host, addresses)

    def resolver(self):
        """An aiohttp resolver that answers with allowed addresses only; aiohttp connects to
        what it answers, so the address checked is the address used."""
        return _GuardedResolver(self)


def _address(text: str) -> Address:
    return literal_address(text) or ipaddress.ip_address(text)


class _GuardedResolver:
    """aiohttp's default resolver, filtered by a HostPolicy (aiohttp duck-types resolvers).

    aiohttp skips the resolver for a URL whose host is an address: check_url covers those."""

    def __init__(self, policy: HostPolicy):
        from aiohttp.resolver import DefaultResolver

        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        self._policy.check_host(host)
        infos = await self._inner.resolve(host, port, family)
        allowed = set(self._policy.allowed_addresses(host, [info["host"] for info in infos]))
        return [info for info in infos if info["host"] in allowed]

    async def close(self) -> None:
        await self._inner.close()
