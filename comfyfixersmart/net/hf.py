"""huggingface_hub's HTTP through our policy, for our calls only.

huggingface_hub (2.x, httpx2) sends every request through one process-wide client
(``huggingface_hub.get_session()``); ``HfApi`` takes no client per call.  So, once, that
client's ``_transport_for_url`` is wrapped (``install``): inside ``hf_scope(session,
config)`` (a context variable: this thread/task only) it returns ``PolicyTransport``, which
sends each request, each redirect hop included, through ``session.send`` (URL policy,
connect-time address check, env proxies) with our token rules.  Outside the scope the
client's own transport is used unchanged, so other custom nodes in the ComfyUI process keep
huggingface_hub's behaviour and their own ``set_client_factory``.

Process-wide effects, documented: the wrapper on the shared client's ``_transport_for_url``
(re-applied to a new shared client when another node replaces it) and
``HF_HUB_DISABLE_TELEMETRY`` set to 1 if unset.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from typing import Any, Iterator, Optional

import requests

from ..errors import HostNotAllowedError
from ..security import auth_headers_for
from .session import send, short_reason

_ACTIVE: contextvars.ContextVar[Optional[Any]] = contextvars.ContextVar("comfyfixer_hf_transport", default=None)
_install_lock = threading.Lock()
#: request headers not handed to requests: it sets them itself for the URL it connects to
_DROP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "authorization", "cookie"}
#: timeout of a huggingface_hub call that gives none (its shared client has no default)
DEFAULT_TIMEOUT = 60.0


def hub():
    """``huggingface_hub``, imported on first use with telemetry off."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import huggingface_hub
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_TELEMETRY = True  # in case it was imported before the env var
    return huggingface_hub


def install() -> Any:
    """Make huggingface_hub's shared client defer to ``hf_scope``; returns that client."""
    client = hub().get_session()
    if getattr(client, "_comfyfixer_scoped", False):
        return client
    with _install_lock:
        if getattr(client, "_comfyfixer_scoped", False):
            return client
        original = client._transport_for_url  # huggingface_hub 1.x/2.x: httpx(2).Client

        def transport_for_url(url):
            ours = _ACTIVE.get()
            return ours if ours is not None else original(url)

        client._transport_for_url = transport_for_url
        client._comfyfixer_scoped = True
    return client


@contextlib.contextmanager
def hf_scope(session: requests.Session, config) -> Iterator[None]:
    """huggingface_hub calls made in this block (this thread) go through ``session`` and the
    policy of ``config``."""
    token = _ACTIVE.set(PolicyTransport(session, config))
    try:
        install()
        yield
    finally:
        _ACTIVE.reset(token)


class _Body:
    """An httpx2 byte stream reading a streamed requests response as sent (httpx2 decodes)."""

    def __init__(self, response: requests.Response):
        self._response = response

    def __iter__(self):
        yield from self._response.raw.stream(65536, decode_content=False)

    def close(self) -> None:
        self._response.close()


def _make_transport_class():
    import httpx2

    class _PolicyTransport(httpx2.BaseTransport):
        def __init__(self, session: requests.Session, config):
            self.session = session
            self.config = config
            #: requests sent (tests check that huggingface_hub's calls came through here)
            self.requests = 0

        def handle_request(self, request):  # type: ignore[override]
            self.requests += 1
            url = str(request.url)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_HEADERS}
            # the HF token goes to the HF endpoint's origin only, whatever huggingface_hub added
            headers.update(auth_headers_for(url, self.config))
            timeouts = request.extensions.get("timeout") or {}
            default = float(getattr(self.config, "civitai_api_timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT)
            timeout = (timeouts.get("connect") or default, timeouts.get("read") or default)
            try:
                response = send(self.session, request.method, url, self.config, headers=headers,
                                data=request.read() or None, stream=True, timeout=timeout)
            except HostNotAllowedError:
                raise
            except requests.ConnectTimeout as exc:
                raise httpx2.ConnectTimeout(short_reason(exc), request=request) from None
            except requests.Timeout as exc:
                raise httpx2.ReadTimeout(short_reason(exc), request=request) from None
            except requests.ConnectionError as exc:
                raise httpx2.ConnectError(short_reason(exc), request=request) from None
            except requests.RequestException as exc:
                raise httpx2.TransportError(short_reason(exc), request=request) from None
            raw_headers = getattr(response.raw.headers, "iteritems", response.raw.headers.items)()
            stream = type("_Stream", (_Body, httpx2.SyncByteStream), {})(response)
            return httpx2.Response(response.status_code, headers=list(raw_headers), stream=stream,
                                   extensions={"http_version": b"HTTP/1.1",
                                               "reason_phrase": (response.reason or "").encode("latin-1", "replace")},
                                   request=request)

    return _PolicyTransport


_transport_class = None


def PolicyTransport(session: requests.Session, config):  # noqa: N802 - a class, built on first use
    """An httpx2 transport sending through ``net.session.send`` (httpx2 imported lazily)."""
    global _transport_class
    if _transport_class is None:
        _transport_class = _make_transport_class()
    return _transport_class(session, config)
