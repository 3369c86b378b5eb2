"""The official template the index tests use, and the same template with its metadata removed."""

from __future__ import annotations

import copy
from pathlib import Path

TEMPLATE = Path(__file__).parent / "fixtures" / "templates" / "flux_schnell_full_text_to_image.json"


def template_models(wf):
    """Every ``properties.models`` entry of the template's nodes."""
    return [m for n in wf["nodes"] for m in (n.get("properties") or {}).get("models") or []]


def stripped(wf):
    """The template as a user shares it after saving: no ``models`` metadata anywhere."""
    out = copy.deepcopy(wf)
    out.pop("models", None)
    for n in out["nodes"]:
        (n.get("properties") or {}).pop("models", None)
    return out
