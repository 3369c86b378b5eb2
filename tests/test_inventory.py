"""inventory.py: indexing model folders, present / elsewhere / missing, targets, hashes, export."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from comfyfixersmart.datamodel import ELSEWHERE, MISSING, PRESENT, ModelInfo, ModelReference
from comfyfixersmart.errors import ConfigurationError, UnsafePathError, ValidationError
from comfyfixersmart.inventory import ModelInventory


def put(root: Path, rel: str, data: bytes = b"weights") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def ref(filename: str, folder: str, **kw) -> ModelReference:
    return ModelReference(filename=filename, node_type=kw.pop("node_type", "Loader"),
                          expected_type=folder.rstrip("s"), expected_directory=folder, **kw)


@pytest.fixture
def comfy(tmp_path) -> Path:
    root = tmp_path / "ComfyUI"
    m = root / "models"
    put(m, "checkpoints/sd15/v1-5-pruned.safetensors")
    put(m, "checkpoints/sdxl_base.safetensors")
    put(m, "loras/style/detail.safetensors")
    put(m, "loras/README.txt", b"not a model")
    put(m, "loras/half.safetensors.part", b"partial download")
    put(m, "vae/put_vae_here", b"")
    put(m, "unet/flux1-dev.safetensors")
    put(m, "diffusion_models/wan.safetensors")
    put(m, "clip/clip_l.safetensors")
    put(m, "t2i_adapter/t2i_canny.pth")
    put(m, "embeddings/EasyNegative.pt")
    put(m, "embeddings/neg/badhands.safetensors")
    put(m, "my_node_models/thing.bin")
    put(m, "checkpoints/.git/objects/blob.safetensors")
    return root


@pytest.fixture
def inv(make_config, comfy) -> ModelInventory:
    return ModelInventory(make_config(), case_sensitive=True).build(comfy)


# -- building --------------------------------------------------------------------------

def test_build_indexes_model_files_only(inv, comfy):
    names = sorted(f"{i.folder}/{i.filename}" for i in inv)
    assert names == [
        "checkpoints/sd15/v1-5-pruned.safetensors",
        "checkpoints/sdxl_base.safetensors",
        "controlnet/t2i_canny.pth",
        "diffusion_models/flux1-dev.safetensors",
        "diffusion_models/wan.safetensors",
        "embeddings/EasyNegative.pt",
        "embeddings/neg/badhands.safetensors",
        "loras/style/detail.safetensors",
        "my_node_models/thing.bin",
        "text_encoders/clip_l.safetensors",
    ]
    assert len(inv) == 10
    info = inv.get_model_info("sd15/v1-5-pruned.safetensors", "checkpoints")
    assert info.size == len(b"weights") and info.model_type == "checkpoint"
    assert info.root == str(comfy / "models" / "checkpoints")
    assert Path(info.path).is_file()


def test_build_uses_config_root_and_rejects_bad_roots(make_config, comfy, tmp_path):
    assert len(ModelInventory(make_config(comfyui_root=comfy)).build()) == 10
    with pytest.raises(ConfigurationError) as e:
        ModelInventory(make_config()).build()
    assert e.value.setting == "comfyui_root"
    with pytest.raises(ConfigurationError) as e:
        ModelInventory(make_config()).build(tmp_path / "nope")
    assert e.value.setting == "comfyui_root"
    put(tmp_path, "file_not_dir")
    with pytest.raises(ConfigurationError):
        ModelInventory(make_config()).build(tmp_path / "file_not_dir")


def test_root_without_models_folder_is_empty(make_config, tmp_path):
    inv = ModelInventory(make_config()).build(tmp_path)
    assert len(inv) == 0
    assert inv.check(ref("a.safetensors", "loras")).status == MISSING
    assert inv.target_path("loras", "a.safetensors") == tmp_path / "models" / "loras" / "a.safetensors"


def test_bad_extra_paths_yaml_is_a_configuration_error(make_config, comfy):
    (comfy / "extra_model_paths.yaml").write_text("a: [broken\n")
    with pytest.raises(ConfigurationError) as e:
        ModelInventory(make_config()).build(comfy)
    assert e.value.setting == "extra_model_paths"


def test_custom_extensions_from_config(make_config, comfy):
    put(comfy / "models", "loras/odd.weights")
    inv = ModelInventory(make_config(model_extensions=[".weights"])).build(comfy)
    assert [i.filename for i in inv] == ["odd.weights"]


# -- present / elsewhere / missing ------------------------------------------------------

def test_present_in_its_folder(inv, comfy):
    r = inv.check(ref("sd15/v1-5-pruned.safetensors", "checkpoints"))
    assert r.status == PRESENT and r.found_path is None
    assert r.local_path == str(comfy / "models/checkpoints/sd15/v1-5-pruned.safetensors")


def test_windows_separators_in_references(inv):
    assert inv.check(ref("sd15\\v1-5-pruned.safetensors", "checkpoints")).status == PRESENT


def test_legacy_folders_are_searched(inv, comfy):
    assert inv.check(ref("flux1-dev.safetensors", "diffusion_models")).status == PRESENT
    assert inv.check(ref("wan.safetensors", "diffusion_models")).status == PRESENT
    assert inv.check(ref("flux1-dev.safetensors", "unet")).status == PRESENT
    r = inv.check(ref("clip_l.safetensors", "text_encoders"))
    assert r.status == PRESENT and r.local_path == str(comfy / "models/clip/clip_l.safetensors")
    assert inv.check(ref("clip_l.safetensors", "clip")).status == PRESENT
    assert inv.check(ref("t2i_canny.pth", "controlnet")).status == PRESENT


def test_elsewhere_other_subfolder_same_folder(inv, comfy):
    r = inv.check(ref("sdxl/detail.safetensors", "loras"))
    assert r.status == ELSEWHERE
    assert r.found_path == "loras/style/detail.safetensors"
    assert r.local_path == str(comfy / "models/loras/style/detail.safetensors")
    r = inv.check(ref("detail.safetensors", "loras"))
    assert (r.status, r.found_path) == (ELSEWHERE, "loras/style/detail.safetensors")


def test_elsewhere_other_folder(inv):
    r = inv.check(ref("sdxl_base.safetensors", "diffusion_models"))
    assert (r.status, r.found_path) == (ELSEWHERE, "checkpoints/sdxl_base.safetensors")


def test_elsewhere_prefers_its_own_folder(make_config, comfy):
    put(comfy / "models", "checkpoints/dup.safetensors")
    put(comfy / "models", "loras/sub/dup.safetensors")
    inv = ModelInventory(make_config(), case_sensitive=True).build(comfy)
    assert inv.check(ref("dup.safetensors", "loras")).found_path == "loras/sub/dup.safetensors"
    assert inv.check(ref("x/dup.safetensors", "checkpoints")).found_path == "checkpoints/dup.safetensors"


def test_missing_and_state_is_reset(inv):
    r = ref("nowhere.safetensors", "loras", status=PRESENT, found_path="x", local_path="/x")
    assert inv.check(r) is r
    assert (r.status, r.found_path, r.local_path) == (MISSING, None, None)


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/etc/passwd", "C:\\Windows\\x.safetensors",
                                     "\\\\server\\share\\m.safetensors", "a\0b.safetensors", "CON.safetensors", ""])
def test_hostile_names_are_missing_never_found(inv, hostile):
    r = inv.check(ref(hostile, "loras"))
    assert r.status == MISSING and r.local_path is None
    assert not inv.has_model(hostile)
    assert inv.get_model_info(hostile) is None


def test_no_directory_searches_every_folder(inv):
    assert inv.check(ref("style/detail.safetensors", "")).status == PRESENT
    r = ModelReference("thing.bin", "X", "unknown", "")
    assert inv.check(r).status == PRESENT


def test_unknown_directory_falls_back_to_name_search(inv):
    r = inv.check(ref("thing.bin", "some_node_folder"))
    assert (r.status, r.found_path) == (ELSEWHERE, "my_node_models/thing.bin")


def test_unknown_models_subfolder_is_its_own_key(inv):
    assert inv.check(ref("thing.bin", "my_node_models")).status == PRESENT
    assert [i.filename for i in inv.get_models_by_type("my_node_models")] == ["thing.bin"]


def test_first_root_wins(make_config, comfy, tmp_path):
    put(tmp_path / "shared", "loras/style/detail.safetensors", b"other copy")
    (comfy / "extra_model_paths.yaml").write_text(
        "shared:\n  base_path: ../shared\n  is_default: true\n  loras: loras\n")
    inv = ModelInventory(make_config()).build(comfy)
    r = inv.check(ref("style/detail.safetensors", "loras"))
    assert r.local_path == str(tmp_path / "shared/loras/style/detail.safetensors")
    assert inv.target_path("loras", "new.safetensors") == tmp_path / "shared/loras/new.safetensors"
    assert len(inv.get_models_by_type("lora")) == 2  # both copies are files on disk


def test_extra_paths_multiline_and_legacy_keys(make_config, comfy, tmp_path):
    put(tmp_path / "a1111", "models/Lora/a.safetensors")
    put(tmp_path / "a1111", "models/LyCORIS/b.safetensors")
    put(tmp_path / "a1111", "models/unet_store/c.safetensors")
    (comfy / "extra_model_paths.yaml").write_text(
        f"a111:\n  base_path: {tmp_path / 'a1111'}\n  loras: |\n    models/Lora\n    models/LyCORIS\n"
        f"  unet: models/unet_store\n")
    inv = ModelInventory(make_config()).build(comfy)
    assert inv.check(ref("a.safetensors", "loras")).status == PRESENT
    assert inv.check(ref("b.safetensors", "loras")).status == PRESENT
    assert inv.check(ref("c.safetensors", "diffusion_models")).status == PRESENT
    assert inv.folders["loras"][0] == comfy / "models" / "loras"


# -- embeddings and directory models ----------------------------------------------------

def test_embedding_by_stem(make_config, comfy):
    put(comfy / "models", "embeddings/both.pt")
    put(comfy / "models", "embeddings/both.safetensors")
    inv = ModelInventory(make_config(), case_sensitive=True).build(comfy)
    r = inv.check(ref("EasyNegative", "embeddings"))
    assert r.status == PRESENT and r.local_path.endswith("EasyNegative.pt")
    assert inv.check(ref("neg/badhands", "embeddings")).status == PRESENT
    assert inv.check(ref("both", "embeddings")).local_path.endswith("both.safetensors")  # ComfyUI's order
    assert inv.check(ref("EasyNegative.pt", "embeddings")).status == PRESENT
    r = inv.check(ref("badhands", "embeddings"))
    assert (r.status, r.found_path) == (ELSEWHERE, "embeddings/neg/badhands.safetensors")
    assert inv.has_model("EasyNegative", "embeddings")
    assert not inv.has_model("EasyNegative", "loras")
    # a stem is not matched outside embeddings
    assert inv.check(ref("sdxl_base", "checkpoints")).status == MISSING


def test_directory_models(make_config, comfy):
    put(comfy / "models", "diffusers/sdxl-turbo/model_index.json", b"{}")
    put(comfy / "models", "LLM/Florence-2-large/model.safetensors")
    inv = ModelInventory(make_config()).build(comfy)
    r = inv.check(ref("sdxl-turbo", "diffusers"))
    assert r.status == PRESENT and r.local_path == str(comfy / "models/diffusers/sdxl-turbo")
    assert inv.check(ref("Florence-2-large", "LLM")).status == PRESENT
    assert inv.check(ref("other-repo", "diffusers")).status == MISSING


# -- case sensitivity -------------------------------------------------------------------

@pytest.mark.parametrize("case_sensitive", [True, False, None])
def test_names_match_exactly_as_comfyui_compares_them(make_config, comfy, case_sensitive):
    """ComfyUI checks ``value in get_filename_list(key)``: another case is another name, on
    every platform (the file is reported elsewhere, to relink)."""
    put(comfy / "models", "loras/MixedCase.safetensors")
    inv = ModelInventory(make_config(), case_sensitive=case_sensitive).build(comfy)
    r = inv.check(ref("mixedcase.safetensors", "loras"))
    assert (r.status, r.found_path) == (ELSEWHERE, "loras/MixedCase.safetensors")
    assert inv.check(ref("MixedCase.safetensors", "loras")).status == PRESENT
    assert inv.check(ref("STYLE/DETAIL.safetensors", "loras")).status != PRESENT


def test_elsewhere_prefers_exact_case(make_config, comfy):
    put(comfy / "models", "checkpoints/Same.safetensors")
    put(comfy / "models", "vae/same.safetensors")
    inv = ModelInventory(make_config(), case_sensitive=True).build(comfy)
    assert inv.check(ref("same.safetensors", "loras")).found_path == "vae/same.safetensors"
    assert inv.check(ref("Same.safetensors", "loras")).found_path == "checkpoints/Same.safetensors"


# -- lookups ----------------------------------------------------------------------------

def test_has_model_and_get_model_info(inv):
    assert inv.has_model("sdxl_base.safetensors")
    assert inv.has_model("v1-5-pruned.safetensors")  # bare name found in a sub-folder
    assert inv.has_model("sd15/v1-5-pruned.safetensors", "checkpoints")
    assert inv.has_model("sd15/v1-5-pruned.safetensors", "checkpoint")
    assert not inv.has_model("sd15/v1-5-pruned.safetensors", "loras")
    assert not inv.has_model("other/v1-5-pruned.safetensors")  # a rel path must match exactly
    assert inv.has_model("flux1-dev.safetensors", "unet")
    assert not inv.has_model("nothing.safetensors")
    info = inv.get_model_info("detail.safetensors")
    assert isinstance(info, ModelInfo) and info.filename == "style/detail.safetensors"
    assert info.folder == "loras"
    assert inv.get_model_info("detail.safetensors", "vae") is None


def test_get_models_by_type(inv):
    assert [i.filename for i in inv.get_models_by_type("checkpoint")] == [
        "sd15/v1-5-pruned.safetensors", "sdxl_base.safetensors"]
    assert inv.get_models_by_type("checkpoints") == inv.get_models_by_type("checkpoint")
    assert [i.filename for i in inv.get_models_by_type("unet")] == [
        "wan.safetensors", "flux1-dev.safetensors"]  # models/diffusion_models first, then models/unet
    assert [i.filename for i in inv.get_models_by_type("text_encoder")] == ["clip_l.safetensors"]
    assert inv.get_models_by_type("hypernetwork") == []
    assert inv.get_models_by_type("no-such-type") == []


def test_info_of_a_file_removed_after_build(inv, comfy):
    (comfy / "models/checkpoints/sdxl_base.safetensors").unlink()
    assert inv.get_model_info("sdxl_base.safetensors") is None
    assert len(list(inv)) == 9


def test_refresh_sees_changes(inv, comfy):
    put(comfy / "models", "loras/new.safetensors")
    (comfy / "models/checkpoints/sdxl_base.safetensors").unlink()
    assert not inv.has_model("new.safetensors")
    inv.refresh()
    assert inv.has_model("new.safetensors", "loras")
    assert not inv.has_model("sdxl_base.safetensors")


def test_refresh_before_build_uses_config(make_config, comfy):
    inv = ModelInventory(make_config(comfyui_root=comfy)).refresh()
    assert len(inv) == 10


def test_readers_during_refresh(inv, comfy):
    """check() from other threads never sees a half-built index."""
    errors = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                assert inv.check(ref("sd15/v1-5-pruned.safetensors", "checkpoints")).status == PRESENT
                assert inv.has_model("detail.safetensors", "loras")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return
            time.sleep(0.0005)  # let the refreshing thread have the GIL

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(10):
        inv.refresh()
    stop.set()
    for t in threads:
        t.join()
    assert not errors


# -- symlinks ---------------------------------------------------------------------------

@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_symlinks_followed_loops_cut_broken_skipped(make_config, comfy, tmp_path):
    store = tmp_path / "store"
    put(store, "linked.safetensors")
    (comfy / "models/loras/linked_dir").symlink_to(store, target_is_directory=True)
    (comfy / "models/loras/loop").symlink_to(comfy / "models/loras", target_is_directory=True)
    (comfy / "models/loras/broken.safetensors").symlink_to(tmp_path / "gone.safetensors")
    (comfy / "models/vae/file_link.safetensors").symlink_to(store / "linked.safetensors")
    inv = ModelInventory(make_config()).build(comfy)
    assert inv.check(ref("linked_dir/linked.safetensors", "loras")).status == PRESENT
    assert inv.check(ref("file_link.safetensors", "vae")).status == PRESENT
    assert inv.check(ref("broken.safetensors", "loras")).status == MISSING
    loras = [i.filename for i in inv.get_models_by_type("loras")]
    assert len(loras) == len(set(loras)) and len(loras) <= 4


# -- targets ----------------------------------------------------------------------------

def test_target_path(inv, comfy, tmp_path):
    models = comfy / "models"
    assert inv.target_path("loras", "sdxl/new.safetensors") == models / "loras/sdxl/new.safetensors"
    assert inv.target_path("checkpoint", "a.safetensors") == models / "checkpoints/a.safetensors"
    assert inv.target_path("diffusion_models", "f.safetensors") == models / "diffusion_models/f.safetensors"
    assert inv.target_path("diffusion_models", "f.safetensors", root_index=1) == models / "unet/f.safetensors"
    assert inv.target_path("unet", "f.safetensors") == models / "diffusion_models/f.safetensors"
    assert inv.target_path("brand_new_key", "x.bin") == models / "brand_new_key/x.bin"
    assert inv.target_path("loras", "a\\b.safetensors") == models / "loras/a/b.safetensors"


@pytest.mark.parametrize("bad", ["../x.safetensors", "/abs.safetensors", "C:/x.safetensors", "a/../../b",
                                 "nul.safetensors", "x\0y"])
def test_target_path_rejects_hostile_names(inv, bad):
    with pytest.raises(UnsafePathError):
        inv.target_path("loras", bad)


def test_target_path_rejects_hostile_folder_and_index(inv):
    with pytest.raises(UnsafePathError):
        inv.target_path("../outside", "x.safetensors")
    with pytest.raises(ValidationError):
        inv.target_path("loras", "x.safetensors", root_index=5)
    with pytest.raises(ValidationError):
        inv.target_path("brand_new_key", "x.safetensors", root_index=2)


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_target_path_refuses_symlink_escape(inv, comfy, tmp_path):
    (tmp_path / "outside").mkdir()
    (comfy / "models/loras/escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(UnsafePathError):
        inv.target_path("loras", "escape/evil.safetensors")


# -- build_from_folders (ComfyUI's folder_paths view) ------------------------------------

def test_build_from_folders(make_config, tmp_path):
    m = tmp_path / "ComfyUI" / "models"
    put(m, "checkpoints/a.safetensors")
    put(m, "unet/u.safetensors")
    put(tmp_path / "extra", "loras/l.safetensors")
    table = {
        "checkpoints": [str(m / "checkpoints")],
        "diffusion_models": [m / "diffusion_models"],
        "unet": [m / "unet"],  # a legacy key from an old adapter: merged after the canonical dirs
        "loras": [tmp_path / "extra/loras", m / "loras"],
        "custom_nodes": [tmp_path / "ComfyUI/custom_nodes"],
        "vae": (),
    }
    inv = ModelInventory(make_config()).build_from_folders(table)
    assert "custom_nodes" not in inv.folders and "unet" not in inv.folders
    assert inv.folders["diffusion_models"] == [m / "diffusion_models", m / "unet"]
    assert inv.check(ref("u.safetensors", "diffusion_models")).status == PRESENT
    assert inv.check(ref("l.safetensors", "loras")).status == PRESENT
    assert inv.target_path("loras", "n.safetensors") == tmp_path / "extra/loras/n.safetensors"
    assert inv.target_path("vae", "v.safetensors") == m / "vae/v.safetensors"  # no dir: <models>/vae
    put(m, "checkpoints/b.safetensors")
    assert inv.refresh().has_model("b.safetensors", "checkpoints")


def test_build_from_folders_accepts_comfyui_table_shape(make_config, tmp_path):
    put(tmp_path, "ckpt/a.safetensors")
    table = {"checkpoints": ([str(tmp_path / "ckpt")], {".safetensors", ".ckpt"}),
             "custom_nodes": ([str(tmp_path / "custom_nodes")], set())}
    inv = ModelInventory(make_config()).build_from_folders(table)
    assert inv.folders == {"checkpoints": [tmp_path / "ckpt"]}
    assert inv.has_model("a.safetensors", "checkpoints")


def test_build_from_folders_validates(make_config):
    with pytest.raises(ValidationError):
        ModelInventory(make_config()).build_from_folders({"loras": [3]})
    with pytest.raises(ValidationError):
        ModelInventory(make_config()).build_from_folders({"loras": ["a\0b"]})
    with pytest.raises(ValidationError):
        ModelInventory(make_config()).build_from_folders(["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ModelInventory(make_config()).build_from_folders({"": ["/x"]})
    inv = ModelInventory(make_config()).build_from_folders({"odd": ["/nonexistent/odd_dir"]})
    with pytest.raises(ConfigurationError):
        inv.target_path("loras", "x.safetensors")  # no models root can be guessed


# -- hashes -----------------------------------------------------------------------------

def test_sha256_is_cached_across_inventories(make_config, comfy):
    config = make_config()
    first = ModelInventory(config).build(comfy)
    infos = list(first)
    digests = {i.path: first.sha256(i) for i in infos}
    assert first.hashes_computed == len(infos) == 10
    assert all(i.sha256 == digests[i.path] for i in infos)
    assert digests[str(comfy / "models/loras/style/detail.safetensors")] == hashlib.sha256(b"weights").hexdigest()

    second = ModelInventory(config).build(comfy)
    for info in second:
        assert second.sha256(info) == digests[info.path]
    assert second.hashes_computed == 0
    assert second.sha256(comfy / "models/checkpoints/sdxl_base.safetensors") == digests[
        str(comfy / "models/checkpoints/sdxl_base.safetensors")]
    assert second.hashes_computed == 0


def test_close_and_reopen(make_config, comfy):
    with ModelInventory(make_config()).build(comfy) as inv:
        info = inv.get_model_info("sdxl_base.safetensors")
        first = inv.sha256(info)
    assert inv.sha256(info) == first  # reopened on use
    assert inv.hashes_computed == 1


def test_sha256_cache_disabled_is_in_memory(make_config, comfy):
    config = make_config(cache_enabled=False)
    inv = ModelInventory(config).build(comfy)
    inv.sha256(inv.get_model_info("sdxl_base.safetensors"))
    assert not (config.cache_dir / "hashes.sqlite3").exists()


def test_sha256_rejects_other_types(inv):
    with pytest.raises(ValidationError):
        inv.sha256(42)  # type: ignore[arg-type]


def test_find_by_sha256_only_over_hashed_files(make_config, comfy):
    put(comfy / "models", "vae/copy.safetensors", b"weights")
    inv = ModelInventory(make_config()).build(comfy)
    sha = hashlib.sha256(b"weights").hexdigest()
    assert inv.find_by_sha256(sha) == []  # nothing hashed yet, and nothing is hashed here
    assert inv.hashes_computed == 0
    target = inv.get_model_info("copy.safetensors", "vae")
    inv.sha256(target)
    found = inv.find_by_sha256(sha.upper())
    assert [(i.folder, i.filename) for i in found] == [("vae", "copy.safetensors")]
    assert [i.filename for i in inv.find_by_sha256(sha[:10])] == ["copy.safetensors"]  # AutoV2
    Path(target.path).write_bytes(b"changed!")
    assert inv.find_by_sha256(sha) == []  # stale cache entries are not trusted
    with pytest.raises(ValidationError):
        inv.find_by_sha256("xyz")


def test_elsewhere_by_sha256_under_another_name(make_config, comfy):
    put(comfy / "models", "checkpoints/renamed_by_user.safetensors", b"the real bytes")
    inv = ModelInventory(make_config()).build(comfy)
    sha = hashlib.sha256(b"the real bytes").hexdigest()
    inv.sha256(inv.get_model_info("renamed_by_user.safetensors"))
    r = inv.check(ref("official_name.safetensors", "checkpoints", hash=sha.upper(), hash_type="SHA256"))
    assert (r.status, r.found_path) == (ELSEWHERE, "checkpoints/renamed_by_user.safetensors")
    r = inv.check(ref("official_name.safetensors", "checkpoints", hash=sha[:10], hash_type="AutoV2"))
    assert r.status == ELSEWHERE


def test_same_name_with_known_other_sha_is_not_elsewhere(make_config, comfy):
    inv = ModelInventory(make_config()).build(comfy)
    inv.sha256(inv.get_model_info("sdxl_base.safetensors"))
    wrong = hashlib.sha256(b"something else").hexdigest()
    r = inv.check(ref("sdxl_base.safetensors", "diffusion_models", hash=wrong, hash_type="sha256"))
    assert r.status == MISSING
    # unknown content (not hashed yet) with the same name is still offered
    r = inv.check(ref("detail.safetensors", "vae", hash=wrong, hash_type="sha256"))
    assert r.status == ELSEWHERE


def test_check_all(inv):
    refs = [ref("sdxl_base.safetensors", "checkpoints"), ref("missing.pth", "upscale_models")]
    out = inv.check_all(iter(refs))
    assert out == refs and [r.status for r in out] == [PRESENT, MISSING]


# -- export -----------------------------------------------------------------------------

def test_export_json(make_config, comfy, tmp_path):
    config = make_config()
    inv = ModelInventory(config).build(comfy)
    target = tmp_path / "out" / "inventory.json"
    inv.export_json(target)
    assert not (config.cache_dir / "hashes.sqlite3").exists()  # export does not create a cache
    data = json.loads(target.read_text())
    assert data["count"] == 10 == len(data["models"])
    assert data["comfyui_root"] == str(comfy)
    assert data["folders"]["diffusion_models"][0].endswith("diffusion_models")
    by_name = {m["filename"]: m for m in data["models"]}
    assert by_name["style/detail.safetensors"]["folder"] == "loras"
    assert by_name["style/detail.safetensors"]["size"] == 7
    assert by_name["style/detail.safetensors"]["sha256"] is None

    inv.sha256(comfy / "models/loras/style/detail.safetensors")
    fresh = ModelInventory(config).build(comfy)
    fresh.export_json(target)
    data = json.loads(target.read_text())
    by_name = {m["filename"]: m for m in data["models"]}
    assert by_name["style/detail.safetensors"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert fresh.hashes_computed == 0
    assert [p.name for p in target.parent.iterdir()] == ["inventory.json"]  # no temp files left


def test_export_json_failure_keeps_old_file(make_config, comfy, tmp_path, monkeypatch):
    inv = ModelInventory(make_config()).build(comfy)
    target = tmp_path / "inventory.json"
    target.write_text('{"old": true}')

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        inv.export_json(target)
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".inventory")] == []
