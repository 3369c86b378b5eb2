"""Pasted URLs become the file to download (Hugging Face pages, Civitai pages and download
links), through the real clients against the fake hub."""

from __future__ import annotations

import hashlib

import pytest

from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.errors import HostNotAllowedError, NotAFileUrlError, NotFoundError, ValidationError
from comfyfixersmart.search import ModelSearch
from comfyfixersmart.search.pasted import needs_resolving, resolve_download_items, resolve_pasted_url
from fakehub import blob
from fakehub.fixtures import fake_hub, hub_config  # noqa: F401


def ref(filename, directory="checkpoints") -> ModelReference:
    return ModelReference(filename=filename, node_type="CheckpointLoaderSimple", expected_type="checkpoint",
                          expected_directory=directory)


@pytest.fixture
def hub(fake_hub):
    fake_hub.add_hf_repo("stabilityai/sdxl-turbo", {
        "sd_xl_turbo_1.0_fp16.safetensors": blob(2048, seed=1),
        "sd_xl_turbo_1.0.safetensors": blob(4096, seed=2),
        "README.md": b"# sdxl turbo\n"})
    fake_hub.add_hf_repo("Comfy-Org/flux1-schnell", {
        "split_files/vae/ae.safetensors": blob(512, seed=3),
        "split_files/text_encoders/clip_l.safetensors": blob(256, seed=4)})
    return fake_hub


@pytest.fixture
def search(hub_config):
    with ModelSearch(hub_config, backends=[]) as s:
        yield s


PUBLIC = "https://huggingface.co/stabilityai/sdxl-turbo"


@pytest.mark.parametrize("pasted", [
    f"{PUBLIC}/blob/main/sd_xl_turbo_1.0_fp16.safetensors",
    f"{PUBLIC}/resolve/main/sd_xl_turbo_1.0_fp16.safetensors?download=true",
    f"{PUBLIC}/raw/main/sd_xl_turbo_1.0_fp16.safetensors",
    f"{PUBLIC}/tree/main/sd_xl_turbo_1.0_fp16.safetensors",
    "https://hf.co/stabilityai/sdxl-turbo/blob/main/sd_xl_turbo_1.0_fp16.safetensors",
    "hf.co/stabilityai/sdxl-turbo/resolve/main/sd_xl_turbo_1.0_fp16.safetensors",
    "  huggingface.co/stabilityai/sdxl-turbo/blob/main/sd_xl_turbo_1.0_fp16.safetensors  ",
])
def test_hugging_face_file_links_in_every_form(hub, search, pasted):
    result = resolve_pasted_url(pasted, search=search, reference=ref("sdxl/turbo.safetensors"))
    assert result.download_url == f"{hub.hf_url}/stabilityai/sdxl-turbo/resolve/main/sd_xl_turbo_1.0_fp16.safetensors"
    assert result.metadata["canonical_url"] == f"{PUBLIC}/resolve/main/sd_xl_turbo_1.0_fp16.safetensors"
    assert result.hash_sha256 == hashlib.sha256(blob(2048, seed=1)).hexdigest() and result.size_bytes == 2048
    assert result.save_as == "sdxl/turbo.safetensors" and result.directory == "checkpoints"
    assert result.confidence == 1.0


def test_a_link_on_the_configured_endpoint_and_subfolders(hub, search):
    url = f"{hub.hf_url}/Comfy-Org/flux1-schnell/blob/main/split_files/vae/ae.safetensors"
    result = resolve_pasted_url(url, search=search)
    assert result.download_url == f"{hub.hf_url}/Comfy-Org/flux1-schnell/resolve/main/split_files/vae/ae.safetensors"
    assert result.save_as == "ae.safetensors" and "rewritten" in result.reason


def test_repo_or_folder_pages_find_the_reference_file(hub, search):
    got = resolve_pasted_url(PUBLIC, search=search, reference=ref("sd_xl_turbo_1.0_fp16.safetensors"))
    assert got.metadata["path"] == "sd_xl_turbo_1.0_fp16.safetensors"
    got = resolve_pasted_url("https://huggingface.co/Comfy-Org/flux1-schnell/tree/main/split_files", search=search,
                             reference=ref("clip_l.safetensors", "text_encoders"))
    assert got.metadata["path"] == "split_files/text_encoders/clip_l.safetensors"
    with pytest.raises(NotAFileUrlError, match="repository page of stabilityai/sdxl-turbo.*no file named"):
        resolve_pasted_url(PUBLIC, search=search, reference=ref("other.safetensors"))


@pytest.mark.parametrize("pasted, words", [
    (PUBLIC, "repository page of stabilityai/sdxl-turbo, not a file"),
    (f"{PUBLIC}/tree/main", "repository page"),
    ("https://huggingface.co/Comfy-Org/flux1-schnell/tree/main/split_files/vae", "the folder 'split_files/vae'"),
    ("https://huggingface.co/stabilityai", "user or organisation 'stabilityai'"),
    ("https://huggingface.co/models?search=sdxl", "search or listing page"),
    ("https://huggingface.co/", "home page"),
    ("https://huggingface.co/datasets/foo/bar/resolve/main/x.safetensors", "dataset"),
    (f"{PUBLIC}/discussions/3", "'discussions' page"),
    ("https://civitai.com/user/someone", "a user page on Civitai"),
    ("https://civitai.com/search/models?query=turbo", "a search page"),
    ("https://civitai.com/", "the home page"),
    ("https://civitai.com/images/123", "an image page"),
    ("https://example.com/some/page.html", "does not name a model file"),
])
def test_a_page_that_is_not_a_file_gets_a_clear_message(search, pasted, words):
    with pytest.raises(NotAFileUrlError, match=words) as info:
        resolve_pasted_url(pasted, search=search)
    assert isinstance(info.value, ValidationError)


def test_bad_and_missing_links(hub, search):
    with pytest.raises(NotAFileUrlError, match="empty"):
        resolve_pasted_url("  ", search=search)
    with pytest.raises(HostNotAllowedError):
        resolve_pasted_url("ftp://huggingface.co/a/b/resolve/main/x.safetensors", search=search)
    with pytest.raises(NotFoundError):
        resolve_pasted_url(f"{PUBLIC}/blob/main/nope.safetensors", search=search)


@pytest.fixture
def civitai_model(fake_hub):
    ids = fake_hub.add_civitai_model("Juggernaut XL", {
        "juggernautXL_v9.safetensors": {"data": blob(300, seed=7), "fp": "fp16"},
        "juggernautXL_v9_fp32.safetensors": {"data": blob(600, seed=8), "fp": "fp32", "primary": False},
        "juggernautXL_v9.ckpt": {"data": blob(200, seed=9), "format": "PickleTensor", "primary": False}})
    newer = fake_hub.add_civitai_version(ids.model_id, {"juggernautXL_v10.safetensors": blob(310, seed=10)},
                                         name="v10")
    return ids, newer


def test_civitai_pages_and_download_links(fake_hub, search, civitai_model):
    ids, newer = civitai_model
    base = "https://civitai.com"
    # a version page: the file matching the reference's name
    got = resolve_pasted_url(f"{base}/models/{ids.model_id}?modelVersionId={ids.version_id}", search=search,
                             reference=ref("juggernautXL_v9_fp32.safetensors"))
    assert got.download_url == (f"{fake_hub.civitai_url}/api/download/models/{ids.version_id}"
                                f"?fileId={ids.file_ids['juggernautXL_v9_fp32.safetensors']}")
    assert got.hash_sha256 == hashlib.sha256(blob(600, seed=8)).hexdigest()
    assert got.save_as == "juggernautXL_v9_fp32.safetensors" and "pasted Civitai link" in got.reason
    # ... by precision when the name differs
    got = resolve_pasted_url(f"{base}/models/{ids.model_id}/juggernaut-xl?modelVersionId={ids.version_id}",
                             search=search, reference=ref("my_juggernaut_fp32.safetensors"))
    assert got.metadata["file_id"] == ids.file_ids["juggernautXL_v9_fp32.safetensors"]
    # a model page without a version: the newest version's primary file
    got = resolve_pasted_url(f"{base}/models/{ids.model_id}", search=search)
    assert got.metadata["version_id"] == newer.version_id and got.filename == "juggernautXL_v10.safetensors"
    # download links, with or without a file id, on the public or the configured host
    got = resolve_pasted_url(f"{base}/api/download/models/{ids.version_id}?fileId="
                             f"{ids.file_ids['juggernautXL_v9.ckpt']}", search=search)
    assert got.filename == "juggernautXL_v9.ckpt" and got.metadata["pickle"] is True
    got = resolve_pasted_url(f"{fake_hub.civitai_url}/api/download/models/{ids.version_id}", search=search)
    assert got.filename == "juggernautXL_v9.safetensors"
    got = resolve_pasted_url(f"civitai.com/api/download/models/{ids.version_id}?type=Model&format=PickleTensor",
                             search=search)
    assert got.filename == "juggernautXL_v9.ckpt"
    with pytest.raises(NotFoundError):
        resolve_pasted_url(f"{base}/api/download/models/{ids.version_id}?fileId=1", search=search)
    with pytest.raises(NotFoundError):
        resolve_pasted_url(f"{base}/models/999999", search=search)


def test_other_hosts_pass_through(search):
    got = resolve_pasted_url("https://github.com/x/y/releases/download/v1/4x_foolhardy.pth", search=search,
                             reference=ref("4x_foolhardy.pth", "upscale_models"))
    assert got.download_url == "https://github.com/x/y/releases/download/v1/4x_foolhardy.pth"
    assert got.backend == "url" and got.directory == "upscale_models" and got.metadata["pickle"]


def test_needs_resolving(hub_config, fake_hub):
    assert needs_resolving(f"{PUBLIC}/blob/main/x.safetensors", hub_config)
    assert needs_resolving(f"{PUBLIC}/resolve/main/x.safetensors", hub_config)  # public link, test endpoint
    assert not needs_resolving(f"{fake_hub.hf_url}/a/b/resolve/main/x.safetensors", hub_config)
    assert needs_resolving(f"{fake_hub.hf_url}/a/b/blob/main/x.safetensors", hub_config)
    assert needs_resolving("https://civitai.com/models/1?modelVersionId=2", hub_config)
    assert not needs_resolving(f"{fake_hub.civitai_url}/api/download/models/2?fileId=3", hub_config)
    assert not needs_resolving(f"{fake_hub.civitai_url}/api/download/models/2", hub_config)
    assert not needs_resolving("https://example.com/x.safetensors", hub_config)
    assert not needs_resolving(None, hub_config) and not needs_resolving("", hub_config)


def test_download_items_get_the_download_url_and_hash(hub, hub_config):
    items = [
        {"filename": "sd_xl_turbo_1.0_fp16.safetensors", "directory": "checkpoints",
         "url": f"{PUBLIC}/blob/main/sd_xl_turbo_1.0_fp16.safetensors"},
        {"filename": "keep.safetensors", "directory": "vae", "url": f"{hub.hf_url}/a/b/resolve/main/keep.safetensors"},
        "not a dict",
    ]
    out = resolve_download_items(items, hub_config)
    assert out[0]["url"] == f"{hub.hf_url}/stabilityai/sdxl-turbo/resolve/main/sd_xl_turbo_1.0_fp16.safetensors"
    assert out[0]["sha256"] == hashlib.sha256(blob(2048, seed=1)).hexdigest() and out[0]["size"] == 2048
    assert out[1] == items[1] and out[2] == "not a dict"
    assert resolve_download_items(items[1:], hub_config) is not None
    with pytest.raises(NotAFileUrlError):
        resolve_download_items([{"filename": "x.safetensors", "directory": "vae", "url": PUBLIC}], hub_config)
