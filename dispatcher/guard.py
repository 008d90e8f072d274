"""The SSRF guard: a webhook URL may not reach the dispatcher's own network.

The check happens where the socket is opened (an httpcore network backend): the host is resolved
once, every address that is not public unicast is dropped, and the connection goes to an address
that passed — so a DNS answer that changes between a check and the connect (DNS rebinding) cannot
slip a private address through. The URL's host is kept for the Host header and TLS SNI/certificate
checks (httpcore passes it to start_tls), only the socket goes to the checked IP.

Refused: private (RFC 1918, fc00::/7), loopback, link-local (169.254/16 — cloud metadata — and
fe80::/10), multicast, unspecified, reserved, shared (100.64/10) and every other non-global range,
IPv4-mapped IPv6 forms included. `WAYBILL_WEBHOOK_ALLOWLIST` (comma-separated CIDRs) lets chosen
networks through (`make run` adds its demo receiver's 127.0.0.1/32).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing

import httpcore
import httpx

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(Exception):
    """Every address of the host is private/reserved and none is allowlisted (error class refused_private_address)."""


class ResolveError(Exception):
    """The host name does not resolve (error class dns)."""


def parse_allowlist(text: str | None) -> tuple[Network, ...]:
    """`10.0.0.0/8, 127.0.0.1/32` → networks; a bare address is its /32 or /128. Raises ValueError."""
    nets = []
    for item in (text or "").split(","):
        item = item.strip()
        if item:
            nets.append(ipaddress.ip_network(item, strict=False))
    return tuple(nets)


def allowed(address: Address, allowlist: tuple[Network, ...]) -> bool:
    if any(address in net for net in allowlist if net.version == address.version):
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return allowed(address.ipv4_mapped, allowlist)
    return address.is_global and not address.is_multicast


async def resolve(host: str, port: int, allowlist: tuple[Network, ...]) -> list[str]:
    """The host's addresses that may be reached, in resolver order. Raises ResolveError, RefusedAddress."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolveError(f"{host}: {exc.strerror}") from exc
    found = list(dict.fromkeys(info[4][0] for info in infos))
    ok = [a for a in found if allowed(ipaddress.ip_address(a.split("%")[0]), allowlist)]
    if not ok:
        raise RefusedAddress(f"{host} resolves only to refused addresses: {', '.join(found)}")
    return ok


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's asyncio backend, connecting only to addresses the guard accepted."""

    def __init__(self, allowlist: tuple[Network, ...]) -> None:
        self.allowlist = allowlist
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port, self.allowlist)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:  # try the next accepted address
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, *args: typing.Any, **kw: typing.Any) -> httpcore.AsyncNetworkStream:
        raise RefusedAddress("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the guarded backend (and no proxy: a proxy would bypass the guard)."""

    def __init__(self, allowlist: tuple[Network, ...], limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        ssl_context = httpx.create_ssl_context()
        # httpx offers no network_backend option: replace its pool with the same one, guarded.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allowlist),
        )
