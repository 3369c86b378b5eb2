"""Server-side store of the settings the panel may change: API tokens and min_confidence.

Kept in ``<state_dir>/server-settings.json`` with mode 0600.  The page can set or clear a
token but never read it back: ``public_view`` only says whether one is set.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ..errors import StateError, ValidationError
from ..fileutils import atomic_write_bytes
from ..logs import get_logger
from ..security import register_secret
from ..settings import Config

log = get_logger(__name__)

TOKEN_FIELDS = ("civitai_token", "hf_token")
_MAX_TOKEN_LEN = 4096


@dataclass
class StoredSettings:
    """What the panel stored; ``None`` means "not set here, use the Config's value"."""

    civitai_token: Optional[str] = None
    hf_token: Optional[str] = None
    min_confidence: Optional[float] = None


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
        cleaned: Dict[str, Any] = {}
        for key, value in changes.items():
            cleaned[key] = clean_min_confidence(value) if key == "min_confidence" else clean_token(key, value)
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
                   if getattr(stored, f.name) is not None}
        return config.replace(**changes) if changes else config

    def public_view(self, config: Config) -> Dict[str, Any]:
        """``{"civitai_token_set", "hf_token_set", "min_confidence"}``: never a token value."""
        effective = self.apply(config)
        return {
            "civitai_token_set": bool(effective.civitai_token),
            "hf_token_set": bool(effective.hf_token),
            "min_confidence": effective.min_confidence,
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
            stored = StoredSettings(
                civitai_token=clean_token("civitai_token", data.get("civitai_token")),
                hf_token=clean_token("hf_token", data.get("hf_token")),
                min_confidence=clean_min_confidence(data.get("min_confidence")),
            )
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
