"""Hashes of local model files and a persistent cache of their sha256.

``sha256_file`` streams a file through hashlib with 1 MiB reads (a model is several GB:
never read it whole).  ``HashCache`` remembers the sha256 of a file keyed by
(path, size, mtime_ns) in an SQLite file, so a second run re-hashes nothing; any change of
size or modification time invalidates the entry.

Civitai's other hash kinds of a local file (see API-NOTES.md, "Hashes of model files"):

* ``autov2(sha)``  first 10 hex of the sha256
* ``autov1(path)`` sha256 of the 64 KiB at offset 1 MiB, first 8 hex (AUTOMATIC1111's old
  "model hash")
* ``autov3(path)`` sha256 of a .safetensors file's tensor bytes (after the 8-byte length and
  the JSON header), first 12 hex; so re-saving the metadata does not change it
* ``crc32(path)``  CRC-32 of the whole file

sha256 is returned lower-case (hashlib's and Hugging Face's spelling); the Civitai kinds
upper-case, as Civitai's API prints them.  Compare with ``hashes_match``, which ignores case
and accepts Civitai's byte-reversed legacy CRC32.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

from .errors import ValidationError
from .logs import get_logger

log = get_logger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: read size for streaming hashes: large enough that Python overhead is negligible
#: (measured 1.19 GB/s with hashlib on these machines), small enough to stay cache-friendly
CHUNK_SIZE = 1024 * 1024

_AUTOV1_OFFSET = 0x100000
_AUTOV1_LENGTH = 0x10000
#: safetensors headers are JSON of at most 100 MB (the format's own limit)
_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024

ProgressFn = Callable[[int], None]


def _stream(fh, update: Callable[[memoryview], None], limit: Optional[int] = None,
            progress: Optional[ProgressFn] = None) -> int:
    """Feed ``fh`` to ``update`` in 1 MiB pieces (one reused buffer); return bytes read."""
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    total = 0
    while limit is None or total < limit:
        want = CHUNK_SIZE if limit is None else min(CHUNK_SIZE, limit - total)
        n = fh.readinto(view[:want])
        if not n:
            break
        update(view[:n])
        total += n
        if progress is not None:
            progress(n)
    return total


def sha256_file(path: PathLike, progress: Optional[ProgressFn] = None) -> str:
    """Lower-case hex sha256 of a file, streamed.  ``progress(n)`` is called per chunk."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        _stream(fh, h.update, progress=progress)
    return h.hexdigest()


def autov2(sha256_hex: str) -> str:
    """Civitai AutoV2: the first 10 hex digits of the sha256, upper-case."""
    value = _hex(sha256_hex, "sha256")
    if len(value) != 64:
        raise ValidationError(f"expected a 64-digit sha256, got {len(value)} digits")
    return value[:10].upper()


def autov1(path: PathLike) -> str:
    """Civitai AutoV1 (AUTOMATIC1111's legacy model hash): sha256 of bytes 1 MiB..1 MiB+64 KiB.

    Computed exactly as AUTOMATIC1111 did, also for small files (where the slice is short or
    empty); Civitai stores null for files under 2 MiB, so such a value matches nothing there.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(_AUTOV1_OFFSET)
        _stream(fh, h.update, limit=_AUTOV1_LENGTH)
    return h.hexdigest()[:8].upper()


def autov3(path: PathLike) -> Optional[str]:
    """Civitai AutoV3: sha256 of a .safetensors file after its header, first 12 hex, upper-case.

    None when the file is not a safetensors file (the header length does not fit the file or
    the header is not a JSON object): Civitai has no AutoV3 for other formats either.
    """
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return None
        (header_len,) = struct.unpack("<Q", head)
        size = os.fstat(fh.fileno()).st_size
        if header_len < 2 or header_len > _SAFETENSORS_MAX_HEADER or 8 + header_len > size:
            return None
        if fh.read(1) != b"{":
            return None
        fh.seek(8 + header_len)
        h = hashlib.sha256()
        _stream(fh, h.update)
    return h.hexdigest()[:12].upper()


def crc32(path: PathLike) -> str:
    """CRC-32 of the whole file as 8 upper-case hex digits (big-endian, zlib's value)."""
    value = 0

    def update(chunk: memoryview) -> None:
        nonlocal value
        value = zlib.crc32(chunk, value)

    with open(path, "rb") as fh:
        _stream(fh, update)
    return f"{value & 0xFFFFFFFF:08X}"


def hashes_match(local: Optional[str], remote: Optional[str], kind: str = "sha256") -> bool:
    """True when two hashes of ``kind`` are equal, ignoring case.

    For ``crc32`` the byte-reversed spelling of Civitai's legacy scanner also matches.
    Empty values never match.
    """
    if not local or not remote:
        return False
    a, b = local.strip().upper(), remote.strip().upper()
    if a == b:
        return True
    if kind.lower() == "crc32" and len(a) == len(b) == 8:
        return a == "".join(reversed([b[i:i + 2] for i in range(0, 8, 2)]))
    return False


def _hex(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a hex string, got {type(value).__name__}")
    value = value.strip().lower()
    if not value or any(c not in "0123456789abcdef" for c in value):
        raise ValidationError(f"{what} is not a hex string: {value[:80]!r}")
    return value


def normalize_sha256(value: str, *, allow_prefix: bool = False) -> str:
    """Lower-case a sha256 (or, with ``allow_prefix``, a prefix of >= 8 digits); else ValidationError."""
    value = _hex(value, "sha256")
    if len(value) == 64 or (allow_prefix and 8 <= len(value) < 64):
        return value
    raise ValidationError(f"expected a 64-digit sha256, got {len(value)} digits")


# -- the cache ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileKey:
    """What identifies a file's content for the cache: absolute path, size, mtime in ns."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: PathLike, st: Optional[os.stat_result] = None) -> "FileKey":
        st = st if st is not None else os.stat(path)
        return cls(os.path.abspath(os.fspath(path)), st.st_size, st.st_mtime_ns)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_hashes (
    path     TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    hashed_at REAL NOT NULL DEFAULT (julianday('now'))
);
CREATE INDEX IF NOT EXISTS file_hashes_sha256 ON file_hashes (sha256);
"""


class HashCache:
    """sha256 of files cached by (path, size, mtime_ns) in an SQLite file.

    Thread-safe (one connection behind a lock).  A corrupt or foreign database file is moved
    aside and recreated, since the cache only saves time: losing it is never fatal.
    ``db_path=":memory:"`` keeps the cache in memory (for ``cache_enabled=False``).

    ``computed`` counts the files actually hashed, ``hits`` the answers served from the cache.
    """

    def __init__(self, db_path: PathLike):
        self.db_path = db_path if db_path == ":memory:" else Path(db_path).expanduser()
        self._lock = threading.RLock()
        self._conn: Optional[sqlite3.Connection] = None
        self.computed = 0
        self.hits = 0
        self.bytes_hashed = 0

    # -- connection ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            log.warning("hash cache %s is unusable (%s); recreating it", self.db_path, exc)
            self._discard_file()
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if isinstance(self.db_path, Path):
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.db_path), timeout=10, check_same_thread=False,
                               isolation_level=None)
        try:
            # WAL lets the CLI and a running ComfyUI read while the other writes
            if isinstance(self.db_path, Path):
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            # touch the table so a file that is not a database fails here, not later
            conn.execute("SELECT count(*) FROM file_hashes").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _discard_file(self) -> None:
        if not isinstance(self.db_path, Path):
            return
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.db_path) + suffix)
            try:
                if suffix == "" and p.exists():
                    os.replace(p, p.with_name(p.name + ".corrupt"))
                else:
                    p.unlink(missing_ok=True)
            except OSError:
                pass

    def _run(self, fn: Callable[[sqlite3.Connection], object]):
        """Run ``fn(conn)`` under the lock; on a corrupt database recreate it and retry once."""
        with self._lock:
            try:
                return fn(self._connect())
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise
                log.warning("hash cache %s failed (%s); recreating it", self.db_path, exc)
                self.close()
                self._discard_file()
                return fn(self._connect())

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    def __enter__(self) -> "HashCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- lookups ---------------------------------------------------------------------------
    def get(self, key: FileKey) -> Optional[str]:
        """The cached sha256 for exactly this (path, size, mtime_ns), or None."""
        row = self._run(lambda c: c.execute(
            "SELECT sha256 FROM file_hashes WHERE path=? AND size=? AND mtime_ns=?",
            (key.path, key.size, key.mtime_ns)).fetchone())
        return row[0] if row else None

    def put(self, key: FileKey, sha256: str) -> None:
        """Remember ``sha256`` for this file state (replacing an older entry of the path)."""
        sha = normalize_sha256(sha256)
        self._run(lambda c: c.execute(
            "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, sha256) VALUES (?,?,?,?)",
            (key.path, key.size, key.mtime_ns, sha)))

    def forget(self, path: PathLike) -> None:
        self._run(lambda c: c.execute("DELETE FROM file_hashes WHERE path=?",
                                      (os.path.abspath(os.fspath(path)),)))

    def lookup_sha256(self, sha256_or_prefix: str) -> List[FileKey]:
        """File states recorded with this sha256 (or a prefix of >= 8 hex digits)."""
        value = normalize_sha256(sha256_or_prefix, allow_prefix=True)
        if len(value) == 64:
            rows = self._run(lambda c: c.execute(
                "SELECT path, size, mtime_ns FROM file_hashes WHERE sha256=?", (value,)).fetchall())
        else:
            # hex digits only, so no LIKE wildcards can sneak in
            rows = self._run(lambda c: c.execute(
                "SELECT path, size, mtime_ns FROM file_hashes WHERE sha256 LIKE ?",
                (value + "%",)).fetchall())
        return [FileKey(*row) for row in rows]

    def known(self, paths: Iterable[str]) -> Dict[str, Tuple[int, int, str]]:
        """``path -> (size, mtime_ns, sha256)`` for the given absolute paths that have an entry."""
        wanted = list(paths)
        out: Dict[str, Tuple[int, int, str]] = {}
        for i in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            part = wanted[i:i + 500]
            marks = ",".join("?" * len(part))
            rows = self._run(lambda c, marks=marks, part=part: c.execute(
                f"SELECT path, size, mtime_ns, sha256 FROM file_hashes WHERE path IN ({marks})",
                part).fetchall())
            for path, size, mtime_ns, sha in rows:  # type: ignore[union-attr]
                out[path] = (size, mtime_ns, sha)
        return out

    def __len__(self) -> int:
        return int(self._run(lambda c: c.execute("SELECT count(*) FROM file_hashes").fetchone()[0]))

    # -- the main entry --------------------------------------------------------------------
    def sha256(self, path: PathLike, progress: Optional[ProgressFn] = None) -> str:
        """sha256 of ``path``: from the cache if the file is unchanged, else hashed and stored.

        The file is stat'ed before and after hashing; if it changed meanwhile (still being
        written) the result is returned but not cached.
        """
        before = FileKey.of(path)
        cached = self.get(before)
        if cached is not None:
            with self._lock:
                self.hits += 1
            return cached
        digest = sha256_file(path, progress=progress)
        with self._lock:
            self.computed += 1
            self.bytes_hashed += before.size
        after = FileKey.of(path)
        if after == before:
            self.put(before, digest)
        else:
            log.info("%s changed while it was hashed; not caching its sha256", path)
        return digest


__all__ = [
    "CHUNK_SIZE",
    "FileKey",
    "HashCache",
    "autov1",
    "autov2",
    "autov3",
    "crc32",
    "hashes_match",
    "normalize_sha256",
    "sha256_file",
]
