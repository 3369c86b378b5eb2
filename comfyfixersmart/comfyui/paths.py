"""Model folders as ComfyUI sees them: ``folder_paths.folder_names_and_paths``."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Dict, FrozenSet, List

from ..write_policy import model_folder_table

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
        return model_folder_table(self.readable(), self.protected_roots())

    def readable(self) -> Dict[str, List[str]]:
        """Every model key's folders before the write policy: a pack's own folder inside
        custom_nodes included (the inventory reads it; nothing is written there)."""
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

    def extensions(self) -> Dict[str, FrozenSet[str]]:
        """Each model key's own extension set (``folder_names_and_paths[key][1]``): the files
        ComfyUI lists under that key (``configs`` only ``.yaml``, GGUF's keys only ``.gguf``)."""
        out: Dict[str, FrozenSet[str]] = {}
        for key, value in list(self._fp.folder_names_and_paths.items()):
            if key in NON_MODEL_KEYS:
                continue
            try:
                exts = value[1]
            except (TypeError, IndexError, KeyError):
                continue  # an odd entry: the key takes the bundled or configured set
            if isinstance(exts, (set, frozenset, list, tuple)):
                out[str(key)] = frozenset(str(e) for e in exts)
        return out

    def known_keys(self) -> List[str]:
        """Every key of ComfyUI's folder table, those refused as download targets included."""
        return [str(k) for k in list(self._fp.folder_names_and_paths)]

    def protected_roots(self) -> List[str]:
        """ComfyUI's output, input and temp folders (``--output-directory`` etc. applied)
        and its custom_nodes folders: never a download target."""
        roots: List[str] = []
        for getter in ("get_output_directory", "get_input_directory", "get_temp_directory"):
            fn = getattr(self._fp, getter, None)
            if callable(fn):
                try:
                    roots.append(os.path.realpath(os.fspath(fn())))
                except Exception:  # an odd build: the key checks still apply
                    continue
        try:
            roots.extend(os.path.realpath(os.fspath(p)) for p in self._fp.get_folder_paths("custom_nodes"))
        except Exception:
            pass
        return roots

    def canonical(self, name: str) -> str:
        """A legacy folder name (``unet``, ``clip``) mapped the way ComfyUI maps it."""
        map_legacy = getattr(self._fp, "map_legacy", None)
        mapped = map_legacy(name) if callable(map_legacy) else name
        # older ComfyUI releases only map unet; our table knows clip and t2i_adapter too
        return canonical_folder(mapped) if mapped == name else mapped
