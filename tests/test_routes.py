"""The /comfyfixer/ routes on a bare aiohttp app, with a temp models folder and the fake hub.

Everything of ours runs for real (FixerRoutes -> core -> scanner, inventory, search ->
JobManager -> DownloadManager -> StateManager); only the far side (Civitai / Hugging Face)
is the local fake hub.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from fakehub.fixtures import config_for_hub, fake_hub  # noqa: F401

from comfyfixersmart.service.routes import FixerRoutes
from routes_support import mount_routes

TOKEN = "hf_" + "t" * 34
WEIGHTS = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256)) * 200


class Events:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def __call__(self, event, data):
        with self.lock:
            self.items.append((event, json.loads(json.dumps(data))))

    def names(self):
        with self.lock:
            return [e for e, _ in self.items]


@pytest.fixture
def comfy_root(tmp_path):
    root = tmp_path / "ComfyUI"
    for key in ("checkpoints", "loras", "vae", "diffusion_models"):
        (root / "models" / key).mkdir(parents=True)
    (root / "extra_checkpoints").mkdir()
    (root / "models" / "checkpoints" / "present.safetensors").write_bytes(WEIGHTS)
    return root


@pytest.fixture
def folders(comfy_root):
    models = comfy_root / "models"
    table = {
        "checkpoints": [str(models / "checkpoints"), str(comfy_root / "extra_checkpoints")],
        "loras": [str(models / "loras")],
        "vae": [str(models / "vae")],
        "diffusion_models": [str(models / "diffusion_models")],
    }
    return lambda: table


@pytest.fixture
def config(fake_hub, tmp_path):  # noqa: F811
    return config_for_hub(fake_hub, tmp_path, chunk_size=16 * 1024)


@pytest.fixture
async def api(aiohttp_client, config, folders):
    events = Events()
    fixer = FixerRoutes(folders=folders, emit=events, config=config)
    client = await mount_routes(aiohttp_client, fixer)
    client.fixer, client.events = fixer, events
    yield client
    fixer.close()


def ui_workflow(*nodes):
    return {"last_node_id": len(nodes), "nodes": list(nodes), "links": [], "version": 0.4}


def node(node_id, node_type, value, mode=0, models=None):
    out = {"id": node_id, "type": node_type, "mode": mode, "properties": {}, "widgets_values": [value]}
    if models:
        out["properties"]["models"] = models
    return out


async def wait_job(client, job_id, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = await client.get(f"/comfyfixer/jobs/{job_id}")
        assert resp.status == 200
        job = await resp.json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


async def error_of(resp, status):
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["message"]
    return body["error"]


# -- read-only routes ---------------------------------------------------------------------------

async def test_health_and_folders(api, folders):
    resp = await api.get("/comfyfixer/health")
    assert await resp.json() == {"version": "2.0.0", "comfyui": False}
    resp = await api.get("/comfyfixer/folders")
    assert (await resp.json())["folders"] == folders()


async def test_get_never_changes_state(api):
    for path in ("/comfyfixer/fix", "/comfyfixer/download", "/comfyfixer/scan"):
        assert (await api.get(path)).status == 405
    assert (await api.get("/comfyfixer/jobs")).status == 200


async def test_scan_reports_present_missing_and_optional(api):
    wf = ui_workflow(node(1, "CheckpointLoaderSimple", "present.safetensors"),
                     node(2, "LoraLoader", "style\\missing_lora.safetensors"),
                     node(3, "VAELoader", "muted.vae.safetensors", mode=4))
    resp = await api.post("/comfyfixer/scan", json={"workflow": wf})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    refs = {r["key"]: r for r in body["references"]}
    assert refs["checkpoints/present.safetensors"]["status"] == "present"
    lora = refs["loras/style/missing_lora.safetensors"]
    assert lora["status"] == "missing" and lora["directory"] == "loras"
    assert lora["filename"] == "style/missing_lora.safetensors"
    assert lora["nodes"] == [
        {"node_id": 2, "node_type": "LoraLoader", "where": "widgets_values[0]", "subgraph_path": []}]
    assert refs["vae/muted.vae.safetensors"]["optional"] is True
    assert body["summary"] == {"total": 3, "present": 1, "elsewhere": 0, "missing": 1, "optional_missing": 1}
    assert isinstance(body["warnings"], list)
    assert "resolutions" not in body


async def test_scan_accepts_api_format(api):
    wf = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "present.safetensors"}}}
    body = await (await api.post("/comfyfixer/scan", json={"workflow": wf})).json()
    assert [(r["key"], r["status"]) for r in body["references"]] == [("checkpoints/present.safetensors", "present")]


async def test_scan_finds_files_in_another_folder(api, comfy_root):
    (comfy_root / "models" / "loras" / "moved.safetensors").write_bytes(WEIGHTS)
    wf = ui_workflow(node(1, "CheckpointLoaderSimple", "moved.safetensors"))
    body = await (await api.post("/comfyfixer/scan", json={"workflow": wf})).json()
    ref = body["references"][0]
    assert ref["status"] == "elsewhere" and ref["found_path"] == "loras/moved.safetensors"


@pytest.mark.parametrize("raw,status,kind", [
    (b"{not json", 400, "ValidationError"),
    (b"[1, 2]", 400, "ValidationError"),
    (b'{"workflow": "text"}', 400, "WorkflowParseError"),
    (b"", 400, "ValidationError"),
])
async def test_bad_bodies_get_typed_errors(api, raw, status, kind):
    resp = await api.post("/comfyfixer/scan", data=raw, headers={"Content-Type": "application/json"})
    assert (await error_of(resp, status))["type"] == kind


async def test_too_large_body_is_413(api):
    big = b'{"workflow": {"nodes": [], "pad": "' + b"x" * (33 * 1024 * 1024) + b'"}}'
    resp = await api.post("/comfyfixer/scan", data=big, headers={"Content-Type": "application/json"})
    assert (await error_of(resp, 413))["type"] == "RequestTooLargeError"


# -- downloads and jobs ---------------------------------------------------------------------------

@pytest.mark.parametrize("item,fragment", [
    ({"filename": "../../evil.safetensors", "directory": "checkpoints"}, "filename"),
    ({"filename": "x.safetensors", "directory": "custom_nodes"}, "directory"),
    ({"filename": "x.safetensors", "directory": "no/pe"}, "directory"),
    ({"filename": "x.safetensors", "directory": "unknown"}, "directory"),
    ({"filename": "x.safetensors", "directory": "checkpoints", "url": "https://evil.example/x.safetensors"}, "url"),
    ({"filename": "x.safetensors", "directory": "checkpoints", "url": "file:///etc/passwd"}, "url"),
    ({"filename": "x.safetensors", "directory": "checkpoints", "folder_index": 5}, "folder_index"),
])
async def test_download_validation_rejects_and_creates_no_job(api, fake_hub, item, fragment):  # noqa: F811
    item = {"url": fake_hub.hf_url + "/o/r/resolve/main/x.safetensors", **item}
    resp = await api.post("/comfyfixer/download", json={"items": [item]})
    error = await error_of(resp, 400)
    assert fragment in error["message"]
    assert (await (await api.get("/comfyfixer/jobs")).json())["jobs"] == []


async def test_download_job_end_to_end(api, fake_hub, comfy_root):  # noqa: F811
    fake_hub.add_hf_repo("org/models", {"sub/model.safetensors": WEIGHTS})
    url = fake_hub.hf_url + "/org/models/resolve/main/sub/model.safetensors"
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "sd15/model.safetensors", "directory": "checkpoints", "url": url,
         "sha256": hashlib.sha256(WEIGHTS).hexdigest(), "size": len(WEIGHTS), "folder_index": 1}]})
    assert resp.status == 202, await resp.text()
    job_id = (await resp.json())["job_id"]
    job = await wait_job(api, job_id)
    assert job["state"] == "done", job
    item = job["items"][0]
    assert item["key"] == "checkpoints/sd15/model.safetensors" and item["state"] == "done"
    target = comfy_root / "extra_checkpoints" / "sd15" / "model.safetensors"  # the chosen second path
    assert item["save_path"] == str(target) and target.read_bytes() == WEIGHTS
    listed = (await (await api.get("/comfyfixer/jobs")).json())["jobs"]
    assert [j["id"] for j in listed] == [job_id]
    assert "comfyfixer.job" in api.events.names() and "comfyfixer.progress" in api.events.names()


async def test_jobs_survive_a_page_reload_and_a_server_restart(api, fake_hub, config, folders):  # noqa: F811
    fake_hub.add_hf_repo("org/m", {"a.safetensors": WEIGHTS})
    url = fake_hub.hf_url + "/org/m/resolve/main/a.safetensors"
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "a.safetensors", "directory": "loras", "url": url}]})
    job_id = (await resp.json())["job_id"]
    await wait_job(api, job_id)
    again = FixerRoutes(folders=folders, config=config)  # what the next ComfyUI start builds
    try:
        jobs = again.jobs.list()
        assert [(j["id"], j["state"]) for j in jobs] == [(job_id, "done")]
    finally:
        again.close()


async def test_job_routes_errors(api):
    assert (await error_of(await api.get("/comfyfixer/jobs/deadbeef"), 404))["type"] == "JobNotFoundError"
    assert (await api.delete("/comfyfixer/jobs/deadbeef")).status == 404
    assert (await api.get("/comfyfixer/jobs/..%2F..%2Fetc")).status == 404
    assert (await api.post("/comfyfixer/jobs/deadbeef/items/1/retry")).status == 404


async def test_cancel_and_retry_rows(api, fake_hub, comfy_root):  # noqa: F811
    big = WEIGHTS * 60
    fake_hub.add_hf_repo("org/big", {"big.safetensors": big})
    fake_hub.latency = 0.0
    fault = fake_hub.inject("*big.safetensors", None, delay=1.0, times=None)
    url = fake_hub.hf_url + "/org/big/resolve/main/big.safetensors"
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "big.safetensors", "directory": "checkpoints", "url": url}]})
    job_id = (await resp.json())["job_id"]
    resp = await api.post(f"/comfyfixer/jobs/{job_id}/items/1/cancel")
    assert resp.status == 200
    job = await wait_job(api, job_id)
    assert job["items"][0]["state"] == "cancelled"
    assert not (comfy_root / "models" / "checkpoints" / "big.safetensors").exists()
    fake_hub.faults.remove(fault)
    resp = await api.post(f"/comfyfixer/jobs/{job_id}/items/1/retry")
    assert resp.status == 200
    job = await wait_job(api, job_id)
    assert job["state"] == "done"
    assert (comfy_root / "models" / "checkpoints" / "big.safetensors").read_bytes() == big
    error = await error_of(await api.post(f"/comfyfixer/jobs/{job_id}/items/1/retry"), 409)
    assert error["type"] == "JobConflictError"
    assert (await error_of(await api.post(f"/comfyfixer/jobs/{job_id}/items/9/cancel"), 404))


async def test_delete_cancels_the_whole_job(api, fake_hub):  # noqa: F811
    fake_hub.add_hf_repo("org/slow", {"a.safetensors": WEIGHTS, "b.safetensors": WEIGHTS + b"1"})
    fake_hub.inject("*/org/slow/*", None, delay=0.5, times=None)
    items = [{"filename": f"{n}.safetensors", "directory": "vae",
              "url": fake_hub.hf_url + f"/org/slow/resolve/main/{n}.safetensors"} for n in "ab"]
    job_id = (await (await api.post("/comfyfixer/download", json={"items": items})).json())["job_id"]
    resp = await api.delete(f"/comfyfixer/jobs/{job_id}")
    assert resp.status == 200
    job = await wait_job(api, job_id)
    assert job["state"] == "cancelled" and job["summary"]["cancelled"] == 2


# -- settings and tokens ------------------------------------------------------------------------------

async def test_settings_store_tokens_without_ever_returning_them(api, config):
    resp = await api.get("/comfyfixer/settings")
    view = await resp.json()
    assert {k: view[k] for k in ("civitai_token_set", "hf_token_set", "min_confidence")} == \
        {"civitai_token_set": False, "hf_token_set": False, "min_confidence": 0.9}
    assert not any("token" in k and not k.endswith("_set") for k in view)
    resp = await api.post("/comfyfixer/settings", json={"hf_token": TOKEN, "min_confidence": 0.95})
    assert resp.status == 200
    text = await resp.text()
    assert TOKEN not in text and json.loads(text)["hf_token_set"] is True
    assert TOKEN not in await (await api.get("/comfyfixer/settings")).text()
    path = Path(config.state_dir) / "server-settings.json"
    if sys.platform != "win32":
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    resp = await api.post("/comfyfixer/settings", json={"hf_token": None})
    assert (await resp.json())["hf_token_set"] is False
    for bad in ({"hf_token": "a b"}, {"min_confidence": 3}, {"password": "x"}):
        await error_of(await api.post("/comfyfixer/settings", json=bad), 400)


async def test_token_set_in_the_panel_unlocks_a_gated_download(api, fake_hub, comfy_root, tmp_path):  # noqa: F811
    fake_hub.add_hf_repo("org/gated", {"g.safetensors": WEIGHTS}, gated=True)
    fake_hub.add_hf_token(TOKEN, repos=["org/gated"])
    url = fake_hub.hf_url + "/org/gated/resolve/main/g.safetensors"
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "g.safetensors", "directory": "checkpoints", "url": url}]})
    job_id = (await resp.json())["job_id"]
    job = await wait_job(api, job_id)
    assert job["items"][0]["state"] == "failed"
    assert job["items"][0]["error"]["type"] in ("AuthRequiredError", "GatedRepoError", "AccessDeniedError")
    await api.post("/comfyfixer/settings", json={"hf_token": TOKEN})
    await api.post(f"/comfyfixer/jobs/{job_id}/items/1/retry")
    job = await wait_job(api, job_id)
    assert job["state"] == "done", job
    assert (comfy_root / "models" / "checkpoints" / "g.safetensors").read_bytes() == WEIGHTS
    # the token went in a header, never into what the page or the logs can see
    auth = [r.authorization for r in fake_hub.requests if r.authorization]
    assert auth and all(a == f"Bearer {TOKEN}" for a in auth)
    assert all(TOKEN not in r.path for r in fake_hub.requests)
    assert TOKEN not in json.dumps(job) and TOKEN not in json.dumps(api.events.items)


# -- resolve and fix --------------------------------------------------------------------------------

def metadata_workflow(sha):
    url = "https://huggingface.co/org/flux/resolve/main/flux-dev.safetensors"
    return ui_workflow(
        node(1, "UNETLoader", "flux/flux-dev.safetensors",
             models=[{"name": "flux/flux-dev.safetensors", "url": url, "directory": "diffusion_models",
                      "hash": sha, "hash_type": "sha256"}]),
        node(2, "CheckpointLoaderSimple", "present.safetensors"),
    )


async def test_resolve_returns_candidates_and_the_choice(api, fake_hub):  # noqa: F811
    fake_hub.add_hf_repo("org/flux", {"flux-dev.safetensors": WEIGHTS})
    wf = metadata_workflow(hashlib.sha256(WEIGHTS).hexdigest())
    resp = await api.post("/comfyfixer/resolve", json={"workflow": wf})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["summary"]["missing"] == 1 and body["summary"]["present"] == 1
    (res,) = body["resolutions"]
    assert res["key"] == "diffusion_models/flux/flux-dev.safetensors"
    assert res["chosen"] == 0
    best = res["candidates"][0]
    assert best["confidence"] >= 0.9 and best["download_url"].startswith(fake_hub.hf_url)
    assert set(best) >= {"backend", "model_id", "name", "filename", "download_url", "size_bytes", "hash_sha256",
                         "confidence", "reason", "page_url", "directory", "save_as", "requires_auth", "gated",
                         "pickle"}


async def test_resolve_refresh_asks_the_hub_again_instead_of_the_cache(api, fake_hub):  # noqa: F811
    """Re-check in the panel sends refresh: a lookup answered from the cache is asked again."""
    fake_hub.add_hf_repo("org/flux", {"flux-dev.safetensors": WEIGHTS})
    wf = metadata_workflow(hashlib.sha256(WEIGHTS).hexdigest())
    first = await api.post("/comfyfixer/resolve", json={"workflow": wf})
    assert first.status == 200, await first.text()
    asked = fake_hub.request_count()
    assert asked > 0
    cached = await api.post("/comfyfixer/resolve", json={"workflow": wf})
    assert (await cached.json())["resolutions"][0]["candidates"]
    from_cache = fake_hub.request_count()
    assert from_cache == asked, "the second lookup is answered from the cache"
    refreshed = await api.post("/comfyfixer/resolve", json={"workflow": wf, "refresh": True})
    assert refreshed.status == 200, await refreshed.text()
    assert (await refreshed.json())["resolutions"][0]["candidates"]
    assert fake_hub.request_count() > from_cache, "refresh must not be answered from the search cache"
    err = await error_of(await api.post("/comfyfixer/resolve", json={"workflow": wf, "refresh": "yes"}), 400)
    assert "refresh" in err["message"]


async def test_fix_scans_resolves_and_downloads_in_the_background(api, fake_hub, comfy_root):  # noqa: F811
    fake_hub.add_hf_repo("org/flux", {"flux-dev.safetensors": WEIGHTS})
    wf = metadata_workflow(hashlib.sha256(WEIGHTS).hexdigest())
    wf["nodes"].append(node(3, "LoraLoader", "nowhere_to_be_found_xyz.safetensors"))
    resp = await api.post("/comfyfixer/fix", json={"workflow": wf, "min_confidence": 0.9})
    assert resp.status == 202, await resp.text()
    job = await wait_job(api, (await resp.json())["job_id"])
    assert job["kind"] == "fix"
    rows = {i["key"]: i for i in job["items"]}
    flux = rows["diffusion_models/flux/flux-dev.safetensors"]
    assert flux["state"] == "done", flux
    # first path of the folder key, sub-folder of the reference kept
    assert (comfy_root / "models" / "diffusion_models" / "flux" / "flux-dev.safetensors").read_bytes() == WEIGHTS
    lost = rows["loras/nowhere_to_be_found_xyz.safetensors"]
    assert lost["state"] == "failed" and lost["error"]["type"] in ("NotFoundError", "LowConfidenceError")
    assert job["state"] == "failed"
    # the next scan sees the file
    body = await (await api.post("/comfyfixer/scan", json={"workflow": wf})).json()
    statuses = {r["key"]: r["status"] for r in body["references"]}
    assert statuses["diffusion_models/flux/flux-dev.safetensors"] == "present"


async def test_fix_with_bad_workflow_is_rejected_up_front(api):
    error = await error_of(await api.post("/comfyfixer/fix", json={"workflow": 3}), 400)
    assert error["type"] == "WorkflowParseError"
    assert (await (await api.get("/comfyfixer/jobs")).json())["jobs"] == []


async def test_unexpected_errors_are_500_without_details(aiohttp_client, config, folders):
    def broken_core(config, folders):
        raise RuntimeError("internal detail /secret/path")

    fixer = FixerRoutes(broken_core, folders, config=config)
    client = await mount_routes(aiohttp_client, fixer)
    try:
        resp = await client.post("/comfyfixer/scan", json={"workflow": ui_workflow()})
        error = await error_of(resp, 500)
        assert "secret" not in error["message"] and error["type"] == "InternalError"
    finally:
        fixer.close()
