"""Workflow scanning: read UI/API workflows (JSON, PNG, WebP) and list the model files they need.

Modules: ``loading`` (file -> dict), ``graph`` (formats, links, subgraphs, group nodes),
``loaders`` (the loader tables), ``prompts`` (embedding / lora tags), ``metadata`` (embedded
``models`` entries), ``extract`` (graph -> ModelReference), ``validate`` and ``scanner``.
"""

from .loaders import LoaderSpec, LoaderTable, build_table
from .loading import load_workflow
from .scanner import WorkflowScanner

__all__ = ["LoaderSpec", "LoaderTable", "WorkflowScanner", "build_table", "load_workflow"]
