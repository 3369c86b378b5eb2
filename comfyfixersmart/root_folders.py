"""The model folders of a ComfyUI root as the whole install sees them, and each key's extensions.

``extra_paths.comfyui_folder_paths`` gives ComfyUI's own table (``models/`` and the yaml files).
On top of it, custom-node packs register folders at import; the static node reader
(``scan.nodedefs``) records those whose path it can read (``os.path.join(os.path.dirname(__file__),
"models")``, ``Path(__file__).parent / "models"``, ``folder_paths.models_dir`` joins), and they are
added here in ComfyUI's order (appended after the built-in and yaml folders).

ComfyUI lists a folder key's files through that key's own extension set
(``folder_paths.folder_names_and_paths[key][1]``; ``filter_files_extensions``): most core keys use
``supported_pt_extensions``, ``configs`` only ``.yaml``, GGUF's keys only ``.gguf``.  The sets known
here come from ComfyUI's defaults (the bundled core table, read from ``folder_paths.py``), the keys
packs register (the bundled custom table), and with a root its own ``folder_paths.py`` and packs.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional

from .extra_paths import ALIASED_KEYS, FolderMap, add_model_folder_path, apply_aliases, comfyui_folder_paths
from .folders import canonical_folder
from .logs import get_logger

log = get_logger(__name__)

#: ComfyUI's ``folder_paths.supported_pt_extensions``
SUPPORTED_PT_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})
#: the sets of keys packs register over other keys' folders (ComfyUI-GGUF)
ALIAS_EXTENSIONS: Dict[str, FrozenSet[str]] = {"unet_gguf": frozenset({".gguf"}), "clip_gguf": frozenset({".gguf"})}
#: placeholder for ComfyUI's models folder in a registered path (``FileDefs.paths``)
MODELS_DIR = "{models_dir}"
#: extension sets that do not say which files are listed: unknown to the reader, or a key whose
#: entries are folders (``diffusers``); such keys take ``Config.model_extensions``
_NOT_FILE_SETS = (frozenset(), frozenset({"folder"}))

ExtensionMap = Dict[str, FrozenSet[str]]


def _clean(exts: Optional[Iterable[str]]) -> Optional[FrozenSet[str]]:
    if exts is None:
        return None
    out = frozenset(str(e).lower() for e in exts)
    return None if out in _NOT_FILE_SETS else out


@functools.lru_cache(maxsize=1)
def bundled_extensions() -> ExtensionMap:
    """Folder key -> extensions, from the bundled tables (ComfyUI's defaults, then packs' keys)."""
    from .scan.loaders import build_table

    out: ExtensionMap = {}
    try:
        folders = build_table().folders
    except Exception as exc:  # a broken installation: every key falls back to the setting
        log.warning("bundled folder extensions not read: %s", exc)
        folders = {}
    for key, exts in folders.items():
        clean = _clean(exts)
        if clean is not None:
            out.setdefault(canonical_folder(key), clean)
    out.update(ALIAS_EXTENSIONS)
    return out


def key_extensions(keys: Iterable[str], configured: Iterable[str],
                   known: Optional[Mapping[str, Optional[Iterable[str]]]] = None) -> ExtensionMap:
    """The extensions listed under each of ``keys``: ``known`` (a root's own reading, or the
    running ComfyUI's sets), else the bundled sets, else ``configured`` (``Config.model_extensions``).

    ``configured`` also filters the known sets, and extensions it adds beyond the default
    setting are listed under every key (a user who adds ``.weights`` wants those files seen).

    A key that others alias (``diffusion_models`` for GGUF's ``unet_gguf``) also lists its
    aliases' extensions: the bundled table names the GGUF loaders' folder ``diffusion_models``
    when the pack's own key is not known, and those files are in that folder all the same.
    """
    base = dict(bundled_extensions())
    for key, exts in (known or {}).items():
        clean = _clean(exts)
        if clean is not None:
            base[canonical_folder(key)] = clean
    from .settings import DEFAULT_MODEL_EXTENSIONS

    setting = frozenset(e.lower() for e in configured)
    added = setting - frozenset(DEFAULT_MODEL_EXTENSIONS)
    out: ExtensionMap = {}
    for key in keys:
        exts = base.get(key)
        if exts is None:
            out[key] = setting
            continue
        for alias, target in ALIASED_KEYS.items():
            if target == key:
                exts = exts | base.get(alias, frozenset())
        # "" (files without an extension, ComfyUI's classifiers) is not something to filter out
        out[key] = (exts & (setting | {""})) | added
    return out


def resolve_registered(path: str, models_dir: Path) -> Path:
    """A ``FileDefs.paths`` entry as a directory of this root."""
    if path == MODELS_DIR:
        return models_dir
    if path.startswith(MODELS_DIR + "/"):
        return models_dir.joinpath(*path[len(MODELS_DIR) + 1:].split("/"))
    return Path(path)


def root_folder_paths(root: os.PathLike | str, config: Any = None) -> tuple[FolderMap, ExtensionMap]:
    """``(folders, known extension sets)`` of the ComfyUI folder ``root``: ComfyUI's table with
    the yaml files, plus the folders its packs register where the reader can tell (only when
    ``config.read_node_sources`` is on).  The extension sets are those the root's own sources
    declare (its ``folder_paths.py``, its packs' registrations)."""
    root_path = Path(os.path.abspath(os.fspath(Path(root).expanduser())))
    folders = comfyui_folder_paths(root_path)
    known: Dict[str, Optional[Iterable[str]]] = {}
    fp = root_path / "folder_paths.py"
    try:
        from .scan.nodedefs import read_source

        if fp.is_file():
            known.update(read_source(fp.read_bytes(), str(fp)).folders)
    except (OSError, RecursionError, MemoryError) as exc:
        log.debug("%s not read: %s", fp, exc)
    if config is None or not getattr(config, "read_node_sources", True):
        return folders, known
    cache_dir = config.cache_dir if getattr(config, "cache_enabled", True) else None
    try:
        from .scan.rootdefs import read_root

        defs = read_root(root_path, cache_dir)
    except Exception as exc:  # the folders ComfyUI itself defines still hold
        log.warning("pack folders under %s not read: %s", root_path, exc)
        return folders, known
    models_dir = root_path / "models"
    added = False
    for pack in defs.packs.values():
        for key, exts in pack.folders.items():
            if exts is not None and canonical_folder(key) not in known:
                known[canonical_folder(key)] = exts
        for key, dirs in pack.paths.items():
            for d in dirs:
                add_model_folder_path(folders, key, resolve_registered(d, models_dir))
                added = True
    if added:
        apply_aliases(folders)  # GGUF's keys share the very list: later additions show there too
    return folders, known


__all__ = ["SUPPORTED_PT_EXTENSIONS", "bundled_extensions", "key_extensions", "root_folder_paths",
           "resolve_registered"]
