"""Where a webhook may be sent: public addresses only, unless an administrator allow-lists a
network (HIKESHI_WEBHOOK_ALLOW_NETWORKS, CIDR list).

A webhook URL is chosen by whoever manages webhooks; without this check it could be aimed at the
database port on loopback, a cloud metadata address (169.254.169.254) or any host of the
private network, with the server as the sender. So loopback, link-local, private, shared
(100.64/10), multicast, reserved and unspecified addresses are refused, for IPv4, IPv6 and
IPv4-mapped IPv6 alike. The check runs when the webhook is created and again at every delivery
on the addresses the name resolves to then, and the delivery connects to the very address that
was checked (a name that resolves to a public address at the check and to 127.0.0.1 a moment
later, DNS rebinding, gains nothing).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationRefused(ValueError):
    """The URL's host is not an address webhooks may reach; the message says why."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str  # as written in the URL (a name, or an address)
    port: int
    address: IPAddress  # the checked address the delivery connects to

    def pinned_url(self, url: str) -> str:
        """`url` with its host replaced by the checked address (the Host header keeps the name)."""
        parts = urlsplit(url)
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return parts._replace(netloc=f"{literal}:{self.port}").geturl()

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def allowed_networks(specs: Iterable[str]) -> tuple[IPNetwork, ...]:
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"HIKESHI_WEBHOOK_ALLOW_NETWORKS: {spec!r} is not a CIDR network") from exc
    return tuple(networks)


def refusal(address: IPAddress, allowed: tuple[IPNetwork, ...]) -> str | None:
    """Why `address` may not be reached, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address.version == net.version and address in net for net in allowed):
        return None
    for kind, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    ):
        if flag:
            return f"{address} is a {kind} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefused(f"{host} does not resolve") from exc
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise DestinationRefused(f"{host} does not resolve")
    return found


def check_destination(url: str, allowed: tuple[IPNetwork, ...]) -> Destination:
    """Resolve the URL's host and refuse it unless every address it has may be reached."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise DestinationRefused(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("must be an http:// or https:// URL")
    addresses = resolve(parts.hostname, port)
    for address in addresses:
        reason = refusal(address, allowed)
        if reason is not None:
            raise DestinationRefused(
                f"{parts.hostname} → {reason}; allow-list its network in HIKESHI_WEBHOOK_ALLOW_NETWORKS "
                "if this is intended"
            )
    return Destination(parts.scheme, parts.hostname, port, addresses[0])
