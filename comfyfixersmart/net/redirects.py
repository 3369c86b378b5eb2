"""The one redirect policy: redirects are followed here, hop by hop, never by requests.

Every hop passes the URL policy (``send`` checks it) and the connect-time address check,
and gets its headers rebuilt: the token from ``auth_headers_for`` goes only to its own
endpoint's origin, caller-given credentials (``Authorization``, ``Cookie``...) only to the
first URL's origin.  A 303 turns the method into GET (HEAD stays HEAD).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional
from urllib.parse import urljoin

import requests

from ..errors import DownloadCancelledError, DownloadError
from ..security import auth_headers_for, redact_url, same_origin
from .session import Timeout, send
from .urls import check_url, policy_for

MAX_REDIRECTS = 10
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_CREDENTIAL_HEADERS = {"authorization", "cookie", "proxy-authorization"}


@dataclass
class Followed:
    """The last answer of a redirect chain."""

    response: requests.Response
    #: the URL that answered (may hold a signed query: never log or store it unredacted)
    url: str
    #: redacted URLs of the hops that redirected
    hops: List[str] = field(default_factory=list)


def hop_headers(first: str, current: str, extra: Optional[Mapping[str, str]], config) -> Dict[str, str]:
    """Headers for a request to ``current`` in a chain that started at ``first``."""
    out: Dict[str, str] = {}
    for key, value in (extra or {}).items():
        if key.lower() in _CREDENTIAL_HEADERS and not same_origin(first, current):
            continue  # caller credentials never follow a redirect to another origin
        out[key] = value
    # auth_headers_for only answers for the Civitai base URL / HF endpoint origins
    out.update(auth_headers_for(current, config))
    return out


def follow(session: requests.Session, url: str, config, *, method: str = "GET",
           headers: Optional[Mapping[str, str]] = None, params: Any = None, stream: bool = True,
           timeout: Optional[Timeout] = None, cancel: Optional[threading.Event] = None,
           on_response: Optional[Callable[[requests.Response], None]] = None) -> Followed:
    """``method`` ``url`` (with ``params``), following up to ``MAX_REDIRECTS`` redirects, each
    hop checked.  Returns the first non-redirect answer (whatever its status: see
    ``status.raise_for_status``); ``on_response`` sees every answer, redirects included."""
    if params:
        prepared = requests.models.PreparedRequest()
        prepared.prepare_url(check_url(url), params)
        url = prepared.url or url
    first = check_url(url, policy_for(config))
    current = first
    hops: List[str] = []
    for _hop in range(MAX_REDIRECTS + 1):
        if cancel is not None and cancel.is_set():
            raise DownloadCancelledError("cancelled", url=redact_url(first))
        response = send(session, method, current, config, headers=hop_headers(first, current, headers, config),
                        stream=stream, timeout=timeout, cancel=cancel)
        if on_response is not None:
            on_response(response)
        location = response.headers.get("Location") if response.status_code in REDIRECT_STATUSES else None
        if not location:
            return Followed(response, current, hops)
        response.close()
        hops.append(redact_url(current) or "")
        if response.status_code == 303 and method != "HEAD":
            method = "GET"
        current = urljoin(current, location)
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects", url=redact_url(first))
