"""ComfyUI model folder keys, their legacy aliases and the model type names.

A *folder key* is what ComfyUI's ``folder_paths`` calls a folder (``checkpoints``,
``diffusion_models``...).  A *model type* is the singular, human name used in
reports and search filters (``checkpoint``, ``diffusion_model``...).  Both
spellings are accepted wherever a type is asked for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

from .errors import ValidationError

#: Folder keys of ComfyUI v0.3.x ``folder_paths.folder_names_and_paths`` that hold models,
#: followed by folders that popular custom nodes register.
CORE_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)

CUSTOM_FOLDERS = (
    "ipadapter",
    "instantid",
    "insightface",
    "pulid",
    "sams",
    "ultralytics",
    "ultralytics_bbox",
    "ultralytics_segm",
    "animatediff_models",
    "animatediff_motion_lora",
    "facerestore_models",
    "facedetection",
    "inpaint",
    "brushnet",
    "rembg",
    "depthanything",
    "LLM",
    "unet_gguf",
    "clip_gguf",
    "onnx",
    "mmdets",
    "BiRefNet",
)

MODEL_FOLDERS = CORE_FOLDERS + CUSTOM_FOLDERS

#: Keys of ComfyUI's folder table that never hold models: nothing is ever written there.
NON_MODEL_FOLDERS = frozenset({"custom_nodes", "output", "input", "temp", "download_model_base",
                               "animatediff_video_formats"})

#: The folder of a reference whose loader is unknown and whose folder could not be inferred.
UNKNOWN_FOLDER = "unknown"

# a folder key is one path component: letters, digits, '_', '-', '.', not starting with '.'/'-'
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_WINDOWS_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                               *(f"lpt{i}" for i in range(1, 10))})

#: Legacy folder names -> current key (ComfyUI's ``folder_paths.map_legacy`` plus old aliases).
LEGACY_FOLDERS: Dict[str, str] = {
    "unet": "diffusion_models",
    "clip": "text_encoders",
    "t2i_adapter": "controlnet",
}

#: folder key -> model type name
FOLDER_TO_TYPE: Dict[str, str] = {
    "checkpoints": "checkpoint",
    "configs": "config",
    "loras": "lora",
    "vae": "vae",
    "text_encoders": "text_encoder",
    "diffusion_models": "diffusion_model",
    "clip_vision": "clip_vision",
    "style_models": "style_model",
    "embeddings": "embedding",
    "diffusers": "diffusers",
    "vae_approx": "vae_approx",
    "controlnet": "controlnet",
    "gligen": "gligen",
    "upscale_models": "upscale_model",
    "latent_upscale_models": "latent_upscale_model",
    "hypernetworks": "hypernetwork",
    "photomaker": "photomaker",
    "classifiers": "classifier",
    "model_patches": "model_patch",
    "audio_encoders": "audio_encoder",
    "ipadapter": "ipadapter",
    "instantid": "instantid",
    "insightface": "insightface",
    "pulid": "pulid",
    "sams": "sam",
    "ultralytics": "ultralytics",
    "ultralytics_bbox": "ultralytics_bbox",
    "ultralytics_segm": "ultralytics_segm",
    "animatediff_models": "animatediff_model",
    "animatediff_motion_lora": "animatediff_motion_lora",
    "facerestore_models": "facerestore_model",
    "facedetection": "facedetection",
    "inpaint": "inpaint",
    "brushnet": "brushnet",
    "rembg": "rembg",
    "depthanything": "depthanything",
    "LLM": "llm",
    "unet_gguf": "diffusion_model",
    "clip_gguf": "text_encoder",
    "onnx": "onnx",
    "mmdets": "mmdet",
    "BiRefNet": "birefnet",
}

TYPE_TO_FOLDER: Dict[str, str] = {}
for _folder, _type in FOLDER_TO_TYPE.items():
    TYPE_TO_FOLDER.setdefault(_type, _folder)
# common spellings users and other tools use
TYPE_TO_FOLDER.update({"unet": "diffusion_models", "clip": "text_encoders", "upscaler": "upscale_models",
                       "textual_inversion": "embeddings", "motion_module": "animatediff_models"})


def canonical_folder(name: str) -> str:
    """Map a legacy folder name (``unet``, ``clip``) to its current key; others unchanged."""
    return LEGACY_FOLDERS.get(name, name)


def folder_for(type_or_folder: Optional[str]) -> Optional[str]:
    """Folder key for a model type name *or* a folder key (legacy names mapped); None if unknown."""
    if not type_or_folder:
        return None
    key = type_or_folder.strip()
    if key in FOLDER_TO_TYPE:
        return key
    if key in LEGACY_FOLDERS:
        return LEGACY_FOLDERS[key]
    low = key.lower()
    if low in TYPE_TO_FOLDER:
        return TYPE_TO_FOLDER[low]
    for folder in FOLDER_TO_TYPE:
        if folder.lower() == low:
            return folder
    return None


def check_folder_key(name: object) -> str:
    """``name`` as a folder key (legacy names mapped) if it is well formed: one safe path
    component (``background_removal``, ``LLM``...), not ``unknown`` and not a folder that never
    holds models.  Any such key is valid: a key ComfyUI does not know lives in ``models/<key>``.
    Raises ``ValidationError`` otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("a folder key must be a non-empty string such as 'checkpoints'")
    key = canonical_folder(name.strip())
    if not _KEY.match(key) or key.endswith(".") or key.split(".")[0].lower() in _WINDOWS_RESERVED:
        raise ValidationError(f"{name!r} is not a folder key: use one folder name made of letters, "
                              "digits, '_', '-' or '.' (such as 'checkpoints' or 'background_removal')")
    # compared without case: on Windows and macOS ``CUSTOM_NODES`` is the same folder
    if key.lower() in NON_MODEL_FOLDERS:
        raise ValidationError(f"{key!r} does not hold models")
    if key.lower() == UNKNOWN_FOLDER:
        raise ValidationError("'unknown' is not a folder: choose the folder this model belongs in")
    return key


def folder_key_for(type_or_folder: object) -> str:
    """Folder key for a model type name or a folder key, known (``lora`` -> ``loras``) or not
    (``background_removal`` stays itself); ``ValidationError`` for a malformed name."""
    if isinstance(type_or_folder, str):
        known = folder_for(type_or_folder)
        if known is not None:
            return known
    return check_folder_key(type_or_folder)


def models_root_of(folders: Mapping[str, Sequence[Union[str, Path]]]) -> Optional[Path]:
    """The ``models`` dir of a ComfyUI folder table: the parent of a key's ``models/<key>`` dir."""
    for key, paths in folders.items():
        for p in paths:
            if Path(p).name == key:
                return Path(p).parent
    return None


def type_for(folder: Optional[str]) -> str:
    """Model type name for a folder key (``checkpoints`` -> ``checkpoint``); ``unknown`` if none."""
    if not folder:
        return "unknown"
    folder = canonical_folder(folder)
    return FOLDER_TO_TYPE.get(folder, folder.rstrip("s") if folder else "unknown")
