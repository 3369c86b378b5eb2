"""The settings the panel and ComfyUI's Settings dialog change (issue 11.5): each one is
checked like Config's own, stored server-side, applied to every request, and tokens stay
write-only."""

from __future__ import annotations

import pytest

from comfyfixersmart.service.jobs import MemoryJobStore
from comfyfixersmart.service.routes import FixerRoutes
from routes_support import mount_routes

TOKEN = "hf_" + "s" * 34


@pytest.fixture
async def api(aiohttp_client, make_config, tmp_path):
    fixer = FixerRoutes(folders=lambda: {"checkpoints": [str(tmp_path)]}, config=make_config(),
                        job_store=MemoryJobStore())
    client = await mount_routes(aiohttp_client, fixer)
    client.fixer = fixer
    yield client
    fixer.close()


async def test_defaults_are_shown(api):
    view = await (await api.get("/comfyfixer/settings")).json()
    assert view["download_concurrency"] == 3 and view["auto_resume"] is True
    assert view["allow_pickle"] is False and view["embed_after_download"] is False
    assert view["proxy"] is None and view["hf_endpoint"] == "https://huggingface.co"
    assert view["allowed_hosts_extra"] == [] and "huggingface.co" in view["allowed_hosts"]


async def test_every_setting_round_trips_and_applies(api):
    changes = {"min_confidence": 0.85, "download_concurrency": 5, "allowed_hosts_extra": ["models.example.org",
                                                                                          ".mirror.example", "10.0.0.5:8080"],
               "hf_endpoint": "https://hf-mirror.example", "proxy": "http://proxy.example:3128",
               "auto_resume": False, "allow_pickle": True, "embed_after_download": True, "hf_token": TOKEN}
    resp = await api.post("/comfyfixer/settings", json=changes)
    assert resp.status == 200, await resp.text()
    view = await resp.json()
    assert TOKEN not in await resp.text()
    for key, value in changes.items():
        if key != "hf_token":
            assert view[key] == value, key
    assert view["hf_token_set"] is True and "models.example.org" in view["allowed_hosts"]
    config = api.fixer.effective_config()
    assert (config.download_concurrency, config.proxy, config.auto_resume, config.allow_pickle) == \
        (5, "http://proxy.example:3128", False, True)
    assert config.hf_endpoint == "https://hf-mirror.example" and "10.0.0.5:8080" in config.allowed_hosts
    # null clears back to the Config's value
    resp = await api.post("/comfyfixer/settings", json={k: None for k in changes})
    view = await resp.json()
    assert view["download_concurrency"] == 3 and view["proxy"] is None and view["allowed_hosts_extra"] == []
    assert view["hf_token_set"] is False and view["allow_pickle"] is False


@pytest.mark.parametrize("bad", [
    {"download_concurrency": 0}, {"download_concurrency": 65}, {"download_concurrency": "4"},
    {"download_concurrency": True}, {"download_concurrency": 2.5},
    {"allowed_hosts_extra": ["*"]}, {"allowed_hosts_extra": ["https://evil.example"]},
    {"allowed_hosts_extra": ["a.example/path"]}, {"allowed_hosts_extra": ["a b"]}, {"allowed_hosts_extra": [1]},
    {"allowed_hosts_extra": ["host:99999"]}, {"allowed_hosts_extra": [f"h{i}.example" for i in range(51)]},
    {"hf_endpoint": "ftp://x"}, {"hf_endpoint": "https://user:pw@hf.example"}, {"hf_endpoint": 3},
    {"proxy": "socks://x"}, {"proxy": "http://user:secret@proxy.example"},
    {"auto_resume": "yes"}, {"allow_pickle": 1}, {"embed_after_download": "true"},
    {"min_confidence": 1.5}, {"user_agent": "x"}, {"comfyui_root": "/"},
])
async def test_bad_values_are_refused_and_nothing_changes(api, bad):
    before = await (await api.get("/comfyfixer/settings")).json()
    resp = await api.post("/comfyfixer/settings", json=bad)
    assert resp.status == 400, (bad, await resp.text())
    assert "secret" not in await resp.text()
    assert await (await api.get("/comfyfixer/settings")).json() == before


def test_download_concurrency_follows_the_setting(make_config, tmp_path):
    import threading

    from comfyfixersmart.datamodel import DownloadResult
    from comfyfixersmart.service.jobs import JobManager
    from comfyfixersmart.service.validation import DownloadItemSpec

    current = {"config": make_config(download_concurrency=1)}
    gate, started, lock = threading.Event(), [], threading.Lock()
    two = threading.Event()

    class Blocking:
        def download_model(self, url, save_path, **kw):
            with lock:
                started.append(save_path)
                if len(started) >= 2:
                    two.set()
            gate.wait(30)
            return DownloadResult(filename="x", success=False, save_path=save_path, error_type="DownloadError")

    jobs = JobManager(lambda: current["config"], downloader_factory=lambda c: Blocking())
    try:
        spec = [DownloadItemSpec(filename=f"{n}.safetensors", directory="checkpoints", url="http://127.0.0.1:9/x",
                                 save_path=str(tmp_path / f"{n}.safetensors")) for n in "ab"]
        jobs.submit_download(spec[:1])
        current["config"] = make_config(download_concurrency=2)
        jobs.submit_download(spec[1:])
        assert two.wait(30)  # the second ran beside the first once the setting allowed two
    finally:
        gate.set()
        jobs.shutdown()


def test_proxy_setting_reaches_both_session_factories(make_config):
    from comfyfixersmart.search.http import make_session

    config = make_config(proxy="http://proxy.example:3128")
    assert make_session(config).proxies == {"http": "http://proxy.example:3128", "https": "http://proxy.example:3128"}
    assert make_session(make_config()).proxies == {}
