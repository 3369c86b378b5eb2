"""Ranking and confidence that never lie: mirrors, decoys, corroboration, precision/format
mismatches, guessed references, and plain-words reasons; then the calibration guard over the
labelled fake-hub catalogue, through the real clients on 127.0.0.1."""

from __future__ import annotations

import hashlib
import re

import pytest

from comfyfixersmart.datamodel import AUTO_CHOICE_FLOOR, ModelReference, SearchResult
from comfyfixersmart.folders import type_for
from comfyfixersmart.search import ModelSearch, names, ranking
from fakehub import FakeHub, blob
from fakehub.catalogue import build_catalogue, served_sha256
from fakehub.fixtures import config_for_hub, fake_hub, hub_config  # noqa: F401


def ref(filename, folder, **kw):
    return ModelReference(filename=filename, node_type="Loader", expected_type=type_for(folder) or "unknown",
                          expected_directory=folder, **kw)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: search alone: these names are in the known-model index, which would answer first
SEARCH = ["workflow", "civitai", "huggingface"]


def resolve(config, *refs, backends=SEARCH):
    with ModelSearch(config, backends=backends) as s:
        return s.resolve_many(list(refs))


@pytest.mark.parametrize("name, backends, words", [
    # not in the known-model index: a known publisher keeping it in the loras folder decides
    ("mochi_style_distill_lora.safetensors", SEARCH, "confirmed by a known publisher (Comfy-Org) keeps it in its "
                                                     "loras folder"),
    # an official template file: the index answers first (checked on the hub), and says so
    ("chronoedit_distill_lora.safetensors", None, "official templates (comfyui-workflow-templates-json"),
])
def test_same_name_other_bytes_only_the_corroborated_one_is_sure(fake_hub, hub_config, name, backends, words):
    official = blob(64, "official")
    stem = name.rsplit(".", 1)[0]
    fake_hub.add_hf_repo("Comfy-Org/Wan_2.2_ComfyUI_Repackaged", {f"split_files/loras/{name}": official})
    # a repo whose id contains the name, more downloads, other bytes, a folder-named path
    fake_hub.add_hf_repo(f"lorafan/{stem}", {f"loras/{name}": blob(64, "retrained")}, downloads=10**7)
    fake_hub.add_civitai_model(stem.replace("_", " "), {name: blob(64, "civ")}, type="LORA", downloads=10**6)
    (res,) = resolve(hub_config, ref(name, "loras"), backends=backends)
    best = res.choose()
    assert best is not None and best.hash_sha256 == sha(official)
    assert words in best.reason
    assert all(c.confidence < AUTO_CHOICE_FLOOR for c in res.candidates if c.hash_sha256 != sha(official))


def test_same_name_other_bytes_without_corroboration_is_never_automatic(fake_hub, hub_config):
    fake_hub.add_hf_repo("alice/coolStyle-lora", {"loras/coolStyle_v2.safetensors": blob(64, "a")}, downloads=900)
    fake_hub.add_hf_repo("bob/coolstyle-mirror", {"split_files/loras/coolStyle_v2.safetensors": blob(64, "b")})
    (res,) = resolve(hub_config.replace(min_confidence=0.8), ref("coolStyle_v2.safetensors", "loras"))
    assert len(res.candidates) == 2 and res.choose(0.8) is None
    for c in res.candidates:
        assert c.confidence < AUTO_CHOICE_FLOOR
        assert "1 other file with this name but different bytes" in c.reason and c.metadata["competitors"] == 1


def test_identical_bytes_in_mirrors_are_one_answer(fake_hub, hub_config):
    data = blob(64, "vae")
    fake_hub.add_hf_repo("Comfy-Org/Wan_2.1_ComfyUI_repackaged", {"split_files/vae/wan_2.1_vae.safetensors": data})
    fake_hub.add_hf_repo("Comfy-Org/JoyAI-Image-Edit", {"vae/wan_2.1_vae.safetensors": data})
    (res,) = resolve(hub_config, ref("wan_2.1_vae.safetensors", "vae"))
    (best,) = res.candidates  # one answer...
    assert best.model_id == "Comfy-Org/Wan_2.1_ComfyUI_repackaged" and best.confidence >= 0.95  # ...the best copy
    assert [m["where"] for m in best.metadata["mirrors"]] == ["Comfy-Org/JoyAI-Image-Edit"]
    assert "the same file also in 1 other place" in best.reason and "other file" not in best.reason


def test_mirrors_across_backends_count_once_and_do_not_contest(fake_hub, hub_config):
    data = blob(64, "style")
    fake_hub.add_hf_repo("painter/inkStyle-lora", {"inkStyle_v3.safetensors": data}, downloads=100)
    fake_hub.add_hf_repo("backup/inkstyle-copy", {"loras/inkStyle_v3.safetensors": data}, downloads=10**6)
    fake_hub.add_civitai_model("Ink Style", {"inkStyle_v3.safetensors": data}, type="LORA", downloads=5000)
    (res,) = resolve(hub_config, ref("inkStyle_v3.safetensors", "loras"))
    same = [c for c in res.candidates if c.hash_sha256 == sha(data)]
    assert len(same) == 1 and len(same[0].metadata["mirrors"]) == 2
    assert {m["backend"] for m in same[0].metadata["mirrors"]} | {same[0].backend} == {"civitai", "huggingface"}
    # three copies of the same bytes are no competition: the type-fitting answer stays sure
    assert same[0].confidence >= 0.9 and "competitors" not in same[0].metadata


@pytest.mark.parametrize("downloads, chosen", [((900_000, 3_000), True), ((50_000, 10_000), False),
                                               ((9_000, 10), False)])
def test_a_clear_download_lead_on_civitai_corroborates(fake_hub, hub_config, downloads, chosen):
    real = blob(64, "rv")
    fake_hub.add_civitai_model("Realistic Vision V6.0 B1", {"realisticVisionV60B1_v51VAE.safetensors": real},
                               downloads=downloads[0])
    fake_hub.add_civitai_model("Realistic Vision V6.0 B1 merge", {"realisticVisionV60B1_v51VAE.safetensors":
                                                             blob(64, "merge")}, downloads=downloads[1])
    (res,) = resolve(hub_config, ref("realisticVisionV60B1_v51VAE.safetensors", "checkpoints"))
    assert len(res.candidates) == 2
    if chosen:
        best = res.choose()
        assert best is not None and best.hash_sha256 == sha(real)
        assert "a clear download lead on Civitai (900,000 downloads, the next 3,000)" in best.reason
        assert res.candidates[1].confidence < AUTO_CHOICE_FLOOR
    else:
        assert all(c.confidence < AUTO_CHOICE_FLOOR for c in res.candidates)


def test_no_download_lead_across_hubs(fake_hub, hub_config):
    fake_hub.add_civitai_model("Ink Style", {"inkStyle_v3.safetensors": blob(64, "civ")}, type="LORA",
                               downloads=10**7)
    fake_hub.add_hf_repo("painter/inkstyle-lora", {"loras/inkStyle_v3.safetensors": blob(64, "hf")})
    (res,) = resolve(hub_config, ref("inkStyle_v3.safetensors", "loras"))
    assert len(res.candidates) == 2 and all(c.confidence < AUTO_CHOICE_FLOOR for c in res.candidates)


@pytest.mark.parametrize("wanted, present", [
    ("qwen_image_edit_fp8_e4m3fn.safetensors", "qwen_image_edit_fp16.safetensors"),  # fp8 vs fp16
    ("flux1-dev-Q4_K_S.gguf", "flux1-dev-Q3_K_S.gguf"),  # another quantisation
    ("flux1-dev.safetensors", "flux1-dev-Q8_0.gguf"),  # GGUF vs safetensors
    ("v1-5-pruned.safetensors", "v1-5-full.safetensors"),  # pruned vs full
    ("juggernautXL_v9.safetensors", "juggernautXL_v9.ckpt"),  # another format
])
def test_precision_or_format_mismatch_is_never_automatic(fake_hub, hub_config, wanted, present):
    # a known publisher, the folder in the path, a repo id the search finds: only the name differs
    terms = names.hf_search_terms(wanted)
    repo = "Comfy-Org/" + (terms[0] if terms else names.core_stem(wanted)) + "-repackaged"
    fake_hub.add_hf_repo(repo, {f"split_files/diffusion_models/{present}": blob(64, present)})
    (res,) = resolve(hub_config, ref(wanted, "diffusion_models"))
    assert res.candidates and all(c.confidence < ranking.MISMATCH_CAP + 1e-9 for c in res.candidates)
    assert ranking.mismatch(wanted, present)


def test_workflow_url_to_another_precision_is_not_automatic(fake_hub, hub_config):
    fake_hub.add_hf_repo("Comfy-Org/x", {"model_fp8_e4m3fn.safetensors": blob(64)})
    url = "https://huggingface.co/Comfy-Org/x/resolve/main/model_fp8_e4m3fn.safetensors"
    (res,) = resolve(hub_config, ref("model_fp16.safetensors", "diffusion_models", url=url))
    assert res.best.backend == "workflow" and res.best.confidence < 0.8
    assert "precision differs (fp8 here, fp16 wanted)" in res.best.reason


def test_the_references_own_confidence_caps_its_candidates(fake_hub, hub_config):
    data = blob(64, "lora")
    fake_hub.add_hf_repo("Comfy-Org/loras", {"split_files/loras/detail_slider.safetensors": data})
    fake_hub.add_hf_repo("Comfy-Org/vaes", {"split_files/vae/sdxl_vae.safetensors": blob(64, "vae")})
    guessed = ref("detail_slider.safetensors", "loras", source="fallback", confidence=0.3)
    unknown_folder = ref("sdxl_vae.safetensors", "unknown")
    lora_tag = ref("detail_slider.safetensors", "loras", source="lora_tag", confidence=0.8)
    with ModelSearch(hub_config, backends=SEARCH) as s:
        (g,), (u,), (t,) = (s.resolve_many([r]) for r in (guessed, unknown_folder, lora_tag))
    assert g.best.hash_sha256 == sha(data) and g.best.confidence < AUTO_CHOICE_FLOOR
    assert "the workflow reference itself is a guess" in g.best.reason
    assert u.best is not None and u.best.confidence < AUTO_CHOICE_FLOOR
    assert t.best.confidence == 0.8 and "only 80% certain" in t.best.reason and t.choose() is None


def test_reasons_are_plain_words():
    conf, words = ranking.name_match("flux1-dev-fp8.safetensors", "flux1-dev-fp16.safetensors", folder_fits=True)
    assert not re.search(r"\(\d\.\d+\)", words)  # no "(0.60)" jargon
    assert words.startswith("a similar name, not the same file name") and "precision differs" in words


def _result(url, conf, filename, sha256=None, **meta):
    return SearchResult("huggingface", meta.get("repo_id", "x/y"), "n", filename, "vae", url, confidence=conf,
                        hash_sha256=sha256, metadata={"reason": "exact file name", **meta})


def test_two_known_publishers_disagreeing_leave_nothing_sure():
    r = ref("clip_l.safetensors", "text_encoders")
    a = _result("u1", 0.97, "clip_l.safetensors", "a" * 64, repo_id="Comfy-Org/HunyuanVideo_repackaged",
                known_publisher=True, path="split_files/text_encoders/clip_l.safetensors")
    b = _result("u2", 0.97, "clip_l.safetensors", "b" * 64, repo_id="stabilityai/sd3.5",
                known_publisher=True, path="text_encoders/clip_l.safetensors")
    out = ranking.settle([a, b], r, "text_encoders")
    assert all(c.confidence < AUTO_CHOICE_FLOOR for c in out)
    # the index (or the workflow's own URL/hash) settles it
    a, b = (_result(x.download_url, 0.97, x.filename, x.hash_sha256, **{k: v for k, v in x.metadata.items()
                                                                         if k in ("repo_id", "known_publisher",
                                                                                  "path")}) for x in (a, b))
    c = _result("u3", 0.9, "clip_l.safetensors", "a" * 64, repo_id="index")
    c.backend = "index"
    out = ranking.settle([a, b, c], r, "text_encoders")
    assert out[0].hash_sha256 == "a" * 64 and out[0].confidence >= 0.9
    assert "the known-model index" in out[0].reason and out[1].confidence < AUTO_CHOICE_FLOOR


# -- the calibration guard (bench/bench_calibration.py measures the whole probe set) -----------

@pytest.fixture(scope="module")
def catalogue_hub():
    with FakeHub() as hub:
        yield hub, build_catalogue(hub)


@pytest.mark.parametrize("backends", [None, SEARCH], ids=["with-index", "search-alone"])
def test_calibration_subset_has_no_confident_wrong_answer(catalogue_hub, tmp_path, backends):
    hub, cat = catalogue_hub
    tuning = [p for p in cat.probes if not p.held_out]
    # every decoy-heavy, absent and guessed probe, and a fixed sample of the others
    hard = {"t5xxl_fp16.safetensors", "clip_l.safetensors", "ae.safetensors", "sd_xl_turbo_1.0_fp16.safetensors",
            "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "chronoedit_distill_lora.safetensors",
            "qwen_image_edit_fp8_e4m3fn.safetensors", "wan_2.1_vae.safetensors", "qwen_3_06b_base.safetensors",
            "sd3.5_large_fp8_scaled.safetensors", "flux1-dev-fp8.safetensors", "realisticVisionV60B1_v51VAE.safetensors",
            "add-detail-xl.safetensors", "ltx-video-2b-v0.9.5.safetensors", "z_image_turbo_bf16.safetensors"}
    # tuning probes only: the held-out ones are for the bench's untouched figure
    subset = [p for p in tuning if p.name in hard or p.kind in ("absent", "guessed")]
    subset += [p for p in tuning if p not in subset][::10]
    assert len(subset) >= 40
    config = config_for_hub(hub, tmp_path)
    wrong, right = [], 0
    with ModelSearch(config, backends=backends) as s:
        for kind in sorted({p.kind for p in subset}):
            group = [p for p in subset if p.kind == kind]
            refs = [ref(p.name, p.directory, source=p.source, confidence=p.confidence) for p in group]
            for p, res in zip(group, s.resolve_many(refs)):
                for c in res.candidates:
                    if c.confidence >= 0.9 and served_sha256(hub, c) != p.truth:
                        wrong.append((p.key, c.model_id, c.confidence, c.reason))
                best = res.best
                if p.truth is None:
                    right += best is None or best.confidence < AUTO_CHOICE_FLOOR
                else:
                    right += best is not None and served_sha256(hub, best) == p.truth
    assert wrong == []
    assert right / len(subset) >= 0.9, (right, len(subset))


def test_a_file_the_hub_does_not_have_neither_backs_nor_competes():
    r = ref("clip_l.safetensors", "text_encoders")
    live = _result("u1", 0.97, "clip_l.safetensors", "a" * 64, repo_id="Comfy-Org/HunyuanVideo_repackaged",
                   known_publisher=True, path="split_files/text_encoders/clip_l.safetensors")
    gone = _result("u2", 0.3, "clip_l.safetensors", None, repo_id="Comfy-Org/moved", known_publisher=True,
                   path="split_files/text_encoders/clip_l.safetensors", index_checked="not-found")
    gone.backend = "index"
    best, other = ranking.settle([live, gone], r, "text_encoders")
    assert best is live and best.confidence == 0.97 and "competitors" not in best.metadata
    assert other.confidence == 0.3 and "confirmed by" not in other.reason
