"""The SSRF guard: a webhook URL may not reach the dispatcher's own network.

The check happens where the socket is opened (dispatcher/http11.py calls `resolve` on every new
connection): the host is resolved once, every address that is not public unicast is dropped, and the
connection goes to an address that passed — so a DNS answer that changes between a check and the
connect (DNS rebinding) cannot slip a private address through. The URL's host is kept for the Host
header and TLS SNI/certificate checks (server_hostname), only the socket goes to the checked IP.

Refused: private (RFC 1918, fc00::/7), loopback, link-local (169.254/16 — cloud metadata — and
fe80::/10), multicast, unspecified, reserved, shared (100.64/10) and every other non-global range,
IPv4-mapped IPv6 forms included. `WAYBILL_WEBHOOK_ALLOWLIST` (comma-separated CIDRs) lets chosen
networks through (`make run` adds its demo receiver's 127.0.0.1/32).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

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
