"""Hugging Face beyond repo-id search: the fake hub searches repo ids only (like the Hub), so
these files are found through the publishers' trees, listed once and cached."""

from __future__ import annotations

import hashlib

import pytest
import requests

from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.search import ModelSearch
from comfyfixersmart.search import huggingface as hf_module
from fakehub import blob
from fakehub.fixtures import config_for_hub, fake_hub, hub_config  # noqa: F401


def ref(filename, folder, **kw):
    return ModelReference(filename=filename, node_type="Loader", expected_type=folder.rstrip("s"),
                          expected_directory=folder, **kw)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_hub_search_matches_repo_ids_only(fake_hub):
    fake_hub.add_hf_repo("comfyanonymous/flux_text_encoders", {"t5xxl_fp16.safetensors": blob(8)})
    fake_hub.add_hf_repo("Kijai/WanVideo_comfy", {"x.safetensors": blob(8)})

    def ids(**params):
        return [m["id"] for m in requests.get(f"{fake_hub.hf_url}/api/models", params=params).json()]

    assert ids(search="t5xxl") == []  # a file name is never searched
    assert ids(search="FLUX_TEXT") == ["comfyanonymous/flux_text_encoders"]  # case-insensitive substring
    assert ids(search="flux encoders") == []  # one substring, not words
    assert ids(author="kijai") == ["Kijai/WanVideo_comfy"]
    listing = requests.get(f"{fake_hub.hf_url}/api/models", params={"author": "Kijai", "full": "true"}).json()
    assert [s["rfilename"] for s in listing[0]["siblings"]] == [".gitattributes", "x.safetensors"]


@pytest.mark.parametrize("repo_id, path, wanted, folder", [
    ("comfyanonymous/flux_text_encoders", "t5xxl_fp16.safetensors", "t5xxl_fp16.safetensors", "text_encoders"),
    ("stabilityai/sdxl-turbo", "sd_xl_turbo_1.0_fp16.safetensors", "sd_xl_turbo_1.0_fp16.safetensors",
     "checkpoints"),
    ("circlestone-labs/Anima", "split_files/text_encoders/qwen_3_06b_base.safetensors",
     "qwen_3_06b_base.safetensors", "text_encoders"),
    ("Comfy-Org/Wan_2.2_ComfyUI_Repackaged", "split_files/loras/chronoedit_distill_lora.safetensors",
     "chronoedit_distill_lora.safetensors", "loras"),
])
def test_file_found_in_a_publisher_tree(fake_hub, hub_config, repo_id, path, wanted, folder):
    data = blob(64, wanted)
    fake_hub.add_hf_repo(repo_id, {path: data, "README.md": b"#"})
    with ModelSearch(hub_config) as s:
        (res,) = s.resolve_many([ref(wanted, folder)])
    best = res.choose()
    assert best is not None and best.model_id == repo_id and best.hash_sha256 == sha(data)
    assert best.metadata["path"] == path and "known publisher" in best.reason
    # a sure publisher hit spares the name searches
    assert fake_hub.request_count("/api/v1/models") == 0
    assert not [r for r in fake_hub.find_requests("/api/models") if "search=" in r.query]


def test_publisher_listing_pages_and_is_cached(fake_hub, hub_config, monkeypatch):
    monkeypatch.setattr(hf_module, "PUBLISHER_PAGE", 2)
    for i in range(5):
        fake_hub.add_hf_repo(f"Comfy-Org/repo{i}", {f"split_files/vae/file{i}.safetensors": blob(16, i)})
    with ModelSearch(hub_config, backends=["huggingface"]) as s:
        (r,) = s.resolve(ref("file4.safetensors", "vae"))
        assert r.model_id == "Comfy-Org/repo4" and r.confidence >= 0.95
        listing = [q for q in fake_hub.find_requests("/api/models") if "author=Comfy-Org" in q.query]
        assert len(listing) == 3  # 2 + 2 + 1 repos, pages followed by Link rel="next"
        fake_hub.clear_log()
        (again,) = s.resolve(ref("file3.safetensors", "vae"))
        assert again.model_id == "Comfy-Org/repo3"
        # the listing is not asked again; only the holding repo's file list (sha256, sizes)
        assert [q.path for q in fake_hub.requests] == ["/api/models/Comfy-Org/repo3"]
    fake_hub.clear_log()
    with ModelSearch(hub_config, backends=["huggingface"]) as s:  # a new process: from the disk cache
        s.resolve(ref("file3.safetensors", "vae"))
    assert fake_hub.requests == []


def test_generic_names_need_the_folder_in_the_path(fake_hub, hub_config):
    vae = blob(32, "flux-vae")
    fake_hub.add_hf_repo("Comfy-Org/Lumina_Image_2.0_Repackaged", {"split_files/vae/ae.safetensors": vae})
    fake_hub.add_hf_repo("black-forest-labs/FLUX.1-schnell", {"ae.safetensors": vae})
    for repo in ("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-3.5-large"):
        fake_hub.add_hf_repo(repo, {"vae/diffusion_pytorch_model.safetensors": blob(32, repo),
                                    "unet/diffusion_pytorch_model.safetensors": blob(33, repo)})
    with ModelSearch(hub_config) as s:
        ae, dpm = s.resolve_many([ref("ae.safetensors", "vae"), ref("diffusion_pytorch_model.safetensors", "vae")])
    best = ae.choose()
    assert best is not None and best.hash_sha256 == sha(vae)
    assert "keeps it in its vae folder" in best.reason
    assert best.metadata["mirrors"][0]["where"] == "black-forest-labs/FLUX.1-schnell"  # same bytes: one answer
    # two publishers' vae/diffusion_pytorch_model.safetensors: nothing says which model is meant
    assert dpm.candidates and all(c.confidence < 0.8 for c in dpm.candidates)
    assert "other file" in dpm.best.reason
    # never searched alone
    assert not [r for r in fake_hub.find_requests("/api/models") if "search=" in r.query]
    assert fake_hub.request_count("/api/v1/models") == 0


def test_gated_publisher_file_reported_without_a_request(fake_hub, hub_config):
    fake_hub.add_hf_repo("black-forest-labs/FLUX.1-dev", {"flux1-dev.safetensors": blob(64)}, gated="manual")
    with ModelSearch(hub_config) as s:
        (res,) = s.resolve_many([ref("flux1-dev.safetensors", "diffusion_models")])
    assert res.best.metadata["gated"] is True and "accept the licence" in res.best.reason
    (error,) = res.errors
    assert error["type"] == "GatedRepoError" and error["status"] == 401 and "HF_TOKEN" in error["message"]
    # anonymous downloads of a gated repo are always refused: nothing was asked for it
    assert fake_hub.request_count("/black-forest-labs/FLUX.1-dev/resolve/*") == 0


def test_unapproved_token_gets_403_from_the_hub(fake_hub, tmp_path):
    fake_hub.add_hf_repo("black-forest-labs/FLUX.1-dev", {"flux1-dev.safetensors": blob(64)}, gated="manual")
    fake_hub.add_hf_token("hf_notApprovedNotApprovedNotApproved")
    config = config_for_hub(fake_hub, tmp_path, hf_token="hf_notApprovedNotApprovedNotApproved")
    with ModelSearch(config) as s:
        (res,) = s.resolve_many([ref("flux1-dev.safetensors", "diffusion_models")])
    (error,) = res.errors
    assert error["type"] == "GatedRepoError" and error["status"] == 403


def test_civitai_download_of_a_login_only_model_redirects_to_an_html_login_page(fake_hub):
    ids = fake_hub.add_civitai_model("Members Only", {"members_v1.safetensors": blob(16)}, requires_auth=True,
                                     login_redirect=True)
    url = f"{fake_hub.civitai_url}/api/download/models/{ids.version_id}"
    first = requests.get(url, allow_redirects=False)
    assert first.status_code == 307 and first.headers["Location"].startswith("/login?")
    page = requests.get(url)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Sign in" in page.text
    fake_hub.add_civitai_token("civ-ok")
    assert requests.get(url, headers={"Authorization": "Bearer civ-ok"}).content == blob(16)


def test_publishers_cover_the_owners_the_known_model_index_shows():
    import collections
    import json
    from pathlib import Path

    import comfyfixersmart
    from comfyfixersmart.search import names

    data = json.loads((Path(comfyfixersmart.__file__).parent / "data" / "known_models.json").read_text())
    owners = collections.Counter(m["url"].split("huggingface.co/", 1)[1].split("/", 1)[0]
                                 for m in data["models"] if "huggingface.co/" in m.get("url", ""))
    frequent = {o for o, n in owners.items() if n >= 15}
    assert frequent and frequent <= set(names.PUBLISHER_TREES), frequent - set(names.PUBLISHER_TREES)
    assert {o.lower() for o in names.PUBLISHER_TREES} <= names.KNOWN_PUBLISHERS


def test_a_path_naming_another_folder_is_not_this_folders_file(fake_hub, hub_config):
    fake_hub.add_hf_repo("Comfy-Org/some_repackaged", {"split_files/vae/pixel_smoother.safetensors": blob(32)})
    with ModelSearch(hub_config, backends=["huggingface"]) as s:
        (r,) = s.resolve(ref("pixel_smoother.safetensors", "loras"))
        (v,) = s.resolve(ref("pixel_smoother.safetensors", "vae"))
    assert r.confidence < 0.8 and "another folder" in r.reason
    assert v.confidence >= 0.95
