"""Calibration of search confidence, measured: top-1 accuracy and confident-wrong answers over a
labelled probe set, and the requests a 20-reference workflow costs cold and warm.

    python bench/bench_calibration.py [--held-out] [--json] [--show-wrong]

The fake hub (tests/fakehub/catalogue.py) holds the official files of ComfyUI's workflow
templates in their real repos (names from comfyui-workflow-templates-json 0.1.123), publisher
repos (gated, GGUF, diffusers layouts), community mirrors and decoys, and Civitai models.  Each
probe is a ModelReference (metadata stripped: no URL, no hash) resolved through the real
clients (ModelSearch: requests + huggingface_hub) on 127.0.0.1, twice: with every backend
("all": the known-model index first, which lists the official names) and without the index
("search": what publisher trees, name search and ranking achieve alone).

* top-1: the best candidate is the right file (its sha256), or, for a file that is not in the
  hub, no candidate reaches the automatic level (AUTO_CHOICE_FLOOR);
* confident-wrong: candidates at >= 0.9 (Config.min_confidence) that are not the right file.
  Target: 0.  Also reported: wrong candidates at >= AUTO_CHOICE_FLOOR (0.8, the lowest setting).
* split: a probe is held out when n = int(sha1("probe:" + folder/name)[:8]) has n % 10 < 3 or
  33 <= n % 100 <= 39 (124 of 396, 31 %; see ``Probe.held_out``).  Tuning used the other probes
  only; ``--held-out`` reports the held-out part, next to the tuning part.
* requests: a cold resolve of a 20-reference workflow (14 official files sampled evenly from
  the tuning probes, 4 Civitai files, 2 absent ones), then the same again from a new
  ModelSearch on the same cache (warm).
  Budget: <= 70 requests cold (the publisher listings, 16, are paid once per 24 h and
  shared by every workflow; the rest is about 3 per reference), 0 warm.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the fakehub package
sys.path.insert(0, str(ROOT))

from fakehub import FakeHub  # noqa: E402
from fakehub.catalogue import Probe, build_catalogue, served_sha256 as bytes_of  # noqa: E402
from fakehub.fixtures import config_for_hub  # noqa: E402

from comfyfixersmart.datamodel import AUTO_CHOICE_FLOOR, ModelReference  # noqa: E402
from comfyfixersmart.folders import type_for  # noqa: E402
from comfyfixersmart.search import ModelSearch  # noqa: E402

SURE = 0.9
COLD_BUDGET = 70


def reference(p: Probe) -> ModelReference:
    return ModelReference(filename=p.name, node_type="Loader", expected_type=type_for(p.directory) or "unknown",
                          expected_directory=p.directory, source=p.source, confidence=p.confidence)


def judge(probes: List[Probe], resolutions, hub: FakeHub) -> Dict:
    top1 = wrong_sure = wrong_floor = auto_right = 0
    wrong: List[Dict] = []
    for p, res in zip(probes, resolutions):
        best = res.best
        if p.truth is None:
            ok = best is None or best.confidence < AUTO_CHOICE_FLOOR
        else:
            ok = best is not None and bytes_of(hub, best) == p.truth
        top1 += ok
        if ok and best is not None and best.confidence >= SURE and p.truth:
            auto_right += 1
        bad = [c for c in res.candidates if c.confidence >= SURE and bytes_of(hub, c) != p.truth]
        wrong_sure += len(bad)
        wrong_floor += sum(1 for c in res.candidates if c.confidence >= AUTO_CHOICE_FLOOR
                           and bytes_of(hub, c) != p.truth)
        if not ok or bad:
            wrong.append({"probe": p.key, "kind": p.kind, "best": best and {
                "where": best.metadata.get("repo_id") or best.name, "conf": best.confidence,
                "reason": best.reason, "right": bytes_of(hub, best) == p.truth},
                "confident_wrong": len(bad)})
    n = len(probes)
    return {"probes": n, "top1": top1, "top1_rate": round(top1 / n, 3) if n else None,
            "confident_wrong": wrong_sure, "wrong_at_floor": wrong_floor, "auto_right": auto_right,
            "misses": wrong}


#: "search alone": every backend but the known-model index (which lists the official names)
SEARCH_ALONE = ["workflow", "civitai", "huggingface"]


def resolve_all(config, probes: List[Probe], backends=None):
    out = {}
    with ModelSearch(config, backends=backends) as search:
        # one resolve_many per kind: a guessed reference shares its key with a real one
        for kind in sorted({p.kind for p in probes}):
            group = [p for p in probes if p.kind == kind]
            for p, res in zip(group, search.resolve_many([reference(p) for p in group])):
                out[id(p)] = res
    return [out[id(p)] for p in probes]


def workflow_requests(hub: FakeHub, probes: List[Probe], tmp: Path, backends=None) -> Dict:
    by_kind: Dict[str, List[Probe]] = {}
    for p in probes:
        if p.kind != "guessed":
            by_kind.setdefault(p.kind, []).append(p)
    official = by_kind["official"]
    mix = official[:: max(1, len(official) // 14)][:14] + by_kind["civitai"][:4] + by_kind["absent"][:2]
    config = config_for_hub(hub, tmp / f"workflow-{bool(backends)}")
    counts = {}
    for run in ("cold", "warm"):
        hub.clear_log()
        started = time.perf_counter()
        with ModelSearch(config, backends=backends) as search:
            resolutions = search.resolve_many([reference(p) for p in mix])
        counts[run] = {"requests": len(hub.requests), "seconds": round(time.perf_counter() - started, 2),
                       "api": {k: len(hub.find_requests(listener=k)) for k in ("hf", "civitai", "storage")}}
    counts["references"] = len(mix)
    counts["judged"] = {k: v for k, v in judge(mix, resolutions, hub).items() if k != "misses"}
    counts["budget_cold"] = COLD_BUDGET
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", action="store_true", help="also report the frozen held-out probes")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--show-wrong", action="store_true", help="list the tuning probes that missed")
    args = parser.parse_args(argv)
    sys.setswitchinterval(0.0005)  # the hub runs in this process: do not wait 5 ms per switch
    with FakeHub() as hub, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cat = build_catalogue(hub)
        tuning = [p for p in cat.probes if not p.held_out]
        held = [p for p in cat.probes if p.held_out]
        started = time.perf_counter()
        result: Dict = {"probes": len(cat.probes), "kinds": {k: sum(p.kind == k for p in cat.probes)
                                                             for k in sorted({p.kind for p in cat.probes})}}
        for mode, backends in (("all", None), ("search", SEARCH_ALONE)):
            result[f"tuning/{mode}"] = judge(tuning, resolve_all(config_for_hub(hub, tmp / f"t-{mode}"), tuning,
                                                                  backends), hub)
            if args.held_out:
                result[f"held_out/{mode}"] = judge(held, resolve_all(config_for_hub(hub, tmp / f"h-{mode}"), held,
                                                                      backends), hub)
            result[f"workflow_20/{mode}"] = workflow_requests(hub, tuning, tmp, backends)
        result["seconds"] = round(time.perf_counter() - started, 1)
    parts = [f"{k}/{m}" for m in ("all", "search") for k in ["tuning"] + (["held_out"] if args.held_out else [])]
    ok = all(result[k]["confident_wrong"] == 0 for k in parts) and all(
        result[f"workflow_20/{m}"]["cold"]["requests"] <= COLD_BUDGET
        and result[f"workflow_20/{m}"]["warm"]["requests"] == 0 for m in ("all", "search"))
    if args.json:
        print(json.dumps(result if args.show_wrong else {k: ({kk: vv for kk, vv in v.items() if kk != "misses"}
                                                             if isinstance(v, dict) else v)
                                                         for k, v in result.items()}, indent=2))
    else:
        print(f"{result['probes']} probes {result['kinds']}  ({result['seconds']} s)")
        print("  all = every backend (the known-model index first); search = without the index")
        for k in parts:
            r = result[k]
            print(f"  {k:16s}: top-1 {r['top1']}/{r['probes']} ({r['top1_rate']:.1%}), chosen automatically and "
                  f"right {r['auto_right']}, confident-wrong {r['confident_wrong']} (target 0), wrong at >= "
                  f"{AUTO_CHOICE_FLOOR} {r['wrong_at_floor']}")
        for m in ("all", "search"):
            w = result[f"workflow_20/{m}"]
            print(f"  workflow of {w['references']} references ({m}): cold {w['cold']['requests']} requests "
                  f"(budget {COLD_BUDGET}; {w['cold']['api']}), warm {w['warm']['requests']} (target 0); "
                  f"top-1 {w['judged']['top1']}/{w['references']}")
        if args.show_wrong:
            for mode in ("all", "search"):
                for m in result[f"tuning/{mode}"]["misses"]:
                    print(f"    {mode}:", json.dumps(m))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
