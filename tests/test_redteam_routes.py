"""Red team: hostile requests against the /comfyfixer/ routes on a bare aiohttp app.

Every attack goes through the real stack (FixerRoutes -> validation -> JobManager ->
DownloadManager); the only servers are the local fake hub and dlserver on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from dlserver import FileServer
from fakehub.fixtures import config_for_hub, fake_hub  # noqa: F401
from fakehub.registry import blob

from comfyfixersmart.service.routes import FixerRoutes
from routes_support import mount_routes

TOKEN = "hf_" + "s3cr3t" * 6
CIVITAI_TOKEN = "civitai-" + "k" * 24

STATE_CHANGING = [
    ("/comfyfixer/scan", "POST"), ("/comfyfixer/resolve", "POST"), ("/comfyfixer/download", "POST"),
    ("/comfyfixer/fix", "POST"), ("/comfyfixer/settings", "POST"),
    ("/comfyfixer/jobs/abc/items/1/cancel", "POST"), ("/comfyfixer/jobs/abc/items/1/retry", "POST"),
]
BODY_ROUTES = ["/comfyfixer/scan", "/comfyfixer/resolve", "/comfyfixer/download", "/comfyfixer/fix",
               "/comfyfixer/settings"]


@pytest.fixture
def comfy_root(tmp_path):
    root = tmp_path / "ComfyUI"
    for key in ("checkpoints", "loras"):
        (root / "models" / key).mkdir(parents=True)
    (root / "custom_nodes").mkdir()
    return root


@pytest.fixture
def folders(comfy_root):
    models = comfy_root / "models"
    table = {"checkpoints": [str(models / "checkpoints")], "loras": [str(models / "loras")],
             "custom_nodes": [str(comfy_root / "custom_nodes")]}
    return lambda: table


@pytest.fixture
def config(fake_hub, tmp_path):  # noqa: F811
    return config_for_hub(fake_hub, tmp_path)


@pytest.fixture
async def api(aiohttp_client, config, folders):
    events = []
    fixer = FixerRoutes(folders=folders, emit=lambda e, d: events.append((e, json.loads(json.dumps(d)))),
                        config=config)
    client = await mount_routes(aiohttp_client, fixer)
    client.fixer, client.events = fixer, events
    yield client
    fixer.close()


async def error_of(resp, status):
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["message"]
    return body["error"]


async def jobs_of(api):
    return (await (await api.get("/comfyfixer/jobs")).json())["jobs"]


def url_on(hub, name="x.safetensors"):
    return f"{hub.hf_url}/o/r/resolve/main/{name}"


# -- methods and content types ------------------------------------------------------------------

@pytest.mark.parametrize("path,method", STATE_CHANGING)
async def test_state_changing_routes_refuse_get(api, path, method):
    if path != "/comfyfixer/settings":  # GET settings is the read-only view (tested below)
        assert (await api.get(path)).status == 405
    assert (await api.put(path, json={})).status == 405


async def test_settings_get_is_read_only_and_head_changes_nothing(api, config):
    before = sorted(os.listdir(config.state_dir)) if os.path.isdir(config.state_dir) else []
    for _ in range(3):
        assert (await api.get("/comfyfixer/settings")).status == 200
        assert (await api.head("/comfyfixer/settings")).status in (200, 405)
    after = sorted(os.listdir(config.state_dir)) if os.path.isdir(config.state_dir) else []
    assert before == after


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", None])
async def test_a_cross_site_form_or_text_body_is_refused(api, path, ctype, config):
    """A page on another site can send these without a CORS preflight; only JSON is taken."""
    body = json.dumps({"workflow": {"nodes": []}, "hf_token": "attacker-token",
                       "items": [{"filename": "x.safetensors", "directory": "checkpoints", "url": "http://x/"}]})
    headers = {} if ctype is None else {"Content-Type": ctype}
    resp = await api.post(path, data=body.encode(), headers=headers,
                          skip_auto_headers=["Content-Type"] if ctype is None else ())
    error = await error_of(resp, 415)
    assert error["type"] == "UnsupportedMediaTypeError"
    assert await jobs_of(api) == []
    assert not (Path(config.state_dir) / "server-settings.json").exists()


async def test_json_with_charset_is_accepted(api):
    resp = await api.post("/comfyfixer/scan", data=b'{"workflow": {"nodes": []}}',
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded"])
async def test_bodiless_job_posts_refuse_form_content_types(api, ctype):
    """An HTML form cannot cancel or retry a job."""
    resp = await api.post("/comfyfixer/jobs/abc/items/1/cancel", data=b"", headers={"Content-Type": ctype})
    assert (await error_of(resp, 415))["type"] == "UnsupportedMediaTypeError"


# -- bodies -----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000,
                                 b'{"workflow": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001],
                         ids=["arrays", "objects"])
@pytest.mark.parametrize("path", ["/comfyfixer/scan", "/comfyfixer/download", "/comfyfixer/settings"])
async def test_deeply_nested_json_is_a_400_not_a_crash(api, raw, path):
    resp = await api.post(path, data=raw, headers={"Content-Type": "application/json"})
    error = await error_of(resp, 400)
    assert error["type"] == "ValidationError" and "nested" in error["message"]


async def test_nested_workflow_inside_a_normal_body(api):
    """Nesting that json.loads accepts but a recursive walker would choke on."""
    deep = {"nodes": []}
    cur = deep
    for _ in range(900):
        cur["x"] = {}
        cur = cur["x"]
    resp = await api.post("/comfyfixer/scan", json={"workflow": deep})
    assert resp.status in (200, 400), await resp.text()


@pytest.mark.parametrize("raw", [b"null", b'"text"', b"42", b"true", b"[]", b"\xff\xfe{}", b"{\"a\": NaN}x",
                                 b'{"workflow": {"nodes": [], "x": NaN}}', b'{"workflow": {"x": -Infinity}}',
                                 b'{"workflow": {"x": ' + b"1" * 5000 + b"}}"],
                         ids=["null", "str", "int", "bool", "list", "utf16", "trailing", "nan", "inf", "bigint"])
async def test_json_that_is_not_an_object(api, raw):
    resp = await api.post("/comfyfixer/scan", data=raw, headers={"Content-Type": "application/json"})
    assert (await error_of(resp, 400))["type"] == "ValidationError"


async def test_body_over_the_limit_with_a_lying_content_length_is_413(api):
    # aiohttp's own limit (1 MiB on a bare app) stops the read before the body is in memory
    big = b'{"workflow": {"nodes": [], "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}}'
    resp = await api.post("/comfyfixer/scan", data=big, headers={"Content-Type": "application/json"})
    assert (await error_of(resp, 413))["type"] == "RequestTooLargeError"


async def test_ten_megabyte_strings_in_a_workflow(aiohttp_client, config, folders):
    fixer = FixerRoutes(folders=folders, config=config)
    client = await mount_routes(aiohttp_client, fixer, client_max_size=64 << 20)  # like ComfyUI's upload limit
    name = "a" * (10 << 20)
    wf = {"nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": [name + ".safetensors"]},
                    {"id": 2, "type": "Note", "widgets_values": ["b" * (10 << 20)]}]}
    started = time.monotonic()
    resp = await client.post("/comfyfixer/scan", json={"workflow": wf})
    assert resp.status in (200, 400), await resp.text()
    assert time.monotonic() - started < 20
    text = await resp.text()
    assert len(text) < 1 << 20  # the 10 MB name is not echoed back whole
    fixer.close()


# -- ids ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("job_id", ["nope", "..%2F..%2Fetc", "a" * 300, "%00", "1;DROP TABLE jobs"])
async def test_unknown_or_hostile_job_ids_are_404(api, job_id):
    assert (await api.get(f"/comfyfixer/jobs/{job_id}")).status == 404
    assert (await api.delete(f"/comfyfixer/jobs/{job_id}")).status == 404
    assert (await api.post(f"/comfyfixer/jobs/{job_id}/items/1/retry")).status == 404


# -- settings and tokens -----------------------------------------------------------------------

async def test_settings_never_echo_a_token_even_in_errors(api, config, caplog):
    caplog.set_level("DEBUG")
    resp = await api.post("/comfyfixer/settings", json={"hf_token": TOKEN, "civitai_token": CIVITAI_TOKEN})
    assert resp.status == 200
    text = await resp.text()
    assert TOKEN not in text and CIVITAI_TOKEN not in text
    body = json.loads(text)
    assert body["civitai_token_set"] is True and body["hf_token_set"] is True
    # the settings the page sees hold no token field at all, whatever else they list
    assert not {"hf_token", "civitai_token"} & set(body)
    # a bad token value is refused without being quoted back
    for bad in (TOKEN + " with space", TOKEN + "\n2nd line", "x" * 5000, TOKEN + "\u00e9"):
        err = await error_of(await api.post("/comfyfixer/settings", json={"hf_token": bad}), 400)
        assert bad.strip()[:20] not in err["message"]
    err = await error_of(await api.post("/comfyfixer/settings", json={"hf_token": TOKEN, "bogus": TOKEN}), 400)
    assert TOKEN not in json.dumps(err)
    assert TOKEN not in caplog.text and CIVITAI_TOKEN not in caplog.text
    path = Path(config.state_dir) / "server-settings.json"
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- /download targets ----------------------------------------------------------------------------

HOSTILE_NAMES = [
    "../../x.safetensors", "/etc/x.safetensors", "C:\\x.safetensors", "C:x.safetensors",
    "\\\\server\\share\\x.safetensors", "//server/share/x.safetensors", "a/../../x.safetensors",
    "x\x00.safetensors", "CON.safetensors", "nul .safetensors", "lpt1.safetensors", "a" * 300 + ".safetensors",
    "x.safetensors.part", "x.safetensors.part.json", "sub/..\\..\\x.safetensors", "x\u202egpj.ckpt",
    "ok/x.sh", "x.py", "\u202ex.safetensors", "x.safe\ntensors",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:40])
async def test_hostile_download_file_names_are_400_and_create_nothing(api, fake_hub, name, comfy_root):
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": name, "directory": "checkpoints", "url": url_on(fake_hub)}]})
    assert resp.status == 400, (name, await resp.text())
    assert await jobs_of(api) == []
    assert not any(p.is_file() for p in comfy_root.rglob("*"))


@pytest.mark.parametrize("directory,index", [
    ("../checkpoints", 0), ("checkpoints/../../", 0), ("custom_nodes", 0), ("CUSTOM_NODES", 0),
    ("unknown", 0), ("no pe", 0), ("background_removal", 1), ("", 0), (None, 0), (["checkpoints"], 0), ("checkpoints", -1), ("checkpoints", 1),
    ("checkpoints", 10**30), ("checkpoints", True), ("checkpoints", 0.5), ("checkpoints", "0"),
])
async def test_bad_folders_and_indexes_are_400(api, fake_hub, directory, index):
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": directory, "folder_index": index, "url": url_on(fake_hub)}]})
    assert resp.status == 400, await resp.text()
    assert await jobs_of(api) == []


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://127.0.0.1/x.safetensors", "gopher://127.0.0.1/", "javascript:alert(1)",
    "http://user:pw@127.0.0.1/x.safetensors", "http://127.0.0.1.evil.test/x.safetensors",
    "http://evil.test\\@127.0.0.1/x.safetensors", "http://127.0.0.1:99999/x", "//127.0.0.1/x.safetensors",
    "http://127.0.0.1/x.safetensors?token=abc", "http://127.0.0.1/x.safetensors?api_key=abc",
    "http://127.0.0.1/x\r\nX-Evil: 1", "http://[::1]/x.safetensors", "http://2130706433/x.safetensors",
])
async def test_bad_urls_are_400(api, url):
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints", "url": url}]})
    err = await error_of(resp, 400)
    assert "abc" not in json.dumps(err)  # credential values are not echoed
    assert await jobs_of(api) == []


async def test_symlink_inside_a_model_folder_pointing_outside_is_refused(api, fake_hub, comfy_root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (comfy_root / "models" / "checkpoints" / "link").symlink_to(outside, target_is_directory=True)
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "link/x.safetensors", "directory": "checkpoints", "url": url_on(fake_hub)}]})
    assert (await error_of(resp, 400))["type"] == "UnsafePathError"
    dangling = comfy_root / "models" / "checkpoints" / "d.safetensors"
    dangling.symlink_to(outside / "d.safetensors")
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "d.safetensors", "directory": "checkpoints", "url": url_on(fake_hub)}]})
    assert resp.status == 400
    assert list(outside.iterdir()) == []


async def test_a_model_folder_that_is_itself_a_symlink_still_works(api, fake_hub, comfy_root, tmp_path, folders):
    """Users keep models on another drive: the folder's own link is trusted, links inside are not."""
    fake_hub.add_hf_repo("o/r", {"x.safetensors": blob(100, seed=78)})
    real = tmp_path / "big_drive"
    real.mkdir()
    lora = comfy_root / "models" / "loras"
    lora.rmdir()
    lora.symlink_to(real, target_is_directory=True)
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "loras", "url": url_on(fake_hub)}]})
    assert resp.status == 202, await resp.text()
    assert api.fixer.jobs.wait_idle(20)
    assert (real / "x.safetensors").read_bytes() == blob(100, seed=78)


async def test_a_target_that_is_an_existing_folder_is_refused(api, fake_hub, comfy_root):
    folder = comfy_root / "models" / "checkpoints" / "x.safetensors"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints", "url": url_on(fake_hub)}]})
    err = await error_of(resp, 400)
    assert "folder" in err["message"]
    assert await jobs_of(api) == []
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]


# -- volume and races -------------------------------------------------------------------------------

async def _run_many(api, comfy_root, n):
    with FileServer() as srv:  # every item answers 404 at once
        api.fixer._base_config = api.fixer.base_config.replace(allowed_hosts=["127.0.0.1:*"])

        def items(count):
            return [{"filename": f"m{i}.safetensors", "directory": "checkpoints",
                     "url": srv.url(f"/m{i}.safetensors")} for i in range(count)]

        err = await error_of(await api.post("/comfyfixer/download", json={"items": items(1000)}), 400)
        assert "500" in err["message"]
        assert await jobs_of(api) == []
        started = time.monotonic()
        resp = await api.post("/comfyfixer/download", json={"items": items(n)})
        assert resp.status == 202
        assert time.monotonic() - started < 5  # submitting does not wait for downloads
        job_id = (await resp.json())["job_id"]
        assert api.fixer.jobs.wait_idle(120)
        job = await (await api.get(f"/comfyfixer/jobs/{job_id}")).json()
        assert job["summary"] == {"total": n, "done": 0, "failed": n, "cancelled": 0}
        assert {it["error"]["type"] for it in job["items"]} == {"NotFoundError"}
    assert not any(comfy_root.rglob("*.part"))


async def test_a_thousand_items_are_refused_and_a_big_job_runs(api, comfy_root):
    await _run_many(api, comfy_root, 150)


async def test_the_largest_job_accepted_runs_to_the_end(api, comfy_root):
    """500 items run to the end (item changes cost O(1): about 2 s; it took 17 s when every
    change re-sent the whole job)."""
    await _run_many(api, comfy_root, 500)


async def test_cancel_and_retry_hammered_concurrently_stay_consistent(api, fake_hub, comfy_root):
    data = blob(2 << 20, seed=79)
    fake_hub.add_hf_repo("o/r", {"x.safetensors": data})
    fake_hub.rate_limit_bytes_per_s = 4 << 20
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints", "url": url_on(fake_hub)}]})
    job_id = (await resp.json())["job_id"]
    base = f"/comfyfixer/jobs/{job_id}/items/1"
    statuses = set()
    for _ in range(15):
        answers = await asyncio.gather(*(api.post(f"{base}/{op}") for op in ("cancel", "retry") * 4))
        statuses.update(r.status for r in answers)
        await asyncio.sleep(0.01)
    assert statuses <= {200, 409}
    fake_hub.rate_limit_bytes_per_s = None
    await api.post(f"{base}/cancel")
    assert api.fixer.jobs.wait_idle(20)
    item = (await (await api.get(f"/comfyfixer/jobs/{job_id}")).json())["items"][0]
    if item["state"] == "cancelled":
        assert (await api.post(f"{base}/retry")).status == 200
        assert api.fixer.jobs.wait_idle(20)
        item = (await (await api.get(f"/comfyfixer/jobs/{job_id}")).json())["items"][0]
    assert item["state"] in ("done", "skipped"), item
    target = comfy_root / "models" / "checkpoints" / "x.safetensors"
    assert target.read_bytes() == data
    assert not any(comfy_root.rglob("*.part*"))
