"""What a fetch may reach: http and https URLs whose host resolves only to public addresses.

The model chooses the URL, so without this an agent could read the server's own admin ports,
a cloud's metadata service (169.254.169.254) or anything on the operator's network. Every
address a host resolves to is checked (a name with one private address among public ones is
refused), and the fetch then connects to a checked address rather than resolving again, so a
name cannot resolve to a public address for the check and a private one for the connection.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from typing import Final, TypeAlias

import httpx

from kelpie.web._types import WebError, WebRefused

IpAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

FETCH_SCHEMES: Final = frozenset({"http", "https"})
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# Named in refusals, so an operator reading a tool return knows what to change.
ALLOW_PRIVATE_HINT: Final = "the server's operator can allow them with KELPIE_WEB_ALLOW_PRIVATE=1"


def checked_url(url: str) -> httpx.URL:
    """`url` parsed, if it is an absolute http(s) URL with a host; else WebRefused."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise WebRefused(f"'{url}' is not a valid URL: {error}") from None
    if parsed.scheme not in FETCH_SCHEMES:
        scheme = f"'{parsed.scheme}'" if parsed.scheme else "no"
        raise WebRefused(
            f"Refused to fetch '{url}': it has {scheme} scheme; only http and https URLs "
            "are fetched"
        )
    if not parsed.raw_host:
        raise WebRefused(f"Refused to fetch '{url}': it names no host")
    return parsed


def port_of(url: httpx.URL) -> int:
    return url.port if url.port is not None else DEFAULT_PORTS[url.scheme]


def refusal(address: IpAddress) -> str | None:
    """Why a fetch may not connect to `address` (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1; Python 3.11 does not look inside by itself.
        return refusal(address.ipv4_mapped)
    kinds = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        # Shared (100.64/10, carrier NAT), documentation and other non-global ranges.
        (not address.is_global, "not a public address"),
    )
    return next((kind for matched, kind in kinds if matched), None)


def parse_networks(networks: Sequence[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in networks)


async def allowed_addresses(
    url: httpx.URL, *, allow_private: bool, exempt: Sequence[IpNetwork] = ()
) -> list[IpAddress]:
    """The addresses `url`'s host resolves to, in the resolver's order, after checking every
    one (unless `allow_private`; `exempt` networks pass even when private ones are refused).
    Raises WebRefused naming the first address refused, WebError if the host has none."""
    host = url.raw_host.decode("ascii")
    port = port_of(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as error:
        raise WebError(f"Could not resolve the host '{url.host}': {error}") from None
    addresses: list[IpAddress] = []
    for info in infos:
        # IPv6 link-local answers carry a scope ("fe80::1%eth0"): the address is before it.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise WebError(f"Could not resolve the host '{url.host}': it has no address")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None and not any(address in network for network in exempt):
                shown = url.host if url.host == str(address) else f"{url.host} ({address})"
                raise WebRefused(
                    f"Refused to fetch '{url}': {shown} is {reason}; loopback, private, "
                    f"link-local, multicast and reserved addresses are not fetched "
                    f"({ALLOW_PRIVATE_HINT})"
                )
    return addresses
