"""Background refresh of the known-model index, against a local server speaking PyPI's JSON API."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from comfyfixersmart.search import index_refresh
from comfyfixersmart.search.known_models import KnownModelIndex, index_path
from comfyfixersmart.settings import Config
from test_known_models import make_wheel, manager_wheel, templates_wheel


class FakePyPI:
    """``/pypi/<name>/json`` (ETag, 304), ``/pypi/<name>/<version>/json`` and ``/files/<wheel>``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.projects = {}
        self.log = []
        self.redirects = {}  # path -> Location (answered with a 302)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.log.append((self.path, self.headers.get("If-None-Match")))
                if self.path in hub.redirects:
                    self.send_response(302)
                    self.send_header("Location", hub.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.path.startswith("/files/"):
                    data = (hub.folder / self.path[len("/files/"):]).read_bytes()
                    return self._send(200, data, "application/octet-stream")
                parts = [p for p in self.path.split("/") if p]
                if len(parts) in (3, 4) and parts[0] == "pypi" and parts[-1] == "json" and parts[1] in hub.projects:
                    body, etag = hub.projects[parts[1]]
                    if len(parts) == 3 and self.headers.get("If-None-Match") == etag:
                        return self._send(304, b"", "application/json")
                    return self._send(200, body, "application/json", etag)
                return self._send(404, b'{"message": "Not Found"}', "application/json")

            def _send(self, status, body, ctype, etag=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if etag:
                    self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def publish(self, name: str, wheel: Path, requires=()):
        version = wheel.name.split("-")[1]
        data = wheel.read_bytes()
        body = json.dumps({"info": {"name": name, "version": version, "requires_dist": list(requires)},
                           "urls": [{"packagetype": "bdist_wheel", "filename": wheel.name,
                                     "url": f"{self.url}/files/{wheel.name}",
                                     "digests": {"sha256": hashlib.sha256(data).hexdigest()}}]}).encode()
        self.projects[name] = (body, f'"{hashlib.md5(body).hexdigest()}"')

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _small_indexes(monkeypatch):
    monkeypatch.setattr(index_refresh, "MIN_MODELS", 1)  # the test packages list 4 files


@pytest.fixture
def pypi(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    server = FakePyPI(folder)
    yield server
    server.stop()


def publish_all(pypi, json_version="0.2.0", manager_version="4.4"):
    tw = templates_wheel(pypi.folder, json_version)
    mw = manager_wheel(pypi.folder, manager_version)
    meta = make_wheel(pypi.folder, "comfyui-workflow-templates", "0.12.0", {})
    pypi.publish("comfyui-workflow-templates", meta,
                 requires=[f"comfyui-workflow-templates-json=={json_version}",
                           f"comfyui-workflow-templates-json=={json_version}; extra == \"json\""])
    # the version endpoint of the -json package: /pypi/<name>/<version>/json
    pypi.publish("comfyui-workflow-templates-json", tw)
    pypi.publish("comfyui-manager", mw)


def config_for(pypi, tmp_path, **kw) -> Config:
    return Config(cache_dir=tmp_path / "cache", state_dir=tmp_path / "state", log_dir=tmp_path / "logs",
                  index_refresh_url=pypi.url, **kw)


def test_refresh_rebuilds_into_the_cache_and_then_uses_etags(pypi, tmp_path, monkeypatch):
    publish_all(pypi)
    config = config_for(pypi, tmp_path)
    assert index_refresh.refresh_index(config) is True
    written = Path(config.cache_dir) / "known_models.json"
    assert index_path(config) == written
    index = KnownModelIndex.for_config(config)
    assert {s["package"]: s["version"] for s in index.sources_loaded()} == {
        "comfyui-workflow-templates-json": "0.2.0", "comfyui-manager": "4.4"}
    assert index.lookup("sd_xl_turbo_1.0_fp16.safetensors", "checkpoints")
    state = json.loads((Path(config.cache_dir) / index_refresh.STATE_FILE).read_text())
    assert state["versions"] == {"comfyui-workflow-templates-json": "0.2.0", "comfyui-manager": "4.4"}
    assert all(state["etags"].values())

    # nothing changed: the server answers 304 to both and nothing is downloaded
    pypi.log.clear()
    assert index_refresh.refresh_index(config) is False
    assert [p for p, _ in pypi.log] == ["/pypi/comfyui-workflow-templates/json", "/pypi/comfyui-manager/json"]
    assert all(tag for _, tag in pypi.log)


def test_refresh_skips_the_download_when_the_versions_are_current(pypi, tmp_path):
    publish_all(pypi, json_version="0.1.123", manager_version="4.3")  # what the bundled snapshot holds
    config = config_for(pypi, tmp_path)
    assert index_refresh.refresh_index(config) is False
    assert not any(p.startswith("/files/") for p, _ in pypi.log)
    assert not (Path(config.cache_dir) / "known_models.json").exists()


def test_a_bad_download_leaves_the_old_index(pypi, tmp_path):
    publish_all(pypi)
    body, etag = pypi.projects["comfyui-manager"]
    data = json.loads(body)
    data["urls"][0]["digests"]["sha256"] = "00" * 32
    pypi.projects["comfyui-manager"] = (json.dumps(data).encode(), etag)
    config = config_for(pypi, tmp_path)
    with pytest.raises(ValueError, match="sha256 differs"):
        index_refresh.refresh_index(config)
    assert index_path(config) is None  # still the bundled snapshot


def test_maybe_refresh_is_off_by_default_weekly_and_never_blocks(pypi, tmp_path, monkeypatch):
    publish_all(pypi)
    monkeypatch.setattr(index_refresh, "_started", {})
    assert index_refresh.maybe_refresh(config_for(pypi, tmp_path)) is None  # a Config built in code: off
    assert Config.load(env={}).index_refresh is True  # the CLI and ComfyUI: on
    assert Config.load(env={"COMFYFIXER_INDEX_REFRESH": "0"}).index_refresh is False
    assert index_refresh.maybe_refresh(config_for(pypi, tmp_path, index_refresh=True,
                                                  known_models_file=tmp_path / "x.json")) is None
    config = config_for(pypi, tmp_path, index_refresh=True)
    thread = index_refresh.maybe_refresh(config)
    assert thread is not None
    thread.join(60)
    assert (Path(config.cache_dir) / "known_models.json").is_file()
    assert index_refresh.maybe_refresh(config) is None  # once per process
    monkeypatch.setattr(index_refresh, "_started", {})
    assert index_refresh.maybe_refresh(config) is None  # checked less than a week ago
    late = index_refresh.maybe_refresh(config, now=10**12)
    assert late is not None
    late.join(60)


def test_a_failed_refresh_only_logs(tmp_path, monkeypatch):
    monkeypatch.setattr(index_refresh, "_started", {})
    config = Config(cache_dir=tmp_path / "cache", index_refresh=True, index_refresh_url="http://127.0.0.1:9")
    thread = index_refresh.maybe_refresh(config)
    thread.join(60)
    assert not thread.is_alive()
    assert index_path(config) is None
    # the next start does not ask again for a day, then it does
    monkeypatch.setattr(index_refresh, "_started", {})
    assert index_refresh.maybe_refresh(config) is None
    import time

    again = index_refresh.maybe_refresh(config, now=time.time() + index_refresh.RETRY_AFTER_FAILURE + 60)
    assert again is not None
    again.join(60)


def test_a_shrunken_rebuild_is_not_used(pypi, tmp_path, monkeypatch):
    publish_all(pypi)
    monkeypatch.setattr(index_refresh, "MIN_MODELS", 100)  # the test packages list 4 files
    config = config_for(pypi, tmp_path)
    with pytest.raises(ValueError, match="only 4 entries"):
        index_refresh.refresh_index(config)
    assert index_path(config) is None


# -- redirects: only the index origin and files.pythonhosted.org -------------------------------

def test_a_redirect_within_the_index_origin_is_followed(pypi, tmp_path):
    publish_all(pypi)
    body = pypi.projects["comfyui-manager"]
    pypi.projects["moved-manager"] = body
    pypi.projects.pop("comfyui-manager")
    pypi.redirects["/pypi/comfyui-manager/json"] = f"{pypi.url}/pypi/moved-manager/json"
    config = config_for(pypi, tmp_path)
    assert index_refresh.refresh_index(config) is True
    assert "/pypi/moved-manager/json" in [p for p, _ in pypi.log]


@pytest.fixture
def other_server(tmp_path):
    """A second local server: a redirect target on another port that must never be asked."""
    folder = tmp_path / "other"
    folder.mkdir()
    server = FakePyPI(folder)
    yield server
    server.stop()


@pytest.mark.parametrize("where", ["json", "wheel"])
@pytest.mark.parametrize("target", [
    "https://evil.example/files/x.whl",             # a host not on the list
    "http://files.pythonhosted.org/packages/x.whl",  # the wheel host, downgraded to http
    "http://10.0.0.1/x.whl",                          # a private address
    "OTHER",                                          # loopback, another port
])
def test_a_redirect_hop_outside_the_allow_list_is_refused(pypi, other_server, tmp_path, where, target):
    from comfyfixersmart.errors import HostNotAllowedError

    publish_all(pypi)
    if target == "OTHER":
        target = f"{other_server.url}/files/x.whl"
    if where == "json":
        pypi.redirects["/pypi/comfyui-manager/json"] = target
    else:
        wheel = json.loads(pypi.projects["comfyui-manager"][0])["urls"][0]["filename"]
        pypi.redirects[f"/files/{wheel}"] = target
    config = config_for(pypi, tmp_path)
    with pytest.raises(HostNotAllowedError):
        index_refresh.refresh_index(config)
    assert other_server.log == []
    assert index_path(config) is None  # the bundled snapshot stays in use


def test_the_allow_list_is_exactly_the_index_origin_and_the_wheel_host(tmp_path):
    from comfyfixersmart.net.urls import url_allowed

    config = Config(cache_dir=tmp_path, allowed_hosts=["evil.example"], index_refresh_url="https://pypi.org",
                    hf_token="hf_secret_token_x", civitai_token="civitai_secret_x")
    net = index_refresh.RefreshConfig(config)
    assert url_allowed("https://pypi.org/pypi/x/json", net)
    assert url_allowed("https://files.pythonhosted.org/packages/a/b/x.whl", net)
    for url in ("https://evil.example/x", "http://pypi.org/pypi/x/json", "http://files.pythonhosted.org/x",
                "https://files.pythonhosted.org:8443/x", "https://huggingface.co/x", "https://civitai.com/x",
                "https://sub.files.pythonhosted.org/x"):
        assert not url_allowed(url, net), url
    assert net.hf_token is None and net.civitai_token is None
    assert net.user_agent == config.user_agent  # the rest is the configuration's


def test_a_refused_redirect_fails_the_background_refresh_quietly(pypi, tmp_path, monkeypatch):
    publish_all(pypi)
    pypi.redirects["/pypi/comfyui-workflow-templates/json"] = "https://evil.example/x"
    monkeypatch.setattr(index_refresh, "_started", {})
    config = config_for(pypi, tmp_path, index_refresh=True)
    thread = index_refresh.maybe_refresh(config)
    assert thread is not None
    thread.join(60)
    assert not thread.is_alive()
    assert index_path(config) is None
    assert KnownModelIndex.for_config(config).lookup("sd_xl_turbo_1.0_fp16.safetensors", "checkpoints") is not None
