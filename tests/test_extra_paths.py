"""extra_paths.py: ComfyUI's folder table and extra_model_paths.yaml, read as ComfyUI reads them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from comfyfixersmart.errors import ConfigurationError
from comfyfixersmart.extra_paths import (
    ExtraPath,
    add_model_folder_path,
    comfyui_folder_paths,
    default_folder_paths,
    model_folders_only,
    read_extra_model_paths,
)

A1111_AND_COMFY = """\
a111:
    base_path: {a1111}
    checkpoints: models/Stable-diffusion
    configs: models/Stable-diffusion
    vae: models/VAE
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: |
                  models/ESRGAN
                  models/RealESRGAN
                  models/SwinIR
    embeddings: embeddings
    controlnet: models/ControlNet

shared:
    base_path: ../shared_models
    is_default: true
    checkpoints: checkpoints
    unet: unet_here
    clip: clip_here
    t2i_adapter: adapters

nothing:

other_ui:
    checkpoints: /abs/other/checkpoints
    gligen: relative/gligen
"""


def _yaml(tmp_path: Path, text: str, name: str = "extra_model_paths.yaml") -> Path:
    path = tmp_path / "ComfyUI" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_sections_base_path_and_multiline_blocks(tmp_path, monkeypatch):
    a1111 = tmp_path / "sd-webui"
    yml = _yaml(tmp_path, A1111_AND_COMFY.format(a1111=a1111))
    monkeypatch.chdir("/")  # relative resolution must use the yaml's folder, not the cwd
    entries = read_extra_model_paths(yml)
    got = [(e.section, e.folder, str(e.path), e.is_default) for e in entries]
    comfy_dir = tmp_path / "ComfyUI"
    shared = tmp_path / "shared_models"
    assert got == [
        ("a111", "checkpoints", str(a1111 / "models/Stable-diffusion"), False),
        ("a111", "configs", str(a1111 / "models/Stable-diffusion"), False),
        ("a111", "vae", str(a1111 / "models/VAE"), False),
        ("a111", "loras", str(a1111 / "models/Lora"), False),
        ("a111", "loras", str(a1111 / "models/LyCORIS"), False),
        ("a111", "upscale_models", str(a1111 / "models/ESRGAN"), False),
        ("a111", "upscale_models", str(a1111 / "models/RealESRGAN"), False),
        ("a111", "upscale_models", str(a1111 / "models/SwinIR"), False),
        ("a111", "embeddings", str(a1111 / "embeddings"), False),
        ("a111", "controlnet", str(a1111 / "models/ControlNet"), False),
        # relative base_path: from the yaml's own folder; legacy keys mapped like map_legacy
        ("shared", "checkpoints", str(shared / "checkpoints"), True),
        ("shared", "diffusion_models", str(shared / "unet_here"), True),
        ("shared", "text_encoders", str(shared / "clip_here"), True),
        ("shared", "t2i_adapter", str(shared / "adapters"), True),  # not in map_legacy
        ("other_ui", "checkpoints", "/abs/other/checkpoints", False),
        ("other_ui", "gligen", str(comfy_dir / "relative/gligen"), False),
    ]


def test_base_path_expands_home_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODEL_STORE", str(tmp_path / "store"))
    yml = _yaml(tmp_path, """\
        one:
            base_path: ~/models
            loras: loras
        two:
            base_path: $MODEL_STORE/sub
            vae: vae
        three:
            base_path: ${MODEL_STORE}
            checkpoints: /elsewhere/ckpt
    """)
    paths = [str(e.path) for e in read_extra_model_paths(yml)]
    assert paths == [
        str(tmp_path / "home/models/loras"),
        str(tmp_path / "store/sub/vae"),
        "/elsewhere/ckpt",  # an absolute line wins over base_path (os.path.join)
    ]


def test_lines_are_not_expanded_like_comfyui(tmp_path, monkeypatch):
    """ComfyUI expands ~ and $VARS in base_path only; a line keeps them literally."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yml = _yaml(tmp_path, """\
        s:
            loras: ~/loras
    """)
    (entry,) = read_extra_model_paths(yml)
    assert entry.path == tmp_path / "ComfyUI" / "~" / "loras"


def test_normalises_paths(tmp_path):
    yml = _yaml(tmp_path, """\
        s:
            base_path: ./base/
            loras: a/../b/./c/
    """)
    (entry,) = read_extra_model_paths(yml)
    assert entry.path == tmp_path / "ComfyUI" / "base" / "b" / "c"


def test_is_default_paths_come_first_and_duplicates_move(tmp_path):
    root = tmp_path / "ComfyUI"
    _yaml(tmp_path, """\
        first:
            base_path: /first
            loras: loras
        second:
            base_path: /second
            is_default: true
            loras: loras
        third:
            base_path: /third
            is_default: true
            loras: |
                loras
                more
        again:
            base_path: /first
            is_default: true
            loras: loras
        repeat:
            base_path: /second
            loras: loras
    """)
    folders = comfyui_folder_paths(root)
    assert [str(p) for p in folders["loras"]] == [
        "/first/loras",  # the last is_default insert is first; a repeat moves, not duplicates
        "/third/more",
        "/third/loras",
        "/second/loras",
        str(root / "models" / "loras"),
    ]


def test_default_table_and_unknown_subfolders(tmp_path):
    root = tmp_path / "ComfyUI"
    for sub in ("checkpoints", "unet", "clip", "t2i_adapter", "my_custom_models", ".cache", "custom_nodes"):
        (root / "models" / sub).mkdir(parents=True)
    (root / "models" / "stray.txt").write_text("not a dir")
    folders = default_folder_paths(root)
    models = root / "models"
    assert folders["diffusion_models"] == [models / "diffusion_models", models / "unet"]
    assert folders["text_encoders"] == [models / "text_encoders", models / "clip"]
    assert folders["controlnet"] == [models / "controlnet", models / "t2i_adapter"]
    assert folders["my_custom_models"] == [models / "my_custom_models"]
    assert folders["checkpoints"] == [models / "checkpoints"]
    for absent in ("unet", "clip", "t2i_adapter", ".cache", "stray.txt", "custom_nodes"):
        assert absent not in folders
    assert "ipadapter" in folders and "embeddings" in folders  # listed even before they exist


def test_root_yaml_is_read_only_when_present(tmp_path):
    root = tmp_path / "ComfyUI"
    root.mkdir()
    assert comfyui_folder_paths(root)["loras"] == [root / "models" / "loras"]
    other = _yaml(tmp_path, "s:\n  loras: /x/loras\n", name="other.yaml")
    assert comfyui_folder_paths(root, [other])["loras"][-1] == Path("/x/loras")


def test_add_model_folder_path_semantics():
    folders: dict = {}
    add_model_folder_path(folders, "unet", "/a")
    add_model_folder_path(folders, "diffusion_models", "/b")
    add_model_folder_path(folders, "diffusion_models", "/a")  # duplicate ignored
    add_model_folder_path(folders, "diffusion_models", "/b", is_default=True)
    assert folders == {"diffusion_models": [Path("/b"), Path("/a")]}


def test_model_folders_only_drops_non_model_keys(tmp_path):
    table = {"custom_nodes": ["/x"], "download_model_base": ["/y"], "loras": ["/l", "/l", str(tmp_path)],
             "vae": "/single"}
    out = model_folders_only(table)
    assert out == {"loras": [Path("/l"), tmp_path], "vae": [Path("/single")]}


@pytest.mark.parametrize("text, words", [
    ("a: [unclosed\n", "extra_model_paths"),
    ("- just\n- a list\n", "sections"),
    ("s: just a string\n", "must map"),
    ("s:\n  loras: [a, b]\n", "'loras'"),
    ("s:\n  loras: 3\n", "'loras'"),
    ("s:\n  base_path: [x]\n  loras: l\n", "base_path"),
])
def test_bad_yaml_raises_configuration_error(tmp_path, text, words):
    yml = _yaml(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        read_extra_model_paths(yml)
    assert info.value.setting == "extra_model_paths"
    assert words in str(info.value)
    assert str(yml) in str(info.value)


def test_empty_or_missing_file(tmp_path):
    assert read_extra_model_paths(_yaml(tmp_path, "")) == []
    assert read_extra_model_paths(_yaml(tmp_path, "# only a comment\n")) == []
    with pytest.raises(ConfigurationError):
        read_extra_model_paths(tmp_path / "nope.yaml")


def test_extra_path_is_a_value_object():
    a = ExtraPath("s", "loras", Path("/x"), True)
    assert a == ExtraPath("s", "loras", Path("/x"), True)
