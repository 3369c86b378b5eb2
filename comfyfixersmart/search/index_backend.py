"""The ``index`` backend: candidates from the known-model index (official templates,
ComfyUI-Manager's model list), asked before every other backend.

An index entry is a lead, not proof: when the hub is reachable its URL is checked (Hugging
Face: HEAD ``/resolve/``, which also gives the size and the LFS sha256; Civitai: the
model-version API), so a moved or removed file is demoted with the reason instead of
trusted.  When the hub cannot be asked, the candidate keeps the reason "not checked
(offline)" and stays under the auto-download level, unless the workflow itself corroborates
it (its URL or hash names the same file).

Confidence:
=====================================================  =========
name, folder listed; hub confirms (workflow agrees)     0.97 (0.98)
same, but the workflow names another URL                0.94 (never decisive)
same, but other files of that name are listed           0.89
listed for another folder                                0.7
not checked (offline, hub error, other host)             <= 0.85
the hub answers "not found"                              0.3
=====================================================  =========
"""

from __future__ import annotations

from typing import Dict, List, Optional
from urllib.parse import urlsplit

from ..datamodel import ModelDetails, ModelReference, SearchResult
from ..errors import APISearchError, GatedRepoError, NetworkError, NotFoundError, ValidationError
from ..folders import canonical_folder, type_for
from ..logs import get_logger
from ..net.urls import url_allowed
from . import names, ranking
from .civitai import CivitaiBackend, parse_civitai_url
from .huggingface import HuggingFaceBackend
from .known_models import KnownModel, KnownModelIndex, _location, download_url_for

log = get_logger(__name__)

NAME = "index"
LISTED_CONFIRMED = 0.97
LISTED_WORKFLOW_AGREES = 0.98
#: the workflow names another URL for this file: keep the index's lead, never decisive
WORKFLOW_DISAGREES = 0.94
#: several different files of this name are listed: a choice the user should see
AMBIGUOUS_CAP = 0.89
OTHER_FOLDER = 0.7
#: not checked on the hub: below the usual auto-download level (``min_confidence`` 0.9)
UNCHECKED_CAP = 0.85
HUB_NOT_FOUND = 0.3
_CIVITAI_HOSTS = ("civitai.com", "civitai.red", "www.civitai.com")


class IndexBackend:
    """``SearchBackend`` over ``KnownModelIndex`` (``name = "index"``)."""

    name = NAME

    def __init__(self, config, hf: Optional[HuggingFaceBackend] = None, civitai: Optional[CivitaiBackend] = None,
                 *, index: Optional[KnownModelIndex] = None, check: bool = True):
        self.config = config
        self.hf = hf
        self.civitai = civitai
        self._index = index
        #: check each entry's URL on its hub (off: offline use, tests of the index alone)
        self.check = check

    @property
    def index(self) -> KnownModelIndex:
        if self._index is None:
            index = KnownModelIndex.for_config(self.config)
            try:
                len(index)
            except ValidationError as exc:  # a damaged refreshed copy: the bundled one still works
                if getattr(self.config, "known_models_file", None) is not None:
                    raise
                log.warning("known-model index %s unusable (%s); using the bundled one", index.path, exc)
                index = KnownModelIndex()
            self._index = index
            from .index_refresh import maybe_refresh

            maybe_refresh(self.config)
        return self._index

    # -- SearchBackend -----------------------------------------------------------------------
    def resolve(self, reference: ModelReference) -> List[SearchResult]:
        folder = canonical_folder(reference.expected_directory) if reference.expected_directory else None
        known = _sha256(reference.hash, reference.hash_type)
        hits = self.index.by_name(reference.filename, folder)
        if known:
            hits += [m for m in self.index.by_sha256(known) if m not in hits]
        return self._results(hits, reference.filename, folder, reference=reference, known=known)

    def search(self, query: str, folder: Optional[str] = None) -> List[SearchResult]:
        """A file name (with or without a sub-folder) is looked up; free text finds nothing."""
        if not names.has_model_extension(query):
            return []
        folder = canonical_folder(folder) if folder else None
        return self._results(self.index.by_name(query, folder), query, folder)

    def get_model_details(self, model_id: str) -> ModelDetails:
        raise ValidationError("the index backend has no model details; ask 'civitai' or 'huggingface'")

    # -- results -------------------------------------------------------------------------------
    def _results(self, hits: List[KnownModel], wanted: str, folder: Optional[str], *,
                 reference: Optional[ModelReference] = None, known: Optional[str] = None) -> List[SearchResult]:
        seen: Dict[str, SearchResult] = {}
        for model in hits:
            if model.url in seen:
                continue
            seen[model.url] = self._result(model, wanted, folder, reference, known)
        results = list(seen.values())
        self._mark_ambiguous(results)
        return results

    def _result(self, model: KnownModel, wanted: str, folder: Optional[str], reference: Optional[ModelReference],
                known: Optional[str]) -> SearchResult:
        where = model.describe()
        hf = model.hf
        download_url = download_url_for(model, self.config.hf_endpoint)
        meta: Dict[str, object] = {
            "source_url": model.url,
            "canonical_url": model.url,
            "index_sources": list(model.sources),
            "index_listed": True,
            "pickle": names.is_pickle(model.name),
        }
        model_id, name = model.url, model.name
        civ = parse_civitai_url(model.url) if _host(model.url) in _CIVITAI_HOSTS else {}
        if hf is not None:
            repo_id, revision, path = hf
            model_id = name = repo_id
            meta.update(repo_id=repo_id, revision=revision, path=path, page_url=f"{self.config.hf_endpoint}/{repo_id}",
                        known_publisher=ranking.is_known_publisher(repo_id))
        elif civ.get("version_id"):
            download_url = f"{self.config.civitai_download_base}/{civ['version_id']}"
            if civ.get("file_id"):
                download_url += f"?fileId={civ['file_id']}"
            meta.update(version_id=civ["version_id"], file_id=civ.get("file_id"))
            model_id = str(civ.get("model_id") or civ["version_id"])

        sha_match = bool(known and model.sha256 == known)
        if sha_match:
            confidence, words = ranking.HASH_MATCH, f"sha256 match: {where}"
        elif folder and model.directory != folder:
            confidence, words = OTHER_FOLDER, f"same file name {where}, but for the folder {model.directory!r}"
        else:
            confidence, words = LISTED_CONFIRMED, f"{'exact file name' if model.case_exact else 'file name equal up to case'} {where}"
            if not model.case_exact:
                confidence -= 0.03
        if model.subfolder:
            meta["index_subfolder"] = model.subfolder
        workflow_agrees = bool(reference and (
            (reference.url and _location(reference.url) == _location(model.url))
            or (known and model.sha256 == known)))
        if reference is not None and reference.url and not workflow_agrees and confidence > WORKFLOW_DISAGREES:
            confidence = WORKFLOW_DISAGREES
            words += "; the workflow names another URL"
        elif workflow_agrees and confidence == LISTED_CONFIRMED:
            confidence = LISTED_WORKFLOW_AGREES
            words += "; the workflow names the same file"

        result = SearchResult(
            backend=NAME, model_id=model_id, name=name, filename=names.basename(hf[2] if hf else model.name),
            model_type=type_for(folder or model.directory), download_url=download_url, size_bytes=model.size,
            hash_sha256=model.sha256, metadata={**meta, "reason": words}, confidence=confidence,
            directory=folder or model.directory, save_as=reference.filename if reference else model.basename,
        )
        if not url_allowed(download_url, self.config):
            result.confidence = min(result.confidence, 0.5)
            meta_reason = f"{words}; host {_host(download_url)!r} is not on the allow-list"
            result.metadata.update(reason=meta_reason, host_allowed=False, index_checked="not-allowed")
            return result
        self._check(result, model, civ, workflow_agrees or sha_match)
        if known and result.hash_sha256 and not sha_match:
            ranking.apply_known_hash(result, known)
        return result

    def _check(self, result: SearchResult, model: KnownModel, civ: dict, corroborated: bool) -> None:
        """Ask the hub whether the listed file is still there; adjust the confidence and reason."""
        meta = result.metadata
        reason = result.reason

        def unchecked(why: str) -> None:
            meta["index_checked"] = "unchecked"
            meta["reason"] = f"{reason}; not checked ({why})"
            if not corroborated:
                result.confidence = min(result.confidence, UNCHECKED_CAP)

        if not self.check:
            unchecked("checks are off")
            return
        try:
            if meta.get("repo_id") and self.hf is not None:
                info = self.hf.file_metadata(str(meta["repo_id"]), str(meta["revision"]), str(meta["path"]))
                result.size_bytes = info.get("size") or result.size_bytes
                hub_sha = info.get("sha256")
                if hub_sha and model.sha256 and hub_sha != model.sha256:
                    result.confidence = min(result.confidence, ranking.HASH_MISMATCH_CAP)
                    meta["reason"] = f"{reason}; but the file on the hub has other bytes than the listed sha256"
                    meta["index_checked"] = "changed"
                    result.hash_sha256 = hub_sha
                    return
                result.hash_sha256 = hub_sha or result.hash_sha256
            elif meta.get("version_id") and self.civitai is not None:
                version = self.civitai.version(int(meta["version_id"]))  # type: ignore[arg-type]
                files = [f for f in version.get("files") or [] if isinstance(f, dict)]
                wanted_id = meta.get("file_id")
                if wanted_id and not any(f.get("id") == wanted_id for f in files):
                    raise NotFoundError("the listed file is not in that version any more", backend="civitai")
            else:
                unchecked(f"{_host(result.download_url)} is not a hub we can ask")
                return
        except GatedRepoError as exc:
            meta.update(access_error=exc.to_dict(), requires_auth=True, gated=True, index_checked="gated")
            meta["reason"] = f"{reason}; gated: accept the licence at {meta.get('page_url')} and set HF_TOKEN"
            return
        except NotFoundError:
            result.confidence = min(result.confidence, HUB_NOT_FOUND)
            meta["index_checked"] = "not-found"
            meta["reason"] = f"{reason}; but the hub answers: not found (moved or removed)"
            return
        except NetworkError:
            unchecked("offline")
            return
        except APISearchError as exc:
            if exc.status in (401, 403):
                meta.update(access_error=exc.to_dict(), requires_auth=True, index_checked="auth")
                meta["reason"] = f"{reason}; the hub asks for a login"
                return
            unchecked(f"the hub answered {exc.status or 'an error'}")
            return
        meta["index_checked"] = "confirmed"
        meta["reason"] = f"{reason}; confirmed on the hub"

    @staticmethod
    def _mark_ambiguous(results: List[SearchResult]) -> None:
        """Several listed files of one name and folder with different (or unknown) bytes: none
        of them is decisive, and the reason says so."""
        live = [r for r in results if r.metadata.get("index_checked") != "not-found" and r.confidence > OTHER_FOLDER]
        if len(live) < 2:
            return
        hashes = {r.hash_sha256 for r in live}
        if len(hashes) == 1 and None not in hashes:
            return  # the same bytes in several places: mirrors, one answer
        for r in live:
            others = len(live) - 1
            if r.confidence < ranking.HASH_MATCH and r.confidence > AMBIGUOUS_CAP:
                r.confidence = AMBIGUOUS_CAP
            r.metadata["reason"] = f"{r.reason}; {others} other listed file{'s' if others > 1 else ''} share this name"


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _sha256(value: Optional[str], kind: Optional[str]) -> Optional[str]:
    text = (value or "").strip().lower()
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text) and (kind or "sha256").lower() in (
            "sha256", "sha-256"):
        return text
    return None
