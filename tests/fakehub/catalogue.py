"""A hub catalogue shaped like the real one, and a labelled probe set over it.

``build_catalogue(hub)`` fills a FakeHub with:

* the official files: every ``{name, directory, url}`` of ComfyUI's workflow templates
  (``tests/fixtures/hub_catalogue/template_models.json``, derived from the MIT-licensed PyPI
  package comfyui-workflow-templates-json 0.1.123, names and repo paths only), in their real
  repos and paths (Comfy-Org's ``split_files/<folder>/...``, comfyanonymous/flux_text_encoders,
  stabilityai/sdxl-turbo, Kijai, Lightricks...).  A file name has the same bytes in every
  official repo that ships it (``wan_2.1_vae.safetensors`` in three Comfy-Org repos);
* more publisher repos: gated black-forest-labs repos (401 anonymous, 403 not approved), city96
  GGUF quantisations, lllyasviel, stabilityai diffusers layouts full of generic names;
* community repos: byte-identical mirrors, same-name files with other bytes (re-uploads,
  "merged"/"pruned" copies, fp8 conversions), repo ids that contain the file name (so the
  repo-id search finds them first), GGUF quantisations of other models;
* Civitai models: community checkpoints and LoRAs with decoys of the same file name, copies of
  official files (same bytes), a text encoder re-upload with other bytes, a login redirect.

``probes(catalogue)`` is the labelled set: for each probe the sha256 of the right file, or None
when the right file is nowhere in the hub (then no candidate may be sure).  Everything is
deterministic (payloads are ``blob(size, seed)`` with string seeds).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .hub import FakeHub
from .registry import blob

TEMPLATES = Path(__file__).resolve().parents[1] / "fixtures" / "hub_catalogue" / "template_models.json"
SIZE = 96  # bytes per payload: search never downloads, hashes are what matter


def payload(key: str) -> bytes:
    return blob(SIZE, f"catalogue:{key}")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Probe:
    """One labelled lookup: a file a workflow names, and the right answer."""

    name: str
    directory: str
    #: sha256 of the right file; None: not in the hub (no candidate may be sure)
    truth: Optional[str]
    kind: str  # official, civitai, absent, guessed
    source: str = "core"
    confidence: float = 1.0

    @property
    def key(self) -> str:
        return f"{self.directory}/{self.name}"

    @property
    def held_out(self) -> bool:
        """Deterministic split by name (about a third), never looked at while tuning.  The first
        rule (``% 10 < 3``) gave 26 % on this set; the second part (``33..39``) was added to reach
        30 %+ before the held-out part was ever run (it moved 7 % of the probes out of tuning)."""
        n = int(hashlib.sha1(f"probe:{self.key}".encode()).hexdigest()[:8], 16)
        return n % 10 < 3 or 33 <= n % 100 <= 39


@dataclass
class Catalogue:
    official: Dict[str, bytes] = field(default_factory=dict)  # "dir/name" -> bytes
    probes: List[Probe] = field(default_factory=list)


def template_entries() -> List[dict]:
    return json.loads(TEMPLATES.read_text(encoding="utf-8"))["models"]


def _repo_files(entries: List[dict]) -> Dict[str, Dict[str, bytes]]:
    repos: Dict[str, Dict[str, bytes]] = {}
    for e in entries:
        for src in e["sources"]:
            repo_id, path = src.split(":", 1)
            # the bytes belong to the path (one template lists a wrong URL for a name)
            repos.setdefault(repo_id, {})[path] = payload(f"official:{path.rsplit('/', 1)[-1]}")
    return repos


#: downloads of the official repos: popular, but not always more than a community copy
_OFFICIAL_DOWNLOADS = {"Comfy-Org": 250_000, "comfyanonymous": 900_000, "Kijai": 300_000, "Lightricks": 80_000,
                       "black-forest-labs": 1_500_000, "stabilityai": 700_000}


def build_catalogue(hub: FakeHub) -> Catalogue:
    cat = Catalogue()
    entries = template_entries()
    official = _repo_files(entries)
    # real repos hold more than the templates name: the same bytes under other official repos
    extra_official = {
        "Comfy-Org/HunyuanVideo_repackaged": {"split_files/text_encoders/clip_l.safetensors": "clip_l.safetensors",
                                              "split_files/text_encoders/llava_llama3_fp8_scaled.safetensors":
                                                  "llava_llama3_fp8_scaled.safetensors"},
        "black-forest-labs/FLUX.1-dev": {"ae.safetensors": "ae.safetensors", "flux1-dev.safetensors":
                                         "flux1-dev.safetensors"},
        "black-forest-labs/FLUX.1-schnell": {"ae.safetensors": "ae.safetensors",
                                             "flux1-schnell.safetensors": "flux1-schnell.safetensors"},
        "comfyanonymous/flux_text_encoders": {"t5xxl_fp8_e4m3fn.safetensors": "t5xxl_fp8_e4m3fn.safetensors"},
    }
    for repo_id, files in extra_official.items():
        for path, name in files.items():
            official.setdefault(repo_id, {})[path] = payload(f"official:{name}")
    for repo_id, files in official.items():
        owner = repo_id.split("/")[0]
        gated = "manual" if owner == "black-forest-labs" and "comfy" not in repo_id.lower() else False
        files = dict(files)
        files.setdefault("README.md", f"# {repo_id}\n".encode())
        hub.add_hf_repo(repo_id, files, gated=gated, downloads=_OFFICIAL_DOWNLOADS.get(owner, 20_000))

    # -- other publisher repos ---------------------------------------------------------------
    hub.add_hf_repo("city96/FLUX.1-dev-gguf", {f"flux1-dev-{q}.gguf": payload(f"city96:flux1-dev-{q}")
                                               for q in ("Q3_K_S", "Q4_K_S", "Q5_K_S", "Q8_0")}, downloads=400_000)
    hub.add_hf_repo("city96/Qwen-Image-gguf", {f"qwen-image-{q}.gguf": payload(f"city96:qwen-image-{q}")
                                               for q in ("Q3_K_S", "Q4_K_M", "Q8_0")}, downloads=150_000)
    hub.add_hf_repo("city96/Wan2.1-T2V-14B-gguf", {f"wan2.1-t2v-14b-{q}.gguf": payload(f"city96:wan-{q}")
                                                   for q in ("Q3_K_M", "Q4_K_M")}, downloads=90_000)
    hub.add_hf_repo("city96/t5-v1_1-xxl-encoder-gguf", {"t5-v1_1-xxl-encoder-Q8_0.gguf": payload("city96:t5-q8")},
                    downloads=200_000)
    hub.add_hf_repo("lllyasviel/ControlNet-v1-1", {
        "control_v11p_sd15_canny.pth": payload("ll:canny"), "control_v11f1p_sd15_depth.pth": payload("ll:depth"),
        "control_v11p_sd15_openpose.pth": payload("ll:openpose")}, downloads=600_000)
    hub.add_hf_repo("lllyasviel/Annotators", {"body_pose_model.pth": payload("ll:body"),
                                              "ControlNetHED.pth": payload("ll:hed")}, downloads=300_000)
    hub.add_hf_repo("lllyasviel/flux1-dev-bnb-nf4", {"flux1-dev-bnb-nf4-v2.safetensors": payload("ll:nf4")},
                    downloads=100_000)
    # diffusers layouts: generic names with other bytes in every repo
    hub.add_hf_repo("stabilityai/stable-diffusion-3.5-large", {}, gated="auto", downloads=300_000)
    for repo_id in ("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-3.5-large",
                    "black-forest-labs/FLUX.1-dev"):
        for sub in ("vae", "unet", "transformer", "text_encoder"):
            hub.add_hf_file(repo_id, f"{sub}/diffusion_pytorch_model.safetensors", payload(f"diffusers:{repo_id}:{sub}"))
        hub.add_hf_file(repo_id, "text_encoder/model.safetensors", payload(f"diffusers:{repo_id}:te"))
    # SD3.5 ships its own clip_l with other bytes, in a folder named like ComfyUI's
    hub.add_hf_file("stabilityai/stable-diffusion-3.5-large", "text_encoders/clip_l.safetensors",
                    payload("sd35:clip_l"))
    hub.add_hf_file("stabilityai/stable-diffusion-3.5-large", "sd3.5_large.safetensors", payload("sd35:large"))
    hub.add_hf_repo("Kijai/flux-fp8", {"flux1-dev-fp8-e4m3fn.safetensors": payload("kj:flux-fp8"),
                                       "flux-vae-bf16.safetensors": payload("kj:flux-vae")}, downloads=120_000)
    hub.add_hf_file("Kijai/WanVideo_comfy", "umt5-xxl-enc-bf16.safetensors", payload("kj:umt5-bf16"))
    hub.add_hf_file("Kijai/WanVideo_comfy", "Wan2_1_VAE_fp32.safetensors", payload("kj:wan-vae-fp32"))

    # -- community repos -----------------------------------------------------------------------
    def official_bytes(name: str) -> bytes:
        return payload(f"official:{name}")

    # byte-identical mirrors (one answer with the official file)
    hub.add_hf_repo("ai-mirror/comfyui-essentials", {
        "vae/wan_2.1_vae.safetensors": official_bytes("wan_2.1_vae.safetensors"),
        "text_encoders/t5xxl_fp16.safetensors": official_bytes("t5xxl_fp16.safetensors"),
        "clip_l.safetensors": official_bytes("clip_l.safetensors"),
        "vae/ae.safetensors": official_bytes("ae.safetensors"),
        "checkpoints/sd_xl_turbo_1.0_fp16.safetensors": official_bytes("sd_xl_turbo_1.0_fp16.safetensors"),
        "qwen_image_vae.safetensors": official_bytes("qwen_image_vae.safetensors"),
    }, downloads=40_000)
    hub.add_hf_repo("modelzoo/wan-2.1-backup", {
        "split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors":
            official_bytes("umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
        "split_files/vae/wan_2.1_vae.safetensors": official_bytes("wan_2.1_vae.safetensors"),
    }, downloads=3_000)
    # same names, other bytes: re-uploads, merges, conversions; some with folder-named paths
    decoys = {
        "randomuser/t5xxl_fp16": {"t5xxl_fp16.safetensors": "re-upload"},
        "someone/umt5-xxl-merged": {"split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors": "merged",
                                    "umt5_xxl_fp8_e4m3fn_scaled_pruned.safetensors": "pruned"},
        "lorafan/chronoedit_distill_lora": {"chronoedit_distill_lora.safetensors": "retrained"},
        "comfy-user/qwen_image_edit-pruned": {"qwen_image_edit_fp8_e4m3fn.safetensors": "pruned"},
        "pixelpusher/sd_xl_turbo_1.0_fp16-merged": {"sd_xl_turbo_1.0_fp16.safetensors": "merged"},
        "hobbyist/flux-vae-ae": {"vae/ae.safetensors": "finetuned"},
        "hobbyist/wan_2.1_vae-finetune": {"split_files/vae/wan_2.1_vae.safetensors": "finetuned"},
        "quantlab/qwen_image_2512-fp8": {"qwen_image_2512_fp8_e4m3fn.safetensors": "requant"},
        "ltx-fans/ltx-video-2b-v0.9.5-mirror": {"ltx-video-2b-v0.9.5.safetensors": "corrupt"},
        "converter/clip_vision_h": {"clip_vision_h.safetensors": "converted"},
        "anon/hunyuan_video_vae_bf16": {"hunyuan_video_vae_bf16.safetensors": "other"},
        "anon/z_image_turbo_bf16": {"z_image_turbo_bf16.safetensors": "other"},
        "xyz/Qwen-Image-Lightning-reupload": {"Qwen-Image-Lightning-4steps-V1.0.safetensors": "other"},
        "merges/flux1-dev-fp8-merged": {"flux1-dev-fp8.safetensors": "merged"},
    }
    for repo_id, files in decoys.items():
        hub.add_hf_repo(repo_id, {path: payload(f"decoy:{repo_id}:{path}:{why}") for path, why in files.items()},
                        downloads=2_000_000 if "merged" in repo_id else 5_000)
    # GGUF quantisations of other models whose names look close
    hub.add_hf_repo("gguf-hub/sd3.5_large_controlnet-gguf", {
        "sd3.5_large_controlnet_canny-Q4_0.gguf": payload("gguf:sd35cn"),
        "sd3.5_large-Q3_K_S.gguf": payload("gguf:sd35q3")}, downloads=20_000)
    hub.add_hf_repo("gguf-hub/qwen_image_edit-gguf", {"qwen_image_edit-Q3_K_M.gguf": payload("gguf:qie-q3")},
                    downloads=20_000)

    # -- Civitai ---------------------------------------------------------------------------------
    civitai = [
        # (model name, type, base, {file: seed}, downloads)
        ("Realistic Vision V6.0 B1", "Checkpoint", "SD 1.5", {"realisticVisionV60B1_v51VAE.safetensors": "rv60"},
         900_000),
        ("Realistic Vision V6.0 B1 merge", "Checkpoint", "SD 1.5",
         {"realisticVisionV60B1_v51VAE.safetensors": "rv60-merge"}, 3_000),
        ("DreamShaper XL", "Checkpoint", "SDXL 1.0", {"dreamshaperXL_lightningDPMSDE.safetensors": "dsxl"}, 600_000),
        ("Juggernaut XL", "Checkpoint", "SDXL 1.0", {"juggernautXL_ragnarokBy.safetensors": "jxl"}, 700_000),
        ("Juggernaut XL pruned", "Checkpoint", "SDXL 1.0", {"juggernautXL_ragnarokBy_pruned.safetensors": "jxlp"},
         4_000),
        ("epiCRealism", "Checkpoint", "SD 1.5", {"epicrealism_naturalSinRC1VAE.safetensors": "epic"}, 500_000),
        ("majicMIX realistic", "Checkpoint", "SD 1.5", {"majicmixRealistic_v7.safetensors": "majic"}, 400_000),
        ("Pony Diffusion V6 XL", "Checkpoint", "Pony", {"ponyDiffusionV6XL_v6StartWithThisOne.safetensors": "pony"},
         800_000),
        ("Add More Details", "LORA", "SD 1.5", {"more_details.safetensors": "details"}, 300_000),
        ("Detail Tweaker XL", "LORA", "SDXL 1.0", {"add-detail-xl.safetensors": "detailxl"}, 250_000),
        ("Detail Tweaker XL copy", "LORA", "SDXL 1.0", {"add-detail-xl.safetensors": "detailxl-copy"}, 900),
        ("Flux Realism LoRA", "LORA", "Flux.1 D", {"flux_realism_lora.safetensors": "fluxreal"}, 120_000),
        ("Film Grain Style", "LORA", "Flux.1 D", {"filmGrainStyle_v2.safetensors": "grain"}, 15_000),
        ("Pixel Art XL", "LORA", "SDXL 1.0", {"pixel-art-xl.safetensors": "pixelxl"}, 90_000),
        ("EasyNegative", "TextualInversion", "SD 1.5", {"easynegative.safetensors": "easyneg"}, 600_000),
        ("negativeXL", "TextualInversion", "SDXL 1.0", {"negativeXL_D.safetensors": "negxl"}, 100_000),
        ("4x-UltraSharp", "Upscaler", "Other", {"4x-UltraSharp.pth": "ultrasharp"}, 400_000),
        ("Flux Fusion", "Checkpoint", "Flux.1 D", {"fluxFusion_v2Fp8.safetensors": "fusion"}, 60_000),
        ("Flux Fusion GGUF", "Checkpoint", "Flux.1 D", {"fluxFusion_v2Q4KS.gguf": "fusion-gguf"}, 8_000),
        ("ClearVAE", "VAE", "SD 1.5", {"clearvae_v23.safetensors": "clearvae"}, 50_000),
        ("CyberRealistic", "Checkpoint", "SD 1.5", {"cyberrealistic_v42.safetensors": "cyber"}, 200_000),
        ("AbsoluteReality", "Checkpoint", "SD 1.5", {"absolutereality_v181.safetensors": "absreal"}, 300_000),
        ("Wan Cinematic LoRA", "LORA", "Wan Video 14B t2v", {"wan_cinematic_v1.safetensors": "wancine"}, 7_000),
        ("Hunyuan Anime LoRA", "LORA", "Hunyuan Video", {"hunyuan_anime_style.safetensors": "hyanime"}, 6_000),
        ("SDXL Lightning 8 step", "LORA", "SDXL 1.0", {"sdxl_lightning_8step_lora.safetensors": "sdxll8"}, 200_000),
        # copies of official files: the same bytes (one answer) or other bytes (a decoy)
        ("Flux VAE", "VAE", "Flux.1 D", {"ae.safetensors": None}, 300_000),
        ("T5XXL FP16 text encoder", "TextEncoder", "Flux.1 D", {"t5xxl_fp16.safetensors": "t5-reupload"}, 90_000),
        ("Chronoedit distill lora", "LORA", "Wan Video 14B i2v", {"chronoedit_distill_lora.safetensors": "chrono-civ"},
         40_000),
    ]
    civitai_truth: Dict[str, bytes] = {}
    for model_name, mtype, base, files, downloads in civitai:
        specs = {}
        for fname, seed in files.items():
            data = official_bytes(fname) if seed is None else payload(f"civitai:{seed}")
            specs[fname] = data
            civitai_truth.setdefault(fname, data)  # the first (most popular) model is the right one
        hub.add_civitai_model(model_name, specs, type=mtype, base_model=base, downloads=downloads,
                              login_redirect=model_name.startswith("Pony"), requires_auth=model_name.startswith("Pony"))

    # -- probes --------------------------------------------------------------------------------
    for e in entries:
        # the right file is the one the template's URL names (saved under the template's name)
        paths = [src.split(":", 1)[1] for src in e["sources"]]
        path = next((x for x in paths if x.rsplit("/", 1)[-1] == e["name"]), paths[0])
        data = official_bytes(path.rsplit("/", 1)[-1])
        cat.official[f"{e['directory']}/{e['name']}"] = data
        cat.probes.append(Probe(e["name"], e["directory"], sha(data), "official"))
    folders = {"Checkpoint": "checkpoints", "LORA": "loras", "TextualInversion": "embeddings",
               "Upscaler": "upscale_models", "VAE": "vae", "TextEncoder": "text_encoders"}
    seen = {p.name for p in cat.probes}
    for model_name, mtype, base, files, downloads in civitai:
        for fname in files:
            if fname in seen or "merge" in model_name or "copy" in model_name or "pruned" in model_name \
                    or "GGUF" in model_name:
                continue
            seen.add(fname)
            folder = "diffusion_models" if model_name == "Flux Fusion" else folders[mtype]
            cat.probes.append(Probe(fname, folder, sha(civitai_truth[fname]), "civitai"))
    # files nowhere in the hub (only a variant, another precision or a quantisation is): no
    # candidate may be sure
    absent = [
        ("qwen_image_fp16.safetensors", "diffusion_models"),
        ("flux1-dev-fp16.safetensors", "diffusion_models"),
        ("flux1-dev-Q6_K.gguf", "diffusion_models"),
        ("t5xxl_fp8_e5m2.safetensors", "text_encoders"),
        ("umt5_xxl_bf16.safetensors", "text_encoders"),
        ("wan_2.1_vae_fp8.safetensors", "vae"),
        ("juggernautXL_ragnarokBy_fp16.safetensors", "checkpoints"),
        ("realisticVisionV60B1_v51VAE-inpainting.safetensors", "checkpoints"),
        ("sd3.5_large_controlnet_lineart.safetensors", "controlnet"),
        ("qwen_image_edit_Q5_K_M.gguf", "diffusion_models"),
        ("ltx-video-2b-v0.9.1.safetensors", "checkpoints"),
        ("hunyuan_video_t2v_720p_fp16.safetensors", "diffusion_models"),
        ("more_details_v2.safetensors", "loras"),
        ("Wan2_1_VAE_fp16.safetensors", "vae"),
        ("control_v11p_sd15_canny_fp16.safetensors", "controlnet"),
        ("model.safetensors", "text_encoders"),
        ("diffusion_pytorch_model.safetensors", "vae"),
    ]
    for fname, folder in absent:
        cat.probes.append(Probe(fname, folder, None, "absent"))
    # guessed references (an unknown node's widget): right file or not, never automatic
    for fname, folder in (("clip_vision_h.safetensors", "clip_vision"), ("wan_2.1_vae.safetensors", "unknown"),
                          ("more_details.safetensors", "loras"), ("t5xxl_fp16.safetensors", "unknown")):
        truth = cat.official.get(f"{folder}/{fname}") or next(
            (v for k, v in cat.official.items() if k.endswith("/" + fname)), None) or civitai_truth.get(fname)
        cat.probes.append(Probe(fname, folder, sha(truth) if truth else None, "guessed", source="fallback",
                                confidence=0.3))
    return cat


def served_sha256(hub: FakeHub, candidate) -> str:
    """sha256 of the file a SearchResult points at: its own, else the hub's file at its place
    (a gated file's hash is not given to anonymous clients, but it is still the right or a
    wrong file)."""
    if candidate.hash_sha256:
        return candidate.hash_sha256.lower()
    meta = candidate.metadata
    repo = hub.hf_repos.get(str(meta.get("repo_id") or ""))
    if repo is not None and meta.get("path") in repo.files:
        return repo.files[meta["path"]].sha256
    if meta.get("file_id"):
        try:
            return hub.civitai_file(int(meta["file_id"])).sha256
        except (KeyError, ValueError):
            pass
    return ""
