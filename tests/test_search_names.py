"""File-name normalisation, similarity and the confidence scale."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from comfyfixersmart.datamodel import AUTO_CHOICE_FLOOR, SearchResult
from comfyfixersmart.search import names, ranking


@pytest.mark.parametrize("name, stem, ext", [
    ("flux1-dev-fp8.safetensors", "flux1-dev-fp8", ".safetensors"),
    ("sd15/v1-5-pruned-emaonly.CKPT", "v1-5-pruned-emaonly", ".ckpt"),
    ("_style__\\fashionGirl_v47.safetensors", "fashionGirl_v47", ".safetensors"),
    ("wan_2.1_vae.safetensors", "wan_2.1_vae", ".safetensors"),
    ("model.pt2", "model", ".pt2"),
    ("EasyNegative", "EasyNegative", ""),
])
def test_split_ext(name, stem, ext):
    assert names.split_ext(name) == (stem, ext)


@pytest.mark.parametrize("name, tag", [
    ("flux1-dev-fp8.safetensors", "fp8"),
    ("t5xxl_fp8_e4m3fn_scaled.safetensors", "fp8_e4m3fn_scaled"),
    ("hunyuan_video_vae_bf16.safetensors", "bf16"),
    ("flux1-dev-Q4_K_M.gguf", "q4_k_m"),
    ("clip_l.safetensors", None),
    ("sdxl_vae.safetensors", None),
])
def test_precision(name, tag):
    assert names.precision(name) == tag


def test_core_forms_ignore_precision_case_and_separators():
    assert names.core_normalized("flux1-dev-fp8.safetensors") == names.core_normalized("FLUX1_dev.safetensors")
    assert names.core_stem("v1-5-pruned-emaonly.ckpt") == "v1-5"
    assert names.tokens("realisticVisionV51_v51VAE.safetensors") == ["realistic", "vision", "v51", "v51vae"]


def test_similarity_orders_candidates_sensibly():
    wanted = "realisticVisionV51_v51VAE.safetensors"
    assert names.similarity(wanted, wanted) == 1.0
    close = names.similarity(wanted, "realisticVisionV60B1_v51VAE.safetensors")
    far = names.similarity(wanted, "dreamshaper_8.safetensors")
    assert 0.6 < close < 1.0
    assert far < 0.5


def test_difference_names_precision_and_format():
    assert "precision differs: fp16 vs fp8" in names.difference("m-fp8.safetensors", "m-fp16.safetensors")
    assert "format differs: .ckpt vs .safetensors" in names.difference("m.safetensors", "m.ckpt")


def test_search_terms_go_from_specific_to_general():
    assert names.hf_search_terms("flux1-dev-fp8.safetensors") == ["flux1-dev", "flux1", "flux1_dev", "flux"]
    assert names.hf_search_terms("wan_2.1_vae.safetensors") == ["wan_2.1_vae", "wan-2.1-vae", "wan_2.1", "wan"]
    assert names.civitai_queries("realisticVisionV51_v51VAE.safetensors")[0] == "realistic vision"
    assert names.civitai_queries("majicmixRealistic_v7.safetensors")[0] == "majicmix realistic"


@pytest.mark.parametrize("name, expected", [
    # separators normalised and short words joined: the repo is stabilityai/sdxl-turbo; the
    # trailing version "1.0" and the precision are dropped
    ("sd_xl_turbo_1.0_fp16.safetensors", ["sd_xl_turbo", "sd-xl-turbo", "sdxl-turbo", "sdxl_turbo"]),
    # precision, quantisation and "scaled" dropped; "_" names also tried with "-" (repo ids' habit)
    ("umt5_xxl_fp8_e4m3fn_scaled.safetensors", ["umt5_xxl", "umt5-xxl", "umt5", "umt"]),
    ("qwen-image-Q4_K_M.gguf", ["qwen-image", "qwen_image", "qwen"]),
    # a trailing version word dropped after the literal form
    ("ltx-video-2b-v0.9.5.safetensors", ["ltx-video-2b-v0.9.5", "ltx-video", "ltx_video", "ltx"]),
    # camelCase: the stem as written first (repo ids keep it), the split form among the variants
    ("realisticVision_v51VAE.safetensors", ["realisticvision_v51vae", "realisticvision-v51vae",
                                            "realistic_vision_v51vae", "realisticvision"]),
    # a publisher prefix is the owner, not part of the repo name
    ("Kijai-wan2.1_vae_bf16.safetensors", ["wan2.1_vae", "wan2.1-vae", "wan2.1", "wan"]),
    # only version-like words: they are the name
    ("v1-5-pruned-emaonly.safetensors", ["v1-5"]),
])
def test_search_terms_the_way_people_name_files(name, expected):
    assert names.hf_search_terms(name) == expected


@pytest.mark.parametrize("name", ["ae.safetensors", "vae.safetensors", "clip_l.safetensors", "model.safetensors",
                                  "diffusion_pytorch_model.safetensors", "clip_g.safetensors",
                                  "diffusion_pytorch_model.fp16.safetensors", "x.pt"])
def test_generic_names_are_never_searched_alone(name):
    assert names.is_generic(name) and names.hf_search_terms(name) == []


def test_pickle_formats():
    assert names.is_pickle("a.ckpt") and names.is_pickle("b.pth") and names.is_pickle("c.bin")
    assert not names.is_pickle("d.safetensors") and not names.is_pickle("e.gguf")


_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\- ]{0,30}\.(safetensors|ckpt|pt|gguf)", fullmatch=True)


@example("102.safetensors", "212.safetensors")  # SequenceMatcher alone scored these 0.47 vs 0.23
@settings(max_examples=200, deadline=None)
@given(_name, _name)
def test_similarity_is_bounded_and_symmetric(a, b):
    s1, s2 = names.similarity(a, b), names.similarity(b, a)
    assert 0.0 <= s1 <= 1.0
    assert s1 == s2
    assert names.similarity(a, a) in (0.0, 1.0)  # 0.0 only when nothing comparable is left


@settings(max_examples=200, deadline=None)
@given(_name, _name)
def test_fuzzy_matches_never_reach_the_automatic_floor(a, b):
    match = ranking.name_match(a, b, folder_fits=True, known_publisher=True)
    if match is not None and names.basename(a).lower() != names.basename(b).lower() \
            and names.normalize(a) != names.normalize(b):
        assert match[0] < AUTO_CHOICE_FLOOR


def test_calibration_table():
    exact = ranking.exact_name_confidence
    assert exact(folder_fits=True) >= 0.9
    assert exact(folder_fits=None, known_publisher=True, path_hint=True) >= 0.95
    assert exact(folder_fits=None) < 0.9  # an unknown repo saying nothing about the folder
    assert exact(folder_fits=False) < AUTO_CHOICE_FLOOR
    assert ranking.fuzzy_confidence(1.0) < AUTO_CHOICE_FLOOR


def _result(url, conf, filename, pickle=False):
    return SearchResult("x", "1", "n", filename, "checkpoint", url, confidence=conf,
                        metadata={"reason": "r", "pickle": pickle})


def test_rank_dedupes_and_prefers_safetensors_alternative():
    ranked = ranking.rank([
        _result("u1", 0.9, "m.ckpt", pickle=True),
        _result("u2", 0.9, "m.safetensors"),
        _result("u2", 0.5, "m.safetensors"),
    ])
    assert [r.download_url for r in ranked] == ["u2", "u1"]
    assert ranked[0].confidence == 0.9
    assert ranked[1].confidence < 0.9 and "safetensors alternative" in ranked[1].reason


def test_known_hash_raises_or_caps():
    good = ranking.apply_known_hash(_result("u", 0.7, "m.safetensors"), None)
    assert good.confidence == 0.7
    r = _result("u", 0.7, "m.safetensors")
    r.hash_sha256 = "ab" * 32
    assert ranking.apply_known_hash(r, "AB" * 32).confidence == 1.0
    r2 = _result("u", 0.9, "m.safetensors")
    r2.hash_sha256 = "cd" * 32
    assert ranking.apply_known_hash(r2, "ab" * 32).confidence <= 0.55
    assert "differs" in r2.reason


def test_bare_embedding_name_matches_its_file_exactly():
    # prompts say embedding:negativeXL_D; the file on the hub is negativeXL_D.safetensors
    conf, words = ranking.name_match("negativeXL_D", "negativeXL_D.safetensors", folder_fits=True)
    assert conf >= 0.9 and "exact name" in words
    # a different stem is still only fuzzy
    match = ranking.name_match("negativeXL_D", "negativeXL_E.safetensors", folder_fits=True)
    assert match is None or match[0] < AUTO_CHOICE_FLOOR
