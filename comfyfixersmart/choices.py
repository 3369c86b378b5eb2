"""A person's choices for missing models: ``--pick NAME=N``, ``--url NAME=URL``, or a question.

``apply_choices`` runs after resolving and before planning: the chosen candidate goes first
with confidence 1.0 (a person chose it; a pickle format still needs its own yes), so the
planner takes it.  ``NAME`` is the reference's file name, base name or ``folder/name`` key.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Union

from .datamodel import AnalysisResult, Resolution, SearchResult
from .errors import ValidationError

#: a question per unsure reference: the candidate number (1-based), a pasted URL, or None
Chooser = Callable[[Resolution], Union[int, str, None]]


def parse_assignments(values: List[str], flag: str, *, last: bool) -> Dict[str, str]:
    """``["NAME=VALUE", ...]`` as a dict; split at the last ``=`` (``last``) or the first."""
    out: Dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.rpartition("=") if last else raw.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValidationError(f"{flag} expects NAME=VALUE, got {raw[:80]!r}")
        out[name.strip()] = value.strip()
    return out


def _matches(res: Resolution, name: str) -> bool:
    ref = res.reference
    return name in (ref.filename, ref.basename, ref.key)


def _find(analysis: AnalysisResult, name: str, flag: str) -> List[Resolution]:
    found = [res for res in analysis.resolutions if _matches(res, name)]
    if not found:
        missing = ", ".join(sorted(r.reference.filename for r in analysis.resolutions)[:8]) or "none"
        raise ValidationError(f"{flag} {name}: no missing model of that name (missing: {missing})")
    return found


def _promote(res: Resolution, cand: SearchResult, why: str) -> None:
    if cand in res.candidates:
        res.candidates.remove(cand)
    cand.confidence = 1.0
    cand.metadata["reason"] = why
    cand.metadata["picked"] = True
    res.candidates.insert(0, cand)


def pick(res: Resolution, number: int) -> SearchResult:
    """Candidate ``number`` (1-based, as listed) of ``res``, made the one a fix takes."""
    if not 1 <= number <= len(res.candidates):
        raise ValidationError(f"{res.reference.filename}: candidate {number} does not exist "
                              f"({len(res.candidates)} candidate(s))")
    cand = res.candidates[number - 1]
    _promote(res, cand, f"picked by hand (was {cand.confidence:.0%}: {cand.reason})")
    return cand


def use_url(res: Resolution, url: str, search) -> SearchResult:
    """The file a pasted ``url`` names, made the one a fix takes for ``res``."""
    from .search.pasted import resolve_pasted_url

    cand = resolve_pasted_url(url, search=search, reference=res.reference)
    _promote(res, cand, f"pasted link ({cand.reason})" if cand.reason else "pasted link")
    return cand


def apply_choices(analysis: AnalysisResult, *, picks: Optional[Mapping[str, int]] = None,
                  urls: Optional[Mapping[str, str]] = None, search=None,
                  choose: Optional[Chooser] = None, threshold: float = 0.9) -> None:
    """Apply ``picks`` and ``urls`` (``ValidationError`` for a name that is not missing or a
    number out of range), then ask ``choose`` about every reference still not sure enough."""
    decided = set()
    for name, number in (picks or {}).items():
        for res in _find(analysis, name, "--pick"):
            pick(res, int(number))
            decided.add(id(res))
    for name, url in (urls or {}).items():
        if search is None:
            raise ValidationError("--url needs the search backends")
        for res in _find(analysis, name, "--url"):
            use_url(res, url, search)
            decided.add(id(res))
    if choose is None:
        return
    for res in analysis.resolutions:
        if id(res) in decided or res.choose(threshold) is not None:
            continue
        answer = choose(res)
        if isinstance(answer, int) and not isinstance(answer, bool):
            pick(res, answer)
        elif isinstance(answer, str) and answer.strip() and search is not None:
            use_url(res, answer.strip(), search)


__all__ = ["Chooser", "apply_choices", "parse_assignments", "pick", "use_url"]
