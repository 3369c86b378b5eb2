"""Workflow scanning: read UI/API workflows (JSON, PNG, WebP) and list the model files they need.

Modules: ``loading`` (file -> dict), ``graph`` (formats, links, subgraphs, group nodes),
``loaders`` (the loader tables), ``prompts`` (embedding / lora tags), ``metadata`` (embedded
``models`` entries), ``infer`` (the folder of an unknown node's file), ``packs`` (which
custom-node pack provides a node type), ``extract`` (graph -> ModelReference), ``validate``
and ``scanner``.
"""

from .loaders import LoaderSpec, LoaderTable, build_table
from .loading import load_workflow
from .packs import missing_packs
from .scanner import WorkflowScanner

__all__ = ["LoaderSpec", "LoaderTable", "WorkflowScanner", "build_table", "load_workflow", "missing_packs"]
