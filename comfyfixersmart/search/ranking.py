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

``settle`` then applies the rules that look at all candidates of one reference together:

* identical bytes (same sha256) in several places are one answer: the best source is kept and
  the others are listed in ``metadata["mirrors"]``;
* when the name exists with different bytes in several places, only a corroborated candidate
  (the known-model index, the workflow's own URL or hash, a known publisher with the file in a
  fitting place, a clear download lead among Civitai answers) keeps its confidence; the others
  are capped at ``CONTESTED_CAP`` (never automatic).  Two answers with strong corroboration (the index, the workflow, a hash), or two
  known publishers disagreeing with nothing stronger, leave no answer sure;
* a generic name (``ae``, ``model``, ``clip_l``) needs the folder in the repo path or such
  corroboration to pass 0.9;
* a precision or format difference (fp8 vs fp16, .gguf vs .safetensors, pruned vs full) is
  capped at ``MISMATCH_CAP`` (never automatic), whatever the source;
* the reference's own confidence caps its candidates; a guessed reference (unknown node,
  folder unknown) is capped at ``GUESSED_CAP`` (never automatic);
* the reason says what corroborated the choice and what competes with it.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

from ..datamodel import SearchResult
from ..folders import LEGACY_FOLDERS
from ..logs import get_logger
from . import names

log = get_logger(__name__)

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
#: an uncorroborated candidate when the name exists with other bytes elsewhere, or a generic
#: name without its folder: shown, never chosen automatically, whatever ``min_confidence`` says
#: (< ``AUTO_CHOICE_FLOOR``)
CONTESTED_CAP = 0.79
#: a candidate of a guessed reference (unknown node, folder unknown)
GUESSED_CAP = 0.79
#: a precision or format mismatch: below every exact name, never automatic
MISMATCH_CAP = 0.75
#: evidence that stands for itself, beyond a known publisher
STRONG_BACKENDS = frozenset({"workflow", "index"})
#: an index candidate listed for another folder (``index_backend.OTHER_FOLDER``) backs nothing
INDEX_OTHER_FOLDER = 0.7

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
    words = "a similar name, not the same file name" + (f" ({diff})" if diff else "")
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


# -- settling the candidates of one reference ------------------------------------------------

_VARIANT_WORDS = frozenset({"pruned", "full", "emaonly", "ema", "noema", "nonema", "merged", "distilled"})


def mismatch(wanted: str, found: str) -> Optional[str]:
    """Words for a precision or format difference between two file names, or None.

    fp8 vs fp16, a GGUF quantisation vs another (or vs .safetensors), .ckpt vs .safetensors,
    pruned vs full.  An unspecified precision on one side only is not a mismatch (``flux1-dev``
    names the repo's default file)."""
    w, f = names.basename(wanted), names.basename(found)
    pw, pf = names.precision_family(names.precision(w)), names.precision_family(names.precision(f))
    if pw and pf and pw != pf:
        return f"precision differs ({pf} here, {pw} wanted)"
    ew, ef = names.split_ext(w)[1], names.split_ext(f)[1]
    same_kind = {".sft": ".safetensors"}
    if ew and ef and same_kind.get(ew, ew) != same_kind.get(ef, ef):
        return f"format differs ({ef} here, {ew} wanted)"
    if (pw is None) != (pf is None) and ".gguf" in (ew, ef):
        return "a quantised GGUF file, the other is not"
    vw = set(names.tokens(w)) & _VARIANT_WORDS
    vf = set(names.tokens(f)) & _VARIANT_WORDS
    if vw != vf:
        return f"a different variant ({', '.join(sorted(vf ^ vw))})"
    return None


def _same_name(a: str, b: str) -> bool:
    a, b = names.basename(a).lower(), names.basename(b).lower()
    if a == b:
        return True
    # a bare embedding name names the file with any model extension
    return not names.split_ext(a)[1] and names.split_ext(b)[0] == a


def _where(r: SearchResult) -> str:
    return str(r.metadata.get("repo_id") or r.metadata.get("page_url") or r.name or r.backend)


def _index_backs(index: Any, r: SearchResult, wanted: str) -> bool:
    """The known-model index lists ``wanted`` at this candidate's place or with its bytes."""
    if index is None or r.backend == "index":
        return False
    meta = r.metadata
    place = f"{meta['repo_id']}/{meta['path']}" if meta.get("repo_id") and meta.get("path") else None
    sha = (r.hash_sha256 or "").lower()
    try:
        if place and index.corroborates(wanted, place):
            return True
        return bool(sha) and any(m.sha256 == sha for m in index.by_name(wanted))
    except Exception as exc:  # a damaged index must not break ranking
        log.debug("known-model index not usable for corroboration: %s", exc)
        return False


def _gone(r: SearchResult) -> bool:
    """The hub answered "not found" for this candidate's file: it backs nothing, competes with
    nothing."""
    meta = r.metadata
    access = meta.get("access_error")
    return meta.get("index_checked") == "not-found" or (
        isinstance(access, dict) and access.get("status") in (404, 410))


def _corroboration(r: SearchResult, wanted: str, folder: Optional[str], index: Any = None) -> List[str]:
    """What, besides the name, says this candidate is the wanted file."""
    out: List[str] = []
    meta = r.metadata
    if _gone(r):
        return out
    if r.confidence >= HASH_MATCH and "sha256 match" in r.reason:
        out.append("the sha256 matches")
    if r.backend == "workflow":
        out.append("the workflow's own URL")
    # an index entry the hub did not disown (not "not found", not other bytes, not another folder)
    listed = r.backend == "index" and r.confidence > INDEX_OTHER_FOLDER and meta.get("index_checked") != "changed"
    if listed or _index_backs(index, r, wanted):
        out.append("the known-model index")
    if meta.get("known_publisher") and _same_name(wanted, r.filename):
        path = str(meta.get("path") or "")
        if meta.get("path_names_folder") or _path_names_folder(path, folder):
            out.append(f"a known publisher ({str(meta.get('repo_id', '')).split('/')[0]}) keeps it in its "
                       f"{folder} folder")
        elif not names.is_generic(wanted):
            out.append(f"a known publisher ({str(meta.get('repo_id', '')).split('/')[0]})")
    return out


def _path_names_folder(path: str, folder: Optional[str]) -> bool:
    if not folder or "/" not in path:
        return False
    wanted = {folder.lower()} | {k for k, v in LEGACY_FOLDERS.items() if v == folder}
    return any(d.lower() in wanted for d in path.split("/")[:-1])


#: a Civitai model this popular, and this many times more downloaded than every other file of
#: the name, is the one people mean ("a clear download lead": weak evidence, like a publisher)
LEAD_MIN_DOWNLOADS = 10_000
LEAD_FACTOR = 20


def _download_lead(same: List[SearchResult]):
    """``(candidate, words)`` when one Civitai answer of a contested name leads the downloads
    clearly; None otherwise.  Only among Civitai answers: download counts of Hugging Face repos
    (a whole repo, any file) are not comparable with a Civitai model's."""
    if len(same) < 2 or any(r.backend != "civitai" for r in same):
        return None
    ranked = sorted(same, key=lambda r: -(r.metadata.get("downloads") or 0))
    top, runner = (ranked[0].metadata.get("downloads") or 0), (ranked[1].metadata.get("downloads") or 0)
    if top >= LEAD_MIN_DOWNLOADS and top >= LEAD_FACTOR * max(runner, 1):
        return ranked[0], f"a clear download lead on Civitai ({top:,} downloads, the next {runner:,})"
    return None


_WEAK = ("a known publisher", "a clear download lead")


def _strong(reasons: List[str]) -> bool:
    return any(not r.startswith(_WEAK) for r in reasons)


def _cap(r: SearchResult, cap: float, why: str) -> None:
    if r.confidence > cap:
        r.confidence = cap
        if why and why not in r.reason:
            r.metadata["reason"] = f"{r.reason}; {why}" if r.reason else why


def settle(candidates: Iterable[SearchResult], reference, folder: Optional[str] = None, *,
           index: Any = None) -> List[SearchResult]:
    """Apply the rules that need every candidate of ``reference`` at once (see the module
    docstring), then ``rank``.  ``reference`` is a ModelReference (its filename, folder,
    confidence and source are read); ``folder``: its canonical folder key; ``index``: a
    ``KnownModelIndex`` that may corroborate candidates of other backends."""
    wanted = names.basename(reference.filename)
    folder = folder or reference.expected_directory or None
    # 1. identical bytes are one answer: keep the best copy, list the others as mirrors
    ranked = rank(candidates)
    kept: List[SearchResult] = []
    by_sha: Dict[str, SearchResult] = {}
    for r in ranked:
        sha = (r.hash_sha256 or "").lower()
        if len(sha) == 64 and not r.metadata.get("hash_from_reference"):
            first = by_sha.get(sha)
            if first is not None:
                first.metadata.setdefault("mirrors", []).append(
                    {"backend": r.backend, "where": _where(r), "download_url": r.download_url,
                     "page_url": r.metadata.get("page_url")})
                first.metadata.setdefault("_group", [first]).append(r)
                continue
            by_sha[sha] = r
        kept.append(r)
    # 2. what corroborates each answer (any copy of the same bytes counts)
    support: Dict[int, List[str]] = {}
    for r in kept:
        reasons: List[str] = []
        for member in r.metadata.pop("_group", [r]):
            for why in _corroboration(member, wanted, folder, index):
                if why not in reasons:
                    reasons.append(why)
        support[id(r)] = reasons
    # 3. the same name with other bytes elsewhere: only corroborated answers stay sure
    same = [r for r in kept if _same_name(wanted, r.filename) and not _gone(r)]
    contested = len(same) >= 2
    lead = _download_lead(same)
    if lead is not None:
        support[id(lead[0])].append(lead[1])
    strong_groups = [r for r in same if _strong(support[id(r)])]
    publisher_groups = [r for r in same if support[id(r)]]
    for r in kept:
        reasons = support[id(r)]
        is_same = r in same
        others = len(same) - 1 if is_same else len(same)
        if others > 0:
            r.metadata["competitors"] = others
        if is_same and contested:
            enough = _strong(reasons) and len(strong_groups) == 1 or \
                (reasons and not strong_groups and len(publisher_groups) == 1)
            if not enough:
                why = (f"{others} other file{'s' if others > 1 else ''} with this name but different bytes "
                       "elsewhere, and nothing says which one is meant")
                _cap(r, CONTESTED_CAP, why)
        if is_same and names.is_generic(wanted) and not _strong(reasons) and \
                not any("folder" in x for x in reasons):
            _cap(r, CONTESTED_CAP, "the name is too generic to be sure without the folder in the path")
        if r.confidence < HASH_MATCH:
            diff = mismatch(wanted, r.filename)
            if diff:
                _cap(r, MISMATCH_CAP, diff)
        if reasons:
            r.metadata["corroboration"] = reasons
        # 4. the reference's own certainty bounds every candidate's
        ref_conf = float(getattr(reference, "confidence", 1.0) or 0.0)
        guessed = getattr(reference, "source", "") == "fallback" or not folder or folder == "unknown"
        if guessed:
            _cap(r, GUESSED_CAP, "the workflow reference itself is a guess (unknown node or folder)")
        elif ref_conf < r.confidence:
            _cap(r, round(ref_conf, 4), f"the workflow reference itself is only {ref_conf:.0%} certain")
        _describe(r, reasons, others if is_same else 0)
    return rank(kept)


def _describe(r: SearchResult, reasons: List[str], others: int) -> None:
    parts = [r.reason] if r.reason else []
    # what the backend's own words already say is not repeated
    said = {"the sha256 matches": "sha256 match", "the workflow's own URL": "URL given in the workflow"}
    news = [x for x in reasons if said.get(x, "\0") not in r.reason
            and not (x == "the known-model index" and r.backend == "index")]
    if news and "confirmed by" not in r.reason:
        parts.append("confirmed by " + " and ".join(news))
    mirrors = r.metadata.get("mirrors") or []
    if mirrors and "same file also in" not in r.reason:
        parts.append(f"the same file also in {len(mirrors)} other place{'s' if len(mirrors) > 1 else ''}")
    if others and "this name" not in r.reason:
        parts.append(f"{others} other file{'s share' if others > 1 else ' shares'} this name")
    r.metadata["reason"] = "; ".join(parts)
