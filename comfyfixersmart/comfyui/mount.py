"""Mount the routes on ComfyUI's PromptServer (called by the repo's root ``__init__.py``)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, List, Optional

from ..logs import get_logger
from ..settings import Config

log = get_logger(__name__)

#: the attribute of PromptServer.instance that remembers our routes (one registration only)
_ATTR = "_comfyfixersmart_routes"


def prompt_server_instance(server_module: Optional[ModuleType] = None) -> Any:
    """``PromptServer.instance`` when running inside ComfyUI, else None.

    ComfyUI's ``main.py`` imports ``server`` and creates the instance before it loads custom
    nodes, so we look in ``sys.modules`` instead of importing: outside ComfyUI an unrelated
    module called ``server`` must not be imported (and run) by us.
    """
    module = server_module if server_module is not None else sys.modules.get("server")
    server_class = getattr(module, "PromptServer", None)
    return getattr(server_class, "instance", None)


def comfyui_config(folder_paths: ModuleType, base: Optional[Config] = None) -> Config:
    """The settings inside ComfyUI: ComfyUI's root, and state kept beside its user data.

    Unless ``state_dir`` was configured, state (job history, tokens set in the panel) goes to
    ComfyUI's system user folder ``user/__comfyfixersmart``, which ComfyUI never serves over
    HTTP; ComfyUI releases without system folders keep our per-user default.
    """
    config = base if base is not None else Config.load()
    changes = {}
    base_path = getattr(folder_paths, "base_path", None)
    if config.comfyui_root is None and base_path:
        changes["comfyui_root"] = Path(base_path)
    get_system_dir = getattr(folder_paths, "get_system_user_directory", None)
    default_state_dir = Config.__dataclass_fields__["state_dir"].default_factory()  # type: ignore[misc]
    if callable(get_system_dir) and Path(config.state_dir) == default_state_dir \
            and not os.environ.get("COMFYFIXER_STATE_DIR"):
        try:
            changes["state_dir"] = Path(get_system_dir("comfyfixersmart"))
        except Exception as exc:  # an odd ComfyUI build: keep the default
            log.warning("ComfyUI system user folder unavailable (%s); using %s", exc, config.state_dir)
    return config.replace(**changes) if changes else config


def listen_addresses(instance: Any = None) -> List[str]:
    """The addresses ComfyUI listens on: ``--listen`` (``comfy.cli_args``, a comma-separated
    list), else the address the PromptServer started on, else ComfyUI's default 127.0.0.1."""
    args = getattr(sys.modules.get("comfy.cli_args"), "args", None)
    listen = getattr(args, "listen", None)
    if isinstance(listen, str) and listen.strip():
        return [a.strip() for a in listen.split(",") if a.strip()]
    address = getattr(instance, "address", None)
    return [str(address)] if address else ["127.0.0.1"]


def _resume_on_startup(instance: Any, routes: Any) -> None:
    """With ``auto_resume``, load the stored jobs when the server starts, so downloads cut
    off by a restart resume without a click (nothing happens at registration itself)."""
    if not routes.base_config.auto_resume:
        return
    app = getattr(instance, "app", None)
    on_startup = getattr(app, "on_startup", None)
    if on_startup is None or getattr(on_startup, "frozen", False):
        log.info("ComfyFixerSmart: jobs resume when the panel is first used")
        return

    async def resume(_app: Any) -> None:
        import asyncio

        try:
            await asyncio.to_thread(routes.start_jobs)
        except Exception:  # the server must start whatever happened to the job history
            log.exception("resuming ComfyFixerSmart jobs failed")

    on_startup.append(resume)


def register(server_module: Optional[ModuleType] = None, folder_paths: Optional[ModuleType] = None,
             *, config: Optional[Config] = None):
    """Add the ``/comfyfixer/`` routes to ``PromptServer.instance.routes``.

    Returns the ``FixerRoutes`` (the same one if called twice), or None outside ComfyUI.
    """
    instance = prompt_server_instance(server_module)
    if instance is None:
        return None
    existing = getattr(instance, _ATTR, None)
    if existing is not None:
        return existing
    if folder_paths is None:
        folder_paths = sys.modules.get("folder_paths") or importlib.import_module("folder_paths")

    from ..service.routes import FixerRoutes, default_core_factory
    from .emitter import PromptServerEmitter
    from .nodemap import LiveNodeMap
    from .paths import ComfyFolders

    folders = ComfyFolders(folder_paths)
    base = comfyui_config(folder_paths, config)
    # custom nodes are still loading now: the map is built on the first request, then again
    # whenever the node set changes
    node_map = LiveNodeMap(folder_paths, cache_dir=base.cache_dir if base.cache_enabled else None)

    def core_factory(cfg: Config, table):
        return default_core_factory(cfg, table, node_table=node_map.table())

    routes = FixerRoutes(
        core_factory=core_factory,
        folders=folders,
        emit=PromptServerEmitter(instance),
        config=base,
        canonical=folders.canonical,
        comfyui=True,
        protected=folders.protected_roots,
        listen=lambda: listen_addresses(instance),
    )
    routes.node_map = node_map
    routes.add_routes(instance.routes)
    setattr(instance, _ATTR, routes)
    _resume_on_startup(instance, routes)
    log.info("ComfyFixerSmart routes registered under /comfyfixer/")
    return routes
