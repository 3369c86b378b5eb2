"""ComfyUI entry point of ComfyFixerSmart (this folder dropped into ComfyUI/custom_nodes/).

Thin on purpose: exports the node mappings and WEB_DIRECTORY, and registers the
``/comfyfixer/`` routes on ComfyUI's PromptServer.  Outside ComfyUI it does nothing.
Imports are relative: ComfyUI loads this folder as a package under its folder name.
"""

from .comfyfixersmart.comfyui import register as _register
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

# a no-op (returns None) unless ComfyUI's PromptServer instance exists
_register()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
