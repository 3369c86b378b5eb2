"""Server-side store of the settings the panel (and ComfyUI's Settings dialog) may change.

API tokens (write-only), min_confidence, download_concurrency, host allow-list additions,
the Hugging Face endpoint or mirror, a proxy, auto_resume, allow_pickle and
embed_after_download.  Kept in ``<state_dir>/server-settings.json`` with mode 0600.  The
page can set or clear a token but never read it back: ``public_view`` only says whether one
is set.  Values are checked like ``Config``'s own (``settings.py``); ``None`` clears.
"""

from __future__ import annotations

import json
import os
import threading
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from ..errors import ConfigurationError, StateError, ValidationError
from ..fileutils import atomic_write_bytes
from ..logs import get_logger
from ..security import register_secret
from ..settings import Config, _as_bool, _as_http_url, _as_int

log = get_logger(__name__)

TOKEN_FIELDS = ("civitai_token", "hf_token")
_MAX_TOKEN_LEN = 4096


@dataclass
class StoredSettings:
    """What the panel stored; ``None`` means "not set here, use the Config's value"."""

    civitai_token: Optional[str] = None
    hf_token: Optional[str] = None
    min_confidence: Optional[float] = None
    download_concurrency: Optional[int] = None
    #: hosts added to the Config's allow-list (``host``, ``.domain`` or ``host:port``)
    allowed_hosts_extra: Optional[List[str]] = None
    hf_endpoint: Optional[str] = None
    proxy: Optional[str] = None
    auto_resume: Optional[bool] = None
    allow_pickle: Optional[bool] = None
    embed_after_download: Optional[bool] = None


def clean_token(name: str, value: Any) -> Optional[str]:
    """A token as stored: ``None``/empty clears; otherwise one line of printable ASCII."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string or null")
    value = value.strip()
    if not value:
        return None
    if len(value) > _MAX_TOKEN_LEN or not all(33 <= ord(c) < 127 for c in value):
        # tokens of both hubs are short printable ASCII; anything else is a paste accident
        raise ValidationError(f"{name} must be a single word of printable ASCII characters")
    return value


def clean_min_confidence(value: Any) -> Optional[float]:
    """``None`` clears; otherwise a number in 0..1 (the 0.8 floor is applied when choosing)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError("min_confidence must be a number between 0 and 1")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValidationError("min_confidence must be a number between 0 and 1")
    return number


_HOST = re.compile(r"^\.?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
                   r"(?::[0-9]{1,5})?$")
_MAX_HOSTS = 50


def clean_hosts(value: Any) -> Optional[List[str]]:
    """``None``/empty clears; else host names (``.domain`` matches sub-domains; ``:port`` optional)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("allowed_hosts_extra must be a list of host names")
    out: List[str] = []
    for raw in value:
        host = raw.strip().lower()
        if not host:
            continue
        if len(host) > 253 or not _HOST.match(host) or (":" in host and not 0 < int(host.rsplit(":", 1)[1]) < 65536):
            raise ValidationError(f"allowed_hosts_extra: {raw[:60]!r} is not a host name (no scheme, path or '*')")
        if host not in out:
            out.append(host)
    if len(out) > _MAX_HOSTS:
        raise ValidationError(f"allowed_hosts_extra: at most {_MAX_HOSTS} hosts")
    return out or None


def _config_check(name: str, check: Callable[..., Any], *args: Any) -> Callable[[Any], Any]:
    """A cleaner from a ``settings.py`` check: ``None``/"" clears, a bad value is a ValidationError."""

    def clean(value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            return check(name, value, *args)
        except ConfigurationError as exc:
            raise ValidationError(str(exc)) from None

    return clean


def _strict_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(name, f"expected a whole number, got {value!r}")
    return _as_int(name, value, low, high)


def _strict_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(name, f"expected true or false, got {value!r}")
    return _as_bool(name, value)


CLEANERS: Dict[str, Callable[[Any], Any]] = {
    "civitai_token": lambda v: clean_token("civitai_token", v),
    "hf_token": lambda v: clean_token("hf_token", v),
    "min_confidence": lambda v: clean_min_confidence(v),
    "download_concurrency": _config_check("download_concurrency", _strict_int, 1, 64),
    "allowed_hosts_extra": clean_hosts,
    "hf_endpoint": _config_check("hf_endpoint", _as_http_url),
    "proxy": _config_check("proxy", _as_http_url),
    "auto_resume": _config_check("auto_resume", _strict_bool),
    "allow_pickle": _config_check("allow_pickle", _strict_bool),
    "embed_after_download": _config_check("embed_after_download", _strict_bool),
}
#: what ``POST /comfyfixer/settings`` accepts
SETTING_NAMES = tuple(f.name for f in fields(StoredSettings))


class TokenStore:
    """Thread-safe reader/writer of the server settings file."""

    FILENAME = "server-settings.json"

    def __init__(self, state_dir: os.PathLike | str):
        self.path = Path(state_dir) / self.FILENAME
        self._lock = threading.Lock()
        self._cached: Optional[StoredSettings] = None

    def load(self) -> StoredSettings:
        """The stored settings (an empty set if the file does not exist yet)."""
        with self._lock:
            return self._load_locked()

    def update(self, changes: Mapping[str, Any]) -> StoredSettings:
        """Apply ``changes`` (only the keys present; ``None`` clears) and save atomically."""
        unknown = sorted(set(changes) - {f.name for f in fields(StoredSettings)})
        if unknown:
            raise ValidationError(f"unknown setting {unknown[0]!r}")
        cleaned: Dict[str, Any] = {key: CLEANERS[key](value) for key, value in changes.items()}
        with self._lock:
            current = self._load_locked()
            data = {f.name: getattr(current, f.name) for f in fields(StoredSettings)}
            data.update(cleaned)
            new = StoredSettings(**data)
            self._save_locked(new)
            self._cached = new
        for name in TOKEN_FIELDS:
            register_secret(getattr(new, name))
        return new

    def apply(self, config: Config) -> Config:
        """``config`` with the stored values put over it (tokens set in the panel win)."""
        stored = self.load()
        changes = {f.name: getattr(stored, f.name) for f in fields(StoredSettings)
                   if getattr(stored, f.name) is not None and f.name != "allowed_hosts_extra"}
        if stored.allowed_hosts_extra:
            changes["allowed_hosts"] = list(config.allowed_hosts) + [
                h for h in stored.allowed_hosts_extra if h not in config.allowed_hosts]
        return config.replace(**changes) if changes else config

    def public_view(self, config: Config) -> Dict[str, Any]:
        """The settings as the page shows them; tokens only as ``*_token_set``, never a value.
        ``allowed_hosts`` is the effective list (read-only), ``allowed_hosts_extra`` what the
        page added."""
        effective = self.apply(config)
        stored = self.load()
        return {
            "civitai_token_set": bool(effective.civitai_token),
            "hf_token_set": bool(effective.hf_token),
            "min_confidence": effective.min_confidence,
            "download_concurrency": effective.download_concurrency,
            "allowed_hosts_extra": list(stored.allowed_hosts_extra or []),
            "allowed_hosts": list(effective.allowed_hosts),
            "hf_endpoint": effective.hf_endpoint,
            "proxy": effective.proxy,
            "auto_resume": effective.auto_resume,
            "allow_pickle": effective.allow_pickle,
            "embed_after_download": effective.embed_after_download,
        }

    # -- file -------------------------------------------------------------------------------
    def _load_locked(self) -> StoredSettings:
        if self._cached is not None:
            return self._cached
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self._cached = StoredSettings()
            return self._cached
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
            stored = StoredSettings(**{name: CLEANERS[name](data.get(name)) for name in SETTING_NAMES})
        except (ValueError, UnicodeDecodeError) as exc:
            # keep the damaged file for the user instead of silently overwriting it later
            aside = self.path.with_name(self.path.name + ".corrupt")
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            log.warning("settings file %s is damaged (%s); moved to %s", self.path, type(exc).__name__, aside)
            stored = StoredSettings()
        for name in TOKEN_FIELDS:
            register_secret(getattr(stored, name))
        self._cached = stored
        return stored

    def _save_locked(self, stored: StoredSettings) -> None:
        data = {f.name: getattr(stored, f.name) for f in fields(StoredSettings)
                if getattr(stored, f.name) is not None}
        payload = (json.dumps(data, indent=2) + "\n").encode("utf-8")
        try:
            # mkstemp inside atomic_write_bytes creates the file 0600 before any byte is written
            target = atomic_write_bytes(self.path, payload, mode=0o600)
            os.chmod(target, 0o600)
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: {exc.strerror or exc}") from None
