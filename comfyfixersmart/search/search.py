"""``ModelSearch``: ranked candidates for model files from the workflow itself, Civitai and
Hugging Face, or any object implementing ``SearchBackend``.

Resolving a reference asks the backends in order of evidence strength (``index``: the
known-model index of official templates and ComfyUI-Manager, its URL checked on the hub; ``workflow``:
the URL/hash the workflow carries; ``civitai``: hash, then name; ``huggingface``: name,
LFS sha256) and stops once a candidate is decisive (confidence >= 0.95).  The folder and
file name to save under always come from the reference, never from the candidate.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

from ..datamodel import ModelDetails, ModelReference, Resolution, SearchResult
from ..errors import APISearchError, ComfyFixerError, ValidationError
from ..folders import canonical_folder, folder_key_for, type_for
from ..logs import get_logger
from ..security import redact_text, validate_relative_path
from . import names, ranking
from .cache import ResponseCache
from .civitai import CivitaiBackend
from .http import ApiClient
from .huggingface import HuggingFaceBackend
from .index_backend import IndexBackend
from .known_models import KnownModelIndex
from .workflow_backend import WorkflowBackend

log = get_logger(__name__)

#: asked in this order: the known-model index first (official templates, ComfyUI-Manager's list)
BUILTIN_BACKENDS = ("index", "workflow", "civitai", "huggingface")
#: a candidate this sure ends the lookup: later backends are not asked
DECISIVE = 0.95


@runtime_checkable
class SearchBackend(Protocol):
    """What ``ModelSearch.add_backend`` accepts.

    ``name``: unique backend name (used in ``backends=[...]`` and ``SearchResult.backend``).
    ``search(query, folder)``: candidates for a free-text query or a file name; ``folder`` is
    a ComfyUI folder key or None.  ``resolve(reference)``: candidates for a ModelReference
    (it knows filename, folder, url, hash).  ``get_model_details(model_id)``: details of one
    model.  Raise exceptions of ``comfyfixersmart.errors`` (APISearchError & co.) on failure;
    return ``[]`` when nothing is found.  Methods may be called from several threads.
    """

    name: str

    def search(self, query: str, folder: Optional[str]) -> List[SearchResult]: ...

    def resolve(self, reference: ModelReference) -> List[SearchResult]: ...

    def get_model_details(self, model_id: str) -> ModelDetails: ...


BackendSpec = Union[str, SearchBackend]


class ModelSearch:
    """Search and resolve model files across backends.

    ``backends``: names of built-ins (``index``, ``workflow``, ``civitai``, ``huggingface``; all by
    default) and/or SearchBackend objects, in the order they are asked.
    """

    def __init__(self, config=None, backends: Optional[Sequence[BackendSpec]] = None):
        if config is None:
            from ..settings import get_config

            config = get_config()
        self.config = config
        self.cache = ResponseCache.for_config(config)
        self.api = ApiClient(config, self.cache)
        self._backends: Dict[str, SearchBackend] = {}
        #: errors of the last ``search`` call (dicts from ``exc.to_dict()``)
        self.last_errors: List[Dict[str, Any]] = []
        self._index: Any = None
        for spec in BUILTIN_BACKENDS if backends is None else backends:
            self.add_backend(spec)

    # -- backends -------------------------------------------------------------------
    @property
    def backends(self) -> List[str]:
        """Names of the registered backends, in the order they are asked."""
        return list(self._backends)

    def _builtin(self, name: str) -> SearchBackend:
        if name == "civitai":
            return CivitaiBackend(self.config, self.api)
        if name == "huggingface":
            return HuggingFaceBackend(self.config, self.api)
        if name == "index":
            civ = self._backends.get("civitai")
            hf = self._backends.get("huggingface")
            return IndexBackend(
                self.config,
                hf if isinstance(hf, HuggingFaceBackend) else HuggingFaceBackend(self.config, self.api),
                civ if isinstance(civ, CivitaiBackend) else CivitaiBackend(self.config, self.api),
            )
        if name == "workflow":
            civ = self._backends.get("civitai")
            hf = self._backends.get("huggingface")
            return WorkflowBackend(
                self.config,
                civ if isinstance(civ, CivitaiBackend) else CivitaiBackend(self.config, self.api),
                hf if isinstance(hf, HuggingFaceBackend) else HuggingFaceBackend(self.config, self.api),
            )
        raise ValidationError(f"unknown backend {name!r}; built-in backends are: {', '.join(BUILTIN_BACKENDS)}")

    def add_backend(self, backend: BackendSpec) -> None:
        """Register a built-in by name or any ``SearchBackend`` (replaces one of the same name)."""
        if isinstance(backend, str):
            backend = self._builtin(backend.strip().lower())
        if not isinstance(backend, SearchBackend) or not isinstance(getattr(backend, "name", None), str) \
                or not backend.name:
            raise ValidationError("a search backend needs a 'name' and search(), resolve(), get_model_details()")
        self._backends[backend.name] = backend

    def _select(self, backends: Optional[Sequence[BackendSpec]]) -> List[SearchBackend]:
        if backends is None:
            return list(self._backends.values())
        if isinstance(backends, str):
            backends = [backends]
        out = []
        for spec in backends:
            if isinstance(spec, str):
                key = spec.strip().lower()
                if key not in self._backends:
                    if key in BUILTIN_BACKENDS:
                        self.add_backend(key)
                    else:
                        raise ValidationError(f"unknown backend {spec!r}; available: {', '.join(self._backends)}")
                out.append(self._backends[key])
            elif isinstance(spec, SearchBackend):
                out.append(spec)
            else:
                raise ValidationError(f"not a backend: {spec!r}")
        return out

    # -- search -----------------------------------------------------------------------
    def search(self, query: str, model_type: Optional[str] = None,
               backends: Optional[Sequence[BackendSpec]] = None) -> List[SearchResult]:
        """Candidates for ``query`` (free text, or a file name with or without a sub-folder),
        sorted by confidence.  ``model_type``: a type name (``checkpoint``, ``lora``) or a
        folder key (``checkpoints``, ``diffusion_models``).  Raises the first backend error
        only when every backend failed; otherwise failures are in ``last_errors``."""
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("the search query is empty")
        query = query.strip()
        folder = None
        if model_type:
            # any well-formed folder key is a type: one ComfyUI does not know lives in models/<key>
            folder = folder_key_for(model_type)
        save_as = None
        if names.has_model_extension(query):
            save_as = validate_relative_path(query)
        results: List[SearchResult] = []
        errors: List[ComfyFixerError] = []
        selected = self._select(backends)
        asked = 0
        for backend in selected:
            if backend.name == "workflow":
                continue
            asked += 1
            try:
                results.extend(backend.search(query, folder))
            except ComfyFixerError as exc:
                errors.append(exc)
                log.info("%s search failed: %s", backend.name, exc)
        self.last_errors = [self._error_dict(e, getattr(e, "backend", None) or "?") for e in errors]
        if errors and not results and len(errors) == asked:
            raise errors[0]
        for r in results:
            if folder:
                r.directory, r.model_type = folder, type_for(folder)
            if save_as:
                r.save_as = save_as
        return ranking.rank(results)

    def get_model_details(self, backend: str, model_id: Any) -> ModelDetails:
        """Details of one model on ``backend`` (``civitai``: model id; ``huggingface``: repo id)."""
        (chosen,) = self._select([backend])
        return chosen.get_model_details(str(model_id))

    # -- resolution ----------------------------------------------------------------------
    def resolve(self, reference: ModelReference, backends: Optional[Sequence[BackendSpec]] = None, *,
                known_sha256: Optional[str] = None) -> List[SearchResult]:
        """Ranked candidates for one reference.  ``known_sha256``: the hash of a local file of
        the same name found elsewhere (a match then has confidence 1.0).  If nothing was
        found and a backend failed, that failure is raised."""
        candidates, errors = self._resolve_one(reference, self._select(backends), known_sha256)
        if not candidates and errors:
            raise errors[0]
        return candidates

    def resolve_many(self, references: Iterable[ModelReference], backends: Optional[Sequence[BackendSpec]] = None,
                     *, known_hashes: Optional[Mapping[str, str]] = None) -> List[Resolution]:
        """One Resolution per reference (same order), looked up concurrently with at most
        ``config.search_concurrency`` at a time.  Backend failures are recorded in
        ``Resolution.errors`` and never stop the other lookups."""
        refs = list(references)
        selected = self._select(backends)
        known_hashes = known_hashes or {}
        unique: Dict[str, ModelReference] = {}
        for ref in refs:
            unique.setdefault(ref.key, ref)

        def known_for(ref: ModelReference) -> Optional[str]:
            for key in (ref.key, ref.filename, ref.basename):
                if key in known_hashes:
                    return known_hashes[key]
            return None

        def work(ref: ModelReference) -> Tuple[List[SearchResult], List[ComfyFixerError]]:
            return self._resolve_one(ref, selected, known_for(ref))

        outcome: Dict[str, Tuple[List[SearchResult], List[ComfyFixerError]]] = {}
        workers = max(1, min(self.config.search_concurrency, len(unique)))
        if workers == 1:
            for key, ref in unique.items():
                outcome[key] = work(ref)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="comfyfixer-search") as pool:
                futures = {key: pool.submit(work, ref) for key, ref in unique.items()}
                for key, future in futures.items():
                    outcome[key] = future.result()

        out: List[Resolution] = []
        used: set = set()
        for ref in refs:
            candidates, errors = outcome[ref.key]
            if ref.key in used:  # duplicates get their own copies: callers may mutate results
                candidates = copy.deepcopy(candidates)
            used.add(ref.key)
            out.append(Resolution(reference=ref, candidates=candidates,
                                  errors=[self._error_dict(e, getattr(e, "backend", None) or "?") for e in errors]))
        return out

    def _resolve_one(self, reference: ModelReference, selected: List[SearchBackend],
                     known_sha256: Optional[str]) -> Tuple[List[SearchResult], List[ComfyFixerError]]:
        if not isinstance(reference, ModelReference):
            raise ValidationError(f"expected a ModelReference, got {type(reference).__name__}")
        ref = reference
        if known_sha256 and not ref.hash:
            ref = copy.copy(reference)
            ref.hash, ref.hash_type = known_sha256.strip().lower(), "sha256"
        known = ref.hash.lower() if ref.hash and len(ref.hash) == 64 else None
        folder = canonical_folder(ref.expected_directory)
        candidates: List[SearchResult] = []
        errors: List[ComfyFixerError] = []
        # The index and the workflow's own URL first; then catalogue lookups (publisher trees:
        # listings cached and shared by every reference): a sure hit there spares the name
        # searches of every backend; then the others in their order.
        strong = [b for b in selected if b.name in ranking.STRONG_BACKENDS]
        early = [b for b in selected if b not in strong and callable(getattr(b, "resolve_known", None))]
        passes: List[Tuple[SearchBackend, Any]] = [(b, b.resolve) for b in strong]
        passes += [(b, getattr(b, "resolve_known")) for b in early]
        passes += [(b, getattr(b, "resolve_rest", b.resolve) if b in early else b.resolve)
                   for b in selected if b not in strong]
        failed: set = set()
        for backend, method in passes:
            if any(c.confidence >= DECISIVE or c.metadata.get("settled") for c in candidates):
                break
            if backend.name in failed:
                continue  # it failed a moment ago (after its own retries): do not ask it again
            try:
                found = list(method(ref) or [])
            except ComfyFixerError as exc:
                if getattr(exc, "backend", None) is None:
                    setattr(exc, "backend", backend.name)
                failed.add(backend.name)
                errors.append(exc)
                log.info("%s could not resolve %s: %s", backend.name, ref.key, exc)
                continue
            except Exception as exc:  # a backend bug must not abort the other lookups
                failed.add(backend.name)
                log.warning("%s failed on %s", backend.name, ref.key, exc_info=True)
                errors.append(APISearchError(f"{backend.name}: unexpected {type(exc).__name__}: "
                                             f"{redact_text(str(exc))[:200]}", backend=backend.name))
                continue
            for r in found:
                # the folder and the name to save under come from the reference
                r.directory, r.save_as, r.model_type = folder, ref.filename, type_for(folder)
                r.confidence = round(max(0.0, min(1.0, float(r.confidence))), 4)
                r.metadata.setdefault("reason", f"candidate from {backend.name}")
                if known:
                    ranking.apply_known_hash(r, known)
                access = r.metadata.get("access_error")
                if isinstance(access, dict):
                    errors.append(_RecordedError(access, backend.name))
            candidates.extend(found)
        return ranking.settle(candidates, ref, folder, index=self._known_index()), errors

    def _known_index(self):
        """The known-model index for corroborating other backends' candidates (None if unusable)."""
        if self._index is None:
            try:
                index = KnownModelIndex.for_config(self.config)
                len(index)
                self._index = index
            except (ComfyFixerError, OSError, ValueError) as exc:
                log.info("known-model index not available for corroboration: %s", exc)
                self._index = False
        return self._index or None

    @staticmethod
    def _error_dict(exc: ComfyFixerError, backend: str) -> Dict[str, Any]:
        if isinstance(exc, _RecordedError):
            return dict(exc.data)
        data = exc.to_dict()
        data.setdefault("backend", backend)
        return data

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP session and the cache database."""
        self.api.close()
        self.cache.close()

    def __enter__(self) -> "ModelSearch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _RecordedError(APISearchError):
    """An error a backend recorded on a candidate (e.g. a gated repo) rather than raised."""

    def __init__(self, data: Dict[str, Any], backend: str):
        self.data = dict(data)
        self.data.setdefault("backend", backend)
        super().__init__(str(data.get("message", "")), backend=backend, status=data.get("status"))
