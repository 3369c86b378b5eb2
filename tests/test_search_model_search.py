"""ModelSearch as the core and the UI use it: backends, the workflow's own URLs, resolve_many
(concurrency, errors, cache), calibration, and a real workflow's metadata."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from typing import List, Optional

import pytest

from comfyfixersmart.datamodel import ModelDetails, ModelReference, SearchResult
from comfyfixersmart.errors import APISearchError, NetworkError, ValidationError
from comfyfixersmart.search import ModelSearch, SearchBackend
from fakehub import blob
from fakehub.fixtures import config_for_hub, fake_hub, hub_config  # noqa: F401


def ref(filename, folder="checkpoints", **kw):
    return ModelReference(filename=filename, node_type="Loader", expected_type=folder.rstrip("s"),
                          expected_directory=folder, **kw)


class CountingBackend:
    """A custom backend (implements the SearchBackend protocol) that records concurrency."""

    name = "counting"

    def __init__(self, delay=0.05, fail_on=(), hold_until_active=0):
        self.delay, self.fail_on = delay, set(fail_on)
        self.active = self.max_active = 0
        self.lock = threading.Condition()
        #: calls wait (10 s at most) until this many run at once: concurrency is shown by the
        #: calls meeting, not by how long a busy machine takes
        self.hold_until_active = hold_until_active

    def search(self, query: str, folder: Optional[str]) -> List[SearchResult]:
        return [SearchResult(self.name, "1", query, query, "checkpoint", "http://127.0.0.1/x", confidence=0.5)]

    def resolve(self, reference: ModelReference) -> List[SearchResult]:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.lock.notify_all()
            self.lock.wait_for(lambda: self.max_active >= self.hold_until_active, timeout=10)
        try:
            time.sleep(self.delay)
            if reference.filename in self.fail_on:
                raise APISearchError("backend exploded", status=500, backend=self.name)
            return [SearchResult(self.name, "1", "n", reference.basename, "x",
                                 f"http://127.0.0.1/{reference.filename}", confidence=0.91,
                                 directory="somewhere_else", save_as="other.bin")]
        finally:
            with self.lock:
                self.active -= 1

    def get_model_details(self, model_id: str) -> ModelDetails:
        return ModelDetails(self.name, model_id, "n")


def test_backends_and_protocol(hub_config):
    with ModelSearch(hub_config) as s:
        assert s.backends == ["index", "workflow", "civitai", "huggingface"]
        custom = CountingBackend()
        assert isinstance(custom, SearchBackend)
        s.add_backend(custom)
        assert s.backends[-1] == "counting"
        assert s.get_model_details("counting", 5).model_id == "5"
        with pytest.raises(ValidationError):
            s.add_backend(object())
        with pytest.raises(ValidationError):
            s.search("x", backends=["nope"])
        with pytest.raises(ValidationError):
            s.get_model_details("workflow", "1")
    with ModelSearch(hub_config, backends=["civitai"]) as s:
        assert s.backends == ["civitai"]


def test_model_type_accepts_type_names_and_folder_keys(fake_hub, hub_config):
    fake_hub.add_civitai_model("Ghost Lora", {"ghostLora_v1.safetensors": blob(10)}, type="LORA")
    with ModelSearch(hub_config, backends=["civitai"]) as s:
        for model_type in ("lora", "loras", "LoRA"):
            (r,) = s.search("ghostLora_v1.safetensors", model_type=model_type)
            assert r.directory == "loras"
        (r,) = s.search("loras/style/ghostLora_v1.safetensors", model_type="lora")
        assert r.save_as == "loras/style/ghostLora_v1.safetensors"
        # any well-formed folder key is a type (a key ComfyUI does not know lives in models/<key>)
        fake_hub.add_civitai_model("Cutout Net", {"cutout_net_v2.safetensors": blob(11)}, type="Other")
        for key in ("background_removal", "geometry_estimation", "frame_interpolation", "optical_flow"):
            (r,) = s.search("cutout_net_v2.safetensors", model_type=key)
            assert r.directory == key and r.model_type == key
        for bad in ("../x", "a/b", "unknown", "custom_nodes", "con", "x" * 101, ".hidden", "a\\b", "t\tb"):
            with pytest.raises(ValidationError):
                s.search("x", model_type=bad)
        with pytest.raises(ValidationError):
            s.search("  ")
        with pytest.raises(ValidationError):
            s.search("../../etc/passwd.safetensors")


def test_folder_and_name_come_from_the_reference(hub_config):
    with ModelSearch(hub_config, backends=[CountingBackend(delay=0)]) as s:
        (r,) = s.resolve(ref("sd15/my.safetensors", "checkpoints"))
    assert (r.directory, r.save_as, r.model_type) == ("checkpoints", "sd15/my.safetensors", "checkpoint")


def test_resolve_many_is_concurrent_bounded_ordered_and_deduplicated(hub_config):
    backend = CountingBackend(delay=0.05, hold_until_active=4)
    config = hub_config.replace(search_concurrency=4)
    refs = [ref(f"m{i}.safetensors") for i in range(12)] + [ref("m0.safetensors")]
    with ModelSearch(config, backends=[backend]) as s:
        out = s.resolve_many(refs)
    # 4 calls met (one at a time they would have waited 10 s each and failed this), never 5
    assert backend.max_active == 4
    assert [r.reference.filename for r in out] == [r.filename for r in refs]
    assert out[0].candidates[0].download_url == out[-1].candidates[0].download_url
    assert out[0].candidates[0] is not out[-1].candidates[0]


def test_failures_are_recorded_and_do_not_stop_the_others(fake_hub, hub_config):
    fake_hub.add_civitai_model("Fine Model", {"fineModel_v1.safetensors": blob(10)})
    failing = CountingBackend(delay=0, fail_on={"broken.safetensors"})
    with ModelSearch(hub_config, backends=[failing, "civitai"]) as s:
        good, bad = s.resolve_many([ref("fineModel_v1.safetensors"), ref("broken.safetensors")])
    assert good.errors == [] and {c.backend for c in good.candidates} == {"counting", "civitai"}
    # two files of that name, nothing says which: neither is sure enough to be chosen
    assert all(c.confidence < 0.9 and "1 other file" in c.reason for c in good.candidates)
    assert bad.errors[0]["type"] == "APISearchError" and bad.errors[0]["backend"] == "counting"
    assert bad.errors[0]["status"] == 500


def test_persistent_server_errors_are_recorded_per_reference(fake_hub, hub_config):
    # not a publisher the trees settle: Civitai is asked (and fails)
    fake_hub.add_hf_repo("someone/sd3.5", {"checkpoints/sd3.5_medium.safetensors": blob(10)})
    fake_hub.inject("/api/v1/models", 500, times=None)
    config = hub_config.replace(http_retries=1)
    with ModelSearch(config, backends=["civitai", "huggingface"]) as s:
        (res,) = s.resolve_many([ref("sd3.5_medium.safetensors")])
    assert res.best.backend == "huggingface" and res.best.confidence >= 0.9
    assert [e["type"] for e in res.errors] == ["APISearchError"] and res.errors[0]["backend"] == "civitai"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_network_gives_network_errors_and_keeps_what_was_found(make_config):
    port = _closed_port()
    config = make_config(civitai_base_url=f"http://127.0.0.1:{port}", hf_endpoint=f"http://127.0.0.1:{port}",
                         allowed_hosts=["127.0.0.1:*"])
    with_url = ref("x.safetensors", url=f"http://127.0.0.1:{port}/some/where/x.safetensors")
    refs = [with_url] + [ref(f"model{i}_v1.safetensors") for i in range(6)]
    started = time.monotonic()
    with ModelSearch(config) as s:
        out = s.resolve_many(refs)
    assert time.monotonic() - started < 5
    assert out[0].best.backend == "workflow" and out[0].best.confidence == 0.95
    for res in out[1:]:
        assert res.candidates == []
        assert {e["type"] for e in res.errors} == {"NetworkError"}
    with ModelSearch(config, backends=["civitai"]) as s:
        with pytest.raises(NetworkError):
            s.resolve(ref("model_v1.safetensors"))


def test_second_run_makes_no_request_and_cache_can_be_disabled(fake_hub, hub_config):
    fake_hub.add_civitai_model("Cached Model", {"cachedModel_v1.safetensors": blob(10)})
    fake_hub.add_hf_repo("Comfy-Org/cached", {"cached_vae.safetensors": blob(11)})
    refs = [ref("cachedModel_v1.safetensors"), ref("cached_vae.safetensors", "vae"), ref("notThere_v2.safetensors")]
    with ModelSearch(hub_config) as s:
        first = s.resolve_many(refs)
    assert fake_hub.requests
    fake_hub.clear_log()
    with ModelSearch(hub_config) as s:  # a new process would open the same cache file
        second = s.resolve_many(refs)
    assert fake_hub.requests == []
    assert [r.to_dict() for r in first] == [r.to_dict() for r in second]
    with ModelSearch(hub_config.replace(cache_enabled=False)) as s:
        s.resolve_many(refs)
    assert fake_hub.requests


# -- the workflow backend ------------------------------------------------------------------

def test_workflow_url_blob_link_rewritten_and_saved_under_reference_name(fake_hub, hub_config):
    data = blob(500, 9)
    repo = fake_hub.add_hf_repo("Comfy-Org/HunyuanVideo_repackaged",
                                {"split_files/text_encoders/clip_l.safetensors": data})
    url = "https://huggingface.co/Comfy-Org/HunyuanVideo_repackaged/blob/main/split_files/text_encoders/clip_l.safetensors"
    with ModelSearch(hub_config) as s:
        (res,) = s.resolve_many([ref("hunyuan_clip.safetensors", "text_encoders", url=url)])
    best = res.best
    assert best.backend == "workflow" and best.confidence == 0.95
    assert best.download_url == (f"{fake_hub.hf_url}/Comfy-Org/HunyuanVideo_repackaged/resolve/main/"
                                 "split_files/text_encoders/clip_l.safetensors")
    assert best.save_as == "hunyuan_clip.safetensors" and best.directory == "text_encoders"
    assert "saved as 'hunyuan_clip.safetensors'" in best.reason and "/resolve/" in best.reason
    assert best.hash_sha256 == hashlib.sha256(data).hexdigest() and best.size_bytes == 500
    assert res.choose() is best
    assert fake_hub.request_count("/api/v1/models") == 0  # decisive: nobody else asked
    assert repo.sha


def test_workflow_url_with_matching_hash_is_certain_and_mismatch_is_not(fake_hub, hub_config):
    data = blob(300, 4)
    fake_hub.add_hf_repo("Comfy-Org/x", {"a.safetensors": data})
    url = "https://huggingface.co/Comfy-Org/x/resolve/main/a.safetensors"
    good = hashlib.sha256(data).hexdigest()
    with ModelSearch(hub_config, backends=["workflow"]) as s:
        (ok,) = s.resolve(ref("a.safetensors", url=url, hash=good, hash_type="sha256"))
        (bad,) = s.resolve(ref("a.safetensors", url=url, hash="00" * 32, hash_type="sha256"))
    assert ok.confidence == 1.0
    assert bad.confidence <= 0.55 and "differs" in bad.reason
    # a URL whose server gives no sha256 keeps the workflow's hash for the download to verify
    with ModelSearch(hub_config, backends=["workflow"]) as s:
        (plain,) = s.resolve(ref("z.safetensors", url="https://models.example.org/z.safetensors", hash=good))
    assert plain.hash_sha256 == good and plain.confidence < 1.0


def test_workflow_civitai_url_is_rebuilt_and_enriched(fake_hub, hub_config):
    data = blob(256, 5)
    ids = fake_hub.add_civitai_model("Epic", {"epic_v1.safetensors": data, "epic_v1.ckpt": blob(9)})
    url = f"https://civitai.com/api/download/models/{ids.version_id}?fileId={ids.file_ids['epic_v1.safetensors']}"
    with ModelSearch(hub_config, backends=["workflow"]) as s:
        (r,) = s.resolve(ref("epic.safetensors", url=url))
    assert r.download_url == f"{fake_hub.civitai_url}/api/download/models/{ids.version_id}?fileId={ids.file_id}"
    assert r.hash_sha256 == hashlib.sha256(data).hexdigest() and r.size_bytes == 256
    assert r.metadata["page_url"].startswith(f"{fake_hub.civitai_url}/models/{ids.model_id}")
    assert r.save_as == "epic.safetensors" and r.confidence == 0.95


@pytest.mark.parametrize("url", ["ftp://example.com/m.safetensors", "javascript:alert(1)",
                                 "http://user:pw@127.0.0.1/m.safetensors", "http://127.0.0.1/a b.safetensors"])
def test_workflow_rejects_bad_urls(hub_config, url):
    with ModelSearch(hub_config, backends=["workflow"]) as s:
        (res,) = s.resolve_many([ref("m.safetensors", url=url)])
    assert res.candidates == [] and res.errors[0]["type"] == "HostNotAllowedError"
    assert "pw" not in json.dumps(res.errors)


def test_workflow_url_on_a_host_not_allowed_is_shown_but_never_chosen(hub_config):
    with ModelSearch(hub_config, backends=["workflow"]) as s:
        (res,) = s.resolve_many([ref("fake_model.safetensors",
                                     url="https://models.example.org/fake_model.safetensors")])
    assert res.best.confidence == 0.5 and "not on the allow-list" in res.best.reason
    assert res.choose(0.0) is None


def test_workflow_url_answering_404_is_demoted(fake_hub, hub_config):
    fake_hub.add_hf_repo("Comfy-Org/x", {"a.safetensors": blob(3)})
    with ModelSearch(hub_config, backends=["workflow"]) as s:
        (res,) = s.resolve_many([ref("b.safetensors", url="https://huggingface.co/Comfy-Org/x/resolve/main/b.safetensors")])
    assert res.best.confidence == 0.6 and res.errors[0]["type"] == "NotFoundError"


def test_real_workflow_models_metadata(fake_hub, hub_config, fixtures_dir):
    """The hunyuan example workflow carries its own URLs: each resolves to the fake Comfy-Org repo."""
    wf = json.loads((fixtures_dir / "workflows" / "comfyanonymous__ComfyUI_examples__hunyuan_video_image_to_video.json")
                    .read_text())
    entries = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "models" and isinstance(v, list):
                    entries.extend(e for e in v if isinstance(e, dict) and e.get("url"))
                else:
                    walk(v)
        elif isinstance(o, list):
            for x in o:
                walk(x)

    walk(wf)
    assert entries
    files = {}
    for i, e in enumerate(entries):
        path = e["url"].split("/resolve/main/", 1)[1].split("?", 1)[0]
        files[path] = blob(100 + i, i)
    fake_hub.add_hf_repo("Comfy-Org/HunyuanVideo_repackaged", files)
    refs = [ref(e["name"], e["directory"], url=e["url"]) for e in entries]
    with ModelSearch(hub_config) as s:
        out = s.resolve_many(refs)
    for res, e in zip(out, entries):
        best = res.choose()
        # the known-model index lists the same files (official templates): it may present them
        assert best is not None and best.backend in ("index", "workflow"), res.to_dict()
        assert best.download_url.startswith(f"{fake_hub.hf_url}/Comfy-Org/HunyuanVideo_repackaged/resolve/")
        assert best.directory == e["directory"] and best.save_as == e["name"]
        assert "?download=true" not in best.download_url and best.hash_sha256
