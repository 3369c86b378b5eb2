"""sha256 of downloaded bytes: whole-file hashing and a hasher that runs beside the stream.

hashlib releases the GIL for large updates, so hashing on a helper thread overlaps with
socket reads and disk writes; inline hashing would cap a loopback download near
1 / (1/net + 1/hash) of the network speed.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
from pathlib import Path
from typing import Optional

from ..errors import DownloadCancelledError, ValidationError
from ..fileutils import long_path

HASH_CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def parse_sha256(value: object) -> Optional[str]:
    """Lower-case hex of a sha256 given as ``ABC..``, ``"abc.."``, ``sha256:abc..``, or None.

    Raises ValidationError for a value that is present but is not a sha256.
    """
    if value is None or value == "":
        return None
    found = sha256_or_none(value)
    if found is None:
        raise ValidationError(f"not a sha256 hex digest: {str(value)[:80]!r}")
    return found


def sha256_or_none(value: object) -> Optional[str]:
    """Like ``parse_sha256`` but returns None for anything that is not a sha256 (ETags...)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("W/"):
        return None  # a weak ETag is never a content hash
    text = text.strip('"').strip()
    if text.lower().startswith("sha256:"):
        text = text[7:]
    text = text.lower()
    return text if _HEX64.match(text) else None


def sha256_file(path: os.PathLike | str, *, length: Optional[int] = None,
                cancel: Optional[threading.Event] = None) -> str:
    """sha256 of ``path`` (of its first ``length`` bytes when given)."""
    digest = hashlib.sha256()
    _hash_prefix(digest, Path(path), length, cancel)
    return digest.hexdigest()


def _hash_prefix(digest, path: Path, length: Optional[int], cancel: Optional[threading.Event]) -> None:
    remaining = length
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(long_path(path), "rb", buffering=0) as fh:
        while remaining is None or remaining > 0:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelledError("cancelled while hashing", path=path)
            want = HASH_CHUNK if remaining is None else min(HASH_CHUNK, remaining)
            n = fh.readinto(view[:want])
            if not n:
                break
            digest.update(view[:n])
            if remaining is not None:
                remaining -= n
    if remaining:
        raise OSError(f"{path} is shorter than the {length} bytes to hash")


def verify_file(path: os.PathLike | str, expected_hash: Optional[str] = None,
                expected_size: Optional[int] = None) -> bool:
    """True if ``path`` is a regular file matching the size and sha256 given (if any)."""
    p = Path(path)
    if not p.is_file():
        return False
    if expected_size is not None and p.stat().st_size != expected_size:
        return False
    expected = parse_sha256(expected_hash)
    if expected is None:
        return True
    return sha256_file(p) == expected


class StreamHasher:
    """sha256 of a byte stream computed on a helper thread.

    ``start(prefix_path, prefix_len)`` first hashes bytes already on disk (a resumed part
    file), then every ``feed``-ed chunk in order.  Two ways to feed it:

    * ``feed(data)`` with a ``bytes`` object it may keep until hashed;
    * zero-copy: ``buf = acquire()`` (a pooled ``bytearray`` of ``buffer_size``), fill it,
      ``feed(buf, length)``; the buffer returns to the pool once hashed.

    Both are bounded (``max_chunks`` queued items, ``buffers`` pooled buffers), so memory
    stays constant when hashing is slower than the network: the feeder then waits.
    """

    _DONE = object()

    def __init__(self, max_chunks: int = 16, *, buffer_size: int = 0, buffers: int = 4):
        self._digest = hashlib.sha256()
        self._queue: "queue.Queue[object]" = queue.Queue(max_chunks)
        self._free: "queue.Queue[bytearray]" = queue.Queue()
        for _ in range(buffers if buffer_size > 0 else 0):
            self._free.put(bytearray(buffer_size))
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._abort = threading.Event()

    def start(self, prefix_path: Optional[Path] = None, prefix_len: int = 0) -> "StreamHasher":
        self._thread = threading.Thread(
            target=self._run, args=(prefix_path, prefix_len), name="cfs-hasher", daemon=True)
        self._thread.start()
        return self

    def _run(self, prefix_path: Optional[Path], prefix_len: int) -> None:
        try:
            if prefix_path is not None and prefix_len > 0:
                _hash_prefix(self._digest, prefix_path, prefix_len, self._abort)
            while True:
                item = self._queue.get()
                if item is self._DONE:
                    return
                data, length = item  # type: ignore[misc]
                if not self._abort.is_set():
                    # a large update releases the GIL: this runs on the other core
                    self._digest.update(data if length is None else memoryview(data)[:length])
                if length is not None:
                    self._free.put(data)
        except BaseException as exc:  # reported by result(); drain so feeders never block
            self._error = exc
            while True:
                item = self._queue.get()
                if item is self._DONE:
                    return
                if item[1] is not None:  # type: ignore[index]
                    self._free.put(item[0])  # type: ignore[index]

    def acquire(self) -> bytearray:
        """A free pooled buffer (waits while all of them are queued for hashing)."""
        return self._free.get()

    def feed(self, chunk, length: Optional[int] = None) -> None:
        """Queue ``chunk`` (bytes) or the first ``length`` bytes of an acquired buffer."""
        self._queue.put((chunk, length))

    def result(self) -> str:
        """Wait for the helper thread and return the hex digest."""
        self._queue.put(self._DONE)
        assert self._thread is not None
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()

    def abort(self) -> None:
        """Stop without a result (the download failed)."""
        if self._thread is None or not self._thread.is_alive():
            return
        self._abort.set()
        self._queue.put(self._DONE)
        self._thread.join()


class PrefixHasher:
    """sha256 of a file that is being filled out of order (segmented download).

    The owner calls ``extend(n)`` whenever the first ``n`` bytes are known to be written;
    a helper thread hashes them from the file (the page cache, usually) meanwhile, so that
    when the last segment lands only the part not yet contiguous is left to hash.
    """

    def __init__(self, path: os.PathLike | str, cancel: Optional[threading.Event] = None):
        self._path = Path(path)
        self._cancel = cancel
        self._cond = threading.Condition()
        self._ready = 0
        self._final: Optional[int] = None
        self._stop = False
        self._hashed = 0
        self._digest = hashlib.sha256()
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def hashed(self) -> int:
        """Bytes hashed so far (for tests and progress)."""
        return self._hashed

    def start(self) -> "PrefixHasher":
        self._thread = threading.Thread(target=self._run, name="cfs-prefix-hasher", daemon=True)
        self._thread.start()
        return self

    def extend(self, ready: int) -> None:
        """The first ``ready`` bytes of the file are written (never goes backwards)."""
        with self._cond:
            if ready > self._ready:
                self._ready = ready
                self._cond.notify()

    def result(self, total: int) -> str:
        """Hash up to ``total`` bytes (all written now) and return the hex digest."""
        with self._cond:
            self._final = total
            self._ready = max(self._ready, total)
            self._cond.notify()
        assert self._thread is not None
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._hashed != total:
            raise OSError(f"{self._path} is shorter than the {total} bytes to hash")
        return self._digest.hexdigest()

    def abort(self) -> None:
        """Stop without a result."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        view = memoryview(bytearray(HASH_CHUNK))
        try:
            with open(long_path(self._path), "rb", buffering=0) as fh:  # its own handle: reads in order
                while True:
                    with self._cond:
                        while not self._stop and self._ready <= self._hashed and self._final is None:
                            self._cond.wait()
                        if self._stop or self._ready <= self._hashed:
                            return
                        ready = self._ready
                    if self._cancel is not None and self._cancel.is_set():
                        raise DownloadCancelledError("cancelled while hashing", path=self._path)
                    n = fh.readinto(view[:min(HASH_CHUNK, ready - self._hashed)])
                    if not n:
                        return  # shorter than promised: result() reports it
                    self._digest.update(view[:n])
                    self._hashed += n
        except BaseException as exc:
            self._error = exc


def check_safetensors(path: os.PathLike | str) -> bool:
    """True if a .safetensors file is structurally complete.

    The file is an 8-byte little-endian header length, a JSON header, then the tensor bytes;
    the largest ``data_offsets`` end must land exactly on the end of the file.  This catches
    truncated or padded files when no sha256 is known.
    """
    import json
    import struct

    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                return False
            (n,) = struct.unpack("<Q", head)
            if n < 2 or 8 + n > size or n > 100 * 1024 * 1024:
                return False
            header = json.loads(fh.read(n).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    if not isinstance(header, dict):
        return False
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return False
        if not 0 <= offsets[0] <= offsets[1]:
            return False
        end = max(end, offsets[1])
    return 8 + n + end == size
