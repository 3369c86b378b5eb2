"""Model file names: normalisation, tokens, precision tags, search terms and similarity.

Model files are named by habit rather than by rule (``flux1-dev-fp8.safetensors``,
``realisticVisionV51_v51VAE.safetensors``, ``t5xxl_fp8_e4m3fn_scaled.safetensors``), so
every comparison goes through the same few functions here.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import List, Optional, Tuple

#: extensions of model weight files, longest first so ``.pt2`` wins over ``.pt``
MODEL_EXTENSIONS = (
    ".safetensors", ".sft", ".ckpt", ".pt2", ".pth", ".pt", ".bin", ".gguf", ".onnx", ".pkl",
    ".engine", ".model",
)
#: formats that can run code when loaded (pickle); a safetensors alternative is preferred
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pt2")

# Precision / quantisation tags.  Order matters: the longer fp8 spellings first.
_PRECISION_RE = re.compile(
    r"(?<![a-z0-9])("
    r"fp8(?:[_-]?e4m3fn|[_-]?e5m2)?(?:[_-]?(?:scaled|fast))?|fp16|fp32|bf16|f16|f32|int8|int4|nf4|"
    r"q[2-8](?:_k)?(?:_[msl01])?"
    r")(?![a-z0-9])",
    re.IGNORECASE,
)
#: tokens that describe a variant of the same weights rather than different weights
VARIANT_TOKENS = frozenset({
    "pruned", "emaonly", "ema", "noema", "nonema", "full", "scaled", "fp16", "fp32", "bf16",
    "fp8", "e4m3fn", "e5m2", "int8", "int4", "nf4", "f16", "f32", "fast", "only",
})
_VERSION_RE = re.compile(r"^v?\d+(?:[._]\d+)*[a-z]?$")
_CAMEL_RE = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SPLIT_RE = re.compile(r"[^A-Za-z0-9]+")

#: Hugging Face owners whose repos are listed once (``GET /api/models?author=``, cached 24 h) so a
#: file name is found anywhere in their trees, subfolders included: the repo-id search cannot
#: find ``clip_l.safetensors`` in ``comfyanonymous/flux_text_encoders``.  Most useful first
#: (a lookup stops at a sure hit): the big ComfyUI repackagers, then the owners the official
#: workflow templates and the known-model index download from most (a test keeps every owner
#: with 15+ entries in the bundled index here).
PUBLISHER_TREES = (
    "Comfy-Org", "comfyanonymous", "Kijai", "black-forest-labs", "stabilityai", "Lightricks", "city96",
    "lllyasviel", "lightx2v", "circlestone-labs", "kandinskylab", "XLabs-AI", "h94", "TencentARC", "ByteDance",
    "guoyww",
)
#: Hugging Face owners whose repos are the usual source of ComfyUI files (``ranking`` weighs
#: them more; ``hf_search_terms`` strips them from the front of a file name)
KNOWN_PUBLISHERS = frozenset(s.lower() for s in (
    "Comfy-Org", "comfyanonymous", "black-forest-labs", "stabilityai", "city96", "Kijai", "lllyasviel",
    "h94", "runwayml", "stable-diffusion-v1-5", "madebyollin", "XLabs-AI", "InstantX", "Lightricks",
    "Wan-AI", "tencent", "guoyww", "TencentARC", "xinsir", "openai", "laion", "google", "ByteDance",
    "Shakker-Labs", "jasperai", "Kwai-Kolors", "Qwen", "lodestones", "ostris", "SG161222",
) + PUBLISHER_TREES)
#: stems too generic to search alone (``ae``, ``model``): only a publisher tree with the folder
#: in the path, the known-model index or the workflow's own URL can place them
GENERIC_STEMS = frozenset({
    "ae", "vae", "clip", "clipl", "clipg", "model", "models", "diffusionpytorchmodel", "pytorchmodel",
    "unet", "textencoder", "textencoder2", "lora", "pytorchloraweights", "adaptermodel", "imageencoder",
    "controlnet", "ema", "weights", "checkpoint", "transformer", "encoder", "decoder", "t5", "umt5",
})
#: publishers that also name their model family ("qwen_image_vae"): never stripped
_FAMILY_PUBLISHERS = frozenset({"qwen"})
# "Comfy-Org_", "comfy_org-", "ComfyOrg.", "black.forest.labs_": a publisher's words joined by
# any separator (or none), then at least one separator; longest first so "tencentarc" wins
_PUBLISHER_PREFIX_RE = re.compile(
    r"^(?:" + "|".join(
        r"[-_. ]?".join(re.escape(w) for w in re.split(r"[-_.]", p))
        for p in sorted(KNOWN_PUBLISHERS - _FAMILY_PUBLISHERS, key=len, reverse=True)
    ) + r")[-_. ]+",
    re.IGNORECASE,
)


def basename(name: str) -> str:
    """Last path component, with ``\\`` or ``/`` separators."""
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def split_ext(name: str) -> Tuple[str, str]:
    """``("flux1-dev", ".safetensors")`` for ``flux1-dev.safetensors``; ext lower-case, or ''."""
    base = basename(name)
    low = base.lower()
    for ext in MODEL_EXTENSIONS:
        if low.endswith(ext) and len(base) > len(ext):
            return base[: -len(ext)], ext
    if "." in base[1:]:
        stem, ext = base.rsplit(".", 1)
        if 1 <= len(ext) <= 12 and ext.isalnum() and not ext.isdigit():
            return stem, "." + ext.lower()
    return base, ""


def has_model_extension(name: str) -> bool:
    return split_ext(name)[1] in MODEL_EXTENSIONS


def is_pickle(name: str) -> bool:
    """True for formats that unpickle on load (.ckpt/.pt/.pth/.bin/.pkl)."""
    return split_ext(name)[1] in PICKLE_EXTENSIONS


def precision(name: str) -> Optional[str]:
    """The precision tag of a file name (``fp8_e4m3fn``, ``fp16``, ``q4_k_m``...) or None."""
    stem = split_ext(name)[0].lower()
    found = _PRECISION_RE.findall(stem)
    if not found:
        return None
    return found[-1].replace("-", "_")


def without_precision(text: str) -> str:
    """``text`` with its precision tags removed and spaces collapsed (``flux dev fp8`` -> ``flux dev``)."""
    return " ".join(_PRECISION_RE.sub(" ", text).split())


def precision_family(tag: Optional[str]) -> Optional[str]:
    """``fp8_e4m3fn_scaled`` -> ``fp8``; ``f16`` -> ``fp16``; GGUF tags kept."""
    if not tag:
        return None
    tag = tag.lower()
    if tag.startswith("fp8"):
        return "fp8"
    return {"f16": "fp16", "f32": "fp32"}.get(tag, tag)


def tokens(name: str) -> List[str]:
    """Lower-case word tokens of a file name's stem (camelCase and separators split)."""
    stem = split_ext(name)[0]
    out: List[str] = []
    for part in _SPLIT_RE.split(stem):
        if not part:
            continue
        out.extend(p.lower() for p in _CAMEL_RE.split(part) if p)
    return out


def normalize(name: str) -> str:
    """Compact comparable form: lower-case alphanumerics of the stem only."""
    return re.sub(r"[^a-z0-9]", "", split_ext(name)[0].lower())


def core_stem(name: str) -> str:
    """Stem with precision and variant tags removed, separators kept (``flux1-dev``)."""
    stem = split_ext(name)[0]
    stem = _PRECISION_RE.sub(" ", stem.lower())
    parts = [p for p in _SPLIT_RE.split(stem) if p and p not in VARIANT_TOKENS]
    return "-".join(parts)


def core_normalized(name: str) -> str:
    """``normalize`` without precision/variant tags: ``flux1-dev-fp8`` and ``flux1_dev`` agree."""
    return core_stem(name).replace("-", "")


def core_tokens(name: str) -> List[str]:
    """``tokens`` without precision/variant tags."""
    stem = _PRECISION_RE.sub(" ", split_ext(name)[0])
    out: List[str] = []
    for part in _SPLIT_RE.split(stem):
        for p in _CAMEL_RE.split(part):
            if p and p.lower() not in VARIANT_TOKENS:
                out.append(p.lower())
    return out


def similarity(a: str, b: str) -> float:
    """Similarity of two file names in 0..1, ignoring case, separators, extension and precision.

    Mixes a character-level ratio of the compact forms (robust to ``v51`` vs ``v5.1``) with
    the overlap of word tokens (robust to re-ordered words).
    """
    ca, cb = core_normalized(a), core_normalized(b)
    if not ca or not cb:
        return 0.0
    if ca == cb:
        return 1.0
    # SequenceMatcher is not symmetric ("102" vs "212"); take both directions so a
    # candidate's score does not depend on which name is the query
    ratio = max(SequenceMatcher(None, ca, cb, autojunk=False).ratio(),
                SequenceMatcher(None, cb, ca, autojunk=False).ratio())
    ta, tb = set(core_tokens(a)), set(core_tokens(b))
    jaccard = len(ta & tb) / len(ta | tb) if ta and tb else 0.0
    return round(0.7 * ratio + 0.3 * jaccard, 4)


def difference(wanted: str, found: str) -> str:
    """Words for how ``found`` differs from ``wanted`` (used in ``reason``)."""
    notes = []
    pw, pf = precision(wanted), precision(found)
    if precision_family(pw) != precision_family(pf) or (pw and pf and pw != pf):
        notes.append(f"precision differs: {pf or 'unspecified'} vs {pw or 'unspecified'}")
    ew, ef = split_ext(wanted)[1], split_ext(found)[1]
    if ew != ef:
        notes.append(f"format differs: {ef or 'none'} vs {ew or 'none'}")
    vw = [t for t in tokens(wanted) if _VERSION_RE.match(t) and any(c.isdigit() for c in t)]
    vf = [t for t in tokens(found) if _VERSION_RE.match(t) and any(c.isdigit() for c in t)]
    if vw != vf:
        notes.append("version differs")
    return ", ".join(notes)


def strip_publisher(stem: str) -> str:
    """``stem`` without a known publisher prefix (``Comfy-Org_sd3_medium`` -> ``sd3_medium``);
    unchanged when nothing would be left or the publisher also names the model."""
    rest = _PUBLISHER_PREFIX_RE.sub("", stem, count=1)
    return rest if re.search(r"[A-Za-z0-9]", rest) else stem


def is_generic(name: str) -> bool:
    """True for file names that say nothing about which model they are (``ae.safetensors``,
    ``diffusion_pytorch_model.safetensors``, ``clip_l.safetensors``)."""
    return core_normalized(name) in GENERIC_STEMS or len(core_normalized(name)) < 3


def _is_version(word: str) -> bool:
    return bool(_VERSION_RE.match(word)) and any(c.isdigit() for c in word)


def _search_words(stem: str, camel: bool = False) -> List[str]:
    """Words of a stem for repo-id search: precision/variant tags dropped, dots kept inside
    words (repo ids keep ``2.1``); ``camel`` also splits camelCase (``realisticVision``)."""
    stem = _PRECISION_RE.sub(" ", stem)
    words: List[str] = []
    for raw in re.split(r"[-_ ]+", stem):
        raw = raw.strip(".")
        if not raw:
            continue
        parts = [p for p in _CAMEL_RE.split(raw) if p] if camel and not raw.isupper() else [raw]
        words.extend(p.lower() for p in parts if p.lower() not in VARIANT_TOKENS)
    return words


def _join_short(words: List[str]) -> List[str]:
    """``sd xl turbo`` -> ``sdxl turbo``: a run of two or more one/two-letter words is one word."""
    out: List[str] = []
    run: List[str] = []
    for w in words + [""]:
        if w and len(w) <= 2 and not _is_version(w):
            run.append(w)
            continue
        if len(run) >= 2:
            out.append("".join(run))
        else:
            out.extend(run)
        run = []
        if w:
            out.append(w)
    return out


def hf_search_terms(name: str, limit: int = 4) -> List[str]:
    """Queries for the Hugging Face repo search (one case-insensitive substring of ``owner/name``).

    Derived the way people name files and repos, most specific first: the core stem as written
    (precision/quantisation tags and a publisher prefix removed), the same without version
    words (``sd_xl_turbo_1.0_fp16`` -> ``sd_xl_turbo``), short words joined (``sdxl-turbo``),
    fewer trailing words, camelCase split, the other separator (``sd-xl-turbo``) and last the
    alphabetic head (``flux1-dev`` -> ``flux1``, ``flux``).  Generic names (``ae``, ``model``,
    ``clip_l``) give no query: alone they would match anything.
    """
    if is_generic(name):
        return []
    stem = split_ext(name)[0]
    return _terms_of(strip_publisher(stem), limit) or _terms_of(stem, limit)


def _terms_of(stem: str, limit: int) -> List[str]:
    words = _search_words(stem)
    if not words:
        return []
    seps = re.findall(r"[-_ ]", _PRECISION_RE.sub("", stem).strip("-_ "))
    sep = seps[0] if seps else "-"
    other = "_" if sep == "-" else "-"

    def core_of(ws: List[str]) -> List[str]:
        # trailing and v-prefixed version words rarely appear in repo ids (sdxl-turbo holds
        # sd_xl_turbo_1.0); inner numbers do (Wan_2.1_ComfyUI_repackaged)
        ws = list(ws)
        while len(ws) > 1 and _is_version(ws[-1]):
            ws.pop()
        return [w for w in ws if not (w.startswith("v") and _is_version(w))] or ws

    core = core_of(words)
    terms: List[str] = []

    def add(term: str) -> None:
        term = term.strip("-_. ").lower()
        if len(term) >= 3 and term not in terms and not term.replace(".", "").isdigit():
            terms.append(term)

    if core == words or len(words) - len(core) > 1:
        add(sep.join(words))  # a trailing version is rarely in the repo id: "sd_xl_turbo_1.0" is skipped
    add(sep.join(core))
    if sep == "_":
        add("-".join(core))  # repo ids mostly use "-": longcat_image_edit -> LongCat-Image-Edit_...
    merged = _join_short(core)
    if merged != core:
        add("-".join(merged))
        add("_".join(merged))
    for n in range(len(core) - 1, 0, -1):
        add(sep.join(core[:n]))
    camel = core_of(_search_words(stem, camel=True))
    if camel != core:
        add("_".join(camel))
    add(other.join(core))
    head_match = re.match(r"[a-z]+", words[0])
    head = head_match.group(0) if head_match and len(head_match.group(0)) >= 3 else None
    if head in terms:
        terms.remove(head)
    terms = terms[: max(1, limit - 1 if head else limit)]
    # the alphabetic head always gets a turn: "flux1-dev" is no substring of "FLUX.1-dev"
    if head:
        add(head)
    if not terms:
        add(sep.join(words))  # only version-like words ("v1-5-pruned"): they are the name
    return terms[:limit]


def civitai_queries(name: str, limit: int = 2) -> List[str]:
    """Queries for Civitai's model-name search, derived from a file name.

    Civitai files are usually named ``<modelNameCamel>_<version>``; the model name search does
    not index file names, so the query is the first segment split into words
    (``realisticVisionV51_v51VAE`` -> ``realistic vision``), then the whole core stem.
    """
    stem = _PRECISION_RE.sub(" ", split_ext(name)[0])
    head = re.split(r"[_.]", stem.strip("_. "), maxsplit=1)[0]
    words = [w.lower() for w in _CAMEL_RE.split(re.sub(r"[^A-Za-z0-9]+", " ", head).strip()) for w in w.split()]
    # drop a trailing version word: "realisticVisionV51" -> "realistic vision"
    while len(words) > 1 and _VERSION_RE.match(words[-1]) and any(c.isdigit() for c in words[-1]):
        words.pop()
    queries: List[str] = []
    for q in (" ".join(words), " ".join(core_tokens(name))):
        q = q.strip()
        if len(q) >= 3 and q not in queries:
            queries.append(q)
    return queries[:limit]
