"""The only part of ComfyFixerSmart that knows ComfyUI.

``register()`` mounts the ``/comfyfixer/`` routes on ``PromptServer.instance`` with the model
folders of ComfyUI's ``folder_paths`` and progress pushed through ``send_sync``.  Nothing
here imports ComfyUI at import time: outside ComfyUI ``register()`` simply returns None.
"""

from .emitter import PromptServerEmitter
from .paths import ComfyFolders
from .mount import register

__all__ = ["ComfyFolders", "PromptServerEmitter", "register"]
