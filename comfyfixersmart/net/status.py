"""The one status -> exception map: HTTP answers of Civitai, Hugging Face and file hosts.

``error_for_response`` reads the status, HF's ``X-Error-Code``/``X-Error-Message`` headers
and Civitai/HF error JSON; ``raise_for_status`` applies it to a ``requests.Response`` (a
download's 5xx becomes a ``DownloadError``, the 4xx classes are the same everywhere).
huggingface_hub's exceptions are mapped through it too (``search.huggingface``).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Tuple

from ..errors import (
    AccessDeniedError,
    APISearchError,
    AuthRequiredError,
    ComfyFixerError,
    DownloadError,
    EarlyAccessError,
    GatedRepoError,
    NotFoundError,
    RateLimitedError,
)
from ..security import redact_text, redact_url
from .retry import header, retry_after_seconds

_MAX_MESSAGE = 300
_TOKEN_HINTS = {"civitai": "set CIVITAI_API_TOKEN (civitai.com > Account settings > API keys)",
                "huggingface": "set HF_TOKEN", "download": "set CIVITAI_API_TOKEN or HF_TOKEN"}


def _server_message(body: Any) -> Tuple[str, Dict[str, Any]]:
    """Message and JSON fields of an error body (Civitai ``{"error", "message"}``, HF ``{"error"}``)."""
    data: Dict[str, Any] = {}
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        text = body.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
                if isinstance(parsed, dict):
                    data = parsed
            except ValueError:
                pass
        if not data:
            return (text if not text.startswith("<") else "")[:_MAX_MESSAGE], {}
    elif isinstance(body, dict):
        data = body
    parts = []
    for key in ("error", "message", "detail"):
        value = data.get(key)
        if isinstance(value, str) and value and value not in parts:
            parts.append(value)
    return ": ".join(parts)[:_MAX_MESSAGE], data


def error_for_response(
    status: int,
    *,
    headers: Optional[Mapping[str, str]] = None,
    body: Any = None,
    url: Optional[str] = None,
    backend: Optional[str] = None,
    help_url: Optional[str] = None,
) -> APISearchError:
    """Exception for a failed HTTP answer (status, headers, body) of Civitai or Hugging Face.

    ``help_url`` is the human page to send the user to (model page, repo page).  Nothing of
    the request's credentials can appear: the URL and message are redacted.
    """
    safe_url = redact_url(url)
    code = (header(headers, "X-Error-Code") or "").strip()
    hf_message = header(headers, "X-Error-Message") or ""
    message, data = _server_message(body)
    message = redact_text(hf_message or message)
    where = f"{backend or 'server'} answered {status}"
    detail = f"{where}: {message}" if message else where
    kw: Dict[str, Any] = dict(status=status, url=safe_url, backend=backend, help_url=help_url)
    text = " ".join(str(v) for v in (message, data.get("error", ""), data.get("reason", ""))).lower()

    if code == "GatedRepo" or (status in (401, 403) and "gated" in text):
        page = help_url or "the repository page"
        return GatedRepoError(
            f"gated repository: accept the licence at {page} with your account, then set HF_TOKEN "
            f"to a token of that account ({detail})",
            **kw,
        )
    if code in ("RepoNotFound", "EntryNotFound", "RevisionNotFound") and status != 401:
        return NotFoundError(detail, **kw)
    if status == 401 or code == "RepoNotFound":
        # HF answers 401 RepoNotFound for private/missing repos when anonymous
        hint = _TOKEN_HINTS.get(backend or "", "a token is needed")
        if code == "RepoNotFound":
            return NotFoundError(f"{detail} (missing, or private: {hint})", **kw)
        return AuthRequiredError(f"login required: {hint} ({detail})", **kw)
    if status == 403:
        deadline = data.get("deadline") or data.get("earlyAccessEndsAt")
        if deadline or "early access" in text or "early-access" in text:
            until = f" until {deadline}" if deadline else ""
            exc: APISearchError = EarlyAccessError(f"early access{until}: {detail}", **kw)
            setattr(exc, "deadline", deadline)
            return exc
        return AccessDeniedError(detail, **kw)
    if status in (404, 410):
        return NotFoundError(detail, **kw)
    if status == 429:
        return RateLimitedError(f"rate limited: {detail}", retry_after=retry_after_seconds(headers), **kw)
    exc = APISearchError(detail, **kw)
    if status >= 500:
        wait = retry_after_seconds(headers)
        if wait is not None:
            setattr(exc, "retry_after", wait)
    return exc


def raise_for_status(response, url: str, *, backend: str = "download", help_url: Optional[str] = None) -> None:
    """Raise the mapped exception for an error ``requests.Response`` (reads at most 4 KiB of
    its body); a status that is no 4xx class of ``error_for_response`` raises ``DownloadError``
    for ``backend="download"``."""
    status = response.status_code
    if status < 400:
        return
    try:
        body = response.raw.read(4096, decode_content=True) or b""
    except Exception:
        body = b""
    exc: ComfyFixerError = error_for_response(status, headers=response.headers, body=body,
                                              url=response.url or url, backend=backend, help_url=help_url)
    if backend == "download" and type(exc) is APISearchError:
        exc = DownloadError(str(exc), url=redact_url(url), status=status)
        wait = retry_after_seconds(response.headers)
        if wait is not None:
            setattr(exc, "retry_after", wait)
    raise exc
