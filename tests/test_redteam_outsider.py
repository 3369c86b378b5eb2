"""Red team as an outsider (issue 10, class by class): new variations of each attack, tried
only through the real entry points: the aiohttp routes as ComfyUI mounts them, ``comfyfixer``
as a subprocess or through ``cli.main``, and the library API.

Every server listens on 127.0.0.1.  A name that must "resolve" to a private or metadata address
is answered by a patched ``socket.getaddrinfo``; ``net.addresses.connect`` is wrapped so a
connection to anything but 127.0.0.1 is recorded and refused before a packet leaves.

Each test asserts the specific refusal (status, error type, no request reaching the victim
server, no file written) so that it fails when the guard is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web

from comfyfixersmart.net import addresses
from comfyfixersmart.service.routes import FixerRoutes
from dlserver import FileServer, payload

REPO = Path(__file__).resolve().parents[1]
OK = "/o/r/resolve/main/ok.safetensors"  # Hugging Face shaped: the endpoint is HF_ENDPOINT
HOP = "/o/r/resolve/main/hop.safetensors"
posix_only = pytest.mark.skipif(os.name == "nt", reason="FIFOs, /dev and symlinks need a POSIX system")


# -- harness ----------------------------------------------------------------------------------------

@pytest.fixture
def servers():
    """``ep``: the configured endpoint (HF_ENDPOINT=http://localhost:N); ``victim``: another
    local service (ComfyUI's own API, a metadata server...) that must never be reached."""
    with FileServer() as ep, FileServer() as victim:
        ep.add(OK, payload(4096, 1))
        victim.add("/x.safetensors", payload(4096, 2))
        victim.add("/latest/meta-data/x.safetensors", payload(4096, 3))
        yield ep, victim


@pytest.fixture
def comfy_root(tmp_path):
    root = tmp_path / "ComfyUI"
    for key in ("checkpoints", "loras"):
        (root / "models" / key).mkdir(parents=True)
    for key in ("output", "input", "temp"):
        (root / key).mkdir()
    return root


def endpoint_config(make_config, ep, **overrides):
    """Default allow-list; Hugging Face and Civitai both at ``http://localhost:<ep>``."""
    values = dict(hf_endpoint=f"http://localhost:{ep.port}", civitai_base_url=f"http://localhost:{ep.port}",
                  download_timeout=10)
    values.update(overrides)
    return make_config(**values)


@pytest.fixture
async def make_api(aiohttp_client, comfy_root):
    made = []

    async def build(config, listen="127.0.0.1"):
        models = comfy_root / "models"
        table = {"checkpoints": [str(models / "checkpoints")], "loras": [str(models / "loras")]}
        fixer = FixerRoutes(folders=lambda: table, config=config, listen=listen)
        routes = web.RouteTableDef()
        fixer.add_routes(routes)
        app = web.Application()
        app.add_routes(routes)
        client = await aiohttp_client(app)
        client.fixer = fixer
        made.append(fixer)
        return client

    yield build
    for fixer in made:
        fixer.close()


async def wait_job(api, job_id, timeout=60.0):
    import asyncio

    assert await asyncio.to_thread(api.fixer.jobs.wait_idle, timeout), "the job did not finish"
    return await (await api.get(f"/comfyfixer/jobs/{job_id}")).json()


def files_under(path: Path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() or p.is_symlink())


@pytest.fixture
def resolver(monkeypatch):
    """``names[host] = ip`` makes ``host`` resolve to ``ip``; connections anywhere but
    127.0.0.1 are recorded in ``attempts`` and refused."""
    names = {}
    attempts = []
    real_gai = socket.getaddrinfo
    real_connect = addresses.connect

    def fake_gai(host, port, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host in names:
            ip = names[host]
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sockaddr = (ip, int(port), 0, 0) if family == socket.AF_INET6 else (ip, int(port))
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
        return real_gai(host, port, *args, **kwargs)

    def guarded_connect(addrs, *args, **kwargs):
        for _family, sockaddr in addrs:
            if sockaddr[0] != "127.0.0.1":
                attempts.append(sockaddr)
                raise ConnectionRefusedError(f"test: no connection to {sockaddr[0]}")
        return real_connect(addrs, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_gai)
    monkeypatch.setattr(addresses, "connect", guarded_connect)
    return names, attempts


# == 1. host allow-list bypass, through the download route ===================================

def bypass_urls(victim_port):
    """URL forms that name the victim (127.0.0.1:<victim>) while looking like something else."""
    v = victim_port
    return [
        f"http://127.0.0.1:{v}\\.hf.co/x.safetensors",                  # backslash in the authority
        f"http://127.0.0.1:{v}\\@huggingface.co/x.safetensors",
        f"https://huggingface.co:443@127.0.0.1:{v}/x.safetensors",       # userinfo that looks like a port
        f"http://huggingface.co%40127.0.0.1:{v}/x.safetensors",         # %40 = '@'
        f"http://127.0.0.1%2ehf.co:{v}/x.safetensors",                   # %2e = '.'
        f"http://[::ffff:127.0.0.1]:{v}/x.safetensors",                 # IPv4-mapped IPv6
        f"http://[::ffff:7f00:1]:{v}/x.safetensors",
        f"http://[0:0:0:0:0:ffff:127.0.0.1]:{v}/x.safetensors",
        f"http://0x7f.1:{v}/x.safetensors",                              # hex + short form
        f"http://017700000001:{v}/x.safetensors",                        # octal integer
        f"http://0x7f000001:{v}/x.safetensors",
        f"http://127.0.0.1.:{v}/x.safetensors",                          # trailing dot
        f"http://127\u30020\u30020\u30021:{v}/x.safetensors",            # ideographic full stops
        f"http://127\uff0e0\uff0e0\uff0e1:{v}/x.safetensors",            # fullwidth full stops
        f"http://localhost:{v}/x.safetensors",                           # the endpoint's host, another port
        f"https://localhost:{v}/x.safetensors",
        f"http://LOCALHOST:{v}/x.safetensors",
        f"http://127.0.0.1:{v}/x.safetensors",                           # loopback, never configured
    ]


BYPASS_IDS = ["backslash", "backslash-at", "userinfo-port", "pct40", "pct2e", "mapped", "mapped-hex",
              "mapped-long", "hex-short", "octal-int", "hex-int", "trailing-dot", "ideographic-dots",
              "fullwidth-dots", "endpoint-host-other-port", "endpoint-host-https", "endpoint-host-upper",
              "loopback-ip"]


@pytest.mark.parametrize("case", range(len(BYPASS_IDS)), ids=BYPASS_IDS)
async def test_download_route_refuses_every_form_that_reaches_another_local_port(make_api, make_config, servers,
                                                                                  comfy_root, case):
    ep, victim = servers
    api = await make_api(endpoint_config(make_config, ep))
    url = bypass_urls(victim.port)[case]
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints", "url": url}]})
    assert resp.status == 400, (url, await resp.text())
    assert (await resp.json())["error"]["type"] == "HostNotAllowedError"
    assert (await (await api.get("/comfyfixer/jobs")).json())["jobs"] == []
    assert victim.requests == [] and files_under(comfy_root) == []


async def test_download_route_still_fetches_from_the_configured_endpoint(make_api, make_config, servers, comfy_root):
    """The control of the test above: the same request to the endpoint's own port works."""
    ep, victim = servers
    api = await make_api(endpoint_config(make_config, ep))
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints", "url": ep.url(OK, "localhost")}]})
    assert resp.status == 202, await resp.text()
    job = await wait_job(api, (await resp.json())["job_id"])
    assert job["summary"]["done"] == 1, job
    assert (comfy_root / "models" / "checkpoints" / "x.safetensors").read_bytes() == payload(4096, 1)


REDIRECT_TARGETS = {
    "other-port": "http://localhost:{v}/x.safetensors",
    "loopback-ip": "http://127.0.0.1:{v}/x.safetensors",
    "mapped": "http://[::ffff:127.0.0.1]:{v}/x.safetensors",
    "hex-short": "http://0x7f.1:{v}/x.safetensors",
    "backslash": "http://localhost:{e}\\@127.0.0.1:{v}/x.safetensors",
    "userinfo": "http://localhost:{e}@127.0.0.1:{v}/x.safetensors",
    "scheme-relative": "//127.0.0.1:{v}/x.safetensors",
    "https-downgrade-same-host": "https://localhost:{e}/o/r/resolve/main/ok.safetensors",
}


@pytest.mark.parametrize("target", sorted(REDIRECT_TARGETS))
async def test_a_redirect_hop_from_the_endpoint_cannot_reach_another_local_port(make_api, make_config, servers,
                                                                                 comfy_root, target):
    ep, victim = servers
    ep.add(HOP, redirect=REDIRECT_TARGETS[target].format(v=victim.port, e=ep.port))
    api = await make_api(endpoint_config(make_config, ep))
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints", "url": ep.url(HOP, "localhost")}]})
    assert resp.status == 202, await resp.text()
    job = await wait_job(api, (await resp.json())["job_id"])
    assert job["summary"]["failed"] == 1, job
    assert job["items"][0]["error"]["type"] in ("HostNotAllowedError", "TooManyRedirectsError", "DownloadError"), job
    assert len(ep.requests_for(HOP)) >= 1  # the first hop was made...
    assert victim.requests == []  # ...the second never
    assert not (comfy_root / "models" / "checkpoints" / "x.safetensors").exists()


LOCAL_ANSWERS = {
    "metadata": "169.254.169.254", "loopback": "127.0.0.1", "private10": "10.1.2.3", "cgnat": "100.64.0.7",
    "mapped-metadata": "::ffff:169.254.169.254", "nat64-metadata": "64:ff9b::a9fe:a9fe",
    "6to4-metadata": "2002:a9fe:a9fe::1", "ula": "fd12:3456::1", "unspecified": "0.0.0.0",
    "ipv4-compatible": "::a9fe:a9fe", "teredo": "2001:0:4136:e378:8000:63bf:3fff:fdd2",
}


@pytest.mark.parametrize("kind", sorted(LOCAL_ANSWERS))
@pytest.mark.parametrize("url", ["https://cdn-lfs.hf.co/o/r/x.safetensors",            # a hub CDN name
                                 "http://models.mirror.example/x.safetensors"])        # a '.mirror.example' rule
async def test_an_allowed_name_resolving_to_a_local_address_fails_the_row_without_a_connection(
        make_api, make_config, servers, comfy_root, resolver, kind, url):
    """(An entry naming the exact host with a port or ``*`` is a deliberate local mirror and may
    resolve locally: see test_redteam_urls.)"""
    ep, _victim = servers
    names, attempts = resolver
    names["cdn-lfs.hf.co"] = names["models.mirror.example"] = LOCAL_ANSWERS[kind]
    config = endpoint_config(make_config, ep)
    api = await make_api(config.replace(allowed_hosts=[*config.allowed_hosts, ".mirror.example"]))
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints", "url": url}]})
    assert resp.status == 202, await resp.text()  # the name is allowed: only its address is wrong
    job = await wait_job(api, (await resp.json())["job_id"])
    assert job["summary"]["failed"] == 1, job
    assert job["items"][0]["error"]["type"] == "HostNotAllowedError", job["items"][0]
    assert attempts == []
    assert files_under(comfy_root) == []


@pytest.mark.parametrize("url", [
    "https://huggingface.co\\@127.0.0.1:{v}/o/r/blob/main/x.safetensors",     # a pasted blob page
    "https://huggingface.co@127.0.0.1:{v}/o/r/blob/main/x.safetensors",
    "https://hf.co\u3002127.0.0.1:{v}/o/r/blob/main/x.safetensors",
    "http://localhost:{v}/o/r/blob/main/x.safetensors",                        # endpoint host, other port
    "http://localhost:{v}/models/123",                                         # a Civitai page there
    "http://localhost:{v}/o/r",                                                # a repo page there
])
async def test_a_pasted_page_url_is_refused_before_it_is_resolved(make_api, make_config, servers, comfy_root, url):
    ep, victim = servers
    api = await make_api(endpoint_config(make_config, ep))
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints", "url": url.format(v=victim.port)}]})
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["type"] == "HostNotAllowedError"
    assert victim.requests == [] and files_under(comfy_root) == []


def models_workflow(path: Path, url: str, name: str = "x.safetensors", directory: str = "checkpoints") -> Path:
    """A UI workflow whose loader names ``name`` and whose metadata gives ``url`` for it."""
    path.write_text(json.dumps({"last_node_id": 1, "links": [], "version": 0.4, "nodes": [
        {"id": 1, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": [name],
         "properties": {"models": [{"name": name, "url": url, "directory": directory}]}}]}))
    return path


@pytest.fixture
def cli_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYFIXER_", "CIVITAI_", "HF_", "HUGGING"))}
    env.update(XDG_DATA_HOME=str(tmp_path / "xdg-data"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
               XDG_CONFIG_HOME=str(tmp_path / "xdg-config"), COLUMNS="200", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def comfyfixer(env, *args, timeout=180):
    return subprocess.run([sys.executable, "-m", "comfyfixersmart", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("form", ["other-port", "mapped", "backslash", "loopback-ip"])
def test_cli_fix_yes_with_a_hand_pick_never_fetches_a_workflow_url_to_another_port(cli_env, servers, comfy_root,
                                                                                    tmp_path, form):
    """``comfyfixer fix --yes --pick`` (a user trusting the shared workflow) with its ``models``
    URL aimed at another local service: the row fails, the service sees no request."""
    ep, victim = servers
    url = {"other-port": f"http://localhost:{victim.port}/x.safetensors",
           "mapped": f"http://[::ffff:127.0.0.1]:{victim.port}/x.safetensors",
           "backslash": f"http://127.0.0.1:{victim.port}\\.hf.co/x.safetensors",
           "loopback-ip": f"http://127.0.0.1:{victim.port}/x.safetensors"}[form]
    wf = models_workflow(tmp_path / "wf.json", url)
    env = dict(cli_env, COMFYFIXER_HF_ENDPOINT=f"http://localhost:{ep.port}",
               COMFYFIXER_CIVITAI_BASE_URL=f"http://localhost:{ep.port}")
    done = comfyfixer(env, "fix", wf, "--comfyui-root", comfy_root, "--yes", "--json", "--pick", "x.safetensors=1")
    assert done.returncode != 0, done.stdout
    assert victim.requests == []
    assert files_under(comfy_root) == []
    if form != "backslash":  # the backslash form is not even a candidate (nothing to pick)
        report = json.loads(done.stdout)
        assert {f["error_type"] for f in report["failures"]} == {"HostNotAllowedError"}, report["failures"]


def test_cli_fix_yes_control_downloads_the_workflow_url_of_the_endpoint(cli_env, servers, comfy_root, tmp_path):
    ep, victim = servers
    wf = models_workflow(tmp_path / "wf.json", ep.url(OK, "localhost"))
    env = dict(cli_env, COMFYFIXER_HF_ENDPOINT=f"http://localhost:{ep.port}",
               COMFYFIXER_CIVITAI_BASE_URL=f"http://localhost:{ep.port}")
    done = comfyfixer(env, "fix", wf, "--comfyui-root", comfy_root, "--yes", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (comfy_root / "models" / "checkpoints" / "x.safetensors").read_bytes() == payload(4096, 1)
    assert victim.requests == []


# == 3. DNS rebinding: the Host guard on the wire =============================================

async def raw_request(api, head: str, body: bytes = b"") -> int:
    """Send ``head`` (request line + headers, CRLF-separated, no final blank line) byte for
    byte and return the status code of the answer."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", api.server.port)
    try:
        writer.write(head.encode("latin-1") + b"\r\n\r\n" + body)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
        return int(line.split()[1])
    finally:
        writer.close()


SETTINGS_BODY = json.dumps({"hf_endpoint": "http://127.0.0.1:1"}).encode()


@pytest.mark.parametrize("head", [
    # absolute-form targets: the Host header decides, whatever the target says
    "GET http://evil.example:8188/comfyfixer/health HTTP/1.1\r\nHost: evil.example:8188",
    "GET http://127.0.0.1:8188/comfyfixer/health HTTP/1.1\r\nHost: evil.example:8188",
    # no Host at all (HTTP/1.0, and HTTP/1.1 which requires one)
    "GET /comfyfixer/health HTTP/1.0",
    "GET /comfyfixer/health HTTP/1.1\r\nConnection: close",
    # look-alike names
    "GET /comfyfixer/health HTTP/1.1\r\nHost: localhost.evil.example",
    "GET /comfyfixer/health HTTP/1.1\r\nHost: 127.0.0.1.nip.io:8188",
    "GET /comfyfixer/health HTTP/1.1\r\nHost: localhost:8188.evil.example",
    "GET /comfyfixer/health HTTP/1.1\r\nHost: localhost:8188@evil.example",
    "GET /comfyfixer/health HTTP/1.1\r\nHost: 127.0.0.1 evil.example",
    "GET /comfyfixer/health HTTP/1.1\r\nHost: [::ffff:127.0.0.1].evil.example",
    "GET /comfyfixer/health HTTP/1.1\r\nHost: 0x7f.1:8188",
    "GET /comfyfixer/health HTTP/1.1\r\nHost: 017700000001:8188",
    "GET /comfyfixer/health HTTP/1.1\r\nHost: 127.0.0.1%2eevil.example",
    "GET /comfyfixer/health HTTP/1.1\r\nHost: evil.example\\@127.0.0.1",
    # a foreign name first, a loopback one second
    "GET /comfyfixer/health HTTP/1.1\r\nHost: evil.example:8188\r\nHost: 127.0.0.1:8188",
], ids=lambda h: h.split("\r\n", 1)[-1][:48])
async def test_raw_requests_with_a_foreign_or_missing_host_are_refused(make_api, make_config, servers, head):
    api = await make_api(endpoint_config(make_config, servers[0]))
    assert await raw_request(api, "GET /comfyfixer/health HTTP/1.1\r\nHost: 127.0.0.1:8188") == 200  # control
    assert await raw_request(api, head) in (400, 403)


@pytest.mark.parametrize("host", ["evil.example:8188", "localhost.evil.example", "127.0.0.1.nip.io"])
async def test_a_rebound_settings_post_changes_nothing(make_api, make_config, servers, host):
    api = await make_api(endpoint_config(make_config, servers[0]))
    before = await (await api.get("/comfyfixer/settings")).json()
    head = (f"POST /comfyfixer/settings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Origin: http://{host}\r\nContent-Length: {len(SETTINGS_BODY)}")
    assert await raw_request(api, head, SETTINGS_BODY) == 403
    assert await (await api.get("/comfyfixer/settings")).json() == before
    # the same body from a loopback Host is taken (the refusal above was the Host's doing)
    ok = head.replace(host, "127.0.0.1:8188")
    assert await raw_request(api, ok, SETTINGS_BODY) == 200
    assert await (await api.get("/comfyfixer/settings")).json() != before


# == 4. writes outside the folder ===============================================================

@pytest.mark.parametrize("name", [
    "x.safetensors:stream", "x.safetensors::$DATA", "sub:evil/x.safetensors",      # NTFS alternate data streams
    "COM\u00b9.safetensors", "lpt\u00b3.safetensors", "Com\u00b2.sft",               # superscript device numbers
    "x.safetensors.", "x.safetensors. ", "sub./x.safetensors", "sub /x.safetensors",  # trailing dots and spaces
    "a" * 244 + ".safetensors",                                                    # 256 bytes in one component
    "\u00e9" * 125 + ".safetensors",                                               # 262 UTF-8 bytes, 137 characters
    "/".join(["d"] * 600) + "/x.safetensors",                                      # a path over the cap
    "sub/../../../x.safetensors", "sub\\..\\..\\x.safetensors", "./x.safetensors",
])
async def test_hostile_names_through_the_download_route_write_nothing(make_api, make_config, servers, comfy_root,
                                                                       name):
    ep, _victim = servers
    api = await make_api(endpoint_config(make_config, ep))
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": name, "directory": "checkpoints", "url": ep.url(OK, "localhost")}]})
    assert resp.status == 400, (name, await resp.text())
    assert (await resp.json())["error"]["type"] == "UnsafePathError"
    assert (await (await api.get("/comfyfixer/jobs")).json())["jobs"] == []
    assert files_under(comfy_root) == []
    assert ep.requests == []


@pytest.mark.parametrize("directory", [
    "../../escape", "checkpoints/../../escape", "checkpoints%2f..%2f..%2fescape", "..%2fescape",
    "checkpoints\\..\\..\\escape", "checkpoints:stream", "checkpoints.", "output", "temp", "Input",
    "\uff0e\uff0e/escape", "/tmp/escape", "C:\\escape", "checkpoints\u0000", "models/../../escape",
])
def test_cli_fix_output_dir_keeps_a_workflow_directory_inside(cli_env, servers, tmp_path, directory):
    """``comfyfixer fix --output-dir OUT --yes``: whatever ``directory`` the workflow's metadata
    says, the file lands under OUT (in the loader's folder) or nowhere."""
    ep, _victim = servers
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    wf = models_workflow(tmp_path / "wf.json", ep.url(OK, "localhost"), directory=directory)
    env = dict(cli_env, COMFYFIXER_HF_ENDPOINT=f"http://localhost:{ep.port}",
               COMFYFIXER_CIVITAI_BASE_URL=f"http://localhost:{ep.port}")
    done = comfyfixer(env, "fix", wf, "--output-dir", out, "--yes", "--json")
    written = [p for p in tmp_path.rglob("x.safetensors")]
    assert all(out in p.parents for p in written), (written, done.stdout)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "work" / "escape").exists()
    assert [p.relative_to(out).as_posix() for p in written] in ([], ["checkpoints/x.safetensors"]), done.stdout


async def test_a_subfolder_swapped_for_a_link_while_its_row_is_queued(make_api, make_config, servers, comfy_root,
                                                                      tmp_path):
    """Job row 1 trickles and holds the only slot; row 2 (``sub/y.safetensors``) waits.  The
    attacker swaps ``sub`` for a link to a folder outside; row 2 must not write there."""
    ep, _victim = servers
    ep.add("/o/r/resolve/main/slow.safetensors", payload(256 * 1024, 5), rate=4096)
    outside = tmp_path / "outside"
    outside.mkdir()
    sub = comfy_root / "models" / "checkpoints" / "sub"
    sub.mkdir()
    api = await make_api(endpoint_config(make_config, ep, download_concurrency=1))
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "slow.safetensors", "directory": "checkpoints",
         "url": ep.url("/o/r/resolve/main/slow.safetensors", "localhost")},
        {"filename": "sub/y.safetensors", "directory": "checkpoints", "url": ep.url(OK, "localhost")}]})
    assert resp.status == 202, await resp.text()
    job_id = (await resp.json())["job_id"]
    deadline = time.monotonic() + 30
    while not ep.requests_for("/o/r/resolve/main/slow.safetensors") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    sub.rmdir()
    sub.symlink_to(outside, target_is_directory=True)
    await api.post(f"/comfyfixer/jobs/{job_id}/items/1/cancel", json={})
    job = await wait_job(api, job_id)
    row = job["items"][1]
    assert row["state"] == "failed", row
    assert row["error"]["type"] == "UnsafePathError", row
    assert list(outside.iterdir()) == []


# == 5. pickles without asking ==================================================================

PICKLE_BYTES = b"PK\x03\x04 pretend torch zip " + bytes(range(256)) * 16


@pytest.mark.parametrize("name,url_name", [
    ("x.PTH", "x.PTH"), ("x.ckpt ", "x.ckpt"), ("model.safetensors.pt", "model.safetensors.pt"),
    ("sub/x.Bin", "x.Bin"), ("x.pt2", "x.pt2"), ("x.pkl", "x.pkl"),
    ("x.safetensors", "x.ckpt"),                     # the URL names the pickle, the row a safetensors
    ("x.safetensors", "x.PTH?download=true"),
])
async def test_the_download_route_asks_for_every_pickle_spelling(make_api, make_config, servers, comfy_root,
                                                                  name, url_name):
    ep, _victim = servers
    ep.add(f"/o/r/resolve/main/{url_name.split('?')[0]}", PICKLE_BYTES)
    api = await make_api(endpoint_config(make_config, ep))
    item = {"filename": name, "directory": "checkpoints", "url": ep.url(f"/o/r/resolve/main/{url_name}", "localhost")}
    resp = await api.post("/comfyfixer/download", json={"items": [item]})
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["type"] == "ValidationError" and "pickle" in error["message"]
    assert (await (await api.get("/comfyfixer/jobs")).json())["jobs"] == []
    assert not any(r.method == "GET" and r.header("Range") is None for r in ep.requests)  # no body fetched
    assert files_under(comfy_root) == []
    # the same row with its own yes is taken
    resp = await api.post("/comfyfixer/download", json={"items": [{**item, "allow_pickle": True}]})
    assert resp.status == 202, await resp.text()


async def test_an_extensionless_civitai_link_serving_a_pickle_is_not_saved_as_safetensors(make_api, make_config,
                                                                                         servers, comfy_root):
    """``/api/download/models/1`` answers ``Content-Disposition: x.ckpt`` with a torch zip; the
    row asked for ``x.safetensors``: the pickle must not land under a safetensors name."""
    ep, civitai = servers
    civitai.add("/api/download/models/1", PICKLE_BYTES, disposition='attachment; filename="x.ckpt"')
    api = await make_api(endpoint_config(make_config, ep, civitai_base_url=f"http://localhost:{civitai.port}"))
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints",
         "url": civitai.url("/api/download/models/1", "localhost")}]})
    assert resp.status == 202, await resp.text()
    job = await wait_job(api, (await resp.json())["job_id"])
    assert job["items"][0]["state"] == "failed", job["items"][0]
    assert job["items"][0]["error"]["type"] == "NotAModelFileError"
    assert [p for p in files_under(comfy_root) if not p.endswith((".part", ".part.json"))] == []


@pytest.mark.parametrize("widget,url_name", [("x.PTH", "x.PTH"), ("x.safetensors", "x.pth"),
                                             ("sub/x.ckpt", "x.ckpt")])
def test_cli_fix_yes_never_downloads_a_pickle_named_by_workflow_metadata(cli_env, servers, comfy_root, tmp_path,
                                                                         widget, url_name):
    ep, _victim = servers
    ep.add(f"/o/r/resolve/main/{url_name}", PICKLE_BYTES)
    wf = models_workflow(tmp_path / "wf.json", ep.url(f"/o/r/resolve/main/{url_name}", "localhost"), name=widget)
    env = dict(cli_env, COMFYFIXER_HF_ENDPOINT=f"http://localhost:{ep.port}",
               COMFYFIXER_CIVITAI_BASE_URL=f"http://localhost:{ep.port}")
    # picked by hand (a user trusting the workflow): still a pickle, still needs its own yes
    done = comfyfixer(env, "fix", wf, "--comfyui-root", comfy_root, "--yes", "--json", "--pick", f"{widget}=1")
    report = json.loads(done.stdout)
    assert done.returncode != 0 and report["plan"] == [], report
    assert [f["error_type"] for f in report["failures"]] == ["PickleConfirmationRequired"], report["failures"]
    assert ep.requests_for(f"/o/r/resolve/main/{url_name}") == [] or all(
        r.method == "HEAD" for r in ep.requests_for(f"/o/r/resolve/main/{url_name}"))
    assert files_under(comfy_root) == []


# == 6. cancel that stops =======================================================================

@pytest.fixture
def silent_server():
    """Accepts connections and never answers (a stalled CDN): headers never come."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1], held
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize("how", ["job", "item"])
async def test_cancel_of_a_download_whose_headers_never_come_frees_the_slot(make_api, make_config, servers,
                                                                            comfy_root, silent_server, how):
    ep, _victim = servers
    port, held = silent_server
    api = await make_api(endpoint_config(make_config, ep, download_concurrency=1, download_timeout=120,
                                         allowed_hosts=["127.0.0.1:*"]))
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "stuck.safetensors", "directory": "checkpoints",
         "url": f"http://127.0.0.1:{port}/stuck.safetensors"}]})
    job_id = (await resp.json())["job_id"]
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert held, "the download never connected"
    started = time.monotonic()
    if how == "job":
        await api.delete(f"/comfyfixer/jobs/{job_id}")
    else:
        await api.post(f"/comfyfixer/jobs/{job_id}/items/1/cancel", json={})
    # the slot is free at once: the next job's download reaches its server
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints", "url": ep.url(OK, "localhost")}]})
    while not ep.requests_for(OK) and time.monotonic() - started < 30:
        await asyncio.sleep(0.05)
    freed = time.monotonic() - started
    assert ep.requests_for(OK), "the cancelled row kept its slot"
    assert freed < 10, f"slot freed after {freed:.1f}s (2 s on an idle machine)"
    assert await asyncio.to_thread(api.fixer.jobs.wait_idle, 30)
    job = await (await api.get(f"/comfyfixer/jobs/{job_id}")).json()
    assert job["items"][0]["state"] == "cancelled", job["items"][0]
    assert time.monotonic() - started < 15  # the stuck read itself ended too


# == 7. bad local input through the CLI ==========================================================

@posix_only
@pytest.mark.parametrize("kind", ["fifo", "link-to-dev-zero", "link-to-dev-urandom", "sparse-4gb", "directory"])
@pytest.mark.parametrize("command", ["scan", "resolve"])
def test_cli_named_files_that_are_not_small_regular_files_fail_fast(cli_env, tmp_path, kind, command):
    """The workflow is named on the command line (not found by a folder scan)."""
    wf = tmp_path / "wf.json"
    if kind == "fifo":
        os.mkfifo(wf)
    elif kind.startswith("link-to-dev"):
        wf.symlink_to("/dev/" + kind.rsplit("-", 1)[-1])
    elif kind == "sparse-4gb":
        with open(wf, "wb") as fh:
            fh.truncate(4 << 30)
    else:
        wf.mkdir()
    started = time.monotonic()
    env = dict(cli_env, COMFYFIXER_HF_ENDPOINT="http://localhost:9", COMFYFIXER_CIVITAI_BASE_URL="http://localhost:9")
    done = comfyfixer(env, command, wf, timeout=120)
    assert done.returncode != 0, done.stdout
    assert time.monotonic() - started < 60
    message = (done.stdout + done.stderr).lower()
    assert any(w in message for w in ("regular file", "not a file", "too large", "larger", "size", "no workflow files")), \
        done.stdout + done.stderr
    assert "traceback" not in message


TERMINAL_ATTACKS = {
    "osc52": "\x1b]52;c;ZWNobyBwd25lZA==\x07",
    "osc52-st": "\x1b]52;c;ZWNobyBwd25lZA==\x1b\\",
    "csi-clear": "\x1b[2J\x1b[H",
    "c1-csi": "\x9b2J",
    "c1-osc": "\x9d52;c;QQ==\x9c",
    "title": "\x1b]0;pwned\x07",
    "hyperlink": "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "bidi": "\u202egpj.exe",
}
RAW_BAD = ("\x1b", "\x9b", "\x9d", "\x9c", "\x07", "\u202e")


def attack_workflow(path: Path, url: str) -> Path:
    """Every string a user sees carries an escape: node title, type, widget file name, the
    metadata URL and name, a group title."""
    nodes = []
    for i, (name, seq) in enumerate(sorted(TERMINAL_ATTACKS.items())):
        nodes.append({"id": i + 1, "type": "CheckpointLoaderSimple", "mode": 0,
                      "title": f"t{seq}", "widgets_values": [f"m_{name}{seq}.safetensors"],
                      "properties": {"models": [{"name": f"m_{name}{seq}.safetensors", "url": url + seq,
                                                 "directory": "checkpoints"}]}})
    nodes.append({"id": 99, "type": "Evil\x1b]52;c;QQ==\x07Loader\x9b2J", "mode": 0, "widgets_values": []})
    path.write_text(json.dumps({"last_node_id": 99, "links": [], "version": 0.4, "nodes": nodes,
                                "groups": [{"title": "g\x1b]52;c;QQ==\x07"}]}))
    return path


@pytest.mark.parametrize("command", [["scan"], ["resolve"], ["fix", "--dry-run"], ["fix", "--yes"],
                                     ["-vv", "resolve"]])
def test_cli_output_carries_no_terminal_control_from_a_workflow_or_a_hub(cli_env, servers, comfy_root, tmp_path,
                                                                          command):
    ep, _victim = servers
    # the hub's own answers carry escapes too: an error body and a hostile file name
    ep.add("/api/v1/models", status=500, body=b'{"error": "boom \x1b]52;c;QQ==\x07 \x9b2J"}')
    wf = attack_workflow(tmp_path / "wf\x1b]0;x\x07.json", ep.url("/o/r/resolve/main/m.safetensors", "localhost"))
    env = dict(cli_env, COMFYFIXER_HF_ENDPOINT=f"http://localhost:{ep.port}",
               COMFYFIXER_CIVITAI_BASE_URL=f"http://localhost:{ep.port}")
    done = comfyfixer(env, *command, wf, "--comfyui-root", comfy_root)
    for stream in (done.stdout, done.stderr):
        assert not [c for c in RAW_BAD if c in stream], [c for c in RAW_BAD if c in stream]
    assert "traceback" not in done.stderr.lower(), done.stderr
    assert "m_c1-csi" in done.stdout + done.stderr  # the rest of the name is shown


# == endpoints themselves (HF_ENDPOINT, civitai_base_url, index_refresh_url) ======================

BAD_ENDPOINTS = ["http://127.0.0.1:8188\\.hf.co", "http://0x7f.1:8188", "http://017700000001:8188",
                 "https://huggingface.co.", "http://huggingface\uff0eco", "http://127.0.0.1%2e:8188"]


@pytest.mark.parametrize("value", BAD_ENDPOINTS)
@pytest.mark.parametrize("name", ["hf_endpoint", "civitai_base_url", "index_refresh_url"])
def test_an_endpoint_the_network_layer_would_refuse_is_a_configuration_error(make_config, name, value):
    from comfyfixersmart.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=name):
        make_config(**{name: value})


@pytest.mark.parametrize("value", BAD_ENDPOINTS[:3])
async def test_the_settings_route_refuses_such_an_endpoint(make_api, make_config, servers, value):
    api = await make_api(endpoint_config(make_config, servers[0]))
    before = await (await api.get("/comfyfixer/settings")).json()
    resp = await api.post("/comfyfixer/settings", json={"hf_endpoint": value})
    assert resp.status == 400, await resp.text()
    assert await (await api.get("/comfyfixer/settings")).json() == before


def test_cli_with_a_bad_endpoint_in_the_environment_says_so(cli_env, tmp_path):
    wf = models_workflow(tmp_path / "wf.json", "https://huggingface.co/o/r/resolve/main/x.safetensors")
    done = comfyfixer(dict(cli_env, COMFYFIXER_INDEX_REFRESH_URL="http://127.0.0.1:8188\\.pypi.org"), "scan", wf)
    assert done.returncode != 0
    assert "index_refresh_url" in done.stdout + done.stderr and "backslash" in done.stdout + done.stderr
    assert "traceback" not in done.stderr.lower()


@pytest.mark.parametrize("answer", ["169.254.169.254", "::ffff:169.254.169.254", "2002:a9fe:a9fe::1"])
async def test_the_fix_route_with_a_hub_cdn_url_resolving_to_metadata_fetches_nothing(make_api, make_config, servers,
                                                                                     comfy_root, resolver, tmp_path,
                                                                                     answer):
    """A shared workflow's ``models`` URL on a hub CDN name (trusted, planned at 95 %) whose DNS
    answer is the cloud-metadata address: the panel's fix job connects nowhere."""
    ep, _victim = servers
    names, attempts = resolver
    names["cdn-lfs.hf.co"] = answer
    api = await make_api(endpoint_config(make_config, ep))
    workflow = json.loads(models_workflow(tmp_path / "wf.json",
                                          "https://cdn-lfs.hf.co/latest/meta-data/x.safetensors").read_text())
    resp = await api.post("/comfyfixer/fix", json={"workflow": workflow})
    assert resp.status == 202, await resp.text()
    job = await wait_job(api, (await resp.json())["job_id"])
    rows = [it for it in job.get("items", [])]
    assert rows and all(it["state"] == "failed" for it in rows), job
    assert {it["error"]["type"] for it in rows} == {"HostNotAllowedError"}, rows
    assert attempts == [] and files_under(comfy_root) == []


@pytest.mark.parametrize("on_disk,in_workflow", [("NFC", "NFD"), ("NFD", "NFC")])
def test_cli_scan_reports_a_differently_normalised_name_missing(cli_env, comfy_root, tmp_path, on_disk, in_workflow):
    """ComfyUI compares names character for character: ``mode\u0300le`` on disk does not load
    a widget saying ``mod\u00e8le``."""
    import unicodedata

    name = "mod\u00e8le_\u00e9t\u00e9.safetensors"
    (comfy_root / "models" / "checkpoints" / unicodedata.normalize(on_disk, name)).write_bytes(payload(1024, 9))
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"last_node_id": 1, "links": [], "version": 0.4, "nodes": [
        {"id": 1, "type": "CheckpointLoaderSimple", "mode": 0, "properties": {},
         "widgets_values": [unicodedata.normalize(in_workflow, name)]}]}))
    done = comfyfixer(cli_env, "scan", wf, "--comfyui-root", comfy_root, "--json")
    report = json.loads(done.stdout)
    [ref] = report["workflows"][0]["references"]
    assert ref["status"] == "elsewhere", ref  # found under another spelling: to relink, not "present"


# == 6b. cancel while the hub itself hangs ======================================================

def names_workflow(path: Path, count: int) -> Path:
    path.write_text(json.dumps({"last_node_id": count, "links": [], "version": 0.4, "nodes": [
        {"id": i + 1, "type": "LoraLoader", "mode": 0, "properties": {},
         "widgets_values": [f"hang_{i}.safetensors", 1, 1]} for i in range(count)]}))
    return path


async def test_delete_of_a_fix_job_whose_hub_never_answers_ends_it(make_api, make_config, silent_server, tmp_path):
    port, held = silent_server
    hub = f"http://127.0.0.1:{port}"
    api = await make_api(make_config(hf_endpoint=hub, civitai_base_url=hub, civitai_api_timeout=300,
                                     download_timeout=300))
    workflow = json.loads(names_workflow(tmp_path / "wf.json", 5).read_text())
    resp = await api.post("/comfyfixer/fix", json={"workflow": workflow})
    assert resp.status == 202, await resp.text()
    job_id = (await resp.json())["job_id"]
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert held, "the fix job never asked the hub"
    started = time.monotonic()
    resp = await api.delete(f"/comfyfixer/jobs/{job_id}")
    assert resp.status == 200, await resp.text()
    assert await asyncio.to_thread(api.fixer.jobs.wait_idle, 60)
    took = time.monotonic() - started
    job = await (await api.get(f"/comfyfixer/jobs/{job_id}")).json()
    assert job["state"] == "cancelled", job
    assert took < 15, f"the job ended {took:.1f}s after DELETE (2 s on an idle machine)"


@posix_only
def test_ctrl_c_during_resolve_against_a_hub_that_never_answers(cli_env, silent_server, tmp_path):
    import signal

    port, held = silent_server
    hub = f"http://127.0.0.1:{port}"
    env = dict(cli_env, COMFYFIXER_HF_ENDPOINT=hub, COMFYFIXER_CIVITAI_BASE_URL=hub,
               COMFYFIXER_CIVITAI_API_TIMEOUT="300")
    wf = names_workflow(tmp_path / "wf.json", 3)
    proc = subprocess.Popen([sys.executable, "-m", "comfyfixersmart", "resolve", str(wf)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not held and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert held, "resolve never asked the hub"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert took < 10, f"Ctrl-C took {took:.1f}s (2 s on an idle machine)"
    assert "traceback" not in err.lower(), err


@pytest.mark.parametrize("target", ["other-port", "mapped", "hex-short", "userinfo"])
async def test_a_pasted_page_whose_hub_lookup_redirects_to_another_local_port(make_api, make_config, servers,
                                                                             comfy_root, target):
    """A pasted ``/blob/`` page is looked up on the hub first; every hub answer on the way
    redirects to the victim: the lookup and the download never reach it."""
    ep, victim = servers
    location = REDIRECT_TARGETS[target].format(v=victim.port, e=ep.port)
    for path in ("/o/r/resolve/main/x.safetensors", "/api/models/o/r", "/api/models/o/r/revision/main",
                 "/api/models/o/r/tree/main", "/api/models/o/r/paths-info/main", "/o/r/blob/main/x.safetensors"):
        ep.add(path, redirect=location)
    api = await make_api(endpoint_config(make_config, ep))
    resp = await api.post("/comfyfixer/download", json={"items": [
        {"filename": "x.safetensors", "directory": "checkpoints",
         "url": ep.url("/o/r/blob/main/x.safetensors", "localhost")}]})
    if resp.status == 202:
        job = await wait_job(api, (await resp.json())["job_id"])
        assert job["summary"]["failed"] == 1, job
    else:
        assert resp.status in (400, 502), await resp.text()
    assert ep.requests, "the hub was never asked"
    assert victim.requests == []
    assert files_under(comfy_root) == []


# == the index refresh URL ========================================================================

@pytest.mark.parametrize("wheel_url", [
    "http://localhost:{v}/x.whl",                         # the refresh endpoint's host, another port
    "http://127.0.0.1:{v}/x.whl",
    "http://[::ffff:127.0.0.1]:{v}/x.whl",
    "https://files.pythonhosted.org\\@127.0.0.1:{v}/x.whl",
    "http://files.pythonhosted.org/x.whl",                # the wheel host over plain http
    "redirect",                                           # the right origin, redirecting to the victim
])
def test_index_refresh_fetches_wheels_only_from_the_wheel_host(make_config, servers, tmp_path, resolver, wheel_url):
    """A PyPI mirror (``index_refresh_url``) whose JSON points the wheels anywhere else: the
    refresh fails and the victim sees nothing."""
    from comfyfixersmart.search.index_refresh import refresh_index

    ep, victim = servers
    names, attempts = resolver
    names["files.pythonhosted.org"] = "127.0.0.1"  # answered locally; only reachable if allowed
    victim.add("/x.whl", b"PK\x03\x04 not really")
    if wheel_url == "redirect":
        ep.add("/w/x.whl", redirect=f"http://localhost:{victim.port}/x.whl")
        url = ep.url("/w/x.whl", "localhost")
    else:
        url = wheel_url.format(v=victim.port)
    release = {"info": {"name": "p", "version": "9.9"},
               "urls": [{"packagetype": "bdist_wheel", "filename": "../../x.whl", "url": url}]}
    meta = {"info": {"name": "comfyui-workflow-templates", "version": "9.9",
                     "requires_dist": ["comfyui-workflow-templates-json==9.9"]}}
    ep.add("/pypi/comfyui-workflow-templates/json", json.dumps(meta).encode())
    ep.add("/pypi/comfyui-manager/json", json.dumps(release).encode())
    ep.add("/pypi/comfyui-workflow-templates-json/9.9/json", json.dumps(release).encode())
    config = make_config(index_refresh_url=f"http://localhost:{ep.port}", cache_dir=tmp_path / "cache")
    with pytest.raises(Exception) as caught:
        refresh_index(config)
    assert type(caught.value).__name__ in ("HostNotAllowedError", "TooManyRedirectsError"), caught.value
    assert victim.requests == [] and attempts == []
    assert not (tmp_path / "x.whl").exists() and not list((tmp_path / "cache").glob("*.json*"))
