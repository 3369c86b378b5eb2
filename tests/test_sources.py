"""Sources for every file, present ones included (issue 11.8): Embed sources and ``annotate``.

Files on disk are hashed (cached) and looked up by sha256: the known-model index first, then
Civitai's by-hash endpoint and Hugging Face's LFS sha256 on the local fake hub.  URLs are
written canonical, never the configured endpoint.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from aiohttp import web

from fakehub.fixtures import config_for_hub, fake_hub  # noqa: F401

from comfyfixersmart.datamodel import PRESENT, ModelReference
from comfyfixersmart.service.routes import FixerRoutes
from comfyfixersmart.sources import canonical_url, present_sources

STYLE = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + os.urandom(40_000)
VAE = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + os.urandom(30_000)
MYSTERY = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + os.urandom(20_000)


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Cfg:
    def __init__(self, hf="https://huggingface.co", civ="https://civitai.com"):
        self.hf_endpoint, self.civitai_base_url = hf, civ


@pytest.mark.parametrize("url,config,expected", [
    ("http://127.0.0.1:5555/org/r/resolve/main/a.safetensors", Cfg(hf="http://127.0.0.1:5555"),
     "https://huggingface.co/org/r/resolve/main/a.safetensors"),
    ("https://hf-mirror.com/org/r/resolve/main/a.safetensors", Cfg(hf="https://hf-mirror.com"),
     "https://huggingface.co/org/r/resolve/main/a.safetensors"),
    ("https://huggingface.co/org/r/resolve/main/a.safetensors", Cfg(),
     "https://huggingface.co/org/r/resolve/main/a.safetensors"),
    ("http://127.0.0.1:7/api/download/models/5", Cfg(civ="http://127.0.0.1:7"),
     "https://civitai.com/api/download/models/5"),
    ("https://civitai.red/api/download/models/5", Cfg(civ="https://civitai.red"),
     "https://civitai.red/api/download/models/5"),
    ("https://hf-mirror.com.evil.example/x.safetensors", Cfg(hf="https://hf-mirror.com"),
     "https://hf-mirror.com.evil.example/x.safetensors"),
])
def test_canonical_url(url, config, expected):
    assert canonical_url(url, config) == expected


def test_present_files_found_in_the_index_without_network(tmp_path):
    path = tmp_path / "a.safetensors"
    path.write_bytes(STYLE)

    class Index:
        def by_sha256(self, value):
            model = type("M", (), {"url": "https://huggingface.co/o/r/resolve/main/a.safetensors"})
            return [model] if value == sha(STYLE) else []

    class NoSearch:
        def resolve_many(self, refs, backends=None):
            raise AssertionError("the index answered: no hub lookup")

    ref = ModelReference(filename="a.safetensors", node_type="X", expected_type="x", expected_directory="loras",
                         status=PRESENT, local_path=str(path))
    hashed = []
    found, how = present_sources([ref], hasher=lambda p: hashed.append(p) or sha(STYLE), config=Cfg(),
                                 index=Index(), search=NoSearch())
    assert found["loras/a.safetensors"].sha256 == sha(STYLE) and how["loras/a.safetensors"] == "known-model index"
    assert hashed == [str(path)]


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "ComfyUI"
    for key in ("loras", "vae", "checkpoints"):
        (root / "models" / key).mkdir(parents=True)
    (root / "models" / "loras" / "style.safetensors").write_bytes(STYLE)
    (root / "models" / "vae" / "my_vae.safetensors").write_bytes(VAE)
    (root / "models" / "checkpoints" / "mystery.safetensors").write_bytes(MYSTERY)
    return root


def workflow():
    nodes = [
        {"id": 1, "type": "LoraLoader", "mode": 0, "properties": {}, "widgets_values": ["style.safetensors", 1, 1]},
        {"id": 2, "type": "VAELoader", "mode": 0, "properties": {}, "widgets_values": ["my_vae.safetensors"]},
        {"id": 3, "type": "CheckpointLoaderSimple", "mode": 0, "properties": {},
         "widgets_values": ["mystery.safetensors"]},
    ]
    return {"last_node_id": 3, "nodes": nodes, "links": [], "version": 0.4}


@pytest.fixture
def hub(fake_hub):  # noqa: F811
    fake_hub.add_civitai_model("Style LoRA", {"style.safetensors": STYLE}, type="LORA")
    fake_hub.add_hf_repo("acme/my_vae", {"my_vae.safetensors": VAE})
    return fake_hub


async def test_embed_sources_covers_present_files(aiohttp_client, hub, tmp_path, root):
    config = config_for_hub(hub, tmp_path, comfyui_root=root)
    m = root / "models"
    table = {k: [str(m / k)] for k in ("loras", "vae", "checkpoints")}
    fixer = FixerRoutes(folders=lambda: table, config=config)
    routes = web.RouteTableDef()
    fixer.add_routes(routes)
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app)
    try:
        resp = await client.post("/comfyfixer/sources", json={"workflow": workflow()})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        got = {s["key"]: s for s in body["sources"]}
        assert set(got) == {"loras/style.safetensors", "vae/my_vae.safetensors"}
        assert got["loras/style.safetensors"]["sha256"] == sha(STYLE)
        assert got["loras/style.safetensors"]["url"].startswith("https://civitai.com/api/download/models/")
        assert "civitai" in got["loras/style.safetensors"]["found_by"]
        vae_url = got["vae/my_vae.safetensors"]["url"]
        assert vae_url.startswith("https://huggingface.co/acme/my_vae/resolve/") and vae_url.endswith("/my_vae.safetensors")
        assert got["vae/my_vae.safetensors"]["sha256"] == sha(VAE)
        assert body["unsourced"] == ["checkpoints/mystery.safetensors"]  # nothing claims it: nothing invented
        nodes = {n["id"]: n for n in body["workflow"]["nodes"]}
        assert body["count"] == 2
        assert nodes[1]["properties"]["models"] == [{
            "name": "style.safetensors", "url": got["loras/style.safetensors"]["url"], "directory": "loras",
            "hash": sha(STYLE), "hash_type": "sha256"}]
        assert nodes[2]["properties"]["models"][0]["url"].startswith("https://huggingface.co/")
        assert "models" not in nodes[3]["properties"]
        assert hub.hf_url not in json.dumps(body) and hub.civitai_url not in json.dumps(body)
        # the second time the hashes come from the cache
        from comfyfixersmart.inventory import ModelInventory

        with ModelInventory(config) as inv:
            before = inv.hashes_computed
            inv.sha256(str(root / "models" / "loras" / "style.safetensors"))
            assert inv.hashes_computed == before
    finally:
        fixer.close()


def test_annotate_cli_covers_present_files(hub, tmp_path, root, monkeypatch, capsys):
    from comfyfixersmart import cli

    config = config_for_hub(hub, tmp_path, comfyui_root=root)
    for name in ("civitai_base_url", "hf_endpoint", "state_dir", "cache_dir", "log_dir"):
        monkeypatch.setenv(f"COMFYFIXER_{name.upper()}", str(getattr(config, name)))
    monkeypatch.setenv("COMFYFIXER_ALLOWED_HOSTS", "127.0.0.1:*,localhost:*")
    src = tmp_path / "wf.json"
    src.write_text(json.dumps(workflow()))
    out_path = tmp_path / "out.json"
    code = cli.main(["annotate", str(src), "-o", str(out_path), "--comfyui-root", str(root)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "sources embedded for 2" in out and "checkpoints/mystery.safetensors" in err
    nodes = {n["id"]: n for n in json.loads(out_path.read_text())["nodes"]}
    assert nodes[2]["properties"]["models"][0]["hash"] == sha(VAE)
