"""The fake hub itself: the download side other tests rely on (redirects, Range, auth, signed
URLs, truncation, knobs, request log), exercised with requests and aiohttp."""

from __future__ import annotations

import hashlib
import time

import aiohttp
import pytest
import requests

from fakehub import blob
from fakehub.fixtures import fake_hub  # noqa: F401


def test_civitai_download_redirects_to_storage_without_the_token(fake_hub):
    data = blob(100_000, 1)
    ids = fake_hub.add_civitai_model("Locked", {"locked_v1.safetensors": data}, requires_auth=True)
    fake_hub.add_civitai_token("civ-token")
    url = f"{fake_hub.civitai_url}/api/download/models/{ids.version_id}?fileId={ids.file_id}"
    assert requests.get(url).status_code == 401
    r = requests.get(url, headers={"Authorization": "Bearer civ-token"})
    assert r.status_code == 200 and r.content == data
    assert r.history[0].status_code == 307 and r.url.startswith(fake_hub.storage_url)
    assert r.headers["Content-Disposition"] == 'attachment; filename="locked_v1.safetensors"'
    (storage,) = fake_hub.find_requests(listener="storage")
    assert storage.authorization is None  # requests drops it on the cross-host redirect


def test_early_access_and_range_and_signature_expiry(fake_hub):
    data = blob(5000, 2)
    ids = fake_hub.add_civitai_model("Early", {"early.safetensors": data}, early_access_until="2099-01-01T00:00:00Z")
    url = f"{fake_hub.civitai_url}/api/download/models/{ids.version_id}"
    r = requests.get(url)
    assert r.status_code == 403 and r.json()["deadline"] == "2099-01-01T00:00:00Z"
    fake_hub.add_civitai_token("buyer", early_access=[ids.version_id])
    r = requests.get(url, headers={"Authorization": "Bearer buyer", "Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["Content-Range"] == "bytes 100-199/5000"
    fake_hub.signed_url_ttl = -1
    r = requests.get(url, headers={"Authorization": "Bearer buyer"})
    assert r.status_code == 403 and b"expired" in r.content


def test_hf_resolve_head_and_cdn_redirect(fake_hub):
    data = blob(3000, 3)
    repo = fake_hub.add_hf_repo("a/b", {"w.safetensors": data, "config.json": b"{}"})
    head = requests.head(f"{fake_hub.hf_url}/a/b/resolve/main/w.safetensors")
    assert head.status_code == 302
    assert head.headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert head.headers["X-Linked-Size"] == "3000" and head.headers["X-Repo-Commit"] == repo.sha
    assert "X-Xet-Hash" not in head.headers
    r = requests.get(f"{fake_hub.hf_url}/a/b/resolve/{repo.sha}/w.safetensors", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    small = requests.get(f"{fake_hub.hf_url}/a/b/resolve/main/config.json")
    assert small.status_code == 200 and small.headers["ETag"] == f'"{repo.files["config.json"].oid}"'
    assert requests.get(f"{fake_hub.hf_url}/a/b/resolve/nope/w.safetensors").headers["X-Error-Code"] == \
        "RevisionNotFound"
    assert requests.get(f"{fake_hub.hf_url}/a/b/resolve/main/x.bin").headers["X-Error-Code"] == "EntryNotFound"
    bad = requests.get(f"{fake_hub.hf_url}/a/b/resolve/main/w.safetensors", headers={"Range": "bytes=9999-"})
    assert bad.status_code == 416


def test_gated_and_private_rules(fake_hub):
    fake_hub.add_hf_repo("g/gated", {"m.safetensors": b"x"}, gated=True)
    fake_hub.add_hf_repo("p/private", {"m.safetensors": b"x"}, private=True)
    fake_hub.add_hf_token("hf_ok", ["g/gated"])
    fake_hub.add_hf_token("hf_other")
    u = f"{fake_hub.hf_url}/g/gated/resolve/main/m.safetensors"
    assert requests.get(u).status_code == 401
    assert requests.get(u, headers={"Authorization": "Bearer hf_other"}).status_code == 403
    ok = requests.get(u, headers={"Authorization": "Bearer hf_ok"})
    assert ok.status_code == 200 and ok.content == b"x" and ok.history[0].status_code == 302
    assert requests.get(f"{fake_hub.hf_url}/api/models/g/gated").json()["gated"] == "auto"
    r = requests.get(f"{fake_hub.hf_url}/api/models/p/private")
    assert r.status_code == 401 and r.headers["X-Error-Code"] == "RepoNotFound"
    assert requests.get(f"{fake_hub.hf_url}/api/models/p/private",
                        headers={"Authorization": "Bearer hf_other"}).status_code == 404


def test_fault_injection_latency_and_log(fake_hub):
    fake_hub.inject("/api/v1/models", 503, times=2, headers={"Retry-After": "2"})
    codes = [requests.get(f"{fake_hub.civitai_url}/api/v1/models").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    fake_hub.latency = 0.1
    started = time.monotonic()
    requests.get(f"{fake_hub.civitai_url}/api/v1/models")
    assert time.monotonic() - started >= 0.1
    assert fake_hub.request_count("/api/v1/models", listener="civitai") == 4
    assert [r.status for r in fake_hub.find_requests("/api/v1/models")] == [503, 503, 200, 200]
    fake_hub.clear_log()
    assert fake_hub.requests == []


async def test_truncated_download_with_aiohttp(fake_hub):
    data = blob(600_000, 4)
    fake_hub.add_hf_repo("a/t", {"t.safetensors": data})
    fake_hub.inject("/hf-cdn/*", truncate_after=1000)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(f"{fake_hub.hf_url}/a/t/resolve/main/t.safetensors") as resp:
                await resp.read()
        async with session.get(f"{fake_hub.hf_url}/a/t/resolve/main/t.safetensors",
                               headers={"Range": "bytes=1000-"}) as resp:
            assert resp.status == 206 and await resp.read() == data[1000:]


def test_civitai_search_pagination_and_quirks(fake_hub):
    for i in range(3):
        fake_hub.add_civitai_model(f"Pager {i}", {f"pager{i}.safetensors": b"x"}, stats_null=(i == 0),
                                   commercial_use_as="string")
    fake_hub.civitai_numeric_cursor = True
    page = requests.get(f"{fake_hub.civitai_url}/api/v1/models", params={"query": "pager", "limit": 2}).json()
    assert len(page["items"]) == 2 and page["metadata"]["nextCursor"] == 2
    rest = requests.get(f"{fake_hub.civitai_url}/api/v1/models",
                        params={"query": "pager", "limit": 2, "cursor": 2}).json()
    assert len(rest["items"]) == 1 and "nextCursor" not in rest["metadata"]
    assert requests.get(f"{fake_hub.civitai_url}/api/v1/models", params={"query": "x", "page": 2}).status_code == 400
    item = next(i for i in page["items"] + rest["items"] if i["name"] == "Pager 0")
    assert item["stats"]["downloadCount"] is None and item["allowCommercialUse"] == "{Image,RentCivit}"
