"""Confidence calibration and ranking of candidates.

One scale for every backend, strongest evidence first:

=============================================  ==========
sha256 of the file matches the known hash       1.00
URL written in the workflow's own metadata      0.95
exact file name, folder type fits, known repo   0.95..0.97
exact file name, folder type fits               0.90..0.93
exact file name, folder type unknown            0.85
exact name but a different sha256 than known    <= 0.55
same name up to case/separators                 0.82..0.85
similar name (fuzzy)                            <= 0.75
=============================================  ==========

``datamodel.AUTO_CHOICE_FLOOR`` (0.8) is the line under which nothing is chosen automatically;
``Config.min_confidence`` (0.9 by default) is the usual one: only exact names in the right
folder (or stronger evidence) pass it.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional

from ..datamodel import SearchResult
from . import names

HASH_MATCH = 1.0
WORKFLOW_URL = 0.95
EXACT_KNOWN_PUBLISHER = 0.95
EXACT_TYPE_FITS = 0.9
EXACT_TYPE_UNKNOWN = 0.85
EXACT_TYPE_MISMATCH = 0.7
HASH_MISMATCH_CAP = 0.55
NORMALIZED_EQUAL = 0.82
FUZZY_MAX = 0.75
#: fuzzy candidates under this similarity are not worth showing
MIN_SIMILARITY = 0.55

#: Hugging Face owners whose repos are the usual source of ComfyUI files (weighed more)
KNOWN_PUBLISHERS = names.KNOWN_PUBLISHERS


def is_known_publisher(repo_id: str) -> bool:
    return repo_id.split("/", 1)[0].lower() in KNOWN_PUBLISHERS


def exact_name_confidence(
    *,
    folder_fits: Optional[bool],
    known_publisher: bool = False,
    path_hint: bool = False,
    case_exact: bool = True,
) -> float:
    """Confidence of a candidate whose file name equals the wanted one.

    ``folder_fits``: the candidate's type maps to the reference's folder (None: unknown,
    e.g. a Hugging Face repo that says nothing).  ``path_hint``: the path inside the repo
    names the folder (``split_files/vae/...``), which says the same as a fitting type.
    """
    if folder_fits is False:
        score = EXACT_TYPE_MISMATCH
    elif folder_fits or path_hint:
        score = EXACT_TYPE_FITS + (0.03 if path_hint and folder_fits is None else 0.0)
        if known_publisher:
            score = max(score, EXACT_KNOWN_PUBLISHER) + (0.02 if path_hint else 0.0)
    else:
        score = EXACT_TYPE_UNKNOWN + (0.05 if known_publisher else 0.0)
    if not case_exact:
        score -= 0.03
    return round(min(score, 0.97), 4)


def fuzzy_confidence(similarity: float, *, precision_differs: bool = False, format_differs: bool = False) -> float:
    """Confidence of a similar (not equal) name: never reaches the automatic-choice floor."""
    score = FUZZY_MAX * max(0.0, min(1.0, similarity))
    if precision_differs:
        score -= 0.05
    if format_differs:
        score -= 0.05
    return round(max(0.0, score), 4)


def name_match(wanted: str, found: str, *, folder_fits: Optional[bool], known_publisher: bool = False,
               path_hint: bool = False) -> Optional[tuple]:
    """``(confidence, reason_words)`` for a candidate file name, or None if not similar enough.

    Compares base names: a reference ``sd15/model.safetensors`` matches ``model.safetensors``.
    """
    w, f = names.basename(wanted), names.basename(found)
    w_stem, w_ext = names.split_ext(w)
    f_stem, f_ext = names.split_ext(f)
    if not w_ext and f_ext in names.MODEL_EXTENSIONS and w_stem.lower() == f_stem.lower():
        # ComfyUI loads embeddings by bare name (it tries .safetensors, .pt, .bin): a
        # workflow that gives no extension names this very file
        conf = exact_name_confidence(folder_fits=folder_fits, known_publisher=known_publisher,
                                     path_hint=path_hint, case_exact=w_stem == f_stem)
        words = "exact name (the workflow gives no extension)"
        if folder_fits is False:
            words += ", but the model type belongs to another folder"
        return conf, words
    if w == f or w.lower() == f.lower():
        conf = exact_name_confidence(folder_fits=folder_fits, known_publisher=known_publisher,
                                     path_hint=path_hint, case_exact=w == f)
        words = "exact file name" if w == f else "file name equal up to case"
        if folder_fits is False:
            words += ", but the model type belongs to another folder"
        return conf, words
    if names.normalize(w) == names.normalize(f) and names.split_ext(w)[1] == names.split_ext(f)[1]:
        conf = NORMALIZED_EQUAL + (0.03 if folder_fits else 0.0) - (0.1 if folder_fits is False else 0.0)
        return round(conf, 4), "same name up to case and separators"
    sim = names.similarity(w, f)
    if sim < MIN_SIMILARITY:
        return None
    diff = names.difference(w, f)
    conf = fuzzy_confidence(sim, precision_differs="precision differs" in diff,
                            format_differs="format differs" in diff)
    if folder_fits is False:
        conf = round(conf * 0.8, 4)
    words = f"similar name ({sim:.2f})" + (f", {diff}" if diff else "")
    return conf, words


def apply_known_hash(result: SearchResult, known_sha256: Optional[str]) -> SearchResult:
    """Raise to 1.0 when the candidate's sha256 equals the known one; cap it when it differs."""
    if not known_sha256 or not result.hash_sha256 or result.metadata.get("hash_from_reference"):
        return result  # a hash copied from the reference proves nothing about the candidate
    if result.hash_sha256.lower() == known_sha256.lower():
        if result.confidence < HASH_MATCH:
            result.confidence = HASH_MATCH
            result.metadata["reason"] = f"sha256 match ({result.reason})" if result.reason else "sha256 match"
    elif result.confidence > HASH_MISMATCH_CAP:
        result.confidence = HASH_MISMATCH_CAP
        result.metadata["reason"] = f"{result.reason}; sha256 differs from the known hash"
    return result


def _dedupe_key(r: SearchResult) -> str:
    return r.download_url


def rank(results: Iterable[SearchResult]) -> List[SearchResult]:
    """Merge duplicates (same download URL: keep the most confident) and sort best first.

    Ties are broken by: safetensors before pickle formats, a known publisher, then the
    backend's own popularity signal (``metadata["downloads"]``).  A pickle candidate loses a
    little confidence when a safetensors candidate of the same core name is present.
    """
    best: Dict[str, SearchResult] = {}
    for r in results:
        key = _dedupe_key(r)
        old = best.get(key)
        if old is None or r.confidence > old.confidence:
            best[key] = r
    out = list(best.values())
    safe_cores = {names.core_normalized(r.filename) for r in out if not r.metadata.get("pickle")}
    for r in out:
        if r.metadata.get("pickle") and names.core_normalized(r.filename) in safe_cores and r.confidence < 1.0:
            r.confidence = round(max(0.0, r.confidence - 0.04), 4)
            if "safetensors alternative" not in r.reason:
                r.metadata["reason"] = f"{r.reason}; a safetensors alternative exists"
    out.sort(key=lambda r: (
        -r.confidence,
        bool(r.metadata.get("pickle")),
        not r.metadata.get("known_publisher", False),
        -(r.metadata.get("downloads") or 0),
        r.backend,
        r.filename,
    ))
    return out
