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

#: Hugging Face owners whose repos are the usual source of ComfyUI files (``ranking`` weighs
#: them more; ``hf_search_terms`` strips them from the front of a file name)
KNOWN_PUBLISHERS = frozenset(s.lower() for s in (
    "Comfy-Org", "comfyanonymous", "black-forest-labs", "stabilityai", "city96", "Kijai", "lllyasviel",
    "h94", "runwayml", "stable-diffusion-v1-5", "madebyollin", "XLabs-AI", "InstantX", "Lightricks",
    "Wan-AI", "tencent", "guoyww", "TencentARC", "xinsir", "openai", "laion", "google", "ByteDance",
    "Shakker-Labs", "jasperai", "Kwai-Kolors", "Qwen", "lodestones", "ostris", "SG161222",
))
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


def hf_search_terms(name: str, limit: int = 3) -> List[str]:
    """Queries for the Hugging Face repo search (a substring match on ``owner/name``).

    From most to least specific: the core stem with separators as written, then with fewer
    trailing words, then the alphabetic head (``flux1-dev-fp8`` -> ``flux1-dev``, ``flux1``,
    ``flux``).  Repo ids rarely contain precision or version suffixes, so those go first.
    A publisher prefix (``Comfy-Org_sd3_medium_incl_clips``) is the repo's owner, not part
    of its name: it is stripped first.
    """
    stem = split_ext(name)[0]
    # a publisher followed by a too-short name ("TencentARC_x") keeps its prefix: some query
    # is better than none
    return _terms_of(strip_publisher(stem), limit) or _terms_of(stem, limit)


def _terms_of(stem: str, limit: int) -> List[str]:
    stem = _PRECISION_RE.sub("", stem)
    # dots stay inside words: "wan_2.1_vae" -> "wan_2.1" (repo ids keep "2.1")
    words = [w for w in re.split(r"[-_ ]+", stem) if w.strip(".") and w.lower() not in VARIANT_TOKENS]
    terms: List[str] = []

    def add(term: str) -> None:
        term = term.strip("-_. ").lower()
        if len(term) >= 3 and term not in terms:
            terms.append(term)

    seps = re.findall(r"[-_ ]", stem)
    sep = seps[0] if seps else "-"
    for n in range(len(words), 0, -1):
        add(sep.join(words[:n]))
    terms = terms[: max(1, limit - 1)]
    # the alphabetic head always gets a turn: "flux1-dev" is no substring of "FLUX.1-dev"
    head = re.match(r"[A-Za-z]+", words[0]) if words else None
    if head:
        add(head.group(0))
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
