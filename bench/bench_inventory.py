#!/usr/bin/env python3
"""Benchmark: ModelInventory.build against a bare os.walk of the same tree, and the hash cache.

    python bench/bench_inventory.py [--files 20000] [--repeat 5] [--json]

Builds a synthetic ComfyUI models tree (nested folders, several folder keys, one extra
folder through extra_model_paths.yaml, some non-model files) in a temp dir, then reports:

* ``walk_s``: best-of-N ``os.walk`` over ``models/`` + the extra folder (listing only);
* ``build_s``: best-of-N ``ModelInventory.build`` (index + yaml + lookups ready);
* ``ratio`` = build_s / walk_s (target <= 2.0);
* ``check_s``: checking 1,000 references;
* hashing: hashes every file once, then a *new* inventory with the same cache dir hashes
  all again and must compute 0 (``second_run_hashed``).

Not a timed test: run it by hand; it exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.inventory import ModelInventory
from comfyfixersmart.settings import Config

KEYS = ["checkpoints", "loras", "vae", "embeddings", "controlnet", "upscale_models", "unet", "clip",
        "ipadapter", "my_custom"]
EXTS = [".safetensors", ".safetensors", ".safetensors", ".pt", ".pth", ".ckpt", ".bin", ".gguf"]


def make_tree(base: Path, n_files: int, seed: int = 7) -> list:
    """Create ``n_files`` tiny files spread over nested folders; return (key, rel) samples."""
    rng = random.Random(seed)
    comfy = base / "ComfyUI"
    models = comfy / "models"
    extra = base / "extra" / "loras"
    samples = []
    dirs = []
    for key in KEYS:
        for a in range(6):
            for b in range(5):
                dirs.append((key, f"group{a}/sub{b}"))
    for i in range(n_files):
        key, sub = dirs[i % len(dirs)]
        in_extra = key == "loras" and i % 3 == 0
        root = extra if in_extra else models / key
        name = f"model_{i:06d}{rng.choice(EXTS)}"
        d = root / sub
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(b"x" * (i % 64))
        if i % 10 == 0:  # noise the inventory must skip
            (d / f"notes_{i}.txt").write_text("readme")
        if i % 20 == 0:
            samples.append((key, f"{sub}/{name}"))
    (comfy / "extra_model_paths.yaml").write_text(
        "shared:\n  base_path: ../extra\n  loras: loras\n", encoding="utf-8")
    return samples


def walk_all(roots) -> int:
    count = 0
    for root in roots:
        for _dirpath, _dirs, files in os.walk(root, followlinks=True):
            count += len(files)
    return count


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="cfs-bench-") as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        samples = make_tree(base, args.files)
        setup_s = time.perf_counter() - t0
        comfy = base / "ComfyUI"
        config = Config(cache_dir=base / "cache", state_dir=base / "state", log_dir=base / "logs")

        roots = [comfy / "models", base / "extra"]
        walked = walk_all(roots)  # also warms the dentry cache for both contenders
        inv = ModelInventory(config).build(comfy)
        walk_s = best_of(lambda: walk_all(roots), args.repeat)
        build_s = best_of(lambda: ModelInventory(config).build(comfy), args.repeat)

        refs = []
        for i, (key, rel) in enumerate(samples[:1000]):
            folder = {"unet": "diffusion_models", "clip": "text_encoders", "my_custom": "my_custom"}.get(key, key)
            name = rel if i % 3 else "elsewhere/" + rel.rsplit("/", 1)[1]
            if i % 7 == 0:
                name = f"absent_{i}.safetensors"
            refs.append(ModelReference(name, "Loader", folder, folder))
        t0 = time.perf_counter()
        inv.check_all(refs)
        check_s = time.perf_counter() - t0
        statuses = {s: sum(1 for r in refs if r.status == s) for s in ("present", "elsewhere", "missing")}

        t0 = time.perf_counter()
        for info in inv:
            inv.sha256(info)
        hash_first_s = time.perf_counter() - t0
        first_hashed = inv.hashes_computed
        inv.hash_cache.close()

        second = ModelInventory(config).build(comfy)
        t0 = time.perf_counter()
        for info in second:
            second.sha256(info)
        hash_second_s = time.perf_counter() - t0

        result = {
            "files_created": args.files,
            "files_walked": walked,
            "files_indexed": len(inv),
            "setup_s": round(setup_s, 3),
            "walk_s": round(walk_s, 4),
            "build_s": round(build_s, 4),
            "ratio": round(build_s / walk_s, 2),
            "check_1000_s": round(check_s, 4),
            "statuses": statuses,
            "first_run_hashed": first_hashed,
            "hash_first_s": round(hash_first_s, 3),
            "second_run_hashed": second.hashes_computed,
            "hash_second_s": round(hash_second_s, 3),
        }
    ok = result["ratio"] <= 2.0 and result["second_run_hashed"] == 0 and result["files_indexed"] == args.files
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>18}: {v}")
        print("OK" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
