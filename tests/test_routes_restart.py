"""Jobs after a restart: the start-up hook inside ComfyUI and the Retry failed routes (issue 11.6)."""

from __future__ import annotations

import asyncio
import types

import pytest
from aiohttp import web

from comfyfixersmart.comfyui.mount import _resume_on_startup
from comfyfixersmart.service.jobs import MemoryJobStore
from comfyfixersmart.service.routes import FixerRoutes


@pytest.fixture
async def api(aiohttp_client, make_config, tmp_path):
    fixer = FixerRoutes(folders=lambda: {"checkpoints": [str(tmp_path)]}, config=make_config(),
                        job_store=MemoryJobStore())
    table = web.RouteTableDef()
    fixer.add_routes(table)
    app = web.Application()
    app.add_routes(table)
    client = await aiohttp_client(app)
    yield client
    fixer.close()


async def test_retry_failed_routes(api):
    resp = await api.post("/comfyfixer/jobs/retry-failed")
    assert resp.status == 200 and await resp.json() == {"retried": 0, "jobs": []}
    resp = await api.post("/comfyfixer/jobs/0123456789abcdef/retry-failed")
    assert resp.status == 404
    resp = await api.post("/comfyfixer/jobs/retry-failed", data="x=1",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 415
    assert (await api.get("/comfyfixer/jobs/retry-failed")).status in (404, 405)


@pytest.mark.parametrize("auto_resume", [True, False])
def test_jobs_load_when_comfyui_starts(make_config, auto_resume):
    app = web.Application()
    instance = types.SimpleNamespace(app=app)
    routes = FixerRoutes(folders=lambda: {}, config=make_config(auto_resume=auto_resume), job_store=MemoryJobStore())
    before = len(app.on_startup)
    _resume_on_startup(instance, routes)
    try:
        assert routes._jobs is None  # registering loads nothing
        if not auto_resume:
            assert len(app.on_startup) == before
            return
        hook = app.on_startup[-1]
        asyncio.run(hook(app))
        assert routes._jobs is not None
    finally:
        routes.close()


def test_auto_resume_setting(make_config, monkeypatch):
    from comfyfixersmart.settings import Config

    assert make_config().auto_resume is True
    monkeypatch.setenv("COMFYFIXER_AUTO_RESUME", "0")
    assert Config.load().auto_resume is False
