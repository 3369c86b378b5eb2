"""DNS-rebinding guard: a server listening on loopback only answers loopback ``Host`` names.

A page of ``evil.example`` can make its own name resolve to 127.0.0.1; the browser then sends
the page's requests to ComfyUI with ``Host: evil.example:8188`` and treats the answers as
same-origin.  When every listen address is loopback, only ``localhost``, ``127.x.y.z`` and
``[::1]`` (with any port) are accepted.  A server listening on other addresses (``--listen``
on a LAN) is reached under names we cannot know: nothing is checked there.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, Iterable, Optional, Sequence, Union

from ..errors import ForeignHostError

#: the listen addresses, or a function returning them (read per request)
Listen = Union[None, str, Sequence[str], Callable[[], Iterable[str]]]


def is_loopback_name(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (``127.0.0.1``, ``::1``, with brackets)."""
    host = (host or "").strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback and (ip.version == 6 or str(ip) == host)


_HOST_HEADER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]@/\\\s]+)(?::[0-9]{1,5})?$")


def split_host_header(value: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8188`` -> ``[::1]``, ``a:1`` -> ``a``); a
    value of any other shape is returned whole (and is no loopback name)."""
    value = (value or "").strip()
    match = _HOST_HEADER.match(value)
    return match.group(1) if match else value


def listen_addresses(listen: Listen) -> Sequence[str]:
    if listen is None:
        return ()
    if callable(listen):
        listen = list(listen())
    if isinstance(listen, str):
        listen = listen.split(",")
    return [a.strip() for a in listen if a and a.strip()]


def check_host_header(host_header: Optional[str], listen: Listen) -> None:
    """Raise ``ForeignHostError`` when the server listens on loopback only and ``host_header``
    names something else (a missing header included)."""
    addresses = listen_addresses(listen)
    if not addresses or not all(is_loopback_name(a) for a in addresses):
        return
    host = split_host_header(host_header or "")
    if not is_loopback_name(host):
        shown = "".join(c if c.isprintable() else "?" for c in (host_header or "(none)"))[:80]
        raise ForeignHostError(f"Host {shown!r} refused: this server listens on loopback and answers only "
                               f"localhost, 127.0.0.1 or [::1] (a foreign name means DNS rebinding)")
