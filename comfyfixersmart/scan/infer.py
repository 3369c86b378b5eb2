"""The folder of a model file named by a node no loader table knows, guessed from the names.

Three clues, strongest first: the input's name (``lora_name`` -> ``loras``), the node type
(``MyUpscaleLoader`` -> ``upscale_models``), then the file name (``4x-UltraSharp.pth`` ->
``upscale_models``, ``t5xxl_fp16.safetensors`` -> ``text_encoders``).  Each guess carries a
confidence below a real loader's 1.0 and a reason in words; with no clue the folder is
``unknown``, which is never downloaded into without a choice by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Pattern, Tuple

from ..folders import UNKNOWN_FOLDER

INPUT_CONFIDENCE = 0.6
NODE_TYPE_CONFIDENCE = 0.5
FILE_NAME_CONFIDENCE = 0.4
UNKNOWN_CONFIDENCE = 0.3


@dataclass(frozen=True)
class Inference:
    """A guessed folder, how sure the guess is, and why."""

    folder: str
    confidence: float
    reason: str


def _rules(*pairs: Tuple[str, str]) -> Tuple[Tuple[Pattern[str], str], ...]:
    return tuple((re.compile(pattern), folder) for pattern, folder in pairs)


# Names (input or node type) are split into lower-case words joined by "_" first
# ("LoraLoaderX" -> "lora_loader_x"), so a rule can ask for a whole word: "sam" must not
# match "sampler".  First match wins.
_NAME_RULES = _rules(
    (r"(^|_)(ckpt|checkpoints?)(_|$)", "checkpoints"),
    (r"(^|_)clip_?vision(_|$)", "clip_vision"),
    (r"(^|_)(lora|loras|lycoris|locon)(_|$)", "loras"),
    (r"(^|_)(control_?net|cnet|t2i|t2i_adapter)(_|$)", "controlnet"),
    (r"(^|_)ip_?adapter(_|$)", "ipadapter"),
    (r"(^|_)instant_?id(_|$)", "instantid"),
    (r"(^|_)pulid(_|$)", "pulid"),
    (r"(^|_)insight_?face(_|$)", "insightface"),
    (r"(^|_)(upscale|upscaler|upscaling|esrgan|sr)(_|$)", "upscale_models"),
    (r"(^|_)vae(_|$)", "vae"),
    (r"(^|_)(unet|diffusion|gguf|dit|transformer)(_|$)", "diffusion_models"),
    (r"(^|_)(text_?encoder|t5|umt5|t5xxl|clip|clip_[lg]|llm_?encoder)(_|$)", "text_encoders"),
    (r"(^|_)(embedding|embeddings|textual_?inversion)(_|$)", "embeddings"),
    (r"(^|_)hypernetwork(_|$)", "hypernetworks"),
    (r"(^|_)style_?model(_|$)", "style_models"),
    (r"(^|_)gligen(_|$)", "gligen"),
    (r"(^|_)photo_?maker(_|$)", "photomaker"),
    (r"(^|_)(animate_?diff|motion_?module|motion_?model)(_|$)", "animatediff_models"),
    (r"(^|_)(ultralytics|yolo|yolov\d+|bbox|segm)(_|$)", "ultralytics"),
    (r"(^|_)(sam|sam2|sams|segment_anything)(_|$)", "sams"),
    (r"(^|_)(face_?restore|gfpgan|codeformer)(_|$)", "facerestore_models"),
    (r"(^|_)depth_?anything(_|$)", "depthanything"),
    (r"(^|_)brush_?net(_|$)", "brushnet"),
)

# File names (lower-cased base name, extension included).  First match wins.
_FILE_RULES = _rules(
    (r"clip[_-]?vision|clip[_-]vit|image[_-]?encoder|siglip|sigclip", "clip_vision"),
    (r"t5xxl|umt5|t5[_-]?v1|(^|[_-])t5[_-]|(^|[_-])clip[_-]?[lg]([_.-]|$)|text[_-]?encoder|llava|"
     r"qwen[_\d.]*[_-]?vl|gemma|byt5|llama|mistral", "text_encoders"),
    (r"lora|lycoris|locon|loha|lokr", "loras"),
    (r"ip[-_]?adapter", "ipadapter"),
    (r"antelopev2|buffalo_l|inswapper|insightface|glintr100|scrfd|w600k|det_10g|2d106det|1k3d68|genderage",
     "insightface"),
    (r"controlnet|control[_-](v11|lora|sd|net)|(^|[_-])cn[_-]|t2i[_-]?adapter|(^|[_-])control[_-]", "controlnet"),
    (r"(^|[_\-.])(\d+x|x\d+)([_\-.]|$)|esrgan|realesr|swinir|(^|[_-])hat[_-]|upscal|ultrasharp|nmkd|"
     r"foolhardy|siax|(^|[_-])dat[_-]?x?\d", "upscale_models"),
    (r"(^|[^a-z0-9])(vae|ae)\.(safetensors|sft|pt|pth|ckpt|bin)$|vae", "vae"),
    (r"sam[_-]?vit|sam[_-]?hq|(^|[_-])sam2|mobile[_-]?sam|sam_[bhl]\b", "sams"),
    (r"yolo", "ultralytics"),
    (r"gfpgan|codeformer|restoreformer|gpen", "facerestore_models"),
    (r"mm[_-]sd|mm[_-]sdxl|motion[_-]?module|animatediff|v3_sd15_mm", "animatediff_models"),
    (r"photomaker", "photomaker"),
    (r"pulid", "pulid"),
    (r"depth[_-]?anything", "depthanything"),
    (r"redux|style[_-]?model", "style_models"),
    (r"hypernet", "hypernetworks"),
    (r"gligen", "gligen"),
    (r"unet|diffusion[_-]?pytorch[_-]?model|(^|[_-])dit[_-]|\.gguf$", "diffusion_models"),
    (r"embedding|easynegative|negative[_-]?embed", "embeddings"),
    (r"\.ckpt$", "checkpoints"),
)


def words(name: str) -> str:
    """``"LoraLoaderX"`` / ``"lora name"`` -> ``"lora_loader_x"`` / ``"lora_name"``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return "_".join(w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w)


def _by_name(name: str) -> Optional[Tuple[str, str]]:
    w = words(name)
    for pattern, folder in _NAME_RULES:
        m = pattern.search(w)
        if m:
            return folder, m.group(0).strip("_")
    return None


def _by_file(filename: str) -> Optional[Tuple[str, str]]:
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].lower()
    for pattern, folder in _FILE_RULES:
        m = pattern.search(base)
        if m:
            return folder, m.group(0).strip("_-.")
    return None


def infer_folder(node_type: str, input_name: str = "", filename: str = "") -> Inference:
    """The folder of ``filename`` named by input ``input_name`` of an unknown ``node_type``."""
    if input_name:
        hit = _by_name(input_name)
        if hit:
            return Inference(hit[0], INPUT_CONFIDENCE,
                             f"folder guessed from the input name {input_name!r} ({hit[1]!r}) of node type "
                             f"{node_type!r}, which no loader table knows")
    hit = _by_name(node_type)
    if hit:
        return Inference(hit[0], NODE_TYPE_CONFIDENCE,
                         f"folder guessed from the node type {node_type!r} ({hit[1]!r}), which no loader table knows")
    if filename:
        hit = _by_file(filename)
        if hit:
            return Inference(hit[0], FILE_NAME_CONFIDENCE,
                             f"folder guessed from the file name ({hit[1]!r}); node type {node_type!r} is unknown")
    return Inference(UNKNOWN_FOLDER, UNKNOWN_CONFIDENCE,
                     f"node type {node_type!r} is unknown and neither its input nor the file name tells the "
                     "folder: choose it by hand")


__all__ = ["Inference", "infer_folder", "words"]
