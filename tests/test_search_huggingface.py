"""Hugging Face backend through the real huggingface_hub client against the fake hub."""

from __future__ import annotations

import hashlib

import pytest

from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.errors import NetworkError, NotFoundError, RateLimitedError, ValidationError
from comfyfixersmart.search import ModelSearch
from comfyfixersmart.search.huggingface import parse_hf_url
from fakehub import blob
from fakehub.fixtures import config_for_hub, fake_hub, hub_config  # noqa: F401


def ref(filename, folder="diffusion_models", **kw):
    return ModelReference(filename=filename, node_type="UNETLoader", expected_type="diffusion_model",
                          expected_directory=folder, **kw)


@pytest.fixture
def search(hub_config):
    with ModelSearch(hub_config, backends=["huggingface"]) as s:
        yield s


def test_exact_file_in_known_publisher_repo_with_folder_in_path(fake_hub, search):
    data = blob(2048, 1)
    repo = fake_hub.add_hf_repo("Comfy-Org/Wan_2.1_ComfyUI_repackaged",
                                {"split_files/vae/wan_2.1_vae.safetensors": data, "README.md": b"# wan"})
    fake_hub.add_hf_repo("someone/wan_2.1_vae-copy", {"wan_2.1_vae.safetensors": data})
    best, *rest = search.resolve(ref("wan_2.1_vae.safetensors", "vae"))
    assert best.model_id == "Comfy-Org/Wan_2.1_ComfyUI_repackaged" and best.confidence >= 0.95
    assert best.download_url == (f"{fake_hub.hf_url}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/{repo.sha}/"
                                 "split_files/vae/wan_2.1_vae.safetensors")
    assert best.hash_sha256 == hashlib.sha256(data).hexdigest() and best.size_bytes == 2048
    assert best.metadata["page_url"] == f"{fake_hub.hf_url}/Comfy-Org/Wan_2.1_ComfyUI_repackaged"
    assert best.metadata["repo_id"] == "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
    assert best.metadata["revision"] == repo.sha and best.metadata["path"].startswith("split_files/vae/")
    assert best.directory == "vae" and best.save_as == "wan_2.1_vae.safetensors"
    assert "exact file name in Comfy-Org/Wan_2.1_ComfyUI_repackaged" in best.reason


def test_lfs_sha256_match_wins_whatever_the_name(fake_hub, search):
    data = blob(4096, 2)
    fake_hub.add_hf_repo("city96/FLUX.1-dev-gguf", {"flux1-dev-Q4_K_S.gguf": data, "flux1-dev-Q8_0.gguf": blob(99)})
    (best, *_) = search.resolve(ref("flux1-dev-Q4_K_S_renamed.gguf"), known_sha256=hashlib.sha256(data).hexdigest())
    assert best.confidence == 1.0 and best.filename == "flux1-dev-Q4_K_S.gguf"
    assert best.reason.startswith("sha256 match") and best.save_as == "flux1-dev-Q4_K_S_renamed.gguf"


def test_precision_variant_is_only_similar(fake_hub, search):
    fake_hub.add_hf_repo("Comfy-Org/flux1-dev", {"flux1-dev-fp8.safetensors": blob(10)})
    (r,) = search.resolve(ref("flux1-dev.safetensors"))
    assert r.confidence < 0.8 and "precision differs: fp8 vs unspecified" in r.reason


def test_gated_repo_reported_with_what_to_do(fake_hub, search):
    fake_hub.add_hf_repo("black-forest-labs/FLUX.1-dev", {"flux1-dev.safetensors": blob(64)}, gated=True)
    (resolution,) = search.resolve_many([ref("flux1-dev.safetensors")])
    best = resolution.best
    assert best.metadata["gated"] is True and best.metadata["requires_auth"] is True
    assert "accept the licence" in best.reason
    (error,) = resolution.errors
    assert error["type"] == "GatedRepoError" and error["status"] == 401
    assert error["help_url"] == f"{fake_hub.hf_url}/black-forest-labs/FLUX.1-dev"
    assert "HF_TOKEN" in error["message"]


def test_gated_repo_with_an_approved_token(fake_hub, tmp_path):
    fake_hub.add_hf_repo("black-forest-labs/FLUX.1-dev", {"flux1-dev.safetensors": blob(64)}, gated=True)
    fake_hub.add_hf_token("hf_approvedTOKENapprovedTOKEN", ["black-forest-labs/FLUX.1-dev"])
    config = config_for_hub(fake_hub, tmp_path, hf_token="hf_approvedTOKENapprovedTOKEN")
    with ModelSearch(config, backends=["huggingface"]) as s:
        (resolution,) = s.resolve_many([ref("flux1-dev.safetensors")])
    assert resolution.errors == [] and resolution.best.confidence >= 0.9
    heads = fake_hub.find_requests("/black-forest-labs/FLUX.1-dev/resolve/*", method="HEAD")
    assert heads and all(h.authorization == "Bearer hf_approvedTOKENapprovedTOKEN" for h in heads)
    assert all(r.authorization is None for r in fake_hub.find_requests(listener="storage"))


def test_no_token_from_the_environment_or_disk(fake_hub, search, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fromENVfromENVfromENVfromENV")
    fake_hub.add_hf_repo("Kijai/some", {"some_model.safetensors": blob(10)})
    search.resolve(ref("some_model.safetensors"))
    assert all(r.authorization is None for r in fake_hub.requests)


def test_missing_repo_and_details(fake_hub, search):
    with pytest.raises(NotFoundError):
        search.get_model_details("huggingface", "nobody/nothing")
    with pytest.raises(ValidationError):
        search.get_model_details("huggingface", "not-a-repo-id")
    repo = fake_hub.add_hf_repo("h94/IP-Adapter", {"models/ip-adapter_sd15.safetensors": blob(33),
                                                  "models/ip-adapter_sd15.bin": blob(34)})
    details = search.get_model_details("huggingface", "h94/IP-Adapter")
    files = {f["path"]: f for f in details.files}
    assert files["models/ip-adapter_sd15.bin"]["pickle"] is True
    assert files["models/ip-adapter_sd15.safetensors"]["size_bytes"] == 33
    assert details.versions == [{"id": repo.sha, "name": "main"}]


def test_pickle_file_loses_to_its_safetensors_twin(fake_hub, search):
    fake_hub.add_hf_repo("h94/IP-Adapter", {"models/ip-adapter_sd15.safetensors": blob(33),
                                           "models/ip-adapter_sd15.bin": blob(34)})
    results = search.search("ip-adapter_sd15.bin", model_type="ipadapter")
    assert results[0].filename == "ip-adapter_sd15.bin" and results[0].metadata["pickle"] is True
    assert "safetensors alternative" in results[0].reason
    assert any(r.filename == "ip-adapter_sd15.safetensors" for r in results)


def test_rate_limit_on_repo_info_honours_ratelimit_header(fake_hub, tmp_path):
    fake_hub.add_hf_repo("Kijai/rl", {"rl_model.safetensors": blob(10)})
    fake_hub.inject("/api/models/Kijai/rl", 429, headers={"RateLimit": '"api";r=0;t=55'}, times=None)
    config = config_for_hub(fake_hub, tmp_path)
    with ModelSearch(config, backends=["huggingface"]) as s:
        with pytest.raises(RateLimitedError) as info:
            s.get_model_details("huggingface", "Kijai/rl")
    assert info.value.retry_after == 55.0
    assert fake_hub.request_count("/api/models/Kijai/rl") == 1  # 55 s > backoff_max: not waited


def test_server_error_on_repo_info_is_retried(fake_hub, search):
    fake_hub.add_hf_repo("Kijai/flaky", {"flaky_model.safetensors": blob(10)})
    fake_hub.inject("/api/models/Kijai/flaky", 503, times=2)
    assert search.get_model_details("huggingface", "Kijai/flaky").name == "Kijai/flaky"
    assert fake_hub.request_count("/api/models/Kijai/flaky") == 3


def test_slow_repo_info_times_out(fake_hub, tmp_path):
    fake_hub.add_hf_repo("Kijai/slow", {"slow_model.safetensors": blob(10)})
    fake_hub.inject("/api/models/Kijai/slow", delay=2.5, times=None)
    config = config_for_hub(fake_hub, tmp_path, civitai_api_timeout=1, http_retries=0)
    with ModelSearch(config, backends=["huggingface"]) as s:
        with pytest.raises(NetworkError):
            s.get_model_details("huggingface", "Kijai/slow")


def test_second_resolution_is_served_from_cache(fake_hub, search):
    fake_hub.add_hf_repo("Comfy-Org/mochi_preview_repackaged",
                         {"split_files/diffusion_models/mochi_preview_bf16.safetensors": blob(10)})
    first = search.resolve(ref("mochi_preview_bf16.safetensors"))
    sent = len(fake_hub.requests)
    second = search.resolve(ref("mochi_preview_bf16.safetensors"))
    assert len(fake_hub.requests) == sent
    assert [r.to_dict() for r in first] == [r.to_dict() for r in second]


@pytest.mark.parametrize("url, expected", [
    ("https://huggingface.co/Comfy-Org/x/resolve/main/split_files/vae/a.safetensors?download=true",
     ("Comfy-Org/x", "main", "split_files/vae/a.safetensors")),
    ("https://huggingface.co/a/b/blob/abc123/c%20d.safetensors", ("a/b", "abc123", "c d.safetensors")),
    ("https://huggingface.co/datasets/a/b/resolve/main/x.bin", None),
    ("https://huggingface.co/a/b", None),
])
def test_parse_hf_url(url, expected):
    loc = parse_hf_url(url)
    assert (None if loc is None else (loc.repo_id, loc.revision, loc.path)) == expected
