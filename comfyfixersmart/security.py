"""Guards for untrusted input: file names, paths, URLs, hosts and secrets.

Every file name that comes from a workflow, a server (Content-Disposition, URL path) or an
HTTP request passes ``validate_relative_path`` once; every final path passes
``safe_join`` (a ``commonpath`` check against its folder).  Tokens are attached only by
``auth_headers_for`` (to their own host) and scrubbed from text by ``redact_text``.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, Optional, Set
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from .errors import UnsafePathError
from .net.urls import UrlPolicy
from .net.urls import check_url as _check_url

_WINDOWS_RESERVED = {
    "con", "prn", "aux", "nul", "conin$", "conout$",
    *(f"com{i}" for i in range(1, 10)),
    *(f"lpt{i}" for i in range(1, 10)),
    # Windows also takes the superscript digits 1-3 as device numbers ("COM\u00b9" is COM1)
    *(f"{dev}{sup}" for dev in ("com", "lpt") for sup in "\u00b9\u00b2\u00b3"),
}
_BAD_CHARS = set('<>:"|?*') | {chr(i) for i in range(32)} | {"\x7f"}
#: bidi controls make a name display as something else ("x\u202egnp.ckpt" shows as
#: "xtpck.png"): a pickle could pass for a safetensors file in the panel or a terminal
_SPOOF_CHARS = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
_MAX_COMPONENT = 255
_MAX_PATH = 1024


def validate_relative_path(name: str, *, allow_subdirs: bool = True) -> str:
    """Return ``name`` normalised to a safe relative ``a/b.ext`` path or raise UnsafePathError.

    Rejects: empty names, NUL/control characters, absolute paths, drive letters, UNC paths,
    ``..`` or ``.`` components, Windows reserved names (``CON``, ``nul.txt``...), characters
    Windows forbids, components ending in a dot or space, over-long names.  Backslashes are
    treated as separators (workflows written on Windows use them).
    """
    if not isinstance(name, str):
        raise UnsafePathError(f"file name must be a string, got {type(name).__name__}")
    raw = unicodedata.normalize("NFC", name).strip()
    if not raw:
        raise UnsafePathError("empty file name")
    if "\0" in raw:
        raise UnsafePathError("file name contains a NUL byte")
    unified = raw.replace("\\", "/")
    if unified.startswith("/") or unified.startswith("//"):
        raise UnsafePathError(f"absolute path not allowed: {name!r}")
    if re.match(r"^[A-Za-z]:", unified):
        raise UnsafePathError(f"drive letter not allowed: {name!r}")
    parts = [p for p in unified.split("/") if p != ""]
    if not parts:
        raise UnsafePathError(f"no file name in {name!r}")
    if not allow_subdirs and len(parts) > 1:
        raise UnsafePathError(f"sub-folders not allowed here: {name!r}")
    for part in parts:
        if part in (".", ".."):
            raise UnsafePathError(f"'{part}' component not allowed: {name!r}")
        if any(c in _BAD_CHARS for c in part):
            raise UnsafePathError(f"forbidden character in file name: {name!r}")
        if any(c in _SPOOF_CHARS for c in part):
            raise UnsafePathError(f"bidirectional control character in file name: {name!r}")
        if part.endswith((".", " ")):
            raise UnsafePathError(f"component may not end with a dot or space: {name!r}")
        # Windows ignores trailing spaces of the stem too: "nul .txt" is the NUL device
        if part.split(".")[0].rstrip(" ").lower() in _WINDOWS_RESERVED:
            raise UnsafePathError(f"reserved device name: {name!r}")
        if len(part.encode("utf-8")) > _MAX_COMPONENT:
            raise UnsafePathError(f"file name component too long: {name[:60]!r}...")
    result = "/".join(parts)
    if len(result) > _MAX_PATH:
        raise UnsafePathError("path too long")
    return result


def exact_relative_path(name: str) -> str:
    """``name`` as a safe ``a/b.ext`` path (``validate_relative_path``'s checks) *spelled as
    given*: no Unicode normalisation.  ComfyUI compares a widget's value with the names
    ``os.walk`` lists, character for character, so an NFD name and its NFC twin are two files;
    only the separators are unified (``\\`` -> ``/``) and empty components dropped."""
    safe = validate_relative_path(name)
    parts = [p for p in name.strip().replace("\\", "/").split("/") if p]
    spelled = "/".join(parts)
    # the checks ran on the NFC form: keep the given spelling only when it is the same path
    return spelled if unicodedata.normalize("NFC", spelled) == safe else safe


def safe_join(root: os.PathLike | str, relative: str) -> Path:
    """``root / relative`` after validation, guaranteed to stay inside ``root``.

    Symlinks inside ``root`` that point outside are refused too (the check is done on the
    resolved path of the deepest existing ancestor).
    """
    rel = exact_relative_path(relative)  # a file saved under the name the workflow spells
    base = Path(root).expanduser().resolve()
    target = base.joinpath(*PurePosixPath(rel).parts)
    probe = target
    # a dangling symlink "exists" for writing purposes: resolve it too (lexists, not exists)
    while not os.path.lexists(probe) and probe != base and probe.parent != probe:
        probe = probe.parent
    resolved_probe = probe.resolve()
    for candidate in (str(target), str(resolved_probe)):
        try:
            inside = os.path.commonpath([str(base), candidate]) == str(base)
        except ValueError:  # different drives on Windows
            inside = False
        if not inside:
            raise UnsafePathError(f"{relative!r} leaves its folder")
    return target


def host_matches(host: str, allowed: Iterable[str]) -> bool:
    """True if the name ``host`` is in ``allowed``; entries starting with '.' match any
    sub-domain.  A name test only (no scheme or port): a fetch is decided by ``check_url``."""
    host = (host or "").lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().strip()
        if not entry:
            continue
        if entry.startswith("."):
            if host.endswith(entry) or host == entry[1:]:
                return True
        elif host == entry:
            return True
    return False


def check_url(url: str, allowed_hosts: Optional[Iterable[str] | UrlPolicy] = None) -> str:
    """Return ``url`` if it may be fetched (``net.urls.check_url``, the one URL policy).

    ``allowed_hosts`` is a ``UrlPolicy`` or allow-list entries (``host``, ``.domain``,
    ``host:port``, ``host:*``); with None only the form is checked.  To check against a
    ``Config`` (endpoints included) pass ``net.urls.policy_for(config)``.
    """
    policy = allowed_hosts
    if allowed_hosts is not None and not isinstance(allowed_hosts, UrlPolicy):
        policy = UrlPolicy.from_entries(allowed_hosts)
    return _check_url(url, policy)  # type: ignore[arg-type]


def same_origin(a: str, b: str) -> bool:
    """True when two URLs share scheme, host and port."""
    pa, pb = urlsplit(a), urlsplit(b)

    def port(p) -> Optional[int]:
        return p.port or {"http": 80, "https": 443}.get(p.scheme.lower())

    return (pa.scheme.lower(), (pa.hostname or "").lower(), port(pa)) == (
        pb.scheme.lower(), (pb.hostname or "").lower(), port(pb))


def auth_headers_for(url: str, config) -> Dict[str, str]:
    """The Authorization header for ``url``: the Civitai token only for the Civitai base URL's
    origin, the HF token only for the HF endpoint's origin (same scheme, host and port, so a
    token never travels over plain http to a https endpoint); nothing for any other URL."""
    try:
        if config.civitai_token and same_origin(url, config.civitai_base_url):
            return {"Authorization": f"Bearer {config.civitai_token}"}
        if config.hf_token and same_origin(url, config.hf_endpoint):
            return {"Authorization": f"Bearer {config.hf_token}"}
    except ValueError:  # a malformed port: certainly not our endpoint
        pass
    return {}


# -- secrets -----------------------------------------------------------------------------

_secrets: Set[str] = set()
_secrets_lock = threading.Lock()
_SECRET_PARAMS = {"token", "key", "api_key", "apikey", "api-key", "access_token", "access-token", "hf_token",
                  "civitai_token", "sig", "signature", "x-amz-signature", "x-amz-credential",
                  "x-amz-security-token", "auth", "password"}


def register_secret(value: Optional[str]) -> None:
    """Remember a secret so ``redact_text`` removes it wherever it appears."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact_url(url: Optional[str]) -> Optional[str]:
    """``url`` without user:password and with token-like query values replaced by ``***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


#: signed-URL parameters: the URL's own one-off capability, not one of our tokens
_SIGNATURE_PARAMS = frozenset({"sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token"})


def is_secret_param(name: str) -> bool:
    """True for a query parameter name that carries a secret (``token``, ``hf_token``...)."""
    return str(name).strip().lower() in _SECRET_PARAMS


def strip_secret_params(url: str, *, keep_signatures: bool = False) -> str:
    """``url`` without its secret query parameters (the ``redact_url`` list), so a token never
    travels in a URL (where proxies, servers and urllib3's DEBUG log would see it).

    The other parameters are kept byte for byte.  ``keep_signatures=True`` keeps the
    parameters of a pre-signed URL (``X-Amz-Signature``...), which cannot work without them.
    """
    if not url or "?" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url  # malformed: check_url refuses it before any request
    if not parts.query:
        return url

    def secret(item: str) -> bool:
        name = unquote_plus(item.split("=", 1)[0]).strip().lower()
        return name in _SECRET_PARAMS and not (keep_signatures and name in _SIGNATURE_PARAMS)

    kept = [item for item in parts.query.split("&") if item and not secret(item)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), parts.fragment))


_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_QUERY_SECRET = re.compile(
    r"(?i)([?&](?:" + "|".join(re.escape(p) for p in sorted(_SECRET_PARAMS, key=len, reverse=True))
    + r")=)[^&\s\"']+")
#: ``scheme://user:password@`` inside free text (a URL quoted in a message)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@\"']+:[^/\s@\"']*@")
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


def redact_text(text: str) -> str:
    """Remove registered secrets and token-shaped strings from free text."""
    if not text:
        return text
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = _QUERY_SECRET.sub(r"\1***", text)
    text = _URL_USERINFO.sub(r"\1***@", text)
    text = _HF_TOKEN.sub("hf_***", text)
    return text
