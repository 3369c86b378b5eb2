"""Model names written inside prompt text: ``embedding:NAME`` and ``<lora:NAME:weight>`` tags.

ComfyUI's tokenizer (``comfy/sd1_clip.py``) treats a whitespace-separated word starting with
``embedding:`` as a textual-inversion file name (extension optional, trailing commas dropped);
inside ``(embedding:x:1.1)`` the ``:1.1`` is a weight.  ``<lora:NAME:w>`` tags are the A1111 syntax
that several custom nodes (LoRA tag loaders, Impact wildcards) read.
"""

from __future__ import annotations

import re
from typing import Iterator, Tuple

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
