"""root_folders.py + inventory: per-key extension sets, GGUF's keys over the diffusion_models and
text_encoders folders, and folders packs register inside their own directory (temp ComfyUI
roots; nothing of ComfyUI is imported)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from comfyfixersmart.datamodel import ELSEWHERE, PRESENT, ModelReference
from comfyfixersmart.extra_paths import comfyui_folder_paths
from comfyfixersmart.inventory import ModelInventory
from comfyfixersmart.root_folders import key_extensions, root_folder_paths
from comfyfixersmart.settings import Config


def put(root: Path, rel: str, data: bytes = b"weights") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def ref(filename: str, folder: str) -> ModelReference:
    return ModelReference(filename=filename, node_type="Loader", expected_type=folder, expected_directory=folder)


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "ComfyUI"
    (r / "models").mkdir(parents=True)
    return r


@pytest.fixture
def config(tmp_path):
    return Config(cache_dir=tmp_path / "cache")


def names(inv: ModelInventory, folder: str):
    return sorted(i.filename for i in inv.get_models_by_type(folder))


# -- each key's own extensions ---------------------------------------------------------------

def test_each_key_lists_the_files_of_its_own_extension_set(root, config):
    m = root / "models"
    for rel in ("upscale_models/4x.pth", "upscale_models/4x.onnx", "configs/v1.yaml",
                "configs/v1.safetensors", "checkpoints/m.safetensors", "checkpoints/m.gguf",
                "checkpoints/notes.yaml", "my_models/a.onnx", "my_models/b.txt"):
        put(m, rel)
    inv = ModelInventory(config).build(root)
    assert names(inv, "upscale_models") == ["4x.pth"]  # supported_pt_extensions: no .onnx
    assert names(inv, "configs") == ["v1.yaml"]  # ComfyUI lists only .yaml there
    assert names(inv, "checkpoints") == ["m.safetensors"]
    # a key no source declares takes Config.model_extensions
    assert names(inv, "my_models") == ["a.onnx"]
    # a file of the wrong kind is not "present": ComfyUI would not offer it
    assert inv.check(ref("m.gguf", "checkpoints")).status != PRESENT


def test_the_roots_own_folder_paths_declares_the_sets(root, config):
    (root / "folder_paths.py").write_text(textwrap.dedent("""
        import os
        folder_names_and_paths = {}
        folder_names_and_paths["upscale_models"] = ([os.path.join(models_dir, "upscale_models")], {".pth", ".onnx"})
    """))
    put(root / "models", "upscale_models/4x.onnx")
    put(root / "models", "upscale_models/4x.safetensors")
    assert names(ModelInventory(config).build(root), "upscale_models") == ["4x.onnx"]


def test_comfyuis_own_pairs_give_the_sets_inside_comfyui(root, config):
    put(root / "models", "upscale_models/4x.onnx")
    put(root / "models", "upscale_models/4x.pth")
    d = str(root / "models" / "upscale_models")
    inv = ModelInventory(config).build_from_folders({"upscale_models": ([d], {".onnx"})})
    assert names(inv, "upscale_models") == ["4x.onnx"]
    assert names(ModelInventory(config).build_from_folders({"upscale_models": [d]}), "upscale_models") == ["4x.pth"]


def test_configured_extensions_filter_and_add():
    sets = key_extensions(["loras", "unknown_key"], [".safetensors", ".weights"])
    assert sets["loras"] == {".safetensors", ".weights"}
    assert sets["unknown_key"] == {".safetensors", ".weights"}


# -- GGUF ------------------------------------------------------------------------------------

def test_gguf_keys_are_the_diffusion_models_and_text_encoders_folders(root, config):
    m = root / "models"
    put(m, "unet/q4.gguf")
    put(m, "diffusion_models/wan.safetensors")
    put(m, "clip/t5-q8.gguf")
    folders = comfyui_folder_paths(root)
    assert folders["unet_gguf"] == folders["diffusion_models"] == [m / "diffusion_models", m / "unet"]
    assert folders["clip_gguf"] == folders["text_encoders"]
    inv = ModelInventory(config).build(root)
    assert names(inv, "unet_gguf") == ["q4.gguf"]  # only .gguf, as the pack lists them
    assert names(inv, "clip_gguf") == ["t5-q8.gguf"]
    assert inv.check(ref("q4.gguf", "unet_gguf")).status == PRESENT
    # the bundled table names the GGUF loaders' folder diffusion_models: found there too
    assert inv.check(ref("q4.gguf", "diffusion_models")).status == PRESENT
    assert inv.check(ref("t5-q8.gguf", "text_encoders")).status == PRESENT
    # downloads go where the pack reads them
    assert inv.target_path("unet_gguf", "new.gguf") == m / "diffusion_models" / "new.gguf"
    assert inv.target_path("clip_gguf", "new.gguf") == m / "text_encoders" / "new.gguf"


def test_gguf_keys_follow_yaml_folders(root, config, tmp_path):
    extra = tmp_path / "elsewhere"
    put(extra, "unet/far.gguf")
    (root / "extra_model_paths.yaml").write_text(f"other:\n  base_path: {extra}\n  unet: unet\n")
    inv = ModelInventory(config).build(root)
    assert inv.check(ref("far.gguf", "unet_gguf")).status == PRESENT


# -- folders packs register in their own directory -------------------------------------------

PACK = textwrap.dedent("""
    import os
    from pathlib import Path
    import folder_paths

    class Folders:
        MOTION = "animatediff_motion_lora"

    here = os.path.dirname(os.path.realpath(__file__))
    folder_paths.add_model_folder_path("animatediff_models", os.path.join(os.path.dirname(__file__), "models"))
    folder_paths.add_model_folder_path("animatediff_models", os.path.join(folder_paths.models_dir, "animatediff_models"))
    folder_paths.add_model_folder_path(Folders.MOTION, str(Path(__file__).parent / "motion_lora"))
    folder_paths.add_model_folder_path("pack_weights", os.path.join(here, "weights"))
    folder_paths.add_model_folder_path("mystery", some_function())
""")


def test_pack_registered_folders_join_the_inventory(root, tmp_path):
    pack = root / "custom_nodes" / "ADE"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(PACK)
    put(pack, "models/mm_sd15_v3.safetensors")
    put(pack, "motion_lora/pan_left.ckpt")
    put(pack, "weights/w.bin")
    put(root / "models", "animatediff_models/mm_sdxl.ckpt")
    config = Config(cache_dir=tmp_path / "cache")
    folders, _ = root_folder_paths(root, config)
    # (models/animatediff_models is already a key of ours: listed once)
    assert folders["animatediff_models"] == [root / "models" / "animatediff_models", pack / "models"]
    assert "mystery" not in folders  # a path the reader cannot work out is left alone
    inv = ModelInventory(config).build(root)
    assert names(inv, "animatediff_models") == ["mm_sd15_v3.safetensors", "mm_sdxl.ckpt"]
    assert names(inv, "animatediff_motion_lora") == ["pan_left.ckpt"]
    assert names(inv, "pack_weights") == ["w.bin"]
    assert inv.check(ref("mm_sd15_v3.safetensors", "animatediff_models")).status == PRESENT
    # without reading node sources, only ComfyUI's own table: the file is elsewhere at best
    off = ModelInventory(Config(cache_dir=tmp_path / "cache", read_node_sources=False)).build(root)
    assert off.check(ref("mm_sd15_v3.safetensors", "animatediff_models")).status != PRESENT
    assert off.check(ref("w.bin", "pack_weights")).status not in (PRESENT, ELSEWHERE)


# -- the server run outside ComfyUI with a root ------------------------------------------------

def test_the_server_outside_comfyui_sees_pack_folders_and_caches_the_reading(root, tmp_path, monkeypatch):
    import comfyfixersmart.scan.rootdefs as rootdefs
    from comfyfixersmart.service.routes import FixerRoutes, default_core_factory

    pack = root / "custom_nodes" / "ADE"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(PACK)
    put(pack, "models/mm_sd15_v3.safetensors")
    put(pack, "weights/w.bin")
    calls = []
    real = rootdefs.read_root
    monkeypatch.setattr(rootdefs, "read_root", lambda *a, **k: calls.append(a) or real(*a, **k))
    config = Config(cache_dir=tmp_path / "cache", state_dir=tmp_path / "state", comfyui_root=root)
    routes = FixerRoutes(config=config)
    try:
        table = routes.folders()
        # read for the inventory, never a download target (custom_nodes holds code)
        assert table.readable["animatediff_models"] == [str(root / "models" / "animatediff_models"),
                                                        str(pack / "models")]
        assert table.readable["pack_weights"] == [str(pack / "weights")]
        assert table["animatediff_models"] == [str(root / "models" / "animatediff_models")]
        assert "pack_weights" not in table
        core = default_core_factory(config, table)
        try:
            assert core.inventory.check(ref("mm_sd15_v3.safetensors", "animatediff_models")).status == PRESENT
            assert core.inventory.has_model("w.bin", "pack_weights")
        finally:
            core.close()
        for _ in range(3):
            assert routes.folders() == table
        assert len(calls) == 1  # the packs were read once, not on every request

        # a new pack is seen on the next request
        other = root / "custom_nodes" / "Other"
        other.mkdir()
        (other / "__init__.py").write_text(
            "import os, folder_paths\n"
            "folder_paths.add_model_folder_path('other_models', os.path.join(os.path.dirname(__file__), 'm'))\n")
        assert routes.folders().readable["other_models"] == [str(other / "m")]
        assert len(calls) == 2
        # and so is a new extra_model_paths.yaml
        (root / "extra_model_paths.yaml").write_text(f"x:\n  base_path: {tmp_path / 'more'}\n  loras: loras\n")
        assert str(tmp_path / "more" / "loras") in routes.folders()["loras"]
        assert len(calls) == 3
    finally:
        routes.close()
