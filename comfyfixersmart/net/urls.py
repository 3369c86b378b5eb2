"""The URL policy: one check for the first URL and every redirect hop, search and download alike.

``check_url(url, policy)`` refuses, with ``HostNotAllowedError``:

* anything but ``http``/``https`` with a host; backslashes, whitespace and control characters
  anywhere; user info (``user@``), percent-encoding and non-ASCII in the authority (IDNA,
  fullwidth dots, IPv6 zone ids); a host name ending in a dot; numeric hosts that are not a
  canonical dotted IPv4 (``2852039166``, ``0177.0.0.1``, ``127.1``);
* a URL whose host or port differs between the parsers that may connect it
  (``urllib.parse``, ``urllib3.util.parse_url``, requests' ``prepare_url`` and, when loaded,
  httpx2's ``URL``): ``http://169.254.169.254\\.hf.co/`` must not pass as a ``*.hf.co`` host;
* with a policy: plain http to a public hub (unless that exact origin is a configured
  endpoint), and any scheme/host/port no rule allows.

Rules (``UrlPolicy``) match host **and** port:

* a configured endpoint (``civitai_base_url``, ``hf_endpoint``, ``index_refresh_url``) allows
  its own scheme, host and port only;
* an ``allowed_hosts`` entry ``host`` allows that host on the scheme's default port (443,
  or 80 for plain http), ``.example.com`` its sub-domains too, ``host:8080`` that port,
  ``host:*`` any port, ``http://host:port`` that exact origin;
* public hub hosts (``PUBLIC_HUB_HOSTS``) are https-only whatever the entry says.

Only ``..errors`` is imported at module level: ``security`` and ``settings`` use this module.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple
from urllib.parse import urlsplit

from ..errors import HostNotAllowedError

#: hosts of the public hubs and their CDN/storage hosts: https only (a plain-http hop could be
#: rewritten by anyone on the path)
PUBLIC_HUB_HOSTS = (
    "civitai.com", ".civitai.com", "civitai.red", ".civitai.red",
    "huggingface.co", ".huggingface.co", "hf.co", ".hf.co",
    ".r2.cloudflarestorage.com", ".civitaiarchive.com",
)
DEFAULT_PORTS = {"http": 80, "https": 443}
#: port value of a ``host:*`` rule
ANY_PORT = -1

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")


@dataclass(frozen=True)
class ParsedUrl:
    """What a URL connects to: scheme, host (lower case, IPv6 without brackets) and port."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def origin(self) -> Tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def _refuse(message: str, url: str) -> HostNotAllowedError:
    from ..security import redact_url  # security imports this module

    return HostNotAllowedError(message, url=redact_url(url))


def _bad_char(c: str) -> bool:
    return ord(c) < 0x21 or ord(c) == 0x7F or unicodedata.category(c) in ("Cc", "Cf", "Zs", "Zl", "Zp", "Cs")


def _check_host_syntax(host: str, bracketed: bool, url: str) -> str:
    """The host in canonical form, or an error for forms parsers disagree on."""
    if bracketed:
        try:
            ip6 = ipaddress.IPv6Address(host)
        except ValueError:
            raise _refuse(f"malformed IPv6 host {host!r}", url) from None
        return ip6.compressed
    if host.endswith("."):
        raise _refuse("a host name ending in a dot is not accepted", url)
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise _refuse(f"host {host!r} is not a plain ASCII host name", url)
    if _NUMERIC_LABEL.match(labels[-1]):
        # a name's last label is never numeric: this is an IP address, and only the canonical
        # dotted form is read the same way by every resolver (inet_aton takes "127.1", octal...)
        try:
            ip4 = ipaddress.IPv4Address(host)
        except ValueError:
            raise _refuse(f"host {host!r} is not a canonical IPv4 address", url) from None
        if str(ip4) != host:
            raise _refuse(f"host {host!r} is not a canonical IPv4 address", url)
    return host


def _other_parsers(url: str) -> Iterable[Tuple[str, str, Optional[int]]]:
    """(parser, host, port) as the connecting libraries read ``url``."""
    from urllib3.util import parse_url as urllib3_parse

    parsed = urllib3_parse(url)
    yield "urllib3", parsed.host or "", parsed.port
    from requests.models import PreparedRequest

    prepared = PreparedRequest()
    prepared.prepare_url(url, None)
    again = urlsplit(prepared.url or "")
    yield "requests", again.hostname or "", again.port
    # huggingface_hub's client, when it is in use (and fully imported: another thread may be
    # importing it right now)
    httpx2_url = getattr(sys.modules.get("httpx2"), "URL", None)
    if httpx2_url is not None:
        xurl = httpx2_url(url)
        yield "httpx2", xurl.host or "", xurl.port


def parse_url(url: str) -> ParsedUrl:
    """Parse ``url`` strictly; raise ``HostNotAllowedError`` for any form that parsers could read
    differently (see the module docstring).  Leading/trailing spaces are stripped."""
    if not isinstance(url, str) or not url.strip():
        raise HostNotAllowedError("empty URL")
    url = url.strip()
    if any(_bad_char(c) for c in url):
        raise _refuse("URL contains whitespace or control characters", url)
    if "\\" in url:
        raise _refuse("URL contains a backslash", url)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise _refuse(f"only http(s) URLs are allowed, not {url.split(':', 1)[0][:20]!r}", url)
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        raise _refuse("URLs with user info (user@host) are not accepted", url)
    if "%" in authority:
        raise _refuse("percent-encoded hosts and IPv6 zone ids are not accepted", url)
    if not authority.isascii():
        raise _refuse("non-ASCII host names are not accepted", url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(f"malformed URL: {exc}", url) from None
    host = (parts.hostname or "").lower()
    if not host:
        raise _refuse("URL has no host", url)
    if port is not None and not 0 < port < 65536:
        raise _refuse(f"bad port {port}", url)
    bracketed = authority.startswith("[")
    host = _check_host_syntax(host, bracketed, url)
    effective = port or DEFAULT_PORTS[scheme]
    try:
        views = list(_other_parsers(url))
    except Exception as exc:  # a parser that chokes reads it differently by definition
        raise _refuse(f"malformed URL: {type(exc).__name__}", url) from None
    for parser, other_host, other_port in views:
        other_host = other_host.lower().strip("[]")
        if bracketed:
            try:
                other_host = ipaddress.IPv6Address(other_host).compressed
            except ValueError:
                pass
        if other_host != host or (other_port or DEFAULT_PORTS[scheme]) != effective:
            raise _refuse(f"URL is read as host {other_host!r} by {parser} but {host!r} by urllib.parse", url)
    return ParsedUrl(url=url, scheme=scheme, host=host, port=effective)


# -- rules ---------------------------------------------------------------------------------

def _suffix_match(host: str, pattern: str) -> bool:
    if pattern.startswith("."):
        return host == pattern[1:] or host.endswith(pattern)
    return host == pattern


def is_public_hub(host: str) -> bool:
    """True for huggingface.co, civitai.com/.red and their CDN/storage hosts."""
    return any(_suffix_match(host.lower(), p) for p in PUBLIC_HUB_HOSTS)


@dataclass(frozen=True)
class HostRule:
    """One allow-list entry: ``host`` (a leading '.' also matches sub-domains), ``port``
    (``None`` = the scheme's default port, ``ANY_PORT`` = any) and the schemes it allows."""

    host: str
    port: Optional[int]
    schemes: Tuple[str, ...] = ("https", "http")

    @property
    def exact(self) -> bool:
        """Names one host (not a sub-domain pattern)."""
        return not self.host.startswith(".")

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if scheme not in self.schemes or not _suffix_match(host, self.host):
            return False
        if self.port == ANY_PORT:
            return True
        return port == (self.port if self.port is not None else DEFAULT_PORTS[scheme])


def parse_rule(entry: str) -> Optional[HostRule]:
    """A ``HostRule`` from an allow-list entry (see the module docstring); None when empty."""
    entry = (entry or "").strip().lower()
    if not entry:
        return None
    if "://" in entry:
        parsed = parse_url(entry)
        return HostRule(parsed.host, parsed.port, (parsed.scheme,))
    port: Optional[int] = None
    host = entry
    if entry.startswith("["):
        inner, _, tail = entry[1:].partition("]")
        host = inner
        if tail.startswith(":"):
            port = _rule_port(tail[1:], entry)
    elif entry.count(":") == 1:
        host, raw = entry.split(":")
        port = _rule_port(raw, entry)
    host = host.rstrip(".")
    schemes = ("https",) if is_public_hub(host) else ("https", "http")
    return HostRule(host, port, schemes)


def _rule_port(raw: str, entry: str) -> int:
    if raw == "*":
        return ANY_PORT
    if raw.isdigit() and 0 < int(raw) < 65536:
        return int(raw)
    raise HostNotAllowedError(f"allow-list entry {entry!r} has a bad port")


@dataclass(frozen=True)
class UrlPolicy:
    """Which origins may be fetched: the configured endpoints and the allow-list rules."""

    endpoints: Tuple[Tuple[str, str, int], ...] = ()
    rules: Tuple[HostRule, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str], endpoints: Iterable[str] = ()) -> "UrlPolicy":
        origins = []
        for url in endpoints:
            try:
                origins.append(parse_url(url).origin)
            except HostNotAllowedError:
                continue  # a malformed endpoint allows nothing
        rules = []
        for entry in entries:
            try:
                rule = parse_rule(entry)
            except HostNotAllowedError:
                continue
            if rule is not None:
                rules.append(rule)
        return cls(tuple(origins), tuple(rules))

    def is_endpoint(self, scheme: str, host: str, port: int) -> bool:
        return (scheme, host, port) in self.endpoints

    def allows(self, parsed: ParsedUrl) -> bool:
        if self.is_endpoint(*parsed.origin):
            return True
        if is_public_hub(parsed.host) and parsed.scheme != "https":
            return False
        return any(rule.matches(*parsed.origin) for rule in self.rules)

    def may_be_local(self, host: str, port: int, scheme: Optional[str] = None) -> bool:
        """True when this exact host:port was configured (an endpoint, or an entry naming this
        host with this port or ``*``): only then may it resolve to a loopback/private address."""
        host = host.lower().rstrip(".")
        if any(h == host and p == port and (scheme is None or s == scheme) for s, h, p in self.endpoints):
            return True
        for rule in self.rules:
            if not rule.exact or rule.host != host:
                continue
            schemes = (scheme,) if scheme else rule.schemes
            if any(s in rule.schemes and rule.matches(s, host, port) for s in schemes):
                return True
        return False


#: the Config fields that name endpoints (each allows its own scheme, host and port)
ENDPOINT_SETTINGS = ("civitai_base_url", "hf_endpoint", "index_refresh_url")


def policy_for(config) -> UrlPolicy:
    """The policy of a ``Config``: its endpoints and ``allowed_hosts`` (read at each call: a
    setting changed in the panel applies to the next request)."""
    endpoints = tuple(getattr(config, name) for name in ENDPOINT_SETTINGS if getattr(config, name, None))
    return _policy(tuple(config.allowed_hosts), endpoints)


@functools.lru_cache(maxsize=64)
def _policy(entries: Tuple[str, ...], endpoints: Tuple[str, ...]) -> UrlPolicy:
    # parsing the endpoints costs ~0.5 ms; every request and connection asks for the policy
    return UrlPolicy.from_entries(entries, endpoints)


def check_url(url: str, policy: Optional[UrlPolicy] = None) -> str:
    """Return ``url`` (stripped) if it may be fetched, else raise ``HostNotAllowedError``.

    With ``policy=None`` only the form is checked (for URLs that are stored, not fetched).
    """
    parsed = parse_url(url)
    if policy is None or policy.allows(parsed):
        return parsed.url
    if is_public_hub(parsed.host) and parsed.scheme != "https":
        raise _refuse(f"{parsed.host} is only fetched over https", parsed.url)
    where = parsed.host if ":" not in parsed.host else f"[{parsed.host}]"
    raise _refuse(f"host {where}:{parsed.port} is not allowed (add it to COMFYFIXER_ALLOWED_HOSTS "
                  f"as host, host:port or host:* to trust it)", parsed.url)


def url_allowed(url: str, config) -> bool:
    """``check_url`` as a yes/no answer for a ``Config``."""
    try:
        check_url(url, policy_for(config))
    except HostNotAllowedError:
        return False
    return True
