"""Pickle-capable model files named by a workflow: never fetched without a yes per file.

``.ckpt .pt .pth .bin`` (and ``.pkl .pt2``) are loaded with ``torch.load``, which can run
code.  A workflow is untrusted content, so such a file is planned only with an explicit
consent (``allow_pickle``: True, a set of names, or a callable; or ``Config.allow_pickle``).
When the candidates hold the same model as ``.safetensors`` (same stem, other extension),
that one is offered first instead (``offer_safetensors``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Union
from urllib.parse import urlsplit

from .datamodel import Resolution, SearchResult

#: ``Failure.error_type`` of a pickle left out for want of a confirmation
PICKLE_CONFIRMATION = "PickleConfirmationRequired"

#: None (ask nobody: only ``Config.allow_pickle``), True/False, names/keys, or spec -> bool
PickleConsent = Union[None, bool, Iterable[str], Callable[[Dict[str, Any]], bool]]


def _names():
    from .search import names  # lazy: the search package is not needed to plan

    return names


def is_pickle_name(name: Optional[str]) -> bool:
    """True for a file name whose format unpickles on load."""
    return bool(name) and _names().is_pickle(str(name))


def is_pickle_candidate(candidate: SearchResult, save_name: Optional[str] = None) -> bool:
    """Whether the file a candidate would give (its name, the name it is saved under, its
    URL's last segment, or the backend's own flag) is a pickle format."""
    if candidate.metadata.get("pickle"):
        return True
    url_name = urlsplit(candidate.download_url or "").path.rsplit("/", 1)[-1]
    return any(is_pickle_name(n) for n in (candidate.filename, save_name, candidate.save_as, url_name)
               if n and "." in n)


def pickle_warning(name: str) -> str:
    return (f"{name} is a pickle format (.ckpt/.pt/.pth/.bin) that can run code when ComfyUI "
            "loads it: download it only from a source you trust")


def candidate_warnings(candidate: SearchResult, save_name: Optional[str] = None) -> List[str]:
    """Warnings the panel shows on the row of this candidate (pickle, renamed alternative)."""
    out = [str(w) for w in candidate.metadata.get("warnings") or [] if w]
    if is_pickle_candidate(candidate, save_name):
        warning = pickle_warning(save_name or candidate.filename)
        if warning not in out:
            out.append(warning)
    return out


def consent(allow: PickleConsent, config: Any = None) -> Callable[[Dict[str, Any]], bool]:
    """A ``spec -> bool`` from an ``allow_pickle`` argument and ``config.allow_pickle``."""
    if getattr(config, "allow_pickle", False) or allow is True:
        return lambda spec: True
    if allow is None or allow is False:
        return lambda spec: False
    if callable(allow):
        return allow  # type: ignore[return-value]
    wanted = {str(n).strip() for n in allow if str(n).strip()}  # type: ignore[union-attr]

    def named(spec: Dict[str, Any]) -> bool:
        filename = str(spec.get("filename") or "")
        key = str(spec.get("key") or "")
        ref_name = key.split("/", 1)[1] if "/" in key else key
        names = {filename, filename.rsplit("/", 1)[-1], key, ref_name, ref_name.rsplit("/", 1)[-1]}
        return bool(wanted & names)

    return named


def offer_safetensors(res: Resolution) -> Optional[SearchResult]:
    """When the best candidate is a pickle and a ``.safetensors``/``.sft`` candidate of the
    same stem exists, rank that one first (at least as confident, with the reason said) and
    save it under the reference's stem with its own extension.  Returns it, or None."""
    best = res.best
    if best is None or not is_pickle_candidate(best):
        return None
    names = _names()
    stem = names.split_ext(best.filename)[0].lower()
    ref_stem = names.split_ext(res.reference.filename)[0].lower()
    for cand in res.candidates[1:]:
        cstem, cext = names.split_ext(cand.filename)
        if cext not in (".safetensors", ".sft") or cstem.lower() not in (stem, ref_stem):
            continue
        res.candidates.remove(cand)
        res.candidates.insert(0, cand)
        cand.confidence = max(cand.confidence, best.confidence)
        cand.metadata["reason"] = (f"safetensors version of {best.filename} (preferred: the pickle format "
                                   f"can run code when loaded)")
        cand.metadata["alternative_of"] = best.filename
        ref_dir, _, ref_base = res.reference.filename.rpartition("/")
        new_name = names.split_ext(ref_base)[0] + cext
        cand.save_as = f"{ref_dir}/{new_name}" if ref_dir else new_name
        warning = (f"the workflow names {res.reference.filename}; this saves {cand.save_as}: point the node "
                   "at it after the download")
        cand.metadata.setdefault("warnings", [])
        if warning not in cand.metadata["warnings"]:
            cand.metadata["warnings"].append(warning)
        return cand
    return None


__all__ = ["PICKLE_CONFIRMATION", "PickleConsent", "candidate_warnings", "consent", "is_pickle_candidate",
           "is_pickle_name", "offer_safetensors", "pickle_warning"]
