"""On-disk cache of API responses (SQLite, one table, entries expire after a TTL).

A second run over the same workflows answers from here and sends no request.  The cache is
an optimisation only: if the database cannot be opened or written, it logs once and turns
itself off rather than failing a search.  Values are JSON; keys never contain tokens (only a
short fingerprint of the Authorization header, so answers seen with and without a token are
kept apart).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Optional

from ..logs import get_logger

log = get_logger(__name__)

#: returned by ``get`` when there is no fresh entry (``None`` is a valid cached value)
MISS: Any = object()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
)
"""


class ResponseCache:
    """Thread-safe SQLite key -> JSON cache with per-entry expiry."""

    FILENAME = "search-cache.sqlite3"

    def __init__(self, path: Path, ttl: int = 24 * 3600, negative_ttl: Optional[int] = None, enabled: bool = True):
        self.path = Path(path)
        self.ttl = int(ttl)
        #: 404s are remembered for less time than answers: the file may be uploaded soon
        self.negative_ttl = int(negative_ttl if negative_ttl is not None else min(self.ttl, 3600))
        self.enabled = enabled and self.ttl > 0
        self._conn: Optional[sqlite3.Connection] = None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        #: time source (replaceable in tests to age entries without sleeping)
        self.clock = time.time

    @classmethod
    def for_config(cls, config) -> "ResponseCache":
        """The cache in ``config.cache_dir``, honouring ``cache_enabled`` and ``cache_ttl``."""
        return cls(Path(config.cache_dir) / cls.FILENAME, ttl=config.cache_ttl, enabled=config.cache_enabled)

    @staticmethod
    def auth_fingerprint(authorization: Optional[str]) -> str:
        """``anon`` or a short hash of the Authorization header (never the token itself)."""
        if not authorization:
            return "anon"
        return hashlib.sha256(authorization.encode("utf-8")).hexdigest()[:12]

    # -- connection ---------------------------------------------------------------
    def _connect(self) -> Optional[sqlite3.Connection]:
        if not self.enabled:
            return None
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(str(self.path), timeout=5.0, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
                self._conn = conn
            except (sqlite3.Error, OSError) as exc:
                self._disable(f"cannot open {self.path}: {exc}")
                return None
        return self._conn

    def _disable(self, why: str) -> None:
        log.warning("search cache disabled: %s", why)
        self.enabled = False
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    # -- API ----------------------------------------------------------------------
    def get(self, key: str) -> Any:
        """The cached value of ``key`` if fresh, else ``MISS``."""
        with self._lock:
            conn = self._connect()
            if conn is None:
                return MISS
            try:
                row = conn.execute("SELECT value, expires FROM responses WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._disable(str(exc))
                return MISS
        if row is None or row[1] < self.clock():
            self.misses += 1
            return MISS
        try:
            value = json.loads(row[0])
        except ValueError:
            return MISS
        self.hits += 1
        return value

    def put(self, key: str, value: Any, ttl: Optional[int] = None) -> None:
        """Store ``value`` (JSON-serialisable) for ``ttl`` seconds (default: the cache TTL)."""
        ttl = self.ttl if ttl is None else int(ttl)
        if ttl <= 0:
            return
        try:
            text = json.dumps(value, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            log.debug("not caching %s: %s", key, exc)
            return
        now = self.clock()
        with self._lock:
            conn = self._connect()
            if conn is None:
                return
            try:
                conn.execute(
                    "INSERT OR REPLACE INTO responses (key, value, created, expires) VALUES (?, ?, ?, ?)",
                    (key, text, now, now + ttl),
                )
            except sqlite3.Error as exc:
                self._disable(str(exc))

    def purge_expired(self) -> int:
        """Delete expired entries; return how many."""
        with self._lock:
            conn = self._connect()
            if conn is None:
                return 0
            try:
                return conn.execute("DELETE FROM responses WHERE expires < ?", (self.clock(),)).rowcount
            except sqlite3.Error as exc:
                self._disable(str(exc))
                return 0

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            conn = self._connect()
            if conn is not None:
                try:
                    conn.execute("DELETE FROM responses")
                except sqlite3.Error as exc:
                    self._disable(str(exc))

    def __len__(self) -> int:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return 0
            return conn.execute("SELECT COUNT(*) FROM responses WHERE expires >= ?", (self.clock(),)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
