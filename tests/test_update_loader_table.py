"""scripts/update_loader_table.py: the bundled tables regenerated from sources, merged not replaced."""

from __future__ import annotations

import importlib.util
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from comfyfixersmart.scan.loaders import CORE_TABLE, CUSTOM_TABLE, build_table, read_table_file

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / "tests" / "fixtures" / "custom_nodes" / "cfs_test_pack"


def load_script():
    spec = importlib.util.spec_from_file_location("update_loader_table", REPO / "scripts" / "update_loader_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sources(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "comfy_extras").mkdir(parents=True)
    (comfy / "comfyui_version.py").write_text('__version__ = "9.9.9"\n')
    (comfy / "folder_paths.py").write_text(textwrap.dedent("""
        supported_pt_extensions = {'.safetensors', '.pt'}
        folder_names_and_paths = {}
        folder_names_and_paths["vae"] = ([os.path.join(models_dir, "vae")], supported_pt_extensions)
        folder_names_and_paths["geometry_estimation"] = ([os.path.join(models_dir, "geometry_estimation")], supported_pt_extensions)
        folder_names_and_paths["custom_nodes"] = ([os.path.join(base_path, "custom_nodes")], set())
    """))
    (comfy / "nodes.py").write_text(textwrap.dedent("""
        import folder_paths
        class VAELoader:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"vae_name": (folder_paths.get_filename_list("vae"),)}}
        class DualCLIPLoader:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"clip_name1": (folder_paths.get_filename_list("text_encoders"),),
                                     "clip_name2": (folder_paths.get_filename_list("text_encoders"),)}}
        class UNETLoader:
            @classmethod
            def INPUT_TYPES(s):
                return {"required": {"unet_name": (folder_paths.get_filename_list("checkpoints"),)}}
        NODE_CLASS_MAPPINGS = {"VAELoader": VAELoader, "DualCLIPLoader": DualCLIPLoader, "UNETLoader": UNETLoader}
    """))
    (comfy / "comfy_extras" / "nodes_moge.py").write_text(textwrap.dedent("""
        import folder_paths
        from comfy_api.latest import io
        class LoadMoGeModel(io.ComfyNode):
            @classmethod
            def define_schema(cls):
                return io.Schema(node_id="LoadMoGeModel", inputs=[
                    io.Combo.Input("model_name", options=folder_paths.get_filename_list("geometry_estimation"))])
    """))
    pack = tmp_path / "packs" / "cfs_test_pack"
    shutil.copytree(PACK, pack)
    core_out, custom_out = tmp_path / "core.json", tmp_path / "custom.json"
    shutil.copy(CORE_TABLE, core_out)
    shutil.copy(CUSTOM_TABLE, custom_out)
    return comfy, pack, core_out, custom_out


def test_regenerates_with_provenance_and_keeps_hand_written_entries(sources, capsys):
    comfy, pack, core_out, custom_out = sources
    script = load_script()
    before = json.loads(core_out.read_text())
    code = script.main(["--comfyui", str(comfy), "--pack", str(pack),
                        "--origin", "ComfyUI=comfyanonymous/ComfyUI@" + "a" * 40,
                        "--origin", "cfs_test_pack=tests/cfs_test_pack@" + "b" * 40,
                        "--core-out", str(core_out), "--custom-out", str(custom_out)])
    assert code == 0
    out = capsys.readouterr().out
    core = json.loads(core_out.read_text())
    custom = json.loads(custom_out.read_text())
    assert core["comfyui"]["version"] == "9.9.9" and core["comfyui"]["commit"] == "a" * 40
    assert core["loaders"]["LoadMoGeModel"] == [{"input": "model_name", "folder": "geometry_estimation", "index": 0}]
    assert "geometry_estimation" in core["folders"] and "custom_nodes" not in core["folders"]
    # hand-written rules survive: special VAE values, the repeat entry covering clip_name1/2
    assert core["loaders"]["VAELoader"] == before["loaders"]["VAELoader"]
    assert core["loaders"]["DualCLIPLoader"] == before["loaders"]["DualCLIPLoader"]
    # a differing folder is reported, not applied
    assert core["loaders"]["UNETLoader"] == before["loaders"]["UNETLoader"]
    assert "! UNETLoader.unet_name" in out
    assert set(before["node_types"]) <= set(core["node_types"])
    pack_row = next(p for p in custom["packs"] if p["name"] == "cfs_test_pack")
    assert pack_row["repo"] == "tests/cfs_test_pack" and pack_row["commit"] == "b" * 40
    assert custom["loaders"]["CFSSamLoader"] == [{"input": "sam_model", "folder": "cfs_sam", "index": 1}]
    assert custom["loaders"]["CFSOptionalVAE"] == [{"input": "vae_name", "folder": "vae", "index": 1,
                                                   "ignore": ["None"]}]
    assert {"cfs_sam", "cfs_face_models"} <= set(custom["folders"])
    # the scanner reads what was written; a second run changes nothing
    assert read_table_file(core_out, source="core").get("LoadMoGeModel")[0].folder == "geometry_estimation"
    read_table_file(custom_out, source="custom")
    assert script.main(["--comfyui", str(comfy), "--pack", str(pack), "--core-out", str(core_out),
                        "--custom-out", str(custom_out), "--check",
                        "--origin", "ComfyUI=comfyanonymous/ComfyUI@" + "a" * 40,
                        "--origin", "cfs_test_pack=tests/cfs_test_pack@" + "b" * 40]) == 0


def test_single_newer_files_join_the_core_table_with_their_origin(sources, tmp_path):
    comfy, _pack, core_out, custom_out = sources
    newer = tmp_path / "newer" / "nodes_cond.py"
    newer.parent.mkdir()
    newer.write_text(textwrap.dedent("""
        import folder_paths
        from comfy_api.latest import io
        class ConditioningLoader(io.ComfyNode):
            @classmethod
            def define_schema(cls):
                return io.Schema(node_id="ConditioningLoader", inputs=[
                    io.Combo.Input("conditioning_name", options=folder_paths.get_filename_list("embeddings"))])
    """))
    script = load_script()
    args = ["--comfyui", str(comfy), "--core-out", str(core_out), "--custom-out", str(custom_out),
            "--origin", "ComfyUI=comfyanonymous/ComfyUI@" + "a" * 40]
    assert script.main(args + ["--extra", f"{newer}=someone/ComfyUI@" + "c" * 40]) == 0
    core = json.loads(core_out.read_text())
    assert core["loaders"]["ConditioningLoader"] == [{"input": "conditioning_name", "folder": "embeddings", "index": 0}]
    assert "ConditioningLoader" in core["node_types"]
    assert core["comfyui"]["commit"] == "a" * 40
    assert core["comfyui"]["extra_files"] == [{"file": "nodes_cond.py", "repo": "someone/ComfyUI", "commit": "c" * 40}]
    # an extra file without its origin is refused: every source read is recorded
    with pytest.raises(SystemExit):
        script.main(args + ["--extra", str(newer)])


def test_refuses_a_folder_that_is_not_comfyui(tmp_path):
    with pytest.raises(SystemExit):
        load_script().main(["--comfyui", str(tmp_path)])


def test_bundled_tables_cover_the_newest_comfyui_loaders_and_folder_keys():
    core = json.loads(CORE_TABLE.read_text())
    assert core["comfyui"]["version"] and len(core["comfyui"]["commit"]) == 40
    table = build_table()
    expected = {
        "LoadMoGeModel": "geometry_estimation", "LoadBackgroundRemovalModel": "background_removal",
        "FrameInterpolationModelLoader": "frame_interpolation", "OpticalFlowLoader": "optical_flow",
        "LoadMediaPipeFaceLandmarker": "detection", "AudioEncoderLoader": "audio_encoders",
        "LatentUpscaleModelLoader": "latent_upscale_models", "LTXVAudioVAELoader": "checkpoints",
        # newer than the tree: read from single files, recorded under comfyui.extra_files
        "ConditioningLoader": "embeddings", "SAM3DBody_Loader": "detection",
    }
    for node_type, folder in expected.items():
        assert table.get(node_type)[0].folder == folder, node_type
    assert {"geometry_estimation", "background_removal", "frame_interpolation", "optical_flow",
            "detection"} <= set(core["folders"])
    custom = json.loads(CUSTOM_TABLE.read_text())
    assert all(len(p["commit"]) == 40 and "/" in p["repo"] for p in custom["packs"])
