"""Which folders ComfyUI searches for each model folder key, read the way ComfyUI reads them.

Outside ComfyUI we rebuild what its ``folder_paths.folder_names_and_paths`` would hold:

* the built-in ``models/<sub>`` folders of each key (``diffusion_models`` also reads
  ``models/unet``, ``text_encoders`` also ``models/clip``, ``controlnet`` also
  ``models/t2i_adapter``), plus every other sub-folder of ``models/`` as its own key;
* the entries of ``extra_model_paths.yaml``, parsed like ComfyUI's ``utils/extra_config.py``:
  one section per install, ``base_path`` (``~`` and ``$VARS`` expanded; relative to the
  yaml's own folder), one or several paths per key (a ``|`` block holds one per line),
  relative paths joined to ``base_path`` or else to the yaml's folder, ``is_default`` paths
  put first; keys mapped by ComfyUI's ``map_legacy`` (``unet``, ``clip``), duplicate paths
  kept once (an ``is_default`` repeat moves to the front).

Keys a popular pack registers over other keys' folders follow them (``ALIASED_KEYS``):
ComfyUI-GGUF sets ``unet_gguf`` to the ``diffusion_models`` folders and ``clip_gguf`` to the
``text_encoders`` folders (yaml entries included), listing only ``.gguf`` files there.

One deliberate difference from ComfyUI's built-in table: the canonical folder is listed
before its legacy alias (``models/diffusion_models`` before ``models/unet``), because the
first folder of a key is where downloads go and new installs use the canonical names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, MutableMapping, Optional, Sequence, Union

from .errors import ConfigurationError
from .folders import MODEL_FOLDERS
from .logs import get_logger

log = get_logger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
FolderMap = Dict[str, List[Path]]

EXTRA_PATHS_FILE = "extra_model_paths.yaml"

#: ComfyUI's ``folder_paths.map_legacy``: applied to every key added from a yaml file.
#: (``t2i_adapter`` is not in it: ComfyUI only lists ``models/t2i_adapter`` under controlnet.)
COMFYUI_LEGACY_KEYS: Dict[str, str] = {"unet": "diffusion_models", "clip": "text_encoders"}

#: Built-in sub-folders of ``models/`` per key, canonical name first.
DEFAULT_SUBFOLDERS: Dict[str, tuple] = {key: (key,) for key in MODEL_FOLDERS}
DEFAULT_SUBFOLDERS.update({
    "diffusion_models": ("diffusion_models", "unet"),
    "text_encoders": ("text_encoders", "clip"),
    "controlnet": ("controlnet", "t2i_adapter"),
})

#: keys a pack sets to another key's folders at import (ComfyUI-GGUF's
#: ``update_folder_names_and_paths``: ``folder_names_and_paths[key] = (orig or base, {".gguf"})``)
ALIASED_KEYS: Dict[str, str] = {"unet_gguf": "diffusion_models", "clip_gguf": "text_encoders"}
DEFAULT_SUBFOLDERS.update({alias: DEFAULT_SUBFOLDERS[key] for alias, key in ALIASED_KEYS.items()})

#: keys of ComfyUI's folder table (and of yaml files) that do not hold models
NON_MODEL_KEYS = frozenset({"custom_nodes", "download_model_base", "animatediff_video_formats"})


@dataclass(frozen=True)
class ExtraPath:
    """One folder added by an ``extra_model_paths.yaml`` entry."""

    section: str  # top-level name of the yaml section (``comfyui``, ``a111`` ...)
    folder: str  # folder key after ComfyUI's legacy mapping
    path: Path  # absolute, normalised
    is_default: bool = False


def read_extra_model_paths(yaml_path: PathLike) -> List[ExtraPath]:
    """Parse an ``extra_model_paths.yaml`` into its entries, in file order.

    Raises ``ConfigurationError`` (setting ``extra_model_paths``) for unreadable YAML or
    values ComfyUI could not use either (a key whose value is not a string).
    """
    import yaml  # PyYAML, imported here so importing this module costs nothing

    path = Path(yaml_path).expanduser()
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigurationError("extra_model_paths", f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigurationError("extra_model_paths", f"{path}: {_one_line(exc)}") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigurationError("extra_model_paths", f"{path}: expected sections of key: path entries")

    yaml_dir = os.path.dirname(os.path.abspath(path))
    entries: List[ExtraPath] = []
    for section, conf in data.items():
        if conf is None:
            continue
        where = f"{path}: section {section!r}"
        if not isinstance(conf, dict):
            raise ConfigurationError("extra_model_paths", f"{where} must map folder keys to paths")
        conf = dict(conf)
        base_path: Optional[str] = None
        if "base_path" in conf:
            raw = conf.pop("base_path")
            if raw is not None and not isinstance(raw, str):
                raise ConfigurationError("extra_model_paths", f"{where}: base_path must be a string")
            if raw:
                base_path = os.path.expandvars(os.path.expanduser(raw))
                if not os.path.isabs(base_path):
                    base_path = os.path.abspath(os.path.join(yaml_dir, base_path))
        is_default = bool(conf.pop("is_default", False))
        for key, value in conf.items():
            if not isinstance(value, str):
                raise ConfigurationError(
                    "extra_model_paths", f"{where}: {key!r} must be a path or a '|' block of paths")
            for line in value.split("\n"):
                if not line:
                    continue
                # exactly ComfyUI's rules: join to base_path (an absolute line wins), else
                # relative to the yaml's folder; no ~/$VAR expansion of the lines themselves
                if base_path:
                    full = os.path.join(base_path, line)
                elif not os.path.isabs(line):
                    full = os.path.abspath(os.path.join(yaml_dir, line))
                else:
                    full = line
                folder = COMFYUI_LEGACY_KEYS.get(str(key), str(key))
                entries.append(ExtraPath(str(section), folder, Path(os.path.normpath(full)), is_default))
    return entries


def add_model_folder_path(folders: MutableMapping[str, List[Path]], folder: str,
                          path: PathLike, is_default: bool = False) -> None:
    """Add ``path`` to ``folders[folder]`` as ComfyUI's ``folder_paths.add_model_folder_path`` does."""
    folder = COMFYUI_LEGACY_KEYS.get(folder, folder)
    p = Path(path)
    paths = folders.setdefault(folder, [])
    if p in paths:
        if is_default and paths[0] != p:
            paths.remove(p)
            paths.insert(0, p)
    elif is_default:
        paths.insert(0, p)
    else:
        paths.append(p)


def default_folder_paths(comfyui_root: PathLike) -> FolderMap:
    """The folders a fresh ComfyUI at ``comfyui_root`` searches, before any yaml file.

    Every known key gets its ``models/<sub>`` folders (whether they exist or not, as in
    ComfyUI); every other existing sub-folder of ``models/`` becomes a key of its own.
    """
    models = Path(os.path.abspath(os.fspath(Path(comfyui_root).expanduser()))) / "models"
    folders: FolderMap = {key: [models / sub for sub in subs] for key, subs in DEFAULT_SUBFOLDERS.items()}
    claimed = {sub for subs in DEFAULT_SUBFOLDERS.values() for sub in subs}
    try:
        with os.scandir(models) as it:
            extra = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        extra = []
    for name in extra:
        if name not in claimed and name not in NON_MODEL_KEYS:
            folders[name] = [models / name]
    return folders


def apply_extra_paths(folders: MutableMapping[str, List[Path]], entries: Iterable[ExtraPath]) -> None:
    """Add yaml entries to a folder map, in order (so the last ``is_default`` one ends first)."""
    for entry in entries:
        log.debug("extra search path %s %s", entry.folder, entry.path)
        add_model_folder_path(folders, entry.folder, entry.path, entry.is_default)


def comfyui_folder_paths(comfyui_root: PathLike,
                         extra_configs: Optional[Sequence[PathLike]] = None) -> FolderMap:
    """Folder key -> folders, like ComfyUI's ``folder_names_and_paths`` for this install.

    ``extra_configs`` defaults to ``<root>/extra_model_paths.yaml`` when that file exists
    (what ComfyUI's ``main.py`` loads); pass a list to read others (``--extra-model-paths-config``).
    """
    root = Path(comfyui_root).expanduser()
    folders = default_folder_paths(root)
    if extra_configs is None:
        candidate = root / EXTRA_PATHS_FILE
        extra_configs = [candidate] if candidate.is_file() else []
    for yaml_path in extra_configs:
        apply_extra_paths(folders, read_extra_model_paths(yaml_path))
    apply_aliases(folders)
    return folders


def apply_aliases(folders: MutableMapping[str, List[Path]]) -> None:
    """Give each ``ALIASED_KEYS`` key its target's folders, as the pack does after the yaml files
    were read (its own folders only when the target has none, as in ``orig or base``)."""
    for alias, key in ALIASED_KEYS.items():
        if folders.get(key):
            folders[alias] = list(folders[key])


def model_folders_only(folders: Mapping[str, Sequence[Any]]) -> FolderMap:
    """Drop keys that do not hold models; paths as absolute ``Path`` objects, duplicates once."""
    out: FolderMap = {}
    for key, paths in folders.items():
        if key in NON_MODEL_KEYS:
            continue
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        clean: List[Path] = []
        for p in paths:
            ap = Path(os.path.abspath(os.fspath(Path(p).expanduser())))
            if ap not in clean:
                clean.append(ap)
        out[key] = clean
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


__all__ = [
    "EXTRA_PATHS_FILE",
    "COMFYUI_LEGACY_KEYS",
    "DEFAULT_SUBFOLDERS",
    "ALIASED_KEYS",
    "apply_aliases",
    "NON_MODEL_KEYS",
    "ExtraPath",
    "read_extra_model_paths",
    "add_model_folder_path",
    "default_folder_paths",
    "apply_extra_paths",
    "comfyui_folder_paths",
    "model_folders_only",
]
