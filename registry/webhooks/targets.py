"""Which webhook URLs the registry may call: none on loopback, link-local or private addresses (a webhook
must not reach the registry's own network), unless ``webhook_allow_private`` says so.

A hostname is refused when any address it resolves to is one of those; it is resolved at registration
and again before each delivery, so that a DNS answer changed in between (rebinding) cannot get through.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from registry.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
SETTING = "LOREG_WEBHOOK_ALLOW_PRIVATE=true"


def check_target(url: str, *, allow_private: bool) -> None:
    """Raise :class:`InvalidInput` unless ``url``'s host may receive webhooks."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise InvalidInput(f"webhook URL {url!r} names no host")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(f"webhook URL {url!r} has an invalid port") from None
    for address in _addresses(host, port):
        if _private(address):
            raise InvalidInput(
                f"webhook URL {url!r} reaches {address}, a loopback, link-local or private address; "
                f"webhooks may call only public addresses unless the server sets {SETTING}"
            )


def _addresses(host: str, port: int | None) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise InvalidInput(f"webhook host {host!r} does not resolve: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _private(address: Address) -> bool:
    """Anything but a public unicast address: loopback, link-local, private, unspecified, shared, …"""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return not address.is_global or address.is_multicast
