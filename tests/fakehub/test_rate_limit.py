"""The fake hub's bandwidth knob: file bodies arrive at the set rate, whole and resumable."""
from __future__ import annotations

import hashlib
import threading
import time

import requests

from fakehub import FakeHub, blob

DATA = blob(300 * 1024 + 7, seed=5)


def _get(url: str, headers=None) -> tuple:
    t0 = time.monotonic()
    r = requests.get(url, headers=headers or {}, timeout=30)
    return r, time.monotonic() - t0


def test_rate_limit_paces_file_bodies_and_keeps_ranges():
    with FakeHub() as hub:
        hub.add_hf_repo("org/repo", {"a.safetensors": DATA})
        url = f"{hub.hf_url}/org/repo/resolve/main/a.safetensors"

        r, fast = _get(url)
        assert r.status_code == 200 and r.content == DATA and fast < 0.3

        hub.rate_limit_bytes_per_s = 600 * 1024  # ~0.5 s for the whole body
        r, slow = _get(url)
        assert r.status_code == 200 and hashlib.sha256(r.content).digest() == hashlib.sha256(DATA).digest()
        assert 0.4 < slow < 3.0, slow

        # A Range request is paced on the bytes it serves (the second half: ~0.25 s).
        r, part = _get(url, {"Range": f"bytes={len(DATA) // 2}-"})
        assert r.status_code == 206 and r.content == DATA[len(DATA) // 2:]
        assert 0.15 < part < slow, (part, slow)

        # API answers are not throttled.
        r, api = _get(f"{hub.hf_url}/api/models/org/repo")
        assert r.status_code == 200 and api < 0.3


def test_rate_limit_can_be_lifted_mid_download():
    with FakeHub() as hub:
        hub.add_hf_repo("org/repo", {"b.safetensors": blob(2 * 1024 * 1024, seed=6)})
        hub.rate_limit_bytes_per_s = 100 * 1024  # 20 s at this rate
        threading.Timer(0.4, lambda: setattr(hub, "rate_limit_bytes_per_s", None)).start()
        r, took = _get(f"{hub.hf_url}/org/repo/resolve/main/b.safetensors")
        assert r.status_code == 200 and len(r.content) == 2 * 1024 * 1024
        assert took < 3.0, took
