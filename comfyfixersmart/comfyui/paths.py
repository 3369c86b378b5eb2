"""Model folders as ComfyUI sees them: ``folder_paths.folder_names_and_paths``."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Dict, List

from ..extra_paths import NON_MODEL_KEYS
from ..folders import canonical_folder


class ComfyFolders:
    """Folders provider for ``FixerRoutes``: every folder key ComfyUI knows, read on each call.

    ComfyUI has already merged ``extra_model_paths.yaml`` and the command-line paths into
    ``folder_names_and_paths``, and custom nodes may add keys at any time, so nothing is
    cached.  The first path of a key is where ComfyUI (and we) put new files.
    """

    def __init__(self, folder_paths: ModuleType):
        self._fp = folder_paths

    def __call__(self) -> Dict[str, List[str]]:
        table: Dict[str, List[str]] = {}
        for key in list(self._fp.folder_names_and_paths):
            if key in NON_MODEL_KEYS:  # custom_nodes holds code, never a download target
                continue
            paths: List[str] = []
            for path in self._fp.get_folder_paths(key):
                path = os.path.abspath(os.fspath(path))
                if path not in paths:
                    paths.append(path)
            table[key] = paths
        return table

    def canonical(self, name: str) -> str:
        """A legacy folder name (``unet``, ``clip``) mapped the way ComfyUI maps it."""
        map_legacy = getattr(self._fp, "map_legacy", None)
        mapped = map_legacy(name) if callable(map_legacy) else name
        # older ComfyUI releases only map unet; our table knows clip and t2i_adapter too
        return canonical_folder(mapped) if mapped == name else mapped
