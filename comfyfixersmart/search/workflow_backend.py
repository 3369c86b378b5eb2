"""The ``workflow`` backend: the URL (and hash) a workflow carries in its own ``models`` metadata.

This is the strongest evidence short of a hash match: the workflow's author said where the
file comes from.  The URL is validated (http(s), no credentials), Hugging Face ``/blob/``
page links become ``/resolve/`` links, Hugging Face and Civitai links are rebuilt on the
configured endpoints (so ``HF_ENDPOINT`` mirrors work), and the file is saved under the
reference's own name and folder whatever the URL's file name.

When enrichment is on (the default), the file's size and sha256 are looked up on the
backend the URL points to (one cached request): a 404 lowers the confidence, a gated repo is
reported in ``metadata["access_error"]``; the candidate is never dropped for it.
"""

from __future__ import annotations

from typing import List, Optional
from urllib.parse import unquote, urlsplit

from ..datamodel import ModelDetails, ModelReference, SearchResult
from ..errors import ComfyFixerError, NotFoundError, ValidationError
from ..folders import canonical_folder, type_for
from ..logs import get_logger
from ..net.urls import url_allowed
from ..security import check_url
from . import names, ranking
from .civitai import CivitaiBackend, parse_civitai_url, pick_file
from .huggingface import HuggingFaceBackend, parse_hf_url

log = get_logger(__name__)

NAME = "workflow"
_HF_HOSTS = ("huggingface.co", "hf.co", "www.huggingface.co")
_CIVITAI_HOSTS = ("civitai.com", "civitai.red", "www.civitai.com", "api.civitai.com")


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class WorkflowBackend:
    """``SearchBackend`` for the URLs in a workflow's ``models`` metadata (``name = "workflow"``)."""

    name = NAME

    def __init__(self, config, civitai: Optional[CivitaiBackend] = None, hf: Optional[HuggingFaceBackend] = None,
                 *, enrich: bool = True):
        self.config = config
        self.civitai = civitai
        self.hf = hf
        self.enrich = enrich

    def _is_hf(self, url: str) -> bool:
        return _host(url) in _HF_HOSTS or _host(url) == _host(self.config.hf_endpoint)

    def _is_civitai(self, url: str) -> bool:
        return _host(url) in _CIVITAI_HOSTS or _host(url) == _host(self.config.civitai_base_url)

    def resolve(self, reference: ModelReference) -> List[SearchResult]:
        if not reference.url:
            return []
        url = check_url(reference.url)  # http(s), no credentials, no whitespace: else HostNotAllowedError
        folder = canonical_folder(reference.expected_directory)
        wanted = reference.basename
        known = (reference.hash or "").lower() if len(reference.hash or "") == 64 else None
        metadata = {"source_url": url, "pickle": names.is_pickle(wanted)}
        reason = "URL given in the workflow's models metadata"
        model_id, name, confidence = url, wanted, ranking.WORKFLOW_URL

        hf = parse_hf_url(url) if self._is_hf(url) else None
        civ = parse_civitai_url(url) if self._is_civitai(url) else {}
        if hf is not None:
            download_url = f"{self.config.hf_endpoint}/{hf.repo_id}/resolve/{hf.revision}/{hf.path}"
            if "/blob/" in urlsplit(url).path:
                reason += " (page link rewritten to /resolve/)"
            model_id, name = hf.repo_id, hf.repo_id
            metadata.update(repo_id=hf.repo_id, revision=hf.revision, path=hf.path,
                            page_url=f"{self.config.hf_endpoint}/{hf.repo_id}")
            url_file = names.basename(hf.path)
        elif civ.get("version_id"):
            download_url = f"{self.config.civitai_download_base}/{civ['version_id']}"
            if civ.get("file_id"):
                download_url += f"?fileId={civ['file_id']}"
            metadata.update(version_id=civ["version_id"], file_id=civ.get("file_id"))
            model_id = str(civ.get("model_id") or civ["version_id"])
            url_file = wanted  # Civitai URLs carry ids, not names
        else:
            download_url = url
            url_file = unquote(names.basename(urlsplit(url).path)) or wanted
        if url_file != wanted:
            reason += f"; the URL's file is {url_file!r}, saved as {wanted!r}"
        if not url_allowed(download_url, self.config):
            confidence = 0.5
            reason += f"; host {_host(download_url)!r} is not on the allow-list"
            metadata["host_allowed"] = False

        result = SearchResult(
            backend=NAME,
            model_id=model_id,
            name=name,
            filename=url_file,
            model_type=type_for(folder),
            download_url=download_url,
            metadata={**metadata, "reason": reason},
            confidence=confidence,
            directory=folder,
            save_as=reference.filename,
        )
        if self.enrich and result.metadata.get("host_allowed", True):
            self._enrich(result, civ)
        if known and result.hash_sha256:
            ranking.apply_known_hash(result, known)  # the server's hash against the workflow's
        elif known:
            result.hash_sha256 = known  # unverified here: the download will check it
            result.metadata["hash_from_reference"] = True
        return [result]

    def _enrich(self, result: SearchResult, civ: dict) -> None:
        """Fill size/sha256 from the backend the URL points to; never drop the candidate."""
        meta = result.metadata
        try:
            if meta.get("repo_id") and self.hf is not None:
                info = self.hf.file_metadata(meta["repo_id"], meta["revision"], meta["path"])
                result.size_bytes = info.get("size")
                result.hash_sha256 = info.get("sha256")
            elif meta.get("version_id") and self.civitai is not None:
                version = self.civitai.version(meta["version_id"])
                files = [f for f in version.get("files") or [] if isinstance(f, dict)]
                if civ.get("file_id"):
                    file = next((f for f in files if f.get("id") == civ.get("file_id")), None)
                else:
                    # a version URL: Civitai would send its primary file; the reference's
                    # precision ("..._fp16") may name another one of the version
                    file = pick_file(files, names.precision(result.save_as or result.filename))
                if file is not None:
                    model = dict(version.get("model") or {}, id=version.get("modelId"))
                    full = self.civitai.make_result(model, version, file, folder=result.directory,
                                                    confidence=result.confidence, reason=result.reason,
                                                    save_as=result.save_as)
                    if full is not None:
                        result.model_id, result.name, result.filename = full.model_id, full.name, full.filename
                        result.size_bytes = full.size_bytes
                        if not civ.get("file_id"):
                            result.download_url = full.download_url  # the file chosen, not the primary
                        result.hash_sha256 = full.hash_sha256
                        meta.update({k: v for k, v in full.metadata.items() if k != "reason"})
        except NotFoundError as exc:
            result.confidence = min(result.confidence, 0.6)
            meta["reason"] = f"{result.reason}; but the server answers: not found"
            meta["access_error"] = exc.to_dict()
        except ComfyFixerError as exc:
            meta["access_error"] = exc.to_dict()
            if getattr(exc, "status", None) in (401, 403):
                meta["requires_auth"] = True

    def search(self, query: str, folder: Optional[str] = None) -> List[SearchResult]:
        """Nothing to search: the workflow backend only knows the references it is given."""
        return []

    def get_model_details(self, model_id: str) -> ModelDetails:
        raise ValidationError("the workflow backend has no model details; ask 'civitai' or 'huggingface'")
