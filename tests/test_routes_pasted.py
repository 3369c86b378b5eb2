"""The download route accepts pasted hub pages (the panel's paste-URL box)."""

from __future__ import annotations

import hashlib

from fakehub.fixtures import config_for_hub, fake_hub  # noqa: F401
from test_routes import WEIGHTS, api, comfy_root, config, error_of, folders, wait_job  # noqa: F401


async def test_a_pasted_blob_page_downloads_the_file_verified(api, fake_hub, comfy_root):  # noqa: F811
    fake_hub.add_hf_repo("stabilityai/sdxl-turbo", {"sd_xl_turbo_1.0_fp16.safetensors": WEIGHTS})
    page = "https://huggingface.co/stabilityai/sdxl-turbo/blob/main/sd_xl_turbo_1.0_fp16.safetensors"
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "sd_xl_turbo_1.0_fp16.safetensors", "directory": "checkpoints", "url": page}]})
    assert resp.status == 202, await resp.text()
    job = await wait_job(api, (await resp.json())["job_id"])
    assert job["state"] == "done", job
    target = comfy_root / "models" / "checkpoints" / "sd_xl_turbo_1.0_fp16.safetensors"
    assert target.read_bytes() == WEIGHTS
    item = job["items"][0]
    # the hub's sha256 was filled in, so the file was verified
    assert item["sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert fake_hub.request_count("/stabilityai/sdxl-turbo/resolve/*", method="HEAD") >= 1


async def test_a_pasted_civitai_page_and_a_page_that_is_not_a_file(api, fake_hub, comfy_root):  # noqa: F811
    ids = fake_hub.add_civitai_model("Detail Tweaker", {"detail_tweaker.safetensors": WEIGHTS}, type="LORA")
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "detail_tweaker.safetensors", "directory": "loras",
         "url": f"https://civitai.com/models/{ids.model_id}?modelVersionId={ids.version_id}"}]})
    assert resp.status == 202, await resp.text()
    job = await wait_job(api, (await resp.json())["job_id"])
    assert job["state"] == "done", job
    assert (comfy_root / "models" / "loras" / "detail_tweaker.safetensors").read_bytes() == WEIGHTS

    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "loras", "url": "https://civitai.com/user/someone"}]})
    error = await error_of(resp, 400)
    assert error["type"] == "NotAFileUrlError" and "user page" in error["message"]
