"""Shared scenery for the core and CLI tests (no tests here).

``build_world`` makes a ComfyUI folder, a UI workflow and a fake hub holding what the
workflow is missing, each case chosen to prove one rule of a fix:

======================================  ==========================================================
reference                               expected outcome of ``fix`` (min confidence 0.9)
======================================  ==========================================================
checkpoints/present.safetensors         on disk: nothing to do
loras/sdxl/detail_tweaker.safetensors   Civitai exact name (90 %): saved WITH its sub-folder
vae/my_vae.safetensors                  workflow URL names ``other_name.safetensors`` on HF: saved
                                        under the reference's name, hub sha256 verified
upscale_models/4x-elsewhere.pth         in models/loras/: "elsewhere", never downloaded
controlnet/fuzzy_cn.safetensors         only a 61 % look-alike on Civitai: a failure with reason
loras/optional_lora.safetensors         on a bypassed node: skipped unless --include-optional
======================================  ==========================================================
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest

from fakehub import FakeHub, blob

DETAIL = blob(40_000, seed=11)
MY_VAE = blob(60_000, seed=12)
FUZZY = blob(20_000, seed=13)
OPTIONAL = blob(30_000, seed=14)
UPSCALER = blob(10_000, seed=15)
PRESENT = b"present checkpoint bytes"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def node(node_id: int, type_: str, widgets: Sequence[Any], mode: int = 0,
         properties: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A UI-format node as the ComfyUI frontend saves it."""
    return {"id": node_id, "type": type_, "pos": [100 * node_id, 100], "size": [315, 98], "flags": {},
            "order": node_id, "mode": mode, "inputs": [], "outputs": [],
            "properties": {"Node name for S&R": type_, **(properties or {})}, "widgets_values": list(widgets)}


def ui_workflow(nodes: List[Dict[str, Any]], models: Optional[List[Dict[str, Any]]] = None,
                wid: str = "4a0f7c55-0000-4000-8000-000000000001") -> Dict[str, Any]:
    doc: Dict[str, Any] = {"id": wid, "revision": 0, "last_node_id": max((n["id"] for n in nodes), default=0),
                           "last_link_id": 0, "nodes": nodes, "links": [], "groups": [], "config": {},
                           "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4}
    if models:
        doc["models"] = models
    return doc


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class World:
    hub: FakeHub
    root: Path  # the ComfyUI folder
    workflow: Path
    document: Dict[str, Any]
    civitai: Dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> Path:
        return self.root / "models"

    def env(self) -> Dict[str, str]:
        """Environment that points the CLI at the fake hub (for monkeypatch or a subprocess)."""
        return {
            "COMFYFIXER_CIVITAI_BASE_URL": self.hub.civitai_url,
            "HF_ENDPOINT": self.hub.hf_url,
            "COMFYFIXER_ALLOWED_HOSTS": "127.0.0.1:*,localhost:*",
            "COMFYFIXER_BACKOFF_BASE": "0.01",
            "COMFYFIXER_BACKOFF_MAX": "0.2",
            "COMFYFIXER_CIVITAI_API_TIMEOUT": "5",
        }


def build_world(hub: FakeHub, tmp_path: Path) -> World:
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "models" / "checkpoints" / "present.safetensors").write_bytes(PRESENT)
    (root / "models" / "loras").mkdir(parents=True)
    (root / "models" / "loras" / "4x-elsewhere.pth").write_bytes(UPSCALER)
    for folder in ("vae", "controlnet", "upscale_models", "embeddings"):
        (root / "models" / folder).mkdir(parents=True)

    ids = {
        "detail": hub.add_civitai_model("Detail Tweaker LoRA", {"detail_tweaker.safetensors": DETAIL}, type="LORA"),
        "fuzzy": hub.add_civitai_model("Fuzzy ControlNet", {"fuzzy_cn_v2.safetensors": FUZZY}, type="Controlnet"),
        "optional": hub.add_civitai_model("Optional Lora", {"optional_lora.safetensors": OPTIONAL}, type="LORA"),
    }
    hub.add_hf_repo("acme/vaes", {"other_name.safetensors": MY_VAE}, downloads=10)
    hub.add_hf_repo("acme/upscalers", {"4x-elsewhere.pth": UPSCALER}, downloads=10)

    document = ui_workflow(
        [
            node(1, "CheckpointLoaderSimple", ["present.safetensors"]),
            node(2, "LoraLoader", ["sdxl/detail_tweaker.safetensors", 1.0, 1.0]),
            node(3, "VAELoader", ["my_vae.safetensors"]),
            node(4, "UpscaleModelLoader", ["4x-elsewhere.pth"]),
            node(5, "ControlNetLoader", ["fuzzy_cn.safetensors"]),
            node(6, "LoraLoader", ["optional_lora.safetensors", 1.0, 1.0], mode=4),
        ],
        models=[{"name": "my_vae.safetensors", "directory": "vae", "hash": sha(MY_VAE), "hash_type": "sha256",
                 "url": "https://huggingface.co/acme/vaes/resolve/main/other_name.safetensors"}],
    )
    workflow = write_json(tmp_path / "workflows" / "world.json", document)
    return World(hub=hub, root=root, workflow=workflow, document=document, civitai=ids)


# -- the CLI against that world ---------------------------------------------------------------

@pytest.fixture(name="world")
def cli_world(fake_hub, tmp_path, monkeypatch):
    """``build_world`` with its environment set for ``comfyfixer`` (a wide terminal, so
    assertions can look for whole names).  Import it as ``cli_world``; it is named ``world``."""
    monkeypatch.setenv("COLUMNS", "200")
    w = build_world(fake_hub, tmp_path)
    for key, value in w.env().items():
        monkeypatch.setenv(key, value)
    return w


def run_cli(capsys, *argv):
    """``comfyfixer ARGV`` in process: (exit code, stdout, stderr)."""
    from comfyfixersmart import cli

    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
