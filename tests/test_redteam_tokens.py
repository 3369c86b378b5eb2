"""Red team: tokens.  Set through the environment or the settings route, a token travels
only in an Authorization header to its own origin, and appears in no output channel:
logs (ours, urllib3's, huggingface_hub's, at DEBUG, through a real handler), exceptions,
job JSON and websocket events, the state and cache databases, sidecars, scripts."""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path

import pytest
from aiohttp import web

from comfyfixersmart.download import DownloadManager
from comfyfixersmart.errors import AuthRequiredError, HostNotAllowedError
from comfyfixersmart.search import ModelSearch
from comfyfixersmart.security import auth_headers_for, host_matches, redact_text, redact_url
from comfyfixersmart.service.routes import FixerRoutes
from comfyfixersmart.service.validation import check_download_url
from comfyfixersmart.settings import Config
from dlserver import FileServer, loopback_config, payload
from fakehub import blob
from fakehub.fixtures import config_for_hub, fake_hub  # noqa: F401

CIV = "civ-REDTEAM-0f9e8d7c6b5a4"
HF = "hf_REDTEAMtoken0123456789abcdefQ"
SECRETS = (CIV, HF)


@pytest.fixture
def root_log():
    """A real handler on the root logger at DEBUG: every library's records end up here."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    names = ("urllib3", "requests", "huggingface_hub", "comfyfixersmart", "aiohttp")
    old = {name: logging.getLogger(name).level for name in names}
    old_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_root)
    for name, level in old.items():  # other tests' caplog must not inherit DEBUG loggers
        logging.getLogger(name).setLevel(level)


def assert_clean(*texts):
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def all_bytes(folder: Path, skip=("server-settings.json",)) -> str:
    """Every file under ``folder`` (databases, WAL files, sidecars, logs) as text."""
    out = []
    for p in folder.rglob("*"):
        if p.is_file() and p.name not in skip:
            out.append(p.read_bytes().decode("latin-1"))
    return "\n".join(out)


class Events:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def __call__(self, event, data):
        with self.lock:
            self.items.append(json.dumps([event, data]))


def ui(*nodes, models=()):
    return {"last_node_id": len(nodes), "nodes": list(nodes), "links": [], "version": 0.4,
            "models": list(models)}


def node(node_id, node_type, value):
    return {"id": node_id, "type": node_type, "mode": 0, "properties": {}, "widgets_values": [value]}


# -- the whole panel path -----------------------------------------------------------------------

@pytest.mark.parametrize("via", ["env", "settings"])
async def test_tokens_stay_out_of_every_channel_of_a_panel_fix(aiohttp_client, fake_hub, tmp_path,  # noqa: F811
                                                               monkeypatch, root_log, via):
    fake_hub.add_civitai_token(CIV)
    fake_hub.add_hf_token(HF, repos=["acme/gated"])
    locked = fake_hub.add_civitai_model("Locked Lora", {"locked_lora.safetensors": blob(3000)}, type="LORA",
                                        requires_auth=True)
    fake_hub.add_hf_repo("acme/gated", {"gated_vae.safetensors": blob(4000, seed=2)}, gated=True)
    # a lying Civitai echoes the Authorization header back in its error bodies and headers
    liar = fake_hub.add_civitai_model("Liar Ckpt", {"liar.safetensors": blob(2000, seed=3)}, requires_auth=True)
    fake_hub.inject(f"/api/download/models/{liar.version_id}*", 401, times=None,
                    headers={"X-Error-Message": f"token {CIV} rejected", "WWW-Authenticate": f"Bearer {CIV}"},
                    body={"error": f"bad token Bearer {CIV}", "echo": HF})
    models_root = tmp_path / "ComfyUI" / "models"
    table = {k: [str(models_root / k)] for k in ("checkpoints", "loras", "vae")}
    for paths in table.values():
        Path(paths[0]).mkdir(parents=True)
    if via == "env":
        monkeypatch.setenv("CIVITAI_API_TOKEN", CIV)
        monkeypatch.setenv("HF_TOKEN", HF)
        base = config_for_hub(fake_hub, tmp_path)
        config = Config.load(**{k: getattr(base, k) for k in (
            "civitai_base_url", "hf_endpoint", "allowed_hosts", "state_dir", "cache_dir", "log_dir", "output_dir",
            "backoff_base", "backoff_max")})
        assert config.civitai_token == CIV and config.hf_token == HF
    else:
        config = config_for_hub(fake_hub, tmp_path)
    events = Events()
    fixer = FixerRoutes(folders=lambda: table, emit=events, config=config)
    routes = web.RouteTableDef()
    fixer.add_routes(routes)
    app = web.Application()
    app.add_routes(routes)
    client = await aiohttp_client(app)
    texts = []
    if via == "settings":
        resp = await client.post("/comfyfixer/settings", json={"civitai_token": CIV, "hf_token": HF})
        texts.append(await resp.text())
    wf = ui(node(1, "LoraLoader", "locked_lora.safetensors"), node(2, "VAELoader", "gated_vae.safetensors"),
            node(3, "CheckpointLoaderSimple", "liar.safetensors"),
            models=[{"name": "locked_lora.safetensors", "directory": "loras",
                     "url": f"{fake_hub.civitai_url}/api/download/models/{locked.version_id}"},
                    {"name": "gated_vae.safetensors", "directory": "vae",
                     "url": f"{fake_hub.hf_url}/acme/gated/resolve/main/gated_vae.safetensors"},
                    {"name": "liar.safetensors", "directory": "checkpoints",
                     "url": f"{fake_hub.civitai_url}/api/download/models/{liar.version_id}"}])
    for path in ("/comfyfixer/scan", "/comfyfixer/resolve"):
        texts.append(await (await client.post(path, json={"workflow": wf})).text())
    resp = await client.post("/comfyfixer/fix", json={"workflow": wf})
    assert resp.status == 202, await resp.text()
    job_id = (await resp.json())["job_id"]
    assert fixer.jobs.wait_idle(30)
    job = await (await client.get(f"/comfyfixer/jobs/{job_id}")).json()
    states = {it["filename"]: it["state"] for it in job["items"]}
    assert states["locked_lora.safetensors"] == "done" and states["gated_vae.safetensors"] == "done", job
    assert states["liar.safetensors"] == "failed"
    texts += [json.dumps(job), await (await client.get("/comfyfixer/jobs")).text(),
              await (await client.get("/comfyfixer/settings")).text(), *events.items]
    fixer.close()
    texts += [root_log.getvalue(), all_bytes(tmp_path)]
    assert "Authorization" in root_log.getvalue() or "GET" in root_log.getvalue()  # the handler did see traffic
    assert_clean(*texts)
    # each token went to its own listener, in a header, and nowhere else
    for r in fake_hub.requests:
        assert not any(s in r.query for s in SECRETS)
        expected = {"civitai": f"Bearer {CIV}", "hf": f"Bearer {HF}"}.get(r.listener)
        assert r.authorization in (None, expected), (r.listener, r.path)
    assert any(r.authorization == f"Bearer {CIV}" for r in fake_hub.find_requests(listener="civitai"))
    assert any(r.authorization == f"Bearer {HF}" for r in fake_hub.find_requests(listener="hf"))


# -- exceptions from a lying server -------------------------------------------------------------------

def test_a_server_echoing_the_token_does_not_put_it_in_exceptions(server_with_echo, make_config, tmp_path):
    srv, config = server_with_echo
    with DownloadManager(config) as m:
        r = m.download_model(srv.url("/echo"), tmp_path / "x.safetensors")
    assert not r.success and r.error_type == "AuthRequiredError"
    assert_clean(repr(r), r.error_message or "", json.dumps(r.__dict__, default=str))
    with ModelSearch(config, backends=["civitai"]) as search:
        with pytest.raises(AuthRequiredError) as info:
            search.api.get_json(srv.url("/echo"), backend="civitai")
    exc = info.value
    assert_clean(str(exc), repr(exc), json.dumps(exc.to_dict()), repr(exc.args))


@pytest.fixture
def server_with_echo(make_config):
    with FileServer() as srv:
        srv.add("/echo", status=401, body=json.dumps({"error": f"invalid token {CIV}", "detail": HF}).encode(),
                headers={"X-Error-Message": f"Bearer {CIV} is not valid"})
        yield srv, loopback_config(make_config, civitai_base_url=srv.url(""), civitai_token=CIV, hf_token=HF,
                                   hf_endpoint="http://hf.invalid")


def test_a_redirect_carrying_the_token_in_its_location_is_not_logged(make_config, tmp_path, root_log):
    with FileServer() as civ, FileServer() as other:
        civ.add("/d", redirect=other.url(f"/f.safetensors?token={CIV}&x={HF}").replace("127.0.0.1", "localhost"))
        other.add("/f.safetensors", payload(100))
        config = loopback_config(make_config, civitai_base_url=civ.url(""), civitai_token=CIV, hf_token=HF,
                                 allowed_hosts=["127.0.0.1:*"])  # localhost is not allowed: refused
        with DownloadManager(config) as m:
            r = m.download_model(civ.url("/d"), tmp_path / "f.safetensors")
        assert not r.success and r.error_type == "HostNotAllowedError"
        assert other.requests == []
    assert_clean(repr(r), root_log.getvalue(), all_bytes(tmp_path))


def test_a_partial_download_sidecar_and_history_hold_no_token(make_config, tmp_path):
    with FileServer() as srv:
        srv.add("/api/download/models/1", payload(400_000), drop_after=150_000, drops=10, ranges=False)
        config = loopback_config(make_config, civitai_base_url=srv.url(""), civitai_token=CIV, hf_token=HF,
                                 http_retries=0)
        with DownloadManager(config) as m:
            r = m.download_model(srv.url("/api/download/models/1?type=Model&format=SafeTensor"),
                                 tmp_path / "m" / "x.safetensors")
        assert srv.requests[0].header("Authorization") == f"Bearer {CIV}"
    assert not r.success
    assert_clean(all_bytes(tmp_path), repr(r))


# -- scoping ------------------------------------------------------------------------------------

def test_hf_token_never_goes_to_civitai_and_back(make_config):
    with FileServer() as civ, FileServer() as hf:
        for srv in (civ, hf):
            srv.add("/f.safetensors", payload(10))
        civ.add("/to-hf", redirect=hf.url("/f.safetensors"))
        hf.add("/to-civ", redirect=civ.url("/f.safetensors"))
        config = loopback_config(make_config, civitai_base_url=civ.url(""), civitai_token=CIV,
                                 hf_endpoint=hf.url(""), hf_token=HF)
        with DownloadManager(config) as m:
            for i, url in enumerate((civ.url("/to-hf"), hf.url("/to-civ"))):
                assert m.download_model(url, config.output_dir / f"f{i}.safetensors").success
        assert {r.header("Authorization") for r in civ.requests} == {f"Bearer {CIV}"}
        assert {r.header("Authorization") for r in hf.requests} == {f"Bearer {HF}"}


@pytest.mark.parametrize("url", [
    "http://127.0.0.1.evil.test:{port}/api/download/models/1",   # the base host as a prefix
    "http://evil.test/127.0.0.1:{port}/api/download/models/1",
    "http://localhost:{port}/api/download/models/1",             # same machine, another name
    "https://127.0.0.1:{port}/api/download/models/1",            # another scheme
    "http://127.0.0.1:{other}/api/download/models/1",            # another port
    "http://127.0.0.1.:{port}/api/download/models/1",            # trailing dot
    "http://[::ffff:127.0.0.1]:{port}/api/download/models/1",
    "http://127.0.0.1:{port}@evil.test/api/download/models/1",
])
def test_lookalike_hosts_get_no_token(url):
    config = Config(civitai_base_url="http://127.0.0.1:8123", civitai_token=CIV,
                    hf_endpoint="http://127.0.0.1:8124", hf_token=HF)
    assert auth_headers_for(url.format(port=8123, other=8125), config) == {}


def test_civitai_subdomain_suffix_tricks_are_not_allowed_hosts():
    allowed = Config().effective_allowed_hosts
    for host in ("civitai.com.evil.test", "evilcivitai.com", "civitai.com-evil.test", "xcivitai.com",
                 "huggingface.co.evil.test", "evilhf.co", "r2.cloudflarestorage.com.evil.test"):
        assert not host_matches(host, allowed), host
    for host in ("civitai.com", "image.civitai.com", "cdn-lfs.hf.co", "CIVITAI.COM."):
        assert host_matches(host, allowed), host


def test_a_workflow_url_to_a_lookalike_host_gets_no_token_through_the_fake_hub(fake_hub, tmp_path):  # noqa: F811
    """The same file offered by 'localhost' (the Civitai host is 127.0.0.1): downloaded, but
    without the token, and the model that needs it fails instead of leaking it."""
    fake_hub.add_civitai_token(CIV)
    ids = fake_hub.add_civitai_model("Locked", {"l.safetensors": blob(100)}, requires_auth=True)
    config = config_for_hub(fake_hub, tmp_path, civitai_token=CIV)
    lookalike = fake_hub.civitai_url.replace("127.0.0.1", "localhost") + f"/api/download/models/{ids.version_id}"
    with DownloadManager(config) as m:
        r = m.download_model(lookalike, tmp_path / "l.safetensors")
    assert not r.success and r.error_type == "AuthRequiredError"
    assert all(req.authorization is None for req in fake_hub.requests)


# -- credentials in URLs ------------------------------------------------------------------------

@pytest.mark.parametrize("param", ["token", "TOKEN", "api_key", "apikey", "hf_token", "access_token", "key",
                                   "civitai_token", "api-key", "X-Amz-Signature", "password"])
def test_credential_query_parameters_are_redacted_and_refused(param):
    url = f"https://civitai.com/api/download/models/1?{param}=SECRETVALUE123&type=Model"
    assert "SECRETVALUE123" not in redact_url(url)
    assert "SECRETVALUE123" not in redact_text(f"failed: {url} (see log)")
    if param.lower() not in ("key", "x-amz-signature", "password"):
        with pytest.raises(HostNotAllowedError) as info:
            check_download_url(url, Config())
        assert "SECRETVALUE123" not in json.dumps(info.value.to_dict())


def test_a_pasted_hf_token_url_in_a_workflow_never_reaches_the_job_json(fake_hub, tmp_path):  # noqa: F811
    from comfyfixersmart.core import ComfyFixerCore

    fake_hub.add_hf_repo("acme/open", {"v.safetensors": blob(100)})
    pasted = "pastedSECRET0042abc"
    url = f"{fake_hub.hf_url}/acme/open/resolve/main/v.safetensors?hf_token={pasted}"
    wf = ui(node(1, "VAELoader", "v.safetensors"), models=[{"name": "v.safetensors", "directory": "vae", "url": url}])
    config = config_for_hub(fake_hub, tmp_path)
    with ComfyFixerCore(config) as core:
        analysis = core.analyze_data(wf)
    from comfyfixersmart.report import reference_to_json, resolution_to_json

    # what the page, the CLI's --json and the plan get (the workflow object itself is the user's)
    texts = [json.dumps(resolution_to_json(r, 0.9)) for r in analysis.resolutions]
    texts += [json.dumps(reference_to_json(r)) for r in analysis.references]
    with ComfyFixerCore(config) as core:
        specs, failures = core.plan(core.analyze_data(wf), 0.9)
    texts += [json.dumps(specs, default=str), json.dumps([f.__dict__ for f in failures], default=str)]
    for text in texts:
        assert pasted not in text


def test_a_token_pasted_into_a_download_url_never_travels(make_config, tmp_path):
    """The caller's URL loses its ?token= before the first request; a signed URL keeps its signature."""
    from comfyfixersmart.download import DownloadManager
    from dlserver import FileServer, loopback_config, payload

    data = payload(10_000, 5)
    with FileServer() as srv:
        srv.add("/m.safetensors", data)
        url = srv.url("/m.safetensors") + "?token=SECRET-in-url&X-Amz-Signature=abc&v=1"
        with DownloadManager(loopback_config(make_config)) as m:
            r = m.download_model(url, tmp_path / "m.safetensors")
        seen = [req.path for req in srv.requests]
    assert r.success
    assert seen and all("SECRET-in-url" not in p for p in seen)
    assert all("X-Amz-Signature=abc" in p and "v=1" in p for p in seen)
