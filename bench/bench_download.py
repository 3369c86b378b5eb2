"""Download engine benchmark against curl (and aria2c when installed), on loopback.

    python bench/bench_download.py [--size-mb 1024] [--link-mb 200] [--capped-size-mb 1024] [--rate-mb 20]
                                   [--runs 3]

1. Uncapped sendfile server, 1 GiB: our single stream vs ``curl -o`` and ``curl`` +
   ``sha256sum``; ours both with the sha256 checked (hashed on a helper thread) and with
   hashing off (``verify_downloads=False``, no expected hash); peak RSS of our download
   process (``ru_maxrss`` of a fresh subprocess).  Ours also fsyncs before the rename;
   curl does not (use ``--dir /dev/shm`` to take the disk out of the comparison).
2. A 200 MB/s link (``--link-mb``; the server paces its sends): our verified single stream
   (sha256 while receiving, no second pass) vs curl on the same capped server.  On a link
   slower than the CPU, hashing must hide behind the network: target >= 0.95x curl.
3. Server capping each connection (default 20 MB/s): our 4 Range segments vs curl (one
   connection) and ``aria2c -x4 -s4``.
Every measurement runs ``--runs`` times, interleaved across tools, and the best is kept: on
a shared machine the slow runs measure the neighbours.  The load average is printed with
each section; on a 2-core machine the verified figure needs the second core (the hash
runs there), so read it with the load in mind.
Targets: single (no hash) >= 0.9x curl, RSS <= 100 MB, segmented >= 3x curl and >= 0.9x
aria2c.  The verified-vs-curl ratio is reported, not gated (curl hashes nothing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAST_SERVER = REPO / "tests" / "dlserver" / "fast.py"
MB = 1024 * 1024

CHILD = r"""
import json, resource, sys, time
from comfyfixersmart.settings import Config
from comfyfixersmart.download import DownloadManager
url, dest, state, segments, sha = sys.argv[1:6]
cfg = Config(allowed_hosts=["127.0.0.1:*"], state_dir=state, download_segments=int(segments),
             segment_min_size=64 * 1024 * 1024, verify_downloads=bool(sha))
t0 = time.perf_counter()
with DownloadManager(cfg) as m:
    r = m.download_model(url, dest, expected_sha256=sha or None)
elapsed = time.perf_counter() - t0
print(json.dumps({"ok": r.success, "error": r.error_message, "seconds": elapsed,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_file(path: Path, size: int) -> str:
    """Incompressible test file that is a valid safetensors file (one U8 tensor): the engine
    refuses a ``.safetensors`` body without a header.  Returns its sha256."""
    digest = hashlib.sha256()
    block = os.urandom(MB)
    header = b'{"t":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]}}' % (size - 8 - 128, size - 8 - 128)
    head = (128).to_bytes(8, "little") + header.ljust(128)
    with open(path, "wb") as fh:
        left = size
        i = 0
        while left > 0:
            # vary each MiB so no two blocks are equal
            chunk = (i.to_bytes(8, "little") + block[8:])[:min(MB, left)]
            if i == 0:
                chunk = head + chunk[len(head):]
            fh.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            i += 1
    return digest.hexdigest()


class Server:
    def __init__(self, path: Path, rate: float | None):
        cmd = [sys.executable, str(FAST_SERVER), str(path)] + (["--rate", str(rate)] if rate else [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("PORT "):
            raise RuntimeError("file server did not start")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/{path.name}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def clean(dest: Path) -> None:
    for p in dest.parent.glob(dest.name + "*"):
        p.unlink()


def run_curl(url: str, dest: Path) -> float:
    clean(dest)
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), url], check=True)
    return time.perf_counter() - t0


def run_curl_sha(url: str, dest: Path) -> float:
    """curl, then sha256sum: what the generated script does."""
    clean(dest)
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), url], check=True)
    subprocess.run(["sha256sum", str(dest)], check=True, capture_output=True)
    return time.perf_counter() - t0


def run_curl_fsync(url: str, dest: Path) -> float:
    """curl, then fsync of the file: the same durability ours gives before its rename."""
    clean(dest)
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), url], check=True)
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def run_aria2(url: str, dest: Path, conns: int) -> float:
    clean(dest)
    t0 = time.perf_counter()
    subprocess.run(["aria2c", "-q", f"-x{conns}", f"-s{conns}", "--min-split-size=1M", "--file-allocation=falloc",
                    "--allow-overwrite=true", "--auto-file-renaming=false", "-d", str(dest.parent),
                    "-o", dest.name, url], check=True)
    return time.perf_counter() - t0


def load_avg() -> list:
    """1, 5 and 15 minute load averages (a busy neighbour explains a slow run)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on this OS
        return []


def run_ours(url: str, dest: Path, state: Path, segments: int, sha: str) -> dict:
    clean(dest)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", CHILD, url, str(dest), str(state), str(segments), sha],
                         env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["ok"]:
        raise RuntimeError(result["error"])
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--capped-size-mb", type=int, default=1024)
    ap.add_argument("--link-mb", type=float, default=200.0, help="link speed in MB/s (1e6 bytes) for section 2")
    ap.add_argument("--skip-link", action="store_true")
    ap.add_argument("--only-link", action="store_true", help="run section 2 only")
    ap.add_argument("--rate-mb", type=float, default=20.0, help="per-connection cap in MB/s (1e6 bytes)")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool and section (best is kept)")
    ap.add_argument("--skip-capped", action="store_true")
    ap.add_argument("--dir", default=None, help="work folder (default: a temp dir under /tmp)")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="cfs-bench-", dir=args.dir))
    report: dict = {}
    try:
        src = work / "model.safetensors"
        sha = make_file(src, args.size_mb * MB)
        dest = work / "out" / "model.safetensors"
        dest.parent.mkdir()
        state = work / "state"
        size_mb = args.size_mb * MB / 1e6

        if args.only_link:
            args.skip_capped = True
        server = Server(src, None) if not args.only_link else None
        times: dict = {"curl": [], "curl_sha256sum": [], "ours_verified": [], "ours_no_hash": []}
        rss = []
        load_before = load_avg()
        try:
            for _ in range(args.runs if server else 0):  # interleaved, best kept: the machine may be shared
                times["curl"].append(run_curl(server.url, dest))
                times["curl_sha256sum"].append(run_curl_sha(server.url, dest))
                r = run_ours(server.url, dest, state, 1, sha)
                times["ours_verified"].append(r["seconds"])
                rss.append(r["maxrss_mb"])
                r = run_ours(server.url, dest, state, 1, "")
                times["ours_no_hash"].append(r["seconds"])
                rss.append(r["maxrss_mb"])
        finally:
            if server:
                server.close()
        best = {k: min(v) for k, v in times.items() if v}
        report["uncapped"] = {} if not best else {
            "size_mb": round(size_mb), "runs": args.runs,
            **{f"{k}_mb_s": round(size_mb / t, 1) for k, t in best.items()},
            "ratio_verified_vs_curl": round(best["curl"] / best["ours_verified"], 2),
            "ratio_no_hash_vs_curl": round(best["curl"] / best["ours_no_hash"], 2),
            "ratio_verified_vs_curl_sha256sum": round(best["curl_sha256sum"] / best["ours_verified"], 2),
            "all_mb_s": {k: [round(size_mb / t) for t in v] for k, v in times.items()},
            "peak_rss_mb": round(max(rss), 1),
            "load_avg_before": load_before, "load_avg_after": load_avg(),
        }
        if report["uncapped"]:
            print(json.dumps({"uncapped": report["uncapped"]}), flush=True)

        if not args.skip_link:
            server = Server(src, args.link_mb * 1e6)
            ltimes: dict = {"curl": [], "curl_fsync": [], "ours_verified": []}
            load_before = load_avg()
            try:
                for _ in range(args.runs):
                    ltimes["curl"].append(run_curl(server.url, dest))
                    ltimes["curl_fsync"].append(run_curl_fsync(server.url, dest))
                    ltimes["ours_verified"].append(run_ours(server.url, dest, state, 1, sha)["seconds"])
            finally:
                server.close()
            l_curl, l_ours = min(ltimes["curl"]), min(ltimes["ours_verified"])
            l_curl_fsync = min(ltimes["curl_fsync"])
            report["link"] = {
                "size_mb": round(size_mb), "link_mb_s": args.link_mb, "runs": args.runs,
                "curl_mb_s": round(size_mb / l_curl, 1), "ours_verified_mb_s": round(size_mb / l_ours, 1),
                "ratio_verified_vs_curl": round(l_curl / l_ours, 3),
                # ours fsyncs before its rename; curl + fsync is the like-for-like baseline
                "ratio_verified_vs_curl_fsync": round(l_curl_fsync / l_ours, 3),
                "all_mb_s": {k: [round(size_mb / t) for t in v] for k, v in ltimes.items()},
                "load_avg_before": load_before, "load_avg_after": load_avg(),
            }
            print(json.dumps({"link": report["link"]}), flush=True)

        if not args.skip_capped:
            csrc = src
            csha = sha
            if args.capped_size_mb != args.size_mb:
                csrc = work / "capped.safetensors"
                csha = make_file(csrc, args.capped_size_mb * MB)
            cdest = work / "out" / csrc.name
            csize = args.capped_size_mb * MB / 1e6
            server = Server(csrc, args.rate_mb * 1e6)
            ctimes: dict = {"curl": [], "ours": [], "aria2c": []}
            crss = []
            load_before = load_avg()
            try:
                for _ in range(args.runs):
                    ctimes["curl"].append(run_curl(server.url, cdest))
                    r = run_ours(server.url, cdest, state, 4, csha)
                    ctimes["ours"].append(r["seconds"])
                    crss.append(r["maxrss_mb"])
                    if shutil.which("aria2c"):
                        ctimes["aria2c"].append(run_aria2(server.url, cdest, 4))
            finally:
                server.close()
            c_curl, c_ours = min(ctimes["curl"]), min(ctimes["ours"])
            c_aria = min(ctimes["aria2c"]) if ctimes["aria2c"] else None
            report["capped"] = {
                "size_mb": round(csize), "per_connection_mb_s": args.rate_mb, "runs": args.runs,
                "curl_mb_s": round(csize / c_curl, 1),
                "ours_4_segments_verified_mb_s": round(csize / c_ours, 1),
                "ratio_vs_curl": round(c_curl / c_ours, 2),
                "aria2c_x4_mb_s": round(csize / c_aria, 1) if c_aria else None,
                "ratio_vs_aria2c": round(c_aria / c_ours, 2) if c_aria else None,
                "peak_rss_mb": round(max(crss), 1),
                "load_avg_before": load_before, "load_avg_after": load_avg(),
            }
            print(json.dumps({"capped": report["capped"]}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    u = report["uncapped"]
    targets = {} if not u else {
        # the default configuration verifies sha256 while downloading: that is the headline figure
        "single_stream_verified_vs_curl>=0.9": u["ratio_verified_vs_curl"] >= 0.9,
        "single_stream_no_hash_vs_curl>=0.9": u["ratio_no_hash_vs_curl"] >= 0.9,
        "peak_rss<=100MB": u["peak_rss_mb"] <= 100,
    }
    if "link" in report:
        targets["verified_on_a_capped_link_vs_curl>=0.95"] = report["link"]["ratio_verified_vs_curl"] >= 0.95
        targets["verified_on_a_capped_link_vs_curl_fsync>=0.95"] = (
            report["link"]["ratio_verified_vs_curl_fsync"] >= 0.95)
    if "capped" in report:
        c = report["capped"]
        targets["segmented_vs_curl>=3"] = c["ratio_vs_curl"] >= 3
        targets["segmented_peak_rss<=100MB"] = c["peak_rss_mb"] <= 100
        if c["ratio_vs_aria2c"] is not None:
            targets["segmented_vs_aria2c>=0.9"] = c["ratio_vs_aria2c"] >= 0.9
    print(json.dumps({"targets": targets, "all_met": all(targets.values())}))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
