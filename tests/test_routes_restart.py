"""Jobs after a restart: the start-up hook inside ComfyUI and the Retry failed routes (issue 11.6)."""

from __future__ import annotations

import asyncio
import types

import pytest
from aiohttp import web

from comfyfixersmart.comfyui.mount import _resume_on_startup
from comfyfixersmart.service.jobs import MemoryJobStore
from comfyfixersmart.service.routes import FixerRoutes
from routes_support import mount_routes


@pytest.fixture
async def api(aiohttp_client, make_config, tmp_path):
    fixer = FixerRoutes(folders=lambda: {"checkpoints": [str(tmp_path)]}, config=make_config(),
                        job_store=MemoryJobStore())
    client = await mount_routes(aiohttp_client, fixer)
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


# -- a fix job cut off while resolving ---------------------------------------------------------

WORKFLOW = {"nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["gone.safetensors"]}],
            "links": []}


class RestartedStore(MemoryJobStore):
    """What a store reports after the process died: unfinished jobs are ``interrupted``."""

    def load(self, limit):
        return [{**r, "interrupted": True} if r["state"] not in ("done", "failed", "cancelled") else r
                for r in super().load(limit)]


class FakeCore:
    """Records what it is asked to resolve; every reference stays unresolved."""

    def __init__(self, calls, gate=None):
        self.calls, self.gate = calls, gate

    def analyze_data(self, workflow, cancel=None, limit=None):
        self.calls.append(workflow)
        if self.gate is not None:
            self.gate.wait(60)
        return types.SimpleNamespace(resolutions=[])

    def plan(self, analysis, threshold, allow_pickle=None):
        name = self.calls[-1]["nodes"][0]["widgets_values"][0]
        return [], [types.SimpleNamespace(directory="checkpoints", filename=name, error_type="NotFoundError",
                                          reason="no source found")]

    def close(self):
        pass


@pytest.mark.parametrize("auto_resume", [True, False])
async def test_a_fix_job_cut_off_while_resolving_resolves_again(aiohttp_client, make_config, tmp_path,
                                                                auto_resume):
    import threading

    store = RestartedStore()
    gate = threading.Event()
    first_calls, calls = [], []
    config = make_config(auto_resume=auto_resume)
    first = FixerRoutes(folders=lambda: {"checkpoints": [str(tmp_path)]}, config=config, job_store=store,
                        core_factory=lambda cfg, folders: FakeCore(first_calls, gate))
    client = await mount_routes(aiohttp_client, first)
    second = None
    try:
        resp = await client.post("/comfyfixer/fix", json={"workflow": WORKFLOW, "min_confidence": 0.7})
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["job_id"]
        for _ in range(600):  # the planner is now blocked inside resolving
            if first_calls:
                break
            await asyncio.sleep(0.05)
        stored = store.load(10)[0]
        assert stored["plan"]["workflow"] == WORKFLOW and stored["plan"]["min_confidence"] == 0.7
        assert "plan" not in first.jobs.get(job_id)  # never sent to the page

        # "ComfyUI restarted": a new process reads the same store
        second = FixerRoutes(folders=lambda: {"checkpoints": [str(tmp_path)]}, config=config, job_store=store,
                             core_factory=lambda cfg, folders: FakeCore(calls))
        jobs = second.jobs
        assert jobs.wait_idle(60)
        job = jobs.get(job_id)
        if auto_resume:
            assert calls == [WORKFLOW]  # resolved again from the stored workflow
            assert job["state"] == "failed" and job.get("error") is None
            assert [(it["filename"], it["error"]["type"]) for it in job["items"]] == [
                ("gone.safetensors", "NotFoundError")]
        else:
            assert calls == []
            assert job["error"]["type"] == "JobInterruptedError" and job["state"] == "failed"
        # the workflow is dropped from the record once resolving is over (stored just after the
        # job is seen finished: wait for it, generously)
        for _ in range(1200):
            if next(r for r in store.load(10) if r["id"] == job_id).get("plan") is None:
                break
            await asyncio.sleep(0.05)
        assert next(r for r in store.load(10) if r["id"] == job_id).get("plan") is None
    finally:
        if second is not None:
            second.close()
        gate.set()
        first.close()


def test_an_oversized_workflow_is_not_stored_and_fails_as_before(make_config, monkeypatch):
    from comfyfixersmart.service import jobs as jobs_module
    from comfyfixersmart.service.jobs import JobManager, PlanOutcome

    monkeypatch.setattr(jobs_module, "MAX_PLAN_BYTES", 64)
    store = RestartedStore()
    replanned = []
    manager = JobManager(make_config(), store=store)
    import threading

    gate = threading.Event()
    try:
        job = manager.submit_fix(lambda: gate.wait(60) and PlanOutcome(), plan={"workflow": {"x": "y" * 100}})
        assert store.load(10)[0].get("plan") is None
        again = JobManager(make_config(), store=store, replan=lambda plan, cancel: replanned.append(plan))
        assert again.get(job["id"])["error"]["type"] == "JobInterruptedError"
        assert replanned == []
        again.shutdown()
    finally:
        gate.set()
        manager.shutdown()
