"""hashing.py: streamed sha256, Civitai hash kinds, and the SQLite hash cache."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
import threading
import zlib
from pathlib import Path

import pytest

from comfyfixersmart.errors import ValidationError
from comfyfixersmart.hashing import (
    CHUNK_SIZE,
    FileKey,
    HashCache,
    autov1,
    autov2,
    autov3,
    crc32,
    hashes_match,
    normalize_sha256,
    sha256_file,
)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _safetensors(header: dict, payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


# -- plain hashes -----------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, 2 * CHUNK_SIZE + 12345])
def test_sha256_file_matches_hashlib(tmp_path, size):
    data = os.urandom(size)
    path = _write(tmp_path / "m.bin", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_sha256_file_reports_progress_in_chunks(tmp_path):
    data = os.urandom(2 * CHUNK_SIZE + 7)
    path = _write(tmp_path / "m.bin", data)
    seen = []
    sha256_file(path, progress=seen.append)
    assert sum(seen) == len(data)
    assert max(seen) == CHUNK_SIZE and len(seen) == 3


def test_autov2_is_upper_sha_prefix():
    sha = hashlib.sha256(b"x").hexdigest()
    assert autov2(sha) == sha[:10].upper()
    assert autov2(sha.upper()) == sha[:10].upper()
    with pytest.raises(ValidationError):
        autov2("abc")
    with pytest.raises(ValidationError):
        autov2("z" * 64)


def test_autov1_hashes_64k_at_one_mib(tmp_path):
    data = os.urandom(0x100000 + 0x10000 + 5000)
    path = _write(tmp_path / "big.ckpt", data)
    expected = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8].upper()
    assert autov1(path) == expected
    # a small file hashes an empty slice, as AUTOMATIC1111 did
    small = _write(tmp_path / "small.ckpt", b"tiny")
    assert autov1(small) == hashlib.sha256(b"").hexdigest()[:8].upper()


def test_autov3_ignores_the_header(tmp_path):
    payload = os.urandom(3000)
    a = _write(tmp_path / "a.safetensors", _safetensors({"__metadata__": {"name": "one"}}, payload))
    b = _write(tmp_path / "b.safetensors",
               _safetensors({"__metadata__": {"name": "another, longer title"}}, payload))
    expected = hashlib.sha256(payload).hexdigest()[:12].upper()
    assert autov3(a) == autov3(b) == expected


@pytest.mark.parametrize("data", [
    b"",
    b"short",
    struct.pack("<Q", 10 ** 9) + b"{}",  # header longer than the file
    struct.pack("<Q", 2) + b"[]",  # not a JSON object
    b"PK\x03\x04" + os.urandom(100),  # a zip/pickle checkpoint
])
def test_autov3_none_for_non_safetensors(tmp_path, data):
    assert autov3(_write(tmp_path / "x.ckpt", data)) is None


def test_crc32_known_vector_and_stream(tmp_path):
    assert crc32(_write(tmp_path / "v", b"123456789")) == "CBF43926"
    data = os.urandom(CHUNK_SIZE + 99)
    assert crc32(_write(tmp_path / "w", data)) == f"{zlib.crc32(data):08X}"


def test_hashes_match_case_and_crc_byte_order():
    assert hashes_match("abcdef", "ABCDEF")
    assert not hashes_match("abcdef", "abcdee")
    assert not hashes_match("", "")
    assert not hashes_match(None, "a")
    assert hashes_match("CBF43926", "2639f4cb", kind="crc32")
    assert not hashes_match("CBF43926", "2639f4cb", kind="sha256")


def test_normalize_sha256():
    sha = "A" * 64
    assert normalize_sha256(sha) == "a" * 64
    assert normalize_sha256("ABCDEF0123", allow_prefix=True) == "abcdef0123"
    for bad in ("", "abc", "g" * 64, "a" * 65, "ab%", "a" * 10):
        with pytest.raises(ValidationError):
            normalize_sha256(bad)
    with pytest.raises(ValidationError):
        normalize_sha256("abc_%", allow_prefix=True)


# -- the cache ----------------------------------------------------------------------------

def test_cache_hashes_once_and_survives_restart(tmp_path):
    path = _write(tmp_path / "m" / "model.safetensors", os.urandom(5000))
    db = tmp_path / "cache" / "hashes.sqlite3"
    cache = HashCache(db)
    first = cache.sha256(path)
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    assert cache.sha256(path) == first
    assert (cache.computed, cache.hits) == (1, 1)
    cache.close()

    again = HashCache(db)
    assert again.sha256(path) == first
    assert (again.computed, again.hits) == (0, 1)
    assert len(again) == 1


def test_cache_rehashes_when_size_or_mtime_change(tmp_path):
    path = _write(tmp_path / "model.bin", b"one")
    cache = HashCache(tmp_path / "h.db")
    cache.sha256(path)
    st = path.stat()
    path.write_bytes(b"two")  # same size, new content: mtime differs
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert cache.sha256(path) == hashlib.sha256(b"two").hexdigest()
    path.write_bytes(b"three!")
    assert cache.sha256(path) == hashlib.sha256(b"three!").hexdigest()
    assert cache.computed == 3
    assert len(cache) == 1  # one row per path, replaced


def test_cache_does_not_store_a_file_changing_while_hashed(tmp_path):
    path = _write(tmp_path / "growing.bin", os.urandom(CHUNK_SIZE + 10))
    cache = HashCache(tmp_path / "h.db")

    def touch(_n):
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000))

    cache.sha256(path, progress=touch)
    assert len(cache) == 0
    cache.sha256(path)
    assert cache.computed == 2


@pytest.mark.parametrize("garbage", [b"this is not a database" * 100, b"", b"SQLite format 3\x00" + b"\xff" * 200])
def test_cache_recreates_a_corrupt_database(tmp_path, garbage):
    db = _write(tmp_path / "h.db", garbage)
    path = _write(tmp_path / "m.bin", b"data")
    cache = HashCache(db)
    assert cache.sha256(path) == hashlib.sha256(b"data").hexdigest()
    assert len(cache) == 1
    cache.close()
    assert HashCache(db).get(FileKey.of(path)) is not None


def test_cache_recovers_when_the_file_is_replaced_while_open(tmp_path):
    db = tmp_path / "h.db"
    path = _write(tmp_path / "m.bin", b"data")
    cache = HashCache(db)
    cache.sha256(path)
    cache.close()
    db.write_bytes(b"garbage" * 1000)  # e.g. a disk error or another tool overwrote it
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    assert cache.sha256(path) == hashlib.sha256(b"data").hexdigest()
    assert cache.computed == 2


def test_cache_in_memory(tmp_path):
    path = _write(tmp_path / "m.bin", b"abc")
    cache = HashCache(":memory:")
    cache.sha256(path)
    cache.sha256(path)
    assert (cache.computed, cache.hits) == (1, 1)
    assert not list(tmp_path.glob("*.db"))


def test_cache_lookup_by_sha_and_prefix(tmp_path):
    a = _write(tmp_path / "a.bin", b"same")
    b = _write(tmp_path / "b.bin", b"same")
    c = _write(tmp_path / "c.bin", b"other")
    cache = HashCache(tmp_path / "h.db")
    for p in (a, b, c):
        cache.sha256(p)
    sha = hashlib.sha256(b"same").hexdigest()
    assert sorted(Path(k.path).name for k in cache.lookup_sha256(sha.upper())) == ["a.bin", "b.bin"]
    assert sorted(Path(k.path).name for k in cache.lookup_sha256(sha[:10])) == ["a.bin", "b.bin"]
    assert cache.lookup_sha256("0" * 64) == []
    with pytest.raises(ValidationError):
        cache.lookup_sha256("%")
    known = cache.known([str(a), str(c), str(tmp_path / "nope")])
    assert set(known) == {str(a), str(c)}


def test_cache_put_rejects_bad_hash(tmp_path):
    path = _write(tmp_path / "m.bin", b"x")
    with pytest.raises(ValidationError):
        HashCache(tmp_path / "h.db").put(FileKey.of(path), "not-a-hash")


def test_cache_is_thread_safe(tmp_path):
    files = [_write(tmp_path / f"f{i}.bin", os.urandom(20000 + i)) for i in range(12)]
    cache = HashCache(tmp_path / "h.db")
    results: dict = {}
    errors: list = []

    def worker(offset):
        try:
            for i in range(len(files)):
                p = files[(i + offset) % len(files)]
                results.setdefault(p, set()).add(cache.sha256(p))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for p, values in results.items():
        assert values == {hashlib.sha256(p.read_bytes()).hexdigest()}
    assert cache.computed + cache.hits == 6 * len(files)
    assert len(cache) == len(files)


def test_cache_db_is_a_real_sqlite_file(tmp_path):
    path = _write(tmp_path / "m.bin", b"x")
    db = tmp_path / "h.db"
    cache = HashCache(db)
    cache.sha256(path)
    cache.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT path, size, sha256 FROM file_hashes").fetchall()
    assert rows == [(str(path), 1, hashlib.sha256(b"x").hexdigest())]
