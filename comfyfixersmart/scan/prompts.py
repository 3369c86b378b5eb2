"""Model names written inside prompt text: ``embedding:NAME`` and ``<lora:NAME:weight>`` tags.

ComfyUI's tokenizer (``comfy/sd1_clip.py``) treats a whitespace-separated word starting with
``embedding:`` as a textual-inversion file name (extension optional, trailing commas dropped);
inside ``(embedding:x:1.1)`` the ``:1.1`` is a weight.  ``<lora:NAME:w>`` tags are the A1111 syntax
that some custom nodes read and apply (``LORA_TAG_NODES``); every other node, core
``CLIPTextEncode`` included, encodes them as plain words, so elsewhere a tag needs no file.
"""

from __future__ import annotations

import re
from typing import Iterator, Tuple

#: Node types that load the LoRA files named by ``<lora:...>`` tags in their text inputs, read
#: in each pack's source: the tag is the name with or without its extension (a stem match).
LORA_TAG_NODES = frozenset({
    "LoraTagLoader",  # badjeff/comfyui_lora_tag_loader (MNeMoNiCuZ's pack registers the same name)
    "\U0001f3f7\ufe0f LoRA Loader Prompt Tags",  # MNeMoNiCuZ/ComfyUI-mnemic-nodes
    "LoraTagLoader|LP", "Load LoRA Tag [LP]",  # LevelPixel/ComfyUI-LevelPixel
    "Power Prompt (rgthree)",  # rgthree-comfy: get_and_strip_loras() when model/clip are connected
    "ImpactWildcardEncode",  # ltdrdata/ComfyUI-Impact-Pack: wildcards + LoRA loading, then encode
    "WildcardEncode //Inspire",  # ltdrdata/ComfyUI-Inspire-Pack (Impact's encoder)
    "PCLazyLoraLoader", "PCLazyLoraLoaderAdvanced", "PCLoraHooksFromText",  # asagi4/comfyui-prompt-control
    "PromptControlSimple",  # comfyui-prompt-control, older releases
    "easy loraPromptApply",  # yolain/ComfyUI-Easy-Use
    "LoraPrompt",  # shadowcz007/comfyui-mixlab-nodes
    "LoadLorasFromPrompt",  # AbdullahAlfaraj/Comfy-Photoshop-SD
    "LoRA_TagLoader",  # shinyakidoguchi301/comfyui-lora-tag-loader
    "MultipleLoraTagLoader",  # morino-kumasan/comfyui-toml-prompt
    "LoraTextLoader",  # XchanBik/ComfyUI_SimpleBridgeNode
    "LoRALoader_Text",  # Sieyalixnet/ComfyUI_Textarea_Loaders
    "DavchaWan22LoraTagLoader", "DavchaQwenImageEditLoraTagLoader",  # dchatel/comfyui_davcha
    "weirdion_PromptWithLora",  # weirdion's prompt nodes
})

EMBEDDING_MARK = "embedding:"
LORA_MARK = "<lora:"

# the name runs to whitespace, a comma or a bracket/quote; a weight and punctuation are removed after
_EMBEDDING = re.compile(r"embedding:([^\s,()\[\]{}<>|\"']+)")
_WEIGHT = re.compile(r":-?\d*\.?\d+$")
_LORA = re.compile(r"<lora:([^:>\n]+)(?::[^>\n]*)?>", re.IGNORECASE)


def find_embeddings(text: str) -> Iterator[str]:
    """Embedding names (as written, weight and trailing punctuation removed) in ``text``."""
    if EMBEDDING_MARK not in text:
        return
    for match in _EMBEDDING.finditer(text):
        name = _WEIGHT.sub("", match.group(1)).rstrip(",.;:!?")
        if name:
            yield name.replace("\\", "/")


def find_lora_tags(text: str) -> Iterator[Tuple[str, str]]:
    """``(name, weight_text)`` of every ``<lora:name:weight>`` tag in ``text``."""
    if "<" not in text or ":" not in text:  # cheap pre-check: most strings hold no tag
        return
    for match in _LORA.finditer(text):
        name = match.group(1).strip()
        if name:
            yield name.replace("\\", "/"), match.group(0)
