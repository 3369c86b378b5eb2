"""Mount ``FixerRoutes`` on a bare aiohttp app, as ComfyUI mounts it, and return a test client."""

from __future__ import annotations

from aiohttp import web


async def mount_routes(aiohttp_client, fixer, **app_options):
    """A client for ``fixer``'s routes on ``web.Application(**app_options)``."""
    table = web.RouteTableDef()
    fixer.add_routes(table)
    app = web.Application(**app_options)
    app.add_routes(table)
    return await aiohttp_client(app)
