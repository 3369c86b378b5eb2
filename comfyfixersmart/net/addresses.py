"""Connect-time address check: the resolved addresses, not the name, decide.

A name on the allow-list can still resolve to ``127.0.0.1`` or ``169.254.169.254`` (a
hostile DNS answer, rebinding between two lookups).  ``resolve_checked`` resolves once,
refuses loopback, private, link-local, multicast, unspecified and reserved addresses unless
that exact host:port was configured (``UrlPolicy.may_be_local``), and returns the addresses
to connect to: the connection then uses those very addresses (no second lookup).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import List, Optional, Tuple, Union

from ..errors import HostNotAllowedError
from .urls import UrlPolicy

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
#: (family, sockaddr) as ``socket.getaddrinfo`` gives them
Address = Tuple[int, tuple]


def local_kind(ip: IPAddress) -> Optional[str]:
    """Why ``ip`` is not a public address ("loopback", "private"...), or None if it is public."""
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if getattr(ip, "sixtofour", None) is not None:
        # 2002::/16 embeds an IPv4 address (2002:a9fe:a9fe:: is 169.254.169.254); Python 3.11
        # calls it global, 3.12.4+ does not: refuse it on every version
        return "6to4"
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved", "site_local"):
        if getattr(ip, f"is_{kind}", False):
            return kind.replace("_", "-")
    if not ip.is_global:  # shared address space (100.64/10), documentation ranges, ...
        return "non-global"
    return None


def resolve(host: str, port: int) -> List[Address]:
    """All TCP addresses of ``host`` (one lookup)."""
    from urllib3.util.connection import allowed_gai_family  # no IPv6 answers on an IPv4-only host

    infos = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    out: List[Address] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if (family, sockaddr) not in out:
            out.append((family, sockaddr))
    return out


def resolve_checked(host: str, port: int, policy: UrlPolicy, scheme: Optional[str] = None) -> List[Address]:
    """``resolve`` then refuse local addresses unless ``host:port`` was configured.

    Every address must pass: an answer mixing a public and a private address is refused.
    """
    addresses = resolve(host, port)
    if not addresses:
        raise OSError(f"{host} has no address")
    if policy.may_be_local(host, port, scheme):
        return addresses
    for _family, sockaddr in addresses:
        try:
            ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        except ValueError:
            raise HostNotAllowedError(f"{host} resolved to an unreadable address {sockaddr[0]!r}") from None
        kind = local_kind(ip)
        if kind is not None:
            raise HostNotAllowedError(
                f"{host}:{port} resolves to {ip} ({kind} address): refused, only a configured endpoint or "
                f"an allowed_hosts entry naming this exact host and port may be on a local network")
    return addresses


def connect(addresses: List[Address], timeout, source_address=None, socket_options=None) -> socket.socket:
    """A TCP connection to the first of ``addresses`` that answers (no name lookup here)."""
    error: Optional[OSError] = None
    for family, sockaddr in addresses:
        sock = None
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
            for opt in socket_options or ():
                sock.setsockopt(*opt)
            if isinstance(timeout, (int, float)) or timeout is None:  # else urllib3's "default" marker
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            error = exc
            if sock is not None:
                sock.close()
    raise error or OSError("no address to connect to")
