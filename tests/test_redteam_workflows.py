"""Red team: hostile workflow files.  Decompression bombs, exponential subgraphs, huge
strings: the scanner answers quickly, with bounded memory, a warning or a WorkflowParseError."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
import zlib

import pytest

from comfyfixersmart.errors import WorkflowParseError
from comfyfixersmart.scan import WorkflowScanner
from comfyfixersmart.scan.loading import png_text_chunks


@pytest.fixture
def scanner(make_config):
    return WorkflowScanner(make_config())


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def make_png(*chunks: bytes) -> bytes:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(chunks) + idat + png_chunk(b"IEND", b"")


def ztxt(key: bytes, raw: bytes, level: int = 9) -> bytes:
    return png_chunk(b"zTXt", key + b"\0\0" + zlib.compress(raw, level))


def itxt(key: bytes, raw: bytes) -> bytes:
    return png_chunk(b"iTXt", key + b"\0\1\0en\0\0" + zlib.compress(raw, 9))


WORKFLOW = json.dumps({"nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["a.safetensors"]}],
                       "links": []}).encode()


def peak_of(fn):
    tracemalloc.start()
    try:
        started = time.monotonic()
        result = fn()
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak, elapsed


def test_many_compressed_chunks_under_other_keywords_are_not_inflated(scanner, tmp_path):
    """Each chunk alone is under the per-chunk cap; together they would need gigabytes."""
    bomb = zlib.compress(b"\0" * (96 << 20), 9)  # ~100 KB that inflates to 96 MiB
    chunks = [png_chunk(b"zTXt", b"junk%d\0\0" % i + bomb) for i in range(12)]
    path = tmp_path / "bomb.png"
    path.write_bytes(make_png(*chunks, ztxt(b"workflow", WORKFLOW)))
    data, peak, elapsed = peak_of(lambda: scanner.scan_workflow(path))
    assert [r.key for r in data.model_references] == ["checkpoints/a.safetensors"]
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"
    assert elapsed < 5


def test_the_workflow_chunk_as_a_bomb_is_a_parse_error(scanner, tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(make_png(ztxt(b"workflow", b"{" + b" " * (300 << 20) + b"}")))
    with pytest.raises(WorkflowParseError, match="size limit"):
        scanner.scan_workflow(path)


def test_workflow_and_prompt_bombs_together_stay_bounded(scanner, tmp_path):
    """Both wanted keywords, each just under the per-chunk cap: the total is capped too."""
    half = b'{"pad": "' + b"x" * (48 << 20) + b'"}'
    path = tmp_path / "two.png"
    path.write_bytes(make_png(ztxt(b"workflow", half), itxt(b"prompt", half), ztxt(b"workflow2", half)))
    _, peak, elapsed = peak_of(lambda: _scan_or_error(scanner, path))
    assert elapsed < 10
    assert peak < 400 << 20, f"peak {peak >> 20} MiB"


def _scan_or_error(scanner, path):
    try:
        return scanner.scan_workflow(path)
    except WorkflowParseError as exc:
        return exc


def test_png_text_keys_are_still_all_readable_when_asked():
    png = make_png(png_chunk(b"tEXt", b"parameters\0steps: 20"), ztxt(b"workflow", WORKFLOW))
    texts = png_text_chunks(png)
    assert texts["parameters"] == "steps: 20" and json.loads(texts["workflow"])["nodes"]


# -- graphs -------------------------------------------------------------------------------------

def node(nid, ntype, values=(), **kw):
    return {"id": nid, "type": ntype, "mode": 0, "widgets_values": list(values), **kw}


def test_mutually_recursive_subgraphs_with_fan_out_finish_fast(scanner):
    """A contains 20 B, B contains 20 A: 20**64 paths; the visit budget ends it."""
    a = {"id": "A", "nodes": [node(i, "B") for i in range(20)] + [node(99, "VAELoader", ["a.safetensors"])],
         "links": []}
    b = {"id": "B", "nodes": [node(i, "A") for i in range(20)] + [node(98, "LoraLoader", ["b.safetensors"])],
         "links": []}
    started = time.monotonic()
    data = scanner.scan_data({"nodes": [node(1, "A")], "links": [], "definitions": {"subgraphs": [a, b]}})
    assert time.monotonic() - started < 15
    assert {r.key for r in data.model_references} == {"vae/a.safetensors", "loras/b.safetensors"}
    assert data.warnings


def test_a_subgraph_that_contains_itself(scanner):
    me = {"id": "ME", "nodes": [node(1, "ME"), node(2, "ME"), node(3, "CheckpointLoaderSimple", ["c.safetensors"])],
          "links": []}
    started = time.monotonic()
    data = scanner.scan_data({"nodes": [node(1, "ME")], "links": [], "definitions": {"subgraphs": [me]}})
    assert time.monotonic() - started < 15
    assert [r.key for r in data.model_references] == ["checkpoints/c.safetensors"]


def test_many_proxy_widgets_pointing_anywhere(scanner):
    inner = [node(i, "LoraLoader", [f"l{i}.safetensors"]) for i in range(50)]
    proxies = [[str(i % 60), "lora_name"] for i in range(50_000)] + [["x", None], [None], "junk", [{}, []]]
    sub = {"id": "S", "nodes": inner, "links": []}
    host = node(1, "S", properties={"proxyWidgets": proxies}, widgets_values=["h.safetensors"] * 1000)
    started = time.monotonic()
    data = scanner.scan_data({"nodes": [host], "links": [], "definitions": {"subgraphs": [sub]}})
    assert time.monotonic() - started < 15
    # the host's promoted value wins over the inner nodes' own (the frontend's rule)
    assert "loras/h.safetensors" in {r.key for r in data.model_references}


def test_ten_megabyte_strings_everywhere(make_config, tmp_path):
    scanner = WorkflowScanner(make_config(max_workflow_bytes=128 << 20))  # the file is ~80 MB
    huge = "x" * (10 << 20)
    wf = {"nodes": [node(1, "CheckpointLoaderSimple", [huge + ".safetensors"]),
                    node(2, huge, [huge]), node(3, "LoraLoader", ["ok.safetensors"], title=huge)],
          "links": [], "extra": {huge[:100]: huge}, "models": [{"name": huge, "url": huge, "directory": huge}]}
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(wf))
    started = time.monotonic()
    data = scanner.scan_workflow(path)
    assert time.monotonic() - started < 15
    keys = {r.key for r in data.model_references}
    assert "loras/ok.safetensors" in keys
    # a 10 MB name is never a valid file name: reported, not turned into a path
    assert all(len(r.filename) < 4096 or r.status in (None, "missing") for r in data.model_references)
