"""Civitai backend: hash lookup, model-name search, file choice and folder mapping.

Parsing is tolerant of the API's drift (API-NOTES.md): ``primary`` missing, ``stats`` null,
``nextCursor`` numeric, ``allowCommercialUse`` a string or an array, truncated hashes.
Download URLs are ``<download_base>/<versionId>?fileId=<id>``; the token is never put in a
URL (``auth_headers_for`` sends it as a header to the Civitai host only).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from ..datamodel import ModelDetails, ModelReference, SearchResult
from ..errors import NotFoundError, ValidationError
from ..folders import canonical_folder, type_for
from ..logs import get_logger
from . import names, ranking
from .http import ApiClient

log = get_logger(__name__)

NAME = "civitai"

#: Civitai model ``type`` -> ComfyUI folder key (API-NOTES.md)
MODEL_TYPE_TO_FOLDER: Dict[str, str] = {
    "Checkpoint": "checkpoints",
    "LORA": "loras",
    "LoCon": "loras",
    "DoRA": "loras",
    "TextualInversion": "embeddings",
    "Hypernetwork": "hypernetworks",
    "Controlnet": "controlnet",
    "VAE": "vae",
    "Upscaler": "upscale_models",
    "MotionModule": "animatediff_models",
    "UNet": "diffusion_models",
    "TextEncoder": "text_encoders",
    "CLIPVision": "clip_vision",
    "Detection": "ultralytics",
}
#: a file-level ``type`` that names another folder overrides the model-level one
FILE_TYPE_TO_FOLDER: Dict[str, str] = {
    "VAE": "vae",
    "Text Encoder": "text_encoders",
    "TextEncoder": "text_encoders",
    "UNet": "diffusion_models",
    "CLIPVision": "clip_vision",
}
#: files of these types are not model weights
NON_MODEL_FILE_TYPES = frozenset({"Training Data", "Archive", "Config"})
#: Civitai model types that also fit a folder besides their own: Flux/Wan/SD3 fine-tunes are
#: published as "Checkpoint" (often UNet-only files) and loaded with UNETLoader.  Not the other
#: way round: a UNet-only file cannot be loaded by CheckpointLoaderSimple.
EXTRA_FOLDER_TYPES: Dict[str, Tuple[str, ...]] = {"diffusion_models": ("Checkpoint",)}
#: file-level types that are the model's main weights (they do not override the model type)
_WEIGHT_FILE_TYPES = frozenset({"Model", "Pruned Model"})

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def folder_for_civitai(model_type: Optional[str], file_type: Optional[str] = None) -> Optional[str]:
    """ComfyUI folder of a Civitai file (file type first, then model type); None if unknown."""
    if file_type and file_type in FILE_TYPE_TO_FOLDER:
        return FILE_TYPE_TO_FOLDER[file_type]
    return MODEL_TYPE_TO_FOLDER.get(model_type or "")


def civitai_types_for(folder: Optional[str]) -> List[str]:
    """Civitai model types whose files may belong in ``folder`` (empty: do not filter)."""
    if not folder:
        return []
    folder = canonical_folder(folder)
    types = [t for t, f in MODEL_TYPE_TO_FOLDER.items() if f == folder]
    return types + [t for t in EXTRA_FOLDER_TYPES.get(folder, ()) if t not in types]


def folder_fits(model_type: Optional[str], file_type: Optional[str], folder: Optional[str]) -> Optional[bool]:
    """Whether a Civitai file fits the reference's ``folder``; None when either side is unknown."""
    cand = folder_for_civitai(model_type, file_type)
    if cand is None or not folder:
        return None
    folder = canonical_folder(folder)
    if cand == folder:
        return True
    # the main weights of a "Checkpoint" model may be what a UNETLoader wants; a VAE or text
    # encoder file inside that model still belongs elsewhere
    weights = not file_type or file_type in _WEIGHT_FILE_TYPES
    return weights and (model_type or "") in EXTRA_FOLDER_TYPES.get(folder, ())


def commercial_use(value: Any) -> List[str]:
    """``allowCommercialUse`` as a list: arrays, ``"{Image,RentCivit}"`` strings, or one word."""
    if isinstance(value, list):
        return [str(v) for v in value if v]
    if isinstance(value, str):
        text = value.strip().strip("{}")
        return [p.strip() for p in text.split(",") if p.strip() and p.strip() != "None"]
    return []


def parse_civitai_url(url: str) -> Dict[str, int]:
    """Ids in a Civitai URL: ``version_id``/``file_id`` from ``/api/download/models/<v>?fileId=``,
    ``model_id``/``version_id`` from ``/models/<m>?modelVersionId=<v>``; {} if none."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    out: Dict[str, int] = {}
    m = re.search(r"/api/download/models/(\d+)", parts.path)
    if m:
        out["version_id"] = int(m.group(1))
    m = re.search(r"/models/(\d+)", parts.path)
    if m and "version_id" not in out:
        out["model_id"] = int(m.group(1))
    for key, name in (("fileId", "file_id"), ("modelVersionId", "version_id")):
        values = query.get(key)
        if values and values[0].isdigit():
            out[name] = int(values[0])
    return out


# -- tolerant accessors ----------------------------------------------------------------

def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _sha256(file: Dict[str, Any]) -> Optional[str]:
    value = _dict(file.get("hashes")).get("SHA256")
    if isinstance(value, str) and _HEX64.match(value):
        return value.lower()
    return None  # absent, or truncated like the doc examples ("A5F58EB1C33616...")


_MAX_SIZE_KB = 1 << 40  # 1 PiB: no model file is bigger


def _size_bytes(file: Dict[str, Any]) -> Optional[int]:
    kb = file.get("sizeKB")
    # a lying answer (negative, inf, 1e308) gives no size rather than an OverflowError or a
    # preflight asking for more disk than exists
    if isinstance(kb, (int, float)) and not isinstance(kb, bool) and 0 <= kb <= _MAX_SIZE_KB:
        return int(round(kb * 1024))
    return None


def _is_safetensors(file: Dict[str, Any]) -> bool:
    fmt = str(_dict(file.get("metadata")).get("format") or "")
    return fmt == "SafeTensor" or str(file.get("name", "")).lower().endswith((".safetensors", ".sft"))


def pick_file(files: List[Dict[str, Any]], precision: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The file of a version to download: model weights, primary first, SafeTensor over
    PickleTensor, matching precision (``fp16``/``fp32``...) when asked."""
    candidates = [f for f in _list(files) if isinstance(f, dict) and f.get("type") not in NON_MODEL_FILE_TYPES
                  and f.get("name")]
    if not candidates:
        return None
    want = names.precision_family(precision)

    def score(f: Dict[str, Any]) -> Tuple[int, int, int, int]:
        fp = names.precision_family(str(_dict(f.get("metadata")).get("fp") or "") or None)
        return (
            1 if want and fp == want else 0,
            1 if _is_safetensors(f) else 0,
            1 if f.get("primary") is True else 0,
            1 if f.get("type") == "Model" else 0,
        )

    # precision first only when asked; otherwise primary wins over format
    if want:
        return max(candidates, key=score)
    return max(candidates, key=lambda f: (score(f)[2], score(f)[1], score(f)[3]))


class CivitaiBackend:
    """``SearchBackend`` for Civitai (``name = "civitai"``)."""

    name = NAME

    def __init__(self, config, api: ApiClient):
        self.config = config
        self.api = api

    # -- raw API --------------------------------------------------------------------
    def _get(self, path: str, params: Any = None, help_url: Optional[str] = None) -> Any:
        return self.api.get_json(f"{self.config.civitai_api_base}{path}", params, backend=NAME, help_url=help_url)

    def search_models(self, query: str, types: Optional[List[str]] = None, limit: int = 20) -> List[Dict[str, Any]]:
        """``GET /api/v1/models?query=...&types=...`` -> model items (first page)."""
        params: List[Tuple[str, Any]] = [("query", query), ("limit", limit)]
        params += [("types", t) for t in types or []]
        data = self._get("/models", params)
        return [i for i in _list(_dict(data).get("items")) if isinstance(i, dict)]

    def version_by_hash(self, value: str) -> Optional[Dict[str, Any]]:
        """``GET /api/v1/model-versions/by-hash/<hash>``; None when Civitai does not know it."""
        try:
            data = self._get(f"/model-versions/by-hash/{value.strip()}")
        except NotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def version(self, version_id: int) -> Dict[str, Any]:
        return _dict(self._get(f"/model-versions/{int(version_id)}"))

    def model(self, model_id: int) -> Dict[str, Any]:
        return _dict(self._get(f"/models/{int(model_id)}"))

    # -- results --------------------------------------------------------------------
    def page_url(self, model_id: Any, version_id: Any = None) -> Optional[str]:
        if _int(model_id) is None:
            return None
        url = f"{self.config.civitai_base_url}/models/{model_id}"
        return url + (f"?modelVersionId={version_id}" if _int(version_id) is not None else "")

    def download_url(self, version_id: int, file_id: Optional[int]) -> str:
        url = f"{self.config.civitai_download_base}/{version_id}"
        return url + (f"?fileId={file_id}" if file_id is not None else "")

    def make_result(
        self,
        model: Dict[str, Any],
        version: Dict[str, Any],
        file: Dict[str, Any],
        *,
        folder: Optional[str],
        confidence: float,
        reason: str,
        save_as: Optional[str] = None,
    ) -> Optional[SearchResult]:
        """A SearchResult for one file of one version (None if the version has no id)."""
        version_id = _int(version.get("id"))
        if version_id is None:
            return None
        model_id = _int(model.get("id")) or _int(version.get("modelId"))
        file_id = _int(file.get("id"))
        filename = str(file.get("name"))
        meta = _dict(file.get("metadata"))
        early_until = version.get("earlyAccessEndsAt") or version.get("earlyAccessDeadline")
        early = bool(early_until) or version.get("availability") == "EarlyAccess"
        stats = _dict(model.get("stats")) or _dict(version.get("stats"))
        page = self.page_url(model_id, version_id)
        metadata: Dict[str, Any] = {
            "reason": reason,
            "page_url": page,
            "model_id": model_id,
            "version_id": version_id,
            "file_id": file_id,
            "version_name": version.get("name"),
            "base_model": version.get("baseModel"),
            "civitai_type": model.get("type"),
            "file_type": file.get("type"),
            "format": meta.get("format"),
            "fp": meta.get("fp"),
            "pickle": names.is_pickle(filename) or meta.get("format") == "PickleTensor",
            "nsfw": bool(model.get("nsfw")),
            "early_access": early,
            "requires_auth": early or bool(model.get("requiresAuth") or version.get("requireAuth")),
            "downloads": _int(stats.get("downloadCount")) or 0,
        }
        if early_until:
            metadata["early_access_until"] = early_until
        return SearchResult(
            backend=NAME,
            model_id=str(model_id) if model_id is not None else "",
            name=" ".join(str(x) for x in (model.get("name"), version.get("name")) if x) or filename,
            filename=filename,
            model_type=type_for(folder) if folder else "unknown",
            download_url=self.download_url(version_id, file_id),
            size_bytes=_size_bytes(file),
            hash_sha256=_sha256(file),
            metadata=metadata,
            confidence=round(confidence, 4),
            directory=folder,
            save_as=save_as or names.basename(filename),
        )

    @staticmethod
    def _iter_files(items: List[Dict[str, Any]]):
        for model in items:
            for version in _list(model.get("modelVersions")):
                if not isinstance(version, dict):
                    continue
                for file in _list(version.get("files")):
                    if isinstance(file, dict) and file.get("name") and file.get("type") not in NON_MODEL_FILE_TYPES:
                        yield model, version, file

    # -- SearchBackend --------------------------------------------------------------
    def resolve(self, reference: ModelReference) -> List[SearchResult]:
        """By hash (decisive), else by name through the model search with fitting types."""
        folder = reference.expected_directory
        known = (reference.hash or "").strip()
        if known:
            hit = self._resolve_hash(reference, known)
            if hit:
                return hit
        results: List[SearchResult] = []
        types = civitai_types_for(folder)
        queries = names.civitai_queries(reference.filename)
        if names.is_generic(reference.filename):
            return []  # "ae", "model": a model-name search would only find noise
        # two requests at most: the model-name head with the folder's types, then without the
        # type filter (a file-level type, such as a VAE inside a Checkpoint model, hides from
        # it), or, with no folder to filter by, the longer query
        attempts = [(queries[0], types)] if queries else []
        if queries and types:
            attempts.append((queries[0], []))
        elif len(queries) > 1:
            attempts.append((queries[1], []))
        for query, filter_types in attempts:
            items = self.search_models(query, filter_types)
            results.extend(self._match_items(items, reference.filename, folder, reference.filename))
            if any(r.confidence >= ranking.EXACT_TYPE_UNKNOWN for r in results):
                break
        if known and _HEX64.match(known):
            results = [ranking.apply_known_hash(r, known) for r in results]
        return results

    def _resolve_hash(self, reference: ModelReference, known: str) -> List[SearchResult]:
        version = self.version_by_hash(known)
        if not version:
            return []
        model = dict(_dict(version.get("model")))
        model.setdefault("id", version.get("modelId"))
        wanted = known.upper()
        for file in _list(version.get("files")):
            hashes = {str(v).upper() for v in _dict(_dict(file).get("hashes")).values() if v}
            if wanted in hashes:
                full = len(known) == 64
                reason = "sha256 match on Civitai" if full else f"hash {known} matches on Civitai"
                result = self.make_result(model, version, file, folder=reference.expected_directory,
                                          confidence=ranking.HASH_MATCH if full else 0.97, reason=reason,
                                          save_as=reference.filename)
                return [result] if result else []
        return []

    def _match_items(self, items, wanted: str, folder: Optional[str], save_as: Optional[str]) -> List[SearchResult]:
        out: List[SearchResult] = []
        for model, version, file in self._iter_files(items):
            cand_folder = folder_for_civitai(model.get("type"), file.get("type"))
            fits = folder_fits(model.get("type"), file.get("type"), folder)
            match = ranking.name_match(wanted, str(file["name"]), folder_fits=fits)
            if match is None:
                continue
            conf, words = match
            where = f"{model.get('name')} {version.get('name') or ''}".strip()
            result = self.make_result(model, version, file, folder=folder or cand_folder, confidence=conf,
                                      reason=f"{words} on Civitai ({where})", save_as=save_as)
            if result:
                out.append(result)
        return out

    def search(self, query: str, folder: Optional[str] = None) -> List[SearchResult]:
        """A file name is matched against files; free text against model names."""
        types = civitai_types_for(folder)
        if names.has_model_extension(query):
            results: List[SearchResult] = []
            for q in names.civitai_queries(query):
                results.extend(self._match_items(self.search_models(q, types), query, folder,
                                                 names.basename(query)))
                if any(r.confidence >= ranking.EXACT_TYPE_UNKNOWN for r in results):
                    break
            return results
        out: List[SearchResult] = []
        # "flux fusion fp16": the precision chooses the file, model names rarely carry it
        fp = names.precision(query)
        text = names.without_precision(query) if fp else query
        for model in self.search_models(text or query, types):
            versions = [v for v in _list(model.get("modelVersions")) if isinstance(v, dict)]
            if not versions:
                continue
            version = versions[0]  # newest first
            file = pick_file(_list(version.get("files")), fp)
            if file is None:
                continue
            sim = names.similarity(query, str(model.get("name", "")))
            conf = min(ranking.FUZZY_MAX, 0.4 + 0.35 * sim)
            cand_folder = folder or folder_for_civitai(model.get("type"), file.get("type"))
            result = self.make_result(model, version, file, folder=cand_folder, confidence=conf,
                                      reason=f"model name matches the search {query!r} on Civitai")
            if result:
                out.append(result)
        return out

    def get_model_details(self, model_id: str) -> ModelDetails:
        mid = _int(str(model_id).strip())
        if mid is None:
            raise ValidationError(f"a Civitai model id is a number, not {model_id!r}")
        model = self.model(mid)
        folder = MODEL_TYPE_TO_FOLDER.get(str(model.get("type")))
        versions = []
        for version in _list(model.get("modelVersions")):
            if not isinstance(version, dict):
                continue
            files = []
            for file in _list(version.get("files")):
                if not isinstance(file, dict) or _int(version.get("id")) is None:
                    continue
                meta = _dict(file.get("metadata"))
                files.append({
                    "name": file.get("name"),
                    "file_id": _int(file.get("id")),
                    "type": file.get("type"),
                    "folder": folder_for_civitai(model.get("type"), file.get("type")),
                    "size_bytes": _size_bytes(file),
                    "sha256": _sha256(file),
                    "format": meta.get("format"),
                    "fp": meta.get("fp"),
                    "primary": file.get("primary") is True,
                    "pickle": names.is_pickle(str(file.get("name", ""))) or meta.get("format") == "PickleTensor",
                    "download_url": self.download_url(int(version["id"]), _int(file.get("id"))),
                })
            versions.append({
                "id": _int(version.get("id")),
                "name": version.get("name"),
                "base_model": version.get("baseModel"),
                "published_at": version.get("publishedAt"),
                "early_access_until": version.get("earlyAccessEndsAt"),
                "trained_words": _list(version.get("trainedWords")),
                "files": files,
            })
        stats = _dict(model.get("stats"))
        return ModelDetails(
            backend=NAME,
            model_id=str(mid),
            name=str(model.get("name") or mid),
            model_type=type_for(folder) if folder else str(model.get("type") or "unknown"),
            description=_strip_html(str(model.get("description") or "")),
            page_url=self.page_url(mid),
            files=versions[0]["files"] if versions else [],
            versions=versions,
            metadata={
                "civitai_type": model.get("type"),
                "folder": folder,
                "nsfw": bool(model.get("nsfw")),
                "tags": [t for t in _list(model.get("tags")) if isinstance(t, str)],
                "creator": _dict(model.get("creator")).get("username"),
                "downloads": _int(stats.get("downloadCount")) or 0,
                "allow_commercial_use": commercial_use(model.get("allowCommercialUse")),
            },
        )


def _strip_html(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()
