"""The ComfyUI glue: root package import, route registration, folder table and events.

ComfyUI's own modules (``server``, ``folder_paths``) are the far side here: tiny stand-ins
are put into ``sys.modules`` the way ComfyUI's ``main.py`` has them imported before it loads
custom nodes.  Everything of ours runs for real, loaded the way ComfyUI loads a custom node:
the repo folder as a package under an arbitrary name.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from pathlib import Path

import pytest
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]


def load_repo_as_custom_node(module_name: str):
    """What ComfyUI's ``load_custom_node`` does for a folder in ``custom_nodes/``."""
    spec = importlib.util.spec_from_file_location(module_name, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def unload():
    names = []
    yield names.append
    for prefix in names:
        for key in [k for k in sys.modules if k == prefix or k.startswith(prefix + ".")]:
            del sys.modules[key]


class StandInPromptServer:
    """The two things a custom node uses of ComfyUI's PromptServer."""

    instance = None

    def __init__(self):
        self.routes = web.RouteTableDef()
        self.sent = []
        self.lock = threading.Lock()

    def send_sync(self, event, data, sid=None):
        with self.lock:
            self.sent.append((event, data, threading.current_thread().name))


def make_folder_paths(base: Path) -> types.ModuleType:
    fp = types.ModuleType("folder_paths")
    models = base / "models"
    extra = base / "extra" / "checkpoints"
    fp.base_path = str(base)
    fp.models_dir = str(models)
    fp.folder_names_and_paths = {
        "checkpoints": ([str(models / "checkpoints"), str(extra)], {".safetensors", ".ckpt"}),
        "diffusion_models": ([str(models / "unet"), str(models / "diffusion_models")], {".safetensors"}),
        "text_encoders": ([str(models / "text_encoders"), str(models / "clip")], {".safetensors"}),
        "custom_nodes": ([str(base / "custom_nodes")], set()),
        "my_custom_key": ([str(models / "my_custom_key")], {".bin"}),
    }

    def map_legacy(name):
        return {"unet": "diffusion_models", "clip": "text_encoders"}.get(name, name)

    def get_folder_paths(name):
        name = map_legacy(name)
        return list(fp.folder_names_and_paths[name][0]) if name in fp.folder_names_and_paths else []

    def get_system_user_directory(name="system"):
        return str(base / "user" / f"__{name}")

    fp.map_legacy = map_legacy
    fp.get_folder_paths = get_folder_paths
    fp.get_system_user_directory = get_system_user_directory
    return fp


@pytest.fixture
def comfy(monkeypatch, tmp_path):
    """Stand-ins of ComfyUI's ``server`` and ``folder_paths`` modules, as main.py leaves them."""
    server = types.ModuleType("server")

    class PromptServer(StandInPromptServer):
        pass

    PromptServer.instance = PromptServer()
    server.PromptServer = PromptServer
    folder_paths = make_folder_paths(tmp_path / "ComfyUI")
    monkeypatch.setitem(sys.modules, "server", server)
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)
    return types.SimpleNamespace(server=server, instance=PromptServer.instance, folder_paths=folder_paths,
                                 base=tmp_path / "ComfyUI")


def test_outside_comfyui_import_does_nothing(monkeypatch, unload):
    monkeypatch.delitem(sys.modules, "server", raising=False)
    unload("cfs_outside")
    module = load_repo_as_custom_node("cfs_outside")
    assert module.WEB_DIRECTORY == "./web"
    assert module.NODE_CLASS_MAPPINGS == {} and module.NODE_DISPLAY_NAME_MAPPINGS == {}
    # the library came along under the custom node's own name: relative imports only
    assert "cfs_outside.comfyfixersmart.comfyui" in sys.modules


def test_unrelated_server_module_is_left_alone(monkeypatch, unload):
    monkeypatch.setitem(sys.modules, "server", types.ModuleType("server"))
    unload("cfs_unrelated")
    load_repo_as_custom_node("cfs_unrelated")  # no PromptServer: nothing happens, nothing raised
    from comfyfixersmart.comfyui import register

    assert register() is None


async def test_registers_routes_on_prompt_server(comfy, unload, aiohttp_client):
    unload("ComfyFixerSmart_under_test")
    load_repo_as_custom_node("ComfyFixerSmart_under_test")
    routes = comfy.instance._comfyfixersmart_routes
    paths = {r.path for r in comfy.instance.routes if isinstance(r, web.RouteDef)}
    assert {"/comfyfixer/health", "/comfyfixer/folders", "/comfyfixer/scan", "/comfyfixer/resolve",
            "/comfyfixer/download", "/comfyfixer/fix", "/comfyfixer/jobs", "/comfyfixer/jobs/{job_id}",
            "/comfyfixer/settings"} <= paths
    # state lives in ComfyUI's system user folder, which ComfyUI never serves over HTTP
    assert routes.base_config.state_dir == comfy.base / "user" / "__comfyfixersmart"
    assert routes.base_config.comfyui_root == comfy.base
    assert not (comfy.base / "user").exists()  # registering opened no file, started no thread
    try:
        app = web.Application()
        app.add_routes(comfy.instance.routes)
        client = await aiohttp_client(app)
        resp = await client.get("/comfyfixer/health")
        assert resp.status == 200
        assert await resp.json() == {"version": "2.0.0", "comfyui": True}
        folders = (await (await client.get("/comfyfixer/folders")).json())["folders"]
        models = comfy.base / "models"
        assert folders["checkpoints"] == [str(models / "checkpoints"), str(comfy.base / "extra" / "checkpoints")]
        assert folders["diffusion_models"][0] == str(models / "unet")
        assert "my_custom_key" in folders  # keys added by other custom nodes count too
        assert "custom_nodes" not in folders
        # ComfyUI listens on 127.0.0.1 by default: a rebound foreign name is refused (DNS rebinding)
        resp = await client.get("/comfyfixer/health", headers={"Host": "evil.example:8188"})
        assert resp.status == 403 and (await resp.json())["error"]["type"] == "ForeignHostError"
    finally:
        routes.close()


def test_register_twice_returns_the_same_routes(comfy):
    from comfyfixersmart.comfyui import register

    first = register()
    try:
        assert first is not None
        count = len(list(comfy.instance.routes))
        assert register() is first
        assert len(list(comfy.instance.routes)) == count
    finally:
        first.close()


def test_legacy_names_follow_comfyui(comfy):
    from comfyfixersmart.comfyui import ComfyFolders

    folders = ComfyFolders(comfy.folder_paths)
    assert folders.canonical("unet") == "diffusion_models"
    assert folders.canonical("clip") == "text_encoders"
    assert folders.canonical("t2i_adapter") == "controlnet"  # older alias, from our table
    assert folders.canonical("loras") == "loras"


def test_download_validation_uses_comfyui_folders(comfy, make_config):
    from comfyfixersmart.comfyui import ComfyFolders
    from comfyfixersmart.errors import ValidationError
    from comfyfixersmart.service.validation import validate_download_item

    folders = ComfyFolders(comfy.folder_paths)
    table = folders()
    url = "https://huggingface.co/o/r/resolve/main/flux.safetensors"
    spec = validate_download_item({"filename": "flux/flux.safetensors", "directory": "unet", "url": url},
                                  table, make_config(), canonical=folders.canonical)
    assert spec.directory == "diffusion_models"
    assert spec.save_path == str(comfy.base / "models" / "unet" / "flux" / "flux.safetensors")
    with pytest.raises(ValidationError):
        validate_download_item({"filename": "x.safetensors", "directory": "custom_nodes", "url": url},
                               table, make_config(), canonical=folders.canonical)


def test_emitter_sends_from_worker_threads(comfy):
    from comfyfixersmart.comfyui import PromptServerEmitter

    emit = PromptServerEmitter(comfy.instance)
    worker = threading.Thread(target=emit, args=("comfyfixer.job", {"id": "x"}), name="worker")
    worker.start()
    worker.join()
    assert comfy.instance.sent == [("comfyfixer.job", {"id": "x"}, "worker")]


def test_only_the_comfyui_subpackage_imports_comfyui():
    """A lint-like check: no other module of the library names ComfyUI's modules."""
    import re

    package = REPO / "comfyfixersmart"
    pattern = re.compile(r"^\s*(import|from)\s+(server|folder_paths|comfy)(\s|\.|$)", re.M)
    offenders = [str(p.relative_to(REPO)) for p in package.rglob("*.py")
                 if "comfyui" not in p.relative_to(package).parts[:1] and pattern.search(p.read_text())]
    assert offenders == []


def test_the_inventory_lists_each_key_with_comfyuis_own_extension_set(comfy, make_config):
    """ComfyUI's ``folder_names_and_paths[key][1]`` decides what each key lists, not the bundled
    sets: the stand-in's checkpoints list only .safetensors/.ckpt, my_custom_key only .bin."""
    from comfyfixersmart.comfyui import ComfyFolders
    from comfyfixersmart.service.routes import FixerRoutes, default_core_factory

    models = comfy.base / "models"
    for rel in ("checkpoints/a.safetensors", "checkpoints/b.pt", "checkpoints/c.ckpt",
                "my_custom_key/d.bin", "my_custom_key/e.safetensors"):
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        (models / rel).write_bytes(b"x")
    folders = ComfyFolders(comfy.folder_paths)
    assert folders.extensions()["checkpoints"] == {".safetensors", ".ckpt"}
    assert "custom_nodes" not in folders.extensions()
    routes = FixerRoutes(folders=folders, config=make_config(comfyui_root=comfy.base), comfyui=True,
                         canonical=folders.canonical, protected=folders.protected_roots)
    table = routes.folders()
    assert dict(table)["checkpoints"][0] == str(models / "checkpoints")  # the JSON the panel reads
    assert table.extensions["my_custom_key"] == {".bin"}
    core = default_core_factory(routes.effective_config(), table)
    try:
        inventory = core.inventory
        assert inventory.has_model("a.safetensors", "checkpoints")
        assert inventory.has_model("c.ckpt", "checkpoints")
        assert not inventory.has_model("b.pt", "checkpoints")  # the bundled set would list it
        assert inventory.has_model("d.bin", "my_custom_key")
        assert not inventory.has_model("e.safetensors", "my_custom_key")  # the setting would list it
    finally:
        core.close()

    # a pack's own folder inside custom_nodes: read by the inventory, never a download target
    pack_dir = comfy.base / "custom_nodes" / "Pack" / "models"
    (pack_dir / "m.safetensors").parent.mkdir(parents=True)
    (pack_dir / "m.safetensors").write_bytes(b"x")
    comfy.folder_paths.folder_names_and_paths["pack_models"] = ([str(pack_dir)], {".safetensors"})
    comfy.folder_paths.folder_names_and_paths["checkpoints"][0].append(str(pack_dir))
    table = routes.folders()
    assert "pack_models" not in table and str(pack_dir) not in table["checkpoints"]
    assert table.readable["pack_models"] == [str(pack_dir)]
    assert table.readable["checkpoints"][-1] == str(pack_dir)
    core = default_core_factory(routes.effective_config(), table)
    try:
        assert core.inventory.has_model("m.safetensors", "pack_models")
        assert core.inventory.has_model("m.safetensors", "checkpoints")
    finally:
        core.close()

    # a provider without extensions(): every key takes the bundled or configured sets, as before
    plain = FixerRoutes(folders=lambda: {"checkpoints": [str(models / "checkpoints")]},
                        config=make_config(comfyui_root=comfy.base))
    core = default_core_factory(plain.effective_config(), plain.folders())
    try:
        assert core.inventory.has_model("b.pt", "checkpoints")
    finally:
        core.close()
    routes.close()
    plain.close()
