"""ComfyFixerSmart: find, download and verify the models a ComfyUI workflow needs.

Importing the package does no work: names are loaded on first use (PEP 562), and
``comfyfixersmart.config`` is the process-wide default ``Config``, read from the
environment the first time it is touched.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "2.0.0"

# public name -> module that defines it
_EXPORTS = {
    # settings
    "Config": "settings",
    "get_config": "settings",
    "set_config": "settings",
    # utilities
    "save_json_file": "fileutils",
    "ensure_directory": "fileutils",
    "get_logger": "logs",
    # components
    "ComfyFixerCore": "core",
    "DownloadManager": "download",
    "StateManager": "state",
    "WorkflowScanner": "scan",
    "load_workflow": "scan",
    "ModelSearch": "search",
    "ModelInventory": "inventory",
    "HashCache": "hashing",
    "sha256_file": "hashing",
    "read_extra_model_paths": "extra_paths",
    "SearchBackend": "search",
    "annotate_workflow": "annotate",
    "annotate_workflow_with_count": "annotate",
    "sources_from_analysis": "annotate",
    "ModelSource": "annotate",
    "FixerRoutes": "service.routes",
    "JobManager": "service.jobs",
    # data classes
    "ModelReference": "datamodel",
    "ModelLocation": "datamodel",
    "WorkflowData": "datamodel",
    "ValidationResult": "datamodel",
    "ModelInfo": "datamodel",
    "SearchResult": "datamodel",
    "ModelDetails": "datamodel",
    "Resolution": "datamodel",
    "AnalysisResult": "datamodel",
    "DownloadResult": "datamodel",
    "DownloadRecord": "datamodel",
    "ProgressEvent": "datamodel",
    "Failure": "datamodel",
    "WorkflowRun": "datamodel",
}
# exceptions
for _name in (
    "ComfyFixerError", "ConfigurationError", "WorkflowParseError", "NotAWorkflowError", "ValidationError",
    "UnsafePathError", "APISearchError", "NetworkError", "RateLimitedError",
    "AuthRequiredError", "AccessDeniedError", "GatedRepoError", "EarlyAccessError",
    "NotFoundError", "DownloadError", "IntegrityError", "InsufficientSpaceError",
    "HostNotAllowedError", "FileExistsConflictError", "DownloadCancelledError", "StateError",
    "DownloadStalledError", "NotAModelFileError",
    "JobNotFoundError", "JobConflictError", "JobInterruptedError", "RequestTooLargeError", "LowConfidenceError",
    "UnsupportedMediaTypeError", "NotAFileUrlError", "ForeignHostError",
):
    _EXPORTS[_name] = "errors"
del _name

__all__ = ["__version__", "config", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "config":
        from .settings import get_config

        return get_config()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'comfyfixersmart' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
