"""ComfyUI node classes of ComfyFixerSmart.

ComfyFixerSmart is a UI extension: the panel and its routes do the work, so no graph
node is registered.  The mappings exist because ComfyUI expects them.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
