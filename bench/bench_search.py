"""Benchmark: resolve 50 missing references against the fake hub with added latency.

    python bench/bench_search.py [--refs 50] [--latency 0.05] [--concurrency 8] [--json]

Measures (1) wall time with ``search_concurrency=1`` versus the default concurrency, each
from an empty cache (target: >= 5x faster), and (2) the number of requests a second run of
the same references sends (target: 0, everything from the on-disk cache).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the fakehub package
sys.path.insert(0, str(ROOT))

from fakehub import FakeHub, blob  # noqa: E402
from fakehub.fixtures import config_for_hub  # noqa: E402

from comfyfixersmart.datamodel import ModelReference  # noqa: E402
from comfyfixersmart.search import ModelSearch  # noqa: E402

FOLDERS = [("checkpoints", "Checkpoint"), ("loras", "LORA"), ("vae", "VAE"), ("controlnet", "Controlnet")]


def populate(hub: FakeHub, n: int):
    """A hub with a realistic mix; returns the references a workflow would be missing."""
    refs = []
    for i in range(n):
        folder, civ_type = FOLDERS[i % len(FOLDERS)]
        kind = i % 5
        if kind in (0, 1):  # on Civitai under a model named after the file
            name = f"benchModel{i}Alpha_v{i % 7 + 1}.safetensors"
            hub.add_civitai_model(f"Bench Model{i} Alpha", {name: blob(256, i)}, type=civ_type, downloads=i)
            refs.append(ModelReference(name, "Loader", folder.rstrip("s"), folder))
        elif kind == 2:  # in a Comfy-Org style repo
            name = f"bench_hf{i}_model_fp16.safetensors"
            hub.add_hf_repo(f"Comfy-Org/bench_hf{i}_repackaged", {f"split_files/{folder}/{name}": blob(256, i)},
                            downloads=1000 + i)
            refs.append(ModelReference(name, "Loader", folder.rstrip("s"), folder))
        elif kind == 3:  # the workflow carries the URL
            name = f"bench_url{i}.safetensors"
            hub.add_hf_repo(f"someone/bench-url{i}", {name: blob(256, i)})
            refs.append(ModelReference(name, "Loader", folder.rstrip("s"), folder,
                                       url=f"https://huggingface.co/someone/bench-url{i}/resolve/main/{name}"))
        else:  # nowhere: every backend is asked and finds nothing
            name = f"nowhereToBeFound{i}_v1.safetensors"
            refs.append(ModelReference(name, "Loader", folder.rstrip("s"), folder))
    return refs


def run(hub: FakeHub, refs, cache_dir: Path, concurrency: int):
    config = config_for_hub(hub, cache_dir, search_concurrency=concurrency)
    hub.clear_log()
    started = time.perf_counter()
    with ModelSearch(config) as search:
        resolutions = search.resolve_many(refs)
    elapsed = time.perf_counter() - started
    chosen = sum(1 for r in resolutions if r.choose(config.min_confidence))
    errors = sum(len(r.errors) for r in resolutions)
    return elapsed, len(hub.requests), chosen, errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    # The fake hub runs in this process: with the default 5 ms GIL switch interval every
    # request would wait for the server thread's time slice, which a real network does not.
    sys.setswitchinterval(0.0005)
    from comfyfixersmart.search.huggingface import _hub

    _hub()  # import huggingface_hub before timing: it is not part of either run's work
    with FakeHub() as hub, tempfile.TemporaryDirectory() as tmp:
        refs = populate(hub, args.refs)
        hub.latency = args.latency
        seq_t, seq_req, seq_ok, seq_err = run(hub, refs, Path(tmp) / "seq", 1)
        par_t, par_req, par_ok, par_err = run(hub, refs, Path(tmp) / "par", args.concurrency)
        again_t, again_req, again_ok, _ = run(hub, refs, Path(tmp) / "par", args.concurrency)
    result = {
        "references": args.refs,
        "latency_s": args.latency,
        "sequential": {"seconds": round(seq_t, 3), "requests": seq_req, "chosen": seq_ok, "errors": seq_err},
        "concurrent": {"concurrency": args.concurrency, "seconds": round(par_t, 3), "requests": par_req,
                       "chosen": par_ok, "errors": par_err},
        "speedup": round(seq_t / par_t, 2) if par_t else None,
        "second_run": {"seconds": round(again_t, 3), "requests": again_req, "chosen": again_ok},
        "targets_met": {"speedup>=5": seq_t / par_t >= 5 if par_t else False, "second_run_requests==0": again_req == 0},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.refs} references, {args.latency * 1000:.0f} ms added per request")
        print(f"  one by one     : {seq_t:6.2f} s  {seq_req:4d} requests  {seq_ok} chosen automatically")
        print(f"  concurrency {args.concurrency:<3d}: {par_t:6.2f} s  {par_req:4d} requests  "
              f"{par_ok} chosen automatically")
        print(f"  speed-up       : {result['speedup']}x (target >= 5x)")
        print(f"  second run     : {again_t:6.2f} s  {again_req:4d} requests (target 0)")
    return 0 if all(result["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
