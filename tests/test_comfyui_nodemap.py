"""The loader map of a running ComfyUI (comfyui/nodemap.py), with stand-in ComfyUI modules.

``folder_paths`` and ``nodes`` are small stand-ins in ``sys.modules``; the node classes are the
test pack's real V1 modules (tests/fixtures/custom_nodes/cfs_test_pack), imported the way
ComfyUI imports a custom node.  The V3 node and real ComfyUI are covered by the e2e tests.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
from aiohttp import web

from comfyfixersmart.comfyui.nodemap import LiveNodeMap, _live_inputs
from comfyfixersmart.scan import WorkflowScanner
from comfyfixersmart.settings import Config

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PACK = FIXTURES / "custom_nodes" / "cfs_test_pack"
EXPECTED = json.loads((FIXTURES / "cfs_test_pack" / "expected.json").read_text())["references"]


def stand_in_folder_paths(base: Path) -> types.ModuleType:
    fp = types.ModuleType("folder_paths")
    models = base / "models"
    fp.base_path, fp.models_dir = str(base), str(models)
    fp.supported_pt_extensions = {".safetensors", ".pth", ".ckpt"}
    keys = ["checkpoints", "configs", "loras", "vae", "upscale_models", "clip_vision", "style_models",
            "diffusion_models", "text_encoders"]
    fp.folder_names_and_paths = {k: ([str(models / k)], set(fp.supported_pt_extensions) | {".yaml"}) for k in keys}
    fp.folder_names_and_paths["custom_nodes"] = ([str(base / "custom_nodes")], set())

    def map_legacy(name):
        return {"unet": "diffusion_models", "clip": "text_encoders"}.get(name, name)

    def add_model_folder_path(name, path, is_default=False):
        name = map_legacy(name)
        fp.folder_names_and_paths.setdefault(name, ([], set()))[0].append(path)

    def get_filename_list(name):
        name = map_legacy(name)
        out = []
        for d in fp.folder_names_and_paths[name][0]:
            p = Path(d)
            if p.is_dir():
                out += sorted(f.name for f in p.iterdir() if f.is_file())
        return out

    fp.map_legacy, fp.add_model_folder_path, fp.get_filename_list = map_legacy, add_model_folder_path, get_filename_list
    fp.get_folder_paths = lambda name: list(fp.folder_names_and_paths[map_legacy(name)][0])
    return fp


def import_pack_module(name: str, package: str):
    spec = importlib.util.spec_from_file_location(f"{package}.{name}", PACK / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def comfy(monkeypatch, tmp_path):
    base = tmp_path / "ComfyUI"
    fp = stand_in_folder_paths(base)
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    package = "cfs_pack_under_test"
    monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
    mapping = {}
    for name in ("nodes_v1", "nodes_styles"):
        module = import_pack_module(name, package)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        for node_type, cls in module.NODE_CLASS_MAPPINGS.items():
            cls.RELATIVE_PYTHON_MODULE = f"custom_nodes.{package}"
            mapping[node_type] = cls

    class CheckpointLoaderSimple:  # a core node of the stand-in nodes.py
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"ckpt_name": (fp.get_filename_list("checkpoints"),)}}

    mapping["CheckpointLoaderSimple"] = CheckpointLoaderSimple
    nodes = types.ModuleType("nodes")
    nodes.NODE_CLASS_MAPPINGS = mapping
    monkeypatch.setitem(sys.modules, "nodes", nodes)
    return types.SimpleNamespace(fp=fp, nodes=nodes, base=base, tmp=tmp_path)


def test_live_map_has_every_loader_with_comfyui_folder_keys(comfy):
    before = copy.deepcopy(comfy.fp.folder_names_and_paths)
    mapping_before = dict(comfy.nodes.NODE_CLASS_MAPPINGS)
    table = LiveNodeMap(comfy.fp, cache_dir=comfy.tmp / "cache").table()
    got = {(t, s.input): (s.folder, s.index) for t, specs in table.specs.items() for s in specs}
    assert got == {
        ("CFSCheckpointPair", "config_name"): ("configs", 2), ("CFSCheckpointPair", "ckpt_name"): ("checkpoints", 3),
        ("CFSOptionalVAE", "vae_name"): ("vae", 1),
        ("CFS LoRA Stack", "lora_1"): ("loras", 0), ("CFS LoRA Stack", "lora_2"): ("loras", 2),
        ("CFSUpscaleHelper", "upscaler"): ("upscale_models", 0),
        ("CFSClipVisionFrom", "clip_name"): ("clip_vision", 0),
        ("CFSFaceUpscaleLoader", "model_name"): ("cfs_face_models", 0),
        ("CFSSamLoader", "sam_model"): ("cfs_sam", 1),
        ("CFSLegacyLoader", "unet_name"): ("diffusion_models", 0), ("CFSLegacyLoader", "clip_name"): ("text_encoders", 1),
    }  # CheckpointLoaderSimple has no source file the reader can read (defined in a function here)
    assert table.core_types == {"CheckpointLoaderSimple"}
    assert {"cfs_face_models", "cfs_sam", "loras"} <= set(table.folders) and "custom_nodes" not in table.folders
    # ComfyUI is left as it was
    assert comfy.fp.folder_names_and_paths == before
    assert comfy.nodes.NODE_CLASS_MAPPINGS == mapping_before


def test_live_options_correct_a_wrong_static_reading(comfy):
    # the file says "loras", but at run time the options are the files of another key
    (comfy.base / "models" / "vae").mkdir(parents=True)
    (comfy.base / "models" / "vae" / "real.safetensors").write_bytes(b"x")
    (comfy.base / "models" / "loras").mkdir(parents=True)
    (comfy.base / "models" / "loras" / "l.safetensors").write_bytes(b"x")
    fp = comfy.fp

    class Tricky:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"lora_name": (fp.get_filename_list("vae"),)}}

    src = comfy.tmp / "tricky.py"
    src.write_text("import folder_paths\nclass Tricky:\n    @classmethod\n    def INPUT_TYPES(cls):\n"
                   "        return {'required': {'lora_name': (folder_paths.get_filename_list('loras'),)}}\n")
    module = types.ModuleType("tricky_mod")
    module.__file__ = str(src)
    Tricky.__module__ = "tricky_mod"
    sys.modules["tricky_mod"] = module
    try:
        comfy.nodes.NODE_CLASS_MAPPINGS["Tricky"] = Tricky
        table = LiveNodeMap(fp).table()
        assert table.get("Tricky")[0].folder == "vae"
        assert LiveNodeMap(fp, confirm=False).table().get("Tricky")[0].folder == "loras"
    finally:
        del sys.modules["tricky_mod"]


def test_recomputed_only_when_the_node_set_changes(comfy):
    live = LiveNodeMap(comfy.fp)
    first = live.table()
    assert live.table() is first
    comfy.nodes.NODE_CLASS_MAPPINGS["Another"] = type("Another", (), {})
    second = live.table()
    assert second is not first and second.specs == first.specs


def test_no_nodes_module_means_no_map(comfy, monkeypatch):
    assert "CFSSamLoader" in LiveNodeMap(comfy.fp).node_types()
    monkeypatch.delitem(sys.modules, "nodes")
    assert LiveNodeMap(comfy.fp).table() is None
    assert LiveNodeMap(comfy.fp).node_types() is None


def test_live_widget_positions():
    options, pos = _live_inputs({
        "required": {"seed": ("INT", {}), "image": ("IMAGE",), "ckpt": (["a", "b"],), "x": ("COMBO", {"options": ["c"]}),
                     "upload": (["i.png"], {"image_upload": True}), "after": ("FLOAT",)},
        "optional": {"odd": (object(),), "late": (["d"],)}})
    assert pos == {"seed": 0, "image": 2, "ckpt": 2, "x": 3, "upload": 4, "after": 6, "odd": 7, "late": None}
    assert options == {"ckpt": ["a", "b"], "x": ["c"], "upload": ["i.png"], "late": ["d"]}


@pytest.mark.parametrize("form", ["ui", "api"])
def test_scanner_with_the_live_map(comfy, form):
    table = LiveNodeMap(comfy.fp).table()
    config = Config(cache_dir=comfy.tmp / "cache")
    data = WorkflowScanner(config, node_table=table).scan_workflow(FIXTURES / "cfs_test_pack" / f"workflow_{form}.json")
    got = {f"{r.expected_directory}/{r.filename}": r.node_type for r in data.model_references
           if r.node_type != "CFSV3StyleLoader"}  # the V3 module is not loaded here
    assert got == {k: v for k, v in EXPECTED.items() if v != "CFSV3StyleLoader"}


async def test_scan_route_in_comfyui_uses_the_live_map(comfy, monkeypatch, aiohttp_client):
    from comfyfixersmart.comfyui import register

    server = types.ModuleType("server")

    class PromptServer:
        instance = None

        def __init__(self):
            self.routes = web.RouteTableDef()

        def send_sync(self, *a, **k):
            pass

    PromptServer.instance = PromptServer()
    server.PromptServer = PromptServer
    monkeypatch.setitem(sys.modules, "server", server)
    monkeypatch.setenv("COMFYFIXER_CACHE_DIR", str(comfy.tmp / "cache"))
    monkeypatch.setenv("COMFYFIXER_STATE_DIR", str(comfy.tmp / "state"))
    routes = register(folder_paths=comfy.fp)
    try:
        app = web.Application()
        app.add_routes(PromptServer.instance.routes)
        client = await aiohttp_client(app)
        workflow = json.loads((FIXTURES / "cfs_test_pack" / "workflow_api.json").read_text())
        resp = await client.post("/comfyfixer/scan", json={"workflow": workflow})
        assert resp.status == 200, await resp.text()
        refs = {f"{r['directory']}/{r['filename']}": r["node_type"] for r in (await resp.json())["references"]}
        assert refs["cfs_face_models/cfs_face_restore.pth"] == "CFSFaceUpscaleLoader"
        assert refs["cfs_sam/cfs_sam_b.pth"] == "CFSSamLoader"
        assert routes.node_map.last_count == len(comfy.nodes.NODE_CLASS_MAPPINGS)
    finally:
        routes.close()


def test_pack_options_built_elsewhere_are_recognised_by_their_files(comfy, tmp_path):
    fp = comfy.fp
    (comfy.base / "models" / "loras").mkdir(parents=True)
    for name in ("a.safetensors", "sub/b.safetensors"):
        (comfy.base / "models" / "loras" / name).parent.mkdir(parents=True, exist_ok=True)
        (comfy.base / "models" / "loras" / name).write_bytes(b"x")
    listing = {"loras": ["a.safetensors", "sub/b.safetensors"]}
    real = fp.get_filename_list
    fp.get_filename_list = lambda key: list(listing.get(key, [])) or real(key)

    # its source says nothing the reader can follow (the options come from another module)
    src = tmp_path / "opaque.py"
    src.write_text("from .helpers import lora_choices\nclass Opaque:\n    pass\n")
    module = types.ModuleType("opaque_mod")
    module.__file__ = str(src)
    sys.modules["opaque_mod"] = module

    def make(name, options, core=False):
        cls = type(name, (), {"INPUT_TYPES": classmethod(lambda c: {"required": {
            "model": ("MODEL",), "pick": (options,), "mode": (["a", "b"],)}})})
        cls.__module__ = "opaque_mod"
        cls.RELATIVE_PYTHON_MODULE = "comfy_extras.x" if core else "custom_nodes.opaque"
        return cls

    try:
        comfy.nodes.NODE_CLASS_MAPPINGS.update({
            "Opaque": make("Opaque", ["None", "a.safetensors", "sub/b.safetensors"]),
            "Partial": make("Partial", ["a.safetensors", "other.bin"]),  # not every file: not that folder
            "CoreOpaque": make("CoreOpaque", ["a.safetensors", "sub/b.safetensors"], core=True),
        })
        table = LiveNodeMap(fp, probe_budget=60).table()  # no probe skipped on a busy machine
        spec = table.get("Opaque")[0]
        assert (spec.input, spec.folder, spec.index, spec.ignore) == ("pick", "loras", 0, frozenset({"None"}))
        assert table.get("Partial") == () and table.get("CoreOpaque") == ()  # core nodes: static + bundled
    finally:
        del sys.modules["opaque_mod"]
        fp.get_filename_list = real


def test_live_node_types_decide_the_missing_packs(comfy, monkeypatch):
    """Inside ComfyUI the running node set says what is installed (issue 9.5)."""
    from comfyfixersmart.scan import missing_packs

    live = LiveNodeMap(comfy.fp)
    installed = live.node_types()
    assert "CheckpointLoaderSimple" in installed
    assert missing_packs(["CheckpointLoaderSimple", "FaceDetailer"], installed)[0].node_types == ["FaceDetailer"]
    comfy.nodes.NODE_CLASS_MAPPINGS["FaceDetailer"] = type("FaceDetailer", (), {})
    assert missing_packs(["CheckpointLoaderSimple", "FaceDetailer"], live.node_types()) == []
    monkeypatch.delitem(sys.modules, "nodes")
    assert LiveNodeMap(comfy.fp).node_types() is None
