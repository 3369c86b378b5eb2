"""File formats: UI 0.4 (array links), schema 1 (object links), API prompts, PNG text chunks, WebP EXIF."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from comfyfixersmart.errors import WorkflowParseError
from comfyfixersmart.scan import WorkflowScanner, load_workflow
from comfyfixersmart.scan.loading import exif_strings, png_text_chunks

UI = {
    "id": "0b5f6a1e-0000-4000-8000-000000000001", "version": 0.4, "last_node_id": 3, "last_link_id": 1,
    "nodes": [
        {"id": 1, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": ["sd15/dream.safetensors"],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}]},
        {"id": 2, "type": "LoraLoader", "mode": 0, "inputs": [{"name": "model", "type": "MODEL", "link": 1}],
         "widgets_values": ["style.safetensors", 1.0, 1.0]},
        {"id": 3, "type": "CLIPTextEncode", "mode": 0, "widgets_values": ["a cat, embedding:EasyNegative"]},
    ],
    "links": [[1, 1, 0, 2, 0, "MODEL"]],
    "extra": {"ds": {"scale": 1}},
}
API = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15/dream.safetensors"}},
    "5": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "style.safetensors",
                                                 "strength_model": 1, "strength_clip": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat, embedding:EasyNegative", "clip": ["5", 1]}},
}
KEYS = {"checkpoints/sd15/dream.safetensors", "loras/style.safetensors", "embeddings/EasyNegative"}


@pytest.fixture
def scanner(make_config):
    return WorkflowScanner(make_config())


def keys(data):
    return {r.key for r in data.model_references}


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def make_png(*chunks: bytes) -> bytes:
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(chunks) + idat + png_chunk(b"IEND", b"")


def text_chunk(key: str, text: str) -> bytes:
    return png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("utf-8"))


def ztxt_chunk(key: str, text: str) -> bytes:
    return png_chunk(b"zTXt", key.encode("latin-1") + b"\0\0" + zlib.compress(text.encode("utf-8")))


def itxt_chunk(key: str, text: str, compressed: bool) -> bytes:
    data = zlib.compress(text.encode("utf-8")) if compressed else text.encode("utf-8")
    return png_chunk(b"iTXt", key.encode() + b"\0" + bytes([int(compressed), 0]) + b"en\0\0" + data)


def make_webp(exif: bytes) -> bytes:
    vp8l = b"VP8L" + struct.pack("<I", 5) + b"\x2f\x00\x00\x00\x00" + b"\0"  # padded to even size
    chunk = b"EXIF" + struct.pack("<I", len(exif)) + exif + (b"\0" if len(exif) % 2 else b"")
    body = b"WEBP" + vp8l + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def make_exif(entries, order="<") -> bytes:
    """A TIFF IFD0 with ASCII entries, as PIL's Image.Exif writes them (ComfyUI's SaveAnimatedWEBP)."""
    head = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    count = len(entries)
    data_off = 8 + 2 + 12 * count + 4
    ifd, blob = struct.pack(order + "H", count), b""
    for tag, text in entries:
        raw = text.encode("utf-8") + b"\0"
        ifd += struct.pack(order + "HHII", tag, 2, len(raw), data_off + len(blob))
        blob += raw
    return head + ifd + struct.pack(order + "I", 0) + blob


def test_ui_array_links(scanner, tmp_path):
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(UI))
    data = scanner.scan_workflow(path)
    assert data.format == "ui" and keys(data) == KEYS
    assert data.workflow_id == UI["id"]
    assert data.metadata["version"] == 0.4 and "ds" not in data.metadata["extra"]
    lora = next(r for r in data.model_references if r.expected_directory == "loras")
    assert (lora.node_id, lora.node_type, lora.expected_type) == (2, "LoraLoader", "lora")
    assert lora.locations[0].where == "widgets_values[0]"
    assert lora.widget_values == {"lora_name": "style.safetensors"}


def test_schema1_object_links_and_linked_primitive(scanner):
    wf = {
        "version": 1, "state": {"lastNodeId": 3},
        "nodes": [
            {"id": 1, "type": "PrimitiveNode", "widgets_values": ["linked/model.safetensors", "fixed"],
             "outputs": [{"name": "COMBO", "links": [7], "widget": {"name": "ckpt_name"}}]},
            {"id": 2, "type": "CheckpointLoaderSimple",
             "inputs": [{"name": "ckpt_name", "type": "COMBO", "widget": {"name": "ckpt_name"}, "link": 7}],
             "widgets_values": ["linked/model.safetensors"]},
        ],
        "links": [{"id": 7, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "COMBO"}],
    }
    [ref] = scanner.extract_models(wf)
    assert ref.key == "checkpoints/linked/model.safetensors"
    assert {(loc.node_id, loc.node_type) for loc in ref.locations} == {(1, "PrimitiveNode"), (2, "CheckpointLoaderSimple")}


def test_linked_value_differs_from_stale_widget(scanner):
    # the primitive's value is what runs; the loader's own widget keeps an old value
    wf = {"nodes": [
        {"id": 1, "type": "PrimitiveNode", "widgets_values": ["new.safetensors"]},
        {"id": 2, "type": "Reroute", "inputs": [{"name": "", "link": 1}]},
        {"id": 3, "type": "LoraLoader", "inputs": [{"name": "lora_name", "widget": {"name": "lora_name"}, "link": 2}],
         "widgets_values": ["old.safetensors", 1, 1]}],
        "links": [[1, 1, 0, 2, 0, "*"], [2, 2, 0, 3, 2, "COMBO"]]}
    assert [r.key for r in scanner.extract_models(wf)] == ["loras/new.safetensors"]


def test_api_format(scanner, tmp_path):
    path = tmp_path / "api.json"
    path.write_text(json.dumps(API))
    data = scanner.scan_workflow(path)
    assert data.format == "api" and keys(data) == KEYS
    ckpt = next(r for r in data.model_references if r.expected_directory == "checkpoints")
    assert ckpt.node_id == "4" and ckpt.locations[0].where == "inputs.ckpt_name"
    assert {n["id"] for n in data.nodes} == {"4", "5", "6"}
    assert data.workflow_id == "api"


def test_api_wrapped_and_linked_literal(scanner):
    prompt = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "x/flux.safetensors"}},
              "2": {"class_type": "UNETLoader", "inputs": {"unet_name": ["1", 0], "weight_dtype": "default"}}}
    [ref] = scanner.scan_data({"prompt": prompt}).model_references
    assert ref.key == "diffusion_models/x/flux.safetensors"
    assert (ref.locations[0].node_id, ref.locations[0].node_type) == ("1", "PrimitiveString")


@pytest.mark.parametrize("kind", ["tEXt", "zTXt", "iTXt", "iTXt-compressed"])
def test_png_text_chunks(scanner, tmp_path, kind):
    text = json.dumps(UI)
    chunk = {"tEXt": lambda: text_chunk("workflow", text), "zTXt": lambda: ztxt_chunk("workflow", text),
             "iTXt": lambda: itxt_chunk("workflow", text, False),
             "iTXt-compressed": lambda: itxt_chunk("workflow", text, True)}[kind]()
    path = tmp_path / "img.png"
    path.write_bytes(make_png(text_chunk("parameters", "not json"), chunk, text_chunk("prompt", json.dumps(API))))
    data = scanner.scan_workflow(path)
    assert data.format == "ui" and keys(data) == KEYS
    assert data.metadata["source"] == "png:workflow"


def test_png_prompt_only_and_non_ascii(scanner, tmp_path):
    api = json.loads(json.dumps(API))
    api["6"]["inputs"]["text"] = "un chat très mignon, embedding:EasyNegative"
    path = tmp_path / "img.png"
    path.write_bytes(make_png(text_chunk("prompt", json.dumps(api, ensure_ascii=False))))
    data = scanner.scan_workflow(path)
    assert data.format == "api" and keys(data) == KEYS


def test_png_without_workflow(scanner, tmp_path):
    path = tmp_path / "plain.png"
    path.write_bytes(make_png(text_chunk("Software", "GIMP")))
    with pytest.raises(WorkflowParseError, match="no embedded ComfyUI workflow") as info:
        scanner.scan_workflow(path)
    assert info.value.path == str(path)


def test_png_truncated_and_zip_bomb_are_safe(tmp_path, monkeypatch):
    from comfyfixersmart.scan import loading

    monkeypatch.setattr(loading, "MAX_TEXT_BYTES", 1 << 20)
    png = make_png(text_chunk("workflow", json.dumps(UI)))
    assert png_text_chunks(png[:40]) == {}  # cut inside the first chunk: nothing, no crash
    assert "workflow" in png_text_chunks(png[:-20])  # cut in IDAT: text chunk already read
    bomb = png_chunk(b"zTXt", b"workflow\0\0" + zlib.compress(b" " * (4 << 20), 9))
    with pytest.raises(WorkflowParseError, match="size limit"):
        png_text_chunks(make_png(bomb))


@pytest.mark.parametrize("order", ["<", ">"])
def test_webp_exif(scanner, tmp_path, order):
    exif = b"Exif\0\0" + make_exif([(0x010F, "workflow:" + json.dumps(UI)), (0x0110, "prompt:" + json.dumps(API))], order)
    path = tmp_path / "anim.webp"
    path.write_bytes(make_webp(exif))
    data = scanner.scan_workflow(path)
    assert data.format == "ui" and keys(data) == KEYS and data.metadata["source"] == "webp:workflow"
    assert exif_strings(exif)[1].startswith("prompt:")


def test_webp_without_exif(scanner, tmp_path):
    path = tmp_path / "x.webp"
    path.write_bytes(make_webp(b"II*\0\x08\0\0\0\0\0\0\0\0\0"))
    with pytest.raises(WorkflowParseError, match="no embedded"):
        scanner.scan_workflow(path)


def test_scan_data_accepts_text_bytes_and_images(scanner):
    assert keys(scanner.scan_data(json.dumps(UI))) == KEYS
    assert keys(scanner.scan_data(json.dumps(API).encode())) == KEYS
    assert keys(scanner.scan_data(make_png(text_chunk("workflow", json.dumps(UI))))) == KEYS
    with pytest.raises(WorkflowParseError):
        scanner.scan_data(42)  # type: ignore[arg-type]


def test_load_workflow_module_function(tmp_path):
    path = tmp_path / "wf.json"
    path.write_text("\ufeff" + json.dumps(UI), encoding="utf-8")  # BOM tolerated
    assert load_workflow(path)["nodes"][0]["id"] == 1
    with pytest.raises(WorkflowParseError, match="file not found"):
        load_workflow(tmp_path / "missing.json")


def test_scan_directory_recursive(scanner, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.json").write_text(json.dumps(UI))
    (tmp_path / "a" / "b" / "two.JSON").write_text(json.dumps(API))
    (tmp_path / "a" / "b" / "img.png").write_bytes(make_png(text_chunk("workflow", json.dumps(UI))))
    (tmp_path / "a" / "bad.json").write_text("{ truncated")
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    found = scanner.scan_directory(tmp_path)
    assert sorted(w.path.rsplit("/", 1)[-1] for w in found) == ["img.png", "one.json", "two.JSON"]
    assert [e.path.rsplit("/", 1)[-1] for e in scanner.errors] == ["bad.json"]
    assert "invalid JSON" in scanner.errors[0].reason
    assert [w.path.rsplit("/", 1)[-1] for w in scanner.scan_directory(tmp_path / "a", recursive=False)] == ["one.json"]
    assert scanner.errors[0].path.endswith("bad.json")  # reset per call, refilled
    assert scanner.scan_directory(tmp_path / "a" / "b") and scanner.errors == []
