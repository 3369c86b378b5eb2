"""Model search: ``ModelSearch`` and the ``SearchBackend`` protocol.

Modules: ``http`` (the one HTTP layer: session, retries, status -> exception), ``cache``
(SQLite response cache), ``names`` (file-name normalisation and similarity), ``ranking``
(confidence scale), ``civitai``, ``huggingface``, ``workflow_backend``, ``known_models`` (the
known-model index; ``index_build``, ``index_refresh``, ``index_backend``), ``pasted`` (pasted URLs)
and ``search``.
Nothing is imported eagerly beyond these modules; huggingface_hub is imported on first use.
"""

from .search import BUILTIN_BACKENDS, ModelSearch, SearchBackend

__all__ = ["ModelSearch", "SearchBackend", "BUILTIN_BACKENDS"]
