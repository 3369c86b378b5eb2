"""ComfyUI entry point of ComfyFixerSmart (this folder dropped into ComfyUI/custom_nodes/).

Thin on purpose: exports the node mappings and WEB_DIRECTORY, and registers the
``/comfyfixer/`` routes on ComfyUI's PromptServer.  Outside ComfyUI it does nothing.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
