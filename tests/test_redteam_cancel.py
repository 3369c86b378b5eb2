"""Red team: cancel stops resolving and frees download slots; big requests are capped (issue 10.4).

Counters on the local fake hub say how many lookups really happened: a fix job resolving
3,000 names stops making hub requests once cancelled; a request over ``max_references``
makes none; pacing spaces the lookups of one job.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from aiohttp import web

from fakehub.fixtures import config_for_hub, fake_hub  # noqa: F401

from comfyfixersmart.core import ComfyFixerCore
from comfyfixersmart.datamodel import DownloadResult, ModelReference, Resolution
from comfyfixersmart.errors import RequestTooLargeError, ResolveCancelledError
from comfyfixersmart.service.jobs import JobManager, SlotPool
from comfyfixersmart.service.routes import FixerRoutes
from comfyfixersmart.service.validation import DownloadItemSpec


def _letters(i: int) -> str:
    """0 -> "aaaa", 1 -> "aaab"...: a distinct word per name (a trailing number is a version
    word that search terms drop, so numbered names would share one cached lookup)."""
    out = ""
    for _ in range(4):
        i, r = divmod(i, 26)
        out = chr(97 + r) + out
    return out


def lora_workflow(n, prefix="missing_lora"):
    nodes = [{"id": i + 1, "type": "LoraLoader", "mode": 0, "properties": {},
              "widgets_values": [f"{prefix}_{_letters(i)}.safetensors", 1.0, 1.0]} for i in range(n)]
    return {"last_node_id": n, "nodes": nodes, "links": [], "version": 0.4}


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "ComfyUI"
    for key in ("checkpoints", "loras"):
        (root / "models" / key).mkdir(parents=True)
    return root


async def _client(aiohttp_client, config, root):
    models = root / "models"
    table = {"checkpoints": [str(models / "checkpoints")], "loras": [str(models / "loras")]}
    fixer = FixerRoutes(folders=lambda: table, config=config)
    routes = web.RouteTableDef()
    fixer.add_routes(routes)
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app)
    client.fixer = fixer
    return client


async def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return False


# -- resolve: cancel -------------------------------------------------------------------------------

async def test_fix_job_of_3000_names_stops_hub_requests_on_delete(aiohttp_client, fake_hub, tmp_path, root):  # noqa: F811
    # every lookup takes a moment on the hub, as on a real network
    fake_hub.inject("*", status=None, delay=0.02, times=100000)
    config = config_for_hub(fake_hub, tmp_path, comfyui_root=root, max_references=5000, search_concurrency=4)
    client = await _client(aiohttp_client, config, root)
    try:
        resp = await client.post("/comfyfixer/fix", json={"workflow": lora_workflow(3000)})
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["job_id"]
        assert await _wait(lambda: fake_hub.request_count() >= 20)
        asked = time.monotonic()
        resp = await client.delete(f"/comfyfixer/jobs/{job_id}")
        assert resp.status == 200

        async def state():
            return (await (await client.get(f"/comfyfixer/jobs/{job_id}")).json())["state"]

        deadline = time.monotonic() + 30
        while await state() != "cancelled":
            assert time.monotonic() < deadline, "the fix job never stopped"
            await asyncio.sleep(0.02)
        took = time.monotonic() - asked
        at_cancel = fake_hub.request_count()
        # lookups in flight may still finish; nothing new starts.  Wait on the hub itself:
        # a full second of a quiet log (generous under load) shows it stopped.
        quiet_since, last = time.monotonic(), at_cancel
        while time.monotonic() - quiet_since < 1.0:
            await asyncio.sleep(0.05)
            now = fake_hub.request_count()
            if now != last:
                quiet_since, last = time.monotonic(), now
        after = fake_hub.request_count()
        # in flight at cancel time: at most search_concurrency references x a few requests each
        print(f"cancel: {took:.2f}s, hub requests at cancel {at_cancel}, after {after}")
        assert after - at_cancel <= 4 * 8, (at_cancel, after)
        assert after < 3000, after
        assert took < 10, took  # 2 s on an idle machine; generous for 2 busy cores
    finally:
        client.fixer.close()


def test_core_resolve_checks_cancel_between_references(make_config):
    calls = []
    cancel = threading.Event()

    class CountingSearch:
        def resolve_many(self, refs, backends=None):
            calls.append(refs[0].filename)
            if len(calls) == 10:
                cancel.set()
            return [Resolution(reference=refs[0])]

    refs = [ModelReference(filename=f"m{i}.safetensors", node_type="X", expected_type="x",
                           expected_directory="loras") for i in range(3000)]
    for concurrency in (1, 3, 8):
        calls.clear()
        cancel.clear()
        core = ComfyFixerCore(make_config(search_concurrency=concurrency, max_references=5000),
                              search=CountingSearch())
        with pytest.raises(ResolveCancelledError):
            core.resolve(refs, cancel=cancel)
        assert 10 <= len(calls) <= 10 + concurrency, (concurrency, len(calls))


def test_core_resolve_keeps_order_and_results(make_config):
    looked_up = []

    class EchoSearch:
        def resolve_many(self, refs, backends=None):
            looked_up.extend(r.key for r in refs)
            return [Resolution(reference=r) for r in refs]

    refs = [ModelReference(filename=f"m{i % 40}.safetensors", node_type="X", expected_type="x",
                           expected_directory="loras") for i in range(50)]
    core = ComfyFixerCore(make_config(search_concurrency=4), search=EchoSearch())
    out = core.resolve(refs, cancel=threading.Event())
    assert [r.reference.filename for r in out] == [r.filename for r in refs]
    assert sorted(looked_up) == sorted({r.key for r in refs})  # one lookup per distinct file


# -- resolve: cap and pacing ------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["resolve", "fix"])
@pytest.mark.parametrize("count", [6, 50])
async def test_over_the_reference_cap_is_a_413_without_any_lookup(aiohttp_client, fake_hub, tmp_path, root,  # noqa: F811
                                                                  route, count):
    config = config_for_hub(fake_hub, tmp_path, comfyui_root=root, max_references=5)
    client = await _client(aiohttp_client, config, root)
    try:
        resp = await client.post(f"/comfyfixer/{route}", json={"workflow": lora_workflow(count)})
        assert resp.status == 413, await resp.text()
        error = (await resp.json())["error"]
        assert error["type"] == "RequestTooLargeError" and "max_references" in error["message"]
        assert fake_hub.request_count() == 0
        assert (await (await client.get("/comfyfixer/jobs")).json())["jobs"] == []
        # at the cap: accepted
        resp = await client.post(f"/comfyfixer/{route}", json={"workflow": lora_workflow(5)})
        assert resp.status in (200, 202), await resp.text()
    finally:
        client.fixer.close()


def test_library_resolve_cap(make_config):
    refs = [ModelReference(filename=f"m{i}.safetensors", node_type="X", expected_type="x",
                           expected_directory="loras") for i in range(12)]
    with pytest.raises(RequestTooLargeError):
        ComfyFixerCore(make_config(), search=object()).resolve(refs, limit=11)

    class Echo:
        def resolve_many(self, refs, backends=None):
            return [Resolution(reference=r) for r in refs]

    # the CLI looks up whole folders of workflows: no cap unless asked
    assert len(ComfyFixerCore(make_config(max_references=11), search=Echo()).resolve(refs)) == 12


def test_hub_calls_are_paced_per_job(make_config):
    starts = []

    class Stamping:
        def resolve_many(self, refs, backends=None):
            starts.append(time.monotonic())
            return [Resolution(reference=r) for r in refs]

    refs = [ModelReference(filename=f"m{i}.safetensors", node_type="X", expected_type="x",
                           expected_directory="loras") for i in range(5)]
    core = ComfyFixerCore(make_config(search_concurrency=8, hub_call_interval=0.15), search=Stamping())
    began = time.monotonic()
    core.resolve(refs)
    starts.sort()
    # turns are handed out 0.15 s apart and no lookup starts before its turn, so the k-th
    # start is at least k turns after the call, however late a busy machine wakes each thread
    # (a gap between two stamps can shrink when one thread is woken late: not a bound)
    assert len(starts) == 5
    for k, at in enumerate(starts):
        assert at - began >= k * 0.15 - 1e-6, (k, [t - began for t in starts])


def test_pacing_wait_ends_on_cancel(make_config):
    cancel = threading.Event()

    class Slow:
        def resolve_many(self, refs, backends=None):
            cancel.set()
            return [Resolution(reference=r) for r in refs]

    refs = [ModelReference(filename=f"m{i}.safetensors", node_type="X", expected_type="x",
                           expected_directory="loras") for i in range(3)]
    core = ComfyFixerCore(make_config(hub_call_interval=30.0), search=Slow())
    started = time.monotonic()
    with pytest.raises(ResolveCancelledError):
        core.resolve(refs, cancel=cancel)
    assert time.monotonic() - started < 20  # not 60 s of pacing


# -- download slots ---------------------------------------------------------------------------------

class Stalled:
    """A downloader stuck on a stalled body: it ignores the cancel event until released."""

    def __init__(self):
        self.release = threading.Event()
        self.started = []
        self.lock = threading.Lock()
        self.started_event = {}

    def __call__(self, config):
        return self

    def download_model(self, url, save_path, **kwargs):
        with self.lock:
            self.started.append(save_path)
            self.started_event.setdefault(save_path, threading.Event()).set()
        self.release.wait(60)
        return DownloadResult(filename="x", success=False, save_path=save_path, error_message="stalled",
                              error_type="DownloadError")

    def wait_started(self, save_path, timeout=30):
        with self.lock:
            event = self.started_event.setdefault(save_path, threading.Event())
        return event.wait(timeout)


def _spec(tmp_path, name):
    return DownloadItemSpec(filename=name, directory="checkpoints", url=f"http://127.0.0.1:9/{name}",
                            save_path=str(tmp_path / name))


@pytest.mark.parametrize("how", ["item", "job"])
def test_cancelled_rows_free_their_slots_at_once(make_config, tmp_path, how):
    stalled = Stalled()
    jobs = JobManager(make_config(), downloader_factory=stalled, max_workers=1)
    try:
        first = jobs.submit_download([_spec(tmp_path, "a.safetensors"), _spec(tmp_path, "b.safetensors")])
        assert stalled.wait_started(str(tmp_path / "a.safetensors"))
        if how == "item":
            row = jobs.cancel_item(first["id"], "1")["items"][0]
            assert row["state"] == "cancelled"
            # the queued second row of the same job takes the freed slot
            assert stalled.wait_started(str(tmp_path / "b.safetensors"))
        else:
            job = jobs.cancel_job(first["id"])
            assert job["state"] == "cancelled" and {i["state"] for i in job["items"]} == {"cancelled"}
            # a new download starts while the cancelled transfer is still winding down
            jobs.submit_download([_spec(tmp_path, "c.safetensors")])
            assert stalled.wait_started(str(tmp_path / "c.safetensors"))
            assert str(tmp_path / "b.safetensors") not in stalled.started
        # the stalled transfer's late result does not change the settled row
        stalled.release.set()
        time.sleep(0)  # nothing to wait for: the row is already final
        assert jobs.get(first["id"])["items"][0]["state"] == "cancelled"
    finally:
        stalled.release.set()
        jobs.shutdown()


def test_slot_pool_release_starts_the_next_task():
    pool = SlotPool(2, "t")
    gate = threading.Event()
    ran = []
    started = {k: threading.Event() for k in "abcd"}

    def task(key):
        ran.append(key)
        started[key].set()
        gate.wait(30)

    for key in "abcd":
        pool.submit(key, task, key)
    assert started["a"].wait(30) and started["b"].wait(30)
    assert pool.active == 2 and not started["c"].is_set()
    pool.release("d")  # queued: dropped
    pool.release("a")  # running: its slot goes to c
    assert started["c"].wait(30)
    gate.set()
    pool.shutdown()
    assert "d" not in ran
