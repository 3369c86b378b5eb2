"""Loader-map benchmark: the live map of ~1,000 node types, and a ComfyUI root read statically.

    python bench/bench_nodedefs.py [--nodes 1000] [--comfyui ~/.cache/comfyfixer-e2e/ComfyUI-0.3.75] [--runs 3]

1. Live map (what runs inside ComfyUI): ``--nodes`` generated node classes in 100 modules
   (4 in 5 V1 ``INPUT_TYPES``, 1 in 5 V3 ``define_schema`` through a stand-in ``io`` module;
   1 in 4 has a folder input), imported for real and registered in a stand-in ``nodes``
   module; ``LiveNodeMap.table()`` measured cold (no cache file), warm (the per-file cache
   written by the cold run, a new LiveNodeMap as after a restart) and again on the same
   object (node set unchanged: nothing recomputed).  The pack classes without a folder input
   are probed live too (their INPUT_TYPES against the folders' files), as in ComfyUI.  Baseline in the same process:
   ``json.load`` of the two bundled tables.  Target: cold < 1 s for 1,000 node types.
2. With ``--comfyui DIR``: ``read_root`` of that ComfyUI folder (nodes.py, comfy_extras,
   comfy_api_nodes, custom_nodes) cold and warm: what ``comfyfixer scan --comfyui-root`` adds.
Every figure is the best of ``--runs``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comfyfixersmart.comfyui.nodemap import LiveNodeMap  # noqa: E402
from comfyfixersmart.scan.loaders import CORE_TABLE, CUSTOM_TABLE  # noqa: E402
from comfyfixersmart.scan.rootdefs import read_root  # noqa: E402

KEYS = ["checkpoints", "loras", "vae", "controlnet", "upscale_models", "clip_vision", "text_encoders",
        "diffusion_models", "bench_pack_key"]

IO_MODULE = '''
class _In:
    def __init__(self, kind, id, options=None, optional=False, **kw):
        self.kind, self.id, self.options, self.optional = kind, id, options, optional
class _Type:
    def __init__(self, kind):
        self.kind = kind
    def Input(self, id, options=None, optional=False, **kw):
        return _In(self.kind, id, options, optional)
Combo, Int, Float, Model, Image = _Type("COMBO"), _Type("INT"), _Type("FLOAT"), _Type("MODEL"), _Type("IMAGE")
class Schema:
    def __init__(self, node_id, inputs=(), **kw):
        self.node_id, self.inputs = node_id, list(inputs)
class ComfyNode:
    @classmethod
    def INPUT_TYPES(cls):
        out = {"required": {}}
        for i in cls.define_schema().inputs:
            spec = (i.options,) if i.kind == "COMBO" else (i.kind, {})
            out.setdefault("optional" if i.optional else "required", {})[i.id] = spec
        return out
'''


def v1_class(n: int) -> str:
    key = KEYS[n % len(KEYS)]
    combo = f'"model_name": (["None"] + folder_paths.get_filename_list("{key}"),),' if n % 4 == 0 else ""
    return f'''
class Node{n}:
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "run"
    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"model": ("MODEL",), "seed": ("INT", {{"default": 0}}), {combo}
                             "mode": (["a", "b", "c"],), "strength": ("FLOAT", {{"default": 1.0}})}},
                "optional": {{"text": ("STRING", {{"multiline": True}})}}}}
    def run(self, **kw):
        return (None,)
'''


def v3_class(n: int) -> str:
    key = KEYS[n % len(KEYS)]
    combo = f'io.Combo.Input("model_name", options=folder_paths.get_filename_list("{key}")),' if n % 4 == 0 else ""
    return f'''
class Node{n}(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="Node{n}", inputs=[io.Model.Input("model"), io.Int.Input("seed"), {combo}
                                                     io.Combo.Input("mode", options=["a", "b"])])
'''


def make_pack(tmp: Path, count: int, per_module: int = 10):
    """Modules with ``count`` classes, imported; returns the stand-in folder_paths and nodes."""
    models = tmp / "models"
    fp = types.ModuleType("folder_paths")
    fp.folder_names_and_paths = {k: ([str(models / k)], {".safetensors"}) for k in KEYS}
    fp.map_legacy = lambda name: {"unet": "diffusion_models", "clip": "text_encoders"}.get(name, name)
    for i, key in enumerate(KEYS):  # a few files per key, as a real install has
        (models / key).mkdir(parents=True, exist_ok=True)
        for j in range(20):
            (models / key / f"{key}_{j}.safetensors").write_bytes(b"")

    listing = {k: sorted(p.name for p in (models / k).iterdir()) for k in KEYS}
    fp.get_filename_list = lambda name: list(listing[fp.map_legacy(name)])  # ComfyUI caches its lists too
    sys.modules["folder_paths"] = fp
    (tmp / "bench_io.py").write_text(IO_MODULE)
    sys.path.insert(0, str(tmp))
    import bench_io  # noqa: F401

    mapping = {}
    for m in range((count + per_module - 1) // per_module):
        v3 = m % 5 == 4
        header = "import folder_paths\nimport bench_io as io\n"
        body = "".join((v3_class if v3 else v1_class)(m * per_module + k) for k in range(per_module))
        path = tmp / f"bench_nodes_{m}.py"
        path.write_text(header + body)
        spec = importlib.util.spec_from_file_location(f"bench_nodes_{m}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        for k in range(per_module):
            n = m * per_module + k
            if n < count:
                cls = getattr(module, f"Node{n}")
                cls.RELATIVE_PYTHON_MODULE = "custom_nodes.bench" if m % 2 else "comfy_extras.bench"
                mapping[f"Node{n}"] = cls
    nodes = types.ModuleType("nodes")
    nodes.NODE_CLASS_MAPPINGS = mapping
    return fp, nodes


CPU: list = []  # process time of the best wall-clock run of the last ``best`` call


def best(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    wall, cpu = min(times)
    CPU[:] = [cpu]
    return wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--comfyui", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    def baseline():
        for p in (CORE_TABLE, CUSTOM_TABLE):
            with open(p, "rb") as fh:
                json.load(fh)

    base = best(baseline, args.runs)
    print(f"baseline json.load of the bundled tables: {base * 1000:.1f} ms")

    tmp = Path(tempfile.mkdtemp(prefix="bench-nodedefs-"))
    try:
        fp, nodes = make_pack(tmp / "pack", args.nodes)
        cache = tmp / "cache"

        def cold():
            shutil.rmtree(cache, ignore_errors=True)
            table = LiveNodeMap(fp, nodes, cache_dir=cache).table()
            assert table is not None and len(table.specs) == (args.nodes + 3) // 4, len(table.specs)

        t_cold = best(cold, args.runs)
        cpu_cold = CPU[0]
        t_warm = best(lambda: LiveNodeMap(fp, nodes, cache_dir=cache).table(), args.runs)
        live = LiveNodeMap(fp, nodes, cache_dir=cache)
        live.table()
        t_same = best(live.table, args.runs)
        print(f"live map, {len(nodes.NODE_CLASS_MAPPINGS)} node types: cold {t_cold:.3f} s "
              f"(CPU {cpu_cold:.3f} s) "
              f"({t_cold / base:.0f}x baseline), warm {t_warm:.3f} s ({t_warm / base:.0f}x), "
              f"unchanged {t_same * 1e6:.0f} us")
        ok = t_cold < 1.0
        print(f"target cold < 1 s: {'PASS' if ok else 'FAIL'}")

        if args.comfyui is not None:
            root_cache = tmp / "root-cache"

            def root_cold():
                shutil.rmtree(root_cache, ignore_errors=True)
                read_root(args.comfyui, root_cache)

            r_cold = best(root_cold, args.runs)
            r_warm = best(lambda: read_root(args.comfyui, root_cache), args.runs)
            defs = read_root(args.comfyui, root_cache)
            total = len(defs.core.node_types) + sum(len(p.node_types) for p in defs.packs.values())
            print(f"--comfyui-root {args.comfyui} ({total} node types, {len(defs.packs)} packs): "
                  f"cold {r_cold:.3f} s, warm {r_warm:.3f} s")
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
