"""The static node-definition reader (scan/nodedefs.py) and the map of a ComfyUI root."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from comfyfixersmart import cli
from comfyfixersmart.scan import WorkflowScanner
from comfyfixersmart.scan.loaders import build_table
from comfyfixersmart.scan.nodedefs import FolderInput, collect, read_source
from comfyfixersmart.scan.nodetable import defs_table, table_entries
from comfyfixersmart.scan.rootdefs import CACHE_NAME, read_root
from comfyfixersmart.settings import Config

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PACK = FIXTURES / "custom_nodes" / "cfs_test_pack"
WORKFLOWS = FIXTURES / "cfs_test_pack"
EXPECTED = json.loads((WORKFLOWS / "expected.json").read_text())["references"]


def read(src: str, node_type: str):
    defs = collect([read_source(textwrap.dedent(src))])
    node = defs.nodes.get(node_type)
    return [(i.input, i.folder, i.index, i.extras) for i in node.inputs] if node else []


# -- declaration styles ----------------------------------------------------------------------

def test_v1_plain_list_and_mapping():
    assert read("""
        import folder_paths
        class L:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"model": ("MODEL",), "lora_name": (folder_paths.get_filename_list("loras"),),
                                     "strength": ("FLOAT", {"default": 1.0})}}
        NODE_CLASS_MAPPINGS = {"My Lora": L}
    """, "My Lora") == [("lora_name", "loras", 0, ())]


def test_none_plus_list_and_list_plus_extra_name_no_file():
    src = """
        import folder_paths as fp
        class A:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"vae": (["None"] + fp.get_filename_list("vae"),),
                                     "lora": (fp.get_filename_list("loras") + ["[None]"],)}}
        NODE_CLASS_MAPPINGS = {"A": A}
    """
    assert read(src, "A") == [("vae", "vae", 0, ("None",)), ("lora", "loras", 1, ("[None]",))]


def test_variables_comprehensions_sorted_and_helpers():
    src = """
        import folder_paths
        CKPTS_KEY = "checkpoints"
        class A:
            @staticmethod
            def vae_list(s):
                vaes = folder_paths.get_filename_list("vae")
                vaes.append("pixel_space")
                return vaes
            @classmethod
            def INPUT_TYPES(cls):
                loras = sorted([x for x in folder_paths.get_filename_list("loras") if x.endswith(".safetensors")])
                ckpts = list(folder_paths.get_filename_list_(CKPTS_KEY)[0])
                return {"required": {"a": (loras,), "b": (ckpts,), "c": (cls.vae_list(cls),),
                                     "d": (tuple(f for f in folder_paths.get_filename_list("unet")),)}}
        NODE_CLASS_MAPPINGS = {"A": A}
    """
    assert read(src, "A") == [("a", "loras", 0, ()), ("b", "checkpoints", 1, ()),
                              ("c", "vae", 2, ("pixel_space",)), ("d", "diffusion_models", 3, ())]


def test_helpers_with_folder_parameters():
    src = """
        import folder_paths
        def files_of(kind, ext=".safetensors"):
            return [f for f in folder_paths.get_filename_list(kind) if f.endswith(ext)]
        class A:
            def with_ext(folder="inpaint", extensions=".pth"):
                return [f for f in folder_paths.get_filename_list(folder) if f.endswith(extensions)]
            @classmethod
            def listing(cls, key):
                return folder_paths.get_filename_list(key)
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"a": (s.with_ext(),), "b": (files_of("loras"),), "c": (files_of(kind="vae"),),
                                     "d": (s.listing("upscale_models"),)}}
        NODE_CLASS_MAPPINGS = {"A": A}
    """
    assert read(src, "A") == [("a", "inpaint", 0, ()), ("b", "loras", 1, ()), ("c", "vae", 2, ()),
                              ("d", "upscale_models", 3, ())]


def test_from_import_and_legacy_keys():
    src = """
        from folder_paths import get_filename_list
        class A:
            @classmethod
            def INPUT_TYPES(cls):
                return {"required": {"clip": (get_filename_list("clip"),), "unet": (get_filename_list("unet"),),
                                     "t2i": (get_filename_list("t2i_adapter"),)}}
        NODE_CLASS_MAPPINGS = {"A": A}
    """
    assert read(src, "A") == [("clip", "text_encoders", 0, ()), ("unet", "diffusion_models", 1, ()),
                              ("t2i", "controlnet", 2, ())]


def test_dict_built_step_by_step_and_numbered_inputs():
    src = """
        import folder_paths
        class A:
            @classmethod
            def INPUT_TYPES(cls):
                loras = ["None"] + folder_paths.get_filename_list("loras")
                inputs = {"required": {"switch": (["On", "Off"],)}, "optional": {}}
                inputs["required"].update({f"lora_{i}": (loras,) for i in range(1, 4)})
                inputs["optional"]["vae"] = (folder_paths.get_filename_list("vae"),)
                return inputs
        NODE_CLASS_MAPPINGS = {"A": A}
    """
    assert read(src, "A") == [("lora_1", "loras", 1, ("None",)), ("lora_2", "loras", 2, ("None",)),
                              ("lora_3", "loras", 3, ("None",)), ("vae", "vae", 4, ())]


def test_widget_positions_count_control_widgets_and_stop_at_unknowns():
    src = """
        import folder_paths
        from .other import some_types
        class A:
            @classmethod
            def INPUT_TYPES(cls):
                return {"required": {"seed": ("INT", {}), "steps": ("INT", {"control_after_generate": True}),
                                     "text": ("STRING", {"forceInput": True}), "image": ("IMAGE",),
                                     "ckpt": (folder_paths.get_filename_list("checkpoints"),),
                                     "mystery": (some_types(),),
                                     "vae": (folder_paths.get_filename_list("vae"),)}}
        NODE_CLASS_MAPPINGS = {"A": A}
    """
    assert read(src, "A") == [("ckpt", "checkpoints", 4, ()), ("vae", "vae", None, ())]


def test_inheritance_and_super_input_types():
    src = """
        import folder_paths
        class Base:
            @classmethod
            def INPUT_TYPES(cls):
                return {"required": {"ckpt_name": (folder_paths.get_filename_list("checkpoints"),)}}
        class Child(Base):
            pass
        class Extended(Base):
            @classmethod
            def INPUT_TYPES(cls):
                d = super().INPUT_TYPES()
                d["required"]["vae_name"] = (folder_paths.get_filename_list("vae"),)
                return d
        NODE_CLASS_MAPPINGS = {"Child": Child, "Extended": Extended}
    """
    assert read(src, "Child") == [("ckpt_name", "checkpoints", 0, ())]
    assert read(src, "Extended") == [("ckpt_name", "checkpoints", 0, ()), ("vae_name", "vae", 1, ())]


def test_v3_schema_combo_inputs():
    src = """
        import folder_paths
        from comfy_api.latest import ComfyExtension, io
        class Loader(io.ComfyNode):
            @classmethod
            def define_schema(cls):
                return io.Schema(
                    node_id="LatentUpscaleModelLoader",
                    inputs=[
                        io.Model.Input("model"),
                        io.Int.Input("noise_seed", default=0),
                        io.Combo.Input("mode", options=["a", "b"]),
                        io.Combo.Input("model_name", options=folder_paths.get_filename_list("latent_upscale_models")),
                        io.Combo.Input(id="vae", options=["none"] + folder_paths.get_filename_list("vae"), optional=True),
                        io.Float.Input("strength"),
                    ],
                    outputs=[io.Model.Output()],
                )
        class Ext(ComfyExtension):
            async def get_node_list(self):
                return [Loader]
    """
    assert read(src, "LatentUpscaleModelLoader") == [
        ("model_name", "latent_upscale_models", 3, ()), ("vae", "vae", 5, ("none",))]


def test_registered_folder_keys_and_extensions():
    fd = read_source(textwrap.dedent("""
        import os, folder_paths
        folder_paths.add_model_folder_path("ipadapter", os.path.join(folder_paths.models_dir, "ipadapter"))
        folder_paths.folder_names_and_paths["unet_gguf"] = (["x"], {".gguf"})
        folder_paths.folder_names_and_paths["clip"] = (["x"], folder_paths.supported_pt_extensions)
    """))
    assert fd.folders["ipadapter"] is None
    assert fd.folders["unet_gguf"] == (".gguf",)
    assert ".safetensors" in fd.folders["text_encoders"]


def test_broken_source_reads_as_nothing():
    assert read_source("def (:\n").classes == {}
    assert read_source(b"\xff\xfe garbage").classes == {}


def test_classes_without_mapping_use_their_name_and_table_entries():
    defs = collect([read_source(textwrap.dedent("""
        import folder_paths
        class Unmapped:
            @classmethod
            def INPUT_TYPES(cls):
                return {"required": {"x": (["None"] + folder_paths.get_filename_list("loras"),)}}
    """))])
    assert table_entries(defs) == {"Unmapped": [{"input": "x", "folder": "loras", "index": 0, "ignore": ["None"]}]}


# -- a ComfyUI root ------------------------------------------------------------------------------

@pytest.fixture
def comfy_root(tmp_path):
    root = tmp_path / "ComfyUI"
    shutil.copytree(PACK, root / "custom_nodes" / "cfs_test_pack")
    (root / "custom_nodes" / "broken.py.disabled").write_text("NODE_CLASS_MAPPINGS = {")
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "nodes.py").write_text(textwrap.dedent("""
        import folder_paths
        class NewCoreLoader:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"gemma_name": (folder_paths.get_filename_list("text_encoders"),)}}
        NODE_CLASS_MAPPINGS = {"NewCoreLoader": NewCoreLoader}
    """))
    return root


def test_read_root_maps_every_loader_of_the_pack(comfy_root, tmp_path):
    defs = read_root(comfy_root, tmp_path / "cache")
    pack = defs.packs["cfs_test_pack"]
    found = {f"{i.folder}:{t}.{i.input}" for t, n in pack.nodes.items() for i in n.inputs}
    assert {k.split("/")[0] for k in EXPECTED} == {f.split(":")[0] for f in found}
    assert pack.nodes["CFSCheckpointPair"].inputs[1] == FolderInput("ckpt_name", "checkpoints", 3)
    assert set(pack.folders) == {"cfs_face_models", "cfs_sam"}
    assert defs.core.node_types == {"NewCoreLoader"}
    table = defs.table()
    assert table.is_core("NewCoreLoader") and not table.is_core("CFSSamLoader")
    assert table.get("CFSSamLoader")[0].source == "custom"


def test_root_cache_is_reused_until_a_file_changes(comfy_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    read_root(comfy_root, cache)
    assert (cache / CACHE_NAME).is_file()
    import comfyfixersmart.scan.rootdefs as rootdefs

    calls = []
    real = rootdefs.read_source
    monkeypatch.setattr(rootdefs, "read_source", lambda *a: calls.append(a[1]) or real(*a))
    read_root(comfy_root, cache)
    assert calls == []
    target = comfy_root / "custom_nodes" / "cfs_test_pack" / "nodes_styles.py"
    target.write_text(target.read_text().replace('"cfs_face_models")', '"cfs_faces")'))
    defs = read_root(comfy_root, cache)
    assert calls == [str(target)]
    assert defs.packs["cfs_test_pack"].nodes["CFSFaceUpscaleLoader"].inputs[0].folder == "cfs_faces"


def _references(data):
    return {f"{r.expected_directory}/{r.filename}": r.node_type for r in data.model_references}


@pytest.mark.parametrize("form", ["ui", "api"])
def test_scanner_with_root_finds_every_model_in_its_folder(comfy_root, tmp_path, form):
    config = Config(comfyui_root=comfy_root, cache_dir=tmp_path / "cache")
    data = WorkflowScanner(config).scan_workflow(WORKFLOWS / f"workflow_{form}.json")
    assert _references(data) == EXPECTED
    assert {r.source for r in data.model_references} == {"custom"}
    # without the root only the bundled table and guesses remain: the pack's own keys are missed
    plain = WorkflowScanner(Config(cache_dir=tmp_path / "cache")).scan_workflow(WORKFLOWS / f"workflow_{form}.json")
    assert _references(plain) != EXPECTED


def test_reading_node_sources_can_be_turned_off(comfy_root, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYFIXER_READ_NODE_SOURCES", "false")
    config = Config.load(comfyui_root=comfy_root, cache_dir=tmp_path / "cache")
    assert config.read_node_sources is False
    data = WorkflowScanner(config).scan_workflow(WORKFLOWS / "workflow_api.json")
    assert _references(data) != EXPECTED
    assert not (tmp_path / "cache" / CACHE_NAME).exists()


@pytest.mark.parametrize("form", ["ui", "api"])
def test_cli_scan_with_comfyui_root(comfy_root, tmp_path, monkeypatch, capsys, form):
    monkeypatch.setenv("COMFYFIXER_CACHE_DIR", str(tmp_path / "cache"))
    code = cli.main(["scan", str(WORKFLOWS / f"workflow_{form}.json"), "--comfyui-root", str(comfy_root), "--json"])
    out = json.loads(capsys.readouterr().out)
    refs = {f"{r['directory']}/{r['filename']}": r["node_type"] for wf in out["workflows"] for r in wf["references"]}
    assert refs == EXPECTED
    assert code == 1  # every model is missing from the empty models folder


def test_derived_table_corrects_the_bundled_one_per_input():
    derived = defs_table(collect([read_source(textwrap.dedent("""
        import folder_paths
        class VAELoader:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"vae_name": (folder_paths.get_filename_list("my_vaes"),),
                                     "extra": (folder_paths.get_filename_list("vae_approx"),)}}
        NODE_CLASS_MAPPINGS = {"VAELoader": VAELoader}
    """))]))
    bundled = build_table()
    table = build_table(derived=derived)
    vae = {s.input: s for s in table.get("VAELoader")}
    assert vae["vae_name"].folder == "my_vaes"
    assert vae["vae_name"].values == {s.input: s for s in bundled.get("VAELoader")}["vae_name"].values
    assert vae["extra"].folder == "vae_approx"
    assert table.get("LoraLoader") == bundled.get("LoraLoader")


def test_root_keeps_the_bundled_folder_when_the_pack_key_is_unknown_outside_comfyui(comfy_root, tmp_path):
    pack = comfy_root / "custom_nodes" / "ComfyUI-GGUF"
    pack.mkdir()
    (pack / "__init__.py").write_text(textwrap.dedent("""
        import folder_paths
        class UnetLoaderGGUF:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"unet_name": (folder_paths.get_filename_list("unet_gguf"),)}}
        NODE_CLASS_MAPPINGS = {"UnetLoaderGGUF": UnetLoaderGGUF}
    """))
    config = Config(comfyui_root=comfy_root, cache_dir=tmp_path / "cache")
    assert WorkflowScanner(config).table.get("UnetLoaderGGUF")[0].folder == "diffusion_models"
    # models/unet_gguf is not a folder of the key: GGUF sets it to the diffusion_models folders
    (comfy_root / "models" / "unet_gguf").mkdir()
    assert WorkflowScanner(config).table.get("UnetLoaderGGUF")[0].folder == "diffusion_models"
    # once those exist the key has real folders outside ComfyUI too, and the source wins
    (comfy_root / "models" / "unet").mkdir()
    assert WorkflowScanner(config).table.get("UnetLoaderGGUF")[0].folder == "unet_gguf"
    # inside ComfyUI (no trusted set: the live key comes with its real folders) the source wins
    live = read_root(comfy_root, tmp_path / "cache").table()
    assert build_table(derived=live).get("UnetLoaderGGUF")[0].folder == "unet_gguf"


def test_a_packs_tests_folder_is_not_read(comfy_root, tmp_path):
    tests = comfy_root / "custom_nodes" / "cfs_test_pack" / "tests"
    tests.mkdir()
    (tests / "stand_in.py").write_text(textwrap.dedent("""
        import folder_paths
        class StandIn:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"x": (folder_paths.get_filename_list("loras"),)}}
        NODE_CLASS_MAPPINGS = {"StandIn": StandIn}
    """))
    assert "StandIn" not in read_root(comfy_root, tmp_path / "cache").packs["cfs_test_pack"].node_types


def test_reading_any_python_never_fails(monkeypatch):
    import sysconfig

    import comfyfixersmart.scan.nodedefs as nodedefs

    failures = []
    monkeypatch.setattr(nodedefs.log, "debug", lambda msg, *a, **k: failures.append(a))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:150] + sorted((stdlib / "json").glob("*.py"))
    assert len(files) > 50
    for f in files:
        read_source(f.read_bytes(), str(f))
    assert failures == []  # no file needed the reader's last-resort guard
