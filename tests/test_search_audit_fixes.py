"""Fixes from the acceptance audit: Civitai "Checkpoint" models in ``diffusion_models``,
publisher prefixes in Hugging Face search terms, precision-aware file choice, and secret
query parameters never sent on the wire."""

from __future__ import annotations

from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.search import ModelSearch
from comfyfixersmart.search import names
from comfyfixersmart.search.civitai import folder_fits
from fakehub import blob
from fakehub.fixtures import fake_hub, hub_config  # noqa: F401


def ref(filename, folder="checkpoints", **kw):
    return ModelReference(filename=filename, node_type="Loader", expected_type=folder.rstrip("s"),
                          expected_directory=folder, **kw)


# -- 1. Civitai "Checkpoint" fine-tunes loaded with UNETLoader ---------------------------

def test_checkpoint_type_fits_diffusion_models():
    assert folder_fits("Checkpoint", "Model", "diffusion_models") is True
    assert folder_fits("Checkpoint", "Pruned Model", "unet") is True
    assert folder_fits("Checkpoint", None, "diffusion_models") is True
    assert folder_fits("Checkpoint", "VAE", "diffusion_models") is False  # a VAE inside stays a VAE
    assert folder_fits("UNet", "Model", "checkpoints") is False  # CheckpointLoader cannot load a UNet
    assert folder_fits("LORA", "Model", "diffusion_models") is False
    assert folder_fits("Workflows", "Model", "diffusion_models") is None


def test_civitai_checkpoint_found_for_unet_loader(fake_hub, hub_config):
    ids = fake_hub.add_civitai_model("Flux Fusion", {"fluxFusion_v2Fp8.safetensors": blob(64)}, type="Checkpoint",
                                     base_model="Flux.1 D")
    fake_hub.add_civitai_model("Flux Fusion Lora", {"fluxFusion_v2Fp8.safetensors": blob(32, seed=1)}, type="LORA")
    with ModelSearch(hub_config, backends=["civitai"]) as s:
        best, *rest = s.resolve(ref("fluxFusion_v2Fp8.safetensors", "diffusion_models"))
    assert best.confidence >= 0.9 and best.metadata["version_id"] == ids.version_id
    assert best.directory == "diffusion_models"  # the folder comes from the reference
    assert best.download_url.endswith(f"?fileId={ids.file_id}")
    assert all(r.confidence < 0.9 for r in rest)  # the LoRA of the same name does not fit
    # the type filter already asked for Checkpoint models: one query was enough
    (req, *_) = fake_hub.find_requests("/api/v1/models")
    assert "types=UNet" in req.query and "types=Checkpoint" in req.query


def test_civitai_vae_file_in_checkpoint_model_still_not_a_unet(fake_hub, hub_config):
    fake_hub.add_civitai_model("Some Flux Vae Pack", {"someFlux_v1.safetensors": blob(64),
                                             "someFluxVae.safetensors": {"data": blob(8), "type": "VAE"}})
    with ModelSearch(hub_config, backends=["civitai"]) as s:
        results = s.resolve(ref("someFluxVae.safetensors", "diffusion_models"))
    assert results and all(r.confidence < 0.9 for r in results)


# -- 2. publisher prefixes are owners, not repo names ------------------------------------

def test_hf_terms_strip_publisher_prefixes():
    assert names.hf_search_terms("Comfy-Org_sd3_medium_incl_clips.safetensors") == \
        ["sd3_medium_incl_clips", "sd3-medium-incl-clips", "sd3_medium_incl", "sd3_medium"]
    assert names.hf_search_terms("comfy_org-flux1-dev-fp8.safetensors") == \
        names.hf_search_terms("flux1-dev-fp8.safetensors")
    assert names.hf_search_terms("BLACK.FOREST.LABS_flux1-dev.safetensors")[0] == "flux1-dev"
    assert names.hf_search_terms("Kijai-wan2.1_vae_bf16.safetensors")[0] == "wan2.1_vae"
    assert names.hf_search_terms("h94_ip-adapter_sd15.bin")[0] == "ip-adapter-sd15"
    # not a prefix: a longer word, a publisher that names its models, nothing left after it
    assert names.hf_search_terms("googlenet_x.pt")[0] == "googlenet_x"
    assert names.hf_search_terms("qwen_image_vae.safetensors")[0] == "qwen_image_vae"
    assert names.hf_search_terms("Kijai.safetensors") == ["kijai"]
    assert names.hf_search_terms("TencentARC_x.safetensors")[0] == "tencentarc_x"
    assert names.strip_publisher("Comfy-Org_sd3_medium") == "sd3_medium"


def test_hf_repo_found_only_through_the_stripped_term(fake_hub, hub_config):
    data = blob(512, 3)
    fake_hub.add_hf_repo("someone/flux1-schnell-mirror", {"Comfy-Org_flux1-schnell_fp8.safetensors": data})
    with ModelSearch(hub_config, backends=["huggingface"]) as s:
        (best,) = s.resolve(ref("Comfy-Org_flux1-schnell_fp8.safetensors", "diffusion_models"))
    assert best.model_id == "someone/flux1-schnell-mirror"
    assert best.filename == "Comfy-Org_flux1-schnell_fp8.safetensors" and best.confidence >= 0.85
    queries = [r.query for r in fake_hub.find_requests("/api/models") if "search=" in r.query]
    assert queries and all("comfy" not in q.lower() for q in queries)  # the owner never became a query


# -- 3. the reference's precision chooses the file of a version --------------------------

def _two_precisions(fake_hub):
    return fake_hub.add_civitai_model("Dream Shaper Turbo", {
        "dreamShaperTurbo_fp32.safetensors": {"data": blob(64), "fp": "fp32", "primary": True},
        "dreamShaperTurbo_fp16.safetensors": {"data": blob(32, seed=2), "fp": "fp16", "primary": False},
    })


def test_workflow_version_url_picks_the_file_of_the_references_precision(fake_hub, hub_config):
    ids = _two_precisions(fake_hub)
    url = f"https://civitai.com/api/download/models/{ids.version_id}"  # a version, no fileId
    with ModelSearch(hub_config, backends=["workflow"]) as s:
        (half,) = s.resolve(ref("dreamshaper-turbo-fp16.safetensors", url=url))
        (plain,) = s.resolve(ref("dreamshaper-turbo.safetensors", url=url))
    fp16_id = ids.file_ids["dreamShaperTurbo_fp16.safetensors"]
    assert half.download_url.endswith(f"/{ids.version_id}?fileId={fp16_id}")
    assert half.filename == "dreamShaperTurbo_fp16.safetensors" and half.size_bytes == 32
    assert half.metadata["file_id"] == fp16_id and half.save_as == "dreamshaper-turbo-fp16.safetensors"
    # no precision named: the primary file, as Civitai itself would send
    assert plain.filename == "dreamShaperTurbo_fp32.safetensors" and plain.size_bytes == 64


def test_civitai_plain_query_precision_picks_the_file(fake_hub, hub_config):
    ids = _two_precisions(fake_hub)
    with ModelSearch(hub_config, backends=["civitai"]) as s:
        (half,) = s.search("dream shaper turbo fp16", "checkpoint")
        (plain,) = s.search("dream shaper turbo", "checkpoint")
    assert half.download_url.endswith(f"?fileId={ids.file_ids['dreamShaperTurbo_fp16.safetensors']}")
    assert plain.download_url.endswith(f"?fileId={ids.file_ids['dreamShaperTurbo_fp32.safetensors']}")
    # the precision word chose the file; the model-name query went without it
    assert all("fp16" not in r.query for r in fake_hub.find_requests("/api/v1/models"))


# -- 4. secret query parameters never go on the wire -------------------------------------

def test_strip_secret_params_keeps_everything_else():
    from comfyfixersmart.security import strip_secret_params

    assert strip_secret_params("https://h/x?token=abc&query=a%20b+c&HF_TOKEN=2&api_key=3") == \
        "https://h/x?query=a%20b+c"
    assert strip_secret_params("https://h/x?to%6Ben=q&tokens=1#f") == "https://h/x?tokens=1#f"
    assert strip_secret_params("https://h/x") == "https://h/x"
    signed = "https://cdn/x?X-Amz-Signature=z&X-Amz-Credential=c&token=t"
    assert strip_secret_params(signed) == "https://cdn/x"
    assert strip_secret_params(signed, keep_signatures=True) == "https://cdn/x?X-Amz-Signature=z&X-Amz-Credential=c"


def test_get_json_never_sends_a_secret_query_parameter(fake_hub, hub_config, caplog):
    import logging

    from comfyfixersmart.search.http import ApiClient

    fake_hub.add_civitai_model("Secret Sauce", {"secretSauce_v1.safetensors": blob(16)})
    caplog.set_level(logging.DEBUG, logger="urllib3")
    client = ApiClient(hub_config)
    try:
        url = f"{fake_hub.civitai_url}/api/v1/models?token=SEKRIT-url-1&query=secret%20sauce&hf_token=SEKRIT-url-2"
        data = client.get_json(url, [("api_key", "SEKRIT-param-3"), ("limit", 5)], use_cache=False)
        again = client.get_json(f"{fake_hub.civitai_url}/api/v1/models", {"query": "secret sauce",
                                                                          "access_token": "SEKRIT-param-4"})
    finally:
        client.close()
    assert [i["name"] for i in data["items"]] == ["Secret Sauce"] == [i["name"] for i in again["items"]]
    logged = caplog.text
    assert "/api/v1/models?" in logged  # urllib3 did log the request lines...
    assert "SEKRIT" not in logged  # ...without any secret
    for req in fake_hub.find_requests("/api/v1/models"):
        assert "SEKRIT" not in req.query and "token" not in req.query and "api_key" not in req.query
        assert "query=secret" in req.query
