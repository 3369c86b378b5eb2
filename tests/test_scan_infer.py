"""Unknown node types (issue 9.5): the folder is guessed from the input name, the node type and
the file name, at a confidence below a real loader's, with the reason given."""

from __future__ import annotations

import pytest

from comfyfixersmart.scan import WorkflowScanner
from comfyfixersmart.scan.infer import (
    FILE_NAME_CONFIDENCE,
    INPUT_CONFIDENCE,
    NODE_TYPE_CONFIDENCE,
    UNKNOWN_CONFIDENCE,
    infer_folder,
    words,
)


@pytest.mark.parametrize("name,expected", [
    ("LoraLoaderX", "lora_loader_x"), ("lora name", "lora_name"), ("IPAdapterUnifiedLoader", "ip_adapter_unified_loader"),
    ("UNETLoaderGGUF", "unet_loader_gguf"), ("clip_name1", "clip_name1"),
])
def test_words(name, expected):
    assert words(name) == expected


@pytest.mark.parametrize("input_name,folder", [
    ("lora_name", "loras"), ("lora_1", "loras"), ("vae_name", "vae"), ("ckpt_name", "checkpoints"),
    ("unet_name", "diffusion_models"), ("clip_name", "text_encoders"), ("t5_name", "text_encoders"),
    ("clip_vision", "clip_vision"), ("clip_vision_name", "clip_vision"), ("control_net_name", "controlnet"),
    ("controlnet", "controlnet"), ("upscale_model", "upscale_models"), ("ipadapter_file", "ipadapter"),
    ("sam_model", "sams"), ("yolo_model", "ultralytics"), ("gguf_name", "diffusion_models"),
    ("insightface_model", "insightface"), ("motion_module", "animatediff_models"),
])
def test_input_names(input_name, folder):
    guess = infer_folder("SomePackNode", input_name, "weights.safetensors")
    assert (guess.folder, guess.confidence) == (folder, INPUT_CONFIDENCE)
    assert repr(input_name) in guess.reason and "SomePackNode" in guess.reason


@pytest.mark.parametrize("node_type,folder", [
    ("MyLoraStack", "loras"), ("FancyVAELoader", "vae"), ("RealESRGANUpscaler", "upscale_models"),
    ("UpscaleModelLoaderPlus", "upscale_models"), ("ACN_ControlNetLoaderAdvancedX", "controlnet"),
    ("CLIPVisionLoaderPlus", "clip_vision"), ("UnetLoaderGGUFx", "diffusion_models"),
    ("IPAdapterModelLoaderX", "ipadapter"), ("SAMLoaderX", "sams"), ("UltralyticsDetectorX", "ultralytics"),
    ("InsightFaceLoaderX", "insightface"), ("T5TextEncoderLoaderX", "text_encoders"),
])
def test_node_types(node_type, folder):
    guess = infer_folder(node_type, "model_name", "weights.safetensors")
    assert (guess.folder, guess.confidence) == (folder, NODE_TYPE_CONFIDENCE)


@pytest.mark.parametrize("node_type", ["MySamplerNode", "KSamplerX", "SamplerCustomPlus", "Resample", "Clipboard"])
def test_words_not_substrings(node_type):
    """'sam' is not in 'sampler', 'clip' is not in 'clipboard'."""
    assert infer_folder(node_type, "", "weights.safetensors").folder == "unknown"


@pytest.mark.parametrize("filename,folder", [
    ("4x-UltraSharp.pth", "upscale_models"), ("RealESRGAN_x4plus.pth", "upscale_models"),
    ("4x_NMKD-Siax_200k.pth", "upscale_models"), ("2x_foo.safetensors", "upscale_models"),
    ("t5xxl_fp16.safetensors", "text_encoders"), ("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders"),
    ("clip_l.safetensors", "text_encoders"), ("clip_g.safetensors", "text_encoders"),
    ("qwen_2.5_vl_7b_fp8_scaled.safetensors", "text_encoders"),
    ("sdxl_vae.safetensors", "vae"), ("ae.safetensors", "vae"), ("wan_2.1_vae.safetensors", "vae"),
    ("add_detail_lora.safetensors", "loras"), ("style_LoRA_v2.safetensors", "loras"),
    ("control_v11p_sd15_canny.pth", "controlnet"), ("controlnet-union-sdxl.safetensors", "controlnet"),
    ("clip_vision_h.safetensors", "clip_vision"), ("sigclip_vision_patch14_384.safetensors", "clip_vision"),
    ("ip-adapter_sd15.safetensors", "ipadapter"), ("inswapper_128.onnx", "insightface"),
    ("sam_vit_b_01ec64.pth", "sams"), ("face_yolov8m.pt", "ultralytics"),
    ("codeformer-v0.1.0.pth", "facerestore_models"), ("mm_sd_v15_v2.ckpt", "animatediff_models"),
    ("flux1-dev-Q4_K_S.gguf", "diffusion_models"), ("t5-v1_1-xxl-encoder-Q5_K_M.gguf", "text_encoders"),
    ("flux1-redux-dev.safetensors", "style_models"), ("photomaker-v2.bin", "photomaker"),
    ("depth_anything_v2_vitl.pth", "depthanything"), ("old_model.ckpt", "checkpoints"),
])
def test_file_names(filename, folder):
    guess = infer_folder("SomePackNode", "", filename)
    assert (guess.folder, guess.confidence) == (folder, FILE_NAME_CONFIDENCE), guess
    assert "file name" in guess.reason


@pytest.mark.parametrize("filename", ["model.safetensors", "weights.onnx", "thing.pt", "dreamshaper_8.safetensors"])
def test_no_clue_is_unknown(filename):
    guess = infer_folder("MysteryNode", "model", filename)
    assert (guess.folder, guess.confidence) == ("unknown", UNKNOWN_CONFIDENCE)
    assert "choose it by hand" in guess.reason


def test_input_beats_node_type_beats_file_name():
    assert infer_folder("MyVaeNode", "lora_name", "4x.pth").folder == "loras"
    assert infer_folder("MyVaeNode", "", "4x.pth").folder == "vae"
    assert infer_folder("MysteryNode", "", "4x.pth").folder == "upscale_models"


def test_scanner_reports_the_guess_in_both_formats(make_config):
    scanner = WorkflowScanner(make_config())
    ui = {"nodes": [{"id": 1, "type": "MysteryNode", "widgets_values": ["4x-UltraSharp.pth", "opaque.onnx"]}],
          "links": []}
    api = {"1": {"class_type": "MysteryNode", "inputs": {"lora_name": "x.safetensors", "m": "t5xxl_fp16.safetensors"}}}
    refs = {r.key: r for r in scanner.scan_data(ui).model_references}
    assert refs["upscale_models/4x-UltraSharp.pth"].confidence == FILE_NAME_CONFIDENCE
    assert "file name" in refs["upscale_models/4x-UltraSharp.pth"].folder_reason
    assert refs["unknown/opaque.onnx"].confidence == UNKNOWN_CONFIDENCE
    refs = {r.key: r for r in scanner.scan_data(api).model_references}
    assert refs["loras/x.safetensors"].confidence == INPUT_CONFIDENCE
    assert refs["text_encoders/t5xxl_fp16.safetensors"].confidence == FILE_NAME_CONFIDENCE
    from comfyfixersmart.report import reference_to_json

    assert "folder_reason" in reference_to_json(refs["loras/x.safetensors"])


def test_the_cli_marks_a_guessed_folder(tmp_path, capsys):
    import json

    from comfyfixersmart.cli import main

    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"nodes": [{"id": 1, "type": "MysteryNode", "widgets_values": ["4x-UltraSharp.pth"]},
                                        {"id": 2, "type": "VAELoader", "widgets_values": ["vae.safetensors"]}],
                              "links": []}))
    main(["scan", str(wf)])
    out = capsys.readouterr().out
    assert out.count("(guessed)") == 1 and "upscale_models" in out
    main(["scan", "--json", str(wf)])
    refs = {r["key"]: r for r in json.loads(capsys.readouterr().out)["workflows"][0]["references"]}
    assert "file name" in refs["upscale_models/4x-UltraSharp.pth"]["folder_reason"]
    assert "folder_reason" not in refs["vae/vae.safetensors"]
