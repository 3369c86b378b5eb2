"""How resolving behaves when the network does not: an unreachable host fails at once (no
retries, no huggingface_hub retry chatter), servers that answer 5xx or too slowly get the
config's bounded retries.  Real clients against the fake hub or closed loopback ports."""

from __future__ import annotations

import logging
import time

import pytest

from comfyfixersmart.core import ComfyFixerCore
from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.errors import NetworkError
from comfyfixersmart.search import ModelSearch
from fakehub import blob
from fakehub.fixtures import config_for_hub, fake_hub  # noqa: F401
from test_core_support import closed_port, node, ui_workflow, write_json


def ref(name: str, folder: str = "vae", url=None) -> ModelReference:
    return ModelReference(name, "VAELoader", "vae", folder, url=url)


def test_refused_connections_are_not_retried(make_config, caplog):
    config = make_config(civitai_base_url=f"http://127.0.0.1:{closed_port()}",
                         hf_endpoint=f"http://127.0.0.1:{closed_port()}", allowed_hosts=["127.0.0.1:*"],
                         http_retries=4, backoff_base=1.0, backoff_max=30.0)  # retries would be slow
    caplog.set_level(logging.DEBUG)
    with ModelSearch(config) as search:
        began = time.monotonic()
        first = search.resolve_many([ref("juggernautXL_v9.safetensors")])
        assert search.api.requests_sent == 2  # one attempt per backend, no retry
        out = search.resolve_many([ref(f"model_{i}_v1.safetensors") for i in range(5)])
        assert search.api.requests_sent == 2  # both hosts are known to be down: no new attempt
        elapsed = time.monotonic() - began
    assert elapsed < 3, elapsed
    for res in first + out:
        assert {(e["backend"], e["type"]) for e in res.errors} == {("civitai", "NetworkError"),
                                                                  ("huggingface", "NetworkError")}
    assert not [r for r in caplog.records if r.name.startswith("huggingface_hub") and "Retry" in r.getMessage()]


def test_failed_name_resolution_is_not_retried(make_config, monkeypatch, capfd):
    """The lead's offline case: civitai.com and huggingface.co do not resolve.  The resolver is
    the far side here (faked at socket.getaddrinfo); requests, httpx and huggingface_hub are real."""
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host in ("civitai.com", "huggingface.co"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    config = make_config(backoff_base=1.0, backoff_max=30.0)  # the real endpoints, slow retries if any
    began = time.monotonic()
    with ModelSearch(config) as search:
        (plain,) = search.resolve_many([ref("juggernautXL_v9.safetensors", "checkpoints")])
        assert search.api.requests_sent == 2  # one Civitai and one HF attempt: no retry
        (linked,) = search.resolve_many([ref("sdxl_vae.safetensors", url="https://huggingface.co/stabilityai/"
                                                                           "sdxl-vae/resolve/main/sdxl_vae.safetensors")])
        assert search.api.requests_sent == 2  # both hosts known to be down now
    assert time.monotonic() - began < 3
    assert {e["backend"] for e in plain.errors} == {"civitai", "huggingface"}
    assert all(e["type"] == "NetworkError" and "not known" in e["message"].lower() for e in plain.errors)
    # the workflow's URL is kept (the known-model index lists the same file: it agrees)
    assert linked.best.backend in ("index", "workflow") and linked.best.confidence >= 0.95
    assert linked.best.download_url == "https://huggingface.co/stabilityai/sdxl-vae/resolve/main/sdxl_vae.safetensors"
    assert "Retry" not in capfd.readouterr().err


def test_hf_search_gets_bounded_retries_on_server_errors(fake_hub, tmp_path):
    fake_hub.add_hf_repo("acme/flaky-vae", {"flaky_vae.safetensors": blob(100)})
    config = config_for_hub(fake_hub, tmp_path, http_retries=2)
    fake_hub.inject("/api/models", 503, times=2)
    with ModelSearch(config, backends=["huggingface"]) as search:
        assert search.resolve(ref("flaky_vae.safetensors"))[0].filename == "flaky_vae.safetensors"
    # the first search term: 2 failures, then the success (later terms may follow)
    assert [r.status for r in fake_hub.find_requests("/api/models", method="GET")][:3] == [503, 503, 200]
    fake_hub.clear_faults()
    fake_hub.clear_log()
    fake_hub.inject("/api/models", 503, times=None)
    with ModelSearch(config_for_hub(fake_hub, tmp_path / "b", http_retries=2), backends=["huggingface"]) as search:
        with pytest.raises(Exception) as info:
            search.resolve(ref("flaky_vae.safetensors"))
    assert getattr(info.value, "status", None) == 503
    assert fake_hub.request_count("/api/models", method="GET") == 3  # 1 + http_retries, then it gives up


def test_hf_search_timeout_is_retried_once_then_reported(fake_hub, tmp_path):
    fake_hub.add_hf_repo("acme/slow-vae", {"slow_vae.safetensors": blob(100)})
    fake_hub.inject("/api/models", delay=1.6, times=None)
    config = config_for_hub(fake_hub, tmp_path, civitai_api_timeout=1, http_retries=4)
    began = time.monotonic()
    with ModelSearch(config, backends=["huggingface"]) as search:
        with pytest.raises(NetworkError, match="timed out"):
            search.resolve(ref("slow_vae.safetensors"))
    assert time.monotonic() - began < 4
    assert fake_hub.request_count("/api/models", method="GET") == 2


def test_core_analysis_offline_keeps_workflow_candidates(make_config, tmp_path):
    root = tmp_path / "ComfyUI"
    (root / "models" / "vae").mkdir(parents=True)
    wf = write_json(tmp_path / "wf.json", ui_workflow(
        [node(1, "VAELoader", ["a.safetensors"]), node(2, "CheckpointLoaderSimple", ["juggernautXL_v9.safetensors"])],
        models=[{"name": "a.safetensors", "directory": "vae",
                 "url": "https://huggingface.co/acme/vaes/resolve/main/a.safetensors"}]))
    config = make_config(comfyui_root=root, civitai_base_url=f"http://127.0.0.1:{closed_port()}",
                         hf_endpoint=f"http://127.0.0.1:{closed_port()}", allowed_hosts=["127.0.0.1:*"],
                         backoff_base=1.0, backoff_max=30.0)
    began = time.monotonic()
    with ComfyFixerCore(config) as core:
        analysis = core.analyze_workflows([wf])
        run = core.run([wf], dry_run=True)
    assert time.monotonic() - began < 3
    res = {r.reference.key: r for r in analysis.resolutions}
    assert res["vae/a.safetensors"].best.backend == "workflow"  # what was found is kept
    assert res["checkpoints/juggernautXL_v9.safetensors"].candidates == []
    failure = {f.filename: f for f in run.failures}["juggernautXL_v9.safetensors"]
    assert failure.error_type == "NetworkError" and "civitai: " in failure.reason and "huggingface: " in failure.reason
