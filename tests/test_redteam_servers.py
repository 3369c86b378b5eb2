"""Red team: lying servers.  A download or a search against a local server that misbehaves
on purpose must end in a clear error from our tree, with nothing half-written on disk."""

from __future__ import annotations

import gzip
import hashlib
import json
import time

import pytest

from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.download import DownloadManager
from comfyfixersmart.errors import APISearchError
from comfyfixersmart.search import ModelSearch
from comfyfixersmart.search.civitai import _size_bytes
from dlserver import loopback_config, payload
from dlserver.fixtures import dest, server  # noqa: F401
from fakehub import blob
from fakehub.fixtures import fake_hub, hub_config  # noqa: F401




def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*"))


# -- lengths ----------------------------------------------------------------------------------

def test_content_length_larger_than_the_body_fails_and_keeps_a_resumable_part(server, make_config, dest):
    data = payload(300_000)
    # never sends it all, and cannot resume: each attempt starts over and drops again
    server.add("/m.safetensors", data, drop_after=100_000, drops=10**6, ranges=False)
    with DownloadManager(loopback_config(make_config, http_retries=1)) as m:
        r = m.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    assert not r.success and r.error_type in ("DownloadError", "NetworkError")
    assert not (dest / "m.safetensors").exists()
    part = dest / "m.safetensors.part"
    if part.exists():  # only true bytes are kept
        assert part.read_bytes() == data[:part.stat().st_size]


def test_content_length_smaller_than_the_body_is_cut_at_the_length(server, make_config, dest):
    data = payload(10_000)
    server.add("/m.safetensors", data, headers={"Content-Length": "4000"}, send_length=False, ranges=False)
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/m.safetensors"), dest / "m.safetensors",
                             expected_sha256=hashlib.sha256(data).hexdigest())
    assert not r.success and r.error_type == "IntegrityError"
    assert leftovers(dest) == []


def test_a_body_bigger_than_the_expected_size_stops_early(server, make_config, dest):
    server.add("/m.safetensors", payload(64 << 20), send_length=False, ranges=False)
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/m.safetensors"), dest / "m.safetensors", expected_size=1000)
    assert not r.success and r.error_type == "IntegrityError"
    received = sum(x.path.startswith("/m") for x in server.requests)
    assert received == 1
    # stopped within a buffer or two of the promised size, not after 64 MiB
    assert "64" not in (r.error_message or "") and r.size_downloaded < 8 << 20


def test_a_body_bigger_than_its_content_length_stops_at_the_length(server, make_config, dest):
    big = payload(8 << 20)
    server.add("/m.safetensors", big, headers={"Content-Length": "1000"}, send_length=False, ranges=False)
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/m.safetensors"), dest / "m.safetensors", expected_size=1000)
    assert r.success and (dest / "m.safetensors").read_bytes() == big[:1000]


# -- encodings and hints ---------------------------------------------------------------------

def test_gzip_content_encoding_with_a_length_is_refused_cleanly(server, make_config, dest):
    """A gzip "bomb" is bounded by its Content-Length (encoded bytes), never inflated to disk."""
    bomb = gzip.compress(b"\0" * (64 << 20))
    # .bin: no header check, so the length bound is what stops it
    server.add("/m.bin", bomb, headers={"Content-Encoding": "gzip"})
    with DownloadManager(loopback_config(make_config)) as m:
        started = time.monotonic()
        r = m.download_model(server.url("/m.bin"), dest / "m.bin")
    assert not r.success and r.error_type == "IntegrityError"
    assert time.monotonic() - started < 5
    assert leftovers(dest) == []


def test_gzip_without_length_is_decoded_and_verified(server, make_config, dest):
    data = payload(50_000)
    server.add("/m.safetensors", gzip.compress(data), headers={"Content-Encoding": "gzip"},
               send_length=False, ranges=False)
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/m.safetensors"), dest / "m.safetensors",
                             expected_sha256=hashlib.sha256(data).hexdigest())
    assert r.success and (dest / "m.safetensors").read_bytes() == data


@pytest.mark.parametrize("etag", ['"abc"', 'W/"' + "a" * 64 + '"', '"' + "z" * 64 + '"', '"' + "a" * 63 + '"'])
def test_an_hf_etag_that_is_not_a_sha256_is_not_trusted(server, make_config, dest, etag):
    data = payload(5000)
    server.add("/m.safetensors", data, etag=etag, headers={"X-Repo-Commit": "1" * 40, "X-Linked-Etag": etag})
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    assert r.success, r.error_message
    assert r.sha256 in (None, hashlib.sha256(data).hexdigest())


def test_an_hf_sha256_etag_that_lies_fails_verification(server, make_config, dest):
    data = payload(5000)
    fake = '"' + "ab" * 32 + '"'
    server.add("/m.safetensors", data, headers={"X-Repo-Commit": "1" * 40, "X-Linked-Etag": fake})
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    assert not r.success and r.error_type == "IntegrityError"
    assert leftovers(dest) == []


@pytest.mark.parametrize("size", ["-5", "99999999999999999999999", "1e3", "", "0x10"])
def test_a_lying_x_linked_size_is_ignored_or_refused(server, make_config, dest, size):
    data = payload(5000)
    server.add("/m.safetensors", data, headers={"X-Linked-Size": size})
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    if r.success:
        assert (dest / "m.safetensors").read_bytes() == data
    else:
        assert r.error_type == "IntegrityError" and leftovers(dest) == []


# -- redirects ----------------------------------------------------------------------------------

@pytest.mark.parametrize("location,kind", [
    ("/loop", "DownloadError"),
    ("file:///etc/passwd", "HostNotAllowedError"),
    ("ftp://127.0.0.1/m.safetensors", "HostNotAllowedError"),
    ("gopher://127.0.0.1:70/", "HostNotAllowedError"),
    ("http://u:p@127.0.0.1/m.safetensors", "HostNotAllowedError"),
    ("http://evil.test/m.safetensors", "HostNotAllowedError"),
    ("http://127.0.0.1.evil.test/m.safetensors", "HostNotAllowedError"),
    ("http://evil.test\\@127.0.0.1/m.safetensors", "HostNotAllowedError"),
])
def test_redirects_to_loops_and_other_schemes_end_cleanly(server, make_config, dest, location, kind):
    server.add("/loop", redirect=location)
    with DownloadManager(loopback_config(make_config)) as m:
        started = time.monotonic()
        r = m.download_model(server.url("/loop"), dest / "m.safetensors")
    assert not r.success and r.error_type == kind, r.error_message
    assert time.monotonic() - started < 5
    assert len(server.requests) <= 11
    assert leftovers(dest) == []


# -- search APIs ---------------------------------------------------------------------------------

def ref(filename, folder="checkpoints"):
    return ModelReference(filename=filename, node_type="Loader", expected_type=folder.rstrip("s"),
                          expected_directory=folder)


@pytest.mark.parametrize("body", [
    b"{not json", b"[" * 100_000 + b"]" * 100_000, b'{"items": NaN}', b'{"items": [' + b"1" * 5000 + b"]}",
    b"<html>oops</html>", b'"a string"', b"null", b'{"items": {"not": "a list"}}', b'{"items": [1, "x", null]}',
], ids=["broken", "nested", "nan", "bigint", "html", "string", "null", "dict", "junk-items"])
def test_malformed_civitai_answers_are_api_errors_not_crashes(fake_hub, hub_config, body):  # noqa: F811
    fake_hub.inject("/api/v1/models*", 200, body=body, times=None)
    fake_hub.inject("/api/v1/model-versions*", 200, body=body, times=None)
    with ModelSearch(hub_config, backends=["civitai"]) as search:
        try:
            results = search.search("anything", "checkpoints")
        except APISearchError as exc:
            assert exc.backend == "civitai"
        else:
            assert results == []
        try:
            assert search.resolve(ref("anything.safetensors")) == []
        except APISearchError as exc:  # nothing found and the backend failed: its error
            assert exc.backend == "civitai"


@pytest.mark.parametrize("size_kb", [-1, -1e300, 1e308, 10**30, float("inf"), float("nan"), "12", True, None])
def test_civitai_size_kb_lies_give_no_size(size_kb):
    size = _size_bytes({"sizeKB": size_kb})
    assert size is None or 0 <= size <= 1 << 50


def test_infinite_size_kb_in_a_real_answer_does_not_break_search(fake_hub, hub_config):  # noqa: F811
    fake_hub.add_civitai_model("Lying Model", {"lying.safetensors": blob(1000)})
    # rewrite the answer: Python's json (and the real API's JSON.parse) differ on Infinity
    body = {"items": [{"id": 1, "name": "Lying Model", "type": "Checkpoint", "modelVersions": [{
        "id": 2, "name": "v1", "files": [{"id": 3, "name": "lying.safetensors", "sizeKB": 1e400,
                                          "type": "Model", "primary": True}]}]}], "metadata": {}}
    raw = json.dumps(body).replace("Infinity", "1e999")
    fake_hub.inject("/api/v1/models*", 200, body=raw.encode(), times=None)
    with ModelSearch(hub_config, backends=["civitai"]) as search:
        results = search.search("Lying Model", "checkpoints")
    assert all(r.size_bytes is None or r.size_bytes >= 0 for r in results)


# -- our own files, damaged ------------------------------------------------------------------------

@pytest.mark.parametrize("sidecar", [b"[1, 2]", b'"text"', b"[" * 50_000, b"\xff\xfe", b'{"version": 1}',
                                     b'{"version": 1, "url": "x", "segments": [{"start": "a"}]}'],
                         ids=["list", "string", "nested", "binary", "no-url", "bad-segments"])
def test_a_damaged_sidecar_starts_the_download_over(server, make_config, dest, sidecar):
    data = payload(20_000)
    server.add("/m.safetensors", data)
    (dest / "m.safetensors.part").write_bytes(b"garbage that is not the file")
    (dest / "m.safetensors.part.json").write_bytes(sidecar)
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/m.safetensors"), dest / "m.safetensors",
                             expected_sha256=hashlib.sha256(data).hexdigest())
    assert r.success, r.error_message
    assert (dest / "m.safetensors").read_bytes() == data
    assert leftovers(dest) == ["m.safetensors"]


def test_error_responses_redact_every_field():
    from comfyfixersmart.service.routes import error_response

    exc = APISearchError("failed for hf_" + "A" * 30, url="https://h.test/x?X-Amz-Signature=SIGSECRET&a=1",
                         help_url="https://h.test/?token=TOKSECRET", backend="huggingface")
    body = error_response(exc).text
    assert "SIGSECRET" not in body and "TOKSECRET" not in body and "A" * 30 not in body
