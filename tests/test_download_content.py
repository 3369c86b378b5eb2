"""Red team: a body that is not the model asked for is refused before it gets a model's name.

Servers answer ``200`` with login pages, error pages, JSON messages, garbage where a
safetensors header should be, a wrong GGUF magic, or redirect to Civitai's login page.
Each case: a clear error of the right class, and nothing left on disk (no file, no
``.part``, no sidecar).
"""

from __future__ import annotations

import struct
import time

import pytest

from comfyfixersmart.download import DownloadManager
from comfyfixersmart.download.content import check_head
from comfyfixersmart.download.partfile import PartInfo, part_path, save, sidecar_path
from comfyfixersmart.errors import NotAModelFileError
from dlserver import loopback_config, payload
from dlserver.fixtures import dest, platform_api, server, sha  # noqa: F401

MODEL_NAMES = ["m.safetensors", "m.sft", "m.ckpt", "m.pt", "m.pth", "m.bin", "m.gguf"]

HTML_PAGES = {
    "doctype": b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Log in</body></html>",
    "html-lower": b"<html><body><form action='/login'>password</form></body></html>" * 3,
    "bom-whitespace": b"\xef\xbb\xbf\r\n  \t<!doctype HTML>\n<html lang=en><title>Error 500</title></html>" * 2,
    "xml": b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>x</Message></Error>',
    "comment-first": b"<!-- cdn --><html><body>Moved</body></html>" * 3,
}
JSON_BODIES = {
    "object": b'{"error":"Unauthorized","message":"You must be logged in to download this file"}',
    "array": b'[{"error": "not found"}, {"detail": "this model version was removed by its owner"}]',
    "spaced": b'\n\n   {\n  "error": "Model is in early access",\n  "deadline": "2030-01-01T00:00:00Z"\n}\n',
}


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def manager(make_config):
    with DownloadManager(loopback_config(make_config)) as mgr:
        yield mgr


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("page", sorted(HTML_PAGES))
def test_an_html_page_is_never_saved_as_a_model(manager, server, dest, name, page):
    server.add(f"/{name}", HTML_PAGES[page], headers={"Content-Type": "text/html; charset=utf-8"})
    result = manager.download_model(server.url(f"/{name}"), dest / name)
    assert not result.success and result.error_type == "NotAModelFileError", result
    assert "an HTML page" in result.error_message and "nothing was saved" in result.error_message
    assert leftovers(dest) == []


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("body", sorted(JSON_BODIES))
def test_a_json_message_is_never_saved_as_a_model(manager, server, dest, name, body):
    # no Content-Type at all: the bytes decide, not the header
    server.add(f"/{name}", JSON_BODIES[body])
    result = manager.download_model(server.url(f"/{name}"), dest / name)
    assert not result.success and result.error_type == "NotAModelFileError"
    assert "a JSON message" in result.error_message
    assert leftovers(dest) == []


def test_a_big_html_body_fails_fast(manager, server, dest):
    """The check runs on the first bytes: a 20 MB page trickling at 1 MB/s is not read to
    the end (20 s) before it is refused."""
    page = b"<!DOCTYPE html>" + b"<p>spam</p>" * (20 * 1024 * 1024 // 11)
    server.add("/m.safetensors", page, rate=1024 * 1024)
    began = time.monotonic()
    result = manager.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    assert result.error_type == "NotAModelFileError"
    assert time.monotonic() - began < 10
    assert leftovers(dest) == []


def test_a_civitai_redirect_to_login_asks_for_a_token(make_config, server, dest):
    cfg = loopback_config(make_config, civitai_base_url=server.url(""))
    server.add("/api/download/models/42", redirect="/login?returnUrl=%2Fmodels%2F42&reason=download-auth")
    server.add("/login", HTML_PAGES["doctype"])
    with DownloadManager(cfg) as mgr:
        result = mgr.download_model(server.url("/api/download/models/42"), dest / "m.safetensors")
        # a folder as the target: the file name probe meets the same redirect
        named = mgr.download_model(server.url("/api/download/models/42"), str(dest) + "/")
    for r in (result, named):
        assert not r.success and r.error_type == "AuthRequiredError", r
        assert "CIVITAI_API_TOKEN" in r.error_message and "log in" in r.error_message
        assert "/login?returnUrl=" in r.error_message  # the link to follow
    assert leftovers(dest) == []


def test_an_absolute_login_redirect_on_the_civitai_host_is_auth_too(make_config, server, dest):
    cfg = loopback_config(make_config, civitai_base_url=server.url("", host="localhost"))
    server.add("/api/download/models/7", redirect=server.url("/login?returnUrl=/models/7", host="localhost"))
    server.add("/login", HTML_PAGES["html-lower"])
    with DownloadManager(cfg) as mgr:
        result = mgr.download_model(server.url("/api/download/models/7", host="localhost"), dest / "m.safetensors")
    assert result.error_type == "AuthRequiredError"
    assert leftovers(dest) == []


def test_a_login_page_elsewhere_is_still_not_a_model(manager, server, dest):
    # not Civitai: no login advice, but the HTML is refused all the same
    server.add("/f.safetensors", redirect="/login")
    server.add("/login", HTML_PAGES["doctype"])
    result = manager.download_model(server.url("/f.safetensors"), dest / "f.safetensors")
    assert result.error_type == "NotAModelFileError"


def _safetensors(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


BAD_SAFETENSORS = {
    "random": payload(5000, seed=9)[200:],  # no header: random bytes
    "length-beyond-file": _safetensors(b'{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}')[:30] + b"\0" * 10,
    "huge-length": struct.pack("<Q", 1 << 40) + b"{" + b"\0" * 100,
    "zero-length": struct.pack("<Q", 0) + b"\0" * 100,
    "not-an-object": _safetensors(b'["a", "list", "is", "no", "header"]', b"\0" * 100),
    "header-not-json": _safetensors(b'{"t": nonsense without quotes and more padding}', b"\0" * 100),
    "too-short": b"\x10\0\0",
    "zip-instead": b"PK\x03\x04" + payload(4000, seed=2)[4:],
}


@pytest.mark.parametrize("case", sorted(BAD_SAFETENSORS))
@pytest.mark.parametrize("name", ["m.safetensors", "m.sft"])
def test_a_bad_safetensors_header_is_refused(manager, server, dest, case, name):
    server.add(f"/{name}", BAD_SAFETENSORS[case])
    result = manager.download_model(server.url(f"/{name}"), dest / name)
    assert not result.success and result.error_type == "NotAModelFileError", (case, result)
    assert "safetensors" in result.error_message
    assert leftovers(dest) == []


@pytest.mark.parametrize("magic", [b"GGML", b"ggu\0", b"\0\0\0\0", b"FUGG"])
def test_a_wrong_gguf_magic_is_refused(manager, server, dest, magic):
    server.add("/m.gguf", magic + payload(3000, seed=4)[4:])
    result = manager.download_model(server.url("/m.gguf"), dest / "m.gguf")
    assert result.error_type == "NotAModelFileError" and "GGUF" in result.error_message
    assert leftovers(dest) == []


def test_real_formats_pass(manager, server, dest):
    files = {
        "a.gguf": b"GGUF\x03\0\0\0" + payload(3000, seed=5)[8:],
        "b.pt": b"PK\x03\x04" + payload(3000, seed=6)[4:],  # torch.save: a zip
        "c.ckpt": b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19." + payload(3000, seed=7)[16:],  # legacy pickle
        "d.safetensors": payload(3000, seed=8),
        # a header of 123 bytes: its first byte is "{", but the file is binary, not JSON
        "e.safetensors": _safetensors(b'{"t":{"dtype":"U8","shape":[10],"data_offsets":[0,10]}}'.ljust(123),
                                      b"\1" * 10),
    }
    for name, data in files.items():
        server.add(f"/{name}", data)
        result = manager.download_model(server.url(f"/{name}"), dest / name, expected_sha256=sha(data))
        assert result.success, (name, result.error_message)
        assert (dest / name).read_bytes() == data
    assert leftovers(dest) == sorted(files)


def test_a_range_resume_is_judged_from_the_start_of_the_file(manager, server, dest):
    """The resumed body starts mid-file (tensor bytes that look like nothing): the check
    reads the part file's first bytes, so a legit file resumes."""
    data = payload(300_000, seed=10)
    # the tail of this file is text that would look like JSON at the start of a body
    data = data[:100_000] + b'{"not": "a header"}' * 10_000
    data = data[:300_000]
    server.add("/m.safetensors", data, drop_after=100_000)
    result = manager.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    assert result.success, result.error_message
    assert result.resumed_from == 100_000
    assert (dest / "m.safetensors").read_bytes() == data


def test_a_part_file_whose_start_is_not_a_model_is_refused_on_resume(manager, server, dest):
    """A part (with a matching sidecar) whose first bytes are an error page, as an older
    version would have left: resuming would finish a file that starts with HTML.  Refused
    on the part's own first bytes, before any body byte is read, and the junk removed."""
    data = payload(200_000, seed=11)
    res = server.add("/m.safetensors", data)
    target = dest / "m.safetensors"
    part_path(target).write_bytes(b"<!DOCTYPE html>" + b"x" * (10_000 - 15))
    save(sidecar_path(target), PartInfo(url=server.url("/m.safetensors"), etag=res.current_etag(),
                                        total=len(data)))
    result = manager.download_model(server.url("/m.safetensors"), target)
    assert result.error_type == "NotAModelFileError"
    assert leftovers(dest) == []
    assert server.requests_for("/m.safetensors")[-1].header("Range") == "bytes=10000-"


def test_a_segmented_download_of_garbage_stops_at_the_first_bytes(make_config, server, dest):
    cfg = loopback_config(make_config, download_segments=4, segment_min_size=1024 * 1024)
    junk = payload(8 * 1024 * 1024, seed=12)[100:] + b"\0" * 100  # big, ranged, no header
    # 128 KB/s per connection: the whole file takes 16 s even on 4 segments at once, so the
    # bound below separates "stopped at the first bytes" from "fetched it all" on a busy
    # machine too (at 2 MB/s the margin was 3.5 s against 4 s)
    server.add("/m.safetensors", junk, rate=128 * 1024)
    began = time.monotonic()
    with DownloadManager(cfg) as mgr:
        result = mgr.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    assert result.error_type == "NotAModelFileError"
    assert time.monotonic() - began < 10
    assert leftovers(dest) == []


def test_check_head_waits_for_enough_bytes_and_passes_other_extensions():
    assert check_head("m.safetensors", b"\x10\0", ended=False) is False  # wait for more
    with pytest.raises(NotAModelFileError):
        check_head("m.safetensors", b"\x10\0", ended=True)
    assert check_head("notes.txt", b"<!DOCTYPE html>", ended=True) is True  # not a model name
    assert check_head("M.SAFETENSORS", payload(100), ended=True) is True
    with pytest.raises(NotAModelFileError):
        check_head("M.GGUF", b"<html>" * 20)


def test_portable_platform_gets_the_same_refusals(manager, server, dest, platform_api):
    server.add("/m.safetensors", HTML_PAGES["doctype"])
    result = manager.download_model(server.url("/m.safetensors"), dest / "m.safetensors")
    assert result.error_type == "NotAModelFileError" and leftovers(dest) == []
