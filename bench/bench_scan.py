"""Benchmark: WorkflowScanner.scan_directory against plain json.load of the same files.

Replicates the shared real workflows (``shared/workflows/*.json``) into a temp folder until it
holds ``--files`` files, then times both over ``--repeat`` rounds (best round kept) and prints
the ratio.  Target: scanning costs at most 3x json.load.

    python bench/bench_scan.py [--files 500] [--repeat 5] [--source DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comfyfixersmart.scan import WorkflowScanner
from comfyfixersmart.settings import Config

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "workflows"


def replicate(source: Path, target: Path, count: int) -> list:
    originals = sorted(p for p in source.glob("*.json") if p.name != "LABELS.json")
    if not originals:
        raise SystemExit(f"no workflows in {source}")
    files = []
    for i in range(count):
        src = originals[i % len(originals)]
        dst = target / f"{i:05d}_{src.name}"
        shutil.copyfile(src, dst)
        files.append(dst)
    return files


def time_json(files) -> float:
    start = time.perf_counter()
    for f in files:
        with open(f, "rb") as fh:
            json.load(fh)
    return time.perf_counter() - start


def time_scan(scanner: WorkflowScanner, folder: Path, expected: int) -> float:
    start = time.perf_counter()
    found = scanner.scan_directory(folder, recursive=True)
    elapsed = time.perf_counter() - start
    assert len(found) == expected and not scanner.errors, scanner.errors[:3]
    return elapsed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_scan_") as tmp:
        cfg = Config(output_dir=Path(tmp) / "o", log_dir=Path(tmp) / "l", state_dir=Path(tmp) / "s",
                     cache_dir=Path(tmp) / "c")
        folder = Path(tmp) / "workflows"
        folder.mkdir()
        files = replicate(args.source, folder, args.files)
        size = sum(f.stat().st_size for f in files)
        scanner = WorkflowScanner(cfg)
        time_scan(scanner, folder, len(files))  # warm-up: tables loaded, page cache filled
        time_json(files)
        best_json = min(time_json(files) for _ in range(args.repeat))
        best_scan = min(time_scan(scanner, folder, len(files)) for _ in range(args.repeat))
        refs = sum(len(w.model_references) for w in scanner.scan_directory(folder))
    ratio = best_scan / best_json
    print(f"files: {len(files)}  bytes: {size / 1e6:.1f} MB  references: {refs}")
    print(f"json.load:     {best_json * 1000:8.1f} ms  ({best_json / len(files) * 1e6:.0f} us/file)")
    print(f"scan_directory:{best_scan * 1000:8.1f} ms  ({best_scan / len(files) * 1e6:.0f} us/file)")
    print(f"ratio: {ratio:.2f}x json.load (target <= 3x): {'OK' if ratio <= 3 else 'OVER'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
