"""Red-team tests of the DNS-rebinding guard: a server listening on loopback answers only
loopback ``Host`` names, on every route (GET, POST, DELETE), and changes nothing for others."""

from __future__ import annotations

import re
import sys
import types

import pytest
from aiohttp import web

from comfyfixersmart.comfyui.mount import listen_addresses
from comfyfixersmart.service.hostcheck import check_host_header, is_loopback_name
from comfyfixersmart.service.jobs import MemoryJobStore
from comfyfixersmart.service.routes import FixerRoutes

FOREIGN = [
    "evil.example", "evil.example:8188", "127.0.0.1.evil.example", "localhost.evil.example:8188",
    "evil.localhost", "127.0.0.1:8188@evil.example", "0x7f000001", "2130706433:8188", "127.1", "0177.0.0.1",
    "localhost.", "[::2]:8188", "192.168.1.10:8188", "0.0.0.0:8188", "comfyui.local", "",
]
LOCAL = ["127.0.0.1", "127.0.0.1:8188", "localhost", "LOCALHOST:8188", "[::1]:8188", "[::1]", "127.5.6.7:1"]


@pytest.fixture
async def make_api(aiohttp_client, make_config, tmp_path):
    made = []

    async def build(listen):
        fixer = FixerRoutes(folders=lambda: {"checkpoints": [str(tmp_path)]}, config=make_config(),
                            job_store=MemoryJobStore(), listen=listen)
        table = web.RouteTableDef()
        fixer.add_routes(table)
        app = web.Application()
        app.add_routes(table)
        client = await aiohttp_client(app)
        client.fixer, client.table = fixer, table
        made.append(fixer)
        return client

    yield build
    for fixer in made:
        fixer.close()


def every_route(table):
    """(method, concrete path) of every registered route."""
    for route in table:
        path = re.sub(r"\{[^}]+\}", "abc", route.path)
        yield route.method, path


async def test_every_route_refuses_a_foreign_host_when_listening_on_loopback(make_api):
    api = await make_api("127.0.0.1")
    routes = list(every_route(api.table))
    assert len(routes) >= 10 and {m for m, _ in routes} >= {"GET", "POST", "DELETE"}
    for method, path in routes:
        for host in ("evil.example:8188", "127.0.0.1.evil.example"):
            resp = await api.request(method, path, headers={"Host": host}, json={})
            assert resp.status == 403, (method, path, host, resp.status)
            body = await resp.json()
            assert body["error"]["type"] == "ForeignHostError" and "rebinding" in body["error"]["message"]


@pytest.mark.parametrize("host", FOREIGN)
async def test_foreign_host_variations_are_refused(make_api, host):
    api = await make_api(["127.0.0.1", "::1"])
    resp = await api.get("/comfyfixer/health", headers={"Host": host})
    assert resp.status == 403, host


@pytest.mark.parametrize("host", LOCAL)
async def test_loopback_names_are_answered(make_api, host):
    api = await make_api("127.0.0.1")
    resp = await api.get("/comfyfixer/health", headers={"Host": host})
    assert resp.status == 200, host


async def test_a_refused_post_changes_nothing(make_api):
    api = await make_api("127.0.0.1")
    before = await (await api.get("/comfyfixer/settings")).json()
    resp = await api.post("/comfyfixer/settings", json={"download_concurrency": 7,
                                                       "allowed_hosts_extra": ["169.254.169.254"]},
                          headers={"Host": "evil.example:8188"})
    assert resp.status == 403
    resp = await api.post("/comfyfixer/download", headers={"Host": "evil.example:8188"},
                          json={"items": [{"url": "https://huggingface.co/a/b/resolve/main/c.safetensors",
                                           "directory": "checkpoints", "filename": "c.safetensors"}]})
    assert resp.status == 403
    assert await (await api.get("/comfyfixer/settings")).json() == before
    assert (await (await api.get("/comfyfixer/jobs")).json()).get("jobs", []) == []


@pytest.mark.parametrize("listen", [None, "0.0.0.0", "0.0.0.0,::", "127.0.0.1,192.168.1.5", ["::"]])
async def test_a_server_listening_beyond_loopback_is_not_host_checked(make_api, listen):
    api = await make_api(listen)
    resp = await api.get("/comfyfixer/health", headers={"Host": "comfy.lan:8188"})
    assert resp.status == 200


async def test_the_listen_addresses_are_read_per_request(make_api):
    current = ["0.0.0.0"]
    api = await make_api(lambda: current)
    assert (await api.get("/comfyfixer/health", headers={"Host": "evil.example"})).status == 200
    current[:] = ["localhost"]
    assert (await api.get("/comfyfixer/health", headers={"Host": "evil.example"})).status == 403


def test_host_names_are_compared_strictly():
    assert all(is_loopback_name(h) for h in ("localhost", "127.0.0.1", "127.255.0.1", "::1", "[::1]",
                                             "::ffff:127.0.0.1"))
    assert not any(is_loopback_name(h) for h in ("127.1", "0x7f.0.0.1", "2130706433", "localhost.", "::2",
                                                 "127.0.0.01", "", "local host", "[::1"))
    check_host_header("127.0.0.1:8188", "127.0.0.1")
    with pytest.raises(Exception, match="refused"):
        check_host_header(None, "127.0.0.1")


def test_comfyui_listen_addresses_come_from_its_arguments(monkeypatch):
    cli = types.ModuleType("comfy.cli_args")
    cli.args = types.SimpleNamespace(listen="127.0.0.1,::1")
    monkeypatch.setitem(sys.modules, "comfy.cli_args", cli)
    assert listen_addresses(None) == ["127.0.0.1", "::1"]
    cli.args.listen = "0.0.0.0,::"  # --listen without a value
    assert listen_addresses(None) == ["0.0.0.0", "::"]
    monkeypatch.delitem(sys.modules, "comfy.cli_args")
    assert listen_addresses(types.SimpleNamespace(address="192.168.0.2")) == ["192.168.0.2"]
    assert listen_addresses(None) == ["127.0.0.1"]  # ComfyUI's default
