"""The server side of the ComfyUI panel, free of ComfyUI imports.

``routes.FixerRoutes`` (the ``/comfyfixer/`` HTTP routes), ``jobs.JobManager`` (background
downloads), ``validation`` (request checks) and ``tokens.TokenStore`` (server-side tokens).
``comfyfixersmart.comfyui`` mounts them on ComfyUI's PromptServer; tests mount them on a
bare ``aiohttp.web.Application``.
"""
