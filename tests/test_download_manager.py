"""DownloadManager: batches, the concurrency limit, recording, jobs, cancel."""

from __future__ import annotations

import threading
import time

import pytest

from comfyfixersmart.download import DownloadManager
from comfyfixersmart.errors import ValidationError
from comfyfixersmart.state import StateManager
from dlserver import loopback_config, payload
from dlserver.fixtures import server, sha  # noqa: F401

MB = 1024 * 1024




def test_download_models_layout_results_and_history(server, make_config, tmp_path):
    a, b = payload(1000, 1), payload(2000, 2)
    server.add("/a", a)
    server.add("/b", b)
    out = tmp_path / "models"
    absolute = tmp_path / "elsewhere" / "c.safetensors"
    with DownloadManager(loopback_config(make_config)) as m:
        results = m.download_models([
            {"url": server.url("/a"), "filename": "sd15/a.safetensors", "directory": "checkpoints",
             "sha256": sha(a), "size": len(a), "source": "civitai", "source_id": "123"},
            {"url": server.url("/b"), "filename": "b.safetensors", "directory": "loras", "sha256": sha(b)},
            {"url": server.url("/a"), "save_path": str(absolute)},
            {"url": server.url("/b"), "filename": "bad.safetensors", "sha256": "1" * 64},
            {"filename": "nourl.safetensors"},
        ], out)
        history = m.state.get_download_history()
        assert m.state.is_downloaded("sd15/a.safetensors") and m.state.is_downloaded("a.safetensors")
        assert not m.state.is_downloaded("bad.safetensors")
    assert [r.success for r in results] == [True, True, True, False, False]
    assert (out / "checkpoints" / "sd15" / "a.safetensors").read_bytes() == a
    assert (out / "loras" / "b.safetensors").read_bytes() == b
    assert absolute.read_bytes() == a
    assert results[0].filename == "sd15/a.safetensors" and results[0].verified
    assert results[3].error_type == "IntegrityError"
    assert results[4].error_type == "ValidationError"
    by_name = {h.filename: h for h in history}
    assert set(by_name) == {"sd15/a.safetensors", "b.safetensors", "c.safetensors"}
    rec = by_name["sd15/a.safetensors"]
    assert (rec.source, rec.source_id, rec.sha256, rec.size) == ("civitai", "123", sha(a), len(a))
    assert rec.path == str(out / "checkpoints" / "sd15" / "a.safetensors")
    assert by_name["b.safetensors"].source == "127.0.0.1"


def test_concurrency_limit_per_batch(server, make_config, tmp_path):
    for i in range(6):
        server.add(f"/f{i}", payload(MB, i), rate=4 * MB)
    with DownloadManager(loopback_config(make_config, download_concurrency=8)) as m:
        results = m.download_models([{"url": server.url(f"/f{i}"), "filename": f"f{i}.safetensors"}
                                     for i in range(6)], tmp_path / "out", concurrency=2)
    assert all(r.success for r in results)
    assert server.max_active == 2


def test_manager_wide_limit_across_callers(server, make_config, tmp_path):
    for i in range(6):
        server.add(f"/f{i}", payload(MB, i), rate=4 * MB)
    with DownloadManager(loopback_config(make_config, download_concurrency=3)) as m:
        threads = [threading.Thread(target=m.download_model, args=(server.url(f"/f{i}"), tmp_path / f"f{i}.sft"))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert server.max_active == 3
    assert len(list(tmp_path.glob("f*.sft"))) == 6


def test_files_without_a_name_take_the_servers(server, make_config, tmp_path):
    server.add("/api/download/models/9", payload(10), disposition='attachment; filename="named.safetensors"')
    with DownloadManager(loopback_config(make_config)) as m:
        [r] = m.download_models([{"url": server.url("/api/download/models/9"), "directory": "loras"}],
                                tmp_path / "models")
    assert r.success and (tmp_path / "models" / "loras" / "named.safetensors").is_file()


def test_cancel_all_stops_running_and_queued(server, make_config, tmp_path):
    for i in range(4):
        server.add(f"/f{i}", payload(8 * MB, i), rate=2 * MB)
    out = {}
    with DownloadManager(loopback_config(make_config)) as m:
        t = threading.Thread(target=lambda: out.setdefault("r", m.download_models(
            [{"url": server.url(f"/f{i}"), "filename": f"f{i}.safetensors"} for i in range(4)],
            tmp_path / "out", concurrency=2)))
        t.start()
        deadline = time.monotonic() + 5
        while server.active < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert m.cancel() == 4
        t.join(10)
    assert [r.error_type for r in out["r"]] == ["DownloadCancelledError"] * 4
    assert list((tmp_path / "out").iterdir()) == []


def test_job_items_follow_the_download(server, make_config, tmp_path):
    data = payload(MB)
    server.add("/f", data)
    cfg = loopback_config(make_config)
    state = StateManager(cfg)
    job = state.enqueue_job("download", {"models": [server.url("/f")]})
    state.update_job(job, status="running")
    with DownloadManager(cfg, state=state) as m:
        r = m.download_model(server.url("/f"), tmp_path / "f.safetensors", job_id=job, item_id="item-1")
    assert r.success
    [item] = state.get_job(job).items
    assert (item.item_id, item.status, item.downloaded, item.total) == ("item-1", "done", len(data), len(data))
    state.close()


def test_programmer_errors_raise(make_config, tmp_path):
    with DownloadManager(loopback_config(make_config)) as m:
        with pytest.raises(ValidationError):
            m.download_model("http://127.0.0.1/x", tmp_path / "x", expected_sha256="xyz")
        with pytest.raises(ValidationError):
            m.download_model("http://127.0.0.1/x", tmp_path / "x", expected_size=-1)
        with pytest.raises(TypeError):
            m.download_model(None, tmp_path / "x")  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            m.download_models([], tmp_path, concurrency=0)
        assert m.download_models([], tmp_path) == []


def test_unreachable_server_is_a_failed_result(make_config, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with DownloadManager(loopback_config(make_config, http_retries=1)) as m:
        r = m.download_model(f"http://127.0.0.1:{port}/x", tmp_path / "x.safetensors")
    assert not r.success and r.error_type == "NetworkError"
    assert list(tmp_path.glob("x.safetensors*")) == []


def test_cancelled_while_queued_never_starts_and_keeps_its_part_file(server, make_config, tmp_path):
    slow, other = payload(400_000, 7), payload(50_000, 8)
    server.add("/slow", slow, rate=400_000)  # holds the only worker for about a second
    server.add("/other", other, etag='"changed"')  # a resume attempt would have to start over
    cfg = loopback_config(make_config, download_concurrency=1)
    out = tmp_path / "models"
    part = out / "loras" / "other.safetensors.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(other[:1000])  # an earlier, resumable attempt
    with DownloadManager(cfg) as m:
        results = []
        batch = threading.Thread(target=lambda: results.extend(m.download_models([
            {"url": server.url("/slow"), "filename": "slow.safetensors", "directory": "checkpoints"},
            {"url": server.url("/other"), "filename": "other.safetensors", "directory": "loras", "item_id": "other"},
        ], out, concurrency=1)))
        batch.start()
        deadline = time.monotonic() + 5
        while not server.requests_for("/slow") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert m.cancel("other") >= 1  # still waiting in the batch's queue
        batch.join(15)
    slow_result, other_result = results
    assert slow_result.success
    assert not other_result.success and other_result.error_type == "DownloadCancelledError"
    assert server.requests_for("/other") == []
    assert part.read_bytes() == other[:1000]
    assert not (out / "loras" / "other.safetensors").exists()


def test_reference_progress_callback_always_gets_a_total(server, make_config, tmp_path):
    # the api-reference example divides by total: it must never see None or 0
    data = payload(300_000, 3)
    server.add("/sized", data)
    server.add("/unsized", data, send_length=False, ranges=False)
    calls = []

    def progress_callback(filename, downloaded, total):
        calls.append((filename, downloaded, total, downloaded / total * 100))

    with DownloadManager(loopback_config(make_config)) as m:
        for name in ("sized", "unsized"):
            r = m.download_model(server.url(f"/{name}"), tmp_path / f"{name}.safetensors",
                                 progress_callback=progress_callback)
            assert r.success
    assert calls and all(total for _, _, total, _ in calls)
    assert calls[-1][1:3] == (len(data), len(data))
    assert any(c[0] == "sized.safetensors" and c[3] == 100 for c in calls)
