"""Is it a model file?  Checks on the first bytes of a download, before it gets a model's name.

A server can answer ``200`` with a login page, an error page or a JSON message where a
model was asked for; saved as ``x.safetensors`` it would look like a success.  So:

* a body that is HTML or JSON text is refused for every model extension;
* ``.safetensors``/``.sft`` must start with a sane header: an 8-byte little-endian length
  (at most ``MAX_SAFETENSORS_HEADER``, within the file) followed by a JSON object (``{``);
* ``.gguf`` must start with the GGUF magic.

The engine runs ``check_head`` on the first bytes as they arrive (fail fast, from the start
of the file only: a Range resume is checked from the part file's start) and ``check_file``
on the part file before the rename.  A Civitai redirect to its login page means a token or
a login is needed (``AuthRequiredError`` with the link), not a model.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Optional
from urllib.parse import urlsplit

from ..errors import AuthRequiredError, NotAModelFileError
from ..security import redact_url
from .fileio import pread

#: the model extensions whose bodies are checked
MODEL_EXTENSIONS = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
#: safetensors' own reader refuses headers above 100 MB
MAX_SAFETENSORS_HEADER = 100 * 1000 * 1000
GGUF_MAGIC = b"GGUF"
#: bytes needed to decide (fewer are enough when the body is shorter)
HEAD_BYTES = 64

_MARKUP = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"<!--", b"<script", b"<title", b"<meta")
_LOGIN_PATHS = ("/login", "/api/auth/signin")


def is_checked(name: str) -> bool:
    """True for a file name whose content is checked (a model extension)."""
    return name.lower().endswith(MODEL_EXTENSIONS)


def check_head(name: str, head: bytes, *, total: Optional[int] = None, ended: bool = False,
               content_type: Optional[str] = None) -> bool:
    """Check the first bytes of the file ``name``; True once decided, False to wait for more
    (fewer than ``HEAD_BYTES`` and the body goes on).  Raises ``NotAModelFileError``.

    ``total`` is the file's full size when known (a safetensors header must fit in it).
    """
    if not is_checked(name):
        return True
    if len(head) < HEAD_BYTES and not ended:
        return False
    ext = os.path.splitext(name.lower())[1]
    kind = _text_kind(head)
    if kind is not None:
        shown = f" ({content_type.split(';')[0].strip()})" if content_type else ""
        raise NotAModelFileError(
            f"{name}: the server sent {kind}{shown} instead of the model file: a login page, an "
            f"error message or a moved file; nothing was saved. Starts with: {_preview(head)}")
    if ext in (".safetensors", ".sft"):
        _check_safetensors_head(name, head, total)
    elif ext == ".gguf" and head[:4] != GGUF_MAGIC:
        raise NotAModelFileError(f"{name}: not a GGUF file (it starts with {head[:4]!r}, not {GGUF_MAGIC!r})")
    return True


def check_file(name: str, fd: int, size: int) -> None:
    """``check_head`` on a written file (the part file, before the rename), read via ``fd``
    from its start, plus the whole safetensors header: it must parse as a JSON object."""
    if not is_checked(name):
        return
    head = pread(fd, HEAD_BYTES, 0)
    check_head(name, head, total=size, ended=True)
    if name.lower().endswith((".safetensors", ".sft")) and size >= 8:
        (length,) = struct.unpack("<Q", head[:8])
        raw = pread(fd, length, 8)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            header = None
        if not isinstance(header, dict):
            raise NotAModelFileError(f"{name}: the safetensors header is not a JSON object; not a model file")


def check_not_login(opened_url: str, config) -> None:
    """Raise ``AuthRequiredError`` when the redirects ended on Civitai's login page."""
    parts = urlsplit(opened_url)
    host = (parts.hostname or "").lower()
    civitai = (urlsplit(config.civitai_base_url).hostname or "").lower()
    if not (host == civitai or host.endswith(("civitai.com", "civitai.red"))):
        return
    if not parts.path.rstrip("/").lower().startswith(_LOGIN_PATHS):
        return
    raise AuthRequiredError(
        f"Civitai wants a login for this file: log in at {redact_url(opened_url)} or set "
        "CIVITAI_API_TOKEN (an API key from civitai.com/user/account)",
        status=401, url=redact_url(opened_url), backend="download")


def _text_kind(head: bytes) -> Optional[str]:
    """'an HTML page' / 'a JSON message' / None for the first bytes of a body."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip(b" \t\r\n")  # BOM, whitespace
    if not text:
        return None
    lowered = text[:16].lower()
    if lowered.startswith(_MARKUP):
        return "an HTML page"
    if text[:1] in (b"{", b"[") and _is_text(head):
        # a safetensors file starts with a binary length: its first 8 bytes are never all text
        return "a JSON message"
    return None


def _is_text(data: bytes) -> bool:
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(data) - 3:  # a character cut at the end of the sample is fine
            return False
        decoded = data[:exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n" for c in decoded)


def _check_safetensors_head(name: str, head: bytes, total: Optional[int]) -> None:
    if len(head) < 9:
        raise NotAModelFileError(f"{name}: {len(head)} bytes is too short for a safetensors file")
    (length,) = struct.unpack("<Q", head[:8])
    if length < 2 or length > MAX_SAFETENSORS_HEADER:
        raise NotAModelFileError(
            f"{name}: not a safetensors file (its header length would be {length} bytes); "
            f"starts with: {_preview(head)}")
    if total is not None and 8 + length > total:
        raise NotAModelFileError(
            f"{name}: not a safetensors file (a {length}-byte header in a {total}-byte file)")
    if head[8:9] != b"{":
        raise NotAModelFileError(f"{name}: not a safetensors file (its header is not a JSON object)")


def _preview(head: bytes) -> str:
    text = head[:40].decode("utf-8", "replace")
    return repr("".join(c if c.isprintable() else "." for c in text))
